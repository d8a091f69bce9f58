package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/atomicfile"
	"github.com/streamd/streamd/job"
)

// registryDir is the folder of the data dir where the daemon keeps one
// file per submitted job, so that a restarted daemon knows which jobs to
// resume.
const registryDir = "jobs"

// maxRecordBytes bounds a registry file: a spec and a few fields.
const maxRecordBytes = job.MaxSpecBytes + 64<<10

// Desired states of a job in the registry.
const (
	desiredRunning  = "running"  // resume on start
	desiredFinished = "finished" // its sources ended and its output is committed
	desiredStopped  = "stopped"  // stopped through the API (final checkpoint taken)
	desiredCanceled = "canceled" // cancelled through the API
	desiredFailed   = "failed"   // failed beyond its restart strategy
)

// record is what the registry keeps of a job: enough to resume it.
type record struct {
	ID          string    `json:"id"`
	Spec        string    `json:"spec"` // the spec as submitted
	Desired     string    `json:"desired"`
	SubmittedAt time.Time `json:"submitted_at"`
	// Savepoint is the savepoint the job was submitted from, until its
	// first checkpoint completes (then its own checkpoints are newer).
	Savepoint             string `json:"savepoint,omitempty"`
	AllowNonRestoredState bool   `json:"allow_non_restored_state,omitempty"`
	// Baseline is the newest checkpoint id of the job's name in the store
	// when it was submitted: a completed checkpoint above it is the new
	// job's own, newer than its savepoint, and every later attempt
	// restores from those instead of the savepoint.
	Baseline uint64 `json:"baseline,omitempty"`
	// Failure is the last failure of a failed job.
	Failure string `json:"failure,omitempty"`
}

// registry reads and writes job records in DIR/jobs, each replaced
// atomically (temporary file, fsync, rename, directory fsync).
type registry struct {
	fs  vfs.FS
	dir string
}

func newRegistry(dataDir string) (*registry, error) {
	r := &registry{fs: vfs.Default, dir: filepath.Join(dataDir, registryDir)}
	if err := atomicfile.MkdirAll(r.fs, r.dir, r.syncDir); err != nil {
		return nil, err
	}
	// Owner-only: specs may name paths and, later, where credentials come
	// from.
	if err := os.Chmod(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return r, nil
}

func (r *registry) syncDir(dir string) error {
	d, err := r.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("cannot open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot fsync directory %s: %w", dir, err)
	}
	return nil
}

func (r *registry) path(id string) string { return filepath.Join(r.dir, id+".json") }

// put writes rec durably.
func (r *registry) put(rec *record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.fs, r.path(rec.ID), append(data, '\n'), r.syncDir); err != nil {
		return fmt.Errorf("server: cannot record job %q: %w", rec.ID, err)
	}
	return os.Chmod(r.path(rec.ID), 0o600)
}

// list reads every record. A damaged record is reported in bad (with what
// is wrong) and skipped: one bad file must not keep the other jobs from
// resuming.
func (r *registry) list() (recs []*record, bad []error, err error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("server: cannot list %s: %w", r.dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || !e.Type().IsRegular() {
			continue
		}
		rec, err := r.read(filepath.Join(r.dir, name))
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if rec.ID+".json" != name {
			bad = append(bad, fmt.Errorf("server: %s holds job %q, not %q: skipped", filepath.Join(r.dir, name), rec.ID, strings.TrimSuffix(name, ".json")))
			continue
		}
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].SubmittedAt.Before(recs[j].SubmittedAt) })
	return recs, bad, nil
}

func (r *registry) read(path string) (*record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("server: cannot read %s: %w", path, err)
	}
	if len(data) > maxRecordBytes {
		return nil, fmt.Errorf("server: %s is larger than %d bytes: skipped", path, maxRecordBytes)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("server: %s is damaged (%v): skipped", path, err)
	}
	if rec.ID == "" || rec.Spec == "" {
		return nil, fmt.Errorf("server: %s has no job id or spec: skipped", path)
	}
	return &rec, nil
}

// remove deletes id's record, if any.
func (r *registry) remove(id string) error {
	err := r.fs.Remove(r.path(id))
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("server: cannot remove the record of job %q: %w", id, err)
	}
	return r.syncDir(r.dir)
}
