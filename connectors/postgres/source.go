package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/streamd/streamd/engine"
)

// Source defaults and limits.
const (
	// DefaultSourceBatchRows is the rows one query of a source reads.
	DefaultSourceBatchRows = 4096
	// MaxSourceBatchRows bounds SourceOptions.BatchRows: a batch is
	// decoded and held in memory.
	MaxSourceBatchRows = 1 << 20
	// DefaultPollInterval is how often an unbounded source that has read
	// everything it may looks for new rows.
	DefaultPollInterval = time.Second
	// maxPendingFences bounds the fences a reader keeps while it waits for
	// transactions to end (reader.go).
	maxPendingFences = 16
)

// stallWarning is how long a reader waits for a fence before it logs the
// transactions it waits for (a variable for the tests).
var stallWarning = time.Minute

// SourceOptions configures a PostgreSQL source: a table read in the order
// of a monotonically increasing integer column (doc.go, "Source").
type SourceOptions[T any] struct {
	// URL is the connection string (postgres://user@host:port/db?… or
	// key=value pairs), without a password. Required. It must name the
	// primary, not a standby.
	URL string
	// PasswordEnv names the environment variable that holds the password,
	// if any. It is read when the source connects; an unset variable is
	// an error.
	PasswordEnv string
	// Table is the table (or view), optionally schema-qualified
	// ("schema.table"). Required.
	Table string
	// Column is the increasing column: smallint, integer or bigint,
	// filled from a sequence (bigserial, identity) in the transaction
	// that inserts the row. Required.
	Column string
	// Columns are the columns read, in the order Decode sees them.
	// Default: every column of the table, in its order.
	Columns []string
	// Kinds, if set, says how Decode reads each column of Columns (one
	// entry per column); the source checks at start that every column
	// can be read so, and reads it in the matching wire format. Requires
	// Columns.
	Kinds []Kind
	// Decode fills v from one row. Required (DecodeRecord decodes every
	// column into a Record). An error fails the job.
	Decode func(r *Row, v *T) error
	// Bounded makes the source end: its first start fixes the end at the
	// column's largest value then, stored in the split, and the source
	// ends when it has read every row up to it (also those committed
	// later by transactions in flight at the start). A rerun from a
	// checkpoint reads exactly the same rows. Default false: the source
	// polls for new rows until the job stops.
	Bounded bool
	// BatchRows is the rows one query reads. Default
	// DefaultSourceBatchRows, at most MaxSourceBatchRows.
	BatchRows int
	// PollInterval is how often an unbounded source that has read all it
	// may looks for new rows (and checks whether the transactions it
	// waits for have ended). Default DefaultPollInterval.
	PollInterval time.Duration
	// Timeout bounds every round trip to the server. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Logger receives the source's warnings (a missing index, a reader
	// waiting long for transactions to end). Default slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem of opts at once.
func (o *SourceOptions[T]) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("URL is empty"))
	} else if cfg, err := pgconn.ParseConfig(o.URL); err != nil {
		errs = append(errs, errors.New("URL does not parse as a PostgreSQL connection string"))
	} else if cfg.Password != "" && (o.PasswordEnv == "" || cfg.Password != os.Getenv(o.PasswordEnv)) {
		errs = append(errs, errors.New("URL holds a password: name an environment variable in PasswordEnv instead"))
	}
	if o.Table == "" {
		errs = append(errs, errors.New("Table is empty"))
	}
	if o.Column == "" {
		errs = append(errs, errors.New("Column is empty"))
	}
	seen := make(map[string]bool, len(o.Columns))
	for _, c := range o.Columns {
		if c == "" || seen[c] {
			errs = append(errs, fmt.Errorf("column %q is empty or repeated", c))
		}
		seen[c] = true
	}
	if o.Columns != nil && len(o.Columns) == 0 {
		errs = append(errs, errors.New("Columns is empty: leave it nil to read every column"))
	}
	if o.Kinds != nil && len(o.Kinds) != len(o.Columns) {
		errs = append(errs, fmt.Errorf("%d Kinds for %d Columns: one per column", len(o.Kinds), len(o.Columns)))
	}
	for i, k := range o.Kinds {
		if k < KindAny || k > KindText {
			errs = append(errs, fmt.Errorf("Kinds[%d] is %d, not a Kind", i, k))
		}
	}
	if o.Decode == nil {
		errs = append(errs, errors.New("Decode is nil"))
	}
	if o.BatchRows < 0 || o.BatchRows > MaxSourceBatchRows {
		errs = append(errs, fmt.Errorf("BatchRows %d: want 0 (default) to %d", o.BatchRows, MaxSourceBatchRows))
	}
	if o.PollInterval < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("PollInterval and Timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("postgres: bad source options: %w", err)
	}
	return nil
}

