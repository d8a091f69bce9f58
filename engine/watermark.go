package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Event time, as Flink has it: a record's timestamp (ms since the epoch)
// comes from a function of the record at the source (WithWatermarks) and
// travels with it through rings and chains; an operator that emits records
// of its own (a window's result) sets their timestamp. Watermarks are
// generated at the sources, per split, periodically; they travel in-band in
// the rings like barriers, in order with the records; a task's watermark is
// the minimum over its input channels that are neither idle nor ended, it
// never goes back, and when it advances every operator of the task's chain
// sees it in chain order (Runtime.OnWatermark: this is where event-time
// timers fire) before it passes on downstream. A source whose splits
// produced nothing for the strategy's Idleness declares itself idle
// (Flink's withIdleness): downstream tasks leave its channels out of the
// minimum until it sends a watermark again. A bounded source that is
// exhausted sends MaxWatermark before its end, so every window fires and
// its result is committed with the final checkpoint.
//
// A task's watermark is part of its checkpointed state (TaskMeta.Operator):
// a restored task starts from it, so a record that was late before a crash
// is late after it, and the timers that fired before the checkpoint (and
// whose state was cleared then) do not fire again.

// Watermarks bounds.
const (
	// MinWatermark is the watermark before any: nothing is late.
	MinWatermark int64 = math.MinInt64
	// MaxWatermark is the watermark at the end of a bounded input: every
	// event-time timer fires.
	MaxWatermark int64 = math.MaxInt64
	// DefaultWatermarkInterval is how often a source emits its watermark
	// (Flink's pipeline.auto-watermark-interval).
	DefaultWatermarkInterval = 200 * time.Millisecond
)

// WatermarkStrategy says how a source assigns timestamps and generates
// watermarks: bounded out-of-orderness, per split, as Flink's
// WatermarkStrategy.forBoundedOutOfOrderness(…).withIdleness(…).
type WatermarkStrategy[T any] struct {
	// Timestamp returns a record's event time in ms since the epoch.
	Timestamp func(v *T) int64
	// OutOfOrderness is how far behind the largest timestamp seen a
	// record may still arrive without being late: a split's watermark is
	// its largest timestamp − OutOfOrderness − 1 ms. Default 0.
	OutOfOrderness time.Duration
	// Idleness: a split that produced no record for this long stops
	// holding the source's watermark back; a source task all of whose
	// splits are idle tells its consumers so. 0 = never idle.
	Idleness time.Duration
	// Interval is how often the source emits its watermark. Default
	// DefaultWatermarkInterval.
	Interval time.Duration
}

// wmSpec is the untyped part of a source's WatermarkStrategy.
type wmSpec struct {
	outOfOrdernessMs int64
	idlenessNs       int64
	intervalNs       int64
}

// WithWatermarks assigns timestamps and generates watermarks at a source:
// s must be the stream a source (FromSource, FromSplitSource) returned.
// Timestamps stay with records through every operator that does not set
// its own (Runtime.SetTimestamp).
func WithWatermarks[T any](s Stream[T], ws WatermarkStrategy[T]) Stream[T] {
	n := s.n
	bad := func(format string, args ...any) {
		s.j.errs = append(s.j.errs, fmt.Errorf("engine: WithWatermarks on %q: "+format, append([]any{n.name}, args...)...))
	}
	switch {
	case n.kind != kindSourceNode:
		bad("watermarks are generated at sources (per split): apply WithWatermarks to the stream a source returns")
		return s
	case n.watermarks != nil:
		bad("the source already has a watermark strategy")
	case ws.Timestamp == nil:
		bad("Timestamp is required")
	case ws.OutOfOrderness < 0 || ws.Idleness < 0 || ws.Interval < 0:
		bad("OutOfOrderness, Idleness and Interval must be >= 0")
	}
	interval := ws.Interval
	if interval == 0 {
		interval = DefaultWatermarkInterval
	}
	n.watermarks = &wmSpec{outOfOrdernessMs: ws.OutOfOrderness.Milliseconds(), idlenessNs: int64(ws.Idleness), intervalNs: int64(interval)}
	n.timestamp = ws.Timestamp
	return s
}

// SplitWatermarks is implemented by a SplitReader that reads several
// splits whose timestamps are ordered within a split but not across them
// (partitions): the engine then keeps a watermark per split, and a split
// that is behind holds the task's watermark back, as Flink's per-split
// watermark generators do. Without it a task's splits share one.
type SplitWatermarks interface {
	// LastSplit returns the index (in the splits the reader was given) of
	// the split every record of the last Read came from, -1 if it
	// returned none.
	LastSplit() int
	// SplitFinished reports whether split i will produce nothing more: it
	// no longer holds the watermark back.
	SplitFinished(i int) bool
}

