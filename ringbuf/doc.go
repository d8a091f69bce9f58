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
// (see WaitStrategy). Measured on the project's 2-core machine, shared
// with other work (go test -bench 'SPSC|ParkWake' -benchtime=200ms; ns per
// int64 item, 4096-slot ring):
//
//   - Waking a parked goroutine costs ~0.2 µs for ordinary goroutines and
//     12–16 µs (more under load) for goroutines locked to OS threads
//     (BenchmarkParkWake, which wakes twice per op). A busy pipeline therefore
//     must not park per batch, which is why waits spin first.
//   - With the machine lightly loaded, a spin budget of ~40 µs let
//     thread-locked pairs fall into a convoy in which each side parked
//     while the other was being woken (256-item batches: 16–37 ns per item
//     instead of ~1, 0.0003–0.0007 parks per item). The budget was
//     therefore ~150 µs (512 checks) until it was measured on a second
//     machine of the same kind (2 KVM cores, 2026-12-02), where waking a
//     thread-locked goroutine cost ~40 µs and an unlocked one 0.2 µs. There
//     a side that spun up to 150 µs caught every batch as soon as it was
//     published and kept both sides in lock step: unlocked 256-item
//     batches took 1.5 ns per item, single items 33 ns; with 64 checks
//     (~19 µs, DefaultSpinIterations × DefaultPauseRounds) or none, the
//     consumer parks, the producer runs ahead a few batches, and they
//     took 0.72–0.77 and 24 ns (a Go channel: 0.83 and 33). Thread-locked
//     pairs were slow with every budget there (9–23 ns per item in
//     256-item batches); the engine's pinned workers park rarely enough
//     that the typed pipeline ran the same with 64 or 512 checks, fixed or
//     adaptive.
//   - With the machine overloaded (load average 5–10 on 2 cores), the
//     other side is often not running at all, and every spin is waste: a
//     fixed 150 µs budget cost 100–180 ns per item in 256-item
//     batches, parking at once ~1.2 ns (unlocked goroutines then hand off
//     on one thread, as channels do). Hence the adaptive budget, which
//     falls to one check while spins keep failing, and rare probes, which
//     restore it once spinning pays again. Thread-locked tasks on
//     dedicated cores should use a fixed budget instead (see
//     WaitStrategy).
//   - Polling back to back made the single-item hand-off 70–80 ns per
//     item on the idle machine: every poll pulls the producer's index line
//     away, so each publish waits for the line. A pause of ~300 ns between
//     polls (DefaultPauseRounds) made it ~15 ns, 16-item batches 6 → 3.2
//     ns, and 256-item batches 1.0 → 0.93 ns; much longer pauses made
//     256-item batches slower again (1.5 ns at ~5 µs). Go has no PAUSE
//     instruction outside the runtime, so the pause is a dependent
//     multiply-add loop that touches no shared memory.
//   - The spin loop never calls runtime.Gosched: measured on this machine,
//     it made timings jump between a fast and a slow mode. A goroutine
//     that must not spin at all uses a negative SpinIterations.
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
