package crashfs

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestCountsFailsAndWatchesRetriedFsyncs(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var ops []Op
	fs := New(mem, func(op Op) error {
		ops = append(ops, op)
		if op.N == 4 {
			return &InjectedError{Op: op, Err: syscall.EIO}
		}
		return nil
	})
	if err := fs.MkdirAll("/d", 0o755); err != nil { // op 1
		t.Fatal(err)
	}
	f, err := fs.Create("/d/f", vfs.WriteCategoryUnspecified) // op 2
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil { // op 3
		t.Fatal(err)
	}
	err = f.Sync() // op 4: fails
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "injected by crashfs at operation 4") {
		t.Fatalf("Sync: got %v, want the injected EIO", err)
	}
	if got := mem.CrashClone(vfs.CrashCloneCfg{}); got == nil {
		t.Fatal("no clone")
	}
	if len(fs.Violations()) != 0 {
		t.Fatalf("violations before any retry: %v", fs.Violations())
	}
	_ = f.Sync() // op 5: a retry
	if v := fs.Violations(); len(v) != 1 || !strings.Contains(v[0], "op 5: sync /d/f retries the fsync that failed at op 4") {
		t.Fatalf("violations: %q", v)
	}
	f.Close()
	d, err := fs.OpenDir("/d")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil { // op 6
		t.Fatal(err)
	}
	d.Close()
	if err := fs.Rename("/d/f", "/d/g"); err != nil { // op 7
		t.Fatal(err)
	}
	want := []Kind{MkdirAll, Create, Write, Sync, Sync, SyncDir, Rename}
	if fs.Ops() != int64(len(want)) || len(ops) != len(want) {
		t.Fatalf("%d operations (%v), want %d", fs.Ops(), ops, len(want))
	}
	for i, k := range want {
		if ops[i].Kind != k || ops[i].N != int64(i+1) {
			t.Errorf("operation %d is %v, want %v", i+1, ops[i], k)
		}
	}
	if inj := fs.Injected(); len(inj) != 1 || inj[0].N != 4 {
		t.Errorf("Injected() = %v", inj)
	}
}

// CrashAt clones before operation k runs: what k would do is not in the
// clone.
func TestCrashAtClonesBeforeTheOperation(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var clone *vfs.MemFS
	fs := New(mem, CrashAt(3, func(Op) { clone = mem.CrashClone(vfs.CrashCloneCfg{}) }))
	if err := fs.MkdirAll("/d", 0o755); err != nil { // 1
		t.Fatal(err)
	}
	d, _ := fs.OpenDir("/")
	if err := d.Sync(); err != nil { // 2
		t.Fatal(err)
	}
	d.Close()
	f, err := fs.Create("/d/f", vfs.WriteCategoryUnspecified) // 3: the crash
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if clone == nil {
		t.Fatal("CrashAt never called crash")
	}
	if _, err := clone.Stat("/d"); err != nil {
		t.Fatalf("the synced directory is not in the clone: %v", err)
	}
	if _, err := clone.Stat("/d/f"); err == nil {
		t.Fatal("the clone holds the file created at the crash")
	}
}
