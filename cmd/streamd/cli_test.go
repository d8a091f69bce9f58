package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func run(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	code := mainErr(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestBadSpecExits2AndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	spec := `name: Bad_Name
parallelism: zero
source: {type: sequence, count: 10, keys: 0}
pipeline:
  - count: {}
  - map: {x: "nope + 1"}
sink: {type: file, path: out/, extra: 1}
checkpointing: {interval: 10ms, unaligned: true}
`
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, dir, "run", "--data-dir", "data", "job.yaml")
	if code != exitUsage {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	// Every mistake is reported with its line.
	for _, want := range []string{"job.yaml:1:", "job.yaml:2:", "job.yaml:3:", "job.yaml:7:", "job.yaml:8:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not report %q:\n%s", want, stderr)
		}
	}
	for _, p := range []string{"data", "out"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was created for a bad spec", p)
		}
	}
}

func TestBadCommandLineExits2(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{}, {"frobnicate"}, {"run"}, {"run", "a.yaml", "b.yaml"}, {"run", "--pin", "sideways", "a.yaml"}, {"run", "--bogus", "a.yaml"}} {
		if code, _, _ := run(t, dir, args...); code != exitUsage {
			t.Errorf("streamd %q exited %d, want 2", args, code)
		}
	}
	if code, _, stderr := run(t, dir, "run", "missing.yaml"); code != exitUsage || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing spec: exit %d, stderr %q", code, stderr)
	}
}

func TestRunExampleWithoutCheckpoints(t *testing.T) {
	dir := t.TempDir()
	spec := `name: small
parallelism: 2
source: {type: sequence, count: 3000, keys: 7}
pipeline:
  - filter: "seq % 3 != 0"
  - map: {double: "seq * 2"}
  - key_by: key
  - count: {}
  - sum: seq
sink: {type: file, path: out/}
`
	os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644)
	code, _, stderr := run(t, dir, "run", "job.yaml")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "streamd-data")); err == nil {
		t.Error("a job without checkpointing created the data dir")
	}
	var lines []string
	files, _ := filepath.Glob(filepath.Join(dir, "out", "*.jsonl"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines = append(lines, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	if len(lines) != 2000 {
		t.Fatalf("%d records, want 2000", len(lines))
	}
	if !strings.HasPrefix(lines[0], `{"key":`) || !strings.Contains(lines[0], `"double":`) || !strings.Contains(lines[0], `"count":`) || !strings.Contains(lines[0], `"sum":`) {
		t.Fatalf("record %q lacks fields", lines[0])
	}
}

func TestValidate(t *testing.T) {
	wd, _ := os.Getwd()
	code, stdout, stderr := run(t, ".", "validate", filepath.Join(wd, "..", "..", "examples", "counts.yaml"))
	if code != 0 || !strings.Contains(stdout, "keyed") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestSignals checks SIGTERM (final checkpoint, exit 0, resumable) and a
// second signal (exit 130 at once).
func TestSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	const count = 3_000_000
	// Rate-limited (3 s of input), so the signals always land mid-run.
	spec := strings.Replace(fmt.Sprintf(crashJob, "exactly_once", count), "keys: 1000}", "keys: 1000, rate: 1000000}", 1)
	if !strings.Contains(spec, "rate:") {
		t.Fatal("spec template changed")
	}
	os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644)
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "run", "--data-dir", "data", "--stats", "stats.json", "job.yaml")
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	// Graceful stop.
	cmd, out := start()
	time.Sleep(400 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "stopping job") {
		t.Fatalf("no stop message:\n%s", out)
	}
	if !regexp.MustCompile(`job "exactly-once" stopped after checkpoint [1-9][0-9]* in .*; rerun to resume`).MatchString(out.String()) || strings.Contains(out.String(), "finished") {
		t.Fatalf("a stopped job must say so, with its last checkpoint, not \"finished\":\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stats.json")); err != nil || !bytes.Contains(b, []byte(`"status": "completed"`)) {
		t.Fatalf("stats file: %v\n%s", err, b)
	}
	// Two signals at once: exit 130. (Two identical standard signals sent
	// together may merge into one, so send two different ones.)
	cmd, out = start()
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitSignal {
		t.Fatalf("after two signals: %v, want exit status %d\n%s", err, exitSignal, out)
	}
	// The next run resumes and finishes; the output is exactly once.
	cmd, out = start()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "restoring from checkpoint") {
		t.Fatalf("did not resume:\n%s", out)
	}
	verifyExactlyOnce(t, readOutput(t, filepath.Join(dir, "out")), count, 1000)
}

func TestIncompatibleSpecExits2(t *testing.T) {
	dir := t.TempDir()
	write := func(keyField string) {
		spec := fmt.Sprintf(`name: compat
parallelism: 2
checkpointing: {interval: 20ms}
source: {type: sequence, count: 5000, keys: 10}
pipeline:
  - map: {other: "seq %% 7"}
  - key_by: %s
  - count: {}
sink: {type: file, path: out/}
`, keyField)
		if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("key")
	if code, _, stderr := run(t, dir, "run", "--data-dir", "data", "job.yaml"); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "out", "*.jsonl"))
	write("other") // a different key: the state cannot be reused
	code, _, stderr := run(t, dir, "run", "--data-dir", "data", "job.yaml")
	if code != exitUsage || !strings.Contains(stderr, "incompatible") || !strings.Contains(stderr, "key=other") || !strings.Contains(stderr, "key=key") {
		t.Fatalf("exit %d, want 2 with what changed:\n%s", code, stderr)
	}
	if after, _ := filepath.Glob(filepath.Join(dir, "out", "*.jsonl")); len(after) != len(files) {
		t.Fatalf("the refused run changed the output: %d files, had %d", len(after), len(files))
	}
}
