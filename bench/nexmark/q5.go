package nexmark

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/window"
)

// q5: hot items. nexmark-flink's statement:
//
//	SELECT AuctionBids.auction, AuctionBids.num
//	FROM (SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
//	      GROUP BY auction, window_start, window_end) AS AuctionBids
//	JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
//	      FROM (SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
//	            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
//	            GROUP BY auction, window_start, window_end) AS CountBids
//	      GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
//	ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
//	   AND AuctionBids.num >= MaxBids.maxn
//
// For every sliding window of 10 s every 2 s (event time, windows aligned
// to the epoch) that holds a bid, the auctions with the most bids in it,
// ties included. The plan is Flink's, without the self-join: a pane-based
// sliding count per auction (window.Aggregate), then a keyed step per
// window end that keeps the largest count and the auctions that have it,
// and emits them on an event-time timer at the window's last millisecond.
// The counts of one window reach that step before the watermark that
// passes the window does (the window operator emits them before it
// forwards the watermark), so the timer fires after the last of them.
//
// The result carries the window's bounds as well as SQL's two columns:
// the harness measures each result's latency from its window's end.

// Q5Result is a row of q5: an auction with the most bids in the window
// [WindowStart, WindowEnd), and its number of bids.
type Q5Result struct {
	Auction, Num           int64
	WindowStart, WindowEnd int64
}

// q5 window geometry.
const (
	q5Size  = 10 * time.Second
	q5Slide = 2 * time.Second
)

// q5Count is the output of q5's first step: an auction's bids in a window.
type q5Count struct {
	Auction, Num, WindowEnd int64
}

func init() {
	Register(Query{
		Name: "q5",
		SQL: "SELECT AuctionBids.auction, AuctionBids.num FROM (SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime " +
			"FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end) AS AuctionBids " +
			"JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM (SELECT count(*) AS num, window_start AS starttime, window_end AS endtime " +
			"FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end) AS CountBids " +
			"GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime AND AuctionBids.num >= MaxBids.maxn",
		Windowed: true,
		Build:    buildQ5,
		Baseline: runQ5Channels,
	})
}

func q5Read(r *Q5Result) int64      { return r.Num }
func q5WindowEnd(r *Q5Result) int64 { return r.WindowEnd }

// eventTimeWatermarkInterval is how often the queries' sources emit their
// watermark: often enough that a window's result follows its end within
// milliseconds of wall time (Flink's default, 200 ms, would dominate the
// output latency the harness measures), rarely enough to cost nothing.
const eventTimeWatermarkInterval = 10 * time.Millisecond

// withEventTime stamps the events with their dateTime and generates
// watermarks. Out-of-orderness 0 is exact for this generator: a split's
// timestamps grow with its event numbers, and the task's watermark is
// the minimum over its splits.
func withEventTime(events engine.Stream[Event]) engine.Stream[Event] {
	return engine.WithWatermarks(events, engine.WatermarkStrategy[Event]{
		Timestamp: func(e *Event) int64 { return e.DateTime() },
		Interval:  eventTimeWatermarkInterval,
	})
}

func buildQ5(_ *engine.Job, events engine.Stream[Event], sink *Sink) error {
	bids := Bids(withEventTime(events))
	byAuction := engine.KeyBy(bids, engine.Int64Key(func(b *Bid) int64 { return b.Auction }))
	counts := window.Aggregate(byAuction, "q5-count", window.Sliding(q5Size, q5Slide), window.Count[Bid](), window.Options{},
		func(ctx *engine.KeyedContext, w window.Window, n int64, r *q5Count) {
			*r = q5Count{Auction: int64(binary.BigEndian.Uint64(ctx.Key())), Num: n, WindowEnd: w.End}
		})
	byWindow := engine.KeyBy(counts, engine.Int64Key(func(c *q5Count) int64 { return c.WindowEnd }))
	hot := engine.KeyedProcess(byWindow, "q5-max", openQ5Max)
	EmitWindowed(hot, sink, q5Read, q5WindowEnd)
	return nil
}

// openQ5Max is q5's second step, keyed by window end: per window, the
// largest count so far and the auctions that have it (in keyed state, so
// a checkpoint taken between two counts of a window keeps them), emitted
// when the watermark passes the window.
func openQ5Max(rt *engine.Runtime) (engine.KeyedProcessor[q5Count, Q5Result], error) {
	maxNum, err := keyed.NewValueState(rt.Backend(), rt.StateName("max"), keyed.Int64Codec, keyed.StateOptions{})
	if err != nil {
		return engine.KeyedProcessor[q5Count, Q5Result]{}, err
	}
	auctions, err := keyed.NewListState(rt.Backend(), rt.StateName("auctions"), keyed.Int64Codec, keyed.StateOptions{})
	if err != nil {
		return engine.KeyedProcessor[q5Count, Q5Result]{}, err
	}
	sizeMs := q5Size.Milliseconds()
	var (
		out     Q5Result
		scratch []int64 // the window's auctions, read out before emitting
	)
	return engine.KeyedProcessor[q5Count, Q5Result]{
		Process: func(ctx *engine.KeyedContext, c *q5Count, _ func(*Q5Result)) {
			m, ok := maxNum.Get()
			switch {
			case !ok:
				// The window's first count: its timer is the window's last
				// millisecond, the count's own timestamp.
				ctx.RegisterEventTimeTimer(c.WindowEnd - 1)
				fallthrough
			case c.Num > m:
				maxNum.Put(c.Num)
				auctions.Clear()
				auctions.Add(c.Auction)
			case c.Num == m:
				auctions.Add(c.Auction)
			}
		},
		OnTimer: func(ctx *engine.KeyedContext, ts int64, _ engine.TimeDomain, emit func(*Q5Result)) {
			m, ok := maxNum.Get()
			if !ok {
				panic(fmt.Sprintf("nexmark: q5: the timer of window end %d fired without a count: the timer is registered with the first count", ts+1))
			}
			// Read the whole list before emitting: what runs downstream in
			// this task may move the backend's current key.
			var n int
			for a := range auctions.All() {
				scratch = append(scratch[:n], a)
				n++
			}
			maxNum.Clear()
			auctions.Clear()
			end := ts + 1
			for _, a := range scratch[:n] {
				out = Q5Result{Auction: a, Num: m, WindowStart: end - sizeMs, WindowEnd: end}
				emit(&out)
			}
		},
	}, nil
}
