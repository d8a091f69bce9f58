package align

import (
	"fmt"

	inv "github.com/streamd/streamd/internal/invariants"
)

// invariants enables expensive self-checks after every state change. It is
// internal/invariants' switch: on with -tags invariants or -race, and
// compiled away otherwise. That package, a leaf of constants, is the only
// streamd import align may have.
const invariants = inv.Enabled

// checkInvariants panics, naming the broken invariant, if the state is not
// one the Aligner can reach. Callers call it only when invariants is true.
func (a *Aligner) checkInvariants() {
	fail := func(format string, args ...any) {
		panic(fmt.Sprintf("align: invariant violated: "+format+"; state: %s", append(args, a)...))
	}
	if a.size < 0 || a.size > len(a.pend) {
		fail("pending size %d not in [0, %d]", a.size, len(a.pend))
	}
	if a.mode == ExactlyOnce && len(a.pend) != 1 {
		fail("exactly-once aligner with %d slots", len(a.pend))
	}
	ended := 0
	for ch := 0; ch < a.numInputs; ch++ {
		if hasBit(a.ended, ch) {
			ended++
		}
	}
	if ended != a.numEnded {
		fail("numEnded %d but %d ended bits", a.numEnded, ended)
	}
	prev := a.done
	for i := 0; i < a.size; i++ {
		s := a.slot(i)
		p := a.pend[s]
		if p.id <= prev {
			fail("pending id %d not above %d (done or previous pending)", p.id, prev)
		}
		prev = p.id
		bits := a.slotBits(s)
		covered, arrived := 0, 0
		for ch := 0; ch < a.numInputs; ch++ {
			got, end := hasBit(bits, ch), hasBit(a.ended, ch)
			if got {
				arrived++
				if a.lastBarrier[ch] < p.id {
					fail("channel %d arrived for %d but its last barrier is %d", ch, p.id, a.lastBarrier[ch])
				}
			}
			if got && end && a.mode == ExactlyOnce {
				fail("channel %d both blocked and ended", ch)
			}
			if got || (end && a.lastBarrier[ch] < p.id) {
				covered++
			}
		}
		if covered != p.covered {
			fail("pending %d covers %d channels but counts %d", p.id, covered, p.covered)
		}
		if covered >= a.numInputs {
			fail("pending %d is complete but still pending", p.id)
		}
		if arrived == 0 {
			fail("pending %d has no arrived channel", p.id)
		}
	}
	for s := range a.pend {
		inUse := false
		for i := 0; i < a.size; i++ {
			if a.slot(i) == s {
				inUse = true
			}
		}
		if inUse {
			continue
		}
		for _, w := range a.slotBits(s) {
			if w != 0 {
				fail("free slot %d has a non-zero bitset", s)
			}
		}
	}
	// Bits beyond numInputs are never set.
	for _, set := range [][]uint64{a.ended, a.arrived} {
		for w := range set {
			base := (w % a.words) * 64
			for b := 0; b < 64; b++ {
				if base+b >= a.numInputs && set[w]&(1<<uint(b)) != 0 {
					fail("bit for channel %d beyond numInputs set", base+b)
				}
			}
		}
	}
}
