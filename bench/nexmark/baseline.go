package nexmark

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	gen "github.com/streamd/streamd/connectors/nexmark"
)

// DefaultBaselineBatch is the number of events or results a baseline
// moves per channel operation: batched, as a Go programmer who cares
// about speed would, since a channel operation per record costs ~50 ns on
// this hardware (DESIGN.md) and per batch of 256 a few ns per record.
const DefaultBaselineBatch = 256

// baselineChannelBatches is the capacity, in batches, of each channel of
// a baseline: enough to ride out scheduling hiccups, as the engine's rings
// hold a few batches.
const baselineChannelBatches = 8

// BaselineConfig is what a query's baseline gets (Query.Baseline).
type BaselineConfig struct {
	// Ctx ends the run early when it is cancelled.
	Ctx context.Context
	// Events is the number of events to generate: events 0 … Events−1 of
	// Config; generator goroutine i of Parallelism makes the events n with
	// n mod Parallelism = i, as the engine's source tasks do.
	Events      int64
	Parallelism int
	// Config is the generator's configuration (zero value: the default,
	// which the engine's source uses too).
	Config gen.Config
	// BatchSize is the number of events per channel message.
	BatchSize int
	// Generated is where the generators add the events they made, a batch
	// at a time (for the progress line and the harness's check).
	Generated *atomic.Int64
	// observe, when not nil, is a func(*T) for the query's result type,
	// called by the sink goroutine with every result (tests).
	observe any
}

// BaselineResult is what a baseline's blackhole saw: the number of
// results and the sum of the field it read, which must equal streamd's.
type BaselineResult struct {
	Results int64
	Sum     int64
}

// RunChannels runs a stateless query as a Go programmer would write it
// with goroutines and channels: per parallel instance, a generator
// goroutine (a nexmark.Filler filling a batch of events, as streamd's
// source does) and a stage goroutine
// (stage: the query's filter and projection over one batch, appending to
// out), and one sink goroutine that counts the results of all stages and
// adds up read of each (the same blackhole accounting as Emit). Batches
// are recycled through free lists (Effective Go's leaky buffer), so the
// steady state allocates only what the generator does.
func RunChannels[T any](cfg BaselineConfig, stage func(in []Event, out []T) []T, read func(*T) int64) (BaselineResult, error) {
	gc, ctx, generated, err := cfg.prepare("baseline")
	if err != nil {
		return BaselineResult{}, err
	}
	observe, _ := cfg.observe.(func(*T))
	p, size := cfg.Parallelism, cfg.BatchSize

	// Every batch of results lives in resultFree, in results, or in the
	// hands of one stage or the sink: resultFree has room for all of
	// them, so returning one never blocks.
	resultBatches := baselineChannelBatches + 2*p + 1
	results := make(chan []T, baselineChannelBatches)
	resultFree := make(chan []T, resultBatches)
	for range resultBatches {
		resultFree <- make([]T, 0, size)
	}
	var stages sync.WaitGroup
	for i := range p {
		eventBatches := baselineChannelBatches + 2
		events := make(chan []Event, baselineChannelBatches)
		free := make(chan []Event, eventBatches)
		for range eventBatches {
			free <- make([]Event, size)
		}
		// The same generator as streamd's source: a Filler per goroutine.
		filler, err := gen.NewFiller(gc)
		if err != nil {
			return BaselineResult{}, err
		}
		go func() { // generator
			defer close(events)
			for n := int64(i); n < cfg.Events; {
				if ctx.Err() != nil {
					return
				}
				b := <-free
				k := 0
				for ; k < size && n < cfg.Events; k++ {
					filler.Fill(n, &b[k])
					n += int64(p)
				}
				generated.Add(int64(k))
				events <- b[:k]
			}
		}()
		stages.Add(1)
		go func() { // stage
			defer stages.Done()
			for b := range events {
				out := stage(b, (<-resultFree)[:0])
				free <- b[:cap(b)]
				if len(out) == 0 {
					resultFree <- out
					continue
				}
				results <- out
			}
		}()
	}
	go func() {
		stages.Wait()
		close(results)
	}()
	var res BaselineResult
	sinkDone := make(chan struct{})
	go func() { // sink
		defer close(sinkDone)
		for out := range results {
			res.Results += int64(len(out))
			for i := range out {
				res.Sum += read(&out[i])
			}
			if observe != nil {
				for i := range out {
					observe(&out[i])
				}
			}
			resultFree <- out
		}
	}()
	<-sinkDone
	if err := ctx.Err(); err != nil {
		return BaselineResult{}, fmt.Errorf("nexmark bench: baseline stopped: %w", err)
	}
	return res, nil
}

// prepare checks cfg for a baseline (what, in messages) and returns its
// generator config with the defaults, its context and its counter of
// generated events, filled in when cfg leaves them nil.
func (cfg *BaselineConfig) prepare(what string) (gen.Config, context.Context, *atomic.Int64, error) {
	gc := cfg.Config
	gc.EnsureDefaults()
	if err := gc.Validate(); err != nil {
		return gc, nil, nil, err
	}
	if cfg.Parallelism < 1 || cfg.BatchSize < 1 || cfg.Events < 0 || cfg.Events > gen.MaxEvents {
		return gc, nil, nil, fmt.Errorf("nexmark bench: %s: parallelism %d, batch size %d, events %d: need at least 1, 1 and 0 (at most %d events)",
			what, cfg.Parallelism, cfg.BatchSize, cfg.Events, gen.MaxEvents)
	}
	ctx := cfg.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	generated := cfg.Generated
	if generated == nil {
		generated = new(atomic.Int64)
	}
	return gc, ctx, generated, nil
}
