package job

import (
	"errors"
	"strings"
	"testing"
)

// kafkaTestSchema is a kafka source's schema: JSON fields and metadata.
func kafkaTestSchema(t testing.TB) *Schema {
	t.Helper()
	s, err := NewSchema([]FieldSpec{
		{"user", TypeString}, {"amount", TypeInt}, {"ok", TypeBool},
		{MetaKey, TypeString}, {MetaTopic, TypeString}, {MetaPartition, TypeInt}, {MetaOffset, TypeInt}, {MetaTimestamp, TypeInt},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMessageDecoder(t *testing.T) {
	s := kafkaTestSchema(t)
	dec := NewMessageDecoder(SourceKafka, s)
	meta := Meta{Key: []byte("k1"), Topic: "in", Partition: 2, Offset: 41, TimestampMs: 1_700_000_000_123}
	var r Row
	// A member named like a metadata field is not read: the metadata wins.
	if err := dec.Decode([]byte(`{"ok": true, "_key": "from-json", "amount": -7, "user": "ann", "x": [1]}`), &meta, &r); err != nil {
		t.Fatal(err)
	}
	got := string(s.AppendJSON(nil, &r))
	want := `{"user":"ann","amount":-7,"ok":true,"_key":"k1","_topic":"in","_partition":2,"_offset":41,"_timestamp":1700000000123}`
	if got != want {
		t.Fatalf("decoded\n%s\nwant\n%s", got, want)
	}
	f := func(value, wantErr string) {
		t.Helper()
		err := dec.Decode([]byte(value), &meta, &r)
		if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("Decode(%s) = %v, want a bad record error with %q", value, err, wantErr)
		}
	}
	f(`{"user": "ann", "amount": 1}`, `missing field "ok"`)
	f(`{"user": "ann", "amount": 1.5, "ok": true}`, `amount`)
	f(`"ann"`, `want a JSON object`)
	f(``, `want a JSON object`)

	// Headers, when declared: a JSON object in their order, repeats kept,
	// invalid UTF-8 replaced (by the escape \ufffd).
	hs, err := NewSchema([]FieldSpec{{"user", TypeString}, {MetaHeaders, TypeString}})
	if err != nil {
		t.Fatal(err)
	}
	hdec := NewMessageDecoder(SourceKafka, hs)
	if !hdec.WantsHeaders() || dec.WantsHeaders() {
		t.Fatalf("WantsHeaders: %v with _headers declared, %v without", hdec.WantsHeaders(), dec.WantsHeaders())
	}
	hm := Meta{Headers: [][]byte{[]byte("trace"), []byte("t-1"), []byte("tag"), []byte("a\"b"), []byte("tag"), {0xff}}}
	if err := hdec.Decode([]byte(`{"user": "bo"}`), &hm, &r); err != nil {
		t.Fatal(err)
	}
	if got, want := string(hs.AppendJSON(nil, &r)), `{"user":"bo","_headers":"{\"trace\":\"t-1\",\"tag\":\"a\\\"b\",\"tag\":\"\\ufffd\"}"}`; got != want {
		t.Fatalf("headers decoded\n%s\nwant\n%s", got, want)
	}
	if err := hdec.Decode([]byte(`{"user": "bo"}`), &Meta{}, &r); err != nil || r.Str[hs.Fields[1].Slot] != "{}" {
		t.Fatalf("no headers: %q, %v; want {}", r.Str[hs.Fields[1].Slot], err)
	}

	// A nats source's metadata; kafka's names are plain JSON fields there.
	ns, err := NewSchema([]FieldSpec{{MetaKey, TypeString}, {MetaSubject, TypeString}, {MetaSeq, TypeInt}, {MetaTimestamp, TypeInt}})
	if err != nil {
		t.Fatal(err)
	}
	nm := Meta{Subject: "a.b", Seq: 9, TimestampMs: 5}
	if err := NewMessageDecoder(SourceNATS, ns).Decode([]byte(`{"_key": "json"}`), &nm, &r); err != nil {
		t.Fatal(err)
	}
	if got, want := string(ns.AppendJSON(nil, &r)), `{"_key":"json","_subject":"a.b","_seq":9,"_timestamp":5}`; got != want {
		t.Fatalf("nats decoded %s, want %s", got, want)
	}
}

// Decoding numbers and numeric metadata allocates nothing; so does
// AppendKeyText into a buffer with room.
func TestMessageDecoderAllocs(t *testing.T) {
	s, err := NewSchema([]FieldSpec{{"amount", TypeInt}, {"price", TypeFloat}, {MetaPartition, TypeInt}, {MetaOffset, TypeInt}, {MetaTimestamp, TypeInt}})
	if err != nil {
		t.Fatal(err)
	}
	dec := NewMessageDecoder(SourceKafka, s)
	value := []byte(`{"amount": 12, "price": 1.25, "user": "ignored"}`)
	meta := Meta{Partition: 1, Offset: 2, TimestampMs: 3}
	var r Row
	if n := testing.AllocsPerRun(1000, func() {
		if err := dec.Decode(value, &meta, &r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Decode allocates %v times per message, want 0", n)
	}
	buf := make([]byte, 0, 64)
	f, _ := s.Lookup("price")
	if n := testing.AllocsPerRun(1000, func() { buf = s.AppendKeyText(buf[:0], &r, f) }); n != 0 {
		t.Fatalf("AppendKeyText allocates %v times, want 0", n)
	}
}

func TestAppendKeyText(t *testing.T) {
	s, err := NewSchema([]FieldSpec{{"s", TypeString}, {"i", TypeInt}, {"f", TypeFloat}, {"b", TypeBool}})
	if err != nil {
		t.Fatal(err)
	}
	var r Row
	if err := s.DecodeJSON([]byte(`{"s": "a\"b", "i": -12, "f": 1e21, "b": false}`), &r); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"s": `a"b`, "i": "-12", "f": "1e+21", "b": "false"} {
		f, _ := s.Lookup(name)
		if got := string(s.AppendKeyText(nil, &r, f)); got != want {
			t.Errorf("key of %s = %q, want %q", name, got, want)
		}
	}
}

func BenchmarkMessageDecoder(b *testing.B) {
	s := kafkaTestSchema(b)
	dec := NewMessageDecoder(SourceKafka, s)
	value := []byte(`{"user": "ann", "amount": 12, "ok": true}`)
	meta := Meta{Key: []byte("k"), Topic: "in", Partition: 1, Offset: 2, TimestampMs: 3}
	var r Row
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		if err := dec.Decode(value, &meta, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzMessageDecoder decodes arbitrary values with arbitrary metadata: it
// never panics, errors are bad records, and a decoded row re-encodes to
// JSON that decodes to the same row, its metadata as given.
func FuzzMessageDecoder(f *testing.F) {
	f.Add([]byte(`{"user": "ann", "amount": 1, "ok": true}`), []byte("k"), int64(0), int64(0))
	f.Add([]byte(`{"user": "\u00e9\ud800", "amount": -9223372036854775808, "ok": false, "_key": 1}`), []byte{0xff}, int64(-1), int64(1<<40))
	f.Add([]byte(`{"user": "a", "user": "b"}`), []byte(nil), int64(3), int64(4))
	f.Fuzz(func(t *testing.T, value, key []byte, partition, offset int64) {
		s := kafkaTestSchema(t)
		dec := NewMessageDecoder(SourceKafka, s)
		meta := Meta{Key: key, Topic: "t", Partition: partition, Offset: offset, TimestampMs: offset ^ partition}
		var r Row
		if err := dec.Decode(value, &meta, &r); err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		k, _ := s.Lookup(MetaKey)
		p, _ := s.Lookup(MetaPartition)
		if r.Str[k.Slot] != string(key) || r.Int(p.Slot) != partition {
			t.Fatalf("metadata not as given: key %q partition %d", r.Str[k.Slot], r.Int(p.Slot))
		}
		enc := s.AppendJSON(nil, &r)
		var r2 Row
		if err := dec.Decode(enc, &meta, &r2); err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if enc2 := s.AppendJSON(nil, &r2); string(enc2) != string(enc) {
			t.Fatalf("round trip changed the row:\n%s\n%s", enc, enc2)
		}
	})
}
