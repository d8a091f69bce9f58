package sequence

import (
	"context"
	"fmt"
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

// counted is a record with the running count of its key.
type counted struct{ I, Key, Count int64 }

// txnSink is a two-phase-commit sink in memory that outlives the runs of
// a test, as files on disk do.
type txnSink struct {
	mu        sync.Mutex
	committed []counted
	pending   map[string][]counted
	seq       int
}

func (s *txnSink) Recover(states [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		for _, name := range strings.Fields(string(st)) {
			s.committed = append(s.committed, s.pending[name]...)
			delete(s.pending, name)
		}
	}
	clear(s.pending)
	return nil
}

func (s *txnSink) NewWriter(engine.SinkContext) (engine.SinkWriter[counted], error) {
	return &txnWriter{s: s}, nil
}

func (s *txnSink) records() []counted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.committed)
}

type txnWriter struct {
	s       *txnSink
	open    []counted
	pending []string
	ids     []uint64
}

func (w *txnWriter) Write(v *counted) error { w.open = append(w.open, *v); return nil }

func (w *txnWriter) PreCommit(id uint64) ([]byte, error) {
	if len(w.open) > 0 {
		w.s.mu.Lock()
		w.s.seq++
		name := fmt.Sprintf("t%d", w.s.seq)
		w.s.pending[name] = w.open
		w.s.mu.Unlock()
		w.pending, w.ids, w.open = append(w.pending, name), append(w.ids, id), nil
	}
	return []byte(strings.Join(w.pending, " ")), nil
}

func (w *txnWriter) Commit(id uint64) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	n := 0
	for i, name := range w.pending {
		if w.ids[i] > id {
			w.pending[n], w.ids[n] = name, w.ids[i]
			n++
			continue
		}
		w.s.committed = append(w.s.committed, w.s.pending[name]...)
		delete(w.s.pending, name)
	}
	w.pending, w.ids = w.pending[:n], w.ids[:n]
	return nil
}

func (w *txnWriter) Finish() error { return nil }
func (w *txnWriter) Close() error  { return nil }

// seqJob is sequence → key by key → running count → sink, all at
// parallelism p.
func seqJob(st *snapshot.Store, p int, opts Options[counted], sink *txnSink, plain bool) *engine.Job {
	j := engine.NewJob("seq-rescale", engine.Options{
		Parallelism:   p,
		Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 10 * time.Millisecond}, Store: st},
		Logger:        func(string, ...any) {},
	})
	var s engine.Stream[counted]
	if plain {
		s = engine.FromSource(j, "seq", New(opts))
	} else {
		src := NewSplitSource(opts)
		s = engine.FromSplitSource(j, "seq", src, src.NewReader)
	}
	ks := engine.KeyBy(s, engine.Int64Key(func(r *counted) int64 { return r.Key }))
	out := engine.Process(ks, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *counted, func(*counted)), error) {
		c, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, r *counted, emit func(*counted)) {
			n, _ := c.Get()
			n++
			c.Put(n)
			r.Count = n
			emit(r)
		}, nil
	})
	engine.ToSink(out, "sink", engine.Sink[counted](sink))
	return j
}

// The sequence source in a checkpointed job at parallelism 2, stopped
// (Stop takes a final checkpoint), restored at 3, then 1, then 4, where
// it runs to the end: every i reaches the sink exactly once, and each
// key's running counts are exactly 1..n. The first run uses the plain
// source (New), as jobs did before the source became splittable: its
// checkpoint restores into the splittable one at another parallelism.
func TestSequenceRescalesInAJob(t *testing.T) {
	const count, keys = 40_000, 13
	opts := Options[counted]{Count: count, Keys: keys, RatePerSec: 100_000, Make: func(i, key int64, v *counted) { *v = counted{I: i, Key: key} }}
	dir := t.TempDir()
	sink := &txnSink{pending: make(map[string][]counted)}
	pars := []int{2, 3, 1, 4}
	for run, p := range pars {
		st, err := snapshot.Open(dir, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		j := seqJob(st, p, opts, sink, run == 0)
		done := make(chan error, 1)
		go func() { done <- j.Run(context.Background()) }()
		if run < len(pars)-1 {
			// Stop once a checkpoint with keyed state completed.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				if slices.ContainsFunc(j.CheckpointStats(), func(s engine.CheckpointStats) bool { return s.Status == "completed" && s.StoredBytes > 0 }) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no checkpoint with keyed state within a minute")
				}
			}
			time.Sleep(30 * time.Millisecond)
			j.Stop()
		}
		if err := <-done; err != nil {
			t.Fatalf("run %d at parallelism %d: %v", run, p, err)
		}
		if run > 0 && j.RestoredFrom() == 0 {
			t.Fatalf("run %d restored nothing", run)
		}
		if got := len(sink.records()); run < len(pars)-1 && got >= count {
			t.Fatalf("run %d emitted everything before its stop", run)
		}
		st.Close()
	}
	seen := make([]int, count)
	perKey := make(map[int64][]int64)
	for _, r := range sink.records() {
		if r.Key != r.I%keys {
			t.Fatalf("record %+v has the wrong key", r)
		}
		seen[r.I]++
		perKey[r.Key] = append(perKey[r.Key], r.Count)
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("record %d reached the sink %d times", i, n)
		}
	}
	for k, counts := range perKey {
		slices.Sort(counts)
		for i, c := range counts {
			if c != int64(i+1) {
				t.Fatalf("key %d: counts are not 1..%d (position %d has %d)", k, len(counts), i, c)
			}
		}
	}
}
