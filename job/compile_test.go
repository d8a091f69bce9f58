package job

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sampleSpec = `name: counts
parallelism: 2
max_parallelism: 128
source:
  type: sequence
  count: 1000000
  keys: 1000
  rate: 0
pipeline:
  - filter: "seq % 3 != 0"
  - map: {double: "seq * 2"}
  - key_by: key
  - count: {}
  - sum: seq
  - min: seq
    parallelism: 4
    name: lowest
sink:
  type: file
  path: out/
checkpointing:
  interval: 100ms
  mode: exactly_once
  timeout: 10m
  min_pause: 0s
  max_concurrent: 1
  tolerable_failures: 0
  retained: 2
  compression: zstd
`

func TestParseSpec(t *testing.T) {
	spec, err := Parse("counts.yaml", []byte(sampleSpec))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.pos) == 0 {
		t.Error("Parse recorded no positions")
	}
	spec.pos = nil
	want := &Spec{
		File: "counts.yaml", Name: "counts", Parallelism: 2, MaxParallelism: 128,
		Source: SourceSpec{Type: "sequence", Count: 1000000, Keys: 1000, Line: 4, Column: 1},
		Pipeline: []StepSpec{
			{Kind: StepFilter, Name: "filter-1", Expr: "seq % 3 != 0", Line: 10, Column: 5},
			{Kind: StepMap, Name: "map-1", Assign: []Assignment{{Field: "double", Expr: "seq * 2", Line: 11, Column: 19}}, Line: 11, Column: 5},
			{Kind: StepKeyBy, Name: "key_by-1", Field: "key", Line: 12, Column: 5},
			{Kind: StepCount, Name: "count-1", Line: 13, Column: 5},
			{Kind: StepSum, Name: "sum-1", Field: "seq", Line: 14, Column: 5},
			{Kind: StepMin, Name: "lowest", Field: "seq", Parallelism: 4, Line: 15, Column: 5},
		},
		Sink: SinkSpec{Type: "file", Path: "out/", Line: 18, Column: 1},
		Checkpointing: &CheckpointSpec{Interval: 100 * time.Millisecond, Timeout: 10 * time.Minute, Mode: "exactly_once",
			MaxConcurrent: 1, Retained: 2, Compression: "zstd", Incremental: true, Line: 21, Column: 1},
		Restart: newRestart(RestartExponentialDelay),
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", spec, want)
	}
	if _, err := Parse("x.yaml", []byte("name: x\n")); err == nil {
		t.Error("Parse of an incomplete spec succeeded")
	}
}

// TestCompileBuiltSpec compiles a Spec built in code (no positions), and
// checks that Compile validates such a spec as Parse would.
func TestCompileBuiltSpec(t *testing.T) {
	spec := &Spec{
		Name: "built", Parallelism: 2, MaxParallelism: 16,
		Source:   SourceSpec{Type: SourceFile, Path: "in", Fields: []FieldSpec{{"k", TypeString}, {"v", TypeFloat}}},
		Pipeline: []StepSpec{{Kind: StepKeyBy, Name: "by-k", Field: "k"}, {Kind: StepMax, Name: "m", Field: "v"}},
		Sink:     SinkSpec{Type: SinkStdout},
	}
	p, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.SinkSchema.layout(), "{k string@s0, v float@n0, max float@n1}"; got != want {
		t.Errorf("sink schema %s, want %s", got, want)
	}
	if p.SourceParallelism() != 2 || p.SinkParallelism() != 2 || p.Stages[1].Parallelism != 2 {
		t.Errorf("parallelism not inherited")
	}

	bad := *spec
	bad.Name = ""
	bad.MaxParallelism = 0
	bad.Pipeline = []StepSpec{{Kind: StepMax, Name: "m", Field: "v"}, {Kind: 0, Name: "m"}, {Kind: StepFilter, Name: "f"}}
	bad.Checkpointing = &CheckpointSpec{}
	_, err = Compile(&bad)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Compile error %v is not *Errors", err)
	}
	want := strings.Join([]string{
		"checkpointing.compression: unknown compression \"\": want zstd, s2 or none",
		"checkpointing.interval: must be > 0, got 0s",
		"checkpointing.max_concurrent: must be between 1 and 16, got 0",
		"checkpointing.mode: unknown mode \"\": want exactly_once or at_least_once",
		"checkpointing.retained: must be between 1 and 1000, got 0",
		"checkpointing.timeout: must be > 0, got 0s",
		"max_parallelism: must be between 1 and 32768, got 0",
		"name: missing job name",
		"pipeline[0]: max needs a key_by before it (it is a running max per key)",
		"pipeline[1]: invalid step kind StepKind(0)",
		"pipeline[1].name: duplicate step name \"m\" (also the name of pipeline[0]); step names must be unique",
		"pipeline[2].filter: empty expression",
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("Compile errors:\n%s\nwant\n%s", got, want)
	}
}

