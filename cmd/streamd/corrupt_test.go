package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

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
	for _, what := range []string{"metadata", "referenced-block"} {
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
		newest, previous := corruptNewest(t, filepath.Join(dir, "data", "pebble"), "corrupt", what)
		code, log := runStreamd(t, bin, dir, "run", "--data-dir", "data", "job.yaml")
		if code != 1 {
			t.Fatalf("after corrupting a %s byte of checkpoint %d: exit %d, want 1\n%s", what, newest, code, log)
		}
		for _, want := range []string{
			fmt.Sprintf("skipping corrupt checkpoint %d", newest),
			fmt.Sprintf("has committed output through checkpoint %d, but the newest usable checkpoint in the data dir is %d", newest, previous),
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

// corruptNewest flips one byte of the newest completed checkpoint's
// metadata ("metadata") or of one of the blocks it reads
// ("referenced-block": it may have written none and reuse them all), and
// returns its id and the newest completed id that
// does not read the damage.
func corruptNewest(t *testing.T, pebbleDir, job, what string) (newest, previous uint64) {
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
	newest, previous = ids[len(ids)-1], ids[len(ids)-2]
	key := binary.BigEndian.AppendUint64(append([]byte{}, prefix...), newest)
	if what == "referenced-block" {
		// A block the newest checkpoint reads, also when it wrote none (a
		// final checkpoint whose key groups did not change since the one
		// before reuses every block): the blocks of the newest checkpoint
		// that wrote any are still referenced by every later one, which
		// changed nothing.
		found := false
		for w := newest; w > 0 && !found; w-- {
			bprefix := binary.BigEndian.AppendUint64(append([]byte{'b'}, append([]byte(job), 0)...), w)
			bit, err := db.NewIter(&pebble.IterOptions{LowerBound: bprefix, UpperBound: binary.BigEndian.AppendUint64(append([]byte{'b'}, append([]byte(job), 0)...), w+1)})
			if err != nil {
				t.Fatal(err)
			}
			if bit.First() {
				key = append([]byte{}, bit.Key()...)
				found = true
			}
			bit.Close()
		}
		if !found {
			t.Fatalf("checkpoint %d wrote no blocks", newest)
		}
		// Every checkpoint from the writer of the damaged block on reads
		// it: the newest usable one is older than that writer.
		writer := binary.BigEndian.Uint64(key[len(prefix) : len(prefix)+8])
		previous = 0
		for _, id := range ids {
			if id < writer {
				previous = id
			}
		}
		if previous == 0 {
			t.Fatalf("no retained checkpoint older than %d, the writer of the damaged block: the test cannot test the fallback (ids %v)", writer, ids)
		}
	}
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
	return newest, previous
}
