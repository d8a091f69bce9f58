// Package crashfs is a test harness over Pebble's vfs.FS: a wrapper that
// numbers every mutating operation (create, write, sync, rename, remove,
// link, mkdir, lock, the fsync of a directory, ...) and lets a Hook decide,
// before each one runs, whether it fails. Over Pebble's crashable in-memory
// filesystem (vfs.NewCrashableMem) it is what the power-loss sweep uses to
// crash at operation k (the hook takes MemFS.CrashClone, which keeps only
// what was synced, directories included) and to inject EIO or ENOSPC at
// operation k.
//
// It also watches the rule "a failed fsync is never retried on the same
// file" (DESIGN.md, durability rule 4; Pebble after fsyncgate): a Sync of a
// file or directory whose earlier Sync failed is recorded as a violation
// (Violations), until the path is created, renamed or removed anew.
//
// It is not a new filesystem (DESIGN.md rule 5): every operation that
// runs is Pebble's. It imports only Pebble's vfs and is used by tests only.
package crashfs

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Kind is the kind of a mutating operation.
type Kind uint8

// The mutating operations, in the order of vfs.FS and vfs.File.
const (
	Create Kind = iota
	Link
	OpenReadWrite
	Remove
	RemoveAll
	Rename
	ReuseForWrite
	MkdirAll
	Lock
	Write
	WriteAt
	Preallocate
	Sync // of a file (Sync, SyncData, SyncTo)
	SyncDir
	numKinds
)

var kindNames = [numKinds]string{"create", "link", "open-rw", "remove", "remove-all", "rename",
	"reuse-for-write", "mkdir-all", "lock", "write", "write-at", "preallocate", "sync", "sync-dir"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Op is one mutating operation: its number (from 1, in the order the
// operations reached the wrapper), kind and path (the old path of a rename
// or link).
type Op struct {
	N    int64
	Kind Kind
	Path string
}

func (o Op) String() string { return fmt.Sprintf("op %d: %s %s", o.N, o.Kind, o.Path) }

// Hook is called before every mutating operation. nil lets the operation
// run; an error fails it without running it (the caller gets the error).
// It is called from any goroutine, concurrently.
type Hook func(op Op) error

// InjectedError is the error of an operation a Hook failed. It wraps Err
// (e.g. syscall.EIO or syscall.ENOSPC), so errors.Is sees the errno.
type InjectedError struct {
	Op  Op
	Err error
}

func (e *InjectedError) Error() string {
	return fmt.Sprintf("%s %s: %v (injected by crashfs at operation %d)", e.Op.Kind, e.Op.Path, e.Err, e.Op.N)
}

func (e *InjectedError) Unwrap() error { return e.Err }

// CrashAt returns a Hook that calls crash once, with operation k, before
// k runs, and fails nothing. crash typically takes MemFS.CrashClone (the
// state of the disk at a power loss just before k) and cancels the job;
// what the doomed run does afterwards does not reach the clone.
func CrashAt(k int64, crash func(op Op)) Hook {
	return func(op Op) error {
		if op.N == k {
			crash(op)
		}
		return nil
	}
}

// FailAt returns a Hook that fails operation k with err and lets every
// other operation run.
func FailAt(k int64, err error) Hook {
	return func(op Op) error {
		if op.N == k {
			return &InjectedError{Op: op, Err: err}
		}
		return nil
	}
}

// FailWhile returns a Hook that fails every operation for which fail
// returns true, with err.
func FailWhile(fail func(op Op) bool, err error) Hook {
	return func(op Op) error {
		if fail(op) {
			return &InjectedError{Op: op, Err: err}
		}
		return nil
	}
}

// FS wraps a vfs.FS. Create it with New.
type FS struct {
	inner vfs.FS
	hook  Hook
	n     atomic.Int64

	mu struct {
		sync.Mutex
		// failedSync holds, per path, the operation whose Sync failed.
		failedSync map[string]Op
		// violations are the Syncs retried after a failure.
		violations []string
		// injected counts the operations a Hook failed.
		injected []Op
	}
}

var _ vfs.FS = (*FS)(nil)

// New wraps inner; hook may be nil (count only).
func New(inner vfs.FS, hook Hook) *FS {
	fs := &FS{inner: inner, hook: hook}
	fs.mu.failedSync = make(map[string]Op)
	return fs
}

// Ops returns the number of mutating operations so far.
func (fs *FS) Ops() int64 { return fs.n.Load() }

// Violations returns a description of every Sync that retried a failed one.
func (fs *FS) Violations() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.mu.violations...)
}

// Injected returns the operations a Hook failed.
func (fs *FS) Injected() []Op {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]Op(nil), fs.mu.injected...)
}

// before numbers an operation and asks the hook.
func (fs *FS) before(kind Kind, path string) (Op, error) {
	op := Op{N: fs.n.Add(1), Kind: kind, Path: path}
	if kind == Sync || kind == SyncDir {
		fs.mu.Lock()
		if prev, ok := fs.mu.failedSync[path]; ok {
			fs.mu.violations = append(fs.mu.violations,
				fmt.Sprintf("%v retries the fsync that failed at %v", op, prev))
		}
		fs.mu.Unlock()
	}
	if fs.hook == nil {
		return op, nil
	}
	err := fs.hook(op)
	if err != nil {
		fs.mu.Lock()
		fs.mu.injected = append(fs.mu.injected, op)
		fs.mu.Unlock()
	}
	return op, err
}

