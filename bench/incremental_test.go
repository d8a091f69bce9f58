package bench

import "testing"

// BenchmarkIncremental100ms is the incremental suite's checkpointed case
// as a Go benchmark, for profiles (make profile): one iteration is
// 4 × keys records (10 M keys with STREAMD_BENCH_FULL=1).
func BenchmarkIncremental100ms(b *testing.B) {
	k := incrementalKeys()
	benchYAMLScaled(b, incrementalPipeline(k, "true"), 4*k, nil)
}

// BenchmarkIncrementalBaseline is the same job without checkpoints.
func BenchmarkIncrementalBaseline(b *testing.B) {
	k := incrementalKeys()
	benchYAMLScaled(b, incrementalPipeline(k, ""), 4*k, nil)
}
