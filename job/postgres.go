package job

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// This file holds the postgres sink's and source's parts of the spec
// (connectors.go has the parts every connector shares): their options, the
// check that no password is written in a URL, the columns a sink writes,
// and the encoding of a row into the column values connectors/postgres
// sends.
//
// A postgres source (`source: {type: postgres, url, table, column,
// fields, …}`) reads a table in the order of an increasing integer column
// (connectors/postgres, "Source"). Its `fields:` are the columns it reads,
// each field from the column of its name, with the field's type: the
// schema has to be known without the server (`streamd validate`), so the
// spec declares it, as for a kafka or nats source, and the connector
// checks at start that each column can be read as its field's type: int
// from smallint, integer, bigint, and from timestamp, timestamptz or date
// as ms since the epoch (so that `event_time:` can name it); float from
// real, double precision, numeric or an integer; bool from boolean;
// string from any type, as PostgreSQL writes it. A NULL becomes the
// field's zero value (a Row has no nulls). There is no `columns:` option
// (the connector's Columns, default every column, is filled from the
// fields): the fields are the columns, and "every column" could not be
// typed without the server. A `columns:` key is an error that says so.
// The increasing column is read whether or not it is a field. `bounded:
// true` fixes the end at the first start; `poll_interval` is how often the
// source looks for new rows and for the end of the transactions it waits
// for; `batch_rows` the rows per query; `timeout` every round trip.
//
// A sink's columns are named after fields: a column list is a list of field names
// of the records that reach the sink, and the table must have columns of
// those names (PostgreSQL folds nothing: the names are quoted, so a field
// "userId" needs a column "userId"). Without `columns:` the sink writes
// every field, in the schema's order.
//
// An upsert sink needs checkpointing.max_concurrent: 1. A writer in upsert
// mode sends nothing while one of its transactions is prepared and not yet
// committed (the next upsert of a key would wait for the row lock that
// transaction holds), and a barrier that arrives while an earlier
// transaction is still pending is declined. With one checkpoint in flight
// the engine commits checkpoint n-1 before any barrier of n reaches the
// sink, so that never happens; with two it would decline checkpoints as a
// matter of course, and a job with tolerable_failures: 0 would fail. So
// the spec requires max_concurrent: 1 (as for the kafka sink) and leaves
// tolerable_failures alone: a decline there is a real failure.

// Postgres sink modes (`mode:`), postgres.Mode's values.
const (
	PostgresAppend = "append"
	PostgresUpsert = "upsert"
)

// Copies of the postgres connector's defaults and limits (jobrun asserts
// that they equal the connector's own).
const (
	// DefaultPostgresBatchRows is postgres.DefaultBatchRows.
	DefaultPostgresBatchRows = 2048
	// DefaultPostgresMaxBufferedRows is postgres.DefaultMaxBufferedRows.
	DefaultPostgresMaxBufferedRows = 1 << 20
	// DefaultPostgresTimeout is postgres.DefaultTimeout.
	DefaultPostgresTimeout = 60 * time.Second
	// DefaultPostgresSourceBatchRows is postgres.DefaultSourceBatchRows.
	DefaultPostgresSourceBatchRows = 4096
	// DefaultPostgresPollInterval is postgres.DefaultPollInterval.
	DefaultPostgresPollInterval = time.Second
	// MaxPostgresSourceBatchRows is postgres.MaxSourceBatchRows.
	MaxPostgresSourceBatchRows = 1 << 20
	// PostgresMaxColumns is the most columns a postgres sink writes: an
	// upsert statement binds one parameter per column of each row, and
	// PostgreSQL takes at most 65535.
	PostgresMaxColumns = 65535
)

// Limits of the postgres sink's options that the connector leaves open.
const (
	// MaxPostgresBatchRows bounds batch_rows: a batch is held in memory
	// and sent in one COPY or statement.
	MaxPostgresBatchRows = 1 << 20
	// MaxPostgresBufferedRows bounds max_buffered_rows (one row per key
	// buffered while an upsert transaction awaits its commit).
	MaxPostgresBufferedRows = 1 << 30
	// MaxPostgresIdentifierBytes is PostgreSQL's NAMEDATALEN-1: longer
	// table or schema names would be truncated by the server, so that
	// the sink and a user's psql would name different tables.
	MaxPostgresIdentifierBytes = 63
)

