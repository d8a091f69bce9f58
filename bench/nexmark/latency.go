package nexmark

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Limits of a LatencyRecorder.
const (
	// MaxWatermarkHistory bounds the advances of the source watermark a
	// recorder remembers. Sources emit watermarks every 200 ms by default
	// (engine.DefaultWatermarkInterval), so this is hours of history;
	// when it is full the older half is dropped, and results of windows
	// older than what is left are counted as Expired rather than measured.
	MaxWatermarkHistory = 1 << 16
	// MaxLatencySamples bounds the latencies a recorder keeps: beyond it,
	// it keeps a uniform sample of this many (reservoir sampling), enough
	// for a p99 within a fraction of a percent.
	MaxLatencySamples = 1 << 16
	// MaxEarlyResults bounds the results a recorder holds because they
	// reached the sink before the watermark that fired them was reported
	// (see LatencyRecorder); beyond it they are counted as Unmatched.
	MaxEarlyResults = 1 << 16
)

// LatencyRecorder measures the output latency of a windowed query: the
// wall time from the moment a window's end passes — the minimum of the
// source tasks' watermarks first reaches the window's last timestamp,
// end − 1 ms — to the moment the window's result reaches the sink.
//
// It has two inputs. SourceWatermark receives every source task's
// watermark, from the engine's hook (engine.Options.OnSourceWatermark).
// WindowResult receives the window end of every result, from the sink
// (EmitWindowed). Both may be called from any goroutine; each takes a
// mutex, which is cheap at their rates (one call per watermark interval
// per source task, one per window result).
//
// The hook may report a watermark only after the source task has emitted
// it, and then a result it fired may reach the sink first (always, when
// the window runs chained in the source's task). Such an early result is
// held until the watermark is reported and then recorded with latency 0:
// its true latency is at most the time between the watermark's emission
// and the hook's call, microseconds. Summary counts them (Early); a
// result whose window never passes is Unmatched.
type LatencyRecorder struct {
	epoch time.Time // wall times are monotonic ns since epoch

	mu struct {
		sync.Mutex
		// sources is the number of source tasks; the source watermark is
		// defined once that many have reported.
		sources int
		// wms is each source task's watermark.
		wms map[sourceTask]int64
		// passed are the advances of the minimum watermark, in order: the
		// watermark and when it was reached. Bounded by
		// MaxWatermarkHistory; dropped says older ones were discarded.
		passed  []watermarkPoint
		dropped bool
		// samples are the measured latencies in ns (a reservoir once
		// full); seen counts every measured result.
		samples []int64
		seen    int64
		rng     *rand.Rand
		// early are the last timestamps of results that arrived before
		// their window passed (bounded by MaxEarlyResults); unmatched
		// counts those beyond the bound; expired those older than the
		// history; earlyRecorded those recorded once their window passed.
		early                             []int64
		unmatched, expired, earlyRecorded int64
	}
}

type sourceTask struct {
	operator string
	task     int
}

type watermarkPoint struct {
	wm   int64 // ms
	atNs int64 // since epoch
}

// NewLatencyRecorder returns a recorder for a job whose sources have
// sourceTasks tasks in all.
func NewLatencyRecorder(sourceTasks int) *LatencyRecorder {
	if sourceTasks < 1 {
		panic(fmt.Sprintf("nexmark: NewLatencyRecorder: %d source tasks; a job has at least one", sourceTasks))
	}
	r := &LatencyRecorder{epoch: time.Now()}
	r.mu.sources = sourceTasks
	r.mu.wms = make(map[sourceTask]int64, sourceTasks)
	// A fixed seed: the sample, given the same results, is the same.
	r.mu.rng = rand.New(rand.NewPCG(1, 2))
	return r
}

func (r *LatencyRecorder) now() int64 { return int64(time.Since(r.epoch)) }

// SourceWatermark records source task task of operator's watermark wm (ms
// since the epoch). Its signature is engine.Options.OnSourceWatermark's.
func (r *LatencyRecorder) SourceWatermark(operator string, task int, wm int64) {
	at := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	k := sourceTask{operator, task}
	if old, ok := r.mu.wms[k]; ok && old >= wm {
		return // a watermark never goes back; a repeat changes nothing
	}
	r.mu.wms[k] = wm
	if len(r.mu.wms) < r.mu.sources {
		return
	}
	low := wm
	for _, w := range r.mu.wms {
		low = min(low, w)
	}
	if n := len(r.mu.passed); n > 0 && r.mu.passed[n-1].wm >= low {
		return
	}
	if len(r.mu.passed) == MaxWatermarkHistory {
		half := copy(r.mu.passed, r.mu.passed[MaxWatermarkHistory/2:])
		r.mu.passed = r.mu.passed[:half]
		r.mu.dropped = true
	}
	r.mu.passed = append(r.mu.passed, watermarkPoint{wm: low, atNs: at})
	if len(r.mu.early) > 0 {
		r.resolveEarly(low)
	}
}

// resolveEarly records, with latency 0, the early results whose window
// the source watermark low has passed.
func (r *LatencyRecorder) resolveEarly(low int64) {
	keep := r.mu.early[:0]
	for _, last := range r.mu.early {
		if last <= low {
			r.mu.earlyRecorded++
			r.addSample(0)
			continue
		}
		keep = append(keep, last)
	}
	r.mu.early = keep
}

// WindowResult records the output latency of a result of the window that
// ends at windowEndMs (exclusive, ms since the epoch).
func (r *LatencyRecorder) WindowResult(windowEndMs int64) {
	at := r.now()
	last := windowEndMs - 1 // the window's last timestamp
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.mu.passed
	i := sort.Search(len(p), func(i int) bool { return p[i].wm >= last })
	switch {
	case i == len(p):
		if len(r.mu.early) < MaxEarlyResults {
			r.mu.early = append(r.mu.early, last)
		} else {
			r.mu.unmatched++
		}
		return
	case i == 0 && r.mu.dropped:
		r.mu.expired++
		return
	}
	r.addSample(max(0, at-p[i].atNs))
}

// addSample keeps latency d: all of them up to MaxLatencySamples, then a
// uniform sample (Vitter's algorithm R).
func (r *LatencyRecorder) addSample(d int64) {
	r.mu.seen++
	if len(r.mu.samples) < MaxLatencySamples {
		r.mu.samples = append(r.mu.samples, d)
		return
	}
	if j := r.mu.rng.Int64N(r.mu.seen); j < MaxLatencySamples {
		r.mu.samples[j] = d
	}
}

// LatencySummary is what a LatencyRecorder measured.
type LatencySummary struct {
	// Results is the number of window results measured, Early those of
	// them that reached the sink before the hook reported their window's
	// passing (recorded as 0). Unmatched counts the results whose window
	// the reported source watermark never passed (the hook is not wired,
	// or more than MaxEarlyResults were waiting), Expired those older than
	// the recorder's history.
	Results, Early, Unmatched, Expired int64
	// P50, P99 and Max are percentiles of the measured latencies (Max of
	// the kept sample).
	P50, P99, Max time.Duration
}

// Summary returns the latencies measured so far.
func (r *LatencyRecorder) Summary() LatencySummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := LatencySummary{
		Results: r.mu.seen, Early: r.mu.earlyRecorded,
		Unmatched: r.mu.unmatched + int64(len(r.mu.early)), Expired: r.mu.expired,
	}
	if len(r.mu.samples) > 0 {
		ps := Percentiles(r.mu.samples, 0.50, 0.99, 1)
		s.P50, s.P99, s.Max = time.Duration(ps[0]), time.Duration(ps[1]), time.Duration(ps[2])
	}
	return s
}
