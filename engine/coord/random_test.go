package coord

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// chooser supplies the harness's decisions: from a seeded PRNG or from fuzz
// bytes.
type chooser interface {
	// intn returns a value in [0, n).
	intn(n int) int
	// done reports that the chooser has nothing more to give.
	done() bool
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }
func (c randChooser) done() bool     { return false }

type bytesChooser struct{ b []byte }

func (c *bytesChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}

func (c *bytesChooser) done() bool { return len(c.b) == 0 }

// harness drives a Coordinator with arbitrary (possibly nonsensical) event
// sequences, models what the coordinator told it, and checks the promises
// of the package after every call.
type harness struct {
	t       testing.TB
	ch      chooser
	c       *Coordinator
	opts    Options
	tasks   []TaskID
	firstID uint64
	start   time.Time
	now     time.Time

	// What the coordinator reported (through Ready).
	triggered      map[uint64]Triggered
	triggerOrder   []uint64
	resolved       map[uint64]string // "complete" or the abort reason
	persistAsked   map[uint64]bool   // listed in a Persist
	awaitPersist   []uint64          // asked, no Persisted/PersistFailed sent yet
	lastCompleted  uint64
	ends           []time.Time // completion and abort times, in order seen
	failedAdvanced bool        // a Ready carrying Failed was advanced
	frozenNextID   uint64      // nonzero: no trigger may happen any more

	// What the harness told the coordinator.
	acked         map[uint64]map[TaskID]bool // acks accepted
	persistedSent map[uint64]bool            // Persisted accepted

	// held is a Ready returned and not advanced; its entries were checked.
	held *Ready
	// prevStats are the Stats after the previous call.
	prevStats Stats
}

func newHarness(t testing.TB, ch chooser) *harness {
	opts := Options{
		Interval:          time.Duration(1+ch.intn(10)) * 10 * time.Millisecond,
		Timeout:           time.Duration(2+ch.intn(30)) * 10 * time.Millisecond,
		MinPause:          time.Duration(ch.intn(3)) * 25 * time.Millisecond,
		MaxConcurrent:     1 + ch.intn(3),
		TolerableFailures: ch.intn(4) * ch.intn(4),
	}
	if ch.intn(2) == 0 {
		opts.TolerableFailures = 1 << 20 // long runs: failures never fail the job
	}
	ntasks := 1 + ch.intn(4)
	tasks := make([]TaskID, ntasks)
	for i := range tasks {
		tasks[i] = TaskID(10 + 3*i) // not 0..n-1: ids are names, not indexes
	}
	firstID := uint64(1 + ch.intn(1000))
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &harness{
		t: t, ch: ch, opts: opts, tasks: tasks, firstID: firstID, start: start, now: start,
		c:             New(opts, tasks, firstID, start),
		triggered:     map[uint64]Triggered{},
		resolved:      map[uint64]string{},
		persistAsked:  map[uint64]bool{},
		acked:         map[uint64]map[TaskID]bool{},
		persistedSent: map[uint64]bool{},
	}
	h.opts.EnsureDefaults()
	return h
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s\ncoordinator: %s", fmt.Sprintf(format, args...), h.c)
}

