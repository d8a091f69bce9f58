package engine_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
)

// Event time in the tests: record Seq i happens at i·10 ms, so each source
// task's records are in timestamp order and, with the watermark the
// minimum over the tasks, no record is ever late.
const tsStepMs = 10

func seqTS(r *rec) int64 { return r.Seq * tsStepMs }

// windowCounts is a tumbling event-time window count per key written with
// KeyedProcess and timers: a map state from window end to count, a timer
// at each window's last millisecond. Its output is rec{Key, Seq: window
// end, Count}.
func windowCounts(sizeMs int64) func(rt *engine.Runtime) (engine.KeyedProcessor[rec, rec], error) {
	return windowCountsSeen(sizeMs, nil)
}

// windowCountsSeen is windowCounts that also records in *firstWM the
// watermark the operator had when it processed its first record.
func windowCountsSeen(sizeMs int64, firstWM *atomic.Int64) func(rt *engine.Runtime) (engine.KeyedProcessor[rec, rec], error) {
	return func(rt *engine.Runtime) (engine.KeyedProcessor[rec, rec], error) {
		counts, err := keyed.NewMapState(rt.Backend(), rt.StateName("counts"), keyed.Int64Codec, keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return engine.KeyedProcessor[rec, rec]{}, err
		}
		return engine.KeyedProcessor[rec, rec]{
			Process: func(ctx *engine.KeyedContext, r *rec, _ func(*rec)) {
				if firstWM != nil {
					firstWM.CompareAndSwap(0, ctx.CurrentWatermark())
				}
				ts := ctx.Timestamp()
				if ts != seqTS(r) {
					panic(fmt.Sprintf("record %d has timestamp %d, want %d", r.Seq, ts, seqTS(r)))
				}
				if ts <= ctx.CurrentWatermark() {
					panic(fmt.Sprintf("record %d at %d is late: watermark %d", r.Seq, ts, ctx.CurrentWatermark()))
				}
				end := (ts/sizeMs + 1) * sizeMs
				n, _ := counts.Get(end)
				counts.Put(end, n+1)
				ctx.RegisterEventTimeTimer(end - 1)
			},
			OnTimer: func(ctx *engine.KeyedContext, ts int64, domain engine.TimeDomain, emit func(*rec)) {
				if domain != engine.EventTime || ctx.Timestamp() != ts {
					panic(fmt.Sprintf("timer %d: domain %v, timestamp %d", ts, domain, ctx.Timestamp()))
				}
				end := ts + 1
				n, ok := counts.Get(end)
				if !ok {
					panic(fmt.Sprintf("timer %d fired for a window without state", ts))
				}
				counts.Remove(end)
				key := int64(0)
				for _, b := range ctx.Key() {
					key = key<<8 | int64(b)
				}
				emit(&rec{Key: key, Seq: end, Count: n})
			},
		}, nil
	}
}

func windowJob(opts engine.Options, src func(engine.SourceContext) (engine.Source[rec], error), sizeMs int64, sink engine.Sink[rec]) *engine.Job {
	return windowJobSeen(opts, src, sizeMs, sink, nil)
}

func windowJobSeen(opts engine.Options, src func(engine.SourceContext) (engine.Source[rec], error), sizeMs int64, sink engine.Sink[rec], firstWM *atomic.Int64) *engine.Job {
	j := engine.NewJob("counts", opts)
	s := engine.WithWatermarks(engine.FromSource(j, "source", src), engine.WatermarkStrategy[rec]{
		Timestamp: seqTS, Interval: 2 * time.Millisecond,
	})
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	counted := engine.KeyedProcess(ks, "window", windowCountsSeen(sizeMs, firstWM))
	engine.ToSink(counted, "sink", sink)
	return j
}

// windowReference is the batch computation windowJob must equal: per key
// and window end, the number of filtered records.
func windowReference(n, keys, sizeMs int64) map[[2]int64]int64 {
	want := make(map[[2]int64]int64)
	for i := int64(0); i < n; i++ {
		if i%3 != 0 {
			want[[2]int64{i % keys, (i*tsStepMs/sizeMs + 1) * sizeMs}]++
		}
	}
	return want
}

