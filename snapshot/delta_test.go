package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// exactPolicy is a delta policy without jitter, so that tests can predict
// every decision; fields left 0 take their defaults.
func exactPolicy(p IncrementalOptions) IncrementalOptions {
	p.Jitter = -1
	return p
}

// checkHandleStats checks the key group counts and sizes of h, written by
// checkpoint ckpt with previous handle prev, against its key groups.
func checkHandleStats(t *testing.T, h, prev *KeyedHandle, ckpt uint64) {
	t.Helper()
	var full, delta, reused, maxChain int
	var written, referenced int64
	idx := newRefIndex(prev)
	for i := range h.KeyGroups {
		r := &h.KeyGroups[i]
		maxChain = max(maxChain, len(r.Deltas))
		p, ok := idx.find(r.KeyGroup)
		switch {
		case len(r.Deltas) == 0 && r.Writer == ckpt:
			full++
			written += r.StoredBytes
		case ok && p.Version == r.Version:
			reused++
			referenced += r.chainStoredBytes()
			if r.chainStoredBytes() != p.chainStoredBytes() || r.Writer != p.Writer || len(r.Deltas) != len(p.Deltas) {
				t.Errorf("checkpoint %d: reused key group %d differs from the previous one: %+v vs %+v", ckpt, r.KeyGroup, *r, p)
			}
		case ok:
			delta++
			referenced += p.chainStoredBytes()
			if r.Writer != p.Writer || r.Blocks != p.Blocks || r.StoredBytes != p.StoredBytes {
				t.Errorf("checkpoint %d: key group %d has another base than its previous chain", ckpt, r.KeyGroup)
			}
			switch len(r.Deltas) {
			case len(p.Deltas) + 1:
				if r.Deltas[len(p.Deltas)].Writer != ckpt {
					t.Errorf("checkpoint %d: key group %d's new delta was written by %d", ckpt, r.KeyGroup, r.Deltas[len(p.Deltas)].Writer)
				}
				written += r.Deltas[len(p.Deltas)].StoredBytes
			case len(p.Deltas): // nothing to write
			default:
				t.Errorf("checkpoint %d: key group %d went from %d to %d deltas", ckpt, r.KeyGroup, len(p.Deltas), len(r.Deltas))
			}
		default:
			t.Errorf("checkpoint %d: key group %d neither written nor in the previous handle: %+v", ckpt, r.KeyGroup, *r)
		}
	}
	if h.FullKeyGroups != full || h.DeltaKeyGroups != delta || h.ReusedKeyGroups != reused || h.MaxChain != maxChain {
		t.Errorf("checkpoint %d: handle counts %d full, %d delta, %d reused, chain %d; key groups say %d, %d, %d, %d",
			ckpt, h.FullKeyGroups, h.DeltaKeyGroups, h.ReusedKeyGroups, h.MaxChain, full, delta, reused, maxChain)
	}
	if h.StoredBytes != written || h.ReusedBytes != referenced {
		t.Errorf("checkpoint %d: handle says %d stored, %d reused bytes; key groups say %d, %d",
			ckpt, h.StoredBytes, h.ReusedBytes, written, referenced)
	}
}

// TestDeltaRoundTrip writes chains of delta checkpoints of a changing
// model with the default policy, and checks after each that it reads back
// (base, then deltas) as the model's entries, that it verifies, that its
// statistics add up, and at the end that every older checkpoint still
// reads back as the model was then.
func TestDeltaRoundTrip(t *testing.T) {
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		for _, path := range storagePaths {
			if c != CompressionZstd && path.name != "batch" {
				continue // the storage path does not depend on the compression
			}
			if testing.Short() && (c != CompressionZstd || path.name == "switch") {
				continue
			}
			t.Run(c.String()+"/"+path.name, func(t *testing.T) { testDeltaRoundTrip(t, c, path.threshold, false) })
		}
	}
	t.Run("padded", func(t *testing.T) { testDeltaRoundTrip(t, CompressionS2, 1<<40, true) })
}

