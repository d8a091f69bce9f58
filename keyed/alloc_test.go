package keyed

import (
	"encoding/binary"
	"testing"
)

func TestAllocsValueStateHotPath(t *testing.T) {
	b, err := NewBackend(Options{})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := NewValueState(b, "count", Int64Codec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var key [8]byte
	for i := range 1000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(int64(i))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		binary.BigEndian.PutUint64(key[:], uint64(i%1000))
		i++
		b.SetCurrentKey(key[:])
		v, _ := vs.Get()
		vs.Put(v + 1)
	})
	if allocs != 0 {
		t.Fatalf("SetCurrentKey+Get+Put allocates %v times per op, want 0", allocs)
	}
	// The same with open snapshots in between: once each page was copied,
	// writes are in place again.
	s := b.Snapshot()
	for j := range 1000 {
		binary.BigEndian.PutUint64(key[:], uint64(j))
		b.SetCurrentKey(key[:])
		vs.Put(1)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		binary.BigEndian.PutUint64(key[:], uint64(i%1000))
		i++
		b.SetCurrentKey(key[:])
		v, _ := vs.Get()
		vs.Put(v + 1)
	})
	s.Release()
	if allocs != 0 {
		t.Fatalf("with a snapshot open: %v allocs per op, want 0", allocs)
	}
}

func TestAllocsTTLAndMapHotPath(t *testing.T) {
	now := int64(1000)
	b, _ := NewBackend(Options{Clock: func() int64 { return now }})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{TTL: 1 << 40})
	ms, _ := NewMapState(b, "m", Int64Codec, Int64Codec, StateOptions{})
	var key [8]byte
	for i := range 100 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(1)
		ms.Put(int64(i%7), 1)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		binary.BigEndian.PutUint64(key[:], uint64(i%100))
		i++
		b.SetCurrentKey(key[:])
		v, _ := vs.Get()
		vs.Put(v + 1)
		m, _ := ms.Get(int64(i % 7))
		ms.Put(int64(i%7), m+1)
		for k, v := range ms.All() {
			_, _ = k, v
		}
	})
	if allocs != 0 {
		t.Fatalf("TTL value + map state ops allocate %v times, want 0", allocs)
	}
}

// Snapshot allocates exactly the Snapshot struct: a *Snapshot cannot be
// recycled, because Release must stay idempotent on a pointer the caller
// may still hold. Release allocates nothing; neither do the writes that
// follow once the page pool is warm.
func TestAllocsSnapshotRelease(t *testing.T) {
	b, _ := NewBackend(Options{})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	var key [8]byte
	for i := range 10000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(1)
	}
	allocs := testing.AllocsPerRun(100, func() {
		s := b.Snapshot()
		s.Release()
	})
	if allocs != 1 {
		t.Fatalf("Snapshot+Release: %v allocs, want 1 (the Snapshot)", allocs)
	}
}

func TestHasCurrentKey(t *testing.T) {
	b, err := NewBackend(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.HasCurrentKey([]byte("a")) {
		t.Fatal("no key is current yet")
	}
	b.SetCurrentKey([]byte("a"))
	if !b.HasCurrentKey([]byte("a")) || b.HasCurrentKey([]byte("b")) || b.HasCurrentKey([]byte("ab")) {
		t.Fatal("HasCurrentKey disagrees with SetCurrentKey")
	}
	if n := testing.AllocsPerRun(100, func() { b.HasCurrentKey([]byte("a")) }); n != 0 {
		t.Fatalf("HasCurrentKey allocates %v", n)
	}
}
