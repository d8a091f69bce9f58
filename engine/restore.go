package engine

import (
	"errors"
	"fmt"

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

// restore finds the latest valid checkpoint, checks it fits the job, and
// recovers the sinks. It reports finished when the checkpoint is the final
// one of a bounded job that already ended.
func (rt *jobRuntime) restore() (finished bool, err error) {
	j := rt.job
	m, err := rt.store.Latest(j.name)
	if err != nil {
		return false, fmt.Errorf("engine: job %q: cannot restore: %w", j.name, err)
	}
	if m != nil {
		if err := rt.checkCompatible(m); err != nil {
			return false, err
		}
		rt.restored = m
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

// restoreKeyed loads the task's key groups from the restored checkpoint:
// from every task of the same vertex whose range overlaps ours, so a
// checkpoint restores into a different parallelism.
func (t *task) restoreKeyed() error {
	j := t.job
	if t.backend == nil || j.restored == nil {
		return nil
	}
	for i := range j.restored.Tasks {
		m := &j.restored.Tasks[i]
		if m.Vertex != t.v.name || m.Keyed == nil {
			continue
		}
		start, end := max(m.KeyGroupStart, t.kgRange.Start), min(m.KeyGroupEnd, t.kgRange.End)
		if start >= end {
			continue
		}
		err := j.store.ReadKeyed(j.job.name, m.Keyed, start, end, func(kg int, state string, key, value []byte) error {
			return t.backend.RestoreEntry(state, key, value)
		})
		if err != nil {
			return fmt.Errorf("cannot restore key groups [%d, %d) from checkpoint %d: %w", start, end, j.restored.CheckpointID, err)
		}
	}
	return nil
}
