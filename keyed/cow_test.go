package keyed

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The CoW property test: a harness applies an operation sequence to a
// backend and to a model (a Go map of encoded entry key -> stored value),
// freezes a copy of the model at every snapshot, and checks that each
// snapshot's ForEach returns exactly its frozen model, however the live
// state was mutated (new keys, overwrites of other sizes, deletes, map and
// list operations, table growth, compaction) and in whatever order the
// snapshots are released.

type mkey struct {
	state int
	key   string // encoded entry key
}

type frozenSnap struct {
	s        *Snapshot
	model    map[mkey]string
	versions map[int]uint64
	contents map[int]string // per key group, a canonical dump (for the version check)
}

type cowHarness struct {
	tb     testing.TB
	b      *Backend
	value  StateID
	value2 StateID
	mp     StateID
	list   StateID
	model  map[mkey]string
	snaps  []*frozenSnap
	key    []byte
	keyEnc []byte
	nkeys  int
	rng    *rand.Rand
	buf    []byte
	bulk   []int // first keys of bulk-inserted batches not yet deleted
	// Typed views of value and value2 with an 8-byte codec: Get and Put
	// through the fixed-width path (get8, put8).
	typed, typed2 ValueState[uint64]
}

func newCowHarness(tb testing.TB, seed uint64, opts Options) *cowHarness {
	b, err := NewBackend(opts)
	if err != nil {
		tb.Fatal(err)
	}
	h := &cowHarness{tb: tb, b: b, model: map[mkey]string{}, rng: rand.New(rand.NewPCG(seed, 7)), nkeys: 64}
	must := func(id StateID, err error) StateID {
		if err != nil {
			tb.Fatal(err)
		}
		return id
	}
	h.value = must(b.Register("v", KindValue, StateOptions{}))
	h.mp = must(b.Register("m", KindMap, StateOptions{}))
	h.list = must(b.Register("l", KindList, StateOptions{}))
	h.value2 = must(b.Register("r", KindReducing, StateOptions{}))
	h.typed = newValueState(b, h.value, "v", Uint64Codec)
	h.typed2 = newValueState(b, h.value2, "r", Uint64Codec)
	h.setKey(0)
	return h
}

// setKey sets key number i: a variable-length string key for i%3 == 0,
// else 8 bytes big endian; when the backend does not own the key's group,
// the next candidate derived from i that it owns.
func (h *cowHarness) setKey(i int) {
	for c := i; ; c += 1 << 32 {
		h.key = h.key[:0]
		if i%3 == 0 {
			h.key = fmt.Appendf(h.key, "key-%d", c) // variable length keys
		} else {
			h.key = binary.BigEndian.AppendUint64(h.key, uint64(c))
		}
		if h.b.opts.Range.Contains(KeyGroupOf(HashKey(h.key), h.b.opts.MaxParallelism)) {
			break
		}
	}
	h.b.SetCurrentKey(h.key)
	h.keyEnc = AppendEntryKey(h.keyEnc[:0], h.key, nil)
}

func (h *cowHarness) valueOf(size int, salt byte) []byte {
	h.buf = h.buf[:0]
	for i := range size {
		h.buf = append(h.buf, byte(i)*31+salt)
	}
	return h.buf
}

