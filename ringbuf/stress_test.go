package ringbuf

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestStress moves millions of items (fewer with -short) from a producer
// goroutine to a consumer goroutine and checks that they arrive in order,
// none lost, none repeated. Run it with -race: the race detector then
// checks that publishing an index orders the slot writes before the
// consumer's reads. The variants cover single items and random batch
// sizes, tiny rings (constant wrap-around and backpressure), and a wait
// strategy that parks at once (constant park/wake races).
func TestStress(t *testing.T) {
	items := 2_000_000
	if testing.Short() {
		items = 100_000
	}
	if raceEnabled {
		items /= 4
	}
	for _, tc := range []struct {
		capacity     int
		maxBatch     int // 1: Push/Pop; larger: random Reserve/Read sizes
		wait         WaitStrategy
		lockThreads  bool
		itemsDivisor int
	}{
		{capacity: 1024, maxBatch: 1},
		{capacity: 1024, maxBatch: 300},
		{capacity: 2, maxBatch: 1, itemsDivisor: 20},
		{capacity: 4, maxBatch: 7, itemsDivisor: 20},
		{capacity: 16, maxBatch: 1, wait: parkAtOnce, itemsDivisor: 4},
		{capacity: 16, maxBatch: 9, wait: parkAtOnce, itemsDivisor: 4},
		{capacity: 256, maxBatch: 64, lockThreads: true},
	} {
		n := items / max(tc.itemsDivisor, 1)
		name := fmt.Sprintf("cap=%d/batch=%d/spin=%d/locked=%v", tc.capacity, tc.maxBatch, tc.wait.SpinIterations, tc.lockThreads)
		t.Run(name, func(t *testing.T) {
			r := New[uint64](tc.capacity)
			r.SetWaitStrategy(tc.wait)
			done := make(chan error, 2)
			go func() { done <- stressProduce(r, n, tc.maxBatch, tc.lockThreads) }()
			go func() { done <- stressConsume(r, n, tc.maxBatch, tc.lockThreads) }()
			watchdog(t, done)
			watchdog(t, done)
			t.Logf("%d items, consumer parked %d times, producer %d", n, r.consumerWaiter.Parks(), r.producerWaiter.Parks())
		})
	}
}

func stressProduce(r *Ring[uint64], n, maxBatch int, lock bool) error {
	if lock {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for next := 0; next < n; {
		if maxBatch == 1 {
			if err := r.Push(uint64(next)); err != nil {
				return err
			}
			next++
			continue
		}
		s := r.Reserve(1 + rng.IntN(maxBatch))
		k := min(len(s), n-next)
		for i := range k {
			s[i] = uint64(next + i)
		}
		// Sometimes publish in two steps.
		if k > 1 && rng.IntN(4) == 0 {
			r.Publish(k / 2)
			r.Publish(k - k/2)
		} else {
			r.Publish(k)
		}
		next += k
	}
	r.Close()
	return nil
}

func stressConsume(r *Ring[uint64], n, maxBatch int, lock bool) error {
	if lock {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	rng := rand.New(rand.NewPCG(3, 4))
	want := uint64(0)
	for {
		if maxBatch == 1 {
			v, err := r.Pop()
			if err != nil {
				break
			}
			if v != want {
				return fmt.Errorf("popped %d, want %d", v, want)
			}
			want++
			continue
		}
		s, err := r.Read(1 + rng.IntN(maxBatch))
		if err != nil {
			break
		}
		for _, v := range s {
			if v != want {
				return fmt.Errorf("read %d, want %d", v, want)
			}
			want++
		}
		if len(s) > 1 && rng.IntN(4) == 0 {
			r.Release(len(s) / 2)
			r.Release(len(s) - len(s)/2)
		} else {
			r.Release(len(s))
		}
	}
	if want != uint64(n) {
		return fmt.Errorf("received %d items, want %d", want, n)
	}
	if !r.Drained() {
		return fmt.Errorf("ring not drained after ErrClosed")
	}
	return nil
}
