package window_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/window"
)

// Jobs over the engine: the window operator's results against a plain
// batch computation (group by key and window in a map), late records and
// allowed lateness with a source that waits for the watermark, and (in
// restore_test.go) a crash and restore with a transactional sink.

type event struct {
	Key, TS, Val int64
}

// result is what the test jobs emit per key and window.
type result struct {
	Key, Start, End, Count, Sum int64
}

func (r result) String() string {
	return fmt.Sprintf("key %d [%d, %d): count %d sum %d", r.Key, r.Start, r.End, r.Count, r.Sum)
}

const (
	keys = 7
	// oooMs bounds the disorder of the generated timestamps: the
	// watermark strategy's OutOfOrderness, so no record is late.
	oooMs = 10
	// burst: per key, bursts of 20 records 3 ms apart, a burst every
	// 500 ms, so that sessions with a gap of 30 ms close between bursts
	// and never touch.
	burstLen, burstEveryMs, spacingMs = 20, 500, 3
)

// makeEvent is record i: key i % keys, its nominal time increasing with
// i, minus up to oooMs of disorder.
func makeEvent(i, key int64, e *event) {
	j := i / keys
	jitter := int64(bits.RotateLeft64(uint64(i)*0x9e3779b97f4a7c15, 17) % (oooMs + 1))
	*e = event{Key: key, TS: (j/burstLen)*burstEveryMs + (j%burstLen)*spacingMs - jitter, Val: i%100 - 30}
}

// countSum is a user aggregate: a window's count and sum of Val.
func countSum(merge bool) window.AggregateFunction[event, window.Acc[int64], window.Acc[int64]] {
	agg := window.AggregateFunction[event, window.Acc[int64], window.Acc[int64]]{
		Codec:  window.AccCodec[int64](),
		Create: func() window.Acc[int64] { return window.Acc[int64]{} },
		Add: func(acc *window.Acc[int64], v *event) {
			acc.Count++
			acc.V += v.Val
		},
		Result: func(acc *window.Acc[int64]) window.Acc[int64] { return *acc },
	}
	if merge {
		agg.Merge = func(into, from *window.Acc[int64]) {
			into.Count += from.Count
			into.V += from.V
		}
	}
	return agg
}

func keyOf(ctx *engine.KeyedContext) int64 { return int64(binary.BigEndian.Uint64(ctx.Key())) }

func emitCountSum(ctx *engine.KeyedContext, w window.Window, acc window.Acc[int64], r *result) {
	*r = result{Key: keyOf(ctx), Start: w.Start, End: w.End, Count: acc.Count, Sum: acc.V}
}

// windowed adds the window operator to a job over the generated events
// and a check that every result carries its window's last millisecond as
// its timestamp.
func windowed(t testing.TB, j *engine.Job, src func(engine.SourceContext) (engine.Source[event], error), a window.Assigner, agg string, late *atomic.Int64) engine.Stream[result] {
	s := engine.WithWatermarks(engine.FromSource(j, "source", src), engine.WatermarkStrategy[event]{
		Timestamp: func(e *event) int64 { return e.TS }, OutOfOrderness: oooMs * time.Millisecond, Interval: time.Millisecond,
	})
	ks := engine.KeyBy(s, engine.Int64Key(func(e *event) int64 { return e.Key }))
	opts := window.Options{LateRecords: late}
	var out engine.Stream[result]
	switch agg {
	case "countsum":
		out = window.Aggregate(ks, "window", a, countSum(true), opts, emitCountSum)
	case "countsum-nomerge":
		out = window.Aggregate(ks, "window", a, countSum(false), opts, emitCountSum)
	case "builtin-sum":
		sum, err := window.Builtin("sum", func(e *event) int64 { return e.Val })
		if err != nil {
			t.Fatal(err)
		}
		out = window.Aggregate(ks, "window", a, sum, opts, func(ctx *engine.KeyedContext, w window.Window, v window.Value, r *result) {
			// Count is not computed: the reference's is cleared.
			*r = result{Key: keyOf(ctx), Start: w.Start, End: w.End, Sum: v.Int}
		})
	default:
		t.Fatalf("unknown aggregate %q", agg)
	}
	return engine.Transform(out, "check-timestamp", func(rt *engine.Runtime, next func(*result)) (func(*result), error) {
		return func(r *result) {
			if ts := rt.Timestamp(); ts != r.End-1 {
				panic(fmt.Sprintf("%v has timestamp %d, want its window's last millisecond", r, ts))
			}
			next(r)
		}, nil
	})
}

