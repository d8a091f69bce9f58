package job

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	exprast "github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	exprparser "github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// evalCtx names the step an expression belongs to, for EvalError.
type evalCtx struct {
	step string
	line int
}

// compiled is one type-checked expression over a schema, ready to run.
// Exactly the closure of its type is set. The closures are safe for
// concurrent use.
type compiled struct {
	src  string
	typ  Type
	fast bool // the closures are typed Go closures; false: they run expr's VM
	i    func(*Row) int64
	f    func(*Row) float64
	b    func(*Row) bool
	s    func(*Row) string
	// reads are the input fields the expression may read (a superset).
	reads []Field
	// slow evaluates with expr's VM; set even when fast is true, for the
	// differential tests.
	slow *vmExpr
}

// exprError is a compile-time problem with an expression. names are the
// identifiers the expression mentions, so that a caller can drop errors
// caused by an earlier error.
type exprError struct {
	msg   string
	names []string
}

// exprEnv is the typed environment expr checks against: one zero value of
// the right Go type per field.
func exprEnv(in *Schema) map[string]any {
	env := make(map[string]any, len(in.Fields))
	for _, f := range in.Fields {
		switch f.Type {
		case TypeInt:
			env[f.Name] = int(0)
		case TypeFloat:
			env[f.Name] = float64(0)
		case TypeString:
			env[f.Name] = ""
		case TypeBool:
			env[f.Name] = false
		}
	}
	return env
}

func typeOfKind(k reflect.Kind) Type {
	switch k {
	case reflect.Int:
		return TypeInt
	case reflect.Float64:
		return TypeFloat
	case reflect.String:
		return TypeString
	case reflect.Bool:
		return TypeBool
	}
	return 0
}

// compileExpr parses and type-checks src against in with expr-lang, then
// compiles it to typed closures over *Row when every node is one the fast
// path knows, and to a wrapper around expr's VM otherwise.
func compileExpr(src string, in *Schema, ctx evalCtx) (*compiled, *exprError) {
	env := exprEnv(in)
	config := conf.CreateNew()
	config.WithEnv(env)
	tree, err := exprparser.ParseWithConfig(src, config)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, &exprError{msg: fmt.Sprintf("syntax error at column %d of expression %q: %s", fe.Column+1, src, fe.Message)}
		}
		return nil, &exprError{msg: fmt.Sprintf("syntax error in expression %q: %v", src, err)}
	}
	names, allEnv := identifiers(tree.Node)
	rt, err := new(checker.Checker).Check(tree, config)
	if err != nil {
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
		}
		if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
			return nil, &exprError{msg: fmt.Sprintf("unknown name %q in expression %q", name, src), names: names}
		}
		return nil, &exprError{msg: fmt.Sprintf("%s in expression %q", msg, src), names: names}
	}
	typ := typeOfKind(rt.Kind())
	if typ == 0 {
		if rt.Kind() == reflect.Interface {
			return nil, &exprError{msg: fmt.Sprintf("cannot tell the type of expression %q; make it int, float, string or bool (e.g. with float(...) so both branches of ?: agree)", src), names: names}
		}
		return nil, &exprError{msg: fmt.Sprintf("expression %q has type %s; a field holds int, float, string or bool", src, rt), names: names}
	}
	prog, err := expr.Compile(src, expr.Env(env))
	if err != nil {
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
		}
		return nil, &exprError{msg: fmt.Sprintf("%s in expression %q", msg, src), names: names}
	}

	c := &compiled{src: src, typ: typ}
	if allEnv {
		c.reads = slices.Clone(in.Fields)
	} else {
		for _, n := range names {
			if f, ok := in.Lookup(n); ok {
				c.reads = append(c.reads, f)
			}
		}
	}
	c.slow = &vmExpr{prog: prog, fields: c.reads, src: src, ctx: ctx}
	fc := fastCompiler{in: in, src: src, ctx: ctx}
	if fe, ok := fc.node(tree.Node); ok && fe.t == typ {
		c.fast = true
		c.i, c.f, c.b, c.s = fe.i, fe.f, fe.b, fe.s
		return c, nil
	}
	switch typ {
	case TypeInt:
		c.i = c.slow.int
	case TypeFloat:
		c.f = c.slow.float
	case TypeString:
		c.s = c.slow.string
	case TypeBool:
		c.b = c.slow.bool
	}
	return c, nil
}

