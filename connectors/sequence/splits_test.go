package sequence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/streamd/streamd/engine"
)

// readSplits reads up to max records (all if max < 0) from a split reader.
func readSplits(t *testing.T, r engine.SplitReader[rec], bufLen, max int) (out []rec, eof bool) {
	t.Helper()
	buf := make([]rec, bufLen)
	for max < 0 || len(out) < max {
		b := buf
		if max >= 0 {
			b = buf[:min(bufLen, max-len(out))]
		}
		n, err := r.Read(b)
		out = append(out, b[:n]...)
		if errors.Is(err, io.EOF) {
			return out, true
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if n == 0 {
			t.Fatalf("Read returned (0, nil) without a rate limit")
		}
	}
	return out, false
}

// A fresh start gives task j of p the records of the plain source's task
// j: i % p == j, in increasing order.
func TestSplitSourceInitialIsThePlainSplit(t *testing.T) {
	opts := Options[rec]{Count: 103, Keys: 5, Make: makeRec}
	src := NewSplitSource(opts)
	asg, err := src.Initial(4)
	if err != nil {
		t.Fatal(err)
	}
	for j, splits := range asg {
		r, err := src.NewReader(sctx(j, 4), splits)
		if err != nil {
			t.Fatal(err)
		}
		got, eof := readSplits(t, r, 7, -1)
		plain, _ := open(t, opts, j, 4, nil)
		want, _ := readN(t, plain, 7, -1)
		if !eof || !slices.Equal(got, want) {
			t.Fatalf("task %d: got %v, want %v", j, got, want)
		}
	}
}

// The heart of it: whatever the parallelisms and however far each task
// got, every i in [0, count) is emitted exactly once across all runs, with
// its key; the splits always partition the sequence; a task emits its
// records in increasing order.
func TestSplitSourceRescalesExactlyOnce(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		count := int64(rng.IntN(5000))
		opts := Options[rec]{Count: count, Keys: 11, Make: makeRec}
		src := NewSplitSource(opts)
		seen := make([]int, count)
		p := 1 + rng.IntN(6)
		asg, err := src.Initial(p)
		if err != nil {
			t.Fatal(err)
		}
		var pars []int
		for round := 0; ; round++ {
			pars = append(pars, p)
			last := round == 6
			var all []engine.Split
			for j, splits := range asg {
				r, err := src.NewReader(sctx(j, p), splits)
				if err != nil {
					t.Fatalf("seed %d, parallelisms %v: %v", seed, pars, err)
				}
				max := -1
				if !last {
					max = rng.IntN(int(count)/p + 2)
				}
				got, _ := readSplits(t, r, 1+rng.IntN(64), max)
				for _, rc := range got {
					if rc.Key != rc.I%11 || rc.I < 0 || rc.I >= count {
						t.Fatalf("seed %d: bad record %+v", seed, rc)
					}
					seen[rc.I]++
				}
				sp, err := r.Splits()
				if err != nil {
					t.Fatal(err)
				}
				if len(sp) != len(splits) {
					t.Fatalf("Splits returned %d splits, was given %d", len(sp), len(splits))
				}
				all = append(all, sp...)
			}
			if last {
				break
			}
			p = 1 + rng.IntN(6)
			if asg, err = src.Reassign(all, p); err != nil {
				t.Fatalf("seed %d, parallelisms %v then %d: %v", seed, pars, p, err)
			}
			if len(asg) != p {
				t.Fatalf("Reassign returned %d lists for %d tasks", len(asg), p)
			}
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("seed %d, parallelisms %v: record %d emitted %d times", seed, pars, i, n)
			}
		}
	}
}

