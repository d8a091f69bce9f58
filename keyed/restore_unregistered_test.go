package keyed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// Restoring entries of states that are not registered yet, then
// registering them (RestoreEntry before Register).

// kindCase opens one typed state of a kind on a backend (registering it)
// and returns a writer of key i's data and a reader of the current key's
// data as a string.
type kindCase struct {
	name string
	kind Kind
	open func(b *Backend, name string, so StateOptions) (write func(i int), read func() string, err error)
}

func kindCases() []kindCase {
	return []kindCase{
		{"value-int64", KindValue, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewValueState(b, name, Int64Codec, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) { s.Put(int64(i) * 3) },
				func() string { v, ok := s.Get(); return fmt.Sprint(v, ok) }, nil
		}},
		{"value-string", KindValue, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewValueState(b, name, StringCodec, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) { s.Put(strings.Repeat("v", i%40)) },
				func() string { v, ok := s.Get(); return fmt.Sprintf("%q %v", v, ok) }, nil
		}},
		{"list", KindList, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewListState(b, name, StringCodec, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) {
					for j := range i%4 + 1 {
						s.Add(fmt.Sprint(i, "/", j))
					}
				}, func() string {
					var out []string
					for v := range s.All() {
						out = append(out, v)
					}
					return fmt.Sprint(out)
				}, nil
		}},
		{"map", KindMap, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewMapState(b, name, StringCodec, Int64Codec, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) {
				// Some keys have only the empty user key, some have it
				// among others, some have none.
				if i%3 != 2 {
					s.Put("", int64(-i))
				}
				if i%3 != 0 {
					for j := range i % 5 {
						s.Put(fmt.Sprint("uk", j), int64(j))
					}
				}
			}, readMap(s), nil
		}},
		{"map-empty-user-keys-only", KindMap, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewMapState(b, name, StringCodec, Int64Codec, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) { s.Put("", int64(i)) }, readMap(s), nil
		}},
		{"reducing", KindReducing, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewReducingState(b, name, Int64Codec, func(a, b int64) int64 { return a + b }, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) { s.Add(int64(i)); s.Add(1) },
				func() string { v, ok := s.Get(); return fmt.Sprint(v, ok) }, nil
		}},
		{"aggregating", KindAggregating, func(b *Backend, name string, so StateOptions) (func(int), func() string, error) {
			s, err := NewAggregatingState(b, name, StringCodec,
				func() string { return "" },
				func(acc string, in int64) string { return acc + fmt.Sprint(in, ";") },
				func(acc string) int { return len(acc) }, so)
			if err != nil {
				return nil, nil, err
			}
			return func(i int) {
					for j := range i % 3 {
						s.Add(int64(j))
					}
				}, func() string {
					v, ok := s.Get()
					acc, _ := s.v.Get()
					return fmt.Sprint(v, ok, acc)
				}, nil
		}},
	}
}

func readMap(s *MapState[string, int64]) func() string {
	return func() string {
		m := map[string]int64{}
		for k, v := range s.All() {
			m[k] = v
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out = append(out, fmt.Sprintf("%q=%d", k, m[k]))
		}
		return strings.Join(out, ",")
	}
}

const kindCaseKeys = 2000

func kindCaseKey(i int) []byte {
	if i == kindCaseKeys { // a key longer than 16 bytes
		return []byte("a key of more than sixteen bytes")
	}
	return binary.BigEndian.AppendUint64(nil, uint64(i))
}

// readAll reads every key of the case through the typed state.
func readAll(b *Backend, read func() string) []string {
	out := make([]string, kindCaseKeys+1)
	for i := range out {
		b.SetCurrentKey(kindCaseKey(i))
		out[i] = read()
	}
	return out
}

func restoreAll(t *testing.T, b *Backend, es []entry) {
	t.Helper()
	for _, e := range es {
		if err := b.RestoreEntry(e.state, e.key, e.value); err != nil {
			t.Fatalf("RestoreEntry(%q, %x): %v", e.state, e.key, err)
		}
	}
}

func flatten(groups map[int][]entry) []entry {
	var es []entry
	for _, kg := range slices.Sorted(maps.Keys(groups)) {
		es = append(es, groups[kg]...)
	}
	return es
}

func hasUserKey(e entry) bool {
	_, uk, err := SplitEntryKey(e.key)
	if err != nil {
		panic(err)
	}
	return len(uk) > 0
}

