package ringbuf

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// parkAtOnce makes waits park without spinning, so that the tests below
// reach the parking path deterministically.
var parkAtOnce = WaitStrategy{SpinIterations: -1}

// In these tests synctest.Wait returns once every goroutine in the bubble
// is durably blocked, i.e. once the waiting goroutine is parked inside
// Waiter.Park on its channel.

func TestConsumerParksAndWakesOnPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New[int](4)
		r.SetWaitStrategy(parkAtOnce)
		got := make(chan int, 1)
		go func() {
			v, err := r.Pop()
			if err != nil {
				t.Errorf("Pop: %v", err)
			}
			got <- v
		}()
		synctest.Wait()
		if r.consumerWaiter.Parks() != 1 {
			t.Fatalf("consumer parked %d times, want 1", r.consumerWaiter.Parks())
		}
		s := r.TryReserve(1)
		s[0] = 42
		r.Publish(1)
		if v := <-got; v != 42 {
			t.Fatalf("Pop = %d, want 42", v)
		}
	})
}

func TestReadParksAndWakesOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New[int](4)
		r.SetWaitStrategy(parkAtOnce)
		got := make(chan error, 1)
		go func() {
			_, err := r.Read(4)
			got <- err
		}()
		synctest.Wait()
		r.Close()
		if err := <-got; !errors.Is(err, ErrClosed) {
			t.Fatalf("Read = %v, want ErrClosed", err)
		}
	})
}

func TestProducerParksAndWakesOnRelease(t *testing.T) {
	for _, name := range []string{"Push", "Reserve"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := New[int](2)
				r.SetWaitStrategy(parkAtOnce)
				r.TryPush(1)
				r.TryPush(2)
				done := make(chan struct{})
				go func() {
					defer close(done)
					if name == "Push" {
						if err := r.Push(3); err != nil {
							t.Errorf("Push: %v", err)
						}
						return
					}
					s := r.Reserve(2)
					if len(s) != 1 {
						t.Errorf("Reserve(2) after one release: %d slots, want 1", len(s))
						return
					}
					s[0] = 3
					r.Publish(1)
				}()
				synctest.Wait()
				if r.producerWaiter.Parks() != 1 {
					t.Fatalf("producer parked %d times, want 1", r.producerWaiter.Parks())
				}
				select {
				case <-done:
					t.Fatal("producer returned while the ring was full")
				default:
				}
				r.Peek(1)
				r.Release(1)
				<-done
				if v, _ := r.TryPop(); v != 2 {
					t.Fatalf("popped %d, want 2", v)
				}
				if v, _ := r.TryPop(); v != 3 {
					t.Fatalf("popped %d, want 3", v)
				}
			})
		})
	}
}

// TestSharedWaiter is the engine's pattern: one Waiter is the consumer
// waiter of two input rings, the producer waiter of an output ring, and is
// woken by hand for a control message.
func TestSharedWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in1, in2, out := New[int](2), New[int](2), New[int](2)
		w := NewWaiter()
		in1.SetConsumerWaiter(w)
		in2.SetConsumerWaiter(w)
		out.SetProducerWaiter(w)
		out.TryPush(0)
		out.TryPush(0) // full
		var control atomic.Bool

		woke := make(chan string)
		go func() {
			ready := func() bool {
				return in1.Len() > 0 || in2.Len() > 0 || out.Len() < out.Cap() || control.Load()
			}
			for _, want := range []string{"in2", "in1", "out", "control"} {
				for !ready() {
					parkAtOnce.Await(w, ready)
				}
				switch {
				case in1.Len() > 0:
					in1.TryPop()
					woke <- "in1"
				case in2.Len() > 0:
					in2.TryPop()
					woke <- "in2"
				case out.Len() < out.Cap():
					out.TryPush(0)
					woke <- "out"
				case control.Load():
					control.Store(false)
					woke <- "control"
				default:
					t.Errorf("woke for %s but nothing is ready", want)
				}
			}
		}()
		expect := func(want string) {
			t.Helper()
			if got := <-woke; got != want {
				t.Fatalf("woke for %s, want %s", got, want)
			}
		}

		synctest.Wait()
		in2.TryPush(1)
		expect("in2")

		synctest.Wait()
		in1.TryPush(1)
		expect("in1")

		synctest.Wait()
		out.TryPop()
		expect("out")

		synctest.Wait()
		control.Store(true)
		w.Wake()
		expect("control")
		if w.Parks() != 4 {
			t.Fatalf("parked %d times, want 4", w.Parks())
		}
	})
}

