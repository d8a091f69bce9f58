package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/streamd/streamd/align"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// jobRuntime is a job while it runs.
type jobRuntime struct {
	job           *Job
	opts          Options
	vertices      []*vertex
	tasks         []*task
	workers       []*worker
	inputRings    map[*task][]any
	checkpointing bool
	alignMode     align.Mode
	store         *snapshot.Store
	restored      *snapshot.Metadata
	firstID       uint64 // the first checkpoint id of this run
	cancelFlag    atomic.Bool
	events        chan event
	async         chan asyncJob
	stopCh        chan struct{}
	stopOnce      sync.Once

	mu struct {
		sync.Mutex
		stats []CheckpointStats // guarded: read by CheckpointStats after or during Run
	}
}

func (j *jobRuntime) send(ev event) { j.events <- ev }

func (j *jobRuntime) restoredTask(v *vertex, index int) *snapshot.TaskMeta {
	if j.restored == nil {
		return nil
	}
	for i := range j.restored.Tasks {
		m := &j.restored.Tasks[i]
		if m.Vertex == v.name && m.Index == index {
			return m
		}
	}
	return nil
}

// Stop ends the job gracefully: sources stop reading, a final checkpoint is
// taken (with checkpointing) and committed, and Run returns nil. Safe to
// call from any goroutine, any number of times; before Run it does nothing.
func (j *Job) Stop() {
	if rt := j.runtime(); rt != nil {
		rt.stopOnce.Do(func() { close(rt.stopCh) })
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
func (j *Job) Run(ctx context.Context) error {
	if err := errors.Join(j.errs...); err != nil {
		return err
	}
	if j.runtime() != nil {
		return fmt.Errorf("engine: job %q: Run called twice", j.name)
	}
	vs, err := j.buildVertices()
	if err != nil {
		return err
	}
	rt := &jobRuntime{
		job: j, opts: j.opts, vertices: vs, inputRings: make(map[*task][]any),
		events: make(chan event, eventQueueLen), stopCh: make(chan struct{}),
		alignMode: align.ExactlyOnce,
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
	jobsMu.Unlock()

	if rt.checkpointing {
		finished, err := rt.restore()
		if err != nil || finished {
			return err
		}
	} else if err := rt.recoverSinks(); err != nil {
		return err
	}
	rt.buildTasks()
	return rt.execute(ctx)
}

// execute starts the tasks and drives them until the job ends.
func (rt *jobRuntime) execute(ctx context.Context) error {
	var wg sync.WaitGroup
	workers := 0
	if rt.checkpointing {
		rt.async = make(chan asyncJob, len(rt.tasks)*4)
		workers = 2
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rt.asyncWorker()
			}()
		}
	}
	for _, w := range rt.workers {
		go w.run()
	}
	err := rt.drive(ctx)
	if rt.async != nil {
		close(rt.async)
	}
	wg.Wait()
	return err
}

func (rt *jobRuntime) cancelAll() {
	rt.cancelFlag.Store(true)
	for _, t := range rt.tasks {
		t.waiter.Wake()
	}
}
