package snapshot

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestLoadKeyed: LoadKeyed returns what ReadKeyed streams, in the same
// order, for any number of workers and ranges, reading each block once;
// a damaged block is a corruption error and no entries.
func TestLoadKeyed(t *testing.T) {
	s, _, _, m2 := corruptionFixture(t, CompressionZstd)
	h := m2.Tasks[0].Keyed
	reads := []KeyedRead{{h, 0, 4}, {h, 1, 3}, {h, 3, 4}, {nil, 0, 4}, {h, 2, 2}}
	for _, workers := range []int{0, 1, 3, 16} {
		before := s.BlocksRead()
		loaded, err := s.LoadKeyed("job", reads, workers)
		if err != nil {
			t.Fatal(err)
		}
		var blocks int64
		for i, rd := range reads {
			want := ""
			if rd.Handle != nil {
				want = readAll(t, s, "job", rd.Handle, rd.Start, rd.End)
				for _, r := range rd.Handle.KeyGroups {
					if r.KeyGroup >= rd.Start && r.KeyGroup < rd.End {
						blocks += int64(r.Blocks)
					}
				}
			}
			n := loaded[i].Entries()
			var b strings.Builder
			if err := loaded[i].Drain(func(kg int, state string, key, value []byte) error {
				fmt.Fprintf(&b, "%d %s %x=%x\n", kg, state, key, value)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if b.String() != want || int64(strings.Count(want, "\n")) != n {
				t.Fatalf("workers %d, read %d: Drain gave %d lines (Entries %d), ReadKeyed %d", workers, i,
					strings.Count(b.String(), "\n"), n, strings.Count(want, "\n"))
			}
			if loaded[i].Entries() != 0 {
				t.Fatalf("a drained KeyedEntries holds %d entries", loaded[i].Entries())
			}
		}
		// readAll read the blocks once more for the comparison.
		if got := s.BlocksRead() - before; got != 2*blocks {
			t.Fatalf("workers %d: LoadKeyed read %d blocks, want %d", workers, got-blocks, blocks)
		}
	}

	key := blockKey(nil, "job", 2, "agg", 2, 1)
	val, closer, err := s.db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(val)
	closer.Close()
	bad[len(bad)/2] ^= 0x01
	set(t, s, key, bad)
	loaded, err := s.LoadKeyed("job", reads, 2)
	want := `snapshot: job job, checkpoint 2, scope "agg", key group 2, block 1 (written by checkpoint 2): `
	if loaded != nil || !IsCorruption(err) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("LoadKeyed with a damaged block = %v, %v; want a corruption error starting %q", loaded, err, want)
	}
}