// unresolved returns the triggered ids not yet completed or aborted.
func (h *harness) unresolved() []uint64 {
	var ids []uint64
	for _, id := range h.triggerOrder {
		if _, ok := h.resolved[id]; !ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func (h *harness) pickID() uint64 {
	un := h.unresolved()
	switch k := h.ch.intn(8); {
	case k < 5 && len(un) > 0:
		return un[h.ch.intn(len(un))]
	case k == 5 && len(h.triggerOrder) > 0:
		return h.triggerOrder[h.ch.intn(len(h.triggerOrder))]
	case k == 6:
		return h.c.NextID() + uint64(h.ch.intn(2)) // never triggered
	default:
		return h.firstID - 1 + uint64(h.ch.intn(3)) // before firstID, or early
	}
}

func (h *harness) pickTask() TaskID {
	if h.ch.intn(16) == 0 {
		return TaskID(1000 + h.ch.intn(3)) // unknown
	}
	return h.tasks[h.ch.intn(len(h.tasks))]
}

func (h *harness) isTask(task TaskID) bool { return slices.Contains(h.tasks, task) }

func (h *harness) step(e Event) error {
	h.t.Helper()
	if h.ch.intn(8) == 0 {
		h.now = h.now.Add(time.Duration(h.ch.intn(20)) * time.Millisecond)
	}
	err := h.c.Step(h.now, e)
	h.afterCall()
	return err
}

// op performs one random operation.
func (h *harness) op() {
	h.t.Helper()
	switch k := h.ch.intn(23); {
	case k < 3: // tick
		steps := []time.Duration{0, time.Millisecond, 5 * time.Millisecond, h.opts.Interval / 2, h.opts.Interval, h.opts.Timeout / 2, h.opts.Timeout}
		h.now = h.now.Add(steps[h.ch.intn(len(steps))])
		if h.ch.intn(16) == 0 {
			h.now = h.now.Add(-time.Millisecond) // a step back must be harmless
		}
		h.c.Tick(h.now)
		h.afterCall()
		h.checkNoOverdue()
	case k < 11: // ack
		task, id := h.pickTask(), h.pickID()
		if h.ch.intn(4) != 0 { // prefer a task that has not acked yet
			for _, t := range h.tasks {
				if !h.acked[id][t] {
					task = t
					break
				}
			}
		}
		nextID := h.c.NextID()
		err := h.step(Ack{Task: task, ID: id})
		h.checkStepErr("ack", err, !h.isTask(task) || id >= nextID, ErrUnknownTask, ErrUnknownCheckpoint)
		if err == nil {
			if h.acked[id] == nil {
				h.acked[id] = map[TaskID]bool{}
			}
			h.acked[id][task] = true
		}
	case k < 12: // decline
		task, id := h.pickTask(), h.pickID()
		reason := DeclineReason(1 + h.ch.intn(4))
		if h.ch.intn(32) == 0 {
			reason = 0
		}
		nextID := h.c.NextID()
		err := h.step(Decline{Task: task, ID: id, Reason: reason, Err: errors.New("x")})
		mustFail := !h.isTask(task) || id >= nextID || !reason.valid()
		if err != nil && !mustFail {
			if !errors.Is(err, ErrUnexpectedEvent) || !h.acked[id][task] {
				h.fatalf("decline task=%d id=%d: unexpected error %v", task, id, err)
			}
		}
		if mustFail && err == nil {
			h.fatalf("decline task=%d id=%d reason=%v: no error", task, id, reason)
		}
	case k < 15: // persisted
		if len(h.awaitPersist) > 0 && h.ch.intn(8) != 0 {
			i := h.ch.intn(len(h.awaitPersist))
			id := h.awaitPersist[i]
			h.awaitPersist = slices.Delete(h.awaitPersist, i, i+1)
			if err := h.step(Persisted{ID: id}); err != nil {
				h.fatalf("Persisted{%d} for a handed-out checkpoint: %v", id, err)
			}
			h.persistedSent[id] = true
			return
		}
		id := h.pickID()
		if err := h.step(Persisted{ID: id}); err == nil {
			if !h.persistAsked[id] {
				h.fatalf("Persisted{%d} accepted but never asked for", id)
			}
			h.awaitPersist = slices.DeleteFunc(h.awaitPersist, func(x uint64) bool { return x == id })
			h.persistedSent[id] = true
		}
	case k == 15: // persist failed (rare)
		if h.ch.intn(64) != 0 || len(h.awaitPersist) == 0 {
			return
		}
		id := h.awaitPersist[h.ch.intn(len(h.awaitPersist))]
		if err := h.step(PersistFailed{ID: id, Err: errors.New("eio")}); err != nil {
			h.fatalf("PersistFailed{%d}: %v", id, err)
		}
		if h.c.Failed() == nil {
			h.fatalf("PersistFailed{%d} did not fail the job", id)
		}
	case k == 16: // task failed (rare)
		if h.ch.intn(64) != 0 {
			return
		}
		task := h.pickTask()
		err := h.step(TaskFailed{Task: task, Err: errors.New("boom")})
		h.checkStepErr("task-failed", err, !h.isTask(task), ErrUnknownTask)
		if err == nil && h.c.Failed() == nil {
			h.fatalf("TaskFailed did not fail the job")
		}
	case k == 17:
		if h.ch.intn(48) != 0 {
			return
		}
		if err := h.step(TriggerFinal{}); err != nil {
			h.fatalf("TriggerFinal: %v", err)
		}
	case k == 19:
		if h.ch.intn(8) != 0 {
			return
		}
		if err := h.step(TriggerNow{Savepoint: h.ch.intn(2) == 0}); err != nil {
			h.fatalf("TriggerNow: %v", err)
		}
	case k == 18: // stop (rare)
		if h.ch.intn(64) != 0 {
			return
		}
		if err := h.step(Stop{}); err != nil {
			h.fatalf("Stop: %v", err)
		}
		h.freeze()
	default:
		h.ready(h.ch.intn(4) != 0)
	}
}

func (h *harness) checkStepErr(what string, err error, mustFail bool, allowed ...error) {
	h.t.Helper()
	if mustFail != (err != nil) {
		h.fatalf("%s: error %v, want an error: %v", what, err, mustFail)
	}
	if err != nil && !slices.ContainsFunc(allowed, func(target error) bool { return errors.Is(err, target) }) {
		h.fatalf("%s: error %v is none of %v", what, err, allowed)
	}
}

func (h *harness) freeze() {
	if h.frozenNextID == 0 {
		h.frozenNextID = h.c.NextID()
	}
}

// afterCall checks what must hold after every call.
func (h *harness) afterCall() {
	h.t.Helper()
	if err := h.c.verify(); err != nil {
		h.fatalf("internal invariants: %v", err)
	}
	s, prev := h.c.Stats(), h.prevStats
	h.prevStats = s
	// Failure counting: a completion resets the count, a failure adds one;
	// exceeding TolerableFailures fails the job.
	switch dc, df := s.Completed-prev.Completed, s.Failed-prev.Failed; {
	case dc > 0 && df == 0 && s.ConsecutiveFailures != 0:
		h.fatalf("consecutive failures %d after a completion", s.ConsecutiveFailures)
	case dc == 0 && s.ConsecutiveFailures != prev.ConsecutiveFailures+int(df):
		h.fatalf("consecutive failures %d -> %d with %d new failures", prev.ConsecutiveFailures, s.ConsecutiveFailures, df)
	}
	if s.ConsecutiveFailures > h.opts.TolerableFailures && h.c.Failed() == nil {
		h.fatalf("%d consecutive failures tolerated, TolerableFailures %d", s.ConsecutiveFailures, h.opts.TolerableFailures)
	}
	if err := h.c.Failed(); errors.Is(err, ErrTooManyFailures) && s.ConsecutiveFailures <= h.opts.TolerableFailures {
		h.fatalf("failed with %d consecutive failures, TolerableFailures %d: %v", s.ConsecutiveFailures, h.opts.TolerableFailures, err)
	}
	if s.InFlight > h.opts.MaxConcurrent {
		h.fatalf("%d in flight, MaxConcurrent %d", s.InFlight, h.opts.MaxConcurrent)
	}
	if h.frozenNextID != 0 && h.c.NextID() != h.frozenNextID {
		h.fatalf("triggered %d after Stop, the final completion or the failure", h.c.NextID()-1)
	}
	if h.failedAdvanced && h.c.HasReady() {
		h.fatalf("a Ready after the one that carried Failed")
	}
}

// checkNoOverdue checks, after a Tick, that no checkpoint collecting acks is
// past its timeout.
func (h *harness) checkNoOverdue() {
	h.t.Helper()
	if h.c.Failed() != nil {
		return
	}
	for _, cs := range h.c.Stats().History {
		if cs.Status == StatusInProgress && h.c.now.Sub(cs.TriggeredAt) >= h.opts.Timeout {
			h.fatalf("checkpoint %d collecting acks past its timeout", cs.ID)
		}
	}
}

// ready takes a Ready, checks its new entries against the model, and
// advances it (or holds it).
func (h *harness) ready(advance bool) {
	h.t.Helper()
	if !h.c.HasReady() {
		if rd := h.c.Ready(); !isZeroReady(rd) {
			h.fatalf("HasReady false, Ready %+v", rd)
		}
		return
	}
	rd := h.c.Ready()
	h.afterCall()
	var skip Ready // already checked, from the held Ready
	if h.held != nil {
		skip = *h.held
		// The new Ready extends the held one.
		if len(rd.Persist) < len(skip.Persist) || len(rd.Trigger) < len(skip.Trigger) ||
			len(rd.Complete) < len(skip.Complete) || len(rd.Aborted) < len(skip.Aborted) {
			h.fatalf("Ready shrank without Advance")
		}
	}
	h.checkReady(rd, skip)
	if advance {
		h.c.Advance(rd)
		h.held = nil
		if rd.Failed != nil {
			h.failedAdvanced = true
		}
		h.afterCall()
	} else {
		h.held = &rd
	}
}

func (h *harness) checkReady(rd, skip Ready) {
	h.t.Helper()
	for _, p := range rd.Persist[len(skip.Persist):] {
		if _, ok := h.triggered[p.ID]; !ok && !slices.ContainsFunc(rd.Trigger, func(t Triggered) bool { return t.ID == p.ID }) {
			h.fatalf("persist %d never triggered", p.ID)
		}
		if h.persistAsked[p.ID] {
			h.fatalf("persist %d asked twice", p.ID)
		}
		for _, task := range h.tasks {
			if !h.acked[p.ID][task] {
				h.fatalf("persist %d without an ack from task %d", p.ID, task)
			}
		}
		if _, ok := h.resolved[p.ID]; ok {
			h.fatalf("persist %d after it was resolved", p.ID)
		}
		h.persistAsked[p.ID] = true
		h.awaitPersist = append(h.awaitPersist, p.ID)
	}
	for _, tr := range rd.Trigger[len(skip.Trigger):] {
		want := h.firstID
		prevAt := h.start
		if n := len(h.triggerOrder); n > 0 {
			want = h.triggerOrder[n-1] + 1
			prevAt = h.triggered[h.triggerOrder[n-1]].At
		}
		if tr.ID != want {
			h.fatalf("trigger %d, want %d", tr.ID, want)
		}
		if !tr.Final && !tr.OnDemand {
			if tr.At.Sub(prevAt) < h.opts.Interval {
				h.fatalf("trigger %d at %v, %v after the previous (interval %v)", tr.ID, tr.At, tr.At.Sub(prevAt), h.opts.Interval)
			}
			for _, e := range h.endsWith(rd) {
				if e.Before(tr.At) && tr.At.Sub(e) < h.opts.MinPause {
					h.fatalf("trigger %d at %v, %v after an end (min pause %v)", tr.ID, tr.At, tr.At.Sub(e), h.opts.MinPause)
				}
			}
		}
		for _, id := range h.unresolved() {
			resolvedHere := slices.ContainsFunc(rd.Aborted, func(a Aborted) bool { return a.ID == id }) ||
				slices.ContainsFunc(rd.Complete, func(c Completed) bool { return c.ID == id })
			if h.triggered[id].OnDemand && !resolvedHere {
				h.fatalf("trigger %d while on-demand checkpoint %d is in flight", tr.ID, id)
			}
		}
		h.triggered[tr.ID] = tr
		h.triggerOrder = append(h.triggerOrder, tr.ID)
	}
	sawFinal := false
	for _, cp := range rd.Complete[len(skip.Complete):] {
		if _, ok := h.triggered[cp.ID]; !ok {
			h.fatalf("complete %d never triggered", cp.ID)
		}
		if !h.persistedSent[cp.ID] {
			h.fatalf("complete %d before its Persisted event", cp.ID)
		}
		if cp.ID <= h.lastCompleted {
			h.fatalf("complete %d after %d", cp.ID, h.lastCompleted)
		}
		if r, ok := h.resolved[cp.ID]; ok {
			h.fatalf("complete %d, already %s", cp.ID, r)
		}
		if cp.TriggeredAt != h.triggered[cp.ID].At || cp.Final != h.triggered[cp.ID].Final {
			h.fatalf("complete %d: %+v does not match its trigger %+v", cp.ID, cp, h.triggered[cp.ID])
		}
		sawFinal = sawFinal || cp.Final
		h.lastCompleted = cp.ID
		h.resolved[cp.ID] = "complete"
		h.ends = append(h.ends, cp.CompletedAt)
	}
	for _, ab := range rd.Aborted[len(skip.Aborted):] {
		if _, ok := h.triggered[ab.ID]; !ok {
			h.fatalf("abort %d never triggered", ab.ID)
		}
		if r, ok := h.resolved[ab.ID]; ok {
			h.fatalf("abort %d, already %s", ab.ID, r)
		}
		if h.persistAsked[ab.ID] && ab.Reason != AbortSubsumed {
			h.fatalf("abort %d (%v) while its metadata was handed out", ab.ID, ab.Reason)
		}
		if ab.Reason == AbortSubsumed && h.triggered[ab.ID].OnDemand {
			h.fatalf("abort %d subsumed, but it is an on-demand checkpoint", ab.ID)
		}
		if ab.Reason == AbortSubsumed && ab.ID > h.lastCompleted {
			h.fatalf("abort %d subsumed, but the latest completion is %d", ab.ID, h.lastCompleted)
		}
		if ab.Reason == AbortTimeout && ab.At.Sub(ab.TriggeredAt) < h.opts.Timeout {
			h.fatalf("abort %d timed out after %v < %v", ab.ID, ab.At.Sub(ab.TriggeredAt), h.opts.Timeout)
		}
		h.resolved[ab.ID] = ab.Reason.String()
		h.ends = append(h.ends, ab.At)
		h.awaitPersist = slices.DeleteFunc(h.awaitPersist, func(x uint64) bool { return x == ab.ID })
	}
	// Every completion subsumed everything older.
	for _, id := range h.unresolved() {
		if id < h.lastCompleted {
			h.fatalf("checkpoint %d unresolved after %d completed", id, h.lastCompleted)
		}
	}
	if rd.FinalComplete != (sawFinal || skip.FinalComplete) {
		h.fatalf("FinalComplete=%v, final completion in this Ready: %v", rd.FinalComplete, sawFinal)
	}
	if rd.FinalComplete || rd.Failed != nil {
		h.freeze()
	}
	if rd.Failed != nil && rd.Failed != h.c.Failed() {
		h.fatalf("Ready.Failed %v, Failed() %v", rd.Failed, h.c.Failed())
	}
	if len(h.unresolved()) > h.opts.MaxConcurrent {
		h.fatalf("%d triggered and unresolved, MaxConcurrent %d", len(h.unresolved()), h.opts.MaxConcurrent)
	}
}

// endsWith returns the end times seen, including those of rd.
func (h *harness) endsWith(rd Ready) []time.Time {
	ends := slices.Clone(h.ends)
	for _, c := range rd.Complete {
		ends = append(ends, c.CompletedAt)
	}
	for _, a := range rd.Aborted {
		ends = append(ends, a.At)
	}
	return ends
}

// drain checks liveness: unless the job failed, once the caller stops
// triggering (no Tick) and acks and persists everything, or steps Stop and
// persists what was handed out, every triggered checkpoint is resolved.
func (h *harness) drain(stop bool) {
	h.t.Helper()
	h.ready(true)
	if h.c.Failed() != nil {
		return
	}
	if stop {
		if err := h.c.Step(h.now, Stop{}); err != nil {
			h.fatalf("Stop: %v", err)
		}
		h.afterCall()
		h.freeze()
	}
	for round := 0; round < 4; round++ {
		h.ready(true)
		if !stop {
			for _, id := range h.unresolved() {
				for _, task := range h.tasks {
					if err := h.c.Step(h.now, Ack{Task: task, ID: id}); err != nil {
						h.fatalf("drain ack: %v", err)
					}
					if h.acked[id] == nil {
						h.acked[id] = map[TaskID]bool{}
					}
					h.acked[id][task] = true
					h.afterCall()
				}
			}
			h.ready(true)
		}
		for _, id := range h.awaitPersist {
			if err := h.c.Step(h.now, Persisted{ID: id}); err != nil {
				h.fatalf("drain Persisted{%d}: %v", id, err)
			}
			h.persistedSent[id] = true
			h.afterCall()
		}
		h.awaitPersist = nil
		h.ready(true)
	}
	if un := h.unresolved(); len(un) > 0 || h.c.Stats().InFlight != 0 {
		h.fatalf("unresolved after draining (stop=%v): %v", stop, un)
	}
	if h.c.HasReady() {
		h.fatalf("Ready left after draining")
	}
}

func runHarness(t testing.TB, ch chooser, maxOps int) {
	h := newHarness(t, ch)
	for i := 0; i < maxOps && !ch.done(); i++ {
		h.op()
	}
	h.drain(ch.intn(2) == 0)
}

// TestRandomized drives random event sequences and checks the promises:
// no completion without persist, monotonic ids, in-flight <= MaxConcurrent,
// cadence, and that every triggered checkpoint resolves once the caller
// stops triggering and acks and persists.
func TestRandomized(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		ch := randChooser{rand.New(rand.NewPCG(uint64(seed), 0x5eed))}
		runHarness(&seedT{TB: t, seed: seed}, ch, 400)
	}
}

// FuzzCoordinator derives the options and the event sequence from bytes.
func FuzzCoordinator(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for seed := range 8 {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		b := make([]byte, 64+seed*64)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		runHarness(t, &bytesChooser{b: b}, 2000)
	})
}

// seedT prefixes failures with the seed that reproduces them.
type seedT struct {
	testing.TB
	seed int
}

func (s *seedT) Fatalf(format string, args ...any) {
	s.TB.Helper()
	s.TB.Fatalf("seed %d: %s", s.seed, fmt.Sprintf(format, args...))
}
