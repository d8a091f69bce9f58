package engine

import (
	"errors"
	"fmt"
	"io"
)

// Sink is a two-phase-commit sink: the engine's side of end-to-end
// exactly-once output. One Sink serves all tasks of a sink operator; each
// task writes through its own SinkWriter.
//
// The protocol, as Flink's TwoPhaseCommitSinkFunction: records are written
// into an open transaction; at a checkpoint barrier the writer pre-commits
// (flushes and makes the transaction durable but invisible) and returns its
// state, the list of pre-committed transactions not yet committed, which
// goes into the checkpoint; when the checkpoint is complete (its metadata is
// durable) the engine tells the writer to commit. Commit must be idempotent,
// because after a crash the engine restores the checkpoint and hands its
// pending transactions to Recover, which commits them again and aborts
// every other transaction it finds (strays of the crashed run).
type Sink[T any] interface {
	// Recover is called once before any writer is created, with the
	// states that every task of this sink recorded in the checkpoint the
	// job restores from (nil on a fresh start). It commits the
	// transactions they list, idempotently, and aborts all others.
	Recover(states [][]byte) error
	// NewWriter creates the writer of one task.
	NewWriter(ctx SinkContext) (SinkWriter[T], error)
}

// SinkContext describes the task a sink writer runs in.
type SinkContext struct {
	Job         string
	Operator    string
	Index       int
	Parallelism int
	// Transactional is true when checkpoints drive commits; false when the
	// job has no checkpoints, and the writer commits in Finish.
	Transactional bool
}

// SinkWriter writes one task's records. All methods are called on the
// task's goroutine.
type SinkWriter[T any] interface {
	// Write adds a record to the open transaction (beginning one if
	// needed).
	Write(v *T) error
	// PreCommit makes everything written so far durable in a pending
	// transaction (possibly empty: then none is created) and returns the
	// writer's state: every pending transaction not yet committed.
	PreCommit(checkpointID uint64) ([]byte, error)
	// Commit commits every transaction pre-committed at or before
	// checkpointID. Idempotent.
	Commit(checkpointID uint64) error
	// Finish is called at the end of input of a job without checkpoints:
	// it commits what was written.
	Finish() error
	// Close releases resources; it aborts nothing that was pre-committed.
	Close() error
}

// AsyncPreCommitter is implemented by sink writers whose pre-commit has a
// slow part — making the sealed transaction durable, e.g. fsyncs — that can
// run off the task goroutine, in the checkpoint's asynchronous phase, so the
// task's synchronous pause stays short. When a writer implements it, the
// engine calls PreCommitAsync instead of PreCommit: it seals the
// transaction on the task goroutine and returns the writer's state (as
// PreCommit) and the durable step, or nil if there is nothing to make
// durable.
//
// The engine runs each writer's durable steps one at a time, in checkpoint
// order, on a snapshot worker, and acknowledges checkpoint n only after the
// steps of n and of every earlier checkpoint returned nil; it commits
// (Commit) only what those steps made durable. A step must not touch the
// writer (the task goes on writing). A step that returns an error fails the
// job, and no later step of the writer runs: an fsync is never retried (its
// outcome is unknown).
//
// On error, nothing is handed over: PreCommitAsync returns a nil state and
// a nil step, having released what the sealed transaction held (a writer
// that cannot seal keeps the error sticky; the job fails). The engine
// treats a non-nil step returned with an error as a bug of the sink: it
// abandons the step and fails the job.
type AsyncPreCommitter interface {
	PreCommitAsync(checkpointID uint64) (state []byte, step DurableStep, err error)
}

// DurableStep is the part of a pre-commit that makes a sealed transaction
// durable (AsyncPreCommitter). The engine calls exactly one of its methods,
// once.
type DurableStep interface {
	// Run makes the transaction durable and releases what the step holds
	// (e.g. fsyncs and closes a file).
	Run() error
	// Abandon releases what the step holds without making anything
	// durable: the job failed or was cancelled before the step could run.
	// The transaction stays where the next recovery finds it (Recover
	// aborts it unless a checkpoint lists it).
	Abandon()
}

// DurableFunc returns a DurableStep of two functions; abandon may be nil.
func DurableFunc(run func() error, abandon func()) DurableStep {
	return durableFunc{run, abandon}
}

type durableFunc struct {
	run     func() error
	abandon func()
}

func (d durableFunc) Run() error { return d.run() }

