package keyed

import (
	"fmt"
	"slices"
	"sort"
)

// The change log: what incremental checkpoints write.
//
// Every write to a record of a key group — a new record, an overwrite in
// place, an append to a list, a kill (deletion, or the old copy of a
// moved record) — appends the record's address to the group's log, tagged
// with the epoch it happened in (32 bits, counted from logEpoch0). The log
// is a []uint64 shared, like the data pages, between the live table and
// the snapshots' copies of it: the owner appends beyond the length a
// snapshot's copy has, so a snapshot reads a frozen prefix. Addresses are
// stable for a table's lifetime: a record is never moved in place, a page
// keeps its index (copy on write copies the bytes, not the address), and
// only compaction renumbers, which rotates the log.
//
// Snapshot.Changes(kg, since) answers "what differs from the group at
// version since" (a KeyGroupVersion of an earlier snapshot of this
// backend): the log's entries of epochs after since, deduplicated and
// sorted by address (so that reading them walks the pages in order), each
// read in the snapshot's frozen pages: a dead record is a deletion of its
// entry, a live one an upsert. Deletions are reported first. That is
// exact because a key has at most one live record: an entry that exists
// now and changed since was written since (its live record is in the log);
// an entry that existed at since and not now, or moved, had its record
// killed since (in the log, and the key bytes of a dead record stay in its
// page). Map heads are never reported (ForEach does not yield them).
//
// The log answers only as far back as it is complete: logSince is the
// oldest version it can answer for (0, the never-written group, for a
// table whose log never lost an entry). It loses entries when
//   - compaction renumbers the records, or a big page (a record of its own
//     page) is freed, so that its key is gone: the log is rotated (emptied,
//     logSince = the current epoch);
//   - it outgrows max(minLogEntries, 2 × the group's entries) entries,
//     rotated the same way: a group that changed that much is cheaper to
//     write in full, and it is not logged again until the next snapshot
//     (logOff; its next log starts at the size this one reached, so that a
//     group rewritten every interval allocates one log per snapshot);
//   - ForgetChangesThrough said that no Changes call will ask for versions
//     before an epoch: entries up to it are dropped when the log next
//     grows (logSince becomes the epoch of the last one dropped).
// Writes made while logging is off (before the first Snapshot, during
// RestoreEntry and the rewrites of restored state) are not logged: before
// the first snapshot every write is of the first epoch, which every
// version of a written group is at least; later, such a write raises the
// table's logSince to the current epoch.

// minLogEntries is the length below which a log is never rotated for its
// length.
const minLogEntries = 1024

// A log entry is 64 bits: the address of the record written (bits 0–31),
// the epoch of the write counted from the log's logEpoch0 (bits 32–61,
// logEpochBits), and two flags. An in-place append to a list value (no
// TTL: its timestamp would change too) is an entry with logAppend set,
// followed by a length word (logLength set, the same epoch) holding the
// value's length before the append: Changes reports a record that only
// grew by appends since a version as OpAppend of what was appended, so a
// list that gained one element costs its checkpoint that element.
const (
	logEpochBits = 30
	logEpochMask = 1<<logEpochBits - 1
	logAppend    = 1 << 62
	logLength    = 1 << 63
)

// The operations Changes reports (snapshot.OpPut, OpDelete, OpAppend).
const (
	ChangePut    uint8 = 0
	ChangeDelete uint8 = 1
	ChangeAppend uint8 = 2
)

// logEntry is the log entry of a write at the current epoch.
func (b *Backend) logEntry(t *table, addr uint32) uint64 {
	return (b.epoch-t.logEpoch0)<<32 | uint64(addr)
}

// logRel returns the relative epoch of log entry e.
func logRel(e uint64) uint64 { return e >> 32 & logEpochMask }

// logAddr records a write to the record at addr of t (writable). It is
// inlined: while writes are not logged (no checkpoints) it costs a load
// and a branch.
func (b *Backend) logAddr(t *table, addr uint32) {
	if !b.noLog {
		b.logAddrOn(t, addr)
	}
}

