// The section this file would add to the package doc (doc.go):
//
// # Timers
//
// A Timers is one keyed operator's timer service (Flink's
// InternalTimerService): event-time and processing-time timers per key, at
// most one per key, kind and timestamp. Their source of truth is a map
// state of the backend, registered under the name the engine gives
// (rt.StateName("timers")): per key, one entry per timer, whose user key
// is the kind (0 event time, 1 processing time) followed by the timestamp
// as 8 big-endian bytes with the sign bit flipped (so byte order is time
// order), and whose value is empty. Timers are therefore copy-on-write
// with the rest of the state: Snapshot stays O(1) whatever their number,
// a checkpoint carries them as ordinary map entries, and a restore,
// rescaled or not, hands every task the timers of its own key groups,
// with no code path of their own in snapshot/ or in the engine's restore.
//
// For firing, each kind has an in-memory priority queue, a cache of the
// state that is never checkpointed: a binary min-heap of fixed-size,
// pointer-free entries (timestamp, key group, key hash, and the offset and
// length of the encoded key in a byte arena), ordered by timestamp, then
// key group, then key bytes, so the GC marks O(1) objects whatever the
// number of timers. NewTimers rebuilds the queues from the state (a
// sequential walk of the backend's data pages and a heapify: O(bytes of
// the backend), once, like the restore that filled it). Deleting a timer removes only
// its state entry; its queue entry becomes dead and is dropped when it
// reaches the top (every entry taken from the top is checked against the
// state) or when dead entries outnumber live ones (the queue is then
// sorted, deduplicated and checked, O(n log n) amortized over the n/2
// deletions that made them dead). The arena is compacted into a spare
// buffer when it would grow and at least half of its bytes belong to
// entries already gone, so in steady state nothing allocates.

package keyed

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Timer kinds: the first byte of a timer's user key.
const (
	timerEventTime      = 0
	timerProcessingTime = 1

	// timerUserKeyBytes is the length of a timer's user key: the kind and
	// the 8-byte timestamp.
	timerUserKeyBytes = 9

	// minDeadTimers is the number of dead queue entries below which a
	// queue is never compacted, however few live timers it has: a
	// compaction sorts the queue, and a small number of dead entries is
	// cheaper to drop when they reach the top.
	minDeadTimers = 64

	// maxTimerArenaBytes bounds the encoded keys one queue holds (32-bit
	// offsets). At 9 bytes per 8-byte key that is about 470 M timers of one
	// kind in one task.
	maxTimerArenaBytes = math.MaxUint32
)

// putTimerUserKey writes the user key of a timer of kind at ts to dst.
// Flipping the sign bit makes the big-endian bytes sort like the int64.
func putTimerUserKey(dst *[timerUserKeyBytes]byte, kind byte, ts int64) {
	dst[0] = kind
	binary.BigEndian.PutUint64(dst[1:], uint64(ts)^1<<63)
}

// decodeTimerEntry decodes a timer stored in the state (its user key and
// value), with an error wrapping ErrCorrupt when it is not one that
// RegisterEventTime or RegisterProcessingTime stores.
func decodeTimerEntry(userKey, value []byte) (kind byte, ts int64, err error) {
	if len(userKey) != timerUserKeyBytes {
		return 0, 0, fmt.Errorf("%w: a timer's user key has %d bytes, want %d", ErrCorrupt, len(userKey), timerUserKeyBytes)
	}
	if kind = userKey[0]; kind != timerEventTime && kind != timerProcessingTime {
		return 0, 0, fmt.Errorf("%w: unknown timer kind %d", ErrCorrupt, kind)
	}
	if len(value) != 0 {
		return 0, 0, fmt.Errorf("%w: a timer's value has %d bytes, want none", ErrCorrupt, len(value))
	}
	return kind, int64(binary.BigEndian.Uint64(userKey[1:]) ^ 1<<63), nil
}

