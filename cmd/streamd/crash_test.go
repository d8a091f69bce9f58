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
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildStreamd builds the binary into the test's temporary directory,
// passing buildFlags to go build: none for the release binary,
// failpointsBuild for the crash tests.
func buildStreamd(t *testing.T, buildFlags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "streamd")
	cmd := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cannot build streamd: %v", err)
	}
	return bin
}

// failpointsBuild are the go build flags of a streamd whose failpoints
// exist (internal/failpoint): only the crash tests build it.
var failpointsBuild = []string{"-tags", "failpoints"}

// TestReleaseBuildHasNoFailpoints builds streamd as a release is built and
// checks that nothing of the failpoint mechanism is linked in: neither the
// environment variable's name nor the message of a firing point, and no
// function of internal/failpoint but empty ones. (The compiler inlines the
// empty Hit away except in generic code, such as the file sink's commit,
// where it calls a function that only returns.) The same checks on a
// -tags failpoints build must find the mechanism, so the test cannot pass
// by looking in the wrong place.
func TestReleaseBuildHasNoFailpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd twice")
	}
	const pkg = "github.com/streamd/streamd/internal/failpoint."
	traces := func(bin string) []string {
		t.Helper()
		var found []string
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"STREAMD_FAILPOINTS", "failpoint %s hit"} {
			if bytes.Contains(data, []byte(s)) {
				found = append(found, "string "+s)
			}
		}
		nm, err := exec.Command("go", "tool", "nm", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool nm %s: %v\n%s", bin, err, nm)
		}
		for _, line := range strings.Split(string(nm), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || !strings.HasPrefix(f[2], pkg) {
				continue
			}
			if f[1] != "T" && f[1] != "t" {
				found = append(found, "symbol "+f[2])
				continue
			}
			dis, err := exec.Command("go", "tool", "objdump", "-s", "^"+regexp.QuoteMeta(f[2])+"$", bin).CombinedOutput()
			if err != nil {
				t.Fatalf("go tool objdump %s: %v\n%s", bin, err, dis)
			}
			for _, ins := range strings.Split(string(dis), "\n") {
				if ins == "" || strings.HasPrefix(ins, "TEXT ") {
					continue
				}
				if op := strings.Fields(ins); op[len(op)-1] != "RET" {
					found = append(found, "code of "+f[2]+": "+strings.Join(strings.Fields(ins), " "))
				}
			}
		}
		return found
	}
	if found := traces(buildStreamd(t)); len(found) > 0 {
		t.Errorf("the release build of streamd holds failpoint code:\n%s", strings.Join(found, "\n"))
	}
	found := strings.Join(traces(buildStreamd(t, failpointsBuild...)), "\n")
	for _, want := range []string{"string STREAMD_FAILPOINTS", "string failpoint %s hit", "code of " + pkg + "Hit"} {
		if !strings.Contains(found, want) {
			t.Errorf("the -tags failpoints build of streamd lacks %q; found:\n%s", want, found)
		}
	}
}

const crashJob = `name: exactly-once
parallelism: 2
checkpointing: {interval: 50ms, mode: %s}
source: {type: sequence, count: %d, keys: 1000}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`

// failpoints aimed at by the crash test; each must be hit at least
// minHits times.
var failpoints = []struct {
	name string
	prob float64
}{
	{"snapshot-async", 0.01},            // between blocks of the asynchronous phase
	{"checkpoint-after-metadata", 0.15}, // metadata durable, sinks not yet told to commit
	{"sink-after-rename", 0.05},         // file renamed into out/, directory not yet fsynced
}

const (
	minKills = 20
	minHits  = 3
)

type crashRun struct {
	exit     int
	killedBy string // "timer", a failpoint's name, or ""
	stderr   string
}

