package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// committedThrough reads the checkpoint through which the file sink in out
// committed job's output, from its commit marker.
func committedThrough(t *testing.T, out, job string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, ".streamd-inprogress", job+".committed"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(` through=(\d+) `).FindSubmatch(b)
	if m == nil {
		t.Fatalf("commit marker %q names no checkpoint", b)
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return n
}

// TestCorruptCheckpointFallsBack corrupts the newest checkpoint of a stopped
// job on disk — one byte of its metadata, or one byte of one of its
// blocks, rewritten through Pebble — and checks that the next run detects
// it and says so. The job was stopped with SIGTERM, so its sink committed
// the newest checkpoint's output: falling back to the previous checkpoint
// would emit that output again, so the run refuses (exit 1), names both
// checkpoints, and leaves the output as it was. (When the sink has not
// committed the corrupt checkpoint, recovery falls back and resumes:
// engine's TestRestoreFallsBackFromCorruptBlock.)
func TestCorruptCheckpointFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd")
	}
	bin := buildStreamd(t)
	spec := `name: corrupt
parallelism: 2
checkpointing: {interval: 20ms, retained: 3}
source: {type: sequence, keys: 1000, rate: 200000}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`
	for _, what := range []string{"metadata", "blocks"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--data-dir", "data", "job.yaml")
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		before := outputFiles(t, dir)
		// The sink committed output through `committed`: the newest
		// checkpoint, or the one before when the stop's final checkpoint
		// had nothing to commit (a checkpoint in flight covered the
		// source's last records). The damage reaches that checkpoint, so
		// falling back would emit committed output again.
		committed := committedThrough(t, filepath.Join(dir, "out"), "corrupt")
		newest, previous := corruptNewest(t, filepath.Join(dir, "data", "pebble"), "corrupt", what, committed)
		if previous >= committed {
			t.Fatalf("the damage leaves checkpoint %d usable, at or after the committed %d: the test does not test the refusal", previous, committed)
		}
		code, log := runStreamd(t, bin, dir, "run", "--data-dir", "data", "job.yaml")
		if code != 1 {
			t.Fatalf("after corrupting a %s byte of checkpoint %d: exit %d, want 1\n%s", what, newest, code, log)
		}
		for _, want := range []string{
			fmt.Sprintf("skipping corrupt checkpoint %d", newest),
			fmt.Sprintf("has committed output through checkpoint %d, but the newest usable checkpoint in the data dir is %d", committed, previous),
		} {
			if !strings.Contains(log, want) {
				t.Fatalf("after corrupting a %s byte of checkpoint %d the log lacks %q:\n%s", what, newest, want, log)
			}
		}
		if after := outputFiles(t, dir); len(after) != len(before) {
			t.Fatalf("a refused run changed the output: %d files -> %d", len(before), len(after))
		}
	}
}

// corruptNewest damages job's newest completed checkpoints in pebbleDir,
// flipping one byte of each: with "metadata", of the metadata of every
// checkpoint from `from` on (0: the newest alone); with "blocks", of every
// block written by a checkpoint from `from` on (0: the newest; a
// checkpoint may have written none and reuse them all). It returns the
// newest id and the newest one the damage leaves usable.
func corruptNewest(t *testing.T, pebbleDir, job, what string, from uint64) (newest, previous uint64) {
	t.Helper()
	db, err := pebble.Open(pebbleDir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prefix := append([]byte{'m'}, append([]byte(job), 0)...)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(append([]byte{}, prefix[:len(prefix)-1]...), 1)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for it.First(); it.Valid(); it.Next() {
		ids = append(ids, binary.BigEndian.Uint64(it.Key()[len(prefix):]))
	}
	it.Close()
	if len(ids) < 2 {
		t.Fatalf("want at least 2 completed checkpoints, have %v", ids)
	}
	newest = ids[len(ids)-1]
	flip := func(key []byte) {
		val, closer, err := db.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte{}, val...)
		closer.Close()
		bad[len(bad)/2] ^= 0x40
		if err := db.Set(key, bad, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// firstBad is the oldest checkpoint the damage makes unusable.
	firstBad := newest
	switch what {
	case "metadata":
		if from != 0 {
			firstBad = from
		}
		for _, id := range ids {
			if id >= firstBad {
				flip(binary.BigEndian.AppendUint64(append([]byte{}, prefix...), id))
			}
		}
	case "blocks":
		// Every block written by a checkpoint from `from` on. The newest
		// checkpoint reads one of them: for each key group the block of
		// the newest writer of that group, which is one of them whenever
		// one of them wrote it.
		bprefix := func(w uint64) []byte {
			return binary.BigEndian.AppendUint64(append([]byte{'b'}, append([]byte(job), 0)...), w)
		}
		if from == 0 {
			from = newest
		}
		firstBad = 0
		for w := newest; w >= from; w-- {
			bit, err := db.NewIter(&pebble.IterOptions{LowerBound: bprefix(w), UpperBound: bprefix(w + 1)})
			if err != nil {
				t.Fatal(err)
			}
			var keys [][]byte
			for bit.First(); bit.Valid(); bit.Next() {
				keys = append(keys, append([]byte{}, bit.Key()...))
			}
			bit.Close()
			for _, k := range keys {
				flip(k)
			}
			if len(keys) > 0 {
				firstBad = w
			}
		}
		if firstBad == 0 {
			t.Fatalf("checkpoints %d to %d wrote no blocks", from, newest)
		}
	default:
		t.Fatalf("corruptNewest: what %q", what)
	}
	for _, id := range ids {
		if id < firstBad {
			previous = id
		}
	}
	if previous == 0 {
		t.Fatalf("no retained checkpoint older than %d, the oldest the damage reaches: the test cannot test the fallback (ids %v)", firstBad, ids)
	}
	return newest, previous
}
