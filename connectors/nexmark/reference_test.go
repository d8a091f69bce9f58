package nexmark

// The generator as first ported, straightforward and slow: every
// java.util.Random draw in sequence, math.Pow for prices, the strings
// built in a scratch buffer. TestFastMatchesReference compares the
// optimized generator with it on many configs and event numbers, where
// the golden files only cover Beam's default config. Keep it as it is.

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
)

func refFill(c *Config, n int64, e *Event) {
	if n < 0 || n >= MaxEvents {
		panic(fmt.Sprintf("nexmark: event number %d is not in [0, %d)", n, MaxEvents))
	}
	// Generator.nextEvent with firstEventNumber 0 and eventsCountSoFar n.
	adjusted := refAdjustedEventNumber(c, n)
	ts := refTimestampForEvent(c, adjusted)
	id := c.FirstEventID + adjusted
	r := NewJavaRandom(id)
	switch rem := id % ProportionDenominator; {
	case rem < PersonProportion:
		*e = Event{Kind: KindPerson}
		refNextPerson(c, id, &r, ts, &e.Person)
	case rem < PersonProportion+AuctionProportion:
		*e = Event{Kind: KindAuction}
		refNextAuction(c, n, id, &r, ts, &e.Auction)
	default:
		*e = Event{Kind: KindBid}
		refNextBid(c, id, &r, ts, &e.Bid)
	}
}

func refNextPerson(c *Config, id int64, r *JavaRandom, ts int64, p *Person) {
	var scratch [maxEventByteSize]byte
	buf := scratch[:0]
	p.ID = refLastBase0PersonID(id) + FirstPersonID
	first := r.NextIntn(int32(len(firstNames)))
	last := r.NextIntn(int32(len(lastNames)))
	p.Name = personNames[int(first)*len(lastNames)+int(last)]
	// nextEmail: nextString(7) + "@" + nextString(5) + ".com".
	var email, card, extra span
	email.from = len(buf)
	buf = refAppendNextString(buf, r, 7)
	buf = append(buf, '@')
	buf = refAppendNextString(buf, r, 5)
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
	extra.from = len(buf)
	buf = refAppendNextExtra(buf, r, size, int(c.AvgPersonByteSize))
	extra.to = len(buf)
	s := string(buf)
	p.EmailAddress, p.CreditCard, p.Extra = email.of(s), card.of(s), extra.of(s)
	p.DateTime = ts
}

func refNextAuction(c *Config, n, id int64, r *JavaRandom, ts int64, a *Auction) {
	var scratch [maxEventByteSize]byte
	buf := scratch[:0]
	a.ID = refLastBase0AuctionID(id) + FirstAuctionID
	var seller int64
	if r.NextIntn(c.HotSellersRatio) > 0 {
		seller = (refLastBase0PersonID(id) / hotSellerRatio) * hotSellerRatio
	} else {
		seller = refNextBase0PersonID(c, id, r)
	}
	a.Seller = seller + FirstPersonID
	a.Category = FirstCategoryID + int64(r.NextIntn(NumCategories))
	a.InitialBid = refNextPrice(r)
	// nextAuctionLengthMs.
	currentEventNumber := refAdjustedEventNumber(c, n)
	numEventsForAuctions := (int64(c.NumInFlightAuctions) * ProportionDenominator) / AuctionProportion
	futureAuction := refTimestampForEvent(c, currentEventNumber+numEventsForAuctions)
	horizonMs := futureAuction - ts
	a.Expires = ts + 1 + refNextLong(r, max(horizonMs*2, 1))
	var name, desc, extra span
	name.from = len(buf)
	buf = refAppendNextString(buf, r, 20)
	name.to = len(buf)
	desc.from = len(buf)
	buf = refAppendNextString(buf, r, 100)
	desc.to = len(buf)
	a.Reserve = a.InitialBid + refNextPrice(r)
	size := 8 + (name.to - name.from) + (desc.to - desc.from) + 8 + 8 + 8 + 8 + 8
	extra.from = len(buf)
	buf = refAppendNextExtra(buf, r, size, int(c.AvgAuctionByteSize))
	extra.to = len(buf)
	s := string(buf)
	a.ItemName, a.Description, a.Extra = name.of(s), desc.of(s), extra.of(s)
	a.DateTime = ts
}

func refNextBid(c *Config, id int64, r *JavaRandom, ts int64, b *Bid) {
	var auction, bidder int64
	if r.NextIntn(c.HotAuctionRatio) > 0 {
		auction = (refLastBase0AuctionID(id) / hotAuctionRatio) * hotAuctionRatio
	} else {
		auction = refNextBase0AuctionID(c, id, r)
	}
	b.Auction = auction + FirstAuctionID
	if r.NextIntn(c.HotBiddersRatio) > 0 {
		bidder = (refLastBase0PersonID(id)/hotBidderRatio)*hotBidderRatio + 1
	} else {
		bidder = refNextBase0PersonID(c, id, r)
	}
	b.Bidder = bidder + FirstPersonID
	b.Price = refNextPrice(r)
	var scratch [maxEventByteSize]byte
	buf := refAppendNextExtra(scratch[:0], r, 8+8+8+8, int(c.AvgBidByteSize))
	b.Extra = string(buf)
	b.DateTime = ts
	b.Channel, b.URL = refChannelAndURL(id)
}

func refAppendNextString(buf []byte, r *JavaRandom, maxLength int32) []byte {
	start := len(buf)
	for n := minStringLength + r.NextIntn(maxLength-minStringLength); n > 0; n-- {
		if r.NextIntn(13) == 0 {
			buf = append(buf, ' ')
		} else {
			buf = append(buf, byte('a'+r.NextIntn(26)))
		}
	}
	// trim: only spaces can be at either end.
	i, j := start, len(buf)
	for i < j && buf[i] == ' ' {
		i++
	}
	for j > i && buf[j-1] == ' ' {
		j--
	}
	n := copy(buf[start:], buf[i:j])
	return buf[:start+n]
}

