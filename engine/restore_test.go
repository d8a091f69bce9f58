package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// restoreJob is countJob with the counting operator at parallelism
// countPar (0: the job's), so a restore can change its parallelism.
func restoreJob(t testing.TB, opts engine.Options, src func(engine.SourceContext) (engine.Source[rec], error), sink engine.Sink[rec], countPar int) *engine.Job {
	t.Helper()
	j := engine.NewJob("counts", opts)
	s := engine.FromSource(j, "source", src)
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	var po []engine.OpOption
	if countPar > 0 {
		po = append(po, engine.WithParallelism(countPar))
	}
	counted := engine.Process(ks, "count", countOp, po...)
	// The sink is a chain of its own at every parallelism of count.
	engine.ToSink(counted, "sink", sink, engine.DisableChaining())
	return j
}

// logBuffer collects the log lines of a store and a job.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openLoggedStore(t *testing.T, dir string, logs *logBuffer) *snapshot.Store {
	t.Helper()
	st, err := snapshot.Open(dir, snapshot.Options{Logger: logs.logf})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func restoreOptions(st *snapshot.Store, logs *logBuffer) engine.Options {
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.Logger = logs.logf
	opts.Checkpointing.Retained = 3
	return opts
}

// slowSeq emits n records (keys keys) at ~100 k records/s in all.
func slowSeq(n, keys int64) func(engine.SourceContext) (engine.Source[rec], error) {
	return func(ctx engine.SourceContext) (engine.Source[rec], error) {
		return &rateSource{seqSource: seqSource{n: n, keys: keys}, tick: time.Duration(ctx.Parallelism) * 160 * time.Microsecond}, nil
	}
}

// runStopped runs job for at least stopAfter and until a checkpoint with
// keyed state has completed (a loaded machine may take longer than
// stopAfter to get there), then stops it and waits.
func runStopped(t *testing.T, j *engine.Job, stopAfter time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	time.Sleep(stopAfter)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		stateful := false
		for _, s := range j.CheckpointStats() {
			stateful = stateful || (s.Status == "completed" && s.StoredBytes > 0)
		}
		if stateful {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint with keyed state completed within a minute")
		}
	}
	j.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// newestCheckpoint returns the newest completed checkpoint of job "counts"
// and the number of blocks its keyed state references.
func newestCheckpoint(t *testing.T, st *snapshot.Store) (*snapshot.Metadata, int64) {
	t.Helper()
	ids, err := st.Completed("counts")
	if err != nil || len(ids) == 0 {
		t.Fatalf("Completed = %v, %v", ids, err)
	}
	m, err := st.LoadMetadata("counts", ids[len(ids)-1])
	if err != nil {
		t.Fatal(err)
	}
	var blocks int64
	for _, tm := range m.Tasks {
		if tm.Keyed == nil {
			continue
		}
		for _, r := range tm.Keyed.KeyGroups {
			blocks += int64(r.Blocks)
			for _, d := range r.Deltas {
				blocks += int64(d.Blocks)
			}
		}
	}
	return m, blocks
}

// TestRestoreReadsEachBlockOnce is defect 8 of issue 10: recovery verified
// every block of the checkpoint (Store.Latest) and then read it again to
// restore it. Now each block of the restored checkpoint is read once, also
// when the keyed operator restores at another parallelism (its tasks then
// read parts of several old tasks' handles).
func TestRestoreReadsEachBlockOnce(t *testing.T) {
	for _, countPar := range []int{2, 1, 3} {
		t.Run(fmt.Sprintf("count parallelism 2 to %d", countPar), func(t *testing.T) {
			dir := t.TempDir()
			logs := &logBuffer{}
			sink := newMemSink()
			st := openLoggedStore(t, dir, logs)
			runStopped(t, restoreJob(t, restoreOptions(st, logs), slowSeq(-1, 5000), sink, 2), 100*time.Millisecond)
			st.Close()

			st = openLoggedStore(t, dir, logs)
			defer st.Close()
			m, blocks := newestCheckpoint(t, st)
			if blocks == 0 {
				t.Fatalf("checkpoint %d has no blocks to read", m.CheckpointID)
			}
			// Stopped before it starts, the job restores and stops at
			// once (its final checkpoint writes blocks, reads none).
			j := restoreJob(t, restoreOptions(st, logs), slowSeq(-1, 5000), sink, countPar)
			j.Stop()
			before := st.BlocksRead()
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := j.RestoredFrom(); got != m.CheckpointID {
				t.Fatalf("restored from checkpoint %d, want %d", got, m.CheckpointID)
			}
			if got := st.BlocksRead() - before; got != blocks {
				t.Fatalf("restoring checkpoint %d read %d blocks; it has %d, each to be read once", m.CheckpointID, got, blocks)
			}
		})
	}
}

