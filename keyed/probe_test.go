package keyed

import (
	"encoding/binary"
	"testing"
)

// probe's lookups on a table of several slot pages: probe paths that cross
// from one slot page to the next and that wrap from the last slot to the
// first, through tombstones, for each way of comparing keys (findValue's
// compare words, find's bytes, with and without a user key).
func TestProbeAcrossSlotPages(t *testing.T) {
	b, _ := NewBackend(Options{MaxParallelism: 1, PageSizeBytes: MinPageSizeBytes}) // 128 slots per page
	vs, _ := NewValueState(b, "v", Int64Codec, StateOptions{})
	ms, _ := NewMapState(b, "m", Int64Codec, Int64Codec, StateOptions{})
	// crossing and wrapping count the live slots not at their home slot
	// whose path crosses a slot-page boundary and wraps around.
	paths := func() (crossing, wrapping int) {
		tb := b.tables[0]
		for i := range 1 << tb.bits {
			s := slotAt(tb.slots[i>>b.slotShift], i&b.slotMask)
			if s.addr == 0 || s.addr == tombAddr {
				continue
			}
			home := int(s.tag >> (32 - tb.bits))
			if i < home {
				wrapping++
			}
			if i>>b.slotShift != home>>b.slotShift {
				crossing++
			}
		}
		return crossing, wrapping
	}
	n := 0
	for n < 20_000 {
		b.SetCurrentKey(key8(n))
		vs.Put(int64(n))
		ms.Put(int64(n), int64(-n))
		n++
		if n%500 == 0 {
			if c, w := paths(); c > 0 && w > 0 {
				break
			}
		}
	}
	if len(b.tables[0].slots) < 2 {
		t.Fatalf("%d slot pages, want several", len(b.tables[0].slots))
	}
	if c, w := paths(); c == 0 || w == 0 {
		t.Fatalf("after %d keys: %d paths cross a slot page, %d wrap; want both", n, c, w)
	}
	check := func(live func(int) bool) {
		t.Helper()
		for i := range n {
			b.SetCurrentKey(key8(i))
			v, ok := vs.Get() // get8: findValue, several slot pages
			raw, rawOK := b.Get(vs.ID())
			mv, mok := ms.Get(int64(i)) // find with a user key
			if ok != live(i) || rawOK != ok || mok != ok {
				t.Fatalf("key %d: found %v, %v, %v; want %v", i, ok, rawOK, mok, live(i))
			}
			if ok && (v != int64(i) || int64(binary.BigEndian.Uint64(raw)) != int64(i) || mv != int64(-i)) {
				t.Fatalf("key %d: values %d, %x, %d", i, v, raw, mv)
			}
		}
	}
	check(func(int) bool { return true })
	// Deletes leave tombstones on the paths of the keys that remain.
	for i := 0; i < n; i += 3 {
		b.SetCurrentKey(key8(i))
		vs.Clear()
		ms.Clear()
	}
	if b.tables[0].tombs == 0 {
		t.Fatal("no tombstones")
	}
	check(func(i int) bool { return i%3 != 0 })
	b.checkAll()
}
