package nexmark

import (
	"context"
	"runtime"
	"testing"

	gen "github.com/streamd/streamd/connectors/nexmark"
)

// TestBlackholeWriteAllocs: the sink's Write allocates nothing, plain or
// windowed.
func TestBlackholeWriteAllocs(t *testing.T) {
	s := NewSink(NewLatencyRecorder(1))
	s.latency.SourceWatermark("src", 0, 1<<40)
	plain := &blackholeWriter[Q0Result]{s: s, read: q0Read}
	rec := s.latency
	windowed := &blackholeWriter[Q0Result]{s: s, read: q0Read, after: func(v *Q0Result) { rec.WindowResult(v.DateTime) }}
	r := Q0Result{Price: 3, DateTime: 1}
	for name, w := range map[string]*blackholeWriter[Q0Result]{"plain": plain, "windowed": windowed} {
		// Fill the latency reservoir first: appends to it allocate until
		// it is full, by design.
		for range MaxLatencySamples {
			windowed.Write(&r)
		}
		if a := testing.AllocsPerRun(1000, func() { w.Write(&r) }); a != 0 {
			t.Errorf("%s Write: %v allocations, want 0", name, a)
		}
	}
	if plain.n == 0 || plain.sum != plain.n*3 {
		t.Errorf("plain writer counted %d results, sum %d", plain.n, plain.sum)
	}
}

// TestStageAllocs: the baselines' stages allocate nothing once their
// output batch has room.
func TestStageAllocs(t *testing.T) {
	cfg := gen.DefaultConfig()
	in := make([]Event, DefaultBaselineBatch)
	for i := range in {
		cfg.Fill(int64(i), &in[i])
	}
	out0 := make([]Q0Result, 0, len(in))
	out1 := make([]Q1Result, 0, len(in))
	out2 := make([]Q2Result, 0, len(in))
	for name, f := range map[string]func(){
		"q0": func() { out0 = q0Stage(in, out0[:0]) },
		"q1": func() { out1 = q1Stage(in, out1[:0]) },
		"q2": func() { out2 = q2Stage(in, out2[:0]) },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s stage: %v allocations per batch, want 0", name, a)
		}
	}
	if len(out0) == 0 || len(out0) != len(out1) {
		t.Errorf("stages produced %d and %d results", len(out0), len(out1))
	}
}

// TestQueryAllocsPerEvent runs each query on the engine and counts the
// process's allocations: the source's generator (a nexmark.Filler per
// task) cuts events' strings from 8 KiB chunks, at most 25 allocations per
// 1000 events (connectors/nexmark TestAllocsPerEvent), a few of them for
// the rare price it computes in big.Float arithmetic; the source, the
// queries' operators and the sink must add nothing per event, so what is
// left is that and the job's setup, a few hundred allocations.
func TestQueryAllocsPerEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs each query on 400 000 events")
	}
	const events = 400_000
	gen.EventAt(gen.Config{}, 4) // builds the generator's channel table, once per process
	for _, name := range []string{"q0", "q1", "q2"} {
		q, _ := Lookup(name)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := Run(context.Background(), q, RunConfig{Events: events, Parallelism: 2}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		perEvent := float64(after.Mallocs-before.Mallocs) / events
		t.Logf("%s: %.4f allocations per event, the generator's chunks included", name, perEvent)
		if perEvent > 0.035 {
			t.Errorf("%s: %.4f allocations per event, want at most the generator's 0.025 and a setup cost under 0.01 per event", name, perEvent)
		}
	}
}