// step applies one operation chosen by op and arg.
func (h *cowHarness) step(op, arg byte) {
	b := h.b
	switch op % 16 {
	case 0, 1:
		h.setKey(int(arg) % h.nkeys)
	case 2, 3:
		size := int(arg) % 40
		if arg > 250 {
			size = 3000 // larger than a 1 KiB page
		} else if arg > 200 {
			size = int(arg) * 3
		}
		id := h.value
		if arg%2 == 1 {
			id = h.value2
		}
		mk := mkey{int(id), string(h.keyEnc)}
		if old, ok := h.model[mk]; arg%5 == 0 && (!ok || len(old) == 8) {
			// The typed fixed-width path, in steps that Get, Put or
			// both, so that other operations (snapshots, writes of
			// other keys and states, SetCurrentKey) fall between a Get
			// and the Put that may take put8.
			vs := &h.typed
			if id == h.value2 {
				vs = &h.typed2
			}
			sel := arg / 5
			if sel%2 == 0 {
				got, gok := vs.Get()
				if gok != ok || (ok && got != binary.BigEndian.Uint64([]byte(old))) {
					h.tb.Fatalf("typed Get of key %x = %d, %v; want %x, %v", h.keyEnc, got, gok, old, ok)
				}
			}
			if sel%4 != 1 {
				x := uint64(sel)<<32 | uint64(len(h.model))
				vs.Put(x)
				h.model[mk] = string(binary.BigEndian.AppendUint64(nil, x))
			}
			break
		}
		v := h.valueOf(size, arg)
		if arg%3 != 0 {
			// Read-modify-write: the Put that follows may take the
			// fast path through b.last.
			got, ok := b.Get(id)
			want, wok := h.model[mkey{int(id), string(h.keyEnc)}]
			if ok != wok || string(got) != want {
				h.tb.Fatalf("Get(%d) of key %x = %x, %v; want %x, %v", id, h.keyEnc, got, ok, want, wok)
			}
		}
		b.Put(id, v)
		h.model[mkey{int(id), string(h.keyEnc)}] = string(v)
	case 4:
		id := h.value
		if arg%2 == 1 {
			id = h.value2
		}
		b.Delete(id)
		delete(h.model, mkey{int(id), string(h.keyEnc)})
	case 5, 6:
		uk := fmt.Appendf(nil, "u%d", arg%16)
		v := h.valueOf(int(arg)%24, arg)
		b.PutUser(h.mp, uk, v)
		h.model[mkey{int(h.mp), string(h.keyEnc) + string(uk)}] = string(v)
	case 7:
		uk := fmt.Appendf(nil, "u%d", arg%16)
		b.DeleteUser(h.mp, uk)
		delete(h.model, mkey{int(h.mp), string(h.keyEnc) + string(uk)})
	case 8:
		if arg%8 == 0 {
			b.Delete(h.mp)
			for k := range h.model {
				// The encoded key starts with the key's length,
				// so the prefix matches this key's entries only.
				if k.state == int(h.mp) && strings.HasPrefix(k.key, string(h.keyEnc)) {
					delete(h.model, k)
				}
			}
		}
	case 9:
		v := h.valueOf(int(arg)%20, arg)
		b.AppendValue(h.list, v)
		k := mkey{int(h.list), string(h.keyEnc)}
		h.model[k] += string(v)
	case 10:
		if arg%4 == 0 {
			b.Delete(h.list)
			delete(h.model, mkey{int(h.list), string(h.keyEnc)})
		}
	case 11:
		if arg%4 == 0 {
			h.snapshot()
		}
	case 12:
		if len(h.snaps) > 0 && arg%3 == 0 {
			i := int(arg) % len(h.snaps)
			h.check(h.snaps[i])
			h.snaps[i].s.Release()
			h.snaps = append(h.snaps[:i], h.snaps[i+1:]...)
		}
	case 13:
		if len(h.snaps) > 0 && arg%4 == 0 {
			h.check(h.snaps[int(arg)%len(h.snaps)])
		}
	case 14:
		// Bulk inserts of new keys: forces table growth.
		if arg%8 == 0 {
			base := 1000 + int(arg)*1000 + h.rng.IntN(1<<20)*1000
			h.bulk = append(h.bulk, base)
			for i := range 200 {
				h.setKey(base + i)
				v := h.valueOf(8, byte(i))
				b.Put(h.value, v)
				h.model[mkey{int(h.value), string(h.keyEnc)}] = string(v)
			}
		}
	case 15:
		// Bulk deletes of a batch of bulk keys: forces compaction.
		if arg%4 == 0 && len(h.bulk) > 0 {
			j := int(arg) % len(h.bulk)
			base := h.bulk[j]
			h.bulk = append(h.bulk[:j], h.bulk[j+1:]...)
			for i := range 200 {
				h.setKey(base + i)
				b.Delete(h.value)
				delete(h.model, mkey{int(h.value), string(h.keyEnc)})
			}
		}
	}
}

