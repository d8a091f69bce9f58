package keyed

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"
)

type fakeClock struct{ nowMs int64 }

func (c *fakeClock) now() int64 { return c.nowMs }

func TestTTLValueState(t *testing.T) {
	clk := &fakeClock{nowMs: 1_000_000}
	b := newBackend(t, Options{Clock: clk.now})
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{TTL: 10 * time.Second}))
	plain := must[*ValueState[int64]](t)(NewValueState(b, "p", Int64Codec, StateOptions{}))
	b.SetCurrentKey([]byte("k"))
	vs.Put(1)
	plain.Put(2)
	clk.nowMs += 9_999
	if v, ok := vs.Get(); !ok || v != 1 {
		t.Fatal("expired too early")
	}
	vs.Put(3) // a write restarts the TTL (OnCreateAndWrite)
	clk.nowMs += 9_999
	if v, ok := vs.Get(); !ok || v != 3 {
		t.Fatal("the write did not refresh the TTL")
	}
	clk.nowMs++
	if _, ok := vs.Get(); ok {
		t.Fatal("returned an expired value (NeverReturnExpired)")
	}
	if v, ok := plain.Get(); !ok || v != 2 {
		t.Fatal("a state without TTL expired")
	}
	// A read does not remove it (reads do not write): it still counts,
	// and a snapshot still has it, with its timestamp.
	if b.Len() != 2 {
		t.Fatalf("Len = %d", b.Len())
	}
	s := b.Snapshot()
	found := false
	kg := b.CurrentKeyGroup()
	s.ForEach(kg, func(state int, key, value []byte) error {
		if StateID(state) == vs.ID() {
			found = true
			ts := int64(binary.LittleEndian.Uint64(value))
			if ts != 1_000_000+9_999 || len(value) != 16 {
				t.Errorf("stored value %x: want timestamp %d then 8 bytes", value, 1_000_000+9_999)
			}
		}
		return nil
	})
	s.Release()
	if !found {
		t.Fatal("ForEach skipped an expired entry")
	}
	// Putting after expiry creates a fresh value.
	vs.Put(4)
	if v, ok := vs.Get(); !ok || v != 4 {
		t.Fatal("Put after expiry")
	}
}

func TestTTLListAndMapState(t *testing.T) {
	clk := &fakeClock{nowMs: 5000}
	b := newBackend(t, Options{Clock: clk.now})
	ls := must[*ListState[int64]](t)(NewListState(b, "l", Int64Codec, StateOptions{TTL: time.Second}))
	ms := must[*MapState[int64, int64]](t)(NewMapState(b, "m", Int64Codec, Int64Codec, StateOptions{TTL: time.Second}))
	b.SetCurrentKey([]byte("k"))
	ls.Add(1)
	ls.Add(2)
	ms.Put(1, 10)
	clk.nowMs += 600
	ls.Add(3) // refreshes the whole list
	ms.Put(2, 20)
	clk.nowMs += 600
	if got := slices.Collect(ls.All()); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("list = %v", got)
	}
	if _, ok := ms.Get(1); ok {
		t.Fatal("map entry 1 should have expired (per-entry TTL)")
	}
	if v, ok := ms.Get(2); !ok || v != 20 {
		t.Fatal("map entry 2 expired too early")
	}
	got := map[int64]int64{}
	for k, v := range ms.All() {
		got[k] = v
	}
	if fmt.Sprint(got) != "map[2:20]" || ms.IsEmpty() {
		t.Fatalf("All = %v", got)
	}
	clk.nowMs += 1000
	if got := slices.Collect(ls.All()); len(got) != 0 {
		t.Fatalf("expired list = %v", got)
	}
	if !ms.IsEmpty() {
		t.Fatal("map not empty after expiry")
	}
	ls.Add(9) // appending to an expired list starts a new one
	if got := slices.Collect(ls.All()); !slices.Equal(got, []int64{9}) {
		t.Fatalf("list = %v", got)
	}
	ms.Put(1, 11) // overwriting an expired entry
	if v, ok := ms.Get(1); !ok || v != 11 {
		t.Fatal("Put after expiry")
	}
	b.checkAll()
}

