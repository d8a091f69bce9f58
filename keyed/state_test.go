package keyed

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func newBackend(t testing.TB, opts Options) *Backend {
	t.Helper()
	b, err := NewBackend(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), want) {
			t.Errorf("panic %v, want one containing %q", r, want)
		}
	}()
	fn()
}

func TestRegister(t *testing.T) {
	b := newBackend(t, Options{})
	id := must[StateID](t)(b.Register("a", KindValue, StateOptions{}))
	if again := must[StateID](t)(b.Register("a", KindValue, StateOptions{})); again != id {
		t.Fatalf("re-register returned %d, want %d", again, id)
	}
	id2 := must[StateID](t)(b.Register("b", KindMap, StateOptions{TTL: 5e9}))
	if id2 != id+1 {
		t.Fatalf("second state id %d", id2)
	}
	for _, c := range []struct {
		name string
		kind Kind
		so   StateOptions
		want error
	}{
		{"a", KindList, StateOptions{}, ErrStateMismatch},
		{"a", KindValue, StateOptions{TTL: 1e9}, ErrStateMismatch},
		{"b", KindMap, StateOptions{}, ErrStateMismatch},
		{"", KindValue, StateOptions{}, ErrInvalidState},
		{strings.Repeat("x", 256), KindValue, StateOptions{}, ErrInvalidState},
		{"c", Kind(0), StateOptions{}, ErrInvalidState},
		{"c", Kind(9), StateOptions{}, ErrInvalidState},
		{"c", KindValue, StateOptions{TTL: -1}, ErrInvalidState},
		{"c", KindValue, StateOptions{TTL: 1000}, ErrInvalidState}, // 1µs
	} {
		if _, err := b.Register(c.name, c.kind, c.so); !errors.Is(err, c.want) {
			t.Errorf("Register(%.10q, %v, %v) = %v, want %v", c.name, c.kind, c.so, err, c.want)
		}
	}
	// Every problem at once.
	_, err := b.Register("", Kind(0), StateOptions{TTL: -1})
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems, got %v", err)
	}
	for i := len(b.states); i < MaxStates; i++ {
		must[StateID](t)(b.Register(fmt.Sprint("s", i), KindValue, StateOptions{}))
	}
	if _, err := b.Register("one-too-many", KindValue, StateOptions{}); !errors.Is(err, ErrTooManyStates) {
		t.Fatalf("got %v", err)
	}
	if Kind(3).String() != "map" || Kind(77).String() != "Kind(77)" {
		t.Fatal("Kind.String")
	}
}

func TestValueState(t *testing.T) {
	b := newBackend(t, Options{})
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{}))
	ss := must[*ValueState[string]](t)(NewValueState(b, "s", StringCodec, StateOptions{}))
	b.SetCurrentKey([]byte("k1"))
	if _, ok := vs.Get(); ok {
		t.Fatal("value before Put")
	}
	vs.Put(7)
	ss.Put("hello")
	b.SetCurrentKey([]byte("k2"))
	vs.Put(9)
	b.SetCurrentKey([]byte("k1"))
	if v, ok := vs.Get(); !ok || v != 7 {
		t.Fatalf("Get = %d, %v", v, ok)
	}
	// Growing, shrinking and equal-size overwrites.
	for _, s := range []string{"a much longer string than before", "", "x", strings.Repeat("y", 5000), "z"} {
		ss.Put(s)
		if got, ok := ss.Get(); !ok || got != s {
			t.Fatalf("Get = %q, %v; want %q", got, ok, s)
		}
	}
	vs.Clear()
	if _, ok := vs.Get(); ok {
		t.Fatal("value after Clear")
	}
	vs.Clear() // absent: no-op
	b.SetCurrentKey([]byte("k2"))
	if v, _ := vs.Get(); v != 9 {
		t.Fatal("other key changed")
	}
	if b.Len() != 2 { // k2/v, k1/s
		t.Fatalf("Len = %d", b.Len())
	}
	if string(b.CurrentKey()) != "k2" || b.CurrentKeyGroup() != KeyGroupOf(HashKey([]byte("k2")), 128) {
		t.Fatal("CurrentKey / CurrentKeyGroup")
	}
	b.checkAll()
}

