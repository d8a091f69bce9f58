package engine

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/streamd/streamd/snapshot"
)

// ErrIncompatible is wrapped by errors that refuse to restore a checkpoint
// into a job whose shape differs (operators, keys, max parallelism, source
// parallelism).
var ErrIncompatible = errors.New("engine: checkpoint is incompatible with the job")

// IncompatibleError says why a checkpoint cannot be restored into the job.
// It wraps ErrIncompatible.
type IncompatibleError struct {
	Job        string
	Checkpoint uint64
	Reason     string
	// Old and New are the fingerprints of the checkpoint and of the job
	// when they differ, "" otherwise.
	Old, New string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("engine: checkpoint %d of job %q is incompatible with the job: %s", e.Checkpoint, e.Job, e.Reason)
}

func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// restore finds the checkpoint to recover from and reads it, then recovers
// the sinks. It reports finished when the checkpoint is the final one of a
// bounded job that already ended.
//
// It reads every block of the keyed state once, here, before anything is
// recovered or started: snapshot.Store.Recover walks the completed
// checkpoints from the newest, and for each one whose metadata loads and
// that fits the job, readKeyed reads every keyed task's key groups,
// verifying each block as it reads it. A corrupt checkpoint is skipped
// loudly (the store logs it and why) and its entries dropped; the previous
// one is tried. So the sinks recover, and the sources rewind to, the same
// checkpoint the keyed state comes from, and a corruption found later
// cannot leave committed output behind a state it does not match. The
// tasks put the entries into their backends in open (restoreKeyed), once
// their operators have registered their states.
func (rt *jobRuntime) restore() (finished bool, err error) {
	j := rt.job
	var incompatible error
	var entries map[*vertex][][]*snapshot.KeyedEntries
	m, err := rt.store.Recover(j.name, func(m *snapshot.Metadata) error {
		if err := rt.checkCompatible(m); err != nil {
			incompatible = err
			return err
		}
		var err error
		entries, err = rt.readKeyed(m)
		return err
	})
	if incompatible != nil {
		return false, incompatible
	}
	if err != nil {
		return false, fmt.Errorf("engine: job %q: cannot restore: %w", j.name, err)
	}
	if m != nil {
		rt.restored, rt.restoredKeyed = m, entries
		rt.opts.Logger("streamd: job %q: restoring from checkpoint %d", j.name, m.CheckpointID)
	}
	// Checkpoint ids stay monotonic across restarts: read the highest id
	// ever used (including incomplete checkpoints) before their blocks are
	// discarded.
	maxID, err := rt.store.MaxCheckpointID(j.name)
	if err != nil {
		return false, fmt.Errorf("engine: job %q: cannot read checkpoint ids: %w", j.name, err)
	}
	rt.firstID = maxID + 1
	if err := rt.store.DiscardIncomplete(j.name); err != nil {
		return false, fmt.Errorf("engine: job %q: cannot discard incomplete checkpoints: %w", j.name, err)
	}
	if err := rt.recoverSinks(); err != nil {
		return false, err
	}
	if m != nil && m.Finished {
		rt.opts.Logger("streamd: job %q already finished at checkpoint %d; nothing to do", j.name, m.CheckpointID)
		return true, nil
	}
	return false, nil
}

func (rt *jobRuntime) checkCompatible(m *snapshot.Metadata) error {
	j := rt.job
	bad := func(format string, args ...any) error {
		return &IncompatibleError{Job: j.name, Checkpoint: m.CheckpointID, Reason: fmt.Sprintf(format, args...)}
	}
	if fp := j.fingerprint(); m.Fingerprint != fp {
		err := bad("its operators, keys or max parallelism differ")
		err.(*IncompatibleError).Old, err.(*IncompatibleError).New = m.Fingerprint, fp
		return err
	}
	if m.MaxParallelism != j.opts.MaxParallelism {
		return bad("max parallelism was %d, is %d", m.MaxParallelism, j.opts.MaxParallelism)
	}
	have := make(map[string]int)
	for _, t := range m.Tasks {
		have[t.Vertex] = t.Parallelism
	}
	for _, v := range rt.vertices {
		p, ok := have[v.name]
		if !ok {
			return bad("it has no state for the chain [%s] (the chaining of operators changed)", v.name)
		}
		if v.head().kind == kindSourceNode && p != v.parallelism {
			return bad("source chain [%s] had parallelism %d, now %d; sources cannot be rescaled", v.name, p, v.parallelism)
		}
	}
	return nil
}