func (h *cowHarness) snapshot() *frozenSnap {
	s := h.b.Snapshot()
	f := &frozenSnap{s: s, model: make(map[mkey]string, len(h.model)), versions: map[int]uint64{}, contents: map[int]string{}}
	for k, v := range h.model {
		f.model[k] = v
	}
	r := s.Range()
	for kg := r.Start; kg < r.End; kg++ {
		f.versions[kg] = s.KeyGroupVersion(kg)
	}
	h.snaps = append(h.snaps, f)
	return f
}

// dumpSnapshot reads every entry of s.
func dumpSnapshot(tb testing.TB, s *Snapshot) (map[mkey]string, map[int]string) {
	tb.Helper()
	got, per, err := dumpSnapshotErr(s)
	if err != nil {
		tb.Fatal(err)
	}
	return got, per
}

// dumpSnapshotErr is dumpSnapshot for goroutines other than the test's.
func dumpSnapshotErr(s *Snapshot) (map[mkey]string, map[int]string, error) {
	got := map[mkey]string{}
	per := map[int]string{}
	r := s.Range()
	for kg := r.Start; kg < r.End; kg++ {
		var sum uint64
		n := 0
		err := s.ForEach(kg, func(state int, key, value []byte) error {
			k := mkey{state, string(key)}
			if _, dup := got[k]; dup {
				return fmt.Errorf("duplicate entry %v", k)
			}
			pk, _, err := SplitEntryKey(key)
			if err != nil {
				return err
			}
			if g := KeyGroupOf(HashKey(pk), s.b.opts.MaxParallelism); g != kg {
				return fmt.Errorf("entry %q of key group %d yielded for %d", key, g, kg)
			}
			got[k] = string(value)
			// An order-independent digest of the group's contents.
			sum += fmix64(HashKey(key) ^ uint64(state)*seedHead ^ fmix64(HashKey(value)))
			n++
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if n != s.Len(kg) {
			return nil, nil, fmt.Errorf("key group %d: ForEach yielded %d entries, Len says %d", kg, n, s.Len(kg))
		}
		per[kg] = fmt.Sprint(n, "/", sum)
	}
	return got, per, nil
}

func diffModels(want, got map[mkey]string) string {
	var out []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("missing %d/%q", k.state, k.key))
		case g != v:
			out = append(out, fmt.Sprintf("%d/%q = %x, want %x", k.state, k.key, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("unexpected %d/%q", k.state, k.key))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}

func (h *cowHarness) check(f *frozenSnap) {
	h.tb.Helper()
	got, per := dumpSnapshot(h.tb, f.s)
	if d := diffModels(f.model, got); d != "" {
		h.tb.Fatalf("snapshot differs from its frozen model:\n%s", d)
	}
	for kg, c := range per {
		f.contents[kg] = c
	}
	// Equal versions across snapshots mean identical contents.
	for _, o := range h.snaps {
		if o == f || len(o.contents) == 0 {
			continue
		}
		for kg, v := range f.versions {
			if o.versions[kg] == v && o.contents[kg] != f.contents[kg] {
				h.tb.Fatalf("key group %d: equal versions %d, different contents", kg, v)
			}
		}
	}
}

// checkLive compares the live state (through a fresh snapshot and the
// read API) with the model, and the structural invariants.
func (h *cowHarness) checkLive() {
	h.tb.Helper()
	h.b.checkAll()
	s := h.b.Snapshot()
	got, _ := dumpSnapshot(h.tb, s)
	s.Release()
	if d := diffModels(h.model, got); d != "" {
		h.tb.Fatalf("live state differs from the model:\n%s", d)
	}
	if h.b.Len() != len(h.model) {
		h.tb.Fatalf("Len = %d, model has %d", h.b.Len(), len(h.model))
	}
	// Point reads of every model entry.
	for k, v := range h.model {
		key, uk, err := SplitEntryKey([]byte(k.key))
		if err != nil {
			h.tb.Fatal(err)
		}
		h.b.SetCurrentKey(key)
		var g []byte
		var ok bool
		if StateID(k.state) == h.mp {
			g, ok = h.b.GetUser(h.mp, uk)
		} else {
			g, ok = h.b.Get(StateID(k.state))
		}
		if !ok || string(g) != v {
			h.tb.Fatalf("Get %d/%q = %x, %v; want %x", k.state, k.key, g, ok, v)
		}
	}
	// Map iteration agrees with the model.
	byKey := map[string]map[string]string{}
	for k, v := range h.model {
		if StateID(k.state) != h.mp {
			continue
		}
		key, uk, _ := SplitEntryKey([]byte(k.key))
		if byKey[string(key)] == nil {
			byKey[string(key)] = map[string]string{}
		}
		byKey[string(key)][string(uk)] = v
	}
	for key, want := range byKey {
		h.b.SetCurrentKey([]byte(key))
		got := map[string]string{}
		h.b.RangeUser(h.mp, func(uk, v []byte) bool {
			got[string(uk)] = string(v)
			return true
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			h.tb.Fatalf("RangeUser(%q) = %v, want %v", key, got, want)
		}
	}
	h.b.SetCurrentKey(h.key)
}

func (h *cowHarness) finish() {
	for _, f := range h.snaps {
		h.check(f)
	}
	h.checkLive()
	// Release in a random order; the backend keeps working after each.
	h.rng.Shuffle(len(h.snaps), func(i, j int) { h.snaps[i], h.snaps[j] = h.snaps[j], h.snaps[i] })
	for _, f := range h.snaps {
		f.s.Release()
		f.s.Release() // idempotent
		h.step(2, 7)
		h.step(14, 0)
	}
	h.snaps = nil
	h.checkLive()
}

var smallOpts = Options{MaxParallelism: 4, PageSizeBytes: MinPageSizeBytes}

func TestCoWProperty(t *testing.T) {
	for seed := range uint64(9) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			opts := smallOpts
			if seed%3 == 2 {
				opts = Options{MaxParallelism: 16, Range: KeyGroupRange{Start: 4, End: 12}, PageSizeBytes: 2048}
			}
			h := newCowHarness(t, seed, opts)
			for i := range 3000 {
				h.step(byte(h.rng.IntN(256)), byte(h.rng.IntN(256)))
				if i%500 == 499 {
					h.checkLive()
				}
			}
			if h.b.compactions == 0 || h.b.rehashes == 0 || h.b.pageCopies == 0 {
				t.Fatalf("seed %d: %d compactions, %d rehashes, %d page copies", seed, h.b.compactions, h.b.rehashes, h.b.pageCopies)
			}
			h.finish()
		})
	}
}

