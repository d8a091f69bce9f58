package kafka

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// refusedAddr returns a loopback address nothing listens on: a port the
// kernel gave a listener that is closed again.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// checkStartError checks that a start against an unusable cluster failed
// within bound with an error that names the brokers and what could not be
// done.
func checkStartError(t *testing.T, what string, err error, took, bound time.Duration, brokers string, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if took > bound {
		t.Errorf("%s: failed after %v, more than the %v bound", what, took, bound)
	}
	msg := err.Error()
	if brokers != "" && !strings.Contains(msg, brokers) {
		t.Errorf("%s: the error does not name the brokers %s: %v", what, brokers, err)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the error does not say %q: %v", what, w, err)
		}
	}
}

// silentAddr returns a loopback address that accepts connections and
// never answers, as a hung broker or a black-holing firewall would.
func silentAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestUnreachableAtStart checks that every call that starts against the
// cluster fails, within its request timeout, with an error naming the
// brokers, when nothing listens there or when it never answers.
func TestUnreachableAtStart(t *testing.T) {
	t.Run("refused", func(t *testing.T) { testUnreachable(t, refusedAddr(t)) })
	t.Run("silent", func(t *testing.T) { testUnreachable(t, silentAddr(t)) })
}

func testUnreachable(t *testing.T, addr string) {
	conn := Connection{Brokers: []string{addr}}
	const timeout = 1500 * time.Millisecond
	bound := timeout + 3*time.Second
	sink, err := NewSink("j", SinkOptions[event]{Connection: conn, ID: "out", Topic: "out", Encode: encodeCount, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	start := time.Now()
	_, err = sink.LastCommitted()
	checkStartError(t, "LastCommitted", err, time.Since(start), bound, addr, "cannot reach the cluster")
	start = time.Now()
	_, err = sink.NewWriter(engine.SinkContext{Index: 0, Parallelism: 1, Transactional: true})
	checkStartError(t, "NewWriter", err, time.Since(start), bound, addr, "cannot reach the cluster")
	st := appendSinkState(nil, sinkState{TxnID: sink.TransactionalID(0), Pending: &pendingTxn{Checkpoint: 3, ProducerID: 1, Epoch: 1}})
	start = time.Now()
	err = sink.Recover([][]byte{st})
	checkStartError(t, "Recover", err, time.Since(start), bound, addr, "cannot reach the cluster")

	src, err := NewSource(SourceOptions[event]{Connection: conn, Topics: []string{"in"}, Decode: decodeEvent, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = src.Initial(2)
	checkStartError(t, "Initial", err, time.Since(start), bound, addr, "cannot reach the cluster")
	start = time.Now()
	splits := []engine.Split{{ID: splitID("in", 0), State: appendPartState(nil, partState{Next: 0, Stop: -1})}}
	_, err = src.NewReader(engine.SourceContext{Index: 0, Parallelism: 1}, splits)
	checkStartError(t, "NewReader", err, time.Since(start), bound, addr, "cannot reach the cluster")
}

// TestSASLCredentialsNotInErrors logs in with wrong credentials to a
// cluster that requires SASL/PLAIN and checks that no error carries the
// password (nor the user, which a connection string would put next to it).
func TestSASLCredentialsNotInErrors(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "admin-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const user, pass = "streamd-user-7f3a", "pw-Zq8!distinctive-4471"
	t.Setenv("STREAMD_TEST_KAFKA_USER", user)
	t.Setenv("STREAMD_TEST_KAFKA_PASSWORD", pass)
	conn := Connection{Brokers: c.ListenAddrs(), UserEnv: "STREAMD_TEST_KAFKA_USER", PasswordEnv: "STREAMD_TEST_KAFKA_PASSWORD"}
	const timeout = 1500 * time.Millisecond
	bound := timeout + 3*time.Second
	brokers := c.ListenAddrs()[0]
	check := func(what string, err error, took time.Duration) {
		t.Helper()
		checkStartError(t, what, err, took, bound, brokers, "refused the SASL/PLAIN login", "$STREAMD_TEST_KAFKA_PASSWORD")
		if err != nil {
			for _, secret := range []string{pass, user + ":" + pass, user + "@", "admin-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s: the error contains %q: %v", what, secret, err)
				}
			}
			t.Logf("%s: %v", what, err)
		}
	}
	sink, err := NewSink("j", SinkOptions[event]{Connection: conn, ID: "out", Topic: "out", Encode: encodeCount, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	start := time.Now()
	_, err = sink.LastCommitted()
	check("LastCommitted", err, time.Since(start))
	start = time.Now()
	_, err = sink.NewWriter(engine.SinkContext{Index: 0, Parallelism: 1, Transactional: true})
	check("NewWriter", err, time.Since(start))
	src, err := NewSource(SourceOptions[event]{Connection: conn, Topics: []string{"in"}, Decode: decodeEvent, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = src.Initial(1)
	check("Initial", err, time.Since(start))

	// The right credentials work against the same cluster: the failures
	// above were the login's, not the test's.
	t.Setenv("STREAMD_TEST_KAFKA_USER", "admin")
	t.Setenv("STREAMD_TEST_KAFKA_PASSWORD", "admin-secret")
	if _, err := src.Initial(1); err != nil {
		t.Fatalf("Initial with the right credentials: %v", err)
	}
}

func encodeSeq(v *event, r *kgo.Record) {
	r.Key = []byte(v.Key)
	r.Value = strconv.AppendInt(nil, v.Seq, 10)
}

// runPassJob runs Kafka "in" (unbounded, looking for new partitions every
// 20 ms) → Kafka "out" unchanged, checkpointed every 20 ms into store,
// until ctx is cancelled.
func runPassJob(ctx context.Context, brokers []string, store *snapshot.Store, parallelism int) error {
	job := engine.NewJob("pass", engine.Options{Parallelism: parallelism,
		Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 20 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: store}})
	src, err := NewSource(SourceOptions[event]{Connection: Connection{Brokers: brokers}, Topics: []string{"in"}, Decode: decodeEvent,
		DiscoveryInterval: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	s := engine.FromSplitSource(job, "in", src, src.NewReader)
	sink, err := NewSink("pass", SinkOptions[event]{Connection: Connection{Brokers: brokers}, ID: "out", Topic: "out", Encode: encodeSeq,
		TransactionTimeout: 20 * time.Second})
	if err != nil {
		return err
	}
	defer sink.Close()
	engine.ToSink(s, "out", engine.Sink[event](sink))
	return job.Run(ctx)
}

// produceTo writes the records numbered from..to-1 to "in", record i to
// partition i % partitions.
func produceTo(t *testing.T, brokers []string, from, to int, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: []byte("k"), Value: strconv.AppendInt(nil, int64(i), 10), Partition: int32(i) % partitions})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func addPartitions(t *testing.T, brokers []string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreatePartitions(ctx, n, "in")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("adding %d partitions to in: %v", n, err)
	}
}

// checkSeqs checks that the committed output holds each of 0..n-1 exactly
// once, and nothing else.
func checkSeqs(t *testing.T, recs []*kgo.Record, n int) {
	t.Helper()
	seen := make([]int, n)
	for _, r := range recs {
		i, err := strconv.Atoi(string(r.Value))
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected output record %q", r.Value)
		}
		seen[i]++
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("input record %d is in the output %d times (of %d output records)", i, c, len(recs))
		}
	}
}

// waitOutput waits until the committed output holds at least n records.
func waitOutput(t *testing.T, brokers []string, n int, runErr chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := len(readCommitted(t, brokers, "out"))
		if got >= n {
			return
		}
		select {
		case err := <-runErr:
			runErr <- err // for waitEnd
			t.Fatalf("the job ended while %d of %d records were out: %v", got, n, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records reached the output in time", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEnd waits for a cancelled job to return.
func waitEnd(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not end within 20 s of its cancellation")
	}
}

// TestPartitionDiscovery adds partitions to the input while an unbounded
// job reads it, and while it is stopped, and checks that every record of
// every partition reaches the (read_committed) output exactly once, across
// a restart at another parallelism.
func TestPartitionDiscovery(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"), kfake.SeedTopics(3, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	store, err := snapshot.Open(t.TempDir(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	start := func(parallelism int) (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runPassJob(ctx, brokers, store, parallelism) }()
		return cancel, done
	}

	produceTo(t, brokers, 0, 1000, 2)
	cancel, done := start(2)
	waitOutput(t, brokers, 1000, done)
	addPartitions(t, brokers, 2) // 4 partitions, found while running
	produceTo(t, brokers, 1000, 2000, 4)
	waitOutput(t, brokers, 2000, done)
	produceTo(t, brokers, 2000, 2400, 4) // some in flight at the stop
	cancel()
	waitEnd(t, done)

	addPartitions(t, brokers, 2) // 6, created while the job is down
	produceTo(t, brokers, 2400, 3000, 6)
	cancel, done = start(3)
	defer func() { cancel(); waitEnd(t, done) }()
	waitOutput(t, brokers, 3000, done)
	addPartitions(t, brokers, 2) // 8, found by the restored job
	produceTo(t, brokers, 3000, 4000, 8)
	waitOutput(t, brokers, 4000, done)
	time.Sleep(300 * time.Millisecond) // more checkpoints and discoveries: nothing must come twice
	checkSeqs(t, readCommitted(t, brokers, "out"), 4000)
}

// TestCommitToGroup checks that a completed checkpoint's offsets, and only
// a completed one's, reach the consumer group.
func TestCommitToGroup(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	src, err := NewSource(SourceOptions[event]{Connection: Connection{Brokers: brokers}, Topics: []string{"in"}, Decode: decodeEvent,
		DiscoveryInterval: -1, CommitToGroup: true, Group: "mon"})
	if err != nil {
		t.Fatal(err)
	}
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := src.NewReader(engine.SourceContext{Index: 0, Parallelism: 1}, asg[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r := rd.(*sourceReader[event])
	buf := make([]event, 64)
	readN := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := 0; got < n; {
			k, err := r.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got += k; time.Now().After(deadline) {
				t.Fatalf("read %d of %d records", got, n)
			}
		}
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	groupAt := func(want int64) {
		t.Helper()
		r.waitCommits()
		if err := r.lastCommitError(); err != nil {
			t.Fatal(err)
		}
		offs, err := kadm.NewClient(adm).FetchOffsets(context.Background(), "mon")
		if err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			o, ok := offs.Lookup("in", p)
			if !ok || o.At != want {
				t.Fatalf("group mon partition %d: offset %+v (found %v), want %d", p, o.Offset, ok, want)
			}
		}
	}
	produceTo(t, brokers, 0, 100, 2)
	readN(100)
	if _, err := r.Splits(); err != nil {
		t.Fatal(err)
	}
	r.CheckpointTaken(1)
	produceTo(t, brokers, 100, 200, 2)
	readN(100)
	if _, err := r.Splits(); err != nil {
		t.Fatal(err)
	}
	r.CheckpointTaken(2)
	if err := r.CheckpointCompleted(1); err != nil {
		t.Fatal(err)
	}
	groupAt(50) // checkpoint 1's offsets, not the reader's latest
	if err := r.CheckpointCompleted(2); err != nil {
		t.Fatal(err)
	}
	groupAt(100)
	if _, err := r.Splits(); err != nil {
		t.Fatal(err)
	}
	r.CheckpointTaken(3) // aborted: superseded when 4 completes
	if err := r.CheckpointCompleted(4); err != nil {
		t.Fatal(err)
	}
	groupAt(100)
	if len(r.pending) != 0 {
		t.Fatalf("checkpoints %v still pending after 4 completed", r.pending)
	}
}

// TestCommitToGroupThroughEngine: a bounded, checkpointed job whose source
// commits to a consumer group leaves the group at the offsets of its last
// checkpoint — the end of every partition — through the engine's
// CheckpointTaker and CheckpointListener calls.
func TestCommitToGroupThroughEngine(t *testing.T) {
	c := newCluster(t, "in")
	brokers := c.ListenAddrs()
	const n = 3000
	produceInput(t, brokers, n, 7)
	store, err := snapshot.Open(t.TempDir(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	job := engine.NewJob("mon", engine.Options{Parallelism: 2, Logger: t.Logf,
		Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 10 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: store}})
	src, err := NewSource(SourceOptions[event]{Connection: Connection{Brokers: brokers}, Topics: []string{"in"}, Decode: decodeEvent,
		Bounded: true, CommitToGroup: true, Group: "monitor"})
	if err != nil {
		t.Fatal(err)
	}
	engine.Transform(engine.FromSplitSource(job, "in", src, src.NewReader), "drop", func(*engine.Runtime, func(*event)) (func(*event), error) {
		return func(*event) {}, nil
	})
	if err := job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "monitor")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != n {
		t.Fatalf("the group's committed offsets add up to %d, want every record (%d)", sum, n)
	}
}
