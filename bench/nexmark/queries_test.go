package nexmark

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	gen "github.com/streamd/streamd/connectors/nexmark"
)

// queryCase describes how to check one query: its results, computed
// from the events as a plain batch computation, and the results a run
// collected, both sorted.
type queryCase struct {
	name string
	// want returns the batch computation's results over events 0 … n−1
	// and their count and read-field sum; collect returns an observer
	// (a func(*T)) and a function that returns what it saw, sorted, as
	// comparable strings.
	want    func(n int64) (rows []string, sum int64)
	collect func() (observe any, rows func() []string)
}

// collector returns an observer of results of type T, safe for
// concurrent use by several sink tasks, and the sorted rows it saw.
func collector[T any]() (any, func() []string) {
	var mu sync.Mutex
	var rows []string
	observe := func(v *T) {
		s := fmt.Sprintf("%+v", *v)
		mu.Lock()
		rows = append(rows, s)
		mu.Unlock()
	}
	return observe, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(rows)
		slices.Sort(out)
		return out
	}
}

// batch computes a stateless query over events 0 … n−1 of the default
// generator, one event at a time (gen.EventAt): f returns the event's
// result and whether it has one.
func batch[T any](n int64, f func(e *Event) (T, bool), read func(*T) int64) ([]string, int64) {
	var rows []string
	var sum int64
	for i := range n {
		e := gen.EventAt(gen.Config{}, i)
		if r, ok := f(&e); ok {
			rows = append(rows, fmt.Sprintf("%+v", r))
			sum += read(&r)
		}
	}
	slices.Sort(rows)
	return rows, sum
}

var queryCases = []queryCase{
	{
		name: "q0",
		want: func(n int64) ([]string, int64) {
			return batch(n, func(e *Event) (Q0Result, bool) {
				b := e.Bid
				return Q0Result{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra}, e.Kind == gen.KindBid
			}, q0Read)
		},
		collect: collector[Q0Result],
	},
	{
		name: "q1",
		want: func(n int64) ([]string, int64) {
			return batch(n, func(e *Event) (Q1Result, bool) {
				b := e.Bid
				// 0.908 · price in thousandths, computed the long way.
				return Q1Result{Auction: b.Auction, Bidder: b.Bidder, Price: Decimal3(b.Price*900 + b.Price*8), DateTime: b.DateTime, Extra: b.Extra}, e.Kind == gen.KindBid
			}, q1Read)
		},
		collect: collector[Q1Result],
	},
	{
		name: "q2",
		want: func(n int64) ([]string, int64) {
			return batch(n, func(e *Event) (Q2Result, bool) {
				return Q2Result{Auction: e.Bid.Auction, Price: e.Bid.Price}, e.Kind == gen.KindBid && e.Bid.Auction%123 == 0
			}, q2Read)
		},
		collect: collector[Q2Result],
	},
}

// TestQueriesMatchBatch runs every stateless query on streamd, with
// exactly-once checkpoints every few milliseconds, and on its baseline,
// and compares every result with the batch computation over the same
// events.
func TestQueriesMatchBatch(t *testing.T) {
	const events = 100_000
	for _, tc := range queryCases {
		t.Run(tc.name, func(t *testing.T) {
			q, ok := Lookup(tc.name)
			if !ok {
				t.Fatalf("query %s is not registered", tc.name)
			}
			want, wantSum := tc.want(events)
			if len(want) == 0 {
				t.Fatalf("the batch computation has no results: the test would prove nothing")
			}
			cfg := RunConfig{Events: events, Parallelism: 2, CheckpointInterval: 2 * time.Millisecond, CheckpointParent: t.TempDir()}

			observe, rows := tc.collect()
			r, err := runStreamd(context.Background(), q, cfg, observe)
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, "streamd", rows(), want)
			if r.Results != int64(len(want)) || r.ResultFieldSum != wantSum {
				t.Errorf("streamd: sink counted %d results (sum %d), want %d (sum %d)", r.Results, r.ResultFieldSum, len(want), wantSum)
			}
			if r.CheckpointsCompleted == 0 || r.CheckpointE2EP99Ms == nil || r.CheckpointSyncPauseP99Ms == nil {
				t.Errorf("streamd: no checkpoint figures: %d completed, e2e p99 %v", r.CheckpointsCompleted, r.CheckpointE2EP99Ms)
			}
			if r.Events != events || r.CPUSeconds <= 0 || r.WallSeconds <= 0 || r.PeakRSSBytes <= 0 {
				t.Errorf("streamd: figures missing: %+v", r)
			}

			observe, rows = tc.collect()
			b, err := runBaseline(context.Background(), q, cfg, observe)
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, "channels", rows(), want)
			if err := sameResults(r, b); err != nil {
				t.Error(err)
			}
		})
	}
}

