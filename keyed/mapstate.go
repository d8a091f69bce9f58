package keyed

import (
	"encoding/binary"
	"iter"

	"github.com/cespare/xxhash/v2"
)

// Map state: MapState and the backend's user-key operations. Per key, a
// head record and one entry record per user key, doubly linked (layout.go).

// MapState maps user keys K to values V per key. Each user key is its own
// entry (with its own TTL), so Get, Put and Remove cost O(1) whatever the
// map's size.
type MapState[K, V any] struct {
	b    *Backend
	id   StateID
	name string
	kc   Codec[K]
	vc   Codec[V]
	kbuf []byte
	vbuf []byte
}

// NewMapState registers (or looks up) the map state name in b.
func NewMapState[K, V any](b *Backend, name string, kc Codec[K], vc Codec[V], so StateOptions) (*MapState[K, V], error) {
	id, err := b.Register(name, KindMap, so)
	if err != nil {
		return nil, err
	}
	return &MapState[K, V]{b: b, id: id, name: name, kc: kc, vc: vc}, nil
}

// ID is the state's ID in its backend.
func (s *MapState[K, V]) ID() StateID { return s.id }

// Get returns the value of k in the current key's map, or false.
func (s *MapState[K, V]) Get(k K) (V, bool) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	raw, ok := s.b.GetUser(s.id, s.kbuf)
	if !ok {
		var zero V
		return zero, false
	}
	v, err := s.vc.Decode(raw)
	if err != nil {
		corruptPanic(s.name, err)
	}
	return v, true
}

// Contains reports whether the current key's map has k.
func (s *MapState[K, V]) Contains(k K) bool {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	_, ok := s.b.GetUser(s.id, s.kbuf)
	return ok
}

// Put sets k to v in the current key's map.
func (s *MapState[K, V]) Put(k K, v V) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.vbuf = s.vc.Append(s.vbuf[:0], v)
	s.b.PutUser(s.id, s.kbuf, s.vbuf)
}

// Remove removes k from the current key's map.
func (s *MapState[K, V]) Remove(k K) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.b.DeleteUser(s.id, s.kbuf)
}

// IsEmpty reports whether the current key's map has no (unexpired) entry.
func (s *MapState[K, V]) IsEmpty() bool {
	empty := true
	s.b.RangeUser(s.id, func(_, _ []byte) bool {
		empty = false
		return false
	})
	return empty
}

// All iterates over the current key's map in no particular order. Writing
// to the backend during the iteration panics.
func (s *MapState[K, V]) All() iter.Seq2[K, V] { return s.all }

func (s *MapState[K, V]) all(yield func(K, V) bool) {
	s.b.RangeUser(s.id, func(uk, raw []byte) bool {
		k, err := s.kc.Decode(uk)
		if err != nil {
			corruptPanic(s.name, err)
		}
		v, err := s.vc.Decode(raw)
		if err != nil {
			corruptPanic(s.name, err)
		}
		return yield(k, v)
	})
}

// Clear removes every entry of the current key's map.
func (s *MapState[K, V]) Clear() { s.b.Delete(s.id) }

// GetUser returns the value of userKey in the current key's map state id,
// or false. The bytes are valid until the next write to the backend.
func (b *Backend) GetUser(id StateID, userKey []byte) ([]byte, bool) {
	st := b.stateOf(id, true)
	t := b.dir.tables[b.cur.idx]
	if t == nil {
		return nil, false
	}
	h := entryHash(b.cur.hash, id, xxhash.Sum64(userKey))
	_, addr, _ := b.find(t, h, hwOf(id, flagEntry), b.cur.enc, userKey)
	if addr == 0 {
		return nil, false
	}
	p, off := b.rec(t, addr)
	v := recValue(p, off)
	if st.ttlMs > 0 {
		if expired(v, st.ttlMs, b.opts.Clock()) {
			return nil, false
		}
		v = v[ttlBytes:]
	}
	return v, true
}

