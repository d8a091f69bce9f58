package window

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/keyed"
)

const ms = time.Millisecond

// script runs records and watermarks through a harness: a record is
// {key, ts, val}, a watermark is {wm}.
func script(h *harness, steps ...[]int64) {
	for _, s := range steps {
		if len(s) == 1 {
			h.advance(s[0])
			continue
		}
		h.record(ev{Key: s[0], TS: s[1], Val: s[2]})
	}
}

func wantOuts(t *testing.T, h *harness, want ...out) {
	t.Helper()
	if !slices.Equal(h.outs, want) {
		t.Fatalf("results\n%v\nwant\n%v", h.outs, want)
	}
}

func TestTumblingWindowBounds(t *testing.T) {
	h := newHarness(t, Tumbling(10*ms).WithOffset(3*ms), countSum(false), 0)
	// [−7, 3), [3, 13), [13, 23): a negative timestamp falls in the window
	// below it, not above.
	script(h, []int64{1, -1, 1}, []int64{1, 2, 2}, []int64{1, 3, 4}, []int64{1, 12, 8}, []int64{1, 13, 16},
		[]int64{2}, []int64{12}, []int64{100})
	wantOuts(t, h,
		out{1, Window{-7, 3}, 2, 3},
		out{1, Window{3, 13}, 2, 12},
		out{1, Window{13, 23}, 1, 16})
}

// TestSessionMerging: sessions that intersect or touch merge, and a record
// can bridge two sessions.
func TestSessionMerging(t *testing.T) {
	h := newHarness(t, Session(10*ms), countSum(true), 0)
	script(h,
		[]int64{7, 0, 1},   // [0, 10)
		[]int64{7, 20, 2},  // [20, 30): apart from [0, 10)
		[]int64{7, 10, 4},  // [10, 20) touches both: [0, 30)
		[]int64{7, 41, 8},  // [41, 51): 41 > 30, apart
		[]int64{7, 31, 16}, // [31, 41) touches [41, 51) but not [0, 30): [31, 51)
		[]int64{29},
	)
	wantOuts(t, h, out{7, Window{0, 30}, 3, 7})
	script(h, []int64{50})
	wantOuts(t, h, out{7, Window{0, 30}, 3, 7}, out{7, Window{31, 51}, 2, 24})
	if n := h.b.Len(); n != 0 {
		t.Fatalf("%d state entries after both sessions fired, want 0", n)
	}
}

// TestAllowedLatenessRefires: a window fires at its end, again for each
// record within its lateness, and drops its state after; a record after
// that is late and counted.
func TestAllowedLatenessRefires(t *testing.T) {
	for _, a := range []Assigner{Tumbling(10 * ms), Sliding(10*ms, 10*ms), Session(10 * ms)} {
		t.Run(a.String(), func(t *testing.T) {
			agg := countSum(true)
			h := newHarness(t, a, agg, 5*ms)
			w := Window{0, 10}
			script(h, []int64{1, 0, 1}, []int64{9})
			wantOuts(t, h, out{1, w, 1, 1})
			script(h, []int64{1, 0, 2}, []int64{13}, []int64{1, 0, 4})
			wantOuts(t, h, out{1, w, 1, 1}, out{1, w, 2, 3}, out{1, w, 3, 7})
			if h.late.Load() != 0 {
				t.Fatalf("%d late records, want 0", h.late.Load())
			}
			script(h, []int64{14}, []int64{1, 0, 8})
			if len(h.outs) != 3 || h.late.Load() != 1 {
				t.Fatalf("after the lateness: %d results (want 3), %d late records (want 1)", len(h.outs), h.late.Load())
			}
			if n := h.b.Len(); n != 0 {
				t.Fatalf("%d state entries after the lateness, want 0", n)
			}
		})
	}
}