// TestCoWScenario is the scenario of the brief, explicitly: build state,
// snapshot, mutate heavily (enough for growth and compaction), snapshot
// again, mutate again, check both, release in both orders.
func TestCoWScenario(t *testing.T) {
	for _, releaseFirstFirst := range []bool{true, false} {
		h := newCowHarness(t, 1, smallOpts)
		put := func(i, size int, salt byte) {
			h.setKey(i)
			v := h.valueOf(size, salt)
			h.b.Put(h.value, v)
			h.model[mkey{int(h.value), string(h.keyEnc)}] = string(v)
		}
		del := func(i int) {
			h.setKey(i)
			h.b.Delete(h.value)
			delete(h.model, mkey{int(h.value), string(h.keyEnc)})
		}
		for i := range 2000 {
			put(i, 8, 1)
		}
		s1 := h.snapshot()
		compactions := h.b.memRetired
		for i := range 2000 {
			put(i, 8+i%50, 2) // grow most values: relocations
		}
		for i := 2000; i < 6000; i++ {
			put(i, 8, 3) // new keys: growth
		}
		for i := 0; i < 6000; i += 2 {
			del(i) // compaction
		}
		s2 := h.snapshot()
		for i := range 6000 {
			if i%3 == 0 {
				put(i, 16, 4)
			} else {
				del(i)
			}
		}
		if h.b.memRetired == compactions || h.b.compactions == 0 || h.b.rehashes == 0 || h.b.pageCopies == 0 {
			t.Fatalf("the scenario did not exercise everything: %d compactions, %d rehashes, %d page copies, %d bytes retired",
				h.b.compactions, h.b.rehashes, h.b.pageCopies, h.b.memRetired)
		}
		h.check(s1)
		h.check(s2)
		h.checkLive()
		first, second := s1, s2
		if !releaseFirstFirst {
			first, second = s2, s1
		}
		first.s.Release()
		put(1, 8, 5)
		h.check(second)
		second.s.Release()
		put(1, 8, 6)
		h.snaps = nil
		h.checkLive()
		if h.b.memRetired != 0 && len(h.b.snaps) == 0 {
			h.b.refreshSnaps()
			h.b.reclaimRetired()
			if h.b.memRetired != 0 {
				t.Fatalf("%d bytes still retired with no snapshot open", h.b.memRetired)
			}
		}
	}
}