func TestAggregateApply(t *testing.T) {
	f := func(kind StepKind, typ Type, vals []float64, want []float64) {
		t.Helper()
		a := &Aggregate{Kind: kind, In: Field{"x", typ, 3}, Out: Field{"out", typ, 5}}
		if kind == StepCount {
			a.Out.Type = TypeInt
		}
		var state uint64
		for i, v := range vals {
			var r Row
			if typ == TypeInt {
				r.SetInt(3, int64(v))
			} else {
				r.SetFloat(3, v)
			}
			state = a.Apply(state, i > 0, &r)
			var got float64
			if a.Out.Type == TypeInt {
				got = float64(r.Int(5))
				if int64(state) != r.Int(5) {
					t.Errorf("%v: state %d != output %d", kind, int64(state), r.Int(5))
				}
			} else {
				got = r.Float(5)
				if state != r.Num[5] {
					t.Errorf("%v: state != output", kind)
				}
			}
			if !(got == want[i] || math.IsNaN(got) && math.IsNaN(want[i])) || got == 0 && math.Signbit(got) != math.Signbit(want[i]) {
				t.Errorf("%v %v over %v: step %d = %v, want %v", kind, typ, vals, i, got, want[i])
			}
		}
	}
	nan, negZero := math.NaN(), math.Copysign(0, -1)
	f(StepCount, TypeInt, []float64{5, 5, 5}, []float64{1, 2, 3})
	f(StepSum, TypeInt, []float64{5, -7, 2}, []float64{5, -2, 0})
	f(StepSum, TypeFloat, []float64{1.5, 2.25, -0.75}, []float64{1.5, 3.75, 3})
	f(StepSum, TypeFloat, []float64{negZero}, []float64{negZero})
	f(StepMin, TypeInt, []float64{5, 7, -3, 0}, []float64{5, 5, -3, -3})
	f(StepMax, TypeInt, []float64{-5, -7, 3, 0}, []float64{-5, -5, 3, 3})
	f(StepMin, TypeFloat, []float64{0, negZero, 1}, []float64{0, negZero, negZero})
	f(StepMax, TypeFloat, []float64{1, nan, 5}, []float64{1, nan, nan})

	// Int sums wrap.
	a := &Aggregate{Kind: StepSum, In: Field{"x", TypeInt, 0}, Out: Field{"sum", TypeInt, 1}}
	var r Row
	r.SetInt(0, math.MaxInt64)
	s := a.Apply(0, false, &r)
	r.SetInt(0, 1)
	if s = a.Apply(s, true, &r); int64(s) != math.MinInt64 {
		t.Errorf("MaxInt64 + 1 = %d", int64(s))
	}
}

