package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

func TestAutoRingCapacity(t *testing.T) {
	for _, c := range []struct {
		slot          uintptr
		batch, fanout int
		want          int
	}{
		{56, 256, 2, 4096},     // the typed pipeline's prec: 229 KiB
		{56, 256, 1, 4096},     // a forward edge
		{56, 256, 0, 4096},     // fan-out below 1 counts as 1
		{64, 256, 2, 4096},     // exactly DefaultRingBytes
		{65, 256, 2, 2048},     // just over: halve
		{56, 256, 3, 2048},     // 8192/3: the power of two below
		{56, 256, 4, 2048},     // 8192/4
		{56, 256, 16, 512},     // 8192/16
		{56, 256, 64, 512},     // 8192/64 = 128, but two batches
		{56, 16, 64, 128},      // ... of 16
		{272, 256, 2, 512},     // a YAML row: 139 KiB
		{272, 100, 2, 512},     // the byte budget, not the batch, decides
		{1 << 20, 256, 2, 512}, // huge records: still two batches
		{56, 1000, 2, 4096},    // 2*1000 rounds up to 2048 < 4096
		{56, 3000, 2, 8192},    // two batches need more than the default
		{1, 1, 1, DefaultRingSlots},
	} {
		if got := autoRingCapacity(c.slot, c.batch, c.fanout); got != c.want {
			t.Errorf("autoRingCapacity(%d, %d, %d) = %d, want %d", c.slot, c.batch, c.fanout, got, c.want)
		}
	}
	type prec struct{ a, b, c, d, e int64 }
	if got := autoRingCapacity(unsafe.Sizeof(element[prec]{}), 256, 2); got != 4096 {
		t.Errorf("element of 5 words: %d slots, want 4096", got)
	}
}

func TestValidateRingAndBatch(t *testing.T) {
	for _, c := range []struct {
		ring, batch int
		err         string // "" = valid
	}{
		{0, 256, ""},
		{0, MaxRingCapacity / 2, ""},
		{0, MaxRingCapacity/2 + 1, "batch size 524289 is outside [1, 524288]"},
		{0, -1, "batch size -1 is outside"},
		{1024, 256, ""},
		{64, 128, "batch size 128 is outside [1, ring capacity 64]"},
		{1, 1, "ring capacity 1 is outside [2, 1048576]"},
		{MaxRingCapacity + 1, 1, "ring capacity 1048577 is outside"},
	} {
		o := Options{RingCapacity: c.ring, BatchSize: c.batch}
		o.EnsureDefaults()
		err := o.Validate()
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ring %d batch %d: %v", c.ring, c.batch, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ring %d batch %d: error %v, want one containing %q", c.ring, c.batch, err, c.err)
		}
	}
}

type nopSource[T any] struct{}

func (nopSource[T]) Open(SourceContext, []byte) error { return nil }
func (nopSource[T]) Read([]T) (int, error)            { return 0, nil }
func (nopSource[T]) Position() ([]byte, error)        { return nil, nil }
func (nopSource[T]) Close() error                     { return nil }

type nopSink[T any] struct{}

func (nopSink[T]) Recover([][]byte) error                       { return nil }
func (nopSink[T]) NewWriter(SinkContext) (SinkWriter[T], error) { return nil, nil }

// ringCaps builds j's tasks, without running them, and returns the
// capacity of every input ring of the vertex whose name starts with
// prefix.
func ringCaps(t *testing.T, j *Job, prefix string) []int {
	t.Helper()
	if err := errors.Join(j.errs...); err != nil {
		t.Fatal(err)
	}
	vs, err := j.buildVertices()
	if err != nil {
		t.Fatal(err)
	}
	rt := &jobRuntime{job: j, opts: j.opts, vertices: vs, inputRings: make(map[*task][]any)}
	rt.buildTasks()
	var caps []int
	for _, v := range vs {
		if !strings.HasPrefix(v.name, prefix) {
			continue
		}
		for _, tk := range v.tasks {
			for _, r := range rt.inputRings[tk] {
				caps = append(caps, r.(interface{ Cap() int }).Cap())
			}
		}
	}
	return caps
}

