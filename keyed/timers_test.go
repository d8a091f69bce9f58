package keyed

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// check verifies the invariants of both queues against the state (see
// timerQueue) and returns every broken one. O(timers).
func (t *Timers) check() error {
	inState := map[timerID]bool{}
	err := t.b.forEachMapEntry(t.id, func(kg int, enc, uk, value []byte) error {
		kind, ts, err := decodeTimerEntry(uk, value)
		if err != nil {
			return err
		}
		key := enc[uvarintLenOf(enc):]
		if got := KeyGroupOf(HashKey(key), t.b.opts.MaxParallelism); got != kg {
			return fmt.Errorf("a timer of key group %d is stored in %d", got, kg)
		}
		inState[timerID{kind, string(key), ts}] = true
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, q := range []*timerQueue{&t.event, &t.proc} {
		n, arena := 0, 0
		queued := map[timerID]bool{}
		for hi, h := range [][]timerEntry{q.heap, q.late} {
			for i := range h {
				e := &h[i]
				if i > 0 && q.cmp(&h[(i-1)/2], e) > 0 {
					errs = append(errs, fmt.Errorf("kind %d: heap %d: entry %d is smaller than its parent", q.kind, hi, i))
				}
				key := q.key(e)
				if HashKey(key) != e.hash || KeyGroupOf(e.hash, t.b.opts.MaxParallelism) != int(e.kg) {
					errs = append(errs, fmt.Errorf("kind %d: the entry of key %x has a wrong hash or key group", q.kind, key))
				}
				queued[timerID{q.kind, string(key), e.ts}] = true
				arena += int(e.n)
			}
			n += len(h)
		}
		live := 0
		for id := range inState {
			if id.kind != q.kind {
				continue
			}
			live++
			if !queued[id] {
				errs = append(errs, fmt.Errorf("kind %d: the timer at %d of key %x has no queue entry", q.kind, id.ts, id.key))
			}
		}
		if live != q.live || n != q.live+q.dead || arena != q.arenaLive {
			errs = append(errs, fmt.Errorf("kind %d: %d timers in the state, live %d, dead %d, %d entries, arena %d bytes, arenaLive %d",
				q.kind, live, q.live, q.dead, n, arena, q.arenaLive))
		}
		if !q.advancing && len(q.late) > 0 {
			errs = append(errs, fmt.Errorf("kind %d: %d late entries outside an Advance call", q.kind, len(q.late)))
		}
		ids := map[lateID]int32{}
		for i := range q.late {
			ids[idOf(&q.late[i])]++
		}
		if !maps.Equal(ids, q.lateIDs) {
			errs = append(errs, fmt.Errorf("kind %d: lateIDs counts %v, the late entries are %v", q.kind, q.lateIDs, ids))
		}
	}
	return errors.Join(errs...)
}

func mustCheck(tb testing.TB, tm *Timers) {
	tb.Helper()
	if err := tm.check(); err != nil {
		tb.Fatal(err)
	}
}

// timerID is a timer as the tests see it.
type timerID struct {
	kind byte
	key  string
	ts   int64
}

func (id timerID) String() string {
	return fmt.Sprintf("%s@%d(%x)", map[byte]string{0: "E", 1: "P"}[id.kind], id.ts, id.key)
}

// cmpFiring orders timers as they fire: ts, key group, key bytes.
func cmpFiring(maxPar int) func(a, b timerID) int {
	return func(a, b timerID) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts),
			cmp.Compare(KeyGroupOf(HashKey([]byte(a.key)), maxPar), KeyGroupOf(HashKey([]byte(b.key)), maxPar)),
			bytes.Compare([]byte(a.key), []byte(b.key)))
	}
}

// timerKeys returns n keys of mixed lengths: 8-byte integers, short
// strings, the empty key and a key long enough for a 2-byte length prefix.
func timerKeys(n int) [][]byte {
	keys := [][]byte{{}, []byte(strings.Repeat("L", 200))}
	for i := 0; len(keys) < n; i++ {
		if i%2 == 0 {
			keys = append(keys, key8(i))
		} else {
			keys = append(keys, []byte(fmt.Sprint("k", i)))
		}
	}
	return keys
}

func register(tm *Timers, id timerID) {
	tm.b.SetCurrentKey([]byte(id.key))
	if id.kind == timerEventTime {
		tm.RegisterEventTime(id.ts)
	} else {
		tm.RegisterProcessingTime(id.ts)
	}
}

// fireAll fires every timer of both kinds and returns them in firing
// order (event time first), checking that each fires with its key current.
func fireAll(t testing.TB, tm *Timers) []timerID {
	t.Helper()
	var out []timerID
	for _, kind := range []byte{timerEventTime, timerProcessingTime} {
		fire := func(ts int64) { out = append(out, timerID{kind, string(tm.b.CurrentKey()), ts}) }
		before := len(out)
		var n int
		if kind == timerEventTime {
			n = tm.AdvanceWatermark(math.MaxInt64, fire)
		} else {
			n = tm.AdvanceProcessingTime(math.MaxInt64, fire)
		}
		if n != len(out)-before {
			t.Fatalf("Advance returned %d, fired %d", n, len(out)-before)
		}
	}
	return out
}

