package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/internal/crashfs"
)

// rec is the record type of the sink tests. Its encoder is our own, so the
// tests see exactly the bytes the sink is given.
type rec struct {
	ID  int64
	Val int64
}

func encodeRec(dst []byte, r *rec) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, r.ID, 10)
	dst = append(dst, `,"v":`...)
	dst = strconv.AppendInt(dst, r.Val, 10)
	return append(dst, '}')
}

func recLine(r rec) string { return string(encodeRec(nil, &r)) }

// committedName is the contract of doc.go: JOB-TASK-RUN-SEQ.jsonl, RUN 64
// random bits in hex.
var committedName = regexp.MustCompile(`^(.+)-([0-9]+)-([0-9a-f]{16})-([0-9]+)\.jsonl$`)

func newTestSink(t *testing.T, dir, job string) *Sink[rec] {
	t.Helper()
	s, err := NewSink(job, SinkOptions[rec]{Dir: dir, Encode: encodeRec})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recoverOnce recovers job's sink in dir as a new run would, and closes
// it (releasing the directory's lock) as the run's end does.
func recoverOnce(t *testing.T, dir, job string, states [][]byte) error {
	t.Helper()
	s := newTestSink(t, dir, job)
	defer s.Close()
	return s.Recover(states)
}

func newTestWriter(t *testing.T, s *Sink[rec], index int, transactional bool) engine.SinkWriter[rec] {
	t.Helper()
	w, err := s.NewWriter(engine.SinkContext{
		Job: s.job, Operator: "sink", Index: index, Parallelism: index + 1, Transactional: transactional,
	})
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return w
}

func writeRecs(t *testing.T, w engine.SinkWriter[rec], from, to int64) {
	t.Helper()
	for i := from; i < to; i++ {
		r := rec{ID: i, Val: i * 10}
		if err := w.Write(&r); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
}

func wantLines(from, to int64) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, recLine(rec{ID: i, Val: i * 10}))
	}
	return out
}

// visible lists the entries of the sink's directory (what other programs
// see), sorted. The work folder is listed by name like any entry.
func visible(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// committed lists the committed files of the directory, sorted.
func committed(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for _, n := range visible(t, dir) {
		if n == TempDirName {
			continue
		}
		if !committedName.MatchString(n) {
			t.Fatalf("directory %s holds %q, which is neither the work folder nor a committed file", dir, n)
		}
		names = append(names, n)
	}
	return names
}

func inProgress(t *testing.T, dir string) []string {
	t.Helper()
	// The lock file and the jobs' commit markers live there for good.
	var names []string
	for _, n := range visible(t, filepath.Join(dir, TempDirName)) {
		if n != lockFileName && !strings.HasSuffix(n, markerSuffix) {
			names = append(names, n)
		}
	}
	return names
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty (a pre-commit with nothing written must create no file)", path)
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return strings.Split(string(b[:len(b)-1]), "\n")
}

// allLines reads every committed file of dir, in name order.
func allLines(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range committed(t, dir) {
		out = append(out, readLines(t, filepath.Join(dir, n))...)
	}
	return out
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %d lines %q…, want %d lines %q…", what, len(got), head(got), len(want), head(want))
	}
}

func head(s []string) []string { return s[:min(len(s), 4)] }

func pendingOf(t *testing.T, state []byte) []txn {
	t.Helper()
	st, err := decodeState(state)
	if err != nil {
		t.Fatalf("decodeState(%q): %v", state, err)
	}
	return st.Pending
}

func TestNewSinkOptions(t *testing.T) {
	f := func(opts SinkOptions[rec], want string) {
		t.Helper()
		_, err := NewSink("job", opts)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("NewSink(%+v): got %v, want an error containing %q", opts, err, want)
		}
	}
	f(SinkOptions[rec]{Encode: encodeRec}, "directory is empty")
	f(SinkOptions[rec]{Dir: t.TempDir()}, "Encode")
}

func TestSinkImplementsEngineInterfaces(t *testing.T) {
	s := newTestSink(t, t.TempDir(), "job")
	var _ engine.Sink[rec] = s
	w := newTestWriter(t, s, 0, true)
	defer w.Close()
	if _, ok := w.(engine.AsyncPreCommitter); !ok {
		t.Fatalf("the file sink writer does not implement engine.AsyncPreCommitter")
	}
}

