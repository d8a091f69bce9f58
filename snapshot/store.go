package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/atomicfile"
	"github.com/streamd/streamd/internal/dirlock"
)

// View is a frozen, consistent copy of one task's keyed state, as
// keyed.Snapshot provides it. The writer reads it from another goroutine
// than the task's, while the task goes on changing its live state.
type View interface {
	// States returns the state names; a state's id is its index.
	States() []string
	// KeyGroupVersion returns a number that changes whenever key group kg
	// changes. Versions must never repeat for different contents of a key
	// group of the same scope over the life of the job, restores included
	// (a restored backend must start above the versions of the handle it
	// was restored from), because an equal version makes WriteKeyed reuse
	// the old blocks.
	KeyGroupVersion(kg int) uint64
	// ForEach calls fn for every entry of key group kg. key and value are
	// only valid during the call. An error from fn must be returned.
	ForEach(kg int, fn func(state int, key, value []byte) error) error
}

// DeltaView is a View that can also say how a key group changed since an
// earlier version of it (incremental checkpoints).
type DeltaView interface {
	View
	// Len returns the number of entries of key group kg (as ForEach yields).
	Len(kg int) int
	// ChangedEntries returns an upper bound of the entries Changes(kg, since)
	// would report, cheaply (no walk), or ok=false when Changes cannot tell.
	ChangedEntries(kg int, since uint64) (n int, ok bool)
	// Changes reports how key group kg differs from its state at version
	// since (a KeyGroupVersion the same view's backend returned earlier):
	// first deleted entries (fn with OpDelete and a nil value), then
	// inserted or changed entries (OpPut, the new value) and entries whose
	// value grew by value (OpAppend: a list state's new elements; the
	// entry existed at version since). It may report an entry that did not
	// change, or the deletion of an entry the old version did not have;
	// applying the deletions, then the rest, to the entries of version
	// since gives exactly the entries ForEach yields now. It
	// returns ok=false without calling fn when it cannot tell; the caller
	// then writes the key group in full. key and value are valid during
	// the call only; an error from fn is returned as it is.
	Changes(kg int, since uint64, fn func(state int, key, value []byte, op uint8) error) (ok bool, err error)
}

// lockFileName is the file in the data dir that Open locks with flock.
const lockFileName = "LOCK"

// pebbleDirName is the directory inside the data dir that holds Pebble.
const pebbleDirName = "pebble"

// ingestDirName is the directory inside the data dir where WriteKeyed
// builds sstables before Pebble ingests them.
const ingestDirName = "ingest"

// maxCheckpointID bounds checkpoint ids (writerPrefixEnd adds one).
const maxCheckpointID = 1<<63 - 1

// Store keeps the checkpoints of any number of jobs in one Pebble database
// in a data dir, which it locks against other processes.
//
// WriteKeyed, ReadKeyed, Verify, LoadMetadata, Completed, MaxCheckpointID
// and Jobs may be called concurrently. CommitCheckpoint, Retain and
// DiscardIncomplete are serialized by the store. Close may be called at
// any time: it waits for the calls in progress.
type Store struct {
	dir        string
	opts       Options
	pebbleOpts *pebble.Options
	db         *pebble.DB
	lock       io.Closer // the data dir's lock (lockDir)

	// health records a failure of Pebble (ErrStoreFailed): set by Fatalf
	// or by a panic that a guarded call recovered, from any goroutine.
	health *health

	// life makes Close safe at any time: every public method but Close
	// and Dir runs between enter and leave, and Close waits until no call
	// is inside before it closes Pebble (which panics when used after
	// Close). A call that starts after Close began returns ErrClosed.
	life struct {
		sync.Mutex
		closed   bool
		inflight int
		idle     chan struct{} // closed when inflight drops to 0 after closed is set
	}

	// fs and ingestDir are where WriteKeyed builds sstables to ingest
	// (Pebble's file system, so that it can link them).
	fs        vfs.FS
	ingestDir string
	ingestSeq atomic.Uint64
	// ingestThresholdBytes is ingestThresholdBytes; tests lower it.
	ingestThresholdBytes int
	// savepoint is the descriptor of a Store opened by OpenSavepoint.
	savepoint *SavepointDescriptor

	writers sync.Pool // *writer
	// record guards the record files of completed checkpoints (record.go).
	record  recordState
	readers sync.Pool // *reader
	// blocksRead counts the blocks read (and verified) since Open: see
	// BlocksRead.
	blocksRead atomic.Int64

	mu struct {
		sync.Mutex
		// pins holds, per job and in-flight checkpoint id, the prev handles
		// WriteKeyed was given: their blocks may be referenced by a
		// checkpoint that has not committed yet, so Retain keeps them.
		// Written by WriteKeyed; read and pruned by Retain,
		// CommitCheckpoint and DiscardIncomplete, all under mu.
		pins map[string]map[uint64][]*KeyedHandle
		// known holds, per job, the key group block runs that exist in
		// the store and may become garbage (retain.go).
		known map[string]*knownBlocks
		// holds counts, per job and completed checkpoint id, the holds
		// (Hold, ExportSavepoint) that keep the checkpoint from retention.
		holds map[string]map[uint64]int
	}
}

