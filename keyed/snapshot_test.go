package keyed

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestSnapshotAPI(t *testing.T) {
	b := newBackend(t, Options{MaxParallelism: 8, Range: KeyGroupRange{2, 6}})
	if b.Range() != (KeyGroupRange{2, 6}) || b.MaxParallelism() != 8 {
		t.Fatal("Range / MaxParallelism")
	}
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{}))
	s0 := b.Snapshot()
	for kg := 2; kg < 6; kg++ {
		if s0.KeyGroupVersion(kg) != 0 || s0.Len(kg) != 0 {
			t.Fatal("an empty group has version 0 and no entries")
		}
	}
	keyOf := func(kg int) []byte {
		for i := 0; ; i++ {
			k := binary.BigEndian.AppendUint64(nil, uint64(i))
			if KeyGroupOf(HashKey(k), 8) == kg {
				return k
			}
		}
	}
	b.SetCurrentKey(keyOf(2))
	vs.Put(1)
	b.SetCurrentKey(keyOf(3))
	vs.Put(1)
	s1 := b.Snapshot()
	// Register after a snapshot: the snapshot's state list is frozen.
	must[*ListState[int64]](t)(NewListState(b, "later", Int64Codec, StateOptions{}))
	if len(s1.States()) != 1 || s1.States()[0] != "v" || s1.Kinds()[0] != KindValue || len(s1.StateOptions()) != 1 {
		t.Fatalf("States %v Kinds %v", s1.States(), s1.Kinds())
	}
	b.SetCurrentKey(keyOf(3))
	vs.Put(2)
	b.Get(0) // reads change nothing
	s2 := b.Snapshot()
	if s1.KeyGroupVersion(2) != s2.KeyGroupVersion(2) {
		t.Fatal("an unchanged group changed version")
	}
	if s1.KeyGroupVersion(3) == s2.KeyGroupVersion(3) {
		t.Fatal("a changed group kept its version")
	}
	if s0.KeyGroupVersion(2) == s1.KeyGroupVersion(2) {
		t.Fatal("a written group kept version 0")
	}
	// Deleting an absent entry is no change.
	b.SetCurrentKey(keyOf(4))
	vs.Clear()
	s3 := b.Snapshot()
	if s3.KeyGroupVersion(4) != 0 {
		t.Fatal("a no-op delete changed the version")
	}
	stop := errors.New("stop")
	calls := 0
	if err := s2.ForEach(3, func(int, []byte, []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("ForEach returned %v after %d calls", err, calls)
	}
	wantPanic(t, "outside the snapshot's range [2, 6)", func() { s2.ForEach(6, nil) })
	for _, s := range []*Snapshot{s0, s1, s2, s3} {
		s.Release()
	}
	s2.Release()
	wantPanic(t, "use of a released Snapshot", func() { s2.ForEach(3, nil) })
	wantPanic(t, "use of a released Snapshot", func() { s2.KeyGroupVersion(3) })
}

// TestMemoryAccounting: pages kept for a snapshot are counted until it is
// released, then recycled.
func TestMemoryAccounting(t *testing.T) {
	b, vs := fillBackend(t, Options{PageSizeBytes: 4096}, 20_000)
	live := b.MemoryBytes()
	if live <= 20_000*29 || b.memRetired != 0 {
		t.Fatalf("MemoryBytes %d for 20 000 entries", live)
	}
	s := b.Snapshot()
	var key [8]byte
	rewrite := func() {
		for i := range 20_000 {
			binary.BigEndian.PutUint64(key[:], uint64(i))
			b.SetCurrentKey(key[:])
			vs.Put(int64(-i))
		}
	}
	rewrite()
	if b.memRetired < live/2 {
		t.Fatalf("retired %d bytes after rewriting everything under a snapshot (live %d)", b.memRetired, live)
	}
	b.checkAll()
	s.Release()
	s = b.Snapshot() // sees the release
	rewrite()        // reuses the pages the first snapshot kept
	s.Release()
	b.refreshSnaps()
	b.reclaimRetired()
	if b.memRetired != 0 {
		t.Fatalf("%d bytes retired with no snapshot open", b.memRetired)
	}
	if got := b.MemoryBytes(); got > 2*live {
		t.Fatalf("MemoryBytes %d, live state %d: the pool is unbounded", got, live)
	}
	b.checkAll()
}
