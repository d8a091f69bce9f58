package engine

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/streamd/streamd/keyed"
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
	// Savepoint is the savepoint the checkpoint came from, "" for the
	// job's own checkpoint.
	Savepoint string
}

func (e *IncompatibleError) Error() string {
	if e.Savepoint != "" {
		return fmt.Sprintf("engine: savepoint %s (checkpoint %d) is incompatible with job %q: %s", e.Savepoint, e.Checkpoint, e.Job, e.Reason)
	}
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
// cannot leave committed output behind a state it does not match. Each
// task takes its filled backend in open; its operators register their
// states on it then.
func (rt *jobRuntime) restore() (finished bool, err error) {
	j := rt.job
	var incompatible error
	var entries map[*vertex][]*keyed.Backend
	m, err := rt.recoverFrom(j.name, func(m *snapshot.Metadata) error {
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
	rt.firstID = max(maxID, rt.restoredID()) + 1 // above a savepoint's id too
	if err := rt.store.DiscardIncomplete(j.name); err != nil {
		return false, fmt.Errorf("engine: job %q: cannot discard incomplete checkpoints: %w", j.name, err)
	}
	if m == nil || !m.Finished {
		// Deal out the sources' splits before anything is recovered: a
		// checkpoint whose splits cannot be assigned fails the run here.
		for _, v := range rt.vertices {
			if v.head().splits != nil {
				if _, err := rt.assignSplits(v); err != nil {
					return false, err
				}
			}
		}
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
	return rt.job.checkCompatible(rt.vertices, m)
}

// CheckCheckpoint checks, without running or writing anything, whether
// the job's newest completed checkpoint in store fits the job (the check
// Run makes before it restores), and returns its id, 0 if the store holds
// none. An incompatible checkpoint is an *IncompatibleError naming the
// operators and what changed. Only metadata is read: blocks are verified
// when a run restores them.
func (j *Job) CheckCheckpoint(store *snapshot.Store) (uint64, error) {
	if err := errors.Join(j.errs...); err != nil {
		return 0, err
	}
	vs, err := j.buildVertices()
	if err != nil {
		return 0, err
	}
	m, err := store.Recover(j.name, func(m *snapshot.Metadata) error { return j.checkCompatible(vs, m) })
	if err != nil || m == nil {
		return 0, err
	}
	return m.CheckpointID, nil
}

// checkCompatible says whether checkpoint m can be restored into the job
// laid out in vs. State belongs to operators, identified by their uids:
// every stateful operator of the checkpoint must be in the job, with the
// same kind and state signature. Chaining, stateless operators and the
// parallelism of keyed operators, sinks and splittable sources
// (FromSplitSource) may change; a plain source (FromSource) keeps its
// parallelism, since its position is one opaque value per task. A
// splittable source restores the positions of its plain predecessor only
// through a PositionConverter, and a plain source never restores split
// lists. A stateful operator that is new in the job starts empty. A
// checkpoint of format version 1 recorded no operators: it restores only
// into the same chains, as before (its fingerprint and chain names must
// match).
func (j *Job) checkCompatible(vs []*vertex, m *snapshot.Metadata) error {
	bad := func(format string, args ...any) *IncompatibleError {
		return &IncompatibleError{Job: j.name, Checkpoint: m.CheckpointID, Reason: fmt.Sprintf(format, args...)}
	}
	if m.MaxParallelism != j.opts.MaxParallelism {
		return bad("max parallelism was %d, is %d (it fixes how keys map to state)", m.MaxParallelism, j.opts.MaxParallelism)
	}
	if len(m.Operators) == 0 {
		return j.checkCompatibleV1(vs, m, bad)
	}
	byUID := make(map[string]*node, len(j.nodes))
	for _, n := range j.nodes {
		byUID[n.uid] = n
	}
	var reasons []string
	var old, cur []string
	for _, o := range m.Operators {
		n := byUID[o.ID]
		switch {
		case n == nil && j.restoreSettings().AllowNonRestoredState:
			j.opts.Logger("streamd: WARNING: job %q: checkpoint %d has %s state of operator %q, which the job no longer has; skipping it (non-restored state allowed)", j.name, m.CheckpointID, o.Kind, o.ID)
		case n == nil:
			reasons = append(reasons, fmt.Sprintf("it has %s state of operator %q, which the job no longer has (keep the operator, give its replacement that uid, or allow non-restored state to drop it)", o.Kind, o.ID))
		case n.stateKind() != o.Kind:
			reasons = append(reasons, fmt.Sprintf("operator %q was a %s, is now %s", o.ID, o.Kind, orNone(n.stateKind())))
		case n.stateSig != o.Signature:
			reasons = append(reasons, fmt.Sprintf("the state of operator %q has changed meaning (%s)", o.ID, sigChange(o.Signature, n.stateSig)))
			old, cur = append(old, o.ID+": "+o.Signature), append(cur, o.ID+": "+n.stateSig)
		case o.Kind == "source":
			if r := sourceChange(n, o, m); r != "" {
				reasons = append(reasons, r)
			}
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	err := bad("%s", strings.Join(reasons, "; "))
	if len(old) > 0 {
		err.Old, err.New = strings.Join(old, "\n")+"\n", strings.Join(cur, "\n")+"\n"
	}
	return err
}

// sourceChange says why source n cannot restore the state of operator o
// in checkpoint m, "" if it can.
func sourceChange(n *node, o snapshot.OperatorMeta, m *snapshot.Metadata) string {
	var splitLists, positions int
	for i := range m.Tasks {
		if tm := &m.Tasks[i]; len(tm.Operators) > 0 && tm.Operators[0] == o.ID {
			if IsSplitList(tm.Source) {
				splitLists++
			} else {
				positions++
			}
		}
	}
	if n.splits == nil {
		if splitLists > 0 {
			return fmt.Sprintf("source %q was splittable and is now a plain source, which cannot read the checkpoint's splits (build it with FromSplitSource again)", o.ID)
		}
		if o.Parallelism != n.parallelism {
			return fmt.Sprintf("source %q had parallelism %d, now %d; it is not splittable, so its positions cannot be rescaled (set its parallelism back to %d, or make it a splittable source)", o.ID, o.Parallelism, n.parallelism, o.Parallelism)
		}
		return ""
	}
	if _, ok := n.splits.(PositionConverter); positions > 0 && !ok {
		return fmt.Sprintf("source %q is now splittable, but the checkpoint holds positions of its plain predecessor, which its enumerator cannot convert into splits", o.ID)
	}
	return ""
}

func orNone(kind string) string {
	if kind == "" {
		return "stateless"
	}
	return kind
}

func sigChange(old, cur string) string {
	return fmt.Sprintf("was %q, is %q", old, cur)
}

// checkCompatibleV1 is the rule of format version 1 checkpoints.
func (j *Job) checkCompatibleV1(vs []*vertex, m *snapshot.Metadata, bad func(string, ...any) *IncompatibleError) error {
	if fp := j.fingerprint(); m.Fingerprint != fp {
		err := bad("its operators, keys or max parallelism differ")
		err.Old, err.New = m.Fingerprint, fp
		return err
	}
	have := make(map[string]int)
	for _, t := range m.Tasks {
		have[t.Vertex] = t.Parallelism
	}
	for _, v := range vs {
		p, ok := have[v.name]
		if !ok {
			return bad("it was written by an older streamd (format version 1), which restores only into the same chains, and has no state for the chain [%s]; run the old chaining once to take a new checkpoint, then change it", v.name)
		}
		if v.head().kind == kindSourceNode && p != v.parallelism {
			return bad("source chain [%s] had parallelism %d, now %d; a checkpoint of format version 1 holds sources' positions that cannot be rescaled (run once at parallelism %d to take a new checkpoint, then change it)", v.name, p, v.parallelism, p)
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
				if m.Sink != nil && len(m.Operators) > 0 && m.Operators[len(m.Operators)-1] == tail.uid {
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
// keyed vertex, straight into a new backend per task (keyed accepts
// entries of states that the operators register later, when the tasks
// open): each task's key groups from every old task that ran one of its
// keyed operators and whose range overlaps its own, so state follows its
// operators into another chaining and parallelism. Each block is read
// once, verifying it, by the one goroutine that fills its task's backend;
// up to GOMAXPROCS tasks are filled at once. For a finished job, which
// restores nothing, the blocks are only verified. On an error the backends
// are dropped (a fallback to an older checkpoint starts afresh); an I/O
// error is reported ahead of a corruption (which would fall back).
func (rt *jobRuntime) readKeyed(m *snapshot.Metadata) (map[*vertex][]*keyed.Backend, error) {
	type part struct {
		tm         *snapshot.TaskMeta
		start, end int
	}
	type target struct {
		v     *vertex
		index int
		rng   keyed.KeyGroupRange
		parts []part
	}
	var targets []*target
	backends := make(map[*vertex][]*keyed.Backend)
	for _, v := range rt.vertices {
		if !v.keyed {
			continue
		}
		backends[v] = make([]*keyed.Backend, v.parallelism)
		for index := range v.parallelism {
			tg := &target{v: v, index: index, rng: rt.job.keyGroupRange(v, index)}
			for i := range m.Tasks {
				tm := &m.Tasks[i]
				if tm.Keyed == nil || !v.sharesKeyedOperator(tm.Operators) {
					continue
				}
				start, end := max(tm.KeyGroupStart, tg.rng.Start), min(tm.KeyGroupEnd, tg.rng.End)
				if start < end {
					tg.parts = append(tg.parts, part{tm, start, end})
				}
			}
			targets = append(targets, tg)
		}
	}
	fill := func(tg *target) error {
		var b *keyed.Backend
		if !m.Finished {
			var err error
			if b, err = keyed.NewBackend(keyed.Options{MaxParallelism: rt.opts.MaxParallelism, Range: tg.rng}); err != nil {
				return err
			}
		}
		owned := make(map[string]bool) // per state name, for the current part
		for _, p := range tg.parts {
			clear(owned)
			err := rt.readFrom.ReadKeyed(m.Job, p.tm.Keyed, p.start, p.end, func(kg int, state string, key, value []byte, op uint8) error {
				if b == nil {
					return nil // verify only
				}
				mine, seen := owned[state]
				if !seen {
					var err error
					if mine, err = rt.job.stateOwner(tg.v, state, p.tm.Operators); err != nil {
						return err
					}
					owned[state] = mine
				}
				if !mine {
					return nil // the state of an operator that runs in another chain now
				}
				return b.RestoreChange(op, state, key, value)
			})
			if err != nil {
				return fmt.Errorf("cannot restore key groups [%d, %d) of %s task %d from checkpoint %d: %w", p.start, p.end, tg.v.name, tg.index, m.CheckpointID, err)
			}
		}
		backends[tg.v][tg.index] = b // each target writes only its own element
		return nil
	}
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, tg := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fill(tg)
		})
	}
	wg.Wait()
	var corrupt error
	for _, err := range errs {
		switch {
		case err == nil:
		case !snapshot.IsCorruption(err):
			return nil, err
		case corrupt == nil:
			corrupt = err
		}
	}
	if corrupt != nil {
		return nil, corrupt
	}
	if m.Finished {
		return nil, nil
	}
	return backends, nil
}

// sharesKeyedOperator reports whether one of ops (an old task's chain) is
// a keyed operator of v: then the old task's keyed state holds state of v.
func (v *vertex) sharesKeyedOperator(ops []string) bool {
	for _, n := range v.nodes {
		if n.keyed && slices.Contains(ops, n.uid) {
			return true
		}
	}
	return false
}

// stateOwner decides whether keyed state named state, read from an old
// task whose chain was oldOps, belongs to v. State names are
// "UID/name" (Runtime.StateName), so state follows its operator into
// whatever chain it runs in now; a name without the uid of one of the old
// chain's keyed operators cannot be attributed, and is v's only when every
// keyed operator of the old chain is in v (else restoring it would put it
// in two places, or guess).
func (j *Job) stateOwner(v *vertex, state string, oldOps []string) (bool, error) {
	uid, _, ok := strings.Cut(state, "/")
	if ok && slices.Contains(oldOps, uid) {
		for _, n := range v.nodes {
			if n.keyed && n.uid == uid {
				return true, nil
			}
		}
		return false, nil
	}
	for _, op := range oldOps {
		inV := slices.ContainsFunc(v.nodes, func(n *node) bool { return n.uid == op })
		if !inV && slices.ContainsFunc(j.nodes, func(n *node) bool { return n.keyed && n.uid == op }) {
			return false, fmt.Errorf("keyed state %q cannot be attributed to an operator (its name does not start with the uid of one; name states with Runtime.StateName), and its operators now run in different chains", state)
		}
	}
	return true, nil
}
