package postgres

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/streamd/streamd/engine"
)

// NewReader returns the reader of one task's splits (for
// engine.FromSplitSource): the source's one split, or none (the task then
// ends at once). It connects and checks the table again, so that a
// restore onto a table that changed fails at start.
func (src *Source[T]) NewReader(sc engine.SourceContext, splits []engine.Split) (engine.SplitReader[T], error) {
	r := &reader[T]{src: src}
	switch len(splits) {
	case 0:
		return r, nil
	case 1:
	default:
		return nil, fmt.Errorf("postgres: source %s of job %s was given %d splits, it has one", sc.Operator, sc.Job, len(splits))
	}
	st, err := src.parseSplit(splits[0])
	if err != nil {
		return nil, err
	}
	r.split, r.st = true, st
	if st.finished() {
		return r, nil
	}
	conn, err := src.connect(appName(sc.Job, "src "+sc.Operator))
	if err != nil {
		return nil, err
	}
	info, err := src.check(conn)
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	r.conn = conn
	r.row = Row{cols: info.cols, tm: conn.TypeMap()}
	sel := make([]string, 0, len(info.cols)+1)
	r.formats = make(pgx.QueryResultFormats, 0, len(info.cols)+1)
	for _, c := range info.cols {
		sel = append(sel, pgx.Identifier{c.name}.Sanitize())
		r.formats = append(r.formats, c.format)
	}
	// The increasing column comes last, as int8, in binary.
	sel = append(sel, src.column+"::int8")
	r.formats = append(r.formats, binaryFormat)
	head := "SELECT " + strings.Join(sel, ", ") + " FROM " + src.table + " WHERE "
	tail := src.column + " <= $1::int8 ORDER BY " + src.column + " LIMIT " + strconv.Itoa(src.opts.BatchRows)
	r.readFirst = head + tail
	r.readAfter = head + src.column + " > $2::int8 AND " + tail
	r.fenceSQL = fenceSQL(src.table, src.column)
	r.cache = make([]T, src.opts.BatchRows)
	r.cachePos = make([]int64, src.opts.BatchRows)
	return r, nil
}

// fenceSQL returns the fence statement: the column's largest value in the
// statement's snapshot, then the transactions in progress that could
// insert into the table, listed after that snapshot was taken (pg_locks is
// read live): every transaction of a backend of this database (or of an
// unknown one) but the reader's own, by its virtual transaction id, which
// a transaction holds from its start to its end whether or not it has a
// transaction id; and the prepared transactions of this database, by
// transaction id. Backends that never insert rows are left out:
// autovacuum workers (a long VACUUM would hold the reader back), WAL
// senders, and parallel workers (their leader is listed). A backend whose
// type the reader may not see (another role's, without pg_read_all_stats)
// is kept. Their pids come along, for the stall warning (0 for a
// prepared one). One scan yields both arrays, in the same order.
func fenceSQL(table, column string) string {
	return `SELECT (SELECT max(` + column + `)::int8 FROM ` + table + `), coalesce(array_agg(r.id), '{}'), coalesce(array_agg(r.pid), '{}') FROM (
  SELECT l.virtualxid AS id, l.pid AS pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
     AND (a.datid IS NULL OR a.datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
     AND a.backend_type IS DISTINCT FROM 'autovacuum worker' AND a.backend_type IS DISTINCT FROM 'walsender'
     AND a.backend_type IS DISTINCT FROM 'parallel worker'
  UNION ALL
  SELECT 'p' || transaction::text, 0::int4 FROM pg_prepared_xacts WHERE database = current_database()) r`
}

// fence is a bound the reader may read up to once every transaction in
// its list has ended: max is the column's largest value in a snapshot,
// txns the transactions in progress right after it (doc.go, "Source").
type fence struct {
	max   opt // none: the table was empty
	txns  []string
	pids  []int32
	taken time.Time
	// warned says the reader logged that it waits for this fence.
	warned bool
}

