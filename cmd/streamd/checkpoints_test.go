package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// streamd checkpoints list|inspect read a data dir offline: list shows
// every completed checkpoint and the record beside them, inspect verifies
// every block of one; a corrupt block is exit 1 naming it.
func TestCheckpointsListInspect(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte(strings.ReplaceAll(`name: inspected
parallelism: 2
checkpointing: {interval: 10ms, retained: 3}
source: {type: sequence, count: 50000, keys: 100, rate: 100000}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: OUT}
`, "OUT", filepath.Join(dir, "out"))), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := mainErr(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, _, errOut := run("run", "--data-dir", data, "--pin", "off", spec); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, errOut)
	}
	code, out, errOut := run("checkpoints", "list", "--data-dir", data)
	if code != 0 || !strings.Contains(out, "job inspected: ") || !strings.Contains(out, "completed checkpoints; the record of completed checkpoints names") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("checkpoints", "inspect", "--data-dir", data, "inspected")
	if code != 0 || !strings.Contains(out, "stateful operators:") || !strings.Contains(out, "count-1") || !strings.Contains(out, "verified: ") {
		t.Fatalf("inspect: exit %d\n%s%s", code, out, errOut)
	}
	// The sequence source's tasks list their splits with their positions.
	for _, want := range []string{"[source] 0/2: source splits 1", "      split i%2==0 @ ", "[source] 1/2: source splits 1", "      split i%2==1 @ "} {
		if !strings.Contains(out, want) {
			t.Fatalf("inspect does not show %q:\n%s", want, out)
		}
	}
	newest, _ := corruptNewest(t, filepath.Join(data, "pebble"), "inspected", "blocks", committedThrough(t, filepath.Join(dir, "out"), "inspected"))
	code, out, errOut = run("checkpoints", "inspect", "--data-dir", data, "inspected")
	if code != 1 || !strings.Contains(errOut, "does not verify") || !strings.Contains(errOut, "checksum") {
		t.Fatalf("inspect of a corrupt checkpoint %d: exit %d, want 1 naming the damage\n%s%s", newest, code, out, errOut)
	}
	// A record that names a checkpoint the store lost.
	if err := os.RemoveAll(filepath.Join(data, "pebble")); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run("checkpoints", "list", "--data-dir", data, "inspected")
	if code != 1 || !strings.Contains(out, "LOST") {
		t.Fatalf("list with Pebble gone: exit %d, want 1 and LOST\n%s", code, out)
	}
	if code, _, _ := run("checkpoints", "frobnicate"); code != exitUsage {
		t.Fatalf("a bad subcommand: exit %d, want %d", code, exitUsage)
	}
}
