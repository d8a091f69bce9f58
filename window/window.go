package window

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/keyed"
)

// Limits.
const (
	// MinTimestamp and MaxTimestamp bound the event time of a record the
	// operator windows (ms since the epoch, about ±146 million years). A
	// record outside is dropped and counted with the late records: window
	// bounds, cleanup times and timers are computed without overflow
	// checks inside this range, whatever the sizes (a time.Duration in ms
	// is below 2^54).
	MinTimestamp int64 = -1 << 62
	MaxTimestamp int64 = 1<<62 - 1

	// MaxPanesPerWindow bounds the panes a sliding window is made of
	// (size / gcd(size, slide)): firing a window reads each of them. A
	// sliding assigner with more panes per window, or an aggregate without
	// Merge, keeps one accumulator per window instead (MaxWindowsPerRecord).
	MaxPanesPerWindow = 1024
	// MaxWindowsPerRecord bounds the windows one record belongs to when a
	// sliding assigner keeps one accumulator per window (ceil(size/slide)):
	// each record then writes that many accumulators.
	MaxWindowsPerRecord = 1024
)

// Window is an event-time window: the timestamps [Start, End), in ms since
// the epoch (Flink's TimeWindow).
type Window struct{ Start, End int64 }

// MaxTimestamp is the window's last millisecond, End-1: the window fires
// when the watermark reaches it, and its result carries it as timestamp.
func (w Window) MaxTimestamp() int64 { return w.End - 1 }

func (w Window) String() string { return fmt.Sprintf("[%d, %d)", w.Start, w.End) }

// Kind is the kind of an Assigner.
type Kind uint8

const (
	// KindTumbling windows are fixed-size, do not overlap and cover time.
	KindTumbling Kind = iota + 1
	// KindSliding windows are fixed-size and start every slide (Flink's
	// sliding, Beam's and SQL's hop).
	KindSliding
	// KindSession windows of a key grow with its records and close after a
	// gap of inactivity.
	KindSession
)

func (k Kind) String() string {
	switch k {
	case KindTumbling:
		return "tumbling"
	case KindSliding:
		return "sliding"
	case KindSession:
		return "session"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Assigner says which windows a record belongs to: Tumbling, Sliding or
// Session, the three of Flink's event-time window assigners. It is plain
// data (a kind and durations), so that a job spec can describe it. The
// durations must be whole milliseconds; Validate says what is wrong.
type Assigner struct {
	kind   Kind
	size   time.Duration // tumbling, sliding
	slide  time.Duration // sliding (tumbling: size)
	offset time.Duration // tumbling, sliding
	gap    time.Duration // session
}

// Tumbling assigns each record to the window of the given size that holds
// it: [ts − (ts−offset) mod size, +size), offset 0 unless WithOffset.
func Tumbling(size time.Duration) Assigner {
	return Assigner{kind: KindTumbling, size: size, slide: size}
}

// Sliding assigns each record to every window of the given size that holds
// it; a window starts every slide (at offset 0 mod slide unless
// WithOffset). A slide larger than the size leaves gaps: records that fall
// in no window are dropped (not counted as late), as in Flink.
func Sliding(size, slide time.Duration) Assigner {
	return Assigner{kind: KindSliding, size: size, slide: slide}
}

// Session assigns each record to the session [ts, ts+gap); sessions of a
// key that intersect or touch merge (Flink's TimeWindow.intersects:
// [a,b) and [c,d) merge when a <= d and b >= c).
func Session(gap time.Duration) Assigner { return Assigner{kind: KindSession, gap: gap} }

// WithOffset shifts the windows of a tumbling or sliding assigner: they
// start at offset mod slide instead of 0 (Flink's offset, e.g. −8h for
// days in UTC+8). |offset| must be less than the slide (the size for
// tumbling windows).
func (a Assigner) WithOffset(offset time.Duration) Assigner {
	a.offset = offset
	return a
}

// Kind returns the assigner's kind (0 for the zero Assigner).
func (a Assigner) Kind() Kind { return a.kind }

// Size returns the window size (tumbling, sliding).
func (a Assigner) Size() time.Duration { return a.size }

// Slide returns how often a window starts (sliding; the size for tumbling).
func (a Assigner) Slide() time.Duration { return a.slide }

// Offset returns the offset (tumbling, sliding).
func (a Assigner) Offset() time.Duration { return a.offset }

// Gap returns the session gap (session).
func (a Assigner) Gap() time.Duration { return a.gap }

func (a Assigner) String() string {
	switch a.kind {
	case KindTumbling:
		if a.offset != 0 {
			return fmt.Sprintf("tumbling(%v, offset %v)", a.size, a.offset)
		}
		return fmt.Sprintf("tumbling(%v)", a.size)
	case KindSliding:
		if a.offset != 0 {
			return fmt.Sprintf("sliding(%v every %v, offset %v)", a.size, a.slide, a.offset)
		}
		return fmt.Sprintf("sliding(%v every %v)", a.size, a.slide)
	case KindSession:
		return fmt.Sprintf("session(gap %v)", a.gap)
	}
	return "no window assigner"
}

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("window: invalid")

// wholeMs reports whether d is a positive whole number of milliseconds.
func wholeMs(d time.Duration) bool { return d > 0 && d%time.Millisecond == 0 }

// Validate reports every problem of the assigner at once.
func (a Assigner) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w assigner %v: "+format, append([]any{ErrInvalid, a}, args...)...))
	}
	switch a.kind {
	case KindTumbling, KindSliding:
		if !wholeMs(a.size) {
			bad("the size must be a positive whole number of milliseconds")
		}
		if !wholeMs(a.slide) {
			bad("the slide must be a positive whole number of milliseconds")
		}
		if a.offset%time.Millisecond != 0 {
			bad("the offset must be a whole number of milliseconds")
		}
		if a.slide > 0 && (a.offset >= a.slide || a.offset <= -a.slide) {
			bad("|offset| must be less than the slide (the size of tumbling windows)")
		}
	case KindSession:
		if !wholeMs(a.gap) {
			bad("the gap must be a positive whole number of milliseconds")
		}
	default:
		bad("use Tumbling, Sliding or Session")
	}
	return errors.Join(errs...)
}

