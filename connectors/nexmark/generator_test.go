package nexmark

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestProportionsAndMonotoneIDs(t *testing.T) {
	cfg := DefaultConfig()
	counts := map[Kind]int64{}
	lastPerson, lastAuction, lastTime := int64(-1), int64(-1), int64(-1)
	const n = 50 * 2000
	for i := int64(0); i < n; i++ {
		e := EventAt(cfg, i)
		counts[e.Kind]++
		wantKind := KindBid
		switch i % 50 {
		case 0:
			wantKind = KindPerson
		case 1, 2, 3:
			wantKind = KindAuction
		}
		if e.Kind != wantKind {
			t.Fatalf("event %d is a %v, want a %v", i, e.Kind, wantKind)
		}
		if dt := e.DateTime(); dt != BaseTimeMs+10*i || dt <= lastTime {
			t.Fatalf("event %d: dateTime %d, want %d", i, dt, BaseTimeMs+10*i)
		} else {
			lastTime = dt
		}
		switch e.Kind {
		case KindPerson:
			if e.Person.ID != lastPerson+1 && lastPerson >= 0 || lastPerson < 0 && e.Person.ID != FirstPersonID {
				t.Fatalf("event %d: person id %d after %d", i, e.Person.ID, lastPerson)
			}
			lastPerson = e.Person.ID
		case KindAuction:
			if e.Auction.ID != lastAuction+1 && lastAuction >= 0 || lastAuction < 0 && e.Auction.ID != FirstAuctionID {
				t.Fatalf("event %d: auction id %d after %d", i, e.Auction.ID, lastAuction)
			}
			lastAuction = e.Auction.ID
			a := e.Auction
			if a.Expires <= a.DateTime || a.Reserve < a.InitialBid || a.Category < FirstCategoryID || a.Category >= FirstCategoryID+NumCategories || a.Seller < FirstPersonID || a.Seller > lastPerson+personIDLead {
				t.Fatalf("event %d: implausible auction %+v", i, a)
			}
		case KindBid:
			b := e.Bid
			if b.Auction < FirstAuctionID || b.Auction > lastAuction+auctionIDLead || b.Bidder < FirstPersonID || b.Bidder > lastPerson+personIDLead || b.Price < 100 || b.Channel == "" || !strings.HasPrefix(b.URL, "https://www.nexmark.com/") {
				t.Fatalf("event %d: implausible bid %+v", i, b)
			}
		}
	}
	if counts[KindPerson] != n/50 || counts[KindAuction] != 3*n/50 || counts[KindBid] != 46*n/50 {
		t.Fatalf("kinds %v, want 1:3:46", counts)
	}
}

func TestDeterministicAndGeneratorMatchesEventAt(t *testing.T) {
	cfg := DefaultConfig()
	g, err := NewGenerator(cfg, 999_990)
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	for i := 0; i < 500; i++ {
		n, ok := g.Next(&e)
		if !ok || n != 999_990+int64(i) {
			t.Fatalf("Next = %d, %v", n, ok)
		}
		a, b := EventAt(cfg, n), EventAt(Config{}, n)
		if !reflect.DeepEqual(a, e) || !reflect.DeepEqual(b, e) {
			t.Fatalf("event %d differs between calls:\n%+v\n%+v\n%+v", n, a, b, e)
		}
	}
	if g.Position() != 999_990+500 {
		t.Fatalf("Position %d", g.Position())
	}
	end, _ := NewGenerator(cfg, MaxEvents-1)
	if _, ok := end.Next(&e); !ok {
		t.Fatal("no event MaxEvents-1")
	}
	if _, ok := end.Next(&e); ok {
		t.Fatal("an event at MaxEvents")
	}
}

func TestHotAuctionsAndBidders(t *testing.T) {
	cfg := DefaultConfig()
	hotAuction, hotBidder, bids := 0, 0, 0
	for i := int64(0); i < 200_000; i++ {
		e := EventAt(cfg, i)
		if e.Kind != KindBid {
			continue
		}
		bids++
		if (e.Bid.Auction-FirstAuctionID)%100 == 0 {
			hotAuction++
		}
		if (e.Bid.Bidder-FirstPersonID)%100 == 1 {
			hotBidder++
		}
	}
	// P(hot auction) = 1/2 (plus rare random hits), P(hot bidder) = 3/4.
	if f := float64(hotAuction) / float64(bids); f < 0.48 || f > 0.53 {
		t.Errorf("hot auction fraction %.3f, want ~0.5", f)
	}
	if f := float64(hotBidder) / float64(bids); f < 0.73 || f > 0.78 {
		t.Errorf("hot bidder fraction %.3f, want ~0.75", f)
	}
}

