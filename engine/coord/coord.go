package coord

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
)

// state is where a pending checkpoint is in its life.
type state uint8

const (
	// stateCollecting: waiting for acknowledgements.
	stateCollecting state = iota + 1
	// statePersistQueued: every task acknowledged; its Persist entry waits
	// in the next Ready. It may still be aborted (and the entry withdrawn).
	statePersistQueued
	// statePersisting: its Persist entry was handed out by Ready; waiting
	// for Persisted or PersistFailed. Only a newer completion aborts it.
	statePersisting
	// stateAbandoned: every task acknowledged, but its metadata write
	// failed before it was handed out (PersistFailed of another checkpoint):
	// it is neither persisted nor aborted; recovery decides.
	stateAbandoned
	// stateCompleted and stateAborted: resolved (only in history).
	stateCompleted
	stateAborted
)

// checkpoint is one triggered checkpoint.
type checkpoint struct {
	id          uint64
	final       bool
	onDemand    bool // triggered for TriggerNow
	savepoint   bool
	state       state
	triggeredAt time.Time
	endedAt     time.Time // completion or abort; zero while pending
	acked       []bool    // by task index
	acks        int       // number of true entries in acked
	abortReason AbortReason
	// persistHandedOut: Ready handed out its Persist entry (it may be
	// durable even if it was later subsumed).
	persistHandedOut bool
}

// Coordinator is the checkpoint coordinator of one job. It is not safe for
// concurrent use: one goroutine feeds it and acts on its Ready.
type Coordinator struct {
	opts      Options
	tasks     []TaskID       // as given to New
	taskIndex map[TaskID]int // TaskID -> index into checkpoint.acked
	firstID   uint64         // first id of this incarnation
	nextID    uint64         // id of the next trigger

	now           time.Time // latest time seen (times never go backwards)
	lastTriggerAt time.Time // latest trigger (of a regular one, its Tick's time), or New's time before the first
	tickAt        time.Time // the time the latest Tick was called with (before advanceClock)
	lastEndAt     time.Time // latest completion or abort; valid if ended
	ended         bool

	pending []*checkpoint // unresolved checkpoints, ascending ids
	history []*checkpoint // the last HistoryLen triggered, ascending ids

	finalWanted bool // TriggerFinal seen, no final completed yet
	// finalSavepoint: a TriggerFinal asked for a savepoint.
	finalSavepoint bool
	// demand is the TriggerNow request waiting to be triggered.
	demand struct {
		wanted    bool
		savepoint bool
	}
	finalDone bool  // a final checkpoint completed: nothing more is triggered
	stopped   bool  // Stop seen
	failed    error // the job failed: sticky
	// failedDelivered: Advance acknowledged a Ready carrying failed.
	failedDelivered bool

	consecutiveFailures int
	latestCompletedID   uint64
	counters            counters

	// out accumulates the next Ready.
	out struct {
		persist []Pending
		// persistHandedOut is the number of leading persist entries that
		// Ready returned (their checkpoints are in statePersisting or
		// resolved); the rest are queued and may be withdrawn.
		persistHandedOut int
		trigger          []Triggered
		complete         []Completed
		aborted          []Aborted
		finalComplete    bool
	}
}

type counters struct {
	triggered, completed, failed, failedOnDemand, aborted                    uint64
	ignoredLateAcks, ignoredDuplicateAcks, ignoredDeclines, ignoredPersisted uint64
}

