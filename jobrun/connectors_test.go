package jobrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/streamd/streamd/connectors/kafka"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// countRow is an output row of the count specs below.
type countRow struct {
	User      string `json:"user"`
	Amount    int64  `json:"amount"`
	Key       string `json:"_key"`
	Partition int64  `json:"_partition"`
	Offset    int64  `json:"_offset"`
	Timestamp int64  `json:"_timestamp"`
	Headers   string `json:"_headers"`
	Subject   string `json:"_subject"`
	Seq       int64  `json:"_seq"`
	Count     int64  `json:"count"`
}

// checkCountRows checks the output of a running count per user over n
// inputs, input i of user "u<i%users>" with amount i: every user's counts
// are exactly 1..n/users, each input appears once, and the count of each
// row is the number of that user's inputs up to it in the order the
// source read them (where recount says).
func checkCountRows(t *testing.T, rows []countRow, n, users int) {
	t.Helper()
	if len(rows) != n {
		t.Fatalf("%d output rows, want %d", len(rows), n)
	}
	counts := make(map[string][]int64)
	amounts := make(map[int64]bool)
	for _, r := range rows {
		if want := "u" + strconv.FormatInt(r.Amount%int64(users), 10); r.User != want {
			t.Fatalf("row %+v: user %q, want %q", r, r.User, want)
		}
		if amounts[r.Amount] {
			t.Fatalf("input %d appears twice in the output", r.Amount)
		}
		amounts[r.Amount] = true
		counts[r.User] = append(counts[r.User], r.Count)
	}
	for u := range users {
		c := counts["u"+strconv.Itoa(u)]
		slices.Sort(c)
		for i, v := range c {
			if v != int64(i+1) {
				t.Fatalf("user u%d: counts %v, want 1..%d", u, c, n/users)
			}
		}
		if len(c) != n/users {
			t.Fatalf("user u%d: %d counts, want %d", u, len(c), n/users)
		}
	}
}

// newKafka starts an in-process kfake cluster with topics of 3 partitions.
func newKafka(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// readCommitted reads every committed record of topic (read_committed, up
// to the last stable offsets).
func readCommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
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

// TestKafkaCountsSpec runs a YAML job Kafka → count per user → Kafka
// against kfake, with checkpoints, and checks the committed output
// exactly: the JSON values, the keys, and the metadata fields.
func TestKafkaCountsSpec(t *testing.T) {
	const n, users = 600, 6
	brokers := newKafka(t, "in", "out")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	base := time.UnixMilli(1_700_000_000_000)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Sprintf(`{"user": "u%d", "amount": %d, "ignored": [1, {"x": null}]}`, i%users, i)
		recs[i] = &kgo.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte(v), Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers: []kgo.RecordHeader{{Key: "seq", Value: []byte(strconv.Itoa(i))}}}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	where := make(map[string][2]int64) // input key -> partition, offset
	for _, r := range recs {
		where[string(r.Key)] = [2]int64{int64(r.Partition), r.Offset}
	}

	spec := fmt.Sprintf(`name: kafka-counts
parallelism: 2
source:
  type: kafka
  brokers: [%[1]s]
  topics: [in]
  bounded: true
  fields: {user: string, amount: int, _key: string, _headers: string, _partition: int, _offset: int, _timestamp: int}
  event_time: {field: _timestamp}
pipeline:
  - key_by: user
  - count: {}
sink:
  type: kafka
  brokers: [%[1]s]
  topic: out
  id: counts
  key: user
  transaction_timeout: 1m
checkpointing:
  interval: 20ms
  timeout: 30s
`, strings.Join(brokers, ", "))
	var checkpoints atomic.Int64
	b := build(t, spec, Options{Store: openStore(t), OnCheckpoint: func(engine.CheckpointStats) { checkpoints.Add(1) }})
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if checkpoints.Load() == 0 {
		t.Fatal("no checkpoint completed: the sink's transactions were not tested")
	}

	out := readCommitted(t, brokers, "out")
	rows := make([]countRow, len(out))
	for i, r := range out {
		if err := json.Unmarshal(r.Value, &rows[i]); err != nil {
			t.Fatalf("output record %q: %v", r.Value, err)
		}
		if string(r.Key) != rows[i].User {
			t.Fatalf("output record %q has key %q, want the user", r.Value, r.Key)
		}
		row := rows[i]
		if want := "k" + strconv.FormatInt(row.Amount, 10); row.Key != want {
			t.Fatalf("row %+v: _key %q, want %q", row, row.Key, want)
		}
		if w := where[row.Key]; row.Partition != w[0] || row.Offset != w[1] {
			t.Fatalf("row %+v: _partition/_offset %d/%d, want %d/%d", row, row.Partition, row.Offset, w[0], w[1])
		}
		if want := `{"seq":"` + strconv.FormatInt(row.Amount, 10) + `"}`; row.Headers != want {
			t.Fatalf("row %+v: _headers %q, want %q", row, row.Headers, want)
		}
		if want := base.UnixMilli() + row.Amount; row.Timestamp != want {
			t.Fatalf("row %+v: _timestamp %d, want %d", row, row.Timestamp, want)
		}
	}
	checkCountRows(t, rows, n, users)
}

