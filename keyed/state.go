package keyed

import (
	"encoding/binary"
	"fmt"
	"iter"
	"unsafe"
)

// The typed states wrap a Backend's raw per-key operations with a Codec.
// Each applies to the backend's current key (SetCurrentKey). They keep
// encode buffers, so a typed state, like its backend, belongs to one
// goroutine.
//
// Error convention: stored bytes that the Codec cannot decode mean the
// state was written by different code (a changed state type restored from
// an old checkpoint) or memory corruption — never an operating condition a
// caller could handle per record — so Get panics with an error wrapping
// ErrCorrupt and naming the state; the engine recovers it and fails the
// task. Writes beyond the limits panic the same way (ErrKeyTooLarge,
// ErrValueTooLarge).

func corruptPanic(name string, err error) {
	panic(fmt.Errorf("%w: state %q holds bytes its codec cannot decode: %w", ErrCorrupt, name, err))
}

// ValueState is one value of type T per key.
type ValueState[T any] struct {
	b     *Backend
	id    StateID
	fixed bool // c is Int64Codec, Uint64Codec or Float64Codec: coded inline
	plain bool // fixed, and the state has no TTL: Get and Put use get8 and put8
	name  string
	c     Codec[T]
	buf   []byte
	b8    [8]byte // Put's encoding when fixed
}

func newValueState[T any](b *Backend, id StateID, name string, c Codec[T]) ValueState[T] {
	s := ValueState[T]{b: b, id: id, name: name, c: c}
	switch any(c).(type) {
	case int64Codec, uint64Codec, float64Codec:
		// T is int64, uint64 or float64: a Codec[T] is one of these only
		// when T is the codec's type (their methods take exactly it).
		s.fixed = unsafe.Sizeof(*new(T)) == 8
	}
	// The state is registered (the callers just did), not a map state,
	// and its kind and TTL never change, so get8 needs no checks of id.
	s.plain = s.fixed && b.states[id].kind != KindMap && b.states[id].ttlMs == 0
	return s
}

// NewValueState registers (or looks up) the value state name in b.
func NewValueState[T any](b *Backend, name string, c Codec[T], so StateOptions) (*ValueState[T], error) {
	id, err := b.Register(name, KindValue, so)
	if err != nil {
		return nil, err
	}
	s := newValueState(b, id, name, c)
	return &s, nil
}

// The 8-byte codecs (fixed) encode v as the 8 big-endian bytes of its bit
// pattern: uint64(v) for int64 and uint64, math.Float64bits(v) for
// float64. With T one of those types (see newValueState), that bit pattern
// is what unsafe reads at &v, so fromBits and toBits are those codecs'
// Decode and Append without the interface call or a type switch on T
// (which costs a run-time type comparison in shape-generic code).

func fromBits[T any](x uint64) T { return *(*T)(unsafe.Pointer(&x)) }

func toBits[T any](v T) uint64 { return *(*uint64)(unsafe.Pointer(&v)) }

// ID is the state's ID in its backend.
func (s *ValueState[T]) ID() StateID { return s.id }

// Get returns the current key's value, or false when there is none (or it
// expired).
func (s *ValueState[T]) Get() (T, bool) {
	// Small enough to inline: the common case is one call, get8.
	if s.plain {
		if x, res := s.b.get8(s.id); res != get8Slow {
			return fromBits[T](x), res == get8Found
		}
	}
	return s.get()
}

func (s *ValueState[T]) get() (T, bool) {
	raw, ok := s.b.Get(s.id)
	if !ok {
		var zero T
		return zero, false
	}
	if s.fixed && len(raw) == 8 {
		return fromBits[T](binary.BigEndian.Uint64(raw)), true
	}
	v, err := s.c.Decode(raw)
	if err != nil {
		corruptPanic(s.name, err)
	}
	return v, true
}

// Put sets the current key's value.
func (s *ValueState[T]) Put(v T) {
	// Small enough to inline: the common case is one call, put8.
	if s.plain && s.b.put8(s.id, toBits(v)) {
		return
	}
	s.put(v)
}

func (s *ValueState[T]) put(v T) {
	if s.fixed {
		binary.BigEndian.PutUint64(s.b8[:], toBits(v))
		s.b.Put(s.id, s.b8[:])
		return
	}
	s.buf = s.c.Append(s.buf[:0], v)
	s.b.Put(s.id, s.buf)
}

