package nexmark

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/streamd/streamd/keyed"
)

// checkRoundTrip encodes v, decodes it back, and checks that nothing
// allocates when dst has room.
func checkRoundTrip[T comparable](t *testing.T, c keyed.Codec[T], v T) {
	t.Helper()
	b := c.Append(nil, v)
	got, err := c.Decode(b)
	if err != nil || got != v {
		t.Fatalf("%T: %+v decodes to %+v, %v", c, v, got, err)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = c.Append(buf[:0], v) }); n != 0 {
		t.Errorf("%T: Append allocates %.0f times", c, n)
	}
	// Every strict prefix is corrupt, and so is a byte more.
	for i := range b {
		if _, err := c.Decode(b[:i]); !errors.Is(err, keyed.ErrCorrupt) {
			t.Errorf("%T: %d of %d bytes: err %v, want keyed.ErrCorrupt", c, i, len(b), err)
		}
	}
	if _, err := c.Decode(append(b, 0)); !errors.Is(err, keyed.ErrCorrupt) {
		t.Errorf("%T: a byte left over: err %v, want keyed.ErrCorrupt", c, err)
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	checkRoundTrip(t, q3PersonCodec{}, q3Person{ID: 1234, Name: "Peter Jones", City: "Boise", State: "ID"})
	checkRoundTrip(t, q3PersonCodec{}, q3Person{ID: math.MinInt64})
	checkRoundTrip(t, q3AuctionCodec{}, q3Auction{ID: 1_000_000, Seller: 1001})
	checkRoundTrip(t, q4AuctionCodec{}, q4Auction{Category: 12, DateTime: 1436918400000, Expires: 1436918433320})
	checkRoundTrip(t, q4AuctionCodec{}, q4Auction{Category: -1, DateTime: math.MaxInt64, Expires: math.MinInt64})
	checkRoundTrip(t, q4BidCodec{}, q4Bid{Price: 99_999_999, DateTime: 1436918400010})
	checkRoundTrip(t, q4AccCodec{}, q4Acc{Sum: math.MaxInt64, Count: 1})
	checkRoundTrip(t, q7BidCodec{}, q7Bid{Auction: 1, Bidder: 2, Price: 3, DateTime: 4, Extra: "xyz\\"})
	checkRoundTrip(t, q8PersonCodec{}, q8Person{ID: 5, Name: "Sarah Shultz"})
	checkRoundTrip(t, q8SellerCodec{}, q8Seller{Seller: math.MaxInt64})
	if _, err := (q4AccCodec{}).Decode((q4AccCodec{}).Append(nil, q4Acc{Sum: 5, Count: 0})); !errors.Is(err, keyed.ErrCorrupt) {
		t.Errorf("an average over 0 auctions decodes: %v", err)
	}
}

func TestStoredStringLimit(t *testing.T) {
	// A length beyond the limit is corrupt, whatever follows.
	b := appendInt(nil, 1)
	b = append(b, 0xff, 0xff, 0x04) // uvarint 65535+…: beyond maxStoredString
	if _, err := (q8PersonCodec{}).Decode(b); !errors.Is(err, keyed.ErrCorrupt) {
		t.Errorf("an oversized string length decodes: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("storing a string longer than maxStoredString did not panic")
		}
	}()
	appendString(nil, string(make([]byte, maxStoredString+1)))
}

// fuzzCodec checks a decoder on arbitrary bytes: it never panics, every
// error wraps keyed.ErrCorrupt, and what decodes encodes back to the same
// bytes or to bytes that decode to the same value (varints have one
// canonical form, but Go's decoder accepts some redundant ones).
func fuzzCodec[T comparable](f *testing.F, c keyed.Codec[T], seeds ...T) {
	for _, s := range seeds {
		f.Add(c.Append(nil, s))
	}
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			if !errors.Is(err, keyed.ErrCorrupt) {
				t.Fatalf("error does not wrap keyed.ErrCorrupt: %v", err)
			}
			return
		}
		again := c.Append(nil, v)
		if bytes.Equal(again, b) {
			return
		}
		w, err := c.Decode(again)
		if err != nil || w != v {
			t.Fatalf("%+v re-encodes to %x, which decodes to %+v, %v", v, again, w, err)
		}
	})
}

func FuzzQ3PersonCodec(f *testing.F) {
	fuzzCodec(f, q3PersonCodec{}, q3Person{ID: 1000, Name: "a", City: "b", State: "OR"})
}
func FuzzQ3AuctionCodec(f *testing.F) { fuzzCodec(f, q3AuctionCodec{}, q3Auction{ID: 1, Seller: -1}) }
func FuzzQ4AuctionCodec(f *testing.F) {
	fuzzCodec(f, q4AuctionCodec{}, q4Auction{Category: 10, DateTime: 1436918400000, Expires: 1436918400001})
}
func FuzzQ4BidCodec(f *testing.F) { fuzzCodec(f, q4BidCodec{}, q4Bid{Price: 100, DateTime: 7}) }
func FuzzQ4AccCodec(f *testing.F) { fuzzCodec(f, q4AccCodec{}, q4Acc{Sum: 10, Count: 2}) }
func FuzzQ7BidCodec(f *testing.F) {
	fuzzCodec(f, q7BidCodec{}, q7Bid{Auction: 1, Bidder: 2, Price: 3, DateTime: 4, Extra: "extra"})
}
func FuzzQ8PersonCodec(f *testing.F) { fuzzCodec(f, q8PersonCodec{}, q8Person{ID: 9, Name: "n"}) }
func FuzzQ8SellerCodec(f *testing.F) { fuzzCodec(f, q8SellerCodec{}, q8Seller{Seller: 3}) }
