package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
)

// opCounts is one operator's expected (or read) records in and out.
type opCounts struct{ in, out int64 }

// taskCounts returns, per task ("vertex#index"), the records in and out of
// each operator, as "name in/out" strings in chain order.
func taskCounts(m engine.Metrics) map[string][]string {
	got := make(map[string][]string)
	for _, tm := range m.Tasks {
		key := fmt.Sprintf("%s#%d", tm.Vertex, tm.Index)
		for _, op := range tm.Operators {
			got[key] = append(got[key], fmt.Sprintf("%s %d/%d", op.Name, op.RecordsIn, op.RecordsOut))
		}
	}
	return got
}

// checkChains checks that within every task each operator's records out
// are the next operator's records in, and that every task reports its
// vertex's parallelism.
func checkChains(t *testing.T, m engine.Metrics) {
	t.Helper()
	for _, tm := range m.Tasks {
		for k := 1; k < len(tm.Operators); k++ {
			if a, b := tm.Operators[k-1], tm.Operators[k]; a.RecordsOut != b.RecordsIn {
				t.Errorf("task %s#%d: %s emitted %d records, %s received %d", tm.Vertex, tm.Index, a.Name, a.RecordsOut, b.Name, b.RecordsIn)
			}
		}
		if tm.BackpressuredNs < 0 || tm.IdleNs < 0 {
			t.Errorf("task %s#%d: negative times %d, %d", tm.Vertex, tm.Index, tm.BackpressuredNs, tm.IdleNs)
		}
	}
}

// sumOps returns the records in and out of each operator, summed over its
// tasks.
func sumOps(m engine.Metrics) map[string]opCounts {
	s := make(map[string]opCounts)
	for _, tm := range m.Tasks {
		for _, op := range tm.Operators {
			c := s[op.Name]
			c.in += op.RecordsIn
			c.out += op.RecordsOut
			s[op.Name] = c
		}
	}
	return s
}

func ownerOf(key int64, parallelism int) int {
	kg := keyed.KeyGroupOf(keyed.HashUint64Key(uint64(key)), keyed.DefaultMaxParallelism)
	return keyed.TaskForKeyGroup(keyed.DefaultMaxParallelism, parallelism, kg)
}

// TestMetricsPerOperatorAndTask runs source -> map -> filter -> keyBy ->
// process -> sink at parallelism 2 and checks every operator's records in
// and out in every task, exactly, against the same pipeline computed here.
func TestMetricsPerOperatorAndTask(t *testing.T) {
	t.Run("no-checkpoints", func(t *testing.T) {
		testMetricsPerOperatorAndTask(t, engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16})
	})
	// Barriers travel in the rings among the records: not records.
	t.Run("checkpoints", func(t *testing.T) {
		opts := checkpointed(openStore(t, t.TempDir()), coord.ExactlyOnce)
		opts.Checkpointing.Interval = time.Millisecond
		testMetricsPerOperatorAndTask(t, opts)
	})
}