// snapshotTimers decodes the timers of state name in s.
func snapshotTimers(t testing.TB, s *Snapshot, name string) map[timerID]bool {
	t.Helper()
	out := map[timerID]bool{}
	for _, es := range collect(t, s) {
		for _, e := range es {
			if e.state != name {
				continue
			}
			key, uk, err := SplitEntryKey(e.key)
			if err != nil {
				t.Fatal(err)
			}
			kind, ts, err := decodeTimerEntry(uk, e.value)
			if err != nil {
				t.Fatal(err)
			}
			out[timerID{kind, string(key), ts}] = true
		}
	}
	return out
}

// restoreInto restores the entries of s whose key group is in each
// backend's range, as the engine routes them, and fails on any other
// error.
func restoreInto(t testing.TB, s *Snapshot, dst ...*Backend) {
	t.Helper()
	for kg, es := range collect(t, s) {
		n := 0
		for _, b := range dst {
			if !b.Range().Contains(kg) {
				continue
			}
			n++
			for _, e := range es {
				if err := b.RestoreEntry(e.state, e.key, e.value); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n != 1 {
			t.Fatalf("key group %d is in %d of the target backends", kg, n)
		}
	}
}

func TestTimersOrder(t *testing.T) {
	const maxPar = 8
	keys := timerKeys(60)
	var ids []timerID
	for i, k := range keys {
		for _, ts := range []int64{-3, 10, int64(i % 4)} {
			ids = append(ids, timerID{timerEventTime, string(k), ts})
		}
	}
	ids = append(ids, timerID{timerEventTime, "late", 11}, timerID{timerEventTime, "min", math.MinInt64})
	want := slices.Clone(ids)
	slices.SortFunc(want, cmpFiring(maxPar))
	want = slices.Compact(want)

	for _, order := range []string{"forward", "reverse", "shuffled"} {
		b := newBackend(t, Options{MaxParallelism: maxPar})
		tm := must[*Timers](t)(NewTimers(b, "op/timers"))
		reg := slices.Clone(ids)
		switch order {
		case "reverse":
			slices.Reverse(reg)
		case "shuffled":
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(reg), func(i, j int) { reg[i], reg[j] = reg[j], reg[i] })
		}
		for _, id := range reg {
			register(tm, id)
		}
		mustCheck(t, tm)
		if tm.Len() != len(want) {
			t.Fatalf("%s: Len %d, want %d", order, tm.Len(), len(want))
		}
		var got []timerID
		fire := func(ts int64) { got = append(got, timerID{timerEventTime, string(b.CurrentKey()), ts}) }
		if n := tm.AdvanceWatermark(-4, fire); n != 1 || got[0].ts != math.MinInt64 {
			t.Fatalf("%s: watermark -4 fired %v", order, got)
		}
		if n := tm.AdvanceWatermark(10, fire); n != len(want)-2 {
			t.Fatalf("%s: watermark 10 fired %d timers, want %d", order, n, len(want)-2)
		}
		if next, ok := tm.NextEventTime(); !ok || next != 11 || tm.Len() != 1 {
			t.Fatalf("%s: next %d %v, Len %d: want the timer at 11 pending", order, next, ok, tm.Len())
		}
		if tm.AdvanceWatermark(10, fire) != 0 {
			t.Fatalf("%s: the same watermark fired again", order)
		}
		tm.AdvanceWatermark(11, fire)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: fired\n%v\nwant\n%v", order, got, want)
		}
		if _, ok := tm.NextEventTime(); ok || tm.Len() != 0 || b.Len() != 0 {
			t.Fatalf("%s: timers left: Len %d, backend Len %d", order, tm.Len(), b.Len())
		}
		mustCheck(t, tm)
	}
}

func TestTimersRegisterDelete(t *testing.T) {
	b := newBackend(t, Options{})
	other := must[*ValueState[int64]](t)(NewValueState(b, "op/value", Int64Codec, StateOptions{}))
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	wantPanic(t, "no current key", func() { tm.RegisterEventTime(1) })
	wantPanic(t, "no current key", func() { tm.DeleteProcessingTime(1) })

	b.SetCurrentKey([]byte("a"))
	other.Put(7)
	tm.RegisterEventTime(5)
	tm.RegisterEventTime(5) // idempotent
	tm.RegisterProcessingTime(5)
	if tm.Len() != 2 || b.Len() != 3 {
		t.Fatalf("Len %d, backend Len %d, want 2 timers and a value", tm.Len(), b.Len())
	}
	tm.DeleteEventTime(6)   // absent: nothing
	tm.DeleteEventTime(5)   // the event-time timer only
	tm.DeleteEventTime(5)   // again: nothing
	tm.RegisterEventTime(9) // pending
	tm.RegisterEventTime(3) // deleted below
	tm.DeleteEventTime(3)   // its queue entry is dead, at the top
	tm.RegisterEventTime(4) // deleted and registered again:
	tm.DeleteEventTime(4)   // a dead entry and a live one
	tm.RegisterEventTime(4) // of the same timer
	b.SetCurrentKey([]byte("b"))
	if next, ok := tm.NextEventTime(); !ok || next != 4 {
		t.Fatalf("NextEventTime %d %v, want 4", next, ok)
	}
	if string(b.CurrentKey()) != "b" {
		t.Fatal("NextEventTime changed the current key")
	}
	if next, ok := tm.NextProcessingTime(); !ok || next != 5 {
		t.Fatalf("NextProcessingTime %d %v, want 5", next, ok)
	}
	mustCheck(t, tm)
	if tm.Len() != 3 {
		t.Fatalf("Len %d, want 3", tm.Len())
	}
	got := fireAll(t, tm)
	want := []timerID{{0, "a", 4}, {0, "a", 9}, {1, "a", 5}}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	b.SetCurrentKey([]byte("a"))
	if v, ok := other.Get(); !ok || v != 7 || b.Len() != 1 {
		t.Fatalf("the other state's value is %d %v, backend Len %d", v, ok, b.Len())
	}
	mustCheck(t, tm)
}

