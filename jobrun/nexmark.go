package jobrun

import (
	"fmt"
	"math"

	"github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
)

// The job package bounds `events:` by its own copy of the generator's
// limit (it must not import connectors); the two must agree.
const (
	_ = uint(job.MaxNexmarkEvents - nexmark.MaxEvents)
	_ = uint(nexmark.MaxEvents - job.MaxNexmarkEvents)
)

// nexmarkSource adds the Nexmark generator as a source of rows of
// job.NexmarkSchema. It is nexmark.NewSource's source (a sequence split
// source over event numbers, so positions and replay are the same) whose
// records are rows rather than events: event n becomes a row directly,
// with no operator in between, and the event's fields of the other kinds
// are zero.
func nexmarkSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, opt []engine.OpOption) (engine.Stream[job.Row], error) {
	cfg := nexmark.DefaultConfig()
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return engine.Stream[job.Row]{}, err
	}
	count := src.Events
	if count == -1 {
		count = nexmark.MaxEvents
	}
	fill := NexmarkRow(schema)
	seq := sequence.NewSplitSource(sequence.Options[job.Row]{
		Count:      count,
		Keys:       math.MaxInt64,
		RatePerSec: src.RatePerSec,
		Make: func(i, _ int64, r *job.Row) {
			// One event per call on the reader's goroutine: it stays on the
			// stack, and its strings (one allocation, Config.Fill) go to
			// the row.
			var e nexmark.Event
			cfg.Fill(i, &e)
			fill(&e, r)
		},
	})
	return engine.FromSplitSource(j, name, seq, seq.NewReader, opt...), nil
}

// NexmarkRow returns a function that writes an event into a row of
// schema, which must be job.NexmarkSchema(): "kind" and the fields of the
// event's kind, and zero in the fields of the other kinds.
func NexmarkRow(schema *job.Schema) func(e *nexmark.Event, r *job.Row) {
	slot := func(name string, t job.Type) int {
		f, ok := schema.Lookup(name)
		if !ok || f.Type != t {
			panic(fmt.Sprintf("jobrun: NexmarkRow: schema %s has no %s field %q: it is not job.NexmarkSchema", schema, t, name))
		}
		return f.Slot
	}
	i := func(name string) int { return slot(name, job.TypeInt) }
	s := func(name string) int { return slot(name, job.TypeString) }
	kind, id, dateTime, extra := s("kind"), i("id"), i("dateTime"), s("extra")
	name, email, card, city, state := s("name"), s("emailAddress"), s("creditCard"), s("city"), s("state")
	item, desc, initialBid, reserve, expires, seller, category := s("itemName"), s("description"), i("initialBid"), i("reserve"), i("expires"), i("seller"), i("category")
	auction, bidder, price, channel, url := i("auction"), i("bidder"), i("price"), s("channel"), s("url")
	return func(e *nexmark.Event, r *job.Row) {
		*r = job.Row{}
		switch e.Kind {
		case nexmark.KindPerson:
			p := &e.Person
			r.Str[kind] = "person"
			r.SetInt(id, p.ID)
			r.Str[name], r.Str[email], r.Str[card], r.Str[city], r.Str[state] = p.Name, p.EmailAddress, p.CreditCard, p.City, p.State
			r.SetInt(dateTime, p.DateTime)
			r.Str[extra] = p.Extra
		case nexmark.KindAuction:
			a := &e.Auction
			r.Str[kind] = "auction"
			r.SetInt(id, a.ID)
			r.Str[item], r.Str[desc] = a.ItemName, a.Description
			r.SetInt(initialBid, a.InitialBid)
			r.SetInt(reserve, a.Reserve)
			r.SetInt(dateTime, a.DateTime)
			r.SetInt(expires, a.Expires)
			r.SetInt(seller, a.Seller)
			r.SetInt(category, a.Category)
			r.Str[extra] = a.Extra
		case nexmark.KindBid:
			b := &e.Bid
			r.Str[kind] = "bid"
			r.SetInt(auction, b.Auction)
			r.SetInt(bidder, b.Bidder)
			r.SetInt(price, b.Price)
			r.SetInt(dateTime, b.DateTime)
			r.Str[extra], r.Str[channel], r.Str[url] = b.Extra, b.Channel, b.URL
		default:
			panic(fmt.Sprintf("jobrun: a nexmark event of kind %v", e.Kind))
		}
	}
}
