package keyed

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Timer benchmarks. Keys are 8-byte big-endian integers, event-time
// timers. The 1 M sizes take a few seconds each; run them with
// -benchtime=3000000x (RegisterFire, Steady) or -benchtime=3x (Restore).

// newTimersBench returns a backend and its timers.
func newTimersBench(b *testing.B) (*Backend, *Timers) {
	be := newBackend(b, Options{})
	tm, err := NewTimers(be, "op/timers")
	if err != nil {
		b.Fatal(err)
	}
	return be, tm
}

// BenchmarkTimersRegisterFire registers n timers (n distinct keys, random
// timestamps) and fires them all with one AdvanceWatermark, over and over;
// an op is one timer registered and fired. It also reports the memory a
// pending timer takes: in the backend's state (state-B/timer) and in the
// queue (queue-B/timer).
func BenchmarkTimersRegisterFire(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(sizeName(n), func(b *testing.B) {
			be, tm := newTimersBench(b)
			offsets := rand.New(rand.NewPCG(1, 2)).Perm(n)
			var key [8]byte
			fire := func(int64) {}
			base := int64(0)
			register := func(count int) {
				for i := range count {
					binary.BigEndian.PutUint64(key[:], uint64(i))
					be.SetCurrentKey(key[:])
					tm.RegisterEventTime(base + int64(offsets[i]))
				}
			}
			advance := func(count int) {
				if got := tm.AdvanceWatermark(base+int64(n), fire); got != count {
					b.Fatalf("fired %d timers, want %d", got, count)
				}
				base += int64(n) + 1
			}
			// One round untimed: the buffers reach their steady size.
			mem := be.MemoryBytes()
			register(n)
			stateBytes := be.MemoryBytes() - mem
			q := &tm.event
			queueBytes := cap(q.heap)*24 + cap(q.arena) + cap(q.spare)
			advance(n)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for done := 0; done < b.N; done += n {
				count := min(n, b.N-done)
				register(count)
				advance(count)
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(stateBytes)/float64(n), "state-B/timer")
			b.ReportMetric(float64(queueBytes)/float64(n), "queue-B/timer")
		})
	}
}

