package keyed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

type stateInfo struct {
	name  string
	kind  Kind
	ttlMs int64 // 0: no TTL
}

// keyCtx is a key as the backend works with it.
type keyCtx struct {
	enc  []byte // uvarint(len(key)) || key: the encoded key of value records and map heads
	hash uint64 // HashKey(key)
	idx  int    // key group - Range.Start

	// Fixed-width compare words of enc, set by setKey (only for the
	// current key): findValue compares a short stored key with one or two
	// 8-byte loads instead of a memequal call. For len(enc) <= 8, w0 is
	// enc little endian (the stored key is read through the 8 bytes that
	// end where it ends, which start inside the record header, and
	// shifted right by wshift); for len(enc) <= 16, w0 and w1 are the
	// first and the last 8 bytes of enc.
	w0, w1 uint64
	wshift uint8
}

// setKey sets enc to uvarint(len(key)) || key and the compare words. The
// words are computed from key, not read back from enc: a load spanning the
// two stores that just wrote enc would stall on store forwarding.
func (k *keyCtx) setKey(key []byte) {
	n := len(key)
	if n >= 0x80 || n >= cap(k.enc) {
		// A multi-byte length: len(enc) > 16, no compare words.
		k.enc = binary.AppendUvarint(k.enc[:0], uint64(n))
		k.enc = append(k.enc, key...)
		return
	}
	k.enc = k.enc[:n+1] // only the length changes
	enc := k.enc
	enc[0] = byte(n)
	switch {
	case n >= 8:
		w := binary.LittleEndian.Uint64(key)
		if n == 8 {
			binary.LittleEndian.PutUint64(enc[1:], w)
		} else {
			copy(enc[1:], key)
		}
		k.w0 = uint64(n) | w<<8 // enc[0:8]
		k.w1 = binary.LittleEndian.Uint64(key[n-8:])
	default:
		copy(enc[1:], key)
		w := uint64(0)
		for i := n - 1; i >= 0; i-- {
			w = w<<8 | uint64(key[i])
		}
		k.w0, k.wshift = uint64(n)|w<<8, uint8(64-8*(n+1))
	}
}

func (k *keyCtx) key() []byte {
	_, n := binary.Uvarint(k.enc)
	return k.enc[n:]
}

type retiredPage struct {
	data       []byte
	born, died uint64 // read by the snapshots with epoch in [born, died)
}

// Backend is the copy-on-write in-memory keyed state of one task: the key
// groups of Options.Range. It is owned by one goroutine (the task's); the
// only thing other goroutines may do is read a Snapshot and release it.
type Backend struct {
	opts      Options
	pageSize  int
	pageShift uint
	pageMask  uint32
	slotShift uint // log2(slots per full slot page)
	slotMask  int
	maxPages  int // page indexes per key group (32-bit addresses)

	states []stateInfo
	names  []string // names[i] = states[i].name; snapshots share a prefix
	kinds  []Kind
	sopts  []StateOptions
	byName map[string]StateID

	cur    keyCtx
	curSet bool
	// last is where Get (or get8) last found a record of the current key:
	// a Put of the same state that follows (read-modify-write, the common
	// case) skips the lookup. It is valid while mods is unchanged (every
	// write, so every rehash and compaction, changes it; copying a table on
	// write keeps slot indexes and addresses) and the key is the same
	// (SetCurrentKeyHashed clears valid and fast). When valid, at and addr
	// are the record's slot and address, for putValue (get8 sets them only
	// when it does not set fast: then put8 needs neither).
	//
	// fast says that Put's fast path may overwrite the value in place with
	// no lookup at all, and which fields it uses (lastBytes: r, off, vo,
	// vcap; lastFixed: v). Get sets it only for a state without TTL whose
	// table t and page r were both private (epochs above newestSnap) when
	// it looked; while mods is unchanged t is still tables[cur.idx] and r
	// its page reference (only writes replace tables, pages and t.data),
	// and Snapshot, the only thing that shares them, clears fast.
	last struct {
		mods  uint64
		id    StateID
		valid bool
		fast  uint8 // 0, lastBytes or lastFixed
		at    int
		addr  uint32
		t     *table
		r     *pageRef
		v     *[8]byte // lastFixed: the 8 value bytes in the page
		off   int
		vo    int
		vcap  int
	}

	dir        *dir
	tables     []*table    // dir.tables (one load less per lookup)
	epoch      uint64      // current write epoch; Snapshot takes it and bumps it
	newestSnap uint64      // epoch of the newest snapshot not known to be released; 0: none
	snaps      []*Snapshot // snapshots not known to be released, by ascending epoch
	seenRel    uint64      // value of released when snaps was last pruned
	reclaim    bool        // releases were seen since retired was last scanned

	// released is the only field another goroutine touches:
	// Snapshot.Release adds one after marking the snapshot released.
	released atomic.Uint64

	retired []retiredPage // pages dropped from the live state that snapshots may still read
	pool    [][]byte      // full-size pages no one references, for reuse

	count      int // live entries (Len)
	livePages  int
	memLive    int64
	memRetired int64
	memPool    int64

	mods uint64 // incremented by every write; iterators check it

	// Counters for tests.
	compactions, rehashes, pageCopies int

	cleanIdx, cleanSlot int // CleanupExpired's cursor
	scratch             []byte
}

