package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/internal/failpoint"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The SIGKILL test runs its job in a child process: the test binary
// itself, with these variables set.
const (
	childEnv   = "STREAMD_KAFKA_CHILD"
	brokersEnv = "STREAMD_KAFKA_BROKERS"
	dataEnv    = "STREAMD_KAFKA_DATA"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := runCountJob(strings.Split(os.Getenv(brokersEnv), ","), os.Getenv(dataEnv), 2, true); err != nil {
			fmt.Fprintln(os.Stderr, "child job:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newCluster starts an in-process kfake cluster on loopback.
func newCluster(t testing.TB, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

type event struct {
	Key   string
	Seq   int64
	TS    int64
	Count int64
}

func decodeEvent(r *kgo.Record, v *event) error {
	seq, err := strconv.ParseInt(string(r.Value), 10, 64)
	*v = event{Key: string(r.Key), Seq: seq, TS: r.Timestamp.UnixMilli()}
	return err
}

func encodeCount(v *event, r *kgo.Record) {
	r.Key = []byte(v.Key)
	r.Value = strconv.AppendInt(nil, v.Count, 10)
}

// countJob describes a run of the test job Kafka "in" → count per key →
// Kafka "out", checkpointed every 20 ms into store.
type countJob struct {
	conn        Connection
	store       *snapshot.Store
	parallelism int
	// throttleEvery > 0 sleeps 1 ms every that many records per task, so
	// that a kill or a failing cluster finds the job at work.
	throttleEvery int
	// requestTimeout bounds the connector's requests (0: the default).
	requestTimeout time.Duration
}

func (c countJob) run(ctx context.Context) error {
	job := engine.NewJob("count", engine.Options{Parallelism: c.parallelism,
		Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 20 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: c.store}})
	src, err := NewSource(SourceOptions[event]{Connection: c.conn, Topics: []string{"in"}, Decode: decodeEvent, Bounded: true, RequestTimeout: c.requestTimeout})
	if err != nil {
		return err
	}
	s := engine.FromSplitSource(job, "in", src, src.NewReader)
	s = engine.WithWatermarks(s, engine.WatermarkStrategy[event]{Timestamp: func(v *event) int64 { return v.TS }})
	if every := c.throttleEvery; every > 0 {
		// A counter per task: Map's function is shared by the tasks.
		s = engine.Transform(s, "throttle", func(_ *engine.Runtime, next func(*event)) (func(*event), error) {
			n := 0
			return func(v *event) {
				if n++; n%every == 0 {
					time.Sleep(time.Millisecond)
				}
				next(v)
			}, nil
		})
	}
	counted := engine.Process(engine.KeyBy(s, engine.StringKey(func(v *event) string { return v.Key })), "count",
		func(rt *engine.Runtime) (func(*engine.KeyedContext, *event, func(*event)), error) {
			c, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return nil, err
			}
			return func(_ *engine.KeyedContext, v *event, emit func(*event)) {
				n, _ := c.Get()
				c.Put(n + 1)
				v.Count = n + 1
				emit(v)
			}, nil
		})
	sink, err := NewSink("count", SinkOptions[event]{Connection: c.conn, ID: "out", Topic: "out", Encode: encodeCount,
		TransactionTimeout: 20 * time.Second, RequestTimeout: c.requestTimeout})
	if err != nil {
		return err
	}
	defer sink.Close()
	engine.ToSink(counted, "out", engine.Sink[event](sink))
	return job.Run(ctx)
}

// runCountJob runs the count job on brokers, checkpointed into dataDir.
// slow throttles it so that a SIGKILL finds it at work.
func runCountJob(brokers []string, dataDir string, parallelism int, slow bool) error {
	store, err := snapshot.Open(dataDir, snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	c := countJob{conn: Connection{Brokers: brokers}, store: store, parallelism: parallelism}
	if slow {
		c.throttleEvery = 2
	}
	return c.run(context.Background())
}

// produceInput writes n records over keys non-transactionally to "in".
func produceInput(t testing.TB, brokers []string, n, keys int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte("k" + strconv.Itoa(i%keys)), Value: strconv.AppendInt(nil, int64(i), 10)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readCommitted reads every committed record of topic.
func readCommitted(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
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

// checkCounts checks that every key's counts 1..n appear exactly once.
func checkCounts(t *testing.T, recs []*kgo.Record, n, keys int) {
	t.Helper()
	got := make(map[string][]int64)
	for _, r := range recs {
		c, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			t.Fatalf("output record %q", r.Value)
		}
		got[string(r.Key)] = append(got[string(r.Key)], c)
	}
	if len(recs) != n {
		t.Errorf("%d output records, want %d", len(recs), n)
	}
	for k := range keys {
		key := "k" + strconv.Itoa(k)
		want := n / keys
		if k < n%keys {
			want++
		}
		cs := got[key]
		slices.Sort(cs)
		for i, c := range cs {
			if c != int64(i+1) {
				t.Fatalf("key %s: counts %v…: want 1..%d exactly once (a duplicate or a hole at %d)", key, cs[:min(len(cs), 20)], want, i+1)
			}
		}
		if len(cs) != want {
			t.Fatalf("key %s: %d counts, want %d", key, len(cs), want)
		}
	}
}

func TestCountJobInProcess(t *testing.T) {
	c := newCluster(t, "in", "out")
	brokers := c.ListenAddrs()
	produceInput(t, brokers, 3000, 7)
	if err := runCountJob(brokers, t.TempDir(), 2, false); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, readCommitted(t, brokers, "out"), 3000, 7)
}

// TestCountJobSIGKILL kills the child job at random moments, at least 10
// times, restarts it until it finishes, and checks the output exactly.
func TestCountJobSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	c := newCluster(t, "in", "out")
	brokers := c.ListenAddrs()
	const n, keys = 20000, 13
	produceInput(t, brokers, n, keys)
	data := t.TempDir()
	kills, failpointKills := 0, 0
	deadline := time.Now().Add(90 * time.Second)
	for run := 0; ; run++ {
		if time.Now().After(deadline) {
			t.Fatalf("the job did not finish in time (%d kills)", kills)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildJob$")
		cmd.Env = append(os.Environ(), childEnv+"=1", brokersEnv+"="+strings.Join(brokers, ","), dataEnv+"="+filepath.Join(data, "store"))
		killAfter := time.Duration(150+rand.IntN(600)) * time.Millisecond
		if failpoint.Compiled && kills < 12 && run%2 == 0 {
			killAfter = 5 * time.Second // the failpoint comes first
			// In a -tags failpoints build (make test runs one) every
			// other child dies right after its first checkpoint's
			// metadata is durable, before its transactions are
			// committed: recovery must commit exactly those.
			cmd.Env = append(cmd.Env, failpoint.EnvVar+"=checkpoint-after-metadata=1")
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kills < 12 {
			select {
			case err := <-done:
				if err != nil && strings.Contains(stderr.String(), "failpoint checkpoint-after-metadata hit") {
					failpointKills++
					kills++
					continue
				}
				if err != nil {
					t.Fatalf("child run %d failed: %v\n%s", run, err, stderr.String())
				}
				t.Logf("run %d finished before its kill", run)
				goto finished
			case <-time.After(killAfter):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				continue
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("child run %d failed: %v\n%s", run, err, stderr.String())
		}
		break
	}
finished:
	if kills < 10 {
		t.Fatalf("only %d kills before the job finished: make it slower", kills)
	}
	t.Logf("%d SIGKILLs, %d of them at the failpoint after a checkpoint's metadata", kills, failpointKills)
	if failpoint.Compiled && failpointKills == 0 {
		t.Fatal("no child died at the failpoint checkpoint-after-metadata: the test did not exercise that crash point")
	}
	checkCounts(t, readCommitted(t, brokers, "out"), n, keys)
}

// TestChildJob is the child's entry point (TestMain runs the job before
// it); in the parent it does nothing.
func TestChildJob(t *testing.T) {}

func TestRecoverDecision(t *testing.T) {
	p := pendingTxn{Checkpoint: 7, ProducerID: 3, Epoch: 2}
	f := func(out endOutcome, control uint64, want verdict, wantErr bool) {
		t.Helper()
		got, err := recoverDecision("x", p, out, control)
		if (err != nil) != wantErr || (err == nil && got != want) {
			t.Fatalf("recoverDecision(%v, control %d) = %v, %v; want %v, error %v", out, control, got, err, want, wantErr)
		}
	}
	f(endOK, 0, verdictCommitted, false)
	f(endOK, 9, verdictCommitted, false)
	f(endFenced, 7, verdictWasCommitted, false)
	f(endFenced, 8, verdictWasCommitted, false)
	f(endFenced, 6, 0, true)
	f(endFenced, 0, 0, true)
}

func TestPlanRecovery(t *testing.T) {
	p := &pendingTxn{Checkpoint: 4, ProducerID: 1, Epoch: 1}
	plan, err := planRecovery([]sinkState{{TxnID: "b", Task: 1}, {TxnID: "a", Task: 0, Pending: p}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Fence, []string{"a", "b"}) || len(plan.Commit) != 1 || plan.Commit["a"] != *p {
		t.Fatalf("plan %+v", plan)
	}
	if _, err := planRecovery([]sinkState{{TxnID: "a"}, {TxnID: "a", Task: 1}}); !errors.Is(err, ErrBadState) {
		t.Fatalf("a transactional id twice: %v", err)
	}
}

func TestCheckTransactionTimeout(t *testing.T) {
	if err := CheckTransactionTimeout(time.Minute, 10*time.Second, 10*time.Minute); err == nil {
		t.Fatal("a 1 min timeout with a 10 min checkpoint timeout was accepted")
	}
	if err := CheckTransactionTimeout(15*time.Minute, 10*time.Second, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := CheckTransactionTimeout(0, time.Second, time.Minute); err != nil {
		t.Fatalf("the default: %v", err)
	}
}
