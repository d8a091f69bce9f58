package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/align"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/internal/failpoint"
	"github.com/streamd/streamd/snapshot"
)

// ErrIncompatible is wrapped by errors that refuse to restore a checkpoint
// into a job whose shape differs (operators, keys, max parallelism, source
// parallelism).
var ErrIncompatible = errors.New("engine: checkpoint is incompatible with the job")

// IncompatibleError says why a checkpoint cannot be restored into the job.
// It wraps ErrIncompatible.
type IncompatibleError struct {
	Job        string
	Checkpoint uint64
	Reason     string
	// Old and New are the fingerprints of the checkpoint and of the job
	// when they differ, "" otherwise.
	Old, New string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("engine: checkpoint %d of job %q is incompatible with the job: %s", e.Checkpoint, e.Job, e.Reason)
}

func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// maxStatsHistory bounds the checkpoint statistics kept in memory.
const maxStatsHistory = 10000

type eventKind uint8

const (
	evAck eventKind = iota + 1
	evDecline
	evSourceEnded
	evTaskExit
	evFatal // an error that fails the job (from a snapshot worker)
)

// event is what tasks and snapshot workers tell the driver.
type event struct {
	kind      eventKind
	task      coord.TaskID
	id        uint64
	meta      snapshot.TaskMeta
	stats     TaskStats
	barrierAt time.Time
	reason    coord.DeclineReason
	exhausted bool
	err       error
}

type asyncJob struct {
	task *task
	snap interface {
		snapshot.View
		Release()
	}
	prev *snapshot.KeyedHandle
	// durable is the sink's asynchronous pre-commit, nil if none.
	durable func() error
	ev      event
}

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

// restore finds the latest valid checkpoint, checks it fits the job, and
// recovers the sinks. It reports finished when the checkpoint is the final
// one of a bounded job that already ended.
func (rt *jobRuntime) restore() (finished bool, err error) {
	j := rt.job
	m, err := rt.store.Latest(j.name)
	if err != nil {
		return false, fmt.Errorf("engine: job %q: cannot restore: %w", j.name, err)
	}
	if m != nil {
		if err := rt.checkCompatible(m); err != nil {
			return false, err
		}
		rt.restored = m
		rt.opts.Logger("streamd: job %q: restoring from checkpoint %d", j.name, m.CheckpointID)
	}
	// Checkpoint ids stay monotonic across restarts: read the highest id
	// ever used (including incomplete checkpoints) before their blocks are
	// discarded.
	maxID, err := rt.store.MaxCheckpointID(j.name)
	if err != nil {
		return false, fmt.Errorf("engine: job %q: cannot read checkpoint ids: %w", j.name, err)
	}
	rt.firstID = maxID + 1
	if err := rt.store.DiscardIncomplete(j.name); err != nil {
		return false, fmt.Errorf("engine: job %q: cannot discard incomplete checkpoints: %w", j.name, err)
	}
	if err := rt.recoverSinks(); err != nil {
		return false, err
	}
	if m != nil && m.Finished {
		rt.opts.Logger("streamd: job %q already finished at checkpoint %d; nothing to do", j.name, m.CheckpointID)
		return true, nil
	}
	return false, nil
}

func (rt *jobRuntime) checkCompatible(m *snapshot.Metadata) error {
	j := rt.job
	bad := func(format string, args ...any) error {
		return &IncompatibleError{Job: j.name, Checkpoint: m.CheckpointID, Reason: fmt.Sprintf(format, args...)}
	}
	if fp := j.fingerprint(); m.Fingerprint != fp {
		err := bad("its operators, keys or max parallelism differ")
		err.(*IncompatibleError).Old, err.(*IncompatibleError).New = m.Fingerprint, fp
		return err
	}
	if m.MaxParallelism != j.opts.MaxParallelism {
		return bad("max parallelism was %d, is %d", m.MaxParallelism, j.opts.MaxParallelism)
	}
	have := make(map[string]int)
	for _, t := range m.Tasks {
		have[t.Vertex] = t.Parallelism
	}
	for _, v := range rt.vertices {
		p, ok := have[v.name]
		if !ok {
			return bad("it has no state for the chain [%s] (the chaining of operators changed)", v.name)
		}
		if v.head().kind == kindSourceNode && p != v.parallelism {
			return bad("source chain [%s] had parallelism %d, now %d; sources cannot be rescaled", v.name, p, v.parallelism)
		}
	}
	return nil
}

