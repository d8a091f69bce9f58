package job

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// memStore is a StateStore for one key at a time, over maps (it allocates;
// fine for semantics).
type memStore struct {
	key  string
	vals map[string][]byte
	sets map[string]bool
}

func newMemStore() *memStore {
	return &memStore{vals: map[string][]byte{}, sets: map[string]bool{}}
}

func (m *memStore) id(i int) string { return fmt.Sprintf("%s/%d", m.key, i) }

func (m *memStore) Get(i int) ([]byte, bool) {
	v, ok := m.vals[m.id(i)]
	return v, ok
}

func (m *memStore) Put(i int, v []byte) { m.vals[m.id(i)] = append([]byte(nil), v...) }

func (m *memStore) AddMember(i int, member []byte) bool {
	k := m.id(i) + "/" + string(member)
	if m.sets[k] {
		return false
	}
	m.sets[k] = true
	return true
}

// fixedStore is a StateStore for a single key that allocates nothing once
// its buffers have grown: for allocation tests.
type fixedStore struct {
	vals [8][]byte
	have [8]bool
}

func (f *fixedStore) Get(i int) ([]byte, bool) { return f.vals[i], f.have[i] }
func (f *fixedStore) Put(i int, v []byte) {
	f.vals[i] = append(f.vals[i][:0], v...)
	f.have[i] = true
}
func (f *fixedStore) AddMember(int, []byte) bool { panic("fixedStore has no sets") }

const aggTestSpec = `name: aggs
source:
  type: file
  path: in/
  fields: {user: string, page: string, amount: float, qty: int, ok: bool}
pipeline:
  - key_by: user
  - aggregate:
      n: {count: {}}
      total: {sum: qty}
      avg_amount: {avg: amount}
      avg_qty: {avg: qty}
      lo: {min: amount}
      hi: {max: qty}
      lo_page: {min: page}
      hi_page: {max: page}
      first_qty: {first: qty}
      first_page: {first: page}
      first_ok: {first: ok}
      last_page: {last: page}
      pages: {count_distinct: page}
      approx_pages: {count_distinct_approx: page}
      qty_values: {count_distinct: "qty % 3"}
      qty: {sum: "qty * 10"}
  - reduce: {field: spent, value: "acc + amount * float(qty)", init: "amount * float(qty)"}
  - reduce: {field: amount, value: "max(acc, amount)"}
  - reduce: {field: trail, value: "acc + page", init: page}
sink: {type: stdout}
`

type aggIn struct {
	user, page string
	amount     float64
	qty        int64
	ok         bool
}

// runStages runs the plan's keyed stages over rows as one task would, with
// a memStore per stage, and returns the sink's JSON lines.
func runStages(t *testing.T, p *Plan, rows []aggIn) []string {
	t.Helper()
	src := p.SourceSchema
	var ops []func(*Row)
	var stores []*memStore
	for i := range p.Stages {
		st := &p.Stages[i]
		m := newMemStore()
		stores = append(stores, m)
		switch {
		case st.Reduce != nil:
			ops = append(ops, st.Reduce.Open(m))
		case st.Accs != nil:
			ops = append(ops, st.Accs.Open(m))
		default:
			ops = append(ops, func(*Row) {})
		}
	}
	var out []string
	for _, in := range rows {
		var r Row
		set := func(name string, f func(Field)) {
			fl, ok := src.Lookup(name)
			if !ok {
				t.Fatalf("no field %s", name)
			}
			f(fl)
		}
		set("user", func(f Field) { r.Str[f.Slot] = in.user })
		set("page", func(f Field) { r.Str[f.Slot] = in.page })
		set("amount", func(f Field) { r.SetFloat(f.Slot, in.amount) })
		set("qty", func(f Field) { r.SetInt(f.Slot, in.qty) })
		set("ok", func(f Field) { r.SetBool(f.Slot, in.ok) })
		for i, op := range ops {
			stores[i].key = in.user
			op(&r)
		}
		out = append(out, string(p.SinkSchema.AppendJSON(nil, &r)))
	}
	return out
}

