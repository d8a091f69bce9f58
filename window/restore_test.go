package window_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
	"github.com/streamd/streamd/window"
)

func encodeResult(dst []byte, r *result) []byte {
	return fmt.Appendf(dst, `{"key":%d,"start":%d,"end":%d,"count":%d,"sum":%d}`, r.Key, r.Start, r.End, r.Count, r.Sum)
}

// committedResults reads the file sink's committed output: the .jsonl
// files directly in dir (what other programs see).
func committedResults(t *testing.T, dir string) []result {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []result
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r struct{ Key, Start, End, Count, Sum int64 }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", p, sc.Text(), err)
			}
			out = append(out, result(r))
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func completedCheckpoints(j *engine.Job) int {
	n := 0
	for _, s := range j.CheckpointStats() {
		if s.Status == "completed" {
			n++
		}
	}
	return n
}

// TestCrashAndRestoreFiresOnce runs a checkpointed window job into the
// file sink (two-phase commit), cancels it — a crash: what was not
// committed is lost, pre-committed transactions wait in the work folder —
// once it has committed some windows, and runs it again from its newest
// checkpoint to the end. The committed output of both runs is exactly the
// batch result: no window twice, none missing. The window state, its
// timers and the watermark come back from the checkpoint.
func TestCrashAndRestoreFiresOnce(t *testing.T) {
	const n = 30_000
	for _, a := range []window.Assigner{
		window.Sliding(100*time.Millisecond, 20*time.Millisecond),
		window.Session(30 * time.Millisecond),
	} {
		t.Run(a.String(), func(t *testing.T) {
			out, data := t.TempDir(), t.TempDir()
			job := func(rate float64) (*engine.Job, *snapshot.Store, *atomic.Int64) {
				st, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
				if err != nil {
					t.Fatal(err)
				}
				sink, err := file.NewSink("windows", file.SinkOptions[result]{Dir: out, Encode: encodeResult})
				if err != nil {
					t.Fatal(err)
				}
				var late atomic.Int64
				j := engine.NewJob("windows", engine.Options{
					Parallelism: 2, RingCapacity: 64, BatchSize: 16, Logger: t.Logf,
					Checkpointing: &engine.CheckpointOptions{
						Options: coord.Options{Interval: 10 * time.Millisecond, Mode: coord.ExactlyOnce},
						Store:   st,
					},
				})
				src := sequence.New(sequence.Options[event]{Count: n, Keys: keys, RatePerSec: rate, Make: makeEvent})
				engine.ToSink(windowed(t, j, src, a, "countsum", &late), "sink", engine.Sink[result](sink))
				return j, st, &late
			}

			// Run 1: about 1.5 s of input at this rate; cancelled early.
			j, st, _ := job(20_000)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- j.Run(ctx) }()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				if completedCheckpoints(j) >= 3 && len(committedResults(t, out)) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no committed window and three checkpoints within a minute")
				}
			}
			cancel()
			if err := <-done; err != nil && !strings.Contains(err.Error(), "cancel") {
				t.Fatalf("run 1: %v", err)
			}
			st.Close()
			before := len(committedResults(t, out))
			want := reference(n, a)
			if before >= len(want) {
				t.Fatalf("run 1 committed all %d windows before it was cancelled: the crash did not land mid-way", before)
			}

			// Run 2: from the checkpoint, as fast as it goes, to the end.
			j, st, late := job(0)
			defer st.Close()
			if err := j.Run(context.Background()); err != nil {
				t.Fatalf("run 2: %v", err)
			}
			if j.RestoredFrom() == 0 {
				t.Fatal("run 2 restored no checkpoint")
			}
			t.Logf("%d windows committed before the crash, %d after the restore from checkpoint %d", before, len(committedResults(t, out))-before, j.RestoredFrom())
			checkExactlyOnce(t, committedResults(t, out), want, false)
			if late.Load() != 0 {
				t.Fatalf("%d late records after the restore, want none", late.Load())
			}
		})
	}
}

// TestRestoreRefusesAnotherAccumulator: a checkpoint of a window operator
// restores only into one with the same assigner and accumulator type (its
// default state signature); another accumulator type under the same name
// is refused with the operator named, before anything runs, rather than
// decoding one accumulator as another.
func TestRestoreRefusesAnotherAccumulator(t *testing.T) {
	data := t.TempDir()
	a := window.Tumbling(50 * time.Millisecond)
	run := func(build func(j *engine.Job, ks engine.KeyedStream[event]) engine.Stream[result]) (*engine.Job, error) {
		st, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		j := engine.NewJob("windows", engine.Options{Parallelism: 1, Logger: func(string, ...any) {},
			Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 10 * time.Millisecond}, Store: st}})
		src := sequence.New(sequence.Options[event]{Count: 5_000, Keys: keys, Make: makeEvent})
		s := engine.WithWatermarks(engine.FromSource(j, "source", src), engine.WatermarkStrategy[event]{
			Timestamp: func(e *event) int64 { return e.TS }, OutOfOrderness: oooMs * time.Millisecond})
		out := build(j, engine.KeyBy(s, engine.Int64Key(func(e *event) int64 { return e.Key })))
		engine.ToSink(out, "sink", engine.Sink[result](&collectSink{}))
		return j, j.Run(context.Background())
	}
	if _, err := run(func(j *engine.Job, ks engine.KeyedStream[event]) engine.Stream[result] {
		return window.Aggregate(ks, "window", a, countSum(true), window.Options{}, emitCountSum)
	}); err != nil {
		t.Fatal(err)
	}
	_, err := run(func(j *engine.Job, ks engine.KeyedStream[event]) engine.Stream[result] {
		avg, err := window.Builtin("avg", func(e *event) float64 { return float64(e.Val) })
		if err != nil {
			t.Fatal(err)
		}
		return window.Aggregate(ks, "window", a, avg, window.Options{}, func(ctx *engine.KeyedContext, w window.Window, v window.Value, r *result) {
			*r = result{Key: keyOf(ctx), Start: w.Start, End: w.End}
		})
	})
	t.Logf("refused: %v", err)
	if !errors.Is(err, engine.ErrIncompatible) || !strings.Contains(err.Error(), `"window"`) {
		t.Fatalf("restoring a window of another accumulator type: %v; want ErrIncompatible naming the operator", err)
	}
}