// recoverSinks hands every sink the pending transactions its tasks listed
// in the restored checkpoint (none on a fresh start).
func (rt *jobRuntime) recoverSinks() error {
	for _, v := range rt.vertices {
		tail := v.tail()
		if tail.kind != kindSinkNode {
			continue
		}
		var states [][]byte
		if rt.restored != nil {
			for _, m := range rt.restored.Tasks {
				if m.Vertex == v.name && m.Sink != nil {
					states = append(states, m.Sink)
				}
			}
		}
		if err := tail.sink.Recover(states); err != nil {
			return fmt.Errorf("engine: cannot recover sink %q: %w", tail.name, err)
		}
	}
	return nil
}

// buildTasks creates the workers, the tasks, their rings and writers.
func (rt *jobRuntime) buildTasks() {
	j := rt.job
	nw := 0
	for _, v := range rt.vertices {
		nw = max(nw, v.parallelism)
	}
	for i := range nw {
		rt.workers = append(rt.workers, newWorker(rt, i))
	}
	cpus := planPinning(rt.opts.Pinning, nw, usableCPUs(rt.opts.cpus), runtime.GOMAXPROCS(0))
	for i, w := range rt.workers {
		if cpus != nil {
			w.cpu = cpus[i]
		}
	}
	id := 0
	for _, v := range rt.vertices {
		for i := 0; i < v.parallelism; i++ {
			w := rt.workers[i]
			t := &task{job: rt, v: v, index: i, id: coord.TaskID(id), w: w, waiter: w.waiter,
				ctrl: make(chan ctrlMsg, controlQueueLen)}
			v.tasks = append(v.tasks, t)
			rt.tasks = append(rt.tasks, t)
			w.tasks = append(w.tasks, t)
			id++
		}
	}
	// One ring per (upstream task, downstream task) pair; forward edges
	// connect task i to task i only.
	for _, v := range rt.vertices {
		if v.input == nil {
			continue
		}
		head, up := v.head(), v.input
		upTail := up.tail()
		var route func(maxPar, parallelism int) any = head.route
		// fanout: how many rings share a producer's records (a broadcast
		// writes every record to every ring, as a forward edge does to
		// its one).
		fanout := len(v.tasks)
		if head.part == partForward || head.part == partBroadcast {
			fanout = 1
		}
		for _, ut := range up.tasks {
			var rings []any
			for di, dt := range v.tasks {
				if head.part == partForward && di != ut.index {
					continue
				}
				r := upTail.out.newRing(rt.opts.RingCapacity, rt.opts.BatchSize, fanout, ut.waiter, dt.waiter)
				rings = append(rings, r)
				if dt.w == ut.w {
					ut.consumers = append(ut.consumers, dt)
				}
				rt.inputRings[dt] = append(rt.inputRings[dt], r)
			}
			var rf any
			if route != nil {
				rf = route(j.opts.MaxParallelism, v.parallelism)
			}
			ut.outputs = append(ut.outputs, upTail.out.newWriter(ut, head.part, rings, rf))
		}
	}
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

// asyncWorker runs the asynchronous phase of task snapshots.
func (rt *jobRuntime) asyncWorker() {
	for aj := range rt.async {
		start := time.Now()
		t := aj.task
		ev := aj.ev
		if aj.durable != nil {
			if err := aj.durable(); err != nil {
				err = fmt.Errorf("%s: cannot make the sink's transaction of checkpoint %d durable: %w", t, ev.id, err)
				if aj.snap != nil {
					aj.snap.Release()
				}
				rt.send(event{kind: evFatal, task: t.id, id: ev.id, err: err})
				continue
			}
		}
		if aj.snap != nil {
			h, err := rt.store.WriteKeyed(rt.job.name, ev.id, t.v.name, t.kgRange.Start, t.kgRange.End, aj.snap, aj.prev)
			aj.snap.Release()
			if err != nil {
				rt.opts.Logger("streamd: %s: checkpoint %d: %v", t, ev.id, err)
				rt.send(event{kind: evDecline, task: t.id, id: ev.id, reason: coord.ReasonError, err: err})
				continue
			}
			ev.meta.Keyed = h
			ev.stats.RawBytes, ev.stats.StoredBytes = h.RawBytes, h.StoredBytes
		}
		ev.stats.Async = time.Since(start)
		rt.send(ev)
	}
}

// pendingCheckpoint collects the acknowledgements of one checkpoint.
type pendingCheckpoint struct {
	id        uint64
	triggered time.Time
	final     bool
	tasks     map[coord.TaskID]*event
}

// drive is the driver loop: it feeds the coordinator and carries out its
// decisions, and ends when every task has exited.
func (rt *jobRuntime) drive(ctx context.Context) error {
	var (
		co        *coord.Coordinator
		failure   error
		running   = len(rt.tasks)
		sources   = 0
		ended     = 0
		exhausted = true
		pending   = make(map[uint64]*pendingCheckpoint)
		tickC     <-chan time.Time
		ctxDone   = ctx.Done()
		stopCh    = rt.stopCh
	)
	for _, t := range rt.tasks {
		if t.v.head().kind == kindSourceNode {
			sources++
		}
	}
	fail := func(err error) {
		if failure == nil && err != nil {
			failure = err
			rt.cancelAll()
		}
	}
	if rt.checkpointing {
		copts := rt.opts.Checkpointing.Options
		ids := make([]coord.TaskID, len(rt.tasks))
		for i, t := range rt.tasks {
			ids[i] = t.id
		}
		co = coord.New(copts, ids, rt.firstID, time.Now())
		tick := max(min(copts.Interval/4, 50*time.Millisecond), time.Millisecond)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		tickC = ticker.C
	}
	for running > 0 {
		select {
		case ev := <-rt.events:
			switch ev.kind {
			case evTaskExit:
				running--
				if ev.err != nil && !errors.Is(ev.err, errCancelled) {
					fail(ev.err)
					if co != nil {
						_ = co.Step(time.Now(), coord.TaskFailed{Task: ev.task, Err: ev.err})
					}
				}
			case evAck:
				if co == nil || failure != nil {
					continue
				}
				if p := pending[ev.id]; p != nil {
					e := ev
					p.tasks[ev.task] = &e
				}
				if err := co.Step(time.Now(), coord.Ack{Task: ev.task, ID: ev.id}); err != nil {
					fail(err)
				}
			case evDecline:
				if co == nil || failure != nil {
					continue
				}
				if err := co.Step(time.Now(), coord.Decline{Task: ev.task, ID: ev.id, Reason: ev.reason, Err: ev.err}); err != nil {
					fail(err)
				}
			case evFatal:
				fail(ev.err)
				if co != nil {
					_ = co.Step(time.Now(), coord.TaskFailed{Task: ev.task, Err: ev.err})
				}
			case evSourceEnded:
				ended++
				exhausted = exhausted && ev.exhausted
				if ended == sources && co != nil && failure == nil {
					_ = co.Step(time.Now(), coord.TriggerFinal{})
				}
			}
		case now := <-tickC:
			if failure == nil {
				co.Tick(now)
			}
		case <-ctxDone:
			ctxDone = nil
			fail(ctx.Err())
		case <-stopCh:
			stopCh = nil
			for _, t := range rt.tasks {
				if t.source != nil || t.v.head().kind == kindSourceNode {
					rt.control(t, ctrlMsg{kind: ctrlStop})
				}
			}
		}
		if co == nil || failure != nil {
			continue
		}
		for co.HasReady() {
			rd := co.Ready()
			var after []coord.Event
			for _, p := range rd.Persist {
				pc := pending[p.ID]
				m := rt.metadata(pc, exhausted && ended == sources && p.Final)
				if err := rt.store.CommitCheckpoint(m); err != nil {
					after = append(after, coord.PersistFailed{ID: p.ID, Err: err})
					continue
				}
				failpoint.Hit("checkpoint-after-metadata")
				after = append(after, coord.Persisted{ID: p.ID})
			}
			for _, tr := range rd.Trigger {
				pending[tr.ID] = &pendingCheckpoint{id: tr.ID, triggered: tr.At, final: tr.Final, tasks: make(map[coord.TaskID]*event)}
				for _, t := range rt.tasks {
					if t.v.head().kind == kindSourceNode {
						rt.control(t, ctrlMsg{kind: ctrlTrigger, id: tr.ID})
					}
				}
			}
			for _, c := range rd.Complete {
				pc := pending[c.ID]
				for _, t := range rt.tasks {
					msg := ctrlMsg{kind: ctrlComplete, id: c.ID}
					if pc != nil {
						if ev := pc.tasks[t.id]; ev != nil {
							msg.handle = ev.meta.Keyed
						}
					}
					rt.control(t, msg)
				}
				rt.record(pc, "completed", "", c.CompletedAt)
				delete(pending, c.ID)
				if err := rt.store.Retain(rt.job.name, rt.opts.Checkpointing.Retained); err != nil {
					rt.opts.Logger("streamd: job %q: retention after checkpoint %d: %v", rt.job.name, c.ID, err)
				}
			}
			for _, a := range rd.Aborted {
				for _, t := range rt.tasks {
					rt.control(t, ctrlMsg{kind: ctrlAbort, id: a.ID})
				}
				reason := a.Reason.String()
				if a.Err != nil {
					reason += ": " + a.Err.Error()
				}
				rt.record(pending[a.ID], "failed", reason, time.Now())
				delete(pending, a.ID)
			}
			if rd.FinalComplete {
				for _, t := range rt.tasks {
					if t.v.head().kind == kindSourceNode {
						rt.control(t, ctrlMsg{kind: ctrlFinish})
					}
				}
			}
			if rd.Failed != nil {
				fail(fmt.Errorf("engine: job %q: %w", rt.job.name, rd.Failed))
			}
			co.Advance(rd)
			for _, e := range after {
				if err := co.Step(time.Now(), e); err != nil {
					fail(err)
				}
			}
			if failure != nil {
				break
			}
		}
	}
	return failure
}

// control sends a control message to a task and wakes it. A task drains
// its queue between batches; if the queue is full (the task is blocked on a
// full output), control waits for room, giving up only if the job is
// cancelled (then the task is exiting anyway). Messages are never dropped:
// a lost "complete" or "finish" would leave output uncommitted or the job
// hanging.
func (rt *jobRuntime) control(t *task, m ctrlMsg) {
	for {
		select {
		case t.ctrl <- m:
			t.waiter.Wake()
			return
		default:
		}
		t.waiter.Wake()
		if rt.cancelFlag.Load() {
			return
		}
		select {
		case t.ctrl <- m:
			t.waiter.Wake()
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// metadata assembles a checkpoint's metadata from its acknowledgements.
func (rt *jobRuntime) metadata(pc *pendingCheckpoint, finished bool) *snapshot.Metadata {
	m := &snapshot.Metadata{
		Job: rt.job.name, CheckpointID: pc.id, TriggeredAtUnixNano: pc.triggered.UnixNano(),
		CompletedAtUnixNano: time.Now().UnixNano(), Fingerprint: rt.job.fingerprint(),
		MaxParallelism: rt.opts.MaxParallelism, Finished: finished,
	}
	for _, t := range rt.tasks {
		ev := pc.tasks[t.id]
		if ev == nil {
			panic(fmt.Sprintf("engine: checkpoint %d persisted without an ack from %s", pc.id, t))
		}
		m.Tasks = append(m.Tasks, ev.meta)
		if h := ev.meta.Keyed; h != nil {
			m.RawBytes += h.RawBytes
			m.StoredBytes += h.StoredBytes
		}
	}
	return m
}

func (rt *jobRuntime) record(pc *pendingCheckpoint, status, reason string, end time.Time) {
	if pc == nil {
		return
	}
	s := CheckpointStats{ID: pc.id, Status: status, Reason: reason, Final: pc.final, TriggeredAt: pc.triggered, Duration: end.Sub(pc.triggered)}
	for _, t := range rt.tasks {
		ev := pc.tasks[t.id]
		if ev == nil {
			continue
		}
		ts := ev.stats
		ts.StartDelay = ev.barrierAt.Sub(pc.triggered)
		s.Tasks = append(s.Tasks, ts)
		if h := ev.meta.Keyed; h != nil {
			s.RawBytes += h.RawBytes
			s.StoredBytes += h.StoredBytes
			s.ReusedBytes += h.ReusedBytes
		}
	}
	rt.mu.Lock()
	if len(rt.mu.stats) >= maxStatsHistory {
		rt.mu.stats = append(rt.mu.stats[:0], rt.mu.stats[1:]...)
	}
	rt.mu.stats = append(rt.mu.stats, s)
	rt.mu.Unlock()
	if rt.opts.OnCheckpoint != nil {
		rt.opts.OnCheckpoint(s)
	}
}
