package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/streamd/streamd/internal/atomicfile"
)

// The record of completed checkpoints: besides Pebble, the data dir keeps
// one small checksummed file per job, DIR/completed/JOB, that names the
// newest checkpoint of the job that completed. CommitCheckpoint replaces it
// (atomically, synced: internal/atomicfile) right after the checkpoint's
// metadata is durable in Pebble, so the record is never ahead of Pebble.
// Recover compares the two: a record above every checkpoint Pebble holds
// means the store lost a completed checkpoint (a truncated or removed WAL,
// a damaged MANIFEST, files restored from another time), which is reported
// as such (ErrLost) and never treated as "no checkpoint yet": starting
// over, or from an older checkpoint, would duplicate committed output.

// recordDirName is the directory in the data dir that holds the records.
const recordDirName = "completed"

const recordMagic = "streamd-completed-checkpoint v1"

// ErrLost is wrapped by the error of a store that lost a completed
// checkpoint of a job.
var ErrLost = errors.New("snapshot: the store lost a completed checkpoint")

// recordState guards the record files of a Store.
type recordState struct {
	sync.Mutex
	dirReady bool  // guarded; DIR/completed exists durably
	err      error // guarded; a failed record write: every later one fails (its fsync is never retried)
}

func (s *Store) recordPath(job string) string {
	return s.fs.PathJoin(s.dir, recordDirName, job)
}

// writeRecord records id as the newest completed checkpoint of job.
func (s *Store) writeRecord(job string, id uint64) error {
	r := &s.record
	r.Lock()
	defer r.Unlock()
	if r.err != nil {
		return r.err
	}
	if !r.dirReady {
		if err := mkdirAllSynced(s.fs, s.fs.PathJoin(s.dir, recordDirName)); err != nil {
			r.err = ioErrorf(err, "cannot create the record of completed checkpoints in %s", s.dir)
			return r.err
		}
		r.dirReady = true
	}
	body := fmt.Sprintf("%s job=%s checkpoint=%d", recordMagic, job, id)
	if err := atomicfile.Write(s.fs, s.recordPath(job), atomicfile.Encode(body), func(dir string) error { return syncDir(s.fs, dir) }); err != nil {
		r.err = ioErrorf(err, "cannot record completed checkpoint %d of job %s", id, job)
	}
	return r.err
}

// CompletedRecord returns the newest completed checkpoint of job that the
// record file names, and false when the job has none. A damaged record is
// a corruption error.
func (s *Store) CompletedRecord(job string) (uint64, bool, error) {
	if err := s.enter(); err != nil {
		return 0, false, err
	}
	defer s.leave()
	b, err := atomicfile.Read(s.fs, s.recordPath(job))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, ioErrorf(err, "cannot read the record of completed checkpoints of job %s", job)
	}
	id, err := decodeRecord(job, b)
	if err != nil {
		return 0, false, corruptf("the record of completed checkpoints %s is damaged: %v", s.recordPath(job), err)
	}
	return id, true, nil
}

func decodeRecord(job string, b []byte) (uint64, error) {
	body, err := atomicfile.Decode(b)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(body)
	if len(f) != 4 || f[0]+" "+f[1] != recordMagic || f[2] != "job="+job || !strings.HasPrefix(f[3], "checkpoint=") {
		return 0, errors.New("unknown format or another job's record")
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(f[3], "checkpoint="), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("bad checkpoint id %q", f[3])
	}
	return id, nil
}

// checkRecord compares recorded, the record of job, with the newest
// completed checkpoint Pebble holds (0: none).
func (s *Store) checkRecord(job string, recorded, newest uint64) error {
	if recorded <= newest {
		return nil
	}
	have := fmt.Sprintf("its newest is %d", newest)
	if newest == 0 {
		have = "it holds none"
	}
	return &classError{
		msg: fmt.Sprintf("snapshot: the store in %s lost completed checkpoint %d of job %s (%s names it; %s): "+
			"refusing to start over or from an older checkpoint, which would duplicate or lose output; restore the data dir from a backup, "+
			"or move the job's output away and remove %s to start over",
			s.dir, recorded, job, s.recordPath(job), have, s.recordPath(job)),
		class: ErrLost,
	}
}