// reference is the batch computation: every event of [0, n) in every
// window of a that holds it, grouped by key and window in a map. Sessions
// are the sorted timestamps of a key cut where two are more than the gap
// apart (sessions [ts, ts+gap) that touch merge).
func reference(n int64, a window.Assigner) map[[2]int64]result {
	want := map[[2]int64]result{}
	add := func(e event, start, end int64) {
		k := [2]int64{e.Key, start}
		r := want[k]
		r.Key, r.Start, r.End = e.Key, start, end
		r.Count++
		r.Sum += e.Val
		want[k] = r
	}
	byKey := map[int64][]event{}
	for i := range n {
		var e event
		makeEvent(i, i%keys, &e)
		if a.Kind() == window.KindSession {
			byKey[e.Key] = append(byKey[e.Key], e)
			continue
		}
		size, slide, offset := a.Size().Milliseconds(), a.Slide().Milliseconds(), a.Offset().Milliseconds()
		// Every start s ≡ offset (mod slide) with s <= ts < s+size,
		// found by walking down from the first start above ts.
		s := e.TS + slide
		for (s-offset)%slide != 0 {
			s--
		}
		for ; s+size > e.TS; s -= slide {
			if s <= e.TS {
				add(e, s, s+size)
			}
		}
	}
	gap := a.Gap().Milliseconds()
	for _, evs := range byKey {
		sort.Slice(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
		var group []event
		flush := func() {
			if len(group) == 0 {
				return
			}
			start, end := group[0].TS, group[len(group)-1].TS+gap
			for _, e := range group {
				add(e, start, end)
			}
			group = group[:0]
		}
		for _, e := range evs {
			if len(group) > 0 && e.TS > group[len(group)-1].TS+gap {
				flush()
			}
			group = append(group, e)
		}
		flush()
	}
	return want
}

// checkExactlyOnce fails unless got holds each result of want exactly
// once.
func checkExactlyOnce(t *testing.T, got []result, want map[[2]int64]result, countless bool) {
	t.Helper()
	seen := map[[2]int64]result{}
	for _, r := range got {
		k := [2]int64{r.Key, r.Start}
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v fired twice (also as %v)", r, prev)
		}
		seen[k] = r
		w, ok := want[k]
		if countless {
			w.Count = 0
		}
		if !ok || w != r {
			t.Fatalf("result %v, want %v (present %v)", r, w, ok)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d results, want %d", len(seen), len(want))
	}
}

// collectSink makes every record visible at once (the jobs that use it
// run without checkpoints).
type collectSink struct {
	mu  sync.Mutex
	out []result
}

func (c *collectSink) Recover([][]byte) error { return nil }
func (c *collectSink) NewWriter(engine.SinkContext) (engine.SinkWriter[result], error) {
	return collectWriter{c}, nil
}
func (c *collectSink) results() []result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.out)
}

type collectWriter struct{ c *collectSink }

func (w collectWriter) Write(r *result) error {
	w.c.mu.Lock()
	w.c.out = append(w.c.out, *r)
	w.c.mu.Unlock()
	return nil
}
func (collectWriter) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (collectWriter) Commit(uint64) error              { return nil }
func (collectWriter) Finish() error                    { return nil }
func (collectWriter) Close() error                     { return nil }

// TestJobMatchesBatch runs each assigner in a job of parallelism 2 over
// 60 000 events disordered within the watermark's bound, and compares the
// output with the batch computation: every (key, window) exactly once,
// nothing late.
func TestJobMatchesBatch(t *testing.T) {
	const n = 60_000
	for _, c := range []struct {
		a   window.Assigner
		agg string
	}{
		{window.Tumbling(100 * time.Millisecond), "countsum"},
		{window.Tumbling(100 * time.Millisecond).WithOffset(-30 * time.Millisecond), "builtin-sum"},
		{window.Sliding(100*time.Millisecond, 20*time.Millisecond), "countsum"},
		{window.Sliding(100*time.Millisecond, 40*time.Millisecond), "countsum"},         // panes of 20 ms
		{window.Sliding(100*time.Millisecond, 40*time.Millisecond), "countsum-nomerge"}, // a window each
		{window.Sliding(30*time.Millisecond, 70*time.Millisecond), "countsum"},          // gaps between windows
		{window.Session(30 * time.Millisecond), "countsum"},
	} {
		t.Run(c.a.String()+"/"+c.agg, func(t *testing.T) {
			sink := &collectSink{}
			var late atomic.Int64
			j := engine.NewJob("windows", engine.Options{Parallelism: 2, RingCapacity: 256, BatchSize: 32})
			src := sequence.New(sequence.Options[event]{Count: n, Keys: keys, Make: makeEvent})
			engine.ToSink(windowed(t, j, src, c.a, c.agg, &late), "sink", sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, sink.results(), reference(n, c.a), c.agg == "builtin-sum")
			if late.Load() != 0 {
				t.Fatalf("%d late records, want none", late.Load())
			}
		})
	}
}

