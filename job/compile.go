package job

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// Plan is a compiled job: the schema at every point of the pipeline and
// the typed operators of every step. A Plan is immutable and safe for
// concurrent use; so are the Filter, Map and Agg of its stages.
type Plan struct {
	Spec         *Spec
	SourceSchema *Schema
	Stages       []Stage // one per pipeline step, in order
	SinkSchema   *Schema
	// Inputs are the sources of a spec with `sources:` and their
	// pipelines, in the order written (join.go); nil for a spec with
	// `source:`, and then SourceSchema is the source's schema (nil here).
	Inputs []Input
	// Vertices are the chains of operators the engine runs the plan as,
	// in order, from the source's to the sink's (see Vertex).
	Vertices []Vertex
}

// Stage is one compiled pipeline step.
type Stage struct {
	Step        *StepSpec
	In, Out     *Schema
	Parallelism int // resolved: the step's, or the job's

	// Keyed reports that a key_by is in effect at this stage's input:
	// records reach its tasks partitioned by the key group of Key (a field
	// of In), so the stage may keep per-key state. The key_by stage itself
	// is Keyed (it is an identity operator; its only effect is that the
	// exchange into it hashes Key). A key_by stays in effect through filter,
	// key-preserving map and aggregation steps, and ends after a step that
	// writes the key field (a map assigning it, or an aggregation whose
	// output field has its name); that step is still Keyed, the next is not.
	Keyed bool
	Key   Field
	// KeyWritten reports that the stage writes its key field (a map
	// assigning it, an aggregation or window accumulator of that name):
	// its output is no longer partitioned by the key it was keyed by.
	KeyWritten bool
	// Shuffle (aggregations) reports that records reach the stage through
	// a keyed exchange, hashed by Key to its tasks. When false, the stage
	// runs in the tasks of the aggregation before it: the stream is already
	// partitioned by the same key at the same parallelism (Flink's
	// reinterpretAsKeyedStream). A key_by, a change of parallelism or a
	// step that writes the key field in between makes it true.
	Shuffle bool

	// Filter (StepFilter) reports whether r passes.
	Filter func(r *Row) bool
	// Map (StepMap) evaluates every assignment against the input fields
	// (simultaneous assignment: an expression never sees a field assigned
	// by the same step) and writes the results into r in place, at Out's
	// slots. It is in place because a replaced field's new value goes to a
	// slot no later assignment of the step reads (see Compile).
	Map func(r *Row)
	// Agg (StepCount, StepSum, StepMin, StepMax) updates per-key state.
	Agg *Aggregate
	// Reduce (StepReduce) and Accs (StepAggregate) are the compiled keyed
	// operators of those steps; jobrun opens one per task over the keyed
	// state they declare.
	Reduce *Reducer
	Accs   *Accumulators
	// Window (StepWindow) is the compiled window step; jobrun runs it as
	// window.Aggregate. Its records leave with the window's end − 1 as
	// their timestamp.
	Window *WindowAgg
	// Join (StepJoin, the first stage of a spec with sources:) is the
	// compiled join; jobrun runs it as join.Inner or join.Tumbling. It is
	// Keyed by its left key (In is the left side's records) and always
	// shuffles both sides.
	Join *Join

	// SlowExprs lists this stage's expressions that run on expr's VM
	// (allocating, an order of magnitude slower) because they use something
	// the fast path does not compile; empty when every expression is fast.
	SlowExprs []string
}

// Aggregate is a running per-key aggregation whose state is 8 bytes.
type Aggregate struct {
	Kind StepKind // StepCount, StepSum, StepMin or StepMax
	In   Field    // the aggregated field of the stage's In (zero for count)
	Out  Field    // the output field of the stage's Out: "count", "sum", "min" or "max"
}

