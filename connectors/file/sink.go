package file

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/internal/atomicfile"
	"github.com/streamd/streamd/internal/failpoint"
)

// TempDirName is the dot-named folder inside the sink's directory that
// holds work in progress.
const TempDirName = ".streamd-inprogress"

const (
	tmpSuffix   = ".jsonl.tmp"
	finalSuffix = ".jsonl"
	// DefaultBufferBytes is the write buffer of each task's file.
	DefaultBufferBytes = 256 << 10
)

// SinkOptions configures a file sink.
type SinkOptions[T any] struct {
	// Dir is the output directory, created if missing.
	Dir string
	// Encode appends one record, without the newline.
	Encode func(dst []byte, v *T) []byte
	// BufferBytes is the write buffer per task. Default DefaultBufferBytes.
	BufferBytes int
	// FS is the filesystem seam every file operation of the sink goes
	// through (Pebble's vfs.FS, as the checkpoint store's). Default
	// vfs.Default, the operating system's; tests use Pebble's crashable
	// in-memory FS to crash at any operation.
	FS vfs.FS
}

// Sink is the file sink.
type Sink[T any] struct {
	opts SinkOptions[T]
	job  string
	// run identifies this Sink in its lock and commit marker (marker.go).
	run string

	// commits guards the directory's lock and the commit marker.
	commits struct {
		sync.Mutex
		lock    io.Closer // the directory's lock, nil when not held
		through uint64    // the highest id this Sink recorded in the marker
		err     error     // a failed marker write: every later commit fails
	}

	// dirSync remembers, per directory, the first failed fsync: the
	// writers of all tasks share the directories, and after a failed
	// fsync nothing must rely on a later one of the same directory (its
	// outcome is unknown, and the kernel may report the next fsync as
	// successful although the entries were lost: "fsyncgate"). So a
	// directory whose fsync failed is never fsynced again by this Sink;
	// every later commit into it fails with the first error. The fsyncs of
	// one directory are serialized, so that none starts before an earlier
	// one's failure is known.
	dirSync struct {
		sync.Mutex
		dirs map[string]*dirSyncState // guarded
	}
}

// NewSink returns a file sink for job (the job's name prefixes its files,
// so several jobs may share a directory).
func NewSink[T any](job string, opts SinkOptions[T]) (*Sink[T], error) {
	if opts.Dir == "" {
		return nil, errors.New("file: sink directory is empty")
	}
	if opts.Encode == nil {
		return nil, errors.New("file: sink needs an Encode function")
	}
	if opts.BufferBytes == 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	run, err := newRunID()
	if err != nil {
		return nil, err
	}
	return &Sink[T]{opts: opts, job: job, run: run}, nil
}

func (s *Sink[T]) tmpDir() string { return s.opts.FS.PathJoin(s.opts.Dir, TempDirName) }

// mkdirs creates the output directory and its work folder, durably: the
// parent of every directory it creates is fsynced, so that a power loss
// cannot forget the work folder (and the pre-committed files in it) once a
// checkpoint lists them.
func (s *Sink[T]) mkdirs() error {
	if err := atomicfile.MkdirAll(s.opts.FS, s.tmpDir(), s.syncDir); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// txn is one transaction: a temporary file and its final name.
type txn struct {
	Checkpoint uint64 `json:"checkpoint"`
	Name       string `json:"name"` // without suffix
}

type sinkState struct {
	Pending []txn `json:"pending"`
}

func decodeState(b []byte) (sinkState, error) {
	var st sinkState
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("file: cannot decode sink state: %w", err)
	}
	for _, t := range st.Pending {
		if !validName(t.Name) {
			return st, fmt.Errorf("file: sink state names an invalid file %q", t.Name)
		}
	}
	return st, nil
}

func validName(n string) bool {
	return n != "" && !strings.ContainsAny(n, "/\\\x00") && n != "." && n != ".." && !strings.HasPrefix(n, ".")
}

