package job

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenInputs returns the YAML inputs of the golden test files, as fuzz
// seeds.
func goldenInputs(t testing.TB) []string {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range strings.Split(string(data), "\n\n") {
			lines := strings.Split(strings.TrimLeft(block, "\n"), "\n")
			var in []string
			started := false
			for _, l := range lines {
				if !started {
					started = strings.HasPrefix(l, "load") || strings.HasPrefix(l, "parse")
					continue
				}
				if l == "----" {
					break
				}
				in = append(in, l)
			}
			if started {
				out = append(out, strings.Join(in, "\n")+"\n")
			}
		}
	}
	return out
}

// FuzzParse feeds arbitrary bytes to Parse, Compile and Load: they must
// never panic, must agree with each other, and must report problems only as
// *Errors with the file name.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleSpec))
	f.Add([]byte(allocSpec))
	for _, in := range goldenInputs(f) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(err error) {
			t.Helper()
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("error %v is not a non-empty *Errors", err)
			}
			for _, e := range errs.List {
				if e.File != "f.yaml" || e.Msg == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
		}
		plan, loadErr := Load("f.yaml", data)
		spec, err := Parse("f.yaml", data)
		if err != nil {
			check(err)
			if loadErr == nil {
				t.Fatalf("Parse failed but Load succeeded: %v", err)
			}
			check(loadErr)
			return
		}
		p, err := Compile(spec)
		if (err == nil) != (loadErr == nil) {
			t.Fatalf("Compile error %v, Load error %v", err, loadErr)
		}
		if err != nil {
			check(err)
			if err.Error() != loadErr.Error() {
				t.Fatalf("Compile and Load disagree:\n%v\n%v", err, loadErr)
			}
			return
		}
		if p.Fingerprint() != plan.Fingerprint() {
			t.Fatal("fingerprints of the same spec differ")
		}
		if len(p.Stages) != len(spec.Pipeline) || p.SinkSchema == nil {
			t.Fatal("incomplete plan")
		}
		for _, st := range p.Stages {
			switch {
			case st.Step.Kind == StepFilter && st.Filter == nil,
				st.Step.Kind == StepMap && st.Map == nil,
				st.Step.Kind == StepReduce && st.Reduce == nil,
				st.Step.Kind == StepAggregate && st.Accs == nil,
				st.Step.Kind.IsAggregate() && st.Step.Kind < StepReduce && st.Agg == nil:
				t.Fatalf("stage %s lacks its operator", st.Step.Name)
			}
		}
	})
}