func testDeltaRoundTrip(t *testing.T, c Compression, ingestThreshold int, pad bool) {
	const kgs, keys, checkpoints = 8, 400, 14
	s, _ := openStore(t, Options{Compression: c, BlockSizeBytes: MinBlockSizeBytes})
	s.ingestThresholdBytes = ingestThreshold
	m := newDeltaModel(1000, "count", "sum")
	m.pad = pad
	m.fill(0, kgs-1, keys) // the last key group starts empty
	rng := rand.New(rand.NewPCG(uint64(c), uint64(ingestThreshold)))
	renders := map[uint64]string{}
	var prev *KeyedHandle
	deltas, maxChain := 0, 0
	for id := uint64(1); id <= checkpoints; id++ {
		if id > 1 {
			m.churn(rng, 0, kgs, keys, 60) // ~2 % of the keys per key group
		}
		if id == 5 {
			for i := 0; i < keys; i += 2 { // half of key group 2 goes
				m.del(2, 0, fmt.Sprintf("k%05d", i))
			}
		}
		h := mustWrite(t, s, "job", id, "agg", 0, kgs, m, prev)
		checkHandleStats(t, h, prev, id)
		meta := commit(t, s, "job", id, h)
		renders[id] = m.render(0, kgs)
		if got := readState(t, s, "job", h, 0, kgs); got != renders[id] {
			t.Fatalf("checkpoint %d reads back differently:\n%s", id, diffLines(got, renders[id]))
		}
		if err := s.Verify(meta); err != nil {
			t.Fatalf("checkpoint %d: Verify: %v", id, err)
		}
		deltas += h.DeltaKeyGroups
		maxChain = max(maxChain, h.MaxChain)
		prev = h
	}
	if deltas < kgs*(checkpoints-1)/2 || maxChain < 3 {
		t.Errorf("%d key groups written as deltas, longest chain %d: the default policy should write most changes as deltas", deltas, maxChain)
	}
	for id := uint64(1); id <= checkpoints; id++ {
		meta, err := s.LoadMetadata("job", id)
		if err != nil {
			t.Fatal(err)
		}
		if got := readState(t, s, "job", meta.Tasks[0].Keyed, 0, kgs); got != renders[id] {
			t.Errorf("checkpoint %d reads back differently at the end", id)
		}
		// A rescaled task reads only its own key groups.
		if got, want := readState(t, s, "job", meta.Tasks[0].Keyed, 2, 5), renderRange(renders[id], 2, 5); got != want {
			t.Errorf("checkpoint %d: key groups [2, 5) read back differently", id)
		}
	}
}

// renderRange keeps the lines of a rendering whose key group is in [start, end).
func renderRange(text string, start, end int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		var kg int
		if _, err := fmt.Sscanf(line, "%d ", &kg); err == nil && kg >= start && kg < end {
			b.WriteString(line)
		}
	}
	return b.String()
}

// diffLines shows the first lines where got and want differ.
func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: got %q, want %q (%d vs %d lines)", i, gl, wl, len(g), len(w))
		}
	}
	return "equal"
}

// chains returns the chain length of each key group of h (-1: written in
// full by ckpt).
func chains(h *KeyedHandle, ckpt uint64) []int {
	var out []int
	for _, r := range h.KeyGroups {
		if r.Writer == ckpt {
			out = append(out, -1)
		} else {
			out = append(out, len(r.Deltas))
		}
	}
	return out
}

// fixedModel fills key group kg of m with n entries of 10-byte values.
func fixedModel(m *deltaModel, kg, n int) {
	for i := 0; i < n; i++ {
		m.set(kg, 0, fmt.Sprintf("k%05d", i), fmt.Appendf(nil, "%010d", i))
	}
}

// change sets n entries of key group kg (from the first) to new 10-byte values.
func change(m *deltaModel, kg, n int, round uint64) {
	for i := 0; i < n; i++ {
		m.set(kg, 0, fmt.Sprintf("k%05d", i), fmt.Appendf(nil, "%010d", int(round)*1000+i))
	}
}

