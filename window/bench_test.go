package window_test

import (
	"context"
	"testing"
	"time"

	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/window"
)

// benchAssigners: 1000 keys, 10 records per ms, so each key has a record
// every 100 ms: a tumbling second holds 10 per key; a sliding second every
// 100 ms is 10 panes; a session with a 50 ms gap holds one record, so
// every record opens, fires and drops a session (the costliest case).
var benchAssigners = []struct {
	name string
	a    window.Assigner
}{
	{"tumbling", window.Tumbling(time.Second)},
	{"sliding", window.Sliding(time.Second, 100*time.Millisecond)},
	{"session", window.Session(50 * time.Millisecond)},
}

func benchEvent(i, key int64, e *event) { *e = event{Key: key, TS: i / 10, Val: i & 127} }

// discardSink counts what it is given.
type discardSink struct{ n int64 }

func (d *discardSink) Recover([][]byte) error { return nil }
func (d *discardSink) NewWriter(engine.SinkContext) (engine.SinkWriter[result], error) {
	return (*discardWriter)(d), nil
}

type discardWriter discardSink

func (w *discardWriter) Write(*result) error              { w.n++; return nil }
func (w *discardWriter) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (w *discardWriter) Commit(uint64) error              { return nil }
func (w *discardWriter) Finish() error                    { return nil }
func (w *discardWriter) Close() error                     { return nil }

// BenchmarkJob runs a whole job per assigner, b.N records through one
// task of the source and one of the window operator, generator included:
// records/s is per core of the machine's two.
func BenchmarkJob(b *testing.B) {
	for _, c := range benchAssigners {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			sink := &discardSink{}
			j := engine.NewJob("bench", engine.Options{Parallelism: 1})
			src := engine.FromSource(j, "source", sequence.New(sequence.Options[event]{Count: int64(b.N), Keys: 1000, Make: benchEvent}))
			src = engine.WithWatermarks(src, engine.WatermarkStrategy[event]{Timestamp: func(e *event) int64 { return e.TS }})
			ks := engine.KeyBy(src, engine.Int64Key(func(e *event) int64 { return e.Key }))
			engine.ToSink(window.Aggregate(ks, "window", c.a, countSum(true), window.Options{}, emitCountSum), "sink", engine.Sink[result](sink))
			start := time.Now()
			b.ResetTimer()
			if err := j.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			if sink.n == 0 && b.N > 10_000 {
				b.Fatal("no window fired")
			}
		})
	}
}