// New returns a coordinator for a job whose tasks are tasks (every task that
// must acknowledge a checkpoint; at least one, no duplicates) and whose
// checkpoint ids start at firstID (>= 1, and greater than every id ever used
// for this job, so ids stay monotonic across restores). now is the current
// time; the first checkpoint is due at now + opts.Interval.
//
// New applies opts.EnsureDefaults to its copy of opts. Invalid options or
// arguments are bugs in the caller (validate options from users with
// Options.Validate first) and panic.
func New(opts Options, tasks []TaskID, firstID uint64, now time.Time) *Coordinator {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		panic(fmt.Sprintf("coord: New with invalid options: %v", err))
	}
	if len(tasks) == 0 {
		panic("coord: New without tasks")
	}
	if firstID == 0 {
		panic("coord: New with firstID 0 (checkpoint ids start at 1)")
	}
	c := &Coordinator{
		opts:          opts,
		tasks:         slices.Clone(tasks),
		taskIndex:     make(map[TaskID]int, len(tasks)),
		firstID:       firstID,
		nextID:        firstID,
		now:           now,
		lastTriggerAt: now,
	}
	for i, t := range tasks {
		if _, dup := c.taskIndex[t]; dup {
			panic(fmt.Sprintf("coord: New with task %d listed twice", t))
		}
		c.taskIndex[t] = i
	}
	return c
}

// Options returns the options in effect (with defaults applied).
func (c *Coordinator) Options() Options { return c.opts }

// NextID returns the id the next triggered checkpoint will have.
func (c *Coordinator) NextID() uint64 { return c.nextID }

// NextDue returns when the next regular checkpoint is due: Interval after
// the previous trigger (and MinPause after the previous end). A Tick at
// that time triggers it unless MaxConcurrent checkpoints are in flight;
// the caller may Tick then, besides its periodic Ticks, so that
// checkpoints keep their interval instead of waiting for the Tick after.
func (c *Coordinator) NextDue() time.Time {
	due := c.lastTriggerAt.Add(c.opts.Interval)
	if c.ended {
		if p := c.lastEndAt.Add(c.opts.MinPause); p.After(due) {
			due = p
		}
	}
	return due
}

// Failed returns the error that failed the job, or nil.
func (c *Coordinator) Failed() error { return c.failed }

// advanceClock returns the time to act at: now, or the latest time seen if
// now is earlier (the caller's clock must be monotonic; a step back is
// treated as no time passing).
func (c *Coordinator) advanceClock(now time.Time) time.Time {
	if now.After(c.now) {
		c.now = now
	}
	return c.now
}

// Tick expires checkpoints that have been collecting acknowledgements for
// Options.Timeout, then triggers a checkpoint if one is due: a final one that
// is wanted and not in flight, an on-demand one (TriggerNow), or a regular
// one once Interval has passed since the previous trigger and MinPause since
// the previous end. At most one checkpoint is triggered per Tick, and never
// while MaxConcurrent are in flight (including those whose metadata is being
// written) or while an on-demand checkpoint is in flight.
func (c *Coordinator) Tick(now time.Time) {
	c.tickAt = now
	now = c.advanceClock(now)
	defer c.checkInvariants()
	if c.failed != nil {
		return
	}
	var expired []*checkpoint
	for _, cp := range c.pending {
		if cp.state == stateCollecting && now.Sub(cp.triggeredAt) >= c.opts.Timeout {
			expired = append(expired, cp)
		}
	}
	for _, cp := range expired {
		if cp.state != stateCollecting {
			continue // aborted by a job failure earlier in this loop
		}
		err := fmt.Errorf("%w: checkpoint %d not acknowledged by %d of %d tasks after %v",
			ErrTimeout, cp.id, len(c.tasks)-cp.acks, len(c.tasks), now.Sub(cp.triggeredAt))
		c.abort(cp, now, AbortTimeout, err)
		c.countFailure(now, err, cp.onDemand && !cp.final)
	}
	c.maybeTrigger(now)
}

