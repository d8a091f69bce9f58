package keyed

import "math/bits"

// HashUint64Key returns HashKey of the 8 big-endian bytes of x — the hash
// of an integer key as the engine encodes it — without building the bytes.
func HashUint64Key(x uint64) uint64 {
	return xxh64of8(bits.ReverseBytes64(x))
}