func TestChannels(t *testing.T) {
	hot, seen := 0, map[string]string{}
	for i := int64(0); i < 100_000; i++ {
		c, u := channelAndURL(i)
		if c2, u2 := channelAndURL(i); c2 != c || u2 != u {
			t.Fatal("channelAndURL not deterministic")
		}
		if prev, ok := seen[c]; ok && prev != u {
			t.Fatalf("channel %s has URLs %s and %s", c, prev, u)
		}
		seen[c] = u
		if !strings.HasPrefix(c, "channel-") {
			hot++
		}
	}
	if f := float64(hot) / 100_000; f < 0.49 || f > 0.51 {
		t.Errorf("hot channel fraction %.3f, want 0.5", f)
	}
	if len(seen) < 9000 {
		t.Errorf("only %d distinct channels in 100 000 bids", len(seen))
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.HotAuctionRatio, c.InterEventDelayUs, c.AvgBidByteSize = -1, -5, 1<<20
	err := c.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err %v", err)
	}
	for _, name := range []string{"HotAuctionRatio", "InterEventDelayUs", "AvgBidByteSize"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if _, err := NewGenerator(DefaultConfig(), -1); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("start -1: %v", err)
	}
}

func TestEventAtPanicsOutOfRange(t *testing.T) {
	for _, n := range []int64{-1, MaxEvents} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("EventAt(%d) did not panic", n)
				}
			}()
			EventAt(DefaultConfig(), n)
		}()
	}
}

// TestAppendJSONDecodes checks that generated events decode with
// encoding/json into Beam's field names.
func TestAppendJSONDecodes(t *testing.T) {
	cfg := DefaultConfig()
	for i := int64(0); i < 5000; i++ {
		e := EventAt(cfg, i)
		line := AppendJSON(nil, &e)
		if line[len(line)-1] != '\n' {
			t.Fatal("no newline")
		}
		checkDecodes(t, line, &e)
	}
}

func checkDecodes(t *testing.T, line []byte, e *Event) {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	num := func(v int64) json.Number { return json.Number(itoa(v)) }
	var want map[string]any
	switch e.Kind {
	case KindPerson:
		p := e.Person
		want = map[string]any{"kind": "person", "id": num(p.ID), "name": p.Name, "emailAddress": p.EmailAddress, "creditCard": p.CreditCard,
			"city": p.City, "state": p.State, "dateTime": num(p.DateTime), "extra": p.Extra}
	case KindAuction:
		a := e.Auction
		want = map[string]any{"kind": "auction", "id": num(a.ID), "itemName": a.ItemName, "description": a.Description, "initialBid": num(a.InitialBid),
			"reserve": num(a.Reserve), "dateTime": num(a.DateTime), "expires": num(a.Expires), "seller": num(a.Seller), "category": num(a.Category), "extra": a.Extra}
	case KindBid:
		b := e.Bid
		want = map[string]any{"kind": "bid", "auction": num(b.Auction), "bidder": num(b.Bidder), "price": num(b.Price), "dateTime": num(b.DateTime),
			"extra": b.Extra, "channel": b.Channel, "url": b.URL}
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("%s decodes to\n%v\nwant\n%v", line, m, want)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// validUTF8 replaces every invalid byte with U+FFFD, as encoding/json does.
func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func FuzzAppendJSON(f *testing.F) {
	f.Add(uint8(1), int64(7), "Peter Jones", "a\"b\\c", "\x00\x1f\u2028", int64(-1), "\xff\xfeok")
	f.Add(uint8(2), int64(1<<62), "", "é日本", "\t\n\r", int64(0), "<>&")
	f.Add(uint8(3), int64(-5), "x", "y", "z", int64(42), "")
	f.Fuzz(func(t *testing.T, kind uint8, a int64, s1, s2, s3 string, b int64, s4 string) {
		e := Event{Kind: Kind(kind%3 + 1)}
		switch e.Kind {
		case KindPerson:
			e.Person = Person{ID: a, Name: s1, EmailAddress: s2, CreditCard: s3, City: s4, State: s1 + s2, DateTime: b, Extra: s4 + s3}
		case KindAuction:
			e.Auction = Auction{ID: a, ItemName: s1, Description: s2, InitialBid: b, Reserve: a ^ b, DateTime: b, Expires: a, Seller: -a, Category: b, Extra: s3 + s4}
		case KindBid:
			e.Bid = Bid{Auction: a, Bidder: b, Price: a - b, DateTime: b, Extra: s1, Channel: s2, URL: s3 + s4}
		}
		line := AppendJSON(nil, &e)
		// encoding/json turns invalid UTF-8 into U+FFFD, and so does
		// AppendJSON: compare with the fields as encoding/json would see them.
		norm := validUTF8
		n := e
		n.Person.Name, n.Person.EmailAddress, n.Person.CreditCard, n.Person.City, n.Person.State, n.Person.Extra =
			norm(e.Person.Name), norm(e.Person.EmailAddress), norm(e.Person.CreditCard), norm(e.Person.City), norm(e.Person.State), norm(e.Person.Extra)
		n.Auction.ItemName, n.Auction.Description, n.Auction.Extra = norm(e.Auction.ItemName), norm(e.Auction.Description), norm(e.Auction.Extra)
		n.Bid.Extra, n.Bid.Channel, n.Bid.URL = norm(e.Bid.Extra), norm(e.Bid.Channel), norm(e.Bid.URL)
		checkDecodes(t, line, &n)
	})
}
