package engine

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/align"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/ringbuf"
	"github.com/streamd/streamd/snapshot"
)

// ttlCleanupSlots bounds the TTL cleanup work of an idle keyed task per
// idle round.
const ttlCleanupSlots = 256

// errCancelled unwinds a task when the job is cancelled.
var errCancelled = errors.New("engine: job cancelled")

type cancelSignal struct{}

type ctrlKind uint8

const (
	ctrlTrigger  ctrlKind = iota + 1 // sources: inject barrier id
	ctrlComplete                     // checkpoint id is complete: commit
	ctrlAbort                        // checkpoint id is aborted
	ctrlFinish                       // sources: the final checkpoint is complete: emit end-of-input
	ctrlStop                         // sources: stop reading (graceful stop)
)

type ctrlMsg struct {
	kind ctrlKind
	id   uint64
	// handle is the task's keyed state handle in the completed checkpoint,
	// the base of the next incremental snapshot.
	handle *snapshot.KeyedHandle
}

type sourceState uint8

const (
	sourceRunning sourceState = iota
	sourceEnded               // no more records; waiting for the final checkpoint
)

// task is one parallel instance of a vertex (a chain of operators). Tasks
// run on workers (worker.go), several to a worker.
type task struct {
	job    *jobRuntime
	v      *vertex
	index  int
	id     coord.TaskID
	waiter *ringbuf.Waiter
	ctrl   *mailbox[ctrlMsg]
	// ctrlBuf is drainControl's scratch buffer.
	ctrlBuf []ctrlMsg

	backend *keyed.Backend
	aligner *align.Aligner
	reader  inputReader
	source  sourceRunner
	sink    sinkHooks
	outputs []outWriter
	kgRange keyed.KeyGroupRange

	// recHash is the key hash of the record being pushed, set by the
	// reader from the ring slot on keyed exchanges.
	recHash uint64
	// recTS is the event-time timestamp of the record being pushed: set
	// by the reader from the ring slot, by a source from its watermark
	// strategy's Timestamp, by an operator that emits records of its own
	// (Runtime.SetTimestamp); ring writers copy it into the slot.
	recTS int64
	// wm is the task's event-time bookkeeping (watermark.go).
	wm taskWM
	// procTimers are the processing-time timers of the chain's operators
	// (process.go).
	procTimers []procTimers

	srcState sourceState
	done     bool
	// idleUntil: a source that read nothing is not asked again before
	// this time (zero: not idle).
	idleUntil time.Time

	// w is the worker that runs the task; onStack is set while the task
	// is running on it (possibly nested inside another task's wait for
	// room, see worker.help); exited once it has finished or failed.
	w       *worker
	onStack bool
	exited  bool
	// consumers are the tasks on the same worker further down the graph
	// (build.go), by level: the ones that can make room when an output is
	// full, directly or by letting another worker's task go on.
	consumers []*task

	// lane runs the task's asynchronous checkpoint work in checkpoint
	// order (async.go); nil for a task with neither keyed state nor sink.
	lane *lane

	// Metrics (metrics.go). counts are the task's record counters, plain,
	// written only on the task's worker; pub their copies for
	// Job.Metrics, stored by publishCounts; plan says which boundary of
	// the chain each counter counts. The wait times are updated once per
	// wait: backpressure by the task, idle by its worker, which sets
	// finished when the task exits.
	counts       []int64
	pub          []atomic.Int64
	plan         countPlan
	backpressure waitTime
	idle         waitTime
	finished     atomic.Bool
	// pubWM is the task's watermark for Job.Metrics, stored at each
	// advance (watermark.go).
	pubWM atomic.Int64
	// ctrlRead counts the control elements of the batch the reader is
	// reading (onElement).
	ctrlRead int

	// checkpoint bookkeeping, task goroutine only
	lastCompleted *snapshot.KeyedHandle
	// snapEpochs are the epochs of the keyed snapshots of the checkpoints
	// in flight (forgetChanges).
	snapEpochs []snapEpoch
	alignID    uint64
	alignStart time.Time
}

