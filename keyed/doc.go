// Package keyed owns keyed state: key groups, the state kinds (value,
// list, map, reducing, aggregating, each with an optional TTL), and the
// copy-on-write in-memory backend that holds them for one task.
//
// # Key groups
//
// A key hashes (HashKey, xxHash64) to one of MaxParallelism key groups
// (KeyGroupOf); a task owns a contiguous range of key groups
// (RangeForTask, TaskForKeyGroup, as in Flink). HashKey and KeyGroupOf are
// frozen forever: checkpoints are stored by key group, and rescaling on
// restore hands whole key groups to tasks.
//
// # The backend
//
// A Backend holds the state of its key groups in memory. It is owned by
// one goroutine; per record the engine calls SetCurrentKey (one hash),
// then state operations on that key. There is no pointer per entry, so a
// GC cycle does not mark entries: per key group, an open-addressing hash
// table (8-byte slots: 32-bit hash tag, 32-bit address) and the records
// (header, key, value) live in fixed-size pointer-free pages ([]byte),
// reached through a page table. The heap holds O(pages) pointers. An
// overwrite of an existing value that fits in place is a hash, a probe and
// a copy, and allocates nothing; so are the typed states' Get and Put with
// fixed-size codecs.
//
// Values that outgrow their space move (the old record is marked dead);
// list appends grow geometrically. When at least half of a key group's
// bytes are dead, the group is compacted (which also drops expired TTL
// entries). Records larger than a page get a page of their own.
//
// # Snapshots
//
// Snapshot is the synchronous part of a checkpoint and costs O(1): it
// takes the current epoch and starts the next. Key-group tables and data
// pages record the epoch they were created in; the first write after a
// snapshot to a table or page that the snapshot shares copies it (a page,
// never the whole state), and later writes are in place again. Up to any
// number of snapshots may be open at once and released in any order;
// pages dropped while a snapshot may read them are retired and recycled
// through a bounded pool once no open snapshot can read them. A Snapshot
// is read by one other goroutine (the async checkpoint writer) while the
// owner keeps writing: ForEach walks a key group's data pages
// sequentially, and KeyGroupVersion says whether a key group changed
// since another snapshot of the same backend (incremental checkpoints).
// Hash-table slots are never read by snapshots and so are never copied.
//
// # The hot path
//
// Per record the engine calls SetCurrentKeyHashed, then a ValueState's Get
// and Put of the same key. SetCurrentKeyHashed writes the encoded key with
// a one-byte length in place and precomputes two 8-byte compare words, so
// a lookup compares a key of up to 16 encoded bytes with two loads, no
// memequal; for an 8-byte key (the engine's integer keys) it makes no
// call, with the key encoding inline, everything else (other lengths,
// failed range checks, -tags invariants) in setCurrentKey. SetCurrentKey
// computes xxHash64 of an 8-byte key inline. A table with a single slot
// page keeps it in table.slot0 (one dependent load less), and
// Backend.tables mirrors dir.tables. valueHash swaps the halves of the key
// hash (xored with a per-state constant) instead of a 64-bit finalizer.
//
// A ValueState with Int64Codec, Uint64Codec or Float64Codec and no TTL
// ("plain") reads and writes through a fixed-width path: Backend.get8 is
// Get, findValue and the decoding fused, returning the value as a uint64
// without building a slice, and put8 writes the 8 bytes back in place.
// get8's common case (a single slot page, an 8-byte key) makes no call and
// compares the record header and the key at constant offsets of one
// slice of the page, so it has few bounds checks; get8Slow handles the
// rest (several slot pages, other key lengths, no current key). T is
// converted to and from the codec's uint64 by reinterpreting its 8 bytes
// (fromBits, toBits: no type switch on a shape type). A stored value that
// is not 8 bytes takes the general path, whose codec reports ErrCorrupt.
//
// Get (and get8) records where it found the record in Backend.last, and
// whether the Put of the same state and key that follows may overwrite in
// place with no lookup ("fast"): decided once at Get time (no TTL, the
// table's and the page's epochs above newestSnap, and for get8 a value
// capacity that overwrite keeps in place). The Put takes that path when
// mods is unchanged (no write since: no table, page table or record
// moved) and the state is the same; Snapshot clears fast (it is what makes
// a table or page shared), SetCurrentKeyHashed clears it, any write
// changes mods. put8 skips maintDue: every write ends with maybeCompact of
// its table (after which maintenance is not due) and an in-place overwrite
// of 8 bytes changes nothing maintDue reads (checked under -tags
// invariants). Otherwise Put takes the general path, which copies shared
// pages.
//
// Every other lookup walks the hash table with the one probe loop,
// probe (probe.go): find compares keys as bytes, findValue with the
// current key's compare words. get8's common case keeps an inline copy of
// the loop because calling findValue instead measured slower.
//
// At 1k keys what is left of the cost is mostly instructions (calls,
// bounds checks), not cache misses; at 100k and 1M keys, the misses on
// the slot page, the page table and the data page (measurements:
// bench/NOTES.md).
//
// # Restoring before registering
//
// A restore fills a backend before its operators register their states:
// recovery reads and verifies a checkpoint's blocks before any task
// starts, so that a corrupt block falls back to an older checkpoint before
// anything is committed, and the entries go straight into the backends
// (no intermediate copy). The contract, for the engine:
//
//   - NewBackend, then RestoreEntry(state, key, value) for every entry,
//     in any order, registered or not. For a name not registered it
//     creates the state "restored, not registered" (an ID, Kind(0)) and
//     stores the entry exactly as ForEach yielded it. Its errors are the
//     restore's: ErrCorrupt (a malformed entry or state name),
//     ErrKeyGroupOutOfRange, ErrValueTooLarge, ErrTooManyStates; a failed
//     call changes nothing.
//   - Register (or NewValueState and the other constructors) of such a
//     name binds it: it returns the ID the entries have, and the state is
//     of that kind and TTL from then on. If the entries cannot be of that
//     kind or TTL it returns an error wrapping ErrStateMismatch naming the
//     state, and the state stays unregistered (the task should fail).
//   - UnregisteredStates lists the states restored and never registered.
//     Call it when the operators have registered theirs (the task's open)
//     to log or refuse them. They are kept: every Snapshot (and so every
//     checkpoint) yields their entries, as Flink keeps the state of
//     descriptors a job no longer declares, and RestoreEntry may continue
//     to add to them. No other operation applies to them (their ID panics
//     like an unregistered one).
//
// The entries in a checkpoint are the stored values, so the kind and the
// TTL are not needed to store them: a TTL state's value is its 8-byte
// timestamp and the value, a list state's value its framed elements, the
// same bytes whether a state is registered or not. What differs is map
// state's record structure (a head per key, linked entries), and an entry
// says it is map state only by a user key; an empty user key looks like a
// non-map entry. So entries without a user key are stored as non-map
// values until an entry with a user key arrives or Register binds the
// name to KindMap; then they are rewritten as map entries (one pass over
// the backend, once per state, and only if there were such entries).
//
// What Register can check: map entries (with user keys) for a non-map
// kind; a TTL when a value is shorter than a timestamp; no TTL when a
// value is longer than MaxValueBytes. What it cannot: value, list,
// reducing and aggregating state store the same bytes, and a value of 8
// bytes or more may or may not start with a timestamp, so registering
// with another of these kinds, or without the TTL it had, reads the bytes
// as the new registration says (a codec that rejects them panics with
// ErrCorrupt on read, as for a changed state type). The checkpoint does
// not record kinds; Snapshot.Kinds and StateOptions exist should
// snapshot/ store them.
//
// # Decisions where the design is silent
//
//   - ForEach does not skip expired entries: a key group's contents are a
//     function of its version alone, and restore is exact. Reads never
//     remove expired entries (a read must not copy pages a snapshot
//     shares); CleanupExpired removes them incrementally under a budget,
//     and compaction drops them.
//   - TTL is Flink's OnCreateAndWrite + NeverReturnExpired, millisecond
//     granularity; the stored value is an 8-byte little-endian write
//     timestamp followed by the value. Map state TTL is per user key; list
//     state TTL covers the whole list (Flink's is per element).
//   - Entry keys in ForEach and RestoreEntry are uvarint(len(key)) || key
//     || userKey for every kind (AppendEntryKey, SplitEntryKey), so
//     restore never needs the kind to split them.
//   - Bugs panic: a key outside the range (routing bug), an unregistered
//     state ID, the wrong kind of operation, writing during an iteration,
//     using a released snapshot. Limits (MaxKeyBytes, MaxValueBytes)
//     panic with errors wrapping ErrKeyTooLarge / ErrValueTooLarge,
//     because the per-record API has no error results; the engine may
//     recover them and fail the task. Stored bytes that a Codec cannot
//     decode panic with an error wrapping ErrCorrupt that names the state.
//     RestoreEntry returns errors (ErrCorrupt, ErrKeyGroupOutOfRange,
//     ErrValueTooLarge, ErrTooManyStates).
//   - Key-group versions start at a random base per backend, so versions
//     of a new backend (after a restart) collide with a previous run's
//     only with negligible probability; the empty, never-written key group
//     is version 0 everywhere.
//   - A key group addresses at most 2^32 bytes of pages (32-bit
//     addresses); beyond that writes panic asking for a higher
//     MaxParallelism. Compaction of a key group is O(its live entries) and
//     runs on the owner's goroutine (not incremental).
//
// Build with -tags invariants (or -race) to verify each compacted key
// group.
//
// keyed must never import other streamd packages (it is the bottom of the
// stack; snapshot/ and engine/ import it) except internal/invariants, a
// leaf of constants; nor do I/O, start goroutines or read the clock other
// than through Options.Clock.
package keyed