func TestCleanupExpired(t *testing.T) {
	clk := &fakeClock{nowMs: 1}
	b := newBackend(t, Options{Clock: clk.now, MaxParallelism: 8, PageSizeBytes: MinPageSizeBytes})
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{TTL: time.Second}))
	ms := must[*MapState[int64, int64]](t)(NewMapState(b, "m", Int64Codec, Int64Codec, StateOptions{TTL: time.Second}))
	plain := must[*ValueState[int64]](t)(NewValueState(b, "p", Int64Codec, StateOptions{}))
	if b.CleanupExpired(100) != 0 {
		t.Fatal("removed from an empty backend")
	}
	var key [8]byte
	for i := range 1000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(int64(i))
		plain.Put(int64(i))
		for j := range i % 4 {
			ms.Put(int64(j), int64(i))
		}
	}
	s := b.Snapshot() // cleanup must not disturb an open snapshot
	want, _ := dumpSnapshot(t, s)
	clk.nowMs += 500
	for i := 0; i < 1000; i += 2 { // refresh the even keys
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(int64(i))
		for j := range i % 4 {
			ms.Put(int64(j), int64(i))
		}
	}
	clk.nowMs += 600 // odd keys' entries expired, even keys' not
	before := b.Len()
	removed := 0
	for range 1000 { // 64 000 slots: more than two rounds of all groups
		n := b.CleanupExpired(64)
		if n > 64 {
			t.Fatalf("removed %d with a budget of 64 slots", n)
		}
		removed += n
	}
	if b.CleanupExpired(1<<20) != 0 {
		t.Fatal("a full pass found more")
	}
	// Odd keys: 500 values + map entries 0+2+... (i%4 in {1,3} -> 1 or 3 entries).
	wantRemoved := 500 + 250*1 + 250*3
	if removed != wantRemoved || b.Len() != before-wantRemoved {
		t.Fatalf("removed %d (Len %d -> %d), want %d", removed, before, b.Len(), wantRemoved)
	}
	b.checkAll()
	got, _ := dumpSnapshot(t, s)
	if d := diffModels(want, got); d != "" {
		t.Fatalf("cleanup changed an open snapshot:\n%s", d)
	}
	s.Release()
	for i := range 1000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		_, ok := vs.Get()
		if ok != (i%2 == 0) {
			t.Fatalf("key %d: present = %v", i, ok)
		}
		if _, ok := plain.Get(); !ok {
			t.Fatal("cleanup removed a state without TTL")
		}
	}
}

// TestCompactionDropsExpired: a compaction (triggered by garbage) also
// drops expired entries.
func TestCompactionDropsExpired(t *testing.T) {
	clk := &fakeClock{nowMs: 1}
	b := newBackend(t, Options{Clock: clk.now, MaxParallelism: 1, PageSizeBytes: MinPageSizeBytes})
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{TTL: time.Second}))
	ms := must[*MapState[int64, int64]](t)(NewMapState(b, "m", Int64Codec, Int64Codec, StateOptions{TTL: time.Second}))
	junk := must[*ValueState[[]byte]](t)(NewValueState(b, "junk", BytesCodec, StateOptions{}))
	var key [8]byte
	for i := range 100 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(1)
		ms.Put(1, 1)
		ms.Put(2, 2)
	}
	clk.nowMs += 2000
	b.SetCurrentKey([]byte("junk"))
	for i := range 200 { // garbage: forces compactions
		junk.Put(make([]byte, 100+i))
	}
	if b.Len() != 1 {
		t.Fatalf("Len = %d after compaction, want 1 (expired entries dropped)", b.Len())
	}
	b.checkAll()
}