// after records a failed Sync, and forgets it when the path is replaced.
func (fs *FS) after(op Op, err error) {
	switch {
	case (op.Kind == Sync || op.Kind == SyncDir) && err != nil:
		fs.mu.Lock()
		if _, ok := fs.mu.failedSync[op.Path]; !ok {
			fs.mu.failedSync[op.Path] = op
		}
		fs.mu.Unlock()
	case op.Kind == Create || op.Kind == Remove || op.Kind == RemoveAll || op.Kind == ReuseForWrite:
		if err == nil {
			fs.forget(op.Path)
		}
	}
}

func (fs *FS) forget(paths ...string) {
	fs.mu.Lock()
	for _, p := range paths {
		delete(fs.mu.failedSync, p)
	}
	fs.mu.Unlock()
}

func (fs *FS) wrap(f vfs.File, path string, dir bool) vfs.File {
	if f == nil {
		return nil
	}
	return &file{File: f, fs: fs, path: path, dir: dir}
}

func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	op, err := fs.before(Create, name)
	if err != nil {
		return nil, err
	}
	f, err := fs.inner.Create(name, category)
	fs.after(op, err)
	return fs.wrap(f, name, false), err
}

func (fs *FS) Link(oldname, newname string) error {
	op, err := fs.before(Link, oldname)
	if err != nil {
		return err
	}
	err = fs.inner.Link(oldname, newname)
	fs.after(op, err)
	return err
}

func (fs *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.inner.Open(name, opts...)
	return fs.wrap(f, name, false), err
}

func (fs *FS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	op, err := fs.before(OpenReadWrite, name)
	if err != nil {
		return nil, err
	}
	f, err := fs.inner.OpenReadWrite(name, category, opts...)
	fs.after(op, err)
	return fs.wrap(f, name, false), err
}

func (fs *FS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.inner.OpenDir(name)
	return fs.wrap(f, name, true), err
}

func (fs *FS) Remove(name string) error {
	op, err := fs.before(Remove, name)
	if err != nil {
		return err
	}
	err = fs.inner.Remove(name)
	fs.after(op, err)
	return err
}

func (fs *FS) RemoveAll(name string) error {
	op, err := fs.before(RemoveAll, name)
	if err != nil {
		return err
	}
	err = fs.inner.RemoveAll(name)
	fs.after(op, err)
	return err
}

func (fs *FS) Rename(oldname, newname string) error {
	op, err := fs.before(Rename, oldname)
	if err != nil {
		return err
	}
	err = fs.inner.Rename(oldname, newname)
	fs.after(op, err)
	if err == nil {
		fs.forget(oldname, newname)
	}
	return err
}

func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	op, err := fs.before(ReuseForWrite, newname)
	if err != nil {
		return nil, err
	}
	f, err := fs.inner.ReuseForWrite(oldname, newname, category)
	fs.after(op, err)
	if err == nil {
		fs.forget(oldname)
	}
	return fs.wrap(f, newname, false), err
}

func (fs *FS) MkdirAll(dir string, perm os.FileMode) error {
	op, err := fs.before(MkdirAll, dir)
	if err != nil {
		return err
	}
	err = fs.inner.MkdirAll(dir, perm)
	fs.after(op, err)
	return err
}

func (fs *FS) Lock(name string) (io.Closer, error) {
	op, err := fs.before(Lock, name)
	if err != nil {
		return nil, err
	}
	c, err := fs.inner.Lock(name)
	fs.after(op, err)
	return c, err
}

func (fs *FS) List(dir string) ([]string, error)            { return fs.inner.List(dir) }
func (fs *FS) Stat(name string) (vfs.FileInfo, error)       { return fs.inner.Stat(name) }
func (fs *FS) PathBase(path string) string                  { return fs.inner.PathBase(path) }
func (fs *FS) PathJoin(elem ...string) string               { return fs.inner.PathJoin(elem...) }
func (fs *FS) PathDir(path string) string                   { return fs.inner.PathDir(path) }
func (fs *FS) GetDiskUsage(p string) (vfs.DiskUsage, error) { return fs.inner.GetDiskUsage(p) }
func (fs *FS) Unwrap() vfs.FS                               { return fs.inner }

// file wraps a vfs.File of the FS.
type file struct {
	vfs.File
	fs   *FS
	path string
	dir  bool
}

func (f *file) do(kind Kind, run func() error) error {
	op, err := f.fs.before(kind, f.path)
	if err != nil {
		f.fs.after(op, err)
		return err
	}
	err = run()
	f.fs.after(op, err)
	return err
}

func (f *file) Write(p []byte) (n int, err error) {
	err = f.do(Write, func() (err error) { n, err = f.File.Write(p); return err })
	return n, err
}

func (f *file) WriteAt(p []byte, off int64) (n int, err error) {
	err = f.do(WriteAt, func() (err error) { n, err = f.File.WriteAt(p, off); return err })
	return n, err
}

func (f *file) Preallocate(off, length int64) error {
	return f.do(Preallocate, func() error { return f.File.Preallocate(off, length) })
}

func (f *file) syncKind() Kind {
	if f.dir {
		return SyncDir
	}
	return Sync
}

func (f *file) Sync() error { return f.do(f.syncKind(), f.File.Sync) }

func (f *file) SyncData() error { return f.do(f.syncKind(), f.File.SyncData) }

func (f *file) SyncTo(length int64) (fullSync bool, err error) {
	err = f.do(f.syncKind(), func() (err error) { fullSync, err = f.File.SyncTo(length); return err })
	return fullSync, err
}
