package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/internal/failpoint"
	"github.com/streamd/streamd/snapshot"
)

// maxStatsHistory bounds the checkpoint statistics kept in memory.
const maxStatsHistory = 10000

type eventKind uint8

const (
	evAck eventKind = iota + 1
	evDecline
	evSourceEnded
	evTaskExit
	evFatal // an error that fails the job (from a snapshot worker)
)

// event is what tasks and snapshot workers tell the driver.
type event struct {
	kind      eventKind
	task      coord.TaskID
	id        uint64
	meta      snapshot.TaskMeta
	stats     TaskStats
	barrierAt time.Time
	reason    coord.DeclineReason
	exhausted bool
	err       error
}

// pendingCheckpoint collects the acknowledgements of one checkpoint.
type pendingCheckpoint struct {
	id        uint64
	triggered time.Time
	final     bool
	savepoint bool
	tasks     map[coord.TaskID]*event
}

// drive is the driver loop: it feeds the coordinator and carries out its
// decisions, and ends when every task has exited.
func (rt *jobRuntime) drive(ctx context.Context) (failure error) {
	defer func() { rt.endDemands(failure) }()
	var (
		co        *coord.Coordinator
		running   = len(rt.tasks)
		sources   = 0
		ended     = 0
		exhausted = true
		pending   = make(map[uint64]*pendingCheckpoint)
		tickC     <-chan time.Time
		dueTimer  *time.Timer
		dueC      <-chan time.Time
		dueAt     time.Time
		ctxDone   = ctx.Done()
		stopCh    = rt.stopCh
	)
	for _, t := range rt.tasks {
		if t.v.head().kind == kindSourceNode {
			sources++
		}
	}
	fail := func(err error) {
		if failure == nil && err != nil {
			failure = err
			rt.cancelAll()
		}
	}
	if rt.checkpointing {
		copts := rt.opts.Checkpointing.Options
		ids := make([]coord.TaskID, len(rt.tasks))
		for i, t := range rt.tasks {
			ids[i] = t.id
		}
		co = coord.New(copts, ids, rt.firstID, time.Now())
		tick := max(min(copts.Interval/4, 50*time.Millisecond), time.Millisecond)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		tickC = ticker.C
		// Besides the periodic Ticks (timeouts, retries), one at the time
		// the next checkpoint is due: with the ticker alone a trigger came
		// a whole tick late whenever the tick's time fell a little before
		// the due time (10 ms checkpoints ran every 12.5 ms).
		dueTimer = time.NewTimer(time.Until(co.NextDue()))
		defer dueTimer.Stop()
		dueC = dueTimer.C
	}
	var batch []event
	handle := func(ev event) {
		switch ev.kind {
		case evTaskExit:
			running--
			if ev.err != nil && !errors.Is(ev.err, errCancelled) {
				fail(ev.err)
				if co != nil {
					_ = co.Step(time.Now(), coord.TaskFailed{Task: ev.task, Err: ev.err})
				}
			}
		case evAck:
			if co == nil || failure != nil {
				return
			}
			if p := pending[ev.id]; p != nil {
				e := ev
				p.tasks[ev.task] = &e
				rt.demandAcked(ev.id)
			}
			if err := co.Step(time.Now(), coord.Ack{Task: ev.task, ID: ev.id}); err != nil {
				fail(err)
			}
		case evDecline:
			if co == nil || failure != nil {
				return
			}
			if errors.Is(ev.err, snapshot.ErrStoreFailed) {
				// Not one checkpoint's trouble: the store cannot write any
				// more, so no checkpoint could ever complete again.
				fail(fmt.Errorf("engine: job %q: %w", rt.job.name, ev.err))
				return
			}
			if err := co.Step(time.Now(), coord.Decline{Task: ev.task, ID: ev.id, Reason: ev.reason, Err: ev.err}); err != nil {
				fail(err)
			}
		case evFatal:
			fail(ev.err)
			if co != nil {
				_ = co.Step(time.Now(), coord.TaskFailed{Task: ev.task, Err: ev.err})
			}
		case evSourceEnded:
			ended++
			exhausted = exhausted && ev.exhausted
			if ended == sources && co != nil && failure == nil {
				_ = co.Step(time.Now(), coord.TriggerFinal{Savepoint: rt.stopSavepointDir() != ""})
			}
		}
	}
	for running > 0 {
		select {
		case <-rt.events.notify:
			batch = rt.events.takeAll(batch[:0])
			for _, ev := range batch {
				handle(ev)
			}
			clear(batch)
		case now := <-dueC:
			if failure == nil && rt.store.Err() == nil {
				co.Tick(now)
			}
		case now := <-tickC:
			if failure == nil {
				if err := rt.store.Err(); err != nil {
					// Pebble failed between checkpoints (a background
					// flush or compaction): fail now, not at the next one.
					fail(fmt.Errorf("engine: job %q: %w", rt.job.name, err))
					continue
				}
				co.Tick(now)
			}
		case <-ctxDone:
			ctxDone = nil
			fail(ctx.Err())
		case <-rt.demandNotify:
			if co == nil {
				rt.endDemands(nil) // without checkpointing nothing is queued
				continue
			}
			rt.takeDemands(co, failure)
		case <-stopCh:
			stopCh = nil
			rt.dd.stopping = true
			for _, t := range rt.tasks {
				// (t.source is the task goroutine's: it may still be opening.)
				if t.v.head().kind == kindSourceNode {
					rt.control(t, ctrlMsg{kind: ctrlStop})
				}
			}
		}
		if co == nil || failure != nil {
			continue
		}
		if due := co.NextDue(); !due.Equal(dueAt) {
			dueAt = due
			dueTimer.Reset(time.Until(due))
		}
		for co.HasReady() {
			rd := co.Ready()
			var after []coord.Event
			for _, p := range rd.Persist {
				pc := pending[p.ID]
				m := rt.metadata(pc, exhausted && ended == sources && p.Final)
				if err := rt.store.CommitCheckpoint(m); err != nil {
					after = append(after, coord.PersistFailed{ID: p.ID, Err: err})
					continue
				}
				failpoint.Hit("checkpoint-after-metadata")
				after = append(after, coord.Persisted{ID: p.ID})
			}
			// Completions before triggers: with one checkpoint in flight
			// (max_concurrent 1) a task then always handles "checkpoint n
			// is complete" — its sink commits n — before anything of n+1,
			// also when the source that receives trigger n+1 is chained
			// into the sink's task and the two messages meet in one
			// mailbox (a sink whose next transaction must wait for the
			// previous commit, e.g. PostgreSQL upserts, relies on it).
			for _, c := range rd.Complete {
				pc := pending[c.ID]
				for _, t := range rt.tasks {
					msg := ctrlMsg{kind: ctrlComplete, id: c.ID}
					if pc != nil {
						if ev := pc.tasks[t.id]; ev != nil {
							msg.handle = ev.meta.Keyed
						}
					}
					rt.control(t, msg)
				}
				s := rt.record(pc, "completed", "", c.CompletedAt)
				delete(pending, c.ID)
				if c.Final {
					rt.finalID = c.ID
					rt.dd.done = true
				}
				// Before retention: a savepoint's checkpoint is held here.
				rt.demandResolved(c.ID, s, nil)
				if err := rt.store.Retain(rt.job.name, rt.opts.Checkpointing.Retained); errors.Is(err, snapshot.ErrStoreFailed) {
					fail(fmt.Errorf("engine: job %q: retention after checkpoint %d: %w", rt.job.name, c.ID, err))
				} else if err != nil {
					rt.opts.Logger("streamd: job %q: retention after checkpoint %d: %v", rt.job.name, c.ID, err)
				}
			}
			for _, tr := range rd.Trigger {
				pending[tr.ID] = &pendingCheckpoint{id: tr.ID, triggered: tr.At, final: tr.Final, savepoint: tr.Savepoint, tasks: make(map[coord.TaskID]*event)}
				rt.demandTriggered(tr)
				for _, t := range rt.tasks {
					if t.v.head().kind == kindSourceNode {
						rt.control(t, ctrlMsg{kind: ctrlTrigger, id: tr.ID})
					}
				}
			}
			for _, a := range rd.Aborted {
				for _, t := range rt.tasks {
					rt.control(t, ctrlMsg{kind: ctrlAbort, id: a.ID})
				}
				reason := a.Reason.String()
				if a.Err != nil {
					reason += ": " + a.Err.Error()
				}
				s := rt.record(pending[a.ID], "failed", reason, time.Now())
				delete(pending, a.ID)
				rt.demandResolved(a.ID, s, fmt.Errorf("aborted (%s)", reason))
			}
			if rd.FinalComplete {
				for _, t := range rt.tasks {
					if t.v.head().kind == kindSourceNode {
						rt.control(t, ctrlMsg{kind: ctrlFinish})
					}
				}
			}
			if rd.Failed != nil {
				fail(fmt.Errorf("engine: job %q: %w", rt.job.name, rd.Failed))
			}
			co.Advance(rd)
			for _, e := range after {
				if err := co.Step(time.Now(), e); err != nil {
					fail(err)
				}
			}
			if failure != nil {
				break
			}
		}
	}
	return failure
}

