package bench

import (
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
)

// The "incremental" suite is issue 17's job: a sequence of 4 × K records
// over K keys → key_by → count → blackhole, parallelism 2, without
// checkpoints, with exactly-once checkpoints every 100 ms written in full
// (every changed key group re-encoded: the behaviour before incremental
// checkpoints), and with incremental checkpoints (the default: changed
// entries only, on top of the previous checkpoint). K is 10 M with
// STREAMD_BENCH_FULL=1 (make bench: the figures), 1 M by default,
// 100 k with STREAMD_BENCH_SMALL=1 (CI). Every key changes once per K
// records, so at 100 ms intervals every key group changes in every
// checkpoint: the case that made full checkpoints rewrite all state.
//
// The notes give, per checkpointed case: end-to-end p50/p99, the task
// sync pause p99, and per checkpoint the bytes written (checkpointed size)
// against the state it references (state size), with the key groups
// written as deltas, in full and reused.
func init() {
	k := incrementalKeys()
	recs := 4 * k
	name := sizeName(k)
	Register(
		Case{Suite: "incremental", Name: "no-checkpoints-" + name, Records: recs, F: func(b *testing.B) {
			benchYAMLScaled(b, incrementalPipeline(k, ""), recs, nil)
		}},
		Case{Suite: "incremental", Name: "full-100ms-" + name, Baseline: "no-checkpoints-" + name, Records: recs, F: func(b *testing.B) {
			benchYAMLScaled(b, incrementalPipeline(k, "false"), recs, func(s []engine.CheckpointStats) { noteIncremental("full", k, s) })
		}},
		Case{Suite: "incremental", Name: "incremental-100ms-" + name, Baseline: "no-checkpoints-" + name + ",full-100ms-" + name, Records: recs, F: func(b *testing.B) {
			benchYAMLScaled(b, incrementalPipeline(k, "true"), recs, func(s []engine.CheckpointStats) { noteIncremental("incremental", k, s) })
		}},
	)
}

func incrementalKeys() int {
	switch {
	case full():
		return 10_000_000
	case small():
		return 100_000
	}
	return 1_000_000
}

// incrementalPipeline is the job, with %d for the record count (benchYAML
// fills it), checkpointed when incremental is "true" or "false".
func incrementalPipeline(keys int, incremental string) string {
	spec := `name: bench
parallelism: 2
source: {type: sequence, count: %d, keys: ` + itoa(keys) + `}
pipeline:
  - key_by: key
  - count: {}
sink: {type: blackhole}
`
	if incremental != "" {
		spec += "checkpointing: {interval: 100ms, mode: exactly_once, compression: s2, incremental: " + incremental + "}\n"
	}
	return spec
}

// noteIncremental records the checkpoint figures of one run.
func noteIncremental(mode string, keys int, stats []engine.CheckpointStats) {
	var e2e, pauses []time.Duration
	var written, referenced int64
	var deltaKG, fullKG, reusedKG, maxChain int
	n := 0
	for _, s := range stats {
		if s.Status != "completed" {
			continue
		}
		n++
		e2e = append(e2e, s.Duration)
		for _, t := range s.Tasks {
			pauses = append(pauses, t.SyncPause)
		}
		written += s.CheckpointedSize
		referenced += s.StateSize
		deltaKG += s.DeltaKeyGroups
		fullKG += s.FullKeyGroups
		reusedKG += s.ReusedKeyGroups
		maxChain = max(maxChain, s.MaxDeltaChain)
	}
	if n == 0 {
		Note("incremental-"+mode, "%s checkpoints every 100 ms (%d keys): none completed", mode, keys)
		return
	}
	p50, p99 := percentiles(e2e)
	_, s99 := percentiles(pauses)
	Note("incremental-"+mode, "%s checkpoints every 100 ms (%d keys, %d checkpoints): end-to-end p50 %v, p99 %v; sync pause p99 %v; "+
		"per checkpoint %.1f MB written of %.1f MB referenced; key groups per checkpoint: %.1f delta, %.1f full, %.1f reused; longest chain %d",
		mode, keys, n, p50.Round(time.Millisecond), p99.Round(time.Millisecond), s99,
		float64(written)/float64(n)/1e6, float64(referenced)/float64(n)/1e6,
		float64(deltaKG)/float64(n), float64(fullKG)/float64(n), float64(reusedKG)/float64(n), maxChain)
}
