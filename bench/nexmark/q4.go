package nexmark

import (
	"fmt"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
)

// q4: average price for a category. nexmark-flink's statement:
//
//	SELECT Q.category, AVG(Q.final)
//	FROM (SELECT MAX(B.price) AS final, A.category
//	      FROM auction A, bid B
//	      WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
//	      GROUP BY A.id, A.category) Q
//	GROUP BY Q.category
//
// In Flink this is a regular join and two group-bys: an updating stream
// that retracts and re-emits a category's average with every bid that
// raises an auction's maximum. We emit what a reader of that stream ends
// up with, without the intermediate retractions:
//
//   - Step 1, a two-input keyed operator keyed by auction id
//     (engine.CoProcess), joins each auction with its bids and keeps the
//     highest price among those with dateTime in [A.dateTime, A.expires].
//     An auction's maximum is final once the watermark passes A.expires
//     (no bid at or before it can arrive later), so an event-time timer
//     there emits (category, final) and clears the auction's state. A
//     bid that arrives before its auction (the two come from different
//     source tasks) waits in the auction's key, with a timer at the bid's
//     own time: by then its auction has arrived if it ever will with a
//     dateTime at or before the bid's, so a bid still waiting can never
//     count and is dropped. Bids for auctions that closed, or that never
//     come, cost state only until the watermark passes them.
//   - Step 2, keyed by category, keeps the sum and number of the closed
//     auctions' final prices and emits the category's new average with
//     each closed auction: a category's last row is its average over all
//     closed auctions. AVG of a BIGINT is a BIGINT in Flink SQL (the
//     quotient truncated), and so is ours.
//
// An auction without a bid in its time range has no final price and does
// not count (the inner join has no row for it). At the end of a bounded
// input the watermark goes to its maximum, so every auction closes.

// Q4Result is a row of q4: the average final price of the Auctions closed
// auctions of a category so far.
type Q4Result struct {
	Category, Avg, Auctions int64
}

// q4AuctionIn and q4BidIn are q4's inputs, keyed by auction id.
type (
	q4AuctionIn struct {
		ID int64
		A  q4Auction
	}
	q4BidIn struct {
		Auction int64
		B       q4Bid
	}
	// q4Final is an auction's final price.
	q4Final struct{ Category, Final int64 }
)

func init() {
	Register(Query{
		Name: "q4",
		SQL: "SELECT Q.category, AVG(Q.final) FROM (SELECT MAX(B.price) AS final, A.category FROM auction A, bid B " +
			"WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category",
		Build: buildQ4,
	})
}

// q4Read is the field the blackhole adds up: the number of closed auctions
// each update counts, whose sum (1+…+N per category) does not depend on
// the order in which two tasks' closed auctions interleave — the running
// averages do, so two runs' sums of Avg differ.
func q4Read(r *Q4Result) int64 { return r.Auctions }

func buildQ4(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	events = withEventTime(events)
	auctions := engine.Transform(events, "q4-auctions", func(_ *engine.Runtime, next func(*q4AuctionIn)) (func(*Event), error) {
		var a q4AuctionIn
		return func(e *Event) {
			if e.Kind == gen.KindAuction {
				a = q4AuctionIn{ID: e.Auction.ID, A: q4Auction{Category: e.Auction.Category, DateTime: e.Auction.DateTime, Expires: e.Auction.Expires}}
				next(&a)
			}
		}, nil
	})
	bids := engine.Transform(events, "q4-bids", func(_ *engine.Runtime, next func(*q4BidIn)) (func(*Event), error) {
		var b q4BidIn
		return func(e *Event) {
			if e.Kind == gen.KindBid {
				b = q4BidIn{Auction: e.Bid.Auction, B: q4Bid{Price: e.Bid.Price, DateTime: e.Bid.DateTime}}
				next(&b)
			}
		}, nil
	})
	finals := engine.CoProcess(
		engine.KeyBy(auctions, engine.Int64Key(func(a *q4AuctionIn) int64 { return a.ID })),
		engine.KeyBy(bids, engine.Int64Key(func(b *q4BidIn) int64 { return b.Auction })),
		"q4-winning-bids", openQ4Winning)
	avgs := engine.KeyedProcess(engine.KeyBy(finals, engine.Int64Key(func(f *q4Final) int64 { return f.Category })), "q4-average",
		func(rt *engine.Runtime) (engine.KeyedProcessor[q4Final, Q4Result], error) {
			acc, err := keyed.NewValueState(rt.Backend(), rt.StateName("average"), keyed.Codec[q4Acc](q4AccCodec{}), keyed.StateOptions{})
			if err != nil {
				return engine.KeyedProcessor[q4Final, Q4Result]{}, err
			}
			var out Q4Result
			return engine.KeyedProcessor[q4Final, Q4Result]{
				Process: func(_ *engine.KeyedContext, f *q4Final, emit func(*Q4Result)) {
					a, _ := acc.Get()
					a.Sum += f.Final
					a.Count++
					acc.Put(a)
					out = Q4Result{Category: f.Category, Avg: a.Sum / a.Count, Auctions: a.Count}
					emit(&out)
				},
			}, nil
		})
	Emit(avgs, sink, q4Read)
	return nil
}

