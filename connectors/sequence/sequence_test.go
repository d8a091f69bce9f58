package sequence

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/streamd/streamd/engine"
)

type rec struct{ I, Key int64 }

func makeRec(i, key int64, v *rec) { *v = rec{I: i, Key: key} }

func sctx(index, parallelism int) engine.SourceContext {
	return engine.SourceContext{Job: "job", Operator: "seq", Index: index, Parallelism: parallelism}
}

func open(t *testing.T, opts Options[rec], index, parallelism int, state []byte) (engine.Source[rec], error) {
	t.Helper()
	src, err := New(opts)(sctx(index, parallelism))
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	if err := src.Open(sctx(index, parallelism), state); err != nil {
		return nil, err
	}
	return src, nil
}

// readN reads up to max records (all if max < 0) with buffers of bufLen.
func readN(t *testing.T, src engine.Source[rec], bufLen, max int) (out []rec, eof bool) {
	t.Helper()
	buf := make([]rec, bufLen)
	for max < 0 || len(out) < max {
		b := buf
		if max >= 0 {
			b = buf[:min(bufLen, max-len(out))]
		}
		n, err := src.Read(b)
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

// The tasks split [0, count): task j emits the i with i % p == j, in
// increasing order, each with key i % keys; together every i once.
func TestSplitOverTasks(t *testing.T) {
	f := func(count, keys int64, p int) {
		t.Helper()
		opts := Options[rec]{Count: count, Keys: keys, Make: makeRec}
		seen := make([]int, count)
		for j := 0; j < p; j++ {
			src, err := open(t, opts, j, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, eof := readN(t, src, 4, -1)
			if !eof {
				t.Fatalf("count %d, task %d of %d: no EOF", count, j, p)
			}
			for k, r := range got {
				if r.I%int64(p) != int64(j) || r.Key != r.I%keys || r.I < 0 || r.I >= count {
					t.Fatalf("count %d keys %d, task %d of %d: record %+v does not belong", count, keys, j, p, r)
				}
				if k > 0 && got[k-1].I >= r.I {
					t.Fatalf("task %d of %d: %d after %d", j, p, r.I, got[k-1].I)
				}
				seen[r.I]++
			}
			src.Close()
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("count %d keys %d p %d: record %d emitted %d times", count, keys, p, i, n)
			}
		}
	}
	f(0, 1, 1)
	f(1, 1, 1)
	f(103, 7, 1)
	f(103, 7, 3)
	f(103, 1, 4)
	f(100, 100, 10)
	f(5, 3, 8) // more tasks than records
}

// Position then a restored source continues exactly: at every cut point,
// no loss and no duplicate.
func TestPositionResumesExactly(t *testing.T) {
	const count, keys, p = 50, 4, 3
	opts := Options[rec]{Count: count, Keys: keys, Make: makeRec}
	for j := 0; j < p; j++ {
		src, _ := open(t, opts, j, p, nil)
		all, _ := readN(t, src, 5, -1)
		for cut := 0; cut <= len(all); cut++ {
			src, _ := open(t, opts, j, p, nil)
			first, _ := readN(t, src, 1+cut%3, cut)
			pos, err := src.Position()
			if err != nil {
				t.Fatal(err)
			}
			src2, err := open(t, opts, j, p, pos)
			if err != nil {
				t.Fatalf("task %d cut %d: restore %x: %v", j, cut, pos, err)
			}
			rest, eof := readN(t, src2, 4, -1)
			if !eof {
				t.Fatalf("task %d cut %d: no EOF", j, cut)
			}
			if got := append(first, rest...); !slices.Equal(got, all) {
				t.Fatalf("task %d cut %d: got %v, want %v", j, cut, got, all)
			}
		}
	}
}

func TestRestoreErrors(t *testing.T) {
	opts := Options[rec]{Count: 100, Keys: 3, Make: makeRec}
	pos := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	f := func(index, p int, state []byte, want string) {
		t.Helper()
		_, err := open(t, opts, index, p, state)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("task %d of %d, restore %x: got %v, want an error containing %q", index, p, state, err, want)
		}
	}
	f(1, 3, pos(0), "does not belong to task 1 of 3") // task 0's position
	f(1, 3, pos(5), "does not belong to task 1 of 3") // task 2's position
	f(0, 2, pos(math.MaxUint64), "does not belong")   // negative as int64
	f(0, 1, pos(1<<63), "does not belong")            // negative as int64
	f(0, 1, []byte{}, "has 0 bytes")                  // empty, not nil
	f(0, 1, make([]byte, 7), "has 7 bytes")
	f(0, 1, make([]byte, 9), "has 9 bytes")

	// A position past the end is that task's EOF.
	src, err := open(t, opts, 1, 3, pos(301))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := src.Read(make([]rec, 4)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read past the end: got (%d, %v)", n, err)
	}
}

func FuzzRestorePosition(f *testing.F) {
	f.Add([]byte{}, uint8(0), uint8(1))
	f.Add(binary.BigEndian.AppendUint64(nil, 7), uint8(1), uint8(3))
	f.Add(binary.BigEndian.AppendUint64(nil, math.MaxUint64), uint8(0), uint8(2))
	f.Fuzz(func(t *testing.T, state []byte, index, p uint8) {
		if p == 0 {
			return
		}
		idx := int(index % p)
		opts := Options[rec]{Count: 1000, Keys: 7, Make: makeRec}
		src, err := open(t, opts, idx, int(p), state)
		if err != nil {
			return
		}
		buf := make([]rec, 16)
		n, _ := src.Read(buf)
		for _, r := range buf[:n] {
			if r.I%int64(p) != int64(idx) || r.I < 0 || r.I >= 1000 || r.Key != r.I%7 {
				t.Fatalf("restore %x as task %d of %d yields %+v", state, idx, p, r)
			}
		}
	})
}

func TestUnboundedNeverEnds(t *testing.T) {
	src, err := open(t, Options[rec]{Count: -1, Keys: 5, Make: makeRec}, 1, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, eof := readN(t, src, 100, 20000)
	if eof {
		t.Fatalf("an unbounded sequence returned EOF")
	}
	for k, r := range got {
		if want := int64(1 + 2*k); r.I != want || r.Key != want%5 {
			t.Fatalf("record %d: got %+v, want i %d", k, r, want)
		}
	}
}

// With a rate limit Read returns (0, nil) while it is ahead of the rate,
// and never more records than the elapsed time allows. The bubble's fake
// clock makes this exact and instant.
func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 10 records per second over 2 tasks: 5 per second each.
		opts := Options[rec]{Count: 12, Keys: 1, RatePerSec: 10, Make: makeRec}
		src, err := open(t, opts, 0, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		buf := make([]rec, 100)
		read := func() (int, error) {
			t.Helper()
			n, err := src.Read(buf)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			return n, err
		}
		if n, err := read(); n != 0 || err != nil {
			t.Fatalf("Read at the start: got (%d, %v), want (0, nil)", n, err)
		}
		time.Sleep(100 * time.Millisecond) // allows 0.5 records
		if n, err := read(); n != 0 || err != nil {
			t.Fatalf("Read after 100ms: got (%d, %v), want (0, nil)", n, err)
		}
		time.Sleep(900 * time.Millisecond) // 1s: allows 5
		if n, err := read(); n != 5 || err != nil {
			t.Fatalf("Read after 1s: got (%d, %v), want (5, nil)", n, err)
		}
		if n, err := read(); n != 0 || err != nil {
			t.Fatalf("Read again at once: got (%d, %v), want (0, nil)", n, err)
		}
		// A small buffer bounds a large allowance; the rest stays allowed.
		time.Sleep(300 * time.Millisecond) // 1.3s: allows 6.5, 5 emitted
		if n, _ := src.Read(buf[:1]); n != 1 {
			t.Fatalf("Read into one slot: got %d, want 1", n)
		}
		if n, err := read(); n != 0 || err != nil {
			t.Fatalf("Read after the allowance: got (%d, %v), want (0, nil)", n, err)
		}
		// The task's 6 records (0, 2, …, 10) end with EOF, at the rate.
		total := 6
		for {
			time.Sleep(50 * time.Millisecond)
			n, err := read()
			total += n
			if allowed := time.Since(start).Seconds() * 5; float64(total) > allowed+1e-9 {
				t.Fatalf("%d records after %v: over the rate", total, time.Since(start))
			}
			if errors.Is(err, io.EOF) {
				break
			}
		}
		if total != 6 {
			t.Fatalf("task 0 emitted %d records, want 6", total)
		}
	})
}

