package nexmark

import (
	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/join"
)

// q3: local item suggestion. nexmark-flink's statement:
//
//	SELECT P.name, P.city, P.state, A.id
//	FROM auction AS A INNER JOIN person AS P on A.seller = P.id
//	WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
//
// A regular (unwindowed) inner join: the filters first, then join.Inner
// keyed by the person's id on one side and the auction's seller on the
// other, each side keeping only the columns the output needs
// (q3Person, q3Auction). As in Flink, without a state TTL the join keeps
// every filtered person and auction: with the default generator about
// half of the persons and a fifth of the auctions, some 30 bytes each.
// The output is an insert-only stream (an inner join of two insert-only
// inputs), one row per matching pair, whichever side came second.

// Q3Result is a row of q3.
type Q3Result struct {
	Name, City, State string
	ID                int64 // the auction's id
}

// q3Category is q3's auction category.
const q3Category = 10

func init() {
	Register(Query{
		Name: "q3",
		SQL: "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P on A.seller = P.id " +
			"WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')",
		Build: buildQ3,
	})
}

// q3State is q3's predicate on persons.
func q3State(state string) bool { return state == "OR" || state == "ID" || state == "CA" }

func q3Read(r *Q3Result) int64 { return r.ID }

func buildQ3(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	persons := engine.Transform(events, "q3-persons", func(_ *engine.Runtime, next func(*q3Person)) (func(*Event), error) {
		var p q3Person
		return func(e *Event) {
			if e.Kind == gen.KindPerson && q3State(e.Person.State) {
				p = q3Person{ID: e.Person.ID, Name: e.Person.Name, City: e.Person.City, State: e.Person.State}
				next(&p)
			}
		}, nil
	})
	auctions := engine.Transform(events, "q3-auctions", func(_ *engine.Runtime, next func(*q3Auction)) (func(*Event), error) {
		var a q3Auction
		return func(e *Event) {
			if e.Kind == gen.KindAuction && e.Auction.Category == q3Category {
				a = q3Auction{ID: e.Auction.ID, Seller: e.Auction.Seller}
				next(&a)
			}
		}, nil
	})
	joined := join.Inner(
		engine.KeyBy(persons, engine.Int64Key(func(p *q3Person) int64 { return p.ID })),
		engine.KeyBy(auctions, engine.Int64Key(func(a *q3Auction) int64 { return a.Seller })),
		"q3-join", join.Options[q3Person, q3Auction]{LeftCodec: q3PersonCodec{}, RightCodec: q3AuctionCodec{}},
		func(p *q3Person, a *q3Auction, out *Q3Result) {
			*out = Q3Result{Name: p.Name, City: p.City, State: p.State, ID: a.ID}
		})
	Emit(joined, sink, q3Read)
	return nil
}