// reader reads the split of one task. All its methods run on the task's
// goroutine.
type reader[T any] struct {
	src *Source[T]
	// split says the task has the split; without it the reader ends at
	// once.
	split bool
	st    splitState
	conn  *pgx.Conn
	row   Row
	// formats are the result formats of the read statements.
	formats pgx.QueryResultFormats
	// readFirst reads up to $1 from the start; readAfter from after $2.
	readFirst, readAfter string
	fenceSQL             string

	// safe is the bound every row at or below which is final: no
	// transaction in progress can still commit such a row.
	safe opt
	// passedOne says a fence has passed: a bounded split's end is final.
	passedOne bool
	// fences are the fences taken and not yet passed, oldest first.
	fences []fence
	// drainedTo is the bound the rows in the cache were read up to: once
	// the cache is handed out, every row up to it has been read.
	drainedTo opt
	// cache holds the rows of the last query, cachePos their positions;
	// cache[head:n] are not handed out yet.
	cache    []T
	cachePos []int64
	head, n  int
	// nextFence is when an idle reader takes its next fence.
	nextFence time.Time
}

func (r *reader[T]) Read(buf []T) (int, error) {
	if !r.split {
		return 0, io.EOF
	}
	for {
		if r.head < r.n {
			k := copy(buf, r.cache[r.head:r.n])
			r.head += k
			r.st.after = opt{ok: true, v: r.cachePos[r.head-1]}
			if r.head == r.n {
				r.caughtUp()
			}
			if r.st.finished() {
				return k, io.EOF
			}
			return k, nil
		}
		if r.st.finished() {
			return 0, io.EOF
		}
		if bound := r.readable(); bound.ok && (!r.st.after.ok || bound.v > r.st.after.v) {
			if err := r.fetch(bound); err != nil {
				return 0, err
			}
			if r.n == 0 {
				r.caughtUp()
			}
			continue
		}
		now := time.Now()
		if now.Before(r.nextFence) {
			return 0, nil
		}
		before := r.readable()
		if err := r.takeFence(now); err != nil {
			return 0, err
		}
		if after := r.readable(); after != before {
			continue
		}
		r.nextFence = now.Add(r.src.opts.PollInterval)
		return 0, nil
	}
}

// caughtUp records that every row up to the bound of the last query has
// been handed out: the position moves to it (rows up to it are final).
func (r *reader[T]) caughtUp() {
	if d := r.drainedTo; d.ok && (!r.st.after.ok || d.v > r.st.after.v) {
		r.st.after = d
	}
	r.drainedTo = opt{}
}

// readable returns the bound the reader may read up to now: the safe
// bound, capped by a bounded split's end (which is final as soon as one
// fence taken after the first start has passed).
func (r *reader[T]) readable() opt {
	if !r.safe.ok && !(r.st.bounded && r.passedOne) {
		return opt{}
	}
	if r.st.bounded {
		return r.st.end
	}
	return r.safe
}

// fetch reads the next rows after the position, up to bound, into the
// cache.
func (r *reader[T]) fetch(bound opt) error {
	ctx, cancel := r.src.ctx()
	defer cancel()
	var rows pgx.Rows
	var err error
	if r.st.after.ok {
		rows, err = r.conn.Query(ctx, r.readAfter, r.formats, bound.v, r.st.after.v)
	} else {
		rows, err = r.conn.Query(ctx, r.readFirst, r.formats, bound.v)
	}
	if err != nil {
		return r.src.errf("cannot read the rows after %v up to %d: %w", r.st.after, bound.v, err)
	}
	defer rows.Close()
	r.head, r.n = 0, 0
	ncols := len(r.row.cols)
	for rows.Next() {
		vals := rows.RawValues()
		if len(vals) != ncols+1 {
			return r.src.errf("a row of %d columns, want %d", len(vals), ncols+1)
		}
		pos, ok := binInt(oidInt8, vals[ncols])
		if !ok {
			return r.src.errf("a row whose increasing column is NULL or malformed")
		}
		r.row.vals, r.row.pos = vals[:ncols], pos
		if err := r.src.opts.Decode(&r.row, &r.cache[r.n]); err != nil {
			return r.src.errf("cannot decode the row where it is %d: %w", pos, err)
		}
		r.cachePos[r.n] = pos
		r.n++
	}
	if err := rows.Err(); err != nil {
		r.head, r.n = 0, 0
		return r.src.errf("cannot read the rows after %v up to %d: %w", r.st.after, bound.v, err)
	}
	if r.n < len(r.cache) {
		r.drainedTo = bound
	} else {
		r.drainedTo = opt{}
	}
	return nil
}

