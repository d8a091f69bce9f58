package engine

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/ringbuf"
)

// A worker is one goroutine that runs several tasks in turn, like a task
// slot in Flink with slot sharing: worker i runs task i of every vertex
// (the tasks of a vertex with parallelism p run on workers 0..p-1). A job
// has as many workers as its largest parallelism. When it has at most as
// many workers as usable cores, each worker is locked to its OS thread and
// pinned to a core of its own; otherwise workers are ordinary goroutines.
//
// Why tasks share workers: a record that goes from a task to the next
// through a ring stays in the core's cache when both tasks run on the same
// core, and crossing cores costs a cache-line transfer per slot (measured
// here: the typed pipeline on one core spent ~120 ns of CPU per record, on
// two cores with a goroutine per task ~200 ns). A task per goroutine also
// let the Go scheduler move tasks, and their keyed state's cache lines,
// between cores.
//
// Waiting. All tasks of a worker share its Waiter, so anything that one of
// them waits for (input published, output room released, a control
// message, cancellation) wakes the worker. A worker waits only when none of
// its tasks can go on. A task whose output ring is full first runs the
// tasks on its worker further down the graph (help: the readers of that
// ring, and the others, which another worker's reader may be waiting for),
// then waits for room: since the job graph has no cycles, the tasks a
// worker runs nested inside another's wait are never upstream of it, so
// they never need it to go on.
type worker struct {
	job    *jobRuntime
	index  int
	cpu    int // -1: not pinned
	waiter *ringbuf.Waiter
	tasks  []*task
	live   int // tasks that have not exited
	// ready reports whether some task of the worker can go on.
	ready func() bool
	timer *time.Timer
	// idleSince is when the worker began waiting with nothing to do
	// (monoNs), 0 while it runs tasks: Job.Metrics counts the wait in
	// progress as idle time of its live tasks.
	idleSince atomic.Int64
}

func newWorker(rt *jobRuntime, index int) *worker {
	w := &worker{job: rt, index: index, cpu: -1, waiter: ringbuf.NewWaiter()}
	w.ready = func() bool {
		for _, t := range w.tasks {
			if t.canStep() {
				return true
			}
		}
		return false
	}
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()
	return w
}

// run is the worker goroutine: it opens its tasks, then steps them round
// robin until every one has finished or failed. Each exit is reported to
// the driver (evTaskExit), which cancels the job on the first failure.
func (w *worker) run() {
	if w.cpu >= 0 {
		// A worker with a core of its own runs on a locked, pinned OS
		// thread. When workers outnumber cores they stay ordinary
		// goroutines: locked threads would hand the cores to each other
		// through the OS (~20 µs per wake-up, DESIGN.md), while the Go
		// scheduler switches goroutines in well under a microsecond.
		runtime.LockOSThread()
		unpin, perr := pinThread(w.cpu)
		if perr != nil {
			w.job.opts.Logger("streamd: worker %d: cannot pin to cpu %d: %v", w.index, w.cpu, perr)
		}
		defer func() {
			if unpin() {
				runtime.UnlockOSThread()
			}
		}()
	}
	w.live = len(w.tasks)
	for _, t := range w.tasks {
		if err := t.guard(func() {
			if err := t.open(); err != nil {
				panic(taskError{err})
			}
		}); err != nil {
			w.exit(t, err)
		}
	}
	wait := w.job.opts.Wait
	for w.live > 0 {
		progress := false
		for _, t := range w.tasks {
			if !t.exited && w.step(t) {
				progress = true
			}
		}
		if progress || w.live == 0 {
			continue
		}
		start := monoNs()
		w.idleSince.Store(start)
		if d, ok := w.idleSources(); ok {
			// A source waits after an empty read: wake up for it in time.
			w.waiter.ParkFor(w.ready, d, w.timer)
		} else {
			wait.Await(w.waiter, w.ready)
		}
		w.endIdle(start)
	}
}

// endIdle adds the worker's wait with nothing to do, which began at
// start, to the idle time of each of its tasks that has not exited
// (metrics.go). The wait in progress is cleared first, so that a reader
// never counts it twice (waitTime.end).
func (w *worker) endIdle(start int64) {
	w.idleSince.Store(0)
	d := monoNs() - start
	for _, t := range w.tasks {
		if !t.exited {
			t.idle.add(d)
		}
	}
}

// step runs one round of t (task.step) and reports whether it made
// progress. A task that finished or failed is closed and reported.
func (w *worker) step(t *task) (progress bool) {
	t.onStack = true
	err := t.guard(func() { progress = t.step() })
	t.onStack = false
	if err != nil || t.done {
		w.exit(t, err)
		return true
	}
	if progress {
		t.publishCounts()
	}
	return progress
}

func (w *worker) exit(t *task, err error) {
	if t.exited {
		return
	}
	t.exited = true
	w.live--
	t.publishCounts() // the final values
	t.finished.Store(true)
	err = t.close(err)
	w.job.send(event{kind: evTaskExit, task: t.id, err: err})
}

// help runs, once each, the tasks on this worker that consume t's output
// and are not already running further down the stack. It reports whether
// any made progress: then t's full output may have room again.
func (w *worker) help(t *task) bool {
	progress := false
	for _, c := range t.consumers {
		if !c.exited && !c.onStack && w.step(c) {
			progress = true
		}
	}
	return progress
}

// consumersReady reports whether a consumer of t on this worker could go
// on (see help); part of the wait for room in a full output.
func (t *task) consumersReady() bool {
	for _, c := range t.consumers {
		if !c.onStack && c.canStep() {
			return true
		}
	}
	return false
}

// idleSources returns how long until the worker has timed work to do, if
// it has any: a source that waits after an empty read, a source's next
// periodic watermark, an operator's processing-time timer.
func (w *worker) idleSources() (time.Duration, bool) {
	var first time.Time
	due := func(at time.Time) {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	now := monoNs()
	for _, t := range w.tasks {
		if t.exited {
			continue
		}
		if t.source != nil && t.srcState == sourceRunning && !t.idleUntil.IsZero() {
			due(t.idleUntil)
		}
		if at, ok := t.sourceWatermarkDue(); ok {
			due(time.Now().Add(time.Duration(at - now)))
		}
		if ms, ok := t.nextProcessingTimer(); ok {
			due(time.UnixMilli(ms))
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(time.Until(first), time.Microsecond), true
}
