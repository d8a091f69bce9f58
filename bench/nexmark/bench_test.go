package nexmark

import (
	"context"
	"testing"
)

// BenchmarkQuery runs each stateless query on streamd and on its
// channels baseline, b.N events per run (at least 10 000: a run has a
// fixed start-up cost), generator included, without checkpoints, at
// parallelism 2. Allocations per event include the generator's one.
func BenchmarkQuery(b *testing.B) {
	for _, name := range []string{"q0", "q1", "q2"} {
		q, _ := Lookup(name)
		for _, system := range []string{SystemStreamd, SystemChannels} {
			b.Run(name+"/"+system, func(b *testing.B) {
				b.ReportAllocs()
				events := int64(max(b.N, 10_000))
				cfg := RunConfig{Events: events, Parallelism: 2}
				run := Run
				if system == SystemChannels {
					run = RunBaseline
				}
				b.ResetTimer()
				r, err := run(context.Background(), q, cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.EventsPerCPUSecond, "events/CPU-s")
				b.ReportMetric(r.WallSeconds*1e9/float64(events), "ns/event")
			})
		}
	}
}