func (b *Backend) logAddrOn(t *table, addr uint32) {
	if t.logOff == b.epoch {
		return
	}
	if len(t.log) == cap(t.log) {
		if b.growLog(t); t.logOff == b.epoch {
			return
		}
	}
	t.log = append(t.log, b.logEntry(t, addr))
}

// logAppendTo records an in-place append to the value of the record at
// addr of t, whose value had oldLen bytes before it.
func (b *Backend) logAppendTo(t *table, addr uint32, oldLen int) {
	if b.noLog || t.logOff == b.epoch {
		return
	}
	if len(t.log)+2 > cap(t.log) {
		if b.growLog(t); t.logOff == b.epoch {
			return
		}
		t.log = slices.Grow(t.log, 2) // a new array if it must: never the one snapshots read
	}
	e := b.logEntry(t, addr)
	t.log = append(t.log, e|logAppend, e&^0xFFFFFFFF|logLength|uint64(uint32(oldLen)))
}

// prepareLog prepares put8's logAddr of the record at addr of t (b.last's
// logp, logv, logn); it reports false when the log has no room (put8 must
// not be taken: Put's general path grows the log).
func (b *Backend) prepareLog(t *table, addr uint32) bool {
	l := &b.last
	n := len(t.log)
	if b.noLog || t.logOff == b.epoch {
		l.logp, l.logn = &b.logSink, n
		return true
	}
	if n == cap(t.log) {
		return false
	}
	l.logp, l.logv, l.logn = &t.log[:n+1][n], b.logEntry(t, addr), n+1
	return true
}

// growLog makes room in t's log for at least one more entry: it drops the entries
// no Changes call will need (when that frees at least half), rotates a log
// that outgrew its group, or moves it to a larger array. The old array is
// never written again (snapshots may read it).
func (b *Backend) growLog(t *table) {
	n := len(t.log)
	if n > 0 && b.forget >= t.logEpoch0 {
		thr := b.forget - t.logEpoch0 // entries with a relative epoch <= thr may go
		i := n
		if thr < logEpochMask {
			i = sort.Search(n, func(i int) bool { return logRel(t.log[i]) > thr })
		}
		if i > 0 && i >= n/2 {
			t.logSince = max(t.logSince, t.logEpoch0+logRel(t.log[i-1]))
			keep := t.log[i:]
			base := b.epoch
			if len(keep) > 0 {
				base = t.logEpoch0 + logRel(keep[0])
			}
			shift := (base - t.logEpoch0) << 32
			nl := make([]uint64, len(keep), max(2*len(keep), 64))
			for j, e := range keep {
				nl[j] = e - shift
			}
			t.log, t.logEpoch0 = nl, base
			return
		}
	}
	if n >= max(minLogEntries, 2*t.entries) {
		// A group written this much is written in full at the next
		// checkpoint anyway: stop logging it until the next snapshot
		// (which starts a new epoch), and start its next log that large.
		b.rotateLog(t)
		t.logOff, t.logHint = b.epoch, n
		return
	}
	nl := make([]uint64, n, max(2*n, 16, min(t.logHint, 2*max(minLogEntries, 2*t.entries))))
	copy(nl, t.log)
	t.log = nl
}

// rotateLog empties t's log: Changes answers only for versions from the
// current epoch on.
func (b *Backend) rotateLog(t *table) {
	t.log = nil
	t.logEpoch0 = b.epoch
	t.logSince = b.epoch
}

// unlogged records that t was written without logging, after snapshots
// were taken: Changes answers only for versions from the current epoch on.
func (b *Backend) unlogged(t *table) {
	if b.epoch != b.firstEpoch {
		b.rotateLog(t)
	}
}

// ForgetChangesThrough tells the backend that no Snapshot.Changes call
// will ask for a version before epoch (typically the Epoch of the snapshot
// of the newest completed checkpoint, whose versions are the bases of the
// deltas to come): the logs may drop what was written up to it. A Changes
// call that asks for an older version afterwards may answer false.
func (b *Backend) ForgetChangesThrough(epoch uint64) {
	b.forget = max(b.forget, epoch)
}

// Epoch returns the epoch of the snapshot: the versions it reports are at
// most Epoch, and the writes after it have higher epochs.
func (s *Snapshot) Epoch() uint64 { return s.epoch }