// TestKafkaTransactionTimeoutAgrees checks that the job package's check of
// a kafka sink's transaction timeout is kafka.CheckTransactionTimeout's.
func TestKafkaTransactionTimeoutAgrees(t *testing.T) {
	for _, c := range []struct{ txn, interval, timeout string }{
		{"", "1s", "10m"}, {"", "5m", "10m"}, {"", "5m1s", "10m"}, {"1m", "30s", "30s"}, {"1m", "30s", "31s"},
		{"10s", "1ms", "9999ms"}, {"10s", "1ms", "10s"}, {"1h", "1h", "1s"},
	} {
		txn := ""
		if c.txn != "" {
			txn = "transaction_timeout: " + c.txn
		}
		spec := fmt.Sprintf(`name: t
source: {type: sequence, keys: 1}
sink: {type: kafka, brokers: ["b:9092"], topic: out, %s}
checkpointing: {interval: %s, timeout: %s}
`, txn, c.interval, c.timeout)
		spec = strings.Replace(spec, ", }", "}", 1)
		_, jobErr := job.Load("t.yaml", []byte(spec))
		d := func(s string) time.Duration {
			v, _ := time.ParseDuration(s)
			return v
		}
		kafkaErr := kafka.CheckTransactionTimeout(d(c.txn), d(c.interval), d(c.timeout))
		if (jobErr == nil) != (kafkaErr == nil) {
			t.Errorf("%+v: job says %v, kafka says %v", c, jobErr, kafkaErr)
		}
		if jobErr != nil && !strings.Contains(jobErr.Error(), "t.yaml:3:") {
			t.Errorf("%+v: the error does not name the sink's line: %v", c, jobErr)
		}
	}
}

// natsURL is the server the NATS test uses: STREAMD_NATS_URL, default
// the connector's default.
func natsURL() string {
	if u := os.Getenv("STREAMD_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// needNATS connects to the test server with JetStream, or skips loudly
// (fails under CI).
func needNATS(t *testing.T) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(2*time.Second))
	if err == nil {
		js, jerr := jetstream.New(nc)
		if jerr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, jerr = js.AccountInfo(ctx)
			cancel()
		}
		if jerr == nil {
			t.Cleanup(nc.Close)
			return nc, js
		}
		nc.Close()
		err = jerr
	}
	msg := fmt.Sprintf("NO NATS JETSTREAM SERVER at %s (set STREAMD_NATS_URL; .ci/setup-nats.sh starts one): %v", natsURL(), err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return nil, nil
}

