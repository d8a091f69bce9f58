package window

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/keyed"
)

// The unit tests drive the operator with a real keyed backend and real
// keyed timers, as the engine does (engine.KeyedProcess calls process
// with the record's key current, and onTimer from Timers.AdvanceWatermark),
// and compare what it emits with flinkModel, a literal model of Flink's
// WindowOperator: one accumulator per window, timers per window.

// ev is the test's record: a key, a timestamp and a value to sum.
type ev struct {
	Key int64
	TS  int64
	Val int64
}

// out is one emitted result: the count and the sum of a window's values.
type out struct {
	Key   int64
	W     Window
	Count int64
	Sum   int64
}

func (o out) String() string {
	return fmt.Sprintf("key %d %v: count %d sum %d", o.Key, o.W, o.Count, o.Sum)
}

// countSum is a user aggregate (not a built-in): count and sum of Val,
// the accumulator stored with the built-ins' 16-byte codec. merge false
// leaves Merge out (sliding windows then keep one accumulator per window).
func countSum(merge bool) AggregateFunction[ev, Acc[int64], Acc[int64]] {
	agg := AggregateFunction[ev, Acc[int64], Acc[int64]]{
		Codec:  AccCodec[int64](),
		Create: func() Acc[int64] { return Acc[int64]{} },
		Add: func(acc *Acc[int64], v *ev) {
			acc.Count++
			acc.V += v.Val
		},
		Result: func(acc *Acc[int64]) Acc[int64] { return *acc },
	}
	if merge {
		agg.Merge = func(into, from *Acc[int64]) {
			into.Count += from.Count
			into.V += from.V
		}
	}
	return agg
}

// timersOf adapts keyed.Timers to the operator's timerService, as
// engine.KeyedContext does.
type timersOf struct{ t *keyed.Timers }

func (x timersOf) RegisterEventTimeTimer(ts int64) { x.t.RegisterEventTime(ts) }
func (x timersOf) DeleteEventTimeTimer(ts int64)   { x.t.DeleteEventTime(ts) }

// harness runs one task's operator.
type harness struct {
	t    testing.TB
	b    *keyed.Backend
	tm   *keyed.Timers
	op   *operator[ev, Acc[int64], Acc[int64]]
	late atomic.Int64
	wm   int64
	key  [8]byte
	cur  ev // the record being processed: the engine passes a ring slot
	outs []out
	mode stateMode
	fire func(ts int64)
}

func newHarness(t testing.TB, a Assigner, agg AggregateFunction[ev, Acc[int64], Acc[int64]], lateness time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, wm: minWatermark}
	opts := Options{AllowedLateness: lateness, LateRecords: &h.late}
	g, mode, err := plan(a, &agg, &opts)
	if err != nil {
		t.Fatal(err)
	}
	h.mode = mode
	if h.b, err = keyed.NewBackend(keyed.Options{}); err != nil {
		t.Fatal(err)
	}
	if h.op, err = newOperator(h.b, "w/"+stateName(g, mode), g, mode, agg, &h.late); err != nil {
		t.Fatal(err)
	}
	if h.tm, err = keyed.NewTimers(h.b, "w/timers"); err != nil {
		t.Fatal(err)
	}
	h.op.timers = timersOf{h.tm}
	// The operator's timer callback with the watermark being advanced
	// to, as engine.KeyedContext.CurrentWatermark gives it in a job;
	// built once, so that an advance allocates nothing.
	h.fire = func(ts int64) { h.op.onTimer(ts, h.wm) }
	h.op.emit = func(w Window, o *Acc[int64]) {
		key := int64(binary.BigEndian.Uint64(h.b.CurrentKey()))
		h.outs = append(h.outs, out{Key: key, W: w, Count: o.Count, Sum: o.V})
	}
	return h
}

// minWatermark is engine.MinWatermark (the unit tests need no engine).
const minWatermark = -1 << 63

func (h *harness) record(e ev) {
	binary.BigEndian.PutUint64(h.key[:], uint64(e.Key))
	h.b.SetCurrentKey(h.key[:])
	h.cur = e
	h.op.process(&h.cur, e.TS, h.wm)
}

func (h *harness) advance(wm int64) {
	if wm <= h.wm {
		return
	}
	h.wm = wm
	h.tm.AdvanceWatermark(wm, h.fire)
}

// flinkModel is Flink's WindowOperator with EventTimeTrigger and allowed
// lateness, written from its source without panes: one accumulator per
// (key, window), a window fires when the watermark passes its
// MaxTimestamp, fires again for each record within its lateness, and is
// dropped when the watermark passes its cleanup time. Sessions merge as
// MergingWindowSet and TimeWindow.mergeWindows do.
type flinkModel struct {
	kind                     Kind
	size, slide, offset, gap int64
	lateness                 int64
	wm                       int64
	state                    map[int64]map[Window]*Acc[int64]
	outs                     []out
	late                     int64
}

func newModel(a Assigner, lateness time.Duration) *flinkModel {
	return &flinkModel{
		kind: a.kind, size: a.size.Milliseconds(), slide: a.slide.Milliseconds(), offset: a.offset.Milliseconds(),
		gap: a.gap.Milliseconds(), lateness: lateness.Milliseconds(), wm: minWatermark,
		state: map[int64]map[Window]*Acc[int64]{},
	}
}

