package snapshot

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/atomicfile"
)

// Savepoints. A savepoint is a directory that is a data dir of its own — a
// Store holding exactly one completed checkpoint of one job, its metadata
// and every block it references (the bases and every delta of their
// chains, under their original keys) copied verbatim from the store it was
// taken from, and the record of completed checkpoints naming it — plus a
// descriptor file, SAVEPOINT, written last (atomically, synced: see
// internal/atomicfile): one checksummed line that says what it holds, e.g.
//
//	streamd-savepoint v1 job=counts checkpoint=42 completed=2026-12-07T03:37:25.123456789Z metadata_format=3 blocks=128 stored_bytes=1048576 crc=1a2b3c4d
//
// A directory without a valid descriptor is not a savepoint: an export that
// failed or crashed midway never looks like one. A savepoint is outside
// retention (nothing ever deletes it) and self-contained: it can be moved,
// copied or archived, and a job restores from it into a data dir of its own
// (the engine's Options.Restore). Verifying a savepoint is Store.Verify of
// its checkpoint (OpenSavepoint, then Verify).

// SavepointDescriptorName is the descriptor file of a savepoint directory.
const SavepointDescriptorName = "SAVEPOINT"

// SavepointFormatVersion is the version of the savepoint layout and
// descriptor this build writes and reads.
const SavepointFormatVersion = 1

const savepointMagic = "streamd-savepoint"

// exportBatchBytes bounds the block bytes ExportSavepoint commits to the
// savepoint's Pebble in one (unsynced) batch.
const exportBatchBytes = 4 << 20

// ErrNotSavepoint is wrapped when a directory given as a savepoint has no
// valid descriptor.
var ErrNotSavepoint = errors.New("snapshot: not a savepoint")

// SavepointDescriptor is what a savepoint's descriptor file says.
type SavepointDescriptor struct {
	// Dir is the savepoint directory.
	Dir string
	// Job and CheckpointID name the checkpoint the savepoint holds.
	Job          string
	CheckpointID uint64
	// CompletedAt is when the checkpoint completed (its metadata became
	// durable).
	CompletedAt time.Time
	// MetadataFormat is the checkpoint's metadata format version.
	MetadataFormat uint32
	// Blocks and StoredBytes count the blocks copied and their stored
	// size.
	Blocks      int
	StoredBytes int64
}

func (d SavepointDescriptor) encode() string {
	return fmt.Sprintf("%s v%d job=%s checkpoint=%d completed=%s metadata_format=%d blocks=%d stored_bytes=%d",
		savepointMagic, SavepointFormatVersion, d.Job, d.CheckpointID, d.CompletedAt.UTC().Format(time.RFC3339Nano),
		d.MetadataFormat, d.Blocks, d.StoredBytes)
}

func decodeSavepointDescriptor(dir string, b []byte) (SavepointDescriptor, error) {
	d := SavepointDescriptor{Dir: dir}
	body, err := atomicfile.Decode(b)
	if err != nil {
		return d, err
	}
	f := strings.Fields(body)
	if len(f) != 8 || f[0] != savepointMagic {
		return d, errors.New("unknown format")
	}
	if f[1] != "v"+strconv.Itoa(SavepointFormatVersion) {
		return d, fmt.Errorf("savepoint format %s; this streamd reads v%d", f[1], SavepointFormatVersion)
	}
	val := func(i int, key string) (string, error) {
		v, ok := strings.CutPrefix(f[i], key+"=")
		if !ok {
			return "", fmt.Errorf("field %d is %q, want %s=…", i, f[i], key)
		}
		return v, nil
	}
	var errs []error
	num := func(i int, key string, bits int) uint64 {
		v, err := val(i, key)
		if err != nil {
			errs = append(errs, err)
			return 0
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return n
	}
	var job, completed string
	if job, err = val(2, "job"); err != nil {
		errs = append(errs, err)
	} else if err := checkJobName(job); err != nil {
		errs = append(errs, err)
	}
	d.Job = job
	d.CheckpointID = num(3, "checkpoint", 63)
	if completed, err = val(4, "completed"); err != nil {
		errs = append(errs, err)
	} else if d.CompletedAt, err = time.Parse(time.RFC3339Nano, completed); err != nil {
		errs = append(errs, fmt.Errorf("completed: %w", err))
	}
	d.MetadataFormat = uint32(num(5, "metadata_format", 32))
	d.Blocks = int(num(6, "blocks", 31))
	d.StoredBytes = int64(num(7, "stored_bytes", 63))
	if d.CheckpointID == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("checkpoint 0"))
	}
	return d, errors.Join(errs...)
}