func runOnce(t *testing.T, bin, dir string, fp string, killAfter time.Duration) crashRun {
	t.Helper()
	cmd := exec.Command(bin, "run", "--data-dir", "data", "--pin", "off", "job.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STREAMD_FAILPOINTS="+fp, fmt.Sprintf("STREAMD_FAILPOINTS_SEED=%d", rand.Uint64()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var timer *time.Timer
	timedOut := make(chan struct{})
	if killAfter > 0 {
		timer = time.AfterFunc(killAfter, func() {
			close(timedOut)
			_ = cmd.Process.Signal(syscall.SIGKILL)
		})
	}
	err := cmd.Wait()
	if timer != nil {
		timer.Stop()
	}
	r := crashRun{stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.exit = 0
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.exit = -9
			for _, f := range failpoints {
				if strings.Contains(r.stderr, "failpoint "+f.name+" hit") {
					r.killedBy = f.name
				}
			}
			if r.killedBy == "" {
				select {
				case <-timedOut:
					r.killedBy = "timer"
				default:
					r.killedBy = "unknown"
				}
			}
		}
	default:
		t.Fatal(err)
	}
	return r
}

type outRecord struct {
	Key   *int64 `json:"key"`
	Seq   *int64 `json:"seq"`
	Count *int64 `json:"count"`
}

// readOutput reads every committed record and checks the layout contract:
// only .jsonl files directly in out/, plus the dot-named work folder.
func readOutput(t *testing.T, out string) []outRecord {
	t.Helper()
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var recs []outRecord
	for _, e := range entries {
		if e.IsDir() {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Fatalf("output has a folder %q; only the dot-named work folder is allowed", e.Name())
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			t.Fatalf("output has a file %q that is not .jsonl", e.Name())
		}
		f, err := os.Open(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			var raw struct{ Key, Seq, Count json.Number }
			if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
				t.Fatalf("%s:%d: bad record %q: %v", e.Name(), line, sc.Text(), err)
			}
			var r outRecord
			for _, f := range []struct {
				name string
				num  json.Number
				dst  **int64
			}{{"key", raw.Key, &r.Key}, {"seq", raw.Seq, &r.Seq}, {"count", raw.Count, &r.Count}} {
				v, err := f.num.Int64()
				if f.num == "" || strings.ContainsAny(f.num.String(), ".eE") || err != nil {
					t.Fatalf("%s:%d: field %q missing or not a JSON integer: %q", e.Name(), line, f.name, sc.Text())
				}
				*f.dst = &v
			}
			recs = append(recs, r)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

func verifyExactlyOnce(t *testing.T, recs []outRecord, count, keys int64) {
	t.Helper()
	seqs := make([][]int64, keys)
	counts := make([][]int64, keys)
	for _, r := range recs {
		k := *r.Key
		if k < 0 || k >= keys {
			t.Fatalf("record with key %d outside [0, %d)", k, keys)
		}
		seqs[k] = append(seqs[k], *r.Seq)
		counts[k] = append(counts[k], *r.Count)
	}
	if int64(len(recs)) != count {
		t.Errorf("%d records committed, want exactly %d", len(recs), count)
	}
	for k := int64(0); k < keys; k++ {
		slices.Sort(seqs[k])
		slices.Sort(counts[k])
		for i, s := range seqs[k] {
			if want := k + int64(i)*keys; s != want {
				t.Fatalf("key %d: seq values are not exactly {i : i %% %d == %d}: position %d has %d, want %d", k, keys, k, i, s, want)
			}
		}
		if want := (count - k + keys - 1) / keys; int64(len(seqs[k])) != want {
			t.Fatalf("key %d: %d records, want %d", k, len(seqs[k]), want)
		}
		for i, c := range counts[k] {
			if c != int64(i+1) {
				t.Fatalf("key %d: count values are not exactly 1..%d each once: position %d has %d", k, len(counts[k]), i, c)
			}
		}
	}
}

func verifyAtLeastOnce(t *testing.T, recs []outRecord, count int64) {
	t.Helper()
	seen := make([]bool, count)
	for _, r := range recs {
		if *r.Seq < 0 || *r.Seq >= count {
			t.Fatalf("seq %d out of range", *r.Seq)
		}
		seen[*r.Seq] = true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("seq %d was lost", i)
		}
	}
}

// TestCrashRecovery kills streamd with SIGKILL at random moments and at
// failpoints, restarting it with the same data dir until it exits 0, and
// checks the committed output. When a job finishes before enough kills, a
// new round starts from scratch; every round is verified.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds streamd and kills it many times")
	}
	bin := buildStreamd(t, failpointsBuild...)
	for _, mode := range []string{"exactly_once", "at_least_once"} {
		t.Run(mode, func(t *testing.T) {
			crashRounds(t, bin, mode)
		})
	}
}