// Open opens (creating if needed) the data dir dir on opts.FS. Pebble lives
// in dir/pebble. Open takes an exclusive lock on dir/LOCK (on the OS
// filesystem an flock, with our pid written in the file); while the Store
// is open, another Open of the same dir — from any process — fails with an
// error wrapping ErrDirInUse. The directories Open creates are made durable
// (their parents are fsynced) before it returns: a power loss cannot take
// the data dir away once a checkpoint has been committed into it.
func Open(dir string, opts Options) (*Store, error) { return open(dir, opts, false) }

// open is Open; readOnly (OpenSavepoint) opens Pebble read-only in a data
// dir that must exist, and neither empties its ingest dir nor checks the
// free space.
func open(dir string, opts Options, readOnly bool) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	h := newHealth(dir)
	po, err := opts.pebbleOptions(h)
	if err != nil {
		return nil, err
	}
	fs := opts.FS
	if readOnly {
		if _, err := fs.Stat(dir); err != nil {
			return nil, ioErrorf(err, "cannot open data dir %s", dir)
		}
	} else if err := mkdirAllSynced(fs, dir); err != nil {
		return nil, ioErrorf(err, "cannot create data dir %s", dir)
	}
	lock, err := lockDir(fs, dir)
	if err != nil {
		return nil, err
	}
	po.EnsureDefaults()
	po.ReadOnly = readOnly
	// Pebble gets the FS with a directory fsync before each MANIFEST marker
	// (markerfs.go): without it a power loss during any Open could leave
	// a marker naming a lost MANIFEST, and Pebble refuses that store.
	po.FS = newManifestSyncFS(fs)
	ingestDir := fs.PathJoin(dir, ingestDirName)
	if readOnly {
		// Nothing is written: the ingest dir is left as it is.
	} else if err := resetIngestDir(fs, ingestDir); err != nil {
		_ = lock.Close()
		return nil, err
	}
	// Pebble writes as it opens (a WAL, a MANIFEST, OPTIONS, markers) and
	// cannot survive a failed WAL or MANIFEST write; on a full disk it was
	// seen to spin in Open. So a full disk is refused here, with a message
	// that says so, before Pebble starts.
	if err := checkFreeSpace(fs, dir, opts.DiskHeadroomBytes, 0, "cannot open data dir "+dir); err != nil && !readOnly {
		_ = lock.Close()
		return nil, err
	}
	db, err, abandoned := openPebbleWatched(fs.PathJoin(dir, pebbleDirName), po, h)
	if abandoned {
		opts.Logger("snapshot: WARNING: data dir %s: Pebble's Open did not return within %v after it failed; "+
			"its handle and the data dir's lock are leaked until the process exits", dir, failedCloseTimeout)
	} else if err != nil {
		_ = lock.Close()
	}
	if err != nil {
		if IsDiskFull(err) {
			return nil, &classError{msg: fmt.Sprintf("snapshot: cannot open Pebble in data dir %s: the disk is full (%v); free space on its filesystem and run again",
				dir, err), class: ErrDiskFull, cause: err}
		}
		return nil, ioErrorf(err, "cannot open Pebble in data dir %s", dir)
	}
	s := &Store{dir: dir, opts: opts, pebbleOpts: po, db: db, lock: lock, health: h,
		fs: fs, ingestDir: ingestDir, ingestThresholdBytes: ingestThresholdBytes}
	s.mu.pins = make(map[string]map[uint64][]*KeyedHandle)
	s.mu.known = make(map[string]*knownBlocks)
	s.mu.holds = make(map[string]map[uint64]int)
	return s, nil
}

