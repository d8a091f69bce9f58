package ringbuf

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
)

// ErrClosed is returned by the waiting operations once the producer has
// closed the ring: by Push at once, and by Pop and Read once every item
// published before Close has been consumed.
var ErrClosed = errors.New("ringbuf: closed")

const (
	// MinCapacity and MaxCapacity bound the capacity passed to New.
	MinCapacity = 2
	MaxCapacity = 1 << 24

	// cacheLinePad separates the producer's, the consumer's and the shared
	// fields. It is two 64-byte lines because Intel's adjacent-line
	// prefetcher fetches lines in 128-byte aligned pairs, and it is a full
	// 128 bytes between groups (not 128 minus the group's size) because the
	// heap does not align a Ring to 128 bytes.
	cacheLinePad = 128
)

// Ring is a bounded, lock-free, single-producer single-consumer queue of T.
//
// Exactly one goroutine (the producer) may call TryPush, Push, TryReserve,
// Reserve, Publish and Close, and exactly one goroutine (the consumer) may
// call TryPop, Pop, Peek, Read and Release. Cap, Len, Closed and Drained are
// safe from either side and from any other goroutine (a metrics reader). The Set* methods configure the ring and must be
// called before it is shared.
//
// Items become visible to the consumer in the order they were published and
// each is delivered exactly once. Slots are not cleared when released: a
// ring of a pointer-holding T keeps up to Cap stale values reachable until
// the producer overwrites them.
type Ring[T any] struct {
	_ [cacheLinePad]byte

	// Producer-owned. Only the producer writes these; the consumer reads
	// tail (on every refresh of its tailCache).
	tail      atomic.Uint64 // position one past the last published item
	headCache uint64        // the producer's last view of head; <= head
	reserved  int           // slots of the last reservation not yet published
	pclosed   bool          // the producer has called Close

	_ [cacheLinePad]byte

	// Consumer-owned. Only the consumer writes these; the producer reads
	// head (on every refresh of its headCache).
	head      atomic.Uint64 // position of the next item to consume
	tailCache uint64        // the consumer's last view of tail; <= tail
	peeked    int           // items of the last Peek/Read not yet released

	_ [cacheLinePad]byte

	// Shared and read-mostly: written once (closed) or before the ring is
	// shared (the rest).
	closed         atomic.Bool // set by Close after the last Publish
	buf            []T
	mask           uint64
	consumerWaiter *Waiter // woken by Publish and Close
	producerWaiter *Waiter // woken by Release
	wait           WaitStrategy
	consumerReady  func() bool // bound once so that waiting allocates nothing
	producerReady  func() bool

	_ [cacheLinePad]byte
}

// New returns an empty ring whose capacity is capacity rounded up to a
// power of two. It panics if capacity is below MinCapacity or above
// MaxCapacity: ring sizes are chosen by code, so a bad one is a bug.
func New[T any](capacity int) *Ring[T] {
	if capacity < MinCapacity || capacity > MaxCapacity {
		panic(fmt.Sprintf("ringbuf: capacity %d out of range [%d, %d]", capacity, MinCapacity, MaxCapacity))
	}
	c := 1 << bits.Len(uint(capacity-1))
	r := &Ring[T]{
		buf:            make([]T, c),
		mask:           uint64(c - 1),
		consumerWaiter: NewWaiter(),
		producerWaiter: NewWaiter(),
	}
	r.consumerReady = r.readableOrClosed
	r.producerReady = r.writable
	return r
}

// Cap returns the number of slots.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Len returns the number of published, unreleased items. It is exact when
// called by the producer or the consumer with the other side idle, and a
// momentary approximation otherwise. Any goroutine may call it (two
// atomic loads, head then tail): the result is in [0, Cap], at least what
// the ring held at either load, and at most that plus what was published
// in between.
func (r *Ring[T]) Len() int {
	h := r.head.Load() // head first: tail loaded later is >= this head
	t := r.tail.Load()
	n := t - h
	if n > uint64(len(r.buf)) { // head moved on between the two loads
		n = uint64(len(r.buf))
	}
	return int(n)
}

// Closed reports whether the producer has called Close. Items may remain.
func (r *Ring[T]) Closed() bool { return r.closed.Load() }

// Drained reports whether the ring is closed and every item has been
// consumed: nothing will ever be readable again.
func (r *Ring[T]) Drained() bool {
	if !r.closed.Load() {
		return false
	}
	// Close stored closed after the last tail, so this tail is final.
	return r.head.Load() == r.tail.Load()
}

// SetConsumerWaiter makes Publish and Close wake w, and Pop and Read park
// on w. Use it to let one goroutine park on many rings at once. It must be
// called before the ring is shared between goroutines.
func (r *Ring[T]) SetConsumerWaiter(w *Waiter) {
	if w == nil {
		panic("ringbuf: SetConsumerWaiter(nil)")
	}
	r.consumerWaiter = w
}