// TestTimersFireRegisters: timers that fire registers with ts <= wm fire
// in the same call, after the pending ones with ts at or below theirs;
// those with ts > wm wait. Deleting a due timer in fire keeps it from
// firing.
func TestTimersFireRegisters(t *testing.T) {
	const maxPar = 4
	b := newBackend(t, Options{MaxParallelism: maxPar})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	// Three keys in firing order x < y < z at the same ts.
	ks := []timerID{{0, "a", 5}, {0, "b", 5}, {0, "c", 5}}
	slices.SortFunc(ks, cmpFiring(maxPar))
	x, y, z := ks[0].key, ks[1].key, ks[2].key
	for _, id := range []timerID{{0, x, 5}, {0, y, 5}, {0, z, 7}, {0, x, 20}, {0, z, 9}} {
		register(tm, id)
	}
	var got []timerID
	first := true
	n := tm.AdvanceWatermark(10, func(ts int64) {
		key := string(b.CurrentKey())
		got = append(got, timerID{0, key, ts})
		if key == x && ts == 5 && first {
			first = false
			tm.RegisterEventTime(5)      // again: after y@5, before z@7
			tm.RegisterEventTime(3)      // passed: right after this one
			tm.RegisterEventTime(15)     // beyond the watermark: waits
			tm.RegisterEventTime(20)     // exists: nothing
			tm.RegisterProcessingTime(1) // the other kind: waits
			b.SetCurrentKey([]byte(z))   // another key's timer,
			tm.DeleteEventTime(9)        // due, deleted: never fires
			mustCheck(t, tm)
		}
	})
	want := []timerID{{0, x, 5}, {0, x, 3}, {0, y, 5}, {0, x, 5}, {0, z, 7}}
	if !slices.Equal(got, want) || n != len(want) {
		t.Fatalf("fired %d: %v, want %v", n, got, want)
	}
	if next, ok := tm.NextEventTime(); !ok || next != 15 || tm.Len() != 3 {
		t.Fatalf("next %d %v, Len %d: want x@15, x@20 and a processing-time timer", next, ok, tm.Len())
	}
	mustCheck(t, tm)
}

// TestTimersReregisteredDuringAdvance: a due timer deleted before the call
// and registered again by fire keeps a dead entry in the heap at its old
// place; it must fire at its new place (after the pending timers of its
// ts), not at the old one.
func TestTimersReregisteredDuringAdvance(t *testing.T) {
	const maxPar = 4
	b := newBackend(t, Options{MaxParallelism: maxPar})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	ks := []timerID{{0, "k", 5}, {0, "p", 5}}
	slices.SortFunc(ks, cmpFiring(maxPar))
	k, p := ks[0].key, ks[1].key
	register(tm, timerID{0, "z", 1})
	register(tm, timerID{0, k, 5})
	register(tm, timerID{0, p, 5})
	b.SetCurrentKey([]byte(k))
	tm.DeleteEventTime(5)
	var got []timerID
	tm.AdvanceWatermark(10, func(ts int64) {
		got = append(got, timerID{0, string(b.CurrentKey()), ts})
		if ts == 1 {
			b.SetCurrentKey([]byte(k))
			tm.RegisterEventTime(5)
			mustCheck(t, tm)
		}
	})
	want := []timerID{{0, "z", 1}, {0, p, 5}, {0, k, 5}}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	mustCheck(t, tm)
}

func TestTimersNestedAdvancePanics(t *testing.T) {
	b := newBackend(t, Options{})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	register(tm, timerID{0, "a", 1})
	register(tm, timerID{0, "a", 2})
	wantPanic(t, `timers "op/timers": AdvanceWatermark or AdvanceProcessingTime called from a fire callback`, func() {
		tm.AdvanceWatermark(1, func(int64) { tm.AdvanceProcessingTime(1, func(int64) {}) })
	})
	// The panic left the timers usable: the one at 1 fired (removed), the
	// one at 2 is pending.
	mustCheck(t, tm)
	if tm.Len() != 1 {
		t.Fatalf("after the panic: Len %d", tm.Len())
	}
	// A fire callback that registers a due timer, then panics: the late
	// timer is kept and fires at the next call.
	register(tm, timerID{0, "b", 3})
	wantPanic(t, "boom", func() {
		tm.AdvanceWatermark(3, func(int64) {
			tm.RegisterEventTime(0)
			panic("boom")
		})
	})
	mustCheck(t, tm)
	var got []timerID
	if n := tm.AdvanceWatermark(3, func(ts int64) { got = append(got, timerID{0, string(b.CurrentKey()), ts}) }); n != 2 || tm.Len() != 0 {
		t.Fatalf("after the second panic: fired %d (%v), Len %d", n, got, tm.Len())
	}
	if want := []timerID{{0, "a", 0}, {0, "b", 3}}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	mustCheck(t, tm)
}