// health is the failed state of a Store. Pebble's logger holds it from
// before pebble.Open, so a failure during Open is recorded too.
type health struct {
	dir    string
	err    atomic.Pointer[error] // the first failure (wrapping ErrStoreFailed), nil while healthy
	once   sync.Once
	failed chan struct{} // closed when err is set
}

func newHealth(dir string) *health { return &health{dir: dir, failed: make(chan struct{})} }

// fail records a failure of Pebble (what happened, and its error if any),
// unless one is recorded already, and returns the recorded one.
func (h *health) fail(what string, cause error) error {
	h.once.Do(func() {
		msg := fmt.Sprintf("snapshot: the store in data dir %s failed and cannot go on: %s", h.dir, what)
		if IsDiskFull(cause) {
			msg += " (the disk is full: free space on its filesystem, then run the job again: it resumes from its last completed checkpoint)"
		} else {
			msg += " (run the job again: it resumes from its last completed checkpoint)"
		}
		var err error = &classError{msg: msg, class: ErrStoreFailed, cause: cause}
		h.err.Store(&err)
		close(h.failed)
	})
	return *h.err.Load()
}

// get returns the recorded failure, or nil.
func (h *health) get() error {
	if p := h.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Err returns the failure of the Store (wrapping ErrStoreFailed) once
// Pebble has reported one it cannot go on from — also one of its
// background goroutines, between the Store's calls — and nil while the
// Store is healthy. The engine polls it to fail the job.
func (s *Store) Err() error { return s.health.get() }

// callPebble runs fn, a write to Pebble, on a goroutine of its own under
// runGuarded, and waits for it or for the Store to fail, whichever is
// first. A write that the failure leaves waiting inside Pebble (behind a
// commit that never published, or a lock a failed goroutine holds) is
// abandoned: callPebble returns the failure and abandoned true, and the
// caller must leave alone whatever fn uses, which may still be in use.
// The goroutine is leaked; the process is about to end the job.
func (s *Store) callPebble(fn func() error) (err error, abandoned bool) {
	if err := s.health.get(); err != nil {
		return err, false
	}
	done := make(chan error, 1)
	go runGuarded(s.health, fn, done)
	select {
	case err := <-done:
		return err, false
	case <-s.health.failed:
		select {
		case err := <-done:
			return err, false
		default:
			return s.health.get(), true
		}
	}
}

// runGuarded runs fn, and sends its error to done — or the Store's
// failure when fn panics: a Fatalf of Pebble (pebbleLogger.Fatalf panics
// on this goroutine, which it recognizes by this function's frame) or
// another panic inside Pebble (rotating its WAL panics on a failed write).
func runGuarded(h *health, fn func() error, done chan<- error) {
	defer func() {
		if r := recover(); r != nil {
			done <- failFromPanic(h, r)
		}
	}()
	done <- fn()
}

// failFromPanic records the panic value r of Pebble as the Store's failure.
func failFromPanic(h *health, r any) error {
	switch v := r.(type) {
	case pebbleFatal:
		return v.err
	case error:
		return h.fail("pebble panicked: "+v.Error(), v)
	default:
		return h.fail(fmt.Sprintf("pebble panicked: %v", v), nil)
	}
}

// checkFreeSpace returns an ErrDiskFull error (starting with what) when
// the filesystem of dir has less than headroom+need bytes available. A
// filesystem that cannot tell (vfs.ErrUnsupported, e.g. Pebble's MemFS
// by default) passes, and a negative headroom turns the check off.
func checkFreeSpace(fs vfs.FS, dir string, headroom, need int64, what string) error {
	if headroom < 0 {
		return nil
	}
	u, err := fs.GetDiskUsage(dir)
	if err != nil {
		// Unknown: the writes themselves will tell (ENOSPC).
		return nil
	}
	want := uint64(headroom) + uint64(max(need, 0))
	if u.AvailBytes >= want {
		return nil
	}
	detail := fmt.Sprintf("%d bytes are free, at least %d needed", u.AvailBytes, want)
	if need > 0 {
		detail += fmt.Sprintf(" (twice the %d bytes of the previous checkpoint's state, plus %d of headroom)", need/2, headroom)
	}
	return &classError{
		msg:   fmt.Sprintf("snapshot: %s: the disk is full: %s on the filesystem of %s", what, detail, dir),
		class: ErrDiskFull,
	}
}

// openPebble opens Pebble, turning a panic inside pebble.Open into an
// error: Pebble panics when an fsync fails while it creates or updates its
// marker files (atomicfs.Marker.Move: "Fsync errors are unrecoverable"),
// and a store that cannot be opened must fail the job with a message,
// never crash the process (DESIGN.md, durability rule 4). pebble.Open
// releases what it allocated before it re-panics, and nothing is retried:
// the caller gets the error. (Pebble's own LOCK in the pebble dir may stay
// held by this process; the next process opens the dir again.) A Fatalf
// of Pebble during Open panics here too (pebbleLogger.Fatalf recognizes
// this function's frame) and is returned as an error; failures after Open
// returned are the Store's (ErrStoreFailed, see callPebble).
func openPebble(dir string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db = nil
			switch e := r.(type) {
			case pebbleFatal:
				err = e.err
			case error:
				err = fmt.Errorf("pebble panicked while opening: %w", e)
			default:
				err = fmt.Errorf("pebble panicked while opening: %v", r)
			}
		}
	}()
	return pebble.Open(dir, po)
}

