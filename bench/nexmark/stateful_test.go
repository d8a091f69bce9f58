package nexmark

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// The stateful queries (q3, q4, q5, q7, q8) are checked like the stateless
// ones — every result compared with a batch computation over
// gen.EventAt — at parallelism 2 with checkpoints every few milliseconds,
// and again across a crash: the job is cancelled once it has committed
// output after three checkpoints, run again from its newest checkpoint,
// and the union of what both runs committed through a two-phase-commit
// sink must be the batch result, each row exactly once.

// statefulEvents is the number of events of every stateful test: 1000 s of
// event time, a hundred 10 s windows.
const statefulEvents = 100_000

// statefulCase describes how to check one stateful query.
type statefulCase struct {
	name string
	// want returns the batch computation's rows over events 0 … n−1,
	// sorted, after summarize.
	want func(n int64) []string
	// collect returns an observer of the query's results and the sorted
	// rows it saw, summarized; txn returns a two-phase-commit sink for the
	// query's result type and the sorted rows it committed, summarized.
	collect func() (observe any, rows func() []string)
	txn     func() (sink any, rows func() []string)
}

// rowsOf formats results as the tests compare them.
func rowsOf[T any](vs []T) []string {
	rows := make([]string, len(vs))
	for i := range vs {
		rows[i] = fmt.Sprintf("%+v", vs[i])
	}
	slices.Sort(rows)
	return rows
}

// collectorOf is collector with a summary: summarize turns the results
// into the rows compared (rowsOf, for queries whose every result is
// compared).
func collectorOf[T any](summarize func([]T) []string) func() (any, func() []string) {
	return func() (any, func() []string) {
		var mu sync.Mutex
		var got []T
		observe := func(v *T) {
			mu.Lock()
			got = append(got, *v)
			mu.Unlock()
		}
		return observe, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return summarize(slices.Clone(got))
		}
	}
}

// txnOf returns a factory of in-memory two-phase-commit sinks of T.
func txnOf[T any](summarize func([]T) []string) func() (any, func() []string) {
	return func() (any, func() []string) {
		s := &memTxnSink[T]{pending: map[string][]T{}}
		return engine.Sink[T](s), func() []string { return summarize(s.committedRows()) }
	}
}

// memTxnSink is a two-phase-commit sink in memory, as the engine's tests
// have one: a writer's records go into its open transaction, which
// pre-commit names and parks in pending; commit (or recovery, for the
// transactions a checkpoint lists) moves them to committed; recovery
// drops every other pending transaction (the strays of a crashed run).
// One sink serves both runs of a crash test, as an external system would.
type memTxnSink[T any] struct {
	mu        sync.Mutex
	committed []T
	pending   map[string][]T
	seq       int
}

func (m *memTxnSink[T]) Recover(states [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range states {
		for _, tx := range strings.Fields(string(st)) {
			name := tx[strings.IndexByte(tx, ':')+1:]
			m.committed = append(m.committed, m.pending[name]...)
			delete(m.pending, name)
		}
	}
	clear(m.pending)
	return nil
}

func (m *memTxnSink[T]) NewWriter(engine.SinkContext) (engine.SinkWriter[T], error) {
	return &memTxnWriter[T]{m: m}, nil
}

func (m *memTxnSink[T]) committedRows() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.committed)
}

type memTxnWriter[T any] struct {
	m       *memTxnSink[T]
	open    []T
	pending []struct {
		id   uint64
		name string
	}
}

func (w *memTxnWriter[T]) Write(v *T) error { w.open = append(w.open, *v); return nil }

func (w *memTxnWriter[T]) PreCommit(id uint64) ([]byte, error) {
	if len(w.open) > 0 {
		w.m.mu.Lock()
		w.m.seq++
		name := fmt.Sprintf("t%d", w.m.seq)
		w.m.pending[name] = w.open
		w.m.mu.Unlock()
		w.pending = append(w.pending, struct {
			id   uint64
			name string
		}{id, name})
		w.open = nil
	}
	var b strings.Builder
	for _, t := range w.pending {
		fmt.Fprintf(&b, "%d:%s ", t.id, t.name)
	}
	return []byte(b.String()), nil
}