func TestListState(t *testing.T) {
	b := newBackend(t, Options{PageSizeBytes: MinPageSizeBytes})
	ls := must[*ListState[string]](t)(NewListState(b, "l", StringCodec, StateOptions{}))
	b.SetCurrentKey([]byte("k"))
	if got := slices.Collect(ls.All()); len(got) != 0 {
		t.Fatal(got)
	}
	var want []string
	for i := range 500 { // grows far beyond a page
		s := strings.Repeat(fmt.Sprint(i), i%7)
		ls.Add(s)
		want = append(want, s)
	}
	if got := slices.Collect(ls.All()); !slices.Equal(got, want) {
		t.Fatalf("All = %d elements, want %d", len(got), len(want))
	}
	for v := range ls.All() {
		if v != want[0] {
			t.Fatal("first element")
		}
		break
	}
	ls.Update([]string{"x", "", "y"})
	if got := slices.Collect(ls.All()); !slices.Equal(got, []string{"x", "", "y"}) {
		t.Fatal(got)
	}
	ls.Update(nil)
	if _, ok := b.Get(ls.ID()); ok {
		t.Fatal("Update(nil) did not clear")
	}
	ls.Add("again")
	ls.Clear()
	if got := slices.Collect(ls.All()); len(got) != 0 {
		t.Fatal(got)
	}
	ls.Add("a")
	wantPanic(t, "written during a list state iteration", func() {
		ls.Add("b")
		for range ls.All() {
			ls.Add("c")
		}
	})
	b.checkAll()
}

func TestMapState(t *testing.T) {
	b := newBackend(t, Options{PageSizeBytes: MinPageSizeBytes})
	ms := must[*MapState[string, int64]](t)(NewMapState(b, "m", StringCodec, Int64Codec, StateOptions{}))
	other := must[*MapState[string, int64]](t)(NewMapState(b, "m2", StringCodec, Int64Codec, StateOptions{}))
	b.SetCurrentKey([]byte("k"))
	if !ms.IsEmpty() || ms.Contains("a") {
		t.Fatal("empty map")
	}
	want := map[string]int64{}
	for i := range 300 {
		k := fmt.Sprint("uk", i%100)
		ms.Put(k, int64(i))
		want[k] = int64(i)
		if i%3 == 0 {
			ms.Remove(fmt.Sprint("uk", (i*7)%100))
			delete(want, fmt.Sprint("uk", (i*7)%100))
		}
	}
	ms.Put("", -1) // the empty user key is a key like any other
	want[""] = -1
	other.Put("uk1", 1000)
	b.SetCurrentKey([]byte("k2"))
	ms.Put("uk1", 2000)
	b.SetCurrentKey([]byte("k"))
	got := map[string]int64{}
	for k, v := range ms.All() {
		if _, dup := got[k]; dup {
			t.Fatalf("duplicate %q", k)
		}
		got[k] = v
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("All = %v\nwant %v", got, want)
	}
	for k, v := range want {
		if g, ok := ms.Get(k); !ok || g != v {
			t.Fatalf("Get(%q) = %d, %v", k, g, ok)
		}
	}
	if _, ok := ms.Get("nope"); ok {
		t.Fatal("Get of an absent user key")
	}
	ms.Remove("nope") // no-op
	b.checkAll()
	ms.Clear()
	if !ms.IsEmpty() {
		t.Fatal("not empty after Clear")
	}
	if v, _ := other.Get("uk1"); v != 1000 {
		t.Fatal("Clear touched another state")
	}
	b.SetCurrentKey([]byte("k2"))
	if v, _ := ms.Get("uk1"); v != 2000 {
		t.Fatal("Clear touched another key")
	}
	// Values that outgrow their space move; the list stays linked.
	bs := must[*MapState[string, []byte]](t)(NewMapState(b, "mb", StringCodec, BytesCodec, StateOptions{}))
	for round := range 4 {
		for i := range 20 {
			bs.Put(fmt.Sprint(i), bytes.Repeat([]byte{byte(i)}, round*300+i))
		}
	}
	n := 0
	for k, v := range bs.All() {
		if len(v) != 900+len(k)*0+atoi(k) {
			t.Fatalf("%s: %d bytes", k, len(v))
		}
		n++
	}
	if n != 20 {
		t.Fatalf("%d entries", n)
	}
	b.checkAll()
	wantPanic(t, "written during RangeUser", func() {
		for k := range bs.All() {
			bs.Remove(k)
		}
	})
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func TestReducingAndAggregatingState(t *testing.T) {
	b := newBackend(t, Options{})
	rs := must[*ReducingState[int64]](t)(NewReducingState(b, "sum", Int64Codec, func(a, b int64) int64 { return a + b }, StateOptions{}))
	as := must[*AggregatingState[int64, int64, float64]](t)(NewAggregatingState(b, "max", Int64Codec,
		func() int64 { return -1 << 63 },
		func(acc, in int64) int64 { return max(acc, in) },
		func(acc int64) float64 { return float64(acc) / 2 },
		StateOptions{}))
	b.SetCurrentKey([]byte("k"))
	if _, ok := rs.Get(); ok {
		t.Fatal("reduced before Add")
	}
	if _, ok := as.Get(); ok {
		t.Fatal("aggregated before Add")
	}
	for _, v := range []int64{3, 9, -4} {
		rs.Add(v)
		as.Add(v)
	}
	if v, ok := rs.Get(); !ok || v != 8 {
		t.Fatalf("sum = %d", v)
	}
	if v, ok := as.Get(); !ok || v != 4.5 {
		t.Fatalf("max/2 = %v", v)
	}
	rs.Clear()
	as.Clear()
	if _, ok := rs.Get(); ok {
		t.Fatal("after Clear")
	}
	if _, ok := as.Get(); ok {
		t.Fatal("after Clear")
	}
	if _, err := NewValueState(b, "sum", Int64Codec, StateOptions{}); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("a value state named like a reducing state: %v", err)
	}
	if rs.ID() == as.ID() {
		t.Fatal("IDs")
	}
}

