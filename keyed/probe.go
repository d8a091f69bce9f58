package keyed

import "encoding/binary"

// Lookups. A key group's hash table is open addressing with linear probing
// (layout.go): a record's probe path starts at the slot indexed by the top
// t.bits bits of its tag and ends at the first empty slot. probe is the one
// loop that walks it; find (any record, keys compared as bytes) and
// findValue (a value record of the current key, compared with the key's
// compare words) are its two ways to compare keys. get8 keeps an inline
// copy for its common case (see there).

// find looks up the record with header word hw and encoded key
// prefix||suffix, whose hash is h. It returns its slot index and address
// (-1, 0 when absent) and the first free (empty or tombstone) slot index on
// the probe path (-1 when the table has no slots).
func (b *Backend) find(t *table, h uint64, hw uint16, prefix, suffix []byte) (at int, addr uint32, free int) {
	if t.slots == nil {
		return -1, 0, -1
	}
	return b.probe(t, uint32(h>>32), uint32(hw)|uint32(len(prefix)+len(suffix))<<16, nil, prefix, suffix)
}

// findValue is find for a value record (no user key, flags 0) of the
// current key in t (t.slots != nil), the hot path: a key of up to 16
// encoded bytes is compared with the words of b.cur (setKey). It returns
// the slot index and the address (-1, 0 when absent).
func (b *Backend) findValue(t *table, h uint64, hw uint16) (at int, addr uint32) {
	at, addr, _ = b.probe(t, uint32(h>>32), uint32(hw)|uint32(len(b.cur.enc))<<16, &b.cur, nil, nil)
	return at, addr
}

// probe walks t's probe path for tag (t.slots != nil) and returns the slot
// index and address of the record whose first 4 header bytes are hdr
// (state ID, flags, encoded key length) and whose encoded key is cur.enc
// when cur is not nil (compared with cur's compare words: cur is b.cur,
// hdr has no flags), else prefix||suffix. When there is none it returns
// -1, 0. free is the first free (empty or tombstone) slot index on the
// path up to the match or its end.
//
// It reads the current slot page through sp and reloads it only when the
// index crosses into another slot page, so a table with a single slot
// page (t.slot0) costs no page-table load at all.
func (b *Backend) probe(t *table, tag, hdr uint32, cur *keyCtx, prefix, suffix []byte) (at int, addr uint32, free int) {
	nb := t.bits & 31
	mask := 1<<nb - 1
	shift, smask := b.slotShift&31, b.slotMask
	pshift, pmask := b.pageShift&31, b.pageMask
	i := int(tag >> ((32 - nb) & 31))
	sp := t.slot0
	if sp == nil {
		sp = t.slots[i>>shift]
	}
	free = -1
	for {
		s := load64(sp, (i&smask)*8)
		a := uint32(s >> 32)
		// a-1 < tombAddr-1: neither empty (0) nor a tombstone.
		if uint32(s) == tag && a-1 < tombAddr-1 {
			p, off := t.data[a>>pshift].b, int(a&pmask)
			if load32(p, off) == hdr && keyIs(p, off, hdr, cur, prefix, suffix) {
				return i, a, free
			}
		} else if a == 0 {
			if free < 0 {
				free = i
			}
			return -1, 0, free
		} else if a == tombAddr && free < 0 {
			free = i
		}
		i = (i + 1) & mask
		if i&smask == 0 {
			sp = t.slots[i>>shift]
		}
	}
}

// keyIs reports whether the record at p[off:], whose header word hdr the
// caller checked (so the key length matches), has the encoded key cur.enc
// (when cur is not nil) or prefix||suffix.
func keyIs(p []byte, off int, hdr uint32, cur *keyCtx, prefix, suffix []byte) bool {
	ko := off + hdrBytes
	if cur != nil {
		return cur.keyAt(p, ko)
	}
	if hdr&(flagEntry<<stateBits) != 0 {
		ko += linkBytes
	}
	return string(p[ko:ko+len(prefix)]) == string(prefix) &&
		string(p[ko+len(prefix):ko+len(prefix)+len(suffix)]) == string(suffix)
}

// keyAt reports whether the encoded key stored at p[ko:], of len(k.enc)
// bytes (the caller checked the record header), is k.enc.
func (k *keyCtx) keyAt(p []byte, ko int) bool {
	kl := len(k.enc)
	if kl <= 8 {
		// The 8 bytes ending where the key ends start at or after the
		// record header's 4th byte.
		return binary.LittleEndian.Uint64(p[ko+kl-8:])>>(k.wshift&63) == k.w0
	}
	key := p[ko : ko+kl]
	if kl <= 16 {
		return binary.LittleEndian.Uint64(key) == k.w0 && binary.LittleEndian.Uint64(key[kl-8:]) == k.w1
	}
	return string(key) == string(k.enc)
}

// load64 is the little-endian uint64 at p[i:i+8]. Slicing p[i:i+8]
// instead of p[i:] spares the pointer masking of a possibly empty slice.
func load64(p []byte, i int) uint64 { return binary.LittleEndian.Uint64(p[i : i+8 : i+8]) }

// load32 is the little-endian uint32 at p[i:i+4].
func load32(p []byte, i int) uint32 { return binary.LittleEndian.Uint32(p[i : i+4 : i+4]) }
