package keyed

import (
	"encoding/binary"
	"unsafe"
)

// Value state: ValueState, and the backend's per-key value operations
// (Get, Put, Delete) that every non-map state kind stores through, with
// the fused fixed-width path for 8-byte values (get8, put8; see "The hot
// path" in doc.go).

// ValueState is one value of type T per key.
type ValueState[T any] struct {
	b     *Backend
	id    StateID
	fixed bool // c is Int64Codec, Uint64Codec or Float64Codec: coded inline
	plain bool // fixed, and the state has no TTL: Get and Put use get8 and put8
	name  string
	c     Codec[T]
	buf   []byte
	b8    [8]byte // Put's encoding when fixed
}

func newValueState[T any](b *Backend, id StateID, name string, c Codec[T]) ValueState[T] {
	s := ValueState[T]{b: b, id: id, name: name, c: c}
	switch any(c).(type) {
	case int64Codec, uint64Codec, float64Codec:
		// T is int64, uint64 or float64: a Codec[T] is one of these only
		// when T is the codec's type (their methods take exactly it).
		s.fixed = unsafe.Sizeof(*new(T)) == 8
	}
	// The state is registered (the callers just did), not a map state,
	// and its kind and TTL never change, so get8 needs no checks of id.
	s.plain = s.fixed && b.states[id].kind != KindMap && b.states[id].ttlMs == 0
	return s
}

// NewValueState registers (or looks up) the value state name in b.
func NewValueState[T any](b *Backend, name string, c Codec[T], so StateOptions) (*ValueState[T], error) {
	id, err := b.Register(name, KindValue, so)
	if err != nil {
		return nil, err
	}
	s := newValueState(b, id, name, c)
	return &s, nil
}

// The 8-byte codecs (fixed) encode v as the 8 big-endian bytes of its bit
// pattern: uint64(v) for int64 and uint64, math.Float64bits(v) for
// float64. With T one of those types (see newValueState), that bit pattern
// is what unsafe reads at &v, so fromBits and toBits are those codecs'
// Decode and Append without the interface call or a type switch on T
// (which costs a run-time type comparison in shape-generic code).

func fromBits[T any](x uint64) T { return *(*T)(unsafe.Pointer(&x)) }

func toBits[T any](v T) uint64 { return *(*uint64)(unsafe.Pointer(&v)) }

// ID is the state's ID in its backend.
func (s *ValueState[T]) ID() StateID { return s.id }

// Get returns the current key's value, or false when there is none (or it
// expired).
func (s *ValueState[T]) Get() (T, bool) {
	// Small enough to inline: the common case is one call, get8.
	if s.plain {
		if x, res := s.b.get8(s.id); res != get8Slow {
			return fromBits[T](x), res == get8Found
		}
	}
	return s.get()
}

func (s *ValueState[T]) get() (T, bool) {
	raw, ok := s.b.Get(s.id)
	if !ok {
		var zero T
		return zero, false
	}
	if s.fixed && len(raw) == 8 {
		return fromBits[T](binary.BigEndian.Uint64(raw)), true
	}
	v, err := s.c.Decode(raw)
	if err != nil {
		corruptPanic(s.name, err)
	}
	return v, true
}

// Put sets the current key's value.
func (s *ValueState[T]) Put(v T) {
	// Small enough to inline: the common case is one call, put8.
	if s.plain && s.b.put8(s.id, toBits(v)) {
		return
	}
	s.put(v)
}

func (s *ValueState[T]) put(v T) {
	if s.fixed {
		binary.BigEndian.PutUint64(s.b8[:], toBits(v))
		s.b.Put(s.id, s.b8[:])
		return
	}
	s.buf = s.c.Append(s.buf[:0], v)
	s.b.Put(s.id, s.buf)
}

// Clear removes the current key's value.
func (s *ValueState[T]) Clear() { s.b.Delete(s.id) }

// Values of Backend.last.fast.
const (
	lastBytes = 1 // Put may write through last.r, off, vo, vcap
	lastFixed = 2 // put8 may write through last.v
)

// Get returns the current key's value of state id (a non-map state), or
// false when there is none or it has expired. The bytes belong to the
// backend: valid until the next write to the backend, never to be modified.
func (b *Backend) Get(id StateID) ([]byte, bool) {
	// stateOf, inline.
	if uint(id) >= uint(len(b.states)) || b.states[id].ops != opsValue || !b.curSet {
		b.badState(id, false)
	}
	st := &b.states[id]
	t := b.tables[b.cur.idx]
	if t == nil || t.slots == nil {
		return nil, false
	}
	at, addr := b.findValue(t, valueHash(b.cur.hash, id), hwOf(id, 0))
	if addr == 0 {
		return nil, false
	}
	r := &t.data[addr>>(b.pageShift&31)]
	p, off := r.b, int(addr&b.pageMask)
	lc := binary.LittleEndian.Uint64(p[off+4:]) // value length, capacity
	vo := off + hdrBytes + len(b.cur.enc)
	ve := vo + int(uint32(lc))
	v := p[vo:ve:ve]
	l := &b.last
	l.valid, l.id, l.mods, l.at, l.addr, l.fast = true, id, b.mods, at, addr, 0
	if st.ttlMs > 0 {
		if expired(v, st.ttlMs, b.opts.Clock()) {
			return nil, false
		}
		return v[ttlBytes:], true
	}
	if min(t.epoch, r.epoch) > b.newestSnap {
		l.fast, l.t, l.r, l.off, l.vo, l.vcap = lastBytes, t, r, off, vo, int(lc>>32)
	}
	return v, true
}

