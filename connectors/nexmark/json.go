package nexmark

import (
	"fmt"
	"strconv"

	"github.com/streamd/streamd/internal/jsonx"
)

// AppendJSON appends e as one JSON object and a newline to dst: a "kind"
// field ("person", "auction" or "bid"), then Beam's field names in Beam's
// order — person: id, name, emailAddress, creditCard, city, state,
// dateTime, extra; auction: id, itemName, description, initialBid,
// reserve, dateTime, expires, seller, category, extra; bid: auction,
// bidder, price, dateTime, extra, channel, url. Times are integer ms since
// the epoch. Strings are escaped as encoding/json escapes them without
// HTML escaping (invalid UTF-8 becomes U+FFFD). It panics on an event of
// no kind (a bug).
func AppendJSON(dst []byte, e *Event) []byte {
	switch e.Kind {
	case KindPerson:
		p := &e.Person
		dst = append(dst, `{"kind":"person","id":`...)
		dst = strconv.AppendInt(dst, p.ID, 10)
		dst = appendField(dst, `,"name":`, p.Name)
		dst = appendField(dst, `,"emailAddress":`, p.EmailAddress)
		dst = appendField(dst, `,"creditCard":`, p.CreditCard)
		dst = appendField(dst, `,"city":`, p.City)
		dst = appendField(dst, `,"state":`, p.State)
		dst = append(dst, `,"dateTime":`...)
		dst = strconv.AppendInt(dst, p.DateTime, 10)
		dst = appendField(dst, `,"extra":`, p.Extra)
	case KindAuction:
		a := &e.Auction
		dst = append(dst, `{"kind":"auction","id":`...)
		dst = strconv.AppendInt(dst, a.ID, 10)
		dst = appendField(dst, `,"itemName":`, a.ItemName)
		dst = appendField(dst, `,"description":`, a.Description)
		dst = append(dst, `,"initialBid":`...)
		dst = strconv.AppendInt(dst, a.InitialBid, 10)
		dst = append(dst, `,"reserve":`...)
		dst = strconv.AppendInt(dst, a.Reserve, 10)
		dst = append(dst, `,"dateTime":`...)
		dst = strconv.AppendInt(dst, a.DateTime, 10)
		dst = append(dst, `,"expires":`...)
		dst = strconv.AppendInt(dst, a.Expires, 10)
		dst = append(dst, `,"seller":`...)
		dst = strconv.AppendInt(dst, a.Seller, 10)
		dst = append(dst, `,"category":`...)
		dst = strconv.AppendInt(dst, a.Category, 10)
		dst = appendField(dst, `,"extra":`, a.Extra)
	case KindBid:
		b := &e.Bid
		dst = append(dst, `{"kind":"bid","auction":`...)
		dst = strconv.AppendInt(dst, b.Auction, 10)
		dst = append(dst, `,"bidder":`...)
		dst = strconv.AppendInt(dst, b.Bidder, 10)
		dst = append(dst, `,"price":`...)
		dst = strconv.AppendInt(dst, b.Price, 10)
		dst = append(dst, `,"dateTime":`...)
		dst = strconv.AppendInt(dst, b.DateTime, 10)
		dst = appendField(dst, `,"extra":`, b.Extra)
		dst = appendField(dst, `,"channel":`, b.Channel)
		dst = appendField(dst, `,"url":`, b.URL)
	default:
		panic(fmt.Sprintf("nexmark: AppendJSON of an event of kind %v", e.Kind))
	}
	return append(dst, '}', '\n')
}

func appendField(dst []byte, name, s string) []byte {
	return jsonx.AppendString(append(dst, name...), s)
}
