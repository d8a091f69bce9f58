package engine

import (
	"reflect"
	"unsafe"
)

// Records are copied into ring slots with plain 8-byte moves when their
// type allows it. Go copies a struct of more than two words with 16-byte
// vector moves; when the source was just written field by field (8-byte
// stores, which is how operators build and modify records), each 16-byte
// load that spans two pending stores misses store forwarding and stalls.
// Measured on the project's machine (go test -bench SlotCopy ./engine/,
// 3 runs): 12.6–12.9 ns per 40-byte record copied into a slot the vector
// way, 8.3–8.6 ns word by word.
//
// Word copies bypass the garbage collector's write barriers, so they are
// used only for types without pointers.

// wordCount returns the size of T in 8-byte words if T holds no pointers
// and its size is a multiple of 8 (and at most maxWordCopy words), else 0.
func wordCount[T any]() int {
	t := reflect.TypeFor[T]()
	if t.Size() == 0 || t.Size()%8 != 0 || t.Size()/8 > maxWordCopy || hasPointers(t) {
		return 0
	}
	return int(t.Size() / 8)
}

// maxWordCopy bounds word copies: beyond it, the vector copy's throughput
// wins over the stall it may cost.
const maxWordCopy = 16

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	}
	// Pointers, strings, slices, maps, channels, functions, interfaces,
	// unsafe pointers.
	return true
}

// copyWords copies n 8-byte words from src to dst; both point to values
// of a pointer-free type of n words (wordCount). Up to 8 words it is
// unrolled: one load and one store per word, no loop.
func copyWords(dst, src unsafe.Pointer, n int) {
	switch n {
	case 8:
		*word(dst, 7) = *word(src, 7)
		fallthrough
	case 7:
		*word(dst, 6) = *word(src, 6)
		fallthrough
	case 6:
		*word(dst, 5) = *word(src, 5)
		fallthrough
	case 5:
		*word(dst, 4) = *word(src, 4)
		fallthrough
	case 4:
		*word(dst, 3) = *word(src, 3)
		fallthrough
	case 3:
		*word(dst, 2) = *word(src, 2)
		fallthrough
	case 2:
		*word(dst, 1) = *word(src, 1)
		fallthrough
	case 1:
		*word(dst, 0) = *word(src, 0)
	default:
		for i := range n {
			*word(dst, i) = *word(src, i)
		}
	}
}

// word returns the i-th 8-byte word at p.
func word(p unsafe.Pointer, i int) *uint64 { return (*uint64)(unsafe.Add(p, i*8)) }
