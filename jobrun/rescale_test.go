package jobrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/snapshot"
)

// rescaleSpec counts per key over SOURCE at parallelism PAR into the file
// sink at OUT.
const rescaleSpec = `name: rescaled
parallelism: PAR
checkpointing: {interval: 5ms}
source: SOURCE
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: OUT}
`

// runRescaled runs spec at parallelism par on the data dir: it stops the
// job after its stopAfter-th completed checkpoint, gracefully or (crash)
// by cancelling it, or runs it to the end when stopAfter is 0. It returns
// the checkpoint it restored from.
func runRescaled(t *testing.T, spec, data string, par, stopAfter int, crash bool) uint64 {
	t.Helper()
	store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	plan, err := job.Load("rescaled.yaml", []byte(strings.Replace(spec, "PAR", fmt.Sprint(par), 1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var completed atomic.Int64
	var b *Built
	b, err = Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {},
		OnCheckpoint: func(s engine.CheckpointStats) {
			if s.Status != "completed" || stopAfter == 0 || completed.Add(1) != int64(stopAfter) {
				return
			}
			if crash {
				cancel()
			} else {
				go b.Job.Stop()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Job.Run(ctx); err != nil && !(crash && errors.Is(err, context.Canceled)) {
		t.Fatalf("parallelism %d: %v", par, err)
	}
	return b.Job.RestoredFrom()
}

// countedRecord is one output record of rescaleSpec.
type countedRecord struct{ Key, Seq, Count int64 }

func readCounted(t *testing.T, dir string) []countedRecord {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []countedRecord
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var r countedRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", name, sc.Text(), err)
			}
			out = append(out, r)
		}
	}
	return out
}

// checkCounted checks exactly-once output: every seq in [0, n) once, with
// key seq % keys, and per key the counts 1..its number of records.
func checkCounted(t *testing.T, got []countedRecord, n, keys int64) {
	t.Helper()
	seen := make([]int, n)
	perKey := make(map[int64][]int64)
	for _, r := range got {
		if r.Seq < 0 || r.Seq >= n || r.Key != r.Seq%keys {
			t.Fatalf("unexpected record %+v", r)
		}
		seen[r.Seq]++
		perKey[r.Key] = append(perKey[r.Key], r.Count)
	}
	for seq, c := range seen {
		if c != 1 {
			t.Fatalf("seq %d is in the output %d times", seq, c)
		}
	}
	for k, counts := range perKey {
		slices.Sort(counts)
		for i, c := range counts {
			if c != int64(i+1) {
				t.Fatalf("key %d: counts are not 1..%d (position %d has %d)", k, len(counts), i, c)
			}
		}
	}
}

// A YAML job whose parallelism changes between runs on the same data dir
// (2, 3, 1, 4; one of the stops a crash) restores every time, sources
// included, and its file sink's output is exactly once with exact counts
// per key — for the sequence source and for the file source over several
// files.
func TestRescaleBetweenRuns(t *testing.T) {
	const keys = 17
	// The file source reads as fast as it can: enough lines that the
	// stops land mid-way.
	counts := map[string]int64{"sequence": 8000, "file": 300_000}
	stopAfter := map[string]int{"sequence": 3, "file": 1}
	sources := map[string]func(t *testing.T, dir string, n int64) string{
		"sequence": func(_ *testing.T, _ string, n int64) string {
			return fmt.Sprintf("{type: sequence, count: %d, keys: %d, rate: 20000}", n, keys)
		},
		"file": func(t *testing.T, dir string, n int64) string {
			in := filepath.Join(dir, "in")
			if err := os.Mkdir(in, 0o755); err != nil {
				t.Fatal(err)
			}
			// Seven files, seqs interleaved across them.
			var files [7]strings.Builder
			for seq := range int64(n) {
				fmt.Fprintf(&files[seq%7], "{\"key\": %d, \"seq\": %d}\n", seq%keys, seq)
			}
			for i := range files {
				if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("part-%d.jsonl", i)), []byte(files[i].String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return fmt.Sprintf("{type: file, path: %s, fields: {key: int, seq: int}}", in)
		},
	}
	for name, source := range sources {
		t.Run(name, func(t *testing.T) {
			n := counts[name]
			dir := t.TempDir()
			out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
			spec := strings.NewReplacer("SOURCE", source(t, dir, n), "OUT", out).Replace(rescaleSpec)
			steps := []struct {
				par, stopAfter int // stopAfter: 0 or 1, times the source's
				crash          bool
			}{{2, 1, false}, {3, 1, true}, {1, 1, false}, {4, 0, false}}
			for i, s := range steps {
				restored := runRescaled(t, spec, data, s.par, s.stopAfter*stopAfter[name], s.crash)
				if i > 0 && restored == 0 {
					t.Fatalf("run %d at parallelism %d restored nothing", i, s.par)
				}
				if got := len(readCounted(t, out)); s.stopAfter > 0 && int64(got) >= n {
					if name == "file" {
						// Unthrottled, it may read everything before the
						// first checkpoint; connectors/file's
						// TestFileSourceRescalesInAJob throttles it.
						t.Logf("run %d at parallelism %d committed all %d records before its stop", i, s.par, got)
						continue
					}
					t.Fatalf("run %d at parallelism %d committed all %d records before its stop: the test needs it stopped mid-way", i, s.par, got)
				}
			}
			checkCounted(t, readCounted(t, out), n, keys)
		})
	}
}
