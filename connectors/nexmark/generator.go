package nexmark

import (
	"errors"
	"fmt"
	"math"
)

// Beam's GeneratorConfig constants.
const (
	FirstAuctionID  = 1000 // id of the first auction
	FirstPersonID   = 1000 // id of the first person
	FirstCategoryID = 10   // the first of NumCategories auction categories

	PersonProportion      = 1
	AuctionProportion     = 3
	BidProportion         = 46
	ProportionDenominator = PersonProportion + AuctionProportion + BidProportion // events per period: 50

	NumCategories = 5 // AuctionGenerator.NUM_CATEGORIES

	personIDLead     = 10  // PersonGenerator.PERSON_ID_LEAD
	auctionIDLead    = 10  // AuctionGenerator.AUCTION_ID_LEAD
	hotSellerRatio   = 100 // AuctionGenerator.HOT_SELLER_RATIO
	hotAuctionRatio  = 100 // BidGenerator.HOT_AUCTION_RATIO
	hotBidderRatio   = 100 // BidGenerator.HOT_BIDDER_RATIO
	minStringLength  = 3   // StringsGenerator.MIN_STRING_LENGTH
	maxEventByteSize = 1 << 12
)

// BaseTimeMs is Beam's NexmarkUtils.BASE_TIME, 2015-07-15T00:00:00Z in
// milliseconds since the epoch: the event time of event 0.
const BaseTimeMs int64 = 1436918400000

// MaxEvents is the number of events a generator can produce: Beam's
// GeneratorConfig limit for "unbounded" (Long.MAX_VALUE / (50 · 500), so
// that no id or timestamp computation overflows at the default sizes).
// Event numbers are in [0, MaxEvents).
const MaxEvents int64 = math.MaxInt64 / (ProportionDenominator * 500)

// Config is the part of Beam's NexmarkConfiguration (and GeneratorConfig)
// that decides the generated events. The zero value means Beam's
// NexmarkConfiguration.DEFAULT: EnsureDefaults fills zero fields.
type Config struct {
	// BaseTimeMs is the event time of event number 0, ms since the epoch.
	// Default BaseTimeMs (2015-07-15T00:00:00Z; Beam with
	// useWallclockEventTime=false).
	BaseTimeMs int64
	// InterEventDelayUs is the event-time distance between consecutive
	// events, in microseconds. Default 10000 (10 ms): Beam's default rate
	// of 10 000 events/s spread over numEventGenerators = 100 timelines,
	// ((1 000 000 + 5 000) / 10 000) · 100. Beam's rate shapes with two
	// different rates (firstEventRate != nextEventRate) are not ported.
	InterEventDelayUs int64
	// FirstEventID is added to every event's id (Beam's firstEventId, the
	// seed offset of a split generator). Default 0.
	FirstEventID int64
	// OutOfOrderGroupSize: events are shuffled within groups of this many
	// (Beam's outOfOrderGroupSize). Default 1: in order.
	OutOfOrderGroupSize int64
	// Average event sizes that the extra field pads to, in bytes.
	// Defaults 200, 500 and 100.
	AvgPersonByteSize, AvgAuctionByteSize, AvgBidByteSize int32
	// HotAuctionRatio, HotSellersRatio, HotBiddersRatio: 1 in this many
	// bids/auctions picks a random auction/seller/bidder; the others pick
	// a hot one. Defaults 2, 4 and 4.
	HotAuctionRatio, HotSellersRatio, HotBiddersRatio int32
	// NumInFlightAuctions is the number of recent auctions a bid may pick
	// from (and sets auction lengths). Default 100.
	NumInFlightAuctions int32
	// NumActivePeople is the number of recent people a seller or bidder is
	// picked from. Default 1000.
	NumActivePeople int32
}

// DefaultConfig returns Beam's NexmarkConfiguration.DEFAULT.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults sets every zero field to its default.
func (c *Config) EnsureDefaults() {
	def := func(p *int64, v int64) {
		if *p == 0 {
			*p = v
		}
	}
	def32 := func(p *int32, v int32) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.BaseTimeMs, BaseTimeMs)
	def(&c.InterEventDelayUs, 10000)
	def(&c.OutOfOrderGroupSize, 1)
	def32(&c.AvgPersonByteSize, 200)
	def32(&c.AvgAuctionByteSize, 500)
	def32(&c.AvgBidByteSize, 100)
	def32(&c.HotAuctionRatio, 2)
	def32(&c.HotSellersRatio, 4)
	def32(&c.HotBiddersRatio, 4)
	def32(&c.NumInFlightAuctions, 100)
	def32(&c.NumActivePeople, 1000)
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("nexmark: invalid config")

