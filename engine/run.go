package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/streamd/streamd/align"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// jobRuntime is a job while it runs.
type jobRuntime struct {
	job        *Job
	opts       Options
	vertices   []*vertex
	tasks      []*task
	workers    []*worker
	inputRings map[*task][]any
	// inputRings2 are the rings of a two-input task's second input.
	inputRings2   map[*task][]any
	checkpointing bool
	alignMode     align.Mode
	store         *snapshot.Store
	restored      *snapshot.Metadata
	// restoredKeyed holds, per keyed vertex and task index, the backend
	// the restore phase filled from restored (restore.go); each task takes
	// its own in open.
	restoredKeyed map[*vertex][]*keyed.Backend
	// splitsPerTask are the splits each task of a splittable source starts
	// with (split.go).
	splitsPerTask splitAssignments
	firstID       uint64 // the first checkpoint id of this run
	cancelFlag    atomic.Bool
	// events carries acknowledgements, declines, source ends and task
	// exits to the driver; it never blocks a sender, also after the
	// driver has returned.
	events *mailbox[event]
	// async runs the tasks' asynchronous checkpoint work (async.go); nil
	// without checkpointing.
	async    *asyncPool
	stopCh   chan struct{}
	stopOnce sync.Once

	// On-demand checkpoints and savepoints (savepoint.go): demandNotify
	// wakes the driver for queued demands (capacity 1); dd is the
	// driver's; readFrom is the store the restore phase reads blocks
	// from (the job's, or a savepoint's); restoredSavepoint the savepoint
	// the run restored from; finalID the final checkpoint that completed.
	demandNotify      chan struct{}
	dd                demandDriver
	readFrom          *snapshot.Store
	restoredSavepoint string
	finalID           uint64

	// metrics is what Job.Metrics reads, set once by buildTasks
	// (metrics.go).
	metrics atomic.Pointer[metricsView]

	mu struct {
		sync.Mutex
		stats []CheckpointStats // guarded: read by CheckpointStats after or during Run
		// demands: queued demands, the overview and the last savepoint
		// (savepoint.go).
		demands demandState
	}
}

func (j *jobRuntime) send(ev event) { j.events.put(ev) }

// stop closes stopCh, once.
func (j *jobRuntime) stop() { j.stopOnce.Do(func() { close(j.stopCh) }) }

// restoredSource returns the state that task index of v, a source
// vertex, opens with. For a splittable source it is the task's split list
// (restored or initial, split.go), encoded. For a plain source it is the
// position the task with the same index recorded in the restored
// checkpoint, nil on a fresh start (plain sources keep their parallelism:
// checkCompatible).
func (j *jobRuntime) restoredSource(v *vertex, index int) ([]byte, error) {
	if v.head().splits != nil {
		asg, err := j.assignSplits(v)
		if err != nil {
			return nil, err
		}
		return AppendSplits(nil, asg[index]), nil
	}
	if j.restored == nil {
		return nil, nil
	}
	for i := range j.restored.Tasks {
		m := &j.restored.Tasks[i]
		if len(m.Operators) > 0 && m.Operators[0] == v.head().uid && m.Index == index {
			return m.Source, nil
		}
	}
	return nil, nil
}

// Stop ends the job gracefully: sources stop reading, a final checkpoint is
// taken (with checkpointing) and committed, and Run returns nil. Safe to
// call from any goroutine, any number of times, also before Run: then Run
// starts, restores, and stops at once (a signal that arrives while the job
// is still starting is not lost).
func (j *Job) Stop() {
	jobsMu.Lock()
	j.stopRequested = true
	rt := j.rt
	jobsMu.Unlock()
	if rt != nil {
		rt.stop()
	}
}

var jobsMu sync.Mutex

func (j *Job) runtime() *jobRuntime {
	jobsMu.Lock()
	defer jobsMu.Unlock()
	return j.rt
}

// CheckpointStats returns the statistics of the checkpoints taken so far,
// oldest first.
func (j *Job) CheckpointStats() []CheckpointStats {
	rt := j.runtime()
	if rt == nil {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]CheckpointStats(nil), rt.mu.stats...)
}

// RestoredFrom returns the id of the checkpoint the running job restored
// from, 0 if it started fresh.
func (j *Job) RestoredFrom() uint64 {
	if rt := j.runtime(); rt != nil && rt.restored != nil {
		return rt.restored.CheckpointID
	}
	return 0
}

// Run runs the job until its sources have ended and its output is
// committed, until Stop, until a task fails, or until ctx is cancelled. It
// may be called once.
func (j *Job) Run(ctx context.Context) (err error) {
	if err := errors.Join(j.errs...); err != nil {
		return err
	}
	if j.runtime() != nil {
		return fmt.Errorf("engine: job %q: Run called twice", j.name)
	}
	if err := j.checkRestoreOptions(); err != nil {
		return err
	}
	vs, err := j.buildVertices()
	if err != nil {
		return err
	}
	rt := &jobRuntime{
		job: j, opts: j.opts, vertices: vs, inputRings: make(map[*task][]any), inputRings2: make(map[*task][]any),
		stopCh:       make(chan struct{}),
		demandNotify: make(chan struct{}, 1),
		alignMode:    align.ExactlyOnce,
	}
	if c := j.opts.Checkpointing; c != nil {
		rt.checkpointing = true
		rt.store = c.Store
		if c.Mode == coord.AtLeastOnce {
			rt.alignMode = align.AtLeastOnce
		}
	}
	jobsMu.Lock()
	j.rt = rt
	if j.stopRequested {
		rt.stop()
	}
	jobsMu.Unlock()
	// Sinks hold resources across the run (the file sink its directory's
	// lock): release them however the run ends.
	defer func() {
		if cerr := rt.closeSinks(); err == nil {
			err = cerr
		}
	}()

	// However the run ends, TriggerCheckpoint and TriggerSavepoint
	// callers get an answer.
	defer rt.endDemands(nil)
	if rt.checkpointing {
		finished, err := rt.restore()
		if err != nil {
			return err
		}
		rt.noteRestored()
		if finished {
			return rt.finishStopSavepoint()
		}
	} else if err := rt.recoverSinks(); err != nil {
		return err
	}
	rt.buildTasks()
	if err := rt.execute(ctx); err != nil {
		return err
	}
	return rt.finishStopSavepoint()
}

// execute starts the tasks and drives them until the job ends.
func (rt *jobRuntime) execute(ctx context.Context) error {
	// Every task sends at most one exit and one source end, and per
	// checkpoint at most one acknowledgement or decline from itself and
	// one from its lane, which holds at most maxLaneJobs jobs.
	rt.events = newMailbox[event](len(rt.tasks)*(2*maxLaneJobs+4), true)
	if rt.checkpointing {
		lanes := 0
		for _, t := range rt.tasks {
			if t.lane != nil {
				lanes++
			}
		}
		rt.async = newAsyncPool(rt, lanes)
	}
	for _, w := range rt.workers {
		go w.run()
	}
	err := rt.drive(ctx)
	if rt.async != nil {
		// Every task has exited: after a failure the lanes abandon what
		// is queued; after a clean end they are empty.
		rt.async.close()
	}
	return err
}

func (rt *jobRuntime) cancelAll() {
	rt.cancelFlag.Store(true)
	for _, t := range rt.tasks {
		t.waiter.Wake()
	}
}
