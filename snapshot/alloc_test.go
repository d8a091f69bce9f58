package snapshot

import (
	"fmt"
	"testing"
)

// TestWriteReadAllocations: the allocations of WriteKeyed and ReadKeyed
// depend on the number of key groups and blocks (and the growth of pooled
// buffers), never on the number of entries: zero allocations per entry.
func TestWriteReadAllocations(t *testing.T) {
	skipAllocationBudgets(t)
	if testing.Short() {
		t.Skip("writes ~4 MiB")
	}
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		s, _ := openStore(t, Options{Compression: c})
		allocs := func(entriesPerGroup int) (write, read float64) {
			v := newCounterView(8, entriesPerGroup) // one block per key group either way
			ckpt := uint64(0)
			var h *KeyedHandle
			write = testing.AllocsPerRun(5, func() {
				ckpt++
				var err error
				if h, err = s.WriteKeyed("job", ckpt, "sc", 0, 8, v, nil); err != nil {
					t.Fatal(err)
				}
			})
			n := 0
			fn := func(int, string, []byte, []byte, uint8) error { n++; return nil }
			read = testing.AllocsPerRun(5, func() {
				if err := s.ReadKeyed("job", h, 0, 8, fn); err != nil {
					t.Fatal(err)
				}
			})
			if n != 6*8*entriesPerGroup {
				t.Fatalf("read %d entries, want %d", n, 6*8*entriesPerGroup)
			}
			return write, read
		}
		smallWrite, smallRead := allocs(100)
		bigWrite, bigRead := allocs(20000) // 200x the entries, 3 MiB raw
		t.Logf("%s: WriteKeyed %.0f → %.0f allocs, ReadKeyed %.0f → %.0f allocs for 200x the entries",
			c, smallWrite, bigWrite, smallRead, bigRead)
		const extraEntries = 6 * 8 * (20000 - 100)
		// Above 256 KiB a checkpoint's blocks are ingested as an sstable
		// (doc.go), and Pebble reads an sstable block that its cache does
		// not hold (one larger than a cache shard, as the uncompressed
		// blocks here are) into fresh buffers: allocations per block
		// (~12 measured), never per entry. One block per key group.
		const perBlock, blocks = 16, 8
		if (bigWrite-smallWrite)/extraEntries > 0.001 || bigRead > smallRead+4+perBlock*blocks {
			t.Errorf("%s: allocations grow with the number of entries: WriteKeyed %.0f → %.0f, ReadKeyed %.0f → %.0f",
				c, smallWrite, bigWrite, smallRead, bigRead)
		}
	}
}

// skipAllocationBudgets skips a test of allocation counts in builds where
// they do not mean anything: -race (sync.Pool drops items on purpose) and
// -tags invariants (our checks and Pebble's, which share the tag, allocate).
func skipAllocationBudgets(t *testing.T) {
	t.Helper()
	if raceEnabled || invariantsEnabled {
		t.Skip("allocation budgets are not checked with -race or -tags invariants")
	}
}

// TestDeltaReadAllocations: reading key groups with delta chains
// allocates per key group and block, never per entry or operation.
func TestDeltaReadAllocations(t *testing.T) {
	skipAllocationBudgets(t)
	s, _ := openStore(t, Options{Incremental: exactPolicy(IncrementalOptions{MaxChainRatio: 10})})
	allocs := func(job string, entriesPerGroup int) float64 {
		m := newDeltaModel(1, "a", "b")
		m.fill(0, 8, entriesPerGroup)
		h := mustWrite(t, s, job, 1, "sc", 0, 8, m, nil)
		commit(t, s, job, 1, h)
		for id := uint64(2); id <= 3; id++ {
			for kg := 0; kg < 8; kg++ {
				for i := 0; i < entriesPerGroup/10; i++ {
					m.set(kg, 0, fmt.Sprintf("k%05d", i*3), fmt.Appendf(nil, "x%d", id))
					m.del(kg, 1, fmt.Sprintf("k%05d", i*3+1))
				}
			}
			h = mustWrite(t, s, job, id, "sc", 0, 8, m, h)
			commit(t, s, job, id, h)
		}
		if h.MaxChain != 2 || h.DeltaKeyGroups != 8 {
			t.Fatalf("%d entries: chains of %d, %d delta key groups; want 2, 8", entriesPerGroup, h.MaxChain, h.DeltaKeyGroups)
		}
		n := 0
		fn := func(int, string, []byte, []byte, uint8) error { n++; return nil }
		a := testing.AllocsPerRun(5, func() {
			if err := s.ReadKeyed(job, h, 0, 8, fn); err != nil {
				t.Fatal(err)
			}
		})
		if n == 0 {
			t.Fatal("read nothing")
		}
		return a
	}
	small, big := allocs("small", 100), allocs("big", 10000) // 100x the entries and operations
	t.Logf("ReadKeyed of delta chains: %.0f → %.0f allocs for 100x the entries", small, big)
	if big > small+4 {
		t.Errorf("allocations grow with the number of entries: %.0f → %.0f", small, big)
	}
}