// Apply folds r into the key's state prev (havePrev false for a key's first
// record), writes the new aggregate into r's Out field and returns the new
// state. count: prev+1 (int). sum: int sums wrap like Go int64 arithmetic;
// float sums are IEEE. min/max: ints compare as int64; floats as math.Min
// and math.Max do (NaN sticks once seen, -0 is less than +0). The state is
// the output value's bits (int64 or float64). It does not allocate.
func (a *Aggregate) Apply(prev uint64, havePrev bool, r *Row) uint64 {
	var s uint64
	switch a.Kind {
	case StepCount:
		s = 1
		if havePrev {
			s = prev + 1
		}
	case StepSum, StepMin, StepMax:
		v := r.Num[a.In.Slot]
		s = v
		if havePrev {
			if a.In.Type == TypeInt {
				p, x := int64(prev), int64(v)
				switch a.Kind {
				case StepSum:
					s = uint64(p + x)
				case StepMin:
					s = uint64(min(p, x))
				case StepMax:
					s = uint64(max(p, x))
				}
			} else {
				p, x := math.Float64frombits(prev), math.Float64frombits(v)
				switch a.Kind {
				case StepSum:
					s = math.Float64bits(p + x)
				case StepMin:
					s = math.Float64bits(math.Min(p, x))
				case StepMax:
					s = math.Float64bits(math.Max(p, x))
				}
			}
		}
	default:
		panic(fmt.Sprintf("job: Aggregate.Apply: kind %v is not an aggregation", a.Kind))
	}
	r.Num[a.Out.Slot] = s
	return s
}

// writesAggregate reports whether the stage's aggregation (count, sum, min,
// max, reduce or aggregate) writes field name.
func (st *Stage) writesAggregate(name string) bool {
	switch {
	case st.Agg != nil:
		return st.Agg.Out.Name == name
	case st.Reduce != nil:
		return st.Reduce.Out.Name == name
	case st.Accs != nil:
		for _, a := range st.Accs.List {
			if a.Out.Name == name {
				return true
			}
		}
	}
	return false
}

// SourceParallelism is the number of source tasks.
func (p *Plan) SourceParallelism() int {
	return cmpOr(p.Spec.Source.Parallelism, p.Spec.Parallelism)
}

