package ringbuf

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestLenFromThirdGoroutine reads Len from a goroutine that is neither the
// producer nor the consumer (as the engine's metrics do) while both run:
// every reading is within [0, Cap] and within what the two sides' progress
// allows, and once both sides are idle the reading is exact. Run it with
// -race: Len must be a pair of atomic loads.
func TestLenFromThirdGoroutine(t *testing.T) {
	const capacity, items = 64, 200_000
	r := New[int](capacity)
	// pushed and popped are published by the sides after each operation:
	// a reading taken between two loads of them is bounded by them.
	var pushed, popped atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // producer, in batches
		defer wg.Done()
		for n := 0; n < items; {
			s := r.Reserve(min(16, items-n))
			for i := range s {
				s[i] = n + i
			}
			r.Publish(len(s))
			n += len(s)
			pushed.Store(int64(n))
		}
	}()
	go func() { // consumer, in batches
		defer wg.Done()
		for n := 0; n < items; {
			s, err := r.Read(16)
			if err != nil {
				t.Error(err)
				return
			}
			for i, v := range s {
				if v != n+i {
					t.Errorf("item %d is %d", n+i, v)
					return
				}
			}
			r.Release(len(s))
			n += len(s)
			popped.Store(int64(n))
		}
	}()
	done := make(chan struct{})
	var readings int
	go func() {
		defer close(done)
		// pushed and popped lag the ring's indices by at most a batch
		// (each side stores its count after Publish or Release).
		const batch = 16
		for popped.Load() < items {
			poppedBefore, pushedBefore := popped.Load(), pushed.Load()
			n := int64(r.Len())
			poppedAfter, pushedAfter := popped.Load(), pushed.Load()
			if n < 0 || n > capacity {
				t.Errorf("Len = %d outside [0, %d]", n, capacity)
				return
			}
			if most := pushedAfter + batch - poppedBefore; n > most {
				t.Errorf("Len = %d, more than the %d items that can have been queued", n, most)
				return
			}
			if least := pushedBefore - poppedAfter - batch; n < least {
				t.Errorf("Len = %d, fewer than the %d items that were queued", n, least)
				return
			}
			readings++
		}
	}()
	wg.Wait()
	<-done
	if r.Len() != 0 {
		t.Fatalf("Len = %d after every item was consumed", r.Len())
	}
	t.Logf("%d readings", readings)
}

// TestLenExactWhenIdle: a third goroutine sees exactly what the producer
// published and the consumer has not released, once both are idle.
func TestLenExactWhenIdle(t *testing.T) {
	r := New[int](128)
	want := 0
	for _, step := range []struct{ push, pop int }{{100, 0}, {0, 30}, {28, 70}, {0, 28}, {128, 0}, {0, 128}} {
		if step.push > 0 {
			if s := r.TryReserve(step.push); len(s) != step.push {
				t.Fatalf("reserved %d, want %d", len(s), step.push)
			}
			r.Publish(step.push)
		}
		if step.pop > 0 {
			if s := r.Peek(step.pop); len(s) != step.pop {
				t.Fatalf("peeked %d, want %d", len(s), step.pop)
			}
			r.Release(step.pop)
		}
		want += step.push - step.pop
		got := make(chan int)
		go func() { got <- r.Len() }() // both sides' writes happen before the go statement
		if g := <-got; g != want {
			t.Fatalf("after push %d, pop %d: Len from another goroutine = %d, want %d", step.push, step.pop, g, want)
		}
	}
}