// assign is Flink's assignWindows for tumbling and sliding windows.
func (m *flinkModel) assign(ts int64) []Window {
	rem := (ts - m.offset) % m.slide
	if rem < 0 {
		rem += m.slide
	}
	var ws []Window
	for start := ts - rem; start > ts-m.size; start -= m.slide {
		ws = append(ws, Window{start, start + m.size})
	}
	return ws
}

func (m *flinkModel) isLate(w Window) bool { return w.MaxTimestamp()+m.lateness <= m.wm }

func (m *flinkModel) record(e ev) {
	wins := m.state[e.Key]
	if wins == nil {
		wins = map[Window]*Acc[int64]{}
		m.state[e.Key] = wins
	}
	add := func(w Window) {
		acc := wins[w]
		if acc == nil {
			acc = &Acc[int64]{}
			wins[w] = acc
		}
		acc.Count++
		acc.V += e.Val
		if w.MaxTimestamp() <= m.wm {
			m.outs = append(m.outs, out{e.Key, w, acc.Count, acc.V})
		}
	}
	skipped := true
	if m.kind == KindSession {
		n := Window{e.TS, e.TS + m.gap}
		// mergeWindows: sort by start (Java's stable sort: the new
		// window after the existing ones with its start), sweep, and
		// cover each window that intersects the running cover.
		type cand struct {
			w     Window
			isNew bool
		}
		var all []cand
		for w := range wins {
			all = append(all, cand{w, false})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].w.Start < all[j].w.Start })
		all = append(all, cand{n, true})
		sort.SliceStable(all, func(i, j int) bool { return all[i].w.Start < all[j].w.Start })
		var groups [][]cand
		var covers []Window
		for _, c := range all {
			if last := len(groups) - 1; last >= 0 && covers[last].Start <= c.w.End && covers[last].End >= c.w.Start {
				groups[last] = append(groups[last], c)
				covers[last] = Window{min(covers[last].Start, c.w.Start), max(covers[last].End, c.w.End)}
				continue
			}
			groups = append(groups, []cand{c})
			covers = append(covers, c.w)
		}
		actual := n
		for gi, g := range groups {
			hasNew := false
			for _, c := range g {
				hasNew = hasNew || c.isNew
			}
			if !hasNew || len(g) == 1 {
				continue
			}
			actual = covers[gi]
			merged := &Acc[int64]{}
			for _, c := range g {
				if !c.isNew {
					merged.Count += wins[c.w].Count
					merged.V += wins[c.w].V
					delete(wins, c.w)
				}
			}
			wins[actual] = merged
		}
		if !m.isLate(actual) {
			skipped = false
			add(actual)
		}
	} else {
		for _, w := range m.assign(e.TS) {
			if m.isLate(w) {
				continue
			}
			skipped = false
			add(w)
		}
	}
	if skipped && e.TS+m.lateness <= m.wm {
		m.late++
	}
}

func (m *flinkModel) advance(wm int64) {
	if wm <= m.wm {
		return
	}
	// Keys in the order the engine's timers fire them does not matter:
	// results are compared per key.
	for key, wins := range m.state {
		var due []Window
		for w := range wins {
			if w.MaxTimestamp() > m.wm && w.MaxTimestamp() <= wm {
				due = append(due, w)
			}
		}
		sort.Slice(due, func(i, j int) bool { return due[i].End < due[j].End })
		for _, w := range due {
			m.outs = append(m.outs, out{key, w, wins[w].Count, wins[w].V})
		}
		for w := range wins {
			if w.MaxTimestamp()+m.lateness <= wm {
				delete(wins, w)
			}
		}
	}
	m.wm = wm
}

// perKey groups results by key, in emission order.
func perKey(outs []out) map[int64][]out {
	m := map[int64][]out{}
	for _, o := range outs {
		m[o.Key] = append(m[o.Key], o)
	}
	return m
}

// compare fails when the operator's results differ from the model's: per
// key the same results in the same order, and the same late count.
func compare(t testing.TB, h *harness, m *flinkModel) {
	t.Helper()
	got, want := perKey(h.outs), perKey(m.outs)
	for key, w := range want {
		g := got[key]
		for i := range max(len(g), len(w)) {
			switch {
			case i >= len(g):
				t.Fatalf("key %d: result %d missing: want %v (%d results, want %d)", key, i, w[i], len(g), len(w))
			case i >= len(w):
				t.Fatalf("key %d: result %d is extra: %v (%d results, want %d)", key, i, g[i], len(g), len(w))
			case g[i] != w[i]:
				t.Fatalf("key %d: result %d is %v, want %v", key, i, g[i], w[i])
			}
		}
	}
	for key, g := range got {
		if _, ok := want[key]; !ok {
			t.Fatalf("key %d: %d results, want none: first %v", key, len(g), g[0])
		}
	}
	if h.late.Load() != m.late {
		t.Fatalf("%d late records counted, want %d", h.late.Load(), m.late)
	}
}
