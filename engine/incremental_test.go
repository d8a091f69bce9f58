package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestIncrementalRestoreExact: a counting job (3000 keys, checkpoints
// every few ms, incremental: the default) is crashed several times — the
// context cancelled, no final checkpoint — and restored each time, at
// another parallelism of its keyed operator every other time, then runs to
// the end. Restores apply delta chains (full images plus the deltas of
// later checkpoints, key group by key group); the output's exact counts per
// key prove that every restored count was right. The test fails if no
// checkpoint it restored had a delta chain.
func TestIncrementalRestoreExact(t *testing.T) {
	const n, keys = 60_000, 3000
	dir := t.TempDir()
	logs := &logBuffer{}
	sink := newTxnSink()
	chains, deltas := 0, 0
	for run, countPar := range []int{2, 2, 3, 3, 1, 2} {
		st := openLoggedStore(t, dir, logs)
		opts := restoreOptions(st, logs)
		j := restoreJob(t, opts, slowSeq(n, keys), sink, countPar)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
		err := j.Run(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, s := range j.CheckpointStats() {
			if s.Status == "completed" {
				deltas += s.DeltaKeyGroups
			}
		}
		if ids, err := st.Completed("counts"); err == nil && len(ids) > 0 {
			m, err := st.LoadMetadata("counts", ids[len(ids)-1])
			if err != nil {
				t.Fatal(err)
			}
			for _, tm := range m.Tasks {
				if tm.Keyed != nil && tm.Keyed.MaxChain > 0 {
					chains++
					break
				}
			}
		}
		st.Close()
		if err == nil {
			t.Fatalf("run %d finished within its 120 ms: make the job longer", run)
		}
	}
	st := openLoggedStore(t, dir, logs)
	defer st.Close()
	j := restoreJob(t, restoreOptions(st, logs), slowSeq(n, keys), sink, 2)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if deltas == 0 || chains == 0 {
		t.Fatalf("the runs wrote %d key groups as deltas and left %d checkpoints with delta chains to restore: the test proves nothing", deltas, chains)
	}
	t.Logf("%d key groups written as deltas; %d of the restored checkpoints had delta chains", deltas, chains)
	checkCounts(t, sink.records(), n, keys)
}

// TestFullCheckpointsOption: CheckpointOptions.FullCheckpoints writes no
// deltas.
func TestFullCheckpointsOption(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	defer st.Close()
	opts := restoreOptions(st, logs)
	opts.Checkpointing.FullCheckpoints = true
	sink := newTxnSink()
	j := restoreJob(t, opts, slowSeq(20_000, 3000), sink, 2)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, s := range j.CheckpointStats() {
		if s.DeltaKeyGroups > 0 || s.Incremental {
			t.Fatalf("checkpoint %d wrote %d key groups as deltas", s.ID, s.DeltaKeyGroups)
		}
		full += s.FullKeyGroups
	}
	if full == 0 {
		t.Fatal(fmt.Sprint("no key group was written at all: ", j.CheckpointStats()))
	}
	checkCounts(t, sink.records(), 20_000, 3000)
}
