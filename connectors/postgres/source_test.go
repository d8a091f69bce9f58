package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/streamd/streamd/engine"
)

// The source's tests need a server (STREAMD_PG_URL, default
// postgres://postgres@127.0.0.1:5432/test) but, unlike the sink's, no
// prepared transactions.

// dialSource connects to the test server, or skips the test loudly (fails
// it under CI).
func dialSource(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL())
	if err != nil {
		msg := fmt.Sprintf("NO POSTGRESQL SERVER for the postgres source's tests at %s (set STREAMD_PG_URL): %v", pgURL(), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// connect opens one more connection to the test server.
func connect(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newSourceTable creates a fresh table with a bigserial id, dropped at the
// end, and returns its name.
func newSourceTable(t testing.TB, conn *pgx.Conn, cols string) string {
	t.Helper()
	name := fmt.Sprintf("streamd_src_%d", rand.Uint32())
	exec1(t, conn, "CREATE TABLE "+name+" (id bigserial PRIMARY KEY, "+cols+")")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) })
	return name
}

// quiet is a logger that drops everything (the tests check warnings
// through logTo).
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// item is the test record: the id and one column.
type item struct {
	ID, K int64
}

func itemOptions(table string) SourceOptions[item] {
	return SourceOptions[item]{
		URL: pgURL(), Table: table, Column: "id", Columns: []string{"k"}, Kinds: []Kind{KindInt},
		Decode: func(r *Row, v *item) error {
			k, err := r.Int(0)
			*v = item{ID: r.Position(), K: k}
			return err
		},
		PollInterval: 5 * time.Millisecond, BatchRows: 100, Timeout: 10 * time.Second, Logger: quiet,
	}
}