// NewBackend returns an empty backend. It applies opts.EnsureDefaults to a
// copy of opts and returns the Validate error, if any.
func NewBackend(opts Options) (*Backend, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b := &Backend{opts: opts, byName: make(map[string]StateID)}
	b.pageSize = opts.PageSizeBytes
	b.pageShift = uint(bits.TrailingZeros(uint(opts.PageSizeBytes)))
	b.pageMask = uint32(opts.PageSizeBytes - 1)
	b.slotShift = b.pageShift - 3 // 8-byte slots
	b.slotMask = 1<<b.slotShift - 1
	b.maxPages = 1<<(32-b.pageShift) - 1
	// Epochs start at a random base so that key-group versions of two
	// backend instances (before and after a restart) are unequal with
	// overwhelming probability: see Snapshot.KeyGroupVersion.
	b.epoch = 1<<32 + rand.Uint64N(1<<61)
	b.dir = &dir{epoch: b.epoch, tables: make([]*table, opts.Range.Len())}
	b.tables = b.dir.tables
	b.cur.idx = -1
	b.cur.enc = make([]byte, 0, 64)
	return b, nil
}

// Range is the key groups this backend owns.
func (b *Backend) Range() KeyGroupRange { return b.opts.Range }

// MaxParallelism is the number of key groups of the job.
func (b *Backend) MaxParallelism() int { return b.opts.MaxParallelism }

