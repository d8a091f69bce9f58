package window

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/streamd/streamd/keyed"
)

// The built-in aggregates over a numeric field of the record: Count, Sum,
// Min, Max and Avg, each a typed AggregateFunction whose accumulator is 8
// or 16 bytes in state and costs no allocation per record; and Builtin,
// the same five chosen by name, with one accumulator and one result type
// for all, for callers that describe a window by data (a job spec).
//
// Int fields aggregate as int64 (sums wrap, as Go's and the job spec's
// int sums do); float fields as IEEE float64 (min and max of a NaN are
// NaN, as Go's min and max).

// Number is the type of a field the built-in aggregates read.
type Number interface{ int64 | float64 }

// Builtin aggregate names (Builtin).
const (
	NameCount = "count"
	NameSum   = "sum"
	NameMin   = "min"
	NameMax   = "max"
	NameAvg   = "avg"
)

// builtinNames lists the names Builtin accepts, for its error.
var builtinNames = []string{NameCount, NameSum, NameMin, NameMax, NameAvg}

// numCodec is the keyed codec of N.
func numCodec[N Number]() keyed.Codec[N] {
	if isFloat[N]() {
		return any(keyed.Float64Codec).(keyed.Codec[N])
	}
	return any(keyed.Int64Codec).(keyed.Codec[N])
}

func isFloat[N Number]() bool {
	var z N
	_, ok := any(z).(float64)
	return ok
}

// bitsOf and fromBits reinterpret the 8 bytes of an int64 or float64: its
// two's complement or IEEE 754 bits, what keyed's 8-byte codecs store.
func bitsOf[N Number](v N) uint64   { return *(*uint64)(unsafe.Pointer(&v)) }
func fromBits[N Number](x uint64) N { return *(*N)(unsafe.Pointer(&x)) }
func toFloat[N Number](v N, f bool) float64 {
	if f {
		return math.Float64frombits(bitsOf(v))
	}
	return float64(int64(bitsOf(v)))
}

// Count counts the records of a window.
func Count[T any]() AggregateFunction[T, int64, int64] {
	return AggregateFunction[T, int64, int64]{
		Codec:  keyed.Int64Codec,
		Create: func() int64 { return 0 },
		Add:    func(acc *int64, _ *T) { *acc++ },
		Merge:  func(into, from *int64) { *into += *from },
		Result: func(acc *int64) int64 { return *acc },
	}
}

// Sum adds up field over a window's records.
func Sum[T any, N Number](field func(v *T) N) AggregateFunction[T, N, N] {
	return AggregateFunction[T, N, N]{
		Codec:  numCodec[N](),
		Create: func() N { return 0 },
		Add:    func(acc *N, v *T) { *acc += field(v) },
		Merge:  func(into, from *N) { *into += *from },
		Result: func(acc *N) N { return *acc },
	}
}

// Min is the smallest field of a window's records.
func Min[T any, N Number](field func(v *T) N) AggregateFunction[T, N, N] {
	// The empty accumulator is the largest N, which any record replaces;
	// a window fires only with at least one record, so it never shows.
	top := fromBits[N](math.MaxInt64)
	if isFloat[N]() {
		top = fromBits[N](math.Float64bits(math.Inf(1)))
	}
	return AggregateFunction[T, N, N]{
		Codec:  numCodec[N](),
		Create: func() N { return top },
		Add:    func(acc *N, v *T) { *acc = min(*acc, field(v)) },
		Merge:  func(into, from *N) { *into = min(*into, *from) },
		Result: func(acc *N) N { return *acc },
	}
}

// Max is the largest field of a window's records.
func Max[T any, N Number](field func(v *T) N) AggregateFunction[T, N, N] {
	bottom := fromBits[N](1 << 63) // math.MinInt64
	if isFloat[N]() {
		bottom = fromBits[N](math.Float64bits(math.Inf(-1)))
	}
	return AggregateFunction[T, N, N]{
		Codec:  numCodec[N](),
		Create: func() N { return bottom },
		Add:    func(acc *N, v *T) { *acc = max(*acc, field(v)) },
		Merge:  func(into, from *N) { *into = max(*into, *from) },
		Result: func(acc *N) N { return *acc },
	}
}

// Avg is the mean of field over a window's records, a float64 (the sum of
// an int field is an int64 until then).
func Avg[T any, N Number](field func(v *T) N) AggregateFunction[T, Acc[N], float64] {
	f := isFloat[N]()
	return AggregateFunction[T, Acc[N], float64]{
		Codec:  AccCodec[N](),
		Create: func() Acc[N] { return Acc[N]{} },
		Add: func(acc *Acc[N], v *T) {
			acc.Count++
			acc.V += field(v)
		},
		Merge: func(into, from *Acc[N]) {
			into.Count += from.Count
			into.V += from.V
		},
		Result: func(acc *Acc[N]) float64 { return toFloat(acc.V, f) / float64(acc.Count) },
	}
}