// PostgresSinkSpec is a postgres sink's options (connectors/postgres.SinkOptions).
type PostgresSinkSpec struct {
	URL         string // postgres://user@host:port/db?… or key=value pairs, without a password
	PasswordEnv string // the environment variable that holds the password, if any
	Table       string // "table" or "schema.table"; it must exist
	// Columns are the field names written, each into the column of the
	// same name; nil = every field of the sink's records (Plan.PostgresColumns).
	Columns         []string
	Key             []string      // upsert: the columns of the conflict key
	Mode            string        // PostgresAppend (default) or PostgresUpsert
	Name            string        // "" = the table (the connector's default)
	ProgressTable   string        // "" = the connector's default, streamd_sink_progress
	BatchRows       int           // default DefaultPostgresBatchRows
	MaxBufferedRows int           // default DefaultPostgresMaxBufferedRows
	Timeout         time.Duration // every round trip; default DefaultPostgresTimeout
}

// PostgresSourceSpec is a postgres source's options
// (connectors/postgres.SourceOptions). Its columns are its fields.
type PostgresSourceSpec struct {
	URL          string        // as a postgres sink's: without a password
	PasswordEnv  string        // the environment variable that holds the password, if any
	Table        string        // "table" or "schema.table"
	Column       string        // the increasing integer column
	Bounded      bool          // end at the column's largest value at the first start
	PollInterval time.Duration // default DefaultPostgresPollInterval
	BatchRows    int           // rows per query; default DefaultPostgresSourceBatchRows
	Timeout      time.Duration // every round trip; default DefaultPostgresTimeout
}

// postgresUser refuses the keys that would put a user or a password into a
// postgres sink's or source's spec other than through the URL and
// password_env; it reports true for such a key. Other connectors name
// their user with user_env, which postgres does not have: its user is
// part of the URL, like its host. (typ is a sink's or a source's type:
// both are "postgres".)
func (d *decoder) postgresUser(x entry, typ string) bool {
	if typ != SinkPostgres {
		return false
	}
	switch x.key {
	case "user", "username", "user_env":
		d.fail(x.kpos, x.path, "the user is part of the url (postgres://USER@host:5432/db); name the password's environment variable with password_env")
		return true
	case "credentials":
		d.fail(x.kpos, x.path, "credentials are never written in a spec: put the user in the url and the password in an environment variable named by password_env")
		return true
	}
	return false
}

// postgresSink decodes one option of a postgres sink.
func (d *decoder) postgresSink(x entry, p *PostgresSinkSpec) {
	switch x.key {
	case "url":
		p.URL, _ = d.str(x)
	case "password_env":
		p.PasswordEnv, _ = d.str(x)
	case "table":
		p.Table, _ = d.str(x)
	case "columns":
		p.Columns, _ = d.strs(x)
	case "key":
		p.Key, _ = d.strs(x)
	case "mode":
		if v, ok := d.str(x); ok {
			p.Mode = v
		}
	case "name":
		p.Name, _ = d.str(x)
	case "progress_table":
		p.ProgressTable, _ = d.str(x)
	case "batch_rows":
		if v, ok := d.int(x); ok {
			p.BatchRows = int(min(max(v, -1<<31), MaxPostgresBatchRows+1))
		}
	case "max_buffered_rows":
		if v, ok := d.int(x); ok {
			p.MaxBufferedRows = int(min(max(v, -1<<31), MaxPostgresBufferedRows+1))
		}
	case "timeout":
		if v, ok := d.duration(x); ok {
			p.Timeout = v
		}
	}
}