// SinkParallelism is the number of sink tasks.
func (p *Plan) SinkParallelism() int {
	return cmpOr(p.Spec.Sink.Parallelism, p.Spec.Parallelism)
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// Compile type-checks a spec and builds its plan: the schema after every
// step, the compiled expressions, keyed-ness and parallelism of every step.
// It validates the spec's values first (a Spec built in code gets the same
// checks as a parsed one) and reports every problem at once as *Errors.
// Once the rest is right it lays the plan out as the engine will run it
// (Plan.Vertices) and checks the limits of that layout (limits.go).
//
// Schemas and slots: the source's fields take slots in declaration order.
// A map step keeps the slots of the fields it does not assign; a field it
// replaces keeps its position in the field order (its type may change) and
// new fields are appended in the order written. Each assigned field gets
// the lowest free slot of its kind that no later assignment of the same
// step reads, preferring the replaced field's own slot; that is what makes
// Map safe in place. Aggregations add (or replace) their output field the
// same way.
func Compile(s *Spec) (*Plan, error) {
	errs := s.validate(nil)
	broken := make(map[string]bool)
	for _, e := range errs {
		broken[brokenKey(e.Path)] = true
	}
	c := newCompiler(s, broken)
	c.run()
	c.sinkKey()
	c.postgresColumns()
	errs = append(errs, c.errs...)
	if len(errs) > 0 {
		return nil, asErrors(errs)
	}
	// The limits of the whole layout (tasks, checkpoint scopes) depend on
	// every step's parallelism and name, so they are checked once the rest
	// of the spec is right.
	c.layout(c.plan)
	if len(c.errs) > 0 {
		return nil, asErrors(c.errs)
	}
	return c.plan, nil
}

type compiler struct {
	s      *Spec
	broken map[string]bool
	errs   []*Error
	// poisoned holds field names whose type is unknown because of an
	// earlier error; errors about expressions that mention them are
	// dropped, since they would only repeat the first.
	poisoned map[string]bool
	plan     *Plan
	// prefix is the path of the pipeline being compiled: "pipeline" or
	// "sources[i].pipeline".
	prefix string
}

func newCompiler(s *Spec, broken map[string]bool) *compiler {
	return &compiler{s: s, broken: broken, poisoned: make(map[string]bool), prefix: "pipeline"}
}

// stepPath is the path of step i of the pipeline being compiled.
func (c *compiler) stepPath(i int) string { return fmt.Sprintf("%s[%d]", c.prefix, i) }

func (c *compiler) errAt(path string, p position, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.s.File, Line: p.line, Column: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) exprErr(path string, p position, xe *exprError) {
	for _, n := range xe.names {
		if c.poisoned[n] {
			return
		}
	}
	c.errAt(path, p, "%s", xe.msg)
}

// run compiles as much of the spec as is reliable: nothing when the source
// is broken, and the steps before the first broken one.
func (c *compiler) run() {
	s := c.s
	if len(s.Sources) > 0 {
		c.runSources()
		return
	}
	if c.broken[""] || c.broken["source"] {
		return
	}
	src := c.sourceSchema(&s.Source)
	if src == nil {
		return
	}
	c.eventTime("source", &s.Source, src)
	plan := &Plan{Spec: s, SourceSchema: src}
	stages, out, complete := c.steps("pipeline", s.Pipeline, 0, src, make([]Stage, 0, len(s.Pipeline)))
	plan.Stages, plan.SinkSchema = stages, out
	if complete {
		c.plan = plan
	}
}

// sourceSchema returns the schema of src's records, nil when src is
// broken (validate reported why).
func (c *compiler) sourceSchema(src *SourceSpec) *Schema {
	switch src.Type {
	case SourceSequence:
		return SequenceSchema()
	case SourceFile, SourceKafka, SourceNATS, SourcePostgres:
		s, err := NewSchema(src.Fields)
		if err != nil {
			return nil
		}
		return s
	case SourceNexmark:
		return NexmarkSchema()
	}
	return nil
}

// eventTimeMissing returns why a step that needs event time cannot have
// it, "" when every source has it.
func (c *compiler) eventTimeMissing() string {
	s := c.s
	if len(s.Sources) == 0 {
		if s.Source.EventTime == nil {
			return "add event_time: {field: ...} to the source"
		}
		return ""
	}
	for i := range s.Sources {
		if s.Sources[i].EventTime == nil {
			return fmt.Sprintf("add event_time: {field: ...} to source %q (and to every source)", s.Sources[i].Name)
		}
	}
	return ""
}

// steps compiles steps[start:] of the pipeline at prefix over records of
// schema in, appending to stages. It returns the stages, the schema after
// the last one, and whether every step compiled (the steps after the
// first broken one are not compiled).
func (c *compiler) steps(prefix string, steps []StepSpec, start int, in *Schema, stages []Stage) ([]Stage, *Schema, bool) {
	s := c.s
	c.prefix = prefix
	checkPar := !c.broken["parallelism"] && !c.broken["max_parallelism"]
	schema := in
	keyed, keyName, keyStep, keyEnd, keyEndWindow := false, "", -1, -1, false
	complete := !c.broken[prefix]
	for i := start; i < len(steps); i++ {
		if !complete || c.broken[c.stepPath(i)] {
			complete = false
			break
		}
		st := &steps[i]
		path := c.stepPath(i)
		stepPos := s.posOf(path, st.Line, st.Column)
		ctx := evalCtx{step: st.Name, line: st.Line}
		stage := Stage{Step: st, In: schema, Out: schema, Parallelism: cmpOr(st.Parallelism, s.Parallelism)}
		if st.Kind == StepKeyBy {
			keyed, keyName, keyStep = true, st.Field, i
		}
		if keyed {
			stage.Keyed = true
			stage.Key, _ = schema.Lookup(keyName)
		}
		endsKey := false
		switch st.Kind {
		case StepFilter:
			fpath := path + ".filter"
			ce, xe := compileExpr(st.Expr, schema, ctx)
			switch {
			case xe != nil:
				c.exprErr(fpath, s.posOf(fpath, st.Line, st.Column), xe)
			case ce.typ != TypeBool:
				c.errAt(fpath, s.posOf(fpath, st.Line, st.Column), "a filter must be a bool expression; %q is %s", st.Expr, withArticle(ce.typ))
			default:
				stage.Filter = ce.b
				if !ce.fast {
					stage.SlowExprs = append(stage.SlowExprs, ce.src)
				}
			}
		case StepMap:
			stage.Out, stage.Map, stage.SlowExprs = c.mapStep(i, st, schema, ctx)
			for _, a := range st.Assign {
				if keyed && a.Field == keyName {
					endsKey = true
				}
			}
		case StepKeyBy:
			kpath := path + ".key_by"
			if _, ok := schema.Lookup(st.Field); !ok && !c.poisoned[st.Field] {
				c.errAt(kpath, s.posOf(kpath, st.Line, st.Column), "unknown field %q; the records here are %s", st.Field, schema)
			}
		case StepWindow:
			if !keyed {
				c.needKey(path, stepPos, st.Kind, keyStep, keyEnd, keyName, keyEndWindow)
			}
			if why := c.eventTimeMissing(); why != "" {
				c.errAt(path, stepPos, "a window step needs event time: %s (windows fire when the watermark passes their end)", why)
			}
			if !keyed {
				// Without a key the output schema is unknown.
				for _, a := range st.Accs {
					c.poisoned[a.Field] = true
				}
				c.poisoned[WindowStartField], c.poisoned[WindowEndField] = true, true
				complete = false
				break
			}
			if out, w := c.windowStep(i, st, schema, stage.Key, ctx); w != nil {
				stage.Out, stage.Window = out, w
			} else {
				complete = false
			}
			// A window step's records are new ones, one per key and
			// window: the key_by ends there.
			endsKey, keyEndWindow = true, true
		case StepReduce, StepAggregate:
			if !keyed {
				c.needKey(path, stepPos, st.Kind, keyStep, keyEnd, keyName, keyEndWindow)
			}
			if st.Kind == StepReduce {
				if out, rd, slow := c.reduceStep(i, st, schema, ctx); rd != nil {
					stage.Out, stage.Reduce, stage.SlowExprs = out, rd, slow
					endsKey = keyed && rd.Out.Name == keyName
				}
				break
			}
			if out, accs, slow := c.aggregateStep(i, st, schema, ctx); accs != nil {
				stage.Out, stage.Accs, stage.SlowExprs = out, accs, slow
				for _, a := range accs.List {
					endsKey = endsKey || keyed && a.Out.Name == keyName
				}
			}
		case StepCount, StepSum, StepMin, StepMax:
			if !keyed {
				c.needKey(path, stepPos, st.Kind, keyStep, keyEnd, keyName, keyEndWindow)
			}
			agg := &Aggregate{Kind: st.Kind}
			outType := TypeInt
			ok := true
			if st.Kind != StepCount {
				fpath := path + "." + st.Kind.String()
				f, found := schema.Lookup(st.Field)
				switch {
				case !found:
					if !c.poisoned[st.Field] {
						c.errAt(fpath, s.posOf(fpath, st.Line, st.Column), "unknown field %q; the records here are %s", st.Field, schema)
					}
					ok = false
				case f.Type != TypeInt && f.Type != TypeFloat:
					c.errAt(fpath, s.posOf(fpath, st.Line, st.Column), "%s needs an int or float field; %q is %s", st.Kind, st.Field, withArticle(f.Type))
					ok = false
				}
				agg.In, outType = f, f.Type
			}
			outName := st.Kind.String()
			if !ok {
				c.poisoned[outName] = true
				break
			}
			out, outField, err := withField(schema, outName, outType, 0, 0)
			if err != "" {
				c.errAt(path, stepPos, "cannot add field %q: %s", outName, err)
				c.poisoned[outName] = true
				break
			}
			delete(c.poisoned, outName)
			agg.Out = outField
			stage.Out, stage.Agg = out, agg
			endsKey = keyed && outName == keyName
		default:
			return stages, schema, false // validate reported it
		}
		if checkPar && stage.Keyed && stage.Parallelism > s.MaxParallelism {
			if st.Parallelism != 0 {
				ppath := path + ".parallelism"
				c.errAt(ppath, s.posOf(ppath, st.Line, st.Column), "%d exceeds max_parallelism %d (a keyed step has at most one task per key group)", st.Parallelism, s.MaxParallelism)
			} else {
				c.errAt(path, stepPos, "the job's parallelism %d exceeds max_parallelism %d, and this keyed step has at most one task per key group; set its parallelism or raise max_parallelism", s.Parallelism, s.MaxParallelism)
			}
		}
		if endsKey {
			keyed, keyEnd = false, i
			keyEndWindow = st.Kind == StepWindow
			// A window step ends the key_by for the state of the steps
			// after it, but its records keep their key: they leave the
			// task that owns the key unless an accumulator replaces it.
			stage.KeyWritten = st.Kind != StepWindow || slices.ContainsFunc(st.Accs, func(a AccSpec) bool { return a.Field == keyName })
		}
		stage.Out.mustBeValid()
		stages = append(stages, stage)
		schema = stage.Out
	}
	return stages, schema, complete
}

// needKey reports a keyed step without a key_by in effect.
func (c *compiler) needKey(path string, pos position, kind StepKind, keyStep, keyEnd int, keyName string, endWindow bool) {
	switch {
	case kind == StepWindow && keyEnd < 0:
		c.errAt(path, pos, "window needs a key_by before it (it aggregates each key's records per window)")
		return
	case endWindow:
		c.errAt(path, pos, "%s needs a key_by in effect: the key_by of pipeline[%d] ended at the window step pipeline[%d] (a window step emits new records, one per key and window); add a key_by before this step", kind, keyStep, keyEnd)
		return
	}
	if keyEnd >= 0 {
		c.errAt(path, pos, "%s needs a key_by in effect: the key_by of pipeline[%d] ended at pipeline[%d], which writes its key field %q; add a key_by before this step", kind, keyStep, keyEnd, keyName)
		return
	}
	c.errAt(path, pos, "%s needs a key_by before it (it is a running %s per key)", kind, kind)
}

// withField returns in with field name set to type t: replaced in place
// when it exists (keeping its slot when the kind of slot agrees and the slot
// is not in avoid), appended otherwise, in the lowest free slot not in
// avoid. avoidNum and avoidStr are bitmasks of slots that must not be used.
// It returns a message when no slot is free.
func withField(in *Schema, name string, t Type, avoidNum, avoidStr uint32) (*Schema, Field, string) {
	var usedNum, usedStr uint32
	idx := -1
	for i, f := range in.Fields {
		if f.Name == name {
			idx = i
			continue
		}
		if f.Type == TypeString {
			usedStr |= 1 << f.Slot
		} else {
			usedNum |= 1 << f.Slot
		}
	}
	slot := -1
	if idx >= 0 {
		old := in.Fields[idx]
		if old.Type.isNum() == t.isNum() {
			avoid := avoidNum
			if t == TypeString {
				avoid = avoidStr
			}
			if avoid&(1<<old.Slot) == 0 {
				slot = old.Slot
			}
		}
	}
	if slot < 0 {
		busy, limit := usedNum|avoidNum, MaxNumFields
		if t == TypeString {
			busy, limit = usedStr|avoidStr, MaxStrFields
		}
		if free := bits.TrailingZeros32(^busy); free < limit {
			slot = free
		} else {
			return nil, Field{}, tooManyMsg(t)
		}
	}
	f := Field{Name: name, Type: t, Slot: slot}
	out := &Schema{Fields: make([]Field, 0, len(in.Fields)+1)}
	out.Fields = append(out.Fields, in.Fields...)
	if idx >= 0 {
		out.Fields[idx] = f
	} else {
		out.Fields = append(out.Fields, f)
	}
	return out, f, ""
}

func slotMask(fields []Field) (num, str uint32) {
	for _, f := range fields {
		if f.Type == TypeString {
			str |= 1 << f.Slot
		} else {
			num |= 1 << f.Slot
		}
	}
	return num, str
}

// mapStep compiles a map step: its output schema and its in-place Map.
func (c *compiler) mapStep(i int, st *StepSpec, in *Schema, ctx evalCtx) (*Schema, func(*Row), []string) {
	s := c.s
	path := c.stepPath(i) + ".map"
	n := len(st.Assign)
	ces := make([]*compiled, n)
	for j, a := range st.Assign {
		apath := path + "." + a.Field
		ce, xe := compileExpr(a.Expr, in, ctx)
		if xe != nil {
			c.exprErr(apath, s.posOf(apath, a.Line, a.Column), xe)
			c.poisoned[a.Field] = true
			continue
		}
		ces[j] = ce
	}
	// laterNum[j], laterStr[j]: slots read by assignments after j.
	laterNum, laterStr := laterReads(ces)
	out := in
	var takenNum, takenStr uint32 // slots written by earlier assignments
	var writers []func(*Row)
	var slow []string
	for j, a := range st.Assign {
		ce := ces[j]
		if ce == nil {
			continue
		}
		apath := path + "." + a.Field
		// A slot read by a later assignment, or written by an earlier one,
		// must not be written now. Slots of fields this step does not assign
		// are busy anyway (withField keeps them).
		avoidNum, avoidStr := laterNum[j]|takenNum, laterStr[j]|takenStr
		next, f, msg := withField(out, a.Field, ce.typ, avoidNum, avoidStr)
		if msg != "" {
			c.errAt(apath, s.posOf(apath+":key", a.Line, a.Column), "%s", msg)
			c.poisoned[a.Field] = true
			continue
		}
		delete(c.poisoned, a.Field)
		out = next
		if f.Type == TypeString {
			takenStr |= 1 << f.Slot
		} else {
			takenNum |= 1 << f.Slot
		}
		if !ce.fast {
			slow = append(slow, ce.src)
		}
		writers = append(writers, writer(ce, f.Slot))
	}
	return out, combine(writers), slow
}

// writer evaluates ce and stores the result in slot.
func writer(ce *compiled, slot int) func(*Row) {
	switch ce.typ {
	case TypeInt:
		fn := ce.i
		return func(r *Row) { r.Num[slot] = uint64(fn(r)) }
	case TypeFloat:
		fn := ce.f
		return func(r *Row) { r.Num[slot] = math.Float64bits(fn(r)) }
	case TypeBool:
		fn := ce.b
		return func(r *Row) { r.Num[slot] = b2u(fn(r)) }
	case TypeString:
		fn := ce.s
		return func(r *Row) { r.Str[slot] = fn(r) }
	}
	panic(fmt.Sprintf("job: writer: invalid type %v", ce.typ))
}

func combine(ws []func(*Row)) func(*Row) {
	switch len(ws) {
	case 0:
		return func(*Row) {}
	case 1:
		return ws[0]
	case 2:
		a, b := ws[0], ws[1]
		return func(r *Row) { a(r); b(r) }
	case 3:
		a, b, c := ws[0], ws[1], ws[2]
		return func(r *Row) { a(r); b(r); c(r) }
	}
	return func(r *Row) {
		for _, w := range ws {
			w(r)
		}
	}
}

// fingerprintHeader starts every fingerprint; bump the version when the
// meaning of a line changes.
const fingerprintHeader = "streamd job fingerprint v1"

// Fingerprint describes, one fact per line, what decides whether a
// checkpoint of one job can be restored into another: max_parallelism (the
// key groups state is split into), the source type (what its positions
// mean), and every step in order with its name, kind, key field and
// aggregated field (with types). Stateless steps are listed too: the
// conservative choice, so that a change in the pipeline's shape refuses a
// restore rather than risks giving state to the wrong operator.
// Expressions, parallelism, rates, counts, sinks and checkpoint options are
// not listed: changing them keeps a checkpoint usable. Equal fingerprints
// mean compatible; FingerprintDiff says what differs. A reduce lists its
// field and type; an aggregate its accumulators in order, with their kinds
// and input types, which decide the layout of its state (their expressions
// are not listed).
func (p *Plan) Fingerprint() string {
	var b strings.Builder
	b.WriteString(fingerprintHeader)
	if len(p.Inputs) == 0 {
		fmt.Fprintf(&b, "\nmax_parallelism %d\nsource %s\n", p.Spec.MaxParallelism, p.Spec.Source.Type)
	} else {
		// With sources: each source by name, with the steps of its
		// pipeline.
		fmt.Fprintf(&b, "\nmax_parallelism %d\n", p.Spec.MaxParallelism)
		for _, in := range p.Inputs {
			fmt.Fprintf(&b, "source %s %s\n", in.Source.Name, in.Source.Type)
			for i := range in.Stages {
				st := &in.Stages[i]
				fmt.Fprintf(&b, "step %s %d %s %s\n", in.Source.Name, i, st.Step.Name, st.StateSignature())
			}
		}
	}
	for i := range p.Stages {
		st := &p.Stages[i]
		fmt.Fprintf(&b, "step %d %s %s\n", i, st.Step.Name, st.StateSignature())
	}
	return b.String()
}

// StateSignature describes what a stage's state means — its kind, key,
// value types and accumulators, but not its place in the pipeline nor its
// name — for the engine's per-operator compatibility check
// (engine.WithStateSignature): a checkpoint restores a step's state only
// into a step of the same id and signature.
func (st *Stage) StateSignature() string {
	var b strings.Builder
	b.WriteString(st.Step.Kind.String())
	if st.Keyed {
		fmt.Fprintf(&b, " key=%s:%s", st.Key.Name, st.Key.Type)
	}
	if st.Agg != nil && st.Agg.Kind != StepCount {
		fmt.Fprintf(&b, " field=%s:%s", st.Agg.In.Name, st.Agg.In.Type)
	}
	if r := st.Reduce; r != nil {
		fmt.Fprintf(&b, " field=%s:%s", r.Out.Name, r.Out.Type)
	}
	if w := st.Window; w != nil {
		b.WriteString(w.signature())
	}
	if j := st.Join; j != nil {
		b.WriteString(j.signature())
	}
	if a := st.Accs; a != nil {
		// Names, kinds and input types decide the layout of the state.
		b.WriteString(" accumulators=")
		for j, acc := range a.List {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s:%s", acc.Out.Name, acc.Kind)
			if acc.In != 0 {
				fmt.Fprintf(&b, "(%s)", acc.In)
			}
		}
	}
	return b.String()
}

// SourceSignature describes what the source's positions mean.
func (p *Plan) SourceSignature() string { return "source " + p.Spec.Source.Type }

// SinkSignature describes what the sink's pending transactions mean.
func (p *Plan) SinkSignature() string { return "sink " + p.Spec.Sink.Type }

// FingerprintDiff lists the lines only in old ("- line") and only in cur
// ("+ line"), for telling a user why a checkpoint cannot be restored. It
// returns nil when the fingerprints are equal.
func FingerprintDiff(old, cur string) []string {
	if old == cur {
		return nil
	}
	a := strings.Split(strings.TrimSuffix(old, "\n"), "\n")
	b := strings.Split(strings.TrimSuffix(cur, "\n"), "\n")
	inA := make(map[string]bool, len(a))
	inB := make(map[string]bool, len(b))
	for _, l := range a {
		inA[l] = true
	}
	for _, l := range b {
		inB[l] = true
	}
	var out []string
	for _, l := range a {
		if !inB[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b {
		if !inA[l] {
			out = append(out, "+ "+l)
		}
	}
	return out
}

// laterReads returns, for every j, the record slots (numeric and string
// masks) that the compiled expressions after j read: what an assignment
// or accumulator j may not overwrite before they run. ces[j] may be nil
// (an expression that did not compile).
func laterReads(ces []*compiled) (laterNum, laterStr []uint32) {
	n := len(ces)
	laterNum = make([]uint32, n+1)
	laterStr = make([]uint32, n+1)
	for j := n - 1; j >= 0; j-- {
		laterNum[j], laterStr[j] = laterNum[j+1], laterStr[j+1]
		if j+1 < n && ces[j+1] != nil {
			rn, rs := slotMask(ces[j+1].reads)
			laterNum[j] |= rn
			laterStr[j] |= rs
		}
	}
	return laterNum, laterStr
}
