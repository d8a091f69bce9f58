package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// savepointOptions checkpoints every 5 ms, keeping one checkpoint: a
// savepoint's checkpoint is outlived by retention within milliseconds
// unless it is held.
func savepointOptions(st *snapshot.Store, logs *logBuffer) engine.Options {
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.Logger = logs.logf
	opts.Checkpointing.Retained = 1
	return opts
}

// verifySavepoint opens the savepoint in dir and verifies every block of
// its checkpoint.
func verifySavepoint(t *testing.T, dir string) snapshot.SavepointDescriptor {
	t.Helper()
	sp, d, err := snapshot.OpenSavepoint(dir, snapshot.Options{Logger: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	m, err := sp.LoadMetadata(d.Job, d.CheckpointID)
	if err == nil {
		err = sp.Verify(m)
	}
	if err != nil {
		t.Fatalf("savepoint %s does not verify: %v", dir, err)
	}
	return d
}

// waitStateful waits until j completed a checkpoint with keyed state.
func waitStateful(t *testing.T, j *engine.Job) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
		for _, s := range j.CheckpointStats() {
			if s.Status == "completed" && s.StoredBytes > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint with keyed state completed within a minute")
		}
	}
}

// TestSavepointLifecycle takes a savepoint while the job runs (retaining
// one checkpoint, at a 5 ms interval: the savepoint must stay whole while
// retention moves on), then stops it with a savepoint, then restores a new
// job — another data dir, the counting operator at another parallelism —
// from that savepoint; the output over both runs is exactly once.
func TestSavepointLifecycle(t *testing.T) {
	const n, keys = 60_000, 200
	logs := &logBuffer{}
	sink := newTxnSink() // survives the jobs, like output on disk
	spDir := t.TempDir()
	running, final := filepath.Join(spDir, "running"), filepath.Join(spDir, "final")

	st := openLoggedStore(t, t.TempDir(), logs)
	j := restoreJob(t, savepointOptions(st, logs), slowSeq(n, keys), sink, 2)
	if _, err := j.TriggerSavepoint(context.Background(), running); !errors.Is(err, engine.ErrNotRunning) {
		t.Fatalf("TriggerSavepoint before Run: %v, want ErrNotRunning", err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	waitStateful(t, j)
	sp, err := j.TriggerSavepoint(context.Background(), running)
	if err != nil {
		t.Fatal(err)
	}
	d := verifySavepoint(t, running)
	if d.CheckpointID != sp.CheckpointID || d.Job != "counts" || sp.Path != running || sp.StateBytes == 0 {
		t.Fatalf("savepoint %+v, descriptor %+v", sp, d)
	}
	// The job went on: later checkpoints completed, and retention (1)
	// deleted the savepoint's checkpoint from the job's store.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
		ids, err := st.Completed("counts")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 0 && ids[0] > sp.CheckpointID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after the savepoint's %d completed: %v", sp.CheckpointID, ids)
		}
	}
	statsOf := func(id uint64) engine.CheckpointStats {
		i := slices.IndexFunc(j.CheckpointStats(), func(s engine.CheckpointStats) bool { return s.ID == id })
		if i < 0 {
			t.Fatalf("no statistics of checkpoint %d", id)
		}
		return j.CheckpointStats()[i]
	}
	if s := statsOf(sp.CheckpointID); !s.Savepoint || s.SavepointPath != running || s.Status != "completed" {
		t.Fatalf("statistics of the savepoint's checkpoint: %+v", s)
	}
	if err := j.StopWithSavepoint(running); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("StopWithSavepoint into the first savepoint: %v, want refused", err)
	}
	if err := j.StopWithSavepoint(final); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.Close()
	last, ok := j.LastSavepoint()
	if !ok || last.Path != final || last.CheckpointID <= sp.CheckpointID {
		t.Fatalf("LastSavepoint = %+v, %v", last, ok)
	}
	if s := statsOf(last.CheckpointID); !s.Final || !s.Savepoint || s.SavepointPath != final {
		t.Fatalf("statistics of the final checkpoint: %+v", s)
	}
	verifySavepoint(t, running) // still whole
	verifySavepoint(t, final)
	before := len(sink.records())
	if before == 0 || before >= n*2/3 {
		t.Fatalf("the first job committed %d records: the stop did not land mid-way", before)
	}

	// A new job in a new data dir, the counting operator at parallelism
	// 3, restored from the final savepoint.
	logs2 := &logBuffer{}
	st2 := openLoggedStore(t, t.TempDir(), logs2)
	defer st2.Close()
	opts := savepointOptions(st2, logs2)
	opts.Restore = &engine.RestoreOptions{Savepoint: final}
	j2 := restoreJob(t, opts, slowSeq(n, keys), sink, 3)
	if err := j2.Run(context.Background()); err != nil {
		t.Fatalf("restored job: %v\n%s", err, logs2)
	}
	if got := j2.RestoredFrom(); got != last.CheckpointID {
		t.Fatalf("restored from %d, want %d", got, last.CheckpointID)
	}
	if o := j2.CheckpointOverview(); o.Restored == nil || o.Restored.SavepointPath != final || o.Restored.ID != last.CheckpointID {
		t.Fatalf("overview's restore: %+v", o.Restored)
	}
	if ids, _ := st2.Completed("counts"); len(ids) == 0 || ids[0] <= last.CheckpointID {
		t.Fatalf("the restored job's checkpoints %v do not continue after %d", ids, last.CheckpointID)
	}
	if !strings.Contains(logs2.String(), "restoring from savepoint "+final) {
		t.Fatalf("log lacks the savepoint:\n%s", logs2)
	}
	checkCounts(t, sink.records(), n, keys)
}