func (t *task) String() string {
	return fmt.Sprintf("operator %q task %d/%d", t.v.name, t.index, t.v.parallelism)
}

func (t *task) cancelled() bool { return t.job.cancelFlag.Load() }

func (t *task) checkCancelled() {
	if t.cancelled() {
		panic(cancelSignal{})
	}
}

func (t *task) flushOutputs() {
	for _, o := range t.outputs {
		o.flush()
	}
}

func (t *task) emitAll(kind elemKind, id uint64) {
	for _, o := range t.outputs {
		o.emit(kind, id)
	}
	t.flushOutputs()
}

// guard runs f, one piece of the task's work on its worker, and turns a
// panic into the task's error: the unwinding of a cancelled job, an error
// an operator panicked with, or a runtime error with its stack.
func (t *task) guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			switch x := r.(type) {
			case cancelSignal:
				err = errCancelled
			case taskError:
				err = x.err
			case runtime.Error:
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			case error:
				// An operator reporting an operating error by panicking (e.g.
				// an expression dividing by zero): its message says enough.
				err = x
			default:
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}
	}()
	f()
	return nil
}

// close releases the task's source and sink once it has finished or
// failed, and names the task in its error.
func (t *task) close(err error) error {
	if t.source != nil {
		if cerr := t.source.close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if t.sink != nil {
		if cerr := t.sink.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil && !errors.Is(err, errCancelled) {
		err = fmt.Errorf("%s: %w", t, err)
	}
	return err
}

// open builds the chain's push functions, restores state and opens the
// source and sink, on the task goroutine.
func (t *task) open() error {
	j := t.job
	if t.v.keyed {
		t.kgRange = j.job.keyGroupRange(t.v, t.index)
		// A restored task's backend was filled in the restore phase
		// (readKeyed); each task takes only its own element.
		if bs := j.restoredKeyed[t.v]; bs != nil && bs[t.index] != nil {
			t.backend, bs[t.index] = bs[t.index], nil
		} else {
			b, err := keyed.NewBackend(keyed.Options{MaxParallelism: j.opts.MaxParallelism, Range: t.kgRange})
			if err != nil {
				return err
			}
			t.backend = b
		}
	}
	// The chain's tail pushes into the writers of the downstream vertices.
	var next any
	tail := t.v.tail()
	if tail.kind != kindSinkNode {
		pushes := make([]any, len(t.outputs))
		for i, w := range t.outputs {
			pushes[i] = w.pushFunc()
		}
		// With no consumer, fanout of nothing discards the records.
		next = t.countedDiscard(tail.out.fanout(pushes))
	}
	for i := len(t.v.nodes) - 1; i >= 0; i-- {
		n := t.v.nodes[i]
		if n.kind == kindSourceNode {
			break
		}
		rt := t.runtimeFor(n)
		t.runtimeCounters(rt, i)
		push, err := n.build(rt, next)
		if err != nil {
			return fmt.Errorf("cannot open operator %q: %w", n.name, err)
		}
		next = t.countedPush(i, push)
		t.wm.rts = append(t.wm.rts, rt)
	}
	// Built from the tail: watermarks reach the operators from the head.
	slices.Reverse(t.wm.rts)
	if t.backend != nil {
		// Restored state that no operator registered: an operator of the
		// chain stopped registering a state it had (its entries are kept,
		// and stay in later checkpoints, as Flink keeps them).
		if names := t.backend.UnregisteredStates(); len(names) > 0 {
			j.opts.Logger("streamd: %s: restored state %q is not registered by any operator; it is kept", t, names)
		}
	}
	head := t.v.head()
	if head.kind == kindSourceNode {
		state, err := j.restoredSource(t.v, t.index)
		if err != nil {
			return err
		}
		t.initWatermarks(0)
		src, err := head.openSource(t.runtimeFor(head), next, state)
		if err != nil {
			return fmt.Errorf("cannot open source %q: %w", head.name, err)
		}
		t.source = src
		return nil
	}
	t.reader = t.newReader(next)
	t.aligner = align.New(t.reader.numInputs(), j.alignMode)
	t.initWatermarks(t.reader.numInputs())
	return nil
}

func (t *task) runtimeFor(n *node) *Runtime {
	return &Runtime{
		Job: t.job.job.name, Operator: n.name, UID: n.uid, TaskIndex: t.index, Parallelism: t.v.parallelism,
		MaxParallelism: t.job.opts.MaxParallelism, batchSize: t.job.opts.BatchSize,
		backend: t.backend, task: t,
	}
}

// step runs one round of the task on its worker: it handles control
// messages, then reads one batch from each input (operators) or one batch
// from the source. It reports whether the task did anything; a task with
// nothing to do returns false, and its worker waits once none of its tasks
// can go on. step sets t.done when the task has finished.
func (t *task) step() bool {
	t.drainControl()
	if t.done {
		return true
	}
	t.checkCancelled()
	t.fireProcessingTimers()
	if t.source != nil {
		return t.stepSource()
	}
	if t.reader.poll() {
		t.flushOutputs()
		return true
	}
	t.flushOutputs()
	if t.aligner.AllEnded() {
		if err := t.endOfInput(); err != nil {
			panic(taskError{err})
		}
		return true
	}
	if t.backend != nil {
		// Idle: remove a few expired TTL entries (free when no state has
		// a TTL). Reads already treat expired entries as absent.
		t.backend.CleanupExpired(ttlCleanupSlots)
	}
	return false
}

func (t *task) stepSource() bool {
	if t.wm.gen != nil && t.srcState == sourceRunning {
		t.sourceWatermark(monoNs())
	}
	if t.srcState == sourceEnded || t.sourceIdle() {
		return false
	}
	n, eof, err := t.source.step()
	*t.counter(0) += int64(n)
	t.flushOutputs()
	if err != nil {
		panic(taskError{err})
	}
	if eof {
		if err := t.sourceEnded(true); err != nil {
			panic(taskError{err})
		}
		return true
	}
	if n == 0 {
		// Nothing to read now: ask again in a while, handling control
		// messages and the worker's other tasks meanwhile.
		t.idleUntil = time.Now().Add(sourceIdleWait)
		return false
	}
	return true
}

// sourceIdleWait is how long a source that had nothing to read waits
// before it is asked again (or until a control message arrives).
const sourceIdleWait = time.Millisecond

// sourceIdle reports whether the source is waiting after an empty read.
func (t *task) sourceIdle() bool {
	if t.idleUntil.IsZero() {
		return false
	}
	if time.Now().Before(t.idleUntil) {
		return true
	}
	t.idleUntil = time.Time{}
	return false
}

// canStep reports whether step may do something: input to read, a source
// to read from, a control message, or cancellation. Called by the worker's
// wait (also from Park, so it must not block).
func (t *task) canStep() bool {
	if t.exited {
		return false
	}
	if t.ctrl.pending() || t.cancelled() {
		return true
	}
	if t.source != nil {
		return t.srcState == sourceRunning && t.idleUntil.IsZero()
	}
	return t.reader != nil && (t.reader.readable() || t.aligner.AllEnded())
}

// sourceEnded handles a source that has no more records (exhausted) or was
// asked to stop. Without checkpoints it ends the input at once; with them,
// it reports to the driver, which takes a final checkpoint and then sends
// ctrlFinish.
func (t *task) sourceEnded(exhausted bool) error {
	t.srcState = sourceEnded
	if exhausted && t.wm.cur != MaxWatermark {
		// The end of a bounded input: every window fires and its result
		// goes out before the final checkpoint's barrier (as Flink sends
		// MAX_WATERMARK at the end of input). A stopped source does not:
		// its windows stay open in the savepoint.
		t.job.observeWatermark(t, MaxWatermark)
		t.advanceWatermark(MaxWatermark)
	}
	if !t.job.checkpointing {
		return t.endOfInput()
	}
	t.job.send(event{kind: evSourceEnded, task: t.id, exhausted: exhausted})
	return nil
}

// endOfInput runs when all input has ended: commit output (without
// checkpoints), pass end-of-input on, and finish the task.
func (t *task) endOfInput() error {
	t.drainControl()
	if t.sink != nil && !t.job.checkpointing {
		if err := t.sink.Finish(); err != nil {
			return err
		}
	}
	t.emitAll(elemEnd, 0)
	t.done = true
	return nil
}

func (t *task) drainControl() {
	if !t.ctrl.pending() {
		return
	}
	// handleControl may drain again (endOfInput): a nested call takes a
	// buffer of its own.
	buf := t.ctrlBuf
	t.ctrlBuf = nil
	buf = t.ctrl.takeAll(buf[:0])
	for _, m := range buf {
		t.handleControl(m)
	}
	clear(buf)
	t.ctrlBuf = buf
}

func (t *task) handleControl(m ctrlMsg) {
	switch m.kind {
	case ctrlTrigger:
		if t.source != nil {
			t.checkpoint(m.id, time.Now())
		}
	case ctrlComplete:
		if m.handle != nil {
			t.lastCompleted = m.handle
		}
		t.forgetChanges(m.id)
		if t.source != nil {
			if err := t.source.completed(m.id); err != nil {
				t.job.opts.Logger("streamd: %s: the source's completion callback of checkpoint %d failed (the job goes on): %v", t, m.id, err)
			}
		}
		if t.sink != nil {
			if err := t.commitSink(m.id); err != nil {
				panic(taskError{err})
			}
		}
	case ctrlAbort:
		if t.aligner != nil {
			t.apply(t.aligner.Abandon(m.id))
		}
	case ctrlFinish:
		if t.source != nil && !t.done {
			if err := t.endOfInput(); err != nil {
				panic(taskError{err})
			}
		}
	case ctrlStop:
		if t.source != nil && t.srcState == sourceRunning {
			if err := t.sourceEnded(false); err != nil {
				panic(taskError{err})
			}
		}
	}
}

// onElement handles an in-band control element from input channel ch. It
// reports whether the reader must stop reading ch for now.
func (t *task) onElement(ch int, kind elemKind, id uint64) bool {
	t.ctrlRead++
	switch kind {
	case elemBarrier:
		// Control messages that arrived before the barrier are handled
		// before it: "checkpoint n-1 is complete" was sent before the
		// trigger of n (driver.go), so the sink commits n-1 before it
		// pre-commits anything of n, whatever batch the barrier came in.
		t.drainControl()
		if cur, ok := t.aligner.Aligning(); !ok || cur != id {
			t.alignID, t.alignStart = id, time.Now()
		}
		t.apply(t.aligner.Barrier(ch, id))
		return t.aligner.Blocked(ch)
	case elemCancel:
		t.apply(t.aligner.Cancel(ch, id))
		return false
	case elemEnd:
		t.apply(t.aligner.EndOfInput(ch))
		t.updateWatermark()
		return true
	case elemWatermark:
		t.inputWatermark(ch, int64(id))
		return false
	case elemIdle:
		t.inputIdle(ch)
		return false
	}
	panic(fmt.Sprintf("engine: unknown element kind %d on channel %d", kind, ch))
}

// apply carries out an alignment decision, in the order align documents.
func (t *task) apply(d align.Decision) {
	if d.Abort != 0 {
		// Every cause (a newer barrier, a cancellation marker, eviction, an
		// abort from the coordinator) means the checkpoint was overtaken or
		// already given up: not a failure of this task.
		t.job.send(event{kind: evDecline, task: t.id, id: d.Abort, reason: coord.ReasonSubsumed, err: fmt.Errorf("alignment aborted: %v", d.AbortCause)})
		t.emitAll(elemCancel, d.Abort)
	}
	if d.Snapshot != 0 {
		first := t.alignStart
		if t.alignID != d.Snapshot {
			first = time.Now()
		}
		t.checkpoint(d.Snapshot, first)
	}
}

// checkpoint takes the synchronous part of checkpoint id at this task and
// forwards the barrier; the asynchronous part runs on the job's snapshot
// workers.
func (t *task) checkpoint(id uint64, firstBarrier time.Time) {
	start := time.Now()
	meta := snapshot.TaskMeta{Vertex: t.v.name, Operators: t.v.uids, Index: t.index, Parallelism: t.v.parallelism,
		KeyGroupStart: t.kgRange.Start, KeyGroupEnd: t.kgRange.End, Operator: appendTaskState(nil, t.wm.cur)}
	var err error
	if t.source != nil {
		meta.Source, err = t.source.position(id)
	}
	var durable DurableStep
	if err == nil && t.sink != nil {
		if ap, ok := t.sink.(AsyncPreCommitter); ok {
			meta.Sink, durable, err = ap.PreCommitAsync(id)
			if err != nil && durable != nil {
				// On error nothing is handed over (AsyncPreCommitter):
				// release what the step holds and fail, since the sink's
				// own state is now in doubt.
				durable.Abandon()
				panic(taskError{fmt.Errorf("sink %q returned a durable step with an error at checkpoint %d (a bug of the sink): %w", t.v.tail().name, id, err)})
			}
		} else {
			meta.Sink, err = t.sink.PreCommit(id)
		}
	}
	if err != nil {
		t.job.opts.Logger("streamd: %s: checkpoint %d failed: %v", t, id, err)
		t.job.send(event{kind: evDecline, task: t.id, id: id, reason: coord.ReasonError, err: err})
		t.emitAll(elemCancel, id)
		return
	}
	var snap *keyed.Snapshot
	if t.backend != nil {
		snap = t.backend.Snapshot()
	}
	stats := TaskStats{Vertex: t.v.name, Index: t.index, Alignment: start.Sub(firstBarrier), SyncPause: time.Since(start)}
	t.emitAll(elemBarrier, id)
	ev := event{kind: evAck, task: t.id, id: id, meta: meta, stats: stats, barrierAt: firstBarrier}
	if t.lane == nil {
		t.job.send(ev)
		return
	}
	// Through the lane even with nothing to do: the acknowledgement must
	// not overtake the durable steps of earlier checkpoints (async.go).
	aj := asyncJob{prev: t.lastCompleted, durable: durable, ev: ev}
	if snap != nil {
		aj.snap = snap
		if t.job.opts.Checkpointing.FullCheckpoints {
			aj.snap = fullView{snap}
		}
		t.snapEpochs = append(t.snapEpochs, snapEpoch{id: id, epoch: snap.Epoch()})
	}
	t.job.async.enqueue(t.lane, aj)
}

// commitSink commits the sink's transactions up to checkpoint id, which is
// complete. Every two-phase-commit sink commits only here, and only what
// its durable steps made durable (async.go): a sink task acknowledges id
// only after its lane ran every durable step up to id, so a lane behind id
// is a bug of the engine, and nothing is committed.
func (t *task) commitSink(id uint64) error {
	if through := t.lane.durableThrough.Load(); through < id {
		panic(fmt.Sprintf("engine: %s: checkpoint %d is complete but the sink's durable steps ran only through %d", t, id, through))
	}
	if err := t.sink.Commit(id); err != nil {
		return fmt.Errorf("cannot commit checkpoint %d: %w", id, err)
	}
	return nil
}

type snapEpoch struct{ id, epoch uint64 }

// forgetChanges tells the backend, when checkpoint id is complete, that
// the deltas to come are based on its snapshot (or a newer one): the change
// logs may drop what was written up to it (keyed.Backend.ForgetChangesThrough).
func (t *task) forgetChanges(id uint64) {
	i := 0
	for i < len(t.snapEpochs) && t.snapEpochs[i].id <= id {
		if t.snapEpochs[i].id == id && t.backend != nil {
			t.backend.ForgetChangesThrough(t.snapEpochs[i].epoch)
		}
		i++
	}
	t.snapEpochs = append(t.snapEpochs[:0], t.snapEpochs[i:]...)
}
