package job

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/streamd/streamd/keyed"
)

// reduceAcc is the name of a reduce step's accumulator in its value
// expression.
const reduceAcc = "acc"

// State names of the reduce and aggregate steps, under the step's name
// ("<step>/value", "<step>/acc", "<step>/acc/<field>"): they fit
// keyed.MaxStateNameBytes with any step and field name.
const (
	reduceStateName = "value"
	accStateName    = "acc"
	_               = uint(keyed.MaxStateNameBytes - MaxNameLen - len("/acc/") - MaxFieldNameLen)
)

// StateStore is the keyed state of a reduce or aggregate step for the
// current record's key, as the step's States declare it (state i is
// States[i]). jobrun implements it over keyed.Backend. Get's bytes are
// valid until the next Put or AddMember and must not be modified.
type StateStore interface {
	Get(state int) ([]byte, bool)
	Put(state int, value []byte)
	// AddMember adds member to the set state (a keyed map state whose user
	// keys are the members) and reports whether it was not there before.
	AddMember(state int, member []byte) bool
}

// StateDecl declares one keyed state of a step.
type StateDecl struct {
	// Name is the state's name under the step's ("value", "acc",
	// "acc/users"): jobrun registers Runtime.StateName(Name).
	Name string
	// Set: a map state used as a set (StateStore.AddMember); otherwise a
	// value state.
	Set bool
}

// Reducer is a compiled reduce step: per key, the first record's
// accumulator is Init (or the record's own Field), every later one is
// Value evaluated with `acc` bound to the previous accumulator; the
// accumulator is written to the record's Out field. A Reducer is immutable;
// Open gives a task its operator.
type Reducer struct {
	Out    Field       // the output field of the stage's Out; also where acc is read from
	From   Field       // when there is no init: the input field the first record starts from
	States []StateDecl // one value state: the accumulator (8 bytes, or a string's bytes)

	step  string
	init  *compiled // nil: From
	value *compiled // compiled over the input with acc at Out's slot
}

// Open returns the reduce operator of one task over st. The function it
// returns folds r into its key's accumulator and writes it into r; it is not
// safe for concurrent use. For int, float and bool accumulators with
// expressions that run on the fast path it allocates nothing; a string
// accumulator is copied out of state (one allocation per record).
func (rd *Reducer) Open(st StateStore) func(r *Row) {
	slot := rd.Out.Slot
	if rd.Out.Type == TypeString {
		initS := func(r *Row) string { return r.Str[rd.From.Slot] }
		if rd.init != nil {
			initS = rd.init.s
		}
		value := rd.value.s
		var buf []byte
		return func(r *Row) {
			prev, ok := st.Get(0)
			var v string
			if ok {
				r.Str[slot] = string(prev)
				v = value(r)
			} else {
				v = initS(r)
			}
			r.Str[slot] = v
			buf = append(buf[:0], v...)
			st.Put(0, buf)
		}
	}
	var initN func(*Row) uint64
	if rd.init != nil {
		initN = numBits(rd.init)
	} else {
		from := rd.From.Slot
		initN = func(r *Row) uint64 { return r.Num[from] }
	}
	value := numBits(rd.value)
	var buf [8]byte
	return func(r *Row) {
		prev, ok := st.Get(0)
		var v uint64
		if ok {
			if len(prev) != 8 {
				panicCorrupt(rd.step, reduceStateName, len(prev), 8)
			}
			r.Num[slot] = binary.LittleEndian.Uint64(prev)
			v = value(r)
		} else {
			v = initN(r)
		}
		r.Num[slot] = v
		binary.LittleEndian.PutUint64(buf[:], v)
		st.Put(0, buf[:])
	}
}

// numBits returns ce (int, float or bool) as the bits Row.Num stores.
func numBits(ce *compiled) func(*Row) uint64 {
	switch ce.typ {
	case TypeInt:
		f := ce.i
		return func(r *Row) uint64 { return uint64(f(r)) }
	case TypeFloat:
		f := ce.f
		return func(r *Row) uint64 { return math.Float64bits(f(r)) }
	case TypeBool:
		f := ce.b
		return func(r *Row) uint64 { return b2u(f(r)) }
	}
	panic(fmt.Sprintf("job: numBits: type %v is not numeric", ce.typ))
}

// panicCorrupt reports stored bytes of the wrong size. It is out of line so
// that the per-record functions build no error values.
//
//go:noinline
func panicCorrupt(step, state string, got, want int) {
	panic(fmt.Errorf("%w: step %q: state %q holds %d bytes, want %d", keyed.ErrCorrupt, step, state, got, want))
}