func (c *Coordinator) maybeTrigger(now time.Time) {
	if c.failed != nil || c.stopped || c.finalDone || len(c.pending) >= c.opts.MaxConcurrent {
		return
	}
	if c.onDemandPending() {
		// Nothing newer may complete first and subsume it.
		return
	}
	if c.finalWanted {
		if !c.finalPending() {
			// A wanted on-demand checkpoint is taken over by the final one.
			c.trigger(now, true, c.demand.wanted, c.finalSavepoint || c.demand.wanted && c.demand.savepoint)
			c.demand.wanted, c.demand.savepoint = false, false
		}
		return // no regular checkpoint while a final one is wanted
	}
	if c.demand.wanted {
		c.trigger(now, false, true, c.demand.savepoint)
		c.demand.wanted, c.demand.savepoint = false, false
		return
	}
	// A regular checkpoint is due Interval after the previous one. Both
	// are measured at the time of the Tick that noticed them (the Ticks of
	// a steady period), not at the coordinator's clock, which events
	// handled before the Tick may have moved past its time: then a Tick
	// exactly one interval later looked early and the schedule slipped a
	// whole Tick period each time (measured: 10 ms became 12.5 ms).
	at := now
	if !c.tickAt.IsZero() && c.tickAt.Before(now) {
		at = c.tickAt
	}
	if at.Before(c.lastTriggerAt.Add(c.opts.Interval)) {
		return
	}
	if c.ended && now.Before(c.lastEndAt.Add(c.opts.MinPause)) {
		return
	}
	c.trigger(now, false, false, false)
	c.lastTriggerAt = at
}

func (c *Coordinator) finalPending() bool {
	for _, cp := range c.pending {
		if cp.final {
			return true
		}
	}
	return false
}

func (c *Coordinator) onDemandPending() bool {
	for _, cp := range c.pending {
		if cp.onDemand {
			return true
		}
	}
	return false
}

func (c *Coordinator) trigger(now time.Time, final, onDemand, savepoint bool) {
	if c.nextID == math.MaxUint64 {
		panic("coord: checkpoint ids exhausted")
	}
	cp := &checkpoint{
		id:          c.nextID,
		final:       final,
		onDemand:    onDemand,
		savepoint:   savepoint,
		state:       stateCollecting,
		triggeredAt: now,
		acked:       make([]bool, len(c.tasks)),
	}
	c.nextID++
	c.pending = append(c.pending, cp)
	if len(c.history) == HistoryLen {
		n := copy(c.history, c.history[1:])
		c.history[n] = nil
		c.history = c.history[:n]
	}
	c.history = append(c.history, cp)
	c.lastTriggerAt = now
	c.counters.triggered++
	c.out.trigger = append(c.out.trigger, Triggered{ID: cp.id, At: now, Final: final, OnDemand: onDemand, Savepoint: savepoint})
}

// Step applies an event that happened at now. It returns an error (wrapping
// ErrUnknownTask, ErrUnknownCheckpoint or ErrUnexpectedEvent) only for events
// that make no sense, and then changes nothing. Events that are merely late —
// an ack or decline for a checkpoint that was already aborted or completed,
// a duplicate ack, anything after the job failed — are ignored and counted in
// Stats.
func (c *Coordinator) Step(now time.Time, e Event) error {
	now = c.advanceClock(now)
	defer c.checkInvariants()
	switch e := e.(type) {
	case Ack:
		return c.stepAck(now, e)
	case Decline:
		return c.stepDecline(now, e)
	case Persisted:
		return c.stepPersisted(now, e)
	case PersistFailed:
		return c.stepPersistFailed(now, e)
	case TaskFailed:
		if _, ok := c.taskIndex[e.Task]; !ok {
			return fmt.Errorf("%w: failure of task %d", ErrUnknownTask, e.Task)
		}
		if c.failed != nil {
			return nil
		}
		err := fmt.Errorf("%w: task %d", ErrTaskFailed, e.Task)
		if e.Err != nil {
			err = fmt.Errorf("%w: task %d: %w", ErrTaskFailed, e.Task, e.Err)
		}
		c.fail(now, err, AbortTaskFailed)
		return nil
	case TriggerNow:
		if c.failed != nil || c.stopped || c.finalDone {
			return nil
		}
		c.demand.wanted = true
		c.demand.savepoint = c.demand.savepoint || e.Savepoint
		c.maybeTrigger(now)
		return nil
	case TriggerFinal:
		if c.failed != nil || c.stopped || c.finalDone {
			return nil
		}
		c.finalWanted = true
		c.finalSavepoint = c.finalSavepoint || e.Savepoint
		c.maybeTrigger(now)
		return nil
	case Stop:
		if c.failed != nil || c.stopped {
			return nil
		}
		c.stopped = true
		c.finalWanted = false
		c.demand.wanted, c.demand.savepoint = false, false
		c.abortAll(now, AbortStopped, nil)
		return nil
	default:
		if e == nil {
			return fmt.Errorf("%w: nil", ErrUnexpectedEvent)
		}
		// reflect.TypeOf, unlike fmt's %T, does not make e escape: stepping
		// an event does not allocate.
		return fmt.Errorf("%w: %s", ErrUnexpectedEvent, reflect.TypeOf(e))
	}
}