func (d durableFunc) Abandon() {
	if d.abandon != nil {
		d.abandon()
	}
}

// ToSink adds a sink operator.
func ToSink[T any](s Stream[T], name string, sink Sink[T], opts ...OpOption) {
	n := &node{name: name, kind: kindSinkNode, part: s.part, sink: typedSinkRecoverer[T]{sink}, countsIn: true}
	n.build = func(rt *Runtime, _ any) (any, error) {
		w, err := sink.NewWriter(SinkContext{
			Job: rt.Job, Operator: rt.Operator, Index: rt.TaskIndex, Parallelism: rt.Parallelism,
			Transactional: rt.task.job.checkpointing,
		})
		if err != nil {
			return nil, err
		}
		if rt.task.sink != nil {
			panic("engine: two sinks chained in one task")
		}
		rt.task.sink = w
		// countsIn: a sink's records in and out are the records it
		// was given to write. Counted before Write: after the call the
		// closure's context must be reloaded (2 more instructions).
		in := rt.recordsIn
		return func(v *T) {
			*in++
			if err := w.Write(v); err != nil {
				panic(taskError{err})
			}
		}, nil
	}
	s.j.addNode(n, s.n, opts)
}

// sinkHooks is the untyped control side of a sink writer.
type sinkHooks interface {
	PreCommit(checkpointID uint64) ([]byte, error)
	Commit(checkpointID uint64) error
	Finish() error
	Close() error
}

// CommitReporter is implemented by sinks that can say, from their own
// system, which checkpoint they last committed (DESIGN durability rule 2):
// a marker in the output directory, a progress row written in the same
// transaction, a transaction's state. Before a checkpointed job recovers
// its sinks, the engine compares it with the checkpoint it restores, and
// refuses to start when the sink has committed beyond it — or has
// committed anything while the store holds no checkpoint of the job —
// because replaying from there would duplicate committed output
// (SinkAheadError).
type CommitReporter interface {
	// LastCommitted returns the highest checkpoint id whose output the sink
	// committed for this job, 0 if none. An error (the sink cannot tell)
	// stops the job before anything is written.
	LastCommitted() (uint64, error)
}

// ErrSinkAhead is wrapped by SinkAheadError.
var ErrSinkAhead = errors.New("engine: a sink has committed output beyond the checkpoint being restored")

// SinkAheadError refuses to start a job whose sink has committed output
// that the checkpoint being restored does not account for: the store lost
// a completed checkpoint, or the data dir is not the one this output
// belongs to. Nothing has been written or deleted when it is returned.
type SinkAheadError struct {
	Job  string
	Sink string
	// Committed is the checkpoint the sink says it committed through;
	// Restored the checkpoint being restored (0: none).
	Committed, Restored uint64
}

func (e *SinkAheadError) Error() string {
	have := fmt.Sprintf("the newest usable checkpoint in the data dir is %d", e.Restored)
	if e.Restored == 0 {
		have = "the data dir holds no checkpoint of the job"
	}
	return fmt.Sprintf("engine: job %q: sink %q has committed output through checkpoint %d, but %s: "+
		"running would emit that output again (duplicates). Either restore the data dir that belongs to this output, "+
		"or move the output away and start over, or accept duplicates explicitly (streamd run --allow-duplicate-output; "+
		"engine.Options.AllowDuplicateOutput)", e.Job, e.Sink, e.Committed, have)
}

func (e *SinkAheadError) Unwrap() error { return ErrSinkAhead }

// sinkRecoverer is the untyped job-level side of a sink.
type sinkRecoverer interface {
	Recover(states [][]byte) error
	// lastCommitted reports CommitReporter's answer; ok is false when
	// the sink does not implement it.
	lastCommitted() (id uint64, ok bool, err error)
	// close calls the sink's Close, if it has one (io.Closer), when the
	// job's run ends: e.g. the file sink releases its directory's lock.
	close() error
}

type typedSinkRecoverer[T any] struct{ s Sink[T] }

func (r typedSinkRecoverer[T]) Recover(states [][]byte) error { return r.s.Recover(states) }

func (r typedSinkRecoverer[T]) lastCommitted() (uint64, bool, error) {
	cr, ok := r.s.(CommitReporter)
	if !ok {
		return 0, false, nil
	}
	id, err := cr.LastCommitted()
	return id, true, err
}

