package job

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// Expressions evaluate int fields as Go int (expr's integer type) and rows
// store int64; the two agree only on 64-bit platforms.
const _ = uint(bits.UintSize - 64)

// Type is the type of a field. The zero Type is invalid.
type Type uint8

// The field types. Ints are int64, floats float64, bools 0/1; all three live
// in Row.Num. Strings live in Row.Str.
const (
	TypeInt Type = iota + 1
	TypeFloat
	TypeString
	TypeBool
)

// String returns the name used in specs: int, float, string, bool.
func (t Type) String() string {
	switch t {
	case TypeInt:
		return "int"
	case TypeFloat:
		return "float"
	case TypeString:
		return "string"
	case TypeBool:
		return "bool"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// parseType is the inverse of Type.String.
func parseType(s string) (Type, bool) {
	switch s {
	case "int":
		return TypeInt, true
	case "float":
		return TypeFloat, true
	case "string":
		return TypeString, true
	case "bool":
		return TypeBool, true
	}
	return 0, false
}

// isNum reports whether values of t live in Row.Num.
func (t Type) isNum() bool { return t == TypeInt || t == TypeFloat || t == TypeBool }

// Limits on records. A schema (at any step) with more fields of a kind than
// this is a spec error naming the field that does not fit.
//
// MaxStrFields is 12 so that a Nexmark record (11 string fields: the union
// of a person's, an auction's and a bid's) fits with one to spare; each
// string slot costs 16 bytes of every Row.
const (
	MaxNumFields = 16 // int, float and bool fields of one record
	MaxStrFields = 12 // string fields of one record
)

// MaxFieldNameLen bounds field names (they are expression identifiers and
// JSON keys).
const MaxFieldNameLen = 64

// Row is one record: fixed typed slots, no pointers but the strings, no map.
// Which slot holds which field is decided by the Schema at that point of the
// pipeline. Slots no field owns hold garbage and are never read.
type Row struct {
	Num [MaxNumFields]uint64 // int64 bits, float64 bits, bool 0/1
	Str [MaxStrFields]string
}

// Int returns slot i of Num as an int64.
func (r *Row) Int(slot int) int64 { return int64(r.Num[slot]) }

// Float returns slot i of Num as a float64.
func (r *Row) Float(slot int) float64 { return math.Float64frombits(r.Num[slot]) }

// Bool returns slot i of Num as a bool.
func (r *Row) Bool(slot int) bool { return r.Num[slot] != 0 }

// SetInt stores v in slot i of Num.
func (r *Row) SetInt(slot int, v int64) { r.Num[slot] = uint64(v) }

// SetFloat stores v in slot i of Num.
func (r *Row) SetFloat(slot int, v float64) { r.Num[slot] = math.Float64bits(v) }

// SetBool stores v in slot i of Num.
func (r *Row) SetBool(slot int, v bool) { r.Num[slot] = b2u(v) }

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Field is a named, typed slot of a Row.
type Field struct {
	Name string
	Type Type
	Slot int // index into Row.Num, or into Row.Str for TypeString
}

// Schema is the ordered list of fields of the records at one point of a
// pipeline. The order is the order of fields in JSON output. A Schema is
// immutable once built and safe for concurrent use.
type Schema struct {
	Fields []Field
}

// FieldSpec is a field as declared in a spec (a file source's `fields`).
type FieldSpec struct {
	Name string
	Type Type
}

// NewSchema builds a schema with slots assigned in declaration order. It
// reports every problem at once (bad or duplicate names, bad types, too many
// fields of a kind).
func NewSchema(fields []FieldSpec) (*Schema, error) {
	s := &Schema{Fields: make([]Field, 0, len(fields))}
	var errs []error
	var nNum, nStr int
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if msg := checkFieldName(f.Name); msg != "" {
			errs = append(errs, fmt.Errorf("field %q: %s", f.Name, msg))
		}
		if seen[f.Name] {
			errs = append(errs, fmt.Errorf("field %q: declared twice", f.Name))
		}
		seen[f.Name] = true
		slot := 0
		switch {
		case f.Type == TypeString:
			slot = nStr
			nStr++
			if slot >= MaxStrFields {
				errs = append(errs, fmt.Errorf("field %q: %s", f.Name, tooManyMsg(f.Type)))
			}
		case f.Type.isNum():
			slot = nNum
			nNum++
			if slot >= MaxNumFields {
				errs = append(errs, fmt.Errorf("field %q: %s", f.Name, tooManyMsg(f.Type)))
			}
		default:
			errs = append(errs, fmt.Errorf("field %q: invalid type %v", f.Name, f.Type))
		}
		s.Fields = append(s.Fields, Field{Name: f.Name, Type: f.Type, Slot: slot})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, errors.Join(errs...))
	}
	return s, nil
}

func tooManyMsg(t Type) string {
	if t == TypeString {
		return fmt.Sprintf("too many string fields (a record holds at most %d)", MaxStrFields)
	}
	return fmt.Sprintf("too many int, float and bool fields (a record holds at most %d)", MaxNumFields)
}

// exprKeywords are words expr-lang reserves; a field with such a name could
// never be referenced in an expression.
var exprKeywords = map[string]bool{
	"true": true, "false": true, "nil": true, "and": true, "or": true, "not": true,
	"in": true, "matches": true, "contains": true, "startsWith": true, "endsWith": true,
	"let": true, "if": true, "else": true,
}