// PutUser sets userKey to value in the current key's map state id. A user
// key longer than MaxKeyBytes or a value longer than MaxValueBytes panics
// with an error wrapping ErrKeyTooLarge or ErrValueTooLarge.
func (b *Backend) PutUser(id StateID, userKey, value []byte) {
	st := b.stateOf(id, true)
	checkUserKeySize(len(userKey))
	checkValueSize(len(value))
	v := val{a: value}
	if st.ttlMs > 0 {
		v.hasTS, v.ts = true, b.opts.Clock()
	}
	t := b.putUser(&b.cur, id, userKey, v)
	b.maybeCompact(t)
}

// DeleteUser removes userKey from the current key's map state id.
func (b *Backend) DeleteUser(id StateID, userKey []byte) {
	b.stateOf(id, true)
	if t := b.deleteUser(&b.cur, id, userKey); t != nil {
		b.maybeCompact(t)
	}
}

// RangeUser calls yield for each user key and value of the current key's
// map state id, in no particular order, skipping expired entries, until
// yield returns false. The slices are valid until the next write. Writing
// to the backend during the iteration panics (collect, then write).
func (b *Backend) RangeUser(id StateID, yield func(userKey, value []byte) bool) {
	st := b.stateOf(id, true)
	t := b.dir.tables[b.cur.idx]
	if t == nil {
		return
	}
	_, haddr, _ := b.find(t, headHash(b.cur.hash, id), hwOf(id, flagHead), b.cur.enc, nil)
	if haddr == 0 {
		return
	}
	var now int64
	if st.ttlMs > 0 {
		now = b.opts.Clock()
	}
	mods := b.mods
	hp, hoff := b.rec(t, haddr)
	e := uint32(le32(recValue(hp, hoff)))
	klen := len(b.cur.enc)
	for e != 0 {
		p, off := b.rec(t, e)
		next := uint32(le32(p[off+hdrBytes+4:]))
		v := recValue(p, off)
		if st.ttlMs > 0 {
			if expired(v, st.ttlMs, now) {
				e = next
				continue
			}
			v = v[ttlBytes:]
		}
		if !yield(recKey(p, off)[klen:], v) {
			return
		}
		if b.mods != mods {
			panic("keyed: the backend was written during RangeUser or a map state iteration")
		}
		e = next
	}
}

// putUser inserts or overwrites a map entry and returns its table.
func (b *Backend) putUser(k *keyCtx, id StateID, userKey []byte, v val) *table {
	h := entryHash(k.hash, id, xxhash.Sum64(userKey))
	hw := hwOf(id, flagEntry)
	t := b.writableTable(k.idx)
	b.touch(t)
	at, addr, free := b.find(t, h, hw, k.enc, userKey)
	if addr != 0 {
		b.overwrite(t, at, addr, v)
		return t
	}
	hh := headHash(k.hash, id)
	hhw := hwOf(id, flagHead)
	if b.reserveSlots(t, 2) {
		_, _, free = b.find(t, h, hw, k.enc, userKey)
	}
	_, haddr, hfree := b.find(t, hh, hhw, k.enc, nil)
	first := uint32(0)
	if haddr == 0 {
		var hv [8]byte
		haddr, _, _ = b.newRecord(t, hhw, k.enc, nil, val{a: hv[:]}, 8, 0, 0)
		b.fillSlot(t, hfree, uint32(hh>>32), haddr)
		if hfree == free { // the head took the entry's free slot
			_, _, free = b.find(t, h, hw, k.enc, userKey)
		}
	} else {
		p, off := b.rec(t, haddr)
		first = uint32(le32(recValue(p, off)))
	}
	n := v.size()
	addr, _, _ = b.newRecord(t, hw, k.enc, userKey, v, n, 0, first)
	if first != 0 {
		b.setLink(t, first, 0, addr)
	}
	p, off := b.rec(t, haddr)
	cnt := le32(recValue(p, off)[4:])
	b.setHeadField(t, haddr, 0, int(addr))
	b.setHeadField(t, haddr, 4, cnt+1)
	b.fillSlot(t, free, uint32(h>>32), addr)
	t.entries++
	b.count++
	return t
}