// TestTriggerCheckpoint: with the interval an hour, checkpoints happen only
// on demand; concurrent requests are all answered; the overview counts
// them; a job that is not running refuses.
func TestTriggerCheckpoint(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.Checkpointing.Interval = time.Hour
	sink := newMemSink()
	j := countJob(t, opts, slowSeq(-1, 50), sink)
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	var first engine.CheckpointStats
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		// Until Run has started, the job is not running.
		first, err = j.TriggerCheckpoint(context.Background())
		if !errors.Is(err, engine.ErrNotRunning) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != "completed" || first.Savepoint || first.ID == 0 {
		t.Fatalf("TriggerCheckpoint = %+v", first)
	}
	var wg sync.WaitGroup
	ids := make([]uint64, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Go(func() {
			s, err := j.TriggerCheckpoint(context.Background())
			ids[i], errs[i] = s.ID, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || ids[i] <= first.ID {
			t.Fatalf("concurrent TriggerCheckpoint %d: checkpoint %d, %v", i, ids[i], err)
		}
	}
	o := j.CheckpointOverview()
	if o.Triggered < 2 || o.Completed < 2 || o.Completed > o.Triggered || o.Restored != nil {
		t.Fatalf("overview %+v", o)
	}
	// A context that ends first: the caller gets its error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.TriggerCheckpoint(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("TriggerCheckpoint with a cancelled context: %v", err)
	}
	j.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := j.TriggerCheckpoint(context.Background()); !errors.Is(err, engine.ErrNotRunning) {
		t.Fatalf("TriggerCheckpoint after Run: %v, want ErrNotRunning", err)
	}
	// Only the on-demand checkpoints and the final one were taken.
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" && s.TriggeredAt.Sub(time.Now()) > time.Hour {
			t.Fatalf("unexpected checkpoint %+v", s)
		}
	}
	if got := len(j.CheckpointStats()); got > 7 {
		t.Fatalf("%d checkpoints for 6 requests and a final one: regular ones were triggered", got)
	}

	plain := countJob(t, engine.Options{Parallelism: 1}, newSeq(10, 2), newMemSink())
	if err := plain.StopWithSavepoint(t.TempDir()); err == nil {
		t.Fatal("StopWithSavepoint without checkpointing was accepted")
	}
}