func testMetricsPerOperatorAndTask(t *testing.T, opts engine.Options) {
	const n, keys, p = 20_000, 100, 2
	if opts.Parallelism != p {
		t.Fatalf("parallelism %d, want %d", opts.Parallelism, p)
	}
	j := engine.NewJob("metrics", opts)
	if m := j.Metrics(); m.Tasks != nil || m.Edges != nil || !m.At.IsZero() {
		t.Fatalf("Metrics before Run: %+v, want the zero value", m)
	}
	s := engine.FromSource(j, "source", newSeq(n, keys))
	s = engine.Map(s, "map", func(r rec) rec { r.Count = 1; return r })
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	// process emits the records of even Seq only: its out differs from its in.
	out := engine.Process(ks, "process", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
		return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
			if r.Seq%2 == 0 {
				emit(r)
			}
		}, nil
	})
	sink := newMemSink()
	engine.ToSink(out, "sink", engine.Sink[rec](sink))
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}

	var read, kept [p]int64
	var procIn, procOut [p]int64
	for i := int64(0); i < n; i++ {
		src := i % p // seqSource: task i reads i, i+p, ...
		read[src]++
		if i%3 == 0 {
			continue
		}
		kept[src]++
		d := ownerOf(i%keys, p)
		procIn[d]++
		if i%2 == 0 {
			procOut[d]++
		}
	}
	want := make(map[string][]string)
	for i := range p {
		want[fmt.Sprintf("source -> map -> filter#%d", i)] = []string{
			fmt.Sprintf("source %d/%d", read[i], read[i]),
			fmt.Sprintf("map %d/%d", read[i], read[i]),
			fmt.Sprintf("filter %d/%d", read[i], kept[i]),
		}
		want[fmt.Sprintf("process -> sink#%d", i)] = []string{
			fmt.Sprintf("process %d/%d", procIn[i], procOut[i]),
			fmt.Sprintf("sink %d/%d", procOut[i], procOut[i]),
		}
	}
	if opts.Checkpointing != nil && len(j.CheckpointStats()) == 0 {
		t.Fatal("no checkpoint: no barrier went through the rings")
	}
	m := j.Metrics()
	got := taskCounts(m)
	for task, w := range want {
		if g := strings.Join(got[task], ", "); g != strings.Join(w, ", ") {
			t.Errorf("task %s: got %s, want %s", task, g, strings.Join(w, ", "))
		}
	}
	if len(got) != len(want) {
		t.Errorf("tasks %v, want %d tasks", got, len(want))
	}
	if len(sink.records()) != int(procOut[0]+procOut[1]) {
		t.Errorf("the sink committed %d records, metrics say %d", len(sink.records()), procOut[0]+procOut[1])
	}
	checkChains(t, m)
	// Task order: vertex by vertex, index within vertex.
	for i, tm := range m.Tasks {
		if wantV := []string{"source -> map -> filter", "process -> sink"}[i/p]; tm.Vertex != wantV || tm.Index != i%p || tm.Parallelism != p {
			t.Errorf("task %d is %s#%d/%d, want %s#%d/%d", i, tm.Vertex, tm.Index, tm.Parallelism, wantV, i%p, p)
		}
		if tm.Operators[0].UID != tm.Operators[0].Name {
			t.Errorf("task %d: operator %q has uid %q", i, tm.Operators[0].Name, tm.Operators[0].UID)
		}
	}
	wantEdges := []engine.EdgeMetrics{{From: "source -> map -> filter", To: "process -> sink", Partitioning: "keyed", Rings: 4, CapacitySlots: 4 * 64}}
	if fmt.Sprint(m.Edges) != fmt.Sprint(wantEdges) {
		t.Errorf("edges %+v, want %+v", m.Edges, wantEdges)
	}
	if m.At.IsZero() {
		t.Error("Metrics.At is zero")
	}
}

// chainPaths builds a job that has every way of counting a hand-off inside
// a chain: after a one-to-one operator (source), between two user
// Transforms (a counting closure), before a FlatMap, into a keyed operator
// after AsKeyed (counts its input), out of a Filter before a Transform
// (counts its output), into a sink.
func chainPaths(j *engine.Job, n int64, sink engine.Sink[rec]) {
	s := engine.FromSource(j, "source", newSeq(n, 50))
	s = engine.Transform(s, "double", func(_ *engine.Runtime, next func(*rec)) (func(*rec), error) {
		return func(r *rec) { next(r); next(r) }, nil
	})
	s = engine.Transform(s, "even", func(_ *engine.Runtime, next func(*rec)) (func(*rec), error) {
		return func(r *rec) {
			if r.Seq%2 == 0 {
				next(r)
			}
		}, nil
	})
	s = engine.FlatMap(s, "triple", func(r rec, emit func(rec)) { emit(r); emit(r); emit(r) })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	s = engine.Process(ks, "first", countOp)
	ks = engine.AsKeyed(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	s = engine.Process(ks, "again", func(*engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
		return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
			if r.Count%2 == 0 {
				emit(r)
			}
		}, nil
	})
	s = engine.Filter(s, "quarter", func(r rec) bool { return r.Seq%4 == 0 })
	s = engine.Transform(s, "pass", func(_ *engine.Runtime, next func(*rec)) (func(*rec), error) {
		return next, nil
	})
	engine.ToSink(s, "sink", sink)
}

func TestMetricsChainPaths(t *testing.T) {
	const n = 6000
	j := engine.NewJob("paths", engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16})
	sink := newMemSink()
	chainPaths(j, n, sink)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The same computation, by hand: per key, "first" numbers the records
	// 1, 2, 3, ... in arrival order, which differs between runs; "again"
	// keeps every other one of each key: floor(count/2) per key.
	perKey := make(map[int64]int64)
	var even int64
	for i := int64(0); i < n; i++ {
		if i%2 == 0 {
			even++
			perKey[i%50] += 2 * 3 // doubled, then tripled
		}
	}
	var again int64
	for _, c := range perKey {
		again += c / 2
	}
	m := j.Metrics()
	checkChains(t, m)
	got := sumOps(m)
	want := map[string]opCounts{
		"source": {n, n},
		"double": {n, 2 * n},
		"even":   {2 * n, 2 * even},
		"triple": {2 * even, 6 * even},
		"first":  {6 * even, 6 * even},
		"again":  {6 * even, again},
		// quarter's in is again's out; its out must match the sink's count.
		"quarter": {again, int64(len(sink.records()))},
		"pass":    {int64(len(sink.records())), int64(len(sink.records()))},
		"sink":    {int64(len(sink.records())), int64(len(sink.records()))},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("operator %s: in/out %d/%d, want %d/%d", name, got[name].in, got[name].out, w.in, w.out)
		}
	}
	if len(got) != len(want) {
		t.Errorf("operators %v, want %d", got, len(want))
	}
	var quarter int64
	for _, r := range sink.records() {
		if r.Seq%4 != 0 {
			t.Fatalf("the sink got Seq %d", r.Seq)
		}
		quarter++
	}
	if quarter == 0 || quarter == again {
		t.Fatalf("the filter kept %d of %d: the test does not test it", quarter, again)
	}
}

