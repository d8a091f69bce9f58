package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/streamd/streamd/internal/jsonx"
)

func jsonSchema(t testing.TB) *Schema {
	s, err := NewSchema([]FieldSpec{{"key", TypeInt}, {"price", TypeFloat}, {"name", TypeString}, {"ok", TypeBool}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppendJSON(t *testing.T) {
	s := jsonSchema(t)
	f := func(key int64, price float64, name string, ok bool, want string) {
		t.Helper()
		var r Row
		r.SetInt(0, key)
		r.SetFloat(1, price)
		r.Str[0] = name
		r.SetBool(2, ok)
		if got := string(s.AppendJSON(nil, &r)); got != want {
			t.Errorf("AppendJSON = %s, want %s", got, want)
		}
	}
	f(0, 0, "", false, `{"key":0,"price":0,"name":"","ok":false}`)
	f(2000000, 2e6, "a", true, `{"key":2000000,"price":2000000,"name":"a","ok":true}`)
	f(math.MinInt64, -1.5, `q"\`, true, `{"key":-9223372036854775808,"price":-1.5,"name":"q\"\\","ok":true}`)
	f(math.MaxInt64, 1e21, "\n\t\r\b\f\x01\x1f", false, `{"key":9223372036854775807,"price":1e+21,"name":"\n\t\r\b\f\u0001\u001f","ok":false}`)
	f(1, 1e-7, "<&>\u2028\u2029é", false, `{"key":1,"price":1e-7,"name":"<&>\u2028\u2029é","ok":false}`)
	f(1, math.NaN(), "\xff", false, `{"key":1,"price":null,"name":"\ufffd","ok":false}`)
	f(1, math.Inf(-1), "a\xc3", false, `{"key":1,"price":null,"name":"a\ufffd","ok":false}`)
	f(1, math.Copysign(0, -1), "", false, `{"key":1,"price":-0,"name":"","ok":false}`)
	f(1, 0.1, "", false, `{"key":1,"price":0.1,"name":"","ok":false}`)
	f(1, 123456789.125, "", false, `{"key":1,"price":123456789.125,"name":"","ok":false}`)

	// Slots need not follow field order.
	s2 := &Schema{Fields: []Field{{"b", TypeInt, 3}, {"a", TypeString, 1}}}
	var r Row
	r.SetInt(3, 42)
	r.Str[1] = "x"
	if got := string(s2.AppendJSON([]byte("prefix "), &r)); got != `prefix {"b":42,"a":"x"}` {
		t.Errorf("got %s", got)
	}
}

// encodingJSON is what encoding/json writes for v, without HTML escaping.
func encodingJSON(t testing.TB, v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var f float64
		switch i % 3 {
		case 0:
			f = math.Float64frombits(rng.Uint64())
		case 1:
			f = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))
		default:
			f = float64(rng.Int64N(1<<54) - 1<<53)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		if got, want := string(appendJSONFloat(nil, f)), encodingJSON(t, f); got != want {
			t.Fatalf("float %v (bits %x): got %s, want %s", f, math.Float64bits(f), got, want)
		}
	}
	for _, s := range edgeStrings {
		if got, want := string(jsonx.AppendString(nil, s)), encodingJSON(t, s); got != want {
			t.Fatalf("string %q: got %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range edgeStrings {
		f.Add(s)
	}
	f.Add("\u2028\x00\"\\</script>\xed\xa0\x80")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(jsonx.AppendString(nil, s)), encodingJSON(t, s); got != want {
			t.Fatalf("string %q: got %s, want %s", s, got, want)
		}
	})
}

func TestDecodeJSON(t *testing.T) {
	s := jsonSchema(t)
	ok := func(line string, key int64, price float64, name string, okv bool) {
		t.Helper()
		r := Row{Str: [MaxStrFields]string{"garbage"}}
		r.Num[5] = 99
		if err := s.DecodeJSON([]byte(line), &r); err != nil {
			t.Errorf("DecodeJSON(%s): %v", line, err)
			return
		}
		if r.Int(0) != key || math.Float64bits(r.Float(1)) != math.Float64bits(price) || r.Str[0] != name || r.Bool(2) != okv {
			t.Errorf("DecodeJSON(%s) = key %d price %v name %q ok %v", line, r.Int(0), r.Float(1), r.Str[0], r.Bool(2))
		}
	}
	ok(`{"key":1,"price":2.5,"name":"a","ok":true}`, 1, 2.5, "a", true)
	ok(` { "ok" : false , "name" : "" , "price" : 3 , "key" : -9223372036854775808 } `+"\r\n", math.MinInt64, 3, "", false)
	ok(`{"key":9223372036854775807,"price":-0.0,"name":"x","ok":true}`, math.MaxInt64, math.Copysign(0, -1), "x", true)
	ok(`{"key":0,"price":1e-7,"name":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","ok":true}`, 0, 1e-7, "\"\\/\b\f\n\r\t\u00e9\U0001F600", true)
	ok(`{"key":0,"price":1E+2,"name":"\ud800x\udc00\ud800\u0041","ok":true}`, 0, 100, "\uFFFDx\uFFFD\uFFFDA", true)
	ok("{\"key\":0,\"price\":0,\"name\":\"bad \xff utf8 \xc3\",\"ok\":true}", 0, 0, "bad \uFFFD utf8 \uFFFD", true)
	ok(`{"k\u0065y":5,"price":0,"name":"é","ok":false,"extra":[1,{"a":[null,true,false,"s",-1.5e3]},{}],"x":{}}`, 5, 0, "é", false)
	ok(`{"key":1,"price":2,"name":"`+strings.Repeat("long", 100)+`","ok":true,"key2":null}`, 1, 2, strings.Repeat("long", 100), true)

	bad := func(line, want string) {
		t.Helper()
		var r Row
		err := s.DecodeJSON([]byte(line), &r)
		if err == nil {
			t.Errorf("DecodeJSON(%s): no error, want %q", line, want)
			return
		}
		if !errors.Is(err, ErrBadRecord) {
			t.Errorf("DecodeJSON(%s): %v does not wrap ErrBadRecord", line, err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeJSON(%s): %v, want it to contain %q", line, err, want)
		}
	}
	bad(``, "want a JSON object")
	bad(`[]`, "want a JSON object")
	bad(`{"key":1,"price":2,"name":"a"}`, `missing field "ok"`)
	bad(`{}`, `missing field "key"`)
	bad(`{"key":"1","price":2,"name":"a","ok":true}`, `field "key": want an int, got a string`)
	bad(`{"key":1.0,"price":2,"name":"a","ok":true}`, `field "key": want an int, got 1.0`)
	bad(`{"key":1e3,"price":2,"name":"a","ok":true}`, `field "key": want an int, got 1e3`)
	bad(`{"key":9223372036854775808,"price":2,"name":"a","ok":true}`, `9223372036854775808 is out of the int range`)
	bad(`{"key":-9223372036854775809,"price":2,"name":"a","ok":true}`, `out of the int range`)
	bad(`{"key":1,"price":1e999,"name":"a","ok":true}`, `out of the float range`)
	bad(`{"key":null,"price":2,"name":"a","ok":true}`, `field "key": want an int, got null`)
	bad(`{"key":1,"price":true,"name":"a","ok":true}`, `field "price": want a float, got a bool`)
	bad(`{"key":1,"price":2,"name":1,"ok":true}`, `field "name": want a string, got a number`)
	bad(`{"key":1,"price":2,"name":"a","ok":"true"}`, `field "ok": want a bool, got a string`)
	bad(`{"key":1,"price":2,"name":"a","ok":tru}`, `want a bool, got a bool`)
	bad(`{"key":1,"key":2,"price":2,"name":"a","ok":true}`, `field "key" appears twice`)
	bad(`{"key":1,"price":2,"name":"a","ok":true} x`, "unexpected data after the JSON object")
	bad(`{"key":1,"price":2,"name":"a","ok":true}{}`, "unexpected data after the JSON object")
	bad(`{"key":01,"price":2,"name":"a","ok":true}`, "want ',' or '}'")
	bad(`{"key":-,"price":2,"name":"a","ok":true}`, "invalid number")
	bad(`{"key":1,"price":2.,"name":"a","ok":true}`, "want a digit after the decimal point")
	bad(`{"key":1,"price":2e,"name":"a","ok":true}`, "want a digit in the exponent")
	bad(`{"key":1,"price":2,"name":"a`, "unterminated string")
	bad(`{"key":1,"price":2,"name":"a`+"\n"+`","ok":true}`, "control character in string")
	bad(`{"key":1,"price":2,"name":"\x","ok":true}`, "invalid escape")
	bad(`{"key":1,"price":2,"name":"\u12","ok":true}`, `invalid \u escape`)
	bad(`{"key":1,"price":2,"name":"\ud800\u12x","ok":true}`, `invalid \u escape`)
	bad(`{key:1}`, "want a member name in double quotes")
	bad(`{"key" 1}`, "want ':' after member name")
	bad(`{"key":1,}`, "want a member name in double quotes")
	bad(`{"x":[1,2,}`, "want a JSON value")
	bad(`{"x":[1 2]}`, "want ',' or ']' in array")
	bad(`{"x":{"a":1 "b":2}}`, "want ',' or '}' in object")
	bad(`{"x":nul}`, "want a JSON value")
	bad(`{"x":`+strings.Repeat("[", 300)+strings.Repeat("]", 300)+`}`, "nested deeper than 256 levels")
}

func TestDecodeJSONRoundTrip(t *testing.T) {
	s := exprSchema(t)
	rng := rand.New(rand.NewPCG(5, 6))
	var buf []byte
	for i := 0; i < 5000; i++ {
		r := randRow(rng, s)
		for _, f := range s.Fields {
			if f.Type == TypeFloat && (math.IsNaN(r.Float(f.Slot)) || math.IsInf(r.Float(f.Slot), 0)) {
				r.SetFloat(f.Slot, rng.NormFloat64()*1e10) // JSON cannot carry these
			}
			if f.Type == TypeString {
				if rng.IntN(4) == 0 {
					b := make([]byte, rng.IntN(12))
					for k := range b {
						b[k] = byte(rng.IntN(256))
					}
					r.Str[f.Slot] = string(b)
				}
				r.Str[f.Slot] = fixUTF8(r.Str[f.Slot])
			}
		}
		buf = s.AppendJSON(buf[:0], &r)
		var got Row
		if err := s.DecodeJSON(buf, &got); err != nil {
			t.Fatalf("DecodeJSON(%s): %v", buf, err)
		}
		if got != r {
			t.Fatalf("round trip of %s:\n got  %v\n want %v", buf, got, r)
		}
		if !json.Valid(buf) {
			t.Fatalf("AppendJSON wrote invalid JSON: %s", buf)
		}
	}
}

// fixUTF8 replaces each invalid byte with U+FFFD, as JSON output does.
func fixUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func TestJSONZeroAllocs(t *testing.T) {
	s := jsonSchema(t)
	var r Row
	r.SetInt(0, 123456789)
	r.SetFloat(1, 3.25)
	r.Str[0] = "some \"quoted\" name é"
	r.SetBool(2, true)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() { buf = s.AppendJSON(buf[:0], &r) }); n != 0 {
		t.Errorf("AppendJSON: %v allocs, want 0", n)
	}
	num, err := NewSchema([]FieldSpec{{"key", TypeInt}, {"seq", TypeInt}, {"price", TypeFloat}, {"ok", TypeBool}})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(`{"key":12345,"seq":-7,"price":1234.5678,"ok":true,"ignored":"x\u00e9","more":[1,{"a":2}]}`)
	if n := testing.AllocsPerRun(1000, func() {
		if err := num.DecodeJSON(line, &r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeJSON of a record without string fields: %v allocs, want 0", n)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"key":1,"price":2.5,"name":"a","ok":true}`))
	f.Add([]byte(`{"ok":false,"name":"\ud83d\ude00\u0041","price":-0,"key":-9223372036854775808,"x":[{}]}`))
	f.Add([]byte(`{"key":1,"price":2.5,"name":"a\xff","ok":true,"n":null}`))
	f.Add([]byte(`{"key":1e3}`))
	f.Add([]byte(`[[[[]]]]`))
	s := jsonSchema(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		var r Row
		if err := s.DecodeJSON(line, &r); err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		// What DecodeJSON accepts is valid JSON, and encoding/json reads the
		// same values from it.
		if !json.Valid(line) {
			t.Fatalf("accepted invalid JSON %q", line)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("encoding/json cannot decode %q: %v", line, err)
		}
		if n, ok := m["key"].(json.Number); !ok || n.String() != strconv.FormatInt(r.Int(0), 10) && !strings.HasPrefix(n.String(), "-0") {
			t.Fatalf("key: encoding/json %v, DecodeJSON %d", m["key"], r.Int(0))
		}
		if n, ok := m["price"].(json.Number); !ok {
			t.Fatalf("price: encoding/json %v", m["price"])
		} else if v, err := strconv.ParseFloat(n.String(), 64); err != nil || v != r.Float(1) {
			t.Fatalf("price: encoding/json %v, DecodeJSON %v", n, r.Float(1))
		}
		if m["name"] != r.Str[0] {
			t.Fatalf("name: encoding/json %q, DecodeJSON %q", m["name"], r.Str[0])
		}
		if m["ok"] != r.Bool(2) {
			t.Fatalf("ok: encoding/json %v, DecodeJSON %v", m["ok"], r.Bool(2))
		}
		// And the row survives a round trip.
		out := s.AppendJSON(nil, &r)
		var r2 Row
		if err := s.DecodeJSON(out, &r2); err != nil {
			t.Fatalf("cannot decode AppendJSON output %s: %v", out, err)
		}
		if r2 != r {
			t.Fatalf("round trip of %s changed the row", out)
		}
	})
}

func benchRow() Row {
	var r Row
	r.SetInt(0, 123456789)
	r.SetFloat(1, 3.25)
	r.Str[0] = "some name"
	r.SetBool(2, true)
	return r
}

func BenchmarkAppendJSON(b *testing.B) {
	s := jsonSchema(b)
	r := benchRow()
	buf := s.AppendJSON(nil, &r)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendJSON(buf[:0], &r)
	}
}

func BenchmarkDecodeJSON(b *testing.B) {
	s := jsonSchema(b)
	r := benchRow()
	line := s.AppendJSON(nil, &r)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.DecodeJSON(line, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendKey(b *testing.B) {
	s := jsonSchema(b)
	r := benchRow()
	f, _ := s.Lookup("key")
	buf := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendKey(buf[:0], &r, f)
	}
}