func TestSinkPreCommitInvisibleCommitVisible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "nested") // created by the sink
	s := newTestSink(t, dir, "job")
	if err := s.Recover(nil); err != nil {
		t.Fatalf("Recover(nil): %v", err)
	}
	w := newTestWriter(t, s, 3, true)
	defer w.Close()

	writeRecs(t, w, 0, 100)
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("after Write the directory shows %q", got)
	}
	state, err := w.PreCommit(1)
	if err != nil {
		t.Fatalf("PreCommit: %v", err)
	}
	if got := visible(t, dir); !slices.Equal(got, []string{TempDirName}) {
		t.Fatalf("after PreCommit the directory holds %q, want only %s", got, TempDirName)
	}
	tmp := inProgress(t, dir)
	if len(tmp) != 1 || !strings.HasSuffix(tmp[0], tmpSuffix) {
		t.Fatalf("after PreCommit %s holds %q, want one %s file", TempDirName, tmp, tmpSuffix)
	}
	// Pre-committed data is durable and complete before the commit.
	equalLines(t, "pre-committed file", readLines(t, filepath.Join(dir, TempDirName, tmp[0])), wantLines(0, 100))
	p := pendingOf(t, state)
	if len(p) != 1 || p[0].Checkpoint != 1 || p[0].Name+tmpSuffix != tmp[0] {
		t.Fatalf("state lists %+v, want the one transaction %s of checkpoint 1", p, tmp[0])
	}

	if err := w.Commit(1); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	files := committed(t, dir)
	if len(files) != 1 || files[0] != p[0].Name+finalSuffix {
		t.Fatalf("after Commit the directory holds %q, want %s%s", files, p[0].Name, finalSuffix)
	}
	m := committedName.FindStringSubmatch(files[0])
	if m[1] != "job" || m[2] != "3" {
		t.Fatalf("committed name %q: want job %q and task 3", files[0], "job")
	}
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("after Commit %s still holds %q", TempDirName, got)
	}
	equalLines(t, "committed file", allLines(t, dir), wantLines(0, 100))

	// Idempotent.
	if err := w.Commit(1); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	equalLines(t, "after second Commit", allLines(t, dir), wantLines(0, 100))
}

func TestSinkPreCommitAsync(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, true)
	defer w.Close()
	ap := w.(engine.AsyncPreCommitter)

	// Nothing written: no transaction, no durable step.
	state, durable, err := ap.PreCommitAsync(1)
	if err != nil || state != nil || durable != nil {
		t.Fatalf("empty PreCommitAsync: got (%q, durable=%v, %v), want (nil, nil, nil)", state, durable != nil, err)
	}

	writeRecs(t, w, 0, 50)
	state, durable, err = ap.PreCommitAsync(2)
	if err != nil {
		t.Fatalf("PreCommitAsync: %v", err)
	}
	if durable == nil {
		t.Fatalf("PreCommitAsync of a written transaction returned no durable step")
	}
	if p := pendingOf(t, state); len(p) != 1 || p[0].Checkpoint != 2 {
		t.Fatalf("state lists %+v, want one transaction of checkpoint 2", p)
	}

	// The durable step runs on another goroutine while the task goes on
	// writing (the race detector checks that it does not touch the writer).
	var wg sync.WaitGroup
	var derr error
	wg.Go(func() { derr = durable.Run() })
	writeRecs(t, w, 50, 80)
	wg.Wait()
	if derr != nil {
		t.Fatalf("durable: %v", derr)
	}
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("before Commit the directory shows %q", got)
	}
	if got := inProgress(t, dir); len(got) != 2 {
		t.Fatalf("%s holds %q, want the sealed and the open transaction", TempDirName, got)
	}

	if err := w.Commit(2); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	equalLines(t, "after Commit(2)", allLines(t, dir), wantLines(0, 50))

	// The records written during the durable step form the next
	// transaction.
	state, durable, err = ap.PreCommitAsync(3)
	if err != nil || durable == nil {
		t.Fatalf("PreCommitAsync(3): durable=%v, %v", durable != nil, err)
	}
	if err := durable.Run(); err != nil {
		t.Fatalf("durable(3): %v", err)
	}
	if p := pendingOf(t, state); len(p) != 1 || p[0].Checkpoint != 3 {
		t.Fatalf("state lists %+v, want one transaction of checkpoint 3", p)
	}
	if err := w.Commit(3); err != nil {
		t.Fatalf("Commit(3): %v", err)
	}
	equalLines(t, "after Commit(3)", allLines(t, dir), wantLines(0, 80))
}

func TestSinkCommitOnlyUpToCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, true)
	defer w.Close()

	writeRecs(t, w, 0, 10)
	st1, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, 10, 20)
	st2, err := w.PreCommit(2)
	if err != nil {
		t.Fatal(err)
	}
	if p := pendingOf(t, st1); len(p) != 1 {
		t.Fatalf("state of checkpoint 1 lists %+v", p)
	}
	p2 := pendingOf(t, st2)
	if len(p2) != 2 || p2[0].Checkpoint != 1 || p2[1].Checkpoint != 2 || p2[0].Name == p2[1].Name {
		t.Fatalf("state of checkpoint 2 lists %+v, want the transactions of checkpoints 1 and 2", p2)
	}

	// Checkpoint 1 completes while 2 is in flight: only 1's file appears.
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "after Commit(1)", allLines(t, dir), wantLines(0, 10))
	if got := inProgress(t, dir); len(got) != 1 || got[0] != p2[1].Name+tmpSuffix {
		t.Fatalf("%s holds %q, want checkpoint 2's transaction", TempDirName, got)
	}

	// An empty pre-commit still lists what is pending.
	st3, err := w.PreCommit(3)
	if err != nil {
		t.Fatal(err)
	}
	if p := pendingOf(t, st3); len(p) != 1 || p[0] != p2[1] {
		t.Fatalf("state of checkpoint 3 lists %+v, want only %+v", p, p2[1])
	}

	// Commit(3) subsumes checkpoint 2, whose notification never came.
	writeRecs(t, w, 20, 30)
	st4, err := w.PreCommit(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(3); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "after Commit(3)", allLines(t, dir), wantLines(0, 20))
	if err := w.Commit(4); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "after Commit(4)", allLines(t, dir), wantLines(0, 30))
	if len(pendingOf(t, st4)) != 2 {
		t.Fatalf("state of checkpoint 4 lists %q, want checkpoints 2 and 4", st4)
	}
	// Nothing left: an empty pre-commit has no state.
	if st, err := w.PreCommit(5); err != nil || st != nil {
		t.Fatalf("PreCommit(5) with nothing pending: got (%q, %v), want (nil, nil)", st, err)
	}
	if err := w.Commit(4); err != nil {
		t.Fatalf("repeated Commit(4): %v", err)
	}
	equalLines(t, "after repeated Commit(4)", allLines(t, dir), wantLines(0, 30))
}

func TestSinkEmptyPreCommitCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, true)
	for id := uint64(1); id <= 3; id++ {
		st, err := w.PreCommit(id)
		if err != nil || st != nil {
			t.Fatalf("PreCommit(%d) with nothing written: got (%q, %v), want (nil, nil)", id, st, err)
		}
		if err := w.Commit(id); err != nil {
			t.Fatalf("Commit(%d): %v", id, err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := visible(t, dir); !slices.Equal(got, []string{TempDirName}) {
		t.Fatalf("directory holds %q", got)
	}
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("%s holds %q", TempDirName, got)
	}
}

// Names never repeat: not across transactions, writers, tasks, nor restarts
// of the same task (each restart is a new Sink, as in a new process).
func TestSinkNamesNeverRepeat(t *testing.T) {
	dir := t.TempDir()
	var want []string
	next := int64(0)
	for restart := 0; restart < 3; restart++ {
		s := newTestSink(t, dir, "job")
		if err := s.Recover(nil); err != nil {
			t.Fatalf("Recover: %v", err)
		}
		// Two writers of the same task index (as after a failover) and
		// one of another.
		for _, idx := range []int{0, 0, 1} {
			w := newTestWriter(t, s, idx, true)
			for id := uint64(1); id <= 3; id++ {
				writeRecs(t, w, next, next+5)
				want = append(want, wantLines(next, next+5)...)
				next += 5
				if _, err := w.PreCommit(id); err != nil {
					t.Fatal(err)
				}
				if err := w.Commit(id); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	files := committed(t, dir)
	if len(files) != 3*3*3 {
		t.Fatalf("got %d committed files, want %d (a name was reused): %q", len(files), 27, files)
	}
	got := allLines(t, dir)
	slices.Sort(got)
	slices.Sort(want)
	equalLines(t, "all committed records", got, want)
}

// crashedRun leaves the state a crash leaves: a writer pre-committed
// checkpoints 1 and 2 (their states are returned), committed nothing, wrote
// more into an open transaction and was abandoned.
func crashedRun(t *testing.T, dir, job string, index int) (st1, st2 []byte) {
	t.Helper()
	s := newTestSink(t, dir, job)
	w := newTestWriter(t, s, index, true)
	writeRecs(t, w, 0, 10)
	st1, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, 10, 20)
	st2, err = w.PreCommit(2)
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, 20, 30)           // the open transaction: a stray after the crash
	if err := w.Close(); err != nil { // releases the file; commits nothing
		t.Fatal(err)
	}
	s.Close() // the crashed process's lock is gone with it
	return st1, st2
}

func TestSinkRecoverCommitsPending(t *testing.T) {
	dir := t.TempDir()
	_, st2 := crashedRun(t, dir, "job", 0)
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("after the crash the directory shows %q", got)
	}
	if got := inProgress(t, dir); len(got) != 3 {
		t.Fatalf("after the crash %s holds %q, want 3 temporary files", TempDirName, got)
	}

	// The job restores checkpoint 2.
	for attempt := 0; attempt < 2; attempt++ { // Recover is idempotent
		s := newTestSink(t, dir, "job")
		if err := s.Recover([][]byte{st2}); err != nil {
			t.Fatalf("Recover attempt %d: %v", attempt, err)
		}
		s.Close()
		equalLines(t, fmt.Sprintf("after Recover attempt %d", attempt), allLines(t, dir), wantLines(0, 20))
		if got := inProgress(t, dir); len(got) != 0 {
			t.Fatalf("after Recover %s still holds %q (the stray was not deleted)", TempDirName, got)
		}
		if got := len(committed(t, dir)); got != 2 {
			t.Fatalf("after Recover attempt %d: %d committed files, want 2", attempt, got)
		}
	}
}

// The job restores an older checkpoint than the last pre-commit: that
// pre-commit's transaction belongs to an incomplete checkpoint and is
// aborted (its records are replayed from the source).
func TestSinkRecoverAbortsLaterTransactions(t *testing.T) {
	dir := t.TempDir()
	st1, _ := crashedRun(t, dir, "job", 0)
	s := newTestSink(t, dir, "job")
	if err := s.Recover([][]byte{st1}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	equalLines(t, "after Recover of checkpoint 1", allLines(t, dir), wantLines(0, 10))
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("after Recover %s still holds %q", TempDirName, got)
	}
}

// A crash after Commit renamed the file: Recover of the same checkpoint
// finds the file committed and neither fails nor duplicates it.
func TestSinkRecoverAfterCommit(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, true)
	writeRecs(t, w, 0, 10)
	st1, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s.Close() // the run ends
	for attempt := 0; attempt < 2; attempt++ {
		if err := recoverOnce(t, dir, "job", [][]byte{st1}); err != nil {
			t.Fatalf("Recover attempt %d: %v", attempt, err)
		}
		equalLines(t, "after Recover", allLines(t, dir), wantLines(0, 10))
	}
}