// control queues a control message for a task and wakes it. It never
// blocks: a task drains its mailbox between batches, and messages are never
// dropped (a lost "complete" or "finish" would leave output uncommitted or
// the job hanging).
func (rt *jobRuntime) control(t *task, m ctrlMsg) {
	t.ctrl.put(m)
	t.waiter.Wake()
}

// metadata assembles a checkpoint's metadata from its acknowledgements.
func (rt *jobRuntime) metadata(pc *pendingCheckpoint, finished bool) *snapshot.Metadata {
	m := &snapshot.Metadata{
		Job: rt.job.name, CheckpointID: pc.id, TriggeredAtUnixNano: pc.triggered.UnixNano(),
		CompletedAtUnixNano: time.Now().UnixNano(), Fingerprint: rt.job.fingerprint(),
		MaxParallelism: rt.opts.MaxParallelism, Finished: finished,
		Operators: rt.job.statefulOperators(),
	}
	for _, t := range rt.tasks {
		ev := pc.tasks[t.id]
		if ev == nil {
			panic(fmt.Sprintf("engine: checkpoint %d persisted without an ack from %s", pc.id, t))
		}
		m.Tasks = append(m.Tasks, ev.meta)
		if h := ev.meta.Keyed; h != nil {
			m.RawBytes += h.RawBytes
			m.StoredBytes += h.StoredBytes
		}
	}
	return m
}