// Put sets the current key's value of state id (a non-map state). A value
// longer than MaxValueBytes panics with an error wrapping ErrValueTooLarge.
// Overwriting an existing value that fits the space of the old one is an
// in-place copy.
func (b *Backend) Put(id StateID, value []byte) {
	// The fast path: overwrite in place the record that Get of the same
	// state and key just found (so id is registered, not a map, the key
	// is set), when neither its table nor its page is shared with a
	// snapshot (Get checked, Snapshot clears fast) and value fits as
	// overwrite would keep it in place. It does what putValue, overwrite
	// and maybeCompact do, minus the lookup.
	l := &b.last
	if n := len(value); l.fast == lastBytes && l.id == id && l.mods == b.mods &&
		n <= l.vcap && (n >= l.vcap/4 || l.vcap <= 64) {
		t, p := l.t, l.r.b
		t.version = b.epoch // touch
		b.mods++
		if vo := l.vo; n == 8 {
			binary.LittleEndian.PutUint64(p[vo:vo+8], binary.LittleEndian.Uint64(value))
		} else {
			copy(p[vo:vo+n], value)
		}
		put32(p[l.off+4:], n)
		b.logAddr(t, l.addr)
		if b.maintDue(t) {
			b.maybeCompact(t)
		} else {
			l.mods = b.mods // nothing moved
		}
		return
	}
	b.put(id, value)
}

func (b *Backend) put(id StateID, value []byte) {
	st := b.stateOf(id, false)
	checkValueSize(len(value))
	v := val{a: value}
	if st.ttlMs > 0 {
		v.hasTS, v.ts = true, b.opts.Clock()
	}
	t := b.putValue(&b.cur, id, v)
	b.maybeCompact(t)
}

// putValue inserts or overwrites a non-map record and returns its table.
func (b *Backend) putValue(k *keyCtx, id StateID, v val) *table {
	hw := hwOf(id, 0)
	if k == &b.cur && b.last.valid && b.last.mods == b.mods && b.last.id == id {
		t := b.writableTable(k.idx)
		b.touch(t)
		b.overwrite(t, b.last.at, b.last.addr, v)
		return t
	}
	h := valueHash(k.hash, id)
	t := b.writableTable(k.idx)
	b.touch(t)
	at, addr, free := b.find(t, h, hw, k.enc, nil)
	if addr != 0 {
		b.overwrite(t, at, addr, v)
		return t
	}
	if b.reserveSlots(t, 1) {
		_, _, free = b.find(t, h, hw, k.enc, nil)
	}
	n := v.size()
	addr, _, _ = b.newRecord(t, hw, k.enc, nil, v, n, 0, 0)
	b.fillSlot(t, free, uint32(h>>32), addr)
	t.entries++
	b.count++
	return t
}

// Delete removes the current key's value of state id. For a map state it
// removes every user key of the current key.
func (b *Backend) Delete(id StateID) {
	if uint(id) < uint(len(b.states)) && b.states[id].ops == opsMap {
		b.stateOf(id, true)
		b.clearMap(&b.cur, id)
		return
	}
	b.stateOf(id, false)
	if t := b.deleteValue(&b.cur, id); t != nil {
		b.maybeCompact(t)
	}
}

// Results of get8.
const (
	get8Absent = iota // no value (or the table is empty)
	get8Found         // the value is the uint64 returned
	get8Slow          // the stored value is not 8 bytes: use Get (the codec reports it)
)