// Every task's state is handed to Recover; all their transactions commit.
func TestSinkRecoverSeveralTasks(t *testing.T) {
	dir := t.TempDir()
	var states [][]byte
	for idx := 0; idx < 3; idx++ {
		_, st2 := crashedRun(t, dir, "job", idx)
		states = append(states, st2)
	}
	if err := recoverOnce(t, dir, "job", states); err != nil {
		t.Fatal(err)
	}
	if got := len(committed(t, dir)); got != 6 {
		t.Fatalf("%d committed files, want 6", got)
	}
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("%s still holds %q", TempDirName, got)
	}
	for idx := 0; idx < 3; idx++ {
		var lines []string
		for _, n := range committed(t, dir) {
			if committedName.FindStringSubmatch(n)[2] == strconv.Itoa(idx) {
				lines = append(lines, readLines(t, filepath.Join(dir, n))...)
			}
		}
		equalLines(t, fmt.Sprintf("task %d", idx), lines, wantLines(0, 20))
	}
}

// Jobs may share a directory: recovering one job leaves the others'
// temporary files alone, even when one job's name is a prefix of another's.
func TestSinkRecoverLeavesOtherJobsAlone(t *testing.T) {
	dir := t.TempDir()
	crashedRun(t, dir, "a", 0)
	crashedRun(t, dir, "a-b", 0)
	crashedRun(t, dir, "b", 0)
	other := filepath.Join(dir, TempDirName, "a-notes.txt")
	if err := os.WriteFile(other, []byte("not ours\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := inProgress(t, dir)

	if err := recoverOnce(t, dir, "a", nil); err != nil {
		t.Fatal(err)
	}
	after := inProgress(t, dir)
	var want []string
	for _, n := range before {
		if strings.HasPrefix(n, "a-0-") { // job "a", task 0
			continue
		}
		want = append(want, n)
	}
	if !slices.Equal(after, want) {
		t.Fatalf("Recover of job a: %s holds %q, want %q", TempDirName, after, want)
	}
	if len(want) != 3*2+1 {
		t.Fatalf("test setup: %q", before)
	}

	// A job whose name holds a dash recovers its own strays.
	if err := recoverOnce(t, dir, "a-b", nil); err != nil {
		t.Fatal(err)
	}
	after = inProgress(t, dir)
	want = slices.DeleteFunc(want, func(n string) bool { return strings.HasPrefix(n, "a-b-0-") })
	if !slices.Equal(after, want) {
		t.Fatalf("Recover of job a-b: %s holds %q, want %q", TempDirName, after, want)
	}
}

func TestSinkOwnsTemp(t *testing.T) {
	s := newTestSink(t, t.TempDir(), "a")
	f := func(name string, want bool) {
		t.Helper()
		if got := s.ownsTemp(name); got != want {
			t.Fatalf("job a owns %q: got %v, want %v", name, got, want)
		}
	}
	f("a-0-0123456789abcdef-000001.jsonl.tmp", true)
	f("a-12-ffffffffffffffff-1234567.jsonl.tmp", true)
	f("a-b-0-0123456789abcdef-000001.jsonl.tmp", false) // job "a-b"
	f("a-0-0123456789abcdef-000001.jsonl", false)
	f("a-0-0123456789abcdef-000001.jsonl.tmp.bak", false)
	f("a-0-0123456789ABCDEF-000001.jsonl.tmp", false)
	f("a-0-0123456789abcde-000001.jsonl.tmp", false)
	f("a-x-0123456789abcdef-000001.jsonl.tmp", false)
	f("a--0123456789abcdef-000001.jsonl.tmp", false)
	f("a-0-0123456789abcdef-.jsonl.tmp", false)
	f("ab-0-0123456789abcdef-000001.jsonl.tmp", false)
	f("a-notes.txt", false)
}

// Files are named after the sink's job, the name Recover looks for, even
// if a writer's context names another.
func TestSinkNamesFollowSinkJob(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w, err := s.NewWriter(engine.SinkContext{Job: "other", Index: 0, Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, 0, 3)
	w.Close()
	s.Close()
	tmp := inProgress(t, dir)
	if len(tmp) != 1 || !strings.HasPrefix(tmp[0], "job-0-") {
		t.Fatalf("%s holds %q, want one file of job %q", TempDirName, tmp, "job")
	}
	if err := recoverOnce(t, dir, "job", nil); err != nil {
		t.Fatal(err)
	}
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("Recover left the stray %q", got)
	}
}

func TestSinkRecoverErrors(t *testing.T) {
	f := func(state, want string) {
		t.Helper()
		dir := t.TempDir()
		err := recoverOnce(t, dir, "job", [][]byte{[]byte(state)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Recover(%q): got %v, want an error containing %q", state, err, want)
		}
		if got := committed(t, dir); len(got) != 0 {
			t.Fatalf("Recover(%q) committed %q", state, got)
		}
	}
	f(`{`, "cannot decode sink state")
	f(`not json`, "cannot decode sink state")
	f(`{"pending":[{"checkpoint":"one","name":"x"}]}`, "cannot decode sink state")
	f(`{"pending":[{"checkpoint":1,"name":"../escape"}]}`, "invalid file")
	f(`{"pending":[{"checkpoint":1,"name":"a/b"}]}`, "invalid file")
	f(`{"pending":[{"checkpoint":1,"name":""}]}`, "invalid file")
	f(`{"pending":[{"checkpoint":1,"name":".."}]}`, "invalid file")
	f(`{"pending":[{"checkpoint":1,"name":".streamd-inprogress"}]}`, "invalid file")
	f("{\"pending\":[{\"checkpoint\":1,\"name\":\"a\\u0000b\"}]}", "invalid file")
	// Well formed, but the data is gone: neither the temporary file nor
	// the committed file exists.
	f(`{"pending":[{"checkpoint":1,"name":"job-0-0123456789abcdef-000001"}]}`, "neither the temporary file nor the committed file exists")
}

// A corrupt state of one task fails Recover before anything is deleted.
func TestSinkRecoverCorruptStateKeepsTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	crashedRun(t, dir, "job", 0)
	before := inProgress(t, dir)
	if err := recoverOnce(t, dir, "job", [][]byte{[]byte("{")}); err == nil {
		t.Fatalf("Recover of a corrupt state succeeded")
	}
	if after := inProgress(t, dir); !slices.Equal(after, before) {
		t.Fatalf("a failed Recover changed %s: %q, was %q", TempDirName, after, before)
	}
}

func TestSinkFinishCommits(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, false)
	writeRecs(t, w, 0, 1000)
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("before Finish the directory shows %q", got)
	}
	if err := w.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	equalLines(t, "after Finish", allLines(t, dir), wantLines(0, 1000))
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("after Finish %s holds %q", TempDirName, got)
	}
}

