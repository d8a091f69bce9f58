package engine

import (
	"errors"
	"fmt"
	"log"
	"math/bits"
	"slices"
	"time"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/ringbuf"
	"github.com/streamd/streamd/snapshot"
)

// Limits.
const (
	// MaxParallelism is the largest parallelism of one operator, and of
	// Options.Parallelism. (The number of key groups, Options.MaxParallelism,
	// is bounded by keyed.MaxMaxParallelism instead.)
	MaxParallelism = 1024
	// MaxTasks is the largest number of tasks in one job: the sum over its
	// vertices (chains of operators) of their parallelism.
	MaxTasks = 4096
	// DefaultRetained is CheckpointOptions.Retained when it is left zero.
	DefaultRetained = 2
	// MaxRetained is the largest CheckpointOptions.Retained accepted. Each
	// completed checkpoint reads the metadata of every retained one
	// (snapshot.Store.Retain), so the bound keeps that work small.
	MaxRetained = 1000
	// MaxRingCapacity bounds the slots of one ring.
	MaxRingCapacity = 1 << 20
	// DefaultRingSlots and DefaultRingBytes bound the default capacity of
	// a ring (Options.RingCapacity 0): at most this many slots, fewer for
	// a producer with more than two rings on the edge, and slots of at most
	// this many bytes in all, like Flink's in-flight buffers per channel (2
	// exclusive network buffers of 32 KiB and a share of the floating
	// ones). See autoRingCapacity.
	DefaultRingSlots = 4096
	DefaultRingBytes = 256 << 10
)

// PinMode says whether worker goroutines (which run the tasks, worker.go)
// are locked to OS threads pinned to cores.
type PinMode uint8

const (
	// PinAuto pins every worker to its own core when the process may run
	// on at least as many cores as the job has workers (its largest
	// parallelism) and GOMAXPROCS is at least that too, and pins nothing
	// otherwise (oversubscribed pinned threads would fight over cores).
	PinAuto PinMode = iota
	// PinOff never pins.
	PinOff
	// PinOn pins like PinAuto, and round-robins workers over the cores
	// when there are fewer cores than workers.
	PinOn
)

// Mode is the delivery guarantee of checkpoints.
type Mode = coord.Mode

// Delivery modes.
const (
	ExactlyOnce = coord.ExactlyOnce
	AtLeastOnce = coord.AtLeastOnce
)

// CheckpointOptions configures periodic checkpoints. The embedded coordinator
// options (Interval, Timeout, MinPause, MaxConcurrent, TolerableFailures,
// Mode) are documented in engine/coord.
type CheckpointOptions struct {
	coord.Options
	// Store receives the checkpoints. Required.
	Store *snapshot.Store
	// Retained is the number of completed checkpoints kept. Default
	// DefaultRetained; at most MaxRetained.
	Retained int
	// FullCheckpoints writes every key group that changed since the
	// previous checkpoint in full. Default false: incremental checkpoints,
	// where a changed key group is written as a delta (its changed and
	// deleted entries) on top of the previous checkpoint's, until the
	// Store's materialization policy (snapshot.IncrementalOptions) writes
	// it in full again.
	FullCheckpoints bool
}

// Options configures a Job. The zero value of every field is a documented
// default.
type Options struct {
	// Parallelism is the default parallelism of every operator. Default 1.
	Parallelism int
	// MaxParallelism is the number of key groups of keyed state. It bounds
	// the parallelism of keyed operators and fixes how keys map to state:
	// a checkpoint restores only into a job with the same value. Default
	// keyed.DefaultMaxParallelism (128).
	MaxParallelism int
	// RingCapacity is the number of slots of each ring, rounded up to a
	// power of two. Default (0): sized per edge by the record type and the
	// producer's number of rings on the edge (autoRingCapacity): up to
	// DefaultRingSlots slots and DefaultRingBytes bytes.
	RingCapacity int
	// BatchSize is the number of records moved per ring operation and per
	// source read. Default 256.
	BatchSize int
	// Pinning selects CPU pinning. Default PinAuto.
	Pinning PinMode
	// Wait is the wait strategy of tasks on empty inputs and full outputs.
	Wait ringbuf.WaitStrategy
	// Checkpointing enables checkpoints; nil runs without them (no
	// guarantee after a crash).
	Checkpointing *CheckpointOptions
	// Fingerprint describes what makes a checkpoint compatible with this
	// job (operators, keys, max parallelism). Default: derived from the
	// graph's operator names, kinds and MaxParallelism.
	Fingerprint string
	// Logger receives operational messages (restores, fallbacks, failed
	// checkpoints). Default log.Printf.
	Logger func(format string, args ...any)
	// AllowDuplicateOutput lets a checkpointed job start although a sink
	// says it has committed output beyond the checkpoint being restored
	// (CommitReporter, SinkAheadError): that output will be emitted again.
	// The mismatch is logged. Default false: such a job refuses to start.
	AllowDuplicateOutput bool
	// OnCheckpoint, if set, is called on the driver goroutine with the
	// statistics of every checkpoint when it completes or fails.
	OnCheckpoint func(CheckpointStats)
	// OnSourceWatermark, if set, is called on a source task's goroutine
	// each time the task's watermark advances (periodically, and to
	// MaxWatermark at the end of a bounded input), with the source
	// operator's name and the task's index; it must return quickly. The
	// benchmark harness measures output latency with it.
	OnSourceWatermark func(source string, task int, wm int64)
	// Restore, if set, says where a checkpointed job restores from: a
	// savepoint instead of its own newest checkpoint, and whether state of
	// operators the job no longer has may be skipped (savepoint.go).
	// Default nil: the newest checkpoint in Checkpointing.Store, every
	// operator's state restored.
	Restore *RestoreOptions
	// cpus overrides the number of usable cores, for tests of the pinning
	// decision.
	cpus int
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Parallelism == 0 {
		o.Parallelism = 1
	}
	if o.MaxParallelism == 0 {
		o.MaxParallelism = keyed.DefaultMaxParallelism
	}
	if o.BatchSize == 0 {
		o.BatchSize = 256
	}
	if o.Logger == nil {
		o.Logger = log.Printf
	}
	if c := o.Checkpointing; c != nil {
		c.EnsureDefaults()
		if c.Retained == 0 {
			c.Retained = DefaultRetained
		}
	}
}

