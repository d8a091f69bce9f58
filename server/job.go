package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/internal/logx"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/jobrun"
	"github.com/streamd/streamd/snapshot"
)

// request is what the API (or the daemon's shutdown) asks of a job.
type request uint8

const (
	reqNone request = iota
	// reqStop: final checkpoint, sinks committed, then STOPPED.
	reqStop
	// reqStopSavepoint: the same, and the final checkpoint is exported
	// as a savepoint.
	reqStopSavepoint
	// reqCancel: stop at once, no final checkpoint (CANCELED); the sinks'
	// pre-committed transactions are left for recovery to commit or
	// abort.
	reqCancel
	// reqShutdown: the daemon stops: like reqStop, but the job stays
	// recorded as running, so that the next daemon resumes it.
	reqShutdown
	// reqCancelShutdown: the daemon's grace period ran out: stop at once,
	// still recorded as running.
	reqCancelShutdown
)

// failure is one failure of a job.
type failure struct {
	Time    time.Time
	Message string
	// Restarted says the job was restarted after it.
	Restarted bool
}

// managedJob is one job of the daemon, across its restarts.
type managedJob struct {
	m    *Manager
	id   string
	plan *job.Plan
	log  *slog.Logger
	done chan struct{} // closed when loop returns (or at once for an ended record)
	// submitted orders the jobs in lists.
	submitted time.Time

	mu struct {
		sync.Mutex
		rec        record // the registry's record, as last written
		status     string
		startTime  time.Time
		endTime    time.Time
		restarts   int
		failures   []failure
		req        request
		reqDir     string                  // savepoint dir of reqStopSavepoint
		wake       chan struct{}           // closed on a request, to end a restart wait
		cur        *engine.Job             // the running attempt; nil between attempts
		late       func() map[string]int64 // cur's late records per window or join step (jobrun.Built.LateRecords)
		cancelRun  func()                  // cancels cur's Run
		attempt    int                     // attempts started
		history    []ckptEntry             // checkpoints of every attempt, oldest first, bounded
		counts     ckptCounts              // over every attempt
		restored   *restoredInfo           // the newest restore
		savepoints []engine.Savepoint
		prev, last engine.Metrics // the two newest samples of cur's counters
		prevLast   bool           // prev is of the same attempt as last
	}
}

// ckptEntry is one checkpoint in a job's history.
type ckptEntry struct {
	attempt int
	stats   engine.CheckpointStats
}

type ckptCounts struct {
	completed, failed, restored int
}

type restoredInfo struct {
	ID        uint64
	At        time.Time
	Savepoint string // the savepoint's path, "" for a checkpoint
}

func (m *Manager) newJob(rec *record, plan *job.Plan) *managedJob {
	j := &managedJob{m: m, id: rec.ID, plan: plan, done: make(chan struct{}),
		log: m.opts.Logger.With("job", rec.ID), submitted: rec.SubmittedAt}
	j.mu.rec = *rec
	j.mu.status = StatusRunning
	j.mu.wake = make(chan struct{})
	return j
}

// endFromRecord marks a job that a previous daemon ended.
func (j *managedJob) endFromRecord() {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch j.mu.rec.Desired {
	case desiredFinished:
		j.mu.status = StatusFinished
	case desiredStopped:
		j.mu.status = StatusStopped
	case desiredCanceled:
		j.mu.status = StatusCanceled
	default:
		j.mu.status = StatusFailed
		if j.mu.rec.Failure != "" {
			j.mu.failures = append(j.mu.failures, failure{Time: j.mu.rec.SubmittedAt, Message: j.mu.rec.Failure})
		}
	}
	close(j.done)
}

func (j *managedJob) status() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.status
}

