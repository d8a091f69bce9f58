package keyed

import "fmt"

// Records: appending, overwriting, moving and killing the records in a key
// group's data pages (layout.go has their format).

// newRecord appends a record and returns its address, page and offset.
func (b *Backend) newRecord(t *table, hw uint16, prefix, suffix []byte, v val, valCap int, prev, next uint32) (uint32, []byte, int) {
	entry := hw&(flagEntry<<stateBits) != 0
	kl := len(prefix) + len(suffix)
	size := recordBytes(entry, kl, valCap)
	addr, p, off := b.allocRecord(t, size)
	put16(p[off:], int(hw))
	put16(p[off+2:], kl)
	put32(p[off+4:], v.size())
	put32(p[off+8:], valCap)
	ko := off + hdrBytes
	if entry {
		put32(p[ko:], int(prev))
		put32(p[ko+4:], int(next))
		ko += linkBytes
	}
	copy(p[ko:], prefix)
	copy(p[ko+len(prefix):], suffix)
	v.writeTo(p[ko+kl:])
	if size <= b.pageSize {
		t.liveBytes += size
	}
	if hw&(flagHead<<stateBits) == 0 {
		b.logAddr(t, addr)
	}
	return addr, p, off
}

// allocRecord reserves size bytes for a new record in t.
func (b *Backend) allocRecord(t *table, size int) (uint32, []byte, int) {
	if size > b.pageSize {
		pi := b.newPageIndex(t)
		buf := make([]byte, size)
		b.memLive += int64(size)
		b.livePages++
		t.data[pi] = pageRef{b: buf, epoch: b.epoch, used: size}
		return uint32(pi) << b.pageShift, buf, 0
	}
	if t.tail != 0 {
		if r := &t.data[t.tail]; len(r.b)-r.used >= size {
			// Appending needs no copy even when a snapshot shares the
			// page: a snapshot reads only the first used bytes, frozen
			// in its copy of the page table, and these bytes are beyond
			// them (disjoint memory, so no data race either).
			p := r.b
			off := r.used
			r.used += size
			t.usedBytes += size
			return uint32(t.tail)<<b.pageShift | uint32(off), p, off
		}
	}
	n := min(b.pageSize, max(minDataPageBytes, nextPow2(t.usedBytes+size)))
	pi := b.newPageIndex(t)
	buf := b.allocDataPage(n)
	t.data[pi] = pageRef{b: buf, epoch: b.epoch, used: size}
	t.tail = pi
	t.usedBytes += size
	return uint32(pi) << b.pageShift, buf, 0
}

func (b *Backend) newPageIndex(t *table) int {
	if len(t.data) >= b.maxPages {
		panic(fmt.Sprintf("keyed: a key group is full (%d pages of %d bytes): raise MaxParallelism or PageSizeBytes",
			b.maxPages, b.pageSize))
	}
	t.data = append(t.data, pageRef{})
	return len(t.data) - 1
}

// overwrite stores v in the existing record at slot at, in place when it
// fits (and is not much smaller), else in a new record.
func (b *Backend) overwrite(t *table, at int, addr uint32, v val) uint32 {
	p, off := b.rec(t, addr)
	n := v.size()
	vcap := recValCap(p, off)
	if n <= vcap && (n >= vcap/4 || vcap <= 64) {
		p = b.writableData(t, int(addr>>b.pageShift))
		v.writeTo(p[recValOff(p, off):])
		put32(p[off+4:], n)
		b.logAddr(t, addr)
		return addr
	}
	return b.relocate(t, at, addr, v, n)
}

// relocate moves the record at slot at to a new record holding v with the
// given value capacity, fixing the links of a map entry's neighbours (and
// its head when it is first), and returns the new address.
func (b *Backend) relocate(t *table, at int, addr uint32, v val, valCap int) uint32 {
	p, off := b.rec(t, addr)
	hw := uint16(le16(p[off:]))
	key := recKey(p, off)
	entry := hw&(flagEntry<<stateBits) != 0
	var prev, next uint32
	if entry {
		prev = uint32(le32(p[off+hdrBytes:]))
		next = uint32(le32(p[off+hdrBytes+4:]))
	}
	// The new record may be appended to the same page, or that page may be
	// copied first; key and v stay readable either way (they are never
	// overwritten: old bytes of a copied page stay as they were).
	naddr, _, _ := b.newRecord(t, hw, key, nil, v, valCap, prev, next)
	if entry {
		if prev != 0 {
			b.setLink(t, prev, 4, naddr)
		} else {
			b.setHeadFirstOf(t, naddr)
		}
		if next != 0 {
			b.setLink(t, next, 0, naddr)
		}
	}
	b.killRecord(t, addr)
	b.setSlotAddr(t, at, naddr)
	return naddr
}

// removeAt tombstones slot at and kills the record addr it holds.
func (b *Backend) removeAt(t *table, at int, addr uint32) {
	b.setSlotAddr(t, at, tombAddr)
	t.count--
	t.tombs++
	b.killRecord(t, addr)
}

// killRecord marks the record at addr dead (or frees its big page).
func (b *Backend) killRecord(t *table, addr uint32) {
	pi := int(addr >> b.pageShift)
	r := &t.data[pi]
	if len(r.b) > b.pageSize {
		b.dropData(r.b, r.epoch)
		*r = pageRef{}
		t.holes++
		// The record's key is gone with its page: the log could not
		// report its deletion.
		b.rotateLog(t)
		return
	}
	p := b.writableData(t, pi)
	off := int(addr & b.pageMask)
	t.liveBytes -= recSize(p, off)
	p[off+1] |= flagDead << (stateBits - 8)
	if recFlags(p, off)&flagHead == 0 {
		b.logAddr(t, addr)
	}
}
