package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamd/streamd/engine"
)

// TestMain runs the job of STREAMD_NATS_CHILD (JSON jobSpec) when set: the
// SIGKILL tests start the test binary itself as the job's process.
func TestMain(m *testing.M) {
	if spec := os.Getenv("STREAMD_NATS_CHILD"); spec != "" {
		var s jobSpec
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			fmt.Fprintln(os.Stderr, "child: bad spec:", err)
			os.Exit(3)
		}
		if err := runJob(s); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// killLoop runs spec in child processes, killing each with SIGKILL at a
// random moment, at least kills times, then lets one run to its end.
func killLoop(t *testing.T, spec jobSpec, kills int) {
	b, _ := json.Marshal(spec)
	killed, runs := 0, 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STREAMD_NATS_CHILD="+string(b))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timer <-chan time.Time
		if killed < kills {
			timer = time.After(time.Duration(80+rand.IntN(250)) * time.Millisecond)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d failed: %v\n%s", runs, err, out.String())
			}
			if killed < kills {
				t.Fatalf("the job finished after %d kills, before the %d the test wants: make it longer", killed, kills)
			}
			t.Logf("%d runs, %d killed with SIGKILL", runs, killed)
			return
		case <-timer:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			killed++
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run finished within 90 s (%d runs)", runs)
		}
	}
}

// TestKillSequenceToNATS: sequence → count per user → NATS, killed at
// least 10 times; the output stream holds every click exactly once.
func TestKillSequenceToNATS(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("KILLSEQ")
	out := makeStream(t, js, name, 2*time.Minute, name+".out")
	spec := jobSpec{Job: name, DataDir: filepath.Join(t.TempDir(), "data"), Count: 30000, Users: 10, RatePerSec: 10000,
		OutSubject: name + ".out", Parallelism: 2, Interval: 30 * time.Millisecond}
	killLoop(t, spec, 10)
	checkClicks(t, readAll(t, out), spec.Count, spec.Users)
}

// TestKillNATSToNATS: a NATS stream of clicks on two subjects → count per
// user → NATS, killed at least 10 times; exact counts.
func TestKillNATSToNATS(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("KILLNN")
	in := name + "-in"
	makeStream(t, js, in, time.Minute, in+".a", in+".b")
	out := makeStream(t, js, name, 2*time.Minute, name+".out")
	const count, users = 20000, 7
	publishClicks(t, js, count, users, in+".a", in+".b")
	spec := jobSpec{Job: name, DataDir: filepath.Join(t.TempDir(), "data"), InStream: in, Users: users,
		ThrottleEvery: 5, OutSubject: name + ".out", Parallelism: 2, Interval: 30 * time.Millisecond}
	killLoop(t, spec, 10)
	checkClicks(t, readAll(t, out), count, users)
}

// TestNATSToNATS: a NATS → NATS job reads every message once, and a
// rerun of the finished job adds nothing.
func TestNATSToNATS(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("NN")
	in := name + "-in"
	makeStream(t, js, in, time.Minute, in+".a", in+".b", in+".c")
	out := makeStream(t, js, name, 2*time.Minute, name+".out")
	const count, users = 5000, 5
	publishClicks(t, js, count, users, in+".a", in+".b", in+".c")
	spec := jobSpec{Job: name, DataDir: filepath.Join(t.TempDir(), "data"), InStream: in, Users: users,
		OutSubject: name + ".out", Parallelism: 2, Interval: 20 * time.Millisecond}
	if err := runJob(spec); err != nil {
		t.Fatal(err)
	}
	checkClicks(t, readAll(t, out), count, users)
	// A rerun of the finished job emits nothing more.
	if err := runJob(spec); err != nil {
		t.Fatal(err)
	}
	checkClicks(t, readAll(t, out), count, users)
}

