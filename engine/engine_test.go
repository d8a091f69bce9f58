package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

type rec struct {
	Key   int64
	Seq   int64
	Count int64
}

// seqSource emits Seq i for i in [0, n) split over tasks, Key = i % keys.
// stopAt > 0 makes every task stop producing (without EOF) after that many
// records per task until released, to let tests stop the job mid-way.
type seqSource struct {
	n, keys int64
	next    int64
	stride  int64
	fail    int64 // Read fails when next reaches fail (if > 0)
}

func newSeq(n, keys int64) func(engine.SourceContext) (engine.Source[rec], error) {
	return func(engine.SourceContext) (engine.Source[rec], error) { return &seqSource{n: n, keys: keys}, nil }
}

func (s *seqSource) Open(ctx engine.SourceContext, state []byte) error {
	s.stride = int64(ctx.Parallelism)
	s.next = int64(ctx.Index)
	if state != nil {
		fmt.Sscan(string(state), &s.next)
	}
	return nil
}

func (s *seqSource) Read(buf []rec) (int, error) {
	i := 0
	for ; i < len(buf) && (s.n < 0 || s.next < s.n); i++ {
		if s.fail > 0 && s.next >= s.fail {
			return i, errors.New("source broke")
		}
		buf[i] = rec{Key: s.next % s.keys, Seq: s.next}
		s.next += s.stride
	}
	if s.n >= 0 && s.next >= s.n {
		return i, io.EOF
	}
	return i, nil
}

func (s *seqSource) Position() ([]byte, error) { return []byte(fmt.Sprint(s.next)), nil }
func (s *seqSource) Close() error              { return nil }

// memSink is a two-phase-commit sink in memory: records become visible in
// committed only on Commit (or Finish without checkpoints).
type memSink struct {
	mu        sync.Mutex
	committed []rec
	pending   map[string][]rec // transaction name -> records
	recovered [][]byte
	seq       int
}

func newMemSink() *memSink { return &memSink{pending: make(map[string][]rec)} }

func (m *memSink) Recover(states [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recovered = states
	for _, st := range states {
		for _, name := range strings.Fields(string(st)) {
			name = name[strings.IndexByte(name, ':')+1:]
			m.committed = append(m.committed, m.pending[name]...)
			delete(m.pending, name)
		}
	}
	for k := range m.pending { // strays
		delete(m.pending, k)
	}
	return nil
}

func (m *memSink) NewWriter(engine.SinkContext) (engine.SinkWriter[rec], error) {
	return &memWriter{m: m}, nil
}

func (m *memSink) records() []rec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.committed)
}

type memTxn struct {
	id   uint64
	name string
}

type memWriter struct {
	m       *memSink
	open    []rec
	pending []memTxn
}

func (w *memWriter) Write(v *rec) error { w.open = append(w.open, *v); return nil }

func (w *memWriter) PreCommit(id uint64) ([]byte, error) {
	if len(w.open) > 0 {
		w.m.mu.Lock()
		w.m.seq++
		name := fmt.Sprintf("t%d", w.m.seq)
		w.m.pending[name] = w.open
		w.m.mu.Unlock()
		w.pending = append(w.pending, memTxn{id, name})
		w.open = nil
	}
	var b strings.Builder
	for _, t := range w.pending {
		fmt.Fprintf(&b, "%d:%s ", t.id, t.name)
	}
	return []byte(b.String()), nil
}

func (w *memWriter) Commit(id uint64) error {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	n := 0
	for _, t := range w.pending {
		if t.id > id {
			w.pending[n] = t
			n++
			continue
		}
		w.m.committed = append(w.m.committed, w.m.pending[t.name]...)
		delete(w.m.pending, t.name)
	}
	w.pending = w.pending[:n]
	return nil
}

func (w *memWriter) Finish() error {
	w.m.mu.Lock()
	w.m.committed = append(w.m.committed, w.open...)
	w.m.mu.Unlock()
	w.open = nil
	return nil
}

func (w *memWriter) Close() error { return nil }

// countJob is source -> filter -> map -> keyBy -> count -> sink.
func countJob(t testing.TB, opts engine.Options, src func(engine.SourceContext) (engine.Source[rec], error), sink engine.Sink[rec]) *engine.Job {
	t.Helper()
	j := engine.NewJob("counts", opts)
	s := engine.FromSource(j, "source", src)
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	s = engine.Map(s, "map", func(r rec) rec { r.Seq *= 1; return r })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	counted := engine.Process(ks, "count", countOp)
	engine.ToSink(counted, "sink", sink)
	return j
}