// ReadSavepointDescriptor reads and checks the descriptor of the savepoint
// in dir on fs (nil: the OS filesystem). A directory without one, or with
// a damaged one, is an error wrapping ErrNotSavepoint that says so.
func ReadSavepointDescriptor(fs vfs.FS, dir string) (SavepointDescriptor, error) {
	if fs == nil {
		fs = vfs.Default
	}
	path := fs.PathJoin(dir, SavepointDescriptorName)
	b, err := atomicfile.Read(fs, path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return SavepointDescriptor{}, &classError{
				msg: fmt.Sprintf("snapshot: %s is not a savepoint: it has no %s descriptor (an export that failed or was interrupted, or not a savepoint at all)",
					dir, SavepointDescriptorName),
				class: ErrNotSavepoint,
			}
		}
		return SavepointDescriptor{}, ioErrorf(err, "cannot read the descriptor of savepoint %s", dir)
	}
	d, err := decodeSavepointDescriptor(dir, b)
	if err != nil {
		return d, &classError{
			msg:   fmt.Sprintf("snapshot: %s is not a savepoint this streamd can read: its descriptor %s is damaged or unknown: %v", dir, path, err),
			class: ErrNotSavepoint,
		}
	}
	return d, nil
}

// OpenSavepoint opens the savepoint in dir for reading: it reads its
// descriptor (ReadSavepointDescriptor), opens the Store in it with Pebble
// read-only (nothing in the savepoint is changed; the directory is locked
// while the Store is open, so one process at a time reads it), and checks
// that the store holds the checkpoint the descriptor names. Its blocks are
// verified as they are read (ReadKeyed), or all at once by Verify.
// opts.FS must be the filesystem the savepoint is on.
func OpenSavepoint(dir string, opts Options) (*Store, SavepointDescriptor, error) {
	opts.EnsureDefaults()
	d, err := ReadSavepointDescriptor(opts.FS, dir)
	if err != nil {
		return nil, d, err
	}
	st, err := open(dir, opts, true)
	if err != nil {
		return nil, d, fmt.Errorf("snapshot: cannot open savepoint %s: %w", dir, err)
	}
	fail := func(err error) (*Store, SavepointDescriptor, error) {
		_ = st.Close()
		return nil, d, err
	}
	ids, err := st.Completed(d.Job)
	if err != nil {
		return fail(err)
	}
	if !slices.Equal(ids, []uint64{d.CheckpointID}) {
		return fail(corruptf("savepoint %s: its descriptor names checkpoint %d of job %s, its store holds checkpoints %v",
			dir, d.CheckpointID, d.Job, ids))
	}
	if rec, ok, err := st.CompletedRecord(d.Job); err != nil {
		return fail(err)
	} else if !ok || rec != d.CheckpointID {
		return fail(corruptf("savepoint %s: its record of completed checkpoints does not name checkpoint %d of job %s", dir, d.CheckpointID, d.Job))
	}
	st.savepoint = &d
	return st, d, nil
}

// Savepoint returns the checkpoint a Store opened by OpenSavepoint holds;
// ok is false for a Store opened by Open.
func (s *Store) Savepoint() (d SavepointDescriptor, ok bool) {
	if s.savepoint == nil {
		return d, false
	}
	return *s.savepoint, true
}

// Hold keeps completed checkpoint id of job, with every block it
// references, from retention (Retain) until release is called (once; later
// calls do nothing). Holds nest. A checkpoint that does not exist (never
// completed, or already deleted) is an error wrapping ErrNotFound: the
// hold is taken under the lock Retain runs under, so once Hold returned
// nil the checkpoint stays.
func (s *Store) Hold(job string, id uint64) (release func(), err error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, closer, err := s.db.Get(metaKey(nil, job, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, &classError{
			msg:   fmt.Sprintf("snapshot: cannot hold checkpoint %d of job %s: it does not exist (never completed, or retention deleted it)", id, job),
			class: ErrNotFound,
		}
	}
	if err != nil {
		return nil, ioErrorf(err, "cannot look up checkpoint %d of job %s", id, job)
	}
	_ = closer.Close()
	byID := s.mu.holds[job]
	if byID == nil {
		byID = make(map[uint64]int)
		s.mu.holds[job] = byID
	}
	byID[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			byID := s.mu.holds[job]
			if byID[id]--; byID[id] <= 0 {
				delete(byID, id)
			}
			if len(byID) == 0 {
				delete(s.mu.holds, job)
			}
		})
	}, nil
}