// extraJob is restoreJob with one more keyed operator, "extra", between
// count and the sink: it passes records on and keeps state of its own.
func extraJob(t *testing.T, opts engine.Options, src func(engine.SourceContext) (engine.Source[rec], error), sink engine.Sink[rec]) *engine.Job {
	t.Helper()
	j := engine.NewJob("counts", opts)
	s := engine.FromSource(j, "source", src)
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	counted := engine.Process(ks, "count", countOp)
	extra := engine.Process(engine.AsKeyed(counted, engine.Int64Key(func(r *rec) int64 { return r.Key })), "extra",
		func(rt *engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
			seen, err := keyed.NewValueState(rt.Backend(), rt.StateName("seen"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return nil, err
			}
			return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
				n, _ := seen.Get()
				seen.Put(n + 1)
				emit(r)
			}, nil
		})
	engine.ToSink(extra, "sink", sink, engine.DisableChaining())
	return j
}

// TestAllowNonRestoredState: a savepoint of a job with operator "extra"
// does not restore into the job without it — the error names the
// operator — unless non-restored state is allowed: then its state is
// skipped with a warning and the rest restores, exactly once.
func TestAllowNonRestoredState(t *testing.T) {
	const n, keys = 40_000, 100
	logs := &logBuffer{}
	sink := newTxnSink()
	dir := filepath.Join(t.TempDir(), "sp")
	st := openLoggedStore(t, t.TempDir(), logs)
	j := extraJob(t, savepointOptions(st, logs), slowSeq(n, keys), sink)
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	waitStateful(t, j)
	if err := j.StopWithSavepoint(dir); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.Close()

	run := func(allow bool) (error, *logBuffer) {
		logs := &logBuffer{}
		st := openLoggedStore(t, t.TempDir(), logs)
		defer st.Close()
		opts := savepointOptions(st, logs)
		opts.Restore = &engine.RestoreOptions{Savepoint: dir, AllowNonRestoredState: allow}
		return restoreJob(t, opts, slowSeq(n, keys), sink, 0).Run(context.Background()), logs
	}
	err, _ := run(false)
	var ie *engine.IncompatibleError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `operator "extra"`) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("restore without the operator: %v, want an IncompatibleError naming \"extra\" and the savepoint", err)
	}
	err, logs2 := run(true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs2.String(), `keyed state of operator "extra", which the job no longer has; skipping it`) {
		t.Fatalf("no warning about the skipped state:\n%s", logs2)
	}
	checkCounts(t, sink.records(), n, keys)
}

// TestCorruptSavepointRefused: a savepoint with a damaged block is refused,
// naming the checkpoint; nothing is recovered.
func TestCorruptSavepointRefused(t *testing.T) {
	logs := &logBuffer{}
	dir := filepath.Join(t.TempDir(), "sp")
	st := openLoggedStore(t, t.TempDir(), logs)
	j := restoreJob(t, savepointOptions(st, logs), slowSeq(-1, 300), newTxnSink(), 0)
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	waitStateful(t, j)
	sp, err := j.TriggerSavepoint(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	j.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.Close()
	corruptBlocks(t, dir, sp.CheckpointID)

	st2 := openLoggedStore(t, t.TempDir(), logs)
	defer st2.Close()
	opts := savepointOptions(st2, logs)
	opts.Restore = &engine.RestoreOptions{Savepoint: dir}
	sink := newTxnSink()
	err = restoreJob(t, opts, slowSeq(-1, 300), sink, 0).Run(context.Background())
	if !snapshot.IsCorruption(err) || !strings.Contains(err.Error(), "checkpoint "+strconv.FormatUint(sp.CheckpointID, 10)) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("restore from a corrupt savepoint: %v, want a corruption error naming the checkpoint and the savepoint", err)
	}
	if sink.recovered != 0 {
		t.Fatal("the sink was recovered from a corrupt savepoint")
	}
	if ids, _ := st2.Completed("counts"); len(ids) != 0 {
		t.Fatalf("the refused job wrote checkpoints %v", ids)
	}
}