func (rt *jobRuntime) record(pc *pendingCheckpoint, status, reason string, end time.Time) CheckpointStats {
	if pc == nil {
		return CheckpointStats{}
	}
	s := CheckpointStats{ID: pc.id, Status: status, Reason: reason, Final: pc.final, Savepoint: pc.savepoint,
		TriggeredAt: pc.triggered, Duration: end.Sub(pc.triggered)}
	for _, t := range rt.tasks {
		ev := pc.tasks[t.id]
		if ev == nil {
			continue
		}
		ts := ev.stats
		ts.StartDelay = ev.barrierAt.Sub(pc.triggered)
		s.Tasks = append(s.Tasks, ts)
		if h := ev.meta.Keyed; h != nil {
			s.RawBytes += h.RawBytes
			s.StoredBytes += h.StoredBytes
			s.ReusedBytes += h.ReusedBytes
			s.KeyedCheckpointStats.add(h)
		}
	}
	rt.mu.Lock()
	if len(rt.mu.stats) >= maxStatsHistory {
		rt.mu.stats = append(rt.mu.stats[:0], rt.mu.stats[1:]...)
	}
	rt.mu.stats = append(rt.mu.stats, s)
	rt.mu.Unlock()
	if rt.opts.OnCheckpoint != nil {
		rt.opts.OnCheckpoint(s)
	}
	return s
}