// Accumulators is a compiled aggregate step: several accumulators over the
// same records, each writing its own output field. A key's fixed-size
// accumulators (count, sum, avg, min and max of numbers, first of numbers,
// the counts of count_distinct) share one value state, packed; the others
// have a state each (see Accumulator). It is immutable; Open gives a task
// its operator.
type Accumulators struct {
	List   []Accumulator
	States []StateDecl // index 0 is the packed value when FixedBytes > 0

	// FixedBytes is the size of the packed value.
	FixedBytes int

	step string
	line int
}

// Accumulator is one compiled accumulator of an aggregate step. What it
// keeps per key:
//
//	count                  8 bytes in the packed value: the count
//	sum                    8 bytes: the sum (int sums wrap like int64)
//	avg                    16 bytes: count and sum (int64 for ints, float64 for floats)
//	min, max               numbers: 8 bytes; strings: their own value state
//	first                  numbers and bools: 8 bytes; strings: their own value state
//	last                   nothing: in a running aggregation it is the current record's value
//	count_distinct         8 bytes (the count) and a set (map state) of every distinct value
//	count_distinct_approx  its own value state: a HyperLogLog sketch (hll.go)
type Accumulator struct {
	Kind AccKind
	In   Type  // the type of the aggregated expression (0 for count)
	Out  Field // the output field of the stage's Out
	Expr string

	off   int // offset in the packed value, -1 if none
	state int // index of its own state in States, -1 if none
	ce    *compiled
}

// accFixedBytes is the size of k's share of the packed value for inputs of
// type t.
func accFixedBytes(k AccKind, t Type) int {
	switch k {
	case AccCount, AccSum, AccCountDistinct:
		return 8
	case AccAvg:
		return 16
	case AccMin, AccMax, AccFirst:
		if t != TypeString {
			return 8
		}
	}
	return 0
}

// accOwnState reports whether k over t keeps a state of its own, and
// whether that is a set.
func accOwnState(k AccKind, t Type) (own, set bool) {
	switch k {
	case AccCountDistinct:
		return true, true
	case AccCountDistinctApprox:
		return true, false
	case AccMin, AccMax, AccFirst:
		return t == TypeString, false
	}
	return false, false
}

// maxStringMember bounds a string that count_distinct stores as a member of
// its set (a keyed map state's user key).
const maxStringMember = keyed.MaxKeyBytes