// openPebbleWatched runs openPebble on a goroutine of its own and waits
// for it, or for a failure that Pebble reports (Fatalf) on one of its
// background goroutines while it opens, whichever is first. Open replays
// the WAL into a flush, which writes a new MANIFEST on Pebble's flush
// goroutine, and then waits for that flush: when the MANIFEST write fails
// there, Fatalf ends the flush goroutine (pebbleLogger.Fatalf) and Open
// would wait for ever. After a failure it waits failedCloseTimeout more for
// Open to return its own error; if it does not, the failure is returned
// with abandoned true, and the caller must leave the data dir locked: the
// goroutine inside Pebble's Open is leaked with what it holds, as Close
// does after a failure.
func openPebbleWatched(dir string, po *pebble.Options, h *health) (db *pebble.DB, err error, abandoned bool) {
	type result struct {
		db  *pebble.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		db, err := openPebble(dir, po)
		done <- result{db, err}
	}()
	select {
	case r := <-done:
		return r.db, r.err, false
	case <-h.failed:
	}
	select {
	case r := <-done:
		if r.err == nil && r.db != nil {
			// Open returned although a background goroutine failed: the
			// Store starts failed (Err), and Close closes Pebble.
			return r.db, nil, false
		}
		return nil, r.err, false
	case <-time.After(failedCloseTimeout):
		return nil, h.get(), true
	}
}

// mkdirAllSynced creates dir and its missing parents durably
// (atomicfile.MkdirAll).
func mkdirAllSynced(fs vfs.FS, dir string) error {
	return atomicfile.MkdirAll(fs, dir, func(d string) error { return syncDir(fs, d) })
}

// syncDir fsyncs the directory dir.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// resetIngestDir creates the directory for sstables being built and removes
// what a crashed run left in it (never ingested, so never referenced).
func resetIngestDir(fs vfs.FS, path string) error {
	if err := fs.MkdirAll(path, 0o755); err != nil {
		return ioErrorf(err, "cannot create %s", path)
	}
	names, err := fs.List(path)
	if err != nil {
		return ioErrorf(err, "cannot list %s", path)
	}
	for _, name := range names {
		if err := fs.Remove(fs.PathJoin(path, name)); err != nil {
			return ioErrorf(err, "cannot remove the stale sstable %s", fs.PathJoin(path, name))
		}
	}
	return nil
}

// lockDir takes the data dir's lock. On the OS filesystem it is an flock
// on dir/LOCK, which also records our pid for the message another process
// gets; on any other filesystem it is fs.Lock (no pid). The lock lives as
// long as the returned Closer stays open (or the process).
func lockDir(fs vfs.FS, dir string) (io.Closer, error) {
	path := fs.PathJoin(dir, lockFileName)
	l, err := dirlock.Lock(fs, path, strconv.Itoa(os.Getpid()))
	if err != nil {
		var held *dirlock.HeldError
		if errors.As(err, &held) {
			holder := held.Holder
			if holder == "" {
				holder = "unknown"
			}
			return nil, &classError{
				msg:   fmt.Sprintf("snapshot: data dir %s is in use by another streamd (pid %s)", dir, holder),
				class: ErrDirInUse,
			}
		}
		return nil, ioErrorf(err, "cannot lock data dir %s", dir)
	}
	return l, nil
}