// TestTimersCompaction: dead entries are dropped when they outnumber live
// ones, and the arena and the heap stay bounded by the peak number of
// timers through register/fire cycles.
func TestTimersCompaction(t *testing.T) {
	b := newBackend(t, Options{MaxParallelism: 16})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	keys := timerKeys(1000)
	for i, k := range keys {
		b.SetCurrentKey(k)
		tm.RegisterEventTime(int64(i))
	}
	for i, k := range keys[:900] {
		b.SetCurrentKey(k)
		tm.DeleteEventTime(int64(i))
	}
	q := &tm.event
	if q.compactions == 0 || len(q.heap) > 2*100 || q.dead > 100 {
		t.Fatalf("after deleting 900 of 1000 timers: %d compactions, %d entries, %d dead", q.compactions, len(q.heap), q.dead)
	}
	mustCheck(t, tm)
	// Three timers deleted and registered again, in turn: every cycle
	// leaves an entry of a timer that is in the state, so a compaction
	// must keep one entry per timer, or the next one would come sooner.
	before := q.compactions
	const cycles = 10_000
	for i := range cycles {
		k := 997 + i%3
		b.SetCurrentKey(keys[k])
		tm.DeleteEventTime(int64(k))
		tm.RegisterEventTime(int64(k))
	}
	if n := q.compactions - before; len(q.heap) > 2*100+minDeadTimers || tm.Len() != 100 || n > cycles/minDeadTimers {
		t.Fatalf("after %d deletions and registrations of 3 timers: %d entries, Len %d, %d compactions",
			cycles, len(q.heap), tm.Len(), n)
	}
	mustCheck(t, tm)
	var got []int64
	tm.AdvanceWatermark(math.MaxInt64, func(ts int64) { got = append(got, ts) })
	if len(got) != 100 || got[0] != 900 || got[99] != 999 || !slices.IsSorted(got) {
		t.Fatalf("fired %d timers %v…", len(got), got[:min(len(got), 5)])
	}

	// Cycles of 1000 registrations and their firing.
	peakBytes := 0
	for _, k := range keys {
		peakBytes += len(AppendEntryKey(nil, k, nil))
	}
	for round := range 50 {
		for i, k := range keys {
			b.SetCurrentKey(k)
			tm.RegisterEventTime(int64(round*10_000 + i))
		}
		if n := tm.AdvanceWatermark(int64(round*10_000+9999), func(int64) {}); n != len(keys) {
			t.Fatalf("round %d fired %d", round, n)
		}
	}
	if q.arenaCompactions == 0 || cap(q.arena)+cap(q.spare) > 8*peakBytes || cap(q.heap) > 2*len(keys) {
		t.Fatalf("%d arena compactions, arena %d + spare %d bytes, heap %d entries, for %d timers (%d key bytes) at most",
			q.arenaCompactions, cap(q.arena), cap(q.spare), cap(q.heap), len(keys), peakBytes)
	}
	mustCheck(t, tm)
}