func checkRows(t *testing.T, system string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d results, want %d", system, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: sorted result %d:\n got %s\nwant %s", system, i, got[i], want[i])
			return
		}
	}
}

// TestQueriesParallelism1 runs each query at parallelism 1 without
// checkpoints: the sink then commits in Finish, a different path.
func TestQueriesParallelism1(t *testing.T) {
	const events = 5_000
	for _, tc := range queryCases {
		q, _ := Lookup(tc.name)
		want, wantSum := tc.want(events)
		r, err := Run(context.Background(), q, RunConfig{Events: events, Parallelism: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Results != int64(len(want)) || r.ResultFieldSum != wantSum || r.CheckpointsCompleted != 0 || r.CheckpointE2EP50Ms != nil {
			t.Errorf("%s: %d results (sum %d), %d checkpoints; want %d (sum %d), none", tc.name, r.Results, r.ResultFieldSum, r.CheckpointsCompleted, len(want), wantSum)
		}
	}
}

func TestDecimal3(t *testing.T) {
	f := func(price int64, want string) {
		t.Helper()
		if got := euros(price).String(); got != want {
			t.Errorf("0.908 * %d = %s, want %s", price, got, want)
		}
	}
	f(0, "0.000")
	f(1, "0.908")
	f(1000, "908.000")
	f(32530001, "29537240.908")
	f(-7, "-6.356")
	f(MaxQ1Price, fmt.Sprintf("%d.%03d", 908*MaxQ1Price/1000, 908*MaxQ1Price%1000))
	if got := Decimal3(-1 << 63).String(); got != "-9223372036854775.808" {
		t.Errorf("the smallest Decimal3 prints %s", got)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("euros(MaxQ1Price+1) did not panic")
		}
	}()
	euros(MaxQ1Price + 1)
}

func TestRegistry(t *testing.T) {
	var names []string
	for _, q := range Queries() {
		names = append(names, q.Name)
		if q.SQL == "" || q.Build == nil {
			t.Errorf("%s: no SQL or Build", q.Name)
		}
	}
	if !slices.IsSortedFunc(names, func(a, b string) int { return cmp.Compare(queryNumber(a), queryNumber(b)) }) {
		t.Errorf("Queries() not in order: %v", names)
	}
	for _, n := range []string{"q0", "q1", "q2"} {
		if q, ok := Lookup(n); !ok || q.Baseline == nil || q.Windowed {
			t.Errorf("%s: registered %v, baseline %v", n, ok, q.Baseline != nil)
		}
	}
	if _, ok := Lookup("q99"); ok {
		t.Errorf("Lookup(q99) found a query")
	}
	if got := []int{queryNumber("q10"), queryNumber("q9"), queryNumber("x"), queryNumber("qx")}; !slices.Equal(got, []int{10, 9, -1, -1}) {
		t.Errorf("queryNumber: %v", got)
	}
	mustPanic := func(what string, q Query) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("Register(%s) did not panic", what)
			}
		}()
		Register(q)
	}
	mustPanic("a query registered twice", Query{Name: "q0", Build: buildQ0})
	mustPanic("a query without Build", Query{Name: "q-none"})
	mustPanic("a name with a comma", Query{Name: "q,1", Build: buildQ0})
}
