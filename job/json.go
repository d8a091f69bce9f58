package job

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/streamd/streamd/internal/jsonx"
)

// AppendJSON appends r as one JSON object with every field of s, in schema
// order, and no trailing newline. Ints are JSON integers; floats use the
// shortest representation that round-trips, formatted exactly as
// encoding/json does (exponent form below 1e-6 and from 1e21 on), and NaN
// and ±Inf, which JSON cannot express, become null (which DecodeJSON does
// not read back into a float); strings are escaped as
// encoding/json does with HTML escaping off (invalid UTF-8 becomes U+FFFD).
// It does not allocate when dst has room.
func (s *Schema) AppendJSON(dst []byte, r *Row) []byte {
	dst = append(dst, '{')
	for i, f := range s.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, f.Name)
		dst = append(dst, ':')
		switch f.Type {
		case TypeInt:
			dst = strconv.AppendInt(dst, int64(r.Num[f.Slot]), 10)
		case TypeFloat:
			dst = appendJSONFloat(dst, math.Float64frombits(r.Num[f.Slot]))
		case TypeBool:
			if r.Num[f.Slot] != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		case TypeString:
			dst = jsonx.AppendString(dst, r.Str[f.Slot])
		default:
			panic(fmt.Sprintf("job: AppendJSON: field %q has invalid type %v", f.Name, f.Type))
		}
	}
	return append(dst, '}')
}

// appendJSONFloat formats f as encoding/json does.
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// maxJSONDepth bounds the nesting of ignored values in DecodeJSON.
const maxJSONDepth = 256

// DecodeJSON decodes one JSON object (one line of a JSON-lines file) into r.
//
// Every field of s must be present with a value of its type: an int field
// takes a JSON integer (no fraction or exponent) that fits int64; a float
// field takes any JSON number; a string field a JSON string; a bool field
// true or false. null is never accepted (fields are not nullable). Members
// whose names are not in s are validated as JSON and ignored. A field that
// appears twice is an error. Leading and trailing white space is allowed,
// anything else after the object is an error. Invalid UTF-8 in strings
// becomes U+FFFD, as in encoding/json.
//
// Errors wrap ErrBadRecord, name the field when there is one and give the
// byte offset of syntax errors; the caller adds the file name and line.
// On error, r holds a mix of old and new values. Strings are the only values
// that allocate.
func (s *Schema) DecodeJSON(line []byte, r *Row) error {
	if len(s.Fields) > 64 {
		panic(fmt.Sprintf("job: DecodeJSON: schema has %d fields; at most 64 are supported", len(s.Fields)))
	}
	d := jsonDecoder{buf: line}
	d.skipWS()
	if !d.consume('{') {
		return d.syntax("want a JSON object")
	}
	var seen uint64
	d.skipWS()
	if !d.consume('}') {
		for {
			d.skipWS()
			if d.peek() != '"' {
				return d.syntax("want a member name in double quotes")
			}
			var keyBuf [MaxFieldNameLen]byte
			key, err := d.readString(keyBuf[:0])
			if err != nil {
				return err
			}
			d.skipWS()
			if !d.consume(':') {
				return d.syntax("want ':' after member name")
			}
			d.skipWS()
			idx := -1
			for i := range s.Fields {
				if s.Fields[i].Name == string(key) {
					idx = i
					break
				}
			}
			if idx < 0 {
				if err := d.skipValue(0); err != nil {
					return err
				}
			} else {
				if seen&(1<<idx) != 0 {
					return fmt.Errorf("%w: field %q appears twice", ErrBadRecord, s.Fields[idx].Name)
				}
				seen |= 1 << idx
				if err := d.decodeField(s.Fields[idx], r); err != nil {
					return err
				}
			}
			d.skipWS()
			if d.consume(',') {
				continue
			}
			if d.consume('}') {
				break
			}
			return d.syntax("want ',' or '}' after member value")
		}
	}
	d.skipWS()
	if d.pos != len(d.buf) {
		return d.syntax("unexpected data after the JSON object")
	}
	if want := uint64(1)<<len(s.Fields) - 1; seen != want {
		for i, f := range s.Fields {
			if seen&(1<<i) == 0 {
				return fmt.Errorf("%w: missing field %q", ErrBadRecord, f.Name)
			}
		}
	}
	return nil
}

