package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/internal/invariants"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The asynchronous part of a checkpoint, and the rule that keeps
// exactly-once output: nothing becomes visible before it is durable.
//
// Every task that has a sink or keyed state owns a lane: a FIFO of its
// asynchronous checkpoint work (the sink's durable step, then the keyed
// state's encoding and writing), run by a small pool of snapshot workers
// one job at a time per lane, in checkpoint order. A task's acknowledgement
// of checkpoint n leaves its lane only after the durable steps of n and of
// every earlier checkpoint of the task returned nil — also those of
// checkpoints that were aborted meanwhile, whose transactions stay pending
// and are committed with a later checkpoint. The coordinator completes n
// only when every task acknowledged it, and a sink commits only on
// completion, so a sink commits only transactions that are durable.
// commitSink checks that once more, against the lane's durableThrough,
// before any sink's Commit runs: it is the one place every two-phase-commit
// sink goes through.
//
// A failed durable step fails the job and the lane runs nothing after it
// (an fsync is never retried: its outcome is unknown). Once the job is
// cancelled or failed, queued work is abandoned, not run: snapshots are
// released and durable steps' resources freed without writing anything.

// asyncWorkers is the number of goroutines that run lanes. Encoding and
// compressing state is CPU-bound and the task workers hold the cores, so
// more would only take cores from processing.
const asyncWorkers = 2

// maxLaneJobs bounds the queued asynchronous jobs of one task. A task whose
// lane is full waits before it forwards the next barrier (backpressure from
// a slow disk), which can only happen when checkpoints are aborted faster
// than their work finishes: the coordinator has at most MaxConcurrent
// checkpoints in flight.
const maxLaneJobs = 2 * coord.MaxConcurrentLimit

// keyedSnapshot is a frozen view of a task's keyed state (keyed.Snapshot).
// It is also a snapshot.DeltaView, unless wrapped in fullView.
type keyedSnapshot interface {
	snapshot.View
	Release()
}

// keyed.Snapshot is what the Store writes incrementally, and keyed's
// change operations are snapshot's (a difference underflows, which does
// not compile).
var _ snapshot.DeltaView = (*keyed.Snapshot)(nil)

const _ = keyed.ChangePut - snapshot.OpPut + (snapshot.OpPut - keyed.ChangePut) +
	keyed.ChangeDelete - snapshot.OpDelete + (snapshot.OpDelete - keyed.ChangeDelete) +
	keyed.ChangeAppend - snapshot.OpAppend + (snapshot.OpAppend - keyed.ChangeAppend)

// fullView hides the snapshot's change log from the Store
// (CheckpointOptions.FullCheckpoints): only View's and Release's methods.
type fullView struct{ keyedSnapshot }

// asyncJob is the asynchronous work of one task for one checkpoint.
type asyncJob struct {
	snap keyedSnapshot // nil if the task has no keyed state
	prev *snapshot.KeyedHandle
	// durable is the sink's asynchronous pre-commit, nil if none.
	durable DurableStep
	// ev is the acknowledgement sent when the job succeeds.
	ev event
}

// abandon releases what j holds without running it.
func (j *asyncJob) abandon() {
	if j.snap != nil {
		j.snap.Release()
	}
	if j.durable != nil {
		j.durable.Abandon()
	}
}

// lane is one task's queue of asynchronous checkpoint work.
type lane struct {
	t *task
	// slots holds one token per queued or running job: a task blocks in
	// enqueue while maxLaneJobs are outstanding.
	slots chan struct{}
	mu    struct {
		sync.Mutex
		queue     []asyncJob // guarded; appended by the task, popped by the runner
		scheduled bool       // guarded; the lane is in the pool's ready queue or running
		failed    bool       // guarded; a durable step failed: abandon everything after it
	}
	// durableThrough is the highest checkpoint id up to which every
	// durable step of the task returned nil. Written by the runner, read
	// by the task before it commits (commitSink).
	durableThrough atomic.Uint64
}

