package coord

import (
	"errors"
	"fmt"

	inv "github.com/streamd/streamd/internal/invariants"
)

// invariantsEnabled turns on the expensive self-checks after every Tick,
// Step, Ready and Advance. It is internal/invariants' switch: on with
// -tags invariants or -race, and compiled away otherwise. That package, a
// leaf of constants, is the only streamd import coord may have.
const invariantsEnabled = inv.Enabled

// checkInvariants panics if the coordinator's state is inconsistent. It
// costs nothing unless built with -tags invariants or -race.
func (c *Coordinator) checkInvariants() {
	if !invariantsEnabled {
		return
	}
	if err := c.verify(); err != nil {
		panic(fmt.Sprintf("coord: invariant violated: %v (%s)", err, c))
	}
}

// verify checks the coordinator's state and returns what is wrong.
func (c *Coordinator) verify() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.nextID < c.firstID {
		bad("nextID %d < firstID %d", c.nextID, c.firstID)
	}
	if len(c.pending) > c.opts.MaxConcurrent {
		bad("%d checkpoints in flight, MaxConcurrent is %d", len(c.pending), c.opts.MaxConcurrent)
	}
	if c.finalDone && len(c.pending) > 0 {
		bad("%d checkpoints pending after the final one completed", len(c.pending))
	}
	queued := 0
	for i, cp := range c.pending {
		if cp.id < c.firstID || cp.id >= c.nextID {
			bad("pending checkpoint %d outside [%d, %d)", cp.id, c.firstID, c.nextID)
		}
		if i > 0 && cp.id <= c.pending[i-1].id {
			bad("pending checkpoints out of order: %d after %d", cp.id, c.pending[i-1].id)
		}
		if cp.id <= c.latestCompletedID {
			bad("checkpoint %d pending after %d completed", cp.id, c.latestCompletedID)
		}
		n := 0
		for _, a := range cp.acked {
			if a {
				n++
			}
		}
		if n != cp.acks {
			bad("checkpoint %d counts %d acks, has %d", cp.id, cp.acks, n)
		}
		switch cp.state {
		case stateCollecting:
			if cp.acks >= len(c.tasks) {
				bad("checkpoint %d collecting with every ack", cp.id)
			}
		case statePersistQueued, statePersisting, stateAbandoned:
			if cp.acks != len(c.tasks) {
				bad("checkpoint %d in state %d with %d of %d acks", cp.id, cp.state, cp.acks, len(c.tasks))
			}
			if cp.state == statePersistQueued {
				queued++
			}
			if cp.state == stateAbandoned && c.failed == nil {
				bad("checkpoint %d abandoned but the job has not failed", cp.id)
			}
			if cp.persistHandedOut != (cp.state == statePersisting) {
				bad("checkpoint %d in state %d has persistHandedOut=%v", cp.id, cp.state, cp.persistHandedOut)
			}
		default:
			bad("pending checkpoint %d in resolved state %d", cp.id, cp.state)
		}
	}
	if c.out.persistHandedOut < 0 || c.out.persistHandedOut > len(c.out.persist) {
		bad("persistHandedOut %d of %d entries", c.out.persistHandedOut, len(c.out.persist))
	} else {
		if got := len(c.out.persist) - c.out.persistHandedOut; got != queued {
			bad("%d queued Persist entries for %d queued checkpoints", got, queued)
		}
		for _, p := range c.out.persist[c.out.persistHandedOut:] {
			if cp := c.findPending(p.ID); cp == nil || cp.state != statePersistQueued {
				bad("queued Persist entry %d without a queued checkpoint", p.ID)
			}
		}
	}
	for i := 1; i < len(c.out.complete); i++ {
		if c.out.complete[i].ID <= c.out.complete[i-1].ID {
			bad("Complete entries out of order: %d after %d", c.out.complete[i].ID, c.out.complete[i-1].ID)
		}
	}
	for i := 1; i < len(c.out.trigger); i++ {
		if c.out.trigger[i].ID != c.out.trigger[i-1].ID+1 {
			bad("Trigger entries not consecutive: %d after %d", c.out.trigger[i].ID, c.out.trigger[i-1].ID)
		}
	}
	if c.failedDelivered && c.HasReady() {
		bad("a Ready after the one that carried Failed")
	}
	for i := 1; i < len(c.history); i++ {
		if c.history[i].id != c.history[i-1].id+1 {
			bad("history not consecutive: %d after %d", c.history[i].id, c.history[i-1].id)
		}
	}
	if len(c.history) > HistoryLen {
		bad("history holds %d checkpoints, limit %d", len(c.history), HistoryLen)
	}
	return errors.Join(errs...)
}
