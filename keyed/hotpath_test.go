package keyed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Tests of the hot path's caches: b.last (Get's record, used by Put's fast
// path), t.slot0, b.tables and the compare words of the current key. Each
// would fail if a cache were stale.

func key8(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

func snapValue(t *testing.T, s *Snapshot, kg int, id StateID, key []byte) (string, bool) {
	t.Helper()
	want := string(AppendEntryKey(nil, key, nil))
	var got string
	found := false
	if err := s.ForEach(kg, func(state int, k, v []byte) error {
		if state == int(id) && string(k) == want {
			got, found = string(v), true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got, found
}

// A snapshot taken between Get and Put: the Put must copy (the table and
// the page are now shared), so the snapshot keeps the old value.
func TestLastSnapshotBetweenGetAndPut(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	for i := range 100 {
		b.SetCurrentKey(key8(i))
		vs.Put(int64(i))
	}
	k := key8(7)
	b.SetCurrentKey(k)
	v, _ := vs.Get()
	s1 := b.Snapshot()
	vs.Put(v + 1000) // slow path: copies
	v2, _ := vs.Get()
	s2 := b.Snapshot()
	vs.Put(v2 + 1000)
	vs.Put(v2 + 2000) // after a fast Put, b.last stays valid: fast again
	b.checkAll()
	for _, c := range []struct {
		s    *Snapshot
		want int64
	}{{s1, 7}, {s2, 1007}} {
		got, ok := snapValue(t, c.s, 0, vs.ID(), k)
		if !ok || int64(binary.BigEndian.Uint64([]byte(got))) != c.want {
			t.Fatalf("snapshot reads %x, %v; want %d", got, ok, c.want)
		}
	}
	if got, _ := vs.Get(); got != 3007 {
		t.Fatalf("live value %d, want 3007", got)
	}
	s1.Release()
	s2.Release()
	// A snapshot between two fast Puts (b.last valid across the first).
	vs.Get()
	vs.Put(1)
	s3 := b.Snapshot()
	vs.Put(2)
	if got, _ := snapValue(t, s3, 0, vs.ID(), k); int64(binary.BigEndian.Uint64([]byte(got))) != 1 {
		t.Fatalf("snapshot between two Puts reads %x, want 1", got)
	}
	s3.Release()
	if got, _ := vs.Get(); got != 2 {
		t.Fatalf("live value %d, want 2", got)
	}
}

// Writes between Get and Put (other keys: growth, rehash, compaction,
// relocation) invalidate b.last: the Put must find the record again.
func TestLastInvalidatedByWrites(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1, PageSizeBytes: MinPageSizeBytes})
	vs, _ := NewValueState(b, "v", BytesCodec, StateOptions{})
	b.SetCurrentKey(key8(0))
	vs.Put([]byte("k0-v0000"))
	n := 1
	for round := range 6 {
		b.SetCurrentKey(key8(0))
		if _, ok := vs.Get(); !ok {
			t.Fatal("key 0 lost")
		}
		rehashes, compactions := b.rehashes, b.compactions
		switch round % 3 {
		case 0: // growth: rehash (slot pages move, slot0 changes)
			for range 300 {
				b.SetCurrentKey(key8(n))
				vs.Put([]byte("xxxxxxxx"))
				n++
			}
			if b.rehashes == rehashes {
				t.Fatal("no rehash")
			}
		case 1: // garbage: compaction (records move)
			for j := range 2000 {
				b.SetCurrentKey(key8(1 + j%49))
				vs.Put(bytes.Repeat([]byte{byte(j)}, 8+j%2*100))
			}
			if b.compactions == compactions {
				t.Fatal("no compaction")
			}
		case 2: // deletes: shrink
			for i := 1; i < n; i++ {
				b.SetCurrentKey(key8(i))
				vs.Clear()
			}
			n = 1
		}
		b.SetCurrentKey(key8(0))
		want := fmt.Appendf(nil, "k0-v%04d", round+1)
		// Put without a new Get: b.last is from before the writes above
		// (and SetCurrentKey of the same key cleared it anyway); also try
		// with a Get that precedes the writes directly.
		vs.Put(want)
		b.checkAll()
		if got, _ := vs.Get(); !bytes.Equal(got, want) {
			t.Fatalf("round %d: %q, want %q", round, got, want)
		}
	}
	// Get; writes of another key with the current key unchanged is not
	// possible through the API, but a Delete of the same key is.
	b.SetCurrentKey(key8(0))
	vs.Get()
	vs.Clear()
	vs.Put([]byte("again"))
	if got, ok := vs.Get(); !ok || string(got) != "again" {
		t.Fatalf("after Clear and Put: %q, %v", got, ok)
	}
	b.checkAll()
}

// b.last belongs to one key and one state.
func TestLastKeyAndState(t *testing.T) {
	b, _ := NewBackend(Options{})
	a, _ := NewValueState(b, "a", Int64Codec, StateOptions{})
	c, _ := NewValueState(b, "c", Int64Codec, StateOptions{})
	for i := range 50 {
		b.SetCurrentKey(key8(i))
		a.Put(int64(i))
		c.Put(int64(-i))
	}
	b.SetCurrentKey(key8(3))
	a.Get()
	c.Put(100) // another state: must not overwrite a's record
	b.SetCurrentKey(key8(3))
	a.Get()
	b.SetCurrentKey(key8(4))
	a.Put(200) // another key: must not overwrite key 3's record
	b.SetCurrentKey(key8(3))
	if v, _ := a.Get(); v != 3 {
		t.Fatalf("a[3] = %d, want 3", v)
	}
	if v, _ := c.Get(); v != 100 {
		t.Fatalf("c[3] = %d, want 100", v)
	}
	b.SetCurrentKey(key8(4))
	if v, _ := a.Get(); v != 200 {
		t.Fatalf("a[4] = %d, want 200", v)
	}
	// A Put that does not fit in place (the slow path relocates), then a
	// Put of a shorter value: both through b.last's state.
	bs, _ := NewValueState(b, "b", BytesCodec, StateOptions{})
	bs.Put([]byte("x"))
	bs.Get()
	bs.Put(bytes.Repeat([]byte("y"), 500))
	bs.Get()
	bs.Put([]byte("z"))
	if v, _ := bs.Get(); string(v) != "z" {
		t.Fatalf("b = %q, want z", v)
	}
	b.checkAll()
}

// Keys of every length class of the compare words (<= 8, <= 16, longer
// encoded bytes), with keys that differ only in their last or first byte,
// and SetCurrentKey with the current key's own bytes.
func TestKeyCompareWords(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	var keys [][]byte
	for n := range 40 {
		for _, fill := range []byte{0, 1, 0xff} {
			k := bytes.Repeat([]byte{fill}, n)
			keys = append(keys, k)
			if n > 0 {
				k2 := bytes.Clone(k)
				k2[n-1] ^= 0x80
				k3 := bytes.Clone(k)
				k3[0] ^= 0x01
				keys = append(keys, k2, k3)
			}
		}
	}
	keys = append(keys, bytes.Repeat([]byte("z"), 200), bytes.Repeat([]byte("z"), 201))
	seen := map[string]int64{}
	for i, k := range keys {
		if _, dup := seen[string(k)]; dup {
			continue
		}
		seen[string(k)] = int64(i)
		b.SetCurrentKey(k)
		if _, ok := vs.Get(); ok {
			t.Fatalf("key %x found before it was written", k)
		}
		vs.Put(int64(i))
	}
	for k, want := range seen {
		b.SetCurrentKey([]byte(k))
		if got, ok := vs.Get(); !ok || got != want {
			t.Fatalf("key %x: %d, %v; want %d", k, got, ok, want)
		}
		b.SetCurrentKey(b.CurrentKey()) // aliasing the backend's own copy
		if got, ok := vs.Get(); !ok || got != want || !b.HasCurrentKey([]byte(k)) {
			t.Fatalf("key %x after SetCurrentKey(CurrentKey()): %d, %v", k, got, ok)
		}
	}
	b.checkAll()
}

// slot0 follows the slot pages through growth to several pages and back.
func TestSlot0AcrossRehash(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1, PageSizeBytes: MinPageSizeBytes}) // 128 slots per page
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	const n = 2000
	for i := range n {
		b.SetCurrentKey(key8(i))
		vs.Put(int64(i))
	}
	tb := b.tables[0]
	if len(tb.slots) < 2 || tb.slot0 != nil {
		t.Fatalf("%d slot pages, slot0 set: %v", len(tb.slots), tb.slot0 != nil)
	}
	check := func(live func(int) bool) {
		t.Helper()
		for i := range n {
			b.SetCurrentKey(key8(i))
			v, ok := vs.Get()
			if ok != live(i) || (ok && v != int64(i)) {
				t.Fatalf("key %d: %d, %v", i, v, ok)
			}
		}
	}
	check(func(int) bool { return true })
	for i := 10; i < n; i++ {
		b.SetCurrentKey(key8(i))
		vs.Clear()
	}
	tb = b.tables[0]
	if len(tb.slots) != 1 || tb.slot0 == nil {
		t.Fatalf("after deletes: %d slot pages, slot0 set: %v", len(tb.slots), tb.slot0 != nil)
	}
	check(func(i int) bool { return i < 10 })
	b.checkAll()
}

