package nexmark

import (
	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
)

// Q0Result is a row of q0: the bid's columns, passed through.
type Q0Result struct {
	Auction, Bidder, Price, DateTime int64
	Extra                            string
}

func init() {
	Register(Query{
		Name:     "q0",
		SQL:      "SELECT auction, bidder, price, dateTime, extra FROM bid",
		Build:    buildQ0,
		Baseline: func(cfg BaselineConfig) (BaselineResult, error) { return RunChannels(cfg, q0Stage, q0Read) },
	})
}

// q0Row is q0's projection.
func q0Row(r *Q0Result, b *Bid) {
	*r = Q0Result{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra}
}

func q0Read(r *Q0Result) int64 { return r.Price }

// buildQ0: pass-through, nexmark-flink's measure of the cost of the
// source and the framework.
func buildQ0(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	Emit(Project(Bids(events), "q0", q0Row), sink, q0Read)
	return nil
}

func q0Stage(in []Event, out []Q0Result) []Q0Result {
	for i := range in {
		if e := &in[i]; e.Kind == gen.KindBid {
			out = append(out, Q0Result{})
			q0Row(&out[len(out)-1], &e.Bid)
		}
	}
	return out
}