// EnsureDefaults fills the defaults.
func (o *SourceOptions[T]) EnsureDefaults() {
	if o.BatchRows == 0 {
		o.BatchRows = DefaultSourceBatchRows
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Source is a PostgreSQL table read by an increasing column, as a
// splittable source: its SplitEnumerator, and NewReader for
// engine.FromSplitSource.
//
//	src, err := postgres.NewSource(opts)
//	s := engine.FromSplitSource(j, "orders", src, src.NewReader)
type Source[T any] struct {
	opts SourceOptions[T]
	// table and column are the quoted identifiers.
	table, column string
	// id is the ID of the source's one split: the table and column.
	id string
}

// NewSource returns the source of opts. It does not connect: Initial and
// NewReader do, and report a wrong address, credentials, table or column.
func NewSource[T any](opts SourceOptions[T]) (*Source[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.EnsureDefaults()
	src := &Source[T]{opts: opts, table: quoteQualified(opts.Table), column: pgx.Identifier{opts.Column}.Sanitize()}
	src.id = src.table + " by " + src.column
	return src, nil
}

// errf formats an operating error of the source, scrubbed of the password.
// Its text never matches io.EOF (only io.EOF itself ends a source, and a
// driver error on a closed connection may wrap it).
func (src *Source[T]) errf(format string, args ...any) error {
	err := src.conn().scrub(fmt.Errorf("postgres: source of table %s (column %s): "+format, append([]any{src.opts.Table, src.opts.Column}, args...)...))
	if errors.Is(err, io.EOF) {
		err = errors.New(err.Error())
	}
	return err
}

func (src *Source[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), src.opts.Timeout)
}

// connect opens a connection named name (application_name, so that an
// operator finds it in pg_stat_activity), in UTC with ISO dates, so that values read as text
// do not depend on the server's settings.
func (src *Source[T]) connect(name string) (*pgx.Conn, error) {
	return src.conn().connect(map[string]string{"application_name": name, "TimeZone": "UTC", "DateStyle": "ISO, MDY",
		"IntervalStyle": "iso_8601", "extra_float_digits": "3"}, src.errf)
}

func (src *Source[T]) conn() connSettings {
	return connSettings{url: src.opts.URL, passwordEnv: src.opts.PasswordEnv, timeout: src.opts.Timeout}
}

// column is a column the source reads, as the catalog describes it.
type column struct {
	name string
	// oid is the column's type, or the base type of its domain.
	oid uint32
	// typ is the type as SQL writes it (format_type), for messages.
	typ string
	// format is the wire format the source asks for: binary for the
	// types Row decodes itself, text for the rest.
	format int16
	kind   Kind
}

// tableInfo is what the start checks found.
type tableInfo struct {
	cols []column // the columns read, in Columns' order
	// pos is the increasing column.
	pos column
}

// check checks the table on conn: the server is a primary, the table and
// the columns exist, the increasing column is an integer filled by a
// sequence without a cache, and the columns can be read as Kinds says. It
// logs what makes reading slow (no index led by the column).
func (src *Source[T]) check(conn *pgx.Conn) (*tableInfo, error) {
	ctx, cancel := src.ctx()
	defer cancel()
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return nil, src.errf("cannot ask the server whether it is a standby: %w", err)
	}
	if standby {
		return nil, src.errf("the server is a standby (in recovery): read from the primary, whose running transactions the source must see to never skip a row")
	}
	var rel *uint32
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::oid", src.table).Scan(&rel); err != nil {
		return nil, src.errf("cannot look up table %s: %w", src.opts.Table, err)
	}
	if rel == nil {
		return nil, src.errf("table %s does not exist", src.opts.Table)
	}
	rows, err := conn.Query(ctx, `SELECT a.attname, coalesce(nullif(t.typbasetype, 0), a.atttypid), format_type(a.atttypid, a.atttypmod), a.attnotnull
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, *rel)
	if err != nil {
		return nil, src.errf("cannot read the columns of table %s: %w", src.opts.Table, err)
	}
	all := make(map[string]column)
	notNull := make(map[string]bool)
	var names []string
	var c column
	var nn bool
	if _, err := pgx.ForEachRow(rows, []any{&c.name, &c.oid, &c.typ, &nn}, func() error {
		all[c.name] = c
		notNull[c.name] = nn
		names = append(names, c.name)
		return nil
	}); err != nil {
		return nil, src.errf("cannot read the columns of table %s: %w", src.opts.Table, err)
	}
	info := &tableInfo{}
	pos, ok := all[src.opts.Column]
	if !ok {
		return nil, src.errf("table %s has no column %q (its columns: %s)", src.opts.Table, src.opts.Column, strings.Join(names, ", "))
	}
	switch pos.oid {
	case oidInt2, oidInt4, oidInt8:
	default:
		return nil, src.errf("column %q of table %s is of type %s: the increasing column must be an integer (smallint, integer or bigint)", src.opts.Column, src.opts.Table, pos.typ)
	}
	pos.format, pos.kind = binaryFormat, KindInt
	info.pos = pos
	want := src.opts.Columns
	if want == nil {
		want = names
	}
	var bad []string
	for i, name := range want {
		c, ok := all[name]
		if !ok {
			bad = append(bad, fmt.Sprintf("table %s has no column %q", src.opts.Table, name))
			continue
		}
		if src.opts.Kinds != nil {
			c.kind = src.opts.Kinds[i]
		}
		if c.format, ok = wireFormat(c.oid, c.kind); !ok {
			bad = append(bad, fmt.Sprintf("column %q of type %s cannot be read as %v", name, c.typ, c.kind))
			continue
		}
		info.cols = append(info.cols, c)
	}
	if len(bad) > 0 {
		return nil, src.errf("%s (its columns: %s)", strings.Join(bad, "; "), strings.Join(names, ", "))
	}
	// The privilege to read them (a column privilege would do).
	sel := make([]string, 0, len(info.cols)+1)
	for _, c := range info.cols {
		sel = append(sel, pgx.Identifier{c.name}.Sanitize())
	}
	sel = append(sel, src.column)
	if _, err := conn.Exec(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+src.table+" LIMIT 0"); err != nil {
		return nil, src.errf("cannot read table %s: %w", src.opts.Table, err)
	}
	// A sequence that caches values hands them out of order across
	// sessions: a row could commit with a value below one already read.
	var cache, increment int64
	var cycle bool
	err = conn.QueryRow(ctx, `SELECT s.seqcache, s.seqincrement, s.seqcycle FROM pg_sequence s
		WHERE s.seqrelid = pg_get_serial_sequence($1, $2)::regclass`, src.table, src.opts.Column).Scan(&cache, &increment, &cycle)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Not a serial or identity column: the application's values.
	case err != nil:
		return nil, src.errf("cannot read the sequence of column %q: %w", src.opts.Column, err)
	case cache > 1:
		return nil, src.errf("the sequence of column %q caches %d values per session: two sessions insert values out of order, "+
			"and a row could commit below one already read, never to be read; run ALTER SEQUENCE … CACHE 1 (the default)", src.opts.Column, cache)
	case increment < 0 || cycle:
		return nil, src.errf("the sequence of column %q decreases or cycles: the source needs increasing values", src.opts.Column)
	}
	var indexed bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = $1 AND a.attname = $2 AND i.indpred IS NULL)`, *rel, src.opts.Column).Scan(&indexed); err != nil {
		return nil, src.errf("cannot read the indexes of table %s: %w", src.opts.Table, err)
	}
	if !indexed {
		src.opts.Logger.Warn("postgres source: no index is led by the increasing column: every poll scans the whole table",
			"table", src.opts.Table, "column", src.opts.Column)
	}
	if !notNull[src.opts.Column] {
		src.opts.Logger.Warn("postgres source: the increasing column may be NULL: rows where it is are never read",
			"table", src.opts.Table, "column", src.opts.Column)
	}
	return info, nil
}