// heldLocked returns the held checkpoint ids of job, ascending.
func (s *Store) heldLocked(job string) []uint64 {
	var ids []uint64
	for id := range s.mu.holds[job] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ExportSavepoint writes completed checkpoint id of job as a savepoint into
// dir, which must not exist or be an empty directory (a non-empty one is
// refused with ErrInvalidArgument before anything is written). It holds the
// checkpoint against retention while it copies (Hold), reads its metadata
// and every block it references — verifying each block's checksum and each
// key group's totals, so that a damaged checkpoint never becomes a
// savepoint (a corruption error naming the checkpoint) — writes them
// verbatim into a new Store in dir, syncs it, records the checkpoint as
// completed there, closes that Store, and writes the descriptor last. The
// directory is created owner-only (0700); what Pebble creates inside it
// is reachable only through it.
//
// Everything goes through the Store's filesystem (Options.FS). On an error
// ExportSavepoint removes what it wrote (a directory it created, or the
// contents of the empty one it was given); whatever a crash or a failed
// removal leaves has no descriptor, so it is not a savepoint
// (ReadSavepointDescriptor refuses it).
func (s *Store) ExportSavepoint(job string, id uint64, dir string) (SavepointDescriptor, error) {
	d := SavepointDescriptor{Dir: dir, Job: job, CheckpointID: id}
	if err := s.enter(); err != nil {
		return d, err
	}
	defer s.leave()
	release, err := s.Hold(job, id)
	if err != nil {
		return d, err
	}
	defer release()
	created, err := s.prepareSavepointDir(dir)
	if err != nil {
		return d, err
	}
	d, err = s.exportInto(job, id, dir)
	if err == nil {
		err = atomicfile.Write(s.fs, s.fs.PathJoin(dir, SavepointDescriptorName), atomicfile.Encode(d.encode()),
			func(dir string) error { return syncDir(s.fs, dir) })
		if err != nil {
			err = ioErrorf(err, "cannot write the descriptor of savepoint %s", dir)
		}
	}
	if err != nil {
		s.removeSavepointDir(dir, created)
		return d, fmt.Errorf("snapshot: cannot write checkpoint %d of job %s as a savepoint in %s: %w", id, job, dir, err)
	}
	return d, nil
}

// prepareSavepointDir makes dir an empty directory, created owner-only
// and durably if it did not exist (created true).
func (s *Store) prepareSavepointDir(dir string) (created bool, err error) {
	fs := s.fs
	if fi, err := fs.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, invalidf("savepoint target %s exists and is not a directory", dir)
		}
		names, err := fs.List(dir)
		if err != nil {
			return false, ioErrorf(err, "cannot list savepoint target %s", dir)
		}
		if len(names) > 0 {
			return false, invalidf("savepoint target %s exists and is not empty (%d entries): choose a new directory", dir, len(names))
		}
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, ioErrorf(err, "cannot stat savepoint target %s", dir)
	}
	parent := fs.PathDir(dir)
	if err := mkdirAllSynced(fs, parent); err != nil {
		return false, ioErrorf(err, "cannot create %s", parent)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return false, ioErrorf(err, "cannot create savepoint directory %s", dir)
	}
	if err := syncDir(fs, parent); err != nil {
		_ = fs.RemoveAll(dir)
		return false, ioErrorf(err, "cannot sync %s", parent)
	}
	return true, nil
}

// removeSavepointDir removes what a failed export wrote: dir itself if it
// created it, else dir's contents.
func (s *Store) removeSavepointDir(dir string, created bool) {
	fs := s.fs
	if created {
		if err := fs.RemoveAll(dir); err != nil {
			s.opts.Logger("snapshot: WARNING: cannot remove the failed savepoint %s (it has no descriptor, so it is not a savepoint): %v", dir, err)
		}
		return
	}
	names, _ := fs.List(dir)
	for _, n := range names {
		if err := fs.RemoveAll(fs.PathJoin(dir, n)); err != nil {
			s.opts.Logger("snapshot: WARNING: cannot remove %s of the failed savepoint %s (it has no descriptor, so it is not a savepoint): %v",
				n, dir, err)
		}
	}
}

