package keyed

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Benchmarks. State per key: an 8-byte big-endian key and an 8-byte value
// (ValueState[int64]). Sizes beyond 1 M keys run only with
// STREAMD_BENCH_FULL=1.

func benchSizes(extra ...int) []int {
	sizes := []int{1_000, 100_000, 1_000_000}
	if os.Getenv("STREAMD_BENCH_FULL") == "1" {
		sizes = append(sizes, extra...)
	}
	return sizes
}

func sizeName(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}

func fillBackend(tb testing.TB, opts Options, n int) (*Backend, *ValueState[int64]) {
	b, err := NewBackend(opts)
	if err != nil {
		tb.Fatal(err)
	}
	vs, err := NewValueState(b, "v", Int64Codec, StateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	var key [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		b.SetCurrentKey(key[:])
		vs.Put(int64(i))
	}
	return b, vs
}

// BenchmarkGetPut: SetCurrentKey + Get + Put of an existing key, random
// keys, no snapshot.
func BenchmarkGetPut(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			be, vs := fillBackend(b, Options{}, n)
			keys := randomKeys(n, 1<<16)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := range b.N {
				be.SetCurrentKey(keys[i&(len(keys)-1)][:])
				v, _ := vs.Get()
				vs.Put(v + 1)
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkBaselineGoMap is the same access pattern on a Go map keyed by
// the 8-byte key (no key groups, no snapshots), for comparison.
func BenchmarkBaselineGoMap(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			m := make(map[[8]byte]int64, n)
			var key [8]byte
			for i := range n {
				binary.BigEndian.PutUint64(key[:], uint64(i))
				m[key] = int64(i)
			}
			keys := randomKeys(n, 1<<16)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := range b.N {
				k := keys[i&(len(keys)-1)]
				m[k]++
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkGet: SetCurrentKey + Get alone.
func BenchmarkGet(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			be, vs := fillBackend(b, Options{}, n)
			keys := randomKeys(n, 1<<16)
			b.ReportAllocs()
			b.ResetTimer()
			var sum int64
			cpu := cpuTime()
			for i := range b.N {
				be.SetCurrentKey(keys[i&(len(keys)-1)][:])
				v, _ := vs.Get()
				sum += v
			}
			reportCPU(b, cpu)
			_ = sum
		})
	}
}

// cpuTime is the process's user+system CPU time. The machine is shared,
// so wall-clock ns/op is inflated by other processes; cpu-ns/op is not
// (except by cache and hyperthread effects).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func randomKeys(n, count int) [][8]byte {
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([][8]byte, count)
	for i := range keys {
		binary.BigEndian.PutUint64(keys[i][:], uint64(r.IntN(n)))
	}
	return keys
}

// BenchmarkPutAfterSnapshot: the same writes with a snapshot taken (and
// the previous one released) every 10 000 writes: includes the copies.
func BenchmarkPutAfterSnapshot(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			benchWritesWithSnapshots(b, Options{}, n, 10_000)
		})
	}
}

func benchWritesWithSnapshots(b *testing.B, opts Options, n, every int) {
	be, vs := fillBackend(b, opts, n)
	keys := randomKeys(n, 1<<16)
	var s *Snapshot
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := range b.N {
		if i%every == 0 {
			if s != nil {
				s.Release()
			}
			s = be.Snapshot()
		}
		be.SetCurrentKey(keys[i&(len(keys)-1)][:])
		vs.Put(int64(i))
	}
	reportCPU(b, cpu)
	b.StopTimer()
	if s != nil {
		s.Release()
	}
}

