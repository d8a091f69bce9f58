package keyed

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// The change-log property test: the CoW harness's random operations (every
// state kind, overwrites of other sizes, records larger than a page,
// deletes, map clears, table growth, compaction), with snapshots at random
// moments. At each snapshot, for each key group, the entries of a base
// snapshot (an earlier one, standing for the newest completed checkpoint)
// with Changes(kg, base version) applied must equal the new snapshot's
// entries; and a fresh backend restored from the base's entries with
// RestoreEntry, then the changes with RestoreDelete and RestoreEntry, must
// hold them too. The base moves to the new snapshot most of the time (a
// completed checkpoint, often followed by ForgetChangesThrough), and stays
// behind otherwise (a checkpoint that failed: the next delta spans several
// epochs).

func kgOfEntry(tb testing.TB, b *Backend, key string) int {
	pk, _, err := SplitEntryKey([]byte(key))
	if err != nil {
		tb.Fatal(err)
	}
	return KeyGroupOf(HashKey(pk), b.opts.MaxParallelism)
}

type deltaStats struct{ ok, full, unchanged, reported, appends int }

// checkDelta checks Changes of every key group of f against base.
func checkDelta(tb testing.TB, b *Backend, base, f *frozenSnap, st *deltaStats) {
	tb.Helper()
	r := f.s.Range()
	// The base's and the new snapshot's entries per key group.
	want := map[int]map[mkey]string{}
	have := map[int]map[mkey]string{}
	for kg := r.Start; kg < r.End; kg++ {
		want[kg], have[kg] = map[mkey]string{}, map[mkey]string{}
	}
	for k, v := range f.model {
		want[kgOfEntry(tb, b, k.key)][k] = v
	}
	for k, v := range base.model {
		have[kgOfEntry(tb, b, k.key)][k] = v
	}
	restored, err := NewBackend(b.opts)
	if err != nil {
		tb.Fatal(err)
	}
	names := f.s.States()
	for k, v := range base.model {
		if err := restored.RestoreEntry(names[k.state], []byte(k.key), []byte(v)); err != nil {
			tb.Fatal(err)
		}
	}
	for kg := r.Start; kg < r.End; kg++ {
		since := base.versions[kg]
		if f.versions[kg] == since {
			st.unchanged++
			if d := diffModels(want[kg], have[kg]); d != "" {
				tb.Fatalf("key group %d: equal versions %d, different contents:\n%s", kg, since, d)
			}
			continue
		}
		bound, bok := f.s.ChangedEntries(kg, since)
		got := have[kg]
		reported, upserts := 0, false
		ok, err := f.s.Changes(kg, since, func(state int, key, value []byte, op uint8) error {
			reported++
			k := mkey{state, string(key)}
			switch op {
			case ChangeDelete:
				if upserts {
					return fmt.Errorf("a deletion of %q after an upsert", key)
				}
				delete(got, k)
				return restored.RestoreDelete(names[state], key)
			case ChangeAppend:
				upserts = true
				st.appends++
				old, ok := got[k]
				if !ok {
					return fmt.Errorf("an append to %q, which the base does not have", key)
				}
				got[k] = old + string(value)
				return restored.RestoreAppend(names[state], key, value)
			}
			upserts = true
			got[k] = string(value)
			return restored.RestoreEntry(names[state], key, value)
		})
		if err != nil {
			tb.Fatalf("key group %d: Changes: %v", kg, err)
		}
		if ok != bok {
			tb.Fatalf("key group %d: Changes says %v, ChangedEntries %v", kg, ok, bok)
		}
		if !ok {
			st.full++
			if reported > 0 {
				tb.Fatalf("key group %d: Changes answered false after reporting %d entries", kg, reported)
			}
			// A full image: what the writer would store instead.
			for k := range got {
				delete(got, k)
				_ = restored.RestoreDelete(names[k.state], []byte(k.key))
			}
			for k, v := range want[kg] {
				got[k] = v
				if err := restored.RestoreEntry(names[k.state], []byte(k.key), []byte(v)); err != nil {
					tb.Fatal(err)
				}
			}
			continue
		}
		st.ok++
		st.reported += reported
		if reported > bound {
			tb.Fatalf("key group %d: %d entries reported, ChangedEntries bound %d", kg, reported, bound)
		}
		if d := diffModels(want[kg], got); d != "" {
			tb.Fatalf("key group %d: base (version %d) + changes != snapshot (version %d):\n%s", kg, since, f.versions[kg], d)
		}
	}
	s := restored.Snapshot()
	defer s.Release()
	rgot, _ := dumpSnapshot(tb, s)
	// The restored backend numbers states in the order it met them.
	byName := map[mkey]string{}
	for k, v := range rgot {
		byName[mkey{0, s.States()[k.state] + "/" + k.key}] = v
	}
	wantByName := map[mkey]string{}
	for k, v := range f.model {
		wantByName[mkey{0, names[k.state] + "/" + k.key}] = v
	}
	if d := diffModels(wantByName, byName); d != "" {
		tb.Fatalf("restored base + changes != snapshot:\n%s", d)
	}
}

