package console

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/streamd/streamd/engine"
)

// rec is one record: the writer that wrote it, its number, and padding
// that makes some lines long.
type rec struct {
	Writer, N int
	Pad       int
}

func encode(dst []byte, r *rec) []byte {
	dst = strconv.AppendInt(dst, int64(r.Writer), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(r.N), 10)
	dst = append(dst, ' ')
	for i := 0; i < r.Pad; i++ {
		dst = append(dst, 'x')
	}
	return dst
}

var (
	_ engine.Sink[rec] = (*Stdout[rec])(nil)
	_ engine.Sink[rec] = (*Blackhole[rec])(nil)
)

// checkedOut is an io.Writer that fails the test if two Writes overlap or
// a Write holds anything but whole lines, and keeps what it was given.
type checkedOut struct {
	t        *testing.T
	inFlight atomic.Int32
	writes   atomic.Int64
	buf      bytes.Buffer // written only inside Write, which must not overlap
}

func (c *checkedOut) Write(p []byte) (int, error) {
	if c.inFlight.Add(1) != 1 {
		c.t.Errorf("two Writes to Out overlap")
	}
	defer c.inFlight.Add(-1)
	c.writes.Add(1)
	if len(p) == 0 || p[len(p)-1] != '\n' {
		c.t.Errorf("a Write of %d bytes does not end a line", len(p))
	}
	return c.buf.Write(p)
}

func newWriter(t *testing.T, s engine.Sink[rec], index int) engine.SinkWriter[rec] {
	t.Helper()
	w, err := s.NewWriter(engine.SinkContext{Job: "job", Operator: "sink", Index: index, Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Lines of several writers running at once never interleave: every line
// is whole, and each writer's lines appear once, in order.
func TestStdoutLinesNeverInterleave(t *testing.T) {
	out := &checkedOut{t: t}
	s := NewStdout(encode)
	s.Out = out
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 3000
	var wg sync.WaitGroup
	for wi := 0; wi < writers; wi++ {
		w := newWriter(t, s, wi)
		wg.Go(func() {
			for n := 0; n < perWriter; n++ {
				// Lines of up to ~2 KiB make the 64 KiB flush threshold
				// trip often, mid-stream.
				r := rec{Writer: wi, N: n, Pad: (n * 37 * (wi + 1)) % 2048}
				if err := w.Write(&r); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
				if n%500 == 499 {
					if _, err := w.PreCommit(uint64(n)); err != nil {
						t.Errorf("PreCommit: %v", err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()

	next := make([]int, writers)
	lines := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
	for i, line := range lines {
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 {
			t.Fatalf("line %d is torn: %.60q", i, line)
		}
		wi, err1 := strconv.Atoi(f[0])
		n, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("line %d is torn: %.60q", i, line)
		}
		if wi < 0 || wi >= writers || n != next[wi] {
			t.Fatalf("line %d %.40q: want writer %d's record %d", i, line, wi, next[wi])
		}
		if want := string(encode(nil, &rec{Writer: wi, N: n, Pad: (n * 37 * (wi + 1)) % 2048})); line != want {
			t.Fatalf("line %d is torn: %.60q", i, line)
		}
		next[wi]++
	}
	for wi, n := range next {
		if n != perWriter {
			t.Fatalf("writer %d: %d lines, want %d", wi, n, perWriter)
		}
	}
	if out.writes.Load() >= writers*perWriter/10 {
		t.Fatalf("%d Writes to Out for %d lines: the writers do not buffer", out.writes.Load(), writers*perWriter)
	}
}

// Small output stays buffered until PreCommit, Finish or Close; a full
// buffer flushes by itself.
func TestStdoutFlushes(t *testing.T) {
	var out bytes.Buffer // one writer, one goroutine: no guard needed
	s := &Stdout[rec]{Encode: encode, Out: &out}
	w := newWriter(t, s, 0)
	line := func(n int) string { return string(encode(nil, &rec{N: n})) + "\n" }
	write := func(n int) {
		t.Helper()
		if err := w.Write(&rec{N: n}); err != nil {
			t.Fatal(err)
		}
	}
	want := ""
	check := func(step string) {
		t.Helper()
		if out.String() != want {
			t.Fatalf("after %s: Out holds %q, want %q", step, out.String(), want)
		}
	}

	write(1)
	check("Write") // still buffered
	if st, err := w.PreCommit(1); err != nil || st != nil {
		t.Fatalf("PreCommit: got (%q, %v), want (nil, nil)", st, err)
	}
	want += line(1)
	check("PreCommit")
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	write(2)
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	want += line(2)
	check("Finish")
	write(3)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want += line(3)
	check("Close")

	// Past the flush threshold, Write flushes whole lines by itself.
	out.Reset()
	w = newWriter(t, s, 0)
	big := rec{N: 4, Pad: stdoutFlushBytes}
	if err := w.Write(&big); err != nil {
		t.Fatal(err)
	}
	if want := string(encode(nil, &big)) + "\n"; out.String() != want {
		t.Fatalf("a Write past %d bytes did not flush: Out holds %d bytes", stdoutFlushBytes, out.Len())
	}
}

type failingOut struct{ err error }

func (f failingOut) Write([]byte) (int, error) { return 0, f.err }

func TestStdoutWriteErrorIsReturned(t *testing.T) {
	boom := errors.New("boom")
	s := &Stdout[rec]{Encode: encode, Out: failingOut{boom}}
	w := newWriter(t, s, 0)
	if err := w.Write(&rec{}); err != nil {
		t.Fatalf("buffered Write: %v", err)
	}
	if _, err := w.PreCommit(1); !errors.Is(err, boom) {
		t.Fatalf("PreCommit: got %v, want %v", err, boom)
	}
	w.Write(&rec{})
	if err := w.Finish(); !errors.Is(err, boom) {
		t.Fatalf("Finish: got %v, want %v", err, boom)
	}
}

func TestBlackholeCounts(t *testing.T) {
	b := &Blackhole[rec]{}
	if err := b.Recover([][]byte{[]byte("anything")}); err != nil {
		t.Fatal(err)
	}
	ws := []engine.SinkWriter[rec]{newWriter(t, b, 0), newWriter(t, b, 1), newWriter(t, b, 2)}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			for n := 0; n < 1000*(i+1); n++ {
				w.Write(&rec{N: n})
			}
		})
	}
	wg.Wait()
	// Counts are published at PreCommit, Finish and Close.
	if got := b.Count(); got != 0 {
		t.Fatalf("Count before any PreCommit: %d", got)
	}
	if st, err := ws[0].PreCommit(1); st != nil || err != nil {
		t.Fatalf("PreCommit: got (%q, %v)", st, err)
	}
	if got := b.Count(); got != 1000 {
		t.Fatalf("Count after writer 0's PreCommit: %d, want 1000", got)
	}
	if err := ws[1].Finish(); err != nil {
		t.Fatal(err)
	}
	if got := b.Count(); got != 3000 {
		t.Fatalf("Count after writer 1's Finish: %d, want 3000", got)
	}
	for _, w := range ws {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Count(); got != 6000 {
		t.Fatalf("Count after Close: %d, want 6000", got)
	}
	// Publishing twice counts nothing twice.
	ws[0].PreCommit(2)
	ws[0].Close()
	if got := b.Count(); got != 6000 {
		t.Fatalf("Count after repeated Close: %d, want 6000", got)
	}
}