// TestNATSCountsSpec runs a YAML job NATS → count per user → NATS against
// the server at STREAMD_NATS_URL and checks the output stream exactly,
// with the source's metadata fields, and that Run logs the duplicate
// window warning (the output stream's window is shorter than the
// checkpoint interval plus the expected recovery).
func TestNATSCountsSpec(t *testing.T) {
	const n, users = 500, 5
	_, js := needNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out := "YCIN_"+id, "YCOUT_"+id
	inSubj, outSubj := "yc."+id+".in", "yc."+id+".out"
	for _, cfg := range []jetstream.StreamConfig{
		{Name: in, Subjects: []string{inSubj + ".>"}, Storage: jetstream.MemoryStorage},
		{Name: out, Subjects: []string{outSubj}, Storage: jetstream.MemoryStorage, Duplicates: 10 * time.Second},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		name := cfg.Name
		t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	}
	for i := range n {
		subj := fmt.Sprintf("%s.u%d", inSubj, i%users)
		if _, err := js.Publish(ctx, subj, fmt.Appendf(nil, `{"user":"u%d","amount":%d}`, i%users, i)); err != nil {
			t.Fatal(err)
		}
	}
	jobName := "nats-counts-" + strings.ToLower(id)
	spec := fmt.Sprintf(`name: %s
parallelism: 2
source:
  type: nats
  url: %s
  stream: %s
  bounded: true
  fields: {user: string, amount: int, _subject: string, _seq: int, _timestamp: int}
pipeline:
  - key_by: user
  - count: {}
sink:
  type: nats
  url: %[2]s
  subject: %[4]s
  name: counts
checkpointing:
  interval: 20ms
`, jobName, natsURL(), in, outSubj)
	var mu sync.Mutex
	var logs []string
	var checkpoints atomic.Int64
	b := build(t, spec, Options{Store: openStore(t), OnCheckpoint: func(engine.CheckpointStats) { checkpoints.Add(1) }, Logger: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(f, a...))
	}})
	if err := b.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if checkpoints.Load() == 0 {
		t.Fatal("no checkpoint completed: the sink's transactions were not tested")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, "duplicate window of stream \""+out+"\" is 10s") }) {
		t.Errorf("Run logged no duplicate-window warning; logs:\n%s", strings.Join(logs, "\n"))
	}

	st, err := js.Stream(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]countRow, 0, n)
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var r countRow
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("output message %q: %v", m.Data, err)
		}
		if m.Subject != outSubj {
			t.Fatalf("output message on %q, want %q", m.Subject, outSubj)
		}
		if want := fmt.Sprintf("%s.%s", inSubj, r.User); r.Subject != want {
			t.Fatalf("row %+v: _subject %q, want %q", r, r.Subject, want)
		}
		// The input was published in order: message i has sequence i+1.
		if r.Seq != r.Amount+1 || r.Timestamp <= 0 {
			t.Fatalf("row %+v: _seq %d (want %d), _timestamp %d", r, r.Seq, r.Amount+1, r.Timestamp)
		}
		rows = append(rows, r)
	}
	checkCountRows(t, rows, n, users)
}

// A Kafka record whose value does not fit the schema fails the job with a
// message naming where it is and what is wrong; credentials named by
// user_env and password_env must be set when the job starts, and the
// error names the variables (never a value).
func TestKafkaSpecFailures(t *testing.T) {
	brokers := newKafka(t, "in")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: 0, Value: []byte(`{"user": 7}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf(`name: bad
source: {type: kafka, brokers: ["%s"], topics: [in], bounded: true, fields: {user: string}%%s}
sink: {type: blackhole}
`, strings.Join(brokers, `", "`))
	err = build(t, fmt.Sprintf(spec, ""), Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "offset 0") || !strings.Contains(err.Error(), `"user"`) {
		t.Fatalf("Run = %v, want an error naming the record's offset and the field", err)
	}
	err = build(t, fmt.Sprintf(spec, ", user_env: YC_UNSET_USER, password_env: YC_UNSET_PASSWORD"), Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "YC_UNSET_PASSWORD") {
		t.Fatalf("Run = %v, want an error naming the unset variables", err)
	}
}