// get8 is Get for ValueState with an 8-byte codec (Int64Codec and the
// like) and no TTL: the stored value as the big-endian uint64 of its 8
// bytes, with no slice built. It is Get and findValue fused for that case,
// and records b.last so that put8 can overwrite the value in place. id
// must be a registered non-map state without TTL (ValueState checks that
// when it is built; states are never unregistered or changed).
func (b *Backend) get8(id StateID) (uint64, int) {
	// The common case (a table with a single slot page, an 8-byte key)
	// makes no call and has few bounds checks (spills in the probe loop
	// still give it a stack frame). get8Slow does the rest (and panics
	// when no key is set: then cur.idx is -1).
	k := &b.cur
	idx, tables := k.idx, b.tables
	if uint(idx) >= uint(len(tables)) {
		return b.get8Slow(id)
	}
	t := tables[idx]
	if t == nil {
		return 0, get8Absent
	}
	sp := t.slot0
	if sp == nil || len(k.enc) != 9 {
		return b.get8Slow(id)
	}
	// probe (findValue), inline: the one copy of the lookup loop outside
	// probe.go, kept because it is measurably faster. With get8 calling
	// findValue instead, GetPut and Get at 1k keys took 27–39% more CPU
	// per op, Get at 100k keys 41–51% (bench/NOTES.md, 2026-12-07).
	//
	// It walks byte offsets j = 8*slot index: the single slot page has
	// 8<<t.bits bytes, so the first index, tag >> (32-t.bits), is
	// tag*len(sp) >> 35, and the wrap mask of j is len(sp)-8. A record
	// whose header matches has the 12-byte header and the 9-byte key
	// (uvarint 8, the key: compare words w0, w1) at rec[0:21]; a shorter
	// rest of the page cannot hold it.
	tag := uint32(valueHash(k.hash, id) >> 32)
	hdr := uint32(hwOf(id, 0)) | 9<<16
	jmask := len(sp) - 8
	pshift, pmask := b.pageShift&31, b.pageMask
	j := int(uint64(tag)*uint64(len(sp))>>32) &^ 7
	var r *pageRef
	var rec []byte
	var a uint32
	for ; ; j = (j + 8) & jmask {
		s := load64(sp, j)
		a = uint32(s >> 32)
		// a-1 < tombAddr-1: neither empty (0) nor a tombstone.
		if uint32(s) == tag && a-1 < tombAddr-1 {
			r = &t.data[a>>pshift]
			if rec = r.b[a&pmask:]; len(rec) >= hdrBytes+9 &&
				binary.LittleEndian.Uint32(rec) == hdr &&
				binary.LittleEndian.Uint64(rec[hdrBytes:]) == k.w0 &&
				binary.LittleEndian.Uint64(rec[hdrBytes+1:]) == k.w1 {
				break
			}
		} else if a == 0 {
			return 0, get8Absent
		}
	}
	lc := binary.LittleEndian.Uint64(rec[4:]) // value length, capacity
	if uint32(lc) != 8 || len(rec) < hdrBytes+9+8 {
		return 0, get8Slow
	}
	v := (*[8]byte)(rec[hdrBytes+9 : hdrBytes+9+8])
	l := &b.last
	l.id, l.mods = id, b.mods
	// put8 writes 8 bytes in place: overwrite would too when the
	// capacity is at most 64 (8 >= vcap/4 || vcap <= 64).
	if lc>>32 <= 64 && min(t.epoch, r.epoch) > b.newestSnap && b.prepareLog(t, a) {
		l.valid, l.fast, l.t, l.v = false, lastFixed, t, v
	} else {
		l.valid, l.fast, l.at, l.addr = true, 0, j>>3, a
	}
	return binary.BigEndian.Uint64(v[:]), get8Found
}

// get8Slow is get8 for every case.
func (b *Backend) get8Slow(id StateID) (uint64, int) {
	if !b.curSet {
		b.mustHaveKey()
	}
	k := &b.cur
	t := b.tables[k.idx]
	if t == nil {
		return 0, get8Absent
	}
	if t.slots == nil {
		return 0, get8Absent
	}
	at, a := b.findValue(t, valueHash(k.hash, id), hwOf(id, 0))
	if a == 0 {
		return 0, get8Absent
	}
	r := &t.data[a>>(b.pageShift&31)]
	p, off := r.b, int(a&b.pageMask)
	lc := load64(p, off+4) // value length, capacity
	if uint32(lc) != 8 {
		return 0, get8Slow
	}
	vo := off + hdrBytes + len(k.enc)
	v := (*[8]byte)(p[vo : vo+8 : vo+8])
	l := &b.last
	l.id, l.mods = id, b.mods
	// put8 writes 8 bytes in place: overwrite would too when the
	// capacity is at most 64 (8 >= vcap/4 || vcap <= 64).
	if lc>>32 <= 64 && min(t.epoch, r.epoch) > b.newestSnap && b.prepareLog(t, a) {
		l.valid, l.fast, l.t, l.v = false, lastFixed, t, v
	} else {
		l.valid, l.fast, l.at, l.addr = true, 0, at, a
	}
	return binary.BigEndian.Uint64(v[:]), get8Found
}

// put8 is Put of an 8-byte value (big-endian x) for ValueState with an
// 8-byte codec, when get8 of the same state and key just found the
// record (last.fast == lastFixed) and nothing was written since: it
// overwrites the 8 value bytes in place (the length stays 8) and does what
// touch and logAddr do (get8 prepared the log entry: prepareLog). It
// reports false, having done nothing, when the caller must call Put (no
// such get8).
func (b *Backend) put8(id StateID, x uint64) bool {
	l := &b.last
	if l.fast != lastFixed || l.id != id || l.mods != b.mods {
		return false
	}
	t := l.t
	// Every write ends with maybeCompact of its table (or changes
	// nothing maintDue reads), after which maintDue(t) is false; get8 and
	// this overwrite change nothing it reads either. So no maintenance
	// is due here (Put's fast path, which may change the value's length,
	// checks).
	if invariants && b.maintDue(t) {
		panic("keyed: invariant: maintenance due before put8")
	}
	binary.BigEndian.PutUint64(l.v[:], x)
	t.version = b.epoch // touch
	b.mods++
	*l.logp = l.logv // logAddr, prepared by get8
	t.log = t.log[:l.logn]
	l.mods = b.mods // nothing moved
	return true
}
