package keyed

import "encoding/binary"

// The hash table's slots: growth, rehash and insertion. Lookups are in
// probe.go.

// reserveSlots makes room for k more slots, rehashing when the load
// (entries and tombstones) would exceed 3/4. After a rehash live slots fill
// at most half of the table, so a rehash is followed by at least n/4
// inserts or deletes before the next. It reports whether it rehashed.
func (b *Backend) reserveSlots(t *table, k int) bool {
	if t.slots == nil {
		b.rehash(t, minSlotBits)
		return true
	}
	n := 1 << t.bits
	if (t.count+t.tombs+k)*4 <= n*3 {
		return false
	}
	nb := t.bits
	for (t.count+k)*2 > 1<<nb {
		nb++
	}
	b.rehash(t, nb)
	return true
}

// rehash rebuilds t's slots with 1<<nbits slots from the tags alone.
func (b *Backend) rehash(t *table, nbits uint) {
	if nbits > 31 {
		panic("keyed: a key group's hash table exceeds 2^31 slots")
	}
	b.rehashes++
	old := t.slots
	t.setSlots(b.newSlots(nbits), nbits)
	t.tombs = 0
	for _, sp := range old {
		for j := range len(sp) / 8 {
			if s := slotAt(sp, j); s.addr != 0 && s.addr != tombAddr {
				b.placeSlot(t, s)
			}
		}
	}
	for _, sp := range old {
		b.dropSlots(sp)
	}
}

// placeSlot puts s into the first empty slot of its probe path; the slot
// pages must be new (writable).
func (b *Backend) placeSlot(t *table, s slot) {
	mask := 1<<t.bits - 1
	i := int(s.tag >> (32 - t.bits))
	for {
		sp := t.slots[i>>b.slotShift]
		if slotAt(sp, i&b.slotMask).addr == 0 {
			putSlot(sp, i&b.slotMask, s)
			return
		}
		i = (i + 1) & mask
	}
}

// setSlots installs slot pages for 1<<nbits slots (keeping slot0 in step).
func (t *table) setSlots(pages [][]byte, nbits uint) {
	t.slots, t.bits, t.slot0 = pages, nbits, nil
	if len(pages) == 1 {
		t.slot0 = pages[0]
	}
}

func (b *Backend) newSlots(nbits uint) [][]byte {
	n := 1 << nbits
	per := 1 << b.slotShift
	if n < per {
		b.memLive += int64(n * 8)
		b.livePages++
		return [][]byte{make([]byte, n*8)}
	}
	pages := make([][]byte, n/per)
	for i := range pages {
		pages[i] = b.allocDataPage(b.pageSize)
		clear(pages[i])
	}
	return pages
}

// fillSlot stores a new slot at index i (empty or tombstone).
func (b *Backend) fillSlot(t *table, i int, tag, addr uint32) {
	sp := t.slots[i>>b.slotShift]
	if slotAt(sp, i&b.slotMask).addr == tombAddr {
		t.tombs--
	}
	putSlot(sp, i&b.slotMask, slot{tag: tag, addr: addr})
	t.count++
}

func (b *Backend) setSlotAddr(t *table, i int, addr uint32) {
	binary.LittleEndian.PutUint32(t.slots[i>>b.slotShift][(i&b.slotMask)*8+4:], addr)
}