func sameEntries(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s: %d entries, want %d; %s", what, len(got), len(want), diffModelsStr(got, want))
	}
}

func diffModelsStr(got, want map[string]string) string {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return fmt.Sprintf("%q = %x (present %v), want %x", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("%q is extra", k)
		}
	}
	return "equal"
}

// TestRestoreBeforeRegister: for every kind, with and without TTL, and in
// several orders of the entries, restore into a backend where the state
// is not registered, snapshot it (the entries must be there), register,
// read back through the typed state, snapshot, restore into a second
// backend and compare.
func TestRestoreBeforeRegister(t *testing.T) {
	orders := []struct {
		name  string
		order func([]entry) []entry
	}{
		{"storage", func(es []entry) []entry { return es }},
		{"reversed", func(es []entry) []entry { es = slices.Clone(es); slices.Reverse(es); return es }},
		// Entries without a user key first: a map state's are stored as
		// values until the first entry with a user key converts them.
		{"no-user-key-first", func(es []entry) []entry {
			es = slices.Clone(es)
			slices.SortStableFunc(es, func(a, b entry) int {
				ha, hb := hasUserKey(a), hasUserKey(b)
				switch {
				case ha == hb:
					return 0
				case hb:
					return -1
				}
				return 1
			})
			return es
		}},
	}
	for _, kc := range kindCases() {
		for _, ttl := range []time.Duration{0, time.Hour} {
			so := StateOptions{TTL: ttl}
			t.Run(fmt.Sprintf("%s/ttl=%v", kc.name, ttl), func(t *testing.T) {
				clk := &fakeClock{nowMs: 5_000_000}
				opts := Options{MaxParallelism: 32, PageSizeBytes: MinPageSizeBytes, Clock: clk.now}
				src := newBackend(t, opts)
				// Another state around, registered in both backends, so
				// that IDs differ and records of several states mix.
				other := must[*ValueState[int64]](t)(NewValueState(src, "other", Int64Codec, StateOptions{}))
				write, read, err := kc.open(src, "s", so)
				if err != nil {
					t.Fatal(err)
				}
				for i := range kindCaseKeys + 1 {
					src.SetCurrentKey(kindCaseKey(i))
					if i%2 == 0 {
						other.Put(int64(i))
					}
					if i%7 != 6 {
						write(i)
					}
				}
				wantReads := readAll(src, read)
				srcLen := src.Len()
				ss := src.Snapshot()
				defer ss.Release()
				es := flatten(collect(t, ss))
				want := canonical(collect(t, ss))

				for _, o := range orders {
					t.Run(o.name, func(t *testing.T) {
						dst := newBackend(t, opts)
						restoreAll(t, dst, o.order(es))
						if got := dst.UnregisteredStates(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"other", "s"}) {
							t.Fatalf("UnregisteredStates = %q", got)
						}
						dst.checkAll()
						if dst.Len() != srcLen {
							t.Fatalf("Len %d, want %d", dst.Len(), srcLen)
						}
						// Before registration a snapshot has every entry.
						pending := dst.Snapshot()
						defer pending.Release()
						sameEntries(t, "snapshot before Register", canonical(collect(t, pending)), want)

						must[*ValueState[int64]](t)(NewValueState(dst, "other", Int64Codec, StateOptions{}))
						_, dread, err := kc.open(dst, "s", so)
						if err != nil {
							t.Fatal(err)
						}
						if got := dst.UnregisteredStates(); got != nil {
							t.Fatalf("UnregisteredStates after Register = %q", got)
						}
						dst.checkAll()
						if got := readAll(dst, dread); !slices.Equal(got, wantReads) {
							for i := range got {
								if got[i] != wantReads[i] {
									t.Fatalf("key %d reads %s, want %s", i, got[i], wantReads[i])
								}
							}
						}
						// Binding changed nothing the earlier snapshot sees.
						sameEntries(t, "snapshot taken before Register, read after", canonical(collect(t, pending)), want)
						sid := slices.Index(pending.States(), "s")
						if pending.Kinds()[sid] != 0 {
							t.Fatalf("snapshot taken before Register has kind %v", pending.Kinds()[sid])
						}
						ds := dst.Snapshot()
						defer ds.Release()
						if ds.Kinds()[sid] != kc.kind || ds.StateOptions()[sid] != so {
							t.Fatalf("snapshot after Register: kind %v, options %v", ds.Kinds()[sid], ds.StateOptions()[sid])
						}
						sameEntries(t, "snapshot after Register", canonical(collect(t, ds)), want)

						// Round trip: into a second backend, unregistered
						// again, registered after.
						dst2 := newBackend(t, opts)
						restoreAll(t, dst2, flatten(collect(t, ds)))
						_, read2, err := kc.open(dst2, "s", so)
						if err != nil {
							t.Fatal(err)
						}
						if got := dst2.UnregisteredStates(); !slices.Equal(got, []string{"other"}) {
							t.Fatalf("UnregisteredStates = %q", got)
						}
						dst2.checkAll()
						if got := readAll(dst2, read2); !slices.Equal(got, wantReads) {
							t.Fatal("second restore reads differently")
						}
						s2 := dst2.Snapshot()
						sameEntries(t, "second restore", canonical(collect(t, s2)), want)
						s2.Release()

						// The registered state works as usual: the same
						// writes to both restored backends read the same.
						dwrite, dread2, _ := kc.open(dst, "s", so)
						write2, _, _ := kc.open(dst2, "s", so)
						for _, i := range []int{6, 7, kindCaseKeys} {
							dst.SetCurrentKey(kindCaseKey(i))
							dwrite(kindCaseKeys + i)
							dst2.SetCurrentKey(kindCaseKey(i))
							write2(kindCaseKeys + i)
						}
						if g, w := readAll(dst, dread2), readAll(dst2, read2); !slices.Equal(g, w) {
							t.Fatal("writes after the restore read differently")
						}
						dst.checkAll()
					})
				}
			})
		}
	}
}

