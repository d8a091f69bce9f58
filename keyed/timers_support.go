package keyed

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Backend operations that Timers (timers.go) needs on map entries of a
// key other than the current one: a timer's key is known from its queue
// entry, and checking or removing it must not change the current key
// (NextEventTime, dropping dead queue entries) or must happen before it
// changes (firing). k is a key context built by the caller: enc is
// uvarint(len(key)) || key, hash is HashKey(key), idx its key group minus
// Range.Start (in range); the compare words are not used.

// hasMapEntry reports whether map state id holds user key uk for the key
// of k. It writes nothing.
func (b *Backend) hasMapEntry(id StateID, k *keyCtx, uk []byte) bool {
	t := b.tables[k.idx]
	if t == nil {
		return false
	}
	_, addr, _ := b.find(t, entryHash(k.hash, id, xxhash.Sum64(uk)), hwOf(id, flagEntry), k.enc, uk)
	return addr != 0
}

// removeMapEntry removes user key uk of the key of k from map state id
// (through the copy-on-write paths, as DeleteUser does) and reports
// whether it was there.
func (b *Backend) removeMapEntry(id StateID, k *keyCtx, uk []byte) bool {
	t := b.deleteUser(k, id, uk)
	if t == nil {
		return false
	}
	b.maybeCompact(t)
	return true
}

// forEachMapEntry calls fn for every entry of map state id (registered as
// KindMap) in the live state, key group by key group, with the entry's
// key group, encoded key (uvarint(len(key)) || key), user key and value,
// and stops at fn's first error. It walks the data pages sequentially, as
// Snapshot.ForEach does (records not marked dead are the live ones), so it
// reads memory in order rather than at the hash slots' random places. The
// slices are valid until the next write; fn must not write to the
// backend.
func (b *Backend) forEachMapEntry(id StateID, fn func(kg int, enc, userKey, value []byte) error) error {
	if b.states[id].ops != opsMap {
		panic(fmt.Sprintf("keyed: forEachMapEntry of state %q, which is not map state", b.states[id].name))
	}
	for idx, t := range b.dir.tables {
		if t == nil {
			continue
		}
		for _, r := range t.data[1:] {
			p := r.b[:r.used]
			for off := 0; off < len(p); off += recSize(p, off) {
				if recFlags(p, off)&(flagDead|flagEntry) != flagEntry || recState(p, off) != id {
					continue
				}
				key := recKey(p, off)
				n, m := binary.Uvarint(key)
				if m <= 0 || uint64(len(key)-m) < n {
					panic(fmt.Sprintf("keyed: corrupt map state %q: a stored entry key has no valid length prefix", b.states[id].name))
				}
				e := m + int(n)
				if err := fn(idx+b.opts.Range.Start, key[:e], key[e:], recValue(p, off)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
