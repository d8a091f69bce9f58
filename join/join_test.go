package join_test

import (
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
	"github.com/streamd/streamd/join"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

type rec struct{ Key, Seq int64 }

type recCodec struct{}

func (recCodec) Append(dst []byte, v rec) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(v.Key))
	return binary.BigEndian.AppendUint64(dst, uint64(v.Seq))
}

func (recCodec) Decode(b []byte) (rec, error) {
	if len(b) != 16 {
		return rec{}, fmt.Errorf("%w: rec of %d bytes", keyed.ErrCorrupt, len(b))
	}
	return rec{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// pair is a join result: the left and right Seq.
type pair struct{ Key, L, R int64 }

// seq emits Seq i for i in [0, n) (over the tasks), Key = i % keys, at most
// one batch of 8 per tick when tick > 0.
type seq struct {
	n, keys, next, stride int64
	tick                  time.Duration
	last                  time.Time
}

func source(n, keys int64, tick time.Duration) func(engine.SourceContext) (engine.Source[rec], error) {
	return func(engine.SourceContext) (engine.Source[rec], error) { return &seq{n: n, keys: keys, tick: tick}, nil }
}

func (s *seq) Open(ctx engine.SourceContext, state []byte) error {
	s.stride, s.next = int64(ctx.Parallelism), int64(ctx.Index)
	if state != nil {
		s.next = int64(binary.BigEndian.Uint64(state))
	}
	return nil
}

func (s *seq) Read(buf []rec) (int, error) {
	if s.tick > 0 {
		if time.Since(s.last) < s.tick {
			return 0, nil
		}
		s.last = time.Now()
		buf = buf[:min(len(buf), 8)]
	}
	i := 0
	for ; i < len(buf) && s.next < s.n; i++ {
		buf[i] = rec{Key: s.next % s.keys, Seq: s.next}
		s.next += s.stride
	}
	if s.next >= s.n {
		return i, io.EOF
	}
	return i, nil
}

func (s *seq) Position() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(s.next)), nil
}
func (s *seq) Close() error { return nil }

// txSink is a two-phase-commit sink in memory: a checkpoint's pairs
// become visible when it completes; a crash loses the rest.
type txSink struct {
	mu        sync.Mutex
	committed []pair
	pending   map[string][]pair
	seq       int
}

func (m *txSink) Recover(states [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range states {
		for _, name := range strings.Fields(string(st)) {
			m.committed = append(m.committed, m.pending[name]...)
			delete(m.pending, name)
		}
	}
	clear(m.pending)
	return nil
}

func (m *txSink) NewWriter(engine.SinkContext) (engine.SinkWriter[pair], error) {
	return &txWriter{m: m}, nil
}

func (m *txSink) pairs() []pair {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.committed)
}

type txWriter struct {
	m       *txSink
	open    []pair
	pending map[uint64]string
}

func (w *txWriter) Write(v *pair) error { w.open = append(w.open, *v); return nil }

func (w *txWriter) PreCommit(id uint64) ([]byte, error) {
	if w.pending == nil {
		w.pending = make(map[uint64]string)
	}
	if len(w.open) > 0 {
		w.m.mu.Lock()
		w.m.seq++
		name := fmt.Sprintf("t%d", w.m.seq)
		w.m.pending[name] = w.open
		w.m.mu.Unlock()
		w.pending[id] = name
		w.open = nil
	}
	var names []string
	for _, n := range w.pending {
		names = append(names, n)
	}
	return []byte(strings.Join(names, " ")), nil
}

func (w *txWriter) Commit(id uint64) error {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for cid, name := range w.pending {
		if cid <= id {
			w.m.committed = append(w.m.committed, w.m.pending[name]...)
			delete(w.m.pending, name)
			delete(w.pending, cid)
		}
	}
	return nil
}

func (w *txWriter) Finish() error {
	w.m.mu.Lock()
	w.m.committed = append(w.m.committed, w.open...)
	w.m.mu.Unlock()
	w.open = nil
	return nil
}

func (w *txWriter) Close() error { return nil }

const tsStep = 10 // ms between consecutive Seq

type build func(j *engine.Job, l, r engine.KeyedStream[rec]) engine.Stream[pair]

