package bench

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/jobrun"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The "pipeline" suite runs source -> map -> key_by -> count -> sink at
// parallelism 2 on the engine (typed API), against the same pipeline written
// as a Go user would with plain channels: one goroutine per stage and per
// parallel instance, buffered channels of single records, a map per count
// instance. Target (reported, not asserted): engine >= 3x channels.
//
// The "yaml" suite runs the YAML job of examples/blackhole.yaml (filter,
// map, key_by, count, sum, blackhole) through jobrun — exactly what
// `streamd run` does — against the same steps written by hand over plain
// channels. Target: yaml >= 1x channels.
//
// The "checkpoint" suite runs the YAML counting job with 100 ms exactly-once
// checkpoints into a Pebble store (incremental, the default), against the
// same job without checkpoints and with full checkpoints (every changed
// key group rewritten). Target: >= 0.95 (issue 17: >= 0.97 at 100 k keys).
//
// One b.N iteration is one record; every case checks its record count.
func init() {
	Register(
		Case{Suite: "pipeline", Name: "channels", Records: 1, F: benchChannelsTyped},
		Case{Suite: "pipeline", Name: "engine", Baseline: "channels", Records: 1, F: benchEngineTyped},
		Case{Suite: "yaml", Name: "channels", Records: 1, F: benchChannelsYAML},
		Case{Suite: "yaml", Name: "streamd-yaml", Baseline: "channels", Records: 1, F: func(b *testing.B) { benchYAML(b, yamlPipeline, nil) }},
		Case{Suite: "checkpoint", Name: "no-checkpoints", Records: 1, F: func(b *testing.B) { benchYAML(b, checkpointPipeline(), nil) }},
		Case{Suite: "checkpoint", Name: "checkpoints-100ms", Baseline: "no-checkpoints", Records: 1, F: func(b *testing.B) {
			benchYAML(b, checkpointPipeline()+checkpointing100ms, noteCheckpoints)
		}},
		Case{Suite: "checkpoint", Name: "checkpoints-100ms-full", Baseline: "no-checkpoints,checkpoints-100ms", Records: 1, F: func(b *testing.B) {
			benchYAML(b, checkpointPipeline()+checkpointing100msFull, nil)
		}},
	)
}

const benchParallelism = 2

type prec struct {
	Key, Seq, Double, Count, Sum int64
}

const pipelineKeys = 1000

// benchChannelsTyped: source(2) -> map(2) -> count(2, by key) -> sink(2).
func benchChannelsTyped(b *testing.B) {
	b.ReportAllocs()
	n := int64(b.N)
	var total int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	mapIn := make([]chan prec, benchParallelism)
	countIn := make([]chan prec, benchParallelism)
	sinkIn := make([]chan prec, benchParallelism)
	for i := range benchParallelism {
		mapIn[i] = make(chan prec, 1024)
		countIn[i] = make(chan prec, 1024)
		sinkIn[i] = make(chan prec, 1024)
	}
	b.ResetTimer()
	var mapsDone, countsDone sync.WaitGroup
	for i := range benchParallelism {
		wg.Add(1)
		go func() { // source
			defer wg.Done()
			for s := int64(i); s < n; s += benchParallelism {
				mapIn[i] <- prec{Key: s % pipelineKeys, Seq: s}
			}
			close(mapIn[i])
		}()
		mapsDone.Add(1)
		go func() { // map, then key_by: route to the count instance owning the key
			defer mapsDone.Done()
			for r := range mapIn[i] {
				r.Double = r.Seq * 2
				countIn[r.Key%benchParallelism] <- r
			}
		}()
		countsDone.Add(1)
		go func() { // count
			defer countsDone.Done()
			counts := make(map[int64]int64)
			for r := range countIn[i] {
				counts[r.Key]++
				r.Count = counts[r.Key]
				sinkIn[i] <- r
			}
			close(sinkIn[i])
		}()
		wg.Add(1)
		go countInto(sinkIn[i], &wg, &mu, &total) // sink
	}
	mapsDone.Wait()
	for i := range benchParallelism {
		close(countIn[i])
	}
	countsDone.Wait()
	wg.Wait()
	if total != n {
		b.Fatalf("sink saw %d records, want %d", total, n)
	}
}