func (j *managedJob) ended() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// request asks the job to stop, stop with a savepoint, or cancel. A
// stronger request replaces a weaker one (cancel beats stop).
func (j *managedJob) request(r request, dir string) {
	j.mu.Lock()
	if r > j.mu.req || (r == reqCancel && j.mu.req == reqShutdown) {
		j.mu.req, j.mu.reqDir = r, dir
	}
	r, dir = j.mu.req, j.mu.reqDir
	cur, cancel := j.mu.cur, j.mu.cancelRun
	select {
	case <-j.mu.wake:
	default:
		close(j.mu.wake)
	}
	j.mu.Unlock()
	if cur != nil {
		applyRequest(cur, cancel, r, dir)
	}
}

func applyRequest(cur *engine.Job, cancel func(), r request, dir string) {
	switch r {
	case reqStop, reqShutdown:
		cur.Stop()
	case reqStopSavepoint:
		if err := cur.StopWithSavepoint(dir); err != nil {
			// Not running yet or any more: a plain stop; Stop reports the
			// missing savepoint.
			cur.Stop()
		}
	case reqCancel, reqCancelShutdown:
		cancel()
	}
}

// loop runs the job's attempts until it ends.
func (j *managedJob) loop() {
	defer close(j.done)
	b := newBackoff(j.plan.Spec.Restart)
	j.mu.Lock()
	j.mu.startTime = time.Now()
	j.mu.Unlock()
	for {
		runErr, ok := j.runAttempt()
		j.mu.Lock()
		req := j.mu.req
		j.mu.cur, j.mu.cancelRun, j.mu.late = nil, nil, nil
		j.mu.Unlock()
		switch {
		case !ok:
			j.end(StatusFailed, desiredFailed, runErr)
			return
		case req == reqCancel:
			j.end(StatusCanceled, desiredCanceled, nil)
			return
		case req == reqShutdown || req == reqCancelShutdown:
			// Recorded as running: the next daemon resumes it.
			j.end(StatusStopped, "", nil)
			return
		case runErr == nil && (req == reqStop || req == reqStopSavepoint):
			j.end(StatusStopped, desiredStopped, nil)
			return
		case runErr == nil:
			j.end(StatusFinished, desiredFinished, nil)
			return
		}
		// A failure.
		restart, delay := false, time.Duration(0)
		if retryable(runErr) {
			restart, delay = b.onFailure(time.Now(), j.m.opts.Rand)
		}
		j.mu.Lock()
		j.mu.failures = append(j.mu.failures, failure{Time: time.Now(), Message: runErr.Error(), Restarted: restart})
		if len(j.mu.failures) > maxFailures {
			j.mu.failures = slices.Delete(j.mu.failures, 0, len(j.mu.failures)-maxFailures)
		}
		if restart {
			j.mu.status = StatusRestarting
		}
		wake := j.mu.wake
		j.mu.Unlock()
		j.m.metrics.failures.WithLabelValues(j.id).Inc()
		if !restart {
			j.log.Error("job failed", "error", runErr, "restart_strategy", j.plan.Spec.Restart.Strategy)
			j.end(StatusFailed, desiredFailed, runErr)
			return
		}
		j.log.Warn("job failed; restarting from its newest completed checkpoint", "error", runErr, "delay", delay.Round(time.Millisecond))
		select {
		case <-time.After(delay):
		case <-wake:
		}
		j.mu.Lock()
		req = j.mu.req
		if req == reqNone {
			j.mu.restarts++
			j.mu.status = StatusRunning
		}
		j.mu.Unlock()
		switch req {
		case reqNone:
			j.m.metrics.restarts.WithLabelValues(j.id).Inc()
		case reqCancel:
			j.end(StatusCanceled, desiredCanceled, nil)
			return
		case reqShutdown, reqCancelShutdown:
			j.end(StatusStopped, "", nil)
			return
		default: // stopped while waiting to restart: its newest checkpoint stands
			j.end(StatusStopped, desiredStopped, nil)
			return
		}
	}
}