// Without checkpoints a crash (Close without Finish) leaves only a
// temporary file, which the next run deletes.
func TestSinkNonTransactionalCrashLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, false)
	writeRecs(t, w, 0, 10)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close() // the crashed process's lock is gone with it
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("after a crash the directory shows %q", got)
	}
	if err := recoverOnce(t, dir, "job", nil); err != nil {
		t.Fatal(err)
	}
	if got := inProgress(t, dir); len(got) != 0 {
		t.Fatalf("after Recover %s holds %q", TempDirName, got)
	}
}

func TestSinkDirCannotBeCreated(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "regular-file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(blocker, "out")
	s := newTestSink(t, dir, "job") // NewSink does not touch the disk
	_, err := s.NewWriter(engine.SinkContext{Job: "job", Parallelism: 1, Transactional: true})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("NewWriter in %s: got %v, want an error naming the path", dir, err)
	}
	if err := s.Recover(nil); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Recover in %s: got %v, want an error naming the path", dir, err)
	}
}

// The sink writes the encoder's bytes unchanged: integers beyond 2^53 stay
// exact integers.
func TestSinkIntegersStayIntegers(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, false)
	vals := []int64{0, -1, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64, 9007199254740993}
	for i, v := range vals {
		r := rec{ID: int64(i), Val: v}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	lines := allLines(t, dir)
	if len(lines) != len(vals) {
		t.Fatalf("got %d lines, want %d", len(lines), len(vals))
	}
	for i, line := range lines {
		if want := recLine(rec{ID: int64(i), Val: vals[i]}); line != want {
			t.Fatalf("line %d: got %s, want %s", i, line, want)
		}
		d := json.NewDecoder(strings.NewReader(line))
		d.UseNumber()
		var m map[string]json.Number
		if err := d.Decode(&m); err != nil {
			t.Fatalf("line %d %s: %v", i, line, err)
		}
		got, err := m["v"].Int64()
		if err != nil || got != vals[i] {
			t.Fatalf("line %d: v decodes to %v (%v), want %d", i, m["v"], err, vals[i])
		}
	}
}