// unknownID returns the error for an event (what) about id, which was never
// triggered.
func (c *Coordinator) unknownID(id uint64, what string) error {
	return fmt.Errorf("%w: %s for checkpoint %d, which was never triggered (the next id is %d)",
		ErrUnknownCheckpoint, what, id, c.nextID)
}

func (c *Coordinator) stepAck(now time.Time, e Ack) error {
	ti, ok := c.taskIndex[e.Task]
	if !ok {
		return fmt.Errorf("%w: ack from task %d for checkpoint %d", ErrUnknownTask, e.Task, e.ID)
	}
	if e.ID >= c.nextID {
		return c.unknownID(e.ID, fmt.Sprintf("ack from task %d", e.Task))
	}
	cp := c.findPending(e.ID)
	if cp == nil || c.failed != nil {
		c.counters.ignoredLateAcks++
		return nil
	}
	if cp.acked[ti] {
		c.counters.ignoredDuplicateAcks++
		return nil
	}
	cp.acked[ti] = true
	cp.acks++
	if cp.acks == len(c.tasks) {
		cp.state = statePersistQueued
		c.out.persist = append(c.out.persist, Pending{ID: cp.id, TriggeredAt: cp.triggeredAt, Final: cp.final})
	}
	return nil
}

func (c *Coordinator) stepDecline(now time.Time, e Decline) error {
	ti, ok := c.taskIndex[e.Task]
	if !ok {
		return fmt.Errorf("%w: decline from task %d for checkpoint %d", ErrUnknownTask, e.Task, e.ID)
	}
	if !e.Reason.valid() {
		return fmt.Errorf("%w: decline from task %d for checkpoint %d with %v",
			ErrUnexpectedEvent, e.Task, e.ID, e.Reason)
	}
	if e.ID >= c.nextID {
		return c.unknownID(e.ID, fmt.Sprintf("decline from task %d", e.Task))
	}
	cp := c.findPending(e.ID)
	if cp == nil || c.failed != nil {
		c.counters.ignoredDeclines++
		return nil
	}
	if cp.acked[ti] {
		return fmt.Errorf("%w: decline (%v) from task %d for checkpoint %d, which it acknowledged",
			ErrUnexpectedEvent, e.Reason, e.Task, e.ID)
	}
	var err error
	if e.Err != nil {
		err = fmt.Errorf("%w: checkpoint %d by task %d (%v): %w", ErrDeclined, e.ID, e.Task, e.Reason, e.Err)
	} else {
		err = fmt.Errorf("%w: checkpoint %d by task %d (%v)", ErrDeclined, e.ID, e.Task, e.Reason)
	}
	c.abort(cp, now, AbortDeclined, err)
	if e.Reason == ReasonError {
		c.countFailure(now, err, cp.onDemand && !cp.final)
	}
	return nil
}