// Recover commits the transactions the restored checkpoint lists and
// deletes every other temporary file of this job.
func (s *Sink[T]) Recover(states [][]byte) error {
	if err := s.lock(); err != nil {
		return err
	}
	keep := make(map[string]bool)
	var decoded []sinkState
	var through uint64
	for _, b := range states {
		st, err := decodeState(b)
		if err != nil {
			return err
		}
		decoded = append(decoded, st)
		for _, t := range st.Pending {
			through = max(through, t.Checkpoint)
		}
	}
	if through > 0 {
		if err := s.recordCommit(through); err != nil {
			return err
		}
	}
	for _, st := range decoded {
		for _, t := range st.Pending {
			if err := s.commit(t.Name); err != nil {
				return err
			}
			keep[t.Name] = true
		}
	}
	names, err := s.opts.FS.List(s.tmpDir())
	if err != nil {
		return fmt.Errorf("file: cannot list %s: %w", s.tmpDir(), err)
	}
	removed := false
	for _, name := range names {
		if !s.ownsTemp(name) {
			continue
		}
		if keep[strings.TrimSuffix(name, tmpSuffix)] {
			continue // cannot happen: committed files left the folder
		}
		if err := s.opts.FS.Remove(s.opts.FS.PathJoin(s.tmpDir(), name)); err != nil && !isNotExist(err) {
			return fmt.Errorf("file: cannot delete stray temporary file %s: %w", name, err)
		}
		removed = true
	}
	if removed {
		return s.syncDir(s.tmpDir())
	}
	return nil
}

// ownsTemp reports whether name is a temporary file of this job:
// JOB-TASK-RUN-SEQ.jsonl.tmp with exactly these three fields after the
// job's name, so that job "a" never claims the files of job "a-b".
func (s *Sink[T]) ownsTemp(name string) bool {
	rest, ok := strings.CutPrefix(name, s.job+"-")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, tmpSuffix)
	if !ok {
		return false
	}
	f := strings.Split(rest, "-")
	return len(f) == 3 && isDigits(f[0]) && len(f[1]) == 16 && isHex(f[1]) && isDigits(f[2])
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func isHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// commit renames a transaction's temporary file into the directory and
// fsyncs the directory. A transaction whose temporary file is gone and
// whose target exists is already committed.
func (s *Sink[T]) commit(name string) error {
	fsys := s.opts.FS
	tmp := fsys.PathJoin(s.tmpDir(), name+tmpSuffix)
	final := fsys.PathJoin(s.opts.Dir, name+finalSuffix)
	if err := fsys.Rename(tmp, final); err != nil {
		if isNotExist(err) {
			if _, serr := fsys.Stat(final); serr == nil {
				// Committed before; make sure the rename is durable.
				return s.syncDir(s.opts.Dir)
			}
			return fmt.Errorf("file: cannot commit %s: neither the temporary file nor the committed file exists (data of a completed checkpoint is lost)", name)
		}
		return fmt.Errorf("file: cannot commit %s: %w", name, err)
	}
	failpoint.Hit("sink-after-rename")
	return s.syncDir(s.opts.Dir)
}

// NewWriter creates one task's writer.
func (s *Sink[T]) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[T], error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	return &writer[T]{s: s, ctx: ctx, run: hex.EncodeToString(rnd[:])}, nil
}

type writer[T any] struct {
	s       *Sink[T]
	ctx     engine.SinkContext
	run     string
	seq     int
	f       vfs.File
	bw      *bufio.Writer
	name    string // open transaction, "" if none
	buf     []byte
	pending []txn
	err     error // sticky
}

func (w *writer[T]) begin() error {
	w.seq++
	w.name = fmt.Sprintf("%s-%d-%s-%06d", w.s.job, w.ctx.Index, w.run, w.seq)
	// vfs.FS.Create replaces an existing file where os.O_EXCL refused
	// it. Names never repeat (64 random bits per writer, then a sequence
	// number), and only this writer creates its names, so nothing else
	// can create the name between the Stat and the Create: the Stat keeps
	// O_EXCL's guarantee that a transaction never overwrites a file.
	fs := w.s.opts.FS
	path := fs.PathJoin(w.s.tmpDir(), w.name+tmpSuffix)
	if _, err := fs.Stat(path); err == nil {
		return fmt.Errorf("file: cannot begin transaction: %s already exists", path)
	} else if !isNotExist(err) {
		return fmt.Errorf("file: cannot begin transaction: %w", err)
	}
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("file: cannot begin transaction: %w", err)
	}
	w.f = f
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, w.s.opts.BufferBytes)
	} else {
		w.bw.Reset(f)
	}
	return nil
}

func (w *writer[T]) Write(v *T) error {
	if w.err != nil {
		return w.err
	}
	if w.name == "" {
		if w.err = w.begin(); w.err != nil {
			return w.err
		}
	}
	w.buf = append(w.s.opts.Encode(w.buf[:0], v), '\n')
	if _, err := w.bw.Write(w.buf); err != nil {
		w.err = fmt.Errorf("file: cannot write %s: %w", w.name, err)
	}
	return w.err
}