func (w *memTxnWriter[T]) Commit(id uint64) error {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	keep := w.pending[:0]
	for _, t := range w.pending {
		if t.id > id {
			keep = append(keep, t)
			continue
		}
		w.m.committed = append(w.m.committed, w.m.pending[t.name]...)
		delete(w.m.pending, t.name)
	}
	w.pending = keep
	return nil
}

func (w *memTxnWriter[T]) Finish() error {
	w.m.mu.Lock()
	w.m.committed = append(w.m.committed, w.open...)
	w.m.mu.Unlock()
	w.open = nil
	return nil
}

func (w *memTxnWriter[T]) Close() error { return nil }

// eachEvent calls f with events 0 … n−1 of the default generator.
func eachEvent(n int64, f func(e *Event)) {
	for i := range n {
		e := gen.EventAt(gen.Config{}, i)
		f(&e)
	}
}

// q4Rows summarizes q4's updating output as the tests compare it: a row
// per update ("category 10: update 7": the average over the first 7
// closed auctions was emitted), which must appear once for each of
// 1 … N, and each category's final average over its N auctions.
func q4Rows(rs []Q4Result) []string {
	final := map[int64]Q4Result{}
	var rows []string
	for _, r := range rs {
		rows = append(rows, fmt.Sprintf("category %d: update %d", r.Category, r.Auctions))
		if f, ok := final[r.Category]; !ok || r.Auctions > f.Auctions {
			final[r.Category] = r
		}
	}
	for c, f := range final {
		rows = append(rows, fmt.Sprintf("category %d: final average %d over %d auctions", c, f.Avg, f.Auctions))
	}
	slices.Sort(rows)
	return rows
}