// TestCoWConcurrentReader runs a reader goroutine over each snapshot while
// the owner keeps writing; run it with -race.
func TestCoWConcurrentReader(t *testing.T) {
	h := newCowHarness(t, 99, smallOpts)
	for i := range 3000 {
		h.step(byte(i%11), byte(i*7))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for round := range 6 {
		f := h.snapshot()
		h.snaps = h.snaps[:len(h.snaps)-1] // owned by the reader
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.s.Release()
			for range 3 {
				got, _, err := dumpSnapshotErr(f.s)
				if err != nil {
					errs <- err
					return
				}
				if d := diffModels(f.model, got); d != "" {
					errs <- fmt.Errorf("round %d: %s", round, d)
					return
				}
			}
		}()
		for range 4000 {
			op := byte(h.rng.IntN(256))
			if op%16 == 11 || op%16 == 12 || op%16 == 13 {
				continue // the reader owns the snapshot
			}
			h.step(op, byte(h.rng.IntN(256)))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.checkLive()
}

// TestCoWTypedPath biases the harness to the fixed-width path: typed Gets
// and Puts of few keys with snapshots, releases and other writes between
// them, so that a Put after a snapshot that shares the Get's page, or
// after a write that moved its record, would show in a snapshot or the
// live state.
func TestCoWTypedPath(t *testing.T) {
	for seed := range uint64(4) {
		h := newCowHarness(t, seed, smallOpts)
		h.nkeys = 8
		for range 5000 {
			switch r := h.rng.IntN(20); {
			case r < 3:
				h.step(0, byte(h.rng.IntN(256))) // SetCurrentKey
			case r < 14:
				h.step(2, byte(5*h.rng.IntN(52))) // typed Get and/or Put
			case r < 16:
				h.step(11, 0) // snapshot
			case r < 17:
				h.step(12, byte(3*h.rng.IntN(86))) // check one, release it
			default:
				h.step(byte(h.rng.IntN(16)), byte(h.rng.IntN(256)))
			}
		}
		h.finish()
	}
}

// FuzzCoW drives the harness from bytes: pairs of (operation, argument).
func FuzzCoW(f *testing.F) {
	f.Add([]byte{2, 5, 11, 0, 2, 9, 14, 0, 15, 0, 13, 0, 11, 4, 5, 3, 7, 3, 12, 0})
	f.Add(bytes.Repeat([]byte{2, 251, 0, 1, 11, 0, 9, 19, 14, 8, 15, 8, 5, 17}, 20))
	f.Add(bytes.Repeat([]byte{5, 1, 5, 2, 11, 0, 7, 1, 8, 0, 0, 3, 14, 16}, 30))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4000 {
			ops = ops[:4000]
		}
		h := newCowHarness(t, 1, smallOpts)
		for i := 0; i+1 < len(ops); i += 2 {
			h.step(ops[i], ops[i+1])
		}
		h.finish()
	})
}
