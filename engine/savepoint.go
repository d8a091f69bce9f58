package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// On-demand checkpoints and savepoints.
//
// TriggerCheckpoint and TriggerSavepoint queue a demand for the driver,
// which steps coord.TriggerNow; the coordinator triggers it now (ignoring
// the interval and the minimum pause, waiting for a free MaxConcurrent
// slot) and merges demands made before it triggers into one checkpoint. The
// driver attaches every waiting demand to the next on-demand trigger and
// answers them when that checkpoint completes or is aborted. For a
// savepoint the driver holds the completed checkpoint against retention
// (snapshot.Store.Hold) before anything else can run retention, and the
// caller's goroutine exports it (snapshot.Store.ExportSavepoint) while the
// job goes on, then releases the hold. StopWithSavepoint marks the final
// checkpoint as a savepoint and Run exports it before it returns.
//
// Restoring from a savepoint (Options.Restore) reads the keyed state,
// source positions and pending sink transactions from the savepoint's own
// store (snapshot.OpenSavepoint, read-only), instead of the newest
// checkpoint of the job's store, and writes the new checkpoints to the
// job's store with ids above both. A corrupt savepoint is refused (there is
// nothing to fall back to), naming the checkpoint and the block.

// ErrNotRunning is returned by TriggerCheckpoint and TriggerSavepoint when
// the job is not running (Run not called yet, or returned).
var ErrNotRunning = errors.New("engine: job is not running")

// RestoreOptions says where a job restores from (Options.Restore).
type RestoreOptions struct {
	// Savepoint is the directory of a savepoint (snapshot.ExportSavepoint,
	// Job.TriggerSavepoint, Job.StopWithSavepoint) to restore from
	// instead of the newest checkpoint in the job's store. The job may have
	// another name and other parallelisms than the one that took it (as
	// for a checkpoint: state belongs to operators). Empty: the job's own
	// newest checkpoint.
	Savepoint string
	// AllowNonRestoredState lets the job start although the checkpoint or
	// savepoint holds state of operators the job no longer has (Flink's
	// --allowNonRestoredState): that state is skipped with a logged
	// warning. Without it such a restore fails with an IncompatibleError
	// that names the operators. Other incompatibilities (a changed state
	// signature or kind) fail either way.
	AllowNonRestoredState bool
}

// Savepoint describes a savepoint a job wrote.
type Savepoint struct {
	// Path is the savepoint directory.
	Path string `json:"path"`
	// CheckpointID is the checkpoint it holds.
	CheckpointID uint64 `json:"checkpoint_id"`
	// Job is the name of the job that took it.
	Job string `json:"job"`
	// TakenAt is when its checkpoint completed.
	TakenAt time.Time `json:"taken_at"`
	// StateBytes is the stored size of its keyed state.
	StateBytes int64 `json:"state_size_bytes"`
}

// CheckpointOverview is the live view of a job's checkpoints, for the
// REST API (Flink's checkpoint counts, in-progress checkpoints and restore).
type CheckpointOverview struct {
	Triggered uint64 `json:"triggered"`
	Completed uint64 `json:"completed"`
	// Failed counts the checkpoints that were aborted, for any reason
	// (Status "failed" in CheckpointStats).
	Failed     uint64                 `json:"failed"`
	InProgress []InProgressCheckpoint `json:"in_progress"`
	// Restored is the checkpoint or savepoint the run started from, nil
	// for a fresh start.
	Restored *RestoredCheckpoint `json:"restored,omitempty"`
}

// InProgressCheckpoint is a checkpoint that has been triggered and not yet
// completed or aborted.
type InProgressCheckpoint struct {
	ID          uint64    `json:"id"`
	TriggeredAt time.Time `json:"trigger_timestamp"`
	// Acks is the number of tasks that acknowledged it, of Tasks.
	Acks      int  `json:"num_acknowledged_subtasks"`
	Tasks     int  `json:"num_subtasks"`
	Savepoint bool `json:"is_savepoint"`
	Final     bool `json:"final,omitempty"`
}