// Close closes Pebble and releases the data dir's lock. Blocks written
// without a following CommitCheckpoint are durable only as far as Pebble
// got to write them (Close does not sync them: they belong to no checkpoint).
// Close may be called while other calls are in progress: it waits for them
// to return, and calls that start later return ErrClosed. A second Close
// returns ErrClosed.
//
// After the Store failed (ErrStoreFailed) Close returns the failure, and
// waits for nothing longer than failedCloseTimeout: a goroutine that failed
// inside Pebble may have left one of Pebble's locks held (its commit
// pipeline's, which DB.Close takes) or a flush marked as running (which
// DB.Close waits for). If Pebble's Close does not return in time, or
// panics, the database is leaked — its files stay open and Pebble's own
// LOCK stays held until the process exits, which it is about to do — and
// the data dir's lock is kept with it.
func (s *Store) Close() error {
	l := &s.life
	l.Lock()
	if l.closed {
		l.Unlock()
		return ErrClosed
	}
	l.closed = true
	idle := make(chan struct{})
	if l.inflight == 0 {
		close(idle)
	} else {
		l.idle = idle
	}
	l.Unlock()
	select {
	case <-idle:
	case <-s.health.failed:
		// Writes in progress return at once (callPebble); a read may be
		// stuck behind a lock of Pebble's.
		select {
		case <-idle:
		case <-time.After(failedCloseTimeout):
		}
	}
	if failure := s.health.get(); failure != nil {
		return s.closeFailed(failure)
	}
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil && lerr != nil {
		err = lerr
	}
	if err != nil {
		return ioErrorf(err, "cannot close data dir %s", s.dir)
	}
	return nil
}

// failedCloseTimeout bounds how long Close of a failed Store waits for
// calls in progress and for Pebble's Close.
const failedCloseTimeout = 2 * time.Second

// closeFailed closes a Store whose Pebble failed: see Close.
func (s *Store) closeFailed(failure error) error {
	done := make(chan bool, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- false
			}
		}()
		_ = s.db.Close() // errors are expected: the WAL writer keeps its failure
		done <- true
	}()
	select {
	case ok := <-done:
		if ok {
			_ = s.lock.Close()
			return failure
		}
		s.opts.Logger("snapshot: WARNING: data dir %s: Pebble panicked while closing after its failure; its handle is leaked until the process exits", s.dir)
	case <-time.After(failedCloseTimeout):
		s.opts.Logger("snapshot: WARNING: data dir %s: Pebble did not close within %v after its failure (a failed goroutine holds one of its locks); "+
			"its handle and the data dir's lock are leaked until the process exits", s.dir, failedCloseTimeout)
	}
	return failure
}

// Dir returns the data dir.
func (s *Store) Dir() string { return s.dir }

// enter starts a call: ErrClosed once Close has begun; otherwise the
// caller must call leave when it no longer uses Pebble. Calls may nest.
func (s *Store) enter() error {
	if err := s.health.get(); err != nil {
		return err
	}
	l := &s.life
	l.Lock()
	defer l.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.inflight++
	return nil
}

// leave ends a call that enter started.
func (s *Store) leave() {
	l := &s.life
	l.Lock()
	l.inflight--
	if l.inflight == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
	l.Unlock()
}

// isClosed reports whether Close has begun.
func (s *Store) isClosed() bool {
	s.life.Lock()
	defer s.life.Unlock()
	return s.life.closed
}

func (s *Store) newIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, ioErrorf(err, "cannot create an iterator")
	}
	return it, nil
}

// Completed returns the ids of job's checkpoints that have metadata, in
// ascending order.
func (s *Store) Completed(job string) ([]uint64, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return nil, err
	}
	lower := jobPrefix(nil, metaTag, job)
	it, err := s.newIter(lower, jobPrefixEnd(nil, metaTag, job))
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for valid := it.First(); valid; valid = it.Next() {
		key := it.Key()
		if len(key) != len(lower)+8 {
			_ = it.Close()
			return nil, corruptf("job %s: metadata key %q does not follow the key layout", job, key)
		}
		ids = append(ids, binary.BigEndian.Uint64(key[len(lower):]))
	}
	if err := it.Close(); err != nil {
		return nil, ioErrorf(err, "cannot list the checkpoints of job %s", job)
	}
	return ids, nil
}

