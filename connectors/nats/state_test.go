package nats

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/streamd/streamd/engine"
)

func body(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = appendMessage(b, "out", []byte(m))
	}
	return b
}

func mkTxn(task int, cp uint64, msgs ...string) txn {
	return txn{task: task, checkpoint: cp, count: len(msgs), body: body(msgs...)}
}

func TestStateRoundTrip(t *testing.T) {
	txns := []txn{mkTxn(0, 3, "a", "bb"), mkTxn(0, 4), mkTxn(2, 5, `{"x":1}`)}
	got, err := decodeState(appendState(nil, txns))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(txns) {
		t.Fatalf("decoded %d transactions, want %d", len(got), len(txns))
	}
	for i := range got {
		if got[i].task != txns[i].task || got[i].checkpoint != txns[i].checkpoint || got[i].count != txns[i].count || !bytes.Equal(got[i].body, txns[i].body) {
			t.Fatalf("transaction %d: got %+v, want %+v", i, got[i], txns[i])
		}
	}
	var msgs []string
	if err := eachMessage(got[0].body, func(s, d []byte) error { msgs = append(msgs, string(s)+":"+string(d)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(msgs, []string{"out:a", "out:bb"}) {
		t.Fatalf("messages %q", msgs)
	}
}

func TestDecodeStateRejects(t *testing.T) {
	good := appendState(nil, []txn{mkTxn(1, 2, "x")})
	f := func(name string, b []byte) {
		t.Helper()
		if _, err := decodeState(b); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: got %v, want ErrBadState", name, err)
		}
	}
	f("empty", nil)
	f("no version", []byte(stateMagic))
	f("other version", []byte(stateMagic+"\x02\x00"))
	f("truncated", good[:len(good)-1])
	f("trailing", append(slices.Clone(good), 0))
	f("count lies", appendState(nil, []txn{{task: 1, checkpoint: 2, count: 2, body: body("x")}}))
	f("checkpoint 0", appendState(nil, []txn{mkTxn(1, 0, "x")}))
	f("empty subject", appendState(nil, []txn{{task: 1, checkpoint: 2, count: 1, body: appendMessage(nil, "", []byte("x"))}}))
	f("huge count", []byte(stateMagic+"\x01\xff\xff\xff\xff\x0f"))
	f("non-minimal", []byte(stateMagic+"\x01\x80\x00"))
}

// FuzzDecodeState: the decoder never panics, and what it accepts encodes
// back to the same bytes.
func FuzzDecodeState(f *testing.F) {
	f.Add(appendState(nil, []txn{mkTxn(0, 3, "a", "bb"), mkTxn(2, 5, `{"x":1}`)}))
	f.Add(appendState(nil, nil))
	f.Add([]byte(stateMagic + "\x01\x01\x00\x01\x01\x05\x03out\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		txns, err := decodeState(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		if again := appendState(nil, txns); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding changed the state:\n%x\n%x", b, again)
		}
	})
}

func TestPlanRecovery(t *testing.T) {
	type tc struct {
		name      string
		states    [][]txn // per old task
		committed map[int]uint64
		want      []string // task/checkpoint of what is published, in order
		wantErr   bool
	}
	enc := func(ts ...txn) []txn { return ts }
	f := func(c tc) {
		t.Helper()
		var states [][]byte
		for _, s := range c.states {
			if s == nil {
				states = append(states, nil)
				continue
			}
			states = append(states, appendState(nil, s))
		}
		got, err := planRecovery(states, c.committed)
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: error %v, want error %v", c.name, err, c.wantErr)
		}
		var ids []string
		for _, x := range got {
			ids = append(ids, fmt.Sprintf("%d/%d", x.task, x.checkpoint))
		}
		if !slices.Equal(ids, c.want) {
			t.Fatalf("%s: publishes %q, want %q", c.name, ids, c.want)
		}
	}
	f(tc{name: "fresh start", states: nil, want: nil})
	f(tc{name: "tasks without pending", states: [][]txn{nil, {}}, want: nil})
	f(tc{name: "crash between pre-commit and commit: publish",
		states: [][]txn{enc(mkTxn(0, 7, "a")), enc(mkTxn(1, 7, "b"))}, committed: map[int]uint64{0: 6, 1: 6},
		want: []string{"0/7", "1/7"}})
	f(tc{name: "crash after one task committed: the other publishes",
		states: [][]txn{enc(mkTxn(0, 7, "a")), enc(mkTxn(1, 7, "b"))}, committed: map[int]uint64{0: 7, 1: 6},
		want: []string{"1/7"}})
	f(tc{name: "crash during a commit (not recorded): publish all again, ids dedup",
		states: [][]txn{enc(mkTxn(0, 7, "a", "b"))}, committed: map[int]uint64{},
		want: []string{"0/7"}})
	f(tc{name: "several pending, in checkpoint order",
		states: [][]txn{enc(mkTxn(0, 5, "a"), mkTxn(0, 6, "b")), enc(mkTxn(1, 4, "c"))}, committed: map[int]uint64{0: 5},
		want: []string{"1/4", "0/6"}})
	f(tc{name: "rescaled: a new task holds another task's transactions",
		states: [][]txn{enc(mkTxn(0, 9, "a"), mkTxn(3, 9, "b"))}, committed: map[int]uint64{0: 8, 3: 9},
		want: []string{"0/9"}})
	f(tc{name: "listed twice", states: [][]txn{enc(mkTxn(0, 9, "a")), enc(mkTxn(0, 9, "a"))}, wantErr: true})
	if _, err := planRecovery([][]byte{[]byte("junk")}, nil); err == nil {
		t.Fatal("a state that does not decode was accepted")
	}
}