// persistEventTarget finds the checkpoint a Persisted or PersistFailed event
// is about. It returns (nil, nil) for a resolved checkpoint whose metadata
// may have been handed out (the event is then late), and an error for an id
// whose metadata was never handed out.
func (c *Coordinator) persistEventTarget(id uint64, what string) (*checkpoint, error) {
	if id < c.firstID {
		return nil, fmt.Errorf("%w: %s for checkpoint %d, before the first id %d",
			ErrUnknownCheckpoint, what, id, c.firstID)
	}
	if id >= c.nextID {
		return nil, c.unknownID(id, what)
	}
	if cp := c.findPending(id); cp != nil {
		if cp.state != statePersisting {
			return nil, fmt.Errorf("%w: %s for checkpoint %d, whose metadata was not handed out by Ready",
				ErrUnexpectedEvent, what, id)
		}
		return cp, nil
	}
	if cp := c.findHistory(id); cp != nil && !cp.persistHandedOut {
		return nil, fmt.Errorf("%w: %s for checkpoint %d, whose metadata was never handed out by Ready (it was %v)",
			ErrUnexpectedEvent, what, id, cp.abortReason)
	}
	return nil, nil // resolved (or older than the history): late
}

func (c *Coordinator) stepPersisted(now time.Time, e Persisted) error {
	cp, err := c.persistEventTarget(e.ID, "Persisted")
	if err != nil {
		return err
	}
	if cp == nil || c.failed != nil {
		c.counters.ignoredPersisted++
		return nil
	}
	c.complete(now, cp)
	return nil
}

func (c *Coordinator) stepPersistFailed(now time.Time, e PersistFailed) error {
	_, err := c.persistEventTarget(e.ID, "PersistFailed")
	if err != nil {
		return err
	}
	if c.failed != nil {
		return nil
	}
	// Even a write for a checkpoint that was subsumed meanwhile fails the
	// job: the metadata store is not to be trusted any more.
	if e.Err != nil {
		err = fmt.Errorf("%w: checkpoint %d: %w", ErrPersistFailed, e.ID, e.Err)
	} else {
		err = fmt.Errorf("%w: checkpoint %d", ErrPersistFailed, e.ID)
	}
	c.fail(now, err, 0)
	return nil
}

func (c *Coordinator) findPending(id uint64) *checkpoint {
	for _, cp := range c.pending {
		if cp.id == id {
			return cp
		}
	}
	return nil
}

func (c *Coordinator) findHistory(id uint64) *checkpoint {
	for _, cp := range c.history {
		if cp.id == id {
			return cp
		}
	}
	return nil
}

func (c *Coordinator) removePending(cp *checkpoint) {
	i := slices.Index(c.pending, cp)
	if i < 0 {
		panic("coord: invariant violated: resolving a checkpoint that is not pending")
	}
	c.pending = slices.Delete(c.pending, i, i+1)
}

// complete completes cp (its metadata is durable) and subsumes every older
// pending checkpoint.
func (c *Coordinator) complete(now time.Time, cp *checkpoint) {
	if cp.state != statePersisting {
		panic("coord: invariant violated: completing a checkpoint whose metadata was not handed out")
	}
	c.removePending(cp)
	cp.state = stateCompleted
	cp.endedAt = now
	c.out.complete = append(c.out.complete, Completed{
		ID: cp.id, TriggeredAt: cp.triggeredAt, CompletedAt: now, Final: cp.final,
	})
	c.counters.completed++
	c.latestCompletedID = cp.id
	c.consecutiveFailures = 0
	c.lastEndAt, c.ended = now, true
	for len(c.pending) > 0 && c.pending[0].id < cp.id {
		c.abort(c.pending[0], now, AbortSubsumed, nil)
	}
	if cp.final {
		c.finalDone = true
		c.finalWanted = false
		c.out.finalComplete = true
	}
}

// abort aborts cp. Only a newer completion may abort a checkpoint whose
// metadata was handed out.
func (c *Coordinator) abort(cp *checkpoint, now time.Time, reason AbortReason, err error) {
	switch cp.state {
	case stateCollecting:
	case statePersistQueued:
		i := slices.IndexFunc(c.out.persist, func(p Pending) bool { return p.ID == cp.id })
		if i < c.out.persistHandedOut {
			panic("coord: invariant violated: queued checkpoint has a handed-out Persist entry")
		}
		c.out.persist = slices.Delete(c.out.persist, i, i+1)
	case statePersisting:
		if reason != AbortSubsumed {
			panic(fmt.Sprintf("coord: invariant violated: aborting checkpoint %d (%v) while its metadata is written", cp.id, reason))
		}
	default:
		panic("coord: invariant violated: aborting a resolved checkpoint")
	}
	c.removePending(cp)
	cp.state = stateAborted
	cp.endedAt = now
	cp.abortReason = reason
	c.out.aborted = append(c.out.aborted, Aborted{
		ID: cp.id, Reason: reason, Err: err, TriggeredAt: cp.triggeredAt, At: now, Final: cp.final,
	})
	c.counters.aborted++
	c.lastEndAt, c.ended = now, true
}

