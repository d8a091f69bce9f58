package job

import (
	"errors"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestGolden runs the specs in testdata/*.txt through Load and compares the
// full error list, or the full plan, with the expected output. Regenerate
// with `go test ./job -run TestGolden -rewrite` and review the diff.
//
//	load [file=NAME]
//	<yaml>
//	----
//	<errors, one per line, or the plan>
//
// parse runs only Parse and prints its errors or "ok".
func TestGolden(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			file := "job.yaml"
			if d.HasArg("file") {
				d.ScanArgs(t, "file", &file)
			}
			switch d.Cmd {
			case "load":
				p, err := Load(file, []byte(d.Input))
				if err != nil {
					return errorsOutput(t, err)
				}
				return dumpPlan(p)
			case "parse":
				_, err := Parse(file, []byte(d.Input))
				if err != nil {
					return errorsOutput(t, err)
				}
				return "ok\n"
			}
			t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			return ""
		})
	})
}

func errorsOutput(t *testing.T, err error) string {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want *Errors: %v", err, err)
	}
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("error does not wrap ErrInvalidSpec: %v", err)
	}
	return err.Error() + "\n"
}