// retryable says whether a restart can help: a checkpoint that does not
// fit the job, output committed beyond the checkpoint, a lost checkpoint
// or a failed store fail the same way every time.
func retryable(err error) bool {
	for _, e := range []error{engine.ErrIncompatible, engine.ErrSinkAhead, snapshot.ErrLost, snapshot.ErrStoreFailed} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// runAttempt builds and runs one attempt. ok is false when the job cannot
// even be built (then retrying cannot help either).
func (j *managedJob) runAttempt() (runErr error, ok bool) {
	j.mu.Lock()
	rec := j.mu.rec
	j.mu.attempt++
	attempt := j.mu.attempt
	j.mu.Unlock()

	opts := jobrun.Options{
		Store:        j.m.opts.Store,
		Pinning:      j.m.opts.Pinning,
		Logger:       logx.PrintfLogger(j.log),
		OnCheckpoint: func(s engine.CheckpointStats) { j.onCheckpoint(attempt, s) },
	}
	restore := &engine.RestoreOptions{AllowNonRestoredState: rec.AllowNonRestoredState}
	if rec.Savepoint != "" {
		own, err := j.ownCheckpointSince(rec.Baseline)
		if err != nil {
			return err, true
		}
		if !own {
			restore.Savepoint = rec.Savepoint
		}
	}
	opts.Restore = restore
	built, err := jobrun.Build(j.plan, opts)
	if err != nil {
		return fmt.Errorf("cannot build job %q: %w", j.id, err), false
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j.mu.Lock()
	j.mu.cur, j.mu.cancelRun, j.mu.late = built.Job, cancel, built.LateRecords
	j.mu.prevLast = false
	j.mu.last = engine.Metrics{}
	if r := j.mu.req; r != reqNone {
		applyRequest(built.Job, cancel, r, j.mu.reqDir)
	}
	j.mu.Unlock()

	sampleDone := make(chan struct{})
	go j.sample(built.Job, sampleDone)
	j.log.Info("job attempt starting", "attempt", attempt)
	runErr = built.Run(ctx) // logs each window or join step's late records at the end
	close(sampleDone)
	j.recordRun(built.Job)
	return runErr, true
}

// ownCheckpointSince reports whether the store holds a completed
// checkpoint of the job newer than baseline: one the job took since it
// was submitted.
func (j *managedJob) ownCheckpointSince(baseline uint64) (bool, error) {
	ids, err := j.m.opts.Store.Completed(j.id)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		if id > baseline {
			return true, nil
		}
	}
	return false, nil
}

// recordRun keeps what an ended attempt leaves: its restore, its
// savepoint, its final counters.
func (j *managedJob) recordRun(e *engine.Job) {
	ov := e.CheckpointOverview()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.noteRestoreLocked(ov)
	if sp, ok := e.LastSavepoint(); ok {
		j.addSavepointLocked(sp)
	}
	j.mu.prev, j.mu.last, j.mu.prevLast = j.mu.last, e.Metrics(), true
}

func (j *managedJob) noteRestoreLocked(ov engine.CheckpointOverview) {
	if r := ov.Restored; r != nil && (j.mu.restored == nil || j.mu.restored.At != r.At) {
		j.mu.restored = &restoredInfo{ID: r.ID, At: r.At, Savepoint: r.SavepointPath}
		j.mu.counts.restored++
	}
}

func (j *managedJob) addSavepointLocked(sp engine.Savepoint) {
	for _, s := range j.mu.savepoints {
		if s.Path == sp.Path {
			return
		}
	}
	j.mu.savepoints = append(j.mu.savepoints, sp)
	if len(j.mu.savepoints) > maxHistory {
		j.mu.savepoints = j.mu.savepoints[1:]
	}
}

// sample reads the running attempt's counters every sampleInterval, for
// the rates of the API.
func (j *managedJob) sample(e *engine.Job, done <-chan struct{}) {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			m := e.Metrics()
			ov := e.CheckpointOverview()
			j.mu.Lock()
			if j.mu.cur == e {
				j.mu.prev, j.mu.last = j.mu.last, m
				j.mu.prevLast = !j.mu.prev.At.IsZero()
				j.noteRestoreLocked(ov)
			}
			j.mu.Unlock()
		}
	}
}