// asyncPool runs the lanes of a job.
type asyncPool struct {
	rt *jobRuntime
	// ready holds lanes with queued work, each at most once: its capacity
	// is the number of lanes, so a send never blocks.
	ready chan *lane
	// outstanding counts queued and running jobs of every lane.
	outstanding sync.WaitGroup
	workers     sync.WaitGroup
}

func newAsyncPool(rt *jobRuntime, lanes int) *asyncPool {
	p := &asyncPool{rt: rt, ready: make(chan *lane, max(lanes, 1))}
	for range asyncWorkers {
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			for l := range p.ready {
				p.runOne(l)
			}
		}()
	}
	return p
}

// close waits until every queued job has run or been abandoned, then stops
// the workers. Called once every task has exited (nothing enqueues).
func (p *asyncPool) close() {
	p.outstanding.Wait()
	close(p.ready)
	p.workers.Wait()
}

// enqueue queues j on t's lane, in checkpoint order; called on the task's
// goroutine. It waits while the lane is full.
func (p *asyncPool) enqueue(l *lane, j asyncJob) {
	l.slots <- struct{}{}
	p.outstanding.Add(1)
	l.mu.Lock()
	if invariants.Enabled && len(l.mu.queue) > 0 && l.mu.queue[len(l.mu.queue)-1].ev.id >= j.ev.id {
		panic(fmt.Sprintf("engine: %s queued checkpoint %d after %d", l.t, j.ev.id, l.mu.queue[len(l.mu.queue)-1].ev.id))
	}
	l.mu.queue = append(l.mu.queue, j)
	schedule := !l.mu.scheduled
	l.mu.scheduled = true
	l.mu.Unlock()
	if schedule {
		p.ready <- l
	}
}

// runOne runs the oldest job of l, then puts l back in the ready queue if
// it has more.
func (p *asyncPool) runOne(l *lane) {
	l.mu.Lock()
	j := l.mu.queue[0]
	l.mu.queue[0] = asyncJob{}
	l.mu.queue = l.mu.queue[1:]
	failed := l.mu.failed
	l.mu.Unlock()

	if failed || p.rt.cancelFlag.Load() {
		j.abandon()
	} else if !p.run(l, &j) {
		l.mu.Lock()
		l.mu.failed = true
		l.mu.Unlock()
	}
	<-l.slots
	p.outstanding.Done()

	l.mu.Lock()
	more := len(l.mu.queue) > 0
	l.mu.scheduled = more
	l.mu.Unlock()
	if more {
		p.ready <- l
	}
}

// run carries out one job and reports it to the driver. It returns false
// when a durable step failed (the lane must run nothing after it).
func (p *asyncPool) run(l *lane, j *asyncJob) bool {
	rt, t, ev := p.rt, l.t, j.ev
	start := time.Now()
	if j.durable != nil {
		if err := j.durable.Run(); err != nil {
			err = fmt.Errorf("%s: cannot make the sink's transaction of checkpoint %d durable: %w", t, ev.id, err)
			if j.snap != nil {
				j.snap.Release()
			}
			rt.send(event{kind: evFatal, task: t.id, id: ev.id, err: err})
			return false
		}
	}
	// Every durable step up to ev.id has returned nil (the lane runs them
	// in order and stops at the first failure).
	l.durableThrough.Store(ev.id)
	if j.snap != nil {
		h, err := rt.store.WriteKeyed(rt.job.name, ev.id, t.v.name, t.kgRange.Start, t.kgRange.End, j.snap, j.prev)
		j.snap.Release()
		if err != nil {
			rt.opts.Logger("streamd: %s: checkpoint %d: %v", t, ev.id, err)
			rt.send(event{kind: evDecline, task: t.id, id: ev.id, reason: coord.ReasonError, err: err})
			return true
		}
		ev.meta.Keyed = h
		ev.stats.RawBytes, ev.stats.StoredBytes = h.RawBytes, h.StoredBytes
		ev.stats.KeyedCheckpointStats.add(h)
	}
	ev.stats.Async = time.Since(start)
	rt.send(ev)
	return true
}