// SetProducerWaiter makes Release wake w, and Push and Reserve park on w.
// It must be called before the ring is shared between goroutines.
func (r *Ring[T]) SetProducerWaiter(w *Waiter) {
	if w == nil {
		panic("ringbuf: SetProducerWaiter(nil)")
	}
	r.producerWaiter = w
}

// SetWaitStrategy sets how Push, Reserve, Pop and Read wait (default: the
// zero WaitStrategy, an adaptive spin, then park). It panics if s does not
// validate. It must be called before the ring is shared between
// goroutines.
func (r *Ring[T]) SetWaitStrategy(s WaitStrategy) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	r.wait = s
}

// ---- producer side ----

// TryPush publishes v if a slot is free and reports whether it did. It
// returns false after Close. It cancels any outstanding reservation.
func (r *Ring[T]) TryPush(v T) bool {
	if r.pclosed {
		return false
	}
	t := r.tail.Load()
	if t-r.headCache >= uint64(len(r.buf)) {
		r.headCache = r.head.Load()
		if t-r.headCache >= uint64(len(r.buf)) {
			return false
		}
	}
	r.buf[t&r.mask] = v
	r.reserved = 0
	r.publish(t, 1)
	return true
}

// Push publishes v, waiting with the ring's WaitStrategy while the ring is
// full. It returns ErrClosed if Close has been called.
func (r *Ring[T]) Push(v T) error {
	for !r.TryPush(v) {
		if r.pclosed {
			return ErrClosed
		}
		r.wait.Await(r.producerWaiter, r.producerReady)
	}
	return nil
}

// TryReserve returns up to n contiguous free slots for the producer to fill
// and then Publish. It returns fewer than n at the end of the buffer (the
// next call continues at its start) or when fewer are free, and an empty
// slice when the ring is full or closed. The slots hold stale values, which
// the producer overwrites. A new reservation replaces the previous one.
// It panics if n < 1.
func (r *Ring[T]) TryReserve(n int) []T {
	if n < 1 {
		panic(fmt.Sprintf("ringbuf: TryReserve(%d): n must be at least 1", n))
	}
	r.reserved = 0
	if r.pclosed {
		return nil
	}
	size := uint64(len(r.buf))
	t := r.tail.Load()
	i := t & r.mask
	want := min(uint64(n), size-i)
	if size-(t-r.headCache) < want {
		r.headCache = r.head.Load()
	}
	got := min(want, size-(t-r.headCache))
	r.reserved = int(got)
	if invariants {
		r.checkProducer(t)
	}
	return r.buf[i : i+got : i+got]
}

// Reserve is TryReserve that waits, with the ring's WaitStrategy, until at
// least one slot is free. It returns an empty slice only after Close.
func (r *Ring[T]) Reserve(n int) []T {
	for {
		s := r.TryReserve(n)
		if len(s) > 0 || r.pclosed {
			return s
		}
		r.wait.Await(r.producerWaiter, r.producerReady)
	}
}

// Publish makes the first n slots of the last reservation visible to the
// consumer, in order, and wakes the consumer's waiter if it is parked. The
// rest of the reservation stays reserved and can be published by a later
// call. It panics if n is negative or more than the slots still reserved.
func (r *Ring[T]) Publish(n int) {
	if n < 0 || n > r.reserved {
		panic(fmt.Sprintf("ringbuf: Publish(%d) with %d slots reserved", n, r.reserved))
	}
	if n == 0 {
		return
	}
	r.reserved -= n
	r.publish(r.tail.Load(), uint64(n))
}

func (r *Ring[T]) publish(t, n uint64) {
	if invariants {
		if h := r.head.Load(); t+n-h > uint64(len(r.buf)) || h > t {
			panic(fmt.Sprintf("ringbuf: invariant: publish %d at tail %d overruns head %d (cap %d)", n, t, h, len(r.buf)))
		}
	}
	// The store is sequentially consistent, and so is the load of the
	// waiter's parked flag that follows: with Park's store of that flag and
	// its re-check of this tail, one of the two sides sees the other.
	r.tail.Store(t + n)
	r.consumerWaiter.Wake()
}

// Close marks the end of the stream. Items already published stay
// readable; once they are consumed, Pop and Read return ErrClosed. Close
// cancels any outstanding reservation, wakes the consumer's waiter, and
// makes later pushes fail. Calling it again does nothing.
func (r *Ring[T]) Close() {
	if r.pclosed {
		return
	}
	r.pclosed = true
	r.reserved = 0
	r.closed.Store(true) // after the last tail store: Drained relies on it
	r.consumerWaiter.Wake()
}

// ---- consumer side ----

// TryPop removes and returns the oldest item, or reports false if the ring
// is empty. It cancels any outstanding Peek/Read.
func (r *Ring[T]) TryPop() (T, bool) {
	h := r.head.Load()
	if r.tailCache == h {
		r.tailCache = r.tail.Load()
		if r.tailCache == h {
			var zero T
			return zero, false
		}
	}
	v := r.buf[h&r.mask]
	r.peeked = 0
	r.release(h, 1)
	return v, true
}