func TestParkReturnsAtOnceWhenReady(t *testing.T) {
	w := NewWaiter()
	w.Park(func() bool { return true })
	if w.Parks() != 0 {
		t.Fatalf("Parks = %d after a ready Park", w.Parks())
	}
	// A spurious wake-up left behind by a Wake that raced with a ready
	// Park makes the next Park return early, never hang.
	w.parked.Store(1)
	w.Wake()
	w.parked.Store(0)
	w.Park(func() bool { return false })
}

func TestTwoParkersPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWaiter()
		go w.Park(func() bool { return false })
		synctest.Wait()
		mustPanic(t, "two goroutines parked on one Waiter", func() {
			w.Park(func() bool { return false })
		})
		w.Wake()
	})
}

func TestAwaitSpinsBeforeParking(t *testing.T) {
	w := NewWaiter()
	calls := 0
	ready := func() bool { calls++; return calls == 10 }
	WaitStrategy{SpinIterations: 20, PauseRounds: -1}.Await(w, ready)
	if calls != 10 || w.Parks() != 0 {
		t.Fatalf("ready called %d times, parked %d; want 10 and 0", calls, w.Parks())
	}

	synctest.Test(t, func(t *testing.T) {
		w := NewWaiter()
		calls := 0
		var flag atomic.Bool
		ready := func() bool { calls++; return flag.Load() }
		done := make(chan struct{})
		go func() {
			WaitStrategy{SpinIterations: 5, PauseRounds: 1}.Await(w, ready)
			close(done)
		}()
		synctest.Wait()
		// 5 spins, then Park's own re-check.
		if calls != 6 || w.Parks() != 1 {
			t.Errorf("ready called %d times, parked %d; want 6 and 1", calls, w.Parks())
		}
		flag.Store(true)
		w.Wake()
		<-done
	})
}