// Open returns the aggregate operator of one task over st. The function it
// returns folds r into its key's accumulators and writes every output field
// into r; it is not safe for concurrent use. count, sum, avg, min, max,
// first and last of numbers allocate nothing (with expressions on the fast
// path); strings copied out of state allocate, and so does a set or sketch
// that grows past the operator's buffers (amortized).
func (a *Accumulators) Open(st StateStore) func(r *Row) {
	fixed := make([]byte, a.FixedBytes)
	var scratch []byte // members, strings and sketches on their way to state
	sketch := make([]byte, 0, hllHeader+hllM)
	type accFn struct {
		*Accumulator
		num func(*Row) uint64
		str func(*Row) string
	}
	fns := make([]accFn, len(a.List))
	for i := range a.List {
		acc := &a.List[i]
		fns[i].Accumulator = acc
		if acc.ce == nil {
			continue
		}
		if acc.ce.typ == TypeString {
			fns[i].str = acc.ce.s
		} else {
			fns[i].num = numBits(acc.ce)
		}
	}
	return func(r *Row) {
		have := false
		if len(fixed) > 0 {
			prev, ok := st.Get(0)
			if ok {
				if len(prev) != len(fixed) {
					panicCorrupt(a.step, accStateName, len(prev), len(fixed))
				}
				copy(fixed, prev)
				have = true
			}
		}
		for i := range fns {
			f := &fns[i]
			out := f.Out.Slot
			var b []byte
			if f.off >= 0 {
				b = fixed[f.off : f.off+accFixedBytes(f.Kind, f.In)]
			}
			switch f.Kind {
			case AccCount:
				n := uint64(1)
				if have {
					n = binary.LittleEndian.Uint64(b) + 1
				}
				binary.LittleEndian.PutUint64(b, n)
				r.Num[out] = n
			case AccSum, AccMin, AccMax:
				if f.In == TypeString {
					s := f.str(r)
					prev, ok := st.Get(f.state)
					// The comparison converts without allocating.
					if ok && (f.Kind == AccMin && string(prev) <= s || f.Kind == AccMax && string(prev) >= s) {
						r.Str[out] = string(prev)
						continue
					}
					scratch = append(scratch[:0], s...)
					st.Put(f.state, scratch)
					r.Str[out] = s
					continue
				}
				v := f.num(r)
				if have {
					v = foldNum(f.Kind, f.In, binary.LittleEndian.Uint64(b), v)
				}
				binary.LittleEndian.PutUint64(b, v)
				r.Num[out] = v
			case AccAvg:
				v := f.num(r)
				n, sum := uint64(1), v
				if have {
					n = binary.LittleEndian.Uint64(b) + 1
					sum = foldNum(AccSum, f.In, binary.LittleEndian.Uint64(b[8:]), v)
				}
				binary.LittleEndian.PutUint64(b, n)
				binary.LittleEndian.PutUint64(b[8:], sum)
				total := math.Float64frombits(sum)
				if f.In == TypeInt {
					total = float64(int64(sum))
				}
				r.Num[out] = math.Float64bits(total / float64(n))
			case AccFirst:
				if f.In == TypeString {
					if prev, ok := st.Get(f.state); ok {
						r.Str[out] = string(prev)
						continue
					}
					s := f.str(r)
					scratch = append(scratch[:0], s...)
					st.Put(f.state, scratch)
					r.Str[out] = s
					continue
				}
				v := f.num(r)
				if have {
					v = binary.LittleEndian.Uint64(b)
				}
				binary.LittleEndian.PutUint64(b, v)
				r.Num[out] = v
			case AccLast:
				if f.In == TypeString {
					r.Str[out] = f.str(r)
				} else {
					r.Num[out] = f.num(r)
				}
			case AccCountDistinct:
				scratch = a.member(scratch[:0], f.Accumulator, f.num, f.str, r)
				n := uint64(0)
				if have {
					n = binary.LittleEndian.Uint64(b)
				}
				if st.AddMember(f.state, scratch) {
					n++
				}
				binary.LittleEndian.PutUint64(b, n)
				r.Num[out] = n
			case AccCountDistinctApprox:
				scratch = a.member(scratch[:0], f.Accumulator, f.num, f.str, r)
				prev, ok := st.Get(f.state)
				if ok && !hllValid(prev) {
					panicCorrupt(a.step, accStateName+"/"+f.Out.Name, len(prev), hllHeader)
				}
				if !ok {
					prev = nil
				}
				sk, changed, corrupt := hllAdd(sketch, prev, xxhash.Sum64(scratch))
				if corrupt {
					panic(fmt.Errorf("%w: step %q: state %q holds a HyperLogLog sketch with a register out of range", keyed.ErrCorrupt, a.step, accStateName+"/"+f.Out.Name))
				}
				if changed {
					st.Put(f.state, sk)
				}
				r.Num[out] = uint64(hllEstimate(sk))
			}
		}
		if len(fixed) > 0 {
			st.Put(0, fixed)
		}
	}
}

// member appends the bytes that stand for a value in a set or sketch: the
// 8 little-endian bytes of a number's Row.Num bits (so floats compare by
// bits, as key_by does: 0.0 and -0.0 differ), a string's bytes.
func (a *Accumulators) member(dst []byte, acc *Accumulator, num func(*Row) uint64, str func(*Row) string, r *Row) []byte {
	if str != nil {
		s := str(r)
		if len(s) > maxStringMember {
			panicTooLong(a.step, a.line, acc, len(s))
		}
		return append(dst, s...)
	}
	return binary.LittleEndian.AppendUint64(dst, num(r))
}

//go:noinline
func panicTooLong(step string, line int, acc *Accumulator, n int) {
	panic(&EvalError{Step: step, Line: line, Expr: acc.Expr,
		Err: fmt.Errorf("%s of a string of %d bytes; the limit is %d", acc.Kind, n, maxStringMember)})
}

// foldNum folds x into the running sum, min or max prev, as Aggregate.Apply
// does: ints as int64 (sums wrap), floats as IEEE (math.Min, math.Max).
func foldNum(k AccKind, t Type, prev, x uint64) uint64 {
	if t == TypeInt {
		p, v := int64(prev), int64(x)
		switch k {
		case AccSum:
			return uint64(p + v)
		case AccMin:
			return uint64(min(p, v))
		case AccMax:
			return uint64(max(p, v))
		}
	}
	p, v := math.Float64frombits(prev), math.Float64frombits(x)
	switch k {
	case AccSum:
		return math.Float64bits(p + v)
	case AccMin:
		return math.Float64bits(math.Min(p, v))
	case AccMax:
		return math.Float64bits(math.Max(p, v))
	}
	panic(fmt.Sprintf("job: foldNum: %v", k))
}

