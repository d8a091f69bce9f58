package jobrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

const (
	aggCount = 6000
	aggKeys  = 40
)

// aggSpec uses every accumulator and a numeric and a string reduce, with
// 5 ms checkpoints, over a rate-limited source (about 0.3 s of input).
var aggSpec = fmt.Sprintf(`name: aggs
parallelism: 2
checkpointing: {interval: 5ms}
source: {type: sequence, count: %d, keys: %d, rate: 10000}
pipeline:
  - filter: "seq %% 7 != 3"
  - map:
      page: "seq %% 5 == 0 ? 'a' : seq %% 5 == 1 ? 'b' : 'c'"
      amount: "float(seq) / 4"
  - key_by: key
  - aggregate:
      n: {count: {}}
      total: {sum: seq}
      avg_amount: {avg: amount}
      lo: {min: amount}
      hi: {max: seq}
      first_seq: {first: seq}
      last_seq: {last: seq}
      first_page: {first: page}
      max_page: {max: page}
      pages: {count_distinct: page}
      approx_pages: {count_distinct_approx: page}
      mods: {count_distinct: "seq %% 13"}
  - reduce: {field: hash, value: "(acc * 31 + seq) %% 1000003", init: seq}
  - reduce: {field: trail, value: "acc + page", init: page}
sink: {type: file, path: OUT}
`, aggCount, aggKeys)

// aggRecord is one output record, with the fields the test checks.
type aggRecord struct {
	Key, Seq, N, Total, Hi, FirstSeq, LastSeq, Pages, ApproxPages, Mods, Hash int64
	AvgAmount, Lo                                                             float64
	FirstPage, MaxPage, Trail, Page                                           string
}

// wantAggs computes every output record of aggSpec, by key and seq.
func wantAggs() map[[2]int64]aggRecord {
	out := make(map[[2]int64]aggRecord)
	page := func(s int64) string { return []string{"a", "b", "c", "c", "c"}[s%5] }
	for k := int64(0); k < aggKeys; k++ {
		var r aggRecord
		var sumAmount float64
		pages, mods := map[string]bool{}, map[int64]bool{}
		for s := k; s < aggCount; s += aggKeys {
			if s%7 == 3 {
				continue
			}
			amount := float64(s) / 4
			p := page(s)
			if r.N == 0 {
				r = aggRecord{Key: k, FirstSeq: s, FirstPage: p, Lo: amount, Hash: s, Trail: p, MaxPage: p}
			} else {
				r.Lo = math.Min(r.Lo, amount)
				r.Hash = (r.Hash*31 + s) % 1000003
				r.Trail += p
				r.MaxPage = max(r.MaxPage, p)
			}
			r.N++
			r.Seq, r.Page = s, p
			r.Total += s
			sumAmount += amount
			r.AvgAmount = sumAmount / float64(r.N)
			r.Hi, r.LastSeq = s, s
			pages[p], mods[s%13] = true, true
			r.Pages, r.ApproxPages, r.Mods = int64(len(pages)), int64(len(pages)), int64(len(mods))
			out[[2]int64{k, s}] = r
		}
	}
	return out
}

