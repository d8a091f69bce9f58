package keyed

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// AppendEntryKey appends the encoded entry key that Snapshot.ForEach
// yields: uvarint(len(key)) || key || userKey (userKey is empty except for
// map state).
func AppendEntryKey(dst, key, userKey []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, userKey...)
}

// SplitEntryKey splits an encoded entry key into the key and the user key
// (aliasing enc). It rejects, with an error wrapping ErrCorrupt, an
// encoding that AppendEntryKey would not produce, and keys or user keys
// longer than MaxKeyBytes.
func SplitEntryKey(enc []byte) (key, userKey []byte, err error) {
	n, m := binary.Uvarint(enc)
	switch {
	case m <= 0:
		return nil, nil, fmt.Errorf("%w: entry key has no valid length prefix", ErrCorrupt)
	case m != uvarintLen(n):
		return nil, nil, fmt.Errorf("%w: entry key length prefix is not minimal", ErrCorrupt)
	case n > MaxKeyBytes:
		return nil, nil, fmt.Errorf("%w: entry key length %d exceeds %d", ErrCorrupt, n, MaxKeyBytes)
	case int(n) > len(enc)-m:
		return nil, nil, fmt.Errorf("%w: entry key length %d exceeds the %d bytes left", ErrCorrupt, n, len(enc)-m)
	case len(enc)-m-int(n) > MaxKeyBytes:
		return nil, nil, fmt.Errorf("%w: user key of %d bytes exceeds %d", ErrCorrupt, len(enc)-m-int(n), MaxKeyBytes)
	}
	return enc[m : m+int(n)], enc[m+int(n):], nil
}

func uvarintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}

// RestoreEntry inserts one entry as Snapshot.ForEach yielded it (state by
// name, encoded key, stored value), whether or not the state is
// registered yet. The entry's key group must be in this backend's range,
// otherwise the error wraps ErrKeyGroupOutOfRange and names it (a rescaled
// task restores only its own key groups: route by key group before
// calling). Malformed entries are errors wrapping ErrCorrupt; a value
// longer than MaxValueBytes (plus a TTL timestamp) wraps ErrValueTooLarge;
// a new name beyond MaxStates wraps ErrTooManyStates. A failed call
// changes nothing. An entry that exists already is overwritten. The
// current key is not changed, and the arguments are not retained.
//
// A registered state takes the entry as its kind and TTL store it: a map
// state's entry key must carry the user key, a non-map state's must not
// have one, a TTL state's value must start with its 8-byte timestamp.
//
// A name that is not registered gets an ID at once, the state "restored,
// not registered": it holds its entries exactly as ForEach yielded them
// (so a Snapshot taken before Register yields them again, and they
// survive the next checkpoint), no operation other than RestoreEntry
// applies to it, and it is listed by UnregisteredStates until Register (or
// a New*State constructor) binds the name to a kind and StateOptions. The
// stored bytes do not depend on the kind or the TTL: a TTL timestamp is
// part of the value as ForEach yields it, and list state's framing too.
// Only map state stores entries differently (a head per key and linked
// entries): an entry with a user key makes the state map state; entries
// without one are stored as non-map values until then (a map's empty user
// key looks the same) and are rewritten as map entries when a later entry
// has a user key or when Register binds the name to KindMap.
func (b *Backend) RestoreEntry(state string, key, value []byte) error {
	id, ok := b.byName[state]
	restored := !ok || b.states[id].ops == opsNone
	pk, uk, err := SplitEntryKey(key)
	if err != nil {
		return fmt.Errorf("cannot restore an entry of state %q: %w", state, err)
	}
	if restored {
		if !ok && (state == "" || len(state) > MaxStateNameBytes) {
			return fmt.Errorf("%w: cannot restore an entry of a state named %q: a name has 1 to %d bytes",
				ErrCorrupt, state, MaxStateNameBytes)
		}
		// The TTL is not known yet: Register checks the value lengths.
		if len(value) > MaxValueBytes+ttlBytes {
			return fmt.Errorf("%w: cannot restore an entry of state %q: %d bytes", ErrValueTooLarge, state, len(value))
		}
	} else {
		st := &b.states[id]
		if st.kind != KindMap && len(uk) > 0 {
			return fmt.Errorf("%w: cannot restore an entry of %v state %q: its key has a user key", ErrCorrupt, st.kind, state)
		}
		if st.ttlMs > 0 && len(value) < ttlBytes {
			return fmt.Errorf("%w: cannot restore an entry of state %q: a TTL value needs an 8-byte timestamp, got %d bytes",
				ErrCorrupt, state, len(value))
		}
		if len(value)-ttlOverhead(st) > MaxValueBytes {
			return fmt.Errorf("%w: cannot restore an entry of state %q: %d bytes", ErrValueTooLarge, state, len(value))
		}
	}
	h := HashKey(pk)
	kg := KeyGroupOf(h, b.opts.MaxParallelism)
	if !b.opts.Range.Contains(kg) {
		return fmt.Errorf("%w: cannot restore an entry of state %q: key group %d is outside this backend's range %v",
			ErrKeyGroupOutOfRange, state, kg, b.opts.Range)
	}
	asMap := !restored && b.states[id].kind == KindMap
	if restored {
		if !ok {
			if id, err = b.addRestored(state); err != nil {
				return err
			}
		}
		r := &b.restored[id]
		if len(uk) > 0 && !r.isMap {
			if r.plain {
				b.plainToMap(id)
			}
			r.isMap, r.plain = true, false
		}
		asMap = r.isMap
		r.plain = r.plain || !asMap
		r.minValue, r.maxValue = min(r.minValue, len(value)), max(r.maxValue, len(value))
	}
	k := keyCtx{enc: key[:len(key)-len(uk)], hash: h, idx: kg - b.opts.Range.Start}
	saved := b.noLog
	b.noLog = true
	var t *table
	if asMap {
		t = b.putUser(&k, id, uk, val{a: value})
	} else {
		t = b.putValue(&k, id, val{a: value})
	}
	b.noLog = saved
	b.unlogged(t)
	b.maybeCompact(t)
	return nil
}

