package job

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/window"
)

// Output fields of a window step besides the key and the aggregates: the
// window's bounds, ms since the epoch, End exclusive (package window's
// Window).
const (
	WindowStartField = "window_start"
	WindowEndField   = "window_end"
)

// The window operator keeps its accumulators under
// "<uid>/panes/size=…,slide=…,offset=…,pane=…" (package window): a uid of
// MaxNameLen bytes and four durations of at most 19 digits fit.
const _ = uint(keyed.MaxStateNameBytes - MaxNameLen - len("/panes/size=,slide=,offset=,pane=") - 4*19)

// WindowAgg is a compiled window step: its windows and the aggregates of
// each key and window. jobrun hands Function, the assigner and the
// options to window.Aggregate and Emit as its emit function. A WindowAgg
// is immutable and safe for concurrent use.
//
// Each aggregate is package window's built-in of its kind
// (window.Builtin), over an int or a float expression, so a window step
// computes exactly what a Go job with those built-ins computes: count is
// an int; sum, min and max have the expression's type (int sums wrap);
// avg is a float.
type WindowAgg struct {
	Assigner        window.Assigner
	AllowedLateness time.Duration
	// Key is the key field of the step's input; KeyOut, Start and End are
	// the first three fields of its output.
	Key, KeyOut, Start, End Field
	List                    []WindowAccumulator
}

// WindowAccumulator is one aggregate of a window step.
type WindowAccumulator struct {
	Kind AccKind // count, sum, min, max or avg
	In   Type    // the expression's type, TypeInt or TypeFloat; 0 for count
	Out  Field   // the output field
	Expr string
	// One of them is set: ints for count and int expressions, floats for
	// float expressions.
	ints   *window.AggregateFunction[Row, window.Acc[int64], window.Value]
	floats *window.AggregateFunction[Row, window.Acc[float64], window.Value]
}

// WindowAcc is the accumulator of one key and pane (or window, or
// session) of a window step: aggregate j keeps its window.Acc in Slot[j],
// its record count and its value as int64 or float64 bits. A record has at
// most MaxNumFields numeric fields, so a step has fewer aggregates than
// that.
type WindowAcc struct {
	Slot [MaxNumFields]WindowSlot
}

// WindowSlot is one aggregate's accumulator: window.Acc[int64] or
// window.Acc[float64], which have this layout (windowSlotLayout checks it).
type WindowSlot struct {
	Count int64
	V     uint64
}

// The built-ins get pointers into a WindowAcc rather than copies: a copy
// passed by pointer to a function value escapes, one allocation per
// aggregate and record.
var _ = windowSlotLayout()

func windowSlotLayout() bool {
	var s WindowSlot
	var i window.Acc[int64]
	var f window.Acc[float64]
	if unsafe.Sizeof(s) != unsafe.Sizeof(i) || unsafe.Sizeof(s) != unsafe.Sizeof(f) ||
		unsafe.Offsetof(s.V) != unsafe.Offsetof(i.V) || unsafe.Offsetof(s.V) != unsafe.Offsetof(f.V) ||
		unsafe.Offsetof(s.Count) != unsafe.Offsetof(i.Count) || unsafe.Offsetof(s.Count) != unsafe.Offsetof(f.Count) {
		panic("job: WindowSlot does not have window.Acc's layout")
	}
	return true
}

func (s *WindowSlot) ints() *window.Acc[int64] { return (*window.Acc[int64])(unsafe.Pointer(s)) }
func (s *WindowSlot) floats() *window.Acc[float64] {
	return (*window.Acc[float64])(unsafe.Pointer(s))
}

// Function returns the step's aggregate for window.Aggregate. Its
// accumulators take 16 bytes per aggregate in state; Add, Merge and the
// codec do not allocate (over fast expressions).
func (w *WindowAgg) Function() window.AggregateFunction[Row, WindowAcc, WindowAcc] {
	return window.AggregateFunction[Row, WindowAcc, WindowAcc]{
		Codec:  windowCodec{n: len(w.List)},
		Create: func() WindowAcc { return WindowAcc{} },
		Add:    w.Add,
		Merge:  w.Merge,
		Result: func(acc *WindowAcc) WindowAcc { return *acc },
	}
}

// Add folds record r into acc.
func (w *WindowAgg) Add(acc *WindowAcc, r *Row) {
	for j := range w.List {
		a := &w.List[j]
		if a.ints != nil {
			a.ints.Add(acc.Slot[j].ints(), r)
		} else {
			a.floats.Add(acc.Slot[j].floats(), r)
		}
	}
}