// Clear removes the current key's value.
func (s *ValueState[T]) Clear() { s.b.Delete(s.id) }

// ListState is a list of T per key, stored as one value of elements each
// prefixed by its uvarint length. Add appends in amortized O(1).
type ListState[T any] struct {
	b     *Backend
	id    StateID
	name  string
	c     Codec[T]
	elem  []byte
	frame []byte
}

// NewListState registers (or looks up) the list state name in b.
func NewListState[T any](b *Backend, name string, c Codec[T], so StateOptions) (*ListState[T], error) {
	id, err := b.Register(name, KindList, so)
	if err != nil {
		return nil, err
	}
	return &ListState[T]{b: b, id: id, name: name, c: c}, nil
}

// ID is the state's ID in its backend.
func (s *ListState[T]) ID() StateID { return s.id }

// Add appends v to the current key's list.
func (s *ListState[T]) Add(v T) {
	st := s.b.stateOf(s.id, false)
	s.elem = s.c.Append(s.elem[:0], v)
	s.frame = binary.AppendUvarint(s.frame[:0], uint64(len(s.elem)))
	s.b.appendValue(st, s.id, s.frame, s.elem)
}

// All iterates over the current key's list in insertion order. Writing to
// the backend during the iteration panics. A range loop over All does not
// allocate (the iterator is a method value the compiler inlines).
func (s *ListState[T]) All() iter.Seq[T] { return s.all }

func (s *ListState[T]) all(yield func(T) bool) {
	raw, ok := s.b.Get(s.id)
	if !ok {
		return
	}
	mods := s.b.mods
	for len(raw) > 0 {
		n, m := binary.Uvarint(raw)
		if m <= 0 || n > uint64(len(raw)-m) {
			corruptPanic(s.name, fmt.Errorf("%w: bad list element length", ErrCorrupt))
		}
		v, err := s.c.Decode(raw[m : m+int(n)])
		if err != nil {
			corruptPanic(s.name, err)
		}
		raw = raw[m+int(n):]
		if !yield(v) {
			return
		}
		if s.b.mods != mods {
			panic("keyed: the backend was written during a list state iteration")
		}
	}
}

// Update replaces the current key's list with vs (an empty vs clears it).
func (s *ListState[T]) Update(vs []T) {
	if len(vs) == 0 {
		s.Clear()
		return
	}
	s.frame = s.frame[:0]
	for _, v := range vs {
		s.elem = s.c.Append(s.elem[:0], v)
		s.frame = binary.AppendUvarint(s.frame, uint64(len(s.elem)))
		s.frame = append(s.frame, s.elem...)
	}
	s.b.Put(s.id, s.frame)
}

// Clear removes the current key's list.
func (s *ListState[T]) Clear() { s.b.Delete(s.id) }

// MapState maps user keys K to values V per key. Each user key is its own
// entry (with its own TTL), so Get, Put and Remove cost O(1) whatever the
// map's size.
type MapState[K, V any] struct {
	b    *Backend
	id   StateID
	name string
	kc   Codec[K]
	vc   Codec[V]
	kbuf []byte
	vbuf []byte
}

// NewMapState registers (or looks up) the map state name in b.
func NewMapState[K, V any](b *Backend, name string, kc Codec[K], vc Codec[V], so StateOptions) (*MapState[K, V], error) {
	id, err := b.Register(name, KindMap, so)
	if err != nil {
		return nil, err
	}
	return &MapState[K, V]{b: b, id: id, name: name, kc: kc, vc: vc}, nil
}

// ID is the state's ID in its backend.
func (s *MapState[K, V]) ID() StateID { return s.id }

// Get returns the value of k in the current key's map, or false.
func (s *MapState[K, V]) Get(k K) (V, bool) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	raw, ok := s.b.GetUser(s.id, s.kbuf)
	if !ok {
		var zero V
		return zero, false
	}
	v, err := s.vc.Decode(raw)
	if err != nil {
		corruptPanic(s.name, err)
	}
	return v, true
}

// Contains reports whether the current key's map has k.
func (s *MapState[K, V]) Contains(k K) bool {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	_, ok := s.b.GetUser(s.id, s.kbuf)
	return ok
}