// txnSink is a two-phase-commit sink in memory that remembers which
// checkpoint each transaction belongs to, so a test can undo the commits
// of the checkpoints after a given one: what a crash between writing a
// checkpoint's metadata and committing its transactions leaves.
type txnSink struct {
	mu        sync.Mutex
	committed map[string][]rec
	pending   map[string][]rec
	ckpt      map[string]uint64 // transaction -> checkpoint id
	recovered int               // calls of Recover
	seq       int
}

func newTxnSink() *txnSink {
	return &txnSink{committed: map[string][]rec{}, pending: map[string][]rec{}, ckpt: map[string]uint64{}}
}

func (s *txnSink) Recover(states [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recovered++
	for _, st := range states {
		for _, f := range strings.Fields(string(st)) {
			name := f[strings.IndexByte(f, ':')+1:]
			if recs, ok := s.pending[name]; ok { // commit is idempotent
				s.committed[name] = recs
				delete(s.pending, name)
			}
		}
	}
	clear(s.pending) // strays
	return nil
}

// uncommitAfter turns the committed transactions of checkpoints after id
// back into pending ones.
func (s *txnSink) uncommitAfter(id uint64) (undone int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, recs := range s.committed {
		if s.ckpt[name] > id {
			s.pending[name] = recs
			delete(s.committed, name)
			undone += len(recs)
		}
	}
	return undone
}

func (s *txnSink) records() []rec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []rec
	for _, recs := range s.committed {
		out = append(out, recs...)
	}
	return out
}

func (s *txnSink) NewWriter(engine.SinkContext) (engine.SinkWriter[rec], error) {
	return &txnWriter{s: s}, nil
}

type txnWriter struct {
	s       *txnSink
	open    []rec
	pending []memTxn
}

func (w *txnWriter) Write(v *rec) error { w.open = append(w.open, *v); return nil }

func (w *txnWriter) PreCommit(id uint64) ([]byte, error) {
	if len(w.open) > 0 {
		w.s.mu.Lock()
		w.s.seq++
		name := fmt.Sprintf("t%d", w.s.seq)
		w.s.pending[name] = w.open
		w.s.ckpt[name] = id
		w.s.mu.Unlock()
		w.pending = append(w.pending, memTxn{id, name})
		w.open = nil
	}
	var b strings.Builder
	for _, t := range w.pending {
		fmt.Fprintf(&b, "%d:%s ", t.id, t.name)
	}
	return []byte(b.String()), nil
}

func (w *txnWriter) Commit(id uint64) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	n := 0
	for _, t := range w.pending {
		if t.id > id {
			w.pending[n] = t
			n++
			continue
		}
		if recs, ok := w.s.pending[t.name]; ok {
			w.s.committed[t.name] = recs
			delete(w.s.pending, t.name)
		}
	}
	w.pending = w.pending[:n]
	return nil
}

func (w *txnWriter) Finish() error { return nil }
func (w *txnWriter) Close() error  { return nil }