// exportInto copies checkpoint id of job into a new Store in dir and
// returns the descriptor to write.
func (s *Store) exportInto(job string, id uint64, dir string) (SavepointDescriptor, error) {
	d := SavepointDescriptor{Dir: dir, Job: job, CheckpointID: id}
	m, err := s.LoadMetadata(job, id)
	if err != nil {
		return d, err
	}
	raw, closer, err := s.db.Get(metaKey(nil, job, id))
	if err != nil {
		return d, ioErrorf(err, "cannot read the metadata of checkpoint %d of job %s", id, job)
	}
	rawMeta := slices.Clone(raw)
	_ = closer.Close()
	d.CompletedAt = time.Unix(0, m.CompletedAtUnixNano).UTC()
	d.MetadataFormat = m.FormatVersion

	dopts := s.opts
	dst, err := Open(dir, dopts)
	if err != nil {
		return d, err
	}
	closed := false
	defer func() {
		if !closed {
			_ = dst.Close()
		}
	}()

	it, err := s.newIter(jobPrefix(nil, blockTag, job), jobPrefixEnd(nil, blockTag, job))
	if err != nil {
		return d, err
	}
	defer it.Close()
	batch := dst.db.NewBatch()
	defer func() {
		if batch != nil {
			_ = batch.Close()
		}
	}()
	commit := func(opts *pebble.WriteOptions) error {
		err, abandoned := dst.callPebble(func() error { return batch.Commit(opts) })
		if abandoned {
			batch = nil // still in Pebble's hands
			return err
		}
		_ = batch.Close()
		batch = dst.db.NewBatch()
		if err != nil {
			return ioErrorf(err, "cannot write savepoint %s", dir)
		}
		return nil
	}
	var key []byte
	for i := range m.Tasks {
		h := m.Tasks[i].Keyed
		if h == nil {
			continue
		}
		for j := range h.KeyGroups {
			ref := &h.KeyGroups[j]
			// The base (part 0), then every delta of the chain.
			for pi := 0; pi <= len(ref.Deltas); pi++ {
				writer, blocks, want, delta := ref.Writer, ref.Blocks, ref.StoredBytes, false
				if pi > 0 {
					dr := &ref.Deltas[pi-1]
					writer, blocks, want, delta = dr.Writer, dr.Blocks, dr.StoredBytes, true
				}
				var stored int64
				for seq := 0; seq < blocks; seq++ {
					key = blockKey(key[:0], job, writer, h.Scope, ref.KeyGroup, seq)
					ctx := refContext(job, id, h.Scope, ref, pi, seq)
					if !it.SeekGE(key) || !slices.Equal(it.Key(), key) {
						if err := it.Error(); err != nil {
							return d, ioErrorf(err, "cannot read block: %s", ctx)
						}
						return d, corruptf("%s: block is missing", ctx)
					}
					val, err := it.ValueAndErr()
					if err != nil {
						return d, ioErrorf(err, "cannot read block: %s", ctx)
					}
					bv, err := parseBlock(val)
					if err != nil {
						return d, withContext(err, ctx)
					}
					if bv.delta != delta {
						return d, corruptf("%s: %s", ctx, blockKindMismatch(delta))
					}
					if err := batch.Set(key, val, nil); err != nil {
						return d, ioErrorf(err, "cannot write savepoint %s", dir)
					}
					stored += int64(len(val))
					d.Blocks++
					if batch.Len() >= exportBatchBytes {
						if err := commit(pebble.NoSync); err != nil {
							return d, err
						}
					}
				}
				if stored != want {
					return d, corruptf("%s: blocks hold %d stored bytes; the checkpoint says %d",
						refContext(job, id, h.Scope, ref, pi, -1), stored, want)
				}
				d.StoredBytes += stored
			}
		}
	}
	// The metadata last, synced: that sync makes the blocks durable too
	// (see CommitCheckpoint).
	if err := batch.Set(metaKey(nil, job, id), rawMeta, nil); err != nil {
		return d, ioErrorf(err, "cannot write savepoint %s", dir)
	}
	if err := commit(pebble.Sync); err != nil {
		return d, err
	}
	if err := dst.writeRecord(job, id); err != nil {
		return d, err
	}
	closed = true
	if err := dst.Close(); err != nil {
		return d, err
	}
	return d, nil
}