// RestoredCheckpoint is what a run restored from.
type RestoredCheckpoint struct {
	ID uint64 `json:"id"`
	// SavepointPath is the savepoint it came from, "" for the job's own
	// checkpoint.
	SavepointPath string    `json:"external_path,omitempty"`
	At            time.Time `json:"restore_timestamp"`
}

// demand is one TriggerCheckpoint or TriggerSavepoint waiting for its
// checkpoint.
type demand struct {
	savepoint bool
	// done receives the outcome once (buffered).
	done chan demandResult
	// abandoned: the caller gave up (its context ended); the driver then
	// releases what it would have handed over. Guarded by the runtime's mu.
	abandoned bool
}

type demandResult struct {
	stats   CheckpointStats
	release func() // the hold of a savepoint's checkpoint, nil otherwise
	err     error
}

// demandState is the runtime's share of on-demand checkpoints and of the
// overview; guarded by jobRuntime.mu.
type demandState struct {
	ended    bool      // the driver returned: no more demands
	incoming []*demand // queued for the driver
	overview CheckpointOverview
	last     *Savepoint
}

// resolve hands d its outcome, or releases it if the caller gave up.
func (rt *jobRuntime) resolve(d *demand, res demandResult) {
	rt.mu.Lock()
	abandoned := d.abandoned
	if !abandoned {
		d.done <- res
	}
	rt.mu.Unlock()
	if abandoned && res.release != nil {
		res.release()
	}
}

// demandCheckpoint queues a demand and waits for its checkpoint.
func (j *Job) demandCheckpoint(ctx context.Context, savepoint bool) (*jobRuntime, demandResult, error) {
	rt := j.runtime()
	if rt == nil {
		return nil, demandResult{}, fmt.Errorf("%w: job %q has not started", ErrNotRunning, j.name)
	}
	if !rt.checkpointing {
		return nil, demandResult{}, fmt.Errorf("engine: job %q runs without checkpointing: no checkpoint can be taken", j.name)
	}
	d := &demand{savepoint: savepoint, done: make(chan demandResult, 1)}
	rt.mu.Lock()
	if rt.mu.demands.ended {
		rt.mu.Unlock()
		return nil, demandResult{}, fmt.Errorf("%w: job %q has ended", ErrNotRunning, j.name)
	}
	rt.mu.demands.incoming = append(rt.mu.demands.incoming, d)
	rt.mu.Unlock()
	select {
	case rt.demandNotify <- struct{}{}:
	default:
	}
	select {
	case res := <-d.done:
		return rt, res, res.err
	case <-ctx.Done():
		rt.mu.Lock()
		d.abandoned = true
		rt.mu.Unlock()
		select {
		case res := <-d.done: // resolved meanwhile
			if res.release != nil {
				res.release()
			}
		default:
		}
		return nil, demandResult{}, fmt.Errorf("engine: job %q: gave up waiting for the checkpoint: %w", j.name, ctx.Err())
	}
}

// TriggerCheckpoint triggers a checkpoint now — ignoring the interval and
// the minimum pause, but waiting for a free slot (MaxConcurrent) — and
// waits until it completes or fails, or ctx ends. A failed checkpoint is
// an error that says why (a timeout, a task's decline); it does not count
// towards TolerableFailures. Requests made before the coordinator triggers
// are served by one checkpoint. A job that is not running (ErrNotRunning),
// runs without checkpointing, or is stopping is an error.
func (j *Job) TriggerCheckpoint(ctx context.Context) (CheckpointStats, error) {
	_, res, err := j.demandCheckpoint(ctx, false)
	if res.release != nil {
		res.release()
	}
	return res.stats, err
}

