package job

import (
	"testing"
)

// TestWindowAggAddMergeEmit checks a compiled window step's aggregates
// against a direct computation, their codec round trip, and that Add,
// Merge and the codec do not allocate.
func TestWindowAggAddMergeEmit(t *testing.T) {
	p, err := Load("w.yaml", []byte(`name: w
source: {type: sequence, keys: 3, event_time: {field: seq}}
pipeline:
  - key_by: key
  - window:
      tumbling: 10ms
      aggregate:
        n: {count: {}}
        s: {sum: seq}
        lo: {min: "float(seq) / 2"}
        hi: {max: seq}
        mean: {avg: seq}
sink: {type: stdout}
`))
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stages[1]
	w := st.Window
	f := w.Function()
	in := p.SourceSchema
	seq, _ := in.Lookup("seq")
	a, b := f.Create(), f.Create()
	var r Row
	for i := int64(1); i <= 10; i++ {
		r.SetInt(seq.Slot, i)
		if i <= 4 {
			f.Add(&a, &r)
		} else {
			f.Add(&b, &r)
		}
	}
	f.Merge(&a, &b)
	buf := f.Codec.Append(nil, a)
	if len(buf) != 16*5 {
		t.Fatalf("codec wrote %d bytes, want 80", len(buf))
	}
	back, err := f.Codec.Decode(buf)
	if err != nil || back != a {
		t.Fatalf("codec round trip: %v, %v", back, err)
	}
	if _, err := f.Codec.Decode(buf[1:]); err == nil {
		t.Fatal("decoding 79 bytes succeeded")
	}
	var out Row
	w.Emit([]byte{0, 0, 0, 0, 0, 0, 0, 7}, windowOf(20, 30), &back, &out)
	get := func(name string) Field { f, _ := st.Out.Lookup(name); return f }
	if out.Int(get("key").Slot) != 7 || out.Int(get("window_start").Slot) != 20 || out.Int(get("window_end").Slot) != 30 {
		t.Errorf("key and window: %v", out.Num)
	}
	if n, s, lo, hi, mean := out.Int(get("n").Slot), out.Int(get("s").Slot), out.Float(get("lo").Slot), out.Int(get("hi").Slot), out.Float(get("mean").Slot); n != 10 || s != 55 || lo != 0.5 || hi != 10 || mean != 5.5 {
		t.Errorf("aggregates n=%d s=%d lo=%v hi=%d mean=%v, want 10 55 0.5 10 5.5", n, s, lo, hi, mean)
	}
	dst := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() {
		f.Add(&a, &r)
		f.Merge(&a, &b)
		dst = f.Codec.Append(dst[:0], a)
		a, _ = f.Codec.Decode(dst)
	}); n != 0 {
		t.Errorf("Add, Merge and the codec allocate %v times", n)
	}
}

func BenchmarkWindowAggAdd(b *testing.B) {
	p, err := Load("w.yaml", []byte(`name: w
source: {type: sequence, keys: 3, event_time: {field: seq}}
pipeline:
  - key_by: key
  - window: {tumbling: 10ms, aggregate: {n: {count: {}}, s: {sum: seq}, m: {max: seq}}}
sink: {type: stdout}
`))
	if err != nil {
		b.Fatal(err)
	}
	f := p.Stages[1].Window.Function()
	acc := f.Create()
	var r Row
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Num[1] = uint64(i)
		f.Add(&acc, &r)
	}
}
