package jobrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/snapshot"
)

// pgURL is the server the postgres tests use: STREAMD_PG_URL, default
// postgres://postgres@127.0.0.1:5432/test (.ci/setup-postgres.sh prepares
// it: max_prepared_transactions > 0).
func pgURL() string {
	if u := os.Getenv("STREAMD_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

// needPostgres connects to the test server, or skips loudly (fails under
// CI). The server must allow prepared transactions.
func needPostgres(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL())
	if err == nil {
		var n int
		if err = conn.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int").Scan(&n); err == nil && n == 0 {
			err = errors.New("max_prepared_transactions is 0: run .ci/setup-postgres.sh")
		}
		if err != nil {
			conn.Close(context.Background())
		}
	}
	if err != nil {
		msg := fmt.Sprintf("NO POSTGRESQL SERVER at %s (set STREAMD_PG_URL; .ci/setup-postgres.sh prepares one): %v", pgURL(), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// pgExec runs statements on conn or fails the test.
func pgExec(t *testing.T, conn *pgx.Conn, sql ...string) {
	t.Helper()
	for _, s := range sql {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// runPostgresSpec runs spec three times over one data dir, as
// TestAggregateAndReduceSurviveRestore does: stopped with Job.Stop (a
// final checkpoint) after two completed checkpoints, cancelled after two
// more (it resumes from its last periodic checkpoint, and what it sent
// after that must never be committed), then to the end. count returns the
// rows visible after each run; the first two must be a part of the output.
func runPostgresSpec(t *testing.T, spec string, count func() int, total int) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	run := func(stopAfter int, cancel bool) {
		store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		plan, err := job.Load("pg.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
		defer stop()
		var completed atomic.Int64
		var b *Built
		b, err = Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {},
			OnCheckpoint: func(s engine.CheckpointStats) {
				if s.Status != "completed" {
					return
				}
				if n := completed.Add(1); stopAfter == 0 || n != int64(stopAfter) {
					return
				}
				if cancel {
					stop()
				} else {
					go b.Job.Stop()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		err = b.Run(ctx)
		if err != nil && !(cancel && errors.Is(err, context.Canceled)) {
			t.Fatal(err)
		}
		if completed.Load() == 0 {
			t.Fatal("no checkpoint completed: the sink's transactions were not tested")
		}
	}
	run(2, false)
	n1 := count()
	run(2, true)
	n2 := count()
	if n1 == 0 || n1 >= total || n2 >= total {
		t.Fatalf("the first runs left %d and %d of %d rows; the test needs them stopped mid-way", n1, n2, total)
	}
	run(0, false)
	t.Logf("runs left %d, %d, then %d rows", n1, n2, count())
}

// TestPostgresCountsSpec runs sequence → count per key → postgres, in
// append mode (every record a row) and in upsert mode (one row per key),
// against the server at STREAMD_PG_URL, over three runs with a stop, a
// cancellation and recovery between them, and checks the table exactly.
func TestPostgresCountsSpec(t *testing.T) {
	const n, keys = 3000, 7
	conn := needPostgres(t)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx := context.Background()

	t.Run("append", func(t *testing.T) {
		table := "yc_append_" + id
		pgExec(t, conn, "CREATE TABLE "+table+" (key bigint NOT NULL, seq bigint NOT NULL, half double precision, even boolean, tag text, count bigint NOT NULL)")
		t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
		spec := fmt.Sprintf(`name: pg-append-%s
parallelism: 2
source: {type: sequence, count: %d, keys: %d, rate: 10000}
pipeline:
  - map: {half: "seq / 2.0", even: "seq %% 2 == 0", tag: "'k' + string(key)"}
  - key_by: key
  - count: {}
sink:
  type: postgres
  url: %s
  table: %s
  batch_rows: 100
checkpointing:
  interval: 20ms
`, id, n, keys, pgURL(), table)
		count := func() int {
			var c int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		runPostgresSpec(t, spec, count, n)
		rows, err := conn.Query(ctx, "SELECT key, seq, half, even, tag, count FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		seen := make(map[int64]bool, n)
		counts := make(map[int64][]int64)
		for rows.Next() {
			var key, seq, c int64
			var half float64
			var even bool
			var tag string
			if err := rows.Scan(&key, &seq, &half, &even, &tag, &c); err != nil {
				t.Fatal(err)
			}
			if seen[seq] {
				t.Fatalf("seq %d written twice", seq)
			}
			seen[seq] = true
			if key != seq%keys || half != float64(seq)/2 || even != (seq%2 == 0) || tag != "k"+strconv.FormatInt(key, 10) {
				t.Fatalf("row key=%d seq=%d half=%v even=%v tag=%q does not match its seq", key, seq, half, even, tag)
			}
			counts[key] = append(counts[key], c)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(seen) != n {
			t.Fatalf("%d rows, want %d", len(seen), n)
		}
		// Each key's running counts are 1..its records, each once.
		for k := range int64(keys) {
			c := counts[k]
			slices.Sort(c)
			want := n / keys
			if int(k) < n%keys {
				want++
			}
			for i, v := range c {
				if v != int64(i+1) || len(c) != want {
					t.Fatalf("key %d: counts %v, want 1..%d", k, c, want)
				}
			}
		}
	})

	t.Run("upsert", func(t *testing.T) {
		table := "yc_upsert_" + id
		pgExec(t, conn, "CREATE TABLE "+table+" (key bigint PRIMARY KEY, count bigint NOT NULL, updates bigint NOT NULL DEFAULT 0)")
		t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
		spec := fmt.Sprintf(`name: pg-upsert-%s
parallelism: 2
source: {type: sequence, count: %d, keys: %d, rate: 10000}
pipeline:
  - key_by: key
  - count: {}
sink:
  type: postgres
  url: %s
  table: %s
  columns: [key, count]
  key: [key]
  mode: upsert
  name: upsert-counts
  progress_table: yc_progress_%[1]s
checkpointing:
  interval: 20ms
`, id, n, keys, pgURL(), table)
		t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS yc_progress_"+id) })
		count := func() int {
			// The sum of the counts is the records committed so far: each
			// key's row holds the count of its last committed record.
			var c int
			if err := conn.QueryRow(ctx, "SELECT coalesce(sum(count), 0) FROM "+table).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		runPostgresSpec(t, spec, count, n)
		rows, err := conn.Query(ctx, "SELECT key, count FROM "+table+" ORDER BY key")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Key, Count int64 }])
		if err != nil {
			t.Fatal(err)
		}
		var want []struct{ Key, Count int64 }
		for k := range int64(keys) {
			c := int64(n / keys)
			if k < n%keys {
				c++
			}
			want = append(want, struct{ Key, Count int64 }{k, c})
		}
		if !slices.Equal(got, want) {
			t.Fatalf("table %s holds\n%v\nwant\n%v", table, got, want)
		}
		// The progress table names the job's sink, one row per task and
		// checkpoint committed.
		var progress int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM yc_progress_"+id).Scan(&progress); err != nil {
			t.Fatal(err)
		}
		if progress == 0 {
			t.Fatalf("no progress rows in yc_progress_%s", id)
		}
	})
}

// A postgres sink whose table is missing, or whose password variable is
// not set, fails the job before anything is written, with a message that
// names the table or the variable.
func TestPostgresSpecFailures(t *testing.T) {
	needPostgres(t)
	f := func(sink, want string) {
		t.Helper()
		spec := `name: pg-fail
source: {type: sequence, count: 10, keys: 2}
sink:
  type: postgres
  url: ` + pgURL() + `
` + sink
		plan, err := job.Load("pg.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := Build(plan, Options{Pinning: engine.PinOff, Logger: func(string, ...any) {}})
		if err == nil {
			err = b.Run(ctx)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("sink %q: error %v, want one containing %q", sink, err, want)
		}
	}
	f("  table: yc_no_such_table\n", "yc_no_such_table")
	f("  table: t\n  password_env: YC_UNSET_PG_PASSWORD\n", "YC_UNSET_PG_PASSWORD")
}

// needPostgresServer connects to the test server, or skips loudly (fails
// under CI). A postgres source needs no prepared transactions.
func needPostgresServer(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL())
	if err != nil {
		msg := fmt.Sprintf("NO POSTGRESQL SERVER at %s (set STREAMD_PG_URL; .ci/setup-postgres.sh prepares one): %v", pgURL(), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// countLines counts the committed lines of a file sink's directory (0 on
// any error: the caller polls).
func countLines(dir string) int {
	names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	n := 0
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return 0
		}
		n += bytes.Count(data, []byte("\n"))
	}
	return n
}

// pgClick is a row of the click tables of the source's tests.
type pgClick struct {
	ID   int64
	User string
	N    int64
	X    float64
	OK   bool
	AtMs int64
}

// writeClicks inserts rows into table until stop, from three connections
// whose transactions hold their rows a while and commit out of order (one
// in ten rolls back).
func writeClicks(t *testing.T, table string, stop *atomic.Bool) (wait func()) {
	var wg sync.WaitGroup
	for w := range 3 {
		conn, err := pgx.Connect(context.Background(), pgURL())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.Background())
			ctx := context.Background()
			for i := 0; !stop.Load(); i++ {
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				for range 1 + rand.IntN(4) {
					if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (usr, n, x, ok, at) VALUES ($1, $2, $3, $4, $5)",
						fmt.Sprintf("u%d", rand.IntN(7)), int64(i), float64(i)/4, i%2 == 0, time.UnixMilli(1_700_000_000_000+int64(i))); err != nil {
						t.Error(err)
						return
					}
				}
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				if w == 0 && i%10 == 0 {
					err = tx.Rollback(ctx)
				} else {
					err = tx.Commit(ctx)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return wg.Wait
}

// checkClicks checks the file sink's output against the table: every row
// exactly once with its values, and each user's counts exactly 1..its
// rows.
func checkClicks(t *testing.T, conn *pgx.Conn, table, out string) {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, usr, n, x, ok, (extract(epoch FROM at) * 1000)::int8 FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pgClick])
	if err != nil {
		t.Fatal(err)
	}
	got := readLines(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d records for %d rows", len(got), len(want))
	}
	byID := make(map[string]map[string]any, len(got))
	for _, m := range got {
		id := fmt.Sprint(m["id"])
		if byID[id] != nil {
			t.Fatalf("row %s read twice", id)
		}
		byID[id] = m
	}
	perUser := make(map[string]int64)
	for _, w := range want {
		m := byID[strconv.FormatInt(w.ID, 10)]
		if m == nil {
			t.Fatalf("row %d never read", w.ID)
		}
		if g, wl := line(m, "usr", "n", "x", "ok", "at"), fmt.Sprintf("%s|%d|%v|%v|%d", w.User, w.N, w.X, w.OK, w.AtMs); g != wl {
			t.Fatalf("row %d read as %s, want %s", w.ID, g, wl)
		}
		perUser[w.User]++
	}
	seen := make(map[string]bool)
	for _, m := range got {
		c, err := m["count"].(json.Number).Int64()
		k := fmt.Sprintf("%v/%d", m["usr"], c)
		if err != nil || c < 1 || c > perUser[m["usr"].(string)] || seen[k] {
			t.Fatalf("user %v: count %v twice or beyond its %d rows", m["usr"], m["count"], perUser[m["usr"].(string)])
		}
		seen[k] = true
	}
}

// TestPostgresSourceSpec runs table → count per user → file sink from a
// spec, unbounded, while writers insert rows whose transactions commit out
// of order: stopped (a final checkpoint) after two checkpoints, cancelled
// after two more (a crash: it resumes from its last checkpoint, and what it
// wrote after that is never committed), restored at parallelism 1 (the
// table's one split moves), then run until it has read every row. The
// output holds every row exactly once, with its values.
func TestPostgresSourceSpec(t *testing.T) {
	conn := needPostgresServer(t)
	table := "yc_src_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pgExec(t, conn, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, usr text NOT NULL, n bigint NOT NULL, x double precision, ok boolean, at timestamptz)")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	spec := func(par int) string {
		return fmt.Sprintf(`name: pg-source
parallelism: %d
source:
  type: postgres
  url: %s
  table: %s
  column: id
  fields: {id: int, usr: string, n: int, x: float, ok: bool, at: int}
  poll_interval: 5ms
  batch_rows: 50
pipeline:
  - key_by: usr
  - count: {}
sink: {type: file, path: %s}
checkpointing:
  interval: 20ms
`, par, pgURL(), table, out)
	}
	// run runs the spec until it completed stopAfter checkpoints (then
	// stops or cancels it), or until the output has want records (then
	// stops it).
	run := func(par, stopAfter int, cancel bool, want int) {
		t.Helper()
		store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		plan, err := job.Load("pg.yaml", []byte(spec(par)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithTimeout(context.Background(), time.Minute)
		defer stop()
		var completed atomic.Int64
		var b *Built
		b, err = Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {},
			OnCheckpoint: func(s engine.CheckpointStats) {
				if s.Status != "completed" || completed.Add(1) != int64(stopAfter) {
					return
				}
				if cancel {
					stop()
				} else {
					go b.Job.Stop()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if want > 0 {
			go func() {
				for ctx.Err() == nil && countLines(out) < want {
					time.Sleep(10 * time.Millisecond)
				}
				b.Job.Stop()
			}()
		}
		err = b.Run(ctx)
		if err != nil && !(cancel && errors.Is(err, context.Canceled)) {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	wait := writeClicks(t, table, &stop)
	run(2, 4, false, 0)
	n1 := countLines(out)
	run(2, 4, true, 0)
	run(1, 4, false, 0)
	stop.Store(true)
	wait()
	total := int(queryCount(t, conn, table))
	if n1 == 0 || n1 >= total {
		t.Fatalf("the first run wrote %d of %d records; the test needs it stopped mid-way", n1, total)
	}
	run(2, 0, false, total)
	checkClicks(t, conn, table, out)
	t.Logf("%d rows read exactly once (%d after the first run)", total, n1)
}

func queryCount(t *testing.T, conn *pgx.Conn, table string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExamplePostgresSource runs examples/postgres-source.yaml (bounded)
// against the server at STREAMD_PG_URL, into a fresh table: rows inserted
// after the job started are not read, the job ends by itself with every
// row before them counted once, and a rerun over the same data dir
// (after more inserts) changes nothing.
func TestExamplePostgresSource(t *testing.T) {
	conn := needPostgresServer(t)
	spec, err := os.ReadFile(filepath.Join("..", "examples", "postgres-source.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	table := "ex_clicks_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	for from, to := range map[string]string{"url: postgres://streamd@127.0.0.1:5432/streamd?sslmode=disable": "url: " + pgURL(),
		"table: clicks": "table: " + table, "path: out/click-counts/": "path: " + out, "interval: 1s": "interval: 20ms"} {
		if !bytes.Contains(spec, []byte(from)) {
			t.Fatalf("examples/postgres-source.yaml no longer says %q", from)
		}
		spec = bytes.ReplaceAll(spec, []byte(from), []byte(to))
	}
	pgExec(t, conn, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, user_name text NOT NULL, page text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO "+table+" (user_name, page, at) SELECT 'u' || (g % 13), '/p' || g, timestamptz '2024-05-01 00:00:00+00' + g * interval '1 second' FROM generate_series(1, 5000) g")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	t.Setenv("STREAMD_PG_PASSWORD", "unused-by-a-trusting-server")
	data := filepath.Join(dir, "data")
	run := func() {
		store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		plan, err := job.Load("postgres-source.yaml", spec)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	run()
	pgExec(t, conn, "INSERT INTO "+table+" (user_name, page) VALUES ('late', '/x')")
	run()
	got := readLines(t, out)
	if len(got) != 5000 {
		t.Fatalf("%d records, want 5000", len(got))
	}
	last := make(map[string]int64)
	for _, m := range got {
		id, _ := m["id"].(json.Number).Int64()
		at, _ := m["at"].(json.Number).Int64()
		c, _ := m["count"].(json.Number).Int64()
		if user := fmt.Sprint(m["user_name"]); user != fmt.Sprintf("u%d", id%13) || at != 1714521600000+id*1000 || m["page"] != fmt.Sprintf("/p%d", id) {
			t.Fatalf("record %v does not match its row", m)
		}
		last[fmt.Sprint(m["user_name"])] = max(last[fmt.Sprint(m["user_name"])], c)
	}
	for u, c := range last {
		var n int64
		fmt.Sscanf(u, "u%d", &n)
		want := int64(5000 / 13)
		if n >= 1 && n <= 5000%13 {
			want++
		}
		if c != want {
			t.Fatalf("user %s counted %d, want %d", u, c, want)
		}
	}
}

// A postgres source whose table, column or field types do not fit, or
// whose password variable is not set, fails the job before anything is
// read, with a message that names what is wrong.
func TestPostgresSourceSpecFailures(t *testing.T) {
	conn := needPostgresServer(t)
	table := "yc_srcfail_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pgExec(t, conn, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, usr text, at timestamptz)")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	f := func(source, want string) {
		t.Helper()
		spec := `name: pg-src-fail
source:
  type: postgres
  url: ` + pgURL() + `
` + source + `sink: {type: blackhole}
`
		plan, err := job.Load("pg.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := Build(plan, Options{Pinning: engine.PinOff, Logger: func(string, ...any) {}})
		if err == nil {
			err = b.Run(ctx)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("source %q: error %v, want one containing %q", source, err, want)
		}
	}
	f("  table: yc_no_such_table\n  column: id\n  fields: {id: int}\n", "table yc_no_such_table does not exist")
	f("  table: "+table+"\n  column: nope\n  fields: {id: int}\n", `has no column "nope"`)
	f("  table: "+table+"\n  column: usr\n  fields: {id: int}\n", "the increasing column must be an integer")
	f("  table: "+table+"\n  column: id\n  fields: {usr: int}\n", `column "usr" of type text cannot be read as int`)
	f("  table: "+table+"\n  column: id\n  fields: {at: bool}\n", `column "at" of type timestamp with time zone cannot be read as bool`)
	f("  table: "+table+"\n  column: id\n  fields: {id: int}\n  password_env: YC_UNSET_PG_PASSWORD\n", "YC_UNSET_PG_PASSWORD")
}
