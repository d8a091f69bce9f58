package keyed

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Codec encodes values of T for the typed states. Append appends the
// encoding of v to dst (it must not retain dst); Decode decodes b, which
// is owned by the backend and valid only until its next write: Decode must
// copy what it keeps (BytesCodec deliberately does not, see there).
// Decode's error should wrap ErrCorrupt.
type Codec[T any] interface {
	Append(dst []byte, v T) []byte
	Decode(b []byte) (T, error)
}

var (
	// Int64Codec encodes an int64 as 8 bytes, big endian.
	Int64Codec Codec[int64] = int64Codec{}
	// Uint64Codec encodes a uint64 as 8 bytes, big endian.
	Uint64Codec Codec[uint64] = uint64Codec{}
	// Float64Codec encodes a float64's IEEE 754 bits as 8 bytes, big endian.
	Float64Codec Codec[float64] = float64Codec{}
	// StringCodec encodes a string as its bytes; Decode allocates the string.
	StringCodec Codec[string] = stringCodec{}
	// BytesCodec encodes a []byte as itself. Decode returns its argument
	// without copying: the slice aliases the backend's page and is valid
	// only until the next write to the backend (clone it to keep it).
	BytesCodec Codec[[]byte] = bytesCodec{}
)

func wrongSize(what string, got int) error {
	return fmt.Errorf("%w: cannot decode %s from %d bytes, want 8", ErrCorrupt, what, got)
}

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}
func (int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, wrongSize("int64", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

type uint64Codec struct{}

func (uint64Codec) Append(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }
func (uint64Codec) Decode(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, wrongSize("uint64", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}
func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, wrongSize("float64", len(b))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(b []byte) (string, error)    { return string(b), nil }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(b []byte) ([]byte, error)    { return b, nil }
