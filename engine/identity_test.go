package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// shape is one run's layout of source -> [filter] -> [map] -> keyBy ->
// count -> [double] -> sink: which stateless steps exist, and the
// parallelism and chaining of each.
type shape struct {
	source, filter, count, sink int  // parallelism (filter 0: no filter step)
	mapStep                     bool // a stateless map after the filter
	unchain                     bool // a ring between every pair of steps
	double                      bool // a keyed step "double" after count (stateful)
	countSig                    string
}

func shapedJob(t *testing.T, st *snapshot.Store, sh shape, sink *memSink, n, keys int64) *engine.Job {
	t.Helper()
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.Parallelism = 1
	j := engine.NewJob("counts", opts)
	chain := func(p int) []engine.OpOption {
		o := []engine.OpOption{engine.WithParallelism(p)}
		if sh.unchain {
			o = append(o, engine.DisableChaining())
		}
		return o
	}
	src := func(ctx engine.SourceContext) (engine.Source[rec], error) {
		return &rateSource{seqSource: seqSource{n: n, keys: keys}, tick: time.Duration(ctx.Parallelism) * 200 * time.Microsecond}, nil
	}
	s := engine.FromSource(j, "source", src, engine.WithParallelism(sh.source))
	if sh.filter > 0 {
		s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 }, chain(sh.filter)...)
	}
	if sh.mapStep {
		s = engine.Map(s, "map", func(r rec) rec { return r }, chain(max(sh.filter, sh.source))...)
	}
	counted := engine.Process(engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key })), "count",
		countOp, append(chain(sh.count), engine.WithStateSignature(sh.countSig))...)
	if sh.double {
		counted = engine.Process(engine.AsKeyed(counted, engine.Int64Key(func(r *rec) int64 { return r.Key })), "double",
			func(rt *engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
				return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) { emit(r) }, nil
			}, engine.WithParallelism(sh.count))
	}
	engine.ToSink(counted, "sink", engine.Sink[rec](sink), engine.WithParallelism(sh.sink))
	return j
}

// TestStateFollowsOperators is issue 16's design fault: state belongs to
// operators, not chains. Between runs stopped mid-way, the job changes its
// chaining (filter at another parallelism than the source, every step
// unchained, a map added), the parallelism of its stateless steps, keyed
// operator and sink, and adds a stateful operator; the keyed state follows
// the count operator into each layout and the output is exactly once.
// Before, the second run was refused: "it has no state for the chain".
func TestStateFollowsOperators(t *testing.T) {
	const n, keys = 30_000, 40
	dir := t.TempDir()
	sink := newMemSink()
	shapes := []shape{
		{source: 2, filter: 2, count: 2, sink: 2},                              // source -> filter chained
		{source: 2, filter: 3, count: 3, sink: 1},                              // filter rescaled: its own chain
		{source: 2, filter: 1, count: 1, sink: 2, mapStep: true},               // a map added
		{source: 2, filter: 2, count: 2, sink: 2, unchain: true},               // every step its own task
		{source: 2, filter: 2, count: 3, sink: 3, double: true, mapStep: true}, // a new stateful step starts empty
	}
	restored := 0
	for i, sh := range shapes {
		st := openStore(t, dir)
		j := shapedJob(t, st, sh, sink, n, keys)
		if i < len(shapes)-1 {
			runStopped(t, j, 30*time.Millisecond)
		} else if err := j.Run(context.Background()); err != nil {
			t.Fatalf("run %d (%+v): %v", i, sh, err)
		}
		if i > 0 && j.RestoredFrom() > 0 {
			restored++
		}
		st.Close()
		if got := len(sink.records()); i < len(shapes)-1 && got >= int(n*2/3) {
			t.Fatalf("run %d committed everything (%d): the test did not stop mid-way", i, got)
		}
	}
	if restored != len(shapes)-1 {
		t.Fatalf("%d of %d later runs restored a checkpoint", restored, len(shapes)-1)
	}
	checkCounts(t, sink.records(), n, keys)
}

// An incompatible change of a stateful operator is refused, naming it.
func TestIncompatibleOperatorChangeNamed(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	base := shape{source: 2, filter: 2, count: 2, sink: 2, countSig: "count int64"}
	if err := shapedJob(t, st, base, newMemSink(), 2000, 10).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := func(sh shape, want ...string) {
		t.Helper()
		err := shapedJob(t, st, sh, newMemSink(), 2000, 10).Run(context.Background())
		var ie *engine.IncompatibleError
		if !errors.Is(err, engine.ErrIncompatible) || !errors.As(err, &ie) {
			t.Fatalf("%+v: got %v, want ErrIncompatible", sh, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%+v: %v does not say %q", sh, err, w)
			}
		}
	}
	sig := base
	sig.countSig = "count float64"
	f(sig, `the state of operator "count" has changed meaning`, `"count int64"`, `"count float64"`)
	src := base
	src.source = 3
	f(src, `source "source" had parallelism 2, now 3`)

	// A keyed operator that is gone: its state would be dropped.
	j := engine.NewJob("counts", checkpointed(st, coord.ExactlyOnce))
	s := engine.FromSource(j, "source", newSeq(2000, 10), engine.WithParallelism(2))
	engine.ToSink(s, "sink", engine.Sink[rec](newMemSink()), engine.WithParallelism(2))
	err := j.Run(context.Background())
	if !errors.Is(err, engine.ErrIncompatible) || !strings.Contains(err.Error(), `keyed state of operator "count", which the job no longer has`) {
		t.Fatalf("dropped keyed operator: %v", err)
	}
	st.Close()
}

// A uid keeps an operator's state across a rename.
func TestUIDKeepsStateAcrossRename(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	const n, keys = 20_000, 10
	run := func(name string, stop bool) *engine.Job {
		st := openStore(t, dir)
		defer st.Close()
		j := engine.NewJob("counts", checkpointed(st, coord.ExactlyOnce))
		src := func(ctx engine.SourceContext) (engine.Source[rec], error) {
			return &rateSource{seqSource: seqSource{n: n, keys: keys}, tick: time.Duration(ctx.Parallelism) * 200 * time.Microsecond}, nil
		}
		s := engine.FromSource(j, "source", src)
		s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
		counted := engine.Process(engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key })), name,
			countOp, engine.WithUID("counter"))
		engine.ToSink(counted, "sink", engine.Sink[rec](sink))
		if stop {
			runStopped(t, j, 30*time.Millisecond)
		} else if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return j
	}
	run("count", true)
	if j := run("count-renamed", false); j.RestoredFrom() == 0 {
		t.Fatal("the renamed operator did not restore")
	}
	checkCounts(t, sink.records(), n, keys)
}