// The fixed-width path of ValueState (get8, put8): hit, and every way the
// Put after a Get must not write in place.
func TestFixedWidthPath(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	other, _ := NewValueState(b, "o", Uint64Codec, StateOptions{})
	fs, _ := NewValueState(b, "f", Float64Codec, StateOptions{})
	if !vs.plain || !other.plain || !fs.plain {
		t.Fatal("8-byte codecs without TTL do not take the fixed-width path")
	}
	for i := range 100 {
		b.SetCurrentKey(key8(i))
		vs.Put(int64(i))
		other.Put(uint64(i) << 40)
		fs.Put(float64(i) / 4)
	}
	k := key8(7)
	b.SetCurrentKeyHashed(k, HashKey(k))
	// Hit: the Put overwrites in place, with no lookup and no copy.
	v, ok := vs.Get()
	if !ok || v != 7 || b.last.fast != lastFixed {
		t.Fatalf("Get = %d, %v (fast %d); want 7 via the fixed path", v, ok, b.last.fast)
	}
	mods := b.mods
	vs.Put(-v)
	if b.mods != mods+1 || b.last.fast != lastFixed || b.last.mods != b.mods {
		t.Fatal("the Put after Get did not take put8")
	}
	vs.Put(-v - 1) // b.last stays valid after put8: in place again
	if got, _ := vs.Get(); got != -8 {
		t.Fatalf("after two Puts: %d, want -8", got)
	}
	if f, ok := fs.Get(); !ok || f != 7.0/4 {
		t.Fatalf("float64: %v, %v", f, ok)
	}
	fs.Put(-0.5)
	if f, _ := fs.Get(); f != -0.5 {
		t.Fatalf("float64 after Put: %v", f)
	}

	// A snapshot between Get and Put: the page and the table are shared,
	// so the Put copies and the snapshot keeps the old value.
	vs.Get()
	s := b.Snapshot()
	if b.last.fast != 0 {
		t.Fatal("Snapshot did not clear last.fast")
	}
	copies := b.pageCopies
	vs.Put(1000)
	if b.pageCopies == copies {
		t.Fatal("the Put after a snapshot did not copy the page")
	}
	if got, ok := snapValue(t, s, 0, vs.ID(), k); !ok || int64(binary.BigEndian.Uint64([]byte(got))) != -8 {
		t.Fatalf("snapshot reads %x, %v; want -8", got, ok)
	}
	// After the copy, Get and Put are in place again.
	if got, _ := vs.Get(); got != 1000 || b.last.fast != lastFixed {
		t.Fatalf("after the copy: %d, fast %d", got, b.last.fast)
	}
	vs.Put(1001)
	s.Release()

	// A Put of another state between Get and Put: mods changed, so the
	// Put finds its record again (and does not write the other's).
	vs.Get()
	other.Put(5)
	vs.Put(1002)
	if got, _ := other.Get(); got != 5 {
		t.Fatalf("other = %d, want 5", got)
	}
	// A Put of another state right after Get of this one: the id differs.
	vs.Get()
	other.Put(6)
	if got, _ := vs.Get(); got != 1002 {
		t.Fatalf("v = %d, want 1002", got)
	}
	if got, _ := other.Get(); got != 6 {
		t.Fatalf("other = %d, want 6", got)
	}
	// Another key between Get and Put.
	vs.Get()
	b.SetCurrentKey(key8(8))
	vs.Put(88)
	b.SetCurrentKey(k)
	if got, _ := vs.Get(); got != 1002 {
		t.Fatalf("v[7] = %d after a Put of key 8", got)
	}
	b.SetCurrentKey(key8(8))
	if got, _ := vs.Get(); got != 88 {
		t.Fatalf("v[8] = %d, want 88", got)
	}
	// A Put without a Get (b.last is of another key) and of a new key.
	b.SetCurrentKey(key8(500))
	if _, ok := vs.Get(); ok {
		t.Fatal("key 500 found before it was written")
	}
	vs.Put(500)
	if got, ok := vs.Get(); !ok || got != 500 {
		t.Fatalf("v[500] = %d, %v", got, ok)
	}
	// A Delete between Get and Put.
	vs.Get()
	vs.Clear()
	vs.Put(501)
	if got, ok := vs.Get(); !ok || got != 501 {
		t.Fatalf("after Clear and Put: %d, %v", got, ok)
	}
	b.checkAll()
}