// Put sets k to v in the current key's map.
func (s *MapState[K, V]) Put(k K, v V) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.vbuf = s.vc.Append(s.vbuf[:0], v)
	s.b.PutUser(s.id, s.kbuf, s.vbuf)
}

// Remove removes k from the current key's map.
func (s *MapState[K, V]) Remove(k K) {
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.b.DeleteUser(s.id, s.kbuf)
}

// IsEmpty reports whether the current key's map has no (unexpired) entry.
func (s *MapState[K, V]) IsEmpty() bool {
	empty := true
	s.b.RangeUser(s.id, func(_, _ []byte) bool {
		empty = false
		return false
	})
	return empty
}

// All iterates over the current key's map in no particular order. Writing
// to the backend during the iteration panics.
func (s *MapState[K, V]) All() iter.Seq2[K, V] { return s.all }

func (s *MapState[K, V]) all(yield func(K, V) bool) {
	s.b.RangeUser(s.id, func(uk, raw []byte) bool {
		k, err := s.kc.Decode(uk)
		if err != nil {
			corruptPanic(s.name, err)
		}
		v, err := s.vc.Decode(raw)
		if err != nil {
			corruptPanic(s.name, err)
		}
		return yield(k, v)
	})
}

// Clear removes every entry of the current key's map.
func (s *MapState[K, V]) Clear() { s.b.Delete(s.id) }

// ReducingState keeps one value per key, combining each added value into
// it with reduce.
type ReducingState[T any] struct {
	v      ValueState[T]
	reduce func(a, b T) T
}

// NewReducingState registers (or looks up) the reducing state name in b.
func NewReducingState[T any](b *Backend, name string, c Codec[T], reduce func(a, b T) T, so StateOptions) (*ReducingState[T], error) {
	id, err := b.Register(name, KindReducing, so)
	if err != nil {
		return nil, err
	}
	return &ReducingState[T]{v: newValueState(b, id, name, c), reduce: reduce}, nil
}

// ID is the state's ID in its backend.
func (s *ReducingState[T]) ID() StateID { return s.v.id }

// Add folds v into the current key's value: reduce(old, v), or v if none.
func (s *ReducingState[T]) Add(v T) {
	if old, ok := s.v.Get(); ok {
		v = s.reduce(old, v)
	}
	s.v.Put(v)
}

// Get returns the current key's reduced value, or false.
func (s *ReducingState[T]) Get() (T, bool) { return s.v.Get() }

// Clear removes the current key's value.
func (s *ReducingState[T]) Clear() { s.v.Clear() }

// AggregatingState keeps one accumulator of type ACC per key: Add folds
// inputs into it, Get returns result(acc).
type AggregatingState[IN, ACC, OUT any] struct {
	v      ValueState[ACC]
	init   func() ACC
	add    func(ACC, IN) ACC
	result func(ACC) OUT
}

// NewAggregatingState registers (or looks up) the aggregating state name
// in b. init creates an empty accumulator, add folds an input into one,
// result turns one into the output.
func NewAggregatingState[IN, ACC, OUT any](b *Backend, name string, accCodec Codec[ACC],
	init func() ACC, add func(ACC, IN) ACC, result func(ACC) OUT, so StateOptions,
) (*AggregatingState[IN, ACC, OUT], error) {
	id, err := b.Register(name, KindAggregating, so)
	if err != nil {
		return nil, err
	}
	return &AggregatingState[IN, ACC, OUT]{
		v: newValueState(b, id, name, accCodec), init: init, add: add, result: result,
	}, nil
}

// ID is the state's ID in its backend.
func (s *AggregatingState[IN, ACC, OUT]) ID() StateID { return s.v.id }

// Add folds in into the current key's accumulator (init() if none).
func (s *AggregatingState[IN, ACC, OUT]) Add(in IN) {
	acc, ok := s.v.Get()
	if !ok {
		acc = s.init()
	}
	s.v.Put(s.add(acc, in))
}

// Get returns result(acc) of the current key's accumulator, or false.
func (s *AggregatingState[IN, ACC, OUT]) Get() (OUT, bool) {
	acc, ok := s.v.Get()
	if !ok {
		var zero OUT
		return zero, false
	}
	return s.result(acc), true
}

// Clear removes the current key's accumulator.
func (s *AggregatingState[IN, ACC, OUT]) Clear() { s.v.Clear() }