// checkWindows verifies that out holds each (key, window) of want exactly
// once, with its count.
func checkWindows(t *testing.T, out []rec, want map[[2]int64]int64) {
	t.Helper()
	got := make(map[[2]int64]int64)
	for _, r := range out {
		k := [2]int64{r.Key, r.Seq}
		if _, dup := got[k]; dup {
			t.Fatalf("window (key %d, end %d) fired twice", r.Key, r.Seq)
		}
		got[k] = r.Count
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("window (key %d, end %d): count %d, want %d (%d windows, want %d)", k[0], k[1], got[k], n, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d windows, want %d", len(got), len(want))
	}
}

func TestEventTimeWindowsFireOnce(t *testing.T) {
	for _, par := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallelism=%d", par), func(t *testing.T) {
			sink := newMemSink()
			j := windowJob(engine.Options{Parallelism: par, RingCapacity: 64, BatchSize: 16}, newSeq(30000, 7), 1000, sink)
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkWindows(t, sink.records(), windowReference(30000, 7, 1000))
			// The end of input brought every task to MaxWatermark, and
			// Metrics shows it.
			for _, tm := range j.Metrics().Tasks {
				if tm.Watermark == nil || *tm.Watermark != engine.MaxWatermark {
					t.Fatalf("task %s[%d]: watermark %v after the end of input, want MaxWatermark", tm.Vertex, tm.Index, tm.Watermark)
				}
			}
		})
	}
}

// TestEventTimeWindowsAcrossCrash cancels a checkpointed window job (a
// crash: uncommitted output is lost) after some checkpoints, restores it,
// and checks the committed output: every window exactly once. The
// restored watermark and timers make a window that fired before the
// checkpoint not fire again, and one pending at the checkpoint fire after.
func TestEventTimeWindowsAcrossCrash(t *testing.T) {
	const n, keys, size = 6000, 5, 200
	st := openStore(t, t.TempDir())
	defer st.Close()
	sink := newMemSink()
	opts := checkpointed(st, coord.ExactlyOnce)
	j := windowJob(opts, slowSeq(n, keys), size, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if len(sink.records()) > 0 && completedCheckpoints(j) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no window output and three checkpoints within a minute")
		}
	}
	cancel()
	<-done
	before := len(sink.records())
	var firstWM atomic.Int64
	j = windowJobSeen(opts, newSeq(n, keys), size, sink, &firstWM)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Windows fired before the crash: the restored operator's watermark
	// is the one checkpointed with it, not MinWatermark.
	if wm := firstWM.Load(); wm <= 0 {
		t.Fatalf("the restored window operator started from watermark %d, not the checkpointed one", wm)
	}
	t.Logf("%d windows committed before the crash, %d in all", before, len(sink.records()))
	checkWindows(t, sink.records(), windowReference(n, keys, size))
}

func completedCheckpoints(j *engine.Job) int {
	n := 0
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" {
			n++
		}
	}
	return n
}

// idleSource: task 0 emits n records, then nothing, forever; every other
// task never emits anything.
type idleSource struct {
	seqSource
	task int
}

func (s *idleSource) Open(ctx engine.SourceContext, state []byte) error {
	s.task = ctx.Index
	s.seqSource.stride = 1
	return nil
}

func (s *idleSource) Read(buf []rec) (int, error) {
	if s.task != 0 || s.next >= s.n {
		return 0, nil
	}
	n, _ := s.seqSource.Read(buf)
	return n, nil
}

// liveSink makes every record visible at once (no transactions).
type liveSink struct {
	mu  sync.Mutex
	out []rec
}

func (l *liveSink) Recover([][]byte) error { return nil }
func (l *liveSink) NewWriter(engine.SinkContext) (engine.SinkWriter[rec], error) {
	return liveWriter{l}, nil
}
func (l *liveSink) records() []rec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.out)
}

type liveWriter struct{ l *liveSink }

func (w liveWriter) Write(v *rec) error {
	w.l.mu.Lock()
	w.l.out = append(w.l.out, *v)
	w.l.mu.Unlock()
	return nil
}
func (liveWriter) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (liveWriter) Commit(uint64) error              { return nil }
func (liveWriter) Finish() error                    { return nil }
func (liveWriter) Close() error                     { return nil }