// identifiers returns the sorted distinct identifiers src mentions, and
// whether it uses $env (and so may read any field).
func identifiers(root exprast.Node) (names []string, allEnv bool) {
	v := &identVisitor{seen: map[string]bool{}}
	exprast.Walk(&root, v)
	for n := range v.seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, v.seen["$env"]
}

type identVisitor struct{ seen map[string]bool }

func (v *identVisitor) Visit(n *exprast.Node) {
	if id, ok := (*n).(*exprast.IdentifierNode); ok {
		v.seen[id.Value] = true
	}
}

// vmExpr evaluates an expression with expr's VM: the slow path. Each call
// builds the environment map (boxing every value it reads) and runs the
// program; VMs and maps are pooled, so it is safe for concurrent use.
type vmExpr struct {
	prog   *vm.Program
	fields []Field
	src    string
	ctx    evalCtx
	pool   sync.Pool // of *vmState
}

type vmState struct {
	vm  vm.VM
	env map[string]any
}

func (v *vmExpr) eval(r *Row) any {
	st, _ := v.pool.Get().(*vmState)
	if st == nil {
		st = &vmState{env: make(map[string]any, len(v.fields))}
	}
	for _, f := range v.fields {
		switch f.Type {
		case TypeInt:
			st.env[f.Name] = int(int64(r.Num[f.Slot]))
		case TypeFloat:
			st.env[f.Name] = math.Float64frombits(r.Num[f.Slot])
		case TypeBool:
			st.env[f.Name] = r.Num[f.Slot] != 0
		case TypeString:
			st.env[f.Name] = r.Str[f.Slot]
		}
	}
	out, err := st.vm.Run(v.prog, st.env)
	v.pool.Put(st)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			err = errors.New(fe.Message)
		}
		panic(&EvalError{Step: v.ctx.step, Line: v.ctx.line, Expr: v.src, Err: err})
	}
	return out
}

func (v *vmExpr) badResult(out any, want string) *EvalError {
	return &EvalError{Step: v.ctx.step, Line: v.ctx.line, Expr: v.src,
		Err: fmt.Errorf("expr returned %T, want %s", out, want)}
}

func (v *vmExpr) int(r *Row) int64 {
	switch x := v.eval(r).(type) {
	case int:
		return int64(x)
	case int64:
		return x
	default:
		panic(v.badResult(x, "int"))
	}
}

func (v *vmExpr) float(r *Row) float64 {
	switch x := v.eval(r).(type) {
	case float64:
		return x
	case int:
		return float64(x)
	default:
		panic(v.badResult(x, "float64"))
	}
}

func (v *vmExpr) string(r *Row) string {
	x, ok := v.eval(r).(string)
	if !ok {
		panic(v.badResult(x, "string"))
	}
	return x
}

func (v *vmExpr) bool(r *Row) bool {
	out := v.eval(r)
	x, ok := out.(bool)
	if !ok {
		panic(v.badResult(out, "bool"))
	}
	return x
}

// fexpr is a typed closure: the one matching t is set.
type fexpr struct {
	t Type
	i func(*Row) int64
	f func(*Row) float64
	b func(*Row) bool
	s func(*Row) string
	// konst reports a literal (or a negated one): its closure ignores the
	// row, so it can be evaluated at compile time with &zeroRow.
	konst bool
	// field reports a plain field reference, stored in slot; operators
	// specialize on it to read the slot directly instead of calling.
	field bool
	slot  int
}

func (e fexpr) num() bool { return e.t == TypeInt || e.t == TypeFloat }

// asFloat converts an int expression to float64 as expr does.
func (e fexpr) asFloat() func(*Row) float64 {
	if e.t == TypeFloat {
		return e.f
	}
	i := e.i
	return func(r *Row) float64 { return float64(i(r)) }
}