// BenchmarkTimersSteady keeps n timers pending (one per key); an op fires
// the earliest (AdvanceWatermark) and registers the next timer of its key
// n later, so every op pushes and pops a heap of n entries.
func BenchmarkTimersSteady(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(sizeName(n), func(b *testing.B) {
			be, tm := newTimersBench(b)
			var key [8]byte
			for i := range n {
				binary.BigEndian.PutUint64(key[:], uint64(i))
				be.SetCurrentKey(key[:])
				tm.RegisterEventTime(int64(i))
			}
			fire := func(int64) {}
			ts := int64(-1)
			op := func() {
				ts++
				if tm.AdvanceWatermark(ts, fire) != 1 {
					b.Fatal("fired no timer")
				}
				binary.BigEndian.PutUint64(key[:], uint64(ts%int64(n)))
				be.SetCurrentKey(key[:])
				tm.RegisterEventTime(ts + int64(n))
			}
			for range n { // untimed: every key's timer moved once
				op()
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for range b.N {
				op()
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkTimersRegisterExisting: SetCurrentKey and RegisterEventTime of
// a timer that exists (a window operator registers its window's end timer
// per record), random keys among 1 M timers.
func BenchmarkTimersRegisterExisting(b *testing.B) {
	const n = 1_000_000
	be, tm := newTimersBench(b)
	var key [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		be.SetCurrentKey(key[:])
		tm.RegisterEventTime(int64(i % 100))
	}
	keys := randomKeys(n, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := range b.N {
		k := keys[i&(len(keys)-1)]
		be.SetCurrentKey(k[:])
		tm.RegisterEventTime(int64(binary.BigEndian.Uint64(k[:]) % 100))
	}
	reportCPU(b, cpu)
}

// BenchmarkTimersSnapshotPause measures Snapshot, the synchronous part of
// a checkpoint, of a backend holding 0 or 1 M pending timers (far in the
// future): between two snapshots 1000 timers of random keys are
// registered and fired, so every snapshot finds copied tables and pages
// to share; up to two snapshots are open. It reports the median and p99
// pause, which should not depend on the number of timers.
func BenchmarkTimersSnapshotPause(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		b.Run(sizeName(n), func(b *testing.B) {
			be, tm := newTimersBench(b)
			var key [8]byte
			for i := range n {
				binary.BigEndian.PutUint64(key[:], uint64(i))
				be.SetCurrentKey(key[:])
				tm.RegisterEventTime(1<<40 + int64(i))
			}
			keys := randomKeys(1_000_000, 1<<16)
			fire := func(int64) {}
			pauses := make([]time.Duration, 0, b.N)
			var open []*Snapshot
			k, ts := 0, int64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for range 1000 {
					be.SetCurrentKey(keys[k&(len(keys)-1)][:])
					tm.RegisterEventTime(ts)
					k++
				}
				tm.AdvanceWatermark(ts, fire)
				ts++
				if len(open) == 2 {
					open[0].Release()
					open = open[1:]
				}
				start := time.Now()
				s := be.Snapshot()
				pauses = append(pauses, time.Since(start))
				open = append(open, s)
			}
			b.StopTimer()
			for _, s := range open {
				s.Release()
			}
			if tm.Len() != n {
				b.Fatalf("%d timers pending, want %d", tm.Len(), n)
			}
			med, p99 := PauseStats(pauses)
			b.ReportMetric(float64(med.Nanoseconds()), "median-ns")
			b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkTimersSnapshot: Snapshot and Release back to back, nothing
// written in between, with 0 or 1 M timers pending: the synchronous part
// of a checkpoint alone, with warm caches.
func BenchmarkTimersSnapshot(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		b.Run(sizeName(n), func(b *testing.B) {
			be, tm := newTimersBench(b)
			var key [8]byte
			for i := range n {
				binary.BigEndian.PutUint64(key[:], uint64(i))
				be.SetCurrentKey(key[:])
				tm.RegisterEventTime(int64(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				be.Snapshot().Release()
			}
		})
	}
}

// BenchmarkTimersRestore: NewTimers on a backend restored with 1 M timers
// (one walk of the slots, one heapify); an op is one NewTimers, the
// restore itself untimed. ns/timer is the rebuild per timer.
func BenchmarkTimersRestore(b *testing.B) {
	const n = 1_000_000
	src, tm := newTimersBench(b)
	var key [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		src.SetCurrentKey(key[:])
		tm.RegisterEventTime(int64(i % 1000))
	}
	s := src.Snapshot()
	defer s.Release()
	type ent struct{ key, value []byte }
	var ents []ent
	r := s.Range()
	for kg := r.Start; kg < r.End; kg++ {
		s.ForEach(kg, func(_ int, k, v []byte) error {
			ents = append(ents, ent{k, v})
			return nil
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		be := newBackend(b, Options{})
		for _, e := range ents {
			if err := be.RestoreEntry("op/timers", e.key, e.value); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		b.StartTimer()
		tm, err := NewTimers(be, "op/timers")
		if err != nil || tm.Len() != n {
			b.Fatalf("NewTimers: %v, Len %d", err, tm.Len())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/timer")
}

// BenchmarkTimersGC: one forced full collection (the fastest of five)
// with no timers and with 1 M timers pending, and the heap objects the
// timers add: the queue holds no pointer per timer, so neither grows with
// the number of timers.
func BenchmarkTimersGC(b *testing.B) {
	gcTime := func() time.Duration {
		best := time.Duration(1 << 62)
		for range 5 {
			runtime.GC()
			start := time.Now()
			runtime.GC()
			best = min(best, time.Since(start))
		}
		return best
	}
	var ms runtime.MemStats
	be, tm := newTimersBench(b)
	empty := gcTime()
	runtime.ReadMemStats(&ms)
	objects := ms.HeapObjects
	var key [8]byte
	for i := range 1_000_000 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		be.SetCurrentKey(key[:])
		tm.RegisterEventTime(int64(i))
	}
	held := gcTime()
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	for range b.N {
		runtime.GC()
	}
	b.ReportMetric(float64(empty.Microseconds()), "empty-gc-us")
	b.ReportMetric(float64(held.Microseconds()), "held-gc-us")
	b.ReportMetric(float64(int64(ms.HeapObjects)-int64(objects)), "heap-objects")
	runtime.KeepAlive(tm)
}

// BenchmarkTimersChainedGroup is a window operator's firing in the worst
// case for the late entries: n keys have a timer at t and n others one at
// t+1; each timer at t registers its key's next at t+1 from the fire
// callback (late), so at t+1 every pending heap entry meets a late group
// of n entries with its timestamp. An op is one timer fired (and, for
// half of them, registered). Finding that a heap entry has no late twin
// costs O(1) (lateIDs), not a visit of the n late entries.
func BenchmarkTimersChainedGroup(b *testing.B) {
	for _, n := range []int{100, 1_000} {
		b.Run(sizeName(n), func(b *testing.B) {
			be, tm := newTimersBench(b)
			var key [8]byte
			base := int64(0)
			fire := func(ts int64) {
				if ts == base {
					tm.RegisterEventTime(ts + 1)
				}
			}
			round := func() {
				for i := range 2 * n {
					binary.BigEndian.PutUint64(key[:], uint64(i))
					be.SetCurrentKey(key[:])
					tm.RegisterEventTime(base + int64(i&1))
				}
				if got := tm.AdvanceWatermark(base+1, fire); got != 3*n {
					b.Fatalf("fired %d timers, want %d", got, 3*n)
				}
				base += 2
			}
			round()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += 3 * n {
				round()
			}
		})
	}
}
