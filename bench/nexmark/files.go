package nexmark

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/streamd/streamd/connectors/file"
	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// FileRunOptions configures BuildToFiles: a query whose results go, exactly
// once, to JSON lines files instead of the blackhole, checkpointed into a
// data dir, so that a run killed at any moment resumes where its last
// checkpoint left it. It is how the queries are checked across real
// crashes (`streamd nexmark run`, cmd/streamd's SIGKILL test): the
// harness's own runs never write their results.
type FileRunOptions struct {
	// Out is the file sink's directory; DataDir the checkpoint store's.
	Out, DataDir string
	// Events are events 0 … Events−1 of the default generator.
	Events int64
	// RatePerSec limits the source's events per second (0: as fast as
	// possible).
	RatePerSec float64
	// Parallelism of every operator (default 1).
	Parallelism int
	// CheckpointInterval is the interval of exactly-once checkpoints
	// (default 100 ms).
	CheckpointInterval time.Duration
	// Logger receives the engine's and the store's messages.
	Logger func(format string, args ...any)
}

// fileTarget is where Emit writes when a Sink writes files.
type fileTarget struct {
	dir, job string
	err      error
}

// toFiles ends s in the exactly-once file sink of t, one JSON object per
// result (encoding/json of the result type: this path is for checking, not
// for speed).
func toFiles[T any](s engine.Stream[T], t *fileTarget, opts []engine.OpOption) {
	fs, err := file.NewSink(t.job, file.SinkOptions[T]{Dir: t.dir, Encode: func(dst []byte, v *T) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Errorf("nexmark: cannot encode a result: %w", err))
		}
		return append(dst, b...)
	}})
	if err != nil {
		t.err = err
		return
	}
	engine.ToSink(s, "sink", engine.Sink[T](fs), opts...)
}

// BuildToFiles builds query q over o's events into files, checkpointed into
// o.DataDir (a rerun with the same directories resumes from the newest
// checkpoint). Run the returned job; close the returned store after it.
func BuildToFiles(q Query, o FileRunOptions) (*engine.Job, *snapshot.Store, error) {
	if o.Out == "" || o.DataDir == "" {
		return nil, nil, errors.New("nexmark: BuildToFiles needs an output directory and a data dir")
	}
	if o.Parallelism == 0 {
		o.Parallelism = 1
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = func(string, ...any) {}
	}
	levels := slog.New(slog.NewTextHandler(logWriter(o.Logger), &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := snapshot.Open(o.DataDir, snapshot.Options{Compression: snapshot.CompressionS2, LevelLogger: levels})
	if err != nil {
		return nil, nil, err
	}
	name := "nexmark-" + q.Name
	j := engine.NewJob(name, engine.Options{
		Parallelism: o.Parallelism, Logger: o.Logger,
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: o.CheckpointInterval, Mode: engine.ExactlyOnce},
			Store:   store,
		},
	})
	fail := func(err error) (*engine.Job, *snapshot.Store, error) {
		store.Close()
		return nil, nil, err
	}
	events, err := gen.NewSource(j, SourceName, gen.SourceOptions{Events: o.Events, RatePerSec: o.RatePerSec})
	if err != nil {
		return fail(err)
	}
	var rec *LatencyRecorder
	if q.Windowed {
		rec = NewLatencyRecorder(o.Parallelism)
	}
	sink := NewSink(rec)
	sink.files = &fileTarget{dir: o.Out, job: name}
	if err := q.Build(j, events, sink); err != nil {
		return fail(fmt.Errorf("nexmark: cannot build %s: %w", q.Name, err))
	}
	if sink.files.err != nil {
		return fail(sink.files.err)
	}
	if err := j.Validate(); err != nil {
		return fail(err)
	}
	return j, store, nil
}
