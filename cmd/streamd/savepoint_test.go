package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/jobrun"
	"github.com/streamd/streamd/snapshot"
)

const savepointJob = `name: saved
parallelism: 2
checkpointing: {interval: 10ms, retained: 1}
source: {type: sequence, count: %d, keys: %d, rate: 40000}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`

// TestRunFromSavepoint stops a job with a savepoint (through the engine,
// as the daemon does), inspects the savepoint offline, and finishes the
// job with streamd run --from-savepoint in a new data dir: the output of
// both runs is exactly once. A second run from the same savepoint into the
// same output is refused (it would duplicate what the first committed), as
// are a directory that is not a savepoint and a spec without checkpoints.
func TestRunFromSavepoint(t *testing.T) {
	const count, keys = 40_000, 100
	dir := t.TempDir()
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, fmt.Appendf(nil, savepointJob, count, keys), 0o644); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "savepoints", "sp1")

	// The first run, stopped with a savepoint once some output is
	// committed.
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	plan, err := loadPlan(spec)
	if err != nil {
		os.Chdir(wd)
		t.Fatal(err)
	}
	store, err := snapshot.Open(filepath.Join(dir, "data1"), snapshot.Options{Logger: t.Logf})
	if err != nil {
		os.Chdir(wd)
		t.Fatal(err)
	}
	built, err := jobrun.Build(plan, jobrun.Options{Store: store, Pinning: engine.PinOff, Logger: t.Logf})
	if err != nil {
		os.Chdir(wd)
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- built.Job.Run(context.Background()) }()
	for deadline := time.Now().Add(time.Minute); len(built.Job.CheckpointStats()) < 5; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoints within a minute")
		}
	}
	if err := built.Job.StopWithSavepoint(sp); err != nil {
		t.Fatal(err)
	}
	err = <-done
	store.Close()
	os.Chdir(wd)
	if err != nil {
		t.Fatal(err)
	}
	saved, ok := built.Job.LastSavepoint()
	if !ok || saved.Path != sp {
		t.Fatalf("LastSavepoint = %+v, %v", saved, ok)
	}
	if n := len(readOutput(t, filepath.Join(dir, "out"))); n == 0 || n >= count {
		t.Fatalf("the first run committed %d of %d records: the stop did not land mid-way", n, count)
	}

	// Offline: list and inspect read the savepoint and verify it.
	code, out, errOut := run(t, dir, "checkpoints", "list", "--savepoint", sp)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("savepoint %s: checkpoint %d of job saved", sp, saved.CheckpointID)) {
		t.Fatalf("checkpoints list --savepoint: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, dir, "checkpoints", "inspect", "--data-dir", sp)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("checkpoint %d of job saved", saved.CheckpointID)) || !strings.Contains(out, "verified: ") {
		t.Fatalf("checkpoints inspect of a savepoint dir: exit %d\n%s%s", code, out, errOut)
	}

	// Refused before anything runs.
	code, _, errOut = run(t, dir, "run", "--data-dir", "data2", "--from-savepoint", "data1", "--pin", "off", "job.yaml")
	if code != exitUsage || !strings.Contains(errOut, "is not a savepoint") {
		t.Fatalf("--from-savepoint of a data dir: exit %d, want %d\n%s", code, exitUsage, errOut)
	}
	plain := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(plain, []byte(strings.Replace(fmt.Sprintf(savepointJob, count, keys), "checkpointing: {interval: 10ms, retained: 1}\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, dir, "run", "--data-dir", "data2", "--from-savepoint", sp, "--pin", "off", "plain.yaml")
	if code != exitUsage || !strings.Contains(errOut, "needs checkpointing") {
		t.Fatalf("--from-savepoint without checkpointing: exit %d, want %d\n%s", code, exitUsage, errOut)
	}

	// The rest of the job, from the savepoint, into a new data dir.
	code, out, errOut = run(t, dir, "run", "--data-dir", "data2", "--from-savepoint", sp, "--pin", "off", "job.yaml")
	if code != 0 {
		t.Fatalf("run --from-savepoint: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "restoring from savepoint "+sp) {
		t.Fatalf("the run does not say it restored the savepoint:\n%s", errOut)
	}
	verifyExactlyOnce(t, readOutput(t, filepath.Join(dir, "out")), count, keys)

	// Again from the same savepoint: the output holds more than it, so the
	// run is refused instead of duplicating it.
	code, _, errOut = run(t, dir, "run", "--data-dir", "data3", "--from-savepoint", sp, "--pin", "off", "job.yaml")
	if code != exitFailure || !strings.Contains(errOut, "committed") {
		t.Fatalf("a second run from the same savepoint into the same output: exit %d, want %d\n%s", code, exitFailure, errOut)
	}
	verifyExactlyOnce(t, readOutput(t, filepath.Join(dir, "out")), count, keys)
}