// restoredState is what RestoreEntry learned of a state restored before
// it was registered: what Register checks the kind and TTL against.
type restoredState struct {
	// isMap: an entry had a user key, so the state is map state and its
	// entries are stored as map entries.
	isMap bool
	// plain: some entries are stored as non-map value records (only while
	// isMap is false).
	plain bool
	// minValue and maxValue bound the lengths of the values restored
	// (overwritten ones included, so Register confirms a bound that fails
	// against the stored values).
	minValue, maxValue int
}

// addRestored gives the unregistered name an ID, restored and not
// registered.
func (b *Backend) addRestored(name string) (StateID, error) {
	if len(b.states) >= MaxStates {
		return 0, fmt.Errorf("%w: cannot restore an entry of state %q: the limit is %d", ErrTooManyStates, name, MaxStates)
	}
	id := StateID(len(b.states))
	b.states = append(b.states, stateInfo{name: name})
	b.names = append(b.names, name)
	b.kinds = append(b.kinds, kindInvalid)
	b.sopts = append(b.sopts, StateOptions{})
	b.byName[name] = id
	if n := len(b.states) - len(b.restored); n > 0 {
		b.restored = append(b.restored, make([]restoredState, n)...)
	}
	b.restored[id] = restoredState{minValue: math.MaxInt}
	return id, nil
}

// bindRestored is Register of state id, restored and not registered: it
// checks kind and so against the entries, rewrites non-map records as map
// entries for KindMap, and makes the state registered.
func (b *Backend) bindRestored(id StateID, kind Kind, so StateOptions) error {
	r := &b.restored[id]
	name := b.states[id].name
	if r.isMap && kind != KindMap {
		return fmt.Errorf("%w: cannot register %q as %v state: the entries restored for it have user keys (it is map state)",
			ErrStateMismatch, name, kind)
	}
	ttlMs := so.TTL.Milliseconds()
	over := 0
	if ttlMs > 0 {
		over = ttlBytes
	}
	if r.minValue < over || r.maxValue-over > MaxValueBytes {
		// The bounds include overwritten values: check the stored ones.
		lo, hi := b.restoredValueLens(id)
		if lo < over {
			return fmt.Errorf("%w: cannot register %q with TTL %v: a value restored for it has %d bytes, fewer than a TTL timestamp (it had no TTL)",
				ErrStateMismatch, name, so.TTL, lo)
		}
		if hi-over > MaxValueBytes {
			return fmt.Errorf("%w: cannot register %q without a TTL: a value restored for it has %d bytes, more than MaxValueBytes (it had a TTL)",
				ErrStateMismatch, name, hi)
		}
	}
	if kind == KindMap && r.plain {
		b.plainToMap(id)
	}
	*r = restoredState{}
	b.states[id] = stateInfo{name: name, kind: kind, ops: opsOf(kind), ttlMs: ttlMs}
	// Snapshots share a prefix of kinds and sopts: write copies.
	b.kinds = slices.Clone(b.kinds)
	b.kinds[id] = kind
	b.sopts = slices.Clone(b.sopts)
	b.sopts[id] = so
	return nil
}

