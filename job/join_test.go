package job

import (
	"bytes"
	"errors"
	"testing"

	"github.com/streamd/streamd/keyed"
)

func joinCodec() RowCodec {
	return NewRowCodec([]Field{{"id", TypeInt, 3}, {"name", TypeString, 1}, {"x", TypeFloat, 0}, {"city", TypeString, 4}})
}

// FuzzRowCodec: Decode never panics, and whatever it accepts encodes back
// to the same bytes (one encoding per row: the join counts copies of a
// record by its bytes); everything else is keyed.ErrCorrupt.
func FuzzRowCodec(f *testing.F) {
	c := joinCodec()
	var r Row
	r.Num[3], r.Num[0], r.Str[1], r.Str[4] = 42, 7, "Ann", "Boise"
	f.Add(c.Append(nil, r))
	f.Add(c.Append(nil, Row{}))
	f.Add([]byte{})
	f.Add(append(c.Append(nil, Row{}), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := c.Decode(b)
		if err != nil {
			if !errors.Is(err, keyed.ErrCorrupt) {
				t.Fatalf("error %v does not wrap keyed.ErrCorrupt", err)
			}
			return
		}
		if got := c.Append(nil, r); !bytes.Equal(got, b) {
			t.Fatalf("Decode(%x) encodes back to %x", b, got)
		}
	})
}

// TestJoinEmitAllocs: a pair becomes an output row without allocating,
// and the codec appends into a buffer with room without allocating.
func TestJoinEmitAllocs(t *testing.T) {
	p, err := Load("j.yaml", []byte(`
name: j
sources:
  - {name: persons, type: nexmark, events: 10}
  - {name: auctions, type: nexmark, events: 10}
pipeline:
  - join: {left: persons, right: auctions, on: {left: id, right: seller}, select: [left.id, left.name, right.reserve]}
sink: {type: stdout}
`))
	if err != nil {
		t.Fatal(err)
	}
	j := p.Stages[0].Join
	var l, r, out Row
	res, _ := NexmarkSchema().Lookup("reserve")
	l.Num[0], l.Str[1], r.Num[res.Slot] = 5, "Ann", 99
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		j.Emit(&l, &r, &out)
		buf = j.LeftCodec.Append(buf[:0], l)
	}); n != 0 {
		t.Fatalf("Emit and Append allocate %v times", n)
	}
	if out.Num[0] != 5 || out.Str[0] != "Ann" || out.Num[1] != 99 {
		t.Fatalf("Emit wrote %v %q", out.Num[:2], out.Str[0])
	}
	back, err := j.LeftCodec.Decode(buf)
	if err != nil || back.Num[0] != 5 || back.Str[1] != "Ann" {
		t.Fatalf("Decode(Append(l)) = %v %q, %v", back.Num[0], back.Str[1], err)
	}
}

func BenchmarkJoinEmitAndCodec(b *testing.B) {
	c := joinCodec()
	var r Row
	r.Num[3], r.Str[1], r.Str[4] = 42, "Ann", "Boise"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.Append(buf[:0], r)
		if _, err := c.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