// TestLateRecordsDroppedAndCounted, without lateness: a record whose every
// window has fired is dropped; one with a window still open is kept.
func TestLateRecordsDroppedAndCounted(t *testing.T) {
	h := newHarness(t, Sliding(10*ms, 5*ms), countSum(true), 0)
	script(h, []int64{1, 7, 1}, []int64{9}) // [0, 10) fires
	script(h,
		[]int64{1, 3, 2}, // only in [−5, 5) and [0, 10), both fired: late
		[]int64{1, 6, 4}, // in [0, 10) (fired) and [5, 15): kept
		[]int64{100})
	wantOuts(t, h,
		out{1, Window{0, 10}, 1, 1},
		out{1, Window{5, 15}, 2, 5})
	if got := h.late.Load(); got != 1 {
		t.Fatalf("%d late records, want 1", got)
	}
}

// countingCodec counts the accumulators written to state.
type countingCodec struct {
	keyed.Codec[Acc[int64]]
	appends *int
}

func (c countingCodec) Append(dst []byte, a Acc[int64]) []byte {
	*c.appends++
	return c.Codec.Append(dst, a)
}

// TestSlidingPanes: a sliding window whose slide does not divide its size
// is made of gcd(size, slide) panes, each record writes one accumulator,
// and the state of a key stays O(size/pane) however long the stream;
// without Merge, each record writes one per window, as Flink does.
func TestSlidingPanes(t *testing.T) {
	const size, slide, keys = 60, 16, 5 // pane 4: 15 panes a window, a record in 3.75 windows
	for _, merge := range []bool{true, false} {
		agg := countSum(merge)
		writes := 0
		agg.Codec = countingCodec{agg.Codec, &writes}
		h := newHarness(t, Sliding(size*ms, slide*ms), agg, 0)
		m := newModel(h.op.g.assigner(), 0)
		if merge && (h.mode != modePanes || h.op.g.pane != 4) {
			t.Fatalf("mode %d pane %dms, want panes of 4ms", h.mode, h.op.g.pane)
		}
		const records = 20000
		maxLen := 0
		for i := range int64(records) {
			e := ev{Key: i % keys, TS: i/keys + i%3, Val: i}
			h.record(e)
			m.record(e)
			if i%50 == 0 {
				h.advance(i/keys - 3)
				m.advance(i/keys - 3)
				maxLen = max(maxLen, h.b.Len())
			}
		}
		h.advance(math.MaxInt64)
		m.advance(math.MaxInt64)
		compare(t, h, m)
		perKey := float64(maxLen) / keys
		t.Logf("merge=%v: %d accumulator writes for %d records, at most %.1f state entries per key (accumulators and timers)", merge, writes, records, perKey)
		if merge {
			if writes != records {
				t.Fatalf("%d accumulator writes for %d records, want one each", writes, records)
			}
			// Panes over the size and the disorder, 4 ms each, plus
			// about size/slide timers.
			if bound := float64((size+10)/4 + size/slide + 3); perKey > bound {
				t.Fatalf("%.1f state entries per key, want at most %.0f", perKey, bound)
			}
		} else if writes < records*(size/slide) {
			t.Fatalf("%d accumulator writes for %d records without Merge, want one per window (about %d)", writes, records, records*size/slide)
		}
	}
}

// assigner rebuilds the assigner of a geometry, for the model.
func (g geometry) assigner() Assigner {
	if g.kind == KindSession {
		return Session(time.Duration(g.gap) * ms)
	}
	return Sliding(time.Duration(g.size)*ms, time.Duration(g.slide)*ms).WithOffset(time.Duration(g.offset) * ms)
}

