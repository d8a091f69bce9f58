package bench

import "testing"

// Ordinary Go benchmarks for the "ring" suite, for `go test -bench` and
// pprof. One op is one record.

func BenchmarkRingChanSingle(b *testing.B)     { benchChanSingle(b) }
func BenchmarkRingChanBatch256(b *testing.B)   { benchChanBatch256(b) }
func BenchmarkRingSingle(b *testing.B)         { benchRingSingle(b, false) }
func BenchmarkRingBatch256(b *testing.B)       { benchRingBatch(b, false) }
func BenchmarkRingSingleLocked(b *testing.B)   { benchRingSingle(b, true) }
func BenchmarkRingBatch256Locked(b *testing.B) { benchRingBatch(b, true) }

// TestRingSuiteRuns runs every case of the suite once with a small b.N, so
// that a broken case (a lost record, a hang) fails `go test` rather than
// only `make bench`.
func TestRingSuiteRuns(t *testing.T) {
	cases := Cases("ring")
	if len(cases) != 6 {
		t.Fatalf("ring suite has %d cases, want 6", len(cases))
	}
	restore, err := takeBenchtimeFlag()
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := &row{Case: c}
			for _, n := range []int{1, 255, 256, 257, 10_000} {
				res, err := r.run(n)
				if err != nil {
					t.Fatal(err)
				}
				if res.N != n {
					t.Fatalf("b.N=%d: ran %d iterations", n, res.N)
				}
				// The hand-off allocates nothing per record: a run
				// allocates a bounded, small number of objects at most
				// (the runtime's, e.g. when a goroutine first parks).
				if res.MemAllocs > 16 {
					t.Errorf("b.N=%d: %d allocations in the timed part", n, res.MemAllocs)
				}
			}
		})
	}
}