var zeroRow Row

// fastCompiler turns a checked expr AST into typed closures. It knows:
// field references; int, float, string and bool literals; unary - + ! not;
// + - * / % ** ^ on numbers (with expr's promotions: int op float is float,
// / and ** are always float); + on strings; == != < <= > >= on numbers,
// strings and bools; && || and or; ?: and if/else; contains, startsWith,
// endsWith; matches with a literal pattern; `in` with an array of literals;
// and the builtins abs, int, float (of numbers), ceil, floor, round, len (of
// a string). Anything else (other builtins, $env, arrays, maps, let, nil,
// ??, pipes, member access, ...) makes node return false, and the whole
// expression runs on expr's VM instead.
type fastCompiler struct {
	in  *Schema
	src string
	ctx evalCtx
}

func (c *fastCompiler) divZero() *EvalError {
	return &EvalError{Step: c.ctx.step, Line: c.ctx.line, Expr: c.src, Err: ErrDivideByZero}
}

func (c *fastCompiler) node(n exprast.Node) (fexpr, bool) {
	e, ok := c.node1(n)
	if !ok {
		return fexpr{}, false
	}
	// The checker's type and ours must agree, or the node is not one we
	// understand as well as we think.
	if typeOfKind(n.Type().Kind()) != e.t {
		return fexpr{}, false
	}
	return e, true
}

func (c *fastCompiler) node1(n exprast.Node) (fexpr, bool) {
	switch n := n.(type) {
	case *exprast.IdentifierNode:
		f, ok := c.in.Lookup(n.Value)
		if !ok {
			return fexpr{}, false
		}
		slot := f.Slot
		switch f.Type {
		case TypeInt:
			return fexpr{t: TypeInt, i: func(r *Row) int64 { return int64(r.Num[slot]) }, field: true, slot: slot}, true
		case TypeFloat:
			return fexpr{t: TypeFloat, f: func(r *Row) float64 { return math.Float64frombits(r.Num[slot]) }, field: true, slot: slot}, true
		case TypeBool:
			return fexpr{t: TypeBool, b: func(r *Row) bool { return r.Num[slot] != 0 }, field: true, slot: slot}, true
		case TypeString:
			return fexpr{t: TypeString, s: func(r *Row) string { return r.Str[slot] }, field: true, slot: slot}, true
		}
	case *exprast.IntegerNode:
		return constInt(int64(n.Value)), true
	case *exprast.FloatNode:
		return constFloat(n.Value), true
	case *exprast.BoolNode:
		v := n.Value
		return fexpr{t: TypeBool, b: func(*Row) bool { return v }, konst: true}, true
	case *exprast.StringNode:
		v := n.Value
		return fexpr{t: TypeString, s: func(*Row) string { return v }, konst: true}, true
	case *exprast.UnaryNode:
		return c.unary(n)
	case *exprast.BinaryNode:
		return c.binary(n)
	case *exprast.ConditionalNode:
		return c.conditional(n)
	case *exprast.BuiltinNode:
		return c.builtin(n)
	}
	return fexpr{}, false
}

func constInt(v int64) fexpr {
	return fexpr{t: TypeInt, i: func(*Row) int64 { return v }, konst: true}
}

func constFloat(v float64) fexpr {
	return fexpr{t: TypeFloat, f: func(*Row) float64 { return v }, konst: true}
}

func (c *fastCompiler) unary(n *exprast.UnaryNode) (fexpr, bool) {
	x, ok := c.node(n.Node)
	if !ok {
		return fexpr{}, false
	}
	switch n.Operator {
	case "+":
		if x.num() {
			return x, true
		}
	case "-":
		switch x.t {
		case TypeInt:
			if x.konst {
				return constInt(-x.i(&zeroRow)), true
			}
			i := x.i
			return fexpr{t: TypeInt, i: func(r *Row) int64 { return -i(r) }}, true
		case TypeFloat:
			if x.konst {
				return constFloat(-x.f(&zeroRow)), true
			}
			f := x.f
			return fexpr{t: TypeFloat, f: func(r *Row) float64 { return -f(r) }}, true
		}
	case "!", "not":
		if x.t == TypeBool {
			b := x.b
			return fexpr{t: TypeBool, b: func(r *Row) bool { return !b(r) }}, true
		}
	}
	return fexpr{}, false
}