// TestIdleSourceDoesNotHoldWatermarks: a source task that never emits
// holds every window back, unless the strategy's Idleness declares it
// idle (Flink's withIdleness).
func TestIdleSourceDoesNotHoldWatermarks(t *testing.T) {
	for _, idleness := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("idleness=%v", idleness), func(t *testing.T) {
			sink := &liveSink{}
			j := engine.NewJob("idle", engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16})
			src := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) {
				return &idleSource{seqSource: seqSource{n: 1000, keys: 3}}, nil
			})
			// Task 0's records end at 9990 ms: windows up to 9000 can fire.
			src = engine.WithWatermarks(src, engine.WatermarkStrategy[rec]{Timestamp: seqTS, Idleness: idleness, Interval: 2 * time.Millisecond})
			ks := engine.KeyBy(src, engine.Int64Key(func(r *rec) int64 { return r.Key }))
			engine.ToSink(engine.KeyedProcess(ks, "window", windowCounts(1000)), "sink", sink)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- j.Run(ctx) }()
			wait := 300 * time.Millisecond
			if idleness > 0 {
				wait = time.Minute
			}
			deadline := time.Now().Add(wait)
			for len(sink.records()) < 27 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			<-done
			got := sink.records()
			if idleness == 0 {
				if len(got) != 0 {
					t.Fatalf("%d windows fired while a source task held the watermark at its minimum", len(got))
				}
				return
			}
			// 9 windows of 3 keys each ended before task 0's watermark.
			if len(got) != 27 {
				t.Fatalf("%d windows fired, want 27", len(got))
			}
		})
	}
}

// TestTwoInputOperator joins two keyed streams in one operator: per key,
// it counts the records of each side and, at the end of input (an event
// time timer at the largest timestamp), emits both counts. Run plain and
// across a crash and restore, whose checkpoints align barriers over both
// inputs.
func TestTwoInputOperator(t *testing.T) {
	const n, keys = 8000, 11
	build := func(opts engine.Options, left, right func(engine.SourceContext) (engine.Source[rec], error), sink engine.Sink[rec]) *engine.Job {
		j := engine.NewJob("counts", opts)
		l := engine.KeyBy(engine.FromSource(j, "left", left), engine.Int64Key(func(r *rec) int64 { return r.Key }))
		r := engine.FromSource(j, "right", right, engine.WithParallelism(1))
		rk := engine.KeyBy(engine.Map(r, "flip", func(r rec) rec { r.Key = (r.Key + 1) % keys; return r }), engine.Int64Key(func(r *rec) int64 { return r.Key }))
		co := engine.CoProcess(l, rk, "co", func(rt *engine.Runtime) (engine.CoProcessor[rec, rec, rec], error) {
			ls, err := keyed.NewValueState(rt.Backend(), rt.StateName("left"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return engine.CoProcessor[rec, rec, rec]{}, err
			}
			rs, err := keyed.NewValueState(rt.Backend(), rt.StateName("right"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return engine.CoProcessor[rec, rec, rec]{}, err
			}
			bump := func(ctx *engine.KeyedContext, st *keyed.ValueState[int64]) {
				c, _ := st.Get()
				st.Put(c + 1)
				ctx.RegisterEventTimeTimer(math.MaxInt64)
			}
			return engine.CoProcessor[rec, rec, rec]{
				Process1: func(ctx *engine.KeyedContext, v *rec, _ func(*rec)) { bump(ctx, ls) },
				Process2: func(ctx *engine.KeyedContext, v *rec, _ func(*rec)) { bump(ctx, rs) },
				OnTimer: func(ctx *engine.KeyedContext, ts int64, _ engine.TimeDomain, emit func(*rec)) {
					a, _ := ls.Get()
					b, _ := rs.Get()
					key := int64(0)
					for _, x := range ctx.Key() {
						key = key<<8 | int64(x)
					}
					emit(&rec{Key: key, Seq: a, Count: b})
				},
			}, nil
		}, engine.WithParallelism(3))
		engine.ToSink(co, "sink", sink)
		return j
	}
	check := func(t *testing.T, out []rec) {
		t.Helper()
		if len(out) != keys {
			t.Fatalf("%d results, want one per key (%d): %v", len(out), keys, out)
		}
		for _, r := range out {
			var a, b int64
			for i := int64(0); i < n; i++ {
				if i%keys == r.Key {
					a++
				}
				if (i%keys+1)%keys == r.Key {
					b++
				}
			}
			if r.Seq != a || r.Count != b {
				t.Fatalf("key %d: counts %d and %d, want %d and %d", r.Key, r.Seq, r.Count, a, b)
			}
		}
	}
	t.Run("plain", func(t *testing.T) {
		sink := newMemSink()
		j := build(engine.Options{Parallelism: 2, RingCapacity: 64, BatchSize: 16}, newSeq(n, keys), newSeq(n, keys), sink)
		if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		check(t, sink.records())
	})
	t.Run("crash", func(t *testing.T) {
		st := openStore(t, t.TempDir())
		defer st.Close()
		sink := newMemSink()
		opts := checkpointed(st, coord.ExactlyOnce)
		j := build(opts, slowSeq(n, keys), slowSeq(n, keys), sink)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		for deadline := time.Now().Add(time.Minute); completedCheckpoints(j) < 3; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no three checkpoints within a minute")
			}
		}
		cancel()
		<-done
		j = build(opts, newSeq(n, keys), newSeq(n, keys), sink)
		if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		check(t, sink.records())
	})
}

