package bench

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"strings"
	"testing"
	"time"
)

// The trivial cases below exist only in this test binary.
var sink int

func init() {
	Register(
		Case{Suite: "tabletest", Name: "slow", Records: 4, F: func(b *testing.B) {
			for i := range b.N {
				for j := range 400 {
					sink += i ^ j
				}
			}
		}},
		Case{Suite: "tabletest", Name: "fast", Baseline: "slow", Records: 4, F: func(b *testing.B) {
			for i := range b.N {
				sink += i
			}
		}},
		Case{Suite: "tabletest-alloc", Name: "alloc", Records: 2, F: func(b *testing.B) {
			for range b.N {
				sinkSlice = make([]byte, 64)
			}
		}},
		Case{Suite: "tabletest-fail", Name: "ok", Records: 1, F: func(b *testing.B) {}},
		Case{Suite: "tabletest-fail", Name: "fails", Baseline: "ok", Records: 1, F: func(b *testing.B) {
			b.Fatal("deliberate")
		}},
		Case{Suite: "tabletest-badbaseline", Name: "a", Baseline: "missing", Records: 1, F: func(b *testing.B) {}},
	)
}

var sinkSlice []byte

func TestRunTable(t *testing.T) {
	before := flag.Lookup("test.benchtime").Value.String()
	var out bytes.Buffer
	if err := Run(&out, []string{"tabletest", "tabletest-alloc"}, 3, 2*time.Millisecond); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	table := out.String()
	t.Logf("\n%s", table)
	if after := flag.Lookup("test.benchtime").Value.String(); after != before {
		t.Errorf("Run left test.benchtime at %q, was %q", after, before)
	}

	lines := strings.Split(strings.TrimSpace(table), "\n")
	var header, slow, fast, alloc []string
	for _, l := range lines {
		cells := splitRow(l)
		switch {
		case len(cells) == 0:
		case cells[0] == "suite":
			header = cells
		case len(cells) > 1 && cells[1] == "slow":
			slow = cells
		case len(cells) > 1 && cells[1] == "fast":
			fast = cells
		case len(cells) > 1 && cells[1] == "alloc":
			alloc = cells
		}
	}
	wantHeader := []string{"suite", "case", "ns/record", "Mrecords/s", "allocs/record", "spread", "vs baseline (>1: faster)"}
	if strings.Join(header, "|") != strings.Join(wantHeader, "|") {
		t.Fatalf("header %q, want %q", header, wantHeader)
	}
	for _, r := range [][]string{slow, fast, alloc} {
		if len(r) != len(wantHeader) {
			t.Fatalf("row %q has %d cells, want %d", r, len(r), len(wantHeader))
		}
	}
	if slow[0] != "tabletest" || alloc[0] != "tabletest-alloc" {
		t.Errorf("suite cells %q, %q", slow[0], alloc[0])
	}
	if slow[6] != "" {
		t.Errorf("case without baseline has ratio %q", slow[6])
	}
	if !strings.HasSuffix(fast[6], "× slow") {
		t.Errorf("ratio cell %q, want \"<ratio>× slow\"", fast[6])
	}
	if fast[4] != "0" || alloc[4] != "0.5" {
		t.Errorf("allocs/record %q and %q, want 0 and 0.5 (one 64-byte slice per 2 records)", fast[4], alloc[4])
	}
}

// splitRow returns the trimmed cells of a markdown table row, or nil.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
		return nil
	}
	cells := strings.Split(line[1:len(line)-1], "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

func TestRunReportsFailedCase(t *testing.T) {
	var out bytes.Buffer
	err := Run(&out, []string{"tabletest-fail"}, 2, time.Millisecond)
	if !errors.Is(err, ErrCaseFailed) || !strings.Contains(err.Error(), "tabletest-fail/fails") {
		t.Fatalf("Run = %v, want ErrCaseFailed naming tabletest-fail/fails", err)
	}
	var okRow, failRow []string
	for _, l := range strings.Split(out.String(), "\n") {
		if c := splitRow(l); len(c) > 2 && c[1] == "fails" {
			failRow = c
		} else if len(c) > 2 && c[1] == "ok" {
			okRow = c
		}
	}
	if failRow == nil || failRow[2] != "failed" {
		t.Errorf("failed case row %q", failRow)
	}
	if okRow == nil || okRow[2] == "failed" {
		t.Errorf("passing case row %q", okRow)
	}
}

func TestRunArgumentErrors(t *testing.T) {
	var out bytes.Buffer
	err := Run(&out, []string{"no-such-suite", "tabletest-badbaseline"}, 0, -time.Second)
	if err == nil {
		t.Fatal("Run accepted bad arguments")
	}
	if !errors.Is(err, ErrUnknownSuite) {
		t.Errorf("error %v does not wrap ErrUnknownSuite", err)
	}
	for _, want := range []string{"count 0", "benchtime -1s", `"no-such-suite"`, `baseline "missing"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("Run wrote %q despite bad arguments", out.String())
	}
}

func TestRegisterPanics(t *testing.T) {
	f := func(c Case, want string) {
		t.Helper()
		defer func() {
			t.Helper()
			r := recover()
			if r == nil || !strings.Contains(r.(string), want) {
				t.Errorf("Register(%+v) panic %v, want one containing %q", c, r, want)
			}
		}()
		Register(c)
	}
	noop := func(*testing.B) {}
	f(Case{Name: "x", Records: 1, F: noop}, "empty Suite")
	f(Case{Suite: "s", Name: "a,b", Records: 1, F: noop}, "comma")
	f(Case{Suite: "s", Name: "x", Records: 0, F: noop}, "Records 0")
	f(Case{Suite: "s", Name: "x", Records: 1}, "nil F")
	f(Case{Suite: "tabletest", Name: "slow", Records: 1, F: noop}, "registered twice")
}

func TestMedian(t *testing.T) {
	f := func(xs []float64, want float64) {
		t.Helper()
		in := append([]float64(nil), xs...)
		if got := Median(xs); got != want {
			t.Errorf("Median(%v) = %v, want %v", xs, got, want)
		}
		for i := range xs {
			if xs[i] != in[i] {
				t.Fatalf("Median modified its input: %v", xs)
			}
		}
	}
	f([]float64{5}, 5)
	f([]float64{3, 1, 2}, 2)
	f([]float64{4, 1, 3, 2}, 2.5)
	f([]float64{1, 1, 9, 9, 1}, 1)
	f([]float64{-1, -3}, -2)
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestSuitesAndCases(t *testing.T) {
	suites := Suites()
	for _, want := range []string{"ring", "tabletest"} {
		found := false
		for _, s := range suites {
			found = found || s == want
		}
		if !found {
			t.Errorf("Suites() = %v, missing %q", suites, want)
		}
	}
	if c := Cases("tabletest"); len(c) != 2 || c[0].Name != "slow" || c[1].Name != "fast" {
		t.Errorf("Cases(tabletest) = %v, want slow, fast in registration order", c)
	}
}

func TestRunDuplicateSuiteOnce(t *testing.T) {
	var out bytes.Buffer
	if err := Run(&out, []string{"tabletest", "tabletest-alloc", "tabletest"}, 1, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "| slow "); n != 1 {
		t.Fatalf("case slow appears %d times, want once:\n%s", n, out.String())
	}
}