// Acc is the accumulator of Avg and of every aggregate Builtin returns:
// the number of records and one value of the field's type.
type Acc[N Number] struct {
	// Count is the number of records added.
	Count int64
	// V is the sum (sum, avg), the smallest (min) or the largest (max)
	// field; count does not use it.
	V N
}

// AccCodec stores an Acc in 16 bytes: Count, then V's bits (as
// keyed.Int64Codec or keyed.Float64Codec would), big endian.
func AccCodec[N Number]() keyed.Codec[Acc[N]] { return accCodec[N]{} }

type accCodec[N Number] struct{}

func (accCodec[N]) Append(dst []byte, a Acc[N]) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.Count))
	return binary.BigEndian.AppendUint64(dst, bitsOf(a.V))
}

func (accCodec[N]) Decode(b []byte) (Acc[N], error) {
	if len(b) != 16 {
		return Acc[N]{}, fmt.Errorf("%w: cannot decode a window accumulator from %d bytes, want 16", keyed.ErrCorrupt, len(b))
	}
	return Acc[N]{Count: int64(binary.BigEndian.Uint64(b)), V: fromBits[N](binary.BigEndian.Uint64(b[8:]))}, nil
}

// Value is the result of an aggregate Builtin returns: an int64 or a
// float64. count is an int; sum, min and max have the field's type; avg is
// a float.
type Value struct {
	Int     int64
	Float   float64
	IsFloat bool
}

func (v Value) String() string {
	if v.IsFloat {
		return fmt.Sprint(v.Float)
	}
	return fmt.Sprint(v.Int)
}

// Builtin returns the built-in aggregate called name (count, sum, min,
// max, avg) over field, with an accumulator and a result type common to
// all five, for callers that choose the aggregate by data. count ignores
// field (it may be nil). Its accumulator is 16 bytes in state; the typed
// constructors (Count, Sum, …) store 8 where they can.
func Builtin[T any, N Number](name string, field func(v *T) N) (AggregateFunction[T, Acc[N], Value], error) {
	f := isFloat[N]()
	result := func(x N) Value {
		if f {
			return Value{Float: math.Float64frombits(bitsOf(x)), IsFloat: true}
		}
		return Value{Int: int64(bitsOf(x))}
	}
	agg := AggregateFunction[T, Acc[N], Value]{
		Codec:  AccCodec[N](),
		Create: func() Acc[N] { return Acc[N]{} },
	}
	if name != NameCount && field == nil {
		return agg, fmt.Errorf("%w aggregate %q: it needs a field", ErrInvalid, name)
	}
	switch name {
	case NameCount:
		agg.Add = func(acc *Acc[N], _ *T) { acc.Count++ }
		agg.Merge = func(into, from *Acc[N]) { into.Count += from.Count }
		agg.Result = func(acc *Acc[N]) Value { return Value{Int: acc.Count} }
	case NameSum, NameAvg:
		agg.Add = func(acc *Acc[N], v *T) {
			acc.Count++
			acc.V += field(v)
		}
		agg.Merge = func(into, from *Acc[N]) {
			into.Count += from.Count
			into.V += from.V
		}
		agg.Result = func(acc *Acc[N]) Value { return result(acc.V) }
		if name == NameAvg {
			agg.Result = func(acc *Acc[N]) Value {
				return Value{Float: toFloat(acc.V, f) / float64(acc.Count), IsFloat: true}
			}
		}
	case NameMin, NameMax:
		pick := func(a, b N) N { return min(a, b) }
		if name == NameMax {
			pick = func(a, b N) N { return max(a, b) }
		}
		// The count says whether V holds a value yet: no sentinel.
		agg.Add = func(acc *Acc[N], v *T) {
			x := field(v)
			if acc.Count == 0 {
				acc.V = x
			} else {
				acc.V = pick(acc.V, x)
			}
			acc.Count++
		}
		agg.Merge = func(into, from *Acc[N]) {
			switch {
			case from.Count == 0:
				return
			case into.Count == 0:
				into.V = from.V
			default:
				into.V = pick(into.V, from.V)
			}
			into.Count += from.Count
		}
		agg.Result = func(acc *Acc[N]) Value { return result(acc.V) }
	default:
		return agg, fmt.Errorf("%w aggregate %q: the built-in aggregates are %s", ErrInvalid, name, strings.Join(builtinNames, ", "))
	}
	return agg, nil
}