// readAggs reads the committed output of dir.
func readAggs(t *testing.T, dir string) []aggRecord {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []aggRecord
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			d.UseNumber()
			if err := d.Decode(&m); err != nil {
				t.Fatalf("%s: %q: %v", name, sc.Text(), err)
			}
			var r aggRecord
			for name, dst := range map[string]*int64{"key": &r.Key, "seq": &r.Seq, "n": &r.N, "total": &r.Total, "hi": &r.Hi,
				"first_seq": &r.FirstSeq, "last_seq": &r.LastSeq, "pages": &r.Pages, "approx_pages": &r.ApproxPages, "mods": &r.Mods, "hash": &r.Hash} {
				n, ok := m[name].(json.Number)
				if *dst, err = n.Int64(); !ok || err != nil {
					t.Fatalf("%q: %s is not a JSON integer", sc.Text(), name)
				}
			}
			for name, dst := range map[string]*float64{"avg_amount": &r.AvgAmount, "lo": &r.Lo} {
				n, ok := m[name].(json.Number)
				if *dst, err = n.Float64(); !ok || err != nil {
					t.Fatalf("%q: %s is not a JSON number", sc.Text(), name)
				}
			}
			for name, dst := range map[string]*string{"first_page": &r.FirstPage, "max_page": &r.MaxPage, "trail": &r.Trail, "page": &r.Page} {
				v, ok := m[name].(string)
				if *dst = v; !ok {
					t.Fatalf("%q: %s is not a string", sc.Text(), name)
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// TestAggregateAndReduceSurviveRestore runs a job with aggregate and reduce
// steps in three runs over one data dir: the first is stopped with
// Job.Stop (a final checkpoint) after two checkpoints, the second is
// cancelled (no final checkpoint: it resumes from its last periodic one
// and what it wrote after that is never committed), the third runs to the
// end. Every record must be committed exactly once with exactly the values
// of an uninterrupted run.
func TestAggregateAndReduceSurviveRestore(t *testing.T) {
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	spec := strings.Replace(aggSpec, "OUT", out, 1)
	run := func(stopAfter int, cancel bool) int {
		store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		plan, err := job.Load("aggs.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var completed atomic.Int64
		var b *Built
		b, err = Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {},
			OnCheckpoint: func(s engine.CheckpointStats) {
				if s.Status != "completed" || stopAfter == 0 || completed.Add(1) != int64(stopAfter) {
					return
				}
				if cancel {
					stop()
				} else {
					go b.Job.Stop()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		err = b.Job.Run(ctx)
		if err != nil && !(cancel && errors.Is(err, context.Canceled)) {
			t.Fatal(err)
		}
		return len(readAggs(t, out))
	}
	want := wantAggs()
	// Two checkpoints each: under -race on a loaded machine a checkpoint
	// can take tens of ms, and the input lasts about half a second.
	n1 := run(2, false)
	n2 := run(2, true)
	if n1 == 0 || n1 >= len(want) || n2 >= len(want) {
		t.Fatalf("the first runs committed %d and %d of %d records; the test needs them stopped mid-way", n1, n2, len(want))
	}
	run(0, false)
	got := readAggs(t, out)
	seen := make(map[[2]int64]bool, len(got))
	for _, r := range got {
		k := [2]int64{r.Key, r.Seq}
		if seen[k] {
			t.Fatalf("record key %d seq %d committed twice", r.Key, r.Seq)
		}
		seen[k] = true
		w, ok := want[k]
		if !ok {
			t.Fatalf("unexpected record %+v", r)
		}
		if r != w {
			t.Fatalf("key %d seq %d:\n got %+v\nwant %+v", r.Key, r.Seq, r, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d records committed, want %d", len(got), len(want))
	}
	t.Logf("runs committed %d, %d, then all %d records", n1, n2, len(got))
}

// aggOps builds the keyed operators of spec's reduce and aggregate stages
// over one keyed backend, as keyedOp does in a task.
func aggOps(t testing.TB, spec string) (*keyed.Backend, []func(*job.Row), *job.Plan) {
	plan, err := job.Load("allocs.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	b, err := keyed.NewBackend(keyed.Options{MaxParallelism: 128, Range: keyed.KeyGroupRange{Start: 0, End: 128}})
	if err != nil {
		t.Fatal(err)
	}
	var ops []func(*job.Row)
	for i := range plan.Stages {
		st := &plan.Stages[i]
		var decls []job.StateDecl
		var open func(job.StateStore) func(*job.Row)
		switch {
		case st.Reduce != nil:
			decls, open = st.Reduce.States, st.Reduce.Open
		case st.Accs != nil:
			decls, open = st.Accs.States, st.Accs.Open
		default:
			continue
		}
		s := &stateStore{b: b}
		for _, d := range decls {
			kind := keyed.KindValue
			if d.Set {
				kind = keyed.KindMap
			}
			id, err := b.Register(st.Step.Name+"/"+d.Name, kind, keyed.StateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.ids = append(s.ids, id)
		}
		ops = append(ops, open(s))
	}
	return b, ops, plan
}

const aggAllocSpec = `name: allocs
source: {type: sequence, keys: 1000}
pipeline:
  - map: {amount: "float(seq) * 0.5", ok: "seq % 2 == 0"}
  - key_by: key
  - aggregate:
      n: {count: {}}
      total: {sum: seq}
      avg_amount: {avg: amount}
      lo: {min: amount}
      hi: {max: seq}
      first_seq: {first: seq}
      first_ok: {first: ok}
      last_seq: {last: seq}
  - reduce: {field: spent, value: "acc + amount", init: amount}
  - reduce: {field: seq, value: "acc > seq ? acc : seq"}
sink: {type: blackhole}
`

// TestAggregateHotPathAllocs: with keyed state in the real backend, the
// numeric accumulators and reduces allocate nothing per record.
func TestAggregateHotPathAllocs(t *testing.T) {
	b, ops, _ := aggOps(t, aggAllocSpec)
	var r job.Row
	i := uint64(0)
	step := func() {
		i++
		key := i % 1000
		b.SetCurrentKeyUint64(key, keyed.HashUint64Key(key))
		r.Num[0], r.Num[1] = key, i
		for _, op := range ops {
			op(&r)
		}
	}
	for range 2000 { // every key's state exists
		step()
	}
	if n := testing.AllocsPerRun(5000, step); n != 0 {
		t.Fatalf("%v allocations per record, want 0", n)
	}
}

func BenchmarkAggregateKeyed(b *testing.B) {
	for _, tc := range []struct{ name, spec string }{
		{"numeric", aggAllocSpec},
		{"distinct", strings.Replace(aggAllocSpec, "      n: {count: {}}\n", "      n: {count: {}}\n      d: {count_distinct: \"seq % 100\"}\n      a: {count_distinct_approx: \"seq % 100\"}\n", 1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			be, ops, _ := aggOps(b, tc.spec)
			var r job.Row
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				i++
				key := i % 1000
				be.SetCurrentKeyUint64(key, keyed.HashUint64Key(key))
				r.Num[0], r.Num[1] = key, i
				for _, op := range ops {
					op(&r)
				}
			}
		})
	}
}