// gatedSource emits events[:gate], then waits until the source's
// watermark has reached gateWM (so the window operator has seen it: it
// travels in-band ahead of what follows), then emits the rest. One task.
type gatedSource struct {
	events []event
	gate   int
	gateWM int64
	wm     *atomic.Int64
	next   int
}

func (s *gatedSource) Open(engine.SourceContext, []byte) error { return nil }

func (s *gatedSource) Read(buf []event) (int, error) {
	end := len(s.events)
	if s.next < s.gate {
		end = s.gate
	} else if s.wm.Load() < s.gateWM {
		return 0, nil
	}
	n := copy(buf, s.events[s.next:end])
	s.next += n
	if s.next == len(s.events) {
		return n, io.EOF
	}
	return n, nil
}

func (s *gatedSource) Position() ([]byte, error) { return nil, nil }
func (s *gatedSource) Close() error              { return nil }

// TestJobLateRecordsAndAllowedLateness: after the watermark has passed,
// records for windows past their lateness are dropped and counted, and
// records for windows within it fire them again at once.
func TestJobLateRecordsAndAllowedLateness(t *testing.T) {
	var before []event
	for ts := range int64(1050) {
		before = append(before, event{Key: ts % 4, TS: ts, Val: 1})
	}
	// The watermark after before: 1049 − 1. [900, 1000) has fired and is
	// within its lateness (cleanup at 999+50 > 1048); [800, 900) is past
	// it (899+50 <= 1048).
	after := []event{
		{Key: 0, TS: 100, Val: 1}, // late
		{Key: 1, TS: 950, Val: 5}, // fires [900, 1000) of key 1 again
		{Key: 2, TS: 848, Val: 1}, // late
		{Key: 1, TS: 999, Val: 7}, // and again
		{Key: 3, TS: 1049, Val: 1},
	}
	var wm, late atomic.Int64
	wm.Store(engine.MinWatermark)
	sink := &collectSink{}
	j := engine.NewJob("late", engine.Options{
		Parallelism: 2, RingCapacity: 64, BatchSize: 16,
		OnSourceWatermark: func(_ string, _ int, w int64) { wm.Store(w) },
	})
	src := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[event], error) {
		return &gatedSource{events: append(slices.Clone(before), after...), gate: len(before), gateWM: 1048, wm: &wm}, nil
	}, engine.WithParallelism(1))
	src = engine.WithWatermarks(src, engine.WatermarkStrategy[event]{Timestamp: func(e *event) int64 { return e.TS }, Interval: time.Millisecond})
	ks := engine.KeyBy(src, engine.Int64Key(func(e *event) int64 { return e.Key }))
	out := window.Aggregate(ks, "window", window.Tumbling(100*time.Millisecond), countSum(true),
		window.Options{AllowedLateness: 50 * time.Millisecond, LateRecords: &late}, emitCountSum)
	engine.ToSink(out, "sink", sink)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []result
	for key := range int64(4) {
		for start := int64(0); start <= 1000; start += 100 {
			n := int64(25)
			if start == 1000 {
				n = (50 + 3 - key) / 4 // ts 1000..1049
			}
			if start == 1000 && key == 3 {
				n++ // the record at 1049 of after
			}
			want = append(want, result{key, start, start + 100, n, n})
			if key == 1 && start == 900 {
				want = append(want, result{1, 900, 1000, 26, 30}, result{1, 900, 1000, 27, 37})
			}
		}
	}
	got := sink.results()
	order := func(rs []result) {
		slices.SortStableFunc(rs, func(a, b result) int {
			if a.Key != b.Key {
				return int(a.Key - b.Key)
			}
			return int(a.Start - b.Start)
		})
	}
	order(got)
	order(want)
	if !slices.Equal(got, want) {
		t.Fatalf("results\n%v\nwant\n%v", got, want)
	}
	if late.Load() != 2 {
		t.Fatalf("%d late records, want 2", late.Load())
	}
}

// TestJobInvalidWindowFailsRun: a problem of the assigner fails the job
// when it starts, naming the operator.
func TestJobInvalidWindowFailsRun(t *testing.T) {
	j := engine.NewJob("bad", engine.Options{})
	src := sequence.New(sequence.Options[event]{Count: 10, Keys: 1, Make: makeEvent})
	ks := engine.KeyBy(engine.FromSource(j, "source", src), engine.Int64Key(func(e *event) int64 { return e.Key }))
	out := window.Aggregate(ks, "sessions", window.Session(time.Second), countSum(false), window.Options{}, emitCountSum)
	engine.ToSink(out, "sink", engine.Sink[result](&collectSink{}))
	err := j.Run(context.Background())
	if err == nil || !errorContains(err, `window operator "sessions"`, "needs Merge") {
		t.Fatalf("Run: %v", err)
	}
}

func errorContains(err error, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}