func TestFiltersOverlap(t *testing.T) {
	f := func(a, b string, want bool) {
		t.Helper()
		if got := filtersOverlap(a, b); got != want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", a, b, got, want)
		}
		if got := filtersOverlap(b, a); got != want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", b, a, got, want)
		}
	}
	f("a.b", "a.b", true)
	f("a.b", "a.c", false)
	f("a.*", "a.c", true)
	f("a.*", "a.c.d", false)
	f("a.>", "a.c.d", true)
	f("a.>", "a", false)
	f("a.>", "*.x", true)
	f(">", "x", true)
	f("a.b", "a.b.c", false)
	f("*.b", "a.*", true)
	f("x.>", "y.>", false)
}

func TestCheckFilters(t *testing.T) {
	for _, fs := range [][]string{{"a.b", "a.*"}, {"a..b"}, {"a.>.b"}, {"a.b*"}, {""}} {
		if err := checkFilters(fs); err == nil {
			t.Errorf("checkFilters(%q) accepted", fs)
		}
	}
	if err := checkFilters([]string{"orders.eu", "orders.us", "clicks.>"}); err != nil {
		t.Error(err)
	}
}

// FuzzParseSplit: the split decoder never panics, and what it accepts
// encodes back to the same split.
func FuzzParseSplit(f *testing.F) {
	f.Add("orders.>", "next=5")
	f.Add("a.b", "next=1 end=0")
	f.Add("a.*", "next=01")
	f.Fuzz(func(t *testing.T, id, state string) {
		s, err := parseSplit(engine.Split{ID: id, State: []byte(state)})
		if err != nil {
			return
		}
		sp := s.split()
		if sp.ID != id || string(sp.State) != state {
			t.Fatalf("round trip: %q %q became %q %q", id, state, sp.ID, sp.State)
		}
	})
}

func TestRedact(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
	f("nats://u:secret@h:4222", "nats://REDACTED@h:4222")
	f("nats://h:4222,nats://tok@k:1", "nats://h:4222,nats://REDACTED@k:1")
	f("h:4222", "h:4222")
	o := ConnOptions{URL: "nats://u:pw-12345@h:4222"}
	o.ensureDefaults()
	for _, err := range o.validate() {
		if bytes.Contains([]byte(err.Error()), []byte("pw-12345")) {
			t.Fatalf("the error %q shows the password", err)
		}
	}
	if len(o.validate()) == 0 {
		t.Fatal("a URL with credentials was accepted")
	}
}

func TestEscapeToken(t *testing.T) {
	if got := escapeToken("job 1/x"); got != "job=201=2Fx" {
		t.Fatalf("escapeToken: %q", got)
	}
	if escapeToken("a.b") == escapeToken("a=2Eb") {
		// "=" itself is escaped, so this cannot collide.
		t.Fatal("escapeToken collides")
	}
}

func TestWriteAllocs(t *testing.T) {
	s, err := NewSink[int64]("allocs", SinkOptions[int64]{Subject: "x", Encode: func(dst []byte, v *int64) ([]byte, error) {
		return strconv.AppendInt(dst, *v, 10), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	w := &writer[int64]{s: s, transactional: true, maxPayload: 1 << 20}
	w.open.body = make([]byte, 0, 1<<20)
	v := int64(12345)
	if n := testing.AllocsPerRun(1000, func() {
		if err := w.Write(&v); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Write allocates %v times per record", n)
	}
}