// A restored source starts its rate afresh (no burst for the time before
// the restore).
func TestRateLimitAfterRestore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := Options[rec]{Count: -1, Keys: 1, RatePerSec: 4, Make: makeRec}
		src, err := open(t, opts, 0, 1, binary.BigEndian.AppendUint64(nil, 1000))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]rec, 100)
		if n, err := src.Read(buf); n != 0 || err != nil {
			t.Fatalf("Read at the start: got (%d, %v)", n, err)
		}
		time.Sleep(time.Second)
		n, err := src.Read(buf)
		if n != 4 || err != nil || buf[0].I != 1000 || buf[3].I != 1003 {
			t.Fatalf("Read after 1s: got (%d, %v) %v", n, err, buf[:n])
		}
	})
}

func TestValidate(t *testing.T) {
	ok := Options[rec]{Count: 10, Keys: 1, Make: makeRec}
	for _, o := range []Options[rec]{ok, {Count: -1, Keys: 3, RatePerSec: 0.5, Make: makeRec}, {Count: 0, Keys: 1, Make: makeRec}} {
		if err := o.Validate(); err != nil {
			t.Fatalf("Validate(%+v): %v", o, err)
		}
	}

	bad := Options[rec]{Count: -2, Keys: 0, RatePerSec: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatalf("Validate(%+v) accepted it", bad)
	}
	for _, want := range []string{"count -2", "keys 0", "rate -1", "Make is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate: %q does not report %q", err, want)
		}
	}
	if _, err := New(bad)(sctx(0, 1)); err == nil {
		t.Fatalf("New accepted invalid options")
	}
	one := func(o Options[rec], want string) {
		t.Helper()
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), want) || strings.Count(err.Error(), "sequence:") != 1 {
			t.Fatalf("Validate(%+v): got %v, want exactly one problem %q", o, err, want)
		}
	}
	one(Options[rec]{Count: math.MinInt64, Keys: 1, Make: makeRec}, "count")
	one(Options[rec]{Count: 1, Keys: -5, Make: makeRec}, "keys -5")
	one(Options[rec]{Count: 1, Keys: 1, RatePerSec: math.Inf(-1), Make: makeRec}, "rate")
	one(Options[rec]{Count: 1, Keys: 1}, "Make")
}

// A rate so high that the allowance overflows an int still means "as fast
// as the buffer allows", not a stall.
func TestHugeRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, rate := range []float64{1e19, 1e300, math.MaxFloat64} {
			opts := Options[rec]{Count: -1, Keys: 1, RatePerSec: rate, Make: makeRec}
			src, err := open(t, opts, 0, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if n, err := src.Read(make([]rec, 10)); n != 10 || err != nil {
				t.Fatalf("rate %g: Read after 1s: got (%d, %v), want (10, nil)", rate, n, err)
			}
		}
	})
}

func TestValidateRejectsNonFiniteRate(t *testing.T) {
	for _, rate := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		o := Options[rec]{Count: 1, Keys: 1, RatePerSec: rate, Make: makeRec}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "rate") {
			t.Fatalf("Validate with rate %g: got %v, want an error about the rate", rate, err)
		}
	}
}
