package bench

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
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

// The "restore-chain" case (suite restore) restores a checkpoint whose key
// groups are delta chains: a full checkpoint of the restore suite's state
// (100 k entries of 100-byte values, ~9.5 M with STREAMD_BENCH_FULL=1),
// then chainDeltas incremental checkpoints, each after overwriting 5 % of
// the keys and deleting 0.5 %. With the store's default policy some key
// groups materialize on the way (as in a running job); the note gives the
// chains restored and the rate per GiB of live state, deltas included
// (issue 17's goal: at most 1 s per GiB on this machine).
const chainDeltas = 8

func init() {
	Register(Case{Suite: "restore", Name: "restore-chain-" + sizeName(restoreEntries()), Records: restoreEntries(), F: benchRestoreChain})
}

var chainStore struct {
	st       *snapshot.Store
	live     int64 // raw bytes of the live state (a full image's)
	stored   int64 // stored bytes the newest checkpoint references
	entries  int
	maxChain int
	deltas   int
}

func benchRestoreChain(b *testing.B) {
	n := restoreEntries()
	if chainStore.st == nil {
		st := openRestoreStore(b, "streamd-restore-chain-")
		be, err := keyed.NewBackend(keyed.Options{})
		if err != nil {
			b.Fatal(err)
		}
		id, err := be.Register("state", keyed.KindValue, keyed.StateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var key [8]byte
		val := make([]byte, 100)
		put := func(i int, salt uint64) {
			binary.BigEndian.PutUint64(key[:], uint64(i))
			binary.LittleEndian.PutUint64(val, uint64(i)^salt)
			be.SetCurrentKey(key[:])
			be.Put(id, val)
		}
		for i := range n {
			put(i, 0)
		}
		var prev *snapshot.KeyedHandle
		rng := uint64(0x9e3779b97f4a7c15)
		live := n
		for ckpt := uint64(1); ckpt <= 1+chainDeltas; ckpt++ {
			if ckpt > 1 {
				for range n / 20 {
					rng ^= rng << 13
					rng ^= rng >> 7
					rng ^= rng << 17
					put(int(rng%uint64(n)), ckpt)
				}
				for range n / 200 {
					rng ^= rng << 13
					rng ^= rng >> 7
					rng ^= rng << 17
					binary.BigEndian.PutUint64(key[:], rng%uint64(n))
					be.SetCurrentKey(key[:])
					be.Delete(id)
				}
			}
			snap := be.Snapshot()
			h, err := st.WriteKeyed("bench", ckpt, "vertex", 0, keyed.DefaultMaxParallelism, snap, prev)
			snap.Release()
			if err != nil {
				b.Fatal(err)
			}
			if err := st.CommitCheckpoint(&snapshot.Metadata{Job: "bench", CheckpointID: ckpt, MaxParallelism: keyed.DefaultMaxParallelism,
				Tasks: []snapshot.TaskMeta{{Vertex: "vertex", Parallelism: 1, KeyGroupEnd: keyed.DefaultMaxParallelism, Keyed: h}}}); err != nil {
				b.Fatal(err)
			}
			be.ForgetChangesThrough(snap.Epoch())
			prev = h
		}
		live = be.Len()
		chainStore.st, chainStore.entries = st, live
		chainStore.live = int64(live) * (8 + 1 + 100 + 3) // the raw size of a full image of it
		chainStore.stored = prev.StoredBytes + prev.ReusedBytes
		chainStore.maxChain = prev.MaxChain
		for _, r := range prev.KeyGroups {
			chainStore.deltas += len(r.Deltas)
		}
	}
	b.SetBytes(chainStore.live / int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	var last time.Duration
	for range b.N {
		start := time.Now()
		be, _, _ := restoreNewest(b, chainStore.st)
		if be.Len() != chainStore.entries {
			b.Fatalf("restored %d entries, want %d", be.Len(), chainStore.entries)
		}
		last = time.Since(start)
	}
	gib := float64(chainStore.live) / (1 << 30)
	Note("restore-chain", "restore of %.0f MiB of live keyed state (%d entries) from a checkpoint with %d deltas in its key groups' chains (longest %d; %.0f MiB stored): %v, %.2f s per GiB of live state",
		float64(chainStore.live)/(1<<20), chainStore.entries, chainStore.deltas, chainStore.maxChain, float64(chainStore.stored)/(1<<20),
		last.Round(time.Millisecond), last.Seconds()/gib)
}
