package keyed

import "fmt"

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
