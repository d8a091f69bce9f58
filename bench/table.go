// Package bench owns streamd's benchmark harness: a registry of benchmark
// cases grouped in suites, and Run, which measures them in one process and
// prints a markdown table of medians and of ratios against baselines
// (`make bench` runs it through cmd/streamd-bench). The suites themselves
// (the ring hand-off suite here; Nexmark queries and baselines later) live
// in this package too, each registering its cases from an init function:
// Register is the only coupling between a suite and the harness.
//
// # Method
//
// The machine is shared and noisy, so Run compares like with like in the
// same process and reports medians:
//
//   - Each case is first calibrated: it runs with growing iteration counts
//     until one run lasts at least a fifth of the benchtime, and the count
//     for one benchtime is extrapolated from that run.
//   - Then Run makes count rounds; each round runs every case once,
//     starting one case further along each round, so that drift in the
//     machine's load hits every case alike. Before each run the iteration
//     count is re-predicted from the median speed of the case's runs so
//     far, so a calibration run that hit a slow spell does not make every
//     later run short.
//   - A case's ns/record is the median over rounds; its ratio against a
//     baseline is median(baseline ns/record) / median(case ns/record), so
//     a ratio above 1 means the case is faster. The spread column,
//     (max − min) / median, says how far to trust a row.
//
// # The benchtime
//
// testing.Benchmark takes its duration from the -test.benchtime flag and
// nothing else. Run calls testing.Init (which registers the testing flags
// when this is not a test binary, and does nothing when it is), sets
// test.benchtime to "<N>x" for each run, so that every run does exactly the
// calibrated N iterations, and restores the flag's value when it returns.
// Run is therefore not safe to call concurrently with itself or with other
// users of testing.Benchmark.
//
// # Limits
//
// Allocation counts are per record over the timed part of a run
// (b.ReportAllocs is implied: testing.Benchmark always counts). A case
// that fails (b.Fatal, b.Skip) is reported and makes Run return an error.
// Ratios are reported, never asserted: no test in this package judges a
// speed.
//
// bench sits at the top of the package graph: it may import engine/ and
// connectors, and nothing may import it except its commands.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// Case is one benchmark in a suite.
type Case struct {
	// Suite groups cases that are measured and compared together.
	Suite string
	// Name identifies the case within its suite. It may not contain a
	// comma.
	Name string
	// Baseline names the case (or several, separated by commas) in the
	// same suite that this one is compared against; "" for none.
	Baseline string
	// Records is the number of records one iteration (one of b.N)
	// processes; ns/record and records/s divide by it. At least 1.
	Records int
	// F is an ordinary benchmark function.
	F func(b *testing.B)
}

// Limits on Run's arguments.
const (
	MaxCount     = 1000
	MaxBenchtime = time.Hour
	// maxIterations bounds a calibrated b.N, as testing does.
	maxIterations = 1_000_000_000
)

// ErrUnknownSuite is wrapped by Run's error for a suite nobody registered.
var ErrUnknownSuite = errors.New("bench: unknown suite")

// ErrCaseFailed is wrapped by Run's error for a case that failed or
// skipped.
var ErrCaseFailed = errors.New("bench: case failed")

var registry struct {
	mu    sync.Mutex
	cases []Case // in registration order
}

// Register adds cases to the registry; suites and cases are measured in
// registration order. It panics on an empty suite or name, a name with a
// comma, Records < 1, a nil F, or a (suite, name) pair registered before:
// registrations are code, so these are bugs. Baselines are checked by Run,
// because a baseline may be registered after the case that names it.
func Register(c ...Case) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	for _, c := range c {
		var problems []string
		if c.Suite == "" {
			problems = append(problems, "empty Suite")
		}
		if c.Name == "" || strings.Contains(c.Name, ",") {
			problems = append(problems, "Name empty or containing a comma")
		}
		if c.Records < 1 {
			problems = append(problems, fmt.Sprintf("Records %d < 1", c.Records))
		}
		if c.F == nil {
			problems = append(problems, "nil F")
		}
		for _, o := range registry.cases {
			if o.Suite == c.Suite && o.Name == c.Name {
				problems = append(problems, "registered twice")
			}
		}
		if len(problems) > 0 {
			panic(fmt.Sprintf("bench: Register %s/%s: %s", c.Suite, c.Name, strings.Join(problems, "; ")))
		}
		registry.cases = append(registry.cases, c)
	}
}

