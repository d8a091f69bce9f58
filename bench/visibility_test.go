package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestVisibility runs the visibility measurement briefly: every record the
// source produced must be committed exactly once, every latency positive.
// It asserts no speed.
func TestVisibility(t *testing.T) {
	const records = 30_000
	res, err := measureVisibility(context.Background(), visConfig{
		Interval: 10 * time.Millisecond, RatePerSec: 100_000, Records: records, Keys: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &res.Latency
	if h.n != records || res.Records != records {
		t.Errorf("latencies of %d records (result says %d produced), want %d", h.n, res.Records, records)
	}
	if h.min <= 0 || h.nonPositive != 0 {
		t.Errorf("smallest latency %v (%d not positive), want > 0", time.Duration(h.min), h.nonPositive)
	}
	p50, p99 := h.quantile(0.5), h.quantile(0.99)
	if !(0 < p50 && p50 <= p99 && p99 <= time.Duration(h.max)) {
		t.Errorf("p50 %v, p99 %v, max %v: not ordered", p50, p99, time.Duration(h.max))
	}
	if res.Files == 0 || res.Breakdown.Checkpoints == 0 {
		t.Errorf("%d committed files, %d completed checkpoints: want some of each", res.Files, res.Breakdown.Checkpoints)
	}
	if bd := res.Breakdown; bd.Records+bd.Unmatched != records {
		t.Errorf("breakdown covers %d records and %d unmatched, want %d in all", bd.Records, bd.Unmatched, records)
	}
	t.Logf("%d files, p50 %v, p99 %v, max %v; breakdown %+v", res.Files, p50, p99, time.Duration(h.max), res.Breakdown)
}

// TestVisTally checks that the reader's account catches what is not
// exactly once: a duplicate, a missing record, a record outside the
// source, a malformed line, a file of another name.
func TestVisTally(t *testing.T) {
	line := func(seq, stamp int64) string {
		return string(appendVisRec(nil, &visRec{Seq: seq, Key: seq % 3, Count: 1, StampNs: stamp})) + "\n"
	}
	const name = visJob + "-1-0123456789abcdef-000001.jsonl"
	f := func(records int64, files []string, want string) {
		t.Helper()
		v := newVisTally(records)
		var err error
		for i, data := range files {
			if err = v.addFile(noticedFile{name: name, atNs: 1000 + int64(i)}, []byte(data)); err != nil {
				break
			}
		}
		if err == nil {
			r := v.result()
			err = r.checkExactlyOnce()
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("unexpected error: %v", err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("error %v, want one containing %q", err, want)
		}
	}
	f(3, []string{line(0, 10) + line(2, 20), line(1, 30)}, "")
	f(3, []string{line(0, 10) + line(1, 20), line(2, 30) + line(1, 20)}, "1 records were committed more than once")
	f(3, []string{line(0, 10) + line(2, 20)}, "1 of 3 records are missing")
	f(3, []string{line(0, 10) + line(1, 20) + line(3, 1)}, "outside the source's [0, 3)")
	f(3, []string{line(0, 10) + line(1, 20) + line(2, 2000)}, "1 records were noticed no later than they were produced")
	f(3, []string{line(0, 10) + `{"seq":1,"key":1}` + "\n"}, "malformed")
	f(3, []string{strings.TrimSuffix(line(0, 10), "\n")}, "does not end with a newline")

	v := newVisTally(1)
	if err := v.addFile(noticedFile{name: "other-1-0123456789abcdef-000001.jsonl"}, []byte(line(0, 1))); err == nil {
		t.Error("a file of another job was accepted")
	}
}

func TestLatencyHist(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h latencyHist
	var xs []int64
	for range 100_000 {
		x := int64(rng.ExpFloat64() * 5e6) // ~5 ms mean, a long tail
		if rng.IntN(100) == 0 {
			x = rng.Int64N(200) // some below the exact range's end
		}
		xs = append(xs, x)
		h.add(x)
	}
	slices.Sort(xs)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := xs[int(float64(len(xs))*q+0.999999)-1]
		got := int64(h.quantile(q))
		if diff := got - exact; diff < -exact/200-1 || diff > exact/200+1 {
			t.Errorf("q%g = %d, exact %d: more than 0.5%% off", q, got, exact)
		}
	}
	if h.min != xs[0] || h.max != xs[len(xs)-1] || h.n != int64(len(xs)) {
		t.Errorf("min %d max %d n %d, want %d %d %d", h.min, h.max, h.n, xs[0], xs[len(xs)-1], len(xs))
	}
	// Every bucket's middle maps back to it, and buckets are contiguous.
	for i := range len(h.counts) {
		if got := latBucket(latBucketMid(i)); got != i {
			t.Fatalf("latBucket(latBucketMid(%d) = %d) = %d", i, latBucketMid(i), got)
		}
	}
	for _, x := range []int64{0, 1, 127, 128, 255, 256, 1 << 40, 1<<63 - 1} {
		if b := latBucket(x); b < 0 || b >= len(h.counts) {
			t.Errorf("latBucket(%d) = %d, outside [0, %d)", x, b, len(h.counts))
		}
	}
	var empty latencyHist
	if empty.quantile(0.99) != 0 || empty.mean() != 0 {
		t.Error("an empty histogram has a percentile")
	}
}

// inotifyEvent encodes one struct inotify_event with its padded name.
func inotifyEvent(mask uint32, name string, pad int) []byte {
	b := make([]byte, unix.SizeofInotifyEvent, unix.SizeofInotifyEvent+len(name)+pad)
	binary.NativeEndian.PutUint32(b[0:], 1)
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(len(name)+pad))
	b = append(b, name...)
	return append(b, make([]byte, pad)...)
}

func TestParseInotifyEvents(t *testing.T) {
	buf := slices.Concat(inotifyEvent(unix.IN_MOVED_TO, "a.jsonl", 9), inotifyEvent(unix.IN_CREATE, "", 0), inotifyEvent(unix.IN_Q_OVERFLOW, "b", 3))
	var got []string
	err := parseInotifyEvents(buf, func(mask uint32, name string) error {
		got = append(got, name)
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"a.jsonl", "", "b"}) {
		t.Fatalf("parsed %q, %v", got, err)
	}
	if err := parseInotifyEvents(buf[:len(buf)-1], func(uint32, string) error { return nil }); err == nil {
		t.Error("a truncated name was accepted")
	}
	if err := parseInotifyEvents(buf[:5], func(uint32, string) error { return nil }); err == nil {
		t.Error("a truncated header was accepted")
	}
	stop := errors.New("stop")
	if err := parseInotifyEvents(buf, func(uint32, string) error { return stop }); err != stop {
		t.Errorf("fn's error was not returned: %v", err)
	}
}

func FuzzParseInotifyEvents(f *testing.F) {
	f.Add(inotifyEvent(unix.IN_MOVED_TO, "visibility-0-0123456789abcdef-000001.jsonl", 6))
	f.Add(slices.Concat(inotifyEvent(unix.IN_CREATE, "x", 0), inotifyEvent(unix.IN_MOVED_TO, "", 16)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, buf []byte) {
		total := 0
		err := parseInotifyEvents(buf, func(_ uint32, name string) error {
			if strings.IndexByte(name, 0) >= 0 {
				t.Fatalf("name %q holds a NUL", name)
			}
			total += unix.SizeofInotifyEvent
			return nil
		})
		if err == nil && total > len(buf) {
			t.Fatalf("parsed %d events' headers from %d bytes", total/unix.SizeofInotifyEvent, len(buf))
		}
	})
}

func FuzzParseVisRec(f *testing.F) {
	f.Add([]byte(`{"seq":1,"key":2,"count":3,"stamp_ns":4}`))
	f.Add([]byte(`{"seq":-9223372036854775808,"key":0,"count":0,"stamp_ns":9223372036854775807}`))
	f.Add([]byte(`{"seq":1,"key":2,"count":3,"stamp_ns":}`))
	f.Add([]byte(`{"seq":01,"key":-0,"count":3,"stamp_ns":4}x`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseVisRec(line)
		if err != nil {
			if !errors.Is(err, errVisLine) {
				t.Fatalf("error %v does not wrap errVisLine", err)
			}
			return
		}
		// What parses encodes to a line that parses to the same record.
		again, err := parseVisRec(appendVisRec(nil, &r))
		if err != nil || again != r {
			t.Fatalf("%q parsed to %+v, which encodes to a line that parses to %+v, %v", line, r, again, err)
		}
	})
}

func TestVisRecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		r := visRec{Seq: int64(rng.Uint64()), Key: rng.Int64(), Count: -rng.Int64(), StampNs: rng.Int64N(1e12)}
		got, err := parseVisRec(appendVisRec(nil, &r))
		if err != nil || got != r {
			t.Fatalf("%+v round-tripped to %+v, %v", r, got, err)
		}
	}
}