// Reassign subdivides so that the tasks share the rest evenly: from 2
// tasks to 3, each gets two classes of stride 6, starting at or after
// where the old class had got.
func TestReassignSubdividesEvenly(t *testing.T) {
	src := NewSplitSource(Options[rec]{Count: -1, Keys: 1, Make: makeRec})
	asg, err := src.Reassign([]engine.Split{
		{ID: "i%2==0", State: []byte("10")},
		{ID: "i%2==1", State: []byte("7")},
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range asg {
		var ss []string
		for _, s := range l {
			ss = append(ss, s.String())
		}
		got = append(got, strings.Join(ss, ", "))
	}
	// i%2==0 from 10 → i%6==0 from 12, i%6==2 from 14, i%6==4 from 10;
	// i%2==1 from 7 → i%6==1 from 7, i%6==3 from 9, i%6==5 from 11.
	want := []string{"i%6==0 @ 12, i%6==3 @ 9", "i%6==1 @ 7, i%6==4 @ 10", "i%6==2 @ 14, i%6==5 @ 11"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// Splits that do not partition the sequence are refused: they would emit
// records twice or lose them.
func TestReassignRefusesBrokenSplits(t *testing.T) {
	src := NewSplitSource(Options[rec]{Count: 100, Keys: 1, Make: makeRec})
	f := func(splits []engine.Split, want string) {
		t.Helper()
		if _, err := src.Reassign(splits, 2); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Reassign(%v): got %v, want an error mentioning %q", splits, err, want)
		}
	}
	f([]engine.Split{{ID: "i%2==0", State: []byte("0")}}, "cover 1/2 of the sequence")
	f([]engine.Split{{ID: "i%2==0", State: []byte("0")}, {ID: "i%4==2", State: []byte("2")}, {ID: "i%2==1", State: []byte("1")}}, "overlap")
	f([]engine.Split{{ID: "i%1==0", State: []byte("3")}, {ID: "x", State: []byte("1")}}, "not a sequence split")
	f([]engine.Split{{ID: "i%2==0", State: []byte("3")}, {ID: "i%2==1", State: []byte("1")}}, "outside its class")
}

// The plain source's positions convert into the same records.
func TestSplitsOfPlainPosition(t *testing.T) {
	opts := Options[rec]{Count: 50, Keys: 3, Make: makeRec}
	src := NewSplitSource(opts)
	splits, err := src.SplitsOfPosition(1, 3, binary.BigEndian.AppendUint64(nil, 22))
	if err != nil {
		t.Fatal(err)
	}
	if len(splits) != 1 || splits[0].String() != "i%3==1 @ 22" {
		t.Fatalf("got %v", splits)
	}
	r, _ := src.NewReader(sctx(1, 3), splits)
	got, _ := readSplits(t, r, 4, -1)
	plain, _ := open(t, opts, 1, 3, binary.BigEndian.AppendUint64(nil, 22))
	want, _ := readN(t, plain, 4, -1)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := src.SplitsOfPosition(0, 3, binary.BigEndian.AppendUint64(nil, 22)); err == nil {
		t.Fatal("a position of another task converted")
	}
}

// A task's rate is the whole source's rate times its unfinished splits'
// share of the sequence.
func TestSplitReaderRateIsItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := NewSplitSource(Options[rec]{Count: -1, Keys: 1, RatePerSec: 60, Make: makeRec})
		// A share of 1/6 + 1/3 = 1/2: 30 records per second.
		r, err := src.NewReader(sctx(0, 2), []engine.Split{{ID: "i%6==0", State: []byte("0")}, {ID: "i%3==1", State: []byte("1")}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		buf := make([]rec, 100)
		if n, err := r.Read(buf); n != 30 || err != nil {
			t.Fatalf("Read after 1s: got (%d, %v), want 30 records", n, err)
		}
	})
}

// Without a rate limit, reading allocates nothing.
func TestSplitReaderReadAllocs(t *testing.T) {
	src := NewSplitSource(Options[rec]{Count: -1, Keys: 7, Make: makeRec})
	r, err := src.NewReader(sctx(0, 1), []engine.Split{{ID: "i%2==0", State: []byte("0")}, {ID: "i%2==1", State: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]rec, 256)
	if a := testing.AllocsPerRun(100, func() { _, _ = r.Read(buf) }); a != 0 {
		t.Fatalf("Read allocates %v times", a)
	}
}

// FuzzParseSplit: the split decoder never panics, and what it accepts
// writes back to the same split.
func FuzzParseSplit(f *testing.F) {
	f.Add("i%6==1", []byte("7"))
	f.Add("i%1==0", []byte("0"))
	f.Add("i%0==0", []byte("0"))
	f.Add("i%3==1", []byte("-2"))
	f.Add("i%9223372036854775807==5", []byte("9223372036854775807"))
	f.Fuzz(func(t *testing.T, id string, state []byte) {
		s, err := parseSplit(engine.Split{ID: id, State: state})
		if err != nil {
			return
		}
		if got := s.split(); got.ID != id || string(got.State) != string(state) {
			t.Fatalf("parse(%q, %q) = %+v, writes back as %v", id, state, s, got)
		}
		if s.stride < 1 || s.rem < 0 || s.rem >= s.stride || s.next < s.rem || (s.next-s.rem)%s.stride != 0 {
			t.Fatalf("accepted %+v", s)
		}
	})
}

// BenchmarkRead compares the plain source's Read with the split reader's
// over one split and over four (the reader picks a split per batch).
func BenchmarkRead(b *testing.B) {
	opts := Options[rec]{Count: -1, Keys: 1000, Make: makeRec}
	buf := make([]rec, 256)
	run := func(b *testing.B, read func([]rec) (int, error)) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = read(buf)
		}
		b.SetBytes(int64(len(buf)))
	}
	b.Run("plain", func(b *testing.B) {
		src, _ := New(opts)(sctx(0, 1))
		_ = src.Open(sctx(0, 1), nil)
		run(b, src.Read)
	})
	for _, k := range []int{1, 4} {
		b.Run(fmt.Sprintf("splits=%d", k), func(b *testing.B) {
			s := NewSplitSource(opts)
			asg, _ := s.Initial(k)
			var all []engine.Split
			for _, l := range asg {
				all = append(all, l...)
			}
			r, err := s.NewReader(sctx(0, 1), all)
			if err != nil {
				b.Fatal(err)
			}
			run(b, r.Read)
		})
	}
}
