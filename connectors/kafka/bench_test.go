package kafka

import (
	"context"
	"path/filepath"
	"strconv"
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

// benchSinkJob runs sequence → sink, parallelism 2, exactly-once
// checkpoints every 100 ms, b.N times, and reports records/s.
func benchSinkJob(b *testing.B, mkSink func(job string) engine.Sink[event]) {
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		store, err := snapshot.Open(filepath.Join(b.TempDir(), "data"), snapshot.Options{})
		if err != nil {
			b.Fatal(err)
		}
		name := "bench-" + strconv.Itoa(i)
		job := engine.NewJob(name, engine.Options{Parallelism: 2, Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 100 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: store}})
		src := sequence.NewSplitSource(sequence.Options[event]{Count: benchRecords, Keys: 10,
			Make: func(i, key int64, v *event) { *v = event{Key: strconv.FormatInt(key, 10), Seq: i, Count: i} }})
		engine.ToSink(engine.FromSplitSource(job, "in", src, src.NewReader), "out", mkSink(name))
		if err := job.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
	b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkSinkKafka: records/s into a topic of an in-process kfake
// cluster over loopback, transactions per checkpoint.
func BenchmarkSinkKafka(b *testing.B) {
	c := newCluster(b, "out")
	benchSinkJob(b, func(job string) engine.Sink[event] {
		s, err := NewSink(job, SinkOptions[event]{Connection: Connection{Brokers: c.ListenAddrs()}, ID: "out", Topic: "out",
			Encode: encodeCount, TransactionTimeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkSinkFile: the same job into the file sink, for comparison.
func BenchmarkSinkFile(b *testing.B) {
	dir := b.TempDir()
	benchSinkJob(b, func(job string) engine.Sink[event] {
		s, err := file.NewSink(job, file.SinkOptions[event]{Dir: filepath.Join(dir, job), Encode: func(dst []byte, v *event) []byte {
			return strconv.AppendInt(append(append(dst, v.Key...), ' '), v.Count, 10)
		}})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// BenchmarkSourceKafka: records/s read from a kfake topic of benchRecords
// records (bounded) into a discarding sink, parallelism 2, checkpoints
// every 100 ms.
func BenchmarkSourceKafka(b *testing.B) {
	c := newCluster(b, "in")
	brokers := c.ListenAddrs()
	produceInput(b, brokers, benchRecords, 10)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		store, err := snapshot.Open(filepath.Join(b.TempDir(), "data"), snapshot.Options{})
		if err != nil {
			b.Fatal(err)
		}
		job := engine.NewJob("read-"+strconv.Itoa(i), engine.Options{Parallelism: 2, Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 100 * time.Millisecond, Mode: engine.ExactlyOnce}, Store: store}})
		src, err := NewSource(SourceOptions[event]{Connection: Connection{Brokers: brokers}, Topics: []string{"in"}, Decode: decodeEvent, Bounded: true})
		if err != nil {
			b.Fatal(err)
		}
		// Read and dropped: a tail without a consumer discards (and
		// counts) what it gets.
		engine.Transform(engine.FromSplitSource(job, "in", src, src.NewReader), "drop", func(*engine.Runtime, func(*event)) (func(*event), error) {
			return func(*event) {}, nil
		})
		if err := job.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
	b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
}