// postgresSink checks the options of a postgres sink that do not depend on
// the records' schema (postgresColumns checks those).
func (v *validator) postgresSink(sk *SinkSpec) {
	p := sk.Postgres
	if p == nil {
		return
	}
	at := func(field string, bad bool, format string, args ...any) {
		path := "sink." + field
		if bad && !v.skip(path) {
			v.errAt(path, sk.Line, sk.Column, format, args...)
		}
	}
	if msg := postgresURLProblem(p.URL); msg != "" {
		at("url", true, "%s", msg)
	}
	v.envName("sink.password_env", p.PasswordEnv, sk.Line, sk.Column)
	if msg := postgresTableProblem(p.Table); msg != "" {
		at("table", true, "%s", msg)
	}
	if msg := postgresTableProblem(p.ProgressTable); p.ProgressTable != "" && msg != "" {
		at("progress_table", true, "%s", msg)
	}
	_, hasColumns := v.s.pos["sink.columns"]
	if hasColumns && !v.skip("sink.columns") {
		if len(p.Columns) == 0 {
			at("columns", true, "want at least one field name (leave columns out to write every field)")
		}
		if len(p.Columns) > PostgresMaxColumns {
			at("columns", true, "%d columns: at most %d", len(p.Columns), PostgresMaxColumns)
		}
		v.uniqueNames("sink.columns", p.Columns, sk)
	}
	_, hasKey := v.s.pos["sink.key"]
	switch p.Mode {
	case PostgresAppend:
		at("key", hasKey, "only used with mode: upsert (append inserts every record as a new row)")
	case PostgresUpsert:
		if !v.skip("sink.key") {
			if len(p.Key) == 0 {
				v.errAt("sink.key", sk.Line, sk.Column, "mode: upsert needs key: the columns of a unique index of the table, such as [user]")
			}
			v.uniqueNames("sink.key", p.Key, sk)
		}
		if cp := v.s.Checkpointing; cp != nil && cp.MaxConcurrent > 1 && !v.skip("checkpointing") && !v.skip("checkpointing.max_concurrent") {
			v.errAt("checkpointing.max_concurrent", cp.Line, cp.Column, "a postgres sink in upsert mode needs max_concurrent: 1: "+
				"its writer sends nothing while a transaction of an earlier checkpoint awaits its commit (it holds the rows' locks), "+
				"so with a second checkpoint in flight it would decline checkpoints")
		}
	default:
		at("mode", true, "unknown mode %s: want append or upsert", quoteShort(p.Mode))
	}
	if msg := checkName(p.Name, "sink"); p.Name != "" && msg != "" {
		at("name", true, "%s", msg)
	}
	at("batch_rows", p.BatchRows < 1 || p.BatchRows > MaxPostgresBatchRows, "must be between 1 and %d, got %d", MaxPostgresBatchRows, p.BatchRows)
	at("max_buffered_rows", p.MaxBufferedRows < 1 || p.MaxBufferedRows > MaxPostgresBufferedRows,
		"must be between 1 and %d, got %d", MaxPostgresBufferedRows, p.MaxBufferedRows)
	at("timeout", p.Timeout <= 0, "must be > 0, got %v", p.Timeout)
}

// uniqueNames checks that a list of field names (sink.columns, sink.key)
// holds valid names, each once.
func (v *validator) uniqueNames(path string, names []string, sk *SinkSpec) {
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		if v.skip(p) {
			continue
		}
		if msg := checkFieldName(n); msg != "" {
			v.errAt(p, sk.Line, sk.Column, "%s", msg)
		} else if seen[n] {
			v.errAt(p, sk.Line, sk.Column, "%q is listed twice", n)
		}
		seen[n] = true
	}
}

// postgresURLProblem returns what is wrong with a postgres sink's URL, or
// "". A password in it is refused: it would be in the spec, in the job's
// listing and in every copy of the file. The check is for URLs
// (postgres:// or postgresql://) and key=value strings; the connector
// parses the URL itself and refuses a password it finds too.
func postgresURLProblem(s string) string {
	const pwd = "the URL holds a password: put it in an environment variable and name it with password_env"
	if strings.TrimSpace(s) == "" {
		return "must not be empty: want postgres://user@host:5432/dbname"
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			// url.Parse's error repeats the URL, which may hold a password.
			return "does not parse as a URL: want postgres://user@host:5432/dbname?option=value"
		}
		if _, ok := u.User.Password(); ok {
			return pwd
		}
		for k := range u.Query() {
			if strings.EqualFold(k, "password") {
				return pwd
			}
		}
		return ""
	}
	if !strings.Contains(s, "=") {
		return "want a URL (postgres://user@host:5432/dbname) or key=value pairs (host=… user=… dbname=…)"
	}
	// libpq allows spaces around '='. A "password=" inside a quoted value
	// is refused too: better a false alarm than a secret in a spec.
	if keywordPassword.MatchString(s) {
		return pwd
	}
	return ""
}