// onCheckpoint is called by the engine (on its driver goroutine) for
// every checkpoint that completes or fails.
func (j *managedJob) onCheckpoint(attempt int, s engine.CheckpointStats) {
	j.m.metrics.observeCheckpoint(j.id, s)
	j.mu.Lock()
	defer j.mu.Unlock()
	if s.Status == "completed" {
		j.mu.counts.completed++
	} else {
		j.mu.counts.failed++
	}
	j.mu.history = append(j.mu.history, ckptEntry{attempt: attempt, stats: s})
	if len(j.mu.history) > maxHistory {
		j.mu.history = slices.Delete(j.mu.history, 0, len(j.mu.history)-maxHistory)
	}
}

// end records the job's end: status, and in the registry desired (""
// keeps the record as it is: the job resumes with the next daemon).
func (j *managedJob) end(status, desired string, cause error) {
	j.mu.Lock()
	j.mu.status = status
	j.mu.endTime = time.Now()
	rec := j.mu.rec
	j.mu.Unlock()
	if desired != "" {
		rec.Desired = desired
		if cause != nil {
			rec.Failure = cause.Error()
		}
		if err := j.m.reg.put(&rec); err != nil {
			j.log.Error("cannot record the job's end; the next daemon will resume it", "error", err)
		} else {
			j.mu.Lock()
			j.mu.rec = rec
			j.mu.Unlock()
		}
	}
	j.log.Info("job ended", "status", status)
}

// TriggerCheckpoint triggers a checkpoint of the running attempt and
// waits for it.
func (j *managedJob) TriggerCheckpoint(ctx context.Context) (engine.CheckpointStats, error) {
	cur, err := j.running()
	if err != nil {
		return engine.CheckpointStats{}, err
	}
	return cur.TriggerCheckpoint(ctx)
}

// TriggerSavepoint takes a savepoint of the running attempt into dir.
func (j *managedJob) TriggerSavepoint(ctx context.Context, dir string) (engine.Savepoint, error) {
	cur, err := j.running()
	if err != nil {
		return engine.Savepoint{}, err
	}
	sp, err := cur.TriggerSavepoint(ctx, dir)
	if err == nil {
		j.mu.Lock()
		j.addSavepointLocked(sp)
		j.mu.Unlock()
		j.log.Info("savepoint taken", "checkpoint", sp.CheckpointID, "path", sp.Path)
	}
	return sp, err
}

func (j *managedJob) running() (*engine.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.cur == nil || j.mu.req != reqNone {
		return nil, fmt.Errorf("%w: job %q is %s", ErrConflict, j.id, j.mu.status)
	}
	if j.plan.Spec.Checkpointing == nil {
		return nil, fmt.Errorf("%w: job %q does not checkpoint (its spec has no checkpointing section)", ErrConflict, j.id)
	}
	return j.mu.cur, nil
}

// Stop stops the job with a final checkpoint (and a savepoint in dir if
// savepoint) and waits until it has ended.
func (j *managedJob) Stop(ctx context.Context, savepoint bool, dir string) (*engine.Savepoint, error) {
	j.mu.Lock()
	status := j.mu.status
	j.mu.Unlock()
	if j.ended() {
		return nil, fmt.Errorf("%w: job %q has ended (%s)", ErrConflict, j.id, status)
	}
	if savepoint {
		if j.plan.Spec.Checkpointing == nil {
			return nil, fmt.Errorf("%w: job %q does not checkpoint, so it cannot stop with a savepoint", ErrConflict, j.id)
		}
		if status == StatusRestarting {
			return nil, fmt.Errorf("%w: job %q is restarting; stop it with a savepoint once it runs again", ErrConflict, j.id)
		}
		j.request(reqStopSavepoint, dir)
	} else {
		j.request(reqStop, "")
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !savepoint {
		return nil, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, sp := range j.mu.savepoints {
		if sp.Path == dir {
			return &sp, nil
		}
	}
	if n := len(j.mu.failures); n > 0 {
		return nil, fmt.Errorf("job %q ended without a savepoint: %s", j.id, j.mu.failures[n-1].Message)
	}
	return nil, fmt.Errorf("job %q ended (%s) without a savepoint", j.id, j.mu.status)
}
