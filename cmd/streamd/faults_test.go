package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// faultJob is a small checkpointed job writing to out/.
const faultJob = `name: faults
parallelism: 2
checkpointing: {interval: 20ms}
source: {type: sequence, count: %d, keys: 50%s}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`

// outputFiles returns the committed files of out/ with their contents.
func outputFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string]string)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".jsonl") {
			b, err := os.ReadFile(filepath.Join(dir, "out", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = string(b)
		}
	}
	return files
}

func runStreamd(t *testing.T, bin, dir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// The data dir of a finished job is lost (or a fresh one is given) while
// its output stays: the sink's commit marker says it committed output, the
// store has no checkpoint, and the rerun refuses with exit 1 and a message
// that says what to do, leaving every committed file as it was. Before
// (issue 15) it exited 0 and emitted everything again into the same
// directory. --allow-duplicate-output is the explicit way through.
func TestLostDataDirRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), fmt.Appendf(nil, faultJob, 20000, ""), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runStreamd(t, bin, dir, "run", "--data-dir", "data", "job.yaml"); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	before := outputFiles(t, dir)
	if len(before) == 0 {
		t.Fatal("the first run committed nothing")
	}
	for _, how := range []string{"removed", "other"} {
		dataDir := "data"
		if how == "removed" {
			if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
				t.Fatal(err)
			}
		} else {
			dataDir = "other-data" // the README's quick start used to do this
		}
		code, out := runStreamd(t, bin, dir, "run", "--data-dir", dataDir, "job.yaml")
		if code != 1 {
			t.Fatalf("data dir %s: exit %d, want 1\n%s", how, code, out)
		}
		for _, want := range []string{`job "faults"`, `sink "sink" has committed output through checkpoint`, "holds no checkpoint of the job", "restore the data dir", "--allow-duplicate-output"} {
			if !strings.Contains(out, want) {
				t.Fatalf("data dir %s: the refusal does not say %q:\n%s", how, want, out)
			}
		}
		if after := outputFiles(t, dir); !maps.Equal(before, after) {
			t.Fatalf("data dir %s: a refused run changed the committed output (%d files -> %d)", how, len(before), len(after))
		}
	}
	// Accepting duplicates explicitly runs the job again.
	if code, out := runStreamd(t, bin, dir, "run", "--data-dir", "other-data", "--allow-duplicate-output", "job.yaml"); code != 0 {
		t.Fatalf("--allow-duplicate-output: exit %d\n%s", code, out)
	} else if !strings.Contains(out, "WARNING") {
		t.Fatalf("--allow-duplicate-output ran without a warning:\n%s", out)
	}
	if after := outputFiles(t, dir); len(after) <= len(before) {
		t.Fatalf("--allow-duplicate-output: no new output")
	}
}

// Two runs of the same job with different data dirs and one output
// directory: the second is refused while the first runs (one writer per
// directory), naming the holder, and the first finishes exactly once.
// Before, the second deleted the first's work in progress.
func TestSharedOutputDirRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), fmt.Appendf(nil, faultJob, 30000, ", rate: 20000"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := exec.Command(bin, "run", "--data-dir", "data1", "job.yaml")
	first.Dir = dir
	var out1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	code, out := runStreamd(t, bin, dir, "run", "--data-dir", "data2", "job.yaml")
	if code != 1 || !strings.Contains(out, "is in use by job \"faults\"") {
		t.Fatalf("second writer: exit %d, want 1 and a message naming the holder:\n%s", code, out)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v\n%s", err, out1.String())
	}
	var lines int
	for _, content := range outputFiles(t, dir) {
		lines += strings.Count(content, "\n")
	}
	if lines != 30000 {
		t.Fatalf("committed %d records, want 30000 (exactly once)", lines)
	}
}
