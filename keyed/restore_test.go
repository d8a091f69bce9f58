package keyed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type entry struct {
	state      string
	key, value []byte
}

// collect returns every entry of s, state by name, grouped by key group.
func collect(t testing.TB, s *Snapshot) map[int][]entry {
	out := map[int][]entry{}
	r := s.Range()
	for kg := r.Start; kg < r.End; kg++ {
		err := s.ForEach(kg, func(state int, key, value []byte) error {
			out[kg] = append(out[kg], entry{s.States()[state], bytes.Clone(key), bytes.Clone(value)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func canonical(groups map[int][]entry) map[string]string {
	m := map[string]string{}
	for _, es := range groups {
		for _, e := range es {
			m[e.state+"/"+string(e.key)] = string(e.value)
		}
	}
	return m
}

// buildRich fills a backend with every kind of state.
func buildRich(t testing.TB, opts Options) *Backend {
	b := newBackend(t, opts)
	vs := must[*ValueState[int64]](t)(NewValueState(b, "value", Int64Codec, StateOptions{}))
	ts := must[*ValueState[string]](t)(NewValueState(b, "ttl", StringCodec, StateOptions{TTL: time.Hour}))
	ls := must[*ListState[string]](t)(NewListState(b, "list", StringCodec, StateOptions{}))
	ms := must[*MapState[string, int64]](t)(NewMapState(b, "map", StringCodec, Int64Codec, StateOptions{}))
	rs := must[*ReducingState[int64]](t)(NewReducingState(b, "sum", Int64Codec, func(a, b int64) int64 { return a + b }, StateOptions{}))
	var key [8]byte
	for i := range 3000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(int64(i))
		if i%3 == 0 {
			ts.Put(strings.Repeat("t", i%50))
		}
		if i%5 == 0 {
			for j := range i % 4 {
				ls.Add(fmt.Sprint(j))
			}
		}
		if i%7 == 0 {
			for j := range i % 5 {
				ms.Put(fmt.Sprint("uk", j), int64(j))
			}
			ms.Put("", -1)
		}
		rs.Add(int64(i))
	}
	b.SetCurrentKey([]byte("big"))
	ls.Update([]string{strings.Repeat("B", 40_000)}) // larger than a page
	return b
}

func registerLike(t testing.TB, b *Backend, s *Snapshot) {
	for i, name := range s.States() {
		if _, err := b.Register(name, s.Kinds()[i], s.StateOptions()[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	src := buildRich(t, Options{})
	s := src.Snapshot()
	defer s.Release()
	groups := collect(t, s)
	want := canonical(groups)

	dst := newBackend(t, Options{})
	registerLike(t, dst, s)
	for _, es := range groups {
		for _, e := range es {
			if err := dst.RestoreEntry(e.state, e.key, e.value); err != nil {
				t.Fatal(err)
			}
		}
	}
	dst.checkAll()
	if dst.Len() != src.Len() {
		t.Fatalf("Len %d, want %d", dst.Len(), src.Len())
	}
	s2 := dst.Snapshot()
	got := canonical(collect(t, s2))
	s2.Release()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%q = %x, want %x", k, got[k], v)
		}
	}
	// Reads through the typed API work on the restored backend.
	ms := must[*MapState[string, int64]](t)(NewMapState(dst, "map", StringCodec, Int64Codec, StateOptions{}))
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], 14)
	dst.SetCurrentKey(key[:])
	n := 0
	for range ms.All() {
		n++
	}
	if n != 14%5+1 {
		t.Fatalf("restored map of key 14 has %d entries", n)
	}
	// Restoring an existing entry overwrites it.
	for _, e := range groups[0][:1] {
		if err := dst.RestoreEntry(e.state, e.key, e.value); err != nil {
			t.Fatal(err)
		}
	}
	if dst.Len() != src.Len() {
		t.Fatal("restoring an entry twice duplicated it")
	}
	dst.checkAll()
}

// TestRestoreRescaled restores one task's checkpoint into three tasks,
// each taking the key groups RangeForTask gives it.
func TestRestoreRescaled(t *testing.T) {
	src := buildRich(t, Options{MaxParallelism: 64})
	s := src.Snapshot()
	defer s.Release()
	groups := collect(t, s)
	want := canonical(groups)
	got := map[string]string{}
	total := 0
	for task := range 3 {
		r := RangeForTask(64, 3, task)
		dst := newBackend(t, Options{MaxParallelism: 64, Range: r})
		registerLike(t, dst, s)
		for kg, es := range groups {
			for _, e := range es {
				err := dst.RestoreEntry(e.state, e.key, e.value)
				if r.Contains(kg) {
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !errors.Is(err, ErrKeyGroupOutOfRange) || !strings.Contains(err.Error(), fmt.Sprintf("key group %d is outside", kg)) {
					t.Fatalf("entry of key group %d into %v: %v", kg, r, err)
				}
			}
		}
		dst.checkAll()
		total += dst.Len()
		s2 := dst.Snapshot()
		for k, v := range canonical(collect(t, s2)) {
			got[k] = v
		}
		s2.Release()
	}
	if total != src.Len() || len(got) != len(want) {
		t.Fatalf("tasks hold %d entries (%d distinct), want %d", total, len(got), len(want))
	}
}

func TestRestoreErrors(t *testing.T) {
	b := newBackend(t, Options{})
	must[StateID](t)(b.Register("v", KindValue, StateOptions{}))
	must[StateID](t)(b.Register("t", KindValue, StateOptions{TTL: time.Second}))
	must[StateID](t)(b.Register("m", KindMap, StateOptions{}))
	key := AppendEntryKey(nil, []byte("k"), nil)
	f := func(state string, key, value []byte, want error, msg string) {
		t.Helper()
		err := b.RestoreEntry(state, key, value)
		if !errors.Is(err, want) || !strings.Contains(fmt.Sprint(err), msg) {
			t.Errorf("RestoreEntry(%q, %x, %x) = %v, want %v containing %q", state, key, value, err, want, msg)
		}
	}
	f("v", nil, nil, ErrCorrupt, "no valid length prefix")
	f("v", []byte{5, 'a'}, nil, ErrCorrupt, "exceeds the 1 bytes left")
	f("v", []byte{0x81, 0x00, 'a'}, nil, ErrCorrupt, "not minimal")
	f("v", AppendEntryKey(nil, []byte("k"), []byte("u")), nil, ErrCorrupt, "has a user key")
	f("t", key, []byte{1, 2, 3}, ErrCorrupt, "8-byte timestamp")
	f("v", AppendEntryKey(nil, make([]byte, MaxKeyBytes+1), nil), nil, ErrCorrupt, "exceeds")
	f("m", AppendEntryKey(nil, []byte("k"), make([]byte, MaxKeyBytes+1)), nil, ErrCorrupt, "user key of")
	f("v", key, make([]byte, MaxValueBytes+1), ErrValueTooLarge, "")
	if b.Len() != 0 {
		t.Fatal("a failed restore inserted something")
	}
	// The empty key and an empty user key are valid.
	if err := b.RestoreEntry("m", AppendEntryKey(nil, nil, nil), []byte("x")); err != nil {
		t.Fatal(err)
	}
	b.SetCurrentKey(nil)
	if v, ok := b.GetUser(2, nil); !ok || string(v) != "x" {
		t.Fatal("restored empty key / user key")
	}
}

func TestSplitEntryKey(t *testing.T) {
	for _, c := range []struct{ key, uk string }{{"", ""}, {"k", ""}, {"k", "u"}, {strings.Repeat("x", 300), "yy"}} {
		k, u, err := SplitEntryKey(AppendEntryKey(nil, []byte(c.key), []byte(c.uk)))
		if err != nil || string(k) != c.key || string(u) != c.uk {
			t.Errorf("split(%q, %q) = %q, %q, %v", c.key, c.uk, k, u, err)
		}
	}
}

func FuzzSplitEntryKey(f *testing.F) {
	f.Add([]byte{1, 'k', 'u'})
	f.Add([]byte{0x80, 0x01})
	f.Fuzz(func(t *testing.T, enc []byte) {
		k, u, err := SplitEntryKey(enc)
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("error %v is not a corruption", err)
			}
			return
		}
		if !bytes.Equal(AppendEntryKey(nil, k, u), enc) {
			t.Fatalf("%x does not round trip", enc)
		}
	})
}

// FuzzRestoreEntry restores arbitrary bytes: it must either fail with a
// classified error or store exactly the entry, which ForEach then yields.
func FuzzRestoreEntry(f *testing.F) {
	f.Add(uint8(0), []byte{1, 'k'}, []byte("value"))
	f.Add(uint8(1), []byte{1, 'k', 'u'}, []byte("0123456789"))
	f.Add(uint8(2), []byte{0}, []byte{})
	f.Fuzz(func(t *testing.T, which uint8, key, value []byte) {
		b := newBackend(t, Options{MaxParallelism: 4, Range: KeyGroupRange{0, 2}, PageSizeBytes: MinPageSizeBytes})
		names := []string{"v", "m", "t", "unregistered"}
		must[StateID](t)(b.Register("v", KindValue, StateOptions{}))
		must[StateID](t)(b.Register("m", KindMap, StateOptions{}))
		must[StateID](t)(b.Register("t", KindList, StateOptions{TTL: time.Second}))
		name := names[int(which)%len(names)]
		err := b.RestoreEntry(name, key, value)
		if err != nil {
			if !IsCorruption(err) && !errors.Is(err, ErrKeyGroupOutOfRange) && !errors.Is(err, ErrValueTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			if b.Len() != 0 || b.UnregisteredStates() != nil {
				t.Fatal("failed restore left an entry or a state")
			}
			return
		}
		b.checkAll()
		s := b.Snapshot()
		defer s.Release()
		got := canonical(collect(t, s))
		if len(got) != 1 || got[name+"/"+string(key)] != string(value) {
			t.Fatalf("restored %q %x=%x, snapshot has %v", name, key, value, got)
		}
	})
}
