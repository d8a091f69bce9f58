package job

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{TypeInt: "int", TypeFloat: "float", TypeString: "string", TypeBool: "bool", 0: "Type(0)", 9: "Type(9)"} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(typ), got, want)
		}
		if p, ok := parseType(want); ok != (typ != 0 && typ < 9) || ok && p != typ {
			t.Errorf("parseType(%q) = %v, %v", want, p, ok)
		}
	}
	for k := StepFilter; k <= StepMax; k++ {
		if p, ok := parseStepKind(k.String()); !ok || p != k {
			t.Errorf("parseStepKind(%q) = %v, %v", k.String(), p, ok)
		}
		if k.IsAggregate() != (k >= StepCount) {
			t.Errorf("%v.IsAggregate() = %v", k, k.IsAggregate())
		}
	}
	if got := StepKind(0).String(); got != "StepKind(0)" {
		t.Errorf("StepKind(0).String() = %q", got)
	}
}

func TestNewSchema(t *testing.T) {
	s, err := NewSchema([]FieldSpec{{"a", TypeString}, {"b", TypeInt}, {"c", TypeBool}, {"d", TypeString}, {"e", TypeFloat}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.layout(), "{a string@s0, b int@n0, c bool@n1, d string@s1, e float@n2}"; got != want {
		t.Errorf("layout %s, want %s", got, want)
	}
	if got, want := s.String(), "{a string, b int, c bool, d string, e float}"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if f, ok := s.Lookup("d"); !ok || f != (Field{"d", TypeString, 1}) {
		t.Errorf("Lookup(d) = %v, %v", f, ok)
	}
	if _, ok := s.Lookup("z"); ok {
		t.Error("Lookup(z) found a field")
	}

	var fields []FieldSpec
	for i := 0; i < MaxNumFields+1; i++ {
		fields = append(fields, FieldSpec{"n" + strings.Repeat("x", i), TypeInt})
	}
	for i := 0; i < MaxStrFields+1; i++ {
		fields = append(fields, FieldSpec{"s" + strings.Repeat("x", i), TypeString})
	}
	fields = append(fields, FieldSpec{"n", TypeFloat}, FieldSpec{"bad-name", TypeInt}, FieldSpec{"t", 0}, FieldSpec{"in", TypeBool})
	_, err = NewSchema(fields)
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("error %v does not wrap ErrInvalidSpec", err)
	}
	for _, want := range []string{
		`field "nxxxxxxxxxxxxxxxx": too many int, float and bool fields`,
		`field "s` + strings.Repeat("x", MaxStrFields) + `": too many string fields`,
		`field "n": declared twice`,
		`field "bad-name": invalid field name`,
		`field "t": invalid type Type(0)`,
		`field "in": invalid field name "in": it is an expression keyword`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCheckFieldName(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "_": true, "A_b9": true, "startsWith": false, "9a": false, "": false, "a-b": false,
		"é": false, strings.Repeat("a", MaxFieldNameLen): true, strings.Repeat("a", MaxFieldNameLen+1): false,
	} {
		if got := checkFieldName(name) == ""; got != ok {
			t.Errorf("checkFieldName(%q) ok = %v, want %v (%s)", name, got, ok, checkFieldName(name))
		}
	}
}

func TestSequenceSchema(t *testing.T) {
	s := SequenceSchema()
	if got := s.layout(); got != "{key int@n0, seq int@n1}" {
		t.Errorf("SequenceSchema = %s", got)
	}
}

func TestRowAccessors(t *testing.T) {
	var r Row
	r.SetInt(0, -5)
	r.SetFloat(1, -2.5)
	r.SetBool(2, true)
	r.SetBool(3, false)
	if r.Int(0) != -5 || r.Float(1) != -2.5 || !r.Bool(2) || r.Bool(3) || r.Num[2] != 1 {
		t.Errorf("row accessors disagree: %v", r)
	}
}

func TestAppendKey(t *testing.T) {
	s, err := NewSchema([]FieldSpec{{"i", TypeInt}, {"f", TypeFloat}, {"s", TypeString}, {"b", TypeBool}})
	if err != nil {
		t.Fatal(err)
	}
	var r Row
	r.SetInt(0, -2)
	r.SetFloat(1, 1.5)
	r.Str[0] = "key"
	r.SetBool(2, true)
	key := func(name string) []byte {
		f, _ := s.Lookup(name)
		return s.AppendKey([]byte{0xAA}, &r, f)
	}
	for name, want := range map[string][]byte{
		"i": {0xAA, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe},
		"f": {0xAA, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0},
		"s": {0xAA, 'k', 'e', 'y'},
		"b": {0xAA, 1},
	} {
		if got := key(name); !bytes.Equal(got, want) {
			t.Errorf("AppendKey(%s) = %x, want %x", name, got, want)
		}
	}
	// Int keys sort like the ints only within a sign; they are for hashing,
	// and distinct values give distinct keys.
	r.SetFloat(1, math.Copysign(0, -1))
	neg := key("f")
	r.SetFloat(1, 0)
	if bytes.Equal(neg, key("f")) {
		t.Error("0.0 and -0.0 have the same key")
	}
	buf := make([]byte, 0, 64)
	fi, _ := s.Lookup("i")
	fs, _ := s.Lookup("s")
	fb, _ := s.Lookup("b")
	if n := testing.AllocsPerRun(1000, func() {
		buf = s.AppendKey(buf[:0], &r, fi)
		buf = s.AppendKey(buf, &r, fs)
		buf = s.AppendKey(buf, &r, fb)
	}); n != 0 {
		t.Errorf("AppendKey: %v allocs, want 0", n)
	}
}

func TestErrorFormat(t *testing.T) {
	f := func(e Error, want string) {
		t.Helper()
		if got := e.Error(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f(Error{File: "a.yaml", Line: 7, Column: 5, Path: "pipeline[1].map.double", Msg: "bad"}, "a.yaml:7:5: pipeline[1].map.double: bad")
	f(Error{File: "a.yaml", Line: 1, Column: 1, Msg: "empty job spec"}, "a.yaml:1:1: empty job spec")
	f(Error{Line: 2, Column: 3, Path: "name", Msg: "bad"}, "2:3: name: bad")
	f(Error{File: "a.yaml", Path: "name", Msg: "bad"}, "a.yaml: name: bad")
	f(Error{Path: "name", Msg: "bad"}, "name: bad")

	errs := &Errors{List: sortErrors([]*Error{
		{File: "f", Line: 3, Column: 1, Msg: "c"},
		{File: "f", Line: 1, Column: 9, Msg: "b"},
		{File: "f", Line: 1, Column: 2, Msg: "a"},
		{File: "f", Line: 1, Column: 2, Msg: "a"},
	})}
	if got, want := errs.Error(), "f:1:2: a\nf:1:9: b\nf:3:1: c"; got != want {
		t.Errorf("Errors = %q, want %q", got, want)
	}
	var target *Error
	if !errors.As(errs, &target) || target.Msg != "a" {
		t.Errorf("errors.As(*Error) = %v", target)
	}
	ee := &EvalError{Step: "s", Line: 3, Expr: "a % b", Err: ErrDivideByZero}
	if !errors.Is(ee, ErrDivideByZero) || !strings.Contains(ee.Error(), `step "s" (line 3)`) {
		t.Errorf("EvalError %v", ee)
	}
}

func TestSchemaMustBeValid(t *testing.T) {
	SequenceSchema().mustBeValid()
	for _, s := range []*Schema{
		{Fields: []Field{{"a", TypeInt, 0}, {"a", TypeFloat, 1}}},
		{Fields: []Field{{"a", TypeInt, 0}, {"b", TypeBool, 0}}},
		{Fields: []Field{{"a", TypeString, MaxStrFields}}},
		{Fields: []Field{{"a", 0, 0}}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", s.layout())
				}
			}()
			s.mustBeValid()
		}()
	}
}