func TestBackendPanics(t *testing.T) {
	b := newBackend(t, Options{MaxParallelism: 16, Range: KeyGroupRange{Start: 0, End: 8}})
	v := must[StateID](t)(b.Register("v", KindValue, StateOptions{}))
	m := must[StateID](t)(b.Register("m", KindMap, StateOptions{}))
	wantPanic(t, "no current key", func() { b.Get(v) })
	wantPanic(t, "no current key", func() { b.CurrentKey() })
	var out []byte
	for i := 0; ; i++ {
		k := []byte(fmt.Sprint(i))
		if kg := KeyGroupOf(HashKey(k), 16); kg >= 8 {
			out = k
			wantPanic(t, fmt.Sprintf("is in key group %d, outside this backend's range [0, 8)", kg), func() { b.SetCurrentKey(out) })
			break
		}
	}
	b.SetCurrentKey([]byte("0"))
	for !b.opts.Range.Contains(b.CurrentKeyGroup()) {
		t.Fatal("unreachable")
	}
	wantPanic(t, "key too large", func() { b.SetCurrentKey(make([]byte, MaxKeyBytes+1)) })
	wantPanic(t, "value too large", func() { b.Put(v, make([]byte, MaxValueBytes+1)) })
	wantPanic(t, "key too large", func() { b.PutUser(m, make([]byte, MaxKeyBytes+1), nil) })
	wantPanic(t, "is map state", func() { b.Get(m) })
	wantPanic(t, "is map state", func() { b.Put(m, nil) })
	wantPanic(t, "use Get/Put/Delete", func() { b.GetUser(v, nil) })
	wantPanic(t, "state ID 7 is not registered", func() { b.Get(7) })
	// A value can be exactly MaxValueBytes.
	b.Put(v, make([]byte, MaxValueBytes))
	if got, _ := b.Get(v); len(got) != MaxValueBytes {
		t.Fatal(len(got))
	}
	b.Delete(v)
	// The panic values of limits are errors callers can classify.
	func() {
		defer func() {
			if err, ok := recover().(error); !ok || !errors.Is(err, ErrValueTooLarge) {
				t.Errorf("panic value %v is not an ErrValueTooLarge error", err)
			}
		}()
		b.AppendValue(v, make([]byte, MaxValueBytes+1))
	}()
	// Corrupt stored bytes panic naming the state.
	vs := must[*ValueState[int64]](t)(NewValueState(b, "v", Int64Codec, StateOptions{}))
	b.Put(v, []byte("short"))
	func() {
		defer func() {
			err, _ := recover().(error)
			if !IsCorruption(err) || !strings.Contains(err.Error(), `state "v"`) {
				t.Errorf("panic %v, want a corruption error naming the state", err)
			}
		}()
		vs.Get()
	}()
}