// countInto is the plain-channel pipelines' sink: it counts what arrives
// on in and adds it to *total when in is closed.
func countInto(in <-chan prec, done *sync.WaitGroup, mu *sync.Mutex, total *int64) {
	defer done.Done()
	var c int64
	for range in {
		c++
	}
	mu.Lock()
	*total += c
	mu.Unlock()
}

type benchSource struct {
	n, next, stride int64
}

func (s *benchSource) Open(ctx engine.SourceContext, _ []byte) error {
	s.next, s.stride = int64(ctx.Index), int64(ctx.Parallelism)
	return nil
}

func (s *benchSource) Read(buf []prec) (int, error) {
	i := 0
	for ; i < len(buf) && s.next < s.n; i++ {
		buf[i] = prec{Key: s.next % pipelineKeys, Seq: s.next}
		s.next += s.stride
	}
	if s.next >= s.n {
		return i, errEOF
	}
	return i, nil
}

func (s *benchSource) Position() ([]byte, error) { return nil, nil }
func (s *benchSource) Close() error              { return nil }

type countSink struct {
	mu sync.Mutex
	n  int64
}

func (c *countSink) Recover([][]byte) error { return nil }
func (c *countSink) NewWriter(engine.SinkContext) (engine.SinkWriter[prec], error) {
	return &countWriter{c: c}, nil
}

type countWriter struct {
	c *countSink
	n int64
}

func (w *countWriter) Write(*prec) error { w.n++; return nil }
func (w *countWriter) publish() {
	w.c.mu.Lock()
	w.c.n += w.n
	w.c.mu.Unlock()
	w.n = 0
}
func (w *countWriter) PreCommit(uint64) ([]byte, error) { w.publish(); return nil, nil }
func (w *countWriter) Commit(uint64) error              { return nil }
func (w *countWriter) Finish() error                    { w.publish(); return nil }
func (w *countWriter) Close() error                     { return nil }

func benchEngineTyped(b *testing.B) {
	b.ReportAllocs()
	n := int64(b.N)
	j := engine.NewJob("bench", engine.Options{Parallelism: benchParallelism})
	s := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[prec], error) { return &benchSource{n: n}, nil })
	s = engine.MapInPlace(s, "map", func(r *prec) { r.Double = r.Seq * 2 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *prec) int64 { return r.Key }))
	counted := engine.Process(ks, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *prec, func(*prec)), error) {
		st, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, r *prec, emit func(*prec)) {
			c, _ := st.Get()
			c++
			st.Put(c)
			r.Count = c
			emit(r)
		}, nil
	})
	sink := &countSink{}
	engine.ToSink(counted, "sink", engine.Sink[prec](sink))
	b.ResetTimer()
	if err := j.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if sink.n != n {
		b.Fatalf("sink saw %d records, want %d", sink.n, n)
	}
}

// benchChannelsYAML: source -> filter -> map -> count -> sum -> blackhole,
// each stage one goroutine per parallel instance, as the YAML job.
func benchChannelsYAML(b *testing.B) {
	b.ReportAllocs()
	n := int64(b.N)
	const p = benchParallelism
	mk := func() []chan prec {
		cs := make([]chan prec, p)
		for i := range cs {
			cs[i] = make(chan prec, 1024)
		}
		return cs
	}
	filterIn, mapIn, countIn, sumIn, sinkIn := mk(), mk(), mk(), mk(), mk()
	var total int64
	var mu sync.Mutex
	var sinks, maps sync.WaitGroup
	b.ResetTimer()
	for i := range p {
		go func() {
			for s := int64(i); s < n; s += p {
				filterIn[i] <- prec{Key: s % pipelineKeys, Seq: s}
			}
			close(filterIn[i])
		}()
		go func() {
			for r := range filterIn[i] {
				if r.Seq%3 != 0 {
					mapIn[i] <- r
				}
			}
			close(mapIn[i])
		}()
		maps.Add(1)
		go func() {
			defer maps.Done()
			for r := range mapIn[i] {
				r.Double = r.Seq * 2
				countIn[r.Key%p] <- r
			}
		}()
		go func() {
			counts := make(map[int64]int64)
			for r := range countIn[i] {
				counts[r.Key]++
				r.Count = counts[r.Key]
				sumIn[i] <- r
			}
			close(sumIn[i])
		}()
		go func() {
			sums := make(map[int64]int64)
			for r := range sumIn[i] {
				sums[r.Key] += r.Seq
				r.Sum = sums[r.Key]
				sinkIn[i] <- r
			}
			close(sinkIn[i])
		}()
		sinks.Add(1)
		go countInto(sinkIn[i], &sinks, &mu, &total)
	}
	maps.Wait()
	for i := range p {
		close(countIn[i])
	}
	sinks.Wait()
	if want := n - (n+2)/3; total != want {
		b.Fatalf("sink saw %d records, want %d", total, want)
	}
}