// keywordPassword finds a password key in a key=value connection string.
var keywordPassword = regexp.MustCompile(`(?i)(^|\s)password\s*=`)

// postgresTableProblem returns what is wrong with a table name ("table" or
// "schema.table"), or "".
func postgresTableProblem(name string) string {
	parts := strings.Split(name, ".")
	if name == "" || len(parts) > 2 {
		return fmt.Sprintf("invalid table name %s: want table or schema.table", quoteShort(name))
	}
	for _, p := range parts {
		if p == "" || len(p) > MaxPostgresIdentifierBytes || strings.ContainsAny(p, "\x00\"") {
			return fmt.Sprintf("invalid table name %s: each part non-empty, at most %d bytes, without '\"'", quoteShort(name), MaxPostgresIdentifierBytes)
		}
	}
	return ""
}

// postgresColumns checks a postgres sink's columns and key against the
// records that reach the sink: every column is a field of theirs, every
// key column one of the columns.
func (c *compiler) postgresColumns() {
	sk := &c.s.Sink
	if c.plan == nil || sk.Postgres == nil || c.broken["sink"] {
		return
	}
	p := sk.Postgres
	schema := c.plan.SinkSchema
	for i, col := range p.Columns {
		path := fmt.Sprintf("sink.columns[%d]", i)
		if _, ok := schema.Lookup(col); !ok {
			c.errAt(path, c.s.posOf(path, sk.Line, sk.Column), "unknown field %q; the records that reach the sink are %s", col, schema)
		}
	}
	for i, k := range p.Key {
		path := fmt.Sprintf("sink.key[%d]", i)
		switch {
		case p.Columns != nil && !slices.Contains(p.Columns, k):
			c.errAt(path, c.s.posOf(path, sk.Line, sk.Column), "%q is not among columns %v: a key column is one the sink writes", k, p.Columns)
		case p.Columns == nil:
			if _, ok := schema.Lookup(k); !ok {
				c.errAt(path, c.s.posOf(path, sk.Line, sk.Column), "unknown field %q; the records that reach the sink are %s", k, schema)
			}
		}
	}
	if p.Mode == PostgresUpsert && !c.sinkPartitionedBy(p.Key) {
		c.errAt("sink.key", c.s.posOf("sink.key", sk.Line, sk.Column), "an upsert sink with %d tasks needs its rows partitioned by the key: "+
			"end the pipeline with a step keyed by one of %v at the sink's parallelism (key_by, then an aggregation), or give the sink parallelism: 1; "+
			"a task's upsert of a row that another task's prepared transaction holds would wait for a commit that needs the waiting task's checkpoint",
			c.plan.SinkParallelism(), p.Key)
	}
	if p.Columns == nil && len(schema.Fields) > PostgresMaxColumns {
		c.errAt("sink", position{sk.Line, sk.Column}, "the records that reach the sink have %d fields: a postgres sink writes at most %d (list columns)", len(schema.Fields), PostgresMaxColumns)
	}
}

// sinkPartitionedBy reports whether every row of one upsert key reaches
// the same sink task: the sink has one task, or the last stage is keyed by
// a field among key, does not write that field (Stage.KeyWritten), and runs at the sink's parallelism, so that the sink's tasks are
// chained to it (a forward edge). It is conservative: a pipeline it
// refuses may be partitioned after all, and then `parallelism: 1` on the
// sink or a key_by before it says so.
func (c *compiler) sinkPartitionedBy(key []string) bool {
	par := c.plan.SinkParallelism()
	if par <= 1 {
		return true
	}
	if len(c.plan.Stages) == 0 {
		return false
	}
	last := &c.plan.Stages[len(c.plan.Stages)-1]
	if !last.Keyed || last.Parallelism != par || !slices.Contains(key, last.Key.Name) {
		return false
	}
	return !last.KeyWritten
}