func (r typedSinkRecoverer[T]) close() error {
	if c, ok := r.s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// taskError carries an operating error out of a push chain.
type taskError struct{ err error }

// sourceRunner is the untyped side of a source task.
type sourceRunner interface {
	step() (n int, eof bool, err error)
	// position returns the source's position for checkpoint id.
	position(id uint64) ([]byte, error)
	close() error
	// completed tells the source that checkpoint id is complete
	// (CheckpointListener), if it listens.
	completed(id uint64) error
}

// CheckpointListener is implemented by a Source or a SplitReader that
// wants to know when a checkpoint is complete — its metadata durable, the
// positions it recorded in it now the ones a restore starts from — as
// Flink's CheckpointListener.notifyCheckpointComplete: to commit offsets
// to a consumer group for monitoring, say. It is called on the task's
// goroutine, at most once per checkpoint, in order, and possibly never
// (a crash right after completion): nothing exactly-once may rest on it.
// An error is logged; the job goes on.
type CheckpointListener interface {
	CheckpointCompleted(id uint64) error
}

// CheckpointTaker is implemented by a Source or SplitReader that wants to
// know which checkpoint the position it just returned (Position, Splits)
// belongs to: CheckpointTaken(id) is called right after, on the task's
// goroutine, so that a later CheckpointCompleted(id) can act on that
// position (committing a checkpoint's offsets to a consumer group).
type CheckpointTaker interface {
	CheckpointTaken(id uint64)
}

func checkpointTaken(x any, id uint64) {
	if l, ok := x.(CheckpointTaker); ok {
		l.CheckpointTaken(id)
	}
}

// notifyCompleted calls x's CheckpointCompleted if x listens.
func notifyCompleted(x any, id uint64) error {
	if l, ok := x.(CheckpointListener); ok {
		return l.CheckpointCompleted(id)
	}
	return nil
}

type typedSource[T any] struct {
	src  Source[T]
	buf  []T
	push func(*T)
	et   eventTime[T]
}

func (s *typedSource[T]) step() (int, bool, error) {
	n, err := s.src.Read(s.buf)
	return pushRead(n, err, s.buf, s.push, "Source", &s.et, 0)
}

// eventTime is a source task's timestamp assigner and watermark generator
// (watermark.go); ts is nil without event time.
type eventTime[T any] struct {
	ts func(*T) int64
	t  *task
}

// openEventTime sets up event time for a source task of n whose records
// come from splits splits (sw, when not nil, says which split each Read
// came from).
func openEventTime[T any](n *node, rt *Runtime, splits int, sw SplitWatermarks) eventTime[T] {
	if n.watermarks == nil {
		return eventTime[T]{}
	}
	if sw == nil {
		// The task's splits share one generator.
		splits = 1
	}
	t := rt.task
	t.wm.gen = newWMGenerator(n.watermarks, splits, sw)
	return eventTime[T]{ts: n.timestamp.(func(*T) int64), t: t}
}

// pushRead passes on the n records a source's Read (of reader, for
// messages) put in buf, with their timestamps when the source has event
// time (split is the split they came from), and says whether the source
// ended (io.EOF).
func pushRead[T any](n int, err error, buf []T, push func(*T), reader string, et *eventTime[T], split int) (int, bool, error) {
	if n < 0 || n > len(buf) {
		return 0, false, fmt.Errorf("%s.Read returned %d records for a buffer of %d", reader, n, len(buf))
	}
	buf = buf[:n]
	if ts := et.ts; ts != nil && n > 0 {
		t, maxTS := et.t, MinWatermark
		for i := range buf {
			x := ts(&buf[i])
			t.recTS = x
			maxTS = max(maxTS, x)
			push(&buf[i])
		}
		t.wm.gen.observe(split, maxTS)
	} else {
		for i := range buf {
			push(&buf[i])
		}
	}
	// The end is io.EOF itself, never an error that wraps it: a reader's
	// network error that wraps the EOF of a closed connection is a failure,
	// and taking it for the end would finish the job with records unread.
	if err == io.EOF {
		return n, true, nil
	}
	return n, false, err
}

func (s *typedSource[T]) position(id uint64) ([]byte, error) {
	pos, err := s.src.Position()
	if err == nil {
		checkpointTaken(s.src, id)
	}
	return pos, err
}
func (s *typedSource[T]) completed(id uint64) error { return notifyCompleted(s.src, id) }
func (s *typedSource[T]) close() error              { return s.src.Close() }