const yamlPipeline = `name: bench
parallelism: 2
source: {type: sequence, count: %d, keys: 1000}
pipeline:
  - filter: "seq %% 3 != 0"
  - map: {double: "seq * 2"}
  - key_by: key
  - count: {}
  - sum: seq
sink: {type: blackhole}
`

// checkpointKeys is the number of keys (state entries per aggregation) in
// the checkpoint suite: 100 k by default, 1 M with STREAMD_BENCH_FULL=1.
func checkpointKeys() int {
	if os.Getenv("STREAMD_BENCH_FULL") == "1" {
		return 1_000_000
	}
	return 100_000
}

func checkpointPipeline() string {
	return `name: bench
parallelism: 2
source: {type: sequence, count: %d, keys: ` + itoa(checkpointKeys()) + `}
pipeline:
  - key_by: key
  - count: {}
sink: {type: blackhole}
`
}

const checkpointing100ms = "checkpointing: {interval: 100ms, mode: exactly_once, compression: s2}\n"

// checkpointing100msFull writes every changed key group in full (the
// behaviour before incremental checkpoints), for comparison.
const checkpointing100msFull = "checkpointing: {interval: 100ms, mode: exactly_once, compression: s2, incremental: false}\n"

// benchYAML runs a YAML spec (with %d for the record count) through jobrun,
// like `streamd run`. onStats, if set, receives the checkpoint statistics.
func benchYAML(b *testing.B, specFmt string, onStats func([]engine.CheckpointStats)) {
	benchYAMLScaled(b, specFmt, 1, onStats)
}

// benchYAMLScaled is benchYAML for a case of recs records per iteration:
// the spec's %d is b.N × recs.
func benchYAMLScaled(b *testing.B, specFmt string, recs int, onStats func([]engine.CheckpointStats)) {
	b.ReportAllocs()
	plan, err := job.Load("bench.yaml", []byte(sprintf(specFmt, b.N*recs)))
	if err != nil {
		b.Fatal(err)
	}
	spec := plan.Spec
	opts := jobrun.Options{Logger: func(string, ...any) {}}
	if spec.Checkpointing != nil {
		dir, err := os.MkdirTemp("", "streamd-bench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		comp, _ := snapshot.ParseCompression(spec.Checkpointing.Compression)
		st, err := snapshot.Open(dir, snapshot.Options{Compression: comp, Logger: func(string, ...any) {}})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		opts.Store = st
	}
	built, err := jobrun.Build(plan, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := built.Job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if onStats != nil {
		onStats(built.Job.CheckpointStats())
	}
	if built.Blackhole == nil || built.Blackhole.Count() == 0 && b.N > 3 {
		b.Fatalf("the blackhole saw no records")
	}
}

// noteCheckpoints records the checkpoint durations and pauses of a run
// under full load.
func noteCheckpoints(stats []engine.CheckpointStats) {
	var e2e, pauses []time.Duration
	for _, s := range stats {
		if s.Status != "completed" {
			continue
		}
		e2e = append(e2e, s.Duration)
		for _, t := range s.Tasks {
			pauses = append(pauses, t.SyncPause)
		}
	}
	p50, p99 := percentiles(e2e)
	s50, s99 := percentiles(pauses)
	Note("checkpoint-e2e", "checkpoints every 100 ms under full load (%d keys): end-to-end p50 %v, p99 %v over %d checkpoints; task sync pause p50 %v, p99 %v",
		checkpointKeys(), p50.Round(time.Microsecond), p99.Round(time.Microsecond), len(e2e), s50, s99)
}