func TestCodecs(t *testing.T) {
	roundTrip := func(name string, enc []byte, dec func([]byte) (any, error), want any) {
		t.Helper()
		got, err := dec(enc)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, %v; want %v", name, got, err, want)
		}
	}
	roundTrip("int64", Int64Codec.Append(nil, -5), func(b []byte) (any, error) { return Int64Codec.Decode(b) }, int64(-5))
	roundTrip("uint64", Uint64Codec.Append(nil, 1<<63), func(b []byte) (any, error) { return Uint64Codec.Decode(b) }, uint64(1<<63))
	roundTrip("float64", Float64Codec.Append(nil, 2.5), func(b []byte) (any, error) { return Float64Codec.Decode(b) }, 2.5)
	roundTrip("string", StringCodec.Append(nil, "hé"), func(b []byte) (any, error) { return StringCodec.Decode(b) }, "hé")
	roundTrip("bytes", BytesCodec.Append(nil, []byte{1, 2}), func(b []byte) (any, error) { return BytesCodec.Decode(b) }, []byte{1, 2})
	if got := Int64Codec.Append(nil, 1); !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0, 0, 1}) {
		t.Errorf("int64 is not big endian: %x", got)
	}
	for _, n := range []int{0, 7, 9} {
		if _, err := Int64Codec.Decode(make([]byte, n)); !IsCorruption(err) {
			t.Errorf("int64 of %d bytes: %v", n, err)
		}
		if _, err := Uint64Codec.Decode(make([]byte, n)); !IsCorruption(err) {
			t.Errorf("uint64 of %d bytes: %v", n, err)
		}
		if _, err := Float64Codec.Decode(make([]byte, n)); !IsCorruption(err) {
			t.Errorf("float64 of %d bytes: %v", n, err)
		}
	}
}

func FuzzCodecs(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := Int64Codec.Decode(b); err == nil && !bytes.Equal(Int64Codec.Append(nil, v), b) {
			t.Fatal("int64 round trip")
		}
		if v, err := Uint64Codec.Decode(b); err == nil && !bytes.Equal(Uint64Codec.Append(nil, v), b) {
			t.Fatal("uint64 round trip")
		}
		if v, err := Float64Codec.Decode(b); err == nil && !bytes.Equal(Float64Codec.Append(nil, v), b) {
			t.Fatal("float64 round trip")
		}
		if v, _ := StringCodec.Decode(b); !bytes.Equal(StringCodec.Append(nil, v), b) {
			t.Fatal("string round trip")
		}
		// The list framing must reject or accept any bytes without
		// reading out of bounds.
		be, _ := NewBackend(Options{})
		ls, _ := NewListState(be, "l", BytesCodec, StateOptions{})
		be.SetCurrentKey([]byte("k"))
		be.Put(ls.ID(), b)
		func() {
			defer func() {
				if r := recover(); r != nil {
					if err, ok := r.(error); !ok || !IsCorruption(err) {
						panic(r)
					}
				}
			}()
			for range ls.All() {
			}
		}()
	})
}