// Suites returns the registered suite names in registration order.
func Suites() []string {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	var suites []string
	for _, c := range registry.cases {
		if !slices.Contains(suites, c.Suite) {
			suites = append(suites, c.Suite)
		}
	}
	return suites
}

// Cases returns the registered cases of suite in registration order.
func Cases(suite string) []Case {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	var cases []Case
	for _, c := range registry.cases {
		if c.Suite == suite {
			cases = append(cases, c)
		}
	}
	return cases
}

// Run measures the cases of the named suites (all registered suites if
// suites is empty) and writes a markdown table of the results to w: count
// interleaved runs of about benchtime each per case, after calibration
// (see the package documentation). It reports every problem with its
// arguments at once before measuring anything. A case that fails is
// dropped from later rounds, shown as failed, and reported in the
// returned error after the table is written.
func Run(w io.Writer, suites []string, count int, benchtime time.Duration) error {
	if len(suites) == 0 {
		suites = Suites()
	}
	var unique []string // "ring,ring" runs the suite once
	for _, s := range suites {
		if !slices.Contains(unique, s) {
			unique = append(unique, s)
		}
	}
	suites = unique
	var problems []error
	if count < 1 || count > MaxCount {
		problems = append(problems, fmt.Errorf("bench: count %d not in [1, %d]", count, MaxCount))
	}
	if benchtime <= 0 || benchtime > MaxBenchtime {
		problems = append(problems, fmt.Errorf("bench: benchtime %v not in (0, %v]", benchtime, MaxBenchtime))
	}
	var rows []*row
	for _, s := range suites {
		cases := Cases(s)
		if len(cases) == 0 {
			problems = append(problems, fmt.Errorf("%w %q (registered: %s)", ErrUnknownSuite, s, strings.Join(Suites(), ", ")))
		}
		for _, c := range cases {
			rows = append(rows, &row{Case: c})
		}
	}
	for _, r := range rows {
		for _, name := range r.baselines() {
			if !slices.ContainsFunc(rows, func(o *row) bool { return o.Suite == r.Suite && o.Name == name }) {
				problems = append(problems, fmt.Errorf("bench: case %s/%s: baseline %q is not a case of its suite", r.Suite, r.Name, name))
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}

	restore, err := takeBenchtimeFlag()
	if err != nil {
		return err
	}
	defer restore()

	for _, r := range rows {
		r.calibrate(benchtime)
	}
	for round := range count {
		for i := range rows {
			r := rows[(i+round)%len(rows)]
			if r.err == nil {
				r.measure()
			}
		}
	}

	writeTable(w, rows, count, benchtime)
	var failed []error
	for _, r := range rows {
		if r.err != nil {
			failed = append(failed, r.err)
		}
	}
	return errors.Join(failed...)
}

// row is one case's measurements.
type row struct {
	Case
	benchtime       time.Duration
	iterations      int       // b.N for the next run
	nsPerOp         []float64 // calibration's last run, then one per round
	nsPerRecord     []float64 // one per round
	allocsPerRecord []float64
	err             error
}

func (r *row) baselines() []string {
	if r.Baseline == "" {
		return nil
	}
	var names []string
	for _, n := range strings.Split(r.Baseline, ",") {
		names = append(names, strings.TrimSpace(n))
	}
	return names
}

// calibrate finds the iteration count for one run of about benchtime.
func (r *row) calibrate(benchtime time.Duration) {
	r.benchtime = benchtime
	goal := benchtime / 5
	n := 1
	for {
		res, err := r.run(n)
		if err != nil {
			r.err = err
			return
		}
		if res.T >= goal || n >= maxIterations {
			r.nsPerOp = append(r.nsPerOp, float64(res.T)/float64(n))
			r.iterations = r.predictIterations()
			return
		}
		// Aim 20% past the goal, growing at most 100x per step, as
		// testing's own predictN does.
		next := 100 * float64(n)
		if res.T > 0 {
			next = min(next, 1.2*float64(n)*float64(goal)/float64(res.T))
		}
		n = max(clampIterations(next), n+1)
	}
}

// predictIterations returns the iteration count that lasts benchtime at
// the median speed seen so far. Re-predicting after every run keeps runs
// near benchtime even when the calibration run hit a slow spell.
func (r *row) predictIterations() int {
	return clampIterations(float64(r.benchtime) / max(Median(r.nsPerOp), 1e-3))
}

func clampIterations(x float64) int {
	return int(min(max(x, 1), maxIterations))
}

// measure runs the case once with the predicted iteration count.
func (r *row) measure() {
	res, err := r.run(r.iterations)
	if err != nil {
		r.err = err
		return
	}
	records := float64(res.N) * float64(r.Records)
	r.nsPerRecord = append(r.nsPerRecord, float64(res.T.Nanoseconds())/records)
	r.allocsPerRecord = append(r.allocsPerRecord, float64(res.MemAllocs)/records)
	r.nsPerOp = append(r.nsPerOp, float64(res.T.Nanoseconds())/float64(res.N))
	r.iterations = r.predictIterations()
}

// run runs F with b.N == n exactly.
func (r *row) run(n int) (testing.BenchmarkResult, error) {
	if err := benchtimeFlag.Value.Set(fmt.Sprintf("%dx", n)); err != nil {
		panic(fmt.Sprintf("bench: cannot set test.benchtime: %v", err))
	}
	res := testing.Benchmark(r.F)
	if res.N == 0 { // testing.Benchmark's sign of b.Fatal, b.Skip or b.FailNow
		return res, fmt.Errorf("%w: %s/%s (b.N=%d)", ErrCaseFailed, r.Suite, r.Name, n)
	}
	return res, nil
}

// benchtimeFlag is the testing package's -test.benchtime, held by Run.
var benchtimeFlag *flag.Flag

// takeBenchtimeFlag makes sure the testing flags exist and returns a
// function that restores test.benchtime's value.
func takeBenchtimeFlag() (restore func(), err error) {
	testing.Init()
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return nil, errors.New("bench: testing did not register -test.benchtime")
	}
	benchtimeFlag = f
	old := f.Value.String()
	return func() {
		if err := f.Value.Set(old); err != nil {
			panic(fmt.Sprintf("bench: cannot restore test.benchtime %q: %v", old, err))
		}
	}, nil
}

// writeTable writes the results as a markdown table.
func writeTable(w io.Writer, rows []*row, count int, benchtime time.Duration) {
	fmt.Fprintf(w, "medians of %d interleaved runs of ~%v each; %s/%s, GOMAXPROCS=%d, %s\n\n",
		count, benchtime, runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.Version())
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(cells ...string) {
		fmt.Fprintf(tw, "| %s\t |\n", strings.Join(cells, "\t | "))
	}
	line("suite", "case", "ns/record", "Mrecords/s", "allocs/record", "spread", "vs baseline (>1: faster)")
	line("---", "---", "---:", "---:", "---:", "---:", "---")
	median := map[*row]float64{}
	for _, r := range rows {
		median[r] = Median(r.nsPerRecord)
	}
	for _, r := range rows {
		if r.err != nil || len(r.nsPerRecord) == 0 {
			line(r.Suite, r.Name, "failed", "", "", "", "")
			continue
		}
		ns := median[r]
		var ratios []string
		for _, name := range r.baselines() {
			i := slices.IndexFunc(rows, func(o *row) bool { return o.Suite == r.Suite && o.Name == name })
			b := rows[i]
			if b.err != nil || len(b.nsPerRecord) == 0 {
				ratios = append(ratios, "? "+name)
				continue
			}
			ratios = append(ratios, fmt.Sprintf("%s× %s", format3(median[b]/ns), name))
		}
		line(r.Suite, r.Name,
			format3(ns),
			fmt.Sprintf("%.1f", 1e3/ns),
			formatAllocs(Median(r.allocsPerRecord)),
			fmt.Sprintf("%.0f%%", 100*(slices.Max(r.nsPerRecord)-slices.Min(r.nsPerRecord))/ns),
			strings.Join(ratios, ", "))
	}
	tw.Flush()
}

// format3 formats x with about three significant digits, never in
// exponent form.
func format3(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func formatAllocs(a float64) string {
	if a == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3g", a)
}

// Median returns the median of xs (the mean of the two middle values when
// len(xs) is even), or NaN if xs is empty. It does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