// UnregisteredStates returns the names of the states that RestoreEntry
// created and Register has not bound (yet), in the order of their IDs; nil
// when there are none. Their entries are kept, and every Snapshot yields
// them, so they survive checkpoints until a run registers them; the engine
// calls this once its operators have registered their states, to log or
// refuse what the job no longer declares (Flink keeps such state too).
func (b *Backend) UnregisteredStates() []string {
	var names []string
	for i := range b.states {
		if b.states[i].ops == opsNone {
			names = append(names, b.states[i].name)
		}
	}
	return names
}

// liveRecords calls fn for every live entry record (not a map head) of
// state id in table t, walking its slots: at is the slot, p[off:] the
// record. fn must not write to the backend.
func (b *Backend) liveRecords(t *table, id StateID, fn func(at int, addr uint32, p []byte, off int)) {
	for pi, sp := range t.slots {
		for j := range len(sp) / 8 {
			s := slotAt(sp, j)
			if s.addr == 0 || s.addr == tombAddr {
				continue
			}
			p, off := b.rec(t, s.addr)
			if recState(p, off) == id && recFlags(p, off)&flagHead == 0 {
				fn(pi<<b.slotShift+j, s.addr, p, off)
			}
		}
	}
}

// restoredValueLens returns the shortest and the longest stored value of
// state id (math.MaxInt, 0 when it has none).
func (b *Backend) restoredValueLens(id StateID) (lo, hi int) {
	lo = math.MaxInt
	for _, t := range b.dir.tables {
		if t == nil {
			continue
		}
		b.liveRecords(t, id, func(_ int, _ uint32, p []byte, off int) {
			n := recValLen(p, off)
			lo, hi = min(lo, n), max(hi, n)
		})
	}
	return lo, hi
}

// plainToMap rewrites the non-map value records of state id (restored, not
// registered) as map entries with an empty user key: the same entries, as
// ForEach yields them. Key group by key group, it copies them out, then
// removes and re-inserts each, through the copy-on-write paths.
func (b *Backend) plainToMap(id StateID) {
	saved := b.noLog
	b.noLog = true
	defer func() { b.noLog = saved }()
	hw := hwOf(id, 0)
	var buf []byte
	var ends []int // per record: end of its encoded key, end of its value in buf
	for idx := range b.dir.tables {
		t := b.dir.tables[idx]
		if t == nil {
			continue
		}
		buf, ends = buf[:0], ends[:0]
		b.liveRecords(t, id, func(_ int, _ uint32, p []byte, off int) {
			if uint16(le16(p[off:])) == hw {
				buf = append(buf, recKey(p, off)...)
				ends = append(ends, len(buf))
				buf = append(buf, recValue(p, off)...)
				ends = append(ends, len(buf))
			}
		})
		if len(ends) == 0 {
			continue
		}
		start := 0
		for i := 0; i < len(ends); i += 2 {
			enc, v := buf[start:ends[i]], buf[ends[i]:ends[i+1]]
			start = ends[i+1]
			_, m := binary.Uvarint(enc)
			k := keyCtx{enc: enc, hash: HashKey(enc[m:]), idx: idx}
			t = b.writableTable(idx)
			b.touch(t)
			at, addr, _ := b.find(t, valueHash(k.hash, id), hw, enc, nil)
			if addr == 0 {
				panic(fmt.Sprintf("keyed: invariant: restored state %q: a value record is not in its table", b.states[id].name))
			}
			b.removeAt(t, at, addr)
			t.entries--
			b.count--
			t = b.putUser(&k, id, nil, val{a: v})
		}
		b.unlogged(t)
		b.maybeCompact(t)
	}
}