// Pop removes and returns the oldest item, waiting with the ring's
// WaitStrategy while the ring is empty. Once the ring is closed and
// drained it returns ErrClosed.
func (r *Ring[T]) Pop() (T, error) {
	for {
		if v, ok := r.TryPop(); ok {
			return v, nil
		}
		if r.closed.Load() {
			// Everything was published before closed was set: one more
			// look decides.
			if v, ok := r.TryPop(); ok {
				return v, nil
			}
			var zero T
			return zero, ErrClosed
		}
		r.wait.Await(r.consumerWaiter, r.consumerReady)
	}
}

// Peek returns up to n contiguous readable items, oldest first, without
// consuming them; fewer than n at the end of the buffer or when fewer are
// published, and an empty slice when the ring is empty. It never blocks.
// The items stay valid, and the producer will not overwrite them, until
// they are released. A new Peek replaces the previous one. It panics if
// n < 1.
func (r *Ring[T]) Peek(n int) []T {
	if n < 1 {
		panic(fmt.Sprintf("ringbuf: Peek(%d): n must be at least 1", n))
	}
	size := uint64(len(r.buf))
	h := r.head.Load()
	i := h & r.mask
	want := min(uint64(n), size-i)
	if r.tailCache-h < want {
		r.tailCache = r.tail.Load()
	}
	got := min(want, r.tailCache-h)
	r.peeked = int(got)
	if invariants {
		r.checkConsumer(h)
	}
	return r.buf[i : i+got : i+got]
}

// Read is Peek that waits, with the ring's WaitStrategy, for at least one
// item. Once the ring is closed and drained it returns ErrClosed.
func (r *Ring[T]) Read(n int) ([]T, error) {
	for {
		if s := r.Peek(n); len(s) > 0 {
			return s, nil
		}
		if r.closed.Load() {
			if s := r.Peek(n); len(s) > 0 {
				return s, nil
			}
			return nil, ErrClosed
		}
		r.wait.Await(r.consumerWaiter, r.consumerReady)
	}
}

// Release frees the first n items returned by the last Peek or Read (the
// rest stay peeked and can be released by a later call) and wakes the
// producer's waiter if it is parked. It panics if n is negative or more
// than the items still peeked.
func (r *Ring[T]) Release(n int) {
	if n < 0 || n > r.peeked {
		panic(fmt.Sprintf("ringbuf: Release(%d) with %d items peeked", n, r.peeked))
	}
	if n == 0 {
		return
	}
	r.peeked -= n
	r.release(r.head.Load(), uint64(n))
}

func (r *Ring[T]) release(h, n uint64) {
	if invariants {
		if t := r.tail.Load(); h+n > t {
			panic(fmt.Sprintf("ringbuf: invariant: release %d at head %d passes tail %d", n, h, t))
		}
	}
	r.head.Store(h + n) // sequentially consistent; see publish
	r.producerWaiter.Wake()
}

// ---- readiness predicates for waiting ----

// readableOrClosed is the consumer's wake condition. It runs on the
// consumer goroutine.
func (r *Ring[T]) readableOrClosed() bool {
	return r.tail.Load() != r.head.Load() || r.closed.Load()
}

// writable is the producer's wake condition. It runs on the producer
// goroutine.
func (r *Ring[T]) writable() bool {
	return r.tail.Load()-r.head.Load() < uint64(len(r.buf))
}

// ---- invariant checks (-tags invariants) ----

func (r *Ring[T]) checkProducer(t uint64) {
	h := r.head.Load()
	size := uint64(len(r.buf))
	switch {
	case r.headCache > h:
		panic(fmt.Sprintf("ringbuf: invariant: producer's cached head %d ahead of head %d", r.headCache, h))
	case h > t || t-h > size:
		panic(fmt.Sprintf("ringbuf: invariant: head %d, tail %d, cap %d", h, t, size))
	case (t&r.mask)+uint64(r.reserved) > size || t+uint64(r.reserved)-r.headCache > size:
		panic(fmt.Sprintf("ringbuf: invariant: reservation of %d at tail %d overruns (cached head %d, cap %d)", r.reserved, t, r.headCache, size))
	}
}

func (r *Ring[T]) checkConsumer(h uint64) {
	t := r.tail.Load()
	size := uint64(len(r.buf))
	switch {
	case r.tailCache > t:
		panic(fmt.Sprintf("ringbuf: invariant: consumer's cached tail %d ahead of tail %d", r.tailCache, t))
	case h > t || t-h > size:
		panic(fmt.Sprintf("ringbuf: invariant: head %d, tail %d, cap %d", h, t, size))
	case (h&r.mask)+uint64(r.peeked) > size || h+uint64(r.peeked) > r.tailCache:
		panic(fmt.Sprintf("ringbuf: invariant: peek of %d at head %d passes cached tail %d", r.peeked, h, r.tailCache))
	}
}