// countOp is the running count per key the test jobs use: it sets Count.
func countOp(rt *engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
	st, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
	if err != nil {
		return nil, err
	}
	return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
		n, _ := st.Get()
		n++
		st.Put(n)
		r.Count = n
		emit(r)
	}, nil
}

// checkCounts verifies exactly-once output: per key, counts 1..n each once,
// and the seqs are exactly the filtered i with i % keys == key.
func checkCounts(t *testing.T, out []rec, n, keys int64) {
	t.Helper()
	want := make(map[int64][]int64)
	for i := int64(0); i < n; i++ {
		if i%3 != 0 {
			want[i%keys] = append(want[i%keys], i)
		}
	}
	gotSeq := make(map[int64][]int64)
	gotCount := make(map[int64][]int64)
	for _, r := range out {
		gotSeq[r.Key] = append(gotSeq[r.Key], r.Seq)
		gotCount[r.Key] = append(gotCount[r.Key], r.Count)
	}
	for k := int64(0); k < keys; k++ {
		seqs, counts := gotSeq[k], gotCount[k]
		slices.Sort(seqs)
		slices.Sort(counts)
		if !slices.Equal(seqs, want[k]) {
			t.Fatalf("key %d: got %d seqs, want %d (first got %v, want %v)", k, len(seqs), len(want[k]), head(seqs), head(want[k]))
		}
		for i, c := range counts {
			if c != int64(i+1) {
				t.Fatalf("key %d: counts are not 1..%d: position %d has %d", k, len(counts), i, c)
			}
		}
	}
}

func head(xs []int64) []int64 { return xs[:min(len(xs), 5)] }

func TestBoundedKeyedPipeline(t *testing.T) {
	for _, par := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallelism=%d", par), func(t *testing.T) {
			sink := newMemSink()
			j := countJob(t, engine.Options{Parallelism: par, RingCapacity: 64, BatchSize: 16}, newSeq(20000, 37), sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, sink.records(), 20000, 37)
		})
	}
}

func TestChaining(t *testing.T) {
	j := countJob(t, engine.Options{Parallelism: 2}, newSeq(10, 2), newMemSink())
	got := j.Describe()
	want := "vertex 0 [source -> filter -> map] parallelism=2\n" +
		"vertex 1 [count -> sink] parallelism=2 keyed input=vertex 0 (keyed)\n"
	if got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestExchanges(t *testing.T) {
	const n = 5000
	run := func(t *testing.T, build func(j *engine.Job, sink *memSink)) []rec {
		sink := newMemSink()
		j := engine.NewJob("exchange", engine.Options{Parallelism: 2, RingCapacity: 16, BatchSize: 4})
		build(j, sink)
		if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return sink.records()
	}
	t.Run("rebalance", func(t *testing.T) {
		out := run(t, func(j *engine.Job, sink *memSink) {
			s := engine.FromSource(j, "source", newSeq(n, 1), engine.WithParallelism(1))
			s = engine.Map(engine.Rebalance(s), "map", func(r rec) rec { return r }, engine.WithParallelism(3))
			engine.ToSink(s, "sink", engine.Sink[rec](sink), engine.WithParallelism(3))
		})
		if len(out) != n {
			t.Fatalf("got %d records, want %d", len(out), n)
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		out := run(t, func(j *engine.Job, sink *memSink) {
			s := engine.FromSource(j, "source", newSeq(n, 1), engine.WithParallelism(1))
			s = engine.Map(engine.Broadcast(s), "map", func(r rec) rec { return r }, engine.WithParallelism(3))
			engine.ToSink(s, "sink", engine.Sink[rec](sink), engine.WithParallelism(3))
		})
		if len(out) != 3*n {
			t.Fatalf("got %d records, want %d", len(out), 3*n)
		}
	})
	t.Run("forward-unchained", func(t *testing.T) {
		out := run(t, func(j *engine.Job, sink *memSink) {
			s := engine.FromSource(j, "source", newSeq(n, 1))
			s = engine.Map(engine.Forward(s), "map", func(r rec) rec { return r }, engine.DisableChaining())
			engine.FlatMap(s, "dup", func(r rec, emit func(rec)) { emit(r); emit(r) })
			engine.ToSink(s, "sink", engine.Sink[rec](sink))
		})
		// "dup" has no consumer: map has two consumers, so nothing chains
		// with it; the sink sees each record once.
		if len(out) != n {
			t.Fatalf("got %d records, want %d", len(out), n)
		}
	})
}

func TestTaskPanicStopsJob(t *testing.T) {
	j := engine.NewJob("boom", engine.Options{Parallelism: 2})
	s := engine.FromSource(j, "source", newSeq(-1, 10))
	s = engine.Map(s, "explode", func(r rec) rec {
		if r.Seq == 5000 {
			panic("record 5000 is cursed")
		}
		return r
	})
	engine.ToSink(s, "sink", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `operator "source -> explode -> sink"`) || !strings.Contains(err.Error(), "record 5000 is cursed") {
		t.Fatalf("got %v, want the panic with the operator's name", err)
	}
}

func TestSourceErrorStopsJob(t *testing.T) {
	j := engine.NewJob("broken", engine.Options{Parallelism: 2})
	s := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) {
		return &seqSource{n: -1, keys: 3, fail: 1000}, nil
	})
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	out := engine.Process(ks, "pass", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
		return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) { emit(r) }, nil
	})
	engine.ToSink(out, "sink", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "source broke") || !strings.Contains(err.Error(), `operator "source"`) {
		t.Fatalf("got %v", err)
	}
}