// Validate reports every field of c (after EnsureDefaults) that is out of
// range, all at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.BaseTimeMs < 0 {
		bad("BaseTimeMs %d is negative", c.BaseTimeMs)
	}
	// Timestamps are BaseTimeMs + n·InterEventDelayUs/1000 for n < MaxEvents.
	if c.InterEventDelayUs <= 0 || c.InterEventDelayUs > 1_000_000_000 {
		bad("InterEventDelayUs %d is not in [1, 1e9]", c.InterEventDelayUs)
	}
	if c.FirstEventID < 0 || c.FirstEventID > MaxEvents {
		bad("FirstEventID %d is not in [0, %d]", c.FirstEventID, MaxEvents)
	}
	if c.OutOfOrderGroupSize <= 0 || c.OutOfOrderGroupSize > 1<<20 {
		bad("OutOfOrderGroupSize %d is not in [1, %d]", c.OutOfOrderGroupSize, 1<<20)
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"AvgPersonByteSize", c.AvgPersonByteSize}, {"AvgAuctionByteSize", c.AvgAuctionByteSize}, {"AvgBidByteSize", c.AvgBidByteSize}} {
		if f.v < 0 || f.v > maxEventByteSize/2 {
			bad("%s %d is not in [0, %d]", f.name, f.v, maxEventByteSize/2)
		}
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"HotAuctionRatio", c.HotAuctionRatio}, {"HotSellersRatio", c.HotSellersRatio}, {"HotBiddersRatio", c.HotBiddersRatio},
		{"NumInFlightAuctions", c.NumInFlightAuctions}, {"NumActivePeople", c.NumActivePeople}} {
		if f.v <= 0 || f.v > 1<<24 {
			bad("%s %d is not in [1, %d]", f.name, f.v, 1<<24)
		}
	}
	return errors.Join(errs...)
}

// Kind says which of Event's records is set.
type Kind uint8

// Event kinds.
const (
	KindPerson Kind = iota + 1
	KindAuction
	KindBid
)

