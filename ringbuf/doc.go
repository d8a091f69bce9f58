// Package ringbuf owns the bounded, lock-free, single-producer
// single-consumer ring that carries every edge of a streamd dataflow
// (records, barriers, watermarks and end-of-input, in order), and the
// Waiter and WaitStrategy that goroutines use to wait on rings without
// burning a core while idle.
//
// # Promises
//
//   - Items are delivered in publication order, each exactly once, with
//     the slot writes of Publish/TryPush visible to the consumer that sees
//     the new index (sync/atomic ordering; the race detector checks it).
//   - No operation allocates. TryPush, TryPop, TryReserve, Peek, Publish,
//     Release, Len, Closed, Drained and Waiter.Wake never block; Push,
//     Reserve, Pop and Read block only while the ring is full or empty.
//   - Batches are contiguous slices of the ring's own buffer: the producer
//     reserves up to n free slots, fills them in place and publishes; the
//     consumer peeks or reads up to n items in place and releases them.
//     A batch stops at the end of the buffer, so a caller that wants n
//     items loops.
//   - A wake-up is never lost (see Waiter.Park), and a Wake with nobody
//     parked costs one atomic load.
//   - API misuse (publishing or releasing more than is outstanding, a
//     batch size below 1, a capacity out of range, two goroutines parked
//     on one Waiter) panics: it is a bug. Running out of room or items is
//     not an error; the end of the stream is ErrClosed.
//   - Under -tags invariants every reservation, peek, publish and release
//     is also checked against the other side's index.
//
// # Layout
//
// The producer's fields (tail, its cached copy of head, its reservation)
// and the consumer's (head, its cached tail, its peek) each sit on their
// own 128 bytes, separated by 128 bytes of padding, because the heap does
// not align objects to cache lines and the adjacent-line prefetcher works
// on 128-byte pairs. Each side re-reads the other's index only when its
// cached copy says there is not enough room or data, so a batch costs two
// shared-line transfers, not two per item. Indices are uint64 positions
// that never wrap (2^64 items at 1 ns each is 584 years); a slot is
// position & (Cap-1).
//
// # Waiting
//
// WaitStrategy.Await calls ready in a bounded busy loop with a pause
// between calls, then parks on a Waiter; Publish and Close wake the
// consumer's Waiter, Release wakes the producer's. The spin budget adapts
// (see WaitStrategy). Why (measurements: bench/NOTES.md):
//
//   - Waking a parked goroutine costs far more than handing over a batch,
//     and many times more for a goroutine locked to an OS thread than for
//     an ordinary one. A busy pipeline therefore must not park per batch,
//     which is why waits spin first.
//   - The default budget is short (DefaultSpinIterations ×
//     DefaultPauseRounds, ~19 µs). A long budget catches every batch as
//     soon as it is published and holds producer and consumer in lock
//     step, one batch at a time, which is slower than letting the consumer
//     park while the producer runs ahead a few batches. Thread-locked
//     pairs are slow whatever the budget (with a short one they can fall
//     into a convoy in which each side parks while the other is being
//     woken); the engine's pinned workers park rarely enough that its
//     typed pipeline runs the same with a short budget or a long one.
//   - With the machine overloaded (more runnable threads than cores), the
//     other side is often not running at all, and every spin is waste.
//     Hence the adaptive budget, which falls to one check while spins keep
//     failing, and rare probes, which restore it once spinning pays again.
//     Thread-locked tasks on dedicated cores should use a fixed budget
//     instead (see WaitStrategy).
//   - Checks are ~300 ns apart (DefaultPauseRounds): polling back to back
//     pulls the producer's index line away at every poll, so each publish
//     waits for the line; much longer pauses make batches slower again.
//     Go has no PAUSE instruction outside the runtime, so the pause is a
//     dependent multiply-add loop that touches no shared memory.
//   - The spin loop never calls runtime.Gosched: it made timings jump
//     between a fast and a slow mode. A goroutine that must not spin at
//     all uses a negative SpinIterations.
//
// Park may return spuriously, so every wait is a loop that re-checks its
// condition. An engine task that waits on many rings and a control channel
// shares one Waiter among them (SetConsumerWaiter on its inputs,
// SetProducerWaiter on its outputs) and calls Wake after queueing a control
// message.
//
// # Decisions where the brief was silent
//
//   - Close is idempotent. After Close, TryPush reports false, Push returns
//     ErrClosed and TryReserve/Reserve return an empty slice (so an empty
//     Reserve means closed); any outstanding reservation is cancelled.
//   - TryPush cancels an outstanding reservation and TryPop an outstanding
//     peek; a new reservation or peek replaces the previous one. Publish
//     and Release may be called several times for parts of one
//     reservation or peek, in order.
//   - Released slots are not cleared (the producer overwrites them), so a
//     ring of pointer-holding T may keep up to Cap stale values reachable.
//   - Nothing lets the consumer abandon a ring; a producer blocked in Push
//     or Reserve on a ring whose consumer has gone stays blocked. The
//     engine's tasks therefore use the non-blocking calls plus their own
//     shared Waiter, where a control message can always wake them.
//
// ringbuf is the bottom of streamd's package graph: it must never import
// any other streamd package, nor anything outside the standard library.
package ringbuf
