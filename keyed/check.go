package keyed

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// checkAll verifies every structural invariant of the live state and
// panics naming the first broken one. Tests call it; under -tags
// invariants compactions call checkTable too. O(state).
func (b *Backend) checkAll() {
	if len(b.tables) != len(b.dir.tables) || (len(b.tables) > 0 && &b.tables[0] != &b.dir.tables[0]) {
		panic("keyed: invariant: Backend.tables is not dir.tables")
	}
	entries := 0
	for i, t := range b.dir.tables {
		if t == nil {
			continue
		}
		if t.epoch > b.epoch || t.version > b.epoch {
			panic(fmt.Sprintf("keyed: invariant: group %d: epoch %d / version %d after the current epoch %d", i, t.epoch, t.version, b.epoch))
		}
		b.checkTable(t)
		entries += t.entries
	}
	if entries != b.count {
		panic(fmt.Sprintf("keyed: invariant: Len %d, but the groups hold %d entries", b.count, entries))
	}
	var live int64
	pages := 0
	for _, t := range b.dir.tables {
		if t == nil {
			continue
		}
		for _, r := range t.data[1:] {
			if r.b != nil {
				live += int64(len(r.b))
				pages++
			}
		}
		for _, sp := range t.slots {
			live += int64(len(sp))
			pages++
		}
	}
	if live != b.memLive || pages != b.livePages {
		panic(fmt.Sprintf("keyed: invariant: live pages %d (%d bytes), accounted %d (%d bytes)", pages, live, b.livePages, b.memLive))
	}
}