// TestTimersSnapshot: a snapshot holds exactly the timers of its moment
// while the owner keeps registering, deleting and firing, and a backend
// restored from it gives them back to NewTimers.
func TestTimersSnapshot(t *testing.T) {
	opts := Options{MaxParallelism: 32, PageSizeBytes: MinPageSizeBytes}
	b := newBackend(t, opts)
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	vs := must[*ValueState[int64]](t)(NewValueState(b, "op/count", Int64Codec, StateOptions{}))
	rng := rand.New(rand.NewPCG(3, 4))
	keys := timerKeys(300)
	want := map[timerID]bool{}
	for range 2000 {
		id := timerID{byte(rng.IntN(2)), string(keys[rng.IntN(len(keys))]), rng.Int64N(1000)}
		register(tm, id)
		vs.Put(id.ts)
		want[id] = true
	}
	s := b.Snapshot()
	defer s.Release()
	// Keep writing: delete half, fire some, register new ones.
	for id := range want {
		if rng.IntN(2) == 0 {
			b.SetCurrentKey([]byte(id.key))
			if id.kind == timerEventTime {
				tm.DeleteEventTime(id.ts)
			} else {
				tm.DeleteProcessingTime(id.ts)
			}
		}
	}
	tm.AdvanceWatermark(500, func(ts int64) { tm.RegisterProcessingTime(ts + 1000) })
	for range 1000 {
		register(tm, timerID{byte(rng.IntN(2)), string(keys[rng.IntN(len(keys))]), 1000 + rng.Int64N(1000)})
	}
	mustCheck(t, tm)
	if got := snapshotTimers(t, s, "op/timers"); !maps.Equal(got, want) {
		t.Fatalf("the snapshot holds %d timers, want the %d of its moment", len(got), len(want))
	}
	live := b.Snapshot()
	nowWant := snapshotTimers(t, live, "op/timers")
	live.Release()
	if len(nowWant) != tm.Len() {
		t.Fatalf("the state holds %d timers, Len %d", len(nowWant), tm.Len())
	}

	// Restore (entries first, as the engine does), then NewTimers.
	nb := newBackend(t, opts)
	restoreInto(t, s, nb)
	ntm := must[*Timers](t)(NewTimers(nb, "op/timers"))
	mustCheck(t, ntm)
	if ntm.Len() != len(want) {
		t.Fatalf("restored %d timers, want %d", ntm.Len(), len(want))
	}
	fired := fireAll(t, ntm)
	sorted := slices.Clone(fired)
	slices.SortStableFunc(sorted, func(a, b timerID) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmpFiring(opts.MaxParallelism)(a, b))
	})
	if !slices.Equal(fired, sorted) {
		t.Fatal("the restored timers fired out of order")
	}
	got := map[timerID]bool{}
	for _, id := range fired {
		got[id] = true
	}
	if len(got) != len(fired) || !maps.Equal(got, want) {
		t.Fatalf("the restored backend fired %d timers (%d distinct), want %d", len(fired), len(got), len(want))
	}
	// Left: the value state, one entry per key that had a timer.
	withTimer := map[string]bool{}
	for id := range want {
		withTimer[id.key] = true
	}
	if nb.Len() != len(withTimer) {
		t.Fatalf("backend Len %d after firing everything, want %d values", nb.Len(), len(withTimer))
	}
}

// TestTimersRescale restores one checkpoint into one backend and into two
// (rescaled): every backend fires only the timers of its key groups, in
// order, and together they fire exactly the timers the single one fires.
func TestTimersRescale(t *testing.T) {
	const maxPar = 64
	src := newBackend(t, Options{MaxParallelism: maxPar})
	tm := must[*Timers](t)(NewTimers(src, "op/timers"))
	rng := rand.New(rand.NewPCG(5, 6))
	keys := timerKeys(500)
	want := map[timerID]bool{}
	for range 3000 {
		id := timerID{byte(rng.IntN(2)), string(keys[rng.IntN(len(keys))]), rng.Int64N(100)}
		register(tm, id)
		want[id] = true
	}
	s := src.Snapshot()
	defer s.Release()

	fireSet := func(parallelism int) map[timerID]bool {
		out := map[timerID]bool{}
		var dst []*Backend
		for i := range parallelism {
			dst = append(dst, newBackend(t, Options{MaxParallelism: maxPar, Range: RangeForTask(maxPar, parallelism, i)}))
		}
		restoreInto(t, s, dst...)
		for _, b := range dst {
			tm := must[*Timers](t)(NewTimers(b, "op/timers"))
			mustCheck(t, tm)
			fired := fireAll(t, tm)
			for i, id := range fired {
				if kg := KeyGroupOf(HashKey([]byte(id.key)), maxPar); !b.Range().Contains(kg) {
					t.Fatalf("a backend of %v fired %v of key group %d", b.Range(), id, kg)
				}
				if i > 0 && fired[i-1].kind == id.kind && cmpFiring(maxPar)(fired[i-1], id) >= 0 {
					t.Fatalf("%v fired after %v", id, fired[i-1])
				}
				if out[id] {
					t.Fatalf("%v fired twice", id)
				}
				out[id] = true
			}
			if tm.Len() != 0 {
				t.Fatalf("%d timers left", tm.Len())
			}
		}
		return out
	}
	one, two := fireSet(1), fireSet(2)
	if !maps.Equal(one, want) || !maps.Equal(two, want) {
		t.Fatalf("fired %d timers restored into one backend, %d into two, want %d", len(one), len(two), len(want))
	}
}

func TestTimersRestoreErrors(t *testing.T) {
	f := func(key, uk, value []byte, want error, msg string) {
		t.Helper()
		b := newBackend(t, Options{})
		if err := b.RestoreEntry("op/timers", AppendEntryKey(nil, key, uk), value); err != nil {
			t.Fatal(err)
		}
		_, err := NewTimers(b, "op/timers")
		if !errors.Is(err, want) || !strings.Contains(fmt.Sprint(err), msg) {
			t.Errorf("NewTimers of an entry with user key %x, value %x: %v, want %v containing %q", uk, value, err, want, msg)
		}
	}
	ts := []byte{0x80, 0, 0, 0, 0, 0, 0, 5}
	f([]byte("k"), append([]byte{2}, ts...), nil, ErrCorrupt, `cannot restore the timers "op/timers": key 6b: keyed: corrupt state: unknown timer kind 2`)
	f([]byte("k"), ts, nil, ErrCorrupt, "a timer's user key has 8 bytes, want 9")
	f([]byte("k"), append([]byte{0}, ts...), []byte("x"), ErrCorrupt, "a timer's value has 1 bytes")
	f([]byte("k"), nil, []byte("x"), ErrCorrupt, "a timer's user key has 0 bytes") // not map state

	b := newBackend(t, Options{})
	must[StateID](t)(b.Register("op/timers", KindValue, StateOptions{}))
	if _, err := NewTimers(b, "op/timers"); !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), `cannot register the timers "op/timers"`) {
		t.Errorf("NewTimers of a value state's name: %v", err)
	}
	if _, err := NewTimers(b, ""); !errors.Is(err, ErrInvalidState) {
		t.Errorf("NewTimers with an empty name: %v", err)
	}
}

