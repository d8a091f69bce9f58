package keyed

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// maintDue reports whether maybeCompact(t) would do anything.
func (b *Backend) maintDue(t *table) bool {
	garbage := t.usedBytes - t.liveBytes
	return (garbage > t.liveBytes && garbage >= 2*b.pageSize) || (t.holes >= 64 && 2*t.holes > len(t.data)) ||
		(t.slots != nil && t.bits > minSlotBits+3 && t.count*16 < 1<<t.bits)
}

// maybeCompact compacts t when at least half of its small pages' bytes are
// dead, or many big pages were freed, and shrinks its slots when they are
// mostly empty. It returns the number of expired entries the compaction
// dropped.
//
// Afterwards maintDue(t) is false (put8 relies on it): compaction leaves
// no garbage and no holes, and the slots are shrunk also after a
// compaction (which sizes them before it drops expired entries).
func (b *Backend) maybeCompact(t *table) int {
	dropped := 0
	garbage := t.usedBytes - t.liveBytes
	if (garbage > t.liveBytes && garbage >= 2*b.pageSize) || (t.holes >= 64 && 2*t.holes > len(t.data)) {
		dropped = b.compact(t)
	}
	if t.slots != nil && t.bits > minSlotBits+3 && t.count*16 < 1<<t.bits {
		b.rehash(t, slotBitsFor(t.count))
	}
	if invariants && b.maintDue(t) {
		panic("keyed: invariant: maintenance still due after maybeCompact")
	}
	return dropped
}

// slotBitsFor is the smallest table (at least 1<<minSlotBits slots) that n
// live slots fill at most half of.
func slotBitsFor(n int) uint {
	nb := uint(minSlotBits)
	for n*2 > 1<<nb {
		nb++
	}
	return nb
}

// compact rewrites key group t (private) into fresh pages: live records
// only, values trimmed to their length, expired TTL entries dropped, map
// lists relinked, the slot table sized for the survivors. Old pages are
// never written (a snapshot may share them); they are dropped afterwards.
// Big pages move to the new page table without being copied. It costs
// O(live entries of the group) and runs only when at least half of the
// group's bytes are dead, so its cost is amortized over the writes that
// made them dead.
func (b *Backend) compact(t *table) (dropped int) {
	b.compactions++
	// The records get new addresses: the change log cannot say what
	// changed across a compaction (changes.go).
	b.rotateLog(t)
	saved := b.noLog
	b.noLog = true
	defer func() { b.noLog = saved }()
	oldSlots, oldData := t.slots, t.data
	hasTTL := false
	for i := range b.states {
		hasTTL = hasTTL || b.states[i].ttlMs > 0
	}
	var now int64
	if hasTTL {
		now = b.opts.Clock()
	}
	isExpired := func(p []byte, off int) bool {
		ttl := b.states[recState(p, off)].ttlMs
		return ttl > 0 && expired(recValue(p, off), ttl, now)
	}

	t.data = make([]pageRef, 1, len(oldData)/2+2)
	t.tail, t.liveBytes, t.usedBytes, t.holes = 0, 0, 0, 0
	t.setSlots(b.newSlots(slotBitsFor(t.count)), slotBitsFor(t.count))
	t.count, t.tombs = 0, 0
	oldEntries := t.entries
	t.entries = 0

	at := func(addr uint32) ([]byte, int) {
		return oldData[addr>>b.pageShift].b, int(addr & b.pageMask)
	}
	// move copies the record at addr (old) into t, or moves its big page.
	move := func(addr uint32, prev, next uint32) uint32 {
		pi := int(addr >> b.pageShift)
		if r := &oldData[pi]; len(r.b) > b.pageSize {
			npi := b.newPageIndex(t)
			t.data[npi] = *r
			*r = pageRef{} // now owned by t: not to be dropped below
			naddr := uint32(npi) << b.pageShift
			if recFlags(t.data[npi].b, 0)&flagEntry != 0 {
				b.setLink(t, naddr, 0, prev)
				b.setLink(t, naddr, 4, next)
			}
			return naddr
		}
		p, off := at(addr)
		hw := uint16(le16(p[off:]))
		v := recValue(p, off)
		naddr, _, _ := b.newRecord(t, hw, recKey(p, off), nil, val{a: v}, len(v), prev, next)
		return naddr
	}

	for _, sp := range oldSlots {
		for j := range len(sp) / 8 {
			s := slotAt(sp, j)
			if s.addr == 0 || s.addr == tombAddr {
				continue
			}
			p, off := at(s.addr)
			flags := recFlags(p, off)
			switch {
			case flags&flagEntry != 0:
				// moved with its head
			case flags&flagHead != 0:
				id := recState(p, off)
				prefix := recKey(p, off)
				_, m := binary.Uvarint(prefix)
				keyHash := HashKey(prefix[m:])
				var first, last uint32
				n := 0
				for e := uint32(le32(recValue(p, off))); e != 0; {
					ep, eoff := at(e)
					next := uint32(le32(ep[eoff+hdrBytes+4:]))
					if isExpired(ep, eoff) {
						e = next
						continue
					}
					uk := recKey(ep, eoff)[len(prefix):]
					h := entryHash(keyHash, id, xxhash.Sum64(uk))
					naddr := move(e, last, 0)
					if last != 0 {
						b.setLink(t, last, 4, naddr)
					} else {
						first = naddr
					}
					last = naddr
					b.placeSlot(t, slot{tag: uint32(h >> 32), addr: naddr})
					t.count++
					t.entries++
					n++
					e = next
				}
				if n == 0 {
					continue
				}
				var hv [8]byte
				binary.LittleEndian.PutUint32(hv[:], first)
				binary.LittleEndian.PutUint32(hv[4:], uint32(n))
				naddr, _, _ := b.newRecord(t, uint16(le16(p[off:])), prefix, nil, val{a: hv[:]}, 8, 0, 0)
				b.placeSlot(t, slot{tag: s.tag, addr: naddr})
				t.count++
			default:
				if isExpired(p, off) {
					continue
				}
				naddr := move(s.addr, 0, 0)
				b.placeSlot(t, slot{tag: s.tag, addr: naddr})
				t.count++
				t.entries++
			}
		}
	}
	dropped = oldEntries - t.entries
	b.count -= dropped
	for _, r := range oldData[1:] {
		if r.b != nil {
			b.dropData(r.b, r.epoch)
		}
	}
	for _, sp := range oldSlots {
		b.dropSlots(sp)
	}
	if invariants {
		b.checkTable(t)
	}
	return dropped
}