func (c *fastCompiler) conditional(n *exprast.ConditionalNode) (fexpr, bool) {
	cond, ok1 := c.node(n.Cond)
	a, ok2 := c.node(n.Exp1)
	b, ok3 := c.node(n.Exp2)
	if !ok1 || !ok2 || !ok3 || cond.t != TypeBool || a.t != b.t {
		return fexpr{}, false
	}
	cb := cond.b
	switch a.t {
	case TypeInt:
		x, y := a.i, b.i
		return fexpr{t: TypeInt, i: func(r *Row) int64 {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case TypeFloat:
		x, y := a.f, b.f
		return fexpr{t: TypeFloat, f: func(r *Row) float64 {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case TypeBool:
		x, y := a.b, b.b
		return fexpr{t: TypeBool, b: func(r *Row) bool {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case TypeString:
		x, y := a.s, b.s
		return fexpr{t: TypeString, s: func(r *Row) string {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	}
	return fexpr{}, false
}

func (c *fastCompiler) builtin(n *exprast.BuiltinNode) (fexpr, bool) {
	if len(n.Arguments) != 1 {
		return fexpr{}, false
	}
	x, ok := c.node(n.Arguments[0])
	if !ok {
		return fexpr{}, false
	}
	switch n.Name {
	case "abs":
		switch x.t {
		case TypeInt:
			i := x.i
			return fexpr{t: TypeInt, i: func(r *Row) int64 {
				v := i(r)
				if v < 0 {
					return -v
				}
				return v
			}}, true
		case TypeFloat:
			// expr's abs: -x when x < 0, so abs(-0.0) is -0.0.
			f := x.f
			return fexpr{t: TypeFloat, f: func(r *Row) float64 {
				v := f(r)
				if v < 0 {
					return -v
				}
				return v
			}}, true
		}
	case "int":
		switch x.t {
		case TypeInt:
			return fexpr{t: TypeInt, i: x.i}, true
		case TypeFloat:
			f := x.f
			return fexpr{t: TypeInt, i: func(r *Row) int64 { return int64(int(f(r))) }}, true
		}
	case "float":
		if x.num() {
			return fexpr{t: TypeFloat, f: x.asFloat()}, true
		}
	case "ceil", "floor", "round":
		if x.t == TypeInt {
			return fexpr{t: TypeFloat, f: x.asFloat()}, true
		}
		if x.t == TypeFloat {
			f := x.f
			op := map[string]func(float64) float64{"ceil": math.Ceil, "floor": math.Floor, "round": math.Round}[n.Name]
			return fexpr{t: TypeFloat, f: func(r *Row) float64 { return op(f(r)) }}, true
		}
	case "len":
		if x.t == TypeString {
			s := x.s
			return fexpr{t: TypeInt, i: func(r *Row) int64 { return int64(utf8.RuneCountInString(s(r))) }}, true
		}
	}
	return fexpr{}, false
}

func (c *fastCompiler) binary(n *exprast.BinaryNode) (fexpr, bool) {
	switch n.Operator {
	case "in":
		return c.in_(n)
	case "matches":
		return c.matches(n)
	}
	l, ok1 := c.node(n.Left)
	r, ok2 := c.node(n.Right)
	if !ok1 || !ok2 {
		return fexpr{}, false
	}
	op := n.Operator
	switch op {
	case "+", "-", "*":
		if op == "+" && l.t == TypeString && r.t == TypeString {
			a, b := l.s, r.s
			return fexpr{t: TypeString, s: func(x *Row) string { return a(x) + b(x) }}, true
		}
		if !l.num() || !r.num() {
			return fexpr{}, false
		}
		if l.t == TypeInt && r.t == TypeInt {
			return fexpr{t: TypeInt, i: intArith(op, l, r)}, true
		}
		return fexpr{t: TypeFloat, f: floatArith(op, l, r)}, true
	case "/":
		if !l.num() || !r.num() {
			return fexpr{}, false
		}
		return fexpr{t: TypeFloat, f: floatArith(op, l, r)}, true
	case "**", "^":
		if !l.num() || !r.num() {
			return fexpr{}, false
		}
		a, b := l.asFloat(), r.asFloat()
		return fexpr{t: TypeFloat, f: func(x *Row) float64 { return math.Pow(a(x), b(x)) }}, true
	case "%":
		if l.t != TypeInt || r.t != TypeInt {
			return fexpr{}, false
		}
		a, b := l.i, r.i
		errDiv := c.divZero()
		if r.konst {
			k := b(&zeroRow)
			if k == 0 {
				return fexpr{t: TypeInt, i: func(x *Row) int64 { a(x); panic(errDiv) }}, true
			}
			if l.field {
				s := l.slot
				return fexpr{t: TypeInt, i: func(x *Row) int64 { return int64(x.Num[s]) % k }}, true
			}
			return fexpr{t: TypeInt, i: func(x *Row) int64 { return a(x) % k }}, true
		}
		return fexpr{t: TypeInt, i: func(x *Row) int64 {
			u, v := a(x), b(x)
			if v == 0 {
				panic(errDiv)
			}
			return u % v
		}}, true
	case "==", "!=", "<", "<=", ">", ">=":
		b, ok := compare(op, l, r)
		if !ok {
			return fexpr{}, false
		}
		return fexpr{t: TypeBool, b: b}, true
	case "&&", "and", "||", "or":
		if l.t != TypeBool || r.t != TypeBool {
			return fexpr{}, false
		}
		a, b := l.b, r.b
		if op == "&&" || op == "and" {
			return fexpr{t: TypeBool, b: func(x *Row) bool { return a(x) && b(x) }}, true
		}
		return fexpr{t: TypeBool, b: func(x *Row) bool { return a(x) || b(x) }}, true
	case "contains", "startsWith", "endsWith":
		if l.t != TypeString || r.t != TypeString {
			return fexpr{}, false
		}
		a, b := l.s, r.s
		if r.konst {
			k := b(&zeroRow)
			switch op {
			case "contains":
				return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.Contains(a(x), k) }}, true
			case "startsWith":
				return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.HasPrefix(a(x), k) }}, true
			default:
				return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.HasSuffix(a(x), k) }}, true
			}
		}
		switch op {
		case "contains":
			return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.Contains(a(x), b(x)) }}, true
		case "startsWith":
			return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.HasPrefix(a(x), b(x)) }}, true
		default:
			return fexpr{t: TypeBool, b: func(x *Row) bool { return strings.HasSuffix(a(x), b(x)) }}, true
		}
	}
	return fexpr{}, false
}

