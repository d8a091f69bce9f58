package keyed

import (
	"fmt"
	"slices"
	"sync/atomic"
)

// Copy on write.
//
// The backend counts epochs. Snapshot takes the current epoch e and starts
// epoch e+1. Every page, table and dir records the epoch it was created (or
// copied) in, and an object is shared, i.e. possibly reachable from an
// unreleased snapshot, iff its epoch <= newestSnap, the epoch of the newest
// snapshot not known to be released. Before its first write a shared object
// is copied; the copy gets the current epoch and so is private until the
// next snapshot. The chain dir -> table -> page is copied top down, so a
// private object never hangs below a shared one.
//
// A snapshot's reader reads only objects of epoch <= its epoch. The writer
// writes in place only objects of epoch > newestSnap >= that epoch, and it
// learns that a snapshot was released only through the atomic counter
// Backend.released (incremented by Release after the reader is done), so
// every read of a released snapshot happens before any later write to what
// it read: this is what the race detector checks in the tests.
//
// When the writer drops a page from the live state (copied, compacted,
// rehashed, freed) and the page is shared, it is retired with the epochs
// [born, died) of the snapshots that may read it; once none of the
// unreleased snapshots has an epoch in that interval, full-size pages go to
// a free pool (bounded) and are reused, others are left to the GC.

// writableTable returns key group idx's table, copying the dir and the table
// first when a snapshot shares them, and creating an empty table when there
// is none.
func (b *Backend) writableTable(idx int) *table {
	if t := b.tables[idx]; t != nil && t.epoch > b.newestSnap {
		return t
	}
	return b.writableTableSlow(idx)
}

func (b *Backend) writableTableSlow(idx int) *table {
	b.refreshSnaps()
	d := b.dir
	if t := d.tables[idx]; t != nil && t.epoch > b.newestSnap {
		if invariants && d.epoch <= b.newestSnap {
			panic("keyed: invariant: private table below a shared dir")
		}
		return t
	}
	if d.epoch <= b.newestSnap {
		d = &dir{epoch: b.epoch, tables: slices.Clone(d.tables)}
		b.dir, b.tables = d, d.tables
	}
	t := d.tables[idx]
	if t == nil {
		t = &table{epoch: b.epoch, data: make([]pageRef, 1, 8), logEpoch0: b.epoch}
		if b.noLog {
			t.logSince = b.epoch // its first writes are not logged
		}
	} else {
		nt := *t
		nt.epoch = b.epoch
		// nt.slots stays shared: slot pages are private to the owner
		// (snapshots never read them) and the [][]slot is only ever
		// replaced, never written in place.
		nt.data = slices.Clone(t.data)
		// nt.log shares t's array: appends go beyond t's length.
		if b.epoch-nt.logEpoch0 >= logEpochMask/2 {
			b.rotateLog(&nt) // its epochs would soon not fit in logEpochBits
		}
		t = &nt
	}
	d.tables[idx] = t
	return t
}

// writableData returns data page pi of t (t private), copying it first when
// a snapshot shares it.
func (b *Backend) writableData(t *table, pi int) []byte {
	if r := &t.data[pi]; r.epoch > b.newestSnap {
		return r.b
	}
	return b.copyData(t, pi)
}

func (b *Backend) copyData(t *table, pi int) []byte {
	if invariants && t.epoch <= b.newestSnap {
		panic("keyed: invariant: writing a page of a shared table")
	}
	b.refreshSnaps()
	r := &t.data[pi]
	if r.epoch > b.newestSnap {
		return r.b
	}
	var nb []byte
	if len(r.b) == b.pageSize {
		nb = b.allocDataPage(b.pageSize)
	} else {
		nb = make([]byte, len(r.b))
		b.memLive += int64(len(nb))
		b.livePages++
	}
	copy(nb, r.b[:r.used])
	b.pageCopies++
	b.dropData(r.b, r.epoch)
	r.b, r.epoch = nb, b.epoch
	return nb
}