// splitWM is the watermark generator state of one split.
type splitWM struct {
	maxTS int64
	// lastNs is when the split last produced a record (monoNs).
	lastNs int64
}

// wmGenerator is a source task's watermark generator: one splitWM per
// split (or one for the task).
type wmGenerator struct {
	spec   *wmSpec
	splits []splitWM
	// of reports finished splits (nil: none finish before the end).
	of SplitWatermarks
	// nextNs is when the next periodic watermark is due (monoNs).
	nextNs int64
	// idle says the task told its consumers it is idle.
	idle bool
}

func newWMGenerator(spec *wmSpec, splits int, of SplitWatermarks) *wmGenerator {
	g := &wmGenerator{spec: spec, splits: make([]splitWM, max(splits, 1)), of: of}
	now := monoNs()
	for i := range g.splits {
		g.splits[i] = splitWM{maxTS: MinWatermark, lastNs: now}
	}
	g.nextNs = now + spec.intervalNs
	return g
}

// observe records that split produced records up to maxTS.
func (g *wmGenerator) observe(split int, maxTS int64) {
	if split < 0 || split >= len(g.splits) {
		split = 0
	}
	s := &g.splits[split]
	s.maxTS = max(s.maxTS, maxTS)
	s.lastNs = monoNs()
}

// current returns the source's watermark now, and whether every split is
// idle or finished (then the watermark means nothing).
func (g *wmGenerator) current(now int64) (wm int64, idle bool) {
	wm, idle = MaxWatermark, true
	for i := range g.splits {
		s := &g.splits[i]
		if g.of != nil && len(g.splits) > 1 && g.of.SplitFinished(i) {
			continue
		}
		if g.spec.idlenessNs > 0 && now-s.lastNs >= g.spec.idlenessNs {
			continue
		}
		idle = false
		w := MinWatermark
		if s.maxTS != MinWatermark {
			w = s.maxTS - g.spec.outOfOrdernessMs - 1
		}
		wm = min(wm, w)
	}
	return wm, idle
}

// taskWM is a task's watermark bookkeeping (task goroutine only).
type taskWM struct {
	// in is each input channel's watermark, idle whether it is idle.
	in   []int64
	idle []bool
	// cur is the task's watermark: the last one its chain saw.
	cur int64
	// idleOut says the task told its consumers it is idle.
	idleOut bool
	// gen is a source task's generator (nil without event time).
	gen *wmGenerator
	// hooks are the chain's operators after the head of a source task,
	// or all of them, in chain order (Runtime.OnWatermark).
	rts []*Runtime
}

// initWatermarks sets the task's watermark from the restored checkpoint
// (MinWatermark on a fresh start), for inputs channels.
func (t *task) initWatermarks(inputs int) {
	t.wm.cur = t.job.restoredWatermark(t.v, t.index)
	t.wm.in = make([]int64, inputs)
	for i := range t.wm.in {
		t.wm.in[i] = t.wm.cur
	}
	t.wm.idle = make([]bool, inputs)
	t.pubWM.Store(t.wm.cur)
	for _, rt := range t.wm.rts {
		rt.wm = t.wm.cur
	}
}

// inputWatermark handles watermark wm from input channel ch.
func (t *task) inputWatermark(ch int, wm int64) {
	t.wm.idle[ch] = false
	if wm > t.wm.in[ch] {
		t.wm.in[ch] = wm
	}
	t.updateWatermark()
}

// inputIdle handles an idle status from input channel ch.
func (t *task) inputIdle(ch int) {
	t.wm.idle[ch] = true
	t.updateWatermark()
}

// updateWatermark recomputes the task's watermark from its input channels
// (after a watermark, an idle status or an end of input).
func (t *task) updateWatermark() {
	m, active, ended := MaxWatermark, false, 0
	for ch, w := range t.wm.in {
		if t.aligner.Ended(ch) {
			ended++
			continue
		}
		if t.wm.idle[ch] {
			continue
		}
		active = true
		m = min(m, w)
	}
	if !active {
		if ended < len(t.wm.in) && !t.wm.idleOut {
			// Every live input is idle: so is this task. None of them will
			// advance its watermark: flush the largest any of them sent,
			// as Flink's StatusWatermarkValve does when its last active
			// channel becomes idle.
			top := MinWatermark
			for ch, w := range t.wm.in {
				if !t.aligner.Ended(ch) {
					top = max(top, w)
				}
			}
			if top > t.wm.cur {
				t.advanceWatermark(top)
			}
			t.wm.idleOut = true
			t.emitAll(elemIdle, 0)
		}
		return
	}
	switch {
	case m > t.wm.cur:
		t.wm.idleOut = false
		t.advanceWatermark(m)
	case t.wm.idleOut:
		// Active again without a higher watermark: say so downstream.
		t.wm.idleOut = false
		t.emitAll(elemWatermark, uint64(t.wm.cur))
	}
}