// intArith builds + - * on ints (wrapping, as Go and expr do), specialized
// for a constant right operand.
func intArith(op string, l, r fexpr) func(*Row) int64 {
	a, b := l.i, r.i
	if r.konst && l.field {
		k, s := b(&zeroRow), l.slot
		switch op {
		case "+":
			return func(x *Row) int64 { return int64(x.Num[s]) + k }
		case "-":
			return func(x *Row) int64 { return int64(x.Num[s]) - k }
		case "*":
			return func(x *Row) int64 { return int64(x.Num[s]) * k }
		}
	}
	if r.konst {
		k := b(&zeroRow)
		switch op {
		case "+":
			return func(x *Row) int64 { return a(x) + k }
		case "-":
			return func(x *Row) int64 { return a(x) - k }
		case "*":
			return func(x *Row) int64 { return a(x) * k }
		}
	}
	switch op {
	case "+":
		return func(x *Row) int64 { return a(x) + b(x) }
	case "-":
		return func(x *Row) int64 { return a(x) - b(x) }
	case "*":
		return func(x *Row) int64 { return a(x) * b(x) }
	}
	panic("job: intArith: bad operator " + op)
}

// floatArith builds + - * / on numbers as floats, specialized for a
// constant right operand.
func floatArith(op string, l, r fexpr) func(*Row) float64 {
	a, b := l.asFloat(), r.asFloat()
	if r.konst {
		k := b(&zeroRow)
		if l.field && l.t == TypeFloat {
			s := l.slot
			switch op {
			case "+":
				return func(x *Row) float64 { return math.Float64frombits(x.Num[s]) + k }
			case "-":
				return func(x *Row) float64 { return math.Float64frombits(x.Num[s]) - k }
			case "*":
				return func(x *Row) float64 { return math.Float64frombits(x.Num[s]) * k }
			case "/":
				return func(x *Row) float64 { return math.Float64frombits(x.Num[s]) / k }
			}
		}
		switch op {
		case "+":
			return func(x *Row) float64 { return a(x) + k }
		case "-":
			return func(x *Row) float64 { return a(x) - k }
		case "*":
			return func(x *Row) float64 { return a(x) * k }
		case "/":
			return func(x *Row) float64 { return a(x) / k }
		}
	}
	switch op {
	case "+":
		return func(x *Row) float64 { return a(x) + b(x) }
	case "-":
		return func(x *Row) float64 { return a(x) - b(x) }
	case "*":
		return func(x *Row) float64 { return a(x) * b(x) }
	case "/":
		return func(x *Row) float64 { return a(x) / b(x) }
	}
	panic("job: floatArith: bad operator " + op)
}