// TriggerSavepoint triggers a checkpoint now, as TriggerCheckpoint, and
// writes it as a savepoint into dir (snapshot.Store.ExportSavepoint): a
// self-contained directory outside retention that a job can restore from
// (Options.Restore). dir must be new or an empty directory; a non-empty one
// is refused before anything is triggered. The checkpoint is held against
// retention until the copy is done; the job goes on meanwhile.
func (j *Job) TriggerSavepoint(ctx context.Context, dir string) (Savepoint, error) {
	if err := checkSavepointDir(dir); err != nil {
		return Savepoint{}, fmt.Errorf("engine: job %q: %w", j.name, err)
	}
	rt, res, err := j.demandCheckpoint(ctx, true)
	if err != nil {
		return Savepoint{}, err
	}
	defer res.release()
	return rt.exportSavepoint(res.stats.ID, dir)
}

// StopWithSavepoint stops the job like Stop — sources stop, a final
// checkpoint is taken and committed — and Run then writes that checkpoint
// as a savepoint into dir before it returns (LastSavepoint reports it; a
// failed export is Run's error). dir must be new or an empty directory. It
// returns an error, and stops nothing, when dir is not usable or the job
// runs without checkpointing. It may be called before Run.
func (j *Job) StopWithSavepoint(dir string) error {
	if j.opts.Checkpointing == nil {
		return fmt.Errorf("engine: job %q runs without checkpointing: it cannot stop with a savepoint", j.name)
	}
	if err := checkSavepointDir(dir); err != nil {
		return fmt.Errorf("engine: job %q: %w", j.name, err)
	}
	jobsMu.Lock()
	j.stopSavepoint = dir
	jobsMu.Unlock()
	j.Stop()
	return nil
}