func crashRounds(t *testing.T, bin, mode string) {
	const count, keys = 2_000_000, 1000
	kills := 0
	hits := make(map[string]int)
	enough := func() bool {
		if kills < minKills {
			return false
		}
		if mode != "exactly_once" {
			return true
		}
		for _, f := range failpoints {
			if hits[f.name] < minHits {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(6 * time.Minute)
	for round := 1; !enough(); round++ {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: %d kills, failpoint hits %v", 6*time.Minute, kills, hits)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(fmt.Sprintf(crashJob, mode, count)), 0o644); err != nil {
			t.Fatal(err)
		}
		for attempt := 0; ; attempt++ {
			if attempt > 400 {
				t.Fatalf("round %d: job did not finish after %d restarts", round, attempt)
			}
			fp, killAfter := "", time.Duration(0)
			if !enough() {
				// Aim at a failpoint that still needs hits two times out of
				// three; otherwise kill at a random moment of the run (a
				// run takes about a second here, plus recovery).
				var need []int
				for i, f := range failpoints {
					if mode == "exactly_once" && hits[f.name] < minHits {
						need = append(need, i)
					}
				}
				if len(need) > 0 && rand.IntN(3) > 0 {
					f := failpoints[need[attempt%len(need)]]
					fp = fmt.Sprintf("%s=%g", f.name, f.prob)
					killAfter = 5 * time.Second // in case the failpoint never fires
				} else {
					killAfter = time.Duration(20+rand.IntN(800)) * time.Millisecond
				}
			}
			r := runOnce(t, bin, dir, fp, killAfter)
			switch r.exit {
			case 0:
			case -9:
				kills++
				hits[r.killedBy]++
				if kills%5 == 0 {
					// Streams with go test -v (make test runs this
					// package so): the crash tests run for minutes.
					t.Logf("progress: %s: %d kills so far (round %d), failpoint hits %v", mode, kills, round, hits)
				}
				continue
			default:
				t.Fatalf("round %d attempt %d: streamd exited %d:\n%s", round, attempt, r.exit, r.stderr)
			}
			break
		}
		recs := readOutput(t, filepath.Join(dir, "out"))
		if mode == "exactly_once" {
			verifyExactlyOnce(t, recs, count, keys)
		} else {
			verifyAtLeastOnce(t, recs, count)
		}
		t.Logf("%s round %d verified: %d records; %d kills so far, hits %v", mode, round, len(recs), kills, hits)
		// A finished job run again exits 0 and emits nothing.
		before := listDir(t, filepath.Join(dir, "out"))
		if r := runOnce(t, bin, dir, "", 0); r.exit != 0 {
			t.Fatalf("rerun of the finished job exited %d:\n%s", r.exit, r.stderr)
		}
		if after := listDir(t, filepath.Join(dir, "out")); !slices.Equal(before, after) {
			t.Fatalf("rerun of the finished job changed the output:\nbefore %v\nafter  %v", before, after)
		}
	}
}

// listDir returns "name size" for every committed file.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			out = append(out, fmt.Sprintf("%s %d", e.Name(), info.Size()))
		}
	}
	return out
}