// FuzzTimersRestore restores one arbitrary entry into a timer state:
// NewTimers must either reject it as corrupt or give back exactly the
// timer it encodes, which then fires with its key current.
func FuzzTimersRestore(f *testing.F) {
	f.Add([]byte("k"), []byte{0, 0x80, 0, 0, 0, 0, 0, 0, 5}, []byte{})
	f.Add([]byte{}, []byte{1, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte{})
	f.Add([]byte("k"), []byte{2}, []byte("v"))
	f.Fuzz(func(t *testing.T, key, uk, value []byte) {
		b := newBackend(t, Options{MaxParallelism: 4})
		if err := b.RestoreEntry("op/timers", AppendEntryKey(nil, key, uk), value); err != nil {
			return // RestoreEntry's own checks (FuzzRestoreEntry covers them)
		}
		tm, err := NewTimers(b, "op/timers")
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		kind, ts, err := decodeTimerEntry(uk, value)
		if err != nil || tm.Len() != 1 {
			t.Fatalf("NewTimers accepted user key %x value %x (%v), Len %d", uk, value, err, tm.Len())
		}
		mustCheck(t, tm)
		got := fireAll(t, tm)
		if want := (timerID{kind, string(key), ts}); len(got) != 1 || got[0] != want {
			t.Fatalf("fired %v, want %v", got, want)
		}
	})
}

// timerModel is the specification of firing order, kept simply: the
// timers pending when an Advance call began (main) and those registered
// by fire with ts <= its limit (late), each a set; the next to fire is the
// smallest of each by (ts, key group, key), main's first on equal ts.
type timerModel struct {
	maxPar     int
	main, late map[timerID]bool
	advancing  int // the kind being advanced, or -1
	limit      int64
}

func (m *timerModel) has(id timerID) bool { return m.main[id] || m.late[id] }

func (m *timerModel) register(id timerID) {
	if m.has(id) {
		return
	}
	if m.advancing == int(id.kind) && id.ts <= m.limit {
		m.late[id] = true
	} else {
		m.main[id] = true
	}
}

func (m *timerModel) delete(id timerID) { delete(m.main, id); delete(m.late, id) }

func (m *timerModel) min(set map[timerID]bool, kind byte) (timerID, bool) {
	var best timerID
	found := false
	for id := range set {
		if id.kind == kind && (!found || cmpFiring(m.maxPar)(id, best) < 0) {
			best, found = id, true
		}
	}
	return best, found
}

// next returns the timer of kind that fires next if its ts <= limit.
func (m *timerModel) next(kind byte, limit int64) (timerID, bool) {
	a, okA := m.min(m.main, kind)
	l, okL := m.min(m.late, kind)
	switch {
	case okA && (!okL || a.ts <= l.ts):
		return a, a.ts <= limit
	case okL:
		return l, l.ts <= limit
	}
	return timerID{}, false
}

// TestTimersModel runs random registrations, deletions, advances (whose
// fire callbacks register and delete too), Next calls and
// snapshot-restore cycles against timerModel, checking the invariants
// after every step.
func TestTimersModel(t *testing.T) {
	const maxPar = 16
	opts := Options{MaxParallelism: maxPar, PageSizeBytes: MinPageSizeBytes}
	compactions, arenaCompactions, restores, twins := 0, 0, 0, 0
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 99))
		keys := timerKeys(40)
		b := newBackend(t, opts)
		tm := must[*Timers](t)(NewTimers(b, "op/timers"))
		count := must[*ValueState[int64]](t)(NewValueState(b, "op/count", Int64Codec, StateOptions{}))
		m := &timerModel{maxPar: maxPar, main: map[timerID]bool{}, late: map[timerID]bool{}, advancing: -1}
		limits := [2]int64{-10, -10}
		// Timers span 40 or 400 time units ahead: few or many pending.
		spread := int64(40)
		if seed%2 == 1 {
			spread = 400
		}
		randomTimer := func(kind byte) timerID {
			return timerID{kind, string(keys[rng.IntN(len(keys))]), limits[kind] - 5 + rng.Int64N(spread)}
		}
		// act registers or deletes a random timer, of the current key
		// when onCurrent (inside fire), else of a random key.
		act := func(onCurrent bool) {
			id := randomTimer(byte(rng.IntN(2)))
			if onCurrent {
				id.key = string(b.CurrentKey())
			}
			if rng.IntN(3) == 0 && len(m.main)+len(m.late) > 0 {
				// Delete a pending timer (of any key).
				pending := slices.SortedFunc(maps.Keys(m.main), cmpFiring(maxPar))
				if len(pending) > 0 {
					id = pending[rng.IntN(len(pending))]
				}
			}
			b.SetCurrentKey([]byte(id.key))
			if rng.IntN(5) < 3 {
				if id.kind == timerEventTime {
					tm.RegisterEventTime(id.ts)
				} else {
					tm.RegisterProcessingTime(id.ts)
				}
				m.register(id)
				count.Put(id.ts)
			} else {
				if id.kind == timerEventTime {
					tm.DeleteEventTime(id.ts)
				} else {
					tm.DeleteProcessingTime(id.ts)
				}
				m.delete(id)
			}
		}
		for step := range 3000 {
			switch op := rng.IntN(100); {
			case op < 55:
				act(false)
			case op < 80:
				kind := byte(rng.IntN(2))
				limits[kind] += rng.Int64N(15)
				limit := limits[kind]
				m.advancing, m.limit = int(kind), limit
				fired := 0
				fire := func(ts int64) {
					want, ok := m.next(kind, limit)
					got := timerID{kind, string(b.CurrentKey()), ts}
					if !ok || got != want {
						t.Fatalf("seed %d step %d: fired %v, want %v (%v)", seed, step, got, want, ok)
					}
					m.delete(want)
					fired++
					// The invariants hold inside a call too, with
					// late entries.
					if err := tm.check(); err != nil {
						t.Fatalf("seed %d step %d, firing %v: %v", seed, step, got, err)
					}
					for range rng.IntN(4) {
						act(rng.IntN(4) != 0)
						b.SetCurrentKey([]byte(got.key))
					}
				}
				var n int
				if kind == timerEventTime {
					n = tm.AdvanceWatermark(limit, fire)
				} else {
					n = tm.AdvanceProcessingTime(limit, fire)
				}
				m.advancing = -1
				for id := range m.late {
					t.Fatalf("seed %d step %d: %v registered late did not fire", seed, step, id)
				}
				if id, ok := m.next(kind, limit); ok || n != fired {
					t.Fatalf("seed %d step %d: Advance returned %d after %d fires; %v due still", seed, step, n, fired, id)
				}
			case op < 95:
				kind := byte(rng.IntN(2))
				var got int64
				var ok bool
				if kind == timerEventTime {
					got, ok = tm.NextEventTime()
				} else {
					got, ok = tm.NextProcessingTime()
				}
				want, wantOK := m.next(kind, math.MaxInt64)
				if ok != wantOK || (ok && got != want.ts) {
					t.Fatalf("seed %d step %d: Next of kind %d = %d %v, want %v %v", seed, step, kind, got, ok, want, wantOK)
				}
			case op < 97:
				// A burst of registrations, then delete most pending
				// timers (a window operator's cleanup): dead entries
				// outnumber live ones.
				for range 150 {
					id := randomTimer(byte(rng.IntN(2)))
					register(tm, id)
					m.register(id)
				}
				for _, id := range slices.SortedFunc(maps.Keys(m.main), cmpFiring(maxPar)) {
					if rng.IntN(5) == 0 {
						continue
					}
					b.SetCurrentKey([]byte(id.key))
					if id.kind == timerEventTime {
						tm.DeleteEventTime(id.ts)
					} else {
						tm.DeleteProcessingTime(id.ts)
					}
					m.delete(id)
				}
			default:
				compactions += tm.event.compactions + tm.proc.compactions
				arenaCompactions += tm.event.arenaCompactions + tm.proc.arenaCompactions
				twins += tm.event.lateTwins + tm.proc.lateTwins
				restores++
				s := b.Snapshot()
				nb := newBackend(t, opts)
				restoreInto(t, s, nb)
				s.Release()
				b = nb
				count = must[*ValueState[int64]](t)(NewValueState(b, "op/count", Int64Codec, StateOptions{}))
				tm = must[*Timers](t)(NewTimers(b, "op/timers"))
			}
			if err := tm.check(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if tm.Len() != len(m.main) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, tm.Len(), len(m.main))
			}
		}
		compactions += tm.event.compactions + tm.proc.compactions
		arenaCompactions += tm.event.arenaCompactions + tm.proc.arenaCompactions
		twins += tm.event.lateTwins + tm.proc.lateTwins
	}
	if compactions == 0 || arenaCompactions == 0 || restores == 0 {
		t.Fatalf("the random steps never compacted a queue (%d), an arena (%d) or restored (%d)", compactions, arenaCompactions, restores)
	}
	t.Logf("%d queue compactions, %d arena compactions, %d restores, %d timers deleted and registered again", compactions, arenaCompactions, restores, twins)
}

