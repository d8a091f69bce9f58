package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rechainJob is the crash job with stateless steps whose parallelism and
// presence change between runs (which changes chaining); source pinned at 2.
const rechainJob = `name: rechain
parallelism: 2
checkpointing: {interval: 30ms}
source: {type: sequence, count: %d, keys: 100, rate: 150000, parallelism: 2}
pipeline:
  - filter: "seq >= 0"
    parallelism: %d
%s  - key_by: key
  - count: {}
    name: counter
    parallelism: %d
sink: {type: file, path: out/, parallelism: %d}
`

// TestRechainAcrossKills is issue 16's "done when": between runs killed
// with SIGKILL the job changes its chaining and the parallelism of its
// stateless steps, of its keyed step and of its sink, and gains and loses
// a map step; the output over all runs is exactly once. Then `streamd
// validate --data-dir` checks specs against the checkpoint without
// running them: a changed stateful step is refused naming it, exit 2.
func TestRechainAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs streamd")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	const count = 400_000
	mapStep := "  - map: {double: \"seq * 2\"}\n    parallelism: 3\n"
	shapes := []struct {
		filter int
		extra  string
		count  int
		sink   int
	}{
		{2, "", 2, 2},      // source -> filter chained
		{3, "", 3, 1},      // filter rescaled: a chain of its own
		{1, mapStep, 2, 2}, // a map added (its own parallelism)
		{2, "", 1, 3},
		{2, mapStep, 3, 2},
		{2, "", 2, 2},
	}
	spec := func(i int) string {
		sh := shapes[i%len(shapes)]
		return fmt.Sprintf(rechainJob, count, sh.filter, sh.extra, sh.count, sh.sink)
	}
	kills := 0
	for run := 0; ; run++ {
		if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec(run)), 0o644); err != nil {
			t.Fatal(err)
		}
		killAfter := time.Duration(0)
		if run < 2*len(shapes) {
			killAfter = time.Duration(150+run*37%250) * time.Millisecond
		}
		r := runOnce(t, bin, dir, "", killAfter)
		switch {
		case r.exit == 0:
		case r.exit == -9:
			kills++
			continue
		default:
			t.Fatalf("run %d (%s): exit %d\n%s", run, strings.ReplaceAll(spec(run), "\n", " | "), r.exit, r.stderr)
		}
		if run < 2*len(shapes) && killAfter > 0 {
			t.Logf("run %d finished before its kill", run)
		}
		break
	}
	if kills < len(shapes) {
		t.Fatalf("only %d runs were killed mid-way: the test did not test", kills)
	}
	verifyExactlyOnce(t, readOutput(t, filepath.Join(dir, "out")), count, 100)

	// validate --data-dir: the finished job's checkpoint fits any of the
	// shapes, and refuses a changed stateful step.
	code, out := runStreamd(t, bin, dir, "validate", "--data-dir", "data", "job.yaml")
	if code != 0 || !strings.Contains(out, "fits the spec") {
		t.Fatalf("validate --data-dir: exit %d\n%s", code, out)
	}
	changed := strings.Replace(spec(0), "  - count: {}", "  - sum: seq", 1)
	if err := os.WriteFile(filepath.Join(dir, "changed.yaml"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = runStreamd(t, bin, dir, "validate", "--data-dir", "data", "changed.yaml")
	if code != 2 || !strings.Contains(out, `operator "counter"`) || !strings.Contains(out, "what changed") {
		t.Fatalf("validate --data-dir of a changed stateful step: exit %d, want 2 naming counter:\n%s", code, out)
	}
}
