package ringbuf

import (
	"fmt"
	"runtime"
	"testing"
)

// These benchmarks move int64 items (8 bytes, hence SetBytes(8) per op).
// One op is one item; ns/op is the cost of handing over one item.

// BenchmarkTryPushTryPop is the uncontended cost of one push and one pop
// on the same goroutine: the instruction path, without cache traffic.
func BenchmarkTryPushTryPop(b *testing.B) {
	r := New[int64](1024)
	b.ReportAllocs()
	b.SetBytes(8)
	var sum int64
	for i := range b.N {
		r.TryPush(int64(i))
		v, _ := r.TryPop()
		sum += v
	}
	sink = sum
}

// BenchmarkReservePublishPeekRelease is the uncontended batch path, 64 at
// a time on one goroutine.
func BenchmarkReservePublishPeekRelease(b *testing.B) {
	const batch = 64
	r := New[int64](1024)
	b.ReportAllocs()
	b.SetBytes(8)
	var sum int64
	for i := 0; i < b.N; i += batch {
		s := r.TryReserve(batch)
		for j := range s {
			s[j] = int64(i + j)
		}
		r.Publish(len(s))
		p := r.Peek(batch)
		for _, v := range p {
			sum += v
		}
		r.Release(len(p))
	}
	sink = sum
}

var sink int64

// BenchmarkSPSC hands b.N items from the benchmark goroutine to a consumer
// goroutine, one at a time (batch=1: Push/Pop) or in batches
// (Reserve/Publish, Read/Release), with both goroutines free or locked to
// their OS threads. parks/op counts how often either side parked.
func BenchmarkSPSC(b *testing.B) {
	for _, locked := range []bool{false, true} {
		for _, batch := range []int{1, 16, 256} {
			for _, ws := range benchStrategies {
				name := fmt.Sprintf("batch=%d/locked=%v/%s", batch, locked, ws.name)
				b.Run(name, func(b *testing.B) {
					benchSPSC(b, 4096, batch, locked, ws.s)
				})
			}
		}
	}
}

// benchStrategies are the wait strategies BenchmarkSPSC compares: the
// default; the same budget without adaptation; adaptation without probes;
// parking at once; and back-to-back polling without the pause.
var benchStrategies = []struct {
	name string
	s    WaitStrategy
}{
	{"default", WaitStrategy{}},
	{"fixed", WaitStrategy{MinSpinIterations: DefaultSpinIterations}},
	{"noprobe", WaitStrategy{ProbeEvery: MaxProbeEvery}},
	{"nospin", WaitStrategy{SpinIterations: -1}},
	{"nopause", WaitStrategy{SpinIterations: 4096, PauseRounds: -1}},
}

func benchSPSC(b *testing.B, capacity, batch int, locked bool, ws WaitStrategy) {
	r := New[int64](capacity)
	r.SetWaitStrategy(ws)
	n := b.N
	done := make(chan int64)
	b.ReportAllocs()
	b.SetBytes(8)
	b.ResetTimer()
	go func() {
		if locked {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
		}
		var sum int64
		if batch == 1 {
			for {
				v, err := r.Pop()
				if err != nil {
					break
				}
				sum += v
			}
		} else {
			for {
				s, err := r.Read(batch)
				if err != nil {
					break
				}
				for _, v := range s {
					sum += v
				}
				r.Release(len(s))
			}
		}
		done <- sum
	}()
	if locked {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if batch == 1 {
		for i := range n {
			if err := r.Push(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		for i := 0; i < n; {
			s := r.Reserve(min(batch, n-i))
			for j := range s {
				s[j] = int64(i + j)
			}
			r.Publish(len(s))
			i += len(s)
		}
	}
	r.Close()
	sum := <-done
	b.StopTimer()
	if want := int64(n) * int64(n-1) / 2; sum != want {
		b.Fatalf("sum %d, want %d", sum, want)
	}
	b.ReportMetric(float64(r.consumerWaiter.Parks()+r.producerWaiter.Parks())/float64(n), "parks/op")
}

// BenchmarkParkWake is a ping-pong in which both sides park at once
// (SpinIterations < 0): ns/op is two wake-ups, i.e. the cost that the
// spin phase of a WaitStrategy exists to avoid.
func BenchmarkParkWake(b *testing.B) {
	for _, locked := range []bool{false, true} {
		b.Run(fmt.Sprintf("locked=%v", locked), func(b *testing.B) {
			ping, pong := New[int64](2), New[int64](2)
			never := WaitStrategy{SpinIterations: -1}
			ping.SetWaitStrategy(never)
			pong.SetWaitStrategy(never)
			b.ReportAllocs()
			go func() {
				if locked {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
				}
				for {
					v, err := ping.Pop()
					if err != nil {
						pong.Close()
						return
					}
					_ = pong.Push(v)
				}
			}()
			if locked {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			for i := range b.N {
				_ = ping.Push(int64(i))
				if _, err := pong.Pop(); err != nil {
					b.Fatal(err)
				}
			}
			ping.Close()
			_, _ = pong.Pop()
		})
	}
}

// BenchmarkWakeNobodyParked is the cost Publish and Release pay for waking.
func BenchmarkWakeNobodyParked(b *testing.B) {
	w := NewWaiter()
	b.ReportAllocs()
	for range b.N {
		w.Wake()
	}
}

// BenchmarkPauseRound measures one round of the spin pause, the unit of
// WaitStrategy.PauseRounds.
func BenchmarkPauseRound(b *testing.B) {
	const rounds = 256
	for range b.N / rounds {
		pause(rounds)
	}
}
