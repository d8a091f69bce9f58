package file

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

func newSplitSource(path string) *SplitSource[string] {
	return NewSplitSource(SourceOptions[string]{Path: path, Decode: decodeLine})
}

// readSome reads up to max records (all if max < 0).
func readSome(t testing.TB, r interface{ Read([]string) (int, error) }, bufLen, max int) []string {
	t.Helper()
	var out []string
	buf := make([]string, bufLen)
	for max < 0 || len(out) < max {
		b := buf
		if max >= 0 {
			b = buf[:min(bufLen, max-len(out))]
		}
		n, err := r.Read(b)
		out = append(out, b[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	return out
}

// A fresh start gives task j of p what the plain source's task j reads.
func TestSplitSourceInitialIsThePlainSplit(t *testing.T) {
	fx := newFixture(t, t.TempDir(), true)
	src := newSplitSource(fx.dir)
	for _, p := range []int{1, 2, 3, 7} {
		asg, err := src.Initial(p)
		if err != nil {
			t.Fatal(err)
		}
		for j, splits := range asg {
			r, err := src.NewReader(sctx(j, p), splits)
			if err != nil {
				t.Fatal(err)
			}
			got := readSome(t, r, 3, -1)
			r.Close()
			plain, _ := openSource(t, fx.dir, j, p, nil)
			want := readAll(t, plain, 3)
			plain.Close()
			if !slices.Equal(got, want) {
				t.Fatalf("task %d of %d: got %d records, want %d", j, p, len(got), len(want))
			}
		}
	}
}

// Whatever the parallelisms and however far each task got, every record
// of every file is read exactly once, each file in order.
func TestSplitSourceRescalesExactlyOnce(t *testing.T) {
	fx := newFixture(t, t.TempDir(), true)
	src := newSplitSource(fx.dir)
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 3))
		p := 1 + rng.IntN(6)
		asg, err := src.Initial(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for round := 0; ; round++ {
			last := round == 5
			var all []engine.Split
			for j, splits := range asg {
				r, err := src.NewReader(sctx(j, p), splits)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				max := -1
				if !last {
					max = rng.IntN(8)
				}
				got = append(got, readSome(t, r, 1+rng.IntN(4), max)...)
				sp, _ := r.Splits()
				r.Close()
				all = append(all, sp...)
			}
			if last {
				break
			}
			p = 1 + rng.IntN(6)
			if asg, err = src.Reassign(all, p); err != nil {
				t.Fatal(err)
			}
		}
		// Per file, the records in the order read: exactly the input.
		byFile := func(recs []string) map[string][]string {
			m := make(map[string][]string)
			for _, r := range recs {
				var v struct{ F string }
				if err := json.Unmarshal([]byte(r), &v); err != nil {
					t.Fatal(err)
				}
				m[v.F] = append(m[v.F], r)
			}
			return m
		}
		gotBy, wantBy := byFile(got), byFile(fx.records)
		for f, want := range wantBy {
			if !slices.Equal(gotBy[f], want) {
				t.Fatalf("seed %d: file %s: read %d records, want its %d once each in order", seed, f, len(gotBy[f]), len(want))
			}
		}
		if len(got) != len(fx.records) {
			t.Fatalf("seed %d: read %d records, want %d", seed, len(got), len(fx.records))
		}
	}
}

// A restore deals the unfinished files out round robin in path order,
// then the finished ones; a reader never opens a finished file (it may
// have been removed since).
func TestSplitSourceReassign(t *testing.T) {
	src := newSplitSource("unused")
	asg, err := src.Reassign([]engine.Split{
		{ID: "/in/c", State: []byte("offset 10 line 3")},
		{ID: "/in/a", State: []byte("done")},
		{ID: "/in/b", State: []byte("offset 0 line 1")},
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range asg {
		got = append(got, fmt.Sprint(l))
	}
	want := []string{"[/in/b @ offset 0 line 1]", "[/in/c @ offset 10 line 3]", "[/in/a @ done]"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	r, err := src.NewReader(sctx(2, 3), asg[2])
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]string, 4)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("a reader of a finished, missing file: got (%d, %v), want EOF", n, err)
	}
}

// The plain source's positions convert into the splits that read the
// same rest, at every cut point.
func TestSplitsOfPlainPosition(t *testing.T) {
	fx := newFixture(t, t.TempDir(), false)
	src := newSplitSource(fx.dir)
	for cut := 0; cut <= len(fx.records); cut++ {
		plain, _ := openSource(t, fx.dir, 1, 2, nil)
		first := readSome(t, plain, 2, cut)
		pos, _ := plain.Position()
		rest := readAll(t, plain, 3)
		plain.Close()
		splits, err := src.SplitsOfPosition(1, 2, pos)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		r, err := src.NewReader(sctx(1, 2), splits)
		if err != nil {
			t.Fatal(err)
		}
		if got := readSome(t, r, 3, -1); !slices.Equal(got, rest) {
			t.Fatalf("cut %d (%d read, position %x → %v): got %d records, want %d", cut, len(first), pos, splits, len(got), len(rest))
		}
		r.Close()
	}
	if _, err := src.SplitsOfPosition(0, 1, []byte("short")); err == nil {
		t.Fatal("a malformed position converted")
	}
}

// FuzzParseSplit: the split decoder never panics, and what it accepts
// writes back to the same split.
func FuzzParseSplit(f *testing.F) {
	f.Add("/in/a.jsonl", []byte("offset 10 line 2"))
	f.Add("/in/a.jsonl", []byte("done"))
	f.Add("a", []byte("offset 01 line 2"))
	f.Add("a", []byte("offset 1 line 0"))
	f.Add("", []byte("done"))
	f.Fuzz(func(t *testing.T, id string, state []byte) {
		fs, err := parseSplit(engine.Split{ID: id, State: state})
		if err != nil {
			return
		}
		if got := fs.split(); got.ID != id || string(got.State) != string(state) {
			t.Fatalf("parse(%q, %q) = %+v, writes back as %v", id, state, fs, got)
		}
		if fs.offset < 0 || (!fs.done && fs.line < 1) {
			t.Fatalf("accepted %+v", fs)
		}
	})
}

// The file source in a checkpointed job over several files, writing to
// the file sink: at parallelism 2, stopped (Stop takes a final
// checkpoint), restored at 3, then 1, then 4, where it runs to the end.
// The output directory then holds every input line exactly once, and each
// key's running counts are exactly 1..n.
func TestFileSourceRescalesInAJob(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const files, lines, keys = 5, 4000, 7
	for f := range files {
		var b strings.Builder
		for i := range lines {
			fmt.Fprintf(&b, `{"f":%d,"i":%d}`+"\n", f, i)
		}
		writeInput(t, in, fmt.Sprintf("part-%d.jsonl", f), b.String())
	}
	type row struct{ F, I, Key, Count int64 }
	// Each task has its own reader, whose decoding is slow enough that
	// every stop lands mid-way.
	newReader := func(ctx engine.SourceContext, splits []engine.Split) (engine.SplitReader[row], error) {
		n := 0
		return NewSplitSource(SourceOptions[row]{Path: in, Decode: func(line []byte, r *row) error {
			if n++; n%40 == 0 {
				time.Sleep(time.Millisecond)
			}
			if err := json.Unmarshal(line, r); err != nil {
				return err
			}
			r.Key = (r.F*lines + r.I) % keys
			return nil
		}}).NewReader(ctx, splits)
	}
	pars := []int{2, 3, 1, 4}
	for run, p := range pars {
		st, err := snapshot.Open(filepath.Join(dir, "data"), snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		j := engine.NewJob("files", engine.Options{
			Parallelism:   p,
			Checkpointing: &engine.CheckpointOptions{Options: coord.Options{Interval: 10 * time.Millisecond}, Store: st},
			Logger:        func(string, ...any) {},
		})
		src := NewSplitSource(SourceOptions[row]{Path: in})
		s := engine.FromSplitSource(j, "files", src, newReader)
		ks := engine.KeyBy(s, engine.Int64Key(func(r *row) int64 { return r.Key }))
		counted := engine.Process(ks, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *row, func(*row)), error) {
			c, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return nil, err
			}
			return func(_ *engine.KeyedContext, r *row, emit func(*row)) {
				n, _ := c.Get()
				n++
				c.Put(n)
				r.Count = n
				emit(r)
			}, nil
		})
		sink, err := NewSink("files", SinkOptions[row]{Dir: out, Encode: func(dst []byte, r *row) []byte {
			return fmt.Appendf(dst, `{"f":%d,"i":%d,"key":%d,"count":%d}`, r.F, r.I, r.Key, r.Count)
		}})
		if err != nil {
			t.Fatal(err)
		}
		engine.ToSink(counted, "sink", engine.Sink[row](sink))
		done := make(chan error, 1)
		go func() { done <- j.Run(context.Background()) }()
		last := run == len(pars)-1
		if !last {
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				if slices.ContainsFunc(j.CheckpointStats(), func(s engine.CheckpointStats) bool { return s.Status == "completed" && s.StoredBytes > 0 }) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no checkpoint with keyed state within a minute")
				}
			}
			time.Sleep(20 * time.Millisecond)
			j.Stop()
		}
		if err := <-done; err != nil {
			t.Fatalf("run %d at parallelism %d: %v", run, p, err)
		}
		if run > 0 && j.RestoredFrom() == 0 {
			t.Fatalf("run %d restored nothing", run)
		}
		st.Close()
		if got := len(readOutput(t, out)); !last && got >= files*lines {
			t.Fatalf("run %d read every line before its stop", run)
		}
	}
	seen := make(map[[2]int64]int)
	perKey := make(map[int64][]int64)
	for _, line := range readOutput(t, out) {
		var r struct{ F, I, Key, Count int64 }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		seen[[2]int64{r.F, r.I}]++
		perKey[r.Key] = append(perKey[r.Key], r.Count)
	}
	for f := range int64(files) {
		for i := range int64(lines) {
			if n := seen[[2]int64{f, i}]; n != 1 {
				t.Fatalf("line %d of file %d is in the output %d times", i, f, n)
			}
		}
	}
	for k, counts := range perKey {
		slices.Sort(counts)
		for i, c := range counts {
			if c != int64(i+1) {
				t.Fatalf("key %d: counts are not 1..%d (position %d has %d)", k, len(counts), i, c)
			}
		}
	}
}

// readOutput returns every line of the committed .jsonl files in dir.
func readOutput(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}
