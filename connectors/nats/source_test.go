package nats

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
)

// TestSourceRecords reads a stream through a reader directly: JSON values
// with subject, sequence and time (RecordTime), splits that end at the
// bounded end, and positions that resume exactly after a restore at
// another split layout.
func TestSourceRecords(t *testing.T) {
	_, js := needServer(t)
	name := uniqueName("SRC")
	makeStream(t, js, name, time.Minute, name+".a", name+".b")
	publishClicks(t, js, 100, 3, name+".a", name+".b")
	src, err := NewSource(SourceOptions[Record[Click]]{Conn: ConnOptions{URL: testURL()}, Stream: name, Bounded: true, Decode: DecodeJSON[Click]()})
	if err != nil {
		t.Fatal(err)
	}
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(asg[0]) != 2 {
		t.Fatalf("splits %v, want one per subject", asg[0])
	}
	read := func(splits []engine.Split, stopAfter int) ([]Record[Click], []engine.Split) {
		r, err := src.NewReader(engine.SourceContext{Job: "j", Operator: "in"}, splits)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []Record[Click]
		buf := make([]Record[Click], 16)
		deadline := time.Now().Add(10 * time.Second)
		for len(out) < stopAfter && time.Now().Before(deadline) {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		sp, _ := r.Splits()
		return out, sp
	}
	first, pos := read(asg[0], 30)
	rest, end := read(pos, 1000)
	all := append(first, rest...)
	if len(all) != 100 {
		t.Fatalf("read %d records in two runs, want 100 (positions %v, then %v)", len(all), pos, end)
	}
	seen := make(map[int64]bool)
	ts := RecordTime[Click]()
	for _, r := range all {
		if seen[r.Value.Seq] || uint64(r.Value.Seq+1) != r.Seq {
			t.Fatalf("record %+v: repeated, or its stream sequence does not match", r)
		}
		seen[r.Value.Seq] = true
		if d := time.Since(time.UnixMilli(ts(&r))); d < 0 || d > time.Minute {
			t.Fatalf("record %+v: message time %v ago", r, d)
		}
		if want := name + ".a"; r.Seq%2 == 1 && r.Subject != want {
			t.Fatalf("record %+v: subject, want %s", r, want)
		}
	}
	for _, sp := range end {
		if s, err := parseSplit(sp); err != nil || !s.finished() {
			t.Fatalf("split %v not finished at the end (%v)", sp, err)
		}
	}
}