// maxValue returns the column's largest value now (none: no rows).
func (src *Source[T]) maxValue(conn *pgx.Conn) (opt, error) {
	ctx, cancel := src.ctx()
	defer cancel()
	var v *int64
	if err := conn.QueryRow(ctx, "SELECT max("+src.column+")::int8 FROM "+src.table).Scan(&v); err != nil {
		return opt{}, src.errf("cannot read the largest value of the column: %w", err)
	}
	if v == nil {
		return opt{}, nil
	}
	return opt{ok: true, v: *v}, nil
}

// Initial checks the table and makes the source's one split, given to
// task 0: a table is read in the order of one column, by one reader. A
// bounded source fixes its end here: the column's largest value now.
func (src *Source[T]) Initial(parallelism int) ([][]engine.Split, error) {
	conn, err := src.connect("streamd source")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := src.check(conn); err != nil {
		return nil, err
	}
	st := splitState{bounded: src.opts.Bounded}
	if src.opts.Bounded {
		if st.end, err = src.maxValue(conn); err != nil {
			return nil, err
		}
	}
	return deal([]engine.Split{{ID: src.id, State: st.append(nil)}}, parallelism), nil
}

// Reassign gives the split, with its position, to task 0 of the new
// parallelism.
func (src *Source[T]) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	for _, sp := range all {
		if _, err := src.parseSplit(sp); err != nil {
			return nil, err
		}
	}
	return deal(all, parallelism), nil
}