// geometry is an assigner in ms, with the derived pane size.
type geometry struct {
	kind                Kind
	size, slide, offset int64 // offset in [0, slide)
	pane                int64 // gcd(size, slide)
	gap                 int64
	lateness            int64
}

// geometryOf converts a valid assigner and lateness to ms.
func geometryOf(a Assigner, lateness time.Duration) geometry {
	g := geometry{kind: a.kind, lateness: lateness.Milliseconds()}
	if a.kind == KindSession {
		g.gap = a.gap.Milliseconds()
		return g
	}
	g.size, g.slide = a.size.Milliseconds(), a.slide.Milliseconds()
	g.offset = floorMod(a.offset.Milliseconds(), g.slide)
	g.pane = gcd(g.size, g.slide)
	return g
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// floorMod is a mod m in [0, m) (m > 0).
func floorMod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

// alignDown returns the largest y <= x with y ≡ base (mod m).
func alignDown(x, base, m int64) int64 { return x - floorMod(x-base, m) }

// alignUp returns the smallest y >= x with y ≡ base (mod m).
func alignUp(x, base, m int64) int64 { return x + floorMod(base-x, m) }

// lastStart is the start of the last window (largest start) at or before x.
func (g *geometry) lastStart(x int64) int64 { return alignDown(x, g.offset, g.slide) }

// paneOf is the start of the pane that holds ts.
func (g *geometry) paneOf(ts int64) int64 { return alignDown(ts, g.offset, g.pane) }

// endBase is what every window end is congruent to, mod slide.
func (g *geometry) endBase() int64 { return g.offset + g.size }

// firstEnd is the end of the first window that holds the pane at p (which
// some window holds).
func (g *geometry) firstEnd(p int64) int64 {
	return alignUp(p+g.pane-g.size, g.offset, g.slide) + g.size
}

// isEnd reports whether e is the end of a window.
func (g *geometry) isEnd(e int64) bool { return floorMod(e-g.endBase(), g.slide) == 0 }

// Options configures a window operator. The zero value is Flink's default:
// no allowed lateness, late records dropped uncounted.
type Options struct {
	// AllowedLateness keeps a window's state after it fired until the
	// watermark passes MaxTimestamp()+AllowedLateness; meanwhile each
	// record that arrives for it updates it and fires it again at once
	// (Flink's allowedLateness with the event-time trigger). Whole
	// milliseconds, >= 0. Default 0: a window's state is dropped when it
	// fires.
	AllowedLateness time.Duration
	// LateRecords, if set, counts the records dropped because every window
	// they belong to was past its cleanup time (Flink's
	// numLateRecordsDropped), over all the operator's tasks. It is an
	// atomic so that a metric may read it while the job runs; it is added
	// to only for late records, never on the path of the others.
	LateRecords *atomic.Int64
}

// Validate reports every problem of the options at once.
func (o *Options) Validate() error {
	if o.AllowedLateness < 0 || o.AllowedLateness%time.Millisecond != 0 {
		return fmt.Errorf("%w options: the allowed lateness %v must be a whole number of milliseconds >= 0", ErrInvalid, o.AllowedLateness)
	}
	return nil
}

// AggregateFunction is Flink's AggregateFunction: a window's state is its
// accumulator ACC, never its records. Add folds a record into an
// accumulator, Merge folds one accumulator into another (panes of a
// sliding window, merging sessions), Result turns an accumulator into the
// window's result.
//
// The functions are called on the task's goroutine with pointers into the
// operator's scratch values: they must not keep the pointers. An
// accumulator is created, added to and encoded again per record, so an ACC
// of fixed size whose Codec appends without allocating (the built-ins')
// costs no allocation per record.
type AggregateFunction[T, ACC, OUT any] struct {
	// Codec stores ACC in keyed state. Its Decode must copy what it keeps
	// (keyed.Codec). Required.
	Codec keyed.Codec[ACC]
	// Create returns an empty accumulator. Required.
	Create func() ACC
	// Add folds record v into *acc. Required.
	Add func(acc *ACC, v *T)
	// Merge folds *from into *into. Required by session windows, and by
	// pane-based sliding windows: without it a sliding window keeps one
	// accumulator per window, and each record updates all of its windows.
	// Panes are merged in time order, so an order-sensitive Merge sees
	// them oldest first.
	Merge func(into *ACC, from *ACC)
	// Result returns the window's result from its accumulator. Required.
	Result func(acc *ACC) OUT
}

// Validate reports every missing function at once.
func (f *AggregateFunction[T, ACC, OUT]) Validate() error {
	var errs []error
	for _, m := range []struct {
		missing bool
		name    string
	}{{f.Codec == nil, "Codec"}, {f.Create == nil, "Create"}, {f.Add == nil, "Add"}, {f.Result == nil, "Result"}} {
		if m.missing {
			errs = append(errs, fmt.Errorf("%w aggregate: %s is required", ErrInvalid, m.name))
		}
	}
	return errors.Join(errs...)
}

// stateMode is how an operator keeps its accumulators.
type stateMode uint8

const (
	// modePanes: one accumulator per key and pane, gcd(size, slide) long;
	// a window merges its panes when it fires. Tumbling windows are the
	// case of one pane per window.
	modePanes stateMode = iota + 1
	// modeWindows: one accumulator per key and sliding window (an
	// aggregate without Merge, or too many panes per window).
	modeWindows
	// modeSessions: one accumulator per key and session.
	modeSessions
)

// plan decides how the operator keeps state, and reports every problem of
// the assigner, the aggregate and the options at once.
func plan[T, ACC, OUT any](a Assigner, agg *AggregateFunction[T, ACC, OUT], opts *Options) (geometry, stateMode, error) {
	errs := []error{a.Validate(), agg.Validate(), opts.Validate()}
	if err := errors.Join(errs...); err != nil {
		return geometry{}, 0, err
	}
	g := geometryOf(a, opts.AllowedLateness)
	switch {
	case g.kind == KindSession:
		if agg.Merge == nil {
			return g, 0, fmt.Errorf("%w: session windows merge accumulators: the aggregate needs Merge", ErrInvalid)
		}
		return g, modeSessions, nil
	case g.size == g.slide:
		// One pane per window: Merge is never called.
		return g, modePanes, nil
	case agg.Merge != nil && g.size/g.pane <= MaxPanesPerWindow:
		return g, modePanes, nil
	case (g.size+g.slide-1)/g.slide <= MaxWindowsPerRecord:
		return g, modeWindows, nil
	}
	return g, 0, fmt.Errorf("%w assigner %v: a window would be %d panes of %dms (the limit is %d) and a record in %d windows (the limit is %d): choose a slide that divides the size",
		ErrInvalid, a, g.size/g.pane, g.pane, MaxPanesPerWindow, (g.size+g.slide-1)/g.slide, MaxWindowsPerRecord)
}

// stateName is the name of the operator's accumulator state under its
// operator (Runtime.StateName). It holds the geometry the bytes depend on,
// so that a job restored with other windows does not read the old state
// as its own: the engine keeps the old state, unregistered, and logs it.
func stateName(g geometry, m stateMode) string {
	switch m {
	case modePanes:
		return fmt.Sprintf("panes/size=%d,slide=%d,offset=%d,pane=%d", g.size, g.slide, g.offset, g.pane)
	case modeWindows:
		return fmt.Sprintf("windows/size=%d,slide=%d,offset=%d", g.size, g.slide, g.offset)
	}
	return "sessions"
}
