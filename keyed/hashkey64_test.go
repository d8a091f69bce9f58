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
