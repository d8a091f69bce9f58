// Package examples_test builds the example programs under examples/go and
// runs them end to end, as a user would: go build, then the binaries,
// stopped with SIGINT and killed with SIGKILL between reruns. It checks
// that their output is exactly once.
package examples_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin holds the example binaries, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "streamd-examples-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goCmd, "build", "-o", dir+string(filepath.Separator), "./checkpointed", "./custom")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "cannot build the examples: %v\n%s", err, out)
			return 1
		}
		bin = dir
		return m.Run()
	}())
}

// program is one run of an example binary.
type program struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr bytes.Buffer
	lines  chan string // stdout, line by line; closed at EOF
	stdout []string    // the lines read so far
}

func start(t *testing.T, name string, args ...string) *program {
	t.Helper()
	p := &program{t: t, cmd: exec.Command(filepath.Join(bin, name), args...), lines: make(chan string, 1024)}
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
	}()
	return p
}

// waitFor reads stdout until a line matches re.
func (p *program) waitFor(re string) {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s ended before printing a line matching %q:\n%s\nstderr:\n%s", p.cmd.Path, re, strings.Join(p.stdout, "\n"), p.stderr.String())
			}
			p.stdout = append(p.stdout, l)
			if rx.MatchString(l) {
				return
			}
		case <-timeout:
			p.t.Fatalf("no line matching %q after 10 s:\n%s", re, strings.Join(p.stdout, "\n"))
		}
	}
}

// wait reads the rest of stdout and waits for the program to exit; it
// returns the whole of stdout and the exit error.
func (p *program) wait() (string, error) {
	for l := range p.lines {
		p.stdout = append(p.stdout, l)
	}
	err := p.cmd.Wait()
	return strings.Join(p.stdout, "\n") + "\n", err
}

// run runs a program to its end and fails the test unless it exits 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	p := start(t, name, args...)
	out, err := p.wait()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, p.stderr.String())
	}
	return out
}

func mustMatch(t *testing.T, out, re string) []string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not match %q:\n%s", re, out)
	}
	return m
}

// TestCheckpointed stops the job with SIGINT, kills it with SIGKILL, runs
// it to the end, and then once more; the committed output holds every
// click once, and the counts of every user are 1..n exactly once.
func TestCheckpointed(t *testing.T) {
	t.Parallel()
	const count, users = 40_000, 10
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--out", outDir,
		"--count", fmt.Sprint(count), "--rate", fmt.Sprint(count / 2)} // 2 s of input

	// 1. SIGINT after two checkpoints: a graceful stop.
	p := start(t, "checkpointed", args...)
	p.waitFor(`^checkpoint 2 completed`)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	out, err := p.wait()
	if err != nil {
		t.Fatalf("stopped run: %v\n%s\nstderr:\n%s", err, out, p.stderr.String())
	}
	stoppedAt := mustMatch(t, out, `(?m)^stopped after checkpoint (\d+); rerun to resume$`)[1]

	// 2. Resumed, then SIGKILL after its next checkpoint: no final
	// checkpoint, uncommitted files left behind.
	p = start(t, "checkpointed", args...)
	p.waitFor(`^checkpoint \d+ completed`)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	out, err = p.wait()
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("killed run exited on its own (%v) before SIGKILL:\n%s", err, out)
	}

	// 3. Resumed again, to the end.
	out = run(t, "checkpointed", args...)
	restored := mustMatch(t, out, `(?m)^restored from checkpoint (\d+)$`)[1]
	if r, s := atoi(t, restored), atoi(t, stoppedAt); r <= s {
		t.Errorf("run 3 restored checkpoint %d, not later than run 1's %d: did run 2 complete none?", r, s)
	}
	mustMatch(t, out, `(?m)^finished at checkpoint \d+; output in `)

	files := committed(t, outDir)
	checkExactlyOnce(t, files, count, users)

	// 4. Once more: it restores the final checkpoint and writes nothing.
	out = run(t, "checkpointed", args...)
	mustMatch(t, out, `(?m)^restored from checkpoint \d+\nnothing to do: the job had already finished`)
	if again := committed(t, outDir); !equalFiles(files, again) {
		t.Errorf("the run of a finished job changed the output: %d files before, %d after", len(files), len(again))
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// committed reads the committed .jsonl files of a file sink's directory.
func committed(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string][]byte)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = b
	}
	return files
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for n, x := range a {
		if y, ok := b[n]; !ok || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

func checkExactlyOnce(t *testing.T, files map[string][]byte, count, users int) {
	t.Helper()
	seqs := make([]int, count)
	counts := make([][]int, users) // counts[user][c-1]: times count c was seen
	for u := range counts {
		counts[u] = make([]int, count/users)
	}
	for name, b := range files {
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var r struct{ Seq, User, Count int }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			if r.Seq < 0 || r.Seq >= count || r.User != r.Seq%users || r.Count < 1 || r.Count > count/users {
				t.Fatalf("%s: a record out of range: %q", name, line)
			}
			seqs[r.Seq]++
			counts[r.User][r.Count-1]++
		}
	}
	for i, n := range seqs {
		if n != 1 {
			t.Errorf("click %d committed %d times, want 1", i, n)
		}
	}
	for u := range counts {
		if i := slices.IndexFunc(counts[u], func(n int) bool { return n != 1 }); i >= 0 {
			t.Errorf("user %d: count %d committed %d times, want 1", u, i+1, counts[u][i])
		}
	}
}

// TestCustom runs the custom source and sink example: its ledger fails in
// the first attempt, the second recovers, and every word count reaches the
// ledger exactly once.
func TestCustom(t *testing.T) {
	t.Parallel()
	out := run(t, "custom")
	mustMatch(t, out, `(?m)^attempt 1: started afresh; failed: .*ledger: unavailable$`)
	mustMatch(t, out, `(?m)^attempt 2: restored from checkpoint \d+; finished$`)
	mustMatch(t, out, `(?m)^ledger: 42000 records committed, 0 duplicates; `)
	const want = `a      4000
and    2000
brown  2000
dog    6000
fox    4000
is     4000
jumps  2000
lazy   4000
over   2000
quick  4000
sleeps 2000
the    6000
`
	if !strings.HasSuffix(out, want) {
		t.Errorf("word counts: got\n%s\nwant them to end with\n%s", out, want)
	}
}