// abortAll aborts every pending checkpoint whose metadata was not handed
// out.
func (c *Coordinator) abortAll(now time.Time, reason AbortReason, err error) {
	for _, cp := range slices.Clone(c.pending) {
		if cp.state != statePersisting {
			c.abort(cp, now, reason, err)
		}
	}
}

// countFailure records a failed checkpoint and fails the job when too many
// failed in a row. A failed on-demand checkpoint (not a final one) is only
// counted: a savepoint that a user asked for does not fail the job.
func (c *Coordinator) countFailure(now time.Time, cause error, onDemand bool) {
	if onDemand {
		c.counters.failedOnDemand++
		return
	}
	c.counters.failed++
	c.consecutiveFailures++
	if c.failed == nil && c.consecutiveFailures > c.opts.TolerableFailures {
		c.fail(now, fmt.Errorf("%w: %d (tolerable: %d); the last: %w",
			ErrTooManyFailures, c.consecutiveFailures, c.opts.TolerableFailures, cause), AbortJobFailed)
	}
}

// fail fails the job with err. With a reason, it aborts every pending
// checkpoint whose metadata was not handed out; without one (a failed
// metadata write) it aborts nothing and withdraws the queued Persist
// entries: nothing more is written to a store that failed.
func (c *Coordinator) fail(now time.Time, err error, reason AbortReason) {
	c.failed = err
	c.finalWanted = false
	c.demand.wanted, c.demand.savepoint = false, false
	if reason != 0 {
		c.abortAll(now, reason, err)
		return
	}
	for _, p := range c.out.persist[c.out.persistHandedOut:] {
		c.findPending(p.ID).state = stateAbandoned
	}
	clear(c.out.persist[c.out.persistHandedOut:])
	c.out.persist = c.out.persist[:c.out.persistHandedOut]
}

// String describes the coordinator in one line, for logs and tests.
func (c *Coordinator) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "next=%d", c.nextID)
	if c.latestCompletedID != 0 {
		fmt.Fprintf(&b, " completed=%d", c.latestCompletedID)
	}
	b.WriteString(" pending=[")
	for i, cp := range c.pending {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d", cp.id)
		if cp.final {
			b.WriteString("(final)")
		}
		if cp.savepoint {
			b.WriteString("(savepoint)")
		} else if cp.onDemand {
			b.WriteString("(on-demand)")
		}
		switch cp.state {
		case stateCollecting:
			fmt.Fprintf(&b, ":acks=%d/%d", cp.acks, len(c.tasks))
		case statePersistQueued:
			b.WriteString(":persist-queued")
		case statePersisting:
			b.WriteString(":persisting")
		case stateAbandoned:
			b.WriteString(":abandoned")
		}
	}
	b.WriteByte(']')
	if c.consecutiveFailures > 0 {
		fmt.Fprintf(&b, " consecutive-failures=%d", c.consecutiveFailures)
	}
	if c.finalWanted {
		b.WriteString(" final-wanted")
	}
	if c.demand.wanted {
		b.WriteString(" now-wanted")
		if c.demand.savepoint {
			b.WriteString("(savepoint)")
		}
	}
	if c.finalDone {
		b.WriteString(" final-done")
	}
	if c.stopped {
		b.WriteString(" stopped")
	}
	if c.failed != nil {
		fmt.Fprintf(&b, " failed=%q", c.failed.Error())
	}
	return b.String()
}