// logRange returns key group kg's table and the index of the first entry
// of its log that Changes(kg, since) reports, or ok=false when the log
// cannot tell. t is nil for a group that was never written.
func (s *Snapshot) logRange(kg int, since uint64) (t *table, from int, ok bool) {
	t = s.table(kg)
	switch {
	case t == nil:
		return nil, 0, since == 0
	case since == t.version:
		return t, len(t.log), true
	case since > t.version, since < t.logSince, since != 0 && since < s.b.firstEpoch,
		s.epoch-t.logEpoch0 > logEpochMask:
		// A version that is newer than the group, older than the log,
		// or from another backend; or a log too old to count its epochs.
		return nil, 0, false
	case since < t.logEpoch0:
		return t, 0, true
	}
	thr := since - t.logEpoch0
	return t, sort.Search(len(t.log), func(i int) bool { return logRel(t.log[i]) > thr }), true
}

// ChangedEntries returns an upper bound of the entries Changes(kg, since)
// reports, without reading them (a binary search), or ok=false when Changes
// would answer false.
func (s *Snapshot) ChangedEntries(kg int, since uint64) (n int, ok bool) {
	t, from, ok := s.logRange(kg, since)
	if !ok || t == nil {
		return 0, ok
	}
	return len(t.log) - from, true
}

// Changes reports how key group kg differs from its state at version since
// (a KeyGroupVersion an earlier snapshot of the same backend reported for
// kg; 0 for a group that did not exist then): first the deleted entries
// (fn with ChangeDelete and a nil value), then the inserted or changed
// ones (ChangePut, in the form ForEach yields them), then the entries that
// only grew by appends since (ChangeAppend with what was appended: a list
// state's new elements; the entry existed at since). An entry may be
// reported although its value did not change (rewritten, or moved), and
// a deletion may name an entry that the old version did not have (created
// and deleted since); applying the deletions, then the rest, to the
// entries of version since gives exactly the entries ForEach yields. It returns false without
// calling fn when it cannot tell (the change log does not reach back to
// since, or since is not a version of this backend's): write the group in
// full then. It stops at and returns fn's first error. Like ForEach, it is
// for the snapshot's one reader, and the slices are valid until Release.
func (s *Snapshot) Changes(kg int, since uint64, fn func(state int, key, value []byte, op uint8) error) (bool, error) {
	t, from, ok := s.logRange(kg, since)
	if !ok {
		return false, nil
	}
	if t == nil || from == len(t.log) {
		return true, nil
	}
	// addrs: the records written otherwise than by appends; appends:
	// address<<32 | length before the append, of the others.
	addrs, appends := s.addrs[:0], s.appends[:0]
	log := t.log[from:]
	for i := 0; i < len(log); i++ {
		e := log[i]
		switch {
		case e&logAppend != 0 && i+1 < len(log) && log[i+1]&logLength != 0:
			appends = append(appends, uint64(uint32(e))<<32|uint64(uint32(log[i+1])))
			i++
		case e&(logAppend|logLength) != 0:
			return false, fmt.Errorf("keyed: key group %d: the change log has an unpaired append entry at %d", kg, from+i)
		default:
			addrs = append(addrs, uint32(e))
		}
	}
	addrs = sortUnique(addrs, &s.radix)
	slices.Sort(appends) // by address, then the smallest length: the length at since
	s.addrs, s.appends = addrs, appends
	shift, mask := s.b.pageShift, s.b.pageMask
	valid := func(a uint32) bool {
		pi := int(a >> shift)
		return pi < len(t.data) && int(a&mask) < t.data[pi].used
	}
	for _, a := range addrs {
		if !valid(a) {
			// Never: a logged record outlives its log (rotateLog).
			return false, fmt.Errorf("keyed: key group %d: the change log names address %#x, which the snapshot does not have", kg, a)
		}
	}
	for _, x := range appends {
		if !valid(uint32(x >> 32)) {
			return false, fmt.Errorf("keyed: key group %d: the change log names address %#x, which the snapshot does not have", kg, x>>32)
		}
	}
	for pass := range 2 {
		deleted := pass == 0
		op := ChangePut
		if deleted {
			op = ChangeDelete
		}
		for _, a := range addrs {
			p, off := t.data[a>>shift].b, int(a&mask)
			flags := recFlags(p, off)
			if flags&flagHead != 0 || (flags&flagDead != 0) != deleted {
				continue
			}
			var value []byte
			if !deleted {
				value = recValue(p, off)
			}
			if err := fn(int(recState(p, off)), recKey(p, off), value, op); err != nil {
				return true, err
			}
		}
	}
	// Records only appended to since: what was appended. A record also
	// written otherwise (moved, killed, overwritten) is in addrs, reported
	// whole above.
	for i, x := range appends {
		a := uint32(x >> 32)
		if i > 0 && uint32(appends[i-1]>>32) == a {
			continue // a later append to the same record: the first has the length at since
		}
		if _, found := slices.BinarySearch(addrs, a); found {
			continue
		}
		p, off := t.data[a>>shift].b, int(a&mask)
		v := recValue(p, off)
		oldLen := int(uint32(x))
		if recFlags(p, off)&(flagDead|flagHead) != 0 || oldLen > len(v) {
			return true, fmt.Errorf("keyed: key group %d: the record at %#x, appended to since the version asked for, is dead or shorter than before", kg, a)
		}
		if err := fn(int(recState(p, off)), recKey(p, off), v[oldLen:], ChangeAppend); err != nil {
			return true, err
		}
	}
	return true, nil
}