func TestChangesProperty(t *testing.T) {
	total := deltaStats{}
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			opts := smallOpts
			if seed%3 == 2 {
				opts = Options{MaxParallelism: 16, Range: KeyGroupRange{Start: 4, End: 12}, PageSizeBytes: 2048}
			}
			h := newCowHarness(t, seed, opts)
			base := h.snapshot()
			st := deltaStats{}
			for range 4000 {
				op, arg := byte(h.rng.IntN(256)), byte(h.rng.IntN(256))
				if op%16 == 12 && len(h.snaps) > 0 && h.snaps[int(arg)%len(h.snaps)] == base {
					continue // keep the base's snapshot open: it is checked at the end
				}
				n := len(h.snaps)
				h.step(op, arg)
				if len(h.snaps) == n+1 {
					f := h.snaps[n]
					checkDelta(t, h.b, base, f, &st)
					if h.rng.IntN(4) != 0 {
						base = f
						if h.rng.IntN(2) == 0 {
							h.b.ForgetChangesThrough(f.s.Epoch())
						}
					}
				}
			}
			h.finish()
			if st.ok == 0 || st.reported == 0 {
				t.Fatalf("no delta was ever computed: %+v", st)
			}
			total.ok += st.ok
			total.full += st.full
			total.unchanged += st.unchanged
			total.appends += st.appends
		})
	}
	t.Logf("key groups: %d deltas, %d full, %d unchanged; %d list appends reported as such", total.ok, total.full, total.unchanged, total.appends)
	if total.appends == 0 {
		t.Fatal("no list append was ever reported as an append")
	}
}