// newestCompleted returns the newest checkpoint id of job with metadata (ok
// false if there is none).
func (s *Store) newestCompleted(job string) (id uint64, ok bool, err error) {
	lower := jobPrefix(nil, metaTag, job)
	it, err := s.newIter(lower, jobPrefixEnd(nil, metaTag, job))
	if err != nil {
		return 0, false, err
	}
	if it.Last() {
		if key := it.Key(); len(key) == len(lower)+8 {
			id, ok = binary.BigEndian.Uint64(key[len(lower):]), true
		} else {
			err = corruptf("job %s: metadata key %q does not follow the key layout", job, key)
		}
	}
	if cerr := it.Close(); err == nil && cerr != nil {
		err = ioErrorf(cerr, "cannot find the newest checkpoint of job %s", job)
	}
	return id, ok, err
}

// LoadMetadata reads, verifies and decodes the metadata of checkpoint id of
// job. A missing checkpoint wraps ErrNotFound; metadata that does not
// decode, or that describes an impossible checkpoint, is corruption.
func (s *Store) LoadMetadata(job string, id uint64) (*Metadata, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return nil, err
	}
	val, closer, err := s.db.Get(metaKey(nil, job, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, &classError{
			msg:   fmt.Sprintf("snapshot: checkpoint %d of job %s does not exist", id, job),
			class: ErrNotFound,
		}
	}
	if err != nil {
		return nil, ioErrorf(err, "cannot read the metadata of checkpoint %d of job %s", id, job)
	}
	m, err := DecodeMetadata(val)
	_ = closer.Close()
	ctx := fmt.Sprintf("job %s, checkpoint %d", job, id)
	if err != nil {
		return nil, withContext(err, ctx)
	}
	if m.Job != job || m.CheckpointID != id {
		return nil, corruptf("%s: metadata is that of checkpoint %d of job %q", ctx, m.CheckpointID, m.Job)
	}
	if p := m.problems(); len(p) > 0 {
		return nil, corruptf("%s: metadata is inconsistent: %s", ctx, strings.Join(p, "; "))
	}
	return m, nil
}