func TestFingerprint(t *testing.T) {
	base := compileStages(t, sampleSpec).Fingerprint()
	want := `streamd job fingerprint v1
max_parallelism 128
source sequence
step 0 filter-1 filter
step 1 map-1 map
step 2 key_by-1 key_by key=key:int
step 3 count-1 count key=key:int
step 4 sum-1 sum key=key:int field=seq:int
step 5 lowest min key=key:int field=seq:int
`
	if base != want {
		t.Fatalf("Fingerprint =\n%s\nwant\n%s", base, want)
	}
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(sampleSpec, old) {
			t.Fatalf("sample spec lacks %q", old)
		}
		return compileStages(t, strings.Replace(sampleSpec, old, new, 1)).Fingerprint()
	}
	// Changes that keep a checkpoint usable.
	for _, e := range [][2]string{
		{"parallelism: 2", "parallelism: 3"},
		{"count: 1000000", "count: 5"},
		{"rate: 0", "rate: 100"},
		{"keys: 1000", "keys: 7"},
		{`"seq % 3 != 0"`, `"seq % 5 == 0"`},
		{`"seq * 2"`, `"seq * 3"`},
		{"type: file\n  path: out/", "type: stdout"},
		{"interval: 100ms", "interval: 1s"},
		{"parallelism: 4", "parallelism: 8"},
	} {
		if got := edit(e[0], e[1]); got != base {
			t.Errorf("%q -> %q changed the fingerprint:\n%q", e[0], e[1], FingerprintDiff(base, got))
		}
	}
	// Changes that do not.
	for _, e := range [][3]string{
		{"max_parallelism: 128", "max_parallelism: 64", "- max_parallelism 128|+ max_parallelism 64"},
		{"name: lowest", "name: smallest", "- step 5 lowest min key=key:int field=seq:int|+ step 5 smallest min key=key:int field=seq:int"},
		{"min: seq", "max: seq", "- step 5 lowest min key=key:int field=seq:int|+ step 5 lowest max key=key:int field=seq:int"},
		{"min: seq", "min: double", "- step 5 lowest min key=key:int field=seq:int|+ step 5 lowest min key=key:int field=double:int"},
		{"- count: {}", "- count: {}\n  - filter: \"true\"",
			"- step 4 sum-1 sum key=key:int field=seq:int|- step 5 lowest min key=key:int field=seq:int|+ step 4 filter-2 filter key=key:int|+ step 5 sum-1 sum key=key:int field=seq:int|+ step 6 lowest min key=key:int field=seq:int"},
		{"key_by: key", "key_by: seq", "- step 2 key_by-1 key_by key=key:int|- step 3 count-1 count key=key:int|- step 4 sum-1 sum key=key:int field=seq:int|- step 5 lowest min key=key:int field=seq:int|+ step 2 key_by-1 key_by key=seq:int|+ step 3 count-1 count key=seq:int|+ step 4 sum-1 sum key=seq:int field=seq:int|+ step 5 lowest min key=seq:int field=seq:int"},
		{"double: \"seq * 2\"", "seq: \"seq / 2\"", "- step 4 sum-1 sum key=key:int field=seq:int|- step 5 lowest min key=key:int field=seq:int|+ step 4 sum-1 sum key=key:int field=seq:float|+ step 5 lowest min key=key:int field=seq:float"},
	} {
		got := edit(e[0], e[1])
		if diff := strings.Join(FingerprintDiff(base, got), "|"); diff != e[2] {
			t.Errorf("%q -> %q: diff\n%s\nwant\n%s", e[0], e[1], diff, e[2])
		}
	}
	if FingerprintDiff(base, base) != nil {
		t.Error("FingerprintDiff of equal fingerprints is not nil")
	}
}

// TestMapInPlace checks the slot assignment of map steps: for random
// schemas and random map steps (replacing fields, changing their types,
// reading fields other assignments replace), running Map in place must give
// the same record as evaluating every assignment on a copy of the input.
func TestMapInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	types := []Type{TypeInt, TypeFloat, TypeString, TypeBool}
	n := 400
	if testing.Short() {
		n = 50
	}
	for iter := 0; iter < n; iter++ {
		// A random file source schema.
		var fields []FieldSpec
		nNum, nStr := 0, 0
		for i := 0; i < 1+rng.IntN(10); i++ {
			typ := types[rng.IntN(4)]
			if typ == TypeString && nStr == 5 || typ != TypeString && nNum == 10 {
				continue
			}
			if typ == TypeString {
				nStr++
			} else {
				nNum++
			}
			fields = append(fields, FieldSpec{fmt.Sprintf("f%d", i), typ})
		}
		names := make([]string, 0, len(fields)+3)
		for _, f := range fields {
			names = append(names, f.Name)
		}
		names = append(names, "new1", "new2", "new3")
		// A random map step over it.
		var yaml strings.Builder
		fmt.Fprintf(&yaml, "name: t\nsource:\n  type: file\n  path: x\n  fields:\n")
		for _, f := range fields {
			fmt.Fprintf(&yaml, "    %s: %s\n", f.Name, f.Type)
		}
		fmt.Fprintf(&yaml, "pipeline:\n  - map:\n")
		assigned := map[string]bool{}
		for a := 0; a < 1+rng.IntN(5); a++ {
			target := names[rng.IntN(len(names))]
			if assigned[target] {
				continue
			}
			assigned[target] = true
			fmt.Fprintf(&yaml, "      %s: %q\n", target, randExprOver(rng, fields, types[rng.IntN(4)]))
		}
		fmt.Fprintf(&yaml, "sink:\n  type: stdout\n")
		p, err := Load("t.yaml", []byte(yaml.String()))
		if err != nil {
			if strings.Contains(err.Error(), "too many") {
				continue
			}
			t.Fatalf("%s\n%v", yaml.String(), err)
		}
		st := p.Stages[0]
		// Reference: evaluate each assignment on its own copy of the input.
		for k := 0; k < 20; k++ {
			in := randRow(rng, st.In)
			want := map[string]string{}
			for _, f := range st.In.Fields {
				want[f.Name] = fieldString(&in, f)
			}
			for _, a := range st.Step.Assign {
				c, xe := compileExpr(a.Expr, st.In, evalCtx{})
				if xe != nil {
					t.Fatal(xe.msg)
				}
				cp := in
				o := runFast(c, &cp)
				want[a.Field] = o.String()
			}
			got := in
			st.Map(&got)
			for _, f := range st.Out.Fields {
				g := fieldString(&got, f)
				if g != want[f.Name] {
					t.Fatalf("%s\nin %s out %s\nfield %s = %s, want %s", yaml.String(), st.In.layout(), st.Out.layout(), f.Name, g, want[f.Name])
				}
			}
			if len(st.Out.Fields) != len(want) {
				t.Fatalf("out schema %s has %d fields, want %d", st.Out, len(st.Out.Fields), len(want))
			}
		}
	}
}

