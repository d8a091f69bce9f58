package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/streamd/streamd/engine"
)

// Mode says how the sink writes rows.
type Mode int

const (
	// Append inserts every record as a new row (COPY).
	Append Mode = iota
	// Upsert inserts a row or updates the row with the same key
	// (INSERT … ON CONFLICT (key) DO UPDATE).
	Upsert
)

func (m Mode) String() string {
	switch m {
	case Append:
		return "append"
	case Upsert:
		return "upsert"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

const (
	// DefaultProgressTable is the table of committed transactions.
	DefaultProgressTable = "streamd_sink_progress"
	// DefaultBatchRows is the rows sent to the server at a time.
	DefaultBatchRows = 2048
	// DefaultMaxBufferedRows bounds the rows an upsert writer holds while
	// its previous transaction awaits its commit.
	DefaultMaxBufferedRows = 1 << 20
	// DefaultTimeout bounds every round trip to the server.
	DefaultTimeout = 60 * time.Second
	// maxParams is PostgreSQL's limit of parameters per statement.
	maxParams = 65535
)

// SinkOptions configures a PostgreSQL sink.
type SinkOptions[T any] struct {
	// URL is the connection string (postgres://user@host:port/db?… or
	// key=value pairs), without a password. Required.
	URL string
	// PasswordEnv names the environment variable that holds the password,
	// if any. It is read when the sink connects.
	PasswordEnv string
	// Table is the target table, optionally schema-qualified
	// ("schema.table"). Required; it must exist.
	Table string
	// Columns are the target columns, in the order Encode appends
	// their values. Required.
	Columns []string
	// Key are the columns of the upsert key (a unique index must cover
	// exactly them). Required in Upsert mode, ignored in Append mode.
	Key []string
	// Mode is Append (default) or Upsert.
	Mode Mode
	// Encode appends one value per column of v to dst, in Columns' order,
	// as pgx encodes them (int64, string, float64, bool, time.Time, []byte,
	// nil for NULL, …).
	Encode func(dst []any, v *T) []any
	// Name names the sink in gids and progress rows, with the job's name.
	// Default: Table. Two sinks of one job into one table need two names.
	Name string
	// ProgressTable is the table of committed transactions, created if
	// missing. Default DefaultProgressTable.
	ProgressTable string
	// BatchRows is the rows sent at a time. Default DefaultBatchRows.
	BatchRows int
	// MaxBufferedRows bounds the rows an upsert writer buffers while its
	// previous transaction awaits its commit (one row per key). Default
	// DefaultMaxBufferedRows.
	MaxBufferedRows int
	// Timeout bounds every round trip. Default DefaultTimeout.
	Timeout time.Duration
}

// Validate reports every problem of opts at once.
func (o *SinkOptions[T]) Validate() error {
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
	if len(o.Columns) == 0 {
		errs = append(errs, errors.New("Columns is empty"))
	}
	cols := make(map[string]bool)
	for _, c := range o.Columns {
		if c == "" || cols[c] {
			errs = append(errs, fmt.Errorf("column %q is empty or repeated", c))
		}
		cols[c] = true
	}
	switch o.Mode {
	case Append:
	case Upsert:
		if len(o.Key) == 0 {
			errs = append(errs, errors.New("Upsert mode needs Key columns"))
		}
		for _, k := range o.Key {
			if !cols[k] {
				errs = append(errs, fmt.Errorf("key column %q is not among Columns", k))
			}
		}
		if len(o.Columns) > maxParams {
			errs = append(errs, fmt.Errorf("%d columns: at most %d", len(o.Columns), maxParams))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown mode %d", o.Mode))
	}
	if o.Encode == nil {
		errs = append(errs, errors.New("Encode is nil"))
	}
	if o.BatchRows < 0 || o.MaxBufferedRows < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("BatchRows, MaxBufferedRows and Timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("postgres: bad sink options: %w", err)
	}
	return nil
}

// EnsureDefaults fills the defaults.
func (o *SinkOptions[T]) EnsureDefaults() {
	if o.Name == "" {
		o.Name = o.Table
	}
	if o.ProgressTable == "" {
		o.ProgressTable = DefaultProgressTable
	}
	if o.BatchRows == 0 {
		o.BatchRows = DefaultBatchRows
	}
	if o.MaxBufferedRows == 0 {
		o.MaxBufferedRows = DefaultMaxBufferedRows
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
}

// Sink is the PostgreSQL two-phase-commit sink. It implements engine.Sink,
// engine.CommitReporter and io.Closer.
type Sink[T any] struct {
	opts   SinkOptions[T]
	job    string
	prefix string
	// table and progress are the quoted identifiers.
	table, progress string
	// upsertPrefix is "INSERT INTO t (cols) VALUES "; upsertSuffix the ON
	// CONFLICT clause.
	upsertPrefix, upsertSuffix string

	// ctl is the sink's own connection, which holds the advisory lock of
	// the job and sink from the first call until Close.
	ctl struct {
		sync.Mutex
		conn *pgx.Conn // guarded; nil until connected
	}
}

// NewSink returns a PostgreSQL sink for job. It does not connect: the first
// LastCommitted, Recover or NewWriter does, and reports a wrong address,
// credentials or table.
func NewSink[T any](job string, opts SinkOptions[T]) (*Sink[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.EnsureDefaults()
	s := &Sink[T]{opts: opts, job: job, prefix: gidPrefix(job, opts.Name)}
	s.table = quoteQualified(opts.Table)
	s.progress = quoteQualified(opts.ProgressTable)
	cols := make([]string, len(opts.Columns))
	for i, c := range opts.Columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	s.upsertPrefix = "INSERT INTO " + s.table + " (" + strings.Join(cols, ", ") + ") VALUES "
	if opts.Mode == Upsert {
		keys := make([]string, len(opts.Key))
		isKey := make(map[string]bool)
		for i, k := range opts.Key {
			keys[i] = pgx.Identifier{k}.Sanitize()
			isKey[k] = true
		}
		var set []string
		for _, c := range opts.Columns {
			if !isKey[c] {
				q := pgx.Identifier{c}.Sanitize()
				set = append(set, q+" = EXCLUDED."+q)
			}
		}
		s.upsertSuffix = " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO NOTHING"
		if len(set) > 0 {
			s.upsertSuffix = " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
		}
	}
	return s, nil
}

func quoteQualified(name string) string {
	return pgx.Identifier(splitName(name)).Sanitize()
}

// ctx returns a context bounded by the sink's timeout.
func (s *Sink[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.Timeout)
}

// scrub removes the password from an error's text: the message of a driver
// error may quote what it was given.
func (s *Sink[T]) scrub(err error) error { return s.conn().scrub(err) }

func (s *Sink[T]) conn() connSettings {
	return connSettings{url: s.opts.URL, passwordEnv: s.opts.PasswordEnv, timeout: s.opts.Timeout}
}

// scrubbedError keeps the chain (errors.Is) but not the original text.
type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

// errf formats an operating error of the sink, scrubbed of the password.
func (s *Sink[T]) errf(format string, args ...any) error {
	return s.scrub(fmt.Errorf("postgres: sink %q of job %q: "+format, append([]any{s.opts.Name, s.job}, args...)...))
}

// connect opens a connection named after the job (application_name), so an
// operator can find the sink's backends in pg_stat_activity.
func (s *Sink[T]) connect(role string) (*pgx.Conn, error) {
	return s.conn().connect(map[string]string{"application_name": appName(s.job, role)}, s.errf)
}

// appName is the application_name of the sink's connections: "streamd " and
// the job, then the role (sink, or w/c and the task index).
func appName(job, role string) string {
	n := "streamd " + job + " " + role
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// open connects the sink's own connection once, takes the advisory lock,
// creates the progress table if missing, and checks the target table, its
// columns and (upsert) its unique index.
func (s *Sink[T]) open() (*pgx.Conn, error) {
	if s.ctl.conn != nil {
		return s.ctl.conn, nil
	}
	conn, err := s.connect("sink")
	if err != nil {
		return nil, err
	}
	if err := s.check(conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	s.ctl.conn = conn
	return conn, nil
}

func (s *Sink[T]) check(conn *pgx.Conn) error {
	ctx, cancel := s.ctx()
	defer cancel()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(s.prefix)).Scan(&locked); err != nil {
		return s.errf("cannot take the advisory lock: %w", err)
	}
	if !locked {
		return s.errf("another run of the job writes through this sink (its advisory lock is held): one run at a time")
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.progress+
		" (job text NOT NULL, sink text NOT NULL, task integer NOT NULL, checkpoint bigint NOT NULL,"+
		" committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, sink, task, checkpoint))"); err != nil {
		var pe *pgconn.PgError
		// Two sinks creating the table at once: the loser sees a
		// unique violation on the catalog, and the table exists.
		if !errors.As(err, &pe) || pe.Code != "23505" {
			return s.errf("cannot create the progress table %s: %w", s.opts.ProgressTable, err)
		}
	}
	cols := make([]string, len(s.opts.Columns))
	for i, c := range s.opts.Columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	if _, err := conn.Exec(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+s.table+" LIMIT 0"); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch pe.Code {
			case "42P01":
				return s.errf("table %s does not exist", s.opts.Table)
			case "42703":
				return s.errf("table %s lacks a column: %s", s.opts.Table, pe.Message)
			}
		}
		return s.errf("cannot read table %s: %w", s.opts.Table, err)
	}
	if s.opts.Mode == Upsert {
		// ON CONFLICT finds its unique index when the statement is
		// planned, not parsed: EXPLAIN plans it without running it.
		nulls := strings.TrimSuffix(strings.Repeat("NULL, ", len(s.opts.Columns)), ", ")
		if _, err := conn.Exec(ctx, "EXPLAIN "+s.upsertPrefix+"("+nulls+")"+s.upsertSuffix); err != nil {
			return s.errf("cannot upsert into table %s (is there a unique index on exactly the key columns %v?): %w", s.opts.Table, s.opts.Key, err)
		}
	}
	return nil
}

// upsertSQL returns the upsert of n rows.
func (s *Sink[T]) upsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(s.upsertPrefix)
	p := 1
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range s.opts.Columns {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
	}
	b.WriteString(s.upsertSuffix)
	return b.String()
}

// LastCommitted returns the highest checkpoint whose transaction this job's
// sink committed, from the progress table (engine.CommitReporter).
func (s *Sink[T]) LastCommitted() (uint64, error) {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	conn, err := s.open()
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var id int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(checkpoint), 0) FROM "+s.progress+" WHERE job = $1 AND sink = $2",
		s.job, s.opts.Name).Scan(&id); err != nil {
		return 0, s.errf("cannot read the progress table: %w", err)
	}
	return uint64(id), nil
}

// Recover commits the prepared transactions the restored checkpoint lists
// and rolls back every other prepared transaction of this job's sink
// (planRecovery).
func (s *Sink[T]) Recover(states [][]byte) error {
	var pending []txnRef
	for _, b := range states {
		if len(b) == 0 {
			continue
		}
		st, err := decodeState(b)
		if err != nil {
			return err
		}
		pending = append(pending, st.Pending...)
	}
	s.ctl.Lock()
	defer s.ctl.Unlock()
	conn, err := s.open()
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1)", s.prefix)
	if err != nil {
		return s.errf("cannot list prepared transactions: %w", err)
	}
	prepared, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return s.errf("cannot list prepared transactions: %w", err)
	}
	rows, err = conn.Query(ctx, "SELECT task, max(checkpoint) FROM "+s.progress+" WHERE job = $1 AND sink = $2 GROUP BY task", s.job, s.opts.Name)
	if err != nil {
		return s.errf("cannot read the progress table: %w", err)
	}
	through := make(map[int]uint64)
	var task int32
	var cp int64
	if _, err := pgx.ForEachRow(rows, []any{&task, &cp}, func() error {
		through[int(task)] = uint64(cp)
		return nil
	}); err != nil {
		return s.errf("cannot read the progress table: %w", err)
	}
	plan, err := planRecovery(s.prefix, prepared, pending, through)
	if err != nil {
		return s.errf("cannot recover: %w", err)
	}
	for _, g := range plan.Commit {
		if _, err := conn.Exec(ctx, "COMMIT PREPARED '"+g+"'"); err != nil {
			return s.errf("cannot commit prepared transaction %s: %w", g, err)
		}
	}
	for _, g := range plan.Rollback {
		if _, err := conn.Exec(ctx, "ROLLBACK PREPARED '"+g+"'"); err != nil {
			return s.errf("cannot roll back prepared transaction %s: %w", g, err)
		}
	}
	// Only the newest progress row answers LastCommitted; the older ones
	// (also of tasks of an earlier parallelism) are no longer needed.
	if _, err := conn.Exec(ctx, "DELETE FROM "+s.progress+" WHERE job = $1 AND sink = $2 AND checkpoint < (SELECT max(checkpoint) FROM "+
		s.progress+" WHERE job = $1 AND sink = $2)", s.job, s.opts.Name); err != nil {
		return s.errf("cannot prune the progress table: %w", err)
	}
	return nil
}