// TestMetricsEdges: a broadcast, a rebalance, an operator with two
// consumers (its records counted once) and a tail with none.
func TestMetricsEdges(t *testing.T) {
	const n = 5000
	j := engine.NewJob("edges", engine.Options{Parallelism: 2, RingCapacity: 32, BatchSize: 8})
	s := engine.FromSource(j, "src", newSeq(n, 1), engine.WithParallelism(1))
	b := engine.Map(engine.Broadcast(s), "bmap", func(r rec) rec { return r }, engine.WithParallelism(3))
	sink := newMemSink()
	engine.ToSink(b, "sink", engine.Sink[rec](sink), engine.WithParallelism(3))
	engine.Transform(engine.Rebalance(s), "x2", func(_ *engine.Runtime, next func(*rec)) (func(*rec), error) {
		return func(r *rec) { next(r); next(r) }, nil
	})
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := j.Metrics()
	checkChains(t, m)
	got := sumOps(m)
	want := map[string]opCounts{"src": {n, n}, "bmap": {3 * n, 3 * n}, "sink": {3 * n, 3 * n}, "x2": {n, 2 * n}}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("operator %s: in/out %d/%d, want %d/%d", name, got[name].in, got[name].out, w.in, w.out)
		}
	}
	if len(sink.records()) != 3*n {
		t.Fatalf("sink got %d records", len(sink.records()))
	}
	wantEdges := []engine.EdgeMetrics{
		{From: "src", To: "bmap -> sink", Partitioning: "broadcast", Rings: 3, CapacitySlots: 3 * 32},
		{From: "src", To: "x2", Partitioning: "rebalance", Rings: 2, CapacitySlots: 2 * 32},
	}
	if fmt.Sprint(m.Edges) != fmt.Sprint(wantEdges) {
		t.Errorf("edges\n%+v, want\n%+v", m.Edges, wantEdges)
	}
}

// blockingSink's writer of task 1 blocks in Write until release is
// closed; task 0's writes at once.
type blockingSink struct{ release chan struct{} }

func (s *blockingSink) Recover([][]byte) error { return nil }
func (s *blockingSink) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[rec], error) {
	return &blockingWriter{release: s.release, block: ctx.Index == 1}, nil
}

type blockingWriter struct {
	countingWriter
	release chan struct{}
	block   bool
}

func (w *blockingWriter) Write(*rec) error {
	if w.block {
		<-w.release
	}
	return nil
}

