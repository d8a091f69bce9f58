package ringbuf

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Waiter is where one goroutine parks until something it waits for may
// have happened. A ring wakes its consumer's waiter on Publish and Close and
// its producer's waiter on Release; code that waits on several rings and
// other events (a task's inputs, outputs and control channel) shares one
// Waiter among them and calls Wake itself after making any other event
// observable.
//
// A Waiter belongs to one waiting goroutine: only it may call Park, or
// Await with this Waiter (which also keeps the adaptive spin state here).
// Wake may be called from any number of goroutines.
type Waiter struct {
	_ [cacheLinePad]byte

	// parked is 1 while a goroutine is between announcing itself in Park
	// and leaving Park. Wakers load it on every Publish/Release, so it sits
	// on a line that is written only when parking, never per item.
	parked atomic.Uint32
	parks  atomic.Uint64 // times Park actually blocked
	wakeup chan struct{} // capacity 1: a wake-up is never lost, never blocks

	_ [cacheLinePad]byte

	// Adaptive spin state, used only by the owning goroutine in Await.
	spinLimit      int // current spin budget in checks; 0 until first use
	shortenedWaits int // waits cut short by spinLimit since the last probe

	_ [cacheLinePad]byte
}

// NewWaiter returns a Waiter with nobody parked.
func NewWaiter() *Waiter {
	return &Waiter{wakeup: make(chan struct{}, 1)}
}

// Wake unparks the goroutine parked on w, if any. When nobody is parked it
// costs one atomic load and no system call. Call it after making the event
// observable to the parked goroutine's ready function.
func (w *Waiter) Wake() {
	if w.parked.Load() != 0 {
		w.wakeSlow()
	}
}

func (w *Waiter) wakeSlow() {
	select {
	case w.wakeup <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Park announces that the calling goroutine is about to block, re-checks
// ready, and if ready reports false, blocks until Wake is called. Together
// with wakers that first make their event observable and then call Wake,
// this cannot lose a wake-up: both sides use sequentially consistent
// atomics (Dekker), so either ready sees the event or Wake sees the
// announcement.
//
// Park may return although ready would still report false (a wake-up that
// raced with an earlier Park that did not block, or a Wake for an event the
// caller handles elsewhere); callers re-check their conditions in a loop.
// ready must not block and must not call Park. It panics if another
// goroutine is parked on w: a Waiter belongs to one waiting goroutine.
func (w *Waiter) Park(ready func() bool) { w.park(ready, 0, nil) }

// Parks returns how many times Park has blocked on w, for metrics: a busy
// pipeline should park rarely, never once per batch.
func (w *Waiter) Parks() uint64 { return w.parks.Load() }

// Defaults of WaitStrategy, chosen by measurement on the project's 2-core
// machine (see the package documentation and BenchmarkSPSC).
const (
	// DefaultSpinIterations × DefaultPauseRounds is ~16–19 µs of
	// spinning: short enough that a side that keeps spinning does not hold
	// producer and consumer in lock step, one batch at a time, which a
	// budget of ~150 µs did (measurements: bench/NOTES.md, ringbuf).
	DefaultSpinIterations = 64
	// DefaultMinSpinIterations is what the budget shrinks to while waits
	// keep ending in Park because the other side is not running (more
	// runnable threads than cores): one check, then park at once, which is
	// what a Go channel does and, measured under load, the fastest.
	DefaultMinSpinIterations = 1
	// DefaultProbeEvery: one in this many shortened waits spins the full
	// SpinIterations, to find out whether a longer spin pays again. Rarer
	// probes cost less while the machine is overloaded (256: 4.5 ns per
	// item in 256-item batches, 4096: 1.6 ns, never: 1.2 ns); more
	// frequent ones end a convoy sooner once it is not.
	DefaultProbeEvery = 4096
	// DefaultPauseRounds is ~300 ns between two checks.
	DefaultPauseRounds = 256
)

// Limits of the WaitStrategy fields.
const (
	MaxSpinIterations = 1 << 20
	MaxProbeEvery     = 1 << 20
	MaxPauseRounds    = 1 << 16
)

// WaitStrategy says how a goroutine waits for a ring (or anything else
// with a Waiter): an adaptive, bounded busy spin that checks ready with a
// pause between checks, then park. The zero value is the default.
//
// The spin budget adapts per Waiter, starting at SpinIterations. A wait
// that ends in Park halves it (not below MinSpinIterations): the other
// side was not running, and when threads outnumber cores, spinning longer
// only burns the core the other side needs. Every ProbeEvery-th wait that
// the shrunken budget cuts short spins the full SpinIterations instead (a
// probe); a probe that succeeds after k checks raises the budget to 2k.
// Probes are what let a budget that shrank while the machine was busy
// grow back: without them, thread-locked pairs whose budget fell below the
// wake-up cost would stay in a parking convoy for good.
//
// The adaptation suits goroutines that share cores with other work. Tasks
// locked to threads on dedicated cores are better served by a fixed budget
// (MinSpinIterations = SpinIterations): measured on a lightly loaded
// machine, the adaptive budget sometimes shrank after a few preemptions
// and stayed in a convoy until the next probe (256-item batches between
// locked threads: 5.7 ns per item against 0.94 ns fixed).
type WaitStrategy struct {
	// SpinIterations is the most times Await calls ready before it parks.
	// Zero means DefaultSpinIterations; a negative value parks at once
	// (for goroutines that must never burn a core while idle, and for
	// tests of the parking path). At most MaxSpinIterations.
	SpinIterations int

	// MinSpinIterations is the least the adaptive budget shrinks to.
	// Zero means DefaultMinSpinIterations (or SpinIterations, if that is
	// smaller); set it to SpinIterations to always spin the full budget.
	// Negative values are invalid.
	MinSpinIterations int

	// ProbeEvery: one in ProbeEvery waits that the shrunken budget would
	// cut short spins the full SpinIterations. Zero means
	// DefaultProbeEvery; 1 makes every wait spin the full budget.
	// Negative values are invalid. At most MaxProbeEvery.
	ProbeEvery int

	// PauseRounds is the busy pause between two checks, in rounds of a
	// dependent multiply-add loop (about 1.2 ns a round on this machine,
	// see BenchmarkPauseRound). It keeps a waiting consumer from pulling
	// the producer's index line away after every item: polling back to
	// back made single-item hand-off ~5x slower. Zero means
	// DefaultPauseRounds; a negative value checks back to back. At most
	// MaxPauseRounds.
	PauseRounds int
}

// EnsureDefaults replaces zero fields with their defaults.
func (s *WaitStrategy) EnsureDefaults() {
	if s.SpinIterations == 0 {
		s.SpinIterations = DefaultSpinIterations
	}
	if s.MinSpinIterations == 0 {
		s.MinSpinIterations = min(DefaultMinSpinIterations, max(s.SpinIterations, 1))
	}
	if s.ProbeEvery == 0 {
		s.ProbeEvery = DefaultProbeEvery
	}
	if s.PauseRounds == 0 {
		s.PauseRounds = DefaultPauseRounds
	}
}

// ErrInvalidWaitStrategy is wrapped by every error WaitStrategy.Validate
// returns.
var ErrInvalidWaitStrategy = errors.New("ringbuf: invalid wait strategy")

// Validate reports every field that is out of range, or nil.
func (s WaitStrategy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidWaitStrategy}, args...)...))
	}
	if s.SpinIterations > MaxSpinIterations {
		bad("SpinIterations %d above %d", s.SpinIterations, MaxSpinIterations)
	}
	if s.MinSpinIterations < 0 {
		bad("MinSpinIterations %d negative", s.MinSpinIterations)
	}
	d := s
	d.EnsureDefaults()
	if d.SpinIterations > 0 && d.MinSpinIterations > d.SpinIterations {
		bad("MinSpinIterations %d above SpinIterations %d", d.MinSpinIterations, d.SpinIterations)
	}
	if s.ProbeEvery < 0 || s.ProbeEvery > MaxProbeEvery {
		bad("ProbeEvery %d not in [0, %d]", s.ProbeEvery, MaxProbeEvery)
	}
	if s.PauseRounds > MaxPauseRounds {
		bad("PauseRounds %d above %d", s.PauseRounds, MaxPauseRounds)
	}
	return errors.Join(errs...)
}

