package jobrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

func build(t *testing.T, spec string, opts Options) *Built {
	t.Helper()
	plan, err := job.Load("test.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Aggregations on the same key and parallelism share a task; a change of
// key reshuffles.
func TestKeyedChaining(t *testing.T) {
	b := build(t, `name: chain
parallelism: 2
source: {type: sequence, count: 100, keys: 10}
pipeline:
  - key_by: key
  - count: {}
  - filter: "count > 0"
  - sum: seq
  - map: {key: "seq % 3"}
  - key_by: key
  - max: seq
sink: {type: blackhole}
`, Options{})
	got := b.Job.Describe()
	want := "vertex 0 [source] parallelism=2\n" +
		"vertex 1 [count-1 -> filter-1 -> sum-1 -> map-1] parallelism=2 keyed input=vertex 0 (keyed)\n" +
		"vertex 2 [max-1 -> sink] parallelism=2 keyed input=vertex 1 (keyed)\n"
	if got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := b.Job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := b.Blackhole.Count(); n != 100 {
		t.Fatalf("blackhole saw %d records, want 100", n)
	}
}

func TestFileSourceToStdout(t *testing.T) {
	dir := t.TempDir()
	in := `{"user":"ann","amount":1.5,"qty":2}
{"user":"bob","amount":2,"qty":3}

{"user":"ann","amount":0.25,"qty":5}
`
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b := build(t, `name: files
source:
  type: file
  path: `+dir+`
  fields: {user: string, amount: float, qty: int}
pipeline:
  - map: {total: "amount * qty"}
  - key_by: user
  - sum: qty
sink: {type: stdout}
`, Options{Stdout: &out})
	if err := b.Job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `{"user":"ann","amount":1.5,"qty":2,"total":3,"sum":2}
{"user":"bob","amount":2,"qty":3,"total":6,"sum":3}
{"user":"ann","amount":0.25,"qty":5,"total":1.25,"sum":7}
`
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBadInputLineFailsNamingFileAndLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte("{\"qty\":1}\n{\"qty\":\"two\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, `name: bad
source: {type: file, path: `+dir+`, fields: {qty: int}}
sink: {type: blackhole}
`, Options{})
	err := b.Job.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "a.jsonl:2") {
		t.Fatalf("got %v, want an error naming a.jsonl:2", err)
	}
}

// describe renders a plan's vertices as engine.Job.Describe does.
func describe(p *job.Plan) string {
	var b strings.Builder
	for i, v := range p.Vertices {
		fmt.Fprintf(&b, "vertex %d [%s] parallelism=%d", i, v.Name, v.Parallelism)
		if v.Keyed {
			b.WriteString(" keyed")
		}
		if v.Exchange != "" {
			fmt.Fprintf(&b, " input=vertex %d (%s)", i-1, v.Exchange)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// bothLayers loads spec and, when package job accepts it, builds it for the
// engine with a store (and without one, as streamd validate does): the
// engine must accept it too (Build runs engine.Job.Validate), laid out as
// the plan says. When job refuses it, every problem has a line. It reports
// whether job accepted the spec, and its problems when it did not.
func bothLayers(t *testing.T, store *snapshot.Store, spec string) (bool, error) {
	t.Helper()
	plan, err := job.Load("test.yaml", []byte(spec))
	if err != nil {
		var errs *job.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("Load: %v is not *job.Errors\n%s", err, spec)
		}
		for _, e := range errs.List {
			if e.Line == 0 {
				t.Fatalf("spec error without a line: %v\n%s", e, spec)
			}
		}
		return false, err
	}
	for _, s := range []*snapshot.Store{store, nil} {
		b, err := Build(plan, Options{Store: s})
		if err != nil {
			t.Fatalf("job accepted the spec, the engine did not (store %v): %v\n%s", s != nil, err, spec)
		}
		if got, want := b.Job.Describe(), describe(plan); got != want {
			t.Fatalf("the engine lays out\n%s\nthe plan says\n%s\n%s", got, want, spec)
		}
	}
	return true, nil
}

func openStore(t *testing.T) *snapshot.Store {
	t.Helper()
	store, err := snapshot.Open(t.TempDir(), snapshot.Options{Logger: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// longChain is the steps of a key_by, a count and 16 filters named so that
// the keyed chain "count-1 -> ... -> sink" is n bytes long.
func longChain(n int) string {
	const filters = 16
	names := n - len("count-1") - len(" -> ")*filters - len(" -> sink")
	var b strings.Builder
	b.WriteString("  - key_by: key\n  - count: {}\n")
	for i := range filters {
		l := names / filters
		if i < names%filters {
			l++
		}
		fmt.Fprintf(&b, "  - {filter: 'true', name: f%02d%s}\n", i, strings.Repeat("x", l-3))
	}
	return b.String()
}

// TestLimitSweep sweeps every limit the engine puts on what a spec can ask
// for over its neighbourhood: a spec that package job accepts is one the
// engine accepts (at the limit), and one past it is a spec error.
func TestLimitSweep(t *testing.T) {
	store := openStore(t)
	spec := func(top, steps, sink, checkpointing string) string {
		s := "name: sweep\n" + top + "source: {type: sequence, keys: 10, count: 0}\n"
		if steps != "" {
			s += "pipeline:\n" + steps
		}
		s += "sink: {type: blackhole" + sink + "}\n"
		if checkpointing != "" {
			s += "checkpointing: {interval: 1s, " + checkpointing + "}\n"
		}
		return s
	}
	keyedChains := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "  - key_by: %s\n  - count: {}\n", []string{"key", "seq"}[i%2])
		}
		return b.String()
	}
	type sweep struct {
		name  string
		limit int
		spec  func(v int) string
	}
	maxPar := engine.MaxParallelism
	for _, sw := range []sweep{
		{"parallelism", maxPar, func(v int) string {
			return spec(fmt.Sprintf("parallelism: %d\nmax_parallelism: %d\n", v, keyed.MaxMaxParallelism), keyedChains(1), "", "")
		}},
		{"step parallelism", maxPar, func(v int) string {
			return spec("", fmt.Sprintf("  - {filter: 'true', parallelism: %d}\n", v), "", "")
		}},
		{"source parallelism", maxPar, func(v int) string {
			return strings.Replace(spec("", "", "", ""), "count: 0}", fmt.Sprintf("count: 0, parallelism: %d}", v), 1)
		}},
		{"sink parallelism", maxPar, func(v int) string { return spec("", "", fmt.Sprintf(", parallelism: %d", v), "") }},
		{"max_parallelism", keyed.MaxMaxParallelism, func(v int) string {
			return spec(fmt.Sprintf("max_parallelism: %d\n", v), keyedChains(1), "", "")
		}},
		{"keyed parallelism", 64, func(v int) string {
			return spec("max_parallelism: 64\n", fmt.Sprintf("  - key_by: key\n  - {count: {}, parallelism: %d}\n", v), "", "")
		}},
		// Tasks: v-3*maxPar tasks for the source, then three counts and
		// the sink chained with the last one.
		{"tasks", engine.MaxTasks, func(v int) string {
			return strings.Replace(spec(fmt.Sprintf("parallelism: %d\nmax_parallelism: %d\n", maxPar, maxPar), keyedChains(3), "", ""),
				"count: 0}", fmt.Sprintf("count: 0, parallelism: %d}", v-3*maxPar), 1)
		}},
		{"max_concurrent", coord.MaxConcurrentLimit, func(v int) string {
			return spec("", "", "", fmt.Sprintf("max_concurrent: %d", v))
		}},
		{"retained", engine.MaxRetained, func(v int) string { return spec("", "", "", fmt.Sprintf("retained: %d", v)) }},
		{"keyed chain name", snapshot.MaxScopeBytes, func(v int) string { return spec("", longChain(v), "", "retained: 1") }},
	} {
		for _, v := range []int{sw.limit - 1, sw.limit, sw.limit + 1} {
			ok, _ := bothLayers(t, store, sw.spec(v))
			if ok != (v <= sw.limit) {
				t.Errorf("%s %d: job accepted it: %v", sw.name, v, ok)
			}
		}
	}
}

// TestRandomSpecsBothLayers generates specs around the limits at random:
// whatever package job accepts, the engine accepts, laid out as the plan
// says; whatever it refuses has a line.
func TestRandomSpecsBothLayers(t *testing.T) {
	store := openStore(t)
	rng := rand.New(rand.NewPCG(1, 10))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	// rarely returns bad with probability 1/20, else one of good.
	rarely := func(bad string, good ...string) string {
		if rng.IntN(20) == 0 {
			return bad
		}
		return pick(good...)
	}
	par := func() string { return rarely("1025", "1", "2", "3", "64", "512", "1024") }
	accepted, tooManyTasks, scopeTooLong := 0, 0, 0
	n := 600
	if testing.Short() {
		n = 200
	}
	for range n {
		var b strings.Builder
		b.WriteString(rarely("name: -r\n", "name: r\n", "name: "+strings.Repeat("r", job.MaxNameLen)+"\n"))
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&b, "parallelism: %s\n", par())
		}
		fmt.Fprintf(&b, "max_parallelism: %s\n", rarely(pick("32769", "2"), "1024", "32768"))
		fmt.Fprintf(&b, "source: {type: sequence, keys: 10, count: 0%s}\n", pick("", "", ", parallelism: "+par()))
		b.WriteString("pipeline:\n  - key_by: key\n")
		long := rng.IntN(3) == 0 // long step names, enough to pass snapshot.MaxScopeBytes
		for i := range rng.IntN(40) {
			step := pick("filter: 'seq >= 0'", "map: {x: 'seq + 1'}", "map: {key: 'seq % 3'}",
				"key_by: key", "key_by: seq", "count: {}", "count: {}", "sum: seq")
			if long { // long chains: few key_bys
				step = rarely("key_by: seq", "filter: 'seq >= 0'", "map: {x: 'seq + 1'}", "count: {}", "sum: seq")
			}
			if rng.IntN(8) == 0 {
				step += ", parallelism: " + par()
			}
			if long {
				step += fmt.Sprintf(", name: s%02d-%s", i, strings.Repeat("n", job.MaxNameLen-14+rng.IntN(10)))
			} else if rng.IntN(3) == 0 {
				step += fmt.Sprintf(", name: s%d-%s", i, strings.Repeat("n", rng.IntN(job.MaxNameLen-4)))
			} else if rng.IntN(40) == 0 {
				step += ", name: " + pick("source", "sink")
			}
			fmt.Fprintf(&b, "  - {%s}\n", step)
		}
		fmt.Fprintf(&b, "sink: {type: blackhole%s}\n", pick("", "", ", parallelism: "+par()))
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&b, "checkpointing: {interval: 1s, max_concurrent: %s, retained: %s}\n",
				rarely("17", "1", "16"), rarely("1001", "1", "1000"))
		}
		ok, err := bothLayers(t, store, b.String())
		switch {
		case ok:
			accepted++
		case strings.Contains(err.Error(), "tasks, more than the limit"):
			tooManyTasks++
		case strings.Contains(err.Error(), "bytes in checkpoints"):
			scopeTooLong++
		}
	}
	t.Logf("of %d specs, %d were accepted, %d had too many tasks, %d too long a keyed chain", n, accepted, tooManyTasks, scopeTooLong)
	if accepted < n/10 || tooManyTasks == 0 || scopeTooLong == 0 {
		t.Fatalf("of %d specs, %d were accepted, %d had too many tasks, %d too long a keyed chain; the generator tests little",
			n, accepted, tooManyTasks, scopeTooLong)
	}
}

// TestKeyedChainNameAtTheLimitCheckpoints runs a job whose keyed chain's
// name, the scope of its state in checkpoints, is exactly
// snapshot.MaxScopeBytes long: its checkpoints complete. (One byte more is
// a spec error: TestLimitSweep.)
func TestKeyedChainNameAtTheLimitCheckpoints(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: scope\nsource: {type: sequence, keys: 10, count: 1000}\npipeline:\n")
	b.WriteString(longChain(snapshot.MaxScopeBytes))
	b.WriteString("sink: {type: blackhole}\ncheckpointing: {interval: 10ms}\n")
	plan, err := job.Load("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if v := plan.Vertices[len(plan.Vertices)-1]; len(v.Name) != snapshot.MaxScopeBytes || !v.Keyed {
		t.Fatalf("keyed chain %q has %d bytes", v.Name, len(v.Name))
	}
	built, err := Build(plan, Options{Store: openStore(t), Pinning: engine.PinOff, Logger: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := built.Job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, s := range built.Job.CheckpointStats() {
		if s.Status == "completed" {
			completed++
		}
	}
	if completed == 0 {
		t.Fatal("no checkpoint completed")
	}
}