// TestRestoreRichUnregistered is TestRestoreRoundTrip with the states
// registered after the restore, half of them before.
func TestRestoreRichUnregistered(t *testing.T) {
	src := buildRich(t, Options{})
	s := src.Snapshot()
	defer s.Release()
	groups := collect(t, s)
	want := canonical(groups)
	for _, before := range []bool{false, true} {
		dst := newBackend(t, Options{})
		if before {
			for i, name := range s.States() {
				if i%2 == 0 {
					must[StateID](t)(dst.Register(name, s.Kinds()[i], s.StateOptions()[i]))
				}
			}
		}
		restoreAll(t, dst, flatten(groups))
		registerLike(t, dst, s)
		if got := dst.UnregisteredStates(); got != nil {
			t.Fatalf("UnregisteredStates = %q", got)
		}
		dst.checkAll()
		if dst.Len() != src.Len() {
			t.Fatalf("Len %d, want %d", dst.Len(), src.Len())
		}
		s2 := dst.Snapshot()
		sameEntries(t, "restored", canonical(collect(t, s2)), want)
		s2.Release()
		ms := must[*MapState[string, int64]](t)(NewMapState(dst, "map", StringCodec, Int64Codec, StateOptions{}))
		dst.SetCurrentKey(binary.BigEndian.AppendUint64(nil, 14))
		if v, ok := ms.Get(""); !ok || v != -1 {
			t.Fatalf("empty user key of key 14 = %d, %v", v, ok)
		}
		n := 0
		for range ms.All() {
			n++
		}
		if n != 14%5+1 {
			t.Fatalf("restored map of key 14 has %d entries", n)
		}
	}
}