// allocDataPage returns a page of n bytes (not zeroed when reused).
func (b *Backend) allocDataPage(n int) []byte {
	b.memLive += int64(n)
	b.livePages++
	if n == b.pageSize {
		if len(b.pool) == 0 && b.reclaim {
			b.reclaimRetired()
		}
		if k := len(b.pool) - 1; k >= 0 {
			p := b.pool[k]
			b.pool[k] = nil
			b.pool = b.pool[:k]
			b.memPool -= int64(n)
			return p
		}
	}
	return make([]byte, n)
}

// dropData removes a data page created in epoch born from the live state.
func (b *Backend) dropData(p []byte, born uint64) {
	b.memLive -= int64(len(p))
	b.livePages--
	if born > b.newestSnap {
		b.toPool(p)
		return
	}
	b.retired = append(b.retired, retiredPage{data: p, born: born, died: b.epoch})
	b.memRetired += int64(len(p))
}

// dropSlots removes a slot page from the live state. No snapshot reads
// slot pages, so it can be reused at once.
func (b *Backend) dropSlots(s []byte) {
	b.memLive -= int64(len(s))
	b.livePages--
	b.toPool(s)
}

// toPool keeps a full-size page for reuse, up to half of the live pages
// (plus 16); other pages are left to the GC (they hold no pointers, so
// they cost it nothing to mark).
func (b *Backend) toPool(p []byte) {
	if len(p) == b.pageSize && len(b.pool) < 16+b.livePages/2 {
		b.pool = append(b.pool, p)
		b.memPool += int64(len(p))
	}
}

// refreshSnaps forgets the snapshots released since the last call.
func (b *Backend) refreshSnaps() {
	rel := b.released.Load()
	if rel == b.seenRel {
		return
	}
	b.seenRel = rel
	live := b.snaps[:0]
	for _, s := range b.snaps {
		if !s.released.Load() {
			live = append(live, s)
		}
	}
	clear(b.snaps[len(live):])
	b.snaps = live
	b.newestSnap = 0
	if len(live) > 0 {
		b.newestSnap = live[len(live)-1].epoch
	}
	if len(b.retired) > 0 {
		b.reclaim = true
	}
}

// reclaimRetired moves the retired pages no unreleased snapshot can read to
// the pool.
func (b *Backend) reclaimRetired() {
	b.reclaim = false
	keep := b.retired[:0]
	for _, r := range b.retired {
		if b.referenced(r.born, r.died) {
			keep = append(keep, r)
			continue
		}
		b.memRetired -= int64(len(r.data))
		b.toPool(r.data)
	}
	clear(b.retired[len(keep):])
	b.retired = keep
}

func (b *Backend) referenced(born, died uint64) bool {
	for _, s := range b.snaps {
		if s.epoch >= born && s.epoch < died {
			return true
		}
	}
	return false
}

// Snapshot freezes the current state: the synchronous part of a
// checkpoint. It costs O(1) — it records the dir of key groups and starts a
// new epoch — and allocates only the Snapshot itself; the copying happens
// later, page by page, as the owner writes. The snapshot must be released
// (Release) when its reader is done, or the pages it shares are kept
// forever.
func (b *Backend) Snapshot() *Snapshot {
	b.refreshSnaps()
	n := len(b.names)
	s := &Snapshot{
		b:     b,
		epoch: b.epoch,
		rng:   b.opts.Range,
		names: b.names[:n:n],
		kinds: b.kinds[:n:n],
		sopts: b.sopts[:n:n],
	}
	s.dir.Store(b.dir)
	b.snaps = append(b.snaps, s)
	b.newestSnap = b.epoch
	b.epoch++
	b.noLog = false
	// Everything the live state has is now shared: Put's fast paths must
	// not write in place what Get found before (see Backend.last).
	b.last.fast = 0
	return s
}