// Merge folds from into into (panes of a sliding window, sessions).
func (w *WindowAgg) Merge(into, from *WindowAcc) {
	for j := range w.List {
		a := &w.List[j]
		if a.ints != nil {
			a.ints.Merge(into.Slot[j].ints(), from.Slot[j].ints())
		} else {
			a.floats.Merge(into.Slot[j].floats(), from.Slot[j].floats())
		}
	}
}

// Emit fills r with the result of one key and window: the key (from its
// key bytes, as Schema.AppendKey wrote them), the window's bounds and the
// aggregates. A string key is copied (one allocation per result, never
// per record).
func (w *WindowAgg) Emit(key []byte, win window.Window, acc *WindowAcc, r *Row) {
	switch w.KeyOut.Type {
	case TypeString:
		r.Str[w.KeyOut.Slot] = string(key)
	case TypeBool:
		r.Num[w.KeyOut.Slot] = uint64(key[0])
	case TypeInt, TypeFloat:
		r.Num[w.KeyOut.Slot] = binary.BigEndian.Uint64(key)
	default:
		panic(fmt.Sprintf("job: WindowAgg.Emit: key field %q has invalid type %v", w.KeyOut.Name, w.KeyOut.Type))
	}
	r.Num[w.Start.Slot] = uint64(win.Start)
	r.Num[w.End.Slot] = uint64(win.End)
	for j := range w.List {
		a := &w.List[j]
		var v window.Value
		if a.ints != nil {
			v = a.ints.Result(acc.Slot[j].ints())
		} else {
			v = a.floats.Result(acc.Slot[j].floats())
		}
		if a.Out.Type == TypeFloat {
			r.Num[a.Out.Slot] = math.Float64bits(v.Float)
		} else {
			r.Num[a.Out.Slot] = uint64(v.Int)
		}
	}
}

// windowCodec stores the first n aggregates of a WindowAcc: for each,
// its count and its value bits, 8 bytes each, big endian (window.AccCodec's
// layout, n times).
type windowCodec struct{ n int }

func (c windowCodec) Append(dst []byte, a WindowAcc) []byte {
	for j := 0; j < c.n; j++ {
		dst = binary.BigEndian.AppendUint64(dst, uint64(a.Slot[j].Count))
		dst = binary.BigEndian.AppendUint64(dst, a.Slot[j].V)
	}
	return dst
}

func (c windowCodec) Decode(b []byte) (WindowAcc, error) {
	var a WindowAcc
	if len(b) != 16*c.n {
		return a, fmt.Errorf("%w: cannot decode the accumulators of a window step from %d bytes, want %d", keyed.ErrCorrupt, len(b), 16*c.n)
	}
	for j := 0; j < c.n; j++ {
		a.Slot[j].Count = int64(binary.BigEndian.Uint64(b[16*j:]))
		a.Slot[j].V = binary.BigEndian.Uint64(b[16*j+8:])
	}
	return a, nil
}

// assigner returns the spec's windows as package window's assigner.
func (w *WindowSpec) assigner() window.Assigner {
	switch w.Kind {
	case WindowSliding:
		return window.Sliding(w.Size, w.Slide)
	case WindowSession:
		return window.Session(w.Gap)
	}
	return window.Tumbling(w.Size)
}

// String describes the windows as a spec writes them ("tumbling 10s",
// "sliding 10s/2s", "session gap 30s"), with the lateness when there is
// one.
func (w *WindowSpec) String() string {
	var s string
	switch w.Kind {
	case WindowSliding:
		s = fmt.Sprintf("sliding %v/%v", w.Size, w.Slide)
	case WindowSession:
		s = fmt.Sprintf("session gap %v", w.Gap)
	default:
		s = fmt.Sprintf("tumbling %v", w.Size)
	}
	if w.AllowedLateness > 0 {
		s += fmt.Sprintf(" lateness %v", w.AllowedLateness)
	}
	return s
}