// Timers is one keyed operator's timer service over a Backend: event-time
// and processing-time timers, at most one per key and timestamp of each
// kind, kept in a map state of the backend (so they are snapshotted,
// checkpointed and restored with the rest of the state) and ordered for
// firing by an in-memory queue per kind (the section at the top of
// timers.go says how, and why).
//
// Like its backend, a Timers belongs to the backend's goroutine. There is
// one Timers per name and backend: two over the same state would each see
// the other's timers without ordering them.
//
// Decisions where the design is silent:
//
//   - Due timers fire in order of timestamp, then key group, then key
//     bytes (bytes.Compare), the same order whatever the history of
//     registrations, before and after a restore.
//   - A timer that fire registers with a timestamp at or below the limit
//     of the call (watermark or time) fires in the same call, after every
//     timer that was pending when the call began with a timestamp at or
//     below its own (so also right after the current one when its
//     timestamp has passed already); among themselves, such timers fire
//     in the same order as the others. A timer registered outside a call
//     with a timestamp that has passed fires at the next call, as in
//     Flink.
//   - Calling AdvanceWatermark or AdvanceProcessingTime from a fire
//     callback panics (a bug: the engine advances time between records).
//   - After an Advance call that fired something, the backend's current
//     key is the key of the last timer fired; otherwise it is unchanged.
//     Register and Delete use the current key; NextEventTime,
//     NextProcessingTime and Len never change it.
//   - Timers count in Backend.Len (they are map entries), and NewTimers
//     must be called after the restore's RestoreEntry calls (the engine's
//     order): entries restored later are in the state but not in the
//     queues.
type Timers struct {
	b     *Backend
	id    StateID
	name  string
	event timerQueue
	proc  timerQueue

	// advancing is set while AdvanceWatermark or AdvanceProcessingTime
	// runs, so that a fire callback cannot start another.
	advancing bool

	// k is a queue entry's key, for the backend's lookups of a key other
	// than the current one; uk is the user key being looked up.
	k  keyCtx
	uk [timerUserKeyBytes]byte
}

// timerEntry is one queue entry: 24 bytes, no pointers.
type timerEntry struct {
	ts   int64
	hash uint64 // HashKey(key)
	off  uint32 // the encoded key, uvarint(len(key)) || key, is arena[off : off+n]
	n    uint16 // at most MaxKeyBytes + 3
	kg   uint16 // key group, < MaxMaxParallelism
}

// timerQueue orders the timers of one kind. Its entries are in heap or,
// during an Advance call of its kind, late; an entry is live when its
// timer is in the state and no other entry of the same timer fires before
// it, dead otherwise (deleted, or left behind when the timer was deleted
// and registered again). Invariants (Timers.check verifies them):
// len(heap)+len(late) == live+dead, arenaLive is the sum of the entries'
// n, and every timer of the kind in the state has a live entry.
type timerQueue struct {
	kind byte

	heap []timerEntry // min-heap by (ts, kg, key)
	// late holds, during an Advance call of this kind, the timers that a
	// fire callback registered with ts <= limit (a min-heap, ordered like
	// heap); they fire after the entries of heap with the same or a
	// smaller ts. Empty outside such a call.
	late      []timerEntry
	advancing bool
	limit     int64
	// lateIDs counts the entries of late by timestamp, key group and key
	// hash. A heap entry popped with the timestamp of late's top has an
	// equal late entry only if its id is counted: the search of lateHas,
	// which visits every late entry of that timestamp, is made only then
	// (a deleted timer registered again by a fire callback, or two keys
	// whose hashes collide). Without it, a group of n timers registered by
	// fire callbacks at one timestamp cost O(n²). Cleared, not freed, at
	// the end of each Advance call, so in steady state it allocates
	// nothing.
	lateIDs map[lateID]int32

	// arena holds the encoded keys of the entries, appended; spare is the
	// buffer the next arena compaction copies into.
	arena     []byte
	spare     []byte
	arenaLive int // bytes of arena that entries of heap and late reference

	live int // timers of this kind in the state
	dead int // entries whose timer is not in the state, or is another entry's

	// Counters for tests: lateSearches counts the calls of lateHas from
	// advance, lateTwins those that found the heap entry's timer in late.
	compactions, arenaCompactions int
	lateSearches, lateTwins       int
}

