package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/streamd/streamd/connectors/nexmark"
)

// TestExamplesValidate runs `streamd validate` on every examples/*.yaml:
// the examples the README points to must stay valid specs.
func TestExamplesValidate(t *testing.T) {
	wd, _ := os.Getwd()
	files, err := filepath.Glob(filepath.Join(wd, "..", "..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		code, stdout, stderr := run(t, t.TempDir(), "validate", f)
		if code != 0 {
			t.Errorf("streamd validate %s: exit %d\n%s%s", filepath.Base(f), code, stdout, stderr)
		}
	}
}

// TestExampleNexmarkWindows runs examples/nexmark/*.yaml with `streamd
// run` and compares their output with the same windows computed in batch
// over nexmark.EventAt: every window of every key, with the same counts and
// aggregates (the generator's timestamps do not go back within a split, so
// no record is late).
func TestExampleNexmarkWindows(t *testing.T) {
	wd, _ := os.Getwd()
	dir := filepath.Join(wd, "..", "..", "examples", "nexmark")
	type win struct{ key, start int64 }
	type agg struct {
		n, top, sum int64
	}
	// batch computes the windows of size/slide ms of the bids, keyed by key.
	// the first events events of the generator (as the example says).
	batch := func(events int64, key func(b *nexmark.Bid) int64, sizeMs, slideMs int64) map[win]*agg {
		out := map[win]*agg{}
		for n := int64(0); n < events; n++ {
			e := nexmark.EventAt(nexmark.Config{}, n)
			if e.Kind != nexmark.KindBid {
				continue
			}
			ts := e.Bid.DateTime
			last := ts - ((ts%slideMs)+slideMs)%slideMs
			for s := last; s > ts-sizeMs; s -= slideMs {
				w := win{key(&e.Bid), s}
				a := out[w]
				if a == nil {
					a = &agg{top: e.Bid.Price}
					out[w] = a
				}
				a.n++
				a.top = max(a.top, e.Bid.Price)
				a.sum += e.Bid.Price
			}
		}
		return out
	}
	type row struct {
		Auction, Bidder, WindowStart, WindowEnd, Bids, Top int64
		AvgPrice, Dollars                                  float64
	}
	runExample := func(name string) []row {
		code, stdout, stderr := run(t, t.TempDir(), "run", filepath.Join(dir, name))
		if code != 0 {
			t.Fatalf("streamd run %s: exit %d\n%s", name, code, stderr)
		}
		var rows []row
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var r struct {
				Auction     int64   `json:"auction"`
				Bidder      int64   `json:"bidder"`
				WindowStart int64   `json:"window_start"`
				WindowEnd   int64   `json:"window_end"`
				Bids        int64   `json:"bids"`
				Top         int64   `json:"top"`
				AvgPrice    float64 `json:"avg_price"`
				Dollars     float64 `json:"dollars"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: output line %q: %v", name, line, err)
			}
			rows = append(rows, row{r.Auction, r.Bidder, r.WindowStart, r.WindowEnd, r.Bids, r.Top, r.AvgPrice, r.Dollars})
		}
		return rows
	}

	t.Run("hot-items", func(t *testing.T) {
		want := batch(20000, func(b *nexmark.Bid) int64 { return b.Auction }, 10000, 2000)
		rows := runExample("hot-items.yaml")
		if len(rows) != len(want) {
			t.Errorf("%d windows, want %d", len(rows), len(want))
		}
		for _, r := range rows {
			a := want[win{r.Auction, r.WindowStart}]
			switch {
			case r.WindowEnd != r.WindowStart+10000:
				t.Fatalf("window [%d, %d) is not 10 s long", r.WindowStart, r.WindowEnd)
			case a == nil:
				t.Fatalf("auction %d, window at %d: not in the batch result", r.Auction, r.WindowStart)
			case r.Bids != a.n:
				t.Fatalf("auction %d, window at %d: %d bids, want %d", r.Auction, r.WindowStart, r.Bids, a.n)
			}
		}
	})
	t.Run("bid-stats", func(t *testing.T) {
		want := batch(200000, func(b *nexmark.Bid) int64 { return b.Bidder }, 10000, 10000)
		rows := runExample("bid-stats.yaml")
		starts := map[int64]bool{}
		for w := range want {
			starts[w.start] = true
		}
		if len(starts) < 2 {
			t.Fatalf("the example's events span %d windows; the test wants several", len(starts))
		}
		if len(rows) != len(want) {
			t.Errorf("%d windows, want %d", len(rows), len(want))
		}
		for _, r := range rows {
			a := want[win{r.Bidder, r.WindowStart}]
			if a == nil {
				t.Fatalf("bidder %d, window at %d: not in the batch result", r.Bidder, r.WindowStart)
			}
			avg, dollars := float64(a.sum)/float64(a.n), float64(a.sum)/100
			if r.Bids != a.n || r.Top != a.top || math.Abs(r.AvgPrice-avg) > 1e-9*avg || math.Abs(r.Dollars-dollars) > 1e-9*dollars {
				t.Fatalf("bidder %d, window at %d: got %+v, want n=%d top=%d avg=%v dollars=%v", r.Bidder, r.WindowStart, r, a.n, a.top, avg, dollars)
			}
		}
	})
}

// TestExampleNexmarkNewUsers runs examples/nexmark/new-users.yaml (a
// window join of two nexmark sources, after Nexmark's q8) with `streamd
// run` and compares its pairs with the same join computed in batch over
// nexmark.EventAt: a person and an auction they sell in the same 10 s
// window.
func TestExampleNexmarkNewUsers(t *testing.T) {
	wd, _ := os.Getwd()
	spec := filepath.Join(wd, "..", "..", "examples", "nexmark", "new-users.yaml")
	const events, sizeMs = 100000, 10000
	type key struct{ id, window int64 }
	persons := map[key][]nexmark.Person{}
	var want []string
	var auctions []nexmark.Auction
	for n := int64(0); n < events; n++ {
		e := nexmark.EventAt(nexmark.Config{}, n)
		switch e.Kind {
		case nexmark.KindPerson:
			k := key{e.Person.ID, e.Person.DateTime / sizeMs}
			persons[k] = append(persons[k], e.Person)
		case nexmark.KindAuction:
			auctions = append(auctions, e.Auction)
		}
	}
	for _, a := range auctions {
		for _, p := range persons[key{a.Seller, a.DateTime / sizeMs}] {
			b, _ := json.Marshal(map[string]any{"id": p.ID, "name": p.Name, "auction": a.ID, "reserve": a.Reserve, "auction_time": a.DateTime})
			want = append(want, string(b))
		}
	}
	code, stdout, stderr := run(t, t.TempDir(), "run", spec)
	if code != 0 {
		t.Fatalf("streamd run new-users.yaml: exit %d\n%s", code, stderr)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		b, _ := json.Marshal(m) // keys sorted, as want's
		got = append(got, string(b))
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) < 100 {
		t.Fatalf("the batch join has %d pairs; the example should have more", len(want))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%d pairs, want %d; got %.300q, want %.300q", len(got), len(want), got, want)
	}
	if !strings.Contains(stderr, `join "join-1" dropped 0 late records`) {
		t.Errorf("stderr does not say that the join dropped no late records:\n%s", stderr)
	}
}

// TestExamplesNexmarkValidate validates examples/nexmark/*.yaml as
// TestExamplesValidate does the others.
func TestExamplesNexmarkValidate(t *testing.T) {
	wd, _ := os.Getwd()
	files, _ := filepath.Glob(filepath.Join(wd, "..", "..", "examples", "nexmark", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("examples/nexmark has %d specs, want hot-items.yaml and bid-stats.yaml", len(files))
	}
	for _, f := range files {
		if code, stdout, stderr := run(t, t.TempDir(), "validate", f); code != 0 {
			t.Errorf("streamd validate %s: exit %d\n%s%s", filepath.Base(f), code, stdout, stderr)
		}
	}
}

// TestExampleNexmarkSelections runs the q1 and q2 examples and compares
// their output with the bids of the same events.
func TestExampleNexmarkSelections(t *testing.T) {
	wd, _ := os.Getwd()
	dir := filepath.Join(wd, "..", "..", "examples", "nexmark")
	type out struct {
		Kind    string   `json:"kind"`
		Auction int64    `json:"auction"`
		Bidder  int64    `json:"bidder"`
		Price   int64    `json:"price"`
		Euros   *float64 `json:"euros"`
	}
	for _, c := range []struct {
		file   string
		events int64
		keep   func(b *nexmark.Bid) bool
	}{
		{"q1.yaml", 20_000, func(*nexmark.Bid) bool { return true }},
		{"q2.yaml", 200_000, func(b *nexmark.Bid) bool { return b.Auction%123 == 0 }},
	} {
		t.Run(c.file, func(t *testing.T) {
			want := map[[3]int64]int{}
			for n := range c.events {
				e := nexmark.EventAt(nexmark.Config{}, n)
				if e.Kind == nexmark.KindBid && c.keep(&e.Bid) {
					want[[3]int64{e.Bid.Auction, e.Bid.Bidder, e.Bid.Price}]++
				}
			}
			code, stdout, stderr := run(t, t.TempDir(), "run", filepath.Join(dir, c.file))
			if code != 0 {
				t.Fatalf("streamd run %s: exit %d\n%s", c.file, code, stderr)
			}
			got := map[[3]int64]int{}
			for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
				var r out
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("output line %q: %v", line, err)
				}
				if r.Kind != "bid" {
					t.Fatalf("a %s passed the filter: %s", r.Kind, line)
				}
				if c.file == "q1.yaml" && (r.Euros == nil || *r.Euros != float64(r.Price)*0.908) {
					t.Fatalf("euros of %s: want price × 0.908", line)
				}
				got[[3]int64{r.Auction, r.Bidder, r.Price}]++
			}
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("%d distinct bids, want %d", len(got), len(want))
			}
			for k, n := range want {
				if got[k] != n {
					t.Fatalf("bid %v: %d times, want %d", k, got[k], n)
				}
			}
		})
	}
}
