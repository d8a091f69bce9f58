package jobrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
