package kafka

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/snapshot"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// The credentials of the mid-job test's cluster: the job's errors must
// contain neither.
const midJobUser, midJobPass = "midjob-admin", "midjob-Pw-9c1e!unique"

// runMidJob is the count job with credentials, a short request timeout
// (so that a cluster that stops answering fails the job within seconds,
// not DefaultRequestTimeout), throttled, under a context that bounds it.
func runMidJob(ctx context.Context, conn Connection, store *snapshot.Store) error {
	return countJob{conn: conn, store: store, parallelism: 2, throttleEvery: 4, requestTimeout: 2 * time.Second}.run(ctx)
}

// TestBrokerFailsMidJob makes the cluster drop the sink's requests
// (produce, AddPartitionsToTxn, EndTxn), then in a second cluster the
// source's fetches, while the count job runs with completed checkpoints:
// the job must fail within a bounded time, with an error that says what
// could not be done and holds no credential; once the cluster answers
// again, the job restarted from its checkpoints must write every count
// exactly once. The source case once ended the job "successfully" with a
// partition unread: its error wrapped io.EOF (see sourceReader.Read).
func TestBrokerFailsMidJob(t *testing.T) {
	t.Run("sink", func(t *testing.T) { testBrokerFailsMidJob(t, kmsg.Produce, kmsg.EndTxn, kmsg.AddPartitionsToTxn) })
	t.Run("source", func(t *testing.T) { testBrokerFailsMidJob(t, kmsg.Fetch) })
}

func testBrokerFailsMidJob(t *testing.T, fail ...kmsg.Key) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in", "out"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", midJobUser, midJobPass))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("STREAMD_TEST_KAFKA_USER", midJobUser)
	t.Setenv("STREAMD_TEST_KAFKA_PASSWORD", midJobPass)
	conn := Connection{Brokers: c.ListenAddrs(), UserEnv: "STREAMD_TEST_KAFKA_USER", PasswordEnv: "STREAMD_TEST_KAFKA_PASSWORD"}

	const n, keys = 20000, 7
	produceInputSASL(t, c.ListenAddrs(), n, keys)

	// Every request of the keys in fail closes its connection while
	// failing is set, as a broker that died would; the client retries into the
	// same wall until the sink's or source's request timeout.
	var failing atomic.Bool
	var dropped atomic.Int64
	for _, key := range fail {
		c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if !failing.Load() {
				return nil, nil, false
			}
			dropped.Add(1)
			return nil, errors.New("the broker is failing (test)"), true
		})
	}

	dir := t.TempDir()
	store, err := snapshot.Open(dir, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runMidJob(ctx, conn, store) }()

	// Fail once some checkpoints completed (their transactions are
	// committed: the output has records).
	deadline := time.Now().Add(15 * time.Second)
	for len(readCommittedSASL(t, c.ListenAddrs(), "out")) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the job ended before any checkpoint completed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint committed output within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	failing.Store(true)
	failedAt := time.Now()
	const bound = 10 * time.Second
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(bound):
		cancel()
		t.Fatalf("the job did not fail within %v of the cluster failing", bound)
	}
	took := time.Since(failedAt)
	if runErr == nil {
		t.Fatalf("the job succeeded although the cluster failed every request for %v (%d dropped)", took, dropped.Load())
	}
	t.Logf("the job failed %v after the cluster did (%d requests dropped): %v", took.Round(time.Millisecond), dropped.Load(), runErr)
	msg := runErr.Error()
	if !strings.Contains(msg, "kafka") || !strings.Contains(msg, "cannot") {
		t.Errorf("the error does not name the connector and what it could not do: %v", runErr)
	}
	for _, secret := range []string{midJobPass, midJobUser + ":" + midJobPass, midJobUser + "@"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the error contains %q: %v", secret, runErr)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// The cluster answers again: the job restarts from its last completed
	// checkpoint and runs to the end.
	failing.Store(false)
	store, err = snapshot.Open(dir, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	go func() { done <- runMidJob(ctx, conn, store) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the job restarted after the failure: %v", err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("the restarted job did not finish within 20 s")
	}
	checkCounts(t, readCommittedSASL(t, c.ListenAddrs(), "out"), n, keys)
}

func saslOpt() kgo.Opt {
	return kgo.SASL(plain.Auth{User: midJobUser, Pass: midJobPass}.AsMechanism())
}

// produceInputSASL is produceInput with the test cluster's login.
func produceInputSASL(t *testing.T, brokers []string, n, keys int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), saslOpt())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// A 2 KiB header per record makes the input span several fetches
	// (franz-go fetches at most 1 MiB per partition), so that the source
	// still has to fetch when the cluster fails.
	pad := []kgo.RecordHeader{{Key: "pad", Value: make([]byte, 2048)}}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte("k" + strconv.Itoa(i%keys)), Value: strconv.AppendInt(nil, int64(i), 10), Headers: pad}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readCommittedSASL is readCommitted with the test cluster's login.
func readCommittedSASL(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...), saslOpt())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), saslOpt(), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: timed out with %v left", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}