func newItemSource(t testing.TB, table string, mutate func(*SourceOptions[item])) *Source[item] {
	t.Helper()
	o := itemOptions(table)
	if mutate != nil {
		mutate(&o)
	}
	src, err := NewSource(o)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// testReader is a reader of the source's one split.
type testReader[T any] struct {
	t   testing.TB
	r   engine.SplitReader[T]
	buf []T
	eof bool
}

func openReader[T any](t testing.TB, src *Source[T], splits []engine.Split) *testReader[T] {
	t.Helper()
	r, err := src.NewReader(engine.SourceContext{Job: "test", Operator: "src"}, splits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &testReader[T]{t: t, r: r, buf: make([]T, 7)}
}

// readFor reads until want records came, the end, or d passed.
func (tr *testReader[T]) readFor(d time.Duration, want int) []T {
	tr.t.Helper()
	var out []T
	deadline := time.Now().Add(d)
	for len(out) < want && !tr.eof && time.Now().Before(deadline) {
		n, err := tr.r.Read(tr.buf)
		out = append(out, tr.buf[:n]...)
		switch {
		case err == io.EOF:
			tr.eof = true
		case err != nil:
			tr.t.Fatal(err)
		case n == 0:
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

func (tr *testReader[T]) splits() []engine.Split {
	tr.t.Helper()
	sp, err := tr.r.Splits()
	if err != nil {
		tr.t.Fatal(err)
	}
	return sp
}

func ids(items []item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func insertItems(t testing.TB, conn *pgx.Conn, table string, n int) {
	t.Helper()
	exec1(t, conn, fmt.Sprintf("INSERT INTO %s (k) SELECT g %% 10 FROM generate_series(1, %d) g", table, n))
}

// TestSourceReadsTable reads every type the accessors decode, in binary
// and as text, with a NULL in every column, and the generic Record.
func TestSourceReadsTable(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, `i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, n numeric,
		b boolean, s text, vc varchar(10), ch char(3), d date, ts timestamp, tz timestamptz, j jsonb, u uuid`)
	exec1(t, conn, "INSERT INTO "+table+` (i2, i4, i8, f4, f8, n, b, s, vc, ch, d, ts, tz, j, u) VALUES
		(-2, 40000, -9000000000, 1.5, -2.25, 12.5, true, 'héllo', 'v', 'ab', '1999-12-31', '1969-12-31 23:59:59.9995', '2024-05-01 12:00:00.123+02', '{"a": [1]}', '00000000-0000-0000-0000-000000000001'),
		(NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	type all struct {
		pos                   int64
		i2, i4, i8, d, ts, tz int64
		f4, f8, n, i8f        float64
		b, null               bool
		s, vc, ch, j, u, tzs  string
		tsText, dText, i8Text string
	}
	cols := []string{"i2", "i4", "i8", "f4", "f8", "n", "b", "s", "vc", "ch", "d", "ts", "tz", "j", "u", "i8", "tz", "ts", "d"}
	kinds := []Kind{KindInt, KindInt, KindInt, KindFloat, KindFloat, KindFloat, KindBool, KindText, KindText, KindText, KindInt, KindInt, KindInt, KindText, KindText, KindFloat, KindText, KindAny, KindAny}
	var got []all
	decode := func(r *Row, v *all) error {
		var errs []error
		i := func(c int) int64 { x, err := r.Int(c); errs = append(errs, err); return x }
		f := func(c int) float64 { x, err := r.Float(c); errs = append(errs, err); return x }
		s := func(c int) string { x, err := r.Text(c); errs = append(errs, err); return x }
		b, err := r.Bool(6)
		errs = append(errs, err)
		*v = all{pos: r.Position(), i2: i(0), i4: i(1), i8: i(2), f4: f(3), f8: f(4), n: f(5), b: b, s: s(7), vc: s(8), ch: s(9),
			d: i(10), ts: i(11), tz: i(12), j: s(13), u: s(14), i8f: f(15), tzs: s(16), tsText: s(17), dText: s(18), null: r.IsNull(0)}
		return errors.Join(errs...)
	}
	// Each read of a column under another kind is its own option set:
	// read the table with the columns as listed (repeats allowed by
	// reading through a view).
	view := table + "_v"
	var sel []string
	for i, c := range cols {
		sel = append(sel, fmt.Sprintf("%s AS c%d", c, i))
	}
	exec1(t, conn, "CREATE VIEW "+view+" AS SELECT id, "+strings.Join(sel, ", ")+" FROM "+table)
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP VIEW IF EXISTS "+view) })
	var vcols []string
	for i := range cols {
		vcols = append(vcols, fmt.Sprintf("c%d", i))
	}
	vsrc, err := NewSource(SourceOptions[all]{URL: pgURL(), Table: view, Column: "id", Columns: vcols, Kinds: kinds, Decode: decode,
		Bounded: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	asg, err := vsrc.Initial(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(asg) != 3 || len(asg[0]) != 1 || len(asg[1]) != 0 || len(asg[2]) != 0 {
		t.Fatalf("assignment %v: want the one split on task 0", asg)
	}
	got = openReader(t, vsrc, asg[0]).readFor(10*time.Second, 100)
	if len(got) != 2 {
		t.Fatalf("read %d rows, want 2", len(got))
	}
	want := all{pos: 1, i2: -2, i4: 40000, i8: -9000000000, f4: 1.5, f8: -2.25, n: 12.5, i8f: -9e9, b: true, s: "héllo", vc: "v", ch: "ab ",
		d: 946684800000 - 86400000, ts: -1, tz: 1714557600123, j: `{"a": [1]}`, u: "00000000-0000-0000-0000-000000000001",
		tzs: "2024-05-01 10:00:00.123+00", tsText: "1969-12-31 23:59:59.9995", dText: "1999-12-31"}
	if got[0] != want {
		t.Errorf("row 1:\n got %+v\nwant %+v", got[0], want)
	}
	if g := got[1]; g.pos != 2 || !g.null || g.i8 != 0 || g.s != "" || g.b || g.tsText != "" || g.n == g.n {
		t.Errorf("row 2 of NULLs (and a NaN numeric): %+v", g)
	}

	// Every column, generically.
	rsrc, err := NewSource(SourceOptions[Record]{URL: pgURL(), Table: table, Column: "id", Decode: DecodeRecord, Bounded: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	asg, err = rsrc.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	recs := openReader(t, rsrc, asg[0]).readFor(10*time.Second, 100)
	if len(recs) != 2 || len(recs[0].Values) != 16 || recs[0].Values[0] != int64(1) || recs[0].Values[8] != "héllo" {
		t.Fatalf("records %v", recs)
	}
	if ts := RecordTime(13)(&recs[0]); ts != 1714557600123 {
		t.Fatalf("RecordTime of the timestamptz = %d", ts)
	}
	if ts := RecordTime(13)(&recs[1]); ts != 0 {
		t.Fatalf("RecordTime of NULL = %d", ts)
	}
}

// TestSourceBounded: the end is the largest value at the first start;
// rows inserted later are not read; a reader restored from any position
// reads exactly the rest, and a rerun from the first split exactly the
// same rows.
func TestSourceBounded(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL")
	insertItems(t, conn, table, 1000)
	src := newItemSource(t, table, func(o *SourceOptions[item]) { o.Bounded = true })
	asg, err := src.Initial(2)
	if err != nil {
		t.Fatal(err)
	}
	first := asg[0]
	if got := string(first[0].State); got != "after=none end=1000" {
		t.Fatalf("initial state %q", got)
	}
	insertItems(t, conn, table, 500) // beyond the end
	tr := openReader(t, src, first)
	part := tr.readFor(10*time.Second, 333)
	pos := tr.splits()
	tr2 := openReader(t, src, pos)
	rest := tr2.readFor(10*time.Second, 5000)
	if !tr2.eof {
		t.Fatal("the bounded source did not end")
	}
	if got := append(ids(part), ids(rest)...); !slices.Equal(got, span(1, 1000)) {
		t.Fatalf("read %d rows then %d (after %v): want ids 1..1000 once each, in order", len(part), len(rest), pos)
	}
	if end := tr2.splits(); string(end[0].State) != "after=1000 end=1000" {
		t.Fatalf("final state %v", end)
	}
	again := openReader(t, src, first).readFor(10*time.Second, 5000)
	if !slices.Equal(ids(again), span(1, 1000)) {
		t.Fatalf("a rerun from the first split read %d rows", len(again))
	}
	// A finished split needs no connection and ends at once.
	done := openReader(t, src, tr2.splits())
	if got := done.readFor(time.Second, 1); len(got) != 0 || !done.eof {
		t.Fatal("a finished split read rows or did not end")
	}
	// An empty table: the split ends at once.
	empty := newSourceTable(t, conn, "k bigint NOT NULL")
	esrc := newItemSource(t, empty, func(o *SourceOptions[item]) { o.Bounded = true })
	if asg, err = esrc.Initial(1); err != nil {
		t.Fatal(err)
	}
	insertItems(t, conn, empty, 5)
	if got := openReader(t, esrc, asg[0]).readFor(time.Second, 1); len(got) != 0 {
		t.Fatalf("read %d rows of a table that was empty at the start", len(got))
	}
}

// TestSourceUnboundedResume polls for new rows and resumes after the
// position in its split.
func TestSourceUnboundedResume(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL")
	src := newItemSource(t, table, nil)
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	tr := openReader(t, src, asg[0])
	if got := tr.readFor(50*time.Millisecond, 1); len(got) != 0 {
		t.Fatal("rows from an empty table")
	}
	insertItems(t, conn, table, 250)
	got := tr.readFor(10*time.Second, 250)
	insertItems(t, conn, table, 50)
	got = append(got, tr.readFor(10*time.Second, 10)...)
	pos := tr.splits()
	tr.r.Close()
	tr2 := openReader(t, src, pos)
	got = append(got, tr2.readFor(10*time.Second, 300-len(got))...)
	if !slices.Equal(ids(got), span(1, 300)) {
		t.Fatalf("read %d rows (position %v), want ids 1..300 once each", len(got), pos)
	}
	if tr2.eof {
		t.Fatal("an unbounded source ended")
	}
}

// TestSourceOutOfOrderCommits is the hazard: a sequence value is taken
// when a row is inserted, but the row becomes visible when its
// transaction commits, so a later value can be visible before an earlier
// one. A reader that moved past the later value would skip the earlier
// row forever. The source must not read past a value while a transaction
// that may still commit a smaller one is in progress.
func TestSourceOutOfOrderCommits(t *testing.T) {
	conn := dialSource(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// first starts transaction A, which takes the smaller value.
		first func(t *testing.T, a pgx.Tx, table string) int64
		// finish ends A.
		finish func(t *testing.T, a pgx.Tx, table string, v int64)
	}{
		{"insert", func(t *testing.T, a pgx.Tx, table string) int64 {
			var v int64
			if err := a.QueryRow(ctx, "INSERT INTO "+table+" (k) VALUES (1) RETURNING id").Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}, func(t *testing.T, a pgx.Tx, _ string, _ int64) {
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		// An ORM takes the value first and inserts at flush: the
		// transaction may not even have a transaction id while the
		// later row commits, so a rule on xmin (rows of transactions
		// older than every running one) would let the reader pass it.
		{"nextval then insert", func(t *testing.T, a pgx.Tx, table string) int64 {
			var v int64
			if err := a.QueryRow(ctx, "SELECT nextval(pg_get_serial_sequence($1, 'id'))", table).Scan(&v); err != nil {
				t.Fatal(err)
			}
			var xid *int64
			if err := a.QueryRow(ctx, "SELECT pg_current_xact_id_if_assigned()::text::bigint").Scan(&xid); err != nil {
				t.Fatal(err)
			}
			t.Logf("transaction A has the value %d and transaction id %v", v, xid)
			return v
		}, func(t *testing.T, a pgx.Tx, table string, v int64) {
			if _, err := a.Exec(ctx, "INSERT INTO "+table+" (id, k) VALUES ($1, 1)", v); err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newSourceTable(t, conn, "k bigint NOT NULL")
			insertItems(t, conn, table, 3) // 1..3
			src := newItemSource(t, table, nil)
			asg, err := src.Initial(1)
			if err != nil {
				t.Fatal(err)
			}
			tr := openReader(t, src, asg[0])
			if got := tr.readFor(10*time.Second, 3); !slices.Equal(ids(got), span(1, 3)) {
				t.Fatalf("read %v, want 1..3", ids(got))
			}
			a, err := connect(t).Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Rollback(ctx)
			va := tc.first(t, a, table)
			b := connect(t)
			var vb int64
			if err := b.QueryRow(ctx, "INSERT INTO "+table+" (k) VALUES (2) RETURNING id").Scan(&vb); err != nil {
				t.Fatal(err)
			}
			if vb <= va {
				t.Fatalf("B got %d, not above A's %d", vb, va)
			}
			// The hazard is real: B's row is visible, A's is not.
			var visible []int64
			rows, _ := conn.Query(ctx, "SELECT id FROM "+table+" WHERE id > 3 ORDER BY id")
			if visible, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(visible, []int64{vb}) {
				t.Fatalf("visible after B's commit: %v, want only B's %d", visible, vb)
			}
			// The source waits: it reads nothing past 3 while A runs.
			if got := tr.readFor(300*time.Millisecond, 1); len(got) != 0 {
				t.Fatalf("read %v while transaction A (value %d) is in progress: row %d would have been skipped", ids(got), va, va)
			}
			if pos := tr.splits(); string(pos[0].State) != "after=3" {
				t.Fatalf("the position moved to %s while A is in progress", pos[0].State)
			}
			tc.finish(t, a, table, va)
			if got := tr.readFor(10*time.Second, 2); !slices.Equal(ids(got), []int64{va, vb}) {
				t.Fatalf("after A's commit the source read %v, want [%d %d]", ids(got), va, vb)
			}
		})
	}
}

// TestSourceConcurrentWriters: writers whose transactions commit in a
// random order, while an unbounded reader reads, restarted from its
// position now and then. Every row is read exactly once. A naive reader
// (every row above the largest id read so far) reads beside it, to show
// what the hazard costs.
func TestSourceConcurrentWriters(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL")
	src := newItemSource(t, table, func(o *SourceOptions[item]) { o.PollInterval = 2 * time.Millisecond })
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 4
	var stop atomic.Bool
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range writers {
		wc := connect(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for !stop.Load() {
				tx, err := wc.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				n := 1 + rand.IntN(3)
				for range n {
					if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (k) VALUES ($1)", w); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				}
				if rand.IntN(10) == 0 {
					err = tx.Rollback(ctx)
				} else {
					err = tx.Commit(ctx)
					written.Add(int64(n))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// The naive reader.
	var naiveSeen []int64
	var naiveStop atomic.Bool
	naiveDone := make(chan struct{})
	nc := connect(t)
	go func() {
		defer close(naiveDone)
		last := int64(0)
		for done := false; !done; {
			done = naiveStop.Load() // one more pass after the writers stopped
			rows, _ := nc.Query(context.Background(), "SELECT id FROM "+table+" WHERE id > $1 ORDER BY id", last)
			got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Error(err)
				return
			}
			if len(got) > 0 {
				last = got[len(got)-1]
				naiveSeen = append(naiveSeen, got...)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var got []item
	splits := asg[0]
	deadline := time.Now().Add(1500 * time.Millisecond)
	for round := 0; time.Now().Before(deadline); round++ {
		tr := openReader(t, src, splits)
		got = append(got, tr.readFor(time.Duration(100+rand.IntN(200))*time.Millisecond, 1<<30)...)
		splits = tr.splits()
		tr.r.Close()
	}
	stop.Store(true)
	wg.Wait()
	naiveStop.Store(true)
	<-naiveDone
	var want []int64
	rows, _ := conn.Query(context.Background(), "SELECT id FROM "+table+" ORDER BY id")
	if want, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != written.Load() {
		t.Fatalf("the table holds %d rows, the writers committed %d", len(want), written.Load())
	}
	tr := openReader(t, src, splits)
	got = append(got, tr.readFor(10*time.Second, len(want)-len(got))...)
	if !slices.Equal(ids(got), want) {
		missing, dup := diff(ids(got), want)
		t.Fatalf("read %d rows of %d: missing %v, read twice %v", len(got), len(want), missing, dup)
	}
	missing, _ := diff(naiveSeen, want)
	t.Logf("%d rows from %d writers read exactly once; a naive reader skipped %d of them", len(want), writers, len(missing))
}

// diff returns the values of want missing from got, and those got has
// more than once.
func diff(got, want []int64) (missing, dup []int64) {
	seen := make(map[int64]int)
	for _, v := range got {
		seen[v]++
		if seen[v] == 2 {
			dup = append(dup, v)
		}
	}
	for _, v := range want {
		if seen[v] == 0 {
			missing = append(missing, v)
		}
	}
	return missing, dup
}

// TestSourceErrorsAtStart: what is wrong with the server, the credentials,
// the table or the columns is an error of Initial (or, on a restore, of
// NewReader) that names it, and never shows the password.
func TestSourceErrorsAtStart(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL, s text")
	t.Setenv("STREAMD_PG_TEST_PASSWORD", "s3cr3t-pw")
	f := func(name string, mutate func(*SourceOptions[item]), want string) {
		t.Helper()
		o := itemOptions(table)
		mutate(&o)
		src, err := NewSource(o)
		if err == nil {
			_, err = src.Initial(1)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	f("missing table", func(o *SourceOptions[item]) { o.Table = "streamd_no_such_table" }, "table streamd_no_such_table does not exist")
	f("missing column", func(o *SourceOptions[item]) { o.Column = "nope" }, `has no column "nope" (its columns: id, k, s)`)
	f("a text column", func(o *SourceOptions[item]) { o.Column = "s" }, "must be an integer")
	f("a missing column to read", func(o *SourceOptions[item]) { o.Columns, o.Kinds = []string{"k", "x"}, nil }, `has no column "x"`)
	f("a text column read as int", func(o *SourceOptions[item]) { o.Columns = []string{"s"} }, `column "s" of type text cannot be read as int`)
	f("unknown role with a password", func(o *SourceOptions[item]) {
		o.URL = strings.Replace(pgURL(), "postgres@", "streamd_no_such_role@", 1)
		o.PasswordEnv = "STREAMD_PG_TEST_PASSWORD"
	}, "cannot connect")
	f("nothing listens", func(o *SourceOptions[item]) {
		o.URL = "postgres://postgres@127.0.0.1:1/test"
		o.PasswordEnv = "STREAMD_PG_TEST_PASSWORD"
	}, "cannot connect")
	f("an unset password variable", func(o *SourceOptions[item]) { o.PasswordEnv = "STREAMD_PG_TEST_UNSET" }, "STREAMD_PG_TEST_UNSET (PasswordEnv) is not set")
	f("a password in the URL", func(o *SourceOptions[item]) { o.URL = "postgres://postgres:s3cr3t-pw@127.0.0.1:5432/test" }, "URL holds a password")
	f("no decode", func(o *SourceOptions[item]) { o.Decode = nil }, "Decode is nil")
	f("kinds without columns", func(o *SourceOptions[item]) { o.Columns = nil }, "1 Kinds for 0 Columns")

	cached := newSourceTable(t, conn, "k bigint NOT NULL")
	exec1(t, conn, "ALTER SEQUENCE "+cached+"_id_seq CACHE 20")
	f("a sequence with a cache", func(o *SourceOptions[item]) { o.Table = cached }, "caches 20 values per session")

	// A restore onto another table, or with another boundedness.
	src := newItemSource(t, table, nil)
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	other := newItemSource(t, newSourceTable(t, conn, "k bigint"), nil)
	if _, err := other.NewReader(engine.SourceContext{}, asg[0]); err == nil || !strings.Contains(err.Error(), "restores only onto the same table") {
		t.Errorf("restore onto another table: %v", err)
	}
	bounded := newItemSource(t, table, func(o *SourceOptions[item]) { o.Bounded = true })
	if _, err := bounded.NewReader(engine.SourceContext{}, asg[0]); err == nil || !strings.Contains(err.Error(), "bounded=false") {
		t.Errorf("restore with another boundedness: %v", err)
	}
	// The table dropped between the first start and a restore.
	gone := newSourceTable(t, conn, "k bigint")
	gsrc := newItemSource(t, gone, nil)
	if asg, err = gsrc.Initial(1); err != nil {
		t.Fatal(err)
	}
	exec1(t, conn, "DROP TABLE "+gone)
	if _, err := gsrc.NewReader(engine.SourceContext{}, asg[0]); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("restore onto a dropped table: %v", err)
	}
}

// logTo returns a logger that writes into b.
func logTo(b *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSourceWarnings: a table without an index on the column, a nullable
// column, and a reader that waits long for a transaction, are logged (the
// last naming the pid it waits for).
func TestSourceWarnings(t *testing.T) {
	conn := dialSource(t)
	name := fmt.Sprintf("streamd_src_%d", rand.Uint32())
	exec1(t, conn, "CREATE TABLE "+name+" (id bigint, k bigint)")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) })
	var logs syncBuffer
	src := newItemSource(t, name, func(o *SourceOptions[item]) { o.Logger = logTo(&logs) })
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no index is led by the increasing column", "may be NULL"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q in\n%s", want, logs.String())
		}
	}
	defer func(d time.Duration) { stallWarning = d }(stallWarning)
	stallWarning = 50 * time.Millisecond
	tr := openReader(t, src, asg[0])
	ctx := context.Background()
	a, err := connect(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	var pid int32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	exec1(t, conn, "INSERT INTO "+name+" VALUES (1, 1)")
	if got := tr.readFor(200*time.Millisecond, 1); len(got) != 0 {
		t.Fatalf("read %v while a transaction that began before the row committed is in progress", got)
	}
	if want := fmt.Sprintf("pids=[%d]", pid); !strings.Contains(logs.String(), want) {
		t.Errorf("no stall warning with %s in\n%s", want, logs.String())
	}
	a.Rollback(ctx)
	if got := tr.readFor(10*time.Second, 1); len(got) != 1 {
		t.Fatalf("read %v after the transaction ended", got)
	}
	if !strings.Contains(logs.String(), "have ended") {
		t.Errorf("no line that the wait ended in\n%s", logs.String())
	}
}

// TestSourceDroppedConnection: a reader whose connection is terminated
// mid-job fails with an error that says what it could not do; it neither
// hangs nor ends (an io.EOF would finish the job with rows unread).
func TestSourceDroppedConnection(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL")
	insertItems(t, conn, table, 1000)
	src := newItemSource(t, table, nil)
	asg, err := src.Initial(1)
	if err != nil {
		t.Fatal(err)
	}
	tr := openReader(t, src, asg[0])
	if got := tr.readFor(10*time.Second, 10); len(got) < 10 {
		t.Fatalf("read %d rows", len(got))
	}
	if n := queryInt(t, conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", appName("test", "src src")); n != 1 {
		t.Fatalf("terminated %d backends of the reader", n)
	}
	start := time.Now()
	for {
		_, err := tr.r.Read(tr.buf)
		if err == nil {
			if time.Since(start) > 10*time.Second {
				t.Fatal("the reader goes on without its connection")
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("the reader ended: %v", err)
		}
		if !strings.Contains(err.Error(), "postgres: source of table "+table) {
			t.Fatalf("the error does not name the source: %v", err)
		}
		t.Logf("the reader failed with: %v", err)
		return
	}
}

func TestSplitState(t *testing.T) {
	f := func(s string, ok bool) {
		t.Helper()
		st, err := parseSplitState([]byte(s))
		if (err == nil) != ok {
			t.Fatalf("parseSplitState(%q): %v", s, err)
		}
		if ok && string(st.append(nil)) != s {
			t.Fatalf("parseSplitState(%q) re-encodes as %q", s, st.append(nil))
		}
	}
	f("after=none", true)
	f("after=-5", true)
	f("after=9223372036854775807 end=none", true)
	f("after=none end=-9223372036854775808", true)
	f("after=05", false)
	f("after=+5", false)
	f("after=-0", false)
	f("after=", false)
	f("end=5", false)
	f("after=1  end=2", false)
	f("after=1 end=2 x", false)
	f("after=9223372036854775808", false)
	f("", false)
	if !(splitState{bounded: true}).finished() || (splitState{bounded: true, end: opt{true, 3}, after: opt{true, 2}}).finished() ||
		!(splitState{bounded: true, end: opt{true, 3}, after: opt{true, 3}}).finished() || (splitState{after: opt{true, 3}}).finished() {
		t.Fatal("finished")
	}
}

func FuzzSplitState(f *testing.F) {
	for _, s := range []string{"after=none", "after=12 end=13", "after=none end=none", "after=-1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseSplitState(b)
		if err != nil {
			return
		}
		if got := st.append(nil); string(got) != string(b) {
			t.Fatalf("%q decodes and re-encodes as %q", b, got)
		}
	})
}

// FuzzRow feeds arbitrary bytes to every accessor, for every type and
// format the source reads: no panic, and an error rather than a value
// from a malformed one.
func FuzzRow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1}, uint8(0), false)
	f.Add([]byte("12.5"), uint8(3), true)
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(8), false)
	f.Add([]byte{1}, uint8(6), false)
	oids := []uint32{oidInt2, oidInt4, oidInt8, oidFloat4, oidFloat8, oidNumeric, oidBool, oidText, oidDate, oidTimestamp, oidTimestamptz, oidVarchar, 2950}
	f.Fuzz(func(t *testing.T, b []byte, which uint8, text bool) {
		oid := oids[int(which)%len(oids)]
		format := binaryFormat
		if text {
			format = textFormat
		}
		r := Row{cols: []column{{name: "c", oid: oid, typ: "t", format: format}}, vals: [][]byte{b}, tm: typeMap}
		if v, err := r.Int(0); err == nil && !text && b != nil && len(b) != map[uint32]int{oidInt2: 2, oidInt4: 4, oidDate: 4}[oid] &&
			len(b) != map[uint32]int{oidInt8: 8, oidTimestamp: 8, oidTimestamptz: 8}[oid] {
			t.Fatalf("Int of %d bytes of oid %d = %d", len(b), oid, v)
		}
		r.Float(0)
		r.Bool(0)
		r.Text(0)
		r.Value(0)
		var rec Record
		DecodeRecord(&r, &rec)
		RecordTime(0)(&rec)
	})
}

var typeMap = pgtype.NewMap()

// TestSourceReassign: the one split goes to task 0 of any parallelism,
// with its position; a split of another table is refused.
func TestSourceReassign(t *testing.T) {
	src := newItemSource(t, "public.t", nil)
	sp := engine.Split{ID: `"public"."t" by "id"`, State: []byte("after=41")}
	asg, err := src.Reassign([]engine.Split{sp}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(asg) != 3 || len(asg[0]) != 1 || asg[0][0].ID != sp.ID || string(asg[0][0].State) != "after=41" || len(asg[1])+len(asg[2]) != 0 {
		t.Fatalf("Reassign = %v", asg)
	}
	if _, err := src.Reassign([]engine.Split{{ID: `"other" by "id"`, State: []byte("after=1")}}, 2); err == nil || !strings.Contains(err.Error(), "same table") {
		t.Fatalf("Reassign of another table's split: %v", err)
	}
	if _, err := src.Reassign([]engine.Split{{ID: sp.ID, State: []byte("after=x")}}, 2); err == nil || !strings.Contains(err.Error(), "malformed position") {
		t.Fatalf("Reassign of a malformed split: %v", err)
	}
}