// Snapshot is a frozen, read-only view of a Backend's state. It is safe
// for use by ONE goroutine (other than the backend's owner, or the owner
// itself) concurrently with the owner's writes. Slices it hands out are
// valid until Release and must not be modified.
type Snapshot struct {
	b     *Backend
	epoch uint64
	rng   KeyGroupRange
	names []string
	kinds []Kind
	sopts []StateOptions

	dir      atomic.Pointer[dir] // nil once released
	released atomic.Bool

	addrs, radix []uint32 // Changes' buffers (the reader's)
	appends      []uint64
}

// Range is the key groups of the snapshot's backend.
func (s *Snapshot) Range() KeyGroupRange { return s.rng }

// States returns the names of the states registered when the snapshot was
// taken; the index is the StateID. Read-only.
func (s *Snapshot) States() []string { return s.names }

// Kinds returns the kinds of the states, indexed like States; Kind(0) for
// a state that was restored and not registered when the snapshot was
// taken (Backend.UnregisteredStates). Read-only.
func (s *Snapshot) Kinds() []Kind { return s.kinds }

// StateOptions returns the options (TTL) the states were registered with,
// indexed like States (the zero StateOptions for a state restored and not
// registered), so that a restore can register them identically.
// Read-only.
func (s *Snapshot) StateOptions() []StateOptions { return s.sopts }

// KeyGroupVersion returns the version of key group kg. The version changes
// whenever anything in kg changes; two snapshots of the same backend with
// equal versions of kg have identical contents of kg. An empty, never
// written key group has version 0 in every backend. Other versions start
// at a random 61-bit base per backend, so versions from a different backend
// instance (e.g. a checkpoint of the previous run) are equal only with
// negligible probability — but only versions of the same backend carry the
// guarantee. It panics when kg is outside Range.
func (s *Snapshot) KeyGroupVersion(kg int) uint64 {
	t := s.table(kg)
	if t == nil {
		return 0
	}
	return t.version
}

// Len returns the number of entries of key group kg (as ForEach yields).
func (s *Snapshot) Len(kg int) int {
	if t := s.table(kg); t != nil {
		return t.entries
	}
	return 0
}

func (s *Snapshot) table(kg int) *table {
	d := s.dir.Load()
	if d == nil {
		panic("keyed: use of a released Snapshot")
	}
	if !s.rng.Contains(kg) {
		panic(fmt.Sprintf("keyed: key group %d is outside the snapshot's range %v", kg, s.rng))
	}
	return d.tables[kg-s.rng.Start]
}

// ForEach calls fn for every entry of key group kg as of the snapshot, in
// storage order, and stops at and returns fn's first error.
//
// state is the StateID (an index into States). key is the encoded entry
// key: uvarint(len(key)) || key for every kind, followed by the user key
// for map state (SplitEntryKey splits it). value is the stored value,
// including the 8-byte little-endian timestamp that precedes the value of
// a state with a TTL. Expired entries are NOT skipped: the contents are a
// function of the key group's version alone, and RestoreEntry restores
// them exactly (they keep reading as absent, and CleanupExpired or a
// compaction removes them). The slices are valid until Release.
func (s *Snapshot) ForEach(kg int, fn func(state int, key, value []byte) error) error {
	t := s.table(kg)
	if t == nil {
		return nil
	}
	for _, r := range t.data[1:] {
		p := r.b[:r.used]
		for off := 0; off < len(p); {
			size := recSize(p, off)
			if recFlags(p, off)&(flagDead|flagHead) == 0 {
				if err := fn(int(recState(p, off)), recKey(p, off), recValue(p, off)); err != nil {
					return err
				}
			}
			off += size
		}
	}
	return nil
}

// Release tells the backend that the snapshot's reader is done, so it may
// stop preserving pages for it. Idempotent; any goroutine may call it, but
// only after the reader's last use of the snapshot and of the slices it
// handed out. Using the snapshot afterwards panics.
func (s *Snapshot) Release() {
	if s.released.CompareAndSwap(false, true) {
		s.dir.Store(nil)
		s.b.released.Add(1)
	}
}