// TestTimerEntryHasNoPointers: the per-timer storage (the queue entries and
// the arena) holds no Go pointer, so the GC does not mark timers.
func TestTimerEntryHasNoPointers(t *testing.T) {
	typ := reflect.TypeFor[timerEntry]()
	for i := range typ.NumField() {
		switch f := typ.Field(i); f.Type.Kind() {
		case reflect.Int64, reflect.Uint64, reflect.Uint32, reflect.Uint16:
		default:
			t.Errorf("timerEntry.%s is a %v", f.Name, f.Type)
		}
	}
	if typ.Size() != 24 {
		t.Errorf("timerEntry has %d bytes, want 24", typ.Size())
	}
	q := reflect.TypeFor[timerQueue]()
	for _, name := range []string{"heap", "late", "arena", "spare"} {
		f, _ := q.FieldByName(name)
		if e := f.Type.Elem(); f.Type.Kind() != reflect.Slice || (e != typ && e.Kind() != reflect.Uint8) {
			t.Errorf("timerQueue.%s is a %v", name, f.Type)
		}
	}
}

func TestAllocsTimers(t *testing.T) {
	b := newBackend(t, Options{})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	const n = 1000
	var key [8]byte
	setKey := func(i int) {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
	}
	for i := range n {
		setKey(i)
		tm.RegisterEventTime(int64(i))
		tm.RegisterProcessingTime(int64(i))
	}
	i := 0
	f := func(name string, fn func()) {
		t.Helper()
		for range 3 * n { // warm up: buffers at their steady size
			fn()
		}
		if allocs := testing.AllocsPerRun(5*n, fn); allocs != 0 {
			t.Errorf("%s allocates %v times per op, want 0", name, allocs)
		}
		mustCheck(t, tm)
	}
	f("RegisterEventTime of an existing timer", func() {
		j := i % n
		i++
		setKey(j)
		tm.RegisterEventTime(int64(j))
		tm.RegisterProcessingTime(int64(j))
	})
	if tm.Len() != 2*n {
		t.Fatalf("Len %d after registering existing timers", tm.Len())
	}
	// A pending timer deleted and registered at another ts: its queue
	// entry turns dead, a new one is pushed; dead entries are compacted
	// away.
	cur := make([]int64, n)
	for j := range cur {
		cur[j] = int64(j)
	}
	f("DeleteEventTime and RegisterEventTime", func() {
		j := i % n
		i++
		setKey(j)
		tm.DeleteEventTime(cur[j])
		cur[j] += n
		tm.RegisterEventTime(cur[j])
	})
	if tm.Len() != 2*n || tm.event.compactions == 0 {
		t.Fatalf("Len %d, %d compactions after deleting and registering", tm.Len(), tm.event.compactions)
	}
	f("NextEventTime", func() { tm.NextEventTime() })
	// Steady state: n timers pending; each op fires the earliest and
	// registers one n later.
	ts := int64(-1)
	fire := func(int64) {}
	f("AdvanceProcessingTime firing one timer and registering one", func() {
		ts++
		if tm.AdvanceProcessingTime(ts, fire) != 1 {
			t.Fatal("fired no timer")
		}
		setKey(int(ts % n))
		tm.RegisterProcessingTime(ts + n)
	})
}