// TestProcessingTimeTimers: a timer registered for 30 ms from now fires
// (once per key and timestamp) while the source has nothing to read, with
// its timestamp as the output's; a deleted one does not fire.
func TestProcessingTimeTimers(t *testing.T) {
	sink := &liveSink{}
	j := engine.NewJob("proc", engine.Options{Parallelism: 1})
	src := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) {
		return &idleSource{seqSource: seqSource{n: 20, keys: 4}}, nil
	})
	ks := engine.KeyBy(src, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	var registered atomic.Int64
	fired := engine.KeyedProcess(ks, "proc", func(rt *engine.Runtime) (engine.KeyedProcessor[rec, rec], error) {
		return engine.KeyedProcessor[rec, rec]{
			Process: func(ctx *engine.KeyedContext, r *rec, _ func(*rec)) {
				// Every key registers the same two timers once per record:
				// one timer per key and timestamp.
				at := registered.Load()
				if at == 0 {
					at = ctx.CurrentProcessingTime() + 30
					registered.Store(at)
				}
				ctx.RegisterProcessingTimeTimer(at)
				ctx.RegisterProcessingTimeTimer(at + 1)
				ctx.DeleteProcessingTimeTimer(at + 1)
			},
			OnTimer: func(ctx *engine.KeyedContext, ts int64, domain engine.TimeDomain, emit func(*rec)) {
				if domain != engine.ProcessingTime {
					panic("a processing-time timer fired as " + domain.String())
				}
				if now := ctx.CurrentProcessingTime(); now < ts {
					panic(fmt.Sprintf("timer %d fired at %d, early", ts, now))
				}
				emit(&rec{Key: int64(ctx.Key()[7]), Seq: ts, Count: ctx.Timestamp()})
			},
		}, nil
	})
	engine.ToSink(fired, "sink", sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	for deadline := time.Now().Add(time.Minute); len(sink.records()) < 4 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second firing would show now
	cancel()
	<-done
	got := sink.records()
	if len(got) != 4 {
		t.Fatalf("%d timers fired, want one per key (4): %v", len(got), got)
	}
	for _, r := range got {
		if r.Seq != registered.Load() || r.Count != r.Seq {
			t.Fatalf("fired %+v: want the timer at %d, with it as the timestamp", r, registered.Load())
		}
	}
}

// orderSink checks, for a writer chained with its source, that with one
// checkpoint in flight the writer commits checkpoint n before it
// pre-commits anything later: the driver sends completions before the
// next trigger, so a chained task's mailbox holds them in that order.
type orderSink struct {
	mu   sync.Mutex
	errs []string
}

func (o *orderSink) Recover([][]byte) error { return nil }
func (o *orderSink) NewWriter(engine.SinkContext) (engine.SinkWriter[rec], error) {
	return &orderWriter{o: o}, nil
}

type orderWriter struct {
	o                  *orderSink
	preCommitted       uint64 // highest pre-committed id
	committed, commits uint64
}

func (w *orderWriter) Write(*rec) error { return nil }
func (w *orderWriter) PreCommit(id uint64) ([]byte, error) {
	if w.preCommitted > w.committed {
		w.o.mu.Lock()
		w.o.errs = append(w.o.errs, fmt.Sprintf("pre-commit of %d before the commit of %d", id, w.preCommitted))
		w.o.mu.Unlock()
	}
	w.preCommitted = id
	return nil, nil
}
func (w *orderWriter) Commit(id uint64) error {
	w.committed = max(w.committed, id)
	w.commits++
	return nil
}
func (w *orderWriter) Finish() error { return nil }
func (w *orderWriter) Close() error  { return nil }

func TestCommitBeforeNextPreCommit(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	opts := checkpointed(st, coord.ExactlyOnce)
	opts.Checkpointing.Interval = time.Millisecond
	sink := &orderSink{}
	j := engine.NewJob("order", opts)
	engine.ToSink(engine.FromSource(j, "source", slowSeq(20000, 3)), "sink", engine.Sink[rec](sink))
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := completedCheckpoints(j); n < 10 {
		t.Fatalf("only %d checkpoints completed: the test proves little", n)
	}
	if len(sink.errs) > 0 {
		t.Fatalf("%d times a writer pre-committed before committing the previous checkpoint, first: %s", len(sink.errs), sink.errs[0])
	}
}

// listeningSource is seqSource that records the checkpoints it was told
// are complete, with its position at each.
type listeningSource struct {
	seqSource
	mu        *sync.Mutex
	completed *[]uint64
}

func (s *listeningSource) CheckpointCompleted(id uint64) error {
	s.mu.Lock()
	*s.completed = append(*s.completed, id)
	s.mu.Unlock()
	return nil
}

// TestSourceCheckpointListener: a source that implements
// CheckpointListener hears of every completed checkpoint, in order, once.
func TestSourceCheckpointListener(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	var mu sync.Mutex
	var completed []uint64
	j := engine.NewJob("listen", checkpointed(st, coord.ExactlyOnce))
	src := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) {
		return &listeningSource{seqSource: seqSource{n: 20000, keys: 3}, mu: &mu, completed: &completed}, nil
	}, engine.WithParallelism(1))
	engine.ToSink(src, "sink", engine.Sink[rec](newMemSink()), engine.WithParallelism(1))
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" {
			want = append(want, s.ID)
		}
	}
	slices.Sort(want)
	mu.Lock()
	defer mu.Unlock()
	// The final checkpoint's completion may reach the source after it
	// ended (it ends on that notice): every other one is heard.
	if len(want) == 0 || !slices.Equal(completed, want) && !slices.Equal(completed, want[:len(want)-1]) {
		t.Fatalf("the source heard of checkpoints %v; completed were %v", completed, want)
	}
}

// wrappedEOFSource fails with an error that wraps io.EOF, as a network
// client's error for a closed connection does.
type wrappedEOFSource struct{ seqSource }

func (s *wrappedEOFSource) Read(buf []rec) (int, error) {
	if s.next >= 100 {
		return 0, fmt.Errorf("connection closed: %w", io.EOF)
	}
	return s.seqSource.Read(buf[:min(len(buf), 10)])
}

// TestWrappedEOFIsAFailure: only io.EOF itself ends a source; an error
// that wraps it fails the job instead of finishing it with records unread.
func TestWrappedEOFIsAFailure(t *testing.T) {
	j := engine.NewJob("eof", engine.Options{Parallelism: 1})
	src := engine.FromSource(j, "source", func(engine.SourceContext) (engine.Source[rec], error) {
		return &wrappedEOFSource{seqSource{n: 1000, keys: 3}}, nil
	})
	engine.ToSink(src, "sink", engine.Sink[rec](newMemSink()))
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("Run = %v, want the source's error", err)
	}
}
