package nexmark

import (
	"fmt"
	"math"

	gen "github.com/streamd/streamd/connectors/nexmark"
)

// q5's baseline: the sliding-window count and max as a Go programmer would
// write them with goroutines and channels, no engine.
//
//	generator i ──bids of auction a──▶ counter a mod p ──per window──▶ merger ──▶ blackhole
//
// Generator i makes events n ≡ i (mod p), as the engine's source tasks
// do, and sends each batch's bids to the counter that owns their
// auction, with its high-water timestamp (every counter gets a message
// per batch, empty or not, so each knows how far every generator has
// got). A counter counts bids per auction in panes of 2 s; when the
// minimum high-water mark over the generators passes a window's last
// millisecond, it sums the window's five panes per auction, and sends the
// merger its largest count and the auctions that have it (a report for
// every window end, empty ones too, so the merger can take one report
// from each counter per window). The merger keeps the overall largest
// count's auctions and counts them into the blackhole.

// q5Bid is what a q5 counter needs of a bid.
type q5Bid struct{ Auction, DateTime int64 }

// q5Batch is one generator's batch of bids for one counter.
type q5Batch struct {
	gen  int
	hw   int64 // the generator's largest timestamp so far (math.MaxInt64: done)
	bids []q5Bid
	free chan []q5Bid // where the counter returns bids
}

// q5Report is one counter's largest count in the window ending at End, and
// the auctions that have it (none: no bid of its auctions in the window).
type q5Report struct {
	End, Max int64
	Auctions []int64
}

func runQ5Channels(cfg BaselineConfig) (BaselineResult, error) {
	gc, ctx, generated, err := cfg.prepare("q5 baseline")
	if err != nil {
		return BaselineResult{}, err
	}
	observe, _ := cfg.observe.(func(*Q5Result))
	if cfg.Events == 0 {
		return BaselineResult{}, nil
	}
	p, size := cfg.Parallelism, cfg.BatchSize
	sizeMs, slideMs := q5Size.Milliseconds(), q5Slide.Milliseconds()

	// The window ends every counter reports, from the first window of
	// event 0 to the last window of the last event.
	var e Event
	gc.Fill(0, &e)
	firstEnd := alignDown(e.DateTime(), slideMs) + slideMs
	gc.Fill(cfg.Events-1, &e)
	lastEnd := alignDown(e.DateTime(), slideMs) + sizeMs

	inputs := make([]chan q5Batch, p)
	reports := make([]chan q5Report, p)
	for c := range p {
		inputs[c] = make(chan q5Batch, baselineChannelBatches*p)
		reports[c] = make(chan q5Report, baselineChannelBatches)
	}
	for g := range p {
		filler, err := gen.NewFiller(gc) // as streamd's source: one per generator
		if err != nil {
			return BaselineResult{}, err
		}
		go func() { // generator
			events := make([]Event, size)
			// One free list per counter: a counter hands each batch back to
			// the generator that sent it. It holds every batch that can be
			// out at once (the counter's input channel full, one in the
			// counter's hands, one in ours), so returning one never blocks.
			free := make([]chan []q5Bid, p)
			for c := range p {
				free[c] = make(chan []q5Bid, baselineChannelBatches*p+2)
				for range baselineChannelBatches*p + 2 {
					free[c] <- make([]q5Bid, 0, size)
				}
			}
			out := make([][]q5Bid, p)
			n := int64(g)
			for n < cfg.Events && ctx.Err() == nil {
				k := 0
				for ; k < size && n < cfg.Events; k++ {
					filler.Fill(n, &events[k])
					n += int64(p)
				}
				generated.Add(int64(k))
				for c := range p {
					out[c] = (<-free[c])[:0]
				}
				for i := range events[:k] {
					if ev := &events[i]; ev.Kind == gen.KindBid {
						c := int(uint64(ev.Bid.Auction) % uint64(p))
						out[c] = append(out[c], q5Bid{Auction: ev.Bid.Auction, DateTime: ev.Bid.DateTime})
					}
				}
				hw := events[k-1].DateTime()
				for c := range p {
					inputs[c] <- q5Batch{gen: g, hw: hw, bids: out[c], free: free[c]}
				}
			}
			// Done (or cancelled): the counters fire every window left.
			for c := range p {
				inputs[c] <- q5Batch{gen: g, hw: math.MaxInt64}
			}
		}()
	}
	for c := range p {
		go func() { // counter
			defer close(reports[c])
			hw := make([]int64, p)
			for i := range hw {
				hw[i] = math.MinInt64
			}
			panes := make(map[int64]map[int64]int64) // pane start → auction → bids
			counts := make(map[int64]int64)
			next := firstEnd
			for done := 0; done < p; {
				b := <-inputs[c]
				for _, bid := range b.bids {
					pane := panes[alignDown(bid.DateTime, slideMs)]
					if pane == nil {
						pane = make(map[int64]int64)
						panes[alignDown(bid.DateTime, slideMs)] = pane
					}
					pane[bid.Auction]++
				}
				if b.free != nil {
					b.free <- b.bids
				}
				hw[b.gen] = b.hw
				if b.hw == math.MaxInt64 {
					done++
				}
				// Every event up to the slowest generator's high-water
				// mark has been counted; a later one may share its
				// timestamp, so the watermark is one below.
				wm := hw[0]
				for _, h := range hw[1:] {
					wm = min(wm, h)
				}
				if wm != math.MaxInt64 && wm != math.MinInt64 {
					wm--
				}
				for ; next <= lastEnd && next-1 <= wm; next += slideMs {
					clear(counts)
					for s := next - sizeMs; s < next; s += slideMs {
						for a, n := range panes[s] {
							counts[a] += n
						}
					}
					r := q5Report{End: next}
					for a, n := range counts {
						switch {
						case n > r.Max:
							r.Max, r.Auctions = n, append(r.Auctions[:0], a)
						case n == r.Max:
							r.Auctions = append(r.Auctions, a)
						}
					}
					reports[c] <- r
					delete(panes, next-sizeMs) // no later window holds it
				}
			}
		}()
	}
	var res BaselineResult
	var out Q5Result
	for end := firstEnd; end <= lastEnd; end += slideMs { // merger
		var m int64
		var hot []int64
		for c := range p {
			r, ok := <-reports[c]
			if !ok || r.End != end {
				panic(fmt.Sprintf("nexmark: q5 baseline: counter %d reported window end %d (open %v), want %d: counters report every window end in order", c, r.End, ok, end))
			}
			switch {
			case r.Max > m:
				m, hot = r.Max, append(hot[:0], r.Auctions...)
			case r.Max == m && m > 0:
				hot = append(hot, r.Auctions...)
			}
		}
		for _, a := range hot {
			out = Q5Result{Auction: a, Num: m, WindowStart: end - sizeMs, WindowEnd: end}
			res.Results++
			res.Sum += q5Read(&out)
			if observe != nil {
				observe(&out)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return BaselineResult{}, fmt.Errorf("nexmark bench: baseline stopped: %w", err)
	}
	return res, nil
}

// alignDown is the largest multiple of m at or below x (m > 0), for
// negative x too.
func alignDown(x, m int64) int64 {
	r := x % m
	if r < 0 {
		r += m
	}
	return x - r
}
