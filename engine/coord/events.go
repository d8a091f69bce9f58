package coord

import (
	"errors"
	"fmt"
)

// TaskID names a task that must acknowledge every checkpoint.
type TaskID int

// Event is an input to Coordinator.Step: Ack, Decline, Persisted,
// PersistFailed, TaskFailed, TriggerNow, TriggerFinal or Stop (values, not
// pointers).
type Event interface{ isEvent() }

// Ack reports that Task finished its snapshot (synchronous and asynchronous
// parts) for checkpoint ID.
type Ack struct {
	Task TaskID
	ID   uint64
}

// Decline reports that Task will not snapshot checkpoint ID. The checkpoint
// is aborted; only ReasonError counts as a failed checkpoint.
type Decline struct {
	Task   TaskID
	ID     uint64
	Reason DeclineReason
	Err    error // the cause, if any
}

// Persisted reports that the caller durably wrote (and synced) the metadata
// of checkpoint ID, which it was asked to do in Ready.Persist.
type Persisted struct{ ID uint64 }

// PersistFailed reports that writing checkpoint ID's metadata failed or that
// its outcome is uncertain. The job fails; nothing is aborted, because only
// recovery can tell which checkpoints are durable. A metadata write is never
// retried.
type PersistFailed struct {
	ID  uint64
	Err error
}

// TaskFailed reports that a task failed: the job fails and every pending
// checkpoint whose metadata is not being written is aborted.
type TaskFailed struct {
	Task TaskID
	Err  error
}

// TriggerNow asks for a checkpoint now (an on-demand one: a user's
// "checkpoint now" or a savepoint), ignoring Interval and MinPause but not
// MaxConcurrent: if no slot is free it is triggered at the first Tick that
// has one, and no regular checkpoint is triggered in the meantime. Requests
// made before it is triggered are merged into one checkpoint, which is a
// savepoint if any of them asked for one; a request made while an on-demand
// checkpoint is in flight is triggered after that one is resolved. While an
// on-demand checkpoint is in flight nothing else is triggered, so it is
// never subsumed. Its Triggered entry has OnDemand set (and Savepoint as
// asked). It is not retried when aborted, and its failure does not count
// towards TolerableFailures (Stats.FailedOnDemand counts it). A wanted
// final checkpoint takes the request over: the final one is then on-demand
// too. Ignored (dropped) after Stop, after the job failed, or once a final
// checkpoint completed; the caller answers its requesters itself.
type TriggerNow struct {
	// Savepoint marks the checkpoint as a savepoint (recorded in
	// Triggered.Savepoint and CheckpointStats.Savepoint).
	Savepoint bool
}

// TriggerFinal asks for a final checkpoint now, ignoring Interval and
// MinPause (but not MaxConcurrent: if no slot is free it is triggered at the
// first Tick that has one, and no regular checkpoint is triggered in the
// meantime). Use it when a bounded job's sources have ended or to stop with
// a checkpoint. If the final checkpoint is aborted (timeout, decline), another
// final one is triggered at the next Tick. Ready.FinalComplete reports its
// completion, after which nothing more is triggered. Ignored after Stop, after
// the job failed, or once a final checkpoint completed; a second TriggerFinal
// while one is wanted changes nothing but may set Savepoint.
type TriggerFinal struct {
	// Savepoint marks the final checkpoint as a savepoint (stop with
	// savepoint).
	Savepoint bool
}

// Stop ends triggering: the job is shutting down. Every pending checkpoint
// whose metadata is not being written is aborted (AbortStopped, not a
// failure); one whose metadata is being written still completes on
// Persisted.
type Stop struct{}

func (Ack) isEvent()           {}
func (Decline) isEvent()       {}
func (Persisted) isEvent()     {}
func (PersistFailed) isEvent() {}
func (TaskFailed) isEvent()    {}
func (TriggerNow) isEvent()    {}
func (TriggerFinal) isEvent()  {}
func (Stop) isEvent()          {}

// DeclineReason says why a task declined a checkpoint.
type DeclineReason uint8

const (
	// ReasonSubsumed: a newer barrier overtook this one during alignment.
	// Not a failure.
	ReasonSubsumed DeclineReason = iota + 1
	// ReasonTaskFinished: the task has finished. Not a failure.
	ReasonTaskFinished
	// ReasonNotReady: the task is not running yet (or is restoring). Not a
	// failure.
	ReasonNotReady
	// ReasonError: the snapshot failed. Counts as a failed checkpoint.
	ReasonError
)

func (r DeclineReason) String() string {
	switch r {
	case ReasonSubsumed:
		return "subsumed"
	case ReasonTaskFinished:
		return "task-finished"
	case ReasonNotReady:
		return "not-ready"
	case ReasonError:
		return "error"
	default:
		return fmt.Sprintf("DeclineReason(%d)", uint8(r))
	}
}

func (r DeclineReason) valid() bool { return r >= ReasonSubsumed && r <= ReasonError }

// AbortReason says why a checkpoint was aborted.
type AbortReason uint8

const (
	// AbortTimeout: not acknowledged by every task within Options.Timeout
	// (a failure).
	AbortTimeout AbortReason = iota + 1
	// AbortDeclined: a task declined it (a failure only for ReasonError).
	AbortDeclined
	// AbortSubsumed: a newer checkpoint completed first.
	AbortSubsumed
	// AbortTaskFailed: a task failed; the job fails.
	AbortTaskFailed
	// AbortStopped: Stop.
	AbortStopped
	// AbortJobFailed: the job failed because more than
	// Options.TolerableFailures consecutive checkpoints failed.
	AbortJobFailed
)

func (r AbortReason) String() string {
	switch r {
	case AbortTimeout:
		return "timeout"
	case AbortDeclined:
		return "declined"
	case AbortSubsumed:
		return "subsumed"
	case AbortTaskFailed:
		return "task-failed"
	case AbortStopped:
		return "stopped"
	case AbortJobFailed:
		return "job-failed"
	default:
		return fmt.Sprintf("AbortReason(%d)", uint8(r))
	}
}

// Errors returned by Step for events that make no sense (bugs in the
// caller). Such an event changes nothing.
var (
	// ErrUnknownTask: the event names a task that was not given to New.
	ErrUnknownTask = errors.New("coord: unknown task")
	// ErrUnknownCheckpoint: the event names a checkpoint id that was never
	// triggered.
	ErrUnknownCheckpoint = errors.New("coord: unknown checkpoint")
	// ErrUnexpectedEvent: the event contradicts the protocol (a decline after
	// the task acknowledged, Persisted for a checkpoint whose metadata was
	// never handed out, an invalid decline reason, a nil or pointer event).
	ErrUnexpectedEvent = errors.New("coord: unexpected event")
)

// Errors that appear in Ready.Failed and Aborted.Err; test with errors.Is.
var (
	// ErrTaskFailed: a task failed (TaskFailed).
	ErrTaskFailed = errors.New("coord: task failed")
	// ErrTooManyFailures: more than Options.TolerableFailures consecutive
	// checkpoints failed.
	ErrTooManyFailures = errors.New("coord: too many consecutive failed checkpoints")
	// ErrPersistFailed: writing checkpoint metadata failed (PersistFailed).
	ErrPersistFailed = errors.New("coord: cannot persist checkpoint metadata")
	// ErrTimeout: a checkpoint was not acknowledged within Options.Timeout.
	ErrTimeout = errors.New("coord: checkpoint timed out")
	// ErrDeclined: a task declined a checkpoint.
	ErrDeclined = errors.New("coord: checkpoint declined")
)
