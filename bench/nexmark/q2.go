package nexmark

import (
	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
)

// Q2Result is a row of q2.
type Q2Result struct {
	Auction, Price int64
}

// q2Modulus is q2's MOD(auction, 123).
const q2Modulus = 123

func init() {
	Register(Query{
		Name:     "q2",
		SQL:      "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
		Build:    buildQ2,
		Baseline: func(cfg BaselineConfig) (BaselineResult, error) { return RunChannels(cfg, q2Stage, q2Read) },
	})
}

// q2Keep is q2's predicate. Go's % truncates like SQL's MOD, so the test
// for 0 is the same for negative ids (which the generator never makes).
func q2Keep(b *Bid) bool { return b.Auction%q2Modulus == 0 }

func q2Row(r *Q2Result, b *Bid) { *r = Q2Result{Auction: b.Auction, Price: b.Price} }

func q2Read(r *Q2Result) int64 { return r.Price }

// buildQ2: selection, a filter that keeps about one bid in 123.
func buildQ2(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	Emit(Project(Where(Bids(events), "q2-where", q2Keep), "q2", q2Row), sink, q2Read)
	return nil
}

func q2Stage(in []Event, out []Q2Result) []Q2Result {
	for i := range in {
		if e := &in[i]; e.Kind == gen.KindBid && q2Keep(&e.Bid) {
			out = append(out, Q2Result{})
			q2Row(&out[len(out)-1], &e.Bid)
		}
	}
	return out
}