// TestRingCapacityPerEdge checks the capacities the engine gives the rings
// of real edges: by slot size and fan-out by default, Options.RingCapacity
// when set.
func TestRingCapacityPerEdge(t *testing.T) {
	type small struct{ a, b, c, d, e int64 } // 56-byte slots
	type wide struct{ x [32]int64 }          // 272-byte slots
	build := func(o Options, par, downPar int, widen bool) *Job {
		o.Parallelism = par
		o.Pinning = PinOff
		j := NewJob("caps", o)
		s := FromSource(j, "src", func(SourceContext) (Source[small], error) { return nopSource[small]{}, nil })
		if downPar < 0 { // broadcast to -downPar tasks
			out := Map(Broadcast(s), "count", func(v small) small { return v }, WithParallelism(-downPar))
			ToSink(out, "sink", Sink[small](nopSink[small]{}), WithParallelism(-downPar))
			return j
		}
		if !widen {
			ks := KeyBy(s, Int64Key(func(v *small) int64 { return v.a }))
			out := Process(ks, "count", func(*Runtime) (func(*KeyedContext, *small, func(*small)), error) {
				return func(*KeyedContext, *small, func(*small)) {}, nil
			}, WithParallelism(downPar))
			ToSink(out, "sink", Sink[small](nopSink[small]{}), WithParallelism(downPar))
			return j
		}
		ws := Map(s, "widen", func(v small) wide { return wide{} })
		ks := KeyBy(ws, Int64Key(func(v *wide) int64 { return v.x[0] }))
		out := Process(ks, "count", func(*Runtime) (func(*KeyedContext, *wide, func(*wide)), error) {
			return func(*KeyedContext, *wide, func(*wide)) {}, nil
		}, WithParallelism(downPar))
		ToSink(out, "sink", Sink[wide](nopSink[wide]{}), WithParallelism(downPar))
		return j
	}
	all := func(caps []int, n, want int) {
		t.Helper()
		if len(caps) != n {
			t.Fatalf("%d rings, want %d", len(caps), n)
		}
		for _, c := range caps {
			if c != want {
				t.Fatalf("ring capacities %v, want %d each", caps, want)
			}
		}
	}
	// 2 -> 2 keyed, 56-byte slots: the typed pipeline's 4096.
	all(ringCaps(t, build(Options{}, 2, 2, false), "count"), 4, 4096)
	// 1 -> 16 keyed: 8192/16 = 512 slots per ring.
	all(ringCaps(t, build(Options{BatchSize: 16}, 1, 16, false), "count"), 16, 512)
	// 1 -> 4 keyed: 8192/4.
	all(ringCaps(t, build(Options{}, 1, 4, false), "count"), 4, 2048)
	// ... but never less than two batches.
	all(ringCaps(t, build(Options{BatchSize: 512}, 1, 16, false), "count"), 16, 1024)
	// 2 -> 2 keyed, 272-byte slots: 256 KiB holds 963, so 512.
	all(ringCaps(t, build(Options{BatchSize: 32}, 2, 2, true), "count"), 4, 512)
	// 1 -> 16 broadcast: every ring gets every record, so no scaling.
	all(ringCaps(t, build(Options{}, 1, -16, false), "count"), 16, 4096)
	// An explicit capacity wins.
	all(ringCaps(t, build(Options{RingCapacity: 64, BatchSize: 16}, 2, 2, false), "count"), 4, 64)
}

// TestLimits builds jobs at each limit the engine checks before it runs a
// job, and one past it.
func TestLimits(t *testing.T) {
	type rec struct{ k int64 }
	src := func(SourceContext) (Source[rec], error) { return nopSource[rec]{}, nil }
	key := Int64Key(func(v *rec) int64 { return v.k })
	keyedOp := func(ks KeyedStream[rec], name string, opts ...OpOption) Stream[rec] {
		return ProcessRaw(ks, name, func(_ *Runtime, next func(*rec)) (func(*rec), error) { return next, nil }, opts...)
	}
	// job is a source, n keyed operators (each its own vertex) and a sink
	// chained to the last, every one at parallelism par.
	job := func(o Options, par, n int) *Job {
		o.Parallelism = par
		j := NewJob("limits", o)
		s := FromSource(j, "source", src)
		for i := range n {
			s = keyedOp(KeyBy(s, key), fmt.Sprintf("op-%d", i))
		}
		ToSink(s, "sink", Sink[rec](nopSink[rec]{}))
		return j
	}
	f := func(name string, j *Job, want string) {
		t.Helper()
		err := j.Validate()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one containing %q", name, err, want)
		}
	}
	mp := Options{MaxParallelism: MaxParallelism}
	f("parallelism at the limit", job(mp, MaxParallelism, 1), "")
	f("parallelism past the limit", job(mp, MaxParallelism+1, 0), "parallelism 1025 is outside [1, 1024]")
	f("tasks at the limit", job(mp, MaxParallelism, MaxTasks/MaxParallelism-1), "")
	f("tasks past the limit", job(mp, MaxParallelism, MaxTasks/MaxParallelism), "has 5120 tasks, more than the limit 4096")
	f("keyed parallelism at max parallelism", job(Options{MaxParallelism: 8}, 8, 1), "")
	f("keyed parallelism past max parallelism", job(Options{MaxParallelism: 8}, 9, 1), `keyed operator "op-0": parallelism 9 exceeds max parallelism 8`)
	f("max parallelism at the limit", job(Options{MaxParallelism: keyed.MaxMaxParallelism}, 1, 1), "")
	f("max parallelism past the limit", job(Options{MaxParallelism: keyed.MaxMaxParallelism + 1}, 1, 1), "max parallelism 32769 is outside [1, 32768]")
	f("job name", NewJob("-x", Options{}), "job name")

	store := new(snapshot.Store) // Validate only checks that there is one
	cp := func(c coord.Options, retained int) Options {
		c.Interval = time.Second
		return Options{Checkpointing: &CheckpointOptions{Options: c, Store: store, Retained: retained}}
	}
	f("retained default", job(cp(coord.Options{}, 0), 1, 1), "")
	f("retained at the limit", job(cp(coord.Options{}, MaxRetained), 1, 1), "")
	f("retained past the limit", job(cp(coord.Options{}, MaxRetained+1), 1, 1), "retained checkpoints 1001 is outside [1, 1000]")
	f("max concurrent at the limit", job(cp(coord.Options{MaxConcurrent: coord.MaxConcurrentLimit}, 0), 1, 1), "")
	f("max concurrent past the limit", job(cp(coord.Options{MaxConcurrent: coord.MaxConcurrentLimit + 1}, 0), 1, 1), "MaxConcurrent must be in [1, 16]")
	noStore := cp(coord.Options{}, 0)
	noStore.Checkpointing.Store = nil
	if err := job(noStore, 1, 1).Validate(); !errors.Is(err, ErrNoStore) {
		t.Errorf("checkpointing without a store: %v, want ErrNoStore", err)
	}
}
