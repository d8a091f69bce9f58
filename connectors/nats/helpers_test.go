package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// testURL is the server the tests use: STREAMD_NATS_URL, default
// DefaultURL.
func testURL() string {
	if u := os.Getenv("STREAMD_NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// needServer connects to the test server with JetStream, or skips loudly
// (fails under CI).
func needServer(t testing.TB) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := connectJS()
	if err == nil {
		t.Cleanup(nc.Close)
		return nc, js
	}
	msg := fmt.Sprintf("NO NATS JETSTREAM SERVER at %s (set STREAMD_NATS_URL; .ci/setup-nats.sh starts one): %v", testURL(), err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	// A developer's machine without a server: an embedded one.
	url, eerr := embeddedServer()
	if eerr == nil {
		nc, js, eerr = connectJS()
	}
	if eerr != nil {
		t.Skip("SKIPPED: " + msg + "; and the embedded nats-server failed: " + eerr.Error())
	}
	t.Logf("%s: USING AN EMBEDDED nats-server at %s", msg, url)
	t.Cleanup(nc.Close)
	return nc, js
}

// connectJS connects to the server at testURL and checks JetStream.
func connectJS() (*natsgo.Conn, jetstream.JetStream, error) {
	nc, err := natsgo.Connect(testURL(), natsgo.Timeout(2*time.Second))
	if err == nil {
		js, jerr := jetstream.New(nc)
		if jerr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, jerr = js.AccountInfo(ctx)
			cancel()
		}
		if jerr == nil {
			return nc, js, nil
		}
		nc.Close()
		err = jerr
	}
	return nil, nil, err
}

var nameSeq atomic.Int64

// uniqueName returns a name no other test run uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d-%d", strings.ToLower(prefix), os.Getpid(), time.Now().UnixNano()%1e9, nameSeq.Add(1))
}

// makeStream creates a fresh stream capturing subjects, deleted when the
// test ends.
func makeStream(t testing.TB, js jetstream.JetStream, name string, dup time.Duration, subjects ...string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Duplicates: dup, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("cannot create stream %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	return st
}

// readAll returns every message of a stream, in order.
func readAll(t testing.TB, st jetstream.Stream) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := info.State.Msgs
	if want == 0 {
		return nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var out []jetstream.Msg
	// A loaded machine (-race, a shared server) can stall the ordered
	// consumer for a while (it then recreates itself, with backoff): wait
	// through stalls, within a bound for the whole read.
	deadline := time.Now().Add(30 * time.Second)
	for uint64(len(out)) < want {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if errors.Is(err, natsgo.ErrTimeout) && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			t.Fatalf("read %d of %d messages: %v", len(out), want, err)
		}
		out = append(out, m)
	}
	return out
}

// Click is the record of the test jobs.
type Click struct {
	Seq   int64 `json:"seq"`
	User  int64 `json:"user"`
	Count int64 `json:"count"`
}

func encodeClick(dst []byte, c *Click) ([]byte, error) {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, c.Seq, 10)
	dst = append(dst, `,"user":`...)
	dst = strconv.AppendInt(dst, c.User, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, c.Count, 10)
	return append(dst, '}'), nil
}

// checkClicks checks the output of a counting job over count clicks and
// users users: every seq once, and per user the counts 1..n once each.
func checkClicks(t testing.TB, msgs []jetstream.Msg, count, users int64) {
	t.Helper()
	if int64(len(msgs)) != count {
		t.Errorf("the output stream holds %d messages, want exactly %d", len(msgs), count)
	}
	seen := make(map[int64]int)
	counts := make(map[int64]map[int64]int)
	for _, m := range msgs {
		var c Click
		if err := json.Unmarshal(m.Data(), &c); err != nil {
			t.Fatalf("message %q: %v", m.Data(), err)
		}
		seen[c.Seq]++
		if counts[c.User] == nil {
			counts[c.User] = make(map[int64]int)
		}
		counts[c.User][c.Count]++
	}
	bad := 0
	for i := range count {
		if seen[i] != 1 && bad < 10 {
			t.Errorf("click %d appears %d times", i, seen[i])
			bad++
		}
	}
	for u := range users {
		n := count / users
		if u < count%users {
			n++
		}
		for c := int64(1); c <= n; c++ {
			if counts[u][c] != 1 && bad < 20 {
				t.Errorf("user %d: count %d appears %d times", u, c, counts[u][c])
				bad++
			}
		}
	}
}

