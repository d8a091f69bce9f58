package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/atomicfile"
	"github.com/streamd/streamd/internal/crashfs"
)

// twoCheckpoints writes checkpoint 1 (key groups [0, 8) of scope "agg")
// and checkpoint 2, which rewrites key group 3 and reuses the rest from 1.
func twoCheckpoints(t *testing.T, s *Store) (*memView, *Metadata) {
	t.Helper()
	v := newMemView("a", "b")
	v.counters(0, 8, 40)
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 8, v, nil)
	commit(t, s, "job", 1, h1)
	v.counters(3, 4, 5)
	h2 := mustWrite(t, s, "job", 2, "agg", 0, 8, v, h1)
	if h2.ReusedBytes == 0 {
		t.Fatal("checkpoint 2 reused nothing: the test needs an incremental checkpoint")
	}
	return v, commit(t, s, "job", 2, h2)
}

func TestExportSavepointRoundTrip(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	v, m2 := twoCheckpoints(t, s)
	dir := filepath.Join(t.TempDir(), "sp", "one")
	d, err := s.ExportSavepoint("job", 2, dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job != "job" || d.CheckpointID != 2 || d.Blocks == 0 || d.StoredBytes != handleStored(m2) || d.MetadataFormat != MetadataFormatVersion {
		t.Fatalf("descriptor %+v (metadata stored %d)", d, m2.StoredBytes)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("savepoint dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	text, err := os.ReadFile(filepath.Join(dir, SavepointDescriptorName))
	if err != nil || !strings.HasPrefix(string(text), "streamd-savepoint v1 job=job checkpoint=2 completed=") {
		t.Fatalf("descriptor file %q, %v", text, err)
	}
	got, err := ReadSavepointDescriptor(nil, dir)
	if err != nil || got != d {
		t.Fatalf("ReadSavepointDescriptor = %+v, %v; want %+v", got, err, d)
	}

	sp, d2, err := OpenSavepoint(dir, Options{Logger: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if d2 != d {
		t.Fatalf("OpenSavepoint descriptor %+v, want %+v", d2, d)
	}
	if sd, ok := sp.Savepoint(); !ok || sd != d {
		t.Fatalf("Savepoint() = %+v, %v", sd, ok)
	}
	m, err := sp.LoadMetadata("job", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Verify(m); err != nil {
		t.Fatalf("the savepoint does not verify: %v", err)
	}
	if got, want := readAll(t, sp, "job", m.Tasks[0].Keyed, 0, 8), v.want(0, 8); got != want {
		t.Fatalf("savepoint state differs:\n got %q\nwant %q", got, want)
	}
	// Verbatim: the same metadata bytes, and exactly the referenced blocks
	// (those of both writers), nothing else.
	if a, b := allKeys(t, s, "mjob\x00"), allKeys(t, sp, "mjob\x00"); len(b) != 1 || string(b[0].value) != string(a[len(a)-1].value) {
		t.Fatalf("savepoint metadata is not the checkpoint's, verbatim")
	}
	want := 0
	for _, r := range m.Tasks[0].Keyed.KeyGroups {
		want += r.Blocks
	}
	got2 := blockWriters(t, sp, "job")
	if got2[1] == 0 || got2[2] == 0 || got2[1]+got2[2] != want || len(got2) != 2 {
		t.Fatalf("savepoint blocks per writer %v, want %d in all from writers 1 and 2", got2, want)
	}
	// Read-only: a write is refused.
	if err := sp.CommitCheckpoint(&Metadata{Job: "job", CheckpointID: 3}); err == nil {
		t.Fatal("a savepoint opened for reading accepted a checkpoint")
	}
	// The store it came from is not a savepoint.
	if _, ok := s.Savepoint(); ok {
		t.Fatal("Savepoint() of a data dir says ok")
	}
}

// handleStored sums the stored bytes of every key group m references.
func handleStored(m *Metadata) int64 {
	var n int64
	for _, t := range m.Tasks {
		if t.Keyed != nil {
			for _, r := range t.Keyed.KeyGroups {
				n += r.StoredBytes
			}
		}
	}
	return n
}

func TestExportSavepointTarget(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	twoCheckpoints(t, s)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExportSavepoint("job", 2, full); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("export into a non-empty dir: %v", err)
	}
	if names, _ := os.ReadDir(full); len(names) != 1 {
		t.Fatalf("the refused export touched the dir: %v", names)
	}
	empty := t.TempDir()
	if _, err := s.ExportSavepoint("job", 2, empty); err != nil {
		t.Fatalf("export into an empty dir: %v", err)
	}
	if _, err := s.ExportSavepoint("job", 7, filepath.Join(t.TempDir(), "sp")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("export of a missing checkpoint: %v", err)
	}
	if _, err := ReadSavepointDescriptor(nil, full); !errors.Is(err, ErrNotSavepoint) {
		t.Fatalf("ReadSavepointDescriptor of a plain dir: %v", err)
	}
	if _, _, err := OpenSavepoint(s.Dir(), Options{}); !errors.Is(err, ErrNotSavepoint) {
		t.Fatalf("OpenSavepoint of a data dir: %v", err)
	}
}

// TestExportSavepointRefusesCorruption: a damaged block of the checkpoint
// is found while copying; the export fails naming the checkpoint and
// leaves no directory.
func TestExportSavepointRefusesCorruption(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	twoCheckpoints(t, s)
	kvs := allKeys(t, s, string(writerPrefix(nil, "job", 1)))
	bad := kvs[len(kvs)/2]
	bad.value[len(bad.value)/2] ^= 0x10
	if err := s.db.Set(bad.key, bad.value, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "sp")
	_, err := s.ExportSavepoint("job", 2, dir)
	if !IsCorruption(err) || !strings.Contains(err.Error(), "checkpoint 2") || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("export of a corrupt checkpoint: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed export left %s: %v", dir, err)
	}
}

// TestHoldKeepsCheckpoint: a held checkpoint survives retention with its
// blocks, however old, until released.
func TestHoldKeepsCheckpoint(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	v := newMemView("a")
	var prev *KeyedHandle
	for id := uint64(1); id <= 4; id++ {
		v.counters(int(id), int(id)+1, 20) // each checkpoint changes one key group
		prev = mustWrite(t, s, "job", id, "agg", 0, 8, v, prev)
		commit(t, s, "job", id, prev)
		if id == 2 {
			if _, err := s.Hold("job", 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	release, err := s.Hold("job", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold("job", 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Hold of a missing checkpoint: %v", err)
	}
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	ids, _ := s.Completed("job")
	if want := []uint64{1, 2, 4}; !slices.Equal(ids, want) {
		t.Fatalf("after Retain(1) with 1 and 2 held: %v, want %v", ids, want)
	}
	for _, id := range ids {
		m, err := s.LoadMetadata("job", id)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(m); err != nil {
			t.Fatalf("held checkpoint %d lost blocks: %v", id, err)
		}
	}
	release()
	release() // a second call does nothing
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Completed("job"); !slices.Equal(ids, []uint64{2, 4}) {
		t.Fatalf("after releasing 1: %v, want [2 4]", ids)
	}
}

// TestExportSavepointUnderFaults fails, and separately crashes at, every
// mutating operation of an export on Pebble's crashable in-memory
// filesystem: whatever is left either has no valid descriptor or is a
// whole savepoint that opens and verifies.
func TestExportSavepointUnderFaults(t *testing.T) {
	// setup opens a store on a fresh crashable MemFS with two checkpoints;
	// hook(mem) then sees the export's mutating operations, numbered from 1.
	setup := func(hook func(mem *vfs.MemFS) crashfs.Hook) (*vfs.MemFS, *crashfs.FS, *Store, int64) {
		mem := vfs.NewCrashableMem()
		var h crashfs.Hook
		if hook != nil {
			h = hook(mem)
		}
		var base atomic.Int64 // the op count when the export starts
		var armed atomic.Bool
		fs := crashfs.New(mem, func(op crashfs.Op) error {
			if !armed.Load() || h == nil {
				return nil
			}
			op.N -= base.Load()
			return h(op)
		})
		s, err := Open("/data", Options{FS: fs, Logger: func(string, ...any) {}, BlockSizeBytes: MinBlockSizeBytes})
		if err != nil {
			t.Fatal(err)
		}
		twoCheckpoints(t, s)
		base.Store(fs.Ops())
		armed.Store(true)
		return mem, fs, s, base.Load()
	}
	// checkLeft checks what fs holds at /sp: no valid descriptor, or a
	// whole savepoint.
	checkLeft := func(what string, fs vfs.FS) (valid bool) {
		t.Helper()
		if _, err := ReadSavepointDescriptor(fs, "/sp"); err != nil {
			if !errors.Is(err, ErrNotSavepoint) {
				t.Fatalf("%s: ReadSavepointDescriptor: %v, want ErrNotSavepoint", what, err)
			}
			return false
		}
		sp, d, err := OpenSavepoint("/sp", Options{FS: fs, Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatalf("%s: the descriptor is valid, but the savepoint does not open: %v", what, err)
		}
		defer sp.Close()
		m, err := sp.LoadMetadata(d.Job, d.CheckpointID)
		if err == nil {
			err = sp.Verify(m)
		}
		if err != nil {
			t.Fatalf("%s: the descriptor is valid, but the savepoint does not verify: %v", what, err)
		}
		return true
	}

	mem, fs, s, base := setup(nil)
	if _, err := s.ExportSavepoint("job", 2, "/sp"); err != nil {
		t.Fatal(err)
	}
	total := fs.Ops() - base
	// Once ExportSavepoint returned, a power loss keeps the savepoint.
	if !checkLeft("no fault", mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})) {
		t.Fatal("a power loss after the export returned left no valid savepoint")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("an export takes %d mutating operations", total)

	failed, crashedValid := 0, 0
	for k := int64(1); k <= total; k++ {
		at := "export op " + strconv.FormatInt(k, 10)
		// An error at operation k.
		mem, fs, s, _ := setup(func(*vfs.MemFS) crashfs.Hook { return crashfs.FailAt(k, syscall.EIO) })
		_, err := s.ExportSavepoint("job", 2, "/sp")
		// (Pebble ignores some failures, e.g. of removing an obsolete
		// marker: then the export succeeds.)
		switch valid := checkLeft("EIO at "+at, mem); {
		case err != nil && valid:
			t.Fatalf("EIO at %s: ExportSavepoint failed (%v) but left a valid savepoint", at, err)
		case err == nil && !valid:
			t.Fatalf("EIO at %s (%v): ExportSavepoint returned nil but left no valid savepoint", at, fs.Injected())
		case err != nil:
			failed++
		}
		if v := fs.Violations(); len(v) > 0 {
			t.Fatalf("EIO at %s: a failed fsync was retried: %v", at, v)
		}
		_ = s.Close()

		// A power loss just before operation k: the clone keeps only what
		// was synced.
		var clone *vfs.MemFS
		_, _, s, _ = setup(func(mem *vfs.MemFS) crashfs.Hook {
			return crashfs.CrashAt(k, func(crashfs.Op) {
				clone = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			})
		})
		if _, err := s.ExportSavepoint("job", 2, "/sp"); err != nil {
			t.Fatalf("crash at %s: the export itself failed: %v", at, err)
		}
		if clone == nil {
			t.Fatalf("crash at %s: operation never reached", at)
		}
		if checkLeft("crash at "+at, clone) {
			crashedValid++
		}
		_ = s.Close()
	}
	if failed == 0 {
		t.Fatal("no injected error failed an export: the sweep tested nothing")
	}
	t.Logf("%d injected errors failed the export; %d of %d crashes left a whole savepoint, the rest none", failed, crashedValid, total)
}

// FuzzSavepointDescriptor: the descriptor decoder never panics, and what it
// accepts encodes to a descriptor that decodes to the same.
func FuzzSavepointDescriptor(f *testing.F) {
	good := SavepointDescriptor{Job: "counts", CheckpointID: 42, MetadataFormat: 2, Blocks: 7, StoredBytes: 1234}
	f.Add(atomicfile.Encode(good.encode()))
	f.Add([]byte("streamd-savepoint v1 job=a checkpoint=1 completed=2026-01-01T00:00:00Z metadata_format=2 blocks=0 stored_bytes=0 crc=00000000\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeSavepointDescriptor("/sp", b)
		if err != nil {
			return
		}
		again, err := decodeSavepointDescriptor("/sp", atomicfile.Encode(d.encode()))
		if err != nil || !again.CompletedAt.Equal(d.CompletedAt) {
			t.Fatalf("decoded %+v does not decode again: %+v, %v", d, again, err)
		}
		again.CompletedAt = d.CompletedAt
		if again != d {
			t.Fatalf("decoded %+v decodes again as %+v", d, again)
		}
	})
}
