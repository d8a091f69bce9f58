package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The "pause" suite measures the synchronous part of a checkpoint at a
// task, keyed.Backend.Snapshot(), at growing state sizes (8-byte keys,
// 8-byte values): 1 k, 100 k and 1 M keys; 10 M more with
// STREAMD_BENCH_FULL=1 (make bench); 1 M less with STREAMD_BENCH_SMALL=1
// (make bench-smoke, in CI). Each iteration makes 100 random writes (so every
// snapshot finds pages to copy and share) and takes one Snapshot() with up
// to two snapshots open; the table's ns/record is one such iteration, and
// the pause itself (p50, p99) is timed alone and printed as a note. Aim:
// flat, <= 100 µs p99 at 10 M keys.
//
// The "restore" suite recovers keyed state from a checkpoint in Pebble into
// a fresh backend as the engine does (Store.Recover with Store.ReadKeyed
// into the backend: find the checkpoint, read, verify and decompress each
// block once, inserting as it goes; then register): 100 k entries of
// 8-byte keys and 100-byte values (~11 MiB raw), or ~1 GiB (9.5 M entries)
// with STREAMD_BENCH_FULL=1. One record is one entry.
func init() {
	sizes := []int{1_000, 100_000, 1_000_000}
	switch {
	case full():
		sizes = append(sizes, 10_000_000)
	case small():
		sizes = sizes[:2]
	}
	for _, n := range sizes {
		Register(Case{Suite: "pause", Name: "snapshot-" + sizeName(n), Records: 1, F: func(b *testing.B) { benchPause(b, n) }})
	}
	Register(Case{Suite: "restore", Name: "restore-" + sizeName(restoreEntries()), Records: restoreEntries(), F: benchRestore})
}

// full selects the full state sizes (make bench): 10 M keys, ~1 GiB.
func full() bool { return os.Getenv("STREAMD_BENCH_FULL") == "1" }

// small limits state to <= 100 k keys (make bench-smoke, in CI).
func small() bool { return os.Getenv("STREAMD_BENCH_SMALL") == "1" }

func sizeName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}

// filled caches backends across runs of a case: filling 10 M keys takes
// seconds, and each case runs several times.
var filled = map[int]*filledBackend{}

type filledBackend struct {
	b  *keyed.Backend
	id keyed.StateID
}

func fill(tb testing.TB, n, valueBytes int) *filledBackend {
	if f := filled[n*1000+valueBytes]; f != nil {
		return f
	}
	b, err := keyed.NewBackend(keyed.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	id, err := b.Register("state", keyed.KindValue, keyed.StateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	var key [8]byte
	val := make([]byte, valueBytes)
	for i := range n {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		binary.LittleEndian.PutUint64(val, uint64(i))
		b.SetCurrentKey(key[:])
		b.Put(id, val)
	}
	f := &filledBackend{b: b, id: id}
	filled[n*1000+valueBytes] = f
	return f
}

func benchPause(b *testing.B, n int) {
	f := fill(b, n, 8)
	var key [8]byte
	var val [8]byte
	pauses := make([]time.Duration, 0, b.N)
	var open []*keyed.Snapshot
	x := uint64(0x9e3779b97f4a7c15)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for range 100 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.BigEndian.PutUint64(key[:], x%uint64(n))
			binary.LittleEndian.PutUint64(val[:], x)
			f.b.SetCurrentKey(key[:])
			f.b.Put(f.id, val[:])
		}
		if len(open) == 2 {
			open[0].Release()
			open = open[1:]
		}
		start := time.Now()
		s := f.b.Snapshot()
		pauses = append(pauses, time.Since(start))
		open = append(open, s)
	}
	b.StopTimer()
	for _, s := range open {
		s.Release()
	}
	p50, p99 := percentiles(pauses)
	Note("pause-"+sizeName(n), "synchronous snapshot pause at %s keys: p50 %v, p99 %v (%d snapshots)", sizeName(n), p50, p99, len(pauses))
}

func restoreEntries() int {
	if full() {
		return 9_500_000 // ~1 GiB of 8-byte keys and 100-byte values
	}
	return 100_000
}

var restoreStore struct {
	st  *snapshot.Store
	h   *snapshot.KeyedHandle
	raw int64
}

func benchRestore(b *testing.B) {
	n := restoreEntries()
	if restoreStore.st == nil {
		st := openRestoreStore(b, "streamd-restore-")
		f := fill(b, n, 100)
		snap := f.b.Snapshot()
		h, err := st.WriteKeyed("bench", 1, "vertex", 0, keyed.DefaultMaxParallelism, snap, nil)
		snap.Release()
		if err != nil {
			b.Fatal(err)
		}
		if err := st.CommitCheckpoint(&snapshot.Metadata{Job: "bench", CheckpointID: 1, MaxParallelism: keyed.DefaultMaxParallelism,
			Tasks: []snapshot.TaskMeta{{Vertex: "vertex", Parallelism: 1, KeyGroupEnd: keyed.DefaultMaxParallelism, Keyed: h}}}); err != nil {
			b.Fatal(err)
		}
		delete(filled, n*1000+100) // free the source state
		restoreStore.st, restoreStore.h, restoreStore.raw = st, h, h.RawBytes
	}
	b.SetBytes(restoreStore.raw / int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	var last time.Duration
	for range b.N {
		start := time.Now()
		be, got, others := restoreNewest(b, restoreStore.st)
		if others != 0 {
			b.Fatalf("a full image holds %d operations other than puts", others)
		}
		if _, err := be.Register("state", keyed.KindValue, keyed.StateOptions{}); err != nil {
			b.Fatal(err)
		}
		if got != n || be.Len() != n {
			b.Fatalf("restored %d entries (backend has %d), want %d", got, be.Len(), n)
		}
		last = time.Since(start)
	}
	mib := float64(restoreStore.raw) / (1 << 20)
	Note("restore", "restore of %.0f MiB of keyed state (%d entries) from Pebble: %v (%.0f MB/s)", mib, n, last.Round(time.Millisecond), float64(restoreStore.raw)/last.Seconds()/1e6)
}

// openRestoreStore opens a store (S2) in a new temporary directory, which
// the restore cases keep for the life of the process.
func openRestoreStore(b *testing.B, prefix string) *snapshot.Store {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		b.Fatal(err)
	}
	st, err := snapshot.Open(dir, snapshot.Options{Compression: snapshot.CompressionS2, Logger: func(string, ...any) {}})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// restoreNewest restores job "bench"'s newest checkpoint of st into a new
// backend as the engine's recovery does: find the checkpoint and read its
// key groups straight into the task's backend, each block once, verifying
// it as it is read (one goroutine per task), applying deltas' operations.
// It returns the backend and how many puts and other operations it read.
func restoreNewest(b *testing.B, st *snapshot.Store) (be *keyed.Backend, puts, others int) {
	be, err := keyed.NewBackend(keyed.Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := st.Recover("bench", func(m *snapshot.Metadata) error {
		return st.ReadKeyed("bench", m.Tasks[0].Keyed, 0, keyed.DefaultMaxParallelism, func(_ int, state string, key, value []byte, op uint8) error {
			if op == snapshot.OpPut {
				puts++
			} else {
				others++
			}
			return be.RestoreChange(op, state, key, value)
		})
	})
	if err != nil || m == nil {
		b.Fatalf("Recover = %v, %v", m, err)
	}
	return be, puts, others
}