func deal(splits []engine.Split, parallelism int) [][]engine.Split {
	asg := make([][]engine.Split, parallelism)
	asg[0] = splits
	return asg
}

// parseSplit checks that sp is this source's split and decodes its
// position.
func (src *Source[T]) parseSplit(sp engine.Split) (splitState, error) {
	if sp.ID != src.id {
		return splitState{}, fmt.Errorf("postgres: the checkpoint holds the position of %s, but the source reads %s: "+
			"a job restores only onto the same table and column (start it without the checkpoint to read another)", sp.ID, src.id)
	}
	st, err := parseSplitState(sp.State)
	if err != nil {
		return splitState{}, fmt.Errorf("postgres: split %s: %w", sp.ID, err)
	}
	if st.bounded != src.opts.Bounded {
		return splitState{}, fmt.Errorf("postgres: split %s was bounded=%v, the source now is bounded=%v: "+
			"a restore keeps the end fixed at the first start (start without the checkpoint to change it)", sp.ID, st.bounded, src.opts.Bounded)
	}
	return st, nil
}

// opt is an optional column value.
type opt struct {
	ok bool
	v  int64
}

func (o opt) String() string {
	if !o.ok {
		return "none"
	}
	return strconv.FormatInt(o.v, 10)
}

// splitState is the split's position: every row whose column is at most
// after has been read (none: nothing yet); a bounded split ends at end
// (none: the table was empty at the first start).
type splitState struct {
	after   opt
	bounded bool
	end     opt
}

// finished reports whether a bounded split has read everything up to
// its end.
func (s splitState) finished() bool {
	return s.bounded && (!s.end.ok || s.after.ok && s.after.v >= s.end.v)
}

// append appends the state as text: "after=N|none", then " end=N|none"
// when bounded.
func (s splitState) append(dst []byte) []byte {
	dst = append(dst, "after="...)
	dst = append(dst, s.after.String()...)
	if s.bounded {
		dst = append(dst, " end="...)
		dst = append(dst, s.end.String()...)
	}
	return dst
}

// parseSplitState decodes what append wrote, strictly: a position in
// any other spelling is refused, so that every state has one encoding.
func parseSplitState(b []byte) (splitState, error) {
	fields := strings.Split(string(b), " ")
	bad := func() (splitState, error) {
		return splitState{}, fmt.Errorf("malformed position %q: want after=N|none, then end=N|none if bounded", b)
	}
	if len(fields) < 1 || len(fields) > 2 {
		return bad()
	}
	var s splitState
	var ok bool
	if s.after, ok = parseOpt(fields[0], "after="); !ok {
		return bad()
	}
	if len(fields) == 2 {
		s.bounded = true
		if s.end, ok = parseOpt(fields[1], "end="); !ok {
			return bad()
		}
	}
	return s, nil
}

func parseOpt(f, key string) (opt, bool) {
	v, ok := strings.CutPrefix(f, key)
	if !ok {
		return opt{}, false
	}
	if v == "none" {
		return opt{}, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != v {
		return opt{}, false
	}
	return opt{ok: true, v: n}, true
}