func TestAggregateAndReduceSemantics(t *testing.T) {
	p, err := Load("aggs.yaml", []byte(aggTestSpec))
	if err != nil {
		t.Fatal(err)
	}
	rows := []aggIn{
		{"ann", "b", 1.5, 2, true},
		{"bob", "x", 10, 1, false},
		{"ann", "a", 0.25, 4, false},
		{"ann", "c", 2, -3, true},
		{"ann", "a", 1.5, 2, false},
	}
	got := runStages(t, p, rows)
	want := []string{
		`{"user":"ann","page":"b","amount":1.5,"qty":20,"ok":true,"n":1,"total":2,"avg_amount":1.5,"avg_qty":2,"lo":1.5,"hi":2,"lo_page":"b","hi_page":"b","first_qty":2,"first_page":"b","first_ok":true,"last_page":"b","pages":1,"approx_pages":1,"qty_values":1,"spent":30,"trail":"b"}`,
		`{"user":"bob","page":"x","amount":10,"qty":10,"ok":false,"n":1,"total":1,"avg_amount":10,"avg_qty":1,"lo":10,"hi":1,"lo_page":"x","hi_page":"x","first_qty":1,"first_page":"x","first_ok":false,"last_page":"x","pages":1,"approx_pages":1,"qty_values":1,"spent":100,"trail":"x"}`,
		`{"user":"ann","page":"a","amount":1.5,"qty":60,"ok":false,"n":2,"total":6,"avg_amount":0.875,"avg_qty":3,"lo":0.25,"hi":4,"lo_page":"a","hi_page":"b","first_qty":2,"first_page":"b","first_ok":true,"last_page":"a","pages":2,"approx_pages":2,"qty_values":2,"spent":45,"trail":"ba"}`,
		`{"user":"ann","page":"c","amount":2,"qty":30,"ok":true,"n":3,"total":3,"avg_amount":1.25,"avg_qty":1,"lo":0.25,"hi":4,"lo_page":"a","hi_page":"c","first_qty":2,"first_page":"b","first_ok":true,"last_page":"c","pages":3,"approx_pages":3,"qty_values":3,"spent":105,"trail":"bac"}`,
		`{"user":"ann","page":"a","amount":2,"qty":50,"ok":false,"n":4,"total":5,"avg_amount":1.3125,"avg_qty":1.25,"lo":0.25,"hi":4,"lo_page":"a","hi_page":"c","first_qty":2,"first_page":"b","first_ok":true,"last_page":"a","pages":3,"approx_pages":3,"qty_values":3,"spent":180,"trail":"baca"}`,
	}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// TestAccumulatorsAllocs: the numeric accumulators and a numeric reduce
// allocate nothing per record once their state exists.
func TestAccumulatorsAllocs(t *testing.T) {
	p, err := Load("allocs.yaml", []byte(`name: allocs
source: {type: file, path: in/, fields: {user: string, page: string, amount: float, qty: int, ok: bool}}
pipeline:
  - key_by: user
  - aggregate:
      n: {count: {}}
      total: {sum: qty}
      avg_amount: {avg: amount}
      lo: {min: amount}
      hi: {max: qty}
      first_qty: {first: qty}
      first_ok: {first: ok}
      last_page: {last: page}
      twice: {sum: "qty * 2"}
  - reduce: {field: spent, value: "acc + amount * 2.0", init: amount}
  - reduce: {field: qty, value: "acc > qty ? acc : qty"}
sink: {type: stdout}
`))
	if err != nil {
		t.Fatal(err)
	}
	var ops []func(*Row)
	for i := range p.Stages {
		st := &p.Stages[i]
		switch {
		case st.Reduce != nil:
			ops = append(ops, st.Reduce.Open(&fixedStore{}))
		case st.Accs != nil:
			ops = append(ops, st.Accs.Open(&fixedStore{}))
		}
		if len(st.SlowExprs) > 0 {
			t.Fatalf("%s has slow expressions %q", st.Step.Name, st.SlowExprs)
		}
	}
	var r Row
	r.Str[0], r.Str[1] = "ann", "home"
	step := func() {
		r.Num[1]++
		for _, op := range ops {
			op(&r)
		}
	}
	step()
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("%v allocations per record, want 0", n)
	}
}

func BenchmarkAggregate(b *testing.B) {
	p, err := Load("bench.yaml", []byte(`name: bench
source: {type: sequence, keys: 1}
pipeline:
  - map: {amount: "float(seq) * 0.5"}
  - key_by: key
  - aggregate:
      n: {count: {}}
      total: {sum: seq}
      avg_amount: {avg: amount}
      lo: {min: amount}
      hi: {max: seq}
      first_seq: {first: seq}
      last_seq: {last: seq}
  - reduce: {field: spent, value: "acc + amount", init: amount}
sink: {type: blackhole}
`))
	if err != nil {
		b.Fatal(err)
	}
	accs := p.Stages[2].Accs.Open(&fixedStore{})
	red := p.Stages[3].Reduce.Open(&fixedStore{})
	amount, _ := p.Stages[0].Out.Lookup("amount")
	var r Row
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Num[1] = uint64(i)
		r.Num[amount.Slot] = math.Float64bits(float64(i) * 0.5)
		accs(&r)
		red(&r)
	}
}

