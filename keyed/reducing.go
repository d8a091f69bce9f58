package keyed

// Reducing and aggregating state: each keeps one value per key through a
// ValueState (value.go), so both take its paths, the fused 8-byte one
// included.

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
