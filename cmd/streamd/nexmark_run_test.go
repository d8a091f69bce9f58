package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestNexmarkQueriesSurviveSIGKILL runs every Nexmark query of the
// benchmark as a real process (`streamd nexmark run`), kills it with
// SIGKILL at random moments, restarts it until it finishes, and checks
// that its committed results equal, line for line, those of a run that
// was never interrupted. bench/nexmark's tests check the uninterrupted
// results against batch computations over the same events, so the killed
// runs equal those too: every window fires exactly once per key and
// window across the restores, every join pair appears once.
func TestNexmarkQueriesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every query as a process, killed several times: seconds each")
	}
	bin := buildStreamd(t)
	const kills = 3
	for _, c := range []struct {
		query  string
		events int64
	}{
		{"q0", 100_000}, {"q1", 100_000}, {"q2", 100_000},
		{"q3", 100_000}, {"q4", 100_000}, {"q5", 100_000}, {"q7", 100_000}, {"q8", 100_000},
	} {
		t.Run(c.query, func(t *testing.T) {
			dir := t.TempDir()
			// The reference: one uninterrupted run.
			ref := filepath.Join(dir, "ref")
			if r := nexmarkRun(t, bin, dir, c.query, c.events, ref, filepath.Join(dir, "ref-data"), 0); r.exit != 0 {
				t.Fatalf("uninterrupted run: exit %d\n%s", r.exit, r.stderr)
			}
			want := finalLines(c.query, committedLines(t, ref))
			if len(want) == 0 {
				t.Fatal("the uninterrupted run committed no results")
			}
			// Killed runs: the source is slowed so that each run is killed
			// in the middle, after a random share of the input.
			out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
			killed, runs := 0, 0
			for {
				runs++
				var killAfter time.Duration
				if killed < kills {
					killAfter = time.Duration(150+rand.IntN(400)) * time.Millisecond
				}
				r := nexmarkRun(t, bin, dir, c.query, c.events, out, data, killAfter)
				if r.exit == -9 {
					killed++
					continue
				}
				if r.exit != 0 {
					t.Fatalf("run %d: exit %d\n%s", runs, r.exit, r.stderr)
				}
				if killed < kills {
					t.Fatalf("run %d finished before it was killed (%d kills so far): slow the source down", runs, killed)
				}
				break
			}
			got := finalLines(c.query, committedLines(t, out))
			if !slices.Equal(got, want) {
				t.Fatalf("after %d SIGKILLs: %d result lines, want %d; first difference: %s", killed, len(got), len(want), firstDiff(got, want))
			}
			t.Logf("%s: %d results, identical after %d SIGKILLs", c.query, len(got), killed)
		})
	}
}

type nexmarkRunResult struct {
	exit   int // -9: killed
	stderr string
}

// nexmarkRun runs `streamd nexmark run` once; killAfter > 0 kills it with
// SIGKILL after that long (if it is still running). The runs into "out"
// (those that are killed) read their input in three seconds in all.
func nexmarkRun(t *testing.T, bin, dir, query string, events int64, out, data string, killAfter time.Duration) nexmarkRunResult {
	t.Helper()
	args := []string{"nexmark", "run", "--query", query, "--events", fmt.Sprint(events), "--out", out, "--data-dir", data,
		"--parallelism", "2", "--checkpoint-interval", "20ms"}
	if filepath.Base(out) == "out" {
		// Three seconds of input in all, so that each kill lands in it.
		args = append(args, "--rate", fmt.Sprint(events/3))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if killAfter > 0 {
		timer := time.AfterFunc(killAfter, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	r := nexmarkRunResult{stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.exit = -9
		}
	default:
		t.Fatal(err)
	}
	return r
}

// committedLines returns every line of the committed .jsonl files in dir,
// sorted (the order of results across tasks and files is not defined).
func committedLines(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(lines)
	return lines
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d: got %s, want %s", i, got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return "extra line " + got[len(want)]
	}
	if len(got) < len(want) {
		return "missing line " + want[len(got)]
	}
	return "none"
}

// finalLines keeps what a query's output determines whatever the order in
// which parallel tasks' records meet: everything, except for q4, which
// emits an updated average per category each time an auction closes (the
// updates depend on the order closed auctions from two tasks arrive in);
// of q4 it keeps each category's last update, the one with the most
// auctions (bench/nexmark's tests check every update against the batch).
func finalLines(query string, lines []string) []string {
	if query != "q4" {
		return lines
	}
	type row struct {
		Category, Avg, Auctions int64
	}
	last := map[int64]row{}
	for _, l := range lines {
		var r row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			panic(fmt.Sprintf("q4 result %q: %v", l, err))
		}
		if r.Auctions > last[r.Category].Auctions {
			last[r.Category] = r
		}
	}
	var out []string
	for _, r := range last {
		out = append(out, fmt.Sprintf("%+v", r))
	}
	slices.Sort(out)
	return out
}