// TestMetricsBackpressure: a sink task that does not write makes its ring
// fill up, and the source task that feeds it wait: its BackpressuredNs
// grows while it waits, and the edge's occupancy shows the full ring.
func TestMetricsBackpressure(t *testing.T) {
	const ringCap = 64
	j := engine.NewJob("slow", engine.Options{Parallelism: 2, RingCapacity: ringCap, BatchSize: 16})
	// One source task, on worker 0; sink task 1 runs on worker 1, so the
	// source cannot run it while it waits for room.
	s := engine.FromSource(j, "source", newSeq(-1, 10), engine.WithParallelism(1))
	sink := &blockingSink{release: make(chan struct{})}
	engine.ToSink(engine.Rebalance(s), "sink", engine.Sink[rec](sink))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	var once sync.Once
	finish := func() error {
		var err error
		once.Do(func() {
			close(sink.release)
			cancel()
			err = <-done
		})
		return err
	}
	defer finish() // also when the test fails: leave nothing running

	var first, last engine.Metrics
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := j.Metrics()
		if len(m.Tasks) > 0 && m.Tasks[0].BackpressuredNs > 0 && m.Edges[0].OccupiedSlots >= ringCap {
			if first.Tasks == nil {
				first = m
			} else if m.Tasks[0].BackpressuredNs > first.Tasks[0].BackpressuredNs+int64(5*time.Millisecond) {
				last = m
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no growing backpressure within 20 s: %+v", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	src, e := last.Tasks[0], last.Edges[0]
	if src.Vertex != "source" || e.From != "source" || e.To != "sink" || e.Rings != 2 || e.CapacitySlots != 2*ringCap {
		t.Fatalf("unexpected layout: task %+v, edge %+v", src, e)
	}
	// The blocked sink's ring is full, the other one (drained by the
	// sink task on the source's worker) holds at most one batch.
	if e.OccupiedSlots < ringCap || e.OccupiedSlots > ringCap+16 {
		t.Errorf("edge occupancy %d of %d, want the blocked ring's %d (+ at most a batch)", e.OccupiedSlots, e.CapacitySlots, ringCap)
	}
	// The time waited shows while the wait is still in progress, and
	// grows as fast as the clock: the source did nothing else.
	dt := last.At.Sub(first.At)
	dBP := time.Duration(src.BackpressuredNs - first.Tasks[0].BackpressuredNs)
	if dBP <= 0 || dBP > dt+time.Millisecond {
		t.Errorf("backpressure grew by %v in %v of clock", dBP, dt)
	}
	if got := src.Operators[0].RecordsOut; got < ringCap {
		t.Errorf("the source emitted %d records, less than a ring", got)
	}
	if err := finish(); err != nil && !strings.Contains(err.Error(), "cancel") {
		t.Fatal(err)
	}
}

// TestMetricsConcurrentReads reads the metrics from several goroutines
// while a job runs (run it with -race): every counter only grows, and
// after a graceful Stop the chains add up exactly.
func TestMetricsConcurrentReads(t *testing.T) {
	j := engine.NewJob("reads", engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16})
	chainPaths(j, -1, engine.Sink[rec](&countingSink{}))
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var once sync.Once
	finish := func() error {
		var err error
		once.Do(func() {
			j.Stop()
			err = <-done
			close(stop)
			wg.Wait()
		})
		return err
	}
	defer finish() // also when the test fails: leave nothing running
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prev engine.Metrics
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := j.Metrics()
				if prev.Tasks != nil {
					for i, tm := range m.Tasks {
						p := prev.Tasks[i]
						if tm.BackpressuredNs < p.BackpressuredNs || tm.IdleNs < p.IdleNs {
							t.Errorf("task %d: times went back: %+v after %+v", i, tm, p)
						}
						for k, op := range tm.Operators {
							if op.RecordsIn < p.Operators[k].RecordsIn || op.RecordsOut < p.Operators[k].RecordsOut {
								t.Errorf("task %d: %s counts went back: %+v after %+v", i, op.Name, op, p.Operators[k])
							}
						}
					}
				}
				prev = m
				// Leave the cores to the job's workers now and then.
				time.Sleep(20 * time.Microsecond)
			}
		}()
	}
	want := int64(200_000)
	if raceEnabled {
		want = 20_000
	}
	deadline := time.Now().Add(20 * time.Second)
	for sumOps(j.Metrics())["sink"].in < want {
		if time.Now().After(deadline) {
			t.Fatalf("the sink saw only %d records in 20 s", sumOps(j.Metrics())["sink"].in)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	m := j.Metrics()
	checkChains(t, m)
	// Across the keyed edge: every record the upstream emitted arrived.
	sums := sumOps(m)
	if sums["triple"].out != sums["first"].in || sums["first"].in == 0 {
		t.Errorf("triple emitted %d records, first received %d", sums["triple"].out, sums["first"].in)
	}
	for _, e := range m.Edges {
		if e.OccupiedSlots != 0 {
			t.Errorf("edge %+v holds records after the job ended", e)
		}
	}
}

// TestMetricsZeroAllocsPerRecord: counting adds no allocation to the
// record path, on a job that has every way of counting (chainPaths).
func TestMetricsZeroAllocsPerRecord(t *testing.T) {
	const small, large = 10_000, 100_000 // chainPaths triples them
	mallocs := func(n int64) float64 {
		return testing.AllocsPerRun(1, func() {
			j := engine.NewJob("allocs", engine.Options{Parallelism: 2, Pinning: engine.PinOff})
			chainPaths(j, n, engine.Sink[rec](&countingSink{}))
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if sumOps(j.Metrics())["sink"].in == 0 {
				t.Fatal("nothing reached the sink")
			}
		})
	}
	mallocs(small) // warm up
	a, b := mallocs(small), mallocs(large)
	perRecord := (b - a) / (large - small)
	t.Logf("allocations: %.0f for %d records, %.0f for %d: %.5f per extra record", a, small, b, large, perRecord)
	if perRecord > 0.001 {
		t.Fatalf("%.4f allocations per record with metrics, want 0", perRecord)
	}
}
