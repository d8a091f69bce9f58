package nexmark

import (
	"encoding/binary"
	"time"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/join"
	"github.com/streamd/streamd/window"
)

// q8: monitor new users. nexmark-flink's statement:
//
//	SELECT P.id, P.name, P.starttime
//	FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY id, name, window_start, window_end) P
//	JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY seller, window_start, window_end) A
//	ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
//
// The persons who created an auction in the tumbling 10 s window in
// which they registered: one row per such person and window, however
// many auctions they created in it. The auction side is grouped first,
// as in Flink's plan: a tumbling window per seller (window.Aggregate,
// Count) turns a seller's auctions of a window into one row, stamped
// with the window's last millisecond; then join.Tumbling joins persons
// (keyed by id) with those rows (keyed by seller) in the same windows. A
// seller's row reaches the join before the watermark that closes its
// window does (the window operator emits before it forwards the
// watermark), so it is never late there. The person side needs no
// grouping: the generator gives every person a new id.

// Q8Result is a row of q8: a person who registered and created an auction
// in the window starting at Start.
type Q8Result struct {
	ID    int64
	Name  string
	Start int64 // window_start, ms since the epoch
}

// q8Window is q8's window size.
const q8Window = 10 * time.Second

func init() {
	Register(Query{
		Name: "q8",
		SQL: "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime " +
			"FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) GROUP BY id, name, window_start, window_end) P " +
			"JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) " +
			"GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
		Windowed: true,
		Build:    buildQ8,
	})
}

func q8Read(r *Q8Result) int64      { return r.ID }
func q8WindowEnd(r *Q8Result) int64 { return r.Start + q8Window.Milliseconds() }

func buildQ8(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	events = withEventTime(events)
	persons := engine.Transform(events, "q8-persons", func(_ *engine.Runtime, next func(*q8Person)) (func(*Event), error) {
		var p q8Person
		return func(e *Event) {
			if e.Kind == gen.KindPerson {
				p = q8Person{ID: e.Person.ID, Name: e.Person.Name}
				next(&p)
			}
		}, nil
	})
	// Only the seller crosses the exchange, not the whole event.
	auctions := engine.Transform(events, "q8-auctions", func(_ *engine.Runtime, next func(*q8Seller)) (func(*Event), error) {
		var s q8Seller
		return func(e *Event) {
			if e.Kind == gen.KindAuction {
				s = q8Seller{Seller: e.Auction.Seller}
				next(&s)
			}
		}, nil
	})
	sellers := window.Aggregate(
		engine.KeyBy(auctions, engine.Int64Key(func(s *q8Seller) int64 { return s.Seller })),
		"q8-sellers", window.Tumbling(q8Window), window.Count[q8Seller](), window.Options{},
		func(ctx *engine.KeyedContext, _ window.Window, _ int64, r *q8Seller) {
			*r = q8Seller{Seller: int64(binary.BigEndian.Uint64(ctx.Key()))}
		})
	joined := join.Tumbling(
		engine.KeyBy(persons, engine.Int64Key(func(p *q8Person) int64 { return p.ID })),
		engine.KeyBy(sellers, engine.Int64Key(func(s *q8Seller) int64 { return s.Seller })),
		"q8-join", q8Window, 0, join.Options[q8Person, q8Seller]{LeftCodec: q8PersonCodec{}, RightCodec: q8SellerCodec{}},
		func(w join.Window, p *q8Person, _ *q8Seller, out *Q8Result) {
			*out = Q8Result{ID: p.ID, Name: p.Name, Start: w.Start}
		})
	EmitWindowed(joined, sink, q8Read, q8WindowEnd)
	return nil
}