// Await returns once ready reports true or, after spinning, once w is
// woken: it calls ready up to the adaptive budget of times (see
// WaitStrategy), pausing PauseRounds between calls, without yielding the
// processor (runtime.Gosched in the loop made timings bimodal), then
// calls w.Park(ready). Like Park, it may return while ready still reports
// false; callers loop. Only w's owner may call it. Out-of-range fields are
// clamped.
func (s WaitStrategy) Await(w *Waiter, ready func() bool) {
	s.EnsureDefaults()
	maxSpins := min(s.SpinIterations, MaxSpinIterations)
	if maxSpins <= 0 {
		w.Park(ready)
		return
	}
	minSpins := min(max(s.MinSpinIterations, 1), maxSpins)
	rounds := min(s.PauseRounds, MaxPauseRounds)
	limit := min(max(w.spinLimit, minSpins), maxSpins)
	if w.spinLimit == 0 {
		limit = maxSpins
	}
	probing := false
	for i := range maxSpins {
		if ready() {
			if probing {
				// A longer spin paid: let the budget cover it twice.
				limit = min(max(limit, 2*(i+1)), maxSpins)
			}
			w.spinLimit = limit
			return
		}
		if i+1 == limit && limit < maxSpins {
			w.shortenedWaits++
			if w.shortenedWaits < s.ProbeEvery {
				break
			}
			w.shortenedWaits = 0
			probing = true // spin on to maxSpins
		}
		if i+1 < maxSpins { // the last check is followed by Park's own
			pause(rounds)
		}
	}
	w.spinLimit = max(limit/2, minSpins)
	w.Park(ready)
}

// pauseSink keeps the compiler from deleting pause's loop.
var pauseSink uint32

// pause busy-waits for about n×1.2 ns without touching shared memory.
// Go offers no PAUSE instruction outside the runtime; a dependent
// multiply-add chain is the cheapest portable stand-in.
//
//go:noinline
func pause(n int) {
	x := uint32(n)
	for range n {
		x = x*1664525 + 1013904223
	}
	if x == 1 {
		pauseSink = x
	}
}

// ParkFor is Park with a time limit: it returns at the latest after d,
// woken or not. timer is the caller's reusable timer (stopped or expired,
// its channel drained), so that timed waits allocate nothing; ParkFor
// leaves it so.
func (w *Waiter) ParkFor(ready func() bool, d time.Duration, timer *time.Timer) {
	w.park(ready, d, timer)
}

// park blocks until woken, or, with a timer, at most d.
func (w *Waiter) park(ready func() bool, d time.Duration, timer *time.Timer) {
	if !w.parked.CompareAndSwap(0, 1) {
		panic("ringbuf: two goroutines parked on one Waiter")
	}
	if ready() {
		w.parked.Store(0)
		return
	}
	w.parks.Add(1)
	if timer == nil {
		<-w.wakeup
	} else {
		timer.Reset(d)
		select {
		case <-w.wakeup:
			timer.Stop()
		case <-timer.C:
		}
	}
	w.parked.Store(0)
}
