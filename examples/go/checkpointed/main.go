// Command checkpointed is a complete streamd job in Go with checkpoints
// and exactly-once output to files: a bounded source of clicks, keyed by
// user, a running count per user in keyed state, and the two-phase-commit
// file sink.
//
//	go run ./examples/go/checkpointed --rate 100000   # 10 s of input; Ctrl-C stops it gracefully
//	go run ./examples/go/checkpointed --rate 100000   # resumes from the last checkpoint
//
// Stopped with Ctrl-C (SIGINT) or SIGTERM, the job takes a final checkpoint,
// commits its output and exits; run it again and it resumes from that
// checkpoint. Killed outright (kill -9), it resumes from the last completed
// checkpoint, and the output is still exactly once. Keep --data-dir and
// --out together: the checkpoints in one describe the output in the other.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// Click is the record type: any Go type will do.
type Click struct {
	Seq   int64 // position in the source, 0..count-1
	User  int64
	Count int64 // the user's clicks so far, set by the "count" operator
}

func main() {
	base := filepath.Join(os.TempDir(), "streamd-example-go")
	dataDir := flag.String("data-dir", filepath.Join(base, "data"), "checkpoint store `dir`")
	outDir := flag.String("out", filepath.Join(base, "out"), "output `dir` of the file sink (committed .jsonl files only)")
	count := flag.Int64("count", 1_000_000, "clicks to read")
	rate := flag.Float64("rate", 0, "clicks per second (0: as fast as possible)")
	flag.Parse()
	if err := run(*dataDir, *outDir, *count, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "checkpointed:", err)
		os.Exit(1)
	}
}

func run(dataDir, outDir string, count int64, rate float64) error {
	// The checkpoint store: one Pebble database, which may hold the
	// checkpoints of many jobs (by job name). Only one process may open it.
	store, err := snapshot.Open(dataDir, snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	job := engine.NewJob("clicks", engine.Options{
		Parallelism: 2,
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 100 * time.Millisecond, Mode: engine.ExactlyOnce},
			Store:   store,
		},
		OnCheckpoint: func(s engine.CheckpointStats) {
			fmt.Printf("checkpoint %d %s in %v\n", s.ID, s.Status, s.Duration.Round(time.Millisecond))
		},
	})

	// A bounded source whose position (the next record) goes into every
	// checkpoint: restored, it continues where the checkpoint was taken.
	clicks := engine.FromSource(job, "clicks", sequence.New(sequence.Options[Click]{
		Count: count, Keys: 10, RatePerSec: rate,
		Make: func(i, key int64, c *Click) { *c = Click{Seq: i, User: key} },
	}))

	// Records with equal keys go to the same task, which owns their state.
	byUser := engine.KeyBy(clicks, engine.Int64Key(func(c *Click) int64 { return c.User }))

	counted := engine.Process(byUser, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *Click, func(*Click)), error) {
		// Registered once per task; Get and Put act on the current
		// record's key. Restored from the checkpoint on a rerun.
		perUser, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		// Records arrive by pointer: change them in place and emit them;
		// never keep the pointer after returning.
		return func(_ *engine.KeyedContext, c *Click, emit func(*Click)) {
			n, _ := perUser.Get()
			perUser.Put(n + 1)
			c.Count = n + 1
			emit(c)
		}, nil
	})

	// The file sink: records go to a temporary file, which is fsynced at
	// each checkpoint and renamed into outDir when the checkpoint is
	// complete. outDir only ever holds committed output.
	sink, err := file.NewSink("clicks", file.SinkOptions[Click]{
		Dir: outDir,
		Encode: func(dst []byte, c *Click) []byte {
			return fmt.Appendf(dst, `{"seq":%d,"user":%d,"count":%d}`, c.Seq, c.User, c.Count)
		},
	})
	if err != nil {
		return err
	}
	engine.ToSink(counted, "files", sink)

	// The first SIGINT or SIGTERM stops the job gracefully: a final
	// checkpoint, its output committed. A second one kills the process.
	var stopped atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		stopped.Store(true)
		job.Stop()
	}()

	// Run restores the job's latest completed checkpoint in the store, if
	// any, and returns when the input has ended and the output is
	// committed, or after Stop.
	if err := job.Run(context.Background()); err != nil {
		return err
	}
	if id := job.RestoredFrom(); id != 0 {
		fmt.Printf("restored from checkpoint %d\n", id)
	}
	var last uint64
	for _, s := range job.CheckpointStats() {
		if s.Status == "completed" {
			last = s.ID
		}
	}
	switch {
	case stopped.Load():
		fmt.Printf("stopped after checkpoint %d; rerun to resume\n", last)
	case last == 0:
		fmt.Printf("nothing to do: the job had already finished; output in %s\n", outDir)
	default:
		fmt.Printf("finished at checkpoint %d; output in %s\n", last, outDir)
	}
	return nil
}