// TestTimersLateGroups: timers that fire callbacks register at a
// timestamp where other timers were pending fire after them, and finding
// that a pending timer has no late twin costs no search of the late
// entries (a group of n such timers cost O(n²) comparisons when each
// heap entry searched late); a timer deleted and registered again within
// the call is found in late, searched once, and fires once, after the
// pending ones.
func TestTimersLateGroups(t *testing.T) {
	const n = 500
	b := newBackend(t, Options{MaxParallelism: 64})
	tm := must[*Timers](t)(NewTimers(b, "op/timers"))
	a, c := make([]timerID, n), make([]timerID, n)
	for i := range n {
		a[i] = timerID{timerEventTime, fmt.Sprintf("a%03d", i), 1}
		c[i] = timerID{timerEventTime, fmt.Sprintf("c%03d", i), 2}
		register(tm, a[i])
		register(tm, c[i])
	}
	// The last c is deleted and registered again by the first fire.
	revived := c[n-1]
	var got []timerID
	first := true
	tm.AdvanceWatermark(2, func(ts int64) {
		key := string(b.CurrentKey())
		got = append(got, timerID{timerEventTime, key, ts})
		if ts != 1 {
			return
		}
		// Each a registers itself again at 2, where the c are pending.
		tm.RegisterEventTime(2)
		if first {
			first = false
			b.SetCurrentKey([]byte(revived.key))
			tm.DeleteEventTime(2)
			tm.RegisterEventTime(2)
			b.SetCurrentKey([]byte(key))
		}
	})
	mustCheck(t, tm)
	// The a at 1, then the c pending at 2 but the revived one, then the a
	// registered at 2 and the revived c, in firing order.
	byFiring := cmpFiring(64)
	want := slices.SortedFunc(slices.Values(a), byFiring)
	want = append(want, slices.SortedFunc(slices.Values(c[:n-1]), byFiring)...)
	again := append(slices.Clone(a), revived)
	for i := range n {
		again[i].ts = 2
	}
	want = append(want, slices.SortedFunc(slices.Values(again), byFiring)...)
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			t.Fatalf("fired %d timers, want %d; they differ at %d", len(got), len(want), i)
		}
	}
	if q := &tm.event; q.lateSearches != 1 || q.lateTwins != 1 {
		t.Fatalf("%d searches of the late entries, %d found, want 1 and 1 (only the revived timer's heap entry)", q.lateSearches, q.lateTwins)
	}
	if tm.Len() != 0 {
		t.Fatalf("Len %d after the call, want 0", tm.Len())
	}
}