func (b *Backend) checkTable(t *table) {
	fail := func(format string, args ...any) {
		panic(fmt.Sprintf("keyed: invariant: "+format, args...))
	}
	if len(t.slots) == 1 {
		if len(t.slot0) != len(t.slots[0]) || &t.slot0[0] != &t.slots[0][0] {
			fail("slot0 is not the single slot page")
		}
	} else if t.slot0 != nil {
		fail("slot0 set with %d slot pages", len(t.slots))
	}
	type recInfo struct {
		flags  int
		refs   int
		inList bool
	}
	// The change log: epochs in order, none in the future, none before
	// the log's versions; every address a record of this table.
	prevEpoch := uint64(0)
	for i, e := range t.log {
		ep := logEpochOf(t, e)
		if ep < prevEpoch || ep > b.epoch {
			fail("change log entry %d: epoch %d after %d or beyond the current %d", i, ep, prevEpoch, b.epoch)
		}
		prevEpoch = ep
		if e&logLength != 0 {
			if i == 0 || t.log[i-1]&logAppend == 0 || logRel(t.log[i-1]) != logRel(e) {
				fail("change log entry %d: a length word that does not follow its append entry", i)
			}
			continue
		}
		if e&logAppend != 0 && (i+1 >= len(t.log) || t.log[i+1]&logLength == 0) {
			fail("change log entry %d: an append entry without its length word", i)
		}
		a := uint32(e)
		pi, off := int(a>>b.pageShift), int(a&b.pageMask)
		if pi == 0 || pi >= len(t.data) || t.data[pi].b == nil || off >= t.data[pi].used {
			fail("change log entry %d: address %#x is not a record", i, a)
		}
	}
	if t.logSince > b.epoch || t.logEpoch0 > b.epoch {
		fail("change log since %d / from %d after the current epoch %d", t.logSince, t.logEpoch0, b.epoch)
	}
	recs := map[uint32]*recInfo{}
	used, liveBytes, holes, entries := 0, 0, 0, 0
	for pi, r := range t.data {
		if pi == 0 {
			continue
		}
		if r.b == nil {
			holes++
			continue
		}
		if r.epoch > b.epoch {
			fail("page epoch %d after current %d", r.epoch, b.epoch)
		}
		big := len(r.b) > b.pageSize
		off := 0
		for off < r.used {
			size := recSize(r.b, off)
			if size <= 0 || off+size > r.used || recValLen(r.b, off) > recValCap(r.b, off) {
				fail("malformed record at page %d offset %d", pi, off)
			}
			f := recFlags(r.b, off)
			recs[uint32(pi)<<b.pageShift|uint32(off)] = &recInfo{flags: f}
			if f&flagDead == 0 {
				if !big {
					liveBytes += size
				}
				if f&flagHead == 0 {
					entries++
				}
			}
			off += size
		}
		if off != r.used {
			fail("page %d: records end at %d, used %d", pi, off, r.used)
		}
		if big {
			if r.used != len(r.b) {
				fail("big page %d not exactly one record", pi)
			}
		} else {
			used += r.used
		}
	}
	if used != t.usedBytes || liveBytes != t.liveBytes || holes != t.holes || entries != t.entries {
		fail("accounting: used %d/%d live %d/%d holes %d/%d entries %d/%d",
			used, t.usedBytes, liveBytes, t.liveBytes, holes, t.holes, entries, t.entries)
	}
	count, tombs := 0, 0
	for pi, sp := range t.slots {
		for j := range len(sp) / 8 {
			s := slotAt(sp, j)
			i := pi<<b.slotShift + j
			switch s.addr {
			case 0:
				continue
			case tombAddr:
				tombs++
				continue
			}
			count++
			ri := recs[s.addr]
			if ri == nil || ri.flags&flagDead != 0 {
				fail("slot %d points to %#x, not a live record", i, s.addr)
			}
			ri.refs++
			p, off := b.rec(t, s.addr)
			id := recState(p, off)
			enc := recKey(p, off)
			n, m := binary.Uvarint(enc)
			prefix, uk := enc[:m+int(n)], enc[m+int(n):]
			kh := HashKey(prefix[m:])
			var h uint64
			switch {
			case ri.flags&flagHead != 0:
				h = headHash(kh, id)
				uk = nil
			case ri.flags&flagEntry != 0:
				h = entryHash(kh, id, xxhash.Sum64(uk))
			default:
				h = valueHash(kh, id)
			}
			if uint32(h>>32) != s.tag {
				fail("slot %d: tag %#x, record hashes to %#x", i, s.tag, uint32(h>>32))
			}
			if at, _, _ := b.find(t, h, uint16(le16(p[off:])), prefix, uk); at != i {
				fail("slot %d: lookup finds slot %d", i, at)
			}
		}
	}
	if count != t.count || tombs != t.tombs {
		fail("slots: %d live / %d tombstones, accounted %d / %d", count, tombs, t.count, t.tombs)
	}
	if t.slots != nil && (count+tombs)*4 > 3<<t.bits {
		fail("load %d+%d over 3/4 of %d slots", count, tombs, 1<<t.bits)
	}
	for addr, ri := range recs {
		if ri.flags&flagDead == 0 && ri.refs != 1 {
			fail("live record %#x referenced by %d slots", addr, ri.refs)
		}
	}
	// Map lists.
	for addr, ri := range recs {
		if ri.flags&(flagHead|flagDead) != flagHead {
			continue
		}
		p, off := b.rec(t, addr)
		hv := recValue(p, off)
		first, want := uint32(le32(hv)), le32(hv[4:])
		prefix := recKey(p, off)
		id := recState(p, off)
		prev, n := uint32(0), 0
		for e := first; e != 0; {
			ei := recs[e]
			if ei == nil || ei.flags&(flagEntry|flagDead) != flagEntry || ei.inList {
				fail("map list of head %#x reaches %#x, not a live unlisted entry", addr, e)
			}
			ei.inList = true
			ep, eoff := b.rec(t, e)
			if recState(ep, eoff) != id || string(recKey(ep, eoff)[:len(prefix)]) != string(prefix) {
				fail("map list of head %#x reaches an entry of another key", addr)
			}
			if uint32(le32(ep[eoff+hdrBytes:])) != prev {
				fail("map entry %#x: prev link %#x, want %#x", e, le32(ep[eoff+hdrBytes:]), prev)
			}
			prev = e
			e = uint32(le32(ep[eoff+hdrBytes+4:]))
			n++
		}
		if n != want || n == 0 {
			fail("head %#x: count %d, list has %d", addr, want, n)
		}
	}
	for addr, ri := range recs {
		if ri.flags&(flagEntry|flagDead) == flagEntry && !ri.inList {
			fail("map entry %#x is in no list", addr)
		}
	}
}
