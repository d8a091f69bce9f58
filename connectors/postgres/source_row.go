package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Kind is how Decode reads a column (SourceOptions.Kinds): the source
// checks at start that the column's type can be read so, and asks the
// server for the matching wire format.
type Kind int

const (
	// KindAny reads the column with any accessor that fits its type;
	// the types Row decodes itself come in binary, the rest as text.
	KindAny Kind = iota
	// KindInt: Row.Int. smallint, integer, bigint; timestamp,
	// timestamptz and date as ms since the epoch (UTC).
	KindInt
	// KindFloat: Row.Float. real, double precision, numeric, and the
	// integers.
	KindFloat
	// KindBool: Row.Bool. boolean.
	KindBool
	// KindText: Row.Text. Any type, as PostgreSQL writes it as text (in
	// UTC, ISO dates).
	KindText
)

func (k Kind) String() string {
	switch k {
	case KindAny:
		return "any"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindBool:
		return "bool"
	case KindText:
		return "text"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Type OIDs the source decodes itself.
const (
	oidBool        = 16
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
)

const (
	textFormat   int16 = 0
	binaryFormat int16 = 1
)

// wireFormat returns the format a column of type oid is read in for
// kind, and false when kind cannot read the type.
func wireFormat(oid uint32, kind Kind) (int16, bool) {
	switch kind {
	case KindAny:
		switch oid {
		case oidBool, oidInt2, oidInt4, oidInt8, oidFloat4, oidFloat8, oidDate, oidTimestamp, oidTimestamptz,
			oidText, oidVarchar, oidBPChar, oidName:
			return binaryFormat, true
		}
		return textFormat, true
	case KindInt:
		switch oid {
		case oidInt2, oidInt4, oidInt8, oidDate, oidTimestamp, oidTimestamptz:
			return binaryFormat, true
		}
	case KindFloat:
		switch oid {
		case oidFloat4, oidFloat8, oidInt2, oidInt4, oidInt8:
			return binaryFormat, true
		case oidNumeric:
			return textFormat, true
		}
	case KindBool:
		if oid == oidBool {
			return binaryFormat, true
		}
	case KindText:
		return textFormat, true
	}
	return 0, false
}

// Row is one row the source read, as Decode sees it: the values of
// SourceOptions.Columns, in their order, and the increasing column's
// value (Position). A Row and the bytes it returns are valid only during
// the Decode call.
//
// A NULL reads as the zero value of the accessor (0, false, ""); IsNull
// tells it from a zero. Accessors that cannot read a column's type return
// an error naming the column (SourceOptions.Kinds moves that check to
// the start).
type Row struct {
	cols []column
	vals [][]byte
	pos  int64
	tm   *pgtype.Map
}

// Position returns the value of the increasing column.
func (r *Row) Position() int64 { return r.pos }

// NumColumns returns the number of columns read.
func (r *Row) NumColumns() int { return len(r.cols) }

// ColumnName returns the name of column i.
func (r *Row) ColumnName(i int) string { return r.cols[i].name }

// IsNull reports whether column i is NULL.
func (r *Row) IsNull(i int) bool { return r.vals[i] == nil }

// Bytes returns column i as it came over the wire (the text form, or the
// binary form of the types the source decodes itself; nil for NULL).
func (r *Row) Bytes(i int) []byte { return r.vals[i] }

// errBadValue is wrapped by the errors of Row's accessors.
var errBadValue = errors.New("postgres: cannot read a column")

func (r *Row) bad(i int, as string) error {
	c := &r.cols[i]
	return fmt.Errorf("%w: column %q of type %s cannot be read as %s", errBadValue, c.name, c.typ, as)
}

func (r *Row) malformed(i int) error {
	c := &r.cols[i]
	return fmt.Errorf("%w: column %q of type %s: a malformed value of %d bytes", errBadValue, c.name, c.typ, len(r.vals[i]))
}

// pgEpochMs is 2000-01-01, PostgreSQL's epoch, in ms since 1970.
const pgEpochMs = 946684800000

// Int returns column i as an integer: an integer column's value, a
// timestamp's, timestamptz's or date's ms since the epoch (UTC).
func (r *Row) Int(i int) (int64, error) {
	b := r.vals[i]
	if b == nil {
		return 0, nil
	}
	c := &r.cols[i]
	if c.format == textFormat {
		switch c.oid {
		case oidInt2, oidInt4, oidInt8:
			v, err := strconv.ParseInt(string(b), 10, 64)
			if err != nil {
				return 0, r.malformed(i)
			}
			return v, nil
		}
		return 0, r.bad(i, "an integer")
	}
	switch c.oid {
	case oidInt2, oidInt4, oidInt8:
		v, ok := binInt(c.oid, b)
		if !ok {
			return 0, r.malformed(i)
		}
		return v, nil
	case oidDate:
		if len(b) != 4 {
			return 0, r.malformed(i)
		}
		d := int32(binary.BigEndian.Uint32(b))
		if d == math.MaxInt32 || d == math.MinInt32 {
			return 0, fmt.Errorf("%w: column %q is an infinite date", errBadValue, c.name)
		}
		return int64(d)*86_400_000 + pgEpochMs, nil
	case oidTimestamp, oidTimestamptz:
		if len(b) != 8 {
			return 0, r.malformed(i)
		}
		us := int64(binary.BigEndian.Uint64(b))
		if us == math.MaxInt64 || us == math.MinInt64 {
			return 0, fmt.Errorf("%w: column %q is an infinite timestamp", errBadValue, c.name)
		}
		ms := us / 1000
		if us%1000 < 0 {
			ms-- // floor: 1 µs before 2000 is in the ms before it
		}
		return ms + pgEpochMs, nil
	}
	return 0, r.bad(i, "an integer")
}

// binInt decodes a binary smallint, integer or bigint (oid).
func binInt(oid uint32, b []byte) (int64, bool) {
	switch {
	case oid == oidInt2 && len(b) == 2:
		return int64(int16(binary.BigEndian.Uint16(b))), true
	case oid == oidInt4 && len(b) == 4:
		return int64(int32(binary.BigEndian.Uint32(b))), true
	case oid == oidInt8 && len(b) == 8:
		return int64(binary.BigEndian.Uint64(b)), true
	}
	return 0, false
}

// Float returns column i as a float: real, double precision, numeric
// (NaN and ±Infinity included) or an integer.
func (r *Row) Float(i int) (float64, error) {
	b := r.vals[i]
	if b == nil {
		return 0, nil
	}
	c := &r.cols[i]
	if c.format == textFormat {
		switch c.oid {
		case oidNumeric, oidFloat4, oidFloat8, oidInt2, oidInt4, oidInt8:
			v, err := strconv.ParseFloat(string(b), 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return 0, r.malformed(i)
			}
			return v, nil
		}
		return 0, r.bad(i, "a float")
	}
	switch c.oid {
	case oidFloat4:
		if len(b) != 4 {
			return 0, r.malformed(i)
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case oidFloat8:
		if len(b) != 8 {
			return 0, r.malformed(i)
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case oidInt2, oidInt4, oidInt8:
		v, ok := binInt(c.oid, b)
		if !ok {
			return 0, r.malformed(i)
		}
		return float64(v), nil
	}
	return 0, r.bad(i, "a float")
}

// Bool returns column i as a bool.
func (r *Row) Bool(i int) (bool, error) {
	b := r.vals[i]
	if b == nil {
		return false, nil
	}
	c := &r.cols[i]
	if c.oid != oidBool {
		return false, r.bad(i, "a bool")
	}
	if c.format == textFormat {
		switch string(b) {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
		return false, r.malformed(i)
	}
	if len(b) != 1 || b[0] > 1 {
		return false, r.malformed(i)
	}
	return b[0] == 1, nil
}

// Text returns column i as text: what PostgreSQL writes for it (in UTC,
// ISO dates), for any type.
func (r *Row) Text(i int) (string, error) {
	if c := &r.cols[i]; c.format == textFormat || c.oid == oidText || c.oid == oidVarchar || c.oid == oidBPChar || c.oid == oidName {
		return string(r.vals[i]), nil // one allocation, not two
	}
	b, err := r.AppendText(nil, i)
	return string(b), err
}

// AppendText appends column i as text (Text) to dst.
func (r *Row) AppendText(dst []byte, i int) ([]byte, error) {
	b := r.vals[i]
	if b == nil {
		return dst, nil
	}
	c := &r.cols[i]
	if c.format == textFormat {
		return append(dst, b...), nil
	}
	switch c.oid {
	case oidText, oidVarchar, oidBPChar, oidName:
		return append(dst, b...), nil
	case oidInt2, oidInt4, oidInt8:
		v, ok := binInt(c.oid, b)
		if !ok {
			return dst, r.malformed(i)
		}
		return strconv.AppendInt(dst, v, 10), nil
	case oidFloat4, oidFloat8:
		v, err := r.Float(i)
		if err != nil {
			return dst, err
		}
		bits := 64
		if c.oid == oidFloat4 {
			bits = 32
		}
		switch {
		case math.IsInf(v, 1):
			return append(dst, "Infinity"...), nil
		case math.IsInf(v, -1):
			return append(dst, "-Infinity"...), nil
		case math.IsNaN(v):
			return append(dst, "NaN"...), nil
		}
		return strconv.AppendFloat(dst, v, 'g', -1, bits), nil
	case oidBool:
		v, err := r.Bool(i)
		if err != nil {
			return dst, err
		}
		if v {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case oidDate, oidTimestamp, oidTimestamptz:
		return r.appendTime(dst, i)
	}
	return dst, r.bad(i, "text")
}

// appendTime writes a binary date or timestamp as PostgreSQL's ISO text
// in UTC does.
func (r *Row) appendTime(dst []byte, i int) ([]byte, error) {
	c, b := &r.cols[i], r.vals[i]
	switch c.oid {
	case oidDate:
		if len(b) != 4 {
			return dst, r.malformed(i)
		}
		switch d := int32(binary.BigEndian.Uint32(b)); d {
		case math.MaxInt32:
			return append(dst, "infinity"...), nil
		case math.MinInt32:
			return append(dst, "-infinity"...), nil
		}
	default:
		if len(b) != 8 {
			return dst, r.malformed(i)
		}
		switch us := int64(binary.BigEndian.Uint64(b)); us {
		case math.MaxInt64:
			return append(dst, "infinity"...), nil
		case math.MinInt64:
			return append(dst, "-infinity"...), nil
		}
	}
	ms, err := r.Int(i)
	if err != nil {
		return dst, err
	}
	t := time.UnixMilli(ms).UTC()
	if c.oid != oidDate {
		us := int64(binary.BigEndian.Uint64(b)) % 1_000_000
		if us < 0 {
			us += 1_000_000
		}
		t = t.Truncate(time.Second).Add(time.Duration(us) * time.Microsecond)
	}
	if t.Year() < 1 || t.Year() > 9999 {
		return dst, fmt.Errorf("%w: column %q: a date outside years 1 to 9999", errBadValue, c.name)
	}
	switch c.oid {
	case oidDate:
		return t.AppendFormat(dst, "2006-01-02"), nil
	case oidTimestamp:
		return t.AppendFormat(dst, "2006-01-02 15:04:05.999999"), nil
	}
	return t.AppendFormat(dst, "2006-01-02 15:04:05.999999-07"), nil
}

// Value returns column i as pgx decodes it (int64, float64, string, bool,
// time.Time, pgtype.Numeric, a map for json, …; nil for NULL).
func (r *Row) Value(i int) (any, error) {
	b := r.vals[i]
	if b == nil {
		return nil, nil
	}
	c := &r.cols[i]
	if c.format == textFormat {
		if t, ok := r.tm.TypeForOID(c.oid); ok {
			if v, err := t.Codec.DecodeValue(r.tm, c.oid, textFormat, b); err == nil {
				return v, nil
			}
		}
		return string(b), nil
	}
	t, ok := r.tm.TypeForOID(c.oid)
	if !ok {
		return nil, r.bad(i, "a value")
	}
	v, err := t.Codec.DecodeValue(r.tm, c.oid, binaryFormat, b)
	if err != nil {
		return nil, r.malformed(i)
	}
	return v, nil
}

// Record is a row with every column as pgx decodes it (DecodeRecord).
type Record struct {
	// Position is the increasing column's value.
	Position int64
	// Values are the columns' values, in SourceOptions.Columns' order
	// (nil for NULL).
	Values []any
}

// DecodeRecord is a Decode function that decodes every column with
// Row.Value.
func DecodeRecord(r *Row, rec *Record) error {
	rec.Position = r.pos
	rec.Values = make([]any, len(r.cols))
	for i := range r.cols {
		v, err := r.Value(i)
		if err != nil {
			return err
		}
		rec.Values[i] = v
	}
	return nil
}

// RecordTime returns the timestamp function for event time from column i
// of a Record (engine.WatermarkStrategy.Timestamp): a timestamp,
// timestamptz or date as ms since the epoch, an integer as it is; 0 for
// NULL or another type.
func RecordTime(i int) func(r *Record) int64 {
	return func(r *Record) int64 {
		switch v := r.Values[i].(type) {
		case time.Time:
			return v.UnixMilli()
		case int64:
			return v
		case int32:
			return int64(v)
		case int16:
			return int64(v)
		}
		return 0
	}
}
