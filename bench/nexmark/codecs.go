package nexmark

import (
	"encoding/binary"
	"fmt"

	"github.com/streamd/streamd/keyed"
)

// Codecs of the projections the stateful queries keep in keyed state
// (q3, q4, q7, q8). Each stores only the fields its query needs, in a
// compact form: integers as zig-zag varints (ids, prices and timestamps
// are a few bytes each, not eight), strings as a uvarint length and their
// bytes. Every Append allocates nothing when dst has room; Decode copies
// the strings it returns (keyed.Codec: the bytes belong to the backend)
// and rejects every malformed input with an error wrapping
// keyed.ErrCorrupt, never a panic (FuzzCodecs).

// maxStoredString bounds a stored string's length when decoding, so that
// a corrupt length cannot ask for gigabytes. The generator's longest
// strings are an auction's extra field (under 4 KiB, maxEventByteSize).
const maxStoredString = 1 << 16

// decoder reads fields one after another and keeps the first error.
type decoder struct {
	b    []byte
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: nexmark: cannot decode %s: "+format, append([]any{keyed.ErrCorrupt, d.what}, args...)...)
	}
	d.b = nil
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || l > maxStoredString || l > uint64(len(d.b)-n) {
		d.fail("bad string length")
		return ""
	}
	s := string(d.b[n : n+int(l)])
	d.b = d.b[n+int(l):]
	return s
}

// done returns the decoder's error, or an error if bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes left over", len(d.b))
	}
	return d.err
}

func appendInt(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

func appendString(dst []byte, s string) []byte {
	if len(s) > maxStoredString {
		panic(fmt.Sprintf("nexmark: a stored string of %d bytes is longer than %d, which the generator never makes", len(s), maxStoredString))
	}
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// q3Person is q3's projection of a person: what the join keeps of the
// persons of OR, ID and CA.
type q3Person struct {
	ID                int64
	Name, City, State string
}

type q3PersonCodec struct{}

func (q3PersonCodec) Append(dst []byte, p q3Person) []byte {
	dst = appendInt(dst, p.ID)
	dst = appendString(dst, p.Name)
	dst = appendString(dst, p.City)
	return appendString(dst, p.State)
}

func (q3PersonCodec) Decode(b []byte) (q3Person, error) {
	d := decoder{b: b, what: "a q3 person"}
	p := q3Person{ID: d.int(), Name: d.string(), City: d.string(), State: d.string()}
	return p, d.done()
}

// q3Auction is q3's projection of an auction of category 10.
type q3Auction struct{ ID, Seller int64 }

type q3AuctionCodec struct{}

func (q3AuctionCodec) Append(dst []byte, a q3Auction) []byte {
	return appendInt(appendInt(dst, a.ID), a.Seller)
}

func (q3AuctionCodec) Decode(b []byte) (q3Auction, error) {
	d := decoder{b: b, what: "a q3 auction"}
	a := q3Auction{ID: d.int(), Seller: d.int()}
	return a, d.done()
}

// q4Auction is what q4 keeps of an auction until it closes.
type q4Auction struct{ Category, DateTime, Expires int64 }

type q4AuctionCodec struct{}

func (q4AuctionCodec) Append(dst []byte, a q4Auction) []byte {
	// The expiry as an offset from the start: a few bytes, not eight.
	return appendInt(appendInt(appendInt(dst, a.Category), a.DateTime), a.Expires-a.DateTime)
}

func (q4AuctionCodec) Decode(b []byte) (q4Auction, error) {
	d := decoder{b: b, what: "a q4 auction"}
	a := q4Auction{Category: d.int(), DateTime: d.int()}
	a.Expires = a.DateTime + d.int()
	return a, d.done()
}

// q4Bid is what q4 keeps of a bid that arrived before its auction.
type q4Bid struct{ Price, DateTime int64 }

type q4BidCodec struct{}

func (q4BidCodec) Append(dst []byte, b q4Bid) []byte {
	return appendInt(appendInt(dst, b.Price), b.DateTime)
}

func (q4BidCodec) Decode(b []byte) (q4Bid, error) {
	d := decoder{b: b, what: "a q4 bid"}
	v := q4Bid{Price: d.int(), DateTime: d.int()}
	return v, d.done()
}

// q4Acc is q4's running average of one category: the sum of the closed
// auctions' final prices and their number.
type q4Acc struct{ Sum, Count int64 }

type q4AccCodec struct{}

func (q4AccCodec) Append(dst []byte, a q4Acc) []byte {
	return appendInt(appendInt(dst, a.Sum), a.Count)
}

func (q4AccCodec) Decode(b []byte) (q4Acc, error) {
	d := decoder{b: b, what: "a q4 average"}
	a := q4Acc{Sum: d.int(), Count: d.int()}
	if d.err == nil && a.Count <= 0 {
		d.fail("count %d is not positive", a.Count)
	}
	return a, d.done()
}

// q7Bid is what q7 keeps of a bid that may be its window's highest: the
// columns q7 outputs.
type q7Bid struct {
	Auction, Bidder, Price, DateTime int64
	Extra                            string
}

type q7BidCodec struct{}

func (q7BidCodec) Append(dst []byte, b q7Bid) []byte {
	dst = appendInt(appendInt(appendInt(appendInt(dst, b.Auction), b.Bidder), b.Price), b.DateTime)
	return appendString(dst, b.Extra)
}

func (q7BidCodec) Decode(b []byte) (q7Bid, error) {
	d := decoder{b: b, what: "a q7 bid"}
	v := q7Bid{Auction: d.int(), Bidder: d.int(), Price: d.int(), DateTime: d.int(), Extra: d.string()}
	return v, d.done()
}

// q8Person is q8's projection of a person.
type q8Person struct {
	ID   int64
	Name string
}

type q8PersonCodec struct{}

func (q8PersonCodec) Append(dst []byte, p q8Person) []byte {
	return appendString(appendInt(dst, p.ID), p.Name)
}

func (q8PersonCodec) Decode(b []byte) (q8Person, error) {
	d := decoder{b: b, what: "a q8 person"}
	p := q8Person{ID: d.int(), Name: d.string()}
	return p, d.done()
}

// q8Seller is one row of q8's auction side: a seller who created at least
// one auction in the window (nexmark-flink's GROUP BY seller, window).
type q8Seller struct{ Seller int64 }

type q8SellerCodec struct{}

func (q8SellerCodec) Append(dst []byte, s q8Seller) []byte { return appendInt(dst, s.Seller) }

func (q8SellerCodec) Decode(b []byte) (q8Seller, error) {
	d := decoder{b: b, what: "a q8 seller"}
	s := q8Seller{Seller: d.int()}
	return s, d.done()
}

// Compile-time checks that every codec is a keyed.Codec.
var (
	_ keyed.Codec[q3Person]  = q3PersonCodec{}
	_ keyed.Codec[q3Auction] = q3AuctionCodec{}
	_ keyed.Codec[q4Auction] = q4AuctionCodec{}
	_ keyed.Codec[q4Bid]     = q4BidCodec{}
	_ keyed.Codec[q4Acc]     = q4AccCodec{}
	_ keyed.Codec[q7Bid]     = q7BidCodec{}
	_ keyed.Codec[q8Person]  = q8PersonCodec{}
	_ keyed.Codec[q8Seller]  = q8SellerCodec{}
)
