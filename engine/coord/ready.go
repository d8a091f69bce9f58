package coord

import "time"

// Ready lists what the caller must do, field by field in the order of the
// fields, before calling Advance with it. Every list is in the order the
// coordinator decided it. A Ready is the caller's to keep: the coordinator
// never changes its slices.
type Ready struct {
	// Persist, 1st: write the metadata of these checkpoints (every task
	// acknowledged them) and sync it, then Step(Persisted{ID}) — or
	// Step(PersistFailed{ID, err}) if the write failed or its outcome is
	// uncertain; never retry. A checkpoint does not exist until its metadata
	// is durable: nothing is listed in Complete before its Persisted event.
	// The write may finish after Advance; events may be stepped meanwhile.
	Persist []Pending
	// Trigger, 2nd: inject barrier ID at every source.
	Trigger []Triggered
	// Complete, 3rd: notify every task that ID is complete (sinks commit
	// everything up to and including ID). Ids are strictly increasing across
	// all Readys. A completion subsumes every older pending checkpoint: those
	// are listed in Aborted (AbortSubsumed) of the same Ready.
	Complete []Completed
	// Aborted, 4th: notify the tasks that ID is aborted; the caller forwards
	// cancellation to the sources and tasks. Each triggered id is listed in
	// Complete or Aborted at most once, never both. An id may appear here in
	// the same Ready as its Trigger.
	Aborted []Aborted
	// FinalComplete: the final checkpoint (TriggerFinal) is listed in
	// Complete of this Ready: once the caller has notified it, the job may
	// finish.
	FinalComplete bool
	// Failed, last: the job must fail. The Ready that carries Failed is the
	// last one: after it HasReady is always false and every event is ignored
	// (events that make no sense still return errors).
	Failed error
}

// Pending is a checkpoint whose metadata must be persisted.
type Pending struct {
	ID          uint64
	TriggeredAt time.Time
	Final       bool
}

// Triggered is a checkpoint whose barrier must be injected at the sources.
type Triggered struct {
	ID    uint64
	At    time.Time
	Final bool
	// OnDemand: triggered for TriggerNow (possibly merged into a final
	// checkpoint). The caller hands its outcome to whoever asked.
	OnDemand bool
	// Savepoint: TriggerNow or TriggerFinal asked for a savepoint.
	Savepoint bool
}

// Completed is a checkpoint that is complete and durable.
type Completed struct {
	ID          uint64
	TriggeredAt time.Time
	CompletedAt time.Time // when its Persisted event was stepped
	Final       bool
}

// Aborted is a checkpoint that will never complete.
type Aborted struct {
	ID     uint64
	Reason AbortReason
	// Err is the cause: for AbortTimeout it wraps ErrTimeout, for
	// AbortDeclined ErrDeclined (and the task's error), for AbortTaskFailed
	// and AbortJobFailed it is Ready.Failed; nil for AbortSubsumed and
	// AbortStopped.
	Err         error
	TriggeredAt time.Time
	At          time.Time // when the coordinator aborted it
	Final       bool
}

// HasReady reports whether Ready has anything for the caller.
func (c *Coordinator) HasReady() bool {
	return len(c.out.persist) > 0 || len(c.out.trigger) > 0 || len(c.out.complete) > 0 ||
		len(c.out.aborted) > 0 || c.out.finalComplete || (c.failed != nil && !c.failedDelivered)
}

// Ready returns what the caller must do now (the zero Ready if HasReady is
// false). Calling it again before Advance returns the same entries plus any
// new ones. The checkpoints listed in Persist count as handed out from now
// on: from here they no longer time out and are never aborted except by a
// newer completion.
func (c *Coordinator) Ready() Ready {
	rd := Ready{
		Persist:       cloneSlice(c.out.persist),
		Trigger:       cloneSlice(c.out.trigger),
		Complete:      cloneSlice(c.out.complete),
		Aborted:       cloneSlice(c.out.aborted),
		FinalComplete: c.out.finalComplete,
	}
	if c.failed != nil && !c.failedDelivered {
		rd.Failed = c.failed
	}
	for _, p := range c.out.persist[c.out.persistHandedOut:] {
		cp := c.findPending(p.ID)
		if cp == nil || cp.state != statePersistQueued {
			panic("coord: invariant violated: queued Persist entry without a queued checkpoint")
		}
		cp.state = statePersisting
		cp.persistHandedOut = true
	}
	c.out.persistHandedOut = len(c.out.persist)
	c.checkInvariants()
	return rd
}

// Advance tells the coordinator that the caller has done everything in rd,
// which must be the latest value returned by Ready (entries added since are
// kept for the next Ready). Advancing with anything else is a bug and
// panics.
func (c *Coordinator) Advance(rd Ready) {
	if len(rd.Persist) > c.out.persistHandedOut {
		panic("coord: Advance with Persist entries that Ready did not return")
	}
	c.out.persist = advanceList(c.out.persist, rd.Persist, "Persist", func(p Pending) uint64 { return p.ID })
	c.out.persistHandedOut -= len(rd.Persist)
	c.out.trigger = advanceList(c.out.trigger, rd.Trigger, "Trigger", func(p Triggered) uint64 { return p.ID })
	c.out.complete = advanceList(c.out.complete, rd.Complete, "Complete", func(p Completed) uint64 { return p.ID })
	c.out.aborted = advanceList(c.out.aborted, rd.Aborted, "Aborted", func(p Aborted) uint64 { return p.ID })
	if rd.FinalComplete {
		if !c.out.finalComplete {
			panic("coord: Advance with FinalComplete that Ready did not return")
		}
		c.out.finalComplete = false
	}
	if rd.Failed != nil {
		if rd.Failed != c.failed || c.failedDelivered {
			panic("coord: Advance with a Failed error that Ready did not return")
		}
		c.failedDelivered = true
	}
	c.checkInvariants()
}

// advanceList removes done, which must be a prefix of list, from list.
func advanceList[T any](list, done []T, name string, id func(T) uint64) []T {
	if len(done) > len(list) {
		panic("coord: Advance with more " + name + " entries than Ready returned")
	}
	for i := range done {
		if id(done[i]) != id(list[i]) {
			panic("coord: Advance with " + name + " entries that Ready did not return")
		}
	}
	n := copy(list, list[len(done):])
	clear(list[n:])
	return list[:n]
}

func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}