// LastSavepoint returns the newest savepoint the job wrote
// (TriggerSavepoint, StopWithSavepoint), also after Run returned.
func (j *Job) LastSavepoint() (Savepoint, bool) {
	rt := j.runtime()
	if rt == nil {
		return Savepoint{}, false
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.mu.demands.last == nil {
		return Savepoint{}, false
	}
	return *rt.mu.demands.last, true
}

// CheckpointOverview returns the live counts of the job's checkpoints, the
// ones in progress and what the run restored from. The zero value before
// Run.
func (j *Job) CheckpointOverview() CheckpointOverview {
	rt := j.runtime()
	if rt == nil {
		return CheckpointOverview{}
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	o := rt.mu.demands.overview
	o.InProgress = slices.Clone(o.InProgress)
	if o.Restored != nil {
		r := *o.Restored
		o.Restored = &r
	}
	return o
}

// checkSavepointDir refuses a savepoint target that exists and is not an
// empty directory (ExportSavepoint checks again, on the store's FS).
func checkSavepointDir(dir string) error {
	if dir == "" {
		return errors.New("no savepoint directory given")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("savepoint directory %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("savepoint directory %s exists and is not empty: choose a new directory", dir)
	}
	return nil
}

// exportSavepoint writes checkpoint id as a savepoint into dir and records
// it (LastSavepoint, the checkpoint's statistics).
func (rt *jobRuntime) exportSavepoint(id uint64, dir string) (Savepoint, error) {
	d, err := rt.store.ExportSavepoint(rt.job.name, id, dir)
	if err != nil {
		return Savepoint{}, fmt.Errorf("engine: job %q: %w", rt.job.name, err)
	}
	sp := Savepoint{Path: dir, CheckpointID: id, Job: rt.job.name, TakenAt: d.CompletedAt, StateBytes: d.StoredBytes}
	rt.mu.Lock()
	rt.mu.demands.last = &sp
	for i := range rt.mu.stats {
		if rt.mu.stats[i].ID == id {
			rt.mu.stats[i].Savepoint = true
			rt.mu.stats[i].SavepointPath = dir
		}
	}
	rt.mu.Unlock()
	rt.opts.Logger("streamd: job %q: savepoint of checkpoint %d written to %s", rt.job.name, id, dir)
	return sp, nil
}

// stopSavepointDir returns the directory StopWithSavepoint asked for, "".
func (rt *jobRuntime) stopSavepointDir() string {
	jobsMu.Lock()
	defer jobsMu.Unlock()
	return rt.job.stopSavepoint
}

// finishStopSavepoint writes the savepoint StopWithSavepoint asked for,
// once Run's job has ended cleanly: of the final checkpoint, or, for a job
// that had already finished, of the checkpoint it restored.
func (rt *jobRuntime) finishStopSavepoint() error {
	dir := rt.stopSavepointDir()
	if dir == "" {
		return nil
	}
	id := rt.finalID
	if id == 0 && rt.restored != nil && rt.restoredSavepoint == "" {
		id = rt.restored.CheckpointID
	}
	if id == 0 {
		return fmt.Errorf("engine: job %q stopped, but no final checkpoint completed: no savepoint was written to %s", rt.job.name, dir)
	}
	_, err := rt.exportSavepoint(id, dir)
	return err
}

// restoreSettings returns Options.Restore, or the zero value.
func (j *Job) restoreSettings() RestoreOptions {
	if r := j.opts.Restore; r != nil {
		return *r
	}
	return RestoreOptions{}
}

// checkRestoreOptions refuses Options.Restore without checkpointing.
func (j *Job) checkRestoreOptions() error {
	if r := j.opts.Restore; r != nil && r.Savepoint != "" && j.opts.Checkpointing == nil {
		return fmt.Errorf("engine: job %q: restoring from savepoint %s needs checkpointing (the state would be restored and never checkpointed again)", j.name, r.Savepoint)
	}
	return nil
}

// recoverFrom finds the checkpoint the run restores from, as
// snapshot.Store.Recover does, and calls read with it: the savepoint of
// Options.Restore if one is set, else the newest checkpoint of the job's
// store that read accepts. A savepoint has one checkpoint: a corrupt one
// is an error (naming the checkpoint and the block), never a fallback.
// rt.readFrom is the store read must read blocks from.
func (rt *jobRuntime) recoverFrom(job string, read func(m *snapshot.Metadata) error) (*snapshot.Metadata, error) {
	path := rt.job.restoreSettings().Savepoint
	if path == "" {
		rt.readFrom = rt.store
		return rt.store.Recover(job, read)
	}
	sopts := snapshot.Options{Logger: rt.opts.Logger}
	sp, d, err := snapshot.OpenSavepoint(path, sopts)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = sp.Close()
		rt.readFrom = nil
	}()
	rt.readFrom = sp
	m, err := sp.LoadMetadata(d.Job, d.CheckpointID)
	if err == nil {
		err = read(m)
	}
	if ie := (*IncompatibleError)(nil); errors.As(err, &ie) {
		ie.Savepoint = path
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("savepoint %s (checkpoint %d of job %q): %w", path, d.CheckpointID, d.Job, err)
	}
	rt.restoredSavepoint = path
	rt.opts.Logger("streamd: job %q: restoring from savepoint %s (checkpoint %d of job %q, taken %s)",
		job, path, d.CheckpointID, d.Job, d.CompletedAt.Format(time.RFC3339))
	return m, nil
}

// restoredID returns the id of the restored checkpoint, 0 for none.
func (rt *jobRuntime) restoredID() uint64 {
	if rt.restored == nil {
		return 0
	}
	return rt.restored.CheckpointID
}

// noteRestored records what the run restored from in the overview.
func (rt *jobRuntime) noteRestored() {
	if rt.restored == nil {
		return
	}
	rt.mu.Lock()
	rt.mu.demands.overview.Restored = &RestoredCheckpoint{ID: rt.restored.CheckpointID, SavepointPath: rt.restoredSavepoint, At: time.Now()}
	rt.mu.Unlock()
}

// The driver's side (driver.go calls these on its goroutine).

// demandDriver is the driver's state of on-demand checkpoints.
type demandDriver struct {
	waiting  []*demand            // stepped as TriggerNow, not yet triggered
	attached map[uint64][]*demand // by the checkpoint that serves them
	stopping bool                 // Stop seen: no more demands
	done     bool                 // the final checkpoint completed
}

// takeDemands moves the queued demands to the driver: each is stepped as
// TriggerNow, or refused at once when the job cannot serve it.
func (rt *jobRuntime) takeDemands(co *coord.Coordinator, failure error) {
	dd := &rt.dd
	rt.mu.Lock()
	in := rt.mu.demands.incoming
	rt.mu.demands.incoming = nil
	rt.mu.Unlock()
	for _, d := range in {
		var why string
		switch {
		case failure != nil:
			why = "it is failing: " + failure.Error()
		case dd.stopping || dd.done:
			why = "it is stopping"
		}
		if why != "" {
			rt.resolve(d, demandResult{err: fmt.Errorf("%w: job %q cannot take a checkpoint now: %s", ErrNotRunning, rt.job.name, why)})
			continue
		}
		dd.waiting = append(dd.waiting, d)
		if err := co.Step(time.Now(), coord.TriggerNow{Savepoint: d.savepoint}); err != nil {
			panic(fmt.Sprintf("engine: TriggerNow refused: %v", err))
		}
	}
}

// demandTriggered attaches the waiting demands to an on-demand trigger and
// adds every trigger to the overview.
func (rt *jobRuntime) demandTriggered(tr coord.Triggered) {
	dd := &rt.dd
	if tr.OnDemand && len(dd.waiting) > 0 {
		if dd.attached == nil {
			dd.attached = make(map[uint64][]*demand)
		}
		dd.attached[tr.ID] = dd.waiting
		dd.waiting = nil
	}
	rt.mu.Lock()
	o := &rt.mu.demands.overview
	o.Triggered++
	o.InProgress = append(o.InProgress, InProgressCheckpoint{ID: tr.ID, TriggeredAt: tr.At, Tasks: len(rt.tasks), Savepoint: tr.Savepoint, Final: tr.Final})
	rt.mu.Unlock()
}

// demandAcked counts an acknowledgement in the overview.
func (rt *jobRuntime) demandAcked(id uint64) {
	rt.mu.Lock()
	for i := range rt.mu.demands.overview.InProgress {
		if p := &rt.mu.demands.overview.InProgress[i]; p.ID == id {
			p.Acks++
		}
	}
	rt.mu.Unlock()
}

// demandResolved answers the demands of checkpoint id, which completed
// (err nil, s its statistics) or was aborted, and updates the overview.
// For a savepoint demand the completed checkpoint is held before this
// returns, so no retention can delete it.
func (rt *jobRuntime) demandResolved(id uint64, s CheckpointStats, err error) {
	dd := &rt.dd
	rt.mu.Lock()
	o := &rt.mu.demands.overview
	if err == nil {
		o.Completed++
	} else {
		o.Failed++
	}
	o.InProgress = slices.DeleteFunc(o.InProgress, func(p InProgressCheckpoint) bool { return p.ID == id })
	rt.mu.Unlock()
	ds := dd.attached[id]
	delete(dd.attached, id)
	for _, d := range ds {
		res := demandResult{stats: s, err: err}
		if err != nil {
			res.err = fmt.Errorf("engine: job %q: checkpoint %d failed: %w", rt.job.name, id, err)
		} else if d.savepoint {
			if res.release, res.err = rt.store.Hold(rt.job.name, id); res.err != nil {
				res.err = fmt.Errorf("engine: job %q: cannot keep checkpoint %d for the savepoint: %w", rt.job.name, id, res.err)
			}
		}
		rt.resolve(d, res)
	}
}

// endDemands answers every demand still open when the driver returns (or
// when Run returns without driving), and refuses later ones.
func (rt *jobRuntime) endDemands(failure error) {
	dd := &rt.dd
	rt.mu.Lock()
	rt.mu.demands.ended = true
	open := rt.mu.demands.incoming
	rt.mu.demands.incoming = nil
	rt.mu.demands.overview.InProgress = nil
	rt.mu.Unlock()
	open = append(open, dd.waiting...)
	dd.waiting = nil
	for _, ds := range dd.attached {
		open = append(open, ds...)
	}
	clear(dd.attached)
	why := "it ended before the checkpoint completed"
	if failure != nil {
		why = "it failed before the checkpoint completed: " + failure.Error()
	}
	for _, d := range open {
		rt.resolve(d, demandResult{err: fmt.Errorf("%w: job %q: %s", ErrNotRunning, rt.job.name, why)})
	}
}
