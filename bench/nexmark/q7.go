package nexmark

import (
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
)

// q7: highest bid. nexmark-flink's statement:
//
//	SELECT B.auction, B.bidder, B.price, B.dateTime, B.extra
//	from bid B
//	JOIN (SELECT MAX(price) AS maxprice, window_end as dateTime
//	      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY window_start, window_end) B1
//	ON B.price = B1.maxprice
//	WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime
//
// For every tumbling 10 s window [s, e) that holds a bid, the bids whose
// price is the window's highest, ties included. SQL's BETWEEN includes
// both ends, so a bid at exactly e — which belongs to the next window —
// is also a row of window [s, e) when its price equals that window's
// highest; we keep that edge case.
//
// The plan: every bid goes, keyed by the end of its window, to a keyed
// step that keeps the window's highest price so far and the bids that
// have it (usually one; a bid with a higher price replaces them, which
// happens about ln(bids) times per window), and a bid at exactly a window
// end goes to that window's key as well, kept aside as an edge bid. An
// event-time timer at e fires when the watermark has passed every bid at
// or before e, and emits the window's highest bids and the edge bids of
// the same price. Flink's plan joins every bid with the windows' maxima
// (state for every bid until its window closes); this keeps a window's
// candidates only.

// Q7Result is a row of q7: a bid with its window's highest price, and the
// window's end (B1.dateTime).
type Q7Result struct {
	Auction, Bidder, Price, DateTime int64
	Extra                            string
	WindowEnd                        int64
}

// q7Window is q7's window size.
const q7Window = 10 * time.Second

// q7In is a bid on its way to its window's key.
type q7In struct {
	WindowEnd int64
	// Edge: the bid is at exactly WindowEnd, so it belongs to the next
	// window and is a row of this one only if its price is this window's
	// highest.
	Edge bool
	Bid  q7Bid
}

func init() {
	Register(Query{
		Name: "q7",
		SQL: "SELECT B.auction, B.bidder, B.price, B.dateTime, B.extra from bid B JOIN (SELECT MAX(price) AS maxprice, window_end as dateTime " +
			"FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) GROUP BY window_start, window_end) B1 " +
			"ON B.price = B1.maxprice WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime",
		Windowed: true,
		Build:    buildQ7,
	})
}

func q7Read(r *Q7Result) int64      { return r.Price }
func q7WindowEnd(r *Q7Result) int64 { return r.WindowEnd }

func buildQ7(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	sizeMs := q7Window.Milliseconds()
	bids := engine.Transform(Bids(withEventTime(events)), "q7-windows", func(_ *engine.Runtime, next func(*q7In)) (func(*Bid), error) {
		var in q7In
		return func(b *Bid) {
			in = q7In{WindowEnd: alignDown(b.DateTime, sizeMs) + sizeMs,
				Bid: q7Bid{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra}}
			next(&in)
			if b.DateTime == in.WindowEnd-sizeMs {
				in.WindowEnd, in.Edge = b.DateTime, true
				next(&in)
			}
		}, nil
	})
	highest := engine.KeyedProcess(engine.KeyBy(bids, engine.Int64Key(func(in *q7In) int64 { return in.WindowEnd })), "q7-highest", openQ7Highest)
	EmitWindowed(highest, sink, q7Read, q7WindowEnd)
	return nil
}

// openQ7Highest is q7's keyed step, keyed by window end.
func openQ7Highest(rt *engine.Runtime) (engine.KeyedProcessor[q7In, Q7Result], error) {
	b := rt.Backend()
	maxPrice, err := keyed.NewValueState(b, rt.StateName("max"), keyed.Int64Codec, keyed.StateOptions{})
	if err != nil {
		return engine.KeyedProcessor[q7In, Q7Result]{}, err
	}
	top, err := keyed.NewListState(b, rt.StateName("highest"), keyed.Codec[q7Bid](q7BidCodec{}), keyed.StateOptions{})
	if err != nil {
		return engine.KeyedProcessor[q7In, Q7Result]{}, err
	}
	edge, err := keyed.NewListState(b, rt.StateName("edge"), keyed.Codec[q7Bid](q7BidCodec{}), keyed.StateOptions{})
	if err != nil {
		return engine.KeyedProcessor[q7In, Q7Result]{}, err
	}
	var (
		out     Q7Result
		scratch []q7Bid // the window's rows, read out before emitting
	)
	return engine.KeyedProcessor[q7In, Q7Result]{
		Process: func(ctx *engine.KeyedContext, in *q7In, _ func(*Q7Result)) {
			if in.Edge {
				ctx.RegisterEventTimeTimer(in.WindowEnd)
				edge.Add(in.Bid)
				return
			}
			m, ok := maxPrice.Get()
			switch {
			case !ok:
				// The window's first bid. The timer is at the window's end,
				// not its last millisecond: an edge bid at the end may
				// still come.
				ctx.RegisterEventTimeTimer(in.WindowEnd)
				fallthrough
			case in.Bid.Price > m:
				maxPrice.Put(in.Bid.Price)
				top.Clear()
				top.Add(in.Bid)
			case in.Bid.Price == m:
				top.Add(in.Bid)
			}
		},
		OnTimer: func(ctx *engine.KeyedContext, end int64, _ engine.TimeDomain, emit func(*Q7Result)) {
			m, ok := maxPrice.Get()
			scratch = scratch[:0]
			if ok {
				for v := range top.All() {
					scratch = append(scratch, v)
				}
				for v := range edge.All() {
					if v.Price == m {
						scratch = append(scratch, v)
					}
				}
			}
			// A window with edge bids only has no highest price: no row.
			maxPrice.Clear()
			top.Clear()
			edge.Clear()
			for i := range scratch {
				v := &scratch[i]
				out = Q7Result{Auction: v.Auction, Bidder: v.Bidder, Price: v.Price, DateTime: v.DateTime, Extra: v.Extra, WindowEnd: end}
				emit(&out)
			}
		},
	}, nil
}
