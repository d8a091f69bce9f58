package job

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// exprSchema is the schema the expression tests evaluate against.
func exprSchema(t testing.TB) *Schema {
	s, err := NewSchema([]FieldSpec{
		{"i1", TypeInt}, {"i2", TypeInt}, {"f1", TypeFloat}, {"f2", TypeFloat},
		{"b1", TypeBool}, {"b2", TypeBool}, {"s1", TypeString}, {"s2", TypeString},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	edgeInts   = []int64{0, 1, -1, 2, 3, 7, -7, 10, 1 << 40, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	edgeFloats = []float64{0, math.Copysign(0, -1), 1, -1, 1.5, -2.25, 0.1, 1e-7, 1e300, -1e300,
		math.NaN(), math.Inf(1), math.Inf(-1), 9.223372036854775807e18, 3}
	edgeStrings = []string{"", "a", "ab", "abc", "b", "é", "\xff", "a.b", "A", "abcabc"}
)

func randRow(rng *rand.Rand, s *Schema) Row {
	var r Row
	for _, f := range s.Fields {
		switch f.Type {
		case TypeInt:
			v := edgeInts[rng.IntN(len(edgeInts))]
			if rng.IntN(3) == 0 {
				v = rng.Int64N(41) - 20
			}
			r.SetInt(f.Slot, v)
		case TypeFloat:
			v := edgeFloats[rng.IntN(len(edgeFloats))]
			if rng.IntN(3) == 0 {
				v = float64(rng.IntN(81)-40) / 4
			}
			r.SetFloat(f.Slot, v)
		case TypeBool:
			r.SetBool(f.Slot, rng.IntN(2) == 0)
		case TypeString:
			r.Str[f.Slot] = edgeStrings[rng.IntN(len(edgeStrings))]
		}
	}
	return r
}

// exprGen generates random well-typed expressions over exprSchema.
type exprGen struct {
	rng  *rand.Rand
	slow bool // also generate nodes the fast path does not compile
}

func (g *exprGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *exprGen) num(depth int) string {
	if g.rng.IntN(2) == 0 {
		return g.int(depth)
	}
	return g.float(depth)
}

func (g *exprGen) int(depth int) string {
	if depth <= 0 || g.rng.IntN(4) == 0 {
		return g.pick("i1", "i2", "0", "1", "3", "7", "(-2)", "9223372036854775807", "i1", "i2")
	}
	d := depth - 1
	switch g.rng.IntN(10) {
	case 0:
		return fmt.Sprintf("(%s %s %s)", g.int(d), g.pick("+", "-", "*"), g.int(d))
	case 1:
		return fmt.Sprintf("(%s %% %s)", g.int(d), g.int(d))
	case 2:
		return fmt.Sprintf("-%s", g.int(d))
	case 3:
		return fmt.Sprintf("abs(%s)", g.int(d))
	case 4:
		return fmt.Sprintf("int(%s)", g.num(d))
	case 5:
		return fmt.Sprintf("len(%s)", g.str(d))
	case 6:
		return fmt.Sprintf("(%s ? %s : %s)", g.bool(d), g.int(d), g.int(d))
	case 7:
		if g.slow {
			return fmt.Sprintf("max(%s, %s)", g.int(d), g.int(d))
		}
		return fmt.Sprintf("(%s %% 3)", g.int(d))
	case 8:
		return fmt.Sprintf("(+%s)", g.int(d))
	default:
		return fmt.Sprintf("(%s + %s)", g.int(d), g.int(d))
	}
}

func (g *exprGen) float(depth int) string {
	if depth <= 0 || g.rng.IntN(4) == 0 {
		return g.pick("f1", "f2", "0.0", "1.5", "0.1", "1e300", "2.5e-7", "f1", "f2")
	}
	d := depth - 1
	switch g.rng.IntN(10) {
	case 0:
		// At least one float operand.
		return fmt.Sprintf("(%s %s %s)", g.float(d), g.pick("+", "-", "*"), g.num(d))
	case 1:
		return fmt.Sprintf("(%s %s %s)", g.num(d), g.pick("+", "-", "*"), g.float(d))
	case 2:
		return fmt.Sprintf("(%s / %s)", g.num(d), g.num(d))
	case 3:
		return fmt.Sprintf("(%s %s %s)", g.num(d), g.pick("**", "^"), g.num(d))
	case 4:
		return fmt.Sprintf("-%s", g.float(d))
	case 5:
		return fmt.Sprintf("abs(%s)", g.float(d))
	case 6:
		return fmt.Sprintf("%s(%s)", g.pick("float", "round", "floor", "ceil"), g.num(d))
	case 7:
		return fmt.Sprintf("(%s ? %s : %s)", g.bool(d), g.float(d), g.float(d))
	case 8:
		if g.slow {
			return fmt.Sprintf("float(mean([%s, %s]))", g.num(d), g.num(d))
		}
		return fmt.Sprintf("(%s / 2)", g.int(d))
	default:
		return fmt.Sprintf("(if %s { %s } else { %s })", g.bool(d), g.float(d), g.float(d))
	}
}

func (g *exprGen) bool(depth int) string {
	if depth <= 0 || g.rng.IntN(5) == 0 {
		return g.pick("b1", "b2", "true", "false")
	}
	d := depth - 1
	switch g.rng.IntN(13) {
	case 0, 1:
		return fmt.Sprintf("(%s %s %s)", g.num(d), g.pick("==", "!=", "<", "<=", ">", ">="), g.num(d))
	case 2:
		return fmt.Sprintf("(%s %s %s)", g.str(d), g.pick("==", "!=", "<", "<=", ">", ">="), g.str(d))
	case 3:
		return fmt.Sprintf("(%s %s %s)", g.bool(d), g.pick("&&", "||", "and", "or", "==", "!="), g.bool(d))
	case 4:
		return fmt.Sprintf("%s%s", g.pick("!", "not "), g.bool(d))
	case 5:
		return fmt.Sprintf("(%s %s %s)", g.str(d), g.pick("contains", "startsWith", "endsWith"), g.str(d))
	case 6:
		return fmt.Sprintf("(%s in [1, 3, 7, -1, 2.5, 'x', true])", g.num(d))
	case 7:
		return fmt.Sprintf("(%s %sin ['a', 'abc', '', 'é'])", g.str(d), g.pick("", "not "))
	case 8:
		return fmt.Sprintf("(%s in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1])", g.int(d))
	case 9:
		return fmt.Sprintf("(%s matches %s)", g.str(d), g.pick("'^a'", "'b$'", "'^$'", "'a.c'"))
	case 10:
		return fmt.Sprintf("(%s in [true])", g.bool(d))
	case 11:
		if g.slow {
			return fmt.Sprintf("(%s matches %s)", g.str(d), g.str(d))
		}
		return fmt.Sprintf("(%s ? %s : %s)", g.bool(d), g.bool(d), g.bool(d))
	default:
		return fmt.Sprintf("(%s ? %s : %s)", g.bool(d), g.bool(d), g.bool(d))
	}
}

func (g *exprGen) str(depth int) string {
	if depth <= 0 || g.rng.IntN(3) == 0 {
		return g.pick("s1", "s2", "''", "'a'", "'abc'", `"é"`, "s1")
	}
	d := depth - 1
	switch g.rng.IntN(4) {
	case 0:
		return fmt.Sprintf("(%s + %s)", g.str(d), g.str(d))
	case 1:
		return fmt.Sprintf("(%s ? %s : %s)", g.bool(d), g.str(d), g.str(d))
	case 2:
		if g.slow {
			return fmt.Sprintf("%s(%s)", g.pick("upper", "lower", "trim"), g.str(d))
		}
		return g.pick("s1", "s2")
	default:
		return fmt.Sprintf("(%s + 'x')", g.str(d))
	}
}

// outcome is the result of one evaluation: a value or a panic.
type outcome struct {
	typ    Type
	i      int64
	f      float64
	b      bool
	s      string
	panicV any
}

func (o outcome) String() string {
	if o.panicV != nil {
		return fmt.Sprintf("panic(%v)", o.panicV)
	}
	switch o.typ {
	case TypeInt:
		return fmt.Sprint(o.i)
	case TypeFloat:
		if math.IsNaN(o.f) {
			return "NaN"
		}
		return fmt.Sprintf("%v (bits %x)", o.f, math.Float64bits(o.f))
	case TypeBool:
		return fmt.Sprint(o.b)
	}
	return fmt.Sprintf("%q", o.s)
}

func (o outcome) equal(p outcome) bool {
	if (o.panicV != nil) != (p.panicV != nil) {
		return false
	}
	if o.panicV != nil {
		return true
	}
	switch o.typ {
	case TypeInt:
		return o.i == p.i
	case TypeFloat:
		if math.IsNaN(o.f) || math.IsNaN(p.f) {
			return math.IsNaN(o.f) && math.IsNaN(p.f)
		}
		return math.Float64bits(o.f) == math.Float64bits(p.f)
	case TypeBool:
		return o.b == p.b
	}
	return o.s == p.s
}

func run(typ Type, i func(*Row) int64, f func(*Row) float64, b func(*Row) bool, s func(*Row) string, r *Row) (o outcome) {
	o.typ = typ
	defer func() {
		if v := recover(); v != nil {
			o.panicV = v
		}
	}()
	switch typ {
	case TypeInt:
		o.i = i(r)
	case TypeFloat:
		o.f = f(r)
	case TypeBool:
		o.b = b(r)
	case TypeString:
		o.s = s(r)
	}
	return o
}

func runFast(c *compiled, r *Row) outcome { return run(c.typ, c.i, c.f, c.b, c.s, r) }
func runVM(c *compiled, r *Row) outcome {
	return run(c.typ, c.slow.int, c.slow.float, c.slow.bool, c.slow.string, r)
}

// checkAgainstVM evaluates src with the closures and with expr's VM on
// rows, and fails on any difference. It returns whether src compiled to the
// fast path.
func checkAgainstVM(t *testing.T, s *Schema, src string, rows []Row) bool {
	t.Helper()
	c, xe := compileExpr(src, s, evalCtx{step: "test", line: 1})
	if xe != nil {
		t.Fatalf("compile %q: %s", src, xe.msg)
	}
	return checkCompiled(t, c, rows)
}

func checkCompiled(t *testing.T, c *compiled, rows []Row) bool {
	t.Helper()
	src := c.src
	for k := range rows {
		r1, r2 := rows[k], rows[k]
		got, want := runFast(c, &r1), runVM(c, &r2)
		if !got.equal(want) {
			t.Fatalf("%q (fast=%v) on row %v:\n closures: %v\n expr VM:  %v", src, c.fast, rows[k], got, want)
		}
		if got.panicV != nil {
			var ee *EvalError
			err, _ := got.panicV.(error)
			if !errors.As(err, &ee) {
				t.Fatalf("%q panicked with %T %v, want *EvalError", src, got.panicV, got.panicV)
			}
		}
		if r1 != rows[k] {
			t.Fatalf("%q modified the row", src)
		}
	}
	return c.fast
}

func testRows(s *Schema, n int, seed uint64) []Row {
	rng := rand.New(rand.NewPCG(seed, 42))
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = randRow(rng, s)
	}
	return rows
}

// TestExprMatchesVM is the differential test: random well-typed
// expressions, evaluated by the typed closures and by expr's VM on random
// rows full of edge values, must agree exactly (results, and whether they
// fail).
func TestExprMatchesVM(t *testing.T) {
	s := exprSchema(t)
	rows := testRows(s, 64, 1)
	n := 3000
	if testing.Short() {
		n = 300
	}
	for _, slow := range []bool{false, true} {
		g := &exprGen{rng: rand.New(rand.NewPCG(7, uint64(len(rows)))), slow: slow}
		fast := 0
		for k := 0; k < n; k++ {
			var src string
			switch k % 4 {
			case 0:
				src = g.int(4)
			case 1:
				src = g.float(4)
			case 2:
				src = g.bool(4)
			default:
				src = g.str(3)
			}
			c, xe := compileExpr(src, s, evalCtx{step: "test", line: 1})
			if xe != nil {
				// expr folds constants at compile time, so a literal `% 0`
				// is a compile error; anything else is a generator bug.
				if !strings.Contains(xe.msg, "integer divide by zero") {
					t.Fatalf("compile %q: %s", src, xe.msg)
				}
				fast++
				continue
			}
			if checkCompiled(t, c, rows) {
				fast++
			}
		}
		if !slow && fast != n {
			t.Errorf("only %d of %d expressions without slow nodes compiled to the fast path", fast, n)
		}
		if slow && fast == n {
			t.Errorf("every expression with slow nodes compiled to the fast path")
		}
	}
}

// TestExprFastPathCoverage pins which expressions are fast and checks them
// against the VM.
func TestExprFastPathCoverage(t *testing.T) {
	s := exprSchema(t)
	rows := testRows(s, 200, 2)
	for _, tc := range []struct {
		src  string
		fast bool
	}{
		{"i1", true}, {"f1", true}, {"b1", true}, {"s1", true},
		{"i1 + i2 * 3 - 1", true}, {"i1 / i2", true}, {"i1 % i2", true}, {"i1 % 0 == 1", true},
		{"i1 ** 2", true}, {"f1 ^ 0.5", true}, {"-i1", true}, {"+f1", true}, {"-(-3)", true},
		{"i1 < f1", true}, {"i1 == f1", true}, {"s1 < s2", true}, {"b1 != b2", true},
		{"b1 and not b2 or !b1 && b2 || false", true}, {"i1 > 0 ? f1 : f2", true},
		{"if b1 { s1 } else { s2 }", true}, {"s1 + s2", true},
		{"s1 contains 'b'", true}, {"s1 startsWith 'a'", true}, {"s1 endsWith s2", true},
		{"s1 matches '^a+b'", true}, {"i1 in [1, 2, 3]", true}, {"i1 not in [1, 2.5]", true},
		{"f1 in [1, 2.5, 'x']", true}, {"s1 in ['a', 'b']", true}, {"b1 in [false]", true},
		{"abs(i1) + abs(f1)", true}, {"int(f1)", true}, {"float(i1)", true}, {"int(i1)", true},
		{"round(f1) + floor(i1) + ceil(f1)", true}, {"len(s1)", true},
		{"9223372036854775807 + 1", true}, {"i1 * -1", true},
		// The slow path.
		{"upper(s1)", false}, {"len([1, 2])", false}, {"max(i1, i2)", false}, {"$env.i1 + 1", false},
		{"let x = i1; x + 1", false}, {"i1 in [i2]", false}, {"s1 matches s2", false},
		{"int(s1 + '1') > 0", false}, {"s1 ?? 'x'", false}, {"string(i1)", false},
		{"i1 in 1..3", false}, {"trim(s1) == ''", false},
	} {
		if got := checkAgainstVM(t, s, tc.src, rows); got != tc.fast {
			t.Errorf("%q: fast = %v, want %v", tc.src, got, tc.fast)
		}
	}
}

func TestExprDivideByZero(t *testing.T) {
	s := exprSchema(t)
	for _, src := range []string{"i1 % i2", "i1 % 0", "(i1 % (i2 - i2)) + 1"} {
		c, xe := compileExpr(src, s, evalCtx{step: "mod-step", line: 9})
		if xe != nil {
			t.Fatal(xe.msg)
		}
		var r Row
		r.SetInt(0, 5)
		for _, o := range []outcome{runFast(c, &r), runVM(c, &r)} {
			err, ok := o.panicV.(*EvalError)
			if !ok {
				t.Fatalf("%q: got %v, want a panic with *EvalError", src, o)
			}
			if err.Step != "mod-step" || err.Line != 9 || err.Expr != src {
				t.Errorf("%q: EvalError names %q line %d %q", src, err.Step, err.Line, err.Expr)
			}
			if !strings.Contains(err.Error(), "divide by zero") {
				t.Errorf("%q: %v does not say divide by zero", src, err)
			}
		}
		if o := runFast(c, &r); !errors.Is(o.panicV.(error), ErrDivideByZero) {
			t.Errorf("%q: fast path error %v does not wrap ErrDivideByZero", src, o.panicV)
		}
	}
	// `/` is float division: no error.
	c, _ := compileExpr("i1 / i2", s, evalCtx{})
	var r Row
	r.SetInt(0, 1)
	if v := c.f(&r); !math.IsInf(v, 1) {
		t.Errorf("1 / 0 = %v, want +Inf", v)
	}
}

// TestExprConcurrent runs fast and slow closures from several goroutines;
// with -race it proves the pooled VM state is not shared.
func TestExprConcurrent(t *testing.T) {
	s := exprSchema(t)
	rows := testRows(s, 50, 3)
	var cs []*compiled
	for _, src := range []string{"i1 + i2 > 3 && s1 != ''", "upper(s1) == 'A' || max(i1, i2) > 2"} {
		c, xe := compileExpr(src, s, evalCtx{})
		if xe != nil {
			t.Fatal(xe.msg)
		}
		cs = append(cs, c)
	}
	want := make([][]bool, len(cs))
	for k, c := range cs {
		for i := range rows {
			want[k] = append(want[k], c.b(&rows[i]))
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 20; rep++ {
				for k, c := range cs {
					for i := range rows {
						r := rows[i]
						if got := c.b(&r); got != want[k][i] {
							t.Errorf("%q row %d: %v, want %v", c.src, i, got, want[k][i])
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

func compileStages(t testing.TB, yaml string) *Plan {
	t.Helper()
	p, err := Load("bench.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const allocSpec = `name: allocs
source:
  type: file
  path: x
  fields: {key: int, seq: int, price: float, name: string, ok: bool}
pipeline:
  - filter: "seq % 3 != 0 && price * 2.0 > 1.5 && name startsWith 'a' && ok"
  - filter: "key in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89] || name in ['ab', 'abc']"
  - map:
      double: "seq * 2"
      ratio: "seq / (key + 1)"
      big: "price > 10 ? price : -price"
      seq: "seq + 1"
      name: "name == 'abc' ? 'x' : name"
  - key_by: key
  - count: {}
  - sum: price
sink:
  type: blackhole
`

func TestFastPathZeroAllocs(t *testing.T) {
	p := compileStages(t, allocSpec)
	var r Row
	r.SetInt(0, 3)
	r.SetInt(1, 7)
	r.SetFloat(2, 12.5)
	r.Str[0] = "abc"
	r.SetBool(3, true)
	for _, st := range p.Stages {
		if len(st.SlowExprs) > 0 {
			t.Fatalf("stage %s has slow expressions %q", st.Step.Name, st.SlowExprs)
		}
	}
	f0, f1, m := p.Stages[0].Filter, p.Stages[1].Filter, p.Stages[2].Map
	if !f0(&r) || !f1(&r) {
		t.Fatal("filters reject the test row")
	}
	if n := testing.AllocsPerRun(1000, func() { f0(&r); f1(&r) }); n != 0 {
		t.Errorf("Filter: %v allocs per record, want 0", n)
	}
	row := new(Row)
	if n := testing.AllocsPerRun(1000, func() { *row = r; m(row) }); n != 0 {
		t.Errorf("Map: %v allocs per record, want 0", n)
	}
	agg1, agg2 := p.Stages[4].Agg, p.Stages[5].Agg
	var st1, st2 uint64
	if n := testing.AllocsPerRun(1000, func() {
		st1 = agg1.Apply(st1, true, &r)
		st2 = agg2.Apply(st2, true, &r)
	}); n != 0 {
		t.Errorf("Aggregate.Apply: %v allocs per record, want 0", n)
	}
}

// BenchmarkFilter compares one filter on the fast path with the same
// expression on expr's VM.
func BenchmarkFilter(b *testing.B) {
	s := exprSchema(b)
	const src = "i1 % 3 != 0 && f1 * 2.0 > 1.5 && s1 startsWith 'a'"
	c, xe := compileExpr(src, s, evalCtx{})
	if xe != nil {
		b.Fatal(xe.msg)
	}
	rows := testRows(s, 256, 4)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			if c.b(&rows[i&255]) {
				n++
			}
		}
		sink = n
	})
	b.Run("vm", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			if c.slow.bool(&rows[i&255]) {
				n++
			}
		}
		sink = n
	})
}

// BenchmarkMap runs a five-field map step per record.
func BenchmarkMap(b *testing.B) {
	p := compileStages(b, allocSpec)
	m := p.Stages[2].Map
	var r Row
	r.SetInt(0, 3)
	r.SetInt(1, 7)
	r.SetFloat(2, 12.5)
	r.Str[0] = "abc"
	row := new(Row)
	b.ReportAllocs()
	for b.Loop() {
		*row = r
		m(row)
	}
}

var sink int