var statefulCases = []statefulCase{
	{
		name: "q4",
		want: func(n int64) []string {
			// Each auction's highest bid in [dateTime, expires], over the
			// whole input; then per category the truncated mean.
			auctions := map[int64]Auction{}
			var bids []Bid
			eachEvent(n, func(e *Event) {
				switch e.Kind {
				case gen.KindAuction:
					auctions[e.Auction.ID] = e.Auction
				case gen.KindBid:
					bids = append(bids, e.Bid)
				}
			})
			final := map[int64]int64{}
			for _, b := range bids {
				a, ok := auctions[b.Auction]
				if !ok || b.DateTime < a.DateTime || b.DateTime > a.Expires {
					continue
				}
				if m, ok := final[a.ID]; !ok || b.Price > m {
					final[a.ID] = b.Price
				}
			}
			sum, count := map[int64]int64{}, map[int64]int64{}
			for id, f := range final {
				c := auctions[id].Category
				sum[c] += f
				count[c]++
			}
			var out []Q4Result
			for c := range count {
				for k := int64(1); k < count[c]; k++ {
					out = append(out, Q4Result{Category: c, Auctions: k})
				}
				out = append(out, Q4Result{Category: c, Avg: sum[c] / count[c], Auctions: count[c]})
			}
			return q4Rows(out)
		},
		collect: collectorOf(q4Rows),
		txn:     txnOf(q4Rows),
	},
	{
		name: "q7",
		want: func(n int64) []string {
			// Each window's highest price, then every bid from the
			// window's start to its end inclusive (SQL's BETWEEN) at that
			// price.
			var bids []Bid
			highest := map[int64]int64{} // window end → highest price
			eachEvent(n, func(e *Event) {
				if e.Kind != gen.KindBid {
					return
				}
				bids = append(bids, e.Bid)
				end := e.Bid.DateTime/10_000*10_000 + 10_000
				if p, ok := highest[end]; !ok || e.Bid.Price > p {
					highest[end] = e.Bid.Price
				}
			})
			var out []Q7Result
			for end, p := range highest {
				for _, b := range bids {
					if b.Price == p && end-10_000 <= b.DateTime && b.DateTime <= end {
						out = append(out, Q7Result{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra, WindowEnd: end})
					}
				}
			}
			return rowsOf(out)
		},
		collect: collectorOf(rowsOf[Q7Result]),
		txn:     txnOf(rowsOf[Q7Result]),
	},
	{
		name: "q8",
		want: func(n int64) []string {
			// The persons with an auction of theirs in their window.
			type key struct{ id, start int64 }
			persons := map[key]string{}
			sold := map[key]bool{}
			eachEvent(n, func(e *Event) {
				switch e.Kind {
				case gen.KindPerson:
					persons[key{e.Person.ID, e.Person.DateTime / 10_000 * 10_000}] = e.Person.Name
				case gen.KindAuction:
					sold[key{e.Auction.Seller, e.Auction.DateTime / 10_000 * 10_000}] = true
				}
			})
			var out []Q8Result
			for k, name := range persons {
				if sold[k] {
					out = append(out, Q8Result{ID: k.id, Name: name, Start: k.start})
				}
			}
			return rowsOf(out)
		},
		collect: collectorOf(rowsOf[Q8Result]),
		txn:     txnOf(rowsOf[Q8Result]),
	},
	{
		name: "q3",
		want: func(n int64) []string {
			// Every pair of a person of OR, ID or CA and an auction of
			// category 10 that the person sells, in any order of arrival.
			var persons []Person
			var auctions []Auction
			eachEvent(n, func(e *Event) {
				switch {
				case e.Kind == gen.KindPerson && (e.Person.State == "OR" || e.Person.State == "ID" || e.Person.State == "CA"):
					persons = append(persons, e.Person)
				case e.Kind == gen.KindAuction && e.Auction.Category == 10:
					auctions = append(auctions, e.Auction)
				}
			})
			var out []Q3Result
			for _, p := range persons {
				for _, a := range auctions {
					if a.Seller == p.ID {
						out = append(out, Q3Result{Name: p.Name, City: p.City, State: p.State, ID: a.ID})
					}
				}
			}
			return rowsOf(out)
		},
		collect: collectorOf(rowsOf[Q3Result]),
		txn:     txnOf(rowsOf[Q3Result]),
	},
	{
		name: "q5",
		want: func(n int64) []string {
			// Every window [s, s+10 s) with s a multiple of 2 s that holds
			// the bid, counted per auction; then each window's largest count.
			counts := map[int64]map[int64]int64{} // window end → auction → bids
			eachEvent(n, func(e *Event) {
				if e.Kind != gen.KindBid {
					return
				}
				ts := e.Bid.DateTime
				for end := ts - ts%2000 + 2000; end-10_000 <= ts; end += 2000 {
					if counts[end] == nil {
						counts[end] = map[int64]int64{}
					}
					counts[end][e.Bid.Auction]++
				}
			})
			var out []Q5Result
			for end, byAuction := range counts {
				var m int64
				for _, c := range byAuction {
					m = max(m, c)
				}
				for a, c := range byAuction {
					if c == m {
						out = append(out, Q5Result{Auction: a, Num: c, WindowStart: end - 10_000, WindowEnd: end})
					}
				}
			}
			return rowsOf(out)
		},
		collect: collectorOf(rowsOf[Q5Result]),
		txn:     txnOf(rowsOf[Q5Result]),
	},
}

func lookupStateful(t *testing.T, name string) (Query, statefulCase) {
	t.Helper()
	q, ok := Lookup(name)
	if !ok {
		t.Fatalf("query %s is not registered", name)
	}
	for _, tc := range statefulCases {
		if tc.name == name {
			return q, tc
		}
	}
	t.Fatalf("no test case for %s", name)
	return Query{}, statefulCase{}
}