// Close releases the sink's advisory lock and closes its own connection.
// The lock is released explicitly first: closing the connection alone
// releases it only when the server has processed the disconnection, after
// Close returns, so that a run started right after this one (a restart)
// could find it still held. The sink can be used again: the next call
// connects again.
func (s *Sink[T]) Close() error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if s.ctl.conn == nil {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// An error leaves the release to the disconnection.
	_, _ = s.ctl.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey(s.prefix))
	err := s.ctl.conn.Close(ctx)
	s.ctl.conn = nil
	return err
}

// NewWriter connects one task's two connections: one for its transactions,
// one for COMMIT PREPARED.
func (s *Sink[T]) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[T], error) {
	s.ctl.Lock()
	_, err := s.open()
	s.ctl.Unlock()
	if err != nil {
		return nil, err
	}
	w := &writer[T]{s: s, ctx: ctx, ncols: len(s.opts.Columns)}
	role := "t" + strconv.Itoa(ctx.Index)
	if w.data, err = s.connect(role); err != nil {
		return nil, err
	}
	if w.commit, err = s.connect(role + "c"); err != nil {
		w.data.Close(context.Background())
		return nil, err
	}
	if s.opts.Mode == Upsert {
		w.keyIdx = make([]int, len(s.opts.Key))
		for i, k := range s.opts.Key {
			for j, c := range s.opts.Columns {
				if c == k {
					w.keyIdx[i] = j
				}
			}
		}
		w.byKey = make(map[string]int)
	}
	return w, nil
}

func splitName(name string) []string { return strings.Split(name, ".") }
