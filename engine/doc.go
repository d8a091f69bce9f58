// Package engine runs keyed, stateful dataflows on one host: it owns the job
// graph and its typed API, operator chaining, the exchanges between tasks,
// the workers that run the tasks, the checkpoint driver that feeds
// the coordinator (engine/coord), and the interfaces of sources and sinks.
//
// # Shape
//
// A job is a directed acyclic graph of operators built with the typed API
// (FromSource, Map, Filter, FlatMap, KeyBy, Process, Transform, ToSink). Each
// operator runs as Parallelism parallel instances. Consecutive operators
// connected one-to-one with equal parallelism are chained into one task.
// Tasks run on workers, as in a Flink task slot with slot sharing: worker i
// is one goroutine that runs task i of every vertex in turn, so a record
// handed from one task to the next through a ring usually stays in the
// core's cache. When there are at least as many cores as workers, each
// worker is locked to its OS thread and pinned to its own core (when
// workers outnumber cores, locked threads would trade cores through the
// OS, far slower than the Go scheduler's goroutine switches). A task whose
// output ring is full first runs the tasks on its worker that read it, then
// waits (worker.go). Every edge between tasks is a set of
// lock-free single-producer single-consumer rings (ringbuf), one per
// (upstream task, downstream task) pair. Records, barriers, cancellation
// markers, watermarks and end-of-input travel in-band, in order, in batches.
// Control messages (trigger a checkpoint, checkpoint complete or aborted,
// finish, stop) travel on ordinary Go channels and are polled between batches,
// never per record; a task parked on empty inputs wakes for them too.
//
// # Records
//
// The typed path never boxes a record in an interface: operators are chained
// as func(*T) closures built once per task, records sit in ring slots by
// value, and per-operator scratch values carry outputs, so a record costs no
// allocation between source and sink (tests prove it with AllocsPerRun).
// MapInPlace and Process pass records by pointer: on this machine a struct
// of several words passed and returned by value costs store-forwarding
// stalls worth more than the operator itself. Pointer-free records are
// copied into ring slots word by word for the same reason (copy.go).
//
// # Checkpoints
//
// With Options.Checkpointing set, the engine runs Flink's asynchronous
// barrier snapshots: the coordinator (engine/coord, a pure state machine)
// decides when to trigger; sources record their positions and inject barrier
// n between two batches; every task aligns its inputs with align.Aligner,
// takes a copy-on-write snapshot of its keyed state (O(key groups)), lets its
// sink pre-commit, forwards barrier n, and hands the frozen state to a
// background writer (snapshot.Store) that acknowledges when the blocks are
// written. When every task has acknowledged, the driver writes the
// checkpoint's metadata in a synced batch and only then tells the sinks to
// commit. A bounded job takes a final checkpoint after its sources end, so
// its last records are committed before Run returns.
//
// # Sources, splits and rescaling
//
// A plain source (FromSource) stores one opaque position per task, and a
// checkpoint of it restores only at the same parallelism. A splittable
// source (FromSplitSource, split.go) is a set of splits — ranges of a
// sequence, files and byte offsets, later partitions — that its
// SplitEnumerator deals out to the tasks, as Flink's split enumerator
// does; a task's checkpointed position (snapshot.TaskMeta.Source) is the
// list of its splits, each an ID and an opaque position, framed by the
// engine (a magic, a version byte, then the splits: AppendSplits,
// DecodeSplits) so that it is told apart from a plain source's position
// and the checkpoint metadata's format does not change. On a restore at
// the same parallelism each task gets back exactly its own splits; at
// another, the engine gathers the splits of every old task of the operator
// and calls the enumerator's Reassign, which may subdivide splits but must
// keep the set of records they read. The engine checks what it can: one
// list per task, no split ID twice (a split in two tasks would be read
// twice), and that a reader checkpoints exactly the splits it was given.
// Checkpoints taken when the source was still a plain one restore through
// the enumerator's PositionConverter (the sequence and file sources have
// one), at any parallelism. The assignment is made once per run, in the
// restore phase, before the sinks recover.
//
// Keyed state rescales by key groups (readKeyed). Sinks rescale too: a
// sink's Recover receives the pending transactions of every task of the
// restored checkpoint, whatever the old and new parallelism, and commits
// them all, before any writer of the new run exists; the new writers
// start with no pending transactions. So every pre-committed transaction
// is committed exactly once across a rescale (Recover is idempotent when
// the restore repeats).
//
// # Failure
//
// A panic or error in any task stops the whole job; Run returns it with the
// operator's name and task index. Cancelling Run's context stops every task
// promptly (no final checkpoint); Stop ends the sources gracefully, takes a
// final checkpoint and commits.
//
// # Files
//
// api.go and graph.go: the typed API and the job graph; build.go: tasks,
// workers and rings of a run; exchange.go: ring writers and readers per
// partitioning (they call back into the task for cancellation and for
// running consumers on the same worker, so they stay in this package
// rather than behind an interface in engine/internal); task.go: one task's
// step, alignment and synchronous checkpoint part; worker.go: the workers
// and their wait; restore.go: finding, checking and loading the checkpoint
// a run starts from; driver.go: the driver loop around the coordinator;
// async.go: the asynchronous checkpoint work, in checkpoint order per task;
// sink.go: the two-phase-commit sink interface; split.go: splittable
// sources, the encoding of split lists and their assignment to tasks;
// metrics.go: Job.Metrics, records in and out per operator and task,
// waiting times and ring occupancy, and where each count is taken so that
// counting costs the record path no call or atomic per record;
// watermark.go: event time — timestamps, per-split watermark generation,
// in-band watermarks and idle status, their minimum over input channels,
// the watermark a task checkpoints; process.go: KeyedProcess and timers
// (kept in keyed state, keyed.Timers); twoinput.go: two-input keyed
// operators (CoProcess), whose inputs share one aligner.
//
// engine imports ringbuf, align, keyed, snapshot and engine/coord, and never
// anything under connectors, jobrun, bench or cmd.
package engine