func TestContextCancelStopsUnboundedJob(t *testing.T) {
	j := countJob(t, engine.Options{Parallelism: 2}, newSeq(-1, 100), newMemSink())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := j.Run(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

func TestStopWithoutCheckpointsCommitsOutput(t *testing.T) {
	sink := newMemSink()
	j := countJob(t, engine.Options{Parallelism: 2}, newSeq(-1, 10), sink)
	go func() {
		time.Sleep(100 * time.Millisecond)
		j.Stop()
	}()
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.records()) == 0 {
		t.Fatal("stop committed nothing")
	}
}

func TestBadGraph(t *testing.T) {
	j := engine.NewJob("Bad Name", engine.Options{Parallelism: 2})
	s := engine.FromSource(j, "source", newSeq(10, 1))
	s = engine.Map(engine.Forward(s), "map", func(r rec) rec { return r }, engine.WithParallelism(3))
	engine.ToSink(s, "map", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	for _, want := range []string{`job name "Bad Name"`, "forward", `"map" is used twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v does not mention %q", err, want)
		}
	}
}

// TestZeroAllocsPerRecord runs the same job with 10x more records and checks
// that the extra records allocated nothing. It runs in every build (also
// -short, -race and -tags invariants), on testing.AllocsPerRun's one P.
func TestZeroAllocsPerRecord(t *testing.T) {
	const small, large = 20_000, 200_000
	mallocs := func(n int64) float64 {
		return testing.AllocsPerRun(1, func() {
			var sink countingSink
			j := countJob(t, engine.Options{Parallelism: 2, Pinning: engine.PinOff}, newSeq(n, 100), &sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
	mallocs(small) // warm up: lazily built tables, pools
	a, b := mallocs(small), mallocs(large)
	perRecord := (b - a) / (large - small)
	t.Logf("allocations: %.0f for %d records, %.0f for %d: %.5f per extra record", a, small, b, large, perRecord)
	if perRecord > 0.001 {
		t.Fatalf("%.4f allocations per record on the typed path, want 0", perRecord)
	}
}

// countingSink discards records (its writers count them).
type countingSink struct{}

func (c *countingSink) Recover([][]byte) error { return nil }
func (c *countingSink) NewWriter(engine.SinkContext) (engine.SinkWriter[rec], error) {
	return &countingWriter{}, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(*rec) error                 { w.n++; return nil }
func (w *countingWriter) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (w *countingWriter) Commit(uint64) error              { return nil }
func (w *countingWriter) Finish() error                    { return nil }
func (w *countingWriter) Close() error                     { return nil }

func openStore(t *testing.T, dir string) *snapshot.Store {
	t.Helper()
	st, err := snapshot.Open(dir, snapshot.Options{Logger: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func checkpointed(st *snapshot.Store, mode coord.Mode) engine.Options {
	return engine.Options{
		Parallelism: 2, RingCapacity: 64, BatchSize: 16, Logger: func(string, ...any) {},
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 5 * time.Millisecond, Mode: mode},
			Store:   st,
		},
	}
}

func TestCheckpointedBoundedJob(t *testing.T) {
	for _, mode := range []coord.Mode{coord.ExactlyOnce, coord.AtLeastOnce} {
		t.Run(mode.String(), func(t *testing.T) {
			st := openStore(t, t.TempDir())
			defer st.Close()
			sink := newMemSink()
			j := countJob(t, checkpointed(st, mode), newSeq(200_000, 50), sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, sink.records(), 200_000, 50)
			stats := j.CheckpointStats()
			if len(stats) == 0 || !stats[len(stats)-1].Final || stats[len(stats)-1].Status != "completed" {
				t.Fatalf("want a completed final checkpoint last, have %+v", stats)
			}
			ids, err := st.Completed("counts")
			if err != nil || len(ids) == 0 || len(ids) > 2 {
				t.Fatalf("retained checkpoints %v, %v; want 1..2", ids, err)
			}
			// Running the finished job again emits nothing and succeeds.
			again := newMemSink()
			if err := countJob(t, checkpointed(st, mode), newSeq(200_000, 50), again).Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(again.records()); n != 0 {
				t.Fatalf("rerun of a finished job emitted %d records", n)
			}
		})
	}
}

// TestStopAndResume stops an unbounded job gracefully several times and
// resumes it; the output over all runs is exactly once. The source is rate
// limited so that every stop lands mid-way, and the test checks that each
// later run restored a checkpoint and that each stopped run left records
// for the next (it failed to test when the job ended before its stop).
func TestStopAndResume(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink() // survives "restarts", like files on disk
	const n, keys = 60_000, 20
	const stops = 3
	for run := 0; ; run++ {
		st := openStore(t, dir)
		src := func(ctx engine.SourceContext) (engine.Source[rec], error) {
			// ~100 k records/s in all: a run of 60 k takes ~0.6 s.
			return &rateSource{seqSource: seqSource{n: n, keys: keys}, tick: time.Duration(ctx.Parallelism) * 160 * time.Microsecond}, nil
		}
		j := countJob(t, checkpointed(st, coord.ExactlyOnce), src, sink)
		done := make(chan error, 1)
		go func() { done <- j.Run(context.Background()) }()
		if run < stops {
			time.Sleep(50 * time.Millisecond)
			j.Stop()
		}
		err := <-done
		restored := j.RestoredFrom()
		st.Close()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if run > 0 && restored == 0 {
			t.Fatalf("run %d restored no checkpoint", run)
		}
		if got := len(sink.records()); run < stops && got >= n*2/3 {
			t.Fatalf("run %d was stopped after every record was committed (%d): the stop did not land mid-way", run, got)
		}
		if run >= stops {
			break
		}
	}
	checkCounts(t, sink.records(), n, keys)
}

func TestIncompatibleRestoreRefused(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	if err := countJob(t, checkpointed(st, coord.ExactlyOnce), newSeq(1000, 5), newMemSink()).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.MaxParallelism = 256
	err := countJob(t, opts, newSeq(1000, 5), newMemSink()).Run(context.Background())
	if !errors.Is(err, engine.ErrIncompatible) {
		t.Fatalf("got %v, want ErrIncompatible", err)
	}
}

// TestMetadataWriteFailureStopsJob: when checkpoint metadata cannot be
// written the job fails (never retried) and nothing is committed for that
// checkpoint or aborted.
func TestMetadataWriteFailureStopsJob(t *testing.T) {
	st := openStore(t, t.TempDir())
	sink := newMemSink()
	j := engine.NewJob("meta-fail", checkpointed(st, coord.ExactlyOnce))
	s := engine.FromSource(j, "source", newSeq(-1, 10))
	engine.ToSink(s, "sink", engine.Sink[rec](sink)) // no keyed state: checkpoints only write metadata
	go func() {
		time.Sleep(100 * time.Millisecond)
		st.Close() // every later metadata write fails
	}()
	err := j.Run(context.Background())
	if !errors.Is(err, coord.ErrPersistFailed) {
		t.Fatalf("got %v, want a failed metadata write", err)
	}
	for _, s := range j.CheckpointStats() {
		if s.Status == "failed" && strings.Contains(s.Reason, "declined") {
			t.Fatalf("checkpoint %d was aborted by a decline: %+v", s.ID, s)
		}
	}
}

// MapInPlace changes records where they are; a keyed Process that emits
// its (modified) input pointer passes them on without copies.
func TestMapInPlaceAndPointerProcess(t *testing.T) {
	j := engine.NewJob("inplace", engine.Options{Parallelism: 2})
	s := engine.FromSource(j, "source", newSeq(1000, 10))
	s = engine.MapInPlace(s, "negate", func(r *rec) { r.Seq = -r.Seq })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	out := engine.Process(ks, "mark", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
		return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
			r.Count = r.Key + 1
			emit(r)
			emit(r) // twice: the second copy must be identical
		}, nil
	})
	sink := newMemSink()
	engine.ToSink(out, "sink", engine.Sink[rec](sink))
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.committed) != 2000 {
		t.Fatalf("sink got %d records, want 2000", len(sink.committed))
	}
	seen := make(map[int64]int)
	for _, r := range sink.committed {
		if r.Seq > 0 || r.Key != (-r.Seq)%10 || r.Count != r.Key+1 {
			t.Fatalf("record %+v: MapInPlace or Process did not apply", r)
		}
		seen[r.Seq]++
	}
	for seq, n := range seen {
		if n != 2 {
			t.Fatalf("seq %d seen %d times, want 2", seq, n)
		}
	}
}

// TestKeySelectors runs the same keyed job with each kind of key selector.
// Int64Key and Uint64Key hash the key as a number, BytesKey as the bytes it
// appends: the same 8 bytes must land in the same key group on the same
// task (a misrouted key makes the job fail) and be the current key.
func TestKeySelectors(t *testing.T) {
	be := func(x int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(x)) }
	for name, sel := range map[string]engine.KeySelector[rec]{
		"Int64Key":  engine.Int64Key(func(r *rec) int64 { return r.Key }),
		"Uint64Key": engine.Uint64Key(func(r *rec) uint64 { return uint64(r.Key) }),
		"BytesKey":  engine.BytesKey(func(dst []byte, r *rec) []byte { return append(dst, be(r.Key)...) }),
	} {
		t.Run(name, func(t *testing.T) {
			j := engine.NewJob("keys", engine.Options{Parallelism: 3})
			s := engine.FromSource(j, "source", newSeq(3000, 50))
			out := engine.Process(engine.KeyBy(s, sel), "check", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
				return func(ctx *engine.KeyedContext, r *rec, emit func(*rec)) {
					if !bytes.Equal(ctx.Key(), be(r.Key)) {
						panic(fmt.Sprintf("current key %x, record key %d", ctx.Key(), r.Key))
					}
					r.Count = int64(ctx.Runtime().TaskIndex)
					emit(r)
				}, nil
			})
			sink := newMemSink()
			engine.ToSink(out, "sink", engine.Sink[rec](sink))
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(sink.committed) != 3000 {
				t.Fatalf("sink got %d records, want 3000", len(sink.committed))
			}
			task := make(map[int64]int64)
			for _, r := range sink.committed {
				if prev, ok := task[r.Key]; ok && prev != r.Count {
					t.Fatalf("key %d processed by tasks %d and %d", r.Key, prev, r.Count)
				}
				task[r.Key] = r.Count
			}
		})
	}
}

func TestMissingKeySelector(t *testing.T) {
	j := engine.NewJob("nokey", engine.Options{})
	s := engine.FromSource(j, "source", newSeq(10, 1))
	out := engine.Process(engine.KeyBy(s, engine.KeySelector[rec]{}), "count", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
		return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) { emit(r) }, nil
	})
	engine.ToSink(out, "sink", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"count"`) || !strings.Contains(err.Error(), "no key selector") {
		t.Fatalf("error %v does not name the operator and the missing key selector", err)
	}
}

// overReader claims more records than its buffer holds.
type overReader struct{ seqSource }

func (s *overReader) Read(buf []rec) (int, error) { return len(buf) + 1, nil }

func TestSourceReadCountChecked(t *testing.T) {
	j := engine.NewJob("overread", engine.Options{})
	s := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) { return &overReader{}, nil })
	engine.ToSink(s, "sink", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `operator "source`) || !strings.Contains(err.Error(), "returned 257 records for a buffer of 256") {
		t.Fatalf("got %v", err)
	}
}
