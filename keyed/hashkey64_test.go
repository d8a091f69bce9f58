package keyed

import (
	"encoding/binary"
	"testing"
)

func TestHashUint64Key(t *testing.T) {
	for _, x := range []uint64{0, 1, 0xff, 1 << 63, 0x0123456789abcdef, ^uint64(0)} {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], x)
		if got, want := HashUint64Key(x), HashKey(b[:]); got != want {
			t.Fatalf("HashUint64Key(%#x) = %#x, HashKey of its bytes = %#x", x, got, want)
		}
	}
}

func FuzzHashUint64Key(f *testing.F) {
	f.Add(uint64(42))
	f.Fuzz(func(t *testing.T, x uint64) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], x)
		if got, want := HashUint64Key(x), HashKey(b[:]); got != want {
			t.Fatalf("HashUint64Key(%#x) = %#x, HashKey of its bytes = %#x", x, got, want)
		}
	})
}

// SetCurrentKeyUint64(x, HashUint64Key(x)) is SetCurrentKey of x's 8
// big-endian bytes: same current key, key group and state.
func TestSetCurrentKeyUint64(t *testing.T) {
	b, err := NewBackend(Options{})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := NewValueState(b, "v", Int64Codec, StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for x := uint64(0); x < 2000; x += 7 {
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], x*0x9e3779b97f4a7c15)
		b.SetCurrentKey(key[:])
		vs.Put(int64(x))
	}
	for x := uint64(0); x < 2000; x++ {
		k := x * 0x9e3779b97f4a7c15
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], k)
		b.SetCurrentKey(key[:])
		wantGroup := b.CurrentKeyGroup()
		b.SetCurrentKeyUint64(k, HashUint64Key(k))
		if string(b.CurrentKey()) != string(key[:]) || b.CurrentKeyGroup() != wantGroup {
			t.Fatalf("x=%d: current key %x group %d, want %x group %d", x, b.CurrentKey(), b.CurrentKeyGroup(), key, wantGroup)
		}
		v, ok := vs.Get()
		if want := x%7 == 0; ok != want || (ok && v != int64(x)) {
			t.Fatalf("x=%d: Get = %d, %v after SetCurrentKeyUint64", x, v, ok)
		}
		if ok {
			vs.Put(v + 1) // the in-place path after SetCurrentKeyUint64
			if v2, _ := vs.Get(); v2 != v+1 {
				t.Fatalf("x=%d: Put then Get = %d, want %d", x, v2, v+1)
			}
		}
	}
	// A key outside the backend's key groups is a routing bug: it panics.
	nb, err := NewBackend(Options{Range: KeyGroupRange{Start: 0, End: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for x := uint64(0); ; x++ {
		h := HashUint64Key(x)
		if KeyGroupOf(h, DefaultMaxParallelism) == 0 {
			continue
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("SetCurrentKeyUint64 of key %d outside the range did not panic", x)
				}
			}()
			nb.SetCurrentKeyUint64(x, h)
		}()
		return
	}
}