// String returns "person", "auction" or "bid": the JSON kind field.
func (k Kind) String() string {
	switch k {
	case KindPerson:
		return "person"
	case KindAuction:
		return "auction"
	case KindBid:
		return "bid"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Person is Beam's model.Person. DateTime is ms since the epoch.
type Person struct {
	ID                                          int64
	Name, EmailAddress, CreditCard, City, State string
	DateTime                                    int64
	Extra                                       string
}

// Auction is Beam's model.Auction. DateTime and Expires are ms since the
// epoch.
type Auction struct {
	ID                    int64
	ItemName, Description string
	InitialBid, Reserve   int64
	DateTime, Expires     int64
	Seller, Category      int64
	Extra                 string
}

// Bid is Beam's model.Bid plus nexmark-flink's Channel and URL (ours are
// derived from the event id; see the package doc).
type Bid struct {
	Auction, Bidder, Price int64
	DateTime               int64
	Extra                  string
	Channel, URL           string
}

// Event is one generated event: Kind says which of Person, Auction and
// Bid is set; the other two are zero.
type Event struct {
	Kind    Kind
	Person  Person
	Auction Auction
	Bid     Bid
}

// DateTime returns the event's event time, ms since the epoch.
func (e *Event) DateTime() int64 {
	switch e.Kind {
	case KindPerson:
		return e.Person.DateTime
	case KindAuction:
		return e.Auction.DateTime
	case KindBid:
		return e.Bid.DateTime
	}
	panic(fmt.Sprintf("nexmark: Event.DateTime of an event of kind %v", e.Kind))
}

// adjustedEventNumber is GeneratorConfig.nextAdjustedEventNumber.
func (c *Config) adjustedEventNumber(n int64) int64 {
	g := c.OutOfOrderGroupSize
	if g == 1 {
		// The default: (n/1)*1 + (n*953)%1 = n, without two 64-bit
		// divisions by a variable (tens of cycles each).
		return n
	}
	return (n/g)*g + (n*953)%g
}

// timestampForEvent is GeneratorConfig.timestampAndInterEventDelayUsForEvent
// (single rate).
func (c *Config) timestampForEvent(n int64) int64 {
	return c.BaseTimeMs + (n*c.InterEventDelayUs)/1000
}

// EventAt returns event number n (0-based) of the single generator of cfg:
// what Beam's Generator returns as its (n+1)th event. It depends on cfg and
// n only. cfg must be valid (see Config.Validate; zero fields are taken as
// defaults) and n in [0, MaxEvents), else EventAt panics.
func EventAt(cfg Config, n int64) Event {
	var e Event
	cfg.EnsureDefaults()
	cfg.fill(n, &e)
	return e
}

// Fill sets *e to event number n, like EventAt, without copying the
// config and the event. c must already be valid (EnsureDefaults and
// Validate): Fill does not check it. It allocates the event's strings
// (one allocation); a Filler saves most of that.
func (c *Config) Fill(n int64, e *Event) {
	c.fill(n, e)
}

func (c *Config) fill(n int64, e *Event) { c.fillFrom(n, e, nil) }

// fillFrom is Fill with the event's strings carved from a, or allocated
// on their own when a is nil.
func (c *Config) fillFrom(n int64, e *Event, a *arena) {
	if n < 0 || n >= MaxEvents {
		panic(fmt.Sprintf("nexmark: event number %d is not in [0, %d)", n, MaxEvents))
	}
	// Generator.nextEvent with firstEventNumber 0 and eventsCountSoFar n.
	adjusted := c.adjustedEventNumber(n)
	ts := c.timestampForEvent(adjusted)
	id := c.FirstEventID + adjusted
	r := NewJavaRandom(id)
	// The next* functions set every field of their record; the other two
	// records are zeroed only when they are not zero already. Assigning a
	// whole Event instead costs a write barrier per string field of all
	// three records while the garbage collector marks (several percent of
	// an event's cost in BenchmarkGenerate, where it marks often).
	switch rem := id % ProportionDenominator; {
	case rem < PersonProportion:
		e.Kind = KindPerson
		c.nextPerson(id, &r, ts, &e.Person, a)
		e.clearAuction()
		e.clearBid()
	case rem < PersonProportion+AuctionProportion:
		e.Kind = KindAuction
		c.nextAuction(n, id, &r, ts, &e.Auction, a)
		e.clearPerson()
		e.clearBid()
	default:
		e.Kind = KindBid
		c.nextBid(id, &r, ts, &e.Bid, a)
		e.clearPerson()
		e.clearAuction()
	}
}

// clearPerson zeroes e.Person unless it is zero. The test is what
// e.Person == Person{} means, written out so that it inlines.
func (e *Event) clearPerson() {
	p := &e.Person
	if p.ID|p.DateTime|int64(len(p.Name)|len(p.EmailAddress)|len(p.CreditCard)|len(p.City)|len(p.State)|len(p.Extra)) != 0 {
		e.Person = Person{}
	}
}

// clearAuction zeroes e.Auction unless it is zero.
func (e *Event) clearAuction() {
	a := &e.Auction
	if a.ID|a.InitialBid|a.Reserve|a.DateTime|a.Expires|a.Seller|a.Category|int64(len(a.ItemName)|len(a.Description)|len(a.Extra)) != 0 {
		e.Auction = Auction{}
	}
}

// clearBid zeroes e.Bid unless it is zero.
func (e *Event) clearBid() {
	b := &e.Bid
	if b.Auction|b.Bidder|b.Price|b.DateTime|int64(len(b.Extra)|len(b.Channel)|len(b.URL)) != 0 {
		e.Bid = Bid{}
	}
}

// Generator yields consecutive events of one config, starting anywhere.
// It carves the events' strings from chunks like a Filler (see there for
// what that means for strings kept long), and like a Filler it is not
// safe for concurrent use.
type Generator struct {
	f    Filler
	next int64
}

// NewGenerator returns a generator whose first event is number start.
// It returns an error naming every invalid field of cfg (after
// EnsureDefaults) or a start outside [0, MaxEvents].
func NewGenerator(cfg Config, start int64) (*Generator, error) {
	f, err := NewFiller(cfg)
	if err != nil {
		return nil, err
	}
	if start < 0 || start > MaxEvents {
		return nil, fmt.Errorf("%w: start event %d is not in [0, %d]", ErrInvalidConfig, start, MaxEvents)
	}
	return &Generator{f: *f, next: start}, nil
}

// Position returns the number of the event Next fills next: all a
// checkpoint needs to resume the generator.
func (g *Generator) Position() int64 { return g.next }

// Next fills *e with the next event and returns its number; it returns
// false after event MaxEvents-1.
func (g *Generator) Next(e *Event) (n int64, ok bool) {
	if g.next >= MaxEvents {
		return 0, false
	}
	n = g.next
	g.f.Fill(n, e)
	g.next++
	return n, true
}

// lastBase0PersonID is PersonGenerator.lastBase0PersonId.
func lastBase0PersonID(eventID int64) int64 {
	epoch := eventID / ProportionDenominator
	offset := eventID % ProportionDenominator
	if offset >= PersonProportion {
		offset = PersonProportion - 1
	}
	return epoch*PersonProportion + offset
}

// nextBase0PersonID is PersonGenerator.nextBase0PersonId.
func (c *Config) nextBase0PersonID(eventID int64, r *JavaRandom) int64 {
	numPeople := lastBase0PersonID(eventID) + 1
	activePeople := min(numPeople, int64(c.NumActivePeople))
	n := nextLong(r, activePeople+personIDLead)
	return numPeople - activePeople + n
}

// lastBase0AuctionID is AuctionGenerator.lastBase0AuctionId.
func lastBase0AuctionID(eventID int64) int64 {
	epoch := eventID / ProportionDenominator
	offset := eventID % ProportionDenominator
	switch {
	case offset < PersonProportion:
		epoch--
		offset = AuctionProportion - 1
	case offset >= PersonProportion+AuctionProportion:
		offset = AuctionProportion - 1
	default:
		offset -= PersonProportion
	}
	return epoch*AuctionProportion + offset
}

// nextBase0AuctionID is AuctionGenerator.nextBase0AuctionId.
func (c *Config) nextBase0AuctionID(eventID int64, r *JavaRandom) int64 {
	maxAuction := lastBase0AuctionID(eventID)
	minAuction := max(maxAuction-int64(c.NumInFlightAuctions), 0)
	return minAuction + nextLong(r, maxAuction-minAuction+1+auctionIDLead)
}

// nextLong is Beam's LongGenerator.nextLong: a random long in [0, n).
func nextLong(r *JavaRandom, n int64) int64 {
	if n < math.MaxInt32 {
		return int64(r.NextIntn(int32(n)))
	}
	v := r.NextLong() % n
	if v < 0 { // Math.abs; v > math.MinInt64 since |v| < n
		v = -v
	}
	return v
}

var (
	usStates   = [...]string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = [...]string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = [...]string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = [...]string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	// personNames[i*len(lastNames)+j] is firstNames[i] + " " + lastNames[j].
	personNames = func() (names [len(firstNames) * len(lastNames)]string) {
		for i, f := range firstNames {
			for j, l := range lastNames {
				names[i*len(lastNames)+j] = f + " " + l
			}
		}
		return names
	}()
)

// The string fields of one event share one backing string (eventString):
// those drawn before the extra field are appended to a small buffer on
// the stack first, because the extra field's length depends on theirs.
type span struct{ from, to int }

func (s span) of(str string) string { return str[s.from:s.to] }

// Upper bounds of the strings drawn before an event's extra field:
// nextString(max) is at most max-1 characters long.
const (
	maxEmailBytes      = (7 - 1) + len("@") + (5 - 1) + len(".com")
	maxCreditCardBytes = 4*4 + 3
	maxItemNameBytes   = 20 - 1
	maxDescBytes       = 100 - 1
)

// nextPerson is PersonGenerator.nextPerson.
func (c *Config) nextPerson(id int64, r *JavaRandom, ts int64, p *Person, a *arena) {
	var scratch [maxEmailBytes + maxCreditCardBytes]byte
	buf := scratch[:0]
	p.ID = lastBase0PersonID(id) + FirstPersonID
	first := r.NextIntn(int32(len(firstNames)))
	last := r.NextIntn(int32(len(lastNames)))
	p.Name = personNames[int(first)*len(lastNames)+int(last)]
	// nextEmail: nextString(7) + "@" + nextString(5) + ".com".
	var email, card span
	email.from = len(buf)
	buf = appendNextString(buf, r, 7)
	buf = append(buf, '@')
	buf = appendNextString(buf, r, 5)
	buf = append(buf, ".com"...)
	email.to = len(buf)
	// nextCreditCard: four String.format("%04d", nextInt(10000)).
	card.from = len(buf)
	for i := 0; i < 4; i++ {
		if i > 0 {
			buf = append(buf, ' ')
		}
		v := r.NextIntn(10000)
		buf = append(buf, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
	}
	card.to = len(buf)
	p.City = usCities[r.NextIntn(int32(len(usCities)))]
	p.State = usStates[r.NextIntn(int32(len(usStates)))]
	size := 8 + len(p.Name) + (email.to - email.from) + (card.to - card.from) + len(p.City) + len(p.State)
	extraLen := nextExtraLength(r, size, int(c.AvgPersonByteSize))
	s := a.eventString(buf, extraLen, r)
	p.EmailAddress, p.CreditCard, p.Extra = email.of(s), card.of(s), s[len(buf):]
	p.DateTime = ts
}

// nextAuction is AuctionGenerator.nextAuction; n is the generator's
// eventsCountSoFar.
func (c *Config) nextAuction(n, id int64, r *JavaRandom, ts int64, a *Auction, ar *arena) {
	var scratch [maxItemNameBytes + maxDescBytes]byte
	buf := scratch[:0]
	a.ID = lastBase0AuctionID(id) + FirstAuctionID
	var seller int64
	if r.NextIntn(c.HotSellersRatio) > 0 {
		seller = (lastBase0PersonID(id) / hotSellerRatio) * hotSellerRatio
	} else {
		seller = c.nextBase0PersonID(id, r)
	}
	a.Seller = seller + FirstPersonID
	a.Category = FirstCategoryID + int64(r.NextIntn(NumCategories))
	a.InitialBid = nextPrice(r)
	// nextAuctionLengthMs.
	currentEventNumber := c.adjustedEventNumber(n)
	numEventsForAuctions := (int64(c.NumInFlightAuctions) * ProportionDenominator) / AuctionProportion
	futureAuction := c.timestampForEvent(currentEventNumber + numEventsForAuctions)
	horizonMs := futureAuction - ts
	a.Expires = ts + 1 + nextLong(r, max(horizonMs*2, 1))
	var name, desc span
	name.from = len(buf)
	buf = appendNextString(buf, r, 20)
	name.to = len(buf)
	desc.from = len(buf)
	buf = appendNextString(buf, r, 100)
	desc.to = len(buf)
	a.Reserve = a.InitialBid + nextPrice(r)
	size := 8 + (name.to - name.from) + (desc.to - desc.from) + 8 + 8 + 8 + 8 + 8
	extraLen := nextExtraLength(r, size, int(c.AvgAuctionByteSize))
	s := ar.eventString(buf, extraLen, r)
	a.ItemName, a.Description, a.Extra = name.of(s), desc.of(s), s[len(buf):]
	a.DateTime = ts
}

// nextBid is BidGenerator.nextBid, plus Channel and URL.
func (c *Config) nextBid(id int64, r *JavaRandom, ts int64, b *Bid, a *arena) {
	var auction, bidder int64
	if r.NextIntn(c.HotAuctionRatio) > 0 {
		auction = (lastBase0AuctionID(id) / hotAuctionRatio) * hotAuctionRatio
	} else {
		auction = c.nextBase0AuctionID(id, r)
	}
	b.Auction = auction + FirstAuctionID
	if r.NextIntn(c.HotBiddersRatio) > 0 {
		bidder = (lastBase0PersonID(id)/hotBidderRatio)*hotBidderRatio + 1
	} else {
		bidder = c.nextBase0PersonID(id, r)
	}
	b.Bidder = bidder + FirstPersonID
	b.Price = nextPrice(r)
	b.Extra = a.eventString(nil, nextExtraLength(r, 8+8+8+8, int(c.AvgBidByteSize)), r)
	b.DateTime = ts
	b.Channel, b.URL = channelAndURL(id)
}