// Records larger than the write buffer and many small buffers' worth of
// records arrive whole.
func TestSinkSmallBuffer(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 1000)
	s, err := NewSink("job", SinkOptions[string]{Dir: dir, BufferBytes: 16,
		Encode: func(dst []byte, v *string) []byte { return append(dst, *v...) }})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(engine.SinkContext{Job: "job", Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 50; i++ {
		v := strconv.Itoa(i)
		if i%7 == 0 {
			v += big
		}
		want = append(want, v)
		if err := w.Write(&v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.PreCommit(1); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "small buffer", allLines(t, dir), want)
}

// A write error sticks: every later call returns it.
func TestSinkStickyError(t *testing.T) {
	dir := t.TempDir()
	s, err := NewSink("job", SinkOptions[rec]{Dir: dir, Encode: encodeRec, BufferBytes: 16})
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, s, 0, true)
	writeRecs(t, w, 0, 1)
	// Pull the file out from under the writer, as a failing disk would.
	iw := w.(*writer[rec])
	iw.f.Close()
	var first error
	for i := int64(1); i < 10 && first == nil; i++ {
		first = w.Write(&rec{ID: i})
	}
	if first == nil {
		t.Fatalf("Write to a closed file succeeded")
	}
	if err := w.Write(&rec{}); !errors.Is(err, first) && err != first {
		t.Fatalf("Write after an error: got %v, want the first error %v", err, first)
	}
	if _, err := w.PreCommit(1); err != first {
		t.Fatalf("PreCommit after an error: got %v, want %v", err, first)
	}
	if err := w.Finish(); err != first {
		t.Fatalf("Finish after an error: got %v, want %v", err, first)
	}
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("a failed writer committed %q", got)
	}
}