// openQ4Winning is q4's first step: per auction, its highest bid in its
// time range, emitted when the auction closes.
func openQ4Winning(rt *engine.Runtime) (engine.CoProcessor[q4AuctionIn, q4BidIn, q4Final], error) {
	b := rt.Backend()
	var cp engine.CoProcessor[q4AuctionIn, q4BidIn, q4Final]
	auction, err := keyed.NewValueState(b, rt.StateName("auction"), keyed.Codec[q4Auction](q4AuctionCodec{}), keyed.StateOptions{})
	if err != nil {
		return cp, err
	}
	maxPrice, err := keyed.NewValueState(b, rt.StateName("max"), keyed.Int64Codec, keyed.StateOptions{})
	if err != nil {
		return cp, err
	}
	pending, err := keyed.NewListState(b, rt.StateName("early-bids"), keyed.Codec[q4Bid](q4BidCodec{}), keyed.StateOptions{})
	if err != nil {
		return cp, err
	}
	// count folds a bid of a known auction into its maximum.
	count := func(a *q4Auction, bid q4Bid) {
		if bid.DateTime < a.DateTime || bid.DateTime > a.Expires {
			return
		}
		if m, ok := maxPrice.Get(); !ok || bid.Price > m {
			maxPrice.Put(bid.Price)
		}
	}
	var (
		out     q4Final
		waiting []q4Bid // the key's early bids, read out before writing state
	)
	cp.Process1 = func(ctx *engine.KeyedContext, in *q4AuctionIn, _ func(*q4Final)) {
		if _, ok := auction.Get(); ok {
			panic(fmt.Sprintf("nexmark: q4: auction %d arrived twice: the generator makes every auction id once", in.ID))
		}
		auction.Put(in.A)
		ctx.RegisterEventTimeTimer(in.A.Expires)
		waiting = waiting[:0]
		for v := range pending.All() {
			waiting = append(waiting, v)
		}
		if len(waiting) > 0 {
			pending.Clear()
			for _, v := range waiting {
				count(&in.A, v)
			}
		}
	}
	cp.Process2 = func(ctx *engine.KeyedContext, in *q4BidIn, _ func(*q4Final)) {
		if a, ok := auction.Get(); ok {
			count(&a, in.B)
			return
		}
		pending.Add(in.B)
		ctx.RegisterEventTimeTimer(in.B.DateTime)
	}
	cp.OnTimer = func(_ *engine.KeyedContext, ts int64, _ engine.TimeDomain, emit func(*q4Final)) {
		a, ok := auction.Get()
		switch {
		case ok && ts == a.Expires:
			m, won := maxPrice.Get()
			auction.Clear()
			maxPrice.Clear()
			if won {
				out = q4Final{Category: a.Category, Final: m}
				emit(&out)
			}
		case ok:
			// The timer of a bid that waited for this auction, which has
			// since counted it.
		default:
			// Bids still waiting at their own time: their auction, if it
			// ever comes, starts after them.
			waiting = waiting[:0]
			for v := range pending.All() {
				if v.DateTime > ts {
					waiting = append(waiting, v)
				}
			}
			pending.Update(waiting)
		}
	}
	return cp, nil
}