// TestRestoreUnregisteredKept: a restored state that is never registered
// keeps its entries through snapshots and restores, and is reported.
func TestRestoreUnregisteredKept(t *testing.T) {
	b := newBackend(t, Options{MaxParallelism: 8})
	k := AppendEntryKey(nil, []byte("k"), nil)
	must[StateID](t)(b.Register("live", KindValue, StateOptions{}))
	if err := b.RestoreEntry("gone", k, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := b.RestoreEntry("gone-map", AppendEntryKey(nil, []byte("k"), []byte("u")), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got := b.UnregisteredStates(); !slices.Equal(got, []string{"gone", "gone-map"}) {
		t.Fatalf("UnregisteredStates = %q", got)
	}
	b.SetCurrentKey([]byte("k"))
	b.Put(0, []byte("new"))
	// The IDs of unregistered states take no operation.
	const msg = "restored from a checkpoint but is not registered"
	wantPanic(t, msg, func() { b.Get(1) })
	wantPanic(t, msg, func() { b.Put(1, nil) })
	wantPanic(t, msg, func() { b.Delete(1) })
	wantPanic(t, msg, func() { b.AppendValue(1, nil) })
	wantPanic(t, msg, func() { b.GetUser(2, nil) })
	wantPanic(t, msg, func() { b.PutUser(2, nil, nil) })
	wantPanic(t, msg, func() { b.Delete(2) })
	wantPanic(t, msg, func() { b.RangeUser(2, func(_, _ []byte) bool { return true }) })

	want := map[string]string{"live/\x01k": "new", "gone/\x01k": "old", "gone-map/\x01ku": "m"}
	s := b.Snapshot()
	sameEntries(t, "snapshot", canonical(collect(t, s)), want)
	if !slices.Equal(s.Kinds(), []Kind{KindValue, 0, 0}) {
		t.Fatalf("Kinds = %v", s.Kinds())
	}
	b2 := newBackend(t, Options{MaxParallelism: 8})
	restoreAll(t, b2, flatten(collect(t, s)))
	s.Release()
	if got := b2.UnregisteredStates(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"gone", "gone-map", "live"}) {
		t.Fatalf("UnregisteredStates = %q", got)
	}
	// Restoring adds to a restored state; compaction and cleanup keep it.
	for i := range 3000 {
		key := AppendEntryKey(nil, fmt.Appendf(nil, "k%d", i), nil)
		if err := b2.RestoreEntry("gone", key, bytes.Repeat([]byte{1}, 300)); err != nil {
			t.Fatal(err)
		}
		if err := b2.RestoreEntry("gone", key, bytes.Repeat([]byte{2}, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if b2.compactions == 0 {
		t.Fatal("no compaction")
	}
	if n := b2.CleanupExpired(1 << 20); n != 0 {
		t.Fatalf("CleanupExpired removed %d entries", n)
	}
	b2.checkAll()
	s2 := b2.Snapshot()
	defer s2.Release()
	got := canonical(collect(t, s2))
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%q = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != 3+3000 {
		t.Fatalf("%d entries", len(got))
	}
}

func TestRestoreUnregisteredConflicts(t *testing.T) {
	key := AppendEntryKey(nil, []byte("k"), nil)
	mapKey := AppendEntryKey(nil, []byte("k"), []byte("u"))
	restore := func(t *testing.T, b *Backend, state string, key, value []byte) {
		t.Helper()
		if err := b.RestoreEntry(state, key, value); err != nil {
			t.Fatal(err)
		}
	}
	wantMismatch := func(t *testing.T, err error, msg string) {
		t.Helper()
		if !errors.Is(err, ErrStateMismatch) || !strings.Contains(fmt.Sprint(err), msg) {
			t.Fatalf("error %v, want ErrStateMismatch containing %q", err, msg)
		}
	}

	t.Run("map entries as another kind", func(t *testing.T) {
		b := newBackend(t, Options{})
		restore(t, b, "m", key, []byte("empty user key"))
		restore(t, b, "m", mapKey, []byte("x"))
		for _, kind := range []Kind{KindValue, KindList, KindReducing, KindAggregating} {
			_, err := b.Register("m", kind, StateOptions{})
			wantMismatch(t, err, `cannot register "m" as `+kind.String()+" state: the entries restored for it have user keys")
		}
		_, err := NewValueState(b, "m", StringCodec, StateOptions{})
		wantMismatch(t, err, `"m"`)
		if got := b.UnregisteredStates(); !slices.Equal(got, []string{"m"}) {
			t.Fatalf("a failed Register bound the state: %q", got)
		}
		ms := must[*MapState[string, string]](t)(NewMapState(b, "m", StringCodec, StringCodec, StateOptions{}))
		b.SetCurrentKey([]byte("k"))
		if v, ok := ms.Get(""); !ok || v != "empty user key" {
			t.Fatalf("Get(\"\") = %q, %v", v, ok)
		}
		if v, ok := ms.Get("u"); !ok || v != "x" {
			t.Fatalf("Get(u) = %q, %v", v, ok)
		}
		// Bound now: the usual rules.
		_, err = b.Register("m", KindValue, StateOptions{})
		wantMismatch(t, err, "it is map with TTL 0s")
		if err := b.RestoreEntry("m", key, []byte("y")); err != nil {
			t.Fatal(err)
		}
		if v, _ := ms.Get(""); v != "y" {
			t.Fatalf("restored after Register: %q", v)
		}
		b.checkAll()
	})

	t.Run("values shorter than a TTL timestamp", func(t *testing.T) {
		b := newBackend(t, Options{})
		restore(t, b, "v", key, []byte("1234567"))
		restore(t, b, "v", AppendEntryKey(nil, []byte("j"), nil), []byte("12345678"))
		_, err := NewValueState(b, "v", StringCodec, StateOptions{TTL: time.Minute})
		wantMismatch(t, err, `cannot register "v" with TTL 1m0s: a value restored for it has 7 bytes`)
		must[*ValueState[string]](t)(NewValueState(b, "v", StringCodec, StateOptions{}))
	})

	t.Run("an overwritten short value", func(t *testing.T) {
		clk := &fakeClock{nowMs: 1000}
		b := newBackend(t, Options{Clock: clk.now})
		restore(t, b, "v", key, []byte("short"))
		ts := binary.LittleEndian.AppendUint64(nil, 900)
		restore(t, b, "v", key, append(ts, "value"...))
		vs := must[*ValueState[string]](t)(NewValueState(b, "v", StringCodec, StateOptions{TTL: time.Second}))
		b.SetCurrentKey([]byte("k"))
		if v, ok := vs.Get(); !ok || v != "value" {
			t.Fatalf("Get = %q, %v", v, ok)
		}
		clk.nowMs = 1900
		if _, ok := vs.Get(); ok {
			t.Fatal("the restored timestamp did not expire")
		}
	})

	t.Run("invalid names and limits", func(t *testing.T) {
		b := newBackend(t, Options{})
		for _, name := range []string{"", strings.Repeat("n", MaxStateNameBytes+1)} {
			if err := b.RestoreEntry(name, key, nil); !IsCorruption(err) || !strings.Contains(err.Error(), "a name has 1 to 255 bytes") {
				t.Errorf("RestoreEntry of name %q: %v", name, err)
			}
		}
		if err := b.RestoreEntry("v", key, make([]byte, MaxValueBytes+ttlBytes+1)); !errors.Is(err, ErrValueTooLarge) {
			t.Errorf("RestoreEntry of a too large value: %v", err)
		}
		if err := b.RestoreEntry("v", []byte{5}, nil); !IsCorruption(err) {
			t.Errorf("RestoreEntry of a bad key: %v", err)
		}
		if err := b.RestoreEntry("v", AppendEntryKey(nil, []byte("k"), make([]byte, MaxKeyBytes+1)), nil); !IsCorruption(err) {
			t.Errorf("RestoreEntry of a bad user key: %v", err)
		}
		if b.Len() != 0 || b.UnregisteredStates() != nil || len(b.Snapshot().States()) != 0 {
			t.Fatal("a failed RestoreEntry changed the backend")
		}
		for i := range MaxStates - 1 {
			must[StateID](t)(b.Register(fmt.Sprint("s", i), KindValue, StateOptions{}))
		}
		restore(t, b, "last", key, nil)
		if err := b.RestoreEntry("one too many", key, nil); !errors.Is(err, ErrTooManyStates) {
			t.Fatalf("RestoreEntry beyond MaxStates: %v", err)
		}
		if _, err := b.Register("last", KindValue, StateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a value of MaxValueBytes and a timestamp", func(t *testing.T) {
		if testing.Short() {
			t.Skip("64 MiB values")
		}
		b := newBackend(t, Options{})
		restore(t, b, "v", key, make([]byte, MaxValueBytes+ttlBytes))
		_, err := b.Register("v", KindValue, StateOptions{})
		wantMismatch(t, err, `cannot register "v" without a TTL`)
		must[StateID](t)(b.Register("v", KindValue, StateOptions{TTL: time.Hour}))
	})
}

// TestRestoreUnregisteredCoW converts a map state's value records while
// snapshots are open, over many key groups and pages: the snapshots keep
// reading what they froze (under -race, concurrently).
func TestRestoreUnregisteredCoW(t *testing.T) {
	opts := Options{MaxParallelism: 16, PageSizeBytes: MinPageSizeBytes}
	b := newBackend(t, opts)
	var es []entry
	for i := range 3000 {
		es = append(es, entry{"m", AppendEntryKey(nil, fmt.Appendf(nil, "key%d", i), nil), fmt.Appendf(nil, "v%d", i)})
	}
	restoreAll(t, b, es)
	s1 := b.Snapshot()
	want1 := canonical(collect(t, s1))
	done := make(chan map[string]string)
	go func() {
		m := map[string]string{}
		r := s1.Range()
		for kg := r.Start; kg < r.End; kg++ {
			s1.ForEach(kg, func(state int, key, value []byte) error {
				m[s1.States()[state]+"/"+string(key)] = string(value)
				return nil
			})
		}
		done <- m
	}()
	// A user key converts every value record to a map entry.
	if err := b.RestoreEntry("m", AppendEntryKey(nil, []byte("key7"), []byte("u")), []byte("x")); err != nil {
		t.Fatal(err)
	}
	b.checkAll()
	sameEntries(t, "snapshot read concurrently", <-done, want1)
	sameEntries(t, "snapshot read after", canonical(collect(t, s1)), want1)
	s1.Release()
	want1["m/\x04key7u"] = "x"
	s2 := b.Snapshot()
	sameEntries(t, "after conversion", canonical(collect(t, s2)), want1)
	if b.pageCopies == 0 {
		t.Fatal("the conversion copied no page")
	}
	must[StateID](t)(b.Register("m", KindMap, StateOptions{}))
	s2.Release()
	b.checkAll()
	b.SetCurrentKey([]byte("key7"))
	if v, ok := b.GetUser(0, []byte("u")); !ok || string(v) != "x" {
		t.Fatal("user key u of key7")
	}
	if v, ok := b.GetUser(0, nil); !ok || string(v) != "v7" {
		t.Fatal("empty user key of key7")
	}
}

// FuzzRestoreUnregistered restores a sequence of entries into a state that
// is not registered, then registers it as some kind and TTL: Register
// either refuses, exactly when the entries cannot be of that kind or TTL,
// or binds without changing a single entry.
func FuzzRestoreUnregistered(f *testing.F) {
	f.Add([]byte{1, 'k', 0, 3, 'a', 'b', 'c', 1, 'k', 1, 'u', 1, 'x'}, uint8(2), false)
	f.Add([]byte{1, 'k', 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(0), true)
	f.Add([]byte{0, 0, 0, 1, 'j', 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}, uint8(2), true)
	f.Fuzz(func(t *testing.T, data []byte, kindSel uint8, ttl bool) {
		b := newBackend(t, Options{MaxParallelism: 4, PageSizeBytes: MinPageSizeBytes})
		model := map[string]string{}
		next := func() ([]byte, bool) {
			if len(data) == 0 || int(data[0]) > len(data)-1 {
				return nil, false
			}
			n := int(data[0])
			p := data[1 : 1+n]
			data = data[1+n:]
			return p, true
		}
		for {
			k, ok1 := next()
			uk, ok2 := next()
			v, ok3 := next()
			if !ok1 || !ok2 || !ok3 {
				break
			}
			enc := AppendEntryKey(nil, k, uk)
			if err := b.RestoreEntry("s", enc, v); err != nil {
				t.Fatal(err)
			}
			model["s/"+string(enc)] = string(v)
		}
		if len(model) == 0 {
			return
		}
		b.checkAll()
		s := b.Snapshot()
		sameEntries(t, "before Register", canonical(collect(t, s)), model)
		s.Release()
		kind := Kind(1 + int(kindSel)%int(kindEnd-1))
		so := StateOptions{}
		if ttl {
			so.TTL = time.Hour
		}
		isMap, short := false, false
		for k, v := range model {
			_, uk, _ := SplitEntryKey([]byte(k[2:]))
			isMap = isMap || len(uk) > 0
			short = short || len(v) < ttlBytes
		}
		_, err := b.Register("s", kind, so)
		if refuse := (isMap && kind != KindMap) || (ttl && short); refuse != (err != nil) {
			t.Fatalf("Register as %v, TTL %v of %d entries (map %v, short %v): %v", kind, ttl, len(model), isMap, short, err)
		}
		if err != nil && !errors.Is(err, ErrStateMismatch) {
			t.Fatalf("unclassified error %v", err)
		}
		b.checkAll()
		s = b.Snapshot()
		sameEntries(t, "after Register", canonical(collect(t, s)), model)
		s.Release()
		if err != nil || ttl {
			return
		}
		for k, v := range model {
			key, uk, _ := SplitEntryKey([]byte(k[2:]))
			b.SetCurrentKey(key)
			var got []byte
			var ok bool
			if kind == KindMap {
				got, ok = b.GetUser(0, uk)
			} else {
				got, ok = b.Get(0)
			}
			if !ok || string(got) != v {
				t.Fatalf("%q reads %x, %v; want %x", k, got, ok, v)
			}
		}
	})
}