func TestDecodeStateRoundTrip(t *testing.T) {
	in := sinkState{Pending: []txn{{Checkpoint: 7, Name: "job-0-0123456789abcdef-000001"}, {Checkpoint: math.MaxUint64, Name: "j-1-ffffffffffffffff-999999"}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in.Pending, out.Pending) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

// FuzzDecodeSinkState checks that the state decoder never panics and never
// accepts a name that could leave the work folder.
func FuzzDecodeSinkState(f *testing.F) {
	f.Add([]byte(`{"pending":[{"checkpoint":1,"name":"job-0-0123456789abcdef-000001"}]}`))
	f.Add([]byte(`{"pending":[{"checkpoint":1,"name":"../x"}]}`))
	f.Add([]byte(`{"pending":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		for _, p := range st.Pending {
			if p.Name == "" || strings.ContainsAny(p.Name, "/\\\x00") || strings.HasPrefix(p.Name, ".") ||
				filepath.Base(p.Name) != p.Name {
				t.Fatalf("decodeState accepted the name %q", p.Name)
			}
		}
	})
}

// PreCommitAsync that fails hands nothing over (engine.AsyncPreCommitter):
// no state, no durable step, and the error sticks. Defect 2 of issue 10:
// it used to return the durable step (which owns the sealed file) together
// with an error, and the engine dropped both, leaking the file.
func TestSinkPreCommitAsyncErrorHandsNothingOver(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	w := newTestWriter(t, s, 0, true)
	ap := w.(engine.AsyncPreCommitter)
	writeRecs(t, w, 0, 10) // buffered, not yet written
	iw := w.(*writer[rec])
	iw.f.Close() // the flush at the barrier fails, as on a failing disk
	state, step, err := ap.PreCommitAsync(1)
	if err == nil || state != nil || step != nil {
		t.Fatalf("PreCommitAsync on a broken file: got (%q, step=%v, %v), want (nil, nil, error)", state, step != nil, err)
	}
	if _, step2, err2 := ap.PreCommitAsync(2); err2 != err || step2 != nil {
		t.Fatalf("second PreCommitAsync: got (step=%v, %v), want the sticky error %v", step2 != nil, err2, err)
	}
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("a failed writer committed %q", got)
	}
	_ = w.Close()
}

// memLines reads the committed lines of dir on fs, sorted.
func memLines(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if !strings.HasSuffix(n, finalSuffix) {
			continue
		}
		f, err := fs.Open(fs.PathJoin(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	slices.Sort(out)
	return out
}

// Every file operation goes through SinkOptions.FS: a power loss (a crash
// clone of Pebble's crashable in-memory FS, keeping only what was synced)
// after the pre-commit keeps the transaction, which recovery commits; the
// directories the sink created survive, because their parents were
// fsynced (before that, the work folder and the pre-committed file in it
// were lost with the unsynced entry of the new directory).
func TestSinkPowerLossAfterPreCommit(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, err := NewSink("j", SinkOptions[rec]{Dir: "/a/out", Encode: encodeRec, FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, s, 0, true)
	writeRecs(t, w, 0, 10)
	st, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, 10, 20) // not pre-committed: lost or aborted
	if _, err := w.PreCommit(2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, p := range []int{0, 50, 100} {
		clone := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: p, RNG: rand.New(rand.NewPCG(1, uint64(p)))})
		s2, err := NewSink("j", SinkOptions[rec]{Dir: "/a/out", Encode: encodeRec, FS: clone})
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Recover([][]byte{st}); err != nil {
			t.Fatalf("unsynced %d%%: Recover: %v", p, err)
		}
		equalLines(t, fmt.Sprintf("unsynced %d%%", p), memLines(t, clone, "/a/out"), wantLines(0, 10))
		left, _ := clone.List(s2.tmpDir())
		left = slices.DeleteFunc(left, func(n string) bool { return n == lockFileName || strings.HasSuffix(n, markerSuffix) })
		if len(left) != 0 {
			t.Fatalf("unsynced %d%%: work folder holds %v after recovery", p, left)
		}
	}
}

// A committed rename survives a power loss only with the directory's
// fsync; recovery commits again what the checkpoint lists.
func TestSinkPowerLossAfterCommit(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, err := NewSink("j", SinkOptions[rec]{Dir: "/out", Encode: encodeRec, FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, s, 0, true)
	writeRecs(t, w, 0, 5)
	st, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{})
	equalLines(t, "after the crash", memLines(t, clone, "/out"), wantLines(0, 5))
	s2, err := NewSink("j", SinkOptions[rec]{Dir: "/out", Encode: encodeRec, FS: clone})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Recover([][]byte{st}); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "after recovery", memLines(t, clone, "/out"), wantLines(0, 5))
}

// A temporary file never replaces an existing one (vfs.FS.Create would:
// the sink checks first, in place of os.O_EXCL).
func TestSinkNeverOverwritesATemporaryFile(t *testing.T) {
	mem := vfs.NewMem()
	s, err := NewSink("j", SinkOptions[rec]{Dir: "/out", Encode: encodeRec, FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	wi, err := s.NewWriter(engine.SinkContext{Job: "j", Index: 0, Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	w := wi.(*writer[rec])
	name := fmt.Sprintf("j-0-%s-%06d", w.run, 1)
	f, err := mem.Create(mem.PathJoin(s.tmpDir(), name+tmpSuffix), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("someone else's\n"))
	f.Close()
	r := rec{ID: 1}
	if err := w.Write(&r); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Write over an existing temporary file: got %v, want an error saying it already exists", err)
	}
}

// After a directory's fsync failed, no writer of the sink fsyncs it again:
// every later commit into it fails with the first error.
func TestSinkNeverRetriesAFailedDirectoryFsync(t *testing.T) {
	var fail atomic.Bool
	cfs := crashfs.New(vfs.NewCrashableMem(), func(op crashfs.Op) error {
		if op.Kind == crashfs.SyncDir && op.Path == "/out" && fail.Load() {
			return &crashfs.InjectedError{Op: op, Err: syscall.EIO}
		}
		return nil
	})
	s, err := NewSink("j", SinkOptions[rec]{Dir: "/out", Encode: encodeRec, FS: cfs})
	if err != nil {
		t.Fatal(err)
	}
	w0, w1 := newTestWriter(t, s, 0, true), newTestWriter(t, s, 1, true)
	writeRecs(t, w0, 0, 3)
	writeRecs(t, w1, 3, 6)
	for _, w := range []engine.SinkWriter[rec]{w0, w1} {
		if _, err := w.PreCommit(1); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	if err := w0.Commit(1); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit with a failing fsync: got %v, want EIO", err)
	}
	fail.Store(false)
	if err := w1.Commit(1); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "not fsynced again") {
		t.Fatalf("the other task's Commit after the failed fsync: got %v, want the first failure, not a new fsync", err)
	}
	if v := cfs.Violations(); len(v) != 0 {
		t.Fatalf("a failed fsync was retried: %v", v)
	}
}

// The sink knows what it committed (marker.go): LastCommitted is the
// highest checkpoint of a committed transaction, from the directory alone,
// also after a restart; Recover records the transactions it re-commits.
func TestSinkCommitMarker(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	if got, err := s.LastCommitted(); err != nil || got != 0 {
		t.Fatalf("fresh directory: LastCommitted = %d, %v; want 0", got, err)
	}
	w := newTestWriter(t, s, 0, true)
	writeRecs(t, w, 0, 5)
	if _, err := w.PreCommit(1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.PreCommit(2); err != nil { // nothing written: no transaction
		t.Fatal(err)
	}
	writeRecs(t, w, 5, 10)
	st3, err := w.PreCommit(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LastCommitted(); got != 1 {
		t.Fatalf("after Commit(2) of the transaction of checkpoint 1: LastCommitted = %d, want 1", got)
	}
	w.Close()
	s.Close()
	// A restart recovers checkpoint 3, which lists the transaction of 3.
	s2 := newTestSink(t, dir, "job")
	if got, _ := s2.LastCommitted(); got != 1 {
		t.Fatalf("after a restart: LastCommitted = %d, want 1", got)
	}
	if err := s2.Recover([][]byte{st3}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.LastCommitted(); got != 3 {
		t.Fatalf("after Recover of checkpoint 3: LastCommitted = %d, want 3", got)
	}
	s2.Close()
	// Another job's marker is its own.
	if got, err := newTestSink(t, dir, "other").LastCommitted(); err != nil || got != 0 {
		t.Fatalf("job other: LastCommitted = %d, %v; want 0", got, err)
	}
}

// A damaged marker is an error that says so: recovery must not guess.
func TestSinkCommitMarkerDamaged(t *testing.T) {
	dir := t.TempDir()
	s := newTestSink(t, dir, "job")
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.recordCommit(7); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TempDirName, "job"+markerSuffix)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, bad := range [][]byte{
		b[:len(b)/2],
		bytes.Replace(b, []byte("through=7"), []byte("through=9"), 1),
		{},
	} {
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := s.LastCommitted(); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("case %d: LastCommitted = %d, %v; want an error saying the marker is damaged", i, got, err)
		}
	}
}

// One writer per output directory: a second job (or a second run of the
// same job) is refused, naming the holder, and touches nothing; after the
// first closes, the directory is free.
func TestSinkDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	a := newTestSink(t, dir, "a")
	w := newTestWriter(t, a, 0, true)
	writeRecs(t, w, 0, 5)
	before := inProgress(t, dir)
	for _, job := range []string{"b", "a"} {
		s := newTestSink(t, dir, job)
		err := s.Recover(nil)
		if err == nil || !strings.Contains(err.Error(), `in use by job "a"`) {
			t.Fatalf("second writer %q: Recover = %v, want a refusal naming job a", job, err)
		}
		if _, err := s.NewWriter(engine.SinkContext{Job: job, Transactional: true}); err == nil {
			t.Fatalf("second writer %q: NewWriter succeeded", job)
		}
	}
	if after := inProgress(t, dir); !slices.Equal(before, after) {
		t.Fatalf("a refused writer changed the work folder: %q -> %q", before, after)
	}
	w.Close()
	a.Close()
	if err := recoverOnce(t, dir, "b", nil); err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
}

func FuzzDecodeMarker(f *testing.F) {
	f.Add(encodeMarker(marker{Job: "job", Through: 42, Run: "00ff"}))
	f.Add([]byte("streamd-file-sink-commit v1 job=a through=1 run=x crc=00000000\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMarker(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to a marker that decodes the same.
		if m2, err := decodeMarker(encodeMarker(m)); err != nil || m2 != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, m2, err)
		}
	})
}