func fieldString(r *Row, f Field) string {
	o := outcome{typ: f.Type}
	switch f.Type {
	case TypeInt:
		o.i = r.Int(f.Slot)
	case TypeFloat:
		o.f = r.Float(f.Slot)
	case TypeBool:
		o.b = r.Bool(f.Slot)
	case TypeString:
		o.s = r.Str[f.Slot]
	}
	return o.String()
}

// randExprOver returns an expression of type typ reading random fields.
func randExprOver(rng *rand.Rand, fields []FieldSpec, typ Type) string {
	ref := func(want func(Type) bool, fallback string) string {
		var c []string
		for _, f := range fields {
			if want(f.Type) {
				c = append(c, f.Name)
			}
		}
		if len(c) == 0 {
			return fallback
		}
		return c[rng.IntN(len(c))]
	}
	isInt := func(t Type) bool { return t == TypeInt }
	isNum := func(t Type) bool { return t == TypeInt || t == TypeFloat }
	isStr := func(t Type) bool { return t == TypeString }
	isBool := func(t Type) bool { return t == TypeBool }
	switch typ {
	case TypeInt:
		return fmt.Sprintf("%s + %s * 3", ref(isInt, "1"), ref(isInt, "2"))
	case TypeFloat:
		return fmt.Sprintf("float(%s) - %s / 2", ref(isNum, "1"), ref(isNum, "0.5"))
	case TypeString:
		return fmt.Sprintf("%s + '-' + %s", ref(isStr, "'a'"), ref(isStr, "'b'"))
	}
	return fmt.Sprintf("%s != (%s > 0)", ref(isBool, "true"), ref(isNum, "1"))
}

func TestSpecLimits(t *testing.T) {
	f := func(data, want string) {
		t.Helper()
		_, err := Load("big.yaml", []byte(data))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v, want %q", err, want)
		}
	}
	f(strings.Repeat("#\n", MaxSpecLines+1), fmt.Sprintf("big.yaml: spec has %d lines; the limit is %d", MaxSpecLines+1, MaxSpecLines))
	f("name: "+strings.Repeat("x", MaxSpecBytes), fmt.Sprintf("spec is %d bytes; the limit is %d", MaxSpecBytes+6, MaxSpecBytes))
	f("pipeline:\n"+strings.Repeat("  - filter: x\n", MaxSteps+1), fmt.Sprintf("big.yaml:2:3: pipeline: %d steps; the limit is %d", MaxSteps+1, MaxSteps))
	long := strings.Repeat("i1 + ", MaxExprBytes/5+1) + "1"
	f("pipeline:\n  - map: {x: \""+long+"\"}\n", fmt.Sprintf("big.yaml:2:14: pipeline[0].map.x: expression is %d bytes; the limit is %d", len(long), MaxExprBytes))
}
