package nexmark

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestLatencyRecorder scripts two source tasks' watermarks and window
// results on synctest's fake clock, so every latency is exact.
func TestLatencyRecorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewLatencyRecorder(2)
		// Until both tasks have reported, the source watermark is
		// undefined: a result now is early, held until its window passes.
		r.SourceWatermark("src", 0, 10_000)
		r.WindowResult(5_000)
		time.Sleep(10 * time.Millisecond)   // t = 10 ms
		r.SourceWatermark("src", 1, 4_999)  // min 4 999: window [.., 5000) passes now; the early result: 0
		time.Sleep(30 * time.Millisecond)   // t = 40 ms
		r.WindowResult(5_000)               // 30 ms
		r.WindowResult(5_001)               // 5 000 has not passed: early
		r.SourceWatermark("src", 1, 4_000)  // goes back: ignored
		time.Sleep(10 * time.Millisecond)   // t = 50 ms
		r.SourceWatermark("src", 1, 20_000) // min 10 000 (task 0): the early result: 0
		time.Sleep(5 * time.Millisecond)    // t = 55 ms
		r.WindowResult(5_001)               // passed at 50: 5 ms
		r.WindowResult(10_001)              // passed at 50: 5 ms
		r.WindowResult(4_000)               // passed at 10: 45 ms
		r.WindowResult(10_002)              // never passes: unmatched
		s := r.Summary()
		if s.Results != 6 || s.Early != 2 || s.Unmatched != 1 || s.Expired != 0 {
			t.Fatalf("summary %+v: want 6 results (2 early), 1 unmatched", s)
		}
		// Sorted: 0, 0, 5, 5, 30, 45 ms.
		if s.P50 != 5*time.Millisecond || s.P99 != 45*time.Millisecond || s.Max != 45*time.Millisecond {
			t.Errorf("p50 %v, p99 %v, max %v; want 5 ms, 45 ms, 45 ms", s.P50, s.P99, s.Max)
		}
		// The bound on held results: beyond it they are unmatched at once.
		for range MaxEarlyResults + 5 {
			r.WindowResult(1 << 50)
		}
		if s := r.Summary(); s.Unmatched != 1+MaxEarlyResults+5 || len(r.mu.early) != MaxEarlyResults {
			t.Errorf("%d unmatched, %d held; want %d and %d", s.Unmatched, len(r.mu.early), 1+MaxEarlyResults+5, MaxEarlyResults)
		}
	})
}

// TestLatencyRecorderHistoryBound fills the watermark history past its
// limit: it stays bounded, and results older than what is left are
// counted as expired, not measured.
func TestLatencyRecorderHistoryBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewLatencyRecorder(1)
		for i := range int64(MaxWatermarkHistory + 10) {
			r.SourceWatermark("src", 0, 1000*i)
			time.Sleep(time.Millisecond)
		}
		if n := len(r.mu.passed); n > MaxWatermarkHistory {
			t.Fatalf("history holds %d points, more than %d", n, MaxWatermarkHistory)
		}
		r.WindowResult(1)                                      // passed at the start, long dropped
		r.WindowResult(1000*(MaxWatermarkHistory+9) + 1)       // the last advance: 1 ms ago
		r.WindowResult(1000*(MaxWatermarkHistory+9) + 1 + 1e6) // not passed
		s := r.Summary()
		if s.Results != 1 || s.Expired != 1 || s.Unmatched != 1 || s.P50 != time.Millisecond {
			t.Errorf("summary %+v: want 1 result of 1 ms, 1 expired, 1 unmatched", s)
		}
	})
}

// TestLatencyRecorderReservoir: beyond MaxLatencySamples results the
// sample stays bounded and still represents them all.
func TestLatencyRecorderReservoir(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewLatencyRecorder(1)
		r.SourceWatermark("src", 0, 1<<40)
		// Results arrive 0, 1, 2, … µs after the passing, evenly: the
		// median of all of them is half the largest.
		const n = 4 * MaxLatencySamples
		for range n {
			r.WindowResult(1)
			time.Sleep(time.Microsecond)
		}
		s := r.Summary()
		if len(r.mu.samples) != MaxLatencySamples || s.Results != n {
			t.Fatalf("%d samples of %d results", len(r.mu.samples), s.Results)
		}
		mid := time.Duration(n/2) * time.Microsecond
		if d := s.P50 - mid; d < -mid/20 || d > mid/20 {
			t.Errorf("sampled p50 %v, want within 5 %% of %v", s.P50, mid)
		}
	})
}