// compare builds a comparison with expr's semantics: ints compare as ints,
// an int with a float as float64, strings bytewise, bools only for == and
// !=.
func compare(op string, l, r fexpr) (func(*Row) bool, bool) {
	switch {
	case l.t == TypeInt && r.t == TypeInt:
		a, b := l.i, r.i
		if r.konst && l.field {
			k, s := b(&zeroRow), l.slot
			switch op {
			case "==":
				return func(x *Row) bool { return int64(x.Num[s]) == k }, true
			case "!=":
				return func(x *Row) bool { return int64(x.Num[s]) != k }, true
			case "<":
				return func(x *Row) bool { return int64(x.Num[s]) < k }, true
			case "<=":
				return func(x *Row) bool { return int64(x.Num[s]) <= k }, true
			case ">":
				return func(x *Row) bool { return int64(x.Num[s]) > k }, true
			case ">=":
				return func(x *Row) bool { return int64(x.Num[s]) >= k }, true
			}
		}
		return compareOrdered(op, a, b, r.konst)
	case l.num() && r.num():
		return compareOrdered(op, l.asFloat(), r.asFloat(), r.konst)
	case l.t == TypeString && r.t == TypeString:
		return compareOrdered(op, l.s, r.s, false)
	case l.t == TypeBool && r.t == TypeBool:
		a, b := l.b, r.b
		switch op {
		case "==":
			return func(x *Row) bool { return a(x) == b(x) }, true
		case "!=":
			return func(x *Row) bool { return a(x) != b(x) }, true
		}
	}
	return nil, false
}