// corruptBlocks flips one byte of blocks of job "counts" in the Pebble of
// a closed store in dir: of the middle one that checkpoint writer wrote, or
// of every block when writer is 0.
func corruptBlocks(t *testing.T, dir string, writer uint64) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lower, upper := []byte("bcounts\x00"), []byte("bcounts\x01")
	if writer != 0 {
		lower = binary.BigEndian.AppendUint64(lower[:len(lower):len(lower)], writer)
		upper = binary.BigEndian.AppendUint64([]byte("bcounts\x00"), writer+1)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, slices.Clone(it.Key()))
	}
	it.Close()
	if len(keys) == 0 {
		t.Fatalf("no blocks of writer %d", writer)
	}
	if writer != 0 {
		keys = keys[len(keys)/2 : len(keys)/2+1]
	}
	for _, key := range keys {
		val, closer, err := db.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		bad := slices.Clone(val)
		closer.Close()
		bad[len(bad)/2] ^= 0x40
		if err := db.Set(key, bad, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestoreFallsBackFromCorruptBlock: a damaged block of the newest
// checkpoint, found while restoring it, makes the job restore the previous
// checkpoint — keyed state, source positions and sink transactions alike —
// and say so in the log; the output is exactly once. The crash is
// simulated between the newest checkpoint's metadata and its sink commit,
// which is when falling back cannot duplicate committed output.
func TestRestoreFallsBackFromCorruptBlock(t *testing.T) {
	const n, keys = 40_000, 500
	dir := t.TempDir()
	logs := &logBuffer{}
	sink := newTxnSink()
	st := openLoggedStore(t, dir, logs)
	// Cancelled, the job ends as a crash would: no final checkpoint.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := restoreJob(t, restoreOptions(st, logs), slowSeq(n, keys), sink, 0).Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first run: %v, want the context's error", err)
	}
	ids, err := st.Completed("counts")
	if err != nil || len(ids) < 2 {
		t.Fatalf("completed checkpoints %v, %v; want at least 2", ids, err)
	}
	st.Close()
	newest, previous := ids[len(ids)-1], ids[len(ids)-2]
	if sink.uncommitAfter(previous) == 0 {
		t.Fatalf("checkpoint %d committed no output: the test cannot tell the checkpoints apart", newest)
	}
	corruptBlocks(t, dir, newest)

	st = openLoggedStore(t, dir, logs)
	defer st.Close()
	j := restoreJob(t, restoreOptions(st, logs), slowSeq(n, keys), sink, 0)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := j.RestoredFrom(); got != previous {
		t.Fatalf("restored from checkpoint %d, want %d (the newest, %d, is corrupt)", got, previous, newest)
	}
	log := logs.String()
	for _, want := range []string{
		fmt.Sprintf("skipping corrupt checkpoint %d of job counts: ", newest),
		fmt.Sprintf("snapshot: job counts, checkpoint %d, scope ", newest),
		"block checksum mismatch",
		fmt.Sprintf("restoring from checkpoint %d", previous),
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	checkCounts(t, sink.records(), n, keys)
}

// TestRestoreRefusedWhenNoCheckpointVerifies: with every checkpoint
// corrupt the job does not start over (that would duplicate committed
// output): Run fails, and no sink is recovered.
func TestRestoreRefusedWhenNoCheckpointVerifies(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	runStopped(t, restoreJob(t, restoreOptions(st, logs), slowSeq(-1, 500), newTxnSink(), 0), 100*time.Millisecond)
	ids, err := st.Completed("counts")
	if err != nil || len(ids) == 0 {
		t.Fatalf("completed checkpoints %v, %v", ids, err)
	}
	st.Close()
	corruptBlocks(t, dir, 0)
	st = openLoggedStore(t, dir, logs)
	defer st.Close()
	sink := newTxnSink()
	err = restoreJob(t, restoreOptions(st, logs), slowSeq(-1, 500), sink, 0).Run(context.Background())
	if !snapshot.IsCorruption(err) || !strings.Contains(err.Error(), "no checkpoint of job counts verifies") {
		t.Fatalf("Run = %v, want a corruption error saying no checkpoint verifies", err)
	}
	if sink.recovered != 0 {
		t.Fatalf("the sink was recovered although no checkpoint verifies")
	}
	if got := strings.Count(logs.String(), "WARNING: skipping corrupt checkpoint"); got != len(ids) {
		t.Fatalf("log names %d skipped checkpoints, want %d:\n%s", got, len(ids), logs)
	}
}