func TestDeltaPolicy(t *testing.T) {
	// run writes checkpoints 1…len(changes)+1 of one key group of 100
	// entries; before checkpoint i+2 it changes changes[i] entries. It
	// returns each checkpoint's chain length (-1: written in full).
	run := func(t *testing.T, p IncrementalOptions, changes ...int) []int {
		t.Helper()
		s, _ := openStore(t, Options{Compression: CompressionNone, Incremental: p})
		m := newDeltaModel(1, "a")
		fixedModel(m, 0, 100)
		var got []int
		var prev *KeyedHandle
		for id := uint64(1); id <= uint64(len(changes))+1; id++ {
			if id > 1 {
				change(m, 0, changes[id-2], id)
			}
			h := mustWrite(t, s, "job", id, "agg", 0, 1, m, prev)
			commit(t, s, "job", id, h)
			if got1 := readState(t, s, "job", h, 0, 1); got1 != m.render(0, 1) {
				t.Fatalf("checkpoint %d reads back differently", id)
			}
			got = append(got, chains(h, id)[0])
			prev = h
		}
		return got
	}
	t.Run("max chain", func(t *testing.T) {
		got := run(t, exactPolicy(IncrementalOptions{MaxChain: 3, MaxChainRatio: 100, MaxDeltaFraction: 1}), 1, 1, 1, 1, 1, 1, 1)
		if want := []int{-1, 1, 2, 3, -1, 1, 2, 3}; !slices.Equal(got, want) {
			t.Errorf("chains %v, want %v", got, want)
		}
	})
	t.Run("ratio", func(t *testing.T) {
		// Each delta of 10 of 100 equal entries is ~10 % of the base (plus
		// its header): two fit under 25 %, the third would not.
		got := run(t, exactPolicy(IncrementalOptions{MaxChain: 100, MaxChainRatio: 0.25, MaxDeltaFraction: 1}), 10, 10, 10, 10, 10)
		if want := []int{-1, 1, 2, -1, 1, 2}; !slices.Equal(got, want) {
			t.Errorf("chains %v, want %v", got, want)
		}
	})
	t.Run("fraction", func(t *testing.T) {
		got := run(t, exactPolicy(IncrementalOptions{MaxChain: 100, MaxChainRatio: 100, MaxDeltaFraction: 0.5}), 50, 51, 10)
		if want := []int{-1, 1, -1, 1}; !slices.Equal(got, want) {
			t.Errorf("chains %v, want %v", got, want)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		got := run(t, IncrementalOptions{Disabled: true}, 1, 1, 1)
		if want := []int{-1, -1, -1, -1}; !slices.Equal(got, want) {
			t.Errorf("chains %v, want %v", got, want)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		got := run(t, IncrementalOptions{}, 1, 1, 1)
		if want := []int{-1, 1, 2, 3}; !slices.Equal(got, want) {
			t.Errorf("chains %v, want %v", got, want)
		}
	})
}

// TestDeltaFallsBackToFull: whenever the view cannot tell what changed, or
// the key group has no base to build on, the key group is written in full
// — and reads back right either way.
func TestDeltaFallsBackToFull(t *testing.T) {
	f := func(name string, prepare func(m *deltaModel) View, wantChanges bool) {
		t.Run(name, func(t *testing.T) {
			s, _ := openStore(t, Options{})
			m := newDeltaModel(1, "a")
			fixedModel(m, 0, 100)
			h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
			commit(t, s, "job", 1, h1)
			change(m, 0, 3, 2)
			v := prepare(m)
			h2 := mustWrite(t, s, "job", 2, "agg", 0, 1, v, h1)
			commit(t, s, "job", 2, h2)
			if c := chains(h2, 2); c[0] != -1 || h2.FullKeyGroups != 1 || h2.DeltaKeyGroups != 0 {
				t.Errorf("chains %v, %d full, %d delta key groups: want the key group written in full", c, h2.FullKeyGroups, h2.DeltaKeyGroups)
			}
			if (m.changesCalls > 0) != wantChanges {
				t.Errorf("Changes called %d times", m.changesCalls)
			}
			if got := readState(t, s, "job", h2, 0, 1); got != m.render(0, 1) {
				t.Errorf("reads back differently")
			}
		})
	}
	f("no estimate", func(m *deltaModel) View { m.noEstimate = true; return m }, false)
	f("changes refused", func(m *deltaModel) View { m.refuse = true; return m }, true)
	f("log truncated", func(m *deltaModel) View { m.truncate(0); return m }, false)
	f("not a DeltaView", func(m *deltaModel) View { return viewOnly{m} }, false)
	f("another backend", func(m *deltaModel) View {
		// A restored backend: same entries, versions of its own.
		fresh := newDeltaModel(1<<40, "a")
		for k, v := range m.groups[0] {
			fresh.set(0, k.state, k.key, v)
		}
		*m = *fresh
		return m
	}, false)

	t.Run("empty base", func(t *testing.T) {
		s, _ := openStore(t, Options{})
		m := newDeltaModel(1, "a")
		m.touch(0) // written, but empty
		h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
		commit(t, s, "job", 1, h1)
		fixedModel(m, 0, 5)
		h2 := mustWrite(t, s, "job", 2, "agg", 0, 1, m, h1)
		if c := chains(h2, 2); c[0] != -1 || m.changesCalls != 0 {
			t.Errorf("chains %v: a key group with an empty base is written in full", c)
		}
	})
}

// TestDeltaWithoutOperations: a key group whose version changed but that
// has nothing to write keeps its chain under the new version.
func TestDeltaWithoutOperations(t *testing.T) {
	s, _ := openStore(t, Options{})
	m := newDeltaModel(1, "a")
	fixedModel(m, 0, 100)
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
	commit(t, s, "job", 1, h1)
	change(m, 0, 2, 2)
	h2 := mustWrite(t, s, "job", 2, "agg", 0, 1, m, h1)
	commit(t, s, "job", 2, h2)
	m.touch(0)
	h3 := mustWrite(t, s, "job", 3, "agg", 0, 1, m, h2)
	m3 := commit(t, s, "job", 3, h3)
	r := h3.KeyGroups[0]
	if len(r.Deltas) != 1 || r.Version != m.versions[0] || h3.DeltaKeyGroups != 1 || h3.StoredBytes != 0 ||
		h3.ReusedBytes != h2.KeyGroups[0].chainStoredBytes() {
		t.Fatalf("checkpoint 3: %+v, handle %+v", r, *h3)
	}
	if w := blockWriters(t, s, "job"); w[3] != 0 {
		t.Errorf("checkpoint 3 wrote %d blocks", w[3])
	}
	checkHandleStats(t, h3, h2, 3)
	if err := s.Verify(m3); err != nil {
		t.Fatal(err)
	}
	if got := readState(t, s, "job", h3, 0, 1); got != m.render(0, 1) {
		t.Error("reads back differently")
	}
	// Unchanged since: reused.
	h4 := mustWrite(t, s, "job", 4, "agg", 0, 1, m, h3)
	if h4.ReusedKeyGroups != 1 || len(h4.KeyGroups[0].Deltas) != 1 {
		t.Errorf("checkpoint 4: %+v", *h4)
	}
}

// TestDeltaJitter: with every key group of a uniformly updated state
// changing alike, the jitter spreads the materializations over
// checkpoints; without it they all come at once.
func TestDeltaJitter(t *testing.T) {
	const kgs, checkpoints = 64, 40
	run := func(jitter float64) (maxFull int, fulls []int) {
		s, _ := openStore(t, Options{Compression: CompressionNone, Incremental: IncrementalOptions{
			MaxChain: 8, MaxChainRatio: 100, MaxDeltaFraction: 1, Jitter: jitter}})
		m := newDeltaModel(1, "a")
		for kg := 0; kg < kgs; kg++ {
			fixedModel(m, kg, 50)
		}
		var prev *KeyedHandle
		for id := uint64(1); id <= checkpoints; id++ {
			if id > 1 {
				for kg := 0; kg < kgs; kg++ {
					change(m, kg, 2, id)
				}
			}
			h := mustWrite(t, s, "job", id, "agg", 0, kgs, m, prev)
			commit(t, s, "job", id, h)
			if err := s.Retain("job", 1); err != nil {
				t.Fatal(err)
			}
			if id > 1 {
				maxFull = max(maxFull, h.FullKeyGroups)
				fulls = append(fulls, h.FullKeyGroups)
			}
			prev = h
		}
		return maxFull, fulls
	}
	if maxFull, fulls := run(-1); maxFull != kgs {
		t.Errorf("without jitter at most %d key groups materialize at once (%v); the test expects all %d", maxFull, fulls, kgs)
	}
	maxFull, fulls := run(0.5)
	if maxFull > kgs/3 {
		t.Errorf("with jitter up to %d of %d key groups materialize at once: %v", maxFull, kgs, fulls)
	}
	total := 0
	for _, n := range fulls {
		total += n
	}
	if total < kgs*(checkpoints-1)/9 || total > kgs*(checkpoints-1)/4 {
		t.Errorf("with jitter %d materializations in %d checkpoints of %d key groups: chains of 4 to 8 expected", total, checkpoints-1, kgs)
	}

	// The factor is deterministic, in (1-Jitter, 1], and differs between
	// key groups and between bases.
	o := IncrementalOptions{Jitter: 0.5}
	seen := map[float64]bool{}
	for kg := 0; kg < 100; kg++ {
		for w := uint64(1); w < 4; w++ {
			f := o.jitterFactor("agg", kg, w)
			if f <= 0.5 || f > 1 || f != o.jitterFactor("agg", kg, w) {
				t.Fatalf("jitterFactor(agg, %d, %d) = %v", kg, w, f)
			}
			seen[f] = true
		}
	}
	if len(seen) < 290 {
		t.Errorf("only %d distinct factors of 300", len(seen))
	}
	if f := (&IncrementalOptions{Jitter: -1}).jitterFactor("agg", 3, 3); f != 1 {
		t.Errorf("without jitter the factor is %v", f)
	}
}

// TestDeltaRetention: a retained checkpoint keeps its base and every
// delta of its chains, however old the checkpoints that wrote them; a
// materialization frees the old chain once no retained checkpoint
// references it; an in-flight checkpoint's chains are pinned.
func TestDeltaRetention(t *testing.T) {
	s, _ := openStore(t, Options{Incremental: exactPolicy(IncrementalOptions{MaxChain: 3, MaxChainRatio: 100, MaxDeltaFraction: 1})})
	m := newDeltaModel(1, "a")
	fixedModel(m, 0, 100) // changes at every checkpoint
	fixedModel(m, 1, 100) // never changes after checkpoint 1
	kgsOf := func() map[uint64][]int {
		prefix := jobPrefix(nil, blockTag, "job")
		out := map[uint64][]int{}
		for _, kv := range allKeys(t, s, string(prefix)) {
			k, _ := parseBlockKey(kv.key, len(prefix))
			if !slices.Contains(out[k.writer], k.kg) {
				out[k.writer] = append(out[k.writer], k.kg)
			}
		}
		return out
	}
	var prev *KeyedHandle
	step := func(id uint64) *KeyedHandle {
		t.Helper()
		if id > 1 {
			change(m, 0, 3, id)
		}
		h := mustWrite(t, s, "job", id, "agg", 0, 2, m, prev)
		meta := commit(t, s, "job", id, h)
		if err := s.Retain("job", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(meta); err != nil {
			t.Fatalf("checkpoint %d after retention: %v", id, err)
		}
		if got := readState(t, s, "job", h, 0, 2); got != m.render(0, 2) {
			t.Fatalf("checkpoint %d reads back differently after retention", id)
		}
		prev = h
		return h
	}
	for id := uint64(1); id <= 4; id++ {
		step(id)
	}
	if ids, _ := s.Completed("job"); !slices.Equal(ids, []uint64{4}) {
		t.Fatalf("Completed = %v", ids)
	}
	want := map[uint64][]int{1: {0, 1}, 2: {0}, 3: {0}, 4: {0}}
	if got := kgsOf(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("blocks by writer (key groups) %v, want %v: checkpoint 4's chain of key group 0 is 1+2+3+4", got, want)
	}
	// Checkpoint 5 materializes key group 0 (its chain is full): the old
	// chain goes, key group 1's base of checkpoint 1 stays.
	h5 := step(5)
	if c := chains(h5, 5); !slices.Equal(c, []int{-1, 0}) {
		t.Fatalf("checkpoint 5 chains %v", c)
	}
	want = map[uint64][]int{1: {1}, 5: {0}}
	if got := kgsOf(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a materialization, blocks by writer (key groups) %v, want %v", got, want)
	}

	// Pins: checkpoint 9 builds on checkpoint 7's chains while checkpoint
	// 8, which a restarted task wrote in full, completes; retention with 8
	// the newest keeps what the in-flight 9 references.
	step(6)
	h7 := step(7) // key group 0: base 5, deltas 6, 7
	h8 := mustWrite(t, s, "job", 8, "agg", 0, 2, viewOnly{m}, nil)
	change(m, 0, 3, 9)
	h9 := mustWrite(t, s, "job", 9, "agg", 0, 2, m, h7)
	if c := chains(h9, 9); !slices.Equal(c, []int{3, 0}) {
		t.Fatalf("checkpoint 9 chains %v", c)
	}
	commit(t, s, "job", 8, h8)
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	want = map[uint64][]int{1: {1}, 5: {0}, 6: {0}, 7: {0}, 8: {0, 1}, 9: {0}}
	if got := kgsOf(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with checkpoint 9 in flight, blocks by writer (key groups) %v, want %v", got, want)
	}
	m9 := commit(t, s, "job", 9, h9)
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	want = map[uint64][]int{1: {1}, 5: {0}, 6: {0}, 7: {0}, 9: {0}}
	if got := kgsOf(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("at the end, blocks by writer (key groups) %v, want %v", got, want)
	}
	if err := s.Verify(m9); err != nil {
		t.Fatal(err)
	}
	if got := readState(t, s, "job", h9, 0, 2); got != m.render(0, 2) {
		t.Fatal("checkpoint 9 reads back differently")
	}
}

// deltaFixture commits checkpoints 1 (full) to 4 of job "job", scope
// "agg": every key group of 4 changes at every checkpoint, so each has
// the chain 1 <- 2 <- 3 <- 4. It returns each checkpoint's entries.
func deltaFixture(t *testing.T, c Compression) (*Store, *logBuffer, map[uint64]string) {
	t.Helper()
	s, logs := openStore(t, Options{Compression: c, BlockSizeBytes: MinBlockSizeBytes,
		Incremental: exactPolicy(IncrementalOptions{MaxChain: 10})})
	m := newDeltaModel(1, "count", "sum")
	m.fill(0, 4, 300)
	rng := rand.New(rand.NewPCG(4, 4))
	renders := map[uint64]string{}
	var prev *KeyedHandle
	for id := uint64(1); id <= 4; id++ {
		if id > 1 {
			for kg := 0; kg < 4; kg++ {
				m.churn(rng, kg, kg+1, 300, 10)
			}
		}
		h := mustWrite(t, s, "job", id, "agg", 0, 4, m, prev)
		commit(t, s, "job", id, h)
		renders[id] = m.render(0, 4)
		prev = h
	}
	if c := chains(prev, 4); !slices.Equal(c, []int{3, 3, 3, 3}) {
		t.Fatalf("fixture chains %v, want 3 deltas each", c)
	}
	return s, logs, renders
}

// getValue returns the stored value of key.
func getValue(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	val, closer, err := s.db.Get(key)
	if err != nil {
		t.Fatalf("get %x: %v", key, err)
	}
	defer closer.Close()
	return bytes.Clone(val)
}

// TestDeltaCorruption: a damaged, missing or misplaced delta block makes
// every checkpoint whose chain holds it fail with a corruption error that
// names the delta and the block, and recovery falls back to the newest
// checkpoint whose chains do not hold it; a damaged base fails them all.
func TestDeltaCorruption(t *testing.T) {
	s, logs, renders := deltaFixture(t, CompressionS2)
	m4, err := s.LoadMetadata("job", 4)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, key, bad []byte, wantErr string, wantLatest uint64) {
		t.Helper()
		good := getValue(t, s, key)
		if bad == nil {
			if err := s.db.Delete(key, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		} else {
			set(t, s, key, bad)
		}
		logs.reset()
		err := s.Verify(m4)
		if !IsCorruption(err) || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: Verify = %v, want corruption containing %q", name, err, wantErr)
		}
		if _, rerr := tryReadState(s, "job", m4.Tasks[0].Keyed, 0, 4); !IsCorruption(rerr) {
			t.Errorf("%s: ReadKeyed = %v, want corruption", name, rerr)
		}
		var restored string
		latest, err := s.Recover("job", func(m *Metadata) error {
			var err error
			restored, err = tryReadState(s, "job", m.Tasks[0].Keyed, 0, 4)
			return err
		})
		switch {
		case wantLatest == 0:
			if latest != nil || !IsCorruption(err) || !strings.Contains(err.Error(), "no checkpoint of job job verifies") {
				t.Errorf("%s: Recover = %v, %v; want a refusal", name, latest, err)
			}
		case err != nil || latest == nil || latest.CheckpointID != wantLatest:
			t.Errorf("%s: Recover = %v, %v; want checkpoint %d", name, latest, err, wantLatest)
		case restored != renders[wantLatest]:
			t.Errorf("%s: checkpoint %d restores the wrong state", name, wantLatest)
		case !strings.Contains(logs.String(), "falls back to checkpoint"):
			t.Errorf("%s: recovery fell back silently:\n%s", name, logs)
		}
		set(t, s, key, good)
	}
	flip := func(key []byte) []byte {
		v := getValue(t, s, key)
		v[len(v)/2] ^= 0x20
		return v
	}
	k4 := blockKey(nil, "job", 4, "agg", 1, 0)
	check("checkpoint 4's delta damaged", k4, flip(k4),
		`snapshot: job job, checkpoint 4, scope "agg", key group 1, delta 3 of 3, block 0 (written by checkpoint 4): block checksum mismatch`, 3)
	check("checkpoint 4's delta missing", k4, nil,
		`key group 1, delta 3 of 3, block 0 (written by checkpoint 4): block is missing`, 3)
	full, _ := AppendBlock(nil, CompressionNone, []string{"count"}, encodeEntries(1, 1))
	check("a full block in a delta's place", k4, full,
		`key group 1, delta 3 of 3, block 0 (written by checkpoint 4): a delta's block is a full block`, 3)
	k2 := blockKey(nil, "job", 2, "agg", 3, 0)
	check("checkpoint 2's delta damaged", k2, flip(k2),
		`key group 3, delta 1 of 3, block 0 (written by checkpoint 2): block checksum mismatch`, 1)
	k1 := blockKey(nil, "job", 1, "agg", 0, 1)
	check("the base damaged", k1, flip(k1), `key group 0, block 1 (written by checkpoint 1): block checksum mismatch`, 0)
	delta, _ := AppendDeltaBlock(nil, CompressionNone, []string{"count"}, encodeDeltaEntries(1, 1))
	check("a delta block in the base's place", k1, delta, `key group 0, block 1 (written by checkpoint 1): a base's block is a delta block`, 0)

	// Totals: a delta's deletion count that does not match its blocks.
	bad := *m4
	bad.Tasks = slices.Clone(m4.Tasks)
	h := *m4.Tasks[0].Keyed
	h.KeyGroups = slices.Clone(h.KeyGroups)
	h.KeyGroups[2].Deltas = slices.Clone(h.KeyGroups[2].Deltas)
	h.KeyGroups[2].Deltas[1].Deletes++
	h.KeyGroups[2].Deltas[1].Entries++
	bad.Tasks[0].Keyed = &h
	if err := s.Verify(&bad); !IsCorruption(err) || !strings.Contains(err.Error(), "key group 2, delta 2 of 3 (written by checkpoint 3): delta blocks hold") {
		t.Errorf("Verify with wrong delta totals = %v", err)
	}
	if err := s.Verify(m4); err != nil {
		t.Fatalf("after restoring every value: %v", err)
	}
}

// TestDeltaSavepoint: a savepoint of a checkpoint with delta chains holds
// every block of its chains and restores the same state.
func TestDeltaSavepoint(t *testing.T) {
	s, _, renders := deltaFixture(t, CompressionZstd)
	dir := t.TempDir() + "/sp"
	d, err := s.ExportSavepoint("job", 4, dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Blocks != len(allKeys(t, s, string(jobPrefix(nil, blockTag, "job")))) {
		t.Errorf("savepoint copied %d blocks, the store has %d (all referenced by checkpoint 4)", d.Blocks,
			len(allKeys(t, s, string(jobPrefix(nil, blockTag, "job")))))
	}
	sp, _, err := OpenSavepoint(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	m, err := sp.Latest("job")
	if err != nil || m == nil || m.CheckpointID != 4 {
		t.Fatalf("savepoint Latest = %v, %v", m, err)
	}
	if got := readState(t, sp, "job", m.Tasks[0].Keyed, 0, 4); got != renders[4] {
		t.Error("the savepoint restores a different state")
	}
	// A damaged delta is refused by the export.
	key := blockKey(nil, "job", 3, "agg", 2, 0)
	v := getValue(t, s, key)
	v[len(v)-1] ^= 1
	set(t, s, key, v)
	_, err = s.ExportSavepoint("job", 4, t.TempDir()+"/bad")
	if !IsCorruption(err) || !strings.Contains(err.Error(), "key group 2, delta 2 of 3, block 0 (written by checkpoint 3)") {
		t.Errorf("export of a checkpoint with a damaged delta = %v", err)
	}
}

// TestDeltaBlockCompression: delta blocks use DeltaCompression (S2 by
// default), full blocks Compression.
func TestDeltaBlockCompression(t *testing.T) {
	f := func(opts Options, wantFull, wantDelta Compression) {
		t.Helper()
		s, _ := openStore(t, opts)
		m := newDeltaModel(1, "a")
		for i := 0; i < 400; i++ {
			m.set(0, 0, fmt.Sprintf("key-%08d", i), bytes.Repeat([]byte("abcd"), 8))
		}
		h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
		commit(t, s, "job", 1, h1)
		for i := 0; i < 100; i++ {
			m.set(0, 0, fmt.Sprintf("key-%08d", i), bytes.Repeat([]byte("efgh"), 8))
		}
		h2 := mustWrite(t, s, "job", 2, "agg", 0, 1, m, h1)
		if len(h2.KeyGroups[0].Deltas) != 1 {
			t.Fatalf("no delta: %+v", h2.KeyGroups[0])
		}
		for _, w := range []struct {
			writer uint64
			want   Compression
		}{{1, wantFull}, {2, wantDelta}} {
			b, err := DecodeBlock(nil, getValue(t, s, blockKey(nil, "job", w.writer, "agg", 0, 0)))
			if err != nil || b.Compression != w.want || b.Delta != (w.writer == 2) {
				t.Errorf("%+v: block of writer %d: delta %v, %s, %v; want %s", opts.Incremental, w.writer, b.Delta, b.Compression, err, w.want)
			}
		}
	}
	f(Options{}, CompressionZstd, CompressionS2)
	zstd := CompressionZstd
	f(Options{Compression: CompressionS2, Incremental: IncrementalOptions{DeltaCompression: &zstd}}, CompressionS2, CompressionZstd)
	f(Options{Compression: CompressionNone}, CompressionNone, CompressionNone)
}

func TestIncrementalOptions(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	p := o.Incremental
	if p.Disabled || p.MaxChain != DefaultMaxChain || p.MaxChainRatio != DefaultMaxChainRatio ||
		p.MaxDeltaFraction != DefaultMaxDeltaFraction || p.Jitter != DefaultJitter || *p.DeltaCompression != DefaultDeltaCompression {
		t.Fatalf("defaults: %+v", p)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := CompressionNone + 5
	o.Incremental = IncrementalOptions{MaxChain: MaxDeltaChain + 1, MaxChainRatio: -1, MaxDeltaFraction: 1.5, Jitter: 1, DeltaCompression: &bad}
	err := o.Validate()
	for _, want := range []string{"Incremental.MaxChain", "Incremental.MaxChainRatio", "Incremental.MaxDeltaFraction",
		"Incremental.Jitter", "Incremental.DeltaCompression"} {
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	if _, err := Open(t.TempDir(), Options{Incremental: IncrementalOptions{MaxChain: -3}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Open with a bad policy = %v", err)
	}
}

// TestDeltaChainProblems: metadata with impossible chains is refused.
func TestDeltaChainProblems(t *testing.T) {
	s, _ := openStore(t, Options{})
	ref := func(deltas ...DeltaRef) KeyGroupRef {
		return KeyGroupRef{KeyGroup: 0, Writer: 2, Blocks: 1, RawBytes: 10, StoredBytes: 10, Entries: 1, Deltas: deltas}
	}
	ok := DeltaRef{Writer: 3, Blocks: 1, RawBytes: 5, StoredBytes: 5, Entries: 2, Deletes: 1}
	f := func(name string, h KeyedHandle, want string) {
		t.Helper()
		h.Scope = "agg"
		m := &Metadata{Job: "j", CheckpointID: 5, Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, Keyed: &h}}}
		err := s.CommitCheckpoint(m)
		if want == "" {
			if err != nil {
				t.Errorf("%s: CommitCheckpoint = %v", name, err)
			}
			return
		}
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: CommitCheckpoint = %v, want ErrInvalidArgument mentioning %q", name, err, want)
		}
	}
	with := func(mut func(d *DeltaRef)) DeltaRef { d := ok; mut(&d); return d }
	f("writer at the base's", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.Writer = 2 }))}}, "delta 1 was written by checkpoint 2, not in [3, 5]")
	f("writers not increasing", KeyedHandle{KeyGroups: []KeyGroupRef{ref(ok, ok)}}, "delta 2 was written by checkpoint 3, not in [4, 5]")
	f("writer after the checkpoint", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.Writer = 6 }))}}, "not in [3, 5]")
	f("no blocks", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.Blocks = 0 }))}}, "has 0 blocks")
	f("negative size", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.StoredBytes = -1 }))}}, "negative sizes")
	f("more deletions than operations", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.Deletes = 3 }))}}, "2 operations (3 deletions)")
	f("fewer operations than blocks", KeyedHandle{KeyGroups: []KeyGroupRef{ref(with(func(d *DeltaRef) { d.Blocks = 3 }))}}, "in 3 blocks")
	f("too long", KeyedHandle{KeyGroups: []KeyGroupRef{ref(make([]DeltaRef, MaxDeltaChain+1)...)}}, "more than the limit")
	f("counts", KeyedHandle{FullKeyGroups: 2, KeyGroups: []KeyGroupRef{ref()}}, "do not fit 1 key groups")
	f("chain count", KeyedHandle{MaxChain: -1, KeyGroups: []KeyGroupRef{ref()}}, "longest delta chain -1")
	f("a sound chain", KeyedHandle{DeltaKeyGroups: 1, MaxChain: 2, KeyGroups: []KeyGroupRef{ref(ok, with(func(d *DeltaRef) { d.Writer = 5 }))}}, "")
}