// in_ compiles `x in [literals]` with expr's semantics (runtime.In compares
// with runtime.Equal: numbers numerically, other types only with their own
// type).
func (c *fastCompiler) in_(n *exprast.BinaryNode) (fexpr, bool) {
	arr, ok := n.Right.(*exprast.ArrayNode)
	if !ok {
		return fexpr{}, false
	}
	needle, ok := c.node(n.Left)
	if !ok {
		return fexpr{}, false
	}
	elems := make([]fexpr, 0, len(arr.Nodes))
	for _, en := range arr.Nodes {
		e, ok := c.node(en)
		if !ok || !e.konst {
			return fexpr{}, false
		}
		elems = append(elems, e)
	}
	switch {
	case needle.t == TypeInt:
		ints := map[int64]struct{}{}
		var floats []float64
		for _, e := range elems {
			switch e.t {
			case TypeInt:
				ints[e.i(&zeroRow)] = struct{}{}
			case TypeFloat:
				floats = append(floats, e.f(&zeroRow))
			}
		}
		a := needle.i
		if len(floats) == 0 {
			if len(ints) <= 8 {
				list := make([]int64, 0, len(ints))
				for k := range ints {
					list = append(list, k)
				}
				return fexpr{t: TypeBool, b: func(x *Row) bool {
					v := a(x)
					for _, k := range list {
						if v == k {
							return true
						}
					}
					return false
				}}, true
			}
			return fexpr{t: TypeBool, b: func(x *Row) bool { _, ok := ints[a(x)]; return ok }}, true
		}
		return fexpr{t: TypeBool, b: func(x *Row) bool {
			v := a(x)
			if _, ok := ints[v]; ok {
				return true
			}
			fv := float64(v)
			for _, f := range floats {
				if fv == f {
					return true
				}
			}
			return false
		}}, true
	case needle.t == TypeFloat:
		var list []float64
		for _, e := range elems {
			if e.num() {
				list = append(list, e.asFloat()(&zeroRow))
			}
		}
		a := needle.f
		return fexpr{t: TypeBool, b: func(x *Row) bool {
			v := a(x)
			for _, f := range list {
				if v == f {
					return true
				}
			}
			return false
		}}, true
	case needle.t == TypeString:
		set := map[string]struct{}{}
		for _, e := range elems {
			if e.t == TypeString {
				set[e.s(&zeroRow)] = struct{}{}
			}
		}
		a := needle.s
		return fexpr{t: TypeBool, b: func(x *Row) bool { _, ok := set[a(x)]; return ok }}, true
	case needle.t == TypeBool:
		var hasT, hasF bool
		for _, e := range elems {
			if e.t == TypeBool {
				if e.b(&zeroRow) {
					hasT = true
				} else {
					hasF = true
				}
			}
		}
		a := needle.b
		return fexpr{t: TypeBool, b: func(x *Row) bool {
			if a(x) {
				return hasT
			}
			return hasF
		}}, true
	}
	return fexpr{}, false
}

// matches compiles `s matches "literal"`, compiling the pattern once, as
// expr does for a literal pattern.
func (c *fastCompiler) matches(n *exprast.BinaryNode) (fexpr, bool) {
	pat, ok := n.Right.(*exprast.StringNode)
	if !ok {
		return fexpr{}, false
	}
	l, ok := c.node(n.Left)
	if !ok || l.t != TypeString {
		return fexpr{}, false
	}
	re, err := regexp.Compile(pat.Value)
	if err != nil {
		return fexpr{}, false
	}
	a := l.s
	return fexpr{t: TypeBool, b: func(x *Row) bool { return re.MatchString(a(x)) }}, true
}

// compareOrdered compiles a comparison of two operands of one ordered type
// (int64, float64 or string). When bConst, b is a constant and is evaluated
// once. Operators on a type parameter keep the type's semantics (IEEE for
// floats: NaN compares false), and each type instantiates its own code.
func compareOrdered[T cmp.Ordered](op string, a, b func(*Row) T, bConst bool) (func(*Row) bool, bool) {
	if bConst {
		k := b(&zeroRow)
		switch op {
		case "==":
			return func(x *Row) bool { return a(x) == k }, true
		case "!=":
			return func(x *Row) bool { return a(x) != k }, true
		case "<":
			return func(x *Row) bool { return a(x) < k }, true
		case "<=":
			return func(x *Row) bool { return a(x) <= k }, true
		case ">":
			return func(x *Row) bool { return a(x) > k }, true
		case ">=":
			return func(x *Row) bool { return a(x) >= k }, true
		}
	}
	switch op {
	case "==":
		return func(x *Row) bool { return a(x) == b(x) }, true
	case "!=":
		return func(x *Row) bool { return a(x) != b(x) }, true
	case "<":
		return func(x *Row) bool { return a(x) < b(x) }, true
	case "<=":
		return func(x *Row) bool { return a(x) <= b(x) }, true
	case ">":
		return func(x *Row) bool { return a(x) > b(x) }, true
	case ">=":
		return func(x *Row) bool { return a(x) >= b(x) }, true
	}
	return nil, false
}