// A stored value that is not 8 bytes takes the general path: the codec's
// error panics (ErrCorrupt), and no Put writes through a stale b.last.
func TestFixedWidthCorrupt(t *testing.T) {
	b, _ := NewBackend(Options{})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	b.SetCurrentKey(key8(1))
	b.Put(vs.ID(), []byte("abc"))
	func() {
		defer func() {
			err, _ := recover().(error)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get of a 3-byte value: recovered %v, want ErrCorrupt", err)
			}
		}()
		vs.Get()
	}()
	vs.Put(9)
	if got, ok := vs.Get(); !ok || got != 9 {
		t.Fatalf("after Put: %d, %v", got, ok)
	}
	// Without a current key, get8 panics as Get does.
	b2, _ := NewBackend(Options{})
	vs2, _ := NewValueState(b2, "v", Int64Codec, StateOptions{})
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "no current key") {
				t.Fatalf("Get without a key: recovered %v", r)
			}
		}()
		vs2.Get()
	}()
}

// A TTL state with an 8-byte codec takes the general path (the stored
// value carries its timestamp); its Put after Get never writes through
// b.last's fixed-width fields.
func TestFixedWidthTTL(t *testing.T) {
	clk := &fakeClock{nowMs: 1_000_000}
	b, _ := NewBackend(Options{Clock: clk.now, MaxParallelism: 1})
	ttl, _ := NewValueState(b, "t", Int64Codec, StateOptions{TTL: 10 * time.Second})
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	if ttl.plain || !ttl.fixed {
		t.Fatal("a TTL state must not take get8/put8")
	}
	b.SetCurrentKey(key8(1))
	ttl.Put(1)
	vs.Put(2)
	for i := range 5 {
		clk.nowMs += 5_000
		v, ok := ttl.Get()
		if !ok || v != int64(1+i) {
			t.Fatalf("round %d: %d, %v", i, v, ok)
		}
		if b.last.fast != 0 {
			t.Fatal("a TTL Get set last.fast")
		}
		ttl.Put(v + 1) // refreshes the timestamp
		w, _ := vs.Get()
		s := b.Snapshot()
		vs.Put(w + 1)
		ttl.Put(v + 1)
		if got, _ := snapValue(t, s, 0, vs.ID(), key8(1)); int64(binary.BigEndian.Uint64([]byte(got))) != w {
			t.Fatalf("snapshot of v reads %x, want %d", got, w)
		}
		s.Release()
	}
	clk.nowMs += 10_000
	if _, ok := ttl.Get(); ok {
		t.Fatal("returned an expired value")
	}
	ttl.Put(42)
	if v, ok := ttl.Get(); !ok || v != 42 {
		t.Fatalf("after expiry and Put: %d, %v", v, ok)
	}
	b.checkAll()
}
