package file

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/streamd/streamd/internal/atomicfile"
	"github.com/streamd/streamd/internal/dirlock"
)

// What the sink committed, from its own directory (DESIGN durability rule
// 2), and one writer per directory.
//
// The commit marker. Before a commit makes transactions visible, the sink
// records, durably, the highest checkpoint id among them in
// .streamd-inprogress/JOB.committed (written to a temporary name, fsynced,
// renamed, and the folder fsynced). Written before the renames, the marker
// is never behind the committed files: a crash between the two leaves a
// marker ahead of what is visible, which recovery only ever compares with
// the checkpoint it restores (a checkpoint at or above the marker
// re-commits those transactions; one below it means the store lost a
// completed checkpoint, and output would be duplicated). The engine asks
// LastCommitted before it recovers the sink and refuses to start when the
// marker is above the checkpoint it restores, or when there is a marker and
// no checkpoint at all.
//
// The lock. The sink takes an exclusive lock on .streamd-inprogress/LOCK
// (dirlock: an flock naming the job and pid) before it touches the
// directory, and holds it until Close, so a second job — or a second run of
// the same job with another data dir — writing into the directory is
// refused, naming the holder, instead of deleting the first one's work in
// progress.

const (
	lockFileName = "LOCK"
	markerSuffix = ".committed"
	markerMagic  = "streamd-file-sink-commit v1"
)

// marker is the content of a commit marker.
type marker struct {
	Job string
	// Through is the highest checkpoint id of a transaction the sink
	// committed (or was about to commit).
	Through uint64
	// Run identifies the Sink that wrote it: 64 random bits and its pid.
	Run string
}

// encodeMarker returns the marker line "MAGIC job=J through=N run=R",
// checksummed (internal/atomicfile).
func encodeMarker(m marker) []byte {
	return atomicfile.Encode(fmt.Sprintf("%s job=%s through=%d run=%s", markerMagic, m.Job, m.Through, m.Run))
}

// decodeMarker parses a commit marker; a damaged one is an error that says
// so (recovery refuses rather than guess what was committed).
func decodeMarker(b []byte) (marker, error) {
	var m marker
	body, err := atomicfile.Decode(b)
	if err != nil {
		return m, err
	}
	fields := strings.Fields(body)
	if len(fields) != 5 || fields[0]+" "+fields[1] != markerMagic {
		return m, errors.New("unknown format")
	}
	for _, f := range fields[2:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "job":
			m.Job = v
		case "through":
			if m.Through, err = strconv.ParseUint(v, 10, 64); err != nil {
				return m, fmt.Errorf("bad checkpoint id %q", v)
			}
		case "run":
			m.Run = v
		default:
			return m, fmt.Errorf("unknown field %q", k)
		}
	}
	return m, nil
}

func (s *Sink[T]) markerPath() string {
	return s.opts.FS.PathJoin(s.tmpDir(), s.job+markerSuffix)
}

// LastCommitted returns the highest checkpoint id whose transactions this
// job's sink committed into the directory, 0 if it committed none (no
// marker). A damaged marker is an error. It implements
// engine.CommitReporter. It takes the directory's lock first (the engine
// asks before it recovers the sink): what another writer is committing
// meanwhile is no answer.
func (s *Sink[T]) LastCommitted() (uint64, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	b, err := atomicfile.Read(s.opts.FS, s.markerPath())
	if err != nil {
		if isNotExist(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("file: cannot read the commit marker %s: %w", s.markerPath(), err)
	}
	m, err := decodeMarker(b)
	if err == nil && m.Job != s.job {
		err = fmt.Errorf("it belongs to job %q", m.Job)
	}
	if err != nil {
		return 0, fmt.Errorf("file: the commit marker %s is damaged (%v): cannot tell what this sink committed", s.markerPath(), err)
	}
	return m.Through, nil
}

// recordCommit makes "committed through id" durable before a commit of
// transactions up to id makes them visible. Commits of the tasks of a job
// share one marker: a value at or below what this Sink recorded already is
// not written again. A failed write is an error of the commit (and its
// fsync is never retried: the next call fails with it).
func (s *Sink[T]) recordCommit(id uint64) error {
	s.commits.Lock()
	defer s.commits.Unlock()
	if s.commits.err != nil {
		return s.commits.err
	}
	if id <= s.commits.through {
		return nil
	}
	s.commits.err = s.writeMarker(marker{Job: s.job, Through: id, Run: s.run})
	if s.commits.err != nil {
		return s.commits.err
	}
	s.commits.through = id
	return nil
}

func (s *Sink[T]) writeMarker(m marker) error {
	if err := atomicfile.Write(s.opts.FS, s.markerPath(), encodeMarker(m), s.syncDir); err != nil {
		return fmt.Errorf("file: cannot write the commit marker: %w", err)
	}
	return nil
}

// lock takes the directory's lock once (Recover and NewWriter call it).
func (s *Sink[T]) lock() error {
	s.commits.Lock()
	defer s.commits.Unlock()
	if s.commits.lock != nil {
		return nil
	}
	if err := s.mkdirs(); err != nil {
		return err
	}
	holder := fmt.Sprintf("job %q (pid %d, run %s)", s.job, os.Getpid(), s.run)
	l, err := dirlock.Lock(s.opts.FS, s.opts.FS.PathJoin(s.tmpDir(), lockFileName), holder)
	if err != nil {
		var held *dirlock.HeldError
		if errors.As(err, &held) {
			by := held.Holder
			if by == "" {
				by = "another writer"
			}
			return fmt.Errorf("file: output directory %s is in use by %s: one job writes into a directory at a time", s.opts.Dir, by)
		}
		return fmt.Errorf("file: cannot lock output directory %s: %w", s.opts.Dir, err)
	}
	s.commits.lock = l
	return nil
}

// Close releases the directory's lock (the engine calls it when the job's
// run ends). The sink can be used again: the next Recover locks again.
func (s *Sink[T]) Close() error {
	s.commits.Lock()
	defer s.commits.Unlock()
	if s.commits.lock == nil {
		return nil
	}
	err := s.commits.lock.Close()
	s.commits.lock = nil
	return err
}

func newRunID() (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(rnd[:]), nil
}
