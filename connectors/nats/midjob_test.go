package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	server "github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The credentials of the mid-job tests' server: no error may contain them.
const midJobUser, midJobPass = "midjob-user", "midjob-Pw-7f3a!unique"

// stoppableServer is an embedded nats-server with JetStream whose port and
// file store the test keeps, so that it can stop the server and start it
// again with the same streams. It runs under CI too: the test must stop
// the server, which it cannot do to the machine's.
type stoppableServer struct {
	t    *testing.T
	opts server.Options // Port is the first start's, once it started
	srv  *server.Server // nil while stopped
}

func startStoppableServer(t *testing.T) *stoppableServer {
	t.Helper()
	s := &stoppableServer{t: t, opts: server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: midJobUser, Password: midJobPass, NoLog: true, NoSigs: true,
	}}
	s.start()
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.stop)
	return s
}

func (s *stoppableServer) start() {
	s.t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("cannot start the embedded nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatal("the embedded nats-server did not start within 10 s")
	}
	s.srv = srv
}

func (s *stoppableServer) stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func (s *stoppableServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// client connects the test to the server, until the test ends.
func (s *stoppableServer) client() jetstream.JetStream {
	s.t.Helper()
	nc, err := natsgo.Connect(s.url(), natsgo.UserInfo(midJobUser, midJobPass), natsgo.Timeout(2*time.Second))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return js
}

// midJob is a NATS → count per user → NATS job on a stoppableServer, with
// credentials, a short ConnectTimeout and the given ReconnectTimeout,
// throttled (1 ms every throttleEvery records per task) so that it runs
// for seconds.
type midJob struct {
	t    *testing.T
	srv  *stoppableServer
	spec jobSpec
	out  string // the output stream
}

const midJobCount, midJobUsers = 12000, 7

func newMidJob(t *testing.T, reconnectTimeout time.Duration, throttleEvery int) *midJob {
	t.Setenv("STREAMD_TEST_NATS_MIDJOB_USER", midJobUser)
	t.Setenv("STREAMD_TEST_NATS_MIDJOB_PASSWORD", midJobPass)
	srv := startStoppableServer(t)
	js := srv.client()
	name := uniqueName("MIDJOB")
	in := name + "-in"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No deletion at the end: the server's store is the test's.
	for _, cfg := range []jetstream.StreamConfig{
		{Name: in, Subjects: []string{in + ".a", in + ".b"}, Storage: jetstream.FileStorage},
		{Name: name, Subjects: []string{name + ".out"}, Duplicates: 2 * time.Minute, Storage: jetstream.FileStorage},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("cannot create stream %s: %v", cfg.Name, err)
		}
	}
	publishClicks(t, js, midJobCount, midJobUsers, in+".a", in+".b")
	return &midJob{t: t, srv: srv, out: name, spec: jobSpec{
		Job: name, DataDir: filepath.Join(t.TempDir(), "data"), InStream: in, Users: midJobUsers,
		ThrottleEvery: throttleEvery, OutSubject: name + ".out", Parallelism: 2, Interval: 30 * time.Millisecond,
		Conn: ConnOptions{
			URL: srv.url(), UserEnv: "STREAMD_TEST_NATS_MIDJOB_USER", PasswordEnv: "STREAMD_TEST_NATS_MIDJOB_PASSWORD",
			ConnectTimeout: time.Second, ReconnectTimeout: reconnectTimeout,
		},
	}}
}