// TestChangesSteady: a steady workload of fixed-size overwrites, inserts
// and deletes (no compaction, no big records) is always answered with a
// delta, and the delta is what changed, not the whole group.
func TestChangesSteady(t *testing.T) {
	b, err := NewBackend(Options{MaxParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValueState(b, "count", Int64Codec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const keys = 20000
	for k := range keys {
		setIntKey(b, uint64(k))
		v.Put(1)
	}
	prev := b.Snapshot()
	for round := range 20 {
		touched := map[int64]bool{}
		for range 500 {
			k := rng.Int64N(keys + 1000)
			setIntKey(b, uint64(k))
			if k%97 == 0 {
				v.Clear()
			} else {
				c, _ := v.Get()
				v.Put(c + 1)
			}
			touched[k] = true
		}
		s := b.Snapshot()
		reported := 0
		for kg := range 4 {
			ok, err := s.Changes(kg, prev.KeyGroupVersion(kg), func(int, []byte, []byte, uint8) error {
				reported++
				return nil
			})
			if err != nil || !ok {
				t.Fatalf("round %d, key group %d: Changes = %v, %v", round, kg, ok, err)
			}
		}
		if reported < len(touched)-100 || reported > 2*len(touched) {
			t.Fatalf("round %d: %d entries reported for %d keys touched", round, reported, len(touched))
		}
		b.ForgetChangesThrough(prev.Epoch())
		prev.Release()
		prev = s
	}
	prev.Release()
}

// TestChangesConcurrent reads Changes of a snapshot on another goroutine
// while the owner keeps writing (the race detector checks the log's
// sharing).
func TestChangesConcurrent(t *testing.T) {
	b, err := NewBackend(Options{MaxParallelism: 8, PageSizeBytes: MinPageSizeBytes})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValueState(b, "v", BytesCodec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	write := func(n int) {
		for range n {
			setIntKey(b, uint64(rng.Int64N(5000)))
			v.Put(make([]byte, rng.IntN(40)))
		}
	}
	write(5000)
	prev := b.Snapshot()
	versions := make([]uint64, 8)
	for kg := range 8 {
		versions[kg] = prev.KeyGroupVersion(kg)
	}
	prev.Release()
	for range 10 {
		write(2000)
		s := b.Snapshot()
		var wg sync.WaitGroup
		wg.Go(func() {
			for kg := range 8 {
				if _, err := s.Changes(kg, versions[kg], func(int, []byte, []byte, uint8) error { return nil }); err != nil {
					t.Error(err)
				}
			}
		})
		write(2000)
		wg.Wait()
		for kg := range 8 {
			versions[kg] = s.KeyGroupVersion(kg)
		}
		s.Release()
	}
}

// TestChangesForeignVersion: a version of another backend is not
// answered (the caller writes in full).
func TestChangesForeignVersion(t *testing.T) {
	mk := func() (*Backend, *ValueState[int64]) {
		b, err := NewBackend(Options{MaxParallelism: 1})
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewValueState(b, "v", Int64Codec, StateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b, v
	}
	b1, v1 := mk()
	b2, v2 := mk()
	for _, x := range []struct {
		b *Backend
		v *ValueState[int64]
	}{{b1, v1}, {b2, v2}} {
		setIntKey(x.b, 1)
		x.v.Put(1)
		x.b.Snapshot().Release()
		x.v.Put(2)
	}
	s1 := b1.Snapshot()
	defer s1.Release()
	s2 := b2.Snapshot()
	defer s2.Release()
	if ok, _ := s1.Changes(0, s2.KeyGroupVersion(0)-1, func(int, []byte, []byte, uint8) error { return nil }); ok {
		t.Fatal("Changes answered a version of another backend")
	}
	if _, ok := s1.ChangedEntries(0, 0); ok {
		t.Fatal("Changes answers since the empty group after a write before the first snapshot... wrongly")
	}
}

func setIntKey(b *Backend, x uint64) {
	var k [8]byte
	for i := range k {
		k[i] = byte(x >> (56 - 8*i))
	}
	b.SetCurrentKey(k[:])
}

// TestChangesListAppend: a list that gained one element since the base is
// reported as an append of that element, not the whole list; a restored
// backend that applies it holds the whole list.
func TestChangesListAppend(t *testing.T) {
	b, err := NewBackend(Options{MaxParallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewListState(b, "l", Int64Codec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setIntKey(b, 7)
	for i := range 1000 {
		l.Add(int64(i))
	}
	base := b.Snapshot()
	baseVersion := base.KeyGroupVersion(0)
	restored, err := NewBackend(Options{MaxParallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := base.ForEach(0, func(state int, key, value []byte) error {
		return restored.RestoreEntry(base.States()[state], key, value)
	}); err != nil {
		t.Fatal(err)
	}
	base.Release()
	l.Add(1000) // fits the list's capacity: an append in place
	s := b.Snapshot()
	defer s.Release()
	var ops []uint8
	var sizes []int
	ok, err := s.Changes(0, baseVersion, func(state int, key, value []byte, op uint8) error {
		ops, sizes = append(ops, op), append(sizes, len(value))
		if op == ChangeAppend {
			return restored.RestoreAppend(s.States()[state], key, value)
		}
		return restored.RestoreEntry(s.States()[state], key, value)
	})
	if err != nil || !ok {
		t.Fatalf("Changes = %v, %v", ok, err)
	}
	if len(ops) != 1 || ops[0] != ChangeAppend || sizes[0] > 16 {
		t.Fatalf("reported ops %v of %v bytes; want one append of one element", ops, sizes)
	}
	rl, err := NewListState(restored, "l", Int64Codec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setIntKey(restored, 7)
	n := 0
	for v := range rl.All() {
		if v != int64(n) {
			t.Fatalf("restored element %d = %d", n, v)
		}
		n++
	}
	if n != 1001 {
		t.Fatalf("restored list has %d elements, want 1001", n)
	}
	if err := restored.RestoreAppend("l", AppendEntryKey(nil, []byte("no-such-key"), nil), []byte{1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("RestoreAppend to a missing entry = %v, want ErrCorrupt", err)
	}
	if err := restored.RestoreChange(3, "l", AppendEntryKey(nil, []byte("k"), nil), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("RestoreChange of operation 3 = %v, want ErrCorrupt", err)
	}
}