// TestZeroAllocsPerRecord: once warm, a record (and the firings it
// leads to) allocates nothing, with a fixed-size accumulator codec.
func TestZeroAllocsPerRecord(t *testing.T) {
	for _, a := range []Assigner{Tumbling(100 * ms), Sliding(100*ms, 30*ms), Session(20 * ms)} {
		t.Run(a.String(), func(t *testing.T) {
			h := newHarness(t, a, countSum(true), 10*ms)
			const keys = 64
			// Tumbling and sliding: each key has a record every 8 ms;
			// sessions: every 64 ms, so that they close.
			i, per := int64(0), int64(8)
			if a.kind == KindSession {
				per = 1
			}
			step := func() {
				e := ev{Key: i % keys, TS: i / per, Val: i}
				if i%7 == 0 {
					e.TS -= 5 // disorder; some within the lateness
				}
				h.record(e)
				if i%64 == 0 {
					h.advance(i/per - 20)
				}
				i++
			}
			for range 100_000 {
				step()
			}
			h.outs = slices.Grow(h.outs[:0], 1<<20)
			if allocs := testing.AllocsPerRun(20_000, step); allocs != 0 {
				t.Fatalf("%.3f allocations per record, want 0", allocs)
			}
			if len(h.outs) == 0 {
				t.Fatal("no window fired while measuring")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	f := func(a Assigner, agg AggregateFunction[ev, Acc[int64], Acc[int64]], opts Options, want ...string) {
		t.Helper()
		_, _, err := plan(a, &agg, &opts)
		if len(want) == 0 {
			if err != nil {
				t.Fatalf("%v: %v", a, err)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%v: error %v does not wrap ErrInvalid", a, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%v: error %q does not mention %q", a, err, w)
			}
		}
	}
	ok := countSum(true)
	f(Tumbling(time.Second), ok, Options{})
	f(Sliding(time.Hour, 7*time.Minute).WithOffset(-time.Minute), ok, Options{AllowedLateness: time.Minute})
	f(Assigner{}, ok, Options{}, "use Tumbling, Sliding or Session")
	f(Tumbling(0), ok, Options{}, "size must be a positive whole number of milliseconds")
	f(Sliding(time.Second, 1500*time.Microsecond), ok, Options{}, "slide must be a positive whole number")
	f(Tumbling(time.Second).WithOffset(time.Second), ok, Options{}, "|offset| must be less than the slide")
	f(Tumbling(time.Second).WithOffset(-time.Second), ok, Options{}, "|offset|")
	f(Session(-time.Second), ok, Options{}, "gap must be a positive whole number")
	// Every problem at once.
	f(Tumbling(time.Second), AggregateFunction[ev, Acc[int64], Acc[int64]]{}, Options{AllowedLateness: -ms},
		"Codec is required", "Create is required", "Add is required", "Result is required", "allowed lateness")
	f(Session(time.Second), countSum(false), Options{}, "needs Merge")
	// Panes of 1 ms in an hour, and 1800 windows per record: too many.
	f(Sliding(time.Hour, 2*time.Second+time.Millisecond), ok, Options{}, "choose a slide that divides the size")
	// Without Merge the same size and a coprime slide are fine when a
	// record is in few windows.
	f(Sliding(time.Hour, 59*time.Minute+time.Millisecond), countSum(false), Options{})
}

func TestBuiltins(t *testing.T) {
	type rec struct {
		I int64
		F float64
	}
	recs := []rec{{3, 1.5}, {-2, 0.25}, {10, -4}, {7, 2}}
	// Fold the first two and the last two, then merge: as panes do.
	fold := func(add func(*rec), merge func()) {
		for i := range recs {
			add(&recs[i])
			if i == 1 {
				merge()
			}
		}
	}
	ints := func(r *rec) int64 { return r.I }
	floats := func(r *rec) float64 { return r.F }
	checkTyped := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
	}
	runTyped := func(agg AggregateFunction[rec, int64, int64]) int64 {
		a, b := agg.Create(), agg.Create()
		cur := &a
		fold(func(r *rec) { agg.Add(cur, r) }, func() { cur = &b })
		agg.Merge(&a, &b)
		x, err := agg.Codec.Decode(agg.Codec.Append(nil, a))
		if err != nil {
			t.Fatal(err)
		}
		return agg.Result(&x)
	}
	checkTyped("count", runTyped(Count[rec]()), int64(4))
	checkTyped("sum", runTyped(Sum(ints)), int64(18))
	checkTyped("min", runTyped(Min(ints)), int64(-2))
	checkTyped("max", runTyped(Max(ints)), int64(10))
	fmin, fmax, favg := Min(floats), Max(floats), Avg(floats)
	x, y, z := fmin.Create(), fmax.Create(), favg.Create()
	for i := range recs {
		fmin.Add(&x, &recs[i])
		fmax.Add(&y, &recs[i])
		favg.Add(&z, &recs[i])
	}
	checkTyped("min float", fmin.Result(&x), -4.0)
	checkTyped("max float", fmax.Result(&y), 2.0)
	checkTyped("avg float", favg.Result(&z), -0.25/4)
	iavg := Avg(ints)
	w := iavg.Create()
	for i := range recs {
		iavg.Add(&w, &recs[i])
	}
	checkTyped("avg int", iavg.Result(&w), 4.5)

	runNamed := func(name string, isFloat bool) Value {
		t.Helper()
		var agg AggregateFunction[rec, Acc[int64], Value]
		var err error
		if isFloat {
			fa, err := Builtin(name, floats)
			if err != nil {
				t.Fatal(err)
			}
			a, b := fa.Create(), fa.Create()
			cur := &a
			fold(func(r *rec) { fa.Add(cur, r) }, func() { cur = &b })
			fa.Merge(&a, &b)
			x, err := fa.Codec.Decode(fa.Codec.Append(nil, a))
			if err != nil {
				t.Fatal(err)
			}
			return fa.Result(&x)
		}
		if agg, err = Builtin(name, ints); err != nil {
			t.Fatal(err)
		}
		a, b := agg.Create(), agg.Create()
		cur := &a
		fold(func(r *rec) { agg.Add(cur, r) }, func() { cur = &b })
		agg.Merge(&a, &b)
		return agg.Result(&a)
	}
	for _, c := range []struct {
		name    string
		isFloat bool
		want    Value
	}{
		{"count", false, Value{Int: 4}},
		{"sum", false, Value{Int: 18}},
		{"min", false, Value{Int: -2}},
		{"max", false, Value{Int: 10}},
		{"avg", false, Value{Float: 4.5, IsFloat: true}},
		{"count", true, Value{Int: 4}},
		{"sum", true, Value{Float: -0.25, IsFloat: true}},
		{"min", true, Value{Float: -4, IsFloat: true}},
		{"max", true, Value{Float: 2, IsFloat: true}},
		{"avg", true, Value{Float: -0.0625, IsFloat: true}},
	} {
		if got := runNamed(c.name, c.isFloat); got != c.want {
			t.Fatalf("Builtin(%q) over floats=%v: %+v, want %+v", c.name, c.isFloat, got, c.want)
		}
	}
	if _, err := Builtin("median", ints); err == nil || !strings.Contains(err.Error(), "count, sum, min, max, avg") {
		t.Fatalf("Builtin(median): %v", err)
	}
	if _, err := Builtin[rec, int64]("sum", nil); err == nil {
		t.Fatal("Builtin(sum) without a field: no error")
	}
}

// FuzzAccCodec: Decode of any bytes is an error wrapping keyed.ErrCorrupt
// or an accumulator that encodes back to the same bytes.
func FuzzAccCodec(f *testing.F) {
	f.Add(AccCodec[int64]().Append(nil, Acc[int64]{Count: 3, V: -7}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ic, fc := AccCodec[int64](), AccCodec[float64]()
		a, err := ic.Decode(b)
		x, ferr := fc.Decode(b)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("int and float codecs disagree on %x: %v, %v", b, err, ferr)
		}
		if err != nil {
			if !errors.Is(err, keyed.ErrCorrupt) {
				t.Fatalf("error %v does not wrap keyed.ErrCorrupt", err)
			}
			return
		}
		if got := ic.Append(nil, a); string(got) != string(b) {
			t.Fatalf("int accumulator %+v encodes to %x, decoded from %x", a, got, b)
		}
		if got := fc.Append(nil, x); string(got) != string(b) {
			t.Fatalf("float accumulator %+v encodes to %x, decoded from %x", x, got, b)
		}
	})
}

// BenchmarkOperator measures the operator alone, on a real backend and
// real timers, per record (firings included): 1000 keys, a record per key
// every 100 ms of event time, the watermark 50 ms behind, advanced every
// 1000 records.
func BenchmarkOperator(b *testing.B) {
	for _, a := range []Assigner{Tumbling(time.Second), Sliding(time.Second, 100*ms), Session(50 * ms)} {
		b.Run(a.kind.String(), func(b *testing.B) {
			h := newHarness(b, a, countSum(true), 0)
			h.op.emit = func(Window, *Acc[int64]) {}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range int64(b.N) {
				h.record(ev{Key: i % 1000, TS: i / 10, Val: i})
				if i%1000 == 999 {
					h.advance(i/10 - 50)
				}
			}
		})
	}
}
