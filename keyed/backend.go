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
	kind  Kind     // 0 (kindInvalid) while ops is opsNone
	ops   stateOps // which operations apply; opsNone: restored, not registered
	ttlMs int64    // 0: no TTL
}

// stateOps says which operations a state takes. The per-record checks
// compare it with one value, so a state restored but not registered yet
// (opsNone: RestoreEntry created it, Register has not bound it) fails
// them as an unregistered ID does.
type stateOps uint8

const (
	opsNone  stateOps = iota // restored from a checkpoint, not registered: none
	opsValue                 // every non-map kind: Get, Put, Delete, AppendValue
	opsMap                   // map state: GetUser, PutUser, DeleteUser, RangeUser, Delete
)

func opsOf(kind Kind) stateOps {
	if kind == KindMap {
		return opsMap
	}
	return opsValue
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
		// lastFixed: put8 logs the write (changes.go) by storing logv at
		// *logp and setting len(t.log) to logn; get8 checked that the log
		// has room (or points logp at logSink, with logn the length, when
		// writes are not logged).
		logp *uint64
		logv uint64
		logn int
		off  int
		vo   int
		vcap int
	}

	dir        *dir
	tables     []*table    // dir.tables (one load less per lookup)
	epoch      uint64      // current write epoch; Snapshot takes it and bumps it
	noLog      bool        // writes are not logged (changes.go): before the first Snapshot, while restoring
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

	firstEpoch uint64 // the epoch the backend started in
	forget     uint64 // ForgetChangesThrough: the logs may drop entries up to this epoch
	logSink    uint64 // put8's log store while writes are not logged

	cleanIdx, cleanSlot int // CleanupExpired's cursor
	scratch             []byte

	// restored[id] describes state id while it is restored but not
	// registered (states[id].ops == opsNone); it is meaningless (zero)
	// otherwise. Only RestoreEntry and Register touch it. nil until
	// RestoreEntry meets an unregistered name. Last, so that the hot
	// fields keep their offsets.
	restored []restoredState
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
	b.firstEpoch = b.epoch
	b.noLog = true // until the first Snapshot (changes.go)
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
//
// A name that RestoreEntry met before it was registered is bound: Register
// returns the ID its restored entries already have, and from then on the
// state is of this kind and TTL. When the entries cannot be of that kind
// or TTL (map entries, i.e. with user keys, for a non-map kind; a value
// shorter than a TTL timestamp for a TTL) it fails with an error wrapping
// ErrStateMismatch that names the state, and the state stays restored and
// unregistered. Binding a map state may rewrite its entries that have an
// empty user key (O(entries of the backend), once).
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
		if st.ops == opsNone {
			if err := b.bindRestored(id, kind, so); err != nil {
				return 0, err
			}
			return id, nil
		}
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
	b.states = append(b.states, stateInfo{name: name, kind: kind, ops: opsOf(kind), ttlMs: so.TTL.Milliseconds()})
	b.names = append(b.names, name)
	b.kinds = append(b.kinds, kind)
	b.sopts = append(b.sopts, so)
	b.byName[name] = id
	return id, nil
}

// Len is the number of live entries: one per key and non-map state, one
// per key and user key of map states. Expired entries not yet removed
// (see CleanupExpired) count.
func (b *Backend) Len() int { return b.count }

// MemoryBytes is the number of bytes of pages the backend holds: the live
// state's, those kept for unreleased snapshots, and the free pool.
func (b *Backend) MemoryBytes() int64 { return b.memLive + b.memRetired + b.memPool }

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
	want := opsValue
	if isMap {
		want = opsMap
	}
	if uint(id) < uint(len(b.states)) {
		if st := &b.states[id]; st.ops == want && b.curSet {
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
	if st.ops == opsNone {
		panic(fmt.Sprintf("keyed: state %q (ID %d) was restored from a checkpoint but is not registered", st.name, id))
	}
	if (st.ops == opsMap) != isMap {
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

func ttlOverhead(st *stateInfo) int {
	if st.ttlMs > 0 {
		return ttlBytes
	}
	return 0
}

// touch records a write to t (already writable).
func (b *Backend) touch(t *table) {
	t.version = b.epoch
	b.mods++
}

func (b *Backend) rec(t *table, addr uint32) ([]byte, int) {
	return t.data[addr>>(b.pageShift&31)].b, int(addr & b.pageMask)
}