// ErrNoStore is the problem Validate reports for checkpointing without a
// Store.
var ErrNoStore = errors.New("engine: checkpointing needs a Store")

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Parallelism < 1 || o.Parallelism > MaxParallelism {
		errs = append(errs, fmt.Errorf("engine: parallelism %d is outside [1, %d]", o.Parallelism, MaxParallelism))
	}
	if o.MaxParallelism < 1 || o.MaxParallelism > keyed.MaxMaxParallelism {
		errs = append(errs, fmt.Errorf("engine: max parallelism %d is outside [1, %d]", o.MaxParallelism, keyed.MaxMaxParallelism))
	}
	if o.RingCapacity == 0 { // sized per edge, at least 2*BatchSize
		if o.BatchSize < 1 || o.BatchSize > MaxRingCapacity/2 {
			errs = append(errs, fmt.Errorf("engine: batch size %d is outside [1, %d]", o.BatchSize, MaxRingCapacity/2))
		}
	} else {
		if o.RingCapacity < 2 || o.RingCapacity > MaxRingCapacity {
			errs = append(errs, fmt.Errorf("engine: ring capacity %d is outside [2, %d]", o.RingCapacity, MaxRingCapacity))
		}
		if o.BatchSize < 1 || o.BatchSize > o.RingCapacity {
			errs = append(errs, fmt.Errorf("engine: batch size %d is outside [1, ring capacity %d]", o.BatchSize, o.RingCapacity))
		}
	}
	if c := o.Checkpointing; c != nil {
		if err := c.Options.Validate(); err != nil {
			errs = append(errs, err)
		}
		if c.Store == nil {
			errs = append(errs, ErrNoStore)
		}
		if c.Retained < 1 || c.Retained > MaxRetained {
			errs = append(errs, fmt.Errorf("engine: retained checkpoints %d is outside [1, %d]", c.Retained, MaxRetained))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the job that Run would fail with
// before it starts anything, all at once: the options (Options.Validate),
// the job's and operators' names, every operator's parallelism (at most
// MaxParallelism; a keyed one at most Options.MaxParallelism), the edges,
// and the number of tasks (at most MaxTasks). It starts nothing, so a
// caller can check a job it only describes.
func (j *Job) Validate() error {
	errs := slices.Clone(j.errs)
	if _, err := j.buildVertices(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckpointStats describes one checkpoint, as Flink's checkpoint history.
type CheckpointStats struct {
	ID          uint64        `json:"id"`
	Status      string        `json:"status"` // "completed" or "failed"
	Reason      string        `json:"reason,omitempty"`
	Final       bool          `json:"final,omitempty"`
	TriggeredAt time.Time     `json:"trigger_time"`
	Duration    time.Duration `json:"end_to_end_duration_ns"`
	// RawBytes and StoredBytes are the state written by this checkpoint
	// before and after compression; ReusedBytes is the state referenced
	// from earlier checkpoints (incremental).
	RawBytes    int64 `json:"state_size_raw_bytes"`
	StoredBytes int64 `json:"state_size_stored_bytes"`
	ReusedBytes int64 `json:"state_size_reused_bytes"`
	KeyedCheckpointStats
	Tasks []TaskStats `json:"tasks,omitempty"`
	// Savepoint: the checkpoint was taken as a savepoint (TriggerSavepoint,
	// StopWithSavepoint); SavepointPath is where it was written, once the
	// export finished (OnCheckpoint, called at completion, does not have
	// it yet).
	Savepoint     bool   `json:"is_savepoint"`
	SavepointPath string `json:"external_path,omitempty"`
}

// TaskStats are one task's share of a checkpoint.
type TaskStats struct {
	Vertex string `json:"vertex"`
	Index  int    `json:"index"`
	// StartDelay is the time from the trigger until the task saw the first
	// barrier of the checkpoint.
	StartDelay time.Duration `json:"start_delay_ns"`
	// Alignment is the time from the first to the last barrier at the task.
	Alignment time.Duration `json:"alignment_duration_ns"`
	// SyncPause is the synchronous part at the task: sink pre-commit,
	// source position, copy-on-write snapshot of keyed state.
	SyncPause time.Duration `json:"sync_duration_ns"`
	// Async is the time to encode, compress and write the state.
	Async       time.Duration `json:"async_duration_ns"`
	RawBytes    int64         `json:"state_size_raw_bytes"`
	StoredBytes int64         `json:"state_size_stored_bytes"`
	KeyedCheckpointStats
}

// KeyedCheckpointStats say how a checkpoint stored keyed state, as Flink
// reports an incremental checkpoint: CheckpointedSize is what it wrote
// (its stored bytes), StateSize what it references (the stored bytes of
// every key group's full image and delta chain, its own included).
// Incremental is true when some key group was written as a delta.
// Of the key groups, DeltaKeyGroups were written as deltas, FullKeyGroups
// in full, ReusedKeyGroups referenced unchanged from an earlier
// checkpoint; MaxDeltaChain is the longest chain of deltas a restore
// applies on top of a full image.
type KeyedCheckpointStats struct {
	CheckpointedSize int64 `json:"checkpointed_size"`
	StateSize        int64 `json:"state_size"`
	Incremental      bool  `json:"is_incremental"`
	DeltaKeyGroups   int   `json:"delta_key_groups"`
	FullKeyGroups    int   `json:"full_key_groups"`
	ReusedKeyGroups  int   `json:"reused_key_groups"`
	MaxDeltaChain    int   `json:"max_delta_chain"`
}

// add adds the figures of one task's keyed handle.
func (k *KeyedCheckpointStats) add(h *snapshot.KeyedHandle) {
	k.CheckpointedSize += h.StoredBytes
	k.StateSize += h.StoredBytes + h.ReusedBytes
	k.DeltaKeyGroups += h.DeltaKeyGroups
	k.FullKeyGroups += h.FullKeyGroups
	k.ReusedKeyGroups += h.ReusedKeyGroups
	k.MaxDeltaChain = max(k.MaxDeltaChain, h.MaxChain)
	k.Incremental = k.Incremental || h.DeltaKeyGroups > 0
}

// autoRingCapacity is the default capacity of a ring whose slots take
// slotBytes bytes, on an edge where each producer spreads its records over
// fanout rings (keyed and rebalance edges; 1 for forward and broadcast)
// (Options.RingCapacity 0): the largest power of two that is at most
// DefaultRingSlots, at most 2*DefaultRingSlots/fanout, and whose slots take
// at most DefaultRingBytes; but at least 2*batch rounded up to a power of
// two, so that a producer can fill one batch while its consumer reads
// another.
//
// Why this many. A ring must absorb the time its consumer's worker spends
// away from it: on its other tasks, and whenever the Go scheduler or the OS
// takes the worker's core for a moment. The typed pipeline benchmark (56-
// byte slots, 2 workers on 2 cores, fan-out 2) ran at ~26 ns per record
// with 1024 slots, when each worker parked hundreds to thousands of times
// per 20 M records, and at ~16.5 ns with 2048, 4096 or 8192 slots, parking
// 0 to 150 times; the YAML job (272-byte slots) ran the same with 512 to
// 4096 slots (bench/cmd/streamd-bench, 2026-12-02). A producer that
// spreads its records over q rings fills each at 1/q of its rate, so the same time is
// absorbed by 1/q of the slots: scaling by fan-out keeps a keyed exchange
// between p and q tasks at ~p*8192 slots in all rather than p*q*4096
// (not measured beyond q = 2: this machine has two cores).
func autoRingCapacity(slotBytes uintptr, batch, fanout int) int {
	c := DefaultRingSlots
	for c > 1 && (c*max(fanout, 1) > 2*DefaultRingSlots || uintptr(c)*slotBytes > DefaultRingBytes) {
		c /= 2
	}
	least := 1 << bits.Len(uint(2*batch-1))
	return max(c, least)
}