// windowStep compiles a window step over in, keyed by key: its output
// schema (the key, window_start, window_end, then the aggregates in the
// order written) and its WindowAgg. It returns nil when the step has
// errors (reported).
func (c *compiler) windowStep(i int, st *StepSpec, in *Schema, key Field, ctx evalCtx) (*Schema, *WindowAgg) {
	s := c.s
	path := c.stepPath(i) + ".window.aggregate"
	fail := func() (*Schema, *WindowAgg) {
		for _, a := range st.Accs {
			c.poisoned[a.Field] = true
		}
		c.poisoned[WindowStartField], c.poisoned[WindowEndField] = true, true
		return nil, nil
	}
	w := &WindowAgg{Assigner: st.Window.assigner(), AllowedLateness: st.Window.AllowedLateness, Key: key}
	if err := w.Assigner.Validate(); err != nil {
		// validate checked the same rules with the fields' paths.
		panic(fmt.Sprintf("job: a window step that validate accepted has an invalid assigner: %v", err))
	}
	out := &Schema{}
	var kf, sf, ef Field
	out, kf, _ = withField(out, key.Name, key.Type, 0, 0)
	out, sf, _ = withField(out, WindowStartField, TypeInt, 0, 0)
	out, ef, _ = withField(out, WindowEndField, TypeInt, 0, 0)
	w.KeyOut, w.Start, w.End = kf, sf, ef
	ok := true
	for _, a := range st.Accs {
		apath := path + "." + a.Field
		kpos := s.posOf(apath+":key", a.Line, a.Column)
		if _, taken := out.Lookup(a.Field); taken {
			c.errAt(apath, kpos, "a window step's output already has a field %q (the key, %s and %s come first); name the aggregate otherwise", a.Field, WindowStartField, WindowEndField)
			ok = false
			continue
		}
		wa := WindowAccumulator{Kind: a.Kind, Expr: a.Expr}
		var fi func(*Row) int64
		var ff func(*Row) float64
		if a.Kind != AccCount {
			epath := apath + "." + a.Kind.String()
			epos := s.posOf(epath, a.Line, a.Column)
			ce, xe := compileExpr(a.Expr, in, ctx)
			switch {
			case xe != nil && checkFieldName(a.Expr) == "":
				if !c.poisoned[a.Expr] {
					c.errAt(epath, epos, "unknown field %q; the records here are %s", a.Expr, in)
				}
				ok = false
				continue
			case xe != nil:
				c.exprErr(epath, epos, xe)
				ok = false
				continue
			case ce.typ != TypeInt && ce.typ != TypeFloat:
				what := "field"
				if checkFieldName(a.Expr) != "" {
					what = "expression"
				}
				c.errAt(epath, epos, "%s in a window needs an int or float; the %s %q is %s", a.Kind, what, a.Expr, withArticle(ce.typ))
				ok = false
				continue
			}
			wa.In, fi, ff = ce.typ, ce.i, ce.f
		}
		var err error
		if wa.In == TypeFloat {
			var f window.AggregateFunction[Row, window.Acc[float64], window.Value]
			f, err = window.Builtin(a.Kind.String(), func(r *Row) float64 { return ff(r) })
			wa.floats = &f
		} else {
			var field func(*Row) int64
			if fi != nil {
				field = func(r *Row) int64 { return fi(r) }
			}
			var f window.AggregateFunction[Row, window.Acc[int64], window.Value]
			f, err = window.Builtin(a.Kind.String(), field)
			wa.ints = &f
		}
		if err != nil {
			panic(fmt.Sprintf("job: window aggregate %s of a validated step: %v", a.Kind, err))
		}
		next, f, msg := withField(out, a.Field, accOutType(a.Kind, wa.In), 0, 0)
		if msg != "" {
			c.errAt(apath, kpos, "cannot add field %q: %s", a.Field, msg)
			return fail()
		}
		out, wa.Out = next, f
		w.List = append(w.List, wa)
	}
	if !ok {
		return fail()
	}
	for _, a := range st.Accs {
		delete(c.poisoned, a.Field)
	}
	delete(c.poisoned, WindowStartField)
	delete(c.poisoned, WindowEndField)
	return out, w
}

// windowSignature describes a window step's state for StateSignature:
// the aggregates with their kinds and input types decide the layout of
// the accumulators. The windows themselves are not listed: package window
// keeps state of other windows under another name and starts empty.
func (w *WindowAgg) signature() string {
	var b strings.Builder
	b.WriteString(" windows=")
	for j, a := range w.List {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%s", a.Out.Name, a.Kind)
		if a.In != 0 {
			fmt.Fprintf(&b, "(%s)", a.In)
		}
	}
	return b.String()
}

// eventTime checks the event_time field of the source at path at against
// its schema: an int field (ms since the epoch).
func (c *compiler) eventTime(at string, spec *SourceSpec, src *Schema) {
	et := spec.EventTime
	if et == nil || c.broken[at+".event_time"] {
		return
	}
	path := at + ".event_time.field"
	p := c.s.posOf(path, et.Line, et.Column)
	f, ok := src.Lookup(et.Field)
	switch {
	case !ok:
		c.errAt(path, p, "unknown field %q; the source's records are %s", et.Field, src)
	case f.Type != TypeInt:
		c.errAt(path, p, "the timestamp field must be an int (ms since the epoch); %q is %s", et.Field, withArticle(f.Type))
	}
}

// EventTimeField returns the source's timestamp field, and false when the
// source has no event time.
func (p *Plan) EventTimeField() (Field, bool) {
	et := p.Spec.Source.EventTime
	if et == nil {
		return Field{}, false
	}
	return p.SourceSchema.Lookup(et.Field)
}

// windowOf is a window for tests and messages.
func windowOf(start, end int64) window.Window { return window.Window{Start: start, End: end} }
