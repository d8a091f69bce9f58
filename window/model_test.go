package window

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// step is one input of a script: a record, or a watermark (wm set).
type step struct {
	e     ev
	wm    int64
	isWM  bool
	label string
}

// scenario is an assigner, an aggregate with or without Merge, a lateness,
// and the steps to run.
type scenario struct {
	a        Assigner
	merge    bool
	lateness time.Duration
	steps    []step
}

func (s scenario) String() string {
	return fmt.Sprintf("%v merge=%v lateness=%v (%d steps)", s.a, s.merge, s.lateness, len(s.steps))
}

// run feeds the scenario to the operator and to the model, then the end
// of input (the maximum watermark), and compares them.
func (s scenario) run(t testing.TB) *harness {
	t.Helper()
	h := newHarness(t, s.a, countSum(s.merge), s.lateness)
	m := newModel(s.a, s.lateness)
	keys := map[int64]bool{}
	for _, st := range s.steps {
		if st.isWM {
			h.advance(st.wm)
			m.advance(st.wm)
		} else {
			h.record(st.e)
			m.record(st.e)
			keys[st.e.Key] = true
		}
		// Panes keep one timer per key (its next event), whatever the
		// number of its windows and panes.
		if h.mode == modePanes && h.tm.Len() > len(keys) {
			t.Fatalf("%d timers for %d keys, want at most one per key", h.tm.Len(), len(keys))
		}
	}
	const end = 1<<63 - 1
	h.advance(end)
	m.advance(end)
	compare(t, h, m)
	if n := h.b.Len(); n != 0 {
		t.Fatalf("%d state entries left after the end of input, want 0", n)
	}
	return h
}

// randomScenario draws a stream of events over a few keys whose
// timestamps go up by a few ms each, disordered within ooo ms, with a
// watermark now and then (the largest timestamp − ooo − 1, as a
// bounded-out-of-orderness source makes it) and some records far behind
// it (late, or within the lateness).
func randomScenario(r *rand.Rand, a Assigner, merge bool, lateness time.Duration) scenario {
	s := scenario{a: a, merge: merge, lateness: lateness}
	keys := 1 + r.Int64N(4)
	ooo := r.Int64N(30)
	ts, maxTS := r.Int64N(200)-100, int64(-1<<62)
	for range 300 + r.IntN(300) {
		ts += r.Int64N(7)
		e := ev{Key: r.Int64N(keys), TS: ts - r.Int64N(ooo+1), Val: r.Int64N(100)}
		if r.IntN(15) == 0 && maxTS > -1<<62 {
			// Around the watermark: late, or within the lateness.
			e.TS = maxTS - ooo - r.Int64N(2*lateness.Milliseconds()+20)
		}
		s.steps = append(s.steps, step{e: e})
		maxTS = max(maxTS, e.TS)
		if r.IntN(8) == 0 {
			s.steps = append(s.steps, step{isWM: true, wm: maxTS - ooo - 1})
		}
	}
	return s
}

// assigners are the geometries the model tests draw from: tumbling with
// and without offsets, sliding with the slide dividing the size or not
// (pane = gcd), larger than the size (gaps), and sessions.
var assigners = []Assigner{
	Tumbling(10 * time.Millisecond),
	Tumbling(7 * time.Millisecond).WithOffset(3 * time.Millisecond),
	Tumbling(7 * time.Millisecond).WithOffset(-5 * time.Millisecond),
	Tumbling(1 * time.Millisecond),
	Sliding(20*time.Millisecond, 5*time.Millisecond),
	Sliding(10*time.Millisecond, 4*time.Millisecond),
	Sliding(9*time.Millisecond, 6*time.Millisecond).WithOffset(-2 * time.Millisecond),
	Sliding(5*time.Millisecond, 8*time.Millisecond).WithOffset(1 * time.Millisecond),
	Sliding(12*time.Millisecond, 12*time.Millisecond),
	Session(5 * time.Millisecond),
	Session(1 * time.Millisecond),
	Session(17 * time.Millisecond),
}

// TestMatchesFlinkModel runs random streams with disorder, late records
// and allowed lateness through the operator and the model, for every
// assigner, with and without Merge (sliding windows: panes or one
// accumulator per window).
func TestMatchesFlinkModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, a := range assigners {
		for _, merge := range []bool{true, false} {
			if a.kind == KindSession && !merge {
				continue
			}
			for _, lateness := range []time.Duration{0, 3 * time.Millisecond, 25 * time.Millisecond} {
				// The streams must exercise what they are for: late
				// records, and windows firing again within their lateness.
				var late, refired int64
				for i := range 20 {
					s := randomScenario(r, a, merge, lateness)
					t.Run(fmt.Sprintf("%v/merge=%v/lateness=%v/%d", a, merge, lateness, i), func(t *testing.T) {
						h := s.run(t)
						if want := map[bool]stateMode{true: modePanes, false: modeWindows}[merge || a.size == a.slide]; a.kind == KindSliding && h.mode != want {
							t.Fatalf("mode %d, want %d", h.mode, want)
						}
						late += h.late.Load()
						seen := map[[2]int64]bool{}
						for _, o := range h.outs {
							k := [2]int64{o.Key, o.W.Start}
							if seen[k] {
								refired++
							}
							seen[k] = true
						}
					})
				}
				if late == 0 || (lateness > 0) != (refired > 0) {
					t.Errorf("%v merge=%v lateness=%v: %d late records, %d windows fired again: the streams miss a case", a, merge, lateness, late, refired)
				}
			}
		}
	}
}

// FuzzMatchesFlinkModel draws the assigner, the lateness and the steps
// from the input.
func FuzzMatchesFlinkModel(f *testing.F) {
	f.Add([]byte{0, 10, 10, 0, 0, 0, 1, 1, 5, 2, 7, 0, 9, 3, 1})
	f.Add([]byte{1, 10, 4, 3, 0, 4, 1, 5, 1, 6, 2, 0, 20, 7, 3, 0, 1, 1, 200})
	f.Add([]byte{2, 0, 0, 0, 5, 2, 1, 1, 0, 1, 9, 1, 4, 0, 30, 1, 15, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 7 {
			return
		}
		ms := func(b byte, lo int) time.Duration { return time.Duration(lo+int(b)%20) * time.Millisecond }
		var a Assigner
		switch data[0] % 3 {
		case 0:
			a = Tumbling(ms(data[1], 1))
			a = a.WithOffset(time.Duration(int(data[3])%(2*int(a.size/time.Millisecond)-1)-int(a.size/time.Millisecond)+1) * time.Millisecond)
		case 1:
			a = Sliding(ms(data[1], 1), ms(data[2], 1))
			a = a.WithOffset(time.Duration(int(data[3])%(2*int(a.slide/time.Millisecond)-1)-int(a.slide/time.Millisecond)+1) * time.Millisecond)
		default:
			a = Session(ms(data[4], 1))
		}
		s := scenario{a: a, merge: data[6]&1 == 1 || a.kind == KindSession, lateness: ms(data[5], 0)}
		ts, maxTS := int64(0), int64(-1<<62)
		for i := 7; i+1 < len(data); i += 2 {
			op, x := data[i], data[i+1]
			if op%4 == 0 {
				// A watermark, at most x ms behind the largest timestamp.
				s.steps = append(s.steps, step{isWM: true, wm: maxTS - int64(x%32)})
				continue
			}
			ts += int64(op % 8)
			e := ev{Key: int64(op>>3) % 3, TS: ts - int64(x%64), Val: int64(x)}
			maxTS = max(maxTS, e.TS)
			s.steps = append(s.steps, step{e: e})
		}
		s.run(t)
	})
}