// TestChangesContract: a view that breaks the DeltaView contract is a bug,
// and panics with a message naming the broken invariant.
func TestChangesContract(t *testing.T) {
	f := func(name string, changes func(fn func(int, []byte, []byte, uint8) error) (bool, error)) {
		t.Run(name, func(t *testing.T) {
			s, _ := openStore(t, Options{})
			m := newDeltaModel(1, "a")
			fixedModel(m, 0, 10)
			h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
			commit(t, s, "job", 1, h1)
			change(m, 0, 1, 2)
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invariant violated") {
					t.Errorf("recover() = %v, want an invariant panic", r)
				}
			}()
			_, _ = s.WriteKeyed("job", 2, "agg", 0, 1, brokenChanges{m, changes}, h1)
		})
	}
	f("ok=false after reporting", func(fn func(int, []byte, []byte, uint8) error) (bool, error) {
		_ = fn(0, []byte("k"), []byte("v"), OpPut)
		return false, nil
	})
	f("deletion after upsert", func(fn func(int, []byte, []byte, uint8) error) (bool, error) {
		_ = fn(0, []byte("k"), []byte("v"), OpPut)
		_ = fn(0, []byte("j"), nil, OpDelete)
		return true, nil
	})
	f("state out of range", func(fn func(int, []byte, []byte, uint8) error) (bool, error) {
		return true, fn(1, []byte("k"), nil, OpDelete)
	})

	// An error from Changes fails the checkpoint, naming the key group.
	s, _ := openStore(t, Options{})
	m := newDeltaModel(1, "a")
	fixedModel(m, 0, 10)
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 1, m, nil)
	commit(t, s, "job", 1, h1)
	change(m, 0, 1, 2)
	boom := errors.New("boom")
	_, err := s.WriteKeyed("job", 2, "agg", 0, 1, brokenChanges{m, func(func(int, []byte, []byte, uint8) error) (bool, error) {
		return true, boom
	}}, h1)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "cannot read the changes of key group 0") {
		t.Errorf("WriteKeyed with a failing Changes = %v", err)
	}
}

// brokenChanges is a deltaModel whose Changes is replaced.
type brokenChanges struct {
	*deltaModel
	changes func(fn func(int, []byte, []byte, uint8) error) (bool, error)
}

func (b brokenChanges) Changes(kg int, since uint64, fn func(state int, key, value []byte, op uint8) error) (bool, error) {
	return b.changes(fn)
}
