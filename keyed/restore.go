package keyed

import (
	"encoding/binary"
	"fmt"
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
// name, encoded key, stored value). The state must have been registered
// first, with the kind and StateOptions of the snapshot
// (Snapshot.StateOptions); otherwise it returns an error wrapping
// ErrUnknownState. The entry's key group must be in this backend's range,
// otherwise the error wraps ErrKeyGroupOutOfRange and names it (a rescaled
// task restores only its own key groups: route by key group before
// calling). Malformed entries are errors wrapping ErrCorrupt. An entry that
// exists already is overwritten. The current key is not changed, and the
// arguments are not retained.
func (b *Backend) RestoreEntry(state string, key, value []byte) error {
	id, ok := b.byName[state]
	if !ok {
		return fmt.Errorf("%w: cannot restore an entry of state %q: register it first", ErrUnknownState, state)
	}
	st := &b.states[id]
	pk, uk, err := SplitEntryKey(key)
	if err != nil {
		return fmt.Errorf("cannot restore an entry of state %q: %w", state, err)
	}
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
	h := HashKey(pk)
	kg := KeyGroupOf(h, b.opts.MaxParallelism)
	if !b.opts.Range.Contains(kg) {
		return fmt.Errorf("%w: cannot restore an entry of state %q: key group %d is outside this backend's range %v",
			ErrKeyGroupOutOfRange, state, kg, b.opts.Range)
	}
	k := keyCtx{enc: key[:len(key)-len(uk)], hash: h, idx: kg - b.opts.Range.Start}
	var t *table
	if st.kind == KindMap {
		t = b.putUser(&k, id, uk, val{a: value})
	} else {
		t = b.putValue(&k, id, val{a: value})
	}
	b.maybeCompact(t)
	return nil
}