// PostgresColumns returns the fields a postgres sink writes, in the order
// of its columns (each column is named after its field): the spec's
// columns, or every field of SinkSchema. It returns nil for other sinks.
func (p *Plan) PostgresColumns() []Field {
	pg := p.Spec.Sink.Postgres
	if pg == nil {
		return nil
	}
	if pg.Columns == nil {
		return slices.Clone(p.SinkSchema.Fields)
	}
	out := make([]Field, len(pg.Columns))
	for i, name := range pg.Columns {
		f, ok := p.SinkSchema.Lookup(name)
		if !ok {
			panic(fmt.Sprintf("job: postgres column %q is not a field of %s, and Compile accepted it", name, p.SinkSchema))
		}
		out[i] = f
	}
	return out
}

// AppendColumnValues appends the values of fields of r to dst, as
// connectors/postgres's Encode does: an int as int64, a float as float64,
// a bool as bool, a string as string. Boxing a value in an interface
// allocates (except small integers and bools); pgx's own encoding of the
// batch costs more.
func AppendColumnValues(dst []any, r *Row, fields []Field) []any {
	for _, f := range fields {
		switch f.Type {
		case TypeInt:
			dst = append(dst, r.Int(f.Slot))
		case TypeFloat:
			dst = append(dst, r.Float(f.Slot))
		case TypeBool:
			dst = append(dst, r.Bool(f.Slot))
		case TypeString:
			dst = append(dst, r.Str[f.Slot])
		default:
			panic(fmt.Sprintf("job: AppendColumnValues: field %s has invalid type %v", f.Name, f.Type))
		}
	}
	return dst
}

// postgresSource decodes one option of a postgres source.
func (d *decoder) postgresSource(x entry, p *PostgresSourceSpec) {
	switch x.key {
	case "url":
		p.URL, _ = d.str(x)
	case "password_env":
		p.PasswordEnv, _ = d.str(x)
	case "table":
		p.Table, _ = d.str(x)
	case "column":
		p.Column, _ = d.str(x)
	case "columns":
		d.fail(x.kpos, x.path, "a postgres source reads the columns its fields: name, each field from the column of its name, "+
			"as the field's type (fields: {id: int, user: string})")
	case "bounded":
		p.Bounded, _ = d.bool(x)
	case "poll_interval":
		if v, ok := d.duration(x); ok {
			p.PollInterval = v
		}
	case "batch_rows":
		if v, ok := d.int(x); ok {
			p.BatchRows = int(min(max(v, -1<<31), MaxPostgresSourceBatchRows+1))
		}
	case "timeout":
		if v, ok := d.duration(x); ok {
			p.Timeout = v
		}
	}
}

// postgresSource checks the options of a postgres source at path; its
// fields are checked as every connector source's.
func (v *validator) postgresSource(path string, src *SourceSpec) {
	p := src.Postgres
	if p == nil {
		return
	}
	at := func(field string, bad bool, format string, args ...any) {
		fp := path + "." + field
		if bad && !v.skip(fp) {
			v.errAt(fp, src.Line, src.Column, format, args...)
		}
	}
	if msg := postgresURLProblem(p.URL); msg != "" {
		at("url", true, "%s", msg)
	}
	v.envName(path+".password_env", p.PasswordEnv, src.Line, src.Column)
	if msg := postgresTableProblem(p.Table); msg != "" {
		at("table", true, "%s", msg)
	}
	at("column", p.Column == "" || len(p.Column) > MaxPostgresIdentifierBytes || strings.ContainsAny(p.Column, "\x00\""),
		"invalid column name %s: non-empty, at most %d bytes, without '\"'", quoteShort(p.Column), MaxPostgresIdentifierBytes)
	at("poll_interval", p.PollInterval <= 0, "must be > 0, got %v", p.PollInterval)
	at("batch_rows", p.BatchRows < 1 || p.BatchRows > MaxPostgresSourceBatchRows, "must be between 1 and %d, got %d", MaxPostgresSourceBatchRows, p.BatchRows)
	at("timeout", p.Timeout <= 0, "must be > 0, got %v", p.Timeout)
}
