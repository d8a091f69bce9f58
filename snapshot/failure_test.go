package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/crashfs"
)

// Pebble failures are Store failures (ErrStoreFailed), never panics or
// hangs (issue 15, item 3; DESIGN.md durability rule 4). Each case runs
// the Store on Pebble's in-memory filesystem behind crashfs, makes a kind
// of operation fail from some point on, and checks that the call that hits
// it returns an error naming the data dir and the fault, that every later
// call returns it at once, and that Close returns — all within a timeout.

const failureTestTimeout = 30 * time.Second

// withTimeout runs fn and fails the test if it does not return in time
// (a hang inside Pebble).
func withTimeout(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(failureTestTimeout):
		t.Fatalf("%s hung for %v", what, failureTestTimeout)
	}
}

// failingStore opens a store in /data on a fresh crashable MemFS behind
// crashfs; from the moment the returned switch is set, every operation
// that match accepts fails with errno.
func failingStore(t *testing.T, opts Options, match func(op crashfs.Op) bool, errno syscall.Errno) (*Store, *atomic.Bool, *logBuffer) {
	t.Helper()
	var on atomic.Bool
	fs := crashfs.New(vfs.NewCrashableMem(), crashfs.FailWhile(func(op crashfs.Op) bool {
		return on.Load() && match(op)
	}, errno))
	logs := &logBuffer{}
	opts.FS = fs
	opts.Logger = logs.logf
	s, err := Open("/data", opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, &on, logs
}

func isWAL(op crashfs.Op) bool { return strings.HasSuffix(op.Path, ".log") }

func isManifest(op crashfs.Op) bool {
	return strings.HasPrefix(filepath.Base(op.Path), "MANIFEST") || strings.Contains(op.Path, "marker.manifest")
}

// checkFailed checks err and the Store after a failure.
func checkFailed(t *testing.T, s *Store, err error, diskFull bool) {
	t.Helper()
	if !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("err = %v, want ErrStoreFailed", err)
	}
	msg := err.Error()
	for _, want := range []string{"/data", "injected by crashfs"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %q: %s", want, msg)
		}
	}
	if IsDiskFull(err) != diskFull || strings.Contains(msg, "the disk is full") != diskFull {
		t.Errorf("IsDiskFull = %v, want %v: %s", IsDiskFull(err), diskFull, msg)
	}
	if s.Err() == nil {
		t.Errorf("Err() = nil after a failure")
	}
	withTimeout(t, "calls after the failure", func() {
		v := newMemView("s")
		v.counters(0, 4, 10)
		if _, err := s.WriteKeyed("job", 99, "scope", 0, 4, v, nil); !errors.Is(err, ErrStoreFailed) {
			t.Errorf("WriteKeyed after the failure = %v, want ErrStoreFailed", err)
		}
		if _, err := s.Completed("job"); !errors.Is(err, ErrStoreFailed) {
			t.Errorf("Completed after the failure = %v, want ErrStoreFailed", err)
		}
		if err := s.Retain("job", 1); !errors.Is(err, ErrStoreFailed) {
			t.Errorf("Retain after the failure = %v, want ErrStoreFailed", err)
		}
	})
	withTimeout(t, "Close after the failure", func() {
		if err := s.Close(); !errors.Is(err, ErrStoreFailed) {
			t.Errorf("Close after the failure = %v, want the failure", err)
		}
	})
}

// writeAndCommit writes a checkpoint of a few key groups and commits it,
// returning the first error.
func writeAndCommit(s *Store, id uint64, prev *KeyedHandle, entries int) (*KeyedHandle, error) {
	v := newMemView("a", "b")
	v.counters(0, 16, entries)
	for kg := range 16 {
		v.versions[kg] = id*100 + uint64(kg)
	}
	h, err := s.WriteKeyed("job", id, "scope", 0, 16, v, prev)
	if err != nil {
		return nil, err
	}
	m := &Metadata{Job: "job", CheckpointID: id, MaxParallelism: 128, Fingerprint: "fp",
		TriggeredAtUnixNano: int64(id) * 1000, CompletedAtUnixNano: int64(id)*1000 + 5,
		Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, KeyGroupEnd: 16, Keyed: h}}}
	return h, s.CommitCheckpoint(m)
}

func TestPebbleFailureIsStoreFailure(t *testing.T) {
	f := func(name string, match func(crashfs.Op) bool, errno syscall.Errno, opts Options, ingest bool) {
		t.Run(name, func(t *testing.T) {
			s, on, logs := failingStore(t, opts, match, errno)
			if ingest {
				s.ingestThresholdBytes = 1 << 10
			}
			var err error
			withTimeout(t, "the checkpoint that fails", func() {
				var h *KeyedHandle
				if h, err = writeAndCommit(s, 1, nil, 50); err != nil {
					t.Errorf("checkpoint 1, before the fault: %v", err)
					return
				}
				on.Store(true)
				for id := uint64(2); id < 50 && err == nil; id++ {
					h, err = writeAndCommit(s, id, h, 50)
				}
			})
			if t.Failed() {
				return
			}
			checkFailed(t, s, err, errno == syscall.ENOSPC)
			if !strings.Contains(logs.String(), "FATAL") {
				t.Errorf("Pebble's fatal error was not logged:\n%s", logs)
			}
		})
	}
	// Pebble's WAL: a failed write or sync is "fatal commit error" on the
	// committing goroutine.
	f("wal-write-eio", func(op crashfs.Op) bool { return isWAL(op) && op.Kind == crashfs.Write }, syscall.EIO, Options{}, false)
	f("wal-write-enospc", func(op crashfs.Op) bool { return isWAL(op) && op.Kind == crashfs.Write }, syscall.ENOSPC, Options{}, false)
	f("wal-sync-eio", func(op crashfs.Op) bool { return isWAL(op) && op.Kind == crashfs.Sync }, syscall.EIO, Options{}, false)
	// An ingestion's MANIFEST write fails on the ingesting goroutine.
	f("ingest-manifest-enospc", func(op crashfs.Op) bool { return isManifest(op) }, syscall.ENOSPC, Options{}, true)
}

