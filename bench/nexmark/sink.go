package nexmark

import (
	"sync/atomic"

	"github.com/streamd/streamd/engine"
)

// Sink is the harness's blackhole: where every query's results go. It
// counts the results and adds up one field of each (see Emit); for
// windowed queries it also hands each result's window end to the run's
// LatencyRecorder. One Sink serves one run of one query.
type Sink struct {
	latency *LatencyRecorder
	// results and sum are the tasks' published counts: each writer adds
	// its own at every checkpoint's pre-commit and at the end.
	results atomic.Int64
	sum     atomic.Int64
	// observe, when set (by tests of this package), is a func(*T) for the
	// query's result type T, called with every result: it lets a test
	// compare the whole output with a batch computation.
	observe any
	// txn, when set (by this package's crash tests), is an engine.Sink[T]
	// for the query's result type T that Emit ends the query in instead
	// of the blackhole: a two-phase-commit sink whose committed output a
	// test compares with a batch computation across a crash.
	txn any
	// files, when set (RunToFiles), makes Emit end the query in the
	// exactly-once file sink instead of the blackhole.
	files *fileTarget
}

// NewSink returns a blackhole for one run. latency receives the window
// ends of a windowed query's results; nil for a query that is not
// windowed.
func NewSink(latency *LatencyRecorder) *Sink { return &Sink{latency: latency} }

// Results returns the number of results the sink's tasks have published:
// all of them once the job's Run has returned.
func (s *Sink) Results() int64 { return s.results.Load() }

// Sum returns the sum of the read field over the published results
// (wrapping on overflow, like any int64 sum).
func (s *Sink) Sum() int64 { return s.sum.Load() }

// Latency returns the sink's latency recorder (nil for a query that is not
// windowed).
func (s *Sink) Latency() *LatencyRecorder { return s.latency }

// Emit ends s in the blackhole, as the sink operator "sink". read returns
// one numeric field of a result (a price, an id, a count); the sink adds
// it up, so the work that produced the result cannot be optimized away,
// and the harness compares the sum with the baseline's.
func Emit[T any](s engine.Stream[T], sink *Sink, read func(*T) int64, opts ...engine.OpOption) {
	emit(s, sink, read, nil, opts)
}

// EmitWindowed is Emit for a windowed query: windowEnd returns the end of
// a result's window (exclusive, ms since the epoch, as Flink's
// window_end), and the sink records each result's output latency: the
// wall time since the source watermark passed the window's last
// timestamp (LatencyRecorder).
func EmitWindowed[T any](s engine.Stream[T], sink *Sink, read, windowEnd func(*T) int64, opts ...engine.OpOption) {
	if sink.latency == nil {
		panic("nexmark: EmitWindowed on a sink without a LatencyRecorder: the query must be registered as Windowed")
	}
	emit(s, sink, read, windowEnd, opts)
}

func emit[T any](s engine.Stream[T], sink *Sink, read, windowEnd func(*T) int64, opts []engine.OpOption) {
	if read == nil {
		panic("nexmark: Emit needs a read function: the sink must read a field of every result")
	}
	if txn, ok := sink.txn.(engine.Sink[T]); ok {
		engine.ToSink(s, "sink", txn, opts...)
		return
	}
	if sink.files != nil {
		toFiles(s, sink.files, opts)
		return
	}
	b := &blackhole[T]{s: sink, read: read}
	// after is one function, nil in the common case, so Write costs one
	// predictable branch more than a bare count.
	obs, _ := sink.observe.(func(*T))
	switch {
	case windowEnd != nil && obs != nil:
		rec := sink.latency
		b.after = func(v *T) { rec.WindowResult(windowEnd(v)); obs(v) }
	case windowEnd != nil:
		rec := sink.latency
		b.after = func(v *T) { rec.WindowResult(windowEnd(v)) }
	case obs != nil:
		b.after = obs
	}
	engine.ToSink(s, "sink", engine.Sink[T](b), opts...)
}

// blackhole is the engine.Sink of Emit. It is not transactional: it has
// nothing to make durable, so pre-commit only publishes the counts.
type blackhole[T any] struct {
	s     *Sink
	read  func(*T) int64
	after func(*T)
}

func (b *blackhole[T]) Recover([][]byte) error { return nil }

func (b *blackhole[T]) NewWriter(engine.SinkContext) (engine.SinkWriter[T], error) {
	return &blackholeWriter[T]{s: b.s, read: b.read, after: b.after}, nil
}

// blackholeWriter is one task's writer: plain counters that only the
// task's goroutine touches, published to the Sink's atomics now and then.
type blackholeWriter[T any] struct {
	s      *Sink
	read   func(*T) int64
	after  func(*T)
	n, sum int64
	_      [48]byte // keeps two tasks' counters off one cache line
}

func (w *blackholeWriter[T]) Write(v *T) error {
	w.n++
	w.sum += w.read(v)
	if w.after != nil {
		w.after(v)
	}
	return nil
}

func (w *blackholeWriter[T]) publish() {
	w.s.results.Add(w.n)
	w.s.sum.Add(w.sum)
	w.n, w.sum = 0, 0
}

func (w *blackholeWriter[T]) PreCommit(uint64) ([]byte, error) { w.publish(); return nil, nil }
func (w *blackholeWriter[T]) Commit(uint64) error              { return nil }
func (w *blackholeWriter[T]) Finish() error                    { w.publish(); return nil }
func (w *blackholeWriter[T]) Close() error                     { w.publish(); return nil }