// TestHLLAccuracy adds n distinct values and checks the estimate against
// the stated error: within 4 standard errors (and exact for small n).
func TestHLLAccuracy(t *testing.T) {
	var sk, buf []byte
	buf = make([]byte, 0, hllHeader+hllM)
	added := 0
	check := func(n int) {
		for ; added < n; added++ {
			h := hashMember(uint64(added))
			next, changed, _ := hllAdd(buf, sk, h)
			if changed {
				sk = append(sk[:0], next...)
			}
		}
		if !hllValid(sk) {
			t.Fatalf("n=%d: invalid sketch of %d bytes", n, len(sk))
		}
		got := hllEstimate(sk)
		errRel := math.Abs(float64(got)-float64(n)) / float64(n)
		tol := 4 * HLLStdError
		if n <= 100 {
			tol = 0.02
		}
		t.Logf("n=%d estimate=%d error=%.4f (%d bytes)", n, got, errRel, len(sk))
		if errRel > tol {
			t.Errorf("n=%d: estimate %d, relative error %.4f > %.4f", n, got, errRel, tol)
		}
	}
	for _, n := range []int{1, 2, 10, 100, 500, 513, 1000, 10_000, 40_000, 100_000, 1_000_000} {
		check(n)
	}
}

// hashMember hashes an int as count_distinct_approx does.
func hashMember(v uint64) uint64 {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return xxhash.Sum64(b[:])
}

// TestHLLSparseEqualsDense: the sparse form gives the estimate the dense
// registers give, and it never modifies the sketch it reads.
func TestHLLSparseEqualsDense(t *testing.T) {
	var sk []byte
	regs := make([]uint8, hllM)
	for i := range 2000 {
		h := hashMember(uint64(i) * 7919)
		prev := append([]byte(nil), sk...)
		next, changed, _ := hllAdd(make([]byte, 0, 16), sk, h)
		if string(prev) != string(sk) {
			t.Fatal("hllAdd modified its input")
		}
		if changed {
			sk = next
		}
		idx, rank := hllIndexRank(h)
		regs[idx] = max(regs[idx], rank)
		var counts [hllQ + 2]uint16
		for _, r := range regs {
			counts[r]++
		}
		var hist []byte
		for _, c := range counts {
			hist = binary.LittleEndian.AppendUint16(hist, c)
		}
		if got, want := hllEstimate(sk), hllEstimateHist(hist); got != want {
			t.Fatalf("after %d values: estimate %d, registers say %d", i+1, got, want)
		}
	}
}

// A sketch whose shape is valid but whose registers are damaged is
// reported as corrupt, never an index out of range (restored state is
// untrusted input).
func TestHLLDamagedRegisters(t *testing.T) {
	var sk []byte
	for i := range uint64(2000) { // dense
		next, changed, corrupt := hllAdd(make([]byte, 0, hllHeader+hllM), sk, i*0x9e3779b97f4a7c15)
		if corrupt {
			t.Fatal("a sound sketch reported corrupt")
		}
		if changed {
			sk = next
		}
	}
	for i := hllHeader; i < len(sk); i++ {
		sk[i] = 0xff
	}
	if _, _, corrupt := hllAdd(nil, sk, 12345); !corrupt {
		t.Fatal("a dense sketch with registers of 255 was not reported corrupt")
	}
	one, _, _ := hllAdd(nil, nil, 1)
	big := append([]byte{}, one[:hllHeader]...)
	binary.LittleEndian.PutUint32(big[8:12], hllSparseMax)
	for range hllSparseMax {
		big = append(big, 0xff, 0xff, 1) // an index beyond the registers
	}
	if !hllValid(big) {
		t.Fatal("test setup: the damaged sparse sketch must have a valid shape")
	}
	if _, _, corrupt := hllAdd(nil, big, 777); !corrupt {
		t.Fatal("a full sparse sketch with indexes beyond the registers was not reported corrupt when it went dense")
	}
}

func FuzzHLLAdd(f *testing.F) {
	sk, _, _ := hllAdd(nil, nil, 42)
	f.Add(sk, uint64(7))
	// Found by this fuzz test: a well-shaped sparse sketch whose histogram
	// was garbage made the estimator's series loop forever.
	f.Add([]byte("00000000\x01\x00\x00\x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000 A\x00\x00-"), uint64(0))
	f.Fuzz(func(t *testing.T, sk []byte, h uint64) {
		if !hllValid(sk) {
			return
		}
		hllAdd(make([]byte, 0, hllHeader+hllM), sk, h) // must not panic
	})
}
