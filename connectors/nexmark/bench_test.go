package nexmark

import "testing"

// TestAllocsPerEvent pins the allocation budget: one string allocation per
// event (the event's generated strings share one backing string), none for
// AppendJSON into a buffer with room.
func TestAllocsPerEvent(t *testing.T) {
	cfg := DefaultConfig()
	channelTable() // built once, on first use
	var e Event
	for _, tc := range []struct {
		n    int64
		kind Kind
	}{{1_000_000, KindPerson}, {1_000_001, KindAuction}, {1_000_004, KindBid}} {
		allocs := testing.AllocsPerRun(100, func() { cfg.Fill(tc.n, &e) })
		if e.Kind != tc.kind || allocs != 1 {
			t.Errorf("Fill of a %v: %v allocations, want 1", e.Kind, allocs)
		}
		buf := make([]byte, 0, 4096)
		if allocs := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &e) }); allocs != 0 {
			t.Errorf("AppendJSON of a %v: %v allocations, want 0", e.Kind, allocs)
		}
	}
}

// BenchmarkGenerate measures events generated per second (Fill), and with
// AppendJSON.
func BenchmarkGenerate(b *testing.B) {
	cfg := DefaultConfig()
	channelTable()
	b.Run("Fill", func(b *testing.B) {
		b.ReportAllocs()
		var e Event
		n := int64(0)
		for b.Loop() {
			cfg.Fill(n, &e)
			n++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("FillAndJSON", func(b *testing.B) {
		b.ReportAllocs()
		var e Event
		buf := make([]byte, 0, 4096)
		n, bytes := int64(0), 0
		for b.Loop() {
			cfg.Fill(n, &e)
			buf = AppendJSON(buf[:0], &e)
			bytes += len(buf)
			n++
		}
		b.SetBytes(int64(bytes / max(b.N, 1)))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
