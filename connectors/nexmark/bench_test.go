package nexmark

import (
	"syscall"
	"testing"
	"time"
)

// TestAllocsPerEvent pins the allocation budget: Config.Fill makes one
// allocation per event (the event's generated strings share one backing
// string); a Filler carves them from 8 KiB chunks, about one allocation
// per 90 events (one per 17 auctions), plus the rare exact price (about 1
// in 70 000 prices, 129 allocations each: 7 per 1000 events of the run
// below); AppendJSON into a buffer with room makes none.
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
	f, err := NewFiller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		numbers   func(i int64) int64 // the i-th event number of the run
		maxAllocs float64             // per 1000 events
	}{
		{"all events", func(i int64) int64 { return i }, 20},              // 93 bytes an event
		{"auctions", func(i int64) int64 { return i/3*50 + 1 + i%3 }, 80}, // 465 bytes an auction
	} {
		next := int64(0)
		allocs := testing.AllocsPerRun(20, func() {
			for range 1000 {
				f.Fill(tc.numbers(next), &e)
				next++
			}
		})
		t.Logf("Filler, %s: %v allocations per 1000 events", tc.name, allocs)
		if allocs > tc.maxAllocs {
			t.Errorf("Filler, %s: %v allocations per 1000 events, want at most %v", tc.name, allocs, tc.maxAllocs)
		}
	}
}

// cpuTime is the process's user+system CPU time, garbage collection
// included. The machine is shared, so wall-clock ns/op is inflated by
// other processes; cpu-ns/event is not (except by cache effects), and it
// is what the throughput targets count (events per CPU-second).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGenerate measures events generated per second with
// Config.Fill (Fill) and with a Filler (Filler), over all events and one
// kind at a time (FillKind, FillerKind), and Config.Fill with AppendJSON.
func BenchmarkGenerate(b *testing.B) {
	cfg := DefaultConfig()
	channelTable()
	report := func(b *testing.B, cpuStart time.Duration) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime()-cpuStart).Nanoseconds())/float64(b.N), "cpu-ns/event")
	}
	filler, err := NewFiller(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name string
		fill func(n int64, e *Event)
	}{{"Fill", cfg.Fill}, {"Filler", filler.Fill}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			var e Event
			n := int64(0)
			cpu := cpuTime()
			for b.Loop() {
				f.fill(n, &e)
				n++
			}
			report(b, cpu)
		})
		// One kind at a time: the event numbers of that kind, in order.
		for _, k := range []struct {
			name     string
			from, to int64 // offsets within each period of 50 events
		}{{"person", 0, 1}, {"auction", 1, 4}, {"bid", 4, 50}} {
			b.Run(f.name+"Kind/"+k.name, func(b *testing.B) {
				b.ReportAllocs()
				var e Event
				period, off := int64(0), k.from
				cpu := cpuTime()
				for b.Loop() {
					f.fill(period*ProportionDenominator+off, &e)
					if off++; off == k.to {
						period, off = period+1, k.from
					}
				}
				report(b, cpu)
			})
		}
	}
	b.Run("FillAndJSON", func(b *testing.B) {
		b.ReportAllocs()
		var e Event
		buf := make([]byte, 0, 4096)
		n, bytes := int64(0), 0
		cpu := cpuTime()
		for b.Loop() {
			cfg.Fill(n, &e)
			buf = AppendJSON(buf[:0], &e)
			bytes += len(buf)
			n++
		}
		b.SetBytes(int64(bytes / max(b.N, 1)))
		report(b, cpu)
	})
}

// BenchmarkExactString measures the extra field's characters: a bid's
// average of 68 (Beam's nextExactString), per character.
func BenchmarkExactString(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 68)
	r := NewJavaRandom(42)
	cpu := cpuTime()
	for b.Loop() {
		fillExactString(buf, &r)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*len(buf)), "cpu-ns/char")
}

// BenchmarkPrice measures nextPrice: two draws and 10^x.
func BenchmarkPrice(b *testing.B) {
	b.ReportAllocs()
	r := NewJavaRandom(42)
	var sum int64
	for b.Loop() {
		sum += nextPrice(&r)
	}
	if sum == 0 {
		b.Fatal("no prices")
	}
}

// BenchmarkNextString measures Beam's nextString(100) (an auction's
// description: 51 characters on average), per character.
func BenchmarkNextString(b *testing.B) {
	b.ReportAllocs()
	var buf [128]byte
	r := NewJavaRandom(42)
	chars := 0
	cpu := cpuTime()
	for b.Loop() {
		chars += len(appendNextString(buf[:0], &r, 100))
	}
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(max(chars, 1)), "cpu-ns/char")
}