// sortUnique sorts addrs and removes duplicates, in place (tmp is a
// scratch buffer kept between calls): a least-significant-digit radix sort
// on bytes, skipping the bytes in which all addresses agree.
func sortUnique(addrs []uint32, tmp *[]uint32) []uint32 {
	if len(addrs) < 256 {
		slices.Sort(addrs)
		return slices.Compact(addrs)
	}
	or, and := uint32(0), ^uint32(0)
	for _, a := range addrs {
		or |= a
		and &= a
	}
	diff := or ^ and
	if cap(*tmp) < len(addrs) {
		*tmp = make([]uint32, len(addrs))
	}
	src, dst := addrs, (*tmp)[:len(addrs)]
	var count [256]int
	for shift := uint(0); shift < 32; shift += 8 {
		if (diff>>shift)&0xff == 0 {
			continue
		}
		clear(count[:])
		for _, a := range src {
			count[(a>>shift)&0xff]++
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, a := range src {
			d := (a >> shift) & 0xff
			dst[count[d]] = a
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &addrs[0] {
		copy(addrs, src)
	}
	return slices.Compact(addrs)
}

// RestoreChange applies one operation of an incremental checkpoint, as
// Snapshot.Changes reported it: ChangePut (RestoreEntry; also every entry
// of a full image), ChangeDelete (RestoreDelete) or ChangeAppend
// (RestoreAppend). An unknown operation is an error wrapping ErrCorrupt.
func (b *Backend) RestoreChange(op uint8, state string, key, value []byte) error {
	switch op {
	case ChangePut:
		return b.RestoreEntry(state, key, value)
	case ChangeDelete:
		return b.RestoreDelete(state, key)
	case ChangeAppend:
		return b.RestoreAppend(state, key, value)
	}
	return fmt.Errorf("%w: cannot restore operation %d of an entry of state %q", ErrCorrupt, op, state)
}

// restoreKey splits an encoded entry key for a Restore call (what names the
// operation, for errors) and checks that its key group is this backend's.
func (b *Backend) restoreKey(what, state string, key []byte) (k keyCtx, userKey []byte, err error) {
	pk, uk, err := SplitEntryKey(key)
	if err != nil {
		return keyCtx{}, nil, fmt.Errorf("cannot restore %s an entry of state %q: %w", what, state, err)
	}
	h := HashKey(pk)
	kg := KeyGroupOf(h, b.opts.MaxParallelism)
	if !b.opts.Range.Contains(kg) {
		return keyCtx{}, nil, fmt.Errorf("%w: cannot restore %s an entry of state %q: key group %d is outside this backend's range %v",
			ErrKeyGroupOutOfRange, what, state, kg, b.opts.Range)
	}
	return keyCtx{enc: key[:len(key)-len(uk)], hash: h, idx: kg - b.opts.Range.Start}, uk, nil
}

// RestoreDelete removes one entry as Snapshot.Changes reported its
// deletion (state by name, encoded key): the counterpart of RestoreEntry
// for applying an incremental checkpoint's deletions. An entry (or a
// state) that does not exist is not an error: a deletion may name an entry
// that the version it applies to did not have. The entry's key group must
// be in this backend's range (ErrKeyGroupOutOfRange otherwise); a
// malformed key is an error wrapping ErrCorrupt. A failed call changes
// nothing.
func (b *Backend) RestoreDelete(state string, key []byte) error {
	k, uk, err := b.restoreKey("the deletion of", state, key)
	if err != nil {
		return err
	}
	id, ok := b.byName[state]
	if !ok {
		return nil
	}
	asMap := b.states[id].kind == KindMap
	if b.states[id].ops == opsNone {
		asMap = b.restored[id].isMap
	}
	if !asMap && len(uk) > 0 {
		return nil // no such entry: a non-map state has no user keys
	}
	saved := b.noLog
	b.noLog = true
	defer func() { b.noLog = saved }()
	var t *table
	if asMap {
		t = b.deleteUser(&k, id, uk)
	} else {
		t = b.deleteValue(&k, id)
	}
	if t != nil {
		b.unlogged(t)
		b.maybeCompact(t)
	}
	return nil
}

// RestoreAppend appends suffix to the value of one entry as Snapshot.Changes
// reported it (ChangeAppend: a list state's elements added since the
// version the delta applies to), for applying an incremental checkpoint.
// The entry must exist (else an error wrapping ErrCorrupt: the delta does
// not apply to what was restored). Errors otherwise as RestoreEntry's; a
// failed call changes nothing.
func (b *Backend) RestoreAppend(state string, key, suffix []byte) error {
	k, uk, err := b.restoreKey("an append to", state, key)
	if err != nil {
		return err
	}
	id, ok := b.byName[state]
	var t *table
	var at int
	var addr uint32
	if ok && len(uk) == 0 {
		if t = b.dir.tables[k.idx]; t != nil {
			at, addr, _ = b.find(t, valueHash(k.hash, id), hwOf(id, 0), k.enc, nil)
		}
	}
	if addr == 0 {
		return fmt.Errorf("%w: cannot restore an append to an entry of state %q: the entry does not exist", ErrCorrupt, state)
	}
	p, off := b.rec(t, addr)
	old := recValue(p, off)
	n := len(old) + len(suffix)
	limit := MaxValueBytes + ttlOverhead(&b.states[id])
	if b.states[id].ops == opsNone {
		limit = MaxValueBytes + ttlBytes // the TTL is not known yet (RestoreEntry)
	}
	if n > limit {
		return fmt.Errorf("%w: cannot restore an append to an entry of state %q: %d bytes", ErrValueTooLarge, state, n)
	}
	if b.states[id].ops == opsNone {
		r := &b.restored[id]
		r.minValue, r.maxValue = min(r.minValue, n), max(r.maxValue, n)
	}
	saved := b.noLog
	b.noLog = true
	t = b.writableTable(k.idx)
	b.touch(t)
	// old aliases the record; overwrite copies it onto itself or into the
	// new record, reading it before anything is written over it.
	b.overwrite(t, at, addr, val{a: old, b: suffix})
	b.noLog = saved
	b.unlogged(t)
	b.maybeCompact(t)
	return nil
}

// deleteValue removes the non-map record of state id and key k; it returns
// the table when it wrote.
func (b *Backend) deleteValue(k *keyCtx, id StateID) *table {
	t := b.dir.tables[k.idx]
	if t == nil {
		return nil
	}
	at, addr, _ := b.find(t, valueHash(k.hash, id), hwOf(id, 0), k.enc, nil)
	if addr == 0 {
		return nil
	}
	t = b.writableTable(k.idx)
	b.touch(t)
	b.removeAt(t, at, addr)
	t.entries--
	b.count--
	return t
}

// logEpochOf returns the epoch of log entry e of t (for checks and tests).
func logEpochOf(t *table, e uint64) uint64 { return t.logEpoch0 + logRel(e) }