// takeFence runs the fence statement: it passes the pending fences none
// of whose transactions is still running, and adds a new fence when the
// column grew beyond the newest bound.
func (r *reader[T]) takeFence(now time.Time) error {
	ctx, cancel := r.src.ctx()
	defer cancel()
	var m *int64
	var txns []string
	var pids []int32
	if err := r.conn.QueryRow(ctx, r.fenceSQL).Scan(&m, &txns, &pids); err != nil {
		return r.src.errf("cannot list the transactions in progress: %w", err)
	}
	running := make(map[string]bool, len(txns))
	for _, t := range txns {
		running[t] = true
	}
	passed := 0
	for i := range r.fences {
		if slices.ContainsFunc(r.fences[i].txns, func(t string) bool { return running[t] }) {
			break // later fences pass no earlier: their lists hold what is still running of this one's
		}
		passed++
	}
	for _, f := range r.fences[:passed] {
		r.pass(f, now)
	}
	r.fences = slices.Delete(r.fences, 0, passed)
	newest := r.safe
	if len(r.fences) > 0 {
		newest = r.fences[len(r.fences)-1].max
	}
	// A bounded reader needs one fence whatever the column holds.
	needOne := r.st.bounded && !r.passedOne && len(r.fences) == 0
	if m != nil && (!newest.ok || *m > newest.v) || needOne {
		f := fence{txns: txns, pids: pids, taken: now}
		if m != nil {
			f.max = opt{ok: true, v: *m}
		}
		if len(txns) == 0 {
			r.pass(f, now)
		} else if len(r.fences) < maxPendingFences {
			r.fences = append(r.fences, f)
		}
	}
	if len(r.fences) > 0 && !r.fences[0].warned && now.Sub(r.fences[0].taken) > stallWarning {
		f := &r.fences[0]
		f.warned = true
		var blocking []int32
		for i, t := range f.txns {
			if running[t] && i < len(f.pids) {
				blocking = append(blocking, f.pids[i])
			}
		}
		r.src.opts.Logger.Warn("postgres source: waiting for transactions that were in progress when new rows appeared to end, before reading them",
			"table", r.src.opts.Table, "column", r.src.opts.Column, "read_through", r.st.after.String(),
			"waited", now.Sub(f.taken).Round(time.Second).String(), "pids", blocking)
	}
	return nil
}

// pass makes a fence's bound safe.
func (r *reader[T]) pass(f fence, now time.Time) {
	r.passedOne = true
	if f.max.ok && (!r.safe.ok || f.max.v > r.safe.v) {
		r.safe = f.max
	}
	if f.warned {
		r.src.opts.Logger.Info("postgres source: the transactions it waited for have ended",
			"table", r.src.opts.Table, "column", r.src.opts.Column, "waited", now.Sub(f.taken).Round(time.Second).String())
	}
}

func (r *reader[T]) Splits() ([]engine.Split, error) {
	if !r.split {
		return nil, nil
	}
	return []engine.Split{{ID: r.src.id, State: r.st.append(nil)}}, nil
}

func (r *reader[T]) Close() error {
	if r.conn == nil {
		return nil
	}
	ctx, cancel := r.src.ctx()
	defer cancel()
	err := r.conn.Close(ctx)
	r.conn = nil
	return err
}