// TestPebbleBackgroundFailure: a flush's MANIFEST write fails on one of
// Pebble's own goroutines; the Store records it (Err), and every call
// after it returns it.
func TestPebbleBackgroundFailure(t *testing.T) {
	opts := Options{PebbleOptions: func(o *pebbleOptions) { o.MemTableSize = 256 << 10 }}
	s, on, _ := failingStore(t, opts, isManifest, syscall.EIO)
	on.Store(true)
	var err error
	withTimeout(t, "writing until a flush fails", func() {
		var h *KeyedHandle
		deadline := time.Now().Add(failureTestTimeout / 2)
		for id := uint64(1); err == nil && s.Err() == nil && time.Now().Before(deadline); id++ {
			h, err = writeAndCommit(s, id, h, 500)
		}
		for s.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
	if s.Err() == nil {
		t.Fatalf("no failure recorded (last error %v)", err)
	}
	if err == nil {
		err = s.Err()
	}
	checkFailed(t, s, err, false)
}

// TestOpenOnFullDisk: Open refuses a filesystem with less free space than
// the headroom, before Pebble starts, saying the disk is full.
func TestOpenOnFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 20, TotalBytes: 1 << 30, UsedBytes: 1<<30 - 1<<20})
	var err error
	withTimeout(t, "Open", func() { _, err = Open("/data", Options{FS: mem}) })
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "the disk is full") || !strings.Contains(err.Error(), "/data") {
		t.Fatalf("Open on a full disk = %v, want ErrDiskFull naming the data dir", err)
	}
	if names, _ := mem.List("/data"); len(names) > 0 && strings.Contains(strings.Join(names, " "), "pebble") {
		t.Errorf("Pebble was started on a full disk: /data holds %v", names)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30, UsedBytes: 1 << 30})
	s, err := Open("/data", Options{FS: mem})
	if err != nil {
		t.Fatalf("Open once space returned: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteKeyedDeclinesWhenFull: WriteKeyed checks the free space against
// twice the previous checkpoint's state plus the headroom, and writes
// nothing when it does not fit; once space returns the next one succeeds.
func TestWriteKeyedDeclinesWhenFull(t *testing.T) {
	mem := vfs.NewMem()
	const headroom = 1 << 20
	setFree := func(n uint64) {
		mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: n, TotalBytes: 1 << 40, UsedBytes: 1<<40 - n})
	}
	setFree(1 << 30)
	s, err := Open("/data", Options{FS: mem, DiskHeadroomBytes: headroom, Logger: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := writeAndCommit(s, 1, nil, 200)
	if err != nil {
		t.Fatal(err)
	}
	size := h.totalStoredBytes()
	setFree(uint64(headroom + 2*size - 1))
	if _, err := writeAndCommit(s, 2, h, 200); !errors.Is(err, ErrDiskFull) || !IsDiskFull(err) ||
		!strings.Contains(err.Error(), "checkpoint 2 of job job") || !strings.Contains(err.Error(), "the disk is full") {
		t.Fatalf("checkpoint 2 on a full disk: %v, want ErrDiskFull naming it", err)
	}
	if w := blockWriters(t, s, "job"); w[2] != 0 {
		t.Errorf("a declined checkpoint wrote %d blocks", w[2])
	}
	if s.Err() != nil {
		t.Fatalf("a declined checkpoint failed the store: %v", s.Err())
	}
	setFree(uint64(headroom + 2*size))
	if _, err := writeAndCommit(s, 3, h, 200); err != nil {
		t.Fatalf("checkpoint 3 once space returned: %v", err)
	}
}

// TestCorruptSSTableIsCorruption: a damaged sstable read during recovery is
// a corruption error (so recovery falls back), not Pebble's default
// Fatalf (which panicked the process: issue 15).
func TestCorruptSSTableIsCorruption(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStoreIn(t, dir, Options{Compression: CompressionNone})
	s.ingestThresholdBytes = 1 << 10 // the blocks go to an sstable of their own
	h, err := writeAndCommit(s, 1, nil, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, pebbleDirName, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable")
	}
	for _, p := range ssts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/3] ^= 0xff // a data block
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2, logs := openStoreIn(t, dir, Options{})
	withTimeout(t, "ReadKeyed", func() {
		err = s2.ReadKeyed("job", h, 0, 16, func(int, string, []byte, []byte, uint8) error { return nil })
	})
	if !IsCorruption(err) {
		t.Fatalf("ReadKeyed of a damaged sstable = %v, want corruption", err)
	}
	if s2.Err() != nil {
		t.Errorf("a corrupt block failed the store: %v", s2.Err())
	}
	if !strings.Contains(logs.String(), "corruption") {
		t.Errorf("the corruption was not logged:\n%s", logs)
	}
}
