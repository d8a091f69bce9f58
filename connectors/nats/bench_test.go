package nats

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// benchRecords is the records of one benchmark job.
const benchRecords = 200_000

// benchJob runs sequence → sink with checkpoints every 100 ms, b.N times,
// and reports records/s.
func benchJob(b *testing.B, mkSink func(job string) engine.Sink[Click]) {
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		_ = i
		store, err := snapshot.Open(filepath.Join(b.TempDir(), "data"), snapshot.Options{})
		if err != nil {
			b.Fatal(err)
		}
		name := uniqueName("bench")
		job := engine.NewJob(name, engine.Options{Parallelism: 2, Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 100 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: store}})
		src := sequence.NewSplitSource(sequence.Options[Click]{Count: benchRecords, Keys: 10,
			Make: func(i, key int64, c *Click) { *c = Click{Seq: i, User: key, Count: i} }})
		engine.ToSink(engine.FromSplitSource(job, "in", src, src.NewReader), "out", mkSink(name))
		if err := job.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
	b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkSinkNATS: records/s into a JetStream stream on loopback.
func BenchmarkSinkNATS(b *testing.B) {
	_, js := needServer(b)
	name := uniqueName("BENCH")
	st := makeStream(b, js, name, 2*time.Minute, name+".out")
	benchJob(b, func(job string) engine.Sink[Click] {
		s, err := NewSink(job, SinkOptions[Click]{Conn: ConnOptions{URL: testURL()}, Subject: name + ".out", Encode: encodeClick})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != uint64(benchRecords*b.N) {
		b.Fatalf("the stream holds %v messages (%v), want %d", info.State.Msgs, err, benchRecords*b.N)
	}
}

// BenchmarkSinkFile: the same job into the file sink, for comparison.
func BenchmarkSinkFile(b *testing.B) {
	dir := b.TempDir()
	benchJob(b, func(job string) engine.Sink[Click] {
		s, err := file.NewSink(job, file.SinkOptions[Click]{Dir: filepath.Join(dir, job), Encode: func(dst []byte, c *Click) []byte {
			dst, _ = encodeClick(dst, c)
			return dst
		}})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// BenchmarkWrite: the sink writer's per-record cost (encode and buffer).
func BenchmarkWrite(b *testing.B) {
	s, err := NewSink[Click]("bench", SinkOptions[Click]{Subject: "x", Encode: encodeClick, MaxPendingBytes: MaxPendingBytesLimit})
	if err != nil {
		b.Fatal(err)
	}
	w := &writer[Click]{s: s, transactional: true, maxPayload: 1 << 20}
	c := Click{Seq: 123456, User: 7, Count: 42}
	b.ReportAllocs()
	for i := range b.N {
		if i%100_000 == 0 {
			w.open, w.pendingBytes = txn{body: w.open.body[:0]}, 0
		}
		if err := w.Write(&c); err != nil {
			b.Fatal(err)
		}
	}
}