func refAppendNextExactString(buf []byte, r *JavaRandom, length int) []byte {
	buf = slices.Grow(buf, length)
	out := buf[len(buf) : len(buf)+length]
	for i := 0; i < len(out); {
		rnd := r.NextInt()
		for k := 0; k < 6 && i < len(out); k++ { // 6 characters per draw
			out[i] = byte('a' + rnd%26)
			rnd /= 26
			i++
		}
	}
	return buf[:len(buf)+length]
}

func refAppendNextExtra(buf []byte, r *JavaRandom, currentSize, desiredAverageSize int) []byte {
	if currentSize > desiredAverageSize {
		return buf
	}
	desiredAverageSize -= currentSize
	delta := int(int32(javaRound(float64(float64(desiredAverageSize) * 0.2))))
	minSize := desiredAverageSize - delta
	desiredSize := minSize
	if delta != 0 {
		desiredSize += int(r.NextIntn(int32(2 * delta)))
	}
	return refAppendNextExactString(buf, r, desiredSize)
}

func refNextPrice(r *JavaRandom) int64 {
	return refPriceOf(float64(r.NextDouble() * 6.0))
}

func refPriceOf(x float64) int64 {
	g := math.Pow(10, x)
	v := float64(g * 100.0)
	d := v - math.Floor(v) - 0.5
	if math.Abs(d) > 1e-12*v {
		return javaRound(v)
	}
	return javaRound(float64(pow10Exact(x) * 100.0))
}

func refAdjustedEventNumber(c *Config, n int64) int64 {
	g := c.OutOfOrderGroupSize
	return (n/g)*g + (n*953)%g
}

func refTimestampForEvent(c *Config, n int64) int64 {
	return c.BaseTimeMs + (n*c.InterEventDelayUs)/1000
}

func refLastBase0PersonID(eventID int64) int64 {
	epoch := eventID / ProportionDenominator
	offset := eventID % ProportionDenominator
	if offset >= PersonProportion {
		offset = PersonProportion - 1
	}
	return epoch*PersonProportion + offset
}

func refNextBase0PersonID(c *Config, eventID int64, r *JavaRandom) int64 {
	numPeople := refLastBase0PersonID(eventID) + 1
	activePeople := min(numPeople, int64(c.NumActivePeople))
	n := refNextLong(r, activePeople+personIDLead)
	return numPeople - activePeople + n
}

func refLastBase0AuctionID(eventID int64) int64 {
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

func refNextBase0AuctionID(c *Config, eventID int64, r *JavaRandom) int64 {
	maxAuction := refLastBase0AuctionID(eventID)
	minAuction := max(maxAuction-int64(c.NumInFlightAuctions), 0)
	return minAuction + refNextLong(r, maxAuction-minAuction+1+auctionIDLead)
}

func refNextLong(r *JavaRandom, n int64) int64 {
	if n < math.MaxInt32 {
		return int64(r.NextIntn(int32(n)))
	}
	v := r.NextLong() % n
	if v < 0 { // Math.abs; v > math.MinInt64 since |v| < n
		v = -v
	}
	return v
}

// refChannelTable holds the channel names and URLs: entries 0..3 are the hot
// channels, entry 4+k is "channel-<k>". Built on first use (about 0.7 MB).
var refChannelTable = sync.OnceValue(func() *[len(hotChannels) + NumChannels][2]string {
	t := new([len(hotChannels) + NumChannels][2]string)
	for j := range t {
		r := NewJavaRandom(int64(j))
		b := []byte("https://www.nexmark.com/")
		for i := 0; i < 3; i++ {
			b = refAppendURLString(b, &r)
			b = append(b, '/')
		}
		b = append(b, "item.htm?query=1"...)
		if j < len(hotChannels) {
			t[j] = [2]string{hotChannels[j], string(b)}
			continue
		}
		k := j - len(hotChannels)
		if r.NextIntn(10) > 0 {
			// Math.abs(Integer.reverse(k)), int32 arithmetic (abs of
			// MinInt32 stays negative, as in Java).
			rev := int32(bits.Reverse32(uint32(k)))
			if rev < 0 {
				rev = -rev
			}
			b = append(b, "&channel_id="...)
			b = strconv.AppendInt(b, int64(rev), 10)
		}
		t[j] = [2]string{"channel-" + strconv.Itoa(k), string(b)}
	}
	return t
})

// refAppendURLString appends 3 or 4 characters: '_' with probability 1/13,
// else a random lower-case letter.
func refAppendURLString(b []byte, r *JavaRandom) []byte {
	for n := minStringLength + r.NextIntn(5-minStringLength); n > 0; n-- {
		if r.NextIntn(13) == 0 {
			b = append(b, '_')
		} else {
			b = append(b, byte('a'+r.NextIntn(26)))
		}
	}
	return b
}

// refSplitmix64 is the SplitMix64 finalizer (Steele, Lea, Flood 2014).
func refSplitmix64(x uint64) uint64 {
	z := x + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// refChannelAndURL returns a bid's channel and URL, a function of its event
// id alone (see the package doc).
func refChannelAndURL(id int64) (channel, url string) {
	h := refSplitmix64(uint64(id))
	t := refChannelTable()
	j := int((h >> 1) & 3)
	if h&1 == 0 { // not hot: nexmark-flink's nextInt(HOT_CHANNELS_RATIO) == 0
		j = len(hotChannels) + int((h>>32)%NumChannels)
	}
	return t[j][0], t[j][1]
}