// TestNoLostWakeUp ping-pongs one item through two rings whose both sides
// park at once, so every hand-off goes through Park and Wake racing with
// each other. A lost wake-up hangs, which the watchdog reports.
func TestNoLostWakeUp(t *testing.T) {
	rounds := 20000
	if testing.Short() {
		rounds = 2000
	}
	ping, pong := New[int](2), New[int](2)
	ping.SetWaitStrategy(parkAtOnce)
	pong.SetWaitStrategy(parkAtOnce)
	go func() {
		for {
			v, err := ping.Pop()
			if err != nil {
				pong.Close()
				return
			}
			if err := pong.Push(v + 1); err != nil {
				panic(err)
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		for i := range rounds {
			if err := ping.Push(i); err != nil {
				done <- err
				return
			}
			v, err := pong.Pop()
			if err != nil || v != i+1 {
				done <- errors.Join(err, errors.New("wrong value"))
				return
			}
		}
		ping.Close()
		_, err := pong.Pop()
		if !errors.Is(err, ErrClosed) {
			done <- err
			return
		}
		done <- nil
	}()
	watchdog(t, done)
}

// watchdog waits for done, failing the test if it takes more than a minute
// (a hang: a lost wake-up or a lost item).
func watchdog(t *testing.T, done <-chan error) {
	t.Helper()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timer.C:
		t.Fatal("no progress for a minute: lost wake-up or lost item")
	}
}

// readyAfter returns a ready function that reports true from its n-th call
// on, and a counter of its calls.
func readyAfter(n int) (func() bool, *int) {
	calls := 0
	return func() bool { calls++; return calls >= n }, &calls
}

// TestAwaitAdapts follows the adaptive budget through a scripted sequence
// of waits. A ready function that first reports true on check limit+1 is
// true exactly at Park's own re-check: the wait "fails" (the budget
// shrinks) without blocking.
func TestAwaitAdapts(t *testing.T) {
	// In a bubble, a script error that blocks in Park is reported as a
	// deadlock instead of hanging the test.
	synctest.Test(t, func(t *testing.T) {
		s := WaitStrategy{SpinIterations: 64, MinSpinIterations: 4, ProbeEvery: 3, PauseRounds: -1}
		w := NewWaiter()
		step := func(readyAt, wantLimit int) {
			t.Helper()
			ready, calls := readyAfter(readyAt)
			s.Await(w, ready)
			if *calls != readyAt || w.spinLimit != wantLimit {
				t.Fatalf("ready at check %d: %d checks, budget %d; want %d checks, budget %d",
					readyAt, *calls, w.spinLimit, readyAt, wantLimit)
			}
		}
		step(10, 64) // success within the full budget: budget stays
		step(65, 32) // 64 checks fail, Park's succeeds: halve
		step(33, 16) // fails at 32 (shortened wait 1): halve
		step(10, 16) // a success does not grow the budget
		step(17, 8)  // fails at 16 (shortened 2): halve
		step(9, 18)  // shortened 3: probe on, success at 9: budget 2×9
		step(19, 9)  // fails at 18 (shortened 1)
		step(10, 4)  // fails at 9 (shortened 2): floor 4
		step(65, 4)  // shortened 3: probe to 64 fails; floor 4
		step(5, 4)   // shortened 1
		step(5, 4)   // shortened 2
		step(20, 40) // shortened 3: probe succeeds at 20: budget 40
		step(2, 40)  // quick success
		step(41, 20) // fails at 40
		if w.Parks() != 0 {
			t.Fatal("blocked in Park")
		}

		// Negative SpinIterations parks at once: only Park's check.
		ready, calls := readyAfter(1)
		WaitStrategy{SpinIterations: -1}.Await(w, ready)
		if *calls != 1 {
			t.Fatalf("park-at-once made %d checks, want 1", *calls)
		}
	})
}

// TestAwaitFixedBudget: MinSpinIterations == SpinIterations never adapts.
func TestAwaitFixedBudget(t *testing.T) {
	s := WaitStrategy{SpinIterations: 8, MinSpinIterations: 8, PauseRounds: 1}
	w := NewWaiter()
	for range 5 {
		ready, calls := readyAfter(9)
		s.Await(w, ready)
		if *calls != 9 || w.spinLimit != 8 {
			t.Fatalf("%d checks, budget %d; want 9 and 8", *calls, w.spinLimit)
		}
	}
}

func TestParkForTimesOutAndWakes(t *testing.T) {
	w := NewWaiter()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	start := time.Now()
	w.ParkFor(func() bool { return false }, 5*time.Millisecond, timer)
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Fatalf("ParkFor returned after %v, before its time limit", el)
	}
	if w.Parks() != 1 {
		t.Fatalf("Parks = %d, want 1", w.Parks())
	}
	// A wake-up ends the wait long before the limit; the timer is reusable.
	done := make(chan struct{})
	go func() {
		w.ParkFor(func() bool { return false }, time.Hour, timer)
		close(done)
	}()
	for w.parked.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	w.Wake()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ParkFor was not woken")
	}
	// ready already true: no park at all.
	w.ParkFor(func() bool { return true }, time.Hour, timer)
	if w.Parks() != 2 {
		t.Fatalf("Parks = %d, want 2", w.Parks())
	}
}