// recoverSinks hands every sink the pending transactions its tasks listed
// in the restored checkpoint (none on a fresh start).
func (rt *jobRuntime) recoverSinks() error {
	if rt.checkpointing {
		// Before a sink is touched: is its committed output ahead of
		// the checkpoint?
		if err := rt.checkSinkCommits(); err != nil {
			return err
		}
	}
	for _, v := range rt.vertices {
		tail := v.tail()
		if tail.kind != kindSinkNode {
			continue
		}
		var states [][]byte
		if rt.restored != nil {
			for _, m := range rt.restored.Tasks {
				if m.Vertex == v.name && m.Sink != nil {
					states = append(states, m.Sink)
				}
			}
		}
		if err := tail.sink.Recover(states); err != nil {
			return fmt.Errorf("engine: cannot recover sink %q: %w", tail.name, err)
		}
	}
	return nil
}

// readKeyed reads the keyed state of checkpoint m for every task of every
// keyed vertex: each task's key groups from every task of the same vertex
// in m whose range overlaps its own, so a checkpoint restores into a
// different parallelism. It reads each block once, verifying it, on up to
// GOMAXPROCS goroutines. For a finished job, which restores nothing, it only
// verifies the blocks and keeps no entries.
func (rt *jobRuntime) readKeyed(m *snapshot.Metadata) (map[*vertex][][]*snapshot.KeyedEntries, error) {
	type target struct {
		v     *vertex
		index int
	}
	var reads []snapshot.KeyedRead
	var targets []target
	for _, v := range rt.vertices {
		if !v.keyed {
			continue
		}
		for index := range v.parallelism {
			rng := rt.job.keyGroupRange(v, index)
			for i := range m.Tasks {
				tm := &m.Tasks[i]
				if tm.Vertex != v.name || tm.Keyed == nil {
					continue
				}
				start, end := max(tm.KeyGroupStart, rng.Start), min(tm.KeyGroupEnd, rng.End)
				if start >= end {
					continue
				}
				reads = append(reads, snapshot.KeyedRead{Handle: tm.Keyed, Start: start, End: end})
				targets = append(targets, target{v, index})
			}
		}
	}
	loaded, err := rt.store.LoadKeyed(rt.job.name, reads, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err // it names the job, checkpoint, key group and block
	}
	if m.Finished {
		return nil, nil
	}
	entries := make(map[*vertex][][]*snapshot.KeyedEntries)
	for i, tg := range targets {
		if entries[tg.v] == nil {
			entries[tg.v] = make([][]*snapshot.KeyedEntries, tg.v.parallelism)
		}
		entries[tg.v][tg.index] = append(entries[tg.v][tg.index], loaded[i])
	}
	return entries, nil
}

// restoreKeyed puts into the task's backend the entries the restore phase
// read for it (readKeyed), and lets them go. It runs in open, on the task's
// worker, after the operators have registered their states.
func (t *task) restoreKeyed() error {
	j := t.job
	if t.backend == nil || j.restored == nil {
		return nil
	}
	tasks := j.restoredKeyed[t.v]
	if tasks == nil {
		return nil
	}
	// Each task takes only its own element: no other goroutine touches it.
	mine := tasks[t.index]
	tasks[t.index] = nil
	for _, e := range mine {
		err := e.Drain(func(kg int, state string, key, value []byte) error {
			return t.backend.RestoreEntry(state, key, value)
		})
		if err != nil {
			return fmt.Errorf("cannot restore key groups %v from checkpoint %d: %w", t.kgRange, j.restored.CheckpointID, err)
		}
	}
	return nil
}