// lateID is what lateIDs counts a late entry by.
type lateID struct {
	ts   int64
	hash uint64
	kg   uint16
}

func idOf(e *timerEntry) lateID { return lateID{ts: e.ts, hash: e.hash, kg: e.kg} }

// NewTimers registers the timers of one operator under name (the engine
// passes rt.StateName("timers")) in b, and restores them if b was restored
// with timers of that name. Event-time and processing-time timers are kept
// apart.
//
// The timers are a map state named name; registering it fails (with an
// error wrapping ErrStateMismatch or ErrInvalidState) when the name is
// taken by another kind of state or invalid. A restored entry that is not
// a timer fails with an error wrapping ErrCorrupt that names the state and
// the key. Restoring costs one sequential walk of the backend's data pages
// and O(timers) work, once.
func NewTimers(b *Backend, name string) (*Timers, error) {
	id, err := b.Register(name, KindMap, StateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot register the timers %q: %w", name, err)
	}
	t := &Timers{
		b:     b,
		id:    id,
		name:  name,
		event: timerQueue{kind: timerEventTime},
		proc:  timerQueue{kind: timerProcessingTime},
	}
	err = b.forEachMapEntry(id, func(kg int, enc, uk, value []byte) error {
		kind, ts, err := decodeTimerEntry(uk, value)
		if err != nil {
			_, m := binary.Uvarint(enc)
			key := enc[m:]
			return fmt.Errorf("cannot restore the timers %q: key %x: %w", name, key[:min(len(key), 64)], err)
		}
		q := t.queue(kind)
		if len(q.heap) == cap(q.heap) {
			// Double (append grows large slices by 1.25).
			q.heap = slices.Grow(q.heap, max(len(q.heap), 1024))
		}
		if len(q.arena)+len(enc) > cap(q.arena) {
			q.arena = slices.Grow(q.arena, max(len(q.arena), len(enc), 4096))
		}
		q.heap = append(q.heap, q.newEntry(ts, HashKey(enc[uvarintLenOf(enc):]), kg, enc))
		q.live++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, q := range []*timerQueue{&t.event, &t.proc} {
		for i := len(q.heap)/2 - 1; i >= 0; i-- {
			q.down(q.heap, i)
		}
	}
	return t, nil
}

// uvarintLenOf is the length of the uvarint at the start of enc (a valid
// encoded key).
func uvarintLenOf(enc []byte) int {
	if enc[0] < 0x80 {
		return 1
	}
	_, m := binary.Uvarint(enc)
	return m
}

func (t *Timers) queue(kind byte) *timerQueue {
	if kind == timerEventTime {
		return &t.event
	}
	return &t.proc
}

// RegisterEventTime registers an event-time timer at ts for the backend's
// current key; registering one that exists does nothing.
func (t *Timers) RegisterEventTime(ts int64) { t.register(&t.event, ts) }

// DeleteEventTime deletes the current key's event-time timer at ts, if
// there is one.
func (t *Timers) DeleteEventTime(ts int64) { t.delete(&t.event, ts) }

// RegisterProcessingTime registers a processing-time timer at ts (unix
// milliseconds) for the backend's current key; registering one that
// exists does nothing.
func (t *Timers) RegisterProcessingTime(ts int64) { t.register(&t.proc, ts) }

// DeleteProcessingTime deletes the current key's processing-time timer at
// ts, if there is one.
func (t *Timers) DeleteProcessingTime(ts int64) { t.delete(&t.proc, ts) }

func (t *Timers) register(q *timerQueue, ts int64) {
	b := t.b
	putTimerUserKey(&t.uk, q.kind, ts)
	// GetUser first: registering an existing timer must not write (a
	// write copies the pages a snapshot shares).
	if _, ok := b.GetUser(t.id, t.uk[:]); ok {
		return
	}
	b.PutUser(t.id, t.uk[:], nil)
	q.live++
	e := q.newEntry(ts, b.cur.hash, b.cur.idx+b.opts.Range.Start, b.cur.enc)
	if q.advancing && ts <= q.limit {
		q.pushLate(e)
	} else {
		q.heap = q.push(q.heap, e)
	}
}

func (t *Timers) delete(q *timerQueue, ts int64) {
	b := t.b
	b.stateOf(t.id, true) // panics without a current key
	putTimerUserKey(&t.uk, q.kind, ts)
	if !b.removeMapEntry(t.id, &b.cur, t.uk[:]) {
		return
	}
	q.live--
	q.dead++
	if q.dead >= minDeadTimers && q.dead > q.live {
		t.compact(q)
	}
}

// AdvanceWatermark fires, in order of (timestamp, then a deterministic
// order of keys: key group, then key bytes), every event-time timer with
// ts <= wm: for each it removes the timer, makes the timer's key the
// backend's current key, and calls fire(ts). Timers registered by fire
// with ts <= wm fire in the same call (after those already due at an
// earlier or equal ts, in order). Returns the number fired.
func (t *Timers) AdvanceWatermark(wm int64, fire func(ts int64)) int {
	return t.advance(&t.event, wm, fire)
}

// AdvanceProcessingTime is AdvanceWatermark for processing-time timers,
// nowMs in unix milliseconds.
func (t *Timers) AdvanceProcessingTime(nowMs int64, fire func(ts int64)) int {
	return t.advance(&t.proc, nowMs, fire)
}

func (t *Timers) advance(q *timerQueue, limit int64, fire func(ts int64)) int {
	if t.advancing {
		panic(fmt.Sprintf("keyed: timers %q: AdvanceWatermark or AdvanceProcessingTime called from a fire callback", t.name))
	}
	t.advancing, q.advancing, q.limit = true, true, limit
	// Reset even when fire panics (the engine recovers and fails the task;
	// a later call must not report a nested call).
	defer t.endAdvance(q)
	fired := 0
	for {
		h := q.due(limit)
		if h == nil {
			break
		}
		fromHeap := h == &q.heap
		e := q.popEntry(h)
		q.arenaLive -= int(e.n)
		t.setKey(q, &e)
		if fromHeap && len(q.late) > 0 && q.late[0].ts == e.ts && q.lateIDs[idOf(&e)] > 0 {
			q.lateSearches++
			if q.lateHas(&e, 0) {
				// The timer was deleted and registered again by a fire
				// callback: its late entry is the live one.
				q.lateTwins++
				q.dead--
				continue
			}
		}
		putTimerUserKey(&t.uk, q.kind, e.ts)
		if !t.b.removeMapEntry(t.id, &t.k, t.uk[:]) {
			q.dead--
			continue
		}
		q.live--
		// The key bytes are in the arena, which fire may compact: the
		// backend copies them here, and e is not used after fire.
		t.b.SetCurrentKeyHashed(t.k.key(), e.hash)
		fire(e.ts)
		fired++
	}
	if invariants && len(q.late) > 0 {
		panic(fmt.Sprintf("keyed: invariant: timers %q: %d late entries left after an Advance call", t.name, len(q.late)))
	}
	return fired
}

func (t *Timers) endAdvance(q *timerQueue) {
	t.advancing, q.advancing = false, false
	// Late entries are left only when fire panicked: they join the heap
	// (no longer ahead of anything), so the next call fires them.
	for _, e := range q.late {
		q.heap = q.push(q.heap, e)
	}
	q.late = q.late[:0]
	clear(q.lateIDs)
}

// NextEventTime returns the earliest pending event-time timer's timestamp,
// or false when there is none.
func (t *Timers) NextEventTime() (int64, bool) { return t.next(&t.event) }

// NextProcessingTime returns the earliest pending processing-time timer's
// timestamp, or false when there is none.
func (t *Timers) NextProcessingTime() (int64, bool) { return t.next(&t.proc) }

// next drops dead entries from the top until it finds a live one. A
// heap entry whose timer also has a late entry (see advance) counts as
// live here: both have the same ts.
func (t *Timers) next(q *timerQueue) (int64, bool) {
	for {
		h := q.due(math.MaxInt64)
		if h == nil {
			return 0, false
		}
		e := &(*h)[0]
		t.setKey(q, e)
		putTimerUserKey(&t.uk, q.kind, e.ts)
		if t.b.hasMapEntry(t.id, &t.k, t.uk[:]) {
			return e.ts, true
		}
		q.arenaLive -= int(e.n)
		q.popEntry(h)
		q.dead--
	}
}

// Len returns the number of pending timers (both kinds).
func (t *Timers) Len() int { return t.event.live + t.proc.live }

// setKey points t.k at the key of e (its bytes stay in the arena).
func (t *Timers) setKey(q *timerQueue, e *timerEntry) {
	t.k.enc = q.arena[e.off : e.off+uint32(e.n)]
	t.k.hash = e.hash
	t.k.idx = int(e.kg) - t.b.opts.Range.Start
}

// compact drops q's dead entries: each of heap and late is sorted
// (a sorted array is a heap), and of the entries of one timer the first
// is kept if the timer is in the state.
func (t *Timers) compact(q *timerQueue) {
	q.compactions++
	q.heap = t.compactEntries(q, q.heap)
	q.late = t.compactEntries(q, q.late)
	clear(q.lateIDs)
	for i := range q.late {
		q.lateIDs[idOf(&q.late[i])]++
	}
	// A timer deleted and registered again during an Advance call may
	// still have an entry in both (advance drops the one in heap).
	q.dead = len(q.heap) + len(q.late) - q.live
}

func (t *Timers) compactEntries(q *timerQueue, h []timerEntry) []timerEntry {
	slices.SortFunc(h, q.cmpValues)
	out := h[:0]
	for i := range h {
		e := h[i]
		if len(out) > 0 && q.cmp(&out[len(out)-1], &e) == 0 {
			q.arenaLive -= int(e.n)
			continue
		}
		t.setKey(q, &e)
		putTimerUserKey(&t.uk, q.kind, e.ts)
		if !t.b.hasMapEntry(t.id, &t.k, t.uk[:]) {
			q.arenaLive -= int(e.n)
			continue
		}
		out = append(out, e)
	}
	return out
}

// newEntry returns an entry for a timer at ts of the key whose encoded key
// is enc, copying enc into the arena.
func (q *timerQueue) newEntry(ts int64, hash uint64, kg int, enc []byte) timerEntry {
	n := len(enc)
	if len(q.arena)+n > cap(q.arena) && 2*q.arenaLive <= len(q.arena) && q.arenaLive < len(q.arena) {
		q.compactArena()
	}
	if len(q.arena)+n > maxTimerArenaBytes {
		panic(fmt.Sprintf("keyed: a timer queue holds %d bytes of keys, the limit is %d: too many timers in one task", len(q.arena), maxTimerArenaBytes))
	}
	off := len(q.arena)
	q.arena = append(q.arena, enc...)
	q.arenaLive += n
	return timerEntry{ts: ts, hash: hash, off: uint32(off), n: uint16(n), kg: uint16(kg)}
}

// compactArena copies the keys of the entries into the spare buffer, which
// becomes the arena (the old arena becomes the spare).
func (q *timerQueue) compactArena() {
	q.arenaCompactions++
	dst := q.spare[:0]
	if cap(dst) < q.arenaLive {
		// As large as the arena: the two buffers reach the same size at
		// once, and from then on compactions allocate nothing.
		dst = make([]byte, 0, max(2*q.arenaLive, cap(q.arena)))
	}
	for _, h := range [2][]timerEntry{q.heap, q.late} {
		for i := range h {
			e := &h[i]
			off := len(dst)
			dst = append(dst, q.arena[e.off:e.off+uint32(e.n)]...)
			e.off = uint32(off)
		}
	}
	q.spare, q.arena = q.arena[:0], dst
}

// due returns the heap (heap or late) whose top fires next, if its ts is
// at most limit, else nil. heap goes first on equal ts (see late).
func (q *timerQueue) due(limit int64) *[]timerEntry {
	var h *[]timerEntry
	if len(q.heap) > 0 && q.heap[0].ts <= limit {
		h = &q.heap
	}
	if len(q.late) > 0 && q.late[0].ts <= limit && (h == nil || q.late[0].ts < q.heap[0].ts) {
		h = &q.late
	}
	return h
}

// pushLate adds e to late.
func (q *timerQueue) pushLate(e timerEntry) {
	q.late = q.push(q.late, e)
	if q.lateIDs == nil {
		q.lateIDs = make(map[lateID]int32)
	}
	q.lateIDs[idOf(&e)]++
}

// popEntry removes the top of h (heap or late) and returns it.
func (q *timerQueue) popEntry(h *[]timerEntry) timerEntry {
	e := q.pop(h)
	if h == &q.late {
		id := idOf(&e)
		if n := q.lateIDs[id]; n > 1 {
			q.lateIDs[id] = n - 1
		} else {
			delete(q.lateIDs, id)
		}
	}
	return e
}

// lateHas reports whether the subtree of late at i holds an entry equal to
// e; only entries with e's ts are visited (late[0].ts == e.ts, and a
// subtree's entries are no smaller than its root).
func (q *timerQueue) lateHas(e *timerEntry, i int) bool {
	if i >= len(q.late) || q.late[i].ts != e.ts {
		return false
	}
	return q.cmp(&q.late[i], e) == 0 || q.lateHas(e, 2*i+1) || q.lateHas(e, 2*i+2)
}

// key returns the key of e (without its length prefix).
func (q *timerQueue) key(e *timerEntry) []byte {
	enc := q.arena[e.off : e.off+uint32(e.n)]
	return enc[uvarintLenOf(enc):]
}

// cmp orders entries by ts, key group, key bytes.
func (q *timerQueue) cmp(a, b *timerEntry) int {
	switch {
	case a.ts < b.ts:
		return -1
	case a.ts > b.ts:
		return 1
	case a.kg < b.kg:
		return -1
	case a.kg > b.kg:
		return 1
	}
	return bytes.Compare(q.key(a), q.key(b))
}

func (q *timerQueue) cmpValues(a, b timerEntry) int { return q.cmp(&a, &b) }

// push adds e to the heap h and returns it.
func (q *timerQueue) push(h []timerEntry, e timerEntry) []timerEntry {
	h = append(h, e)
	q.up(h, len(h)-1)
	return h
}

// pop removes the top of the heap *h and returns it.
func (q *timerQueue) pop(h *[]timerEntry) timerEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	if last > 0 {
		q.down(s, 0)
	}
	*h = s
	return top
}

func (q *timerQueue) up(h []timerEntry, i int) {
	e := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if q.cmp(&h[p], &e) <= 0 {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
}

func (q *timerQueue) down(h []timerEntry, i int) {
	n := len(h)
	e := h[i]
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && q.cmp(&h[r], &h[c]) < 0 {
			c = r
		}
		if q.cmp(&e, &h[c]) <= 0 {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = e
}