// reduceStep compiles a reduce step: its output schema and its Reducer (nil
// after reporting a problem).
func (c *compiler) reduceStep(i int, st *StepSpec, in *Schema, ctx evalCtx) (*Schema, *Reducer, []string) {
	s := c.s
	r := st.Reduce
	path := c.stepPath(i) + ".reduce"
	fpath, vpath, ipath := path+".field", path+".value", path+".init"
	at := func(p string) position { return s.posOf(p, st.Line, st.Column) }
	fail := func() (*Schema, *Reducer, []string) {
		c.poisoned[r.Field] = true
		return nil, nil, nil
	}
	rd := &Reducer{step: st.Name, States: []StateDecl{{Name: reduceStateName}}}
	// The accumulator's type: init's, or the field's that it starts from.
	var typ Type
	origin := "the type of init"
	if r.Init != "" {
		ce, xe := compileExpr(r.Init, in, ctx)
		if xe != nil {
			c.exprErr(ipath, at(ipath), xe)
			return fail()
		}
		rd.init, typ = ce, ce.typ
	} else {
		f, ok := in.Lookup(r.Field)
		if !ok {
			if !c.poisoned[r.Field] {
				c.errAt(fpath, at(fpath), "the records here have no field %q to start from; add init: an expression that gives a key's first %s from its first record (the records here are %s)",
					r.Field, r.Field, in)
			}
			return fail()
		}
		rd.From, typ = f, f.Type
		origin = "the type of the input field " + strconv.Quote(f.Name)
	}
	if _, clash := in.Lookup(reduceAcc); clash {
		c.errAt(vpath, at(vpath), "the records here have a field named %q, the name of the accumulator in value; rename that field with a map step before this one", reduceAcc)
		return fail()
	}
	// Type-check value with acc in any slot, to learn its type and the
	// fields it reads.
	probe := &Schema{Fields: append(slices.Clone(in.Fields), Field{Name: reduceAcc, Type: typ})}
	ce, xe := compileExpr(r.Value, probe, ctx)
	if xe != nil {
		c.exprErr(vpath, at(vpath), xe)
		return fail()
	}
	if ce.typ != typ {
		hint := ""
		switch {
		case typ == TypeFloat && ce.typ == TypeInt:
			hint = " (wrap value in float(...))"
		case typ == TypeInt && ce.typ == TypeFloat:
			hint = " (wrap value in int(...), or make the first value a float)"
		}
		c.errAt(vpath, at(vpath), "value %q is %s, but the accumulator %s is %s (%s); they must agree%s",
			r.Value, withArticle(ce.typ), reduceAcc, withArticle(typ), origin, hint)
		return fail()
	}
	// acc lives in the output field's slot while value runs, so that slot
	// must be none that value reads.
	var reads []Field
	for _, f := range ce.reads {
		if f.Name != reduceAcc {
			reads = append(reads, f)
		}
	}
	avoidNum, avoidStr := slotMask(reads)
	out, outField, msg := withField(in, r.Field, typ, avoidNum, avoidStr)
	if msg != "" {
		c.errAt(fpath, at(fpath), "cannot add field %q: %s", r.Field, msg)
		return fail()
	}
	delete(c.poisoned, r.Field)
	env := &Schema{Fields: make([]Field, 0, len(in.Fields)+1)}
	for _, f := range in.Fields {
		if f.Slot == outField.Slot && (f.Type == TypeString) == (typ == TypeString) {
			continue // the replaced field, which value does not read
		}
		env.Fields = append(env.Fields, f)
	}
	env.Fields = append(env.Fields, Field{Name: reduceAcc, Type: typ, Slot: outField.Slot})
	env.mustBeValid()
	value, xe := compileExpr(r.Value, env, ctx)
	if xe != nil || value.typ != typ {
		panic(fmt.Sprintf("job: reduce %q: value compiled over %s but not over %s", r.Value, probe.layout(), env.layout()))
	}
	rd.value, rd.Out = value, outField
	var slow []string
	for _, x := range []*compiled{rd.init, value} {
		if x != nil && !x.fast {
			slow = append(slow, x.src)
		}
	}
	return out, rd, slow
}