// Register registers a state and returns its ID. Names are unique per
// backend; registering a name again with the same kind and StateOptions
// returns the same ID, with anything else it fails with ErrStateMismatch.
// States may be registered at any time, also after snapshots were taken.
func (b *Backend) Register(name string, kind Kind, so StateOptions) (StateID, error) {
	var errs []error
	if name == "" || len(name) > MaxStateNameBytes {
		errs = append(errs, fmt.Errorf("%w: name %q must have 1 to %d bytes", ErrInvalidState, name, MaxStateNameBytes))
	}
	if kind <= kindInvalid || kind >= kindEnd {
		errs = append(errs, fmt.Errorf("%w %q: unknown kind %v", ErrInvalidState, name, kind))
	}
	if so.TTL < 0 || (so.TTL > 0 && so.TTL.Milliseconds() == 0) {
		errs = append(errs, fmt.Errorf("%w %q: TTL %v must be 0 (none) or at least 1ms", ErrInvalidState, name, so.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if id, ok := b.byName[name]; ok {
		st := b.states[id]
		if st.kind != kind || b.sopts[id] != so {
			return 0, fmt.Errorf("%w: cannot register %q as %v with TTL %v: it is %v with TTL %v",
				ErrStateMismatch, name, kind, so.TTL, st.kind, b.sopts[id].TTL)
		}
		return id, nil
	}
	if len(b.states) >= MaxStates {
		return 0, fmt.Errorf("%w: cannot register %q: the limit is %d", ErrTooManyStates, name, MaxStates)
	}
	id := StateID(len(b.states))
	b.states = append(b.states, stateInfo{name: name, kind: kind, ttlMs: so.TTL.Milliseconds()})
	b.names = append(b.names, name)
	b.kinds = append(b.kinds, kind)
	b.sopts = append(b.sopts, so)
	b.byName[name] = id
	return id, nil
}

// SetCurrentKey makes key the key that Get, Put and the other per-key
// operations apply to. It hashes the key once. The key must belong to a key
// group of this backend's range; otherwise it panics naming the key group
// and the range (the caller routed the record to the wrong task). A key
// longer than MaxKeyBytes panics with an error wrapping ErrKeyTooLarge.
// The key is copied.
func (b *Backend) SetCurrentKey(key []byte) {
	// HashKey, inline (it is too large to inline itself).
	var h uint64
	if len(key) == 8 {
		h = xxh64of8(binary.LittleEndian.Uint64(key))
	} else {
		h = xxhash.Sum64(key)
	}
	b.SetCurrentKeyHashed(key, h)
}

// Values of Backend.last.fast.
const (
	lastBytes = 1 // Put may write through last.r, off, vo, vcap
	lastFixed = 2 // put8 may write through last.v
)

// SetCurrentKeyHashed is SetCurrentKey for a caller that already has
// hash == HashKey(key) (the router computed it). A wrong hash is a bug that
// this does not detect (except under -tags invariants).
func (b *Backend) SetCurrentKeyHashed(key []byte, hash uint64) {
	// The common 8-byte key with no call on its path;
	// everything else, and every check that fails, in setCurrentKey.
	idx := KeyGroupOf(hash, b.opts.MaxParallelism) - b.opts.Range.Start
	k := &b.cur
	// len(tables) == Range.Len(), so the idx check is Range.Contains.
	if len(key) != 8 || uint(idx) >= uint(len(b.tables)) || cap(k.enc) < 9 || invariants {
		b.setCurrentKey(key, hash)
		return
	}
	b.setKey8(binary.LittleEndian.Uint64(key), hash, idx)
}

// setKey8 makes current the 8-byte key whose bytes read little endian are
// w: setKey, inline, for the 8-byte paths of SetCurrentKeyHashed and
// SetCurrentKeyUint64 (cap(cur.enc) >= 9, idx checked).
func (b *Backend) setKey8(w, hash uint64, idx int) {
	k := &b.cur
	k.enc = k.enc[:9]
	enc := k.enc[:9]
	enc[0] = 8
	binary.LittleEndian.PutUint64(enc[1:], w)
	k.w0, k.w1 = 8|w<<8, w
	k.hash = hash
	k.idx = idx
	b.curSet = true
	b.last.valid, b.last.fast = false, 0
}

// SetCurrentKeyUint64 is SetCurrentKeyHashed for the 8-byte key whose
// big-endian value is x (the engine's integer keys), with hash ==
// HashUint64Key(x): the key bytes are never built by the caller.
func (b *Backend) SetCurrentKeyUint64(x, hash uint64) {
	idx := KeyGroupOf(hash, b.opts.MaxParallelism) - b.opts.Range.Start
	k := &b.cur
	if uint(idx) >= uint(len(b.tables)) || cap(k.enc) < 9 || invariants {
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], x)
		b.setCurrentKey(key[:], hash)
		return
	}
	b.setKey8(bits.ReverseBytes64(x), hash, idx)
}

// setCurrentKey is SetCurrentKeyHashed for any key, with the checks.
func (b *Backend) setCurrentKey(key []byte, hash uint64) {
	kg := KeyGroupOf(hash, b.opts.MaxParallelism)
	idx := kg - b.opts.Range.Start
	if len(key) > MaxKeyBytes || uint(idx) >= uint(len(b.tables)) || (invariants && hash != HashKey(key)) {
		b.badKey(key, hash, kg)
	}
	b.cur.setKey(key)
	b.cur.hash = hash
	b.cur.idx = idx
	b.curSet = true
	b.last.valid, b.last.fast = false, 0
}

// badKey panics for SetCurrentKeyHashed, out of line.
//
//go:noinline
func (b *Backend) badKey(key []byte, hash uint64, kg int) {
	if len(key) > MaxKeyBytes {
		panic(fmt.Errorf("%w: key of %d bytes, limit %d", ErrKeyTooLarge, len(key), MaxKeyBytes))
	}
	if invariants && hash != HashKey(key) {
		panic("keyed: SetCurrentKeyHashed: hash is not HashKey(key)")
	}
	panic(fmt.Sprintf("keyed: key %x is in key group %d, outside this backend's range %v: the record was routed to the wrong task",
		string(key[:min(len(key), 64)]), kg, b.opts.Range))
}

// HasCurrentKey reports whether key is already the current key, so a
// caller can skip SetCurrentKey (and its hashing). Cheap: one comparison.
func (b *Backend) HasCurrentKey(key []byte) bool {
	return b.curSet && string(b.cur.key()) == string(key)
}

// CurrentKey returns the current key (owned by the backend; valid until the
// next SetCurrentKey).
func (b *Backend) CurrentKey() []byte {
	b.mustHaveKey()
	return b.cur.key()
}

// CurrentKeyGroup returns the key group of the current key.
func (b *Backend) CurrentKeyGroup() int {
	b.mustHaveKey()
	return b.cur.idx + b.opts.Range.Start
}

func (b *Backend) mustHaveKey() {
	if !b.curSet {
		panic("keyed: no current key: call SetCurrentKey first")
	}
}

// stateOf returns the state id, panicking when it is not registered or is
// (map != true) of the wrong kind for the operation.
// The panics are out of line in badState.
func (b *Backend) stateOf(id StateID, isMap bool) *stateInfo {
	if uint(id) < uint(len(b.states)) {
		if st := &b.states[id]; (st.kind == KindMap) == isMap && b.curSet {
			return st
		}
	}
	b.badState(id, isMap)
	return nil
}

//go:noinline
func (b *Backend) badState(id StateID, isMap bool) {
	if uint(id) >= uint(len(b.states)) {
		panic(fmt.Sprintf("keyed: state ID %d is not registered", id))
	}
	st := &b.states[id]
	if (st.kind == KindMap) != isMap {
		b.wrongKind(st, isMap)
	}
	b.mustHaveKey()
}

func (b *Backend) wrongKind(st *stateInfo, isMap bool) {
	if isMap {
		panic(fmt.Sprintf("keyed: state %q is %v state: use Get/Put/Delete, not the user-key methods", st.name, st.kind))
	}
	panic(fmt.Sprintf("keyed: state %q is map state: use GetUser/PutUser/DeleteUser", st.name))
}

func checkValueSize(n int) {
	if n > MaxValueBytes {
		valueTooLarge(n)
	}
}

//go:noinline
func valueTooLarge(n int) {
	panic(fmt.Errorf("%w: value of %d bytes, limit %d", ErrValueTooLarge, n, MaxValueBytes))
}

func checkUserKeySize(n int) {
	if n > MaxKeyBytes {
		panic(fmt.Errorf("%w: user key of %d bytes, limit %d", ErrKeyTooLarge, n, MaxKeyBytes))
	}
}

// expired reports whether the stored value v (with its timestamp) of a
// state with the given TTL has expired at now.
func expired(v []byte, ttlMs, nowMs int64) bool {
	if len(v) < ttlBytes {
		panic("keyed: corrupt record: TTL value shorter than its timestamp")
	}
	return nowMs-int64(binary.LittleEndian.Uint64(v)) >= ttlMs
}

// Get returns the current key's value of state id (a non-map state), or
// false when there is none or it has expired. The bytes belong to the
// backend: valid until the next write to the backend, never to be modified.
func (b *Backend) Get(id StateID) ([]byte, bool) {
	// stateOf, inline.
	if uint(id) >= uint(len(b.states)) || b.states[id].kind == KindMap || !b.curSet {
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
		if b.maintDue(t) {
			b.maybeCompact(t)
		} else {
			l.mods = b.mods // nothing moved
		}
		return
	}
	b.put(id, value)
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
	// findValue instead, cpu-ns/op rose by 28% (GetPut 1k), 35% (Get 1k)
	// and 48% (Get 100k) in 5 interleaved runs (bench/NOTES.md,
	// 2026-12-07). It walks byte offsets j = 8*slot index: the single
	// slot page has 8<<t.bits bytes, so the first index,
	// tag >> (32-t.bits), is tag*len(sp) >> 35, and the wrap mask of j
	// is len(sp)-8. A record whose header matches has the 12-byte header
	// and the 9-byte key (uvarint 8, the key: compare words w0, w1) at
	// rec[0:21]; a shorter rest of the page cannot hold it.
	tag := uint32(valueHash(k.hash, id) >> 32)
	hdr := uint32(hwOf(id, 0)) | 9<<16
	jmask := len(sp) - 8
	pshift, pmask := b.pageShift&31, b.pageMask
	j := int(uint64(tag)*uint64(len(sp))>>32) &^ 7
	var r *pageRef
	var rec []byte
	for ; ; j = (j + 8) & jmask {
		s := load64(sp, j)
		a := uint32(s >> 32)
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
	if lc>>32 <= 64 && min(t.epoch, r.epoch) > b.newestSnap {
		l.valid, l.fast, l.t, l.v = false, lastFixed, t, v
	} else {
		l.valid, l.fast, l.at = true, 0, j>>3
		l.addr = uint32(load64(sp, j) >> 32)
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
	if lc>>32 <= 64 && min(t.epoch, r.epoch) > b.newestSnap {
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
// touch does. It reports false, having done nothing, when the caller must
// call Put (no such get8).
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
	l.mods = b.mods // nothing moved
	return true
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

// AppendValue appends data to the current key's value of state id (a
// non-map state), creating the value if there is none (or it expired).
// The value's space grows geometrically, so n appends cost O(n) bytes
// copied in total. ListState uses it.
func (b *Backend) AppendValue(id StateID, data []byte) {
	st := b.stateOf(id, false)
	b.appendValue(st, id, data, nil)
}

func (b *Backend) appendValue(st *stateInfo, id StateID, d1, d2 []byte) {
	var now int64
	if st.ttlMs > 0 {
		now = b.opts.Clock()
	}
	h := valueHash(b.cur.hash, id)
	hw := hwOf(id, 0)
	t := b.dir.tables[b.cur.idx]
	var at int
	var addr uint32
	if t != nil {
		at, addr, _ = b.find(t, h, hw, b.cur.enc, nil)
	}
	if addr != 0 {
		p, off := b.rec(t, addr)
		old := recValue(p, off)
		if st.ttlMs > 0 && expired(old, st.ttlMs, now) {
			addr = 0 // replace the expired value
		} else {
			n := len(old) + len(d1) + len(d2)
			checkValueSize(n - ttlOverhead(st))
			t = b.writableTable(b.cur.idx)
			b.touch(t)
			if n <= recValCap(p, off) {
				p = b.writableData(t, int(addr>>b.pageShift))
				vo := recValOff(p, off)
				if st.ttlMs > 0 {
					binary.LittleEndian.PutUint64(p[vo:], uint64(now))
				}
				w := vo + len(old)
				w += copy(p[w:], d1)
				copy(p[w:], d2)
				put32(p[off+4:], n)
				return
			}
			v := val{a: old, b: d1}
			if st.ttlMs > 0 {
				v = val{hasTS: true, ts: now, a: old[ttlBytes:], b: d1}
			}
			if len(d2) > 0 {
				// Only ListState passes two parts; join them in scratch.
				b.scratch = append(append(b.scratch[:0], d1...), d2...)
				v.b = b.scratch
			}
			newCap := max(n, 2*recValCap(p, off), 16)
			newCap = min(newCap, MaxValueBytes+ttlOverhead(st))
			b.relocate(t, at, addr, v, newCap)
			b.maybeCompact(t)
			return
		}
	}
	checkValueSize(len(d1) + len(d2))
	v := val{a: d1, b: d2}
	if st.ttlMs > 0 {
		v.hasTS, v.ts = true, now
	}
	t = b.putValue(&b.cur, id, v)
	b.maybeCompact(t)
}

func ttlOverhead(st *stateInfo) int {
	if st.ttlMs > 0 {
		return ttlBytes
	}
	return 0
}

// Delete removes the current key's value of state id. For a map state it
// removes every user key of the current key.
func (b *Backend) Delete(id StateID) {
	if uint(id) < uint(len(b.states)) && b.states[id].kind == KindMap {
		b.stateOf(id, true)
		b.clearMap(&b.cur, id)
		return
	}
	b.stateOf(id, false)
	t := b.dir.tables[b.cur.idx]
	if t == nil {
		return
	}
	at, addr, _ := b.find(t, valueHash(b.cur.hash, id), hwOf(id, 0), b.cur.enc, nil)
	if addr == 0 {
		return
	}
	t = b.writableTable(b.cur.idx)
	b.touch(t)
	b.removeAt(t, at, addr)
	t.entries--
	b.count--
	b.maybeCompact(t)
}

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

// Len is the number of live entries: one per key and non-map state, one
// per key and user key of map states. Expired entries not yet removed
// (see CleanupExpired) count.
func (b *Backend) Len() int { return b.count }

// MemoryBytes is the number of bytes of pages the backend holds: the live
// state's, those kept for unreleased snapshots, and the free pool.
func (b *Backend) MemoryBytes() int64 { return b.memLive + b.memRetired + b.memPool }

// touch records a write to t (already writable).
func (b *Backend) touch(t *table) {
	t.version = b.epoch
	b.mods++
}

func (b *Backend) rec(t *table, addr uint32) ([]byte, int) {
	return t.data[addr>>(b.pageShift&31)].b, int(addr & b.pageMask)
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
		return
	}
	p := b.writableData(t, pi)
	off := int(addr & b.pageMask)
	t.liveBytes -= recSize(p, off)
	p[off+1] |= flagDead << (stateBits - 8)
}

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