// start runs the job in the background and returns once some checkpoints
// committed output; the job's result arrives on the channel.
func (m *midJob) start(ctx context.Context) <-chan error {
	m.t.Helper()
	done := make(chan error, 1)
	go func() { done <- runJobCtx(ctx, m.spec) }()
	js := m.srv.client()
	deadline := time.Now().Add(15 * time.Second)
	for m.outputMsgs(js) == 0 {
		select {
		case err := <-done:
			m.t.Fatalf("the job ended before any checkpoint committed output: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatal("no checkpoint committed output within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return done
}

func (m *midJob) outputMsgs(js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, m.out)
	if err != nil {
		m.t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// waitProgress waits until the job's output grows, after the server came
// back, and a little more (the job's other connections reconnect at their
// own pace).
func (m *midJob) waitProgress(done <-chan error) {
	m.t.Helper()
	js := m.srv.client()
	from := m.outputMsgs(js)
	deadline := time.Now().Add(10 * time.Second)
	for m.outputMsgs(js) == from {
		select {
		case err := <-done:
			m.t.Fatalf("the job ended (%v) while the test waited for it to make progress", err)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatal("the job's output did not grow within 10 s of the server's return")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
}

// wait returns the job's result, failing the test when it takes longer
// than bound.
func (m *midJob) wait(done <-chan error, cancel context.CancelFunc, bound time.Duration, what string) error {
	m.t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		cancel()
		m.t.Fatalf("%s: the job did not end within %v", what, bound)
		return nil
	}
}

// check checks the output: every click counted exactly once.
func (m *midJob) check() {
	m.t.Helper()
	js := m.srv.client()
	st, err := js.Stream(context.Background(), m.out)
	if err != nil {
		m.t.Fatal(err)
	}
	checkClicks(m.t, readAll(m.t, st), midJobCount, midJobUsers)
}

// rerun runs the job again from its data dir, to its end.
func (m *midJob) rerun() {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runJobCtx(ctx, m.spec) }()
	if err := m.wait(done, cancel, 20*time.Second, "the rerun"); err != nil {
		m.t.Fatalf("the rerun from the last checkpoint failed: %v", err)
	}
}

// TestServerFailsMidJob stops the NATS server under a running NATS → NATS
// job (issue 13: "fails mid-job"):
//   - down: the server stays away. The job fails within a bounded time
//     (ReconnectTimeout, 2 s here, plus a commit's ConnectTimeout), with an
//     error that names the connector, the stream or subject and what
//     could not be done, and no credential; it never finishes with
//     messages unread. Once the server is back, the rerun from the job's
//     data dir writes every count exactly once.
//   - blip: the server is back within ReconnectTimeout, twice. The job
//     rides through (the sources resume after the last message they
//     handed over, an interrupted commit is done again and the duplicate
//     window drops what arrived twice) and its output is exact.
func TestServerFailsMidJob(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		const reconnect = 2 * time.Second
		m := newMidJob(t, reconnect, 4)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := m.start(ctx)
		stopped := time.Now()
		m.srv.stop()
		// A commit in flight waits ConnectTimeout for its acknowledgements
		// before it sees the loss; the rest is slack for a loaded machine.
		bound := reconnect + m.spec.Conn.ConnectTimeout + 7*time.Second
		runErr := m.wait(done, cancel, bound, "with its server stopped")
		took := time.Since(stopped)
		if runErr == nil {
			t.Fatalf("the job finished \"successfully\" %v after its server stopped", took)
		}
		t.Logf("the job failed %v after the server stopped: %v", took.Round(time.Millisecond), runErr)
		if took < reconnect {
			t.Errorf("the job failed after %v, before ReconnectTimeout (%v)", took, reconnect)
		}
		msg := runErr.Error()
		for _, want := range []string{"nats: ", "cannot ", "ReconnectTimeout", m.spec.Conn.URL} {
			if !strings.Contains(msg, want) {
				t.Errorf("the error does not say %q: %v", want, runErr)
			}
		}
		if !strings.Contains(msg, fmt.Sprintf("stream %q", m.spec.InStream)) && !strings.Contains(msg, fmt.Sprintf("subject %q", m.spec.OutSubject)) {
			t.Errorf("the error names neither the input stream nor the output subject: %v", runErr)
		}
		for _, secret := range []string{midJobPass, midJobUser} {
			if strings.Contains(msg, secret) {
				t.Errorf("the error contains the credential %q: %v", secret, runErr)
			}
		}
		if errors.Is(runErr, io.EOF) {
			t.Errorf("the job's error wraps io.EOF: %v", runErr)
		}

		m.srv.start()
		if n := m.outputMsgs(m.srv.client()); n >= midJobCount {
			t.Fatalf("the output already holds %d messages of %d: the server stopped too late to test anything", n, midJobCount)
		}
		m.rerun()
		m.check()
	})

	t.Run("blip", func(t *testing.T) {
		const reconnect = 10 * time.Second
		m := newMidJob(t, reconnect, 2)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := m.start(ctx)
		// Two outages: one shorter than ConnectTimeout (a commit's
		// publishes wait in the client's reconnect buffer and are
		// acknowledged once it is back), one longer (they time out, and
		// the commit is done again once the server answers).
		var outages []time.Duration
		for i, d := range []time.Duration{300 * time.Millisecond, m.spec.Conn.ConnectTimeout + 500*time.Millisecond} {
			select {
			case err := <-done:
				t.Fatalf("the job ended (%v) before outage %d: make it longer", err, i+1)
			default:
			}
			stopped := time.Now()
			m.srv.stop()
			time.Sleep(d)
			m.srv.start()
			outages = append(outages, time.Since(stopped).Round(time.Millisecond))
			if i == 0 {
				// The next outage only once the job is going again: a
				// request the client sends right after reconnecting and
				// that the next outage swallows is answered by nobody,
				// and the client's ordered consumer then waits for its
				// own 10 s timeout before it tries again (a pause, not a
				// failure, but not what this test is about).
				m.waitProgress(done)
			}
		}
		runErr := m.wait(done, cancel, reconnect+15*time.Second, "after its server came back")
		if runErr != nil {
			// Designed to ride through: say so, and check the rerun all
			// the same.
			t.Errorf("the job failed although its server was back after %v (ReconnectTimeout %v): %v", outages, reconnect, runErr)
			m.rerun()
		} else {
			t.Logf("the job rode through outages of its server of %v", outages)
		}
		m.check()
	})
}

// TestReadLostConnection: a reader whose connection has been lost for
// longer than ReconnectTimeout fails with an error that says so, never
// one that wraps the io.EOF of the closed connection (only io.EOF itself
// ends a source); within the timeout it waits.
func TestReadLostConnection(t *testing.T) {
	h := &connHealth{server: "nats://127.0.0.1:4222", timeout: time.Hour}
	h.lost(describeLoss(fmt.Errorf("read: %w", io.EOF), ConnOptions{}))
	r := &reader[Click]{opts: SourceOptions[Click]{Stream: "S"}, health: h, last: -1,
		splits: []*readSplit{{srcSplit: srcSplit{filter: "s.a", next: 1}, ch: make(chan jetstream.Msg, 1)}}}
	buf := make([]Click, 4)
	if n, err := r.Read(buf); n != 0 || err != nil {
		t.Fatalf("within ReconnectTimeout: Read = %d, %v; want 0, nil", n, err)
	}
	h.mu.downSince = time.Now().Add(-2 * time.Hour)
	n, err := r.Read(buf)
	if n != 0 || err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("lost for longer than ReconnectTimeout: Read = %d, %v; want an error that is not io.EOF", n, err)
	}
	for _, want := range []string{`cannot read "s.a" of stream "S"`, "the server closed the connection", "ReconnectTimeout (1h0m0s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	// Back: reading goes on.
	h.back()
	if n, err := r.Read(buf); n != 0 || err != nil {
		t.Fatalf("reconnected: Read = %d, %v; want 0, nil", n, err)
	}
}

// fakeMsg is a message of sequence seq, for readers tested without a
// server.
type fakeMsg struct {
	jetstream.Msg
	seq uint64
}

func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumPending: 1, Timestamp: time.Now()}, nil
}
func (m fakeMsg) Subject() string { return "s.a" }
func (m fakeMsg) Data() []byte    { return []byte("{}") }

// TestReadDecodeEOF: a Decode error that wraps io.EOF fails the job; it
// does not reach the engine as (a wrapped) end of input.
func TestReadDecodeEOF(t *testing.T) {
	ch := make(chan jetstream.Msg, 1)
	ch <- fakeMsg{seq: 1}
	r := &reader[Click]{last: -1, opts: SourceOptions[Click]{Stream: "S", Decode: func(*Message, *Click) error {
		return fmt.Errorf("truncated: %w", io.EOF)
	}}, splits: []*readSplit{{srcSplit: srcSplit{filter: "s.a", next: 1}, ch: ch}}}
	_, err := r.Read(make([]Click, 4))
	if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "cannot decode message 1") {
		t.Fatalf("Read = %v; want the decode error, not wrapping io.EOF", err)
	}
}
