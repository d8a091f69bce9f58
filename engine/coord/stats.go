package coord

import (
	"fmt"
	"time"
)

// HistoryLen is the number of most recently triggered checkpoints kept in
// Stats.History.
const HistoryLen = 64

// Status is where a checkpoint is in its life.
type Status uint8

const (
	// StatusInProgress: waiting for acknowledgements.
	StatusInProgress Status = iota + 1
	// StatusPersisting: every task acknowledged; its metadata is being
	// written.
	StatusPersisting
	// StatusCompleted: durable and notified.
	StatusCompleted
	// StatusAborted: will never complete.
	StatusAborted
	// StatusAbandoned: every task acknowledged it, but a metadata write
	// failed (PersistFailed) before its own was handed out: it is neither
	// persisted nor aborted, and recovery will not find it.
	StatusAbandoned
)

func (s Status) String() string {
	switch s {
	case StatusInProgress:
		return "in-progress"
	case StatusPersisting:
		return "persisting"
	case StatusCompleted:
		return "completed"
	case StatusAborted:
		return "aborted"
	case StatusAbandoned:
		return "abandoned"
	default:
		return fmt.Sprintf("Status(%d)", uint8(s))
	}
}

// CheckpointStats describes one checkpoint.
type CheckpointStats struct {
	ID          uint64
	Final       bool
	OnDemand    bool // triggered by TriggerNow
	Savepoint   bool // TriggerNow or TriggerFinal asked for a savepoint
	Status      Status
	TriggeredAt time.Time
	EndedAt     time.Time   // completion or abort; zero while in flight
	Acks        int         // tasks that acknowledged it
	AbortReason AbortReason // when Status is StatusAborted
}

// Stats are the coordinator's counters and recent history.
type Stats struct {
	Tasks     int    // tasks that must acknowledge each checkpoint
	Triggered uint64 // checkpoints triggered
	Completed uint64 // checkpoints completed
	// Failed counts failed checkpoints: timeouts and declines with
	// ReasonError (the ones TolerableFailures counts), except on-demand
	// ones.
	Failed uint64
	// FailedOnDemand counts the failed on-demand checkpoints (TriggerNow),
	// which TolerableFailures does not count.
	FailedOnDemand      uint64
	Aborted             uint64 // checkpoints aborted, for any reason
	InFlight            int    // checkpoints triggered and not resolved
	ConsecutiveFailures int    // failed checkpoints since the last completed one
	LatestCompletedID   uint64 // 0 if none completed since New
	// Ignored events (late or duplicated, not errors).
	IgnoredLateAcks      uint64 // acks for checkpoints already resolved, or after the job failed
	IgnoredDuplicateAcks uint64 // a second ack from a task for a pending checkpoint
	IgnoredDeclines      uint64 // declines for checkpoints already resolved, or after the job failed
	IgnoredPersisted     uint64 // Persisted for a subsumed checkpoint, or after the job failed
	// History describes the last HistoryLen triggered checkpoints, oldest
	// first.
	History []CheckpointStats
}

// Stats returns the counters and a copy of the history.
func (c *Coordinator) Stats() Stats {
	s := Stats{
		Tasks:                len(c.tasks),
		Triggered:            c.counters.triggered,
		Completed:            c.counters.completed,
		Failed:               c.counters.failed,
		FailedOnDemand:       c.counters.failedOnDemand,
		Aborted:              c.counters.aborted,
		InFlight:             len(c.pending),
		ConsecutiveFailures:  c.consecutiveFailures,
		LatestCompletedID:    c.latestCompletedID,
		IgnoredLateAcks:      c.counters.ignoredLateAcks,
		IgnoredDuplicateAcks: c.counters.ignoredDuplicateAcks,
		IgnoredDeclines:      c.counters.ignoredDeclines,
		IgnoredPersisted:     c.counters.ignoredPersisted,
		History:              make([]CheckpointStats, len(c.history)),
	}
	for i, cp := range c.history {
		h := CheckpointStats{
			ID:          cp.id,
			Final:       cp.final,
			OnDemand:    cp.onDemand,
			Savepoint:   cp.savepoint,
			TriggeredAt: cp.triggeredAt,
			EndedAt:     cp.endedAt,
			Acks:        cp.acks,
			AbortReason: cp.abortReason,
		}
		switch cp.state {
		case stateCollecting:
			h.Status = StatusInProgress
		case stateAbandoned:
			h.Status = StatusAbandoned
		case statePersistQueued, statePersisting:
			h.Status = StatusPersisting
		case stateCompleted:
			h.Status = StatusCompleted
		case stateAborted:
			h.Status = StatusAborted
		}
		s.History[i] = h
	}
	return s
}