// advanceWatermark gives watermark wm to every operator of the chain, in
// order (their hooks may emit records to the operators after them, which
// see wm afterwards), then passes it on downstream.
func (t *task) advanceWatermark(wm int64) {
	t.wm.cur = wm
	t.pubWM.Store(wm)
	for _, rt := range t.wm.rts {
		rt.wm = wm
		if f := rt.onWatermark; f != nil {
			f(wm)
		}
	}
	t.emitAll(elemWatermark, uint64(wm))
}

// sourceWatermark emits a source task's periodic watermark or idle status
// when it is due; now is monoNs.
func (t *task) sourceWatermark(now int64) {
	g := t.wm.gen
	if g == nil || now < g.nextNs {
		return
	}
	g.nextNs = now + g.spec.intervalNs
	wm, idle := g.current(now)
	if idle {
		if !g.idle {
			g.idle = true
			t.emitAll(elemIdle, 0)
		}
		return
	}
	if wm > t.wm.cur {
		g.idle = false
		// Observed first: a window chained into this task fires inside
		// advanceWatermark, and its output latency counts from here.
		t.job.observeWatermark(t, wm)
		t.advanceWatermark(wm)
		return
	}
	if g.idle {
		g.idle = false
		t.emitAll(elemWatermark, uint64(t.wm.cur))
	}
}

// sourceWatermarkDue returns when a source task's next watermark is due
// (monoNs), if it has a generator.
func (t *task) sourceWatermarkDue() (int64, bool) {
	if g := t.wm.gen; g != nil && t.srcState == sourceRunning {
		return g.nextNs, true
	}
	return 0, false
}

// observeWatermark reports a source task's watermark to the job's
// observer (Options.OnSourceWatermark).
func (rt *jobRuntime) observeWatermark(t *task, wm int64) {
	if f := rt.opts.OnSourceWatermark; f != nil {
		f(t.v.head().name, t.index, wm)
	}
}

// A task's operator state in checkpoints (TaskMeta.Operator): a version
// byte, then the task's watermark as a zigzag varint. Empty (checkpoints
// from before event time) means MinWatermark.
const taskStateVersion = 1

func appendTaskState(dst []byte, wm int64) []byte {
	dst = append(dst, taskStateVersion)
	return binary.AppendVarint(dst, wm)
}

var errTaskState = errors.New("engine: malformed task state")

func decodeTaskState(b []byte) (wm int64, err error) {
	if len(b) == 0 {
		return MinWatermark, nil
	}
	if b[0] != taskStateVersion {
		return 0, fmt.Errorf("%w: version %d, want %d", errTaskState, b[0], taskStateVersion)
	}
	wm, n := binary.Varint(b[1:])
	// The encoding is canonical: a varint with a redundant last byte is
	// not one this build wrote.
	if n <= 0 || 1+n != len(b) || (n > 1 && b[n] == 0) {
		return 0, fmt.Errorf("%w: %d bytes do not hold one watermark", errTaskState, len(b))
	}
	return wm, nil
}

// restoredWatermark is the watermark task index of v starts from: the one
// the same task recorded in the restored checkpoint when the operators'
// parallelism is unchanged, else the smallest any task recorded that ran
// one of v's operators (after a rescale, a record may then be late later
// than before, never earlier), MinWatermark on a fresh start.
func (rt *jobRuntime) restoredWatermark(v *vertex, index int) int64 {
	if rt.restored == nil {
		return MinWatermark
	}
	lowest, found := MaxWatermark, false
	for i := range rt.restored.Tasks {
		tm := &rt.restored.Tasks[i]
		if !slices.ContainsFunc(tm.Operators, func(op string) bool { return slices.Contains(v.uids, op) }) {
			continue
		}
		wm, err := decodeTaskState(tm.Operator)
		if err != nil {
			// The metadata's checksum held: this is a bug of the writer.
			panic(fmt.Sprintf("engine: checkpoint %d: task %s[%d]: %v", rt.restored.CheckpointID, tm.Vertex, tm.Index, err))
		}
		if tm.Index == index && tm.Parallelism == v.parallelism {
			return wm
		}
		lowest, found = min(lowest, wm), true
	}
	if !found {
		return MinWatermark
	}
	return lowest
}
