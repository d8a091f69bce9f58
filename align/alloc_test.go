package align

import (
	"fmt"
	"testing"
)

// TestZeroAllocs checks the allocation budget: no call allocates at steady
// state, in either mode, including aborts, cancellations, evictions and
// end-of-input.
func TestZeroAllocs(t *testing.T) {
	check := func(name string, f func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		const inputs = 100 // two bitset words
		a := New(inputs, mode)
		id := uint64(0)
		check(mode.String()+" full alignment", func() {
			id++
			for ch := 0; ch < inputs; ch++ {
				if d := a.Barrier(ch, id); ch == inputs-1 && d.Snapshot != id {
					panic("no snapshot")
				}
			}
		})
		check(mode.String()+" barrier then cancel", func() {
			id++
			a.Barrier(0, id)
			a.Barrier(1, id)
			if d := a.Cancel(2, id); d.Abort != id {
				panic("no abort")
			}
		})
		check(mode.String()+" barrier then abandon", func() {
			id++
			a.Barrier(0, id)
			if d := a.Abandon(id); d.Abort != id {
				panic("no abort")
			}
			id++
			a.Abandon(id) // newer than anything seen
		})
		check(mode.String()+" newer barrier (abort or eviction)", func() {
			// Alternate channels: in ExactlyOnce each barrier abandons the
			// previous one, whose channel is then unblocked.
			id++
			a.Barrier(int(id%2), id)
		})
		check(mode.String()+" stale barrier and cancel", func() {
			id++
			a.Barrier(3, id) // channel 3 first: the rest are stale below
			a.Cancel(4, id)
			a.Barrier(5, id)
			a.Cancel(6, id-1)
		})
		check(mode.String()+" Blocked/Aligning/Ended", func() {
			_ = a.Blocked(7)
			_, _ = a.Aligning()
			_ = a.Ended(8)
			_ = a.AllEnded()
		})
		// End-of-input: a fresh channel each run (AllocsPerRun calls f runs+1
		// times), each completing a pending checkpoint.
		b := New(300, mode)
		b.Barrier(0, 1)
		next := 1
		check(mode.String()+" end of input", func() {
			b.EndOfInput(next)
			next++
		})
	}
}

func BenchmarkAlignment(b *testing.B) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		for _, inputs := range []int{2, 8, 64, 512} {
			b.Run(fmt.Sprintf("%v/inputs=%d", mode, inputs), func(b *testing.B) {
				a := New(inputs, mode)
				id := uint64(0)
				b.ReportAllocs()
				for b.Loop() {
					id++
					for ch := 0; ch < inputs; ch++ {
						a.Barrier(ch, id)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*inputs), "ns/barrier")
			})
		}
	}
}

// BenchmarkAbortNewer measures a barrier that abandons the checkpoint in
// progress (ExactlyOnce) or evicts the oldest of a full tracker
// (AtLeastOnce).
func BenchmarkAbortNewer(b *testing.B) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		b.Run(mode.String(), func(b *testing.B) {
			a := New(64, mode)
			id := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				id++
				a.Barrier(int(id%2), id)
			}
		})
	}
}

func BenchmarkCancel(b *testing.B) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		b.Run(mode.String(), func(b *testing.B) {
			a := New(64, mode)
			id := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				id++
				a.Barrier(0, id)
				a.Cancel(1, id)
			}
		})
	}
}

// BenchmarkBlocked measures the check a task makes before reading a channel.
func BenchmarkBlocked(b *testing.B) {
	a := New(64, ExactlyOnce)
	a.Barrier(5, 1)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for ch := 0; ch < 64; ch++ {
			if a.Blocked(ch) {
				n++
			}
		}
	}
	if n == 0 {
		b.Fatal("channel 5 not blocked")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/call")
}