// TestSinkRecoverReplay: a commit replayed by Recover (the
// crash after publishing, before the commit bucket recorded it) adds
// nothing to the stream.
func TestSinkRecoverReplay(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("REPLAY")
	st := makeStream(t, js, name, time.Minute, name+".out")
	sink, err := NewSink(name, SinkOptions[Click]{Conn: ConnOptions{URL: testURL()}, Subject: name + ".out", Encode: encodeClick})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := sink.Recover(nil); err != nil {
		t.Fatal(err)
	}
	w, err := sink.NewWriter(engine.SinkContext{Job: name, Index: 0, Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(100) {
		c := Click{Seq: i, User: 0, Count: i + 1}
		if err := w.Write(&c); err != nil {
			t.Fatal(err)
		}
	}
	state, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := sink.LastCommitted(); err != nil || id != 0 {
		t.Fatalf("LastCommitted before the commit = %d, %v; want 0", id, err)
	}
	// Publish as a crashed commit did, without recording it.
	txns, err := decodeState(state)
	if err != nil {
		t.Fatal(err)
	}
	nc, kv, _ := sink.conn()
	p, _ := sink.newPublisher(nc, kv)
	if err := p.commit(txns[0], true); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := kv.Delete(ctx, sink.prefix+"t0"); err != nil {
		t.Fatal(err)
	}
	// Recovery from the checkpoint that lists it publishes it again.
	if err := sink.Recover([][]byte{state}); err != nil {
		t.Fatal(err)
	}
	if id, err := sink.LastCommitted(); err != nil || id != 1 {
		t.Fatalf("LastCommitted after recovery = %d, %v; want 1", id, err)
	}
	// And a second recovery skips it (recorded).
	if err := sink.Recover([][]byte{state}); err != nil {
		t.Fatal(err)
	}
	checkClicksSeq(t, readAll(t, st), 100)
}

// checkClicksSeq checks that msgs are clicks 0..n-1, once each, with their
// deterministic message ids.
func checkClicksSeq(t *testing.T, msgs []jetstream.Msg, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("the stream holds %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		var c Click
		if err := json.Unmarshal(m.Data(), &c); err != nil || c.Seq != int64(i) {
			t.Fatalf("message %d is %q (%v)", i, m.Data(), err)
		}
		if id := m.Headers().Get("Nats-Msg-Id"); !strings.HasSuffix(id, fmt.Sprintf("/0/1/%d", i)) {
			t.Fatalf("message %d has id %q", i, id)
		}
	}
}

// TestUnreachable: a server that is not there is a clear error at start,
// which shows neither the password nor the URL's credentials.
func TestUnreachable(t *testing.T) {
	t.Setenv("STREAMD_TEST_NATS_USER", "someone")
	t.Setenv("STREAMD_TEST_NATS_PASSWORD", "hunter2-secret")
	conn := ConnOptions{URL: "nats://127.0.0.1:1", UserEnv: "STREAMD_TEST_NATS_USER", PasswordEnv: "STREAMD_TEST_NATS_PASSWORD", ConnectTimeout: time.Second}
	sink, err := NewSink("unreachable", SinkOptions[Click]{Conn: conn, Subject: "x.out"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(SourceOptions[Click]{Conn: conn, Stream: "X", Decode: func(*Message, *Click) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := sink.LastCommitted()
	err2 := sink.Recover(nil)
	_, err3 := src.Initial(1)
	job := engine.NewJob("unreachable", engine.Options{Parallelism: 1})
	engine.ToSink(engine.FromSplitSource(job, "in", src, src.NewReader), "out", sink)
	err4 := job.Run(context.Background())
	for i, err := range []error{err1, err2, err3, err4} {
		if err == nil {
			t.Fatalf("call %d: no error from an unreachable server", i)
		}
		msg := err.Error()
		if !strings.Contains(msg, "cannot connect to nats://127.0.0.1:1") {
			t.Errorf("call %d: the error does not say what failed: %s", i, msg)
		}
		if strings.Contains(msg, "hunter2") || strings.Contains(msg, "someone") {
			t.Errorf("call %d: the error shows a credential: %s", i, msg)
		}
	}
}

// TestMissingStream: a sink whose subject no stream captures, and a source
// of a stream that does not exist, fail at start naming it.
func TestMissingStream(t *testing.T) {
	needServer(t)
	name := uniqueName("NOSTREAM")
	sink, err := NewSink(name, SinkOptions[Click]{Conn: ConnOptions{URL: testURL()}, Subject: name + ".out"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.LastCommitted(); err == nil || !strings.Contains(err.Error(), "no stream captures the subject") {
		t.Fatalf("got %v", err)
	}
	src, _ := NewSource(SourceOptions[Click]{Conn: ConnOptions{URL: testURL()}, Stream: name, Decode: func(*Message, *Click) error { return nil }})
	if _, err := src.Initial(1); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("got %v", err)
	}
}

// TestCheckDuplicateWindow: a checkpoint interval plus recovery longer
// than the stream's duplicate window is warned about; a shorter one not.
func TestCheckDuplicateWindow(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("DUP")
	makeStream(t, js, name, 30*time.Second, name+".out")
	opts := SinkOptions[Click]{Conn: ConnOptions{URL: testURL(), ReconnectTimeout: 5 * time.Second}, Subject: name + ".out", ExpectedRecovery: 10 * time.Second}
	ctx := context.Background()
	w, err := CheckDuplicateWindow(ctx, opts, 5*time.Second)
	if err != nil || w != "" {
		t.Fatalf("5 s + 5 s + 10 s within 30 s: warning %q, error %v", w, err)
	}
	w, err = CheckDuplicateWindow(ctx, opts, 20*time.Second)
	if err != nil || !strings.Contains(w, "duplicate window") || !strings.Contains(w, name) || !strings.Contains(w, "reconnect timeout (5s)") {
		t.Fatalf("20 s + 5 s + 10 s beyond 30 s: warning %q, error %v", w, err)
	}
}