type jsonDecoder struct {
	buf []byte
	pos int
}

func (d *jsonDecoder) syntax(msg string) error {
	if d.pos >= len(d.buf) {
		return fmt.Errorf("%w: invalid JSON at byte %d (end of input): %s", ErrBadRecord, d.pos, msg)
	}
	return fmt.Errorf("%w: invalid JSON at byte %d (%q): %s", ErrBadRecord, d.pos, rune(d.buf[d.pos]), msg)
}

func (d *jsonDecoder) skipWS() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) peek() byte {
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

func (d *jsonDecoder) consume(c byte) bool {
	if d.pos < len(d.buf) && d.buf[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

func (d *jsonDecoder) literal(word string) bool {
	if len(d.buf)-d.pos >= len(word) && string(d.buf[d.pos:d.pos+len(word)]) == word {
		d.pos += len(word)
		return true
	}
	return false
}

// kindAt names the JSON value starting at the current position, for errors.
func (d *jsonDecoder) kindAt() string {
	switch c := d.peek(); {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a bool"
	case c == 'n':
		return "null"
	case c == '-' || '0' <= c && c <= '9':
		return "a number"
	}
	return "invalid JSON"
}

func (d *jsonDecoder) decodeField(f Field, r *Row) error {
	switch f.Type {
	case TypeInt:
		if c := d.peek(); c != '-' && (c < '0' || c > '9') {
			return d.wrongType(f)
		}
		tok, isInt, err := d.readNumber()
		if err != nil {
			return err
		}
		if !isInt {
			return fmt.Errorf("%w: field %q: want an int, got %s", ErrBadRecord, f.Name, tok)
		}
		v, ok := parseInt64(tok)
		if !ok {
			return fmt.Errorf("%w: field %q: %s is out of the int range", ErrBadRecord, f.Name, tok)
		}
		r.Num[f.Slot] = uint64(v)
	case TypeFloat:
		if c := d.peek(); c != '-' && (c < '0' || c > '9') {
			return d.wrongType(f)
		}
		tok, _, err := d.readNumber()
		if err != nil {
			return err
		}
		v, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return fmt.Errorf("%w: field %q: %s is out of the float range", ErrBadRecord, f.Name, tok)
		}
		r.Num[f.Slot] = math.Float64bits(v)
	case TypeBool:
		switch {
		case d.literal("true"):
			r.Num[f.Slot] = 1
		case d.literal("false"):
			r.Num[f.Slot] = 0
		default:
			return d.wrongType(f)
		}
	case TypeString:
		if d.peek() != '"' {
			return d.wrongType(f)
		}
		var scratch [128]byte
		b, err := d.readString(scratch[:0])
		if err != nil {
			return err
		}
		r.Str[f.Slot] = string(b)
	default:
		panic(fmt.Sprintf("job: DecodeJSON: field %q has invalid type %v", f.Name, f.Type))
	}
	return nil
}

func (d *jsonDecoder) wrongType(f Field) error {
	got := d.kindAt()
	if got == "invalid JSON" {
		return d.syntax("want a JSON value")
	}
	return fmt.Errorf("%w: field %q: want %s, got %s", ErrBadRecord, f.Name, withArticle(f.Type), got)
}

func withArticle(t Type) string {
	if t == TypeInt {
		return "an int"
	}
	return "a " + t.String()
}

// parseInt64 parses a validated JSON integer token.
func parseInt64(tok []byte) (int64, bool) {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	var u uint64
	for _, c := range tok {
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return int64(-u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// readNumber reads a JSON number and reports whether it is an integer (no
// fraction, no exponent).
func (d *jsonDecoder) readNumber() (tok []byte, isInt bool, err error) {
	start := d.pos
	isInt = true
	d.consume('-')
	switch c := d.peek(); {
	case c == '0':
		d.pos++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return nil, false, d.syntax("invalid number")
	}
	if d.consume('.') {
		isInt = false
		if d.digits() == 0 {
			return nil, false, d.syntax("want a digit after the decimal point")
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		isInt = false
		d.pos++
		if c := d.peek(); c == '+' || c == '-' {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, false, d.syntax("want a digit in the exponent")
		}
	}
	return d.buf[start:d.pos], isInt, nil
}

func (d *jsonDecoder) digits() int {
	n := 0
	for d.pos < len(d.buf) && '0' <= d.buf[d.pos] && d.buf[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}

// readString reads a JSON string at the current position (which holds '"').
// If it has no escapes and is valid UTF-8 it returns a subslice of the input;
// otherwise it appends the decoded bytes to dst and returns that.
func (d *jsonDecoder) readString(dst []byte) ([]byte, error) {
	d.pos++ // opening quote
	start := d.pos
	simple := true
	for {
		if d.pos >= len(d.buf) {
			return nil, d.syntax("unterminated string")
		}
		c := d.buf[d.pos]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return nil, d.syntax("control character in string")
		}
		if c == '\\' || c >= utf8.RuneSelf {
			simple = false
			break
		}
		d.pos++
	}
	if simple {
		s := d.buf[start:d.pos]
		d.pos++
		return s, nil
	}
	dst = append(dst, d.buf[start:d.pos]...)
	for {
		if d.pos >= len(d.buf) {
			return nil, d.syntax("unterminated string")
		}
		c := d.buf[d.pos]
		switch {
		case c == '"':
			d.pos++
			return dst, nil
		case c < 0x20:
			return nil, d.syntax("control character in string")
		case c == '\\':
			d.pos++
			if d.pos >= len(d.buf) {
				return nil, d.syntax("unterminated string")
			}
			e := d.buf[d.pos]
			d.pos++
			switch e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return nil, d.syntax("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A valid pair decodes to one rune; anything else is
					// U+FFFD, as in encoding/json.
					r2 := rune(-1)
					if save := d.pos; d.consume('\\') && d.consume('u') {
						if v, ok := d.hex4(); ok {
							r2 = v
						} else {
							return nil, d.syntax("invalid \\u escape")
						}
						if utf16.DecodeRune(r, r2) == utf8.RuneError {
							d.pos = save // the second escape stands alone
						}
					} else {
						d.pos = save
					}
					r = utf16.DecodeRune(r, r2)
				}
				dst = utf8.AppendRune(dst, r)
			default:
				d.pos--
				return nil, d.syntax("invalid escape")
			}
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.buf[d.pos:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, d.buf[d.pos:d.pos+size]...)
			}
			d.pos += size
		}
	}
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if len(d.buf)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.buf[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

// skipValue validates and skips one JSON value.
func (d *jsonDecoder) skipValue(depth int) error {
	if depth >= maxJSONDepth {
		return d.syntax(fmt.Sprintf("nested deeper than %d levels", maxJSONDepth))
	}
	switch c := d.peek(); {
	case c == '"':
		var scratch [64]byte
		_, err := d.readString(scratch[:0])
		return err
	case c == '-' || '0' <= c && c <= '9':
		_, _, err := d.readNumber()
		return err
	case c == 't':
		if d.literal("true") {
			return nil
		}
	case c == 'f':
		if d.literal("false") {
			return nil
		}
	case c == 'n':
		if d.literal("null") {
			return nil
		}
	case c == '[':
		d.pos++
		d.skipWS()
		if d.consume(']') {
			return nil
		}
		for {
			d.skipWS()
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.skipWS()
			if d.consume(',') {
				continue
			}
			if d.consume(']') {
				return nil
			}
			return d.syntax("want ',' or ']' in array")
		}
	case c == '{':
		d.pos++
		d.skipWS()
		if d.consume('}') {
			return nil
		}
		for {
			d.skipWS()
			if d.peek() != '"' {
				return d.syntax("want a member name in double quotes")
			}
			var scratch [64]byte
			if _, err := d.readString(scratch[:0]); err != nil {
				return err
			}
			d.skipWS()
			if !d.consume(':') {
				return d.syntax("want ':' after member name")
			}
			d.skipWS()
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.skipWS()
			if d.consume(',') {
				continue
			}
			if d.consume('}') {
				return nil
			}
			return d.syntax("want ',' or '}' in object")
		}
	}
	return d.syntax("want a JSON value")
}