// countClicks adds the keyed running count per user to s.
func countClicks(s engine.Stream[Click]) engine.Stream[Click] {
	byUser := engine.KeyBy(s, engine.Int64Key(func(c *Click) int64 { return c.User }))
	return engine.Process(byUser, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *Click, func(*Click)), error) {
		perUser, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, c *Click, emit func(*Click)) {
			n, _ := perUser.Get()
			perUser.Put(n + 1)
			c.Count = n + 1
			emit(c)
		}, nil
	})
}

// jobSpec describes a test job: clicks from the sequence source, or from
// a NATS stream, counted per user, into a NATS stream.
type jobSpec struct {
	Job, DataDir string
	// InStream, when set, is the input stream (JSON clicks); else the
	// sequence source makes Count clicks at RatePerSec.
	InStream   string
	Count      int64
	Users      int64
	RatePerSec float64
	// ThrottleEvery sleeps 1 ms every that many records (0: never), so
	// that a job reading NATS lasts long enough to be killed.
	ThrottleEvery int
	OutSubject    string
	Parallelism   int
	Interval      time.Duration
	// Conn is how the job reaches the server; an empty URL is testURL.
	Conn ConnOptions
}

// conn returns spec.Conn, with testURL when it names no server.
func (spec jobSpec) conn() ConnOptions {
	c := spec.Conn
	if c.URL == "" {
		c.URL = testURL()
	}
	return c
}

// runJob runs the job of spec to its end (or its error).
func runJob(spec jobSpec) error { return runJobCtx(context.Background(), spec) }

// runJobCtx is runJob under ctx.
func runJobCtx(ctx context.Context, spec jobSpec) error {
	store, err := snapshot.Open(spec.DataDir, snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	var co *engine.CheckpointOptions
	if spec.Interval > 0 {
		co = &engine.CheckpointOptions{Options: coord.Options{Interval: spec.Interval, Mode: engine.ExactlyOnce}, Store: store}
	}
	job := engine.NewJob(spec.Job, engine.Options{Parallelism: spec.Parallelism, Checkpointing: co})
	var clicks engine.Stream[Click]
	if spec.InStream != "" {
		src, err := NewSource(SourceOptions[Click]{
			Conn: spec.conn(), Stream: spec.InStream, Bounded: true,
			Decode: func(m *Message, c *Click) error { return json.Unmarshal(m.Data, c) },
		})
		if err != nil {
			return err
		}
		clicks = engine.FromSplitSource(job, "in", src, src.NewReader)
	} else {
		src := sequence.NewSplitSource(sequence.Options[Click]{
			Count: spec.Count, Keys: spec.Users, RatePerSec: spec.RatePerSec,
			Make: func(i, key int64, c *Click) { *c = Click{Seq: i, User: key} },
		})
		clicks = engine.FromSplitSource(job, "in", src, src.NewReader)
	}
	if every := spec.ThrottleEvery; every > 0 {
		// A counter per task: Map's function is shared by the tasks.
		clicks = engine.Transform(clicks, "throttle", func(_ *engine.Runtime, next func(*Click)) (func(*Click), error) {
			n := 0
			return func(c *Click) {
				if n++; n%every == 0 {
					time.Sleep(time.Millisecond)
				}
				next(c)
			}, nil
		})
	}
	sink, err := NewSink(spec.Job, SinkOptions[Click]{
		Conn: spec.conn(), Subject: spec.OutSubject, Encode: encodeClick,
	})
	if err != nil {
		return err
	}
	engine.ToSink(countClicks(clicks), "out", sink)
	return job.Run(ctx)
}

// publishClicks fills subjects of a stream with count JSON clicks, round
// robin over the subjects.
func publishClicks(t testing.TB, js jetstream.JetStream, count, users int64, subjects ...string) {
	t.Helper()
	for i := range count {
		c := Click{Seq: i, User: i % users}
		b, _ := encodeClick(nil, &c)
		// A loaded machine (-race, parallel packages) may take longer than
		// the client's default 200 ms to make room among the publishes in
		// flight.
		if _, err := js.PublishAsync(subjects[int(i)%len(subjects)], b, jetstream.WithStallWait(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing the input timed out")
	}
}
