package nexmark

import (
	"context"
	"slices"
	"testing"
	"time"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
)

// windowCount is a result of tumbleQuery: the bids one task saw in the
// one-second window that ends at End (exclusive, ms).
type windowCount struct {
	End, Count int64
}

// tumbleQuery is a test-only windowed query: per source task, the number
// of bids in each tumbling window of one second of event time, emitted when
// the watermark passes the window (Runtime.OnWatermark). It is a minimal
// window operator, enough to check the output-latency path end to end —
// the source's watermarks through the engine's hook, window ends through
// EmitWindowed — before the real windows exist. With chained false the
// window runs in a task of its own, behind a ring.
func tumbleQuery(chained bool) Query {
	return Query{
		Name:     "tumble",
		Windowed: true,
		Build: func(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
			s := engine.WithWatermarks(events, engine.WatermarkStrategy[Event]{
				Timestamp: func(e *Event) int64 { return e.DateTime() },
				Interval:  time.Millisecond,
			})
			var opts []engine.OpOption
			if !chained {
				opts = append(opts, engine.DisableChaining())
			}
			counts := engine.Transform(s, "tumble", func(rt *engine.Runtime, next func(*windowCount)) (func(*Event), error) {
				open := map[int64]int64{} // window end → bids
				var out windowCount
				rt.OnWatermark(func(wm int64) {
					var ends []int64
					for end := range open {
						if end-1 <= wm {
							ends = append(ends, end)
						}
					}
					slices.Sort(ends)
					for _, end := range ends {
						out = windowCount{End: end, Count: open[end]}
						delete(open, end)
						rt.SetTimestamp(end - 1)
						next(&out)
					}
				})
				return func(e *Event) {
					if e.Kind == gen.KindBid {
						open[(e.Bid.DateTime/1000+1)*1000]++
					}
				}, nil
			}, opts...)
			EmitWindowed(counts, sink, func(w *windowCount) int64 { return w.Count }, func(w *windowCount) int64 { return w.End })
			return nil
		},
	}
}

// TestWindowedLatency runs tumbleQuery, chained and not, with
// checkpoints: every result's latency is measured, none is lost.
func TestWindowedLatency(t *testing.T) {
	const events = 50_000
	bids, windows := int64(0), map[int64]bool{}
	for n := range int64(events) {
		if e := gen.EventAt(gen.Config{}, n); e.Kind == gen.KindBid {
			bids++
			windows[(e.Bid.DateTime/1000+1)*1000] = true
		}
	}
	for _, chained := range []bool{true, false} {
		r, err := Run(context.Background(), tumbleQuery(chained),
			RunConfig{Events: events, Parallelism: 2, CheckpointInterval: 5 * time.Millisecond, CheckpointParent: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		// Each of the two tasks sees bids in every window (half the
		// events each, 46 bids in 50 events).
		if r.ResultFieldSum != bids || r.Results != 2*int64(len(windows)) {
			t.Errorf("chained %v: %d results counting %d bids; want %d results, %d bids", chained, r.Results, r.ResultFieldSum, 2*len(windows), bids)
		}
		if r.OutputLatencyResults == nil || *r.OutputLatencyResults != r.Results || *r.OutputLatencyUnmatched != 0 || *r.OutputLatencyExpired != 0 {
			t.Errorf("chained %v: latency measured for %v of %d results (%v unmatched, %v expired)", chained,
				deref(r.OutputLatencyResults), r.Results, deref(r.OutputLatencyUnmatched), deref(r.OutputLatencyExpired))
		}
		if r.OutputLatencyP50Ms == nil || r.OutputLatencyP99Ms == nil || *r.OutputLatencyP99Ms < *r.OutputLatencyP50Ms {
			t.Errorf("chained %v: latency p50 %v, p99 %v", chained, r.OutputLatencyP50Ms, r.OutputLatencyP99Ms)
		}
		t.Logf("chained %v: %d results, %d early; p50 %.3f ms, p99 %.3f ms", chained, r.Results, *r.OutputLatencyEarly, *r.OutputLatencyP50Ms, *r.OutputLatencyP99Ms)
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}
