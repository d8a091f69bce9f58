package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func noRead(*Metadata) error { return nil }

// The record names the newest completed checkpoint, after its metadata.
func TestRecordFollowsCommits(t *testing.T) {
	s, _ := openStore(t, Options{})
	if id, ok, err := s.CompletedRecord("job"); err != nil || ok {
		t.Fatalf("fresh store: record %d, %v, %v; want none", id, ok, err)
	}
	for id := uint64(1); id <= 3; id++ {
		commit(t, s, "job", id)
		if got, ok, err := s.CompletedRecord("job"); err != nil || !ok || got != id {
			t.Fatalf("after commit %d: record %d, %v, %v", id, got, ok, err)
		}
	}
	if _, ok, _ := s.CompletedRecord("other"); ok {
		t.Fatal("job other has a record")
	}
	if m, err := s.Recover("job", noRead); err != nil || m.CheckpointID != 3 {
		t.Fatalf("Recover = %v, %v; want checkpoint 3", m, err)
	}
}

// A store that lost a completed checkpoint (here: a power loss keeps
// Pebble as of checkpoint 1, but the record of checkpoint 2 is restored
// beside it, as when data dir files come from different times; or Pebble
// is gone altogether) is reported as such, not recovered from an older
// checkpoint or started over.
func TestRecordDetectsLostCheckpoint(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, _ := openStoreIn(t, "/data", Options{FS: mem})
	commit(t, s, "job", 1)
	older := mem.CrashClone(vfs.CrashCloneCfg{})
	commit(t, s, "job", 2)
	newer := mem.CrashClone(vfs.CrashCloneCfg{})
	s.Close()

	rec, err := newer.Open("/data/completed/job")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := rec.Read(buf)
	rec.Close()
	f, err := older.Create("/data/completed/job", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(buf[:n])
	f.Close()

	s2, _ := openStoreIn(t, "/data", Options{FS: older})
	_, err = s2.Recover("job", noRead)
	if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "lost completed checkpoint 2 of job job") || !strings.Contains(err.Error(), "its newest is 1") {
		t.Fatalf("Recover = %v, want ErrLost naming checkpoint 2 and Pebble's 1", err)
	}
	s2.Close()

	// Pebble gone, the record kept.
	if err := older.RemoveAll("/data/pebble"); err != nil {
		t.Fatal(err)
	}
	s3, _ := openStoreIn(t, "/data", Options{FS: older})
	if _, err := s3.Recover("job", noRead); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "it holds none") {
		t.Fatalf("Recover with Pebble gone = %v, want ErrLost", err)
	}
}

// A damaged record is corruption, not "no record".
func TestRecordDamaged(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStoreIn(t, dir, Options{})
	commit(t, s, "job", 1)
	path := filepath.Join(dir, recordDirName, "job")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{b[:len(b)-3], []byte(strings.Replace(string(b), "checkpoint=1", "checkpoint=7", 1)), {}} {
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recover("job", noRead); !IsCorruption(err) || !strings.Contains(err.Error(), "is damaged") {
			t.Fatalf("Recover with record %q = %v; want a corruption error", bad, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("streamd-completed-checkpoint v1 job=j checkpoint=3 crc=00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeRecord("j", b) // must not panic
	})
}