// PauseStats returns the median and 99th percentile of pauses.
func PauseStats(pauses []time.Duration) (median, p99 time.Duration) {
	if len(pauses) == 0 {
		return 0, 0
	}
	s := slices.Clone(pauses)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// BenchmarkSnapshotPause measures the synchronous part of a checkpoint,
// Snapshot(), over many snapshots interleaved with 1000 random writes
// each (so every snapshot finds copied tables and pages to share), with
// up to two snapshots open. It reports the median and p99 pause.
func BenchmarkSnapshotPause(b *testing.B) {
	for _, n := range benchSizes(10_000_000) {
		b.Run(sizeName(n), func(b *testing.B) {
			be, vs := fillBackend(b, Options{}, n)
			keys := randomKeys(n, 1<<16)
			pauses := make([]time.Duration, 0, b.N)
			var open []*Snapshot
			k := 0
			b.ReportAllocs()
			b.ResetTimer()
			// The timer runs throughout (ns/op is 1000 writes, the
			// copies they cause, and a snapshot), so that b.N adapts to
			// the whole loop; the pause is timed on its own.
			for range b.N {
				for range 1000 {
					be.SetCurrentKey(keys[k&(len(keys)-1)][:])
					vs.Put(int64(k))
					k++
				}
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
			med, p99 := PauseStats(pauses)
			b.ReportMetric(float64(med.Nanoseconds()), "median-ns")
			b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkGC measures one forced full collection (the fastest of five)
// with an empty heap and with the state held, the heap objects the state
// adds (what the GC must mark), and the bytes per entry
// (MemoryBytes/Len). ns/op is a forced collection with the state held.
func BenchmarkGC(b *testing.B) {
	sizes := []int{1_000_000}
	if os.Getenv("STREAMD_BENCH_FULL") == "1" {
		sizes = append(sizes, 10_000_000)
	}
	gcTime := func() time.Duration {
		best := time.Duration(math.MaxInt64)
		for range 5 {
			runtime.GC()
			start := time.Now()
			runtime.GC()
			best = min(best, time.Since(start))
		}
		return best
	}
	heapObjects := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapObjects
	}
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			empty := gcTime()
			objects := heapObjects()
			be, _ := fillBackend(b, Options{}, n)
			held := gcTime()
			objects = heapObjects() - objects
			b.ResetTimer()
			for range b.N {
				runtime.GC()
			}
			b.ReportMetric(float64(empty.Microseconds()), "empty-gc-us")
			b.ReportMetric(float64(held.Microseconds()), "held-gc-us")
			b.ReportMetric(float64(objects), "heap-objects")
			b.ReportMetric(float64(be.MemoryBytes())/float64(be.Len()), "bytes/entry")
			runtime.KeepAlive(be)
		})
	}
}

// BenchmarkPageSize is how DefaultPageSizeBytes was chosen: random writes
// to 1 M keys with a snapshot every 100 000 (dense) or 1 000 (sparse)
// writes, copies included, and a forced GC with the state held. Run the
// writes with -benchtime=1000000x and gc with -benchtime=10x.
func BenchmarkPageSize(b *testing.B) {
	for _, ps := range []int{4 << 10, 16 << 10, 64 << 10} {
		// Dense: nearly every page is written between two snapshots.
		b.Run(fmt.Sprintf("dense/%dK", ps>>10), func(b *testing.B) {
			benchWritesWithSnapshots(b, Options{PageSizeBytes: ps}, 1_000_000, 100_000)
		})
		// Sparse: few pages are written between two snapshots, so each
		// write pays for a page copy.
		b.Run(fmt.Sprintf("sparse/%dK", ps>>10), func(b *testing.B) {
			benchWritesWithSnapshots(b, Options{PageSizeBytes: ps}, 1_000_000, 1_000)
		})
		b.Run(fmt.Sprintf("gc/%dK", ps>>10), func(b *testing.B) {
			be, _ := fillBackend(b, Options{PageSizeBytes: ps}, 1_000_000)
			runtime.GC()
			b.ResetTimer()
			for range b.N {
				runtime.GC()
			}
			runtime.KeepAlive(be)
		})
	}
}

// restoreEntries returns n entries as a checkpoint holds them: value
// state, an 8-byte key and a 100-byte value (the bench restore suite's
// shape), in a random order of keys.
func restoreEntries(n int) (keys, values [][]byte) {
	r := rand.New(rand.NewPCG(3, 4))
	keys = make([][]byte, n)
	values = make([][]byte, n)
	var k [8]byte
	for i, j := range r.Perm(n) {
		binary.BigEndian.PutUint64(k[:], uint64(j))
		keys[i] = AppendEntryKey(nil, k[:], nil)
		values[i] = make([]byte, 100)
		binary.BigEndian.PutUint64(values[i], uint64(j))
	}
	return keys, values
}

// benchRestore restores n entries into a fresh backend per round; an op
// is one entry. registerFirst registers the state before the round (the
// old order); otherwise the round restores into an unregistered state and
// registers it at the end (timed).
func benchRestore(b *testing.B, n int, registerFirst bool) {
	keys, values := restoreEntries(n)
	b.ReportAllocs()
	b.SetBytes(int64(len(keys[0]) + len(values[0])))
	b.ResetTimer()
	cpu := cpuTime()
	var be *Backend
	for i := range b.N {
		j := i % n
		if j == 0 {
			b.StopTimer()
			be = nil
			var err error
			if be, err = NewBackend(Options{}); err != nil {
				b.Fatal(err)
			}
			if registerFirst {
				if _, err := be.Register("state", KindValue, StateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		if err := be.RestoreEntry("state", keys[j], values[j]); err != nil {
			b.Fatal(err)
		}
		if !registerFirst && (j == n-1 || i == b.N-1) {
			if _, err := be.Register("state", KindValue, StateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkRestoreEntry: RestoreEntry of entries as a checkpoint holds
// them (8-byte keys, 100-byte values: the bench restore suite's shape),
// per entry, into a state registered first (registered) or registered
// once the round's entries are in (unregistered, Register timed).
func BenchmarkRestoreEntry(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run("registered/"+sizeName(n), func(b *testing.B) { benchRestore(b, n, true) })
		b.Run("unregistered/"+sizeName(n), func(b *testing.B) { benchRestore(b, n, false) })
	}
}
