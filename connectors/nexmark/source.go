package nexmark

import (
	"fmt"
	"math"

	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
)

// SourceOptions configures the Nexmark source of a job.
type SourceOptions struct {
	// Config decides the events (zero value: Beam's default).
	Config Config
	// Events is the number of events of the whole source, events 0 …
	// Events−1; -1 = unbounded (up to MaxEvents).
	Events int64
	// RatePerSec limits the events per second of the whole source (split
	// evenly over its tasks); 0 = as fast as possible.
	RatePerSec float64
}

// NewSource adds the Nexmark generator as a splittable source: event n is
// EventAt(cfg, n), and the source's splits are residue classes of event
// numbers (connectors/sequence's SplitSource), so a split's position is
// one integer, replay after recovery is identical, and a restore may
// rescale it. Records are reused Event values: an operator that keeps an
// event's strings beyond the call keeps them (they are immutable), and
// with them the 8 KiB chunk they were cut from (Filler).
func NewSource(j *engine.Job, name string, o SourceOptions, opts ...engine.OpOption) (engine.Stream[Event], error) {
	cfg := o.Config
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return engine.Stream[Event]{}, err
	}
	count := o.Events
	if count < -1 || count > MaxEvents {
		return engine.Stream[Event]{}, fmt.Errorf("%w: events %d is not in [0, %d] (or -1 for unbounded)", ErrInvalidConfig, count, MaxEvents)
	}
	if count == -1 {
		count = MaxEvents
	}
	seq := sequence.NewSplitSource(sequence.Options[Event]{
		Count:      count,
		Keys:       math.MaxInt64,
		RatePerSec: o.RatePerSec,
		// A Filler per task: its events' strings are cut from chunks the
		// task's goroutine owns (one allocation per ~90 events).
		NewMake: func() func(i, _ int64, e *Event) {
			f := &Filler{cfg: cfg}
			return func(i, _ int64, e *Event) { f.Fill(i, e) }
		},
	})
	return engine.FromSplitSource(j, name, seq, seq.NewReader, opts...), nil
}
