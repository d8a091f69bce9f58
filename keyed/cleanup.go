package keyed

import (
	"encoding/binary"
)

// CleanupExpired removes expired entries of TTL states incrementally: it
// examines at most maxSlots hash-table slots, continuing where the previous
// call stopped and wrapping around the key groups, and returns the number
// of entries it removed (including those a compaction it triggered
// dropped). Reads never remove expired entries (a read is not
// a write, and must not copy pages shared with a snapshot); compactions
// drop them as a side effect. The engine calls this between batches with a
// small budget (Flink's incremental cleanup), so TTL state of keys that
// never come back is eventually freed.
func (b *Backend) CleanupExpired(maxSlots int) (removed int) {
	hasTTL := false
	for i := range b.states {
		hasTTL = hasTTL || b.states[i].ttlMs > 0
	}
	if !hasTTL || maxSlots <= 0 {
		return 0
	}
	now := b.opts.Clock()
	ngroups := len(b.dir.tables)
	for budget, visited := maxSlots, 0; budget > 0 && visited <= ngroups; {
		idx := b.cleanIdx
		t := b.dir.tables[idx]
		nslots := 0
		if t != nil && t.slots != nil {
			nslots = 1 << t.bits
		}
		wrote := false
		for b.cleanSlot < nslots && budget > 0 {
			i := b.cleanSlot
			b.cleanSlot++
			budget--
			s := slotAt(t.slots[i>>b.slotShift], i&b.slotMask)
			if s.addr == 0 || s.addr == tombAddr {
				continue
			}
			p, off := b.rec(t, s.addr)
			id := recState(p, off)
			flags := recFlags(p, off)
			ttl := b.states[id].ttlMs
			if ttl == 0 || flags&flagHead != 0 || !expired(recValue(p, off), ttl, now) {
				continue
			}
			t = b.writableTable(idx)
			b.touch(t)
			if flags&flagEntry != 0 {
				enc := recKey(p, off)
				n, m := binary.Uvarint(enc)
				prefix := enc[:m+int(n)]
				b.scratch = append(b.scratch[:0], prefix...)
				k := keyCtx{enc: b.scratch, hash: HashKey(prefix[m:]), idx: idx}
				hat, haddr, _ := b.find(t, headHash(k.hash, id), hwOf(id, flagHead), k.enc, nil)
				if haddr == 0 {
					panic("keyed: corrupt map state: an entry has no head")
				}
				b.unlinkAndRemove(t, i, s.addr, hat, haddr)
			} else {
				b.removeAt(t, i, s.addr)
				t.entries--
				b.count--
			}
			removed++
			wrote = true
		}
		if wrote {
			// Compaction may rebuild the slots; the cursor stays, which at
			// worst skips or revisits some slots of this group.
			removed += b.maybeCompact(t)
		}
		if b.cleanSlot >= nslots {
			b.cleanSlot = 0
			b.cleanIdx = (b.cleanIdx + 1) % ngroups
			visited++
		}
	}
	return removed
}