// checkFieldName returns "" if name is a valid field name, else why not.
// Field names are expression identifiers: [A-Za-z_][A-Za-z0-9_]*, at most
// MaxFieldNameLen bytes, and not an expr keyword.
func checkFieldName(name string) string {
	if name == "" {
		return "empty field name"
	}
	if len(name) > MaxFieldNameLen {
		return fmt.Sprintf("field name longer than %d bytes", MaxFieldNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return fmt.Sprintf("invalid field name %q: want a letter or _ followed by letters, digits or _", name)
	}
	if exprKeywords[name] {
		return fmt.Sprintf("invalid field name %q: it is an expression keyword", name)
	}
	return ""
}

var sequenceSchema = &Schema{Fields: []Field{
	{Name: "key", Type: TypeInt, Slot: 0},
	{Name: "seq", Type: TypeInt, Slot: 1},
}}

// nexmarkFields is the schema of the nexmark source: "kind" ("person",
// "auction" or "bid"), then Beam's field names of the three kinds in the
// order of connectors/nexmark's AppendJSON, each once (id, dateTime and
// extra are shared by kinds).
var nexmarkFields = []FieldSpec{
	{"kind", TypeString},
	{"id", TypeInt}, // person, auction
	{"name", TypeString},
	{"emailAddress", TypeString},
	{"creditCard", TypeString},
	{"city", TypeString},
	{"state", TypeString},
	{"dateTime", TypeInt}, // every kind
	{"extra", TypeString}, // every kind
	{"itemName", TypeString},
	{"description", TypeString},
	{"initialBid", TypeInt},
	{"reserve", TypeInt},
	{"expires", TypeInt},
	{"seller", TypeInt},
	{"category", TypeInt},
	{"auction", TypeInt},
	{"bidder", TypeInt},
	{"price", TypeInt},
	{"channel", TypeString},
	{"url", TypeString},
}

var nexmarkSchema = func() *Schema {
	s, err := NewSchema(nexmarkFields)
	if err != nil {
		panic(fmt.Sprintf("job: the nexmark schema is invalid: %v", err))
	}
	return s
}()

// NexmarkSchema is the schema of the nexmark source: the union of the
// fields of the three kinds of events, with "kind" first. A record has the
// fields of its own kind; the others are zero (0 and ""), since a Row has
// no nulls: tell kinds apart by kind, not by a field being empty. Times
// (dateTime, expires) are ms since the epoch. The returned schema is
// shared; do not modify it.
func NexmarkSchema() *Schema { return nexmarkSchema }

// SequenceSchema is the schema of the sequence source: {key int, seq int}.
// The returned schema is shared; do not modify it.
func SequenceSchema() *Schema { return sequenceSchema }

// Lookup finds a field by name.
func (s *Schema) Lookup(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// String describes the schema as "{key int, seq int}".
func (s *Schema) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range s.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Name)
		b.WriteByte(' ')
		b.WriteString(f.Type.String())
	}
	b.WriteByte('}')
	return b.String()
}

// mustBeValid panics unless every field has a valid type, a unique name and
// its own slot within the limits. Compile checks every schema it builds
// (cheap, once per job): a violation is a bug in slot assignment.
func (s *Schema) mustBeValid() {
	var num, str uint32
	for i, f := range s.Fields {
		for _, g := range s.Fields[:i] {
			if g.Name == f.Name {
				panic(fmt.Sprintf("job: schema %s: field %q twice", s.layout(), f.Name))
			}
		}
		mask, limit := &num, MaxNumFields
		if f.Type == TypeString {
			mask, limit = &str, MaxStrFields
		} else if !f.Type.isNum() {
			panic(fmt.Sprintf("job: schema %s: field %q has invalid type", s.layout(), f.Name))
		}
		if f.Slot < 0 || f.Slot >= limit || *mask&(1<<f.Slot) != 0 {
			panic(fmt.Sprintf("job: schema %s: field %q has a bad or shared slot", s.layout(), f.Name))
		}
		*mask |= 1 << f.Slot
	}
}

// layout describes slots as "{key int@n0, seq int@n1, name string@s0}" for
// tests and debugging.
func (s *Schema) layout() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range s.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		kind := 'n'
		if f.Type == TypeString {
			kind = 's'
		}
		fmt.Fprintf(&b, "%s %s@%c%d", f.Name, f.Type, kind, f.Slot)
	}
	b.WriteByte('}')
	return b.String()
}

// AppendKey appends the key bytes of field f of r, the bytes key_by hashes
// and keyed state is stored under: an int as 8 bytes big-endian (two's
// complement), a float as the 8 big-endian bytes of its IEEE-754 bits (so
// 0.0 and -0.0, and NaNs with different payloads, are different keys), a
// string as its bytes, a bool as one byte 0 or 1. It does not allocate when
// dst has room.
func (s *Schema) AppendKey(dst []byte, r *Row, f Field) []byte {
	switch f.Type {
	case TypeString:
		return append(dst, r.Str[f.Slot]...)
	case TypeBool:
		return append(dst, byte(r.Num[f.Slot]&1))
	case TypeInt, TypeFloat:
		return binary.BigEndian.AppendUint64(dst, r.Num[f.Slot])
	}
	panic(fmt.Sprintf("job: AppendKey: field %q has invalid type %v", f.Name, f.Type))
}