// CommitCheckpoint makes checkpoint m.CheckpointID of m.Job exist: it sets
// m.FormatVersion, encodes m and writes it in a batch committed with
// pebble.Sync. Call it only after every task's WriteKeyed for the
// checkpoint returned.
//
// Durability: WriteKeyed commits blocks without syncing. Pebble's WAL is a
// single ordered log: a synced commit returns only after the log is synced
// up to and including its own record, and every earlier record (the
// blocks) precedes it in that log. When Pebble rotates to a new WAL file it
// syncs and closes the old one first (DB.rotateWAL: "This writes an EOF
// trailer … and syncs it to disk"), and blocks already flushed to sstables
// were synced by the flush. So once CommitCheckpoint returns nil, the
// checkpoint's blocks are durable too. This relies on the WAL being enabled,
// which Open enforces.
//
// An id not newer than the job's newest completed checkpoint is refused
// (ErrInvalidArgument) before anything is written: retention may already
// have deleted blocks such a checkpoint references.
//
// Any other error is UNCERTAIN: the metadata may or may not be on disk, and
// after a failed fsync the kernel may have dropped the dirty pages while
// reporting the next fsync as successful ("fsyncgate"). The caller must
// stop — fail the job or the process — and must never retry the commit or
// carry on writing checkpoints; recovery will find out what is durable.
func (s *Store) CommitCheckpoint(m *Metadata) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if m.CheckpointID > maxCheckpointID {
		return invalidf("checkpoint id %d of job %s exceeds %d", m.CheckpointID, m.Job, uint64(maxCheckpointID))
	}
	if p := m.problems(); len(p) > 0 {
		return invalidf("cannot commit checkpoint %d of job %s: %s", m.CheckpointID, m.Job, strings.Join(p, "; "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	newest, ok, err := s.newestCompleted(m.Job)
	if err != nil {
		return err
	}
	if ok && newest >= m.CheckpointID {
		return invalidf("cannot commit checkpoint %d of job %s: it is not newer than completed checkpoint %d",
			m.CheckpointID, m.Job, newest)
	}
	m.FormatVersion = MetadataFormatVersion
	data := EncodeMetadata(nil, m)
	err, _ = s.callPebble(func() error {
		b := s.db.NewBatch()
		defer b.Close()
		if err := b.Set(metaKey(nil, m.Job, m.CheckpointID), data, nil); err != nil {
			return ioErrorf(err, "cannot commit checkpoint %d of job %s", m.CheckpointID, m.Job)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return ioErrorf(err, "cannot commit checkpoint %d of job %s (outcome uncertain: stop and never retry)",
				m.CheckpointID, m.Job)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.prunePinsLocked(m.Job, m.CheckpointID)
	// The independent record (record.go), after the metadata: never ahead
	// of Pebble. If it fails the checkpoint is complete all the same, but
	// the caller stops (as for a failed metadata write) and the next run
	// recovers it.
	return s.writeRecord(m.Job, m.CheckpointID)
}

// MaxCheckpointID returns the highest checkpoint id found in any key of job
// — metadata or blocks, completed or not — or 0. Call it at startup BEFORE
// DiscardIncomplete (which deletes the blocks of incomplete checkpoints),
// and number new checkpoints above it, so ids never repeat across restarts
// (external systems, e.g. sink transactions, may be named after them).
func (s *Store) MaxCheckpointID(job string) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return 0, err
	}
	maxID, _, err := s.newestCompleted(job)
	if err != nil {
		return 0, err
	}
	lower := jobPrefix(nil, blockTag, job)
	it, err := s.newIter(lower, jobPrefixEnd(nil, blockTag, job))
	if err != nil {
		return 0, err
	}
	if it.Last() {
		key := it.Key()
		if len(key) < len(lower)+8 {
			_ = it.Close()
			return 0, corruptf("job %s: block key %q does not follow the key layout", job, key)
		}
		maxID = max(maxID, binary.BigEndian.Uint64(key[len(lower):]))
	}
	if err := it.Close(); err != nil {
		return 0, ioErrorf(err, "cannot find the highest checkpoint id of job %s", job)
	}
	return maxID, nil
}

// Jobs returns the names of the jobs with any key in the store (metadata or
// blocks), sorted.
func (s *Store) Jobs() ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var jobs []string
	for _, tag := range []byte{metaTag, blockTag} {
		it, err := s.newIter([]byte{tag}, []byte{tag + 1})
		if err != nil {
			return nil, err
		}
		for valid := it.First(); valid; {
			key := it.Key()
			end := bytes.IndexByte(key, jobEnd)
			if end < 0 {
				_ = it.Close()
				return nil, corruptf("key %q does not follow the key layout", key)
			}
			job := string(key[1:end])
			jobs = append(jobs, job)
			valid = it.SeekGE(jobPrefixEnd(nil, tag, job))
		}
		if err := it.Close(); err != nil {
			return nil, ioErrorf(err, "cannot list jobs")
		}
	}
	slices.Sort(jobs)
	return slices.Compact(jobs), nil
}

// pin records that an in-flight checkpoint ckpt of job may reference the
// blocks of prev, and returns prev — or nil when prev's checkpoint no longer
// exists (retention deleted it since the caller took the handle), in which
// case its blocks may be gone and nothing must be reused.
func (s *Store) pin(job string, ckpt uint64, prev *KeyedHandle) (*KeyedHandle, error) {
	if prev == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev.Checkpoint != 0 {
		_, closer, err := s.db.Get(metaKey(nil, job, prev.Checkpoint))
		if errors.Is(err, pebble.ErrNotFound) {
			s.opts.Logger("snapshot: checkpoint %d of job %s (scope %q) cannot reuse blocks of checkpoint %d, "+
				"which no longer exists; writing every key group", ckpt, job, prev.Scope, prev.Checkpoint)
			return nil, nil
		}
		if err != nil {
			return nil, ioErrorf(err, "cannot look up checkpoint %d of job %s", prev.Checkpoint, job)
		}
		_ = closer.Close()
	}
	byID := s.mu.pins[job]
	if byID == nil {
		byID = make(map[uint64][]*KeyedHandle)
		s.mu.pins[job] = byID
	}
	byID[ckpt] = append(byID[ckpt], prev)
	return prev, nil
}

// prunePinsLocked forgets the pins of job's checkpoints up to id: each has
// either committed (its references are in its metadata) or can no longer
// commit (CommitCheckpoint refuses ids not newer than the newest).
func (s *Store) prunePinsLocked(job string, id uint64) {
	byID := s.mu.pins[job]
	for ckpt := range byID {
		if ckpt <= id {
			delete(byID, ckpt)
		}
	}
	if len(byID) == 0 {
		delete(s.mu.pins, job)
	}
}