// seal flushes, fsyncs and closes the open transaction's file.
func (w *writer[T]) seal() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("file: cannot write %s: %w", w.name, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("file: cannot fsync %s: %w", w.name, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("file: cannot close %s: %w", w.name, err)
	}
	w.f = nil
	return w.s.syncDir(w.s.tmpDir())
}

func (w *writer[T]) PreCommit(id uint64) ([]byte, error) {
	state, durable, err := w.PreCommitAsync(id)
	if err == nil && durable != nil {
		err = durable.Run()
	}
	return state, err
}

// PreCommitAsync seals the open transaction on the task goroutine (flushes
// its buffer) and returns the fsyncs of its file and of the work folder as
// the durable step, which the engine runs in the checkpoint's asynchronous
// phase, in checkpoint order, before the checkpoint can complete. On error
// it hands nothing over: the sealed file is closed (it stays in the work
// folder for the next recovery to delete) and the error is sticky.
func (w *writer[T]) PreCommitAsync(id uint64) ([]byte, engine.DurableStep, error) {
	if w.err != nil {
		return nil, nil, w.err
	}
	if w.name == "" {
		if len(w.pending) == 0 {
			return nil, nil, nil
		}
		state, err := encodeState(w.pending)
		if err != nil {
			w.err = err
		}
		return state, nil, err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("file: cannot write %s: %w", w.name, err)
		return nil, nil, w.err
	}
	pending := append(w.pending, txn{Checkpoint: id, Name: w.name})
	state, err := encodeState(pending)
	if err != nil {
		w.err = err
		return nil, nil, err
	}
	f, name, dir, s := w.f, w.name, w.s.tmpDir(), w.s
	durable := engine.DurableFunc(func() error {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("file: cannot fsync %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("file: cannot close %s: %w", name, err)
		}
		return s.syncDir(dir)
	}, func() { f.Close() })
	w.f, w.name, w.pending = nil, "", pending
	return state, durable, nil
}

func encodeState(pending []txn) ([]byte, error) {
	state, err := json.Marshal(sinkState{Pending: pending})
	if err != nil {
		return nil, fmt.Errorf("file: cannot encode sink state: %w", err)
	}
	return state, nil
}

func (w *writer[T]) Commit(id uint64) error {
	var through uint64
	for _, t := range w.pending {
		if t.Checkpoint <= id {
			through = max(through, t.Checkpoint)
		}
	}
	if through > 0 {
		// The marker goes first: it is never behind what is visible.
		if err := w.s.recordCommit(through); err != nil {
			return err
		}
	}
	n := 0
	for _, t := range w.pending {
		if t.Checkpoint > id {
			w.pending[n] = t
			n++
			continue
		}
		if err := w.s.commit(t.Name); err != nil {
			return err
		}
	}
	w.pending = w.pending[:n]
	return nil
}

func (w *writer[T]) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.name == "" {
		return nil
	}
	if err := w.seal(); err != nil {
		return err
	}
	name := w.name
	w.name = ""
	return w.s.commit(name)
}

// Close closes an open file; the temporary file stays for the next
// recovery to delete (or, if pre-committed, to commit).
func (w *writer[T]) Close() error {
	if w.f != nil {
		err := w.f.Close()
		w.f = nil
		return err
	}
	return nil
}

// syncDir fsyncs dir, unless an fsync of dir failed before: then it
// returns that failure again (a failed fsync is never retried).
func (s *Sink[T]) syncDir(dir string) error {
	s.dirSync.Lock()
	if s.dirSync.dirs == nil {
		s.dirSync.dirs = make(map[string]*dirSyncState)
	}
	d := s.dirSync.dirs[dir]
	if d == nil {
		d = &dirSyncState{}
		s.dirSync.dirs[dir] = d
	}
	s.dirSync.Unlock()
	d.Lock()
	defer d.Unlock()
	if d.err != nil {
		return fmt.Errorf("file: directory %s is not fsynced again after its fsync failed: %w", dir, d.err)
	}
	d.err = syncDir(s.opts.FS, dir)
	return d.err
}

// dirSyncState serializes the fsyncs of one directory and keeps the first
// failure.
type dirSyncState struct {
	sync.Mutex
	err error // guarded; the first failed fsync
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("file: cannot open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file: cannot fsync directory %s: %w", dir, err)
	}
	return nil
}