// accInputs says which input types an accumulator takes, for messages; ""
// when it takes any.
func accInputs(k AccKind) string {
	switch k {
	case AccSum, AccAvg:
		return "an int or float value"
	case AccMin, AccMax:
		return "an int, float or string value"
	}
	return ""
}

func accTakes(k AccKind, t Type) bool {
	switch k {
	case AccSum, AccAvg:
		return t == TypeInt || t == TypeFloat
	case AccMin, AccMax:
		return t == TypeInt || t == TypeFloat || t == TypeString
	}
	return true
}

// accOutType is the type of k's output for inputs of type t: avg is float;
// the counts are int; the others keep the input's type.
func accOutType(k AccKind, t Type) Type {
	switch k {
	case AccAvg:
		return TypeFloat
	case AccCount, AccCountDistinct, AccCountDistinctApprox:
		return TypeInt
	}
	return t
}

// aggregateStep compiles an aggregate step: its output schema and its
// Accumulators (nil after reporting a problem). Its accumulators' inputs
// all see the step's input, as a map's expressions do, and their outputs
// take slots as a map's assignments do (see mapStep).
func (c *compiler) aggregateStep(i int, st *StepSpec, in *Schema, ctx evalCtx) (*Schema, *Accumulators, []string) {
	s := c.s
	path := c.stepPath(i) + ".aggregate"
	n := len(st.Accs)
	fail := func() (*Schema, *Accumulators, []string) {
		for _, a := range st.Accs {
			c.poisoned[a.Field] = true
		}
		return nil, nil, nil
	}
	ces := make([]*compiled, n)
	ok := true
	for j, a := range st.Accs {
		if a.Kind == AccCount {
			continue
		}
		epath := path + "." + a.Field + "." + a.Kind.String()
		epos := s.posOf(epath, a.Line, a.Column)
		ce, xe := compileExpr(a.Expr, in, ctx)
		switch {
		case xe != nil && checkFieldName(a.Expr) == "":
			// A plain field name: say so.
			if !c.poisoned[a.Expr] {
				c.errAt(epath, epos, "unknown field %q; the records here are %s", a.Expr, in)
			}
			ok = false
		case xe != nil:
			c.exprErr(epath, epos, xe)
			ok = false
		case !accTakes(a.Kind, ce.typ):
			what := "field"
			if checkFieldName(a.Expr) != "" {
				what = "expression"
			}
			c.errAt(epath, epos, "%s needs %s; the %s %q is %s", a.Kind, accInputs(a.Kind), what, a.Expr, withArticle(ce.typ))
			ok = false
		}
		ces[j] = ce
	}
	if !ok {
		return fail()
	}
	// laterNum[j], laterStr[j]: slots read by accumulators after j.
	laterNum, laterStr := laterReads(ces)
	accs := &Accumulators{step: st.Name, line: st.Line}
	out := in
	var takenNum, takenStr uint32
	var slow []string
	for j, a := range st.Accs {
		var inType Type
		if ces[j] != nil {
			inType = ces[j].typ
			if !ces[j].fast {
				slow = append(slow, ces[j].src)
			}
		}
		apath := path + "." + a.Field
		next, f, msg := withField(out, a.Field, accOutType(a.Kind, inType), laterNum[j]|takenNum, laterStr[j]|takenStr)
		if msg != "" {
			c.errAt(apath, s.posOf(apath+":key", a.Line, a.Column), "cannot add field %q: %s", a.Field, msg)
			return fail()
		}
		out = next
		if f.Type == TypeString {
			takenStr |= 1 << f.Slot
		} else {
			takenNum |= 1 << f.Slot
		}
		acc := Accumulator{Kind: a.Kind, In: inType, Out: f, Expr: a.Expr, ce: ces[j], off: -1, state: -1}
		if b := accFixedBytes(a.Kind, inType); b > 0 {
			acc.off = accs.FixedBytes
			accs.FixedBytes += b
		}
		accs.List = append(accs.List, acc)
	}
	if accs.FixedBytes > 0 {
		accs.States = append(accs.States, StateDecl{Name: accStateName})
	}
	for j := range accs.List {
		acc := &accs.List[j]
		if own, set := accOwnState(acc.Kind, acc.In); own {
			acc.state = len(accs.States)
			accs.States = append(accs.States, StateDecl{Name: accStateName + "/" + acc.Out.Name, Set: set})
		}
	}
	for _, a := range st.Accs {
		delete(c.poisoned, a.Field)
	}
	return out, accs, slow
}