// TestStatefulQueriesMatchBatch runs each stateful query on streamd with
// exactly-once checkpoints every 2 ms, and on its baseline when it has
// one, and compares every result with the batch computation.
func TestStatefulQueriesMatchBatch(t *testing.T) {
	for _, tc := range statefulCases {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := lookupStateful(t, tc.name)
			want := tc.want(statefulEvents)
			if len(want) == 0 {
				t.Fatalf("the batch computation has no results: the test would prove nothing")
			}
			cfg := RunConfig{Events: statefulEvents, Parallelism: 2, CheckpointInterval: 2 * time.Millisecond, CheckpointParent: t.TempDir()}
			observe, rows := tc.collect()
			r, err := runStreamd(context.Background(), q, cfg, observe)
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, "streamd", rows(), want)
			// A run takes a few hundred ms, so the count of 2 ms checkpoints
			// varies with the machine's load; the crash test is the one that
			// waits for three.
			if r.CheckpointsCompleted == 0 {
				t.Errorf("streamd: no checkpoint completed: the test is meant to cross checkpoints")
			}
			if q.Windowed && (r.OutputLatencyResults == nil || *r.OutputLatencyResults != r.Results || *r.OutputLatencyUnmatched != 0) {
				t.Errorf("streamd: latency measured for %d of %d results (%d unmatched)", deref(r.OutputLatencyResults), r.Results, deref(r.OutputLatencyUnmatched))
			}
			t.Logf("%s: %d results, %d checkpoints", tc.name, r.Results, r.CheckpointsCompleted)
			if q.Baseline == nil {
				return
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

// TestStatefulQueriesCrashAndRestore runs each stateful query into an
// in-memory two-phase-commit sink, its source slowed down so that the run
// lasts a few seconds, cancels it (a crash: what was not committed is
// lost) once three checkpoints have completed and some output is
// committed, and runs it again from the newest checkpoint at full speed.
// The union of both runs' committed output must be the batch result:
// every window of every key fires exactly once, every join row appears
// once.
func TestStatefulQueriesCrashAndRestore(t *testing.T) {
	for _, tc := range statefulCases {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := lookupStateful(t, tc.name)
			want := tc.want(statefulEvents)
			txn, committed := tc.txn()
			data := t.TempDir()
			job := func(ratePerSec float64) (*engine.Job, *snapshot.Store) {
				st, err := snapshot.Open(data, snapshot.Options{Compression: snapshot.CompressionS2, Logger: func(string, ...any) {}})
				if err != nil {
					t.Fatal(err)
				}
				j := engine.NewJob("nexmark-"+q.Name, engine.Options{
					Parallelism: 2, Logger: t.Logf,
					Checkpointing: &engine.CheckpointOptions{
						Options: coord.Options{Interval: 10 * time.Millisecond, Mode: engine.ExactlyOnce},
						Store:   st,
					},
				})
				events, err := gen.NewSource(j, SourceName, gen.SourceOptions{Events: statefulEvents, RatePerSec: ratePerSec})
				if err != nil {
					t.Fatal(err)
				}
				sink := NewSink(NewLatencyRecorder(2))
				sink.txn = txn
				if err := q.Build(j, events, sink); err != nil {
					t.Fatal(err)
				}
				return j, st
			}

			// Run 1: about two seconds of input at this rate; cancelled early.
			j, st := job(statefulEvents / 2)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- j.Run(ctx) }()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				// A tenth of the output committed: the restore then has
				// state and timers of open windows to bring back.
				if completedCheckpoints(j) >= 3 && len(committed()) >= len(want)/10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no committed output and three checkpoints within a minute")
				}
			}
			cancel()
			if err := <-done; err != nil && !strings.Contains(err.Error(), "cancel") {
				t.Fatalf("run 1: %v", err)
			}
			st.Close()
			before := len(committed())
			if before >= len(want) {
				t.Fatalf("run 1 committed all %d rows before it was cancelled: the crash did not land mid-way", before)
			}

			// Run 2: from the newest checkpoint, at full speed, to the end.
			j, st = job(0)
			defer st.Close()
			if err := j.Run(context.Background()); err != nil {
				t.Fatalf("run 2: %v", err)
			}
			if j.RestoredFrom() == 0 {
				t.Fatal("run 2 restored no checkpoint")
			}
			got := committed()
			t.Logf("%d rows committed before the crash, %d in all after the restore from checkpoint %d", before, len(got), j.RestoredFrom())
			checkRows(t, "crash and restore", got, want)
		})
	}
}

func completedCheckpoints(j *engine.Job) int {
	n := 0
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" {
			n++
		}
	}
	return n
}