// deleteUser removes a map entry; it returns the table when it wrote.
func (b *Backend) deleteUser(k *keyCtx, id StateID, userKey []byte) *table {
	t := b.dir.tables[k.idx]
	if t == nil {
		return nil
	}
	h := entryHash(k.hash, id, xxhash.Sum64(userKey))
	at, addr, _ := b.find(t, h, hwOf(id, flagEntry), k.enc, userKey)
	if addr == 0 {
		return nil
	}
	t = b.writableTable(k.idx)
	b.touch(t)
	hat, haddr, _ := b.find(t, headHash(k.hash, id), hwOf(id, flagHead), k.enc, nil)
	if haddr == 0 {
		panic("keyed: corrupt map state: an entry has no head")
	}
	b.unlinkAndRemove(t, at, addr, hat, haddr)
	return t
}

// unlinkAndRemove removes map entry addr (slot at) from the list of head
// haddr (slot hat), removing the head too when it was the last entry.
func (b *Backend) unlinkAndRemove(t *table, at int, addr uint32, hat int, haddr uint32) {
	p, off := b.rec(t, addr)
	prev := uint32(le32(p[off+hdrBytes:]))
	next := uint32(le32(p[off+hdrBytes+4:]))
	if prev != 0 {
		b.setLink(t, prev, 4, next)
	} else {
		b.setHeadField(t, haddr, 0, int(next))
	}
	if next != 0 {
		b.setLink(t, next, 0, prev)
	}
	b.removeAt(t, at, addr)
	t.entries--
	b.count--
	hp, hoff := b.rec(t, haddr)
	cnt := le32(recValue(hp, hoff)[4:]) - 1
	if cnt == 0 {
		b.removeAt(t, hat, haddr)
		return
	}
	b.setHeadField(t, haddr, 4, cnt)
}

// clearMap removes every user key of k in map state id.
func (b *Backend) clearMap(k *keyCtx, id StateID) {
	t := b.dir.tables[k.idx]
	if t == nil {
		return
	}
	hh := headHash(k.hash, id)
	_, haddr, _ := b.find(t, hh, hwOf(id, flagHead), k.enc, nil)
	if haddr == 0 {
		return
	}
	t = b.writableTable(k.idx)
	b.touch(t)
	p, off := b.rec(t, haddr)
	e := uint32(le32(recValue(p, off)))
	klen := len(k.enc)
	for e != 0 {
		p, off := b.rec(t, e)
		next := uint32(le32(p[off+hdrBytes+4:]))
		uk := recKey(p, off)[klen:]
		at, addr, _ := b.find(t, entryHash(k.hash, id, xxhash.Sum64(uk)), hwOf(id, flagEntry), k.enc, uk)
		if addr != e {
			panic("keyed: corrupt map state: a listed entry is not in the table")
		}
		b.removeAt(t, at, addr)
		t.entries--
		b.count--
		e = next
	}
	hat, _, _ := b.find(t, hh, hwOf(id, flagHead), k.enc, nil)
	b.removeAt(t, hat, haddr)
	b.maybeCompact(t)
}

// headOf finds the head record of a map state's key whose encoded key is
// prefix; it must exist.
func (b *Backend) headOf(t *table, id StateID, prefix []byte) uint32 {
	_, m := binary.Uvarint(prefix)
	_, haddr, _ := b.find(t, headHash(HashKey(prefix[m:]), id), hwOf(id, flagHead), prefix, nil)
	if haddr == 0 {
		panic("keyed: corrupt map state: an entry has no head")
	}
	return haddr
}

// setHeadFirstOf points the head of the map entry at addr to addr.
func (b *Backend) setHeadFirstOf(t *table, addr uint32) {
	p, off := b.rec(t, addr)
	id := recState(p, off)
	key := recKey(p, off)
	n, m := binary.Uvarint(key)
	prefix := key[:m+int(n)]
	haddr := b.headOf(t, id, prefix)
	b.setHeadField(t, haddr, 0, int(addr))
}

// setLink sets the prev (field 0) or next (field 4) link of map entry addr.
func (b *Backend) setLink(t *table, addr uint32, field int, to uint32) {
	p := b.writableData(t, int(addr>>b.pageShift))
	off := int(addr & b.pageMask)
	put32(p[off+hdrBytes+field:], int(to))
}

// setHeadField sets the first (field 0) or count (field 4) of head addr.
func (b *Backend) setHeadField(t *table, addr uint32, field int, v int) {
	p := b.writableData(t, int(addr>>b.pageShift))
	off := int(addr & b.pageMask)
	put32(p[recValOff(p, off)+field:], v)
}