func joinJob(opts engine.Options, left, right func(engine.SourceContext) (engine.Source[rec], error), b build, sink *txSink) *engine.Job {
	j := engine.NewJob("join", opts)
	ws := engine.WatermarkStrategy[rec]{Timestamp: func(r *rec) int64 { return r.Seq * tsStep }, Interval: 2 * time.Millisecond}
	l := engine.WithWatermarks(engine.FromSource(j, "left", left), ws)
	r := engine.WithWatermarks(engine.FromSource(j, "right", right, engine.WithParallelism(1)), ws)
	key := engine.Int64Key(func(r *rec) int64 { return r.Key })
	engine.ToSink(b(j, engine.KeyBy(l, key), engine.KeyBy(r, key)), "sink", sink)
	return j
}

func inner(j *engine.Job, l, r engine.KeyedStream[rec]) engine.Stream[pair] {
	return join.Inner(l, r, "join", join.Options[rec, rec]{LeftCodec: recCodec{}, RightCodec: recCodec{}},
		func(l, r *rec, out *pair) { *out = pair{l.Key, l.Seq, r.Seq} }, engine.WithParallelism(3))
}

const windowMs = 500

func tumbling(j *engine.Job, l, r engine.KeyedStream[rec]) engine.Stream[pair] {
	return join.Tumbling(l, r, "join", windowMs*time.Millisecond, 0, join.Options[rec, rec]{LeftCodec: recCodec{}, RightCodec: recCodec{}},
		func(w join.Window, l, r *rec, out *pair) {
			if l.Seq*tsStep < w.Start || l.Seq*tsStep >= w.End || r.Seq*tsStep < w.Start || r.Seq*tsStep >= w.End {
				panic(fmt.Sprintf("pair %d, %d is not in window %v", l.Seq, r.Seq, w))
			}
			*out = pair{l.Key, l.Seq, r.Seq}
		}, engine.WithParallelism(3))
}

// reference is the batch join: every (left, right) with equal keys (and,
// windowed, in the same window), the right side's Seq i having key i%rk.
func reference(nl, nr, keys, rkeys int64, windowed bool) []pair {
	var out []pair
	for i := int64(0); i < nl; i++ {
		for k := int64(0); k < nr; k++ {
			if i%keys != k%rkeys || (windowed && i*tsStep/windowMs != k*tsStep/windowMs) {
				continue
			}
			out = append(out, pair{i % keys, i, k})
		}
	}
	return out
}

func sorted(ps []pair) []pair {
	slices.SortFunc(ps, func(a, b pair) int {
		if a.L != b.L {
			return int(a.L - b.L)
		}
		return int(a.R - b.R)
	})
	return ps
}

func check(t *testing.T, got, want []pair) {
	t.Helper()
	got, want = sorted(got), sorted(want)
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%d pairs, want %d; first difference at %d: got %v, want %v", len(got), len(want), i, got[i], want[i])
			}
		}
		t.Fatalf("%d pairs, want %d", len(got), len(want))
	}
}

func TestJoins(t *testing.T) {
	const nl, nr, keys, rkeys = 3000, 400, 50, 50
	for _, c := range []struct {
		name     string
		b        build
		windowed bool
	}{{"inner", inner, false}, {"tumbling", tumbling, true}} {
		want := reference(nl, nr, keys, rkeys, c.windowed)
		t.Run(c.name, func(t *testing.T) {
			sink := &txSink{pending: map[string][]pair{}}
			j := joinJob(engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16}, source(nl, keys, 0), source(nr, rkeys, 0), c.b, sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			check(t, sink.pairs(), want)
		})
		t.Run(c.name+"/crash", func(t *testing.T) {
			st, err := snapshot.Open(t.TempDir(), snapshot.Options{Logger: func(string, ...any) {}})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			opts := engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16, Logger: func(string, ...any) {},
				Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 5 * time.Millisecond}, Store: st}}
			sink := &txSink{pending: map[string][]pair{}}
			j := joinJob(opts, source(nl, keys, 200*time.Microsecond), source(nr, rkeys, time.Millisecond), c.b, sink)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- j.Run(ctx) }()
			for deadline := time.Now().Add(time.Minute); len(sink.pairs()) == 0 || completed(j) < 3; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no output and three checkpoints within a minute")
				}
			}
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			before := len(sink.pairs())
			j = joinJob(opts, source(nl, keys, 0), source(nr, rkeys, 0), c.b, sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d of %d pairs committed before the crash", before, len(want))
			check(t, sink.pairs(), want)
		})
	}
}

func completed(j *engine.Job) int {
	n := 0
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" {
			n++
		}
	}
	return n
}
