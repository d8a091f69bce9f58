package nexmark

import (
	"fmt"
	"math"
	"strconv"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
)

// Decimal3 is a SQL DECIMAL with three digits after the point, held as the
// number of thousandths. It is the type of q1's price: in nexmark-flink's
// `0.908 * price`, price is a BIGINT (DECIMAL(19, 0)) and the literal a
// DECIMAL(3, 3), so Flink computes an exact DECIMAL(23, 3) (precision
// p1 + p2 + 1, scale s1 + s2), never a floating-point number: 0.908 ·
// 32530001 is exactly 29537240.908. The thousandths 908 · price are that
// value, exactly, for every |price| ≤ MaxQ1Price; a float64 would round
// some of them.
type Decimal3 int64

// MaxQ1Price is the largest price q1 converts: 908 · price must fit an
// int64. The generator's prices are below 10^8 (round(10^(6u)·100) with
// u < 1), far inside it.
const MaxQ1Price = math.MaxInt64 / 908

// String formats d as SQL prints a DECIMAL(23, 3): "29537240.908".
func (d Decimal3) String() string {
	u := uint64(d)
	sign := ""
	if d < 0 {
		u, sign = -u, "-"
	}
	return fmt.Sprintf("%s%s.%03d", sign, strconv.FormatUint(u/1000, 10), u%1000)
}

// Q1Result is a row of q1: a bid with its price in euros.
type Q1Result struct {
	Auction, Bidder int64
	Price           Decimal3 // 0.908 · the bid's price
	DateTime        int64
	Extra           string
}

func init() {
	Register(Query{
		Name:     "q1",
		SQL:      "SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid",
		Build:    buildQ1,
		Baseline: func(cfg BaselineConfig) (BaselineResult, error) { return RunChannels(cfg, q1Stage, q1Read) },
	})
}

// euros is 0.908 · price, exactly.
func euros(price int64) Decimal3 {
	if price > MaxQ1Price || price < -MaxQ1Price {
		panic(fmt.Sprintf("nexmark: q1: price %d is beyond ±%d, which the generator never makes: 0.908 · price would overflow Decimal3", price, MaxQ1Price))
	}
	return Decimal3(908 * price)
}

// q1Row is q1's projection.
func q1Row(r *Q1Result, b *Bid) {
	*r = Q1Result{Auction: b.Auction, Bidder: b.Bidder, Price: euros(b.Price), DateTime: b.DateTime, Extra: b.Extra}
}

func q1Read(r *Q1Result) int64 { return int64(r.Price) }

// buildQ1: currency conversion, a projection with arithmetic.
func buildQ1(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	Emit(Project(Bids(events), "q1", q1Row), sink, q1Read)
	return nil
}

func q1Stage(in []Event, out []Q1Result) []Q1Result {
	for i := range in {
		if e := &in[i]; e.Kind == gen.KindBid {
			out = append(out, Q1Result{})
			q1Row(&out[len(out)-1], &e.Bid)
		}
	}
	return out
}
