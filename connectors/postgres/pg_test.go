package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The tests run against a real server: STREAMD_PG_URL, default
// postgres://postgres@127.0.0.1:5432/test (.ci/setup-postgres.sh prepares
// it: max_prepared_transactions > 0).

func pgURL() string {
	if u := os.Getenv("STREAMD_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

// dial connects to the test server, or skips the test loudly (fails it
// under CI).
func dial(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL())
	if err == nil {
		var n int
		if err = conn.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int").Scan(&n); err == nil && n == 0 {
			err = errors.New("max_prepared_transactions is 0: run .ci/setup-postgres.sh")
		}
	}
	if err != nil {
		msg := fmt.Sprintf("NO POSTGRESQL SERVER for the postgres sink's tests at %s (set STREAMD_PG_URL): %v", pgURL(), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// rec is the test record.
type rec struct {
	Seq, Key, N int64
}

// newTable creates a fresh table for mode and drops it (and the strays of
// its job) at the end.
func newTable(t testing.TB, conn *pgx.Conn, mode Mode) string {
	t.Helper()
	name := fmt.Sprintf("streamd_test_%s_%d", mode, rand.Uint32())
	if mode == Append {
		exec1(t, conn, "CREATE TABLE "+name+" (seq bigint NOT NULL, k bigint NOT NULL, n bigint NOT NULL)")
	} else {
		exec1(t, conn, "CREATE TABLE "+name+" (k bigint PRIMARY KEY, n bigint NOT NULL, seq bigint NOT NULL)")
	}
	t.Cleanup(func() {
		ctx := context.Background()
		rows, _ := conn.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, $1)", gidPrefix(jobOf(name), name))
		gids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, g := range gids {
			conn.Exec(ctx, "ROLLBACK PREPARED '"+g+"'")
		}
		conn.Exec(ctx, "DROP TABLE IF EXISTS "+name)
		conn.Exec(ctx, "DELETE FROM "+DefaultProgressTable+" WHERE job = $1", jobOf(name))
	})
	return name
}

func jobOf(table string) string { return "job-" + strings.ReplaceAll(table, "_", "-") }

func testOptions(table string, mode Mode) SinkOptions[rec] {
	o := SinkOptions[rec]{URL: pgURL(), Table: table, Mode: mode, BatchRows: 500, Timeout: 20 * time.Second}
	if mode == Append {
		o.Columns = []string{"seq", "k", "n"}
		o.Encode = func(dst []any, r *rec) []any { return append(dst, r.Seq, r.Key, r.N) }
	} else {
		o.Columns, o.Key = []string{"k", "n", "seq"}, []string{"k"}
		o.Encode = func(dst []any, r *rec) []any { return append(dst, r.Key, r.N, r.Seq) }
	}
	return o
}

func newTestSink(t testing.TB, table string, mode Mode) *Sink[rec] {
	t.Helper()
	s, err := NewSink(jobOf(table), testOptions(table, mode))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestWriter(t testing.TB, s *Sink[rec], index int) engine.SinkWriter[rec] {
	t.Helper()
	w, err := s.NewWriter(engine.SinkContext{Job: s.job, Operator: "sink", Index: index, Parallelism: 2, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func write(t testing.TB, w engine.SinkWriter[rec], from, to int64) {
	t.Helper()
	for i := from; i < to; i++ {
		r := rec{Seq: i, Key: i % 10, N: i}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
}

func count(t testing.TB, conn *pgx.Conn, table string) int64 {
	return queryInt(t, conn, "SELECT count(*) FROM "+table)
}

func TestSinkPreCommitInvisibleCommitVisible(t *testing.T) {
	conn := dial(t)
	table := newTable(t, conn, Append)
	s := newTestSink(t, table, Append)
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, s, 0)
	write(t, w, 0, 1234) // more than a batch: some rows reach the server before the barrier
	st, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, table); got != 0 {
		t.Fatalf("%d rows visible after pre-commit", got)
	}
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1", gid(s.prefix, txnRef{0, 1})); n != 1 {
		t.Fatalf("transaction not prepared (%d)", n)
	}
	write(t, w, 1234, 2000) // the next transaction, open while 1 awaits its commit
	if got, err := s.LastCommitted(); err != nil || got != 0 {
		t.Fatalf("LastCommitted = %d, %v before a commit", got, err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, table); got != 1234 {
		t.Fatalf("%d rows visible after commit, want 1234", got)
	}
	if err := w.Commit(1); err != nil { // idempotent
		t.Fatal(err)
	}
	if got, err := s.LastCommitted(); err != nil || got != 1 {
		t.Fatalf("LastCommitted = %d, %v; want 1", got, err)
	}
	if st2, err := w.PreCommit(2); err != nil || st2 == nil {
		t.Fatal(st2, err)
	}
	if _, err := w.PreCommit(3); err != nil { // nothing written: no transaction
		t.Fatal(err)
	}
	if err := w.Commit(3); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, table); got != 2000 {
		t.Fatalf("%d rows, want 2000", got)
	}
	if got, _ := s.LastCommitted(); got != 2 {
		t.Fatalf("LastCommitted = %d, want 2", got)
	}
	_ = st
}

// TestSinkRecover crashes writers after pre-commit and recovers from the
// checkpoint that lists only the first transaction: it is committed, the
// later one and another task's stray are rolled back.
func TestSinkRecover(t *testing.T) {
	conn := dial(t)
	table := newTable(t, conn, Append)
	s := newTestSink(t, table, Append)
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	w0, w1 := newTestWriter(t, s, 0), newTestWriter(t, s, 1)
	write(t, w0, 0, 100)
	st0, err := w0.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w0, 100, 150)
	if _, err := w0.PreCommit(2); err != nil {
		t.Fatal(err)
	}
	write(t, w1, 1000, 1010)
	if _, err := w1.PreCommit(2); err != nil {
		t.Fatal(err)
	}
	write(t, w1, 2000, 2010) // open, never prepared
	w0.Close()
	w1.Close()
	s.Close()

	s2 := newTestSink(t, table, Append)
	if err := s2.Recover([][]byte{st0, nil}); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, table); got != 100 {
		t.Fatalf("%d rows after recovery, want 100", got)
	}
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, $1)", s.prefix); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
	if err := s2.Recover([][]byte{st0, nil}); err != nil { // idempotent
		t.Fatal(err)
	}
	if got, _ := s2.LastCommitted(); got != 1 {
		t.Fatalf("LastCommitted = %d, want 1", got)
	}
	// A transaction the checkpoint lists that was rolled back by hand is
	// lost output: recovery refuses.
	w := newTestWriter(t, s2, 0)
	write(t, w, 0, 5)
	st, err := w.PreCommit(5)
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, conn, "ROLLBACK PREPARED '"+gid(s.prefix, txnRef{0, 5})+"'")
	if err := s2.Recover([][]byte{st}); err == nil || !strings.Contains(err.Error(), "neither prepared nor committed") {
		t.Fatalf("Recover of a lost transaction: %v", err)
	}
}

func TestSinkUpsert(t *testing.T) {
	conn := dial(t)
	table := newTable(t, conn, Upsert)
	s := newTestSink(t, table, Upsert)
	if err := s.Recover(nil); err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, s, 0)
	write(t, w, 0, 1000) // keys 0..9 written 100 times each, several batches
	if _, err := w.PreCommit(1); err != nil {
		t.Fatal(err)
	}
	write(t, w, 1000, 1100) // buffered: checkpoint 1 holds the rows' locks
	_, err := w.PreCommit(2)
	if !errors.Is(err, ErrDeclined) {
		t.Fatalf("pre-commit while 1 is pending: %v, want ErrDeclined", err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, conn, "SELECT sum(seq) FROM "+table); got != 990+991+992+993+994+995+996+997+998+999 {
		t.Fatalf("sum of last seqs = %d after commit 1", got)
	}
	write(t, w, 1100, 1200)
	if _, err := w.PreCommit(3); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(3); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, conn, "SELECT sum(seq) FROM "+table); got != 1190+1191+1192+1193+1194+1195+1196+1197+1198+1199 {
		t.Fatalf("sum of last seqs = %d after commit 3", got)
	}
	if got := count(t, conn, table); got != 10 {
		t.Fatalf("%d rows, want 10", got)
	}
}

func TestSinkErrorsAtStart(t *testing.T) {
	conn := dial(t)
	table := newTable(t, conn, Upsert)
	f := func(name string, mutate func(*SinkOptions[rec]), want string) {
		t.Helper()
		o := testOptions(table, Upsert)
		mutate(&o)
		s, err := NewSink(jobOf(table), o)
		if err == nil {
			defer s.Close()
			_, err = s.LastCommitted()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	t.Setenv("STREAMD_PG_TEST_PASSWORD", "s3cr3t-pw")
	f("missing table", func(o *SinkOptions[rec]) { o.Table = "streamd_no_such_table" }, "does not exist")
	f("missing column", func(o *SinkOptions[rec]) { o.Columns = []string{"k", "n", "nope"} }, "lacks a column")
	f("no unique index on the key", func(o *SinkOptions[rec]) { o.Key = []string{"n"} }, "unique index")
	// The server trusts local connections, so a wrong password cannot be
	// refused; an unknown role is, and the password must not show.
	f("unknown role with a password", func(o *SinkOptions[rec]) {
		o.URL = strings.Replace(pgURL(), "postgres@", "streamd_no_such_role@", 1)
		o.PasswordEnv = "STREAMD_PG_TEST_PASSWORD"
	}, "cannot connect")
	f("nothing listens", func(o *SinkOptions[rec]) {
		o.URL = "postgres://postgres@127.0.0.1:1/test"
		o.PasswordEnv = "STREAMD_PG_TEST_PASSWORD"
	}, "cannot connect")
	f("a password in the URL", func(o *SinkOptions[rec]) { o.URL = "postgres://postgres:s3cr3t-pw@127.0.0.1:5432/test" }, "URL holds a password")
	f("no key in upsert mode", func(o *SinkOptions[rec]) { o.Key = nil }, "needs Key columns")
}

// TestSinkOneRunAtATime: a second sink of the same job and table is
// refused while the first holds the advisory lock.
func TestSinkOneRunAtATime(t *testing.T) {
	conn := dial(t)
	table := newTable(t, conn, Append)
	s := newTestSink(t, table, Append)
	if _, err := s.LastCommitted(); err != nil {
		t.Fatal(err)
	}
	s2 := newTestSink(t, table, Append)
	if _, err := s2.LastCommitted(); err == nil || !strings.Contains(err.Error(), "one run at a time") {
		t.Fatalf("second run: %v", err)
	}
	s.Close()
	if _, err := s2.LastCommitted(); err != nil {
		t.Fatal(err)
	}
}

// --- the job in a child process, killed ------------------------------------

const childEnv = "STREAMD_PG_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs the test job: a splittable sequence at a fixed rate into
// the sink, directly (append) or through a keyed count (upsert: the row of
// a key holds its count), with checkpoints every 30 ms.
func runChild(modeName string) error {
	env := func(k string) int64 {
		n, err := strconv.ParseInt(os.Getenv(k), 10, 64)
		if err != nil {
			panic(fmt.Sprintf("child: %s: %v", k, err))
		}
		return n
	}
	table := os.Getenv("STREAMD_PG_TABLE")
	mode := Append
	if modeName == "upsert" {
		mode = Upsert
	}
	store, err := snapshot.Open(os.Getenv("STREAMD_PG_DATA"), snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	job := engine.NewJob(jobOf(table), engine.Options{
		Parallelism: int(env("STREAMD_PG_PAR")),
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 30 * time.Millisecond, Mode: engine.ExactlyOnce},
			Store:   store,
		},
		Logger: func(string, ...any) {},
	})
	src := sequence.NewSplitSource(sequence.Options[rec]{
		Count: env("STREAMD_PG_COUNT"), Keys: env("STREAMD_PG_KEYS"), RatePerSec: float64(env("STREAMD_PG_RATE")),
		Make: func(i, key int64, r *rec) { *r = rec{Seq: i, Key: key, N: 1} },
	})
	s := engine.FromSplitSource(job, "source", src, src.NewReader)
	if mode == Upsert {
		byKey := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
		s = engine.Process(byKey, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *rec, func(*rec)), error) {
			st, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
			if err != nil {
				return nil, err
			}
			return func(_ *engine.KeyedContext, r *rec, emit func(*rec)) {
				n, _ := st.Get()
				st.Put(n + 1)
				r.N = n + 1
				emit(r)
			}, nil
		})
	}
	sink, err := NewSink(jobOf(table), testOptions(table, mode))
	if err != nil {
		return err
	}
	// A commit that waits widens the window between a checkpoint's
	// metadata and its commit, so that kills land there too and recovery
	// must commit what the checkpoint lists.
	engine.ToSink(s, "pg", engine.Sink[rec](slowCommitSink{sink}))
	fmt.Println("started")
	return job.Run(context.Background())
}

type childJob struct {
	mode                   Mode
	table, data            string
	count, keys, rate, par int64
}

func (c childJob) cmd() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+c.mode.String(), "STREAMD_PG_TABLE="+c.table, "STREAMD_PG_DATA="+c.data,
		fmt.Sprintf("STREAMD_PG_COUNT=%d", c.count), fmt.Sprintf("STREAMD_PG_KEYS=%d", c.keys),
		fmt.Sprintf("STREAMD_PG_RATE=%d", c.rate), fmt.Sprintf("STREAMD_PG_PAR=%d", c.par))
	return cmd
}

// runToEnd reruns the job until it exits 0 (a run may fail while the
// server comes back).
func (c childJob) runToEnd(t *testing.T) {
	t.Helper()
	var out []byte
	var err error
	for range 20 {
		out, err = c.cmd().CombinedOutput()
		if err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the job does not finish: %v\n%s", err, out)
}

// check verifies the table holds exactly the job's output and that no
// transaction of the job is left prepared.
func (c childJob) check(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	if c.mode == Append {
		var n, distinct, lo, hi int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), -1), coalesce(max(seq), -1) FROM "+c.table).Scan(&n, &distinct, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != c.count || distinct != c.count || lo != 0 || hi != c.count-1 {
			t.Fatalf("table holds %d rows, %d distinct seqs in [%d, %d]; want each of [0, %d) once", n, distinct, lo, hi, c.count)
		}
	} else {
		var n, sum, bad int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*), coalesce(sum(n), 0), count(*) FILTER (WHERE n <> $1) FROM "+c.table, c.count/c.keys).Scan(&n, &sum, &bad); err != nil {
			t.Fatal(err)
		}
		if n != c.keys || sum != c.count || bad != 0 {
			t.Fatalf("table holds %d keys, counts summing to %d, %d keys with a count other than %d; want %d keys", n, sum, bad, c.count/c.keys, c.keys)
		}
	}
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, $1)", gidPrefix(jobOf(c.table), c.table)); n != 0 {
		t.Fatalf("%d prepared transactions of the job left", n)
	}
}

func testKillLoop(t *testing.T, mode Mode) {
	conn := dial(t)
	c := childJob{mode: mode, table: newTable(t, conn, mode), data: filepath.Join(t.TempDir(), "data"),
		count: 40_000, keys: 40, rate: 10_000, par: 2}
	kills := 0
	for run := 0; kills < 10; run++ {
		c.par = int64(1 + run%2) // restores rescale between 1 and 2 tasks
		cmd := c.cmd()
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+rand.IntN(450)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			kills++
		case err != nil:
			t.Fatalf("run %d failed: %v\n%s", run, err, out.String())
		}
		if run > 40 {
			t.Fatalf("only %d kills in %d runs", kills, run)
		}
	}
	// The kills must have landed mid-output, or the test proves nothing.
	if n := count(t, conn, c.table); n == 0 {
		t.Fatal("nothing committed before the last run: the kills came too early")
	}
	c.par = 2
	c.runToEnd(t)
	c.check(t, conn)
	c.runToEnd(t) // nothing to do: the output stays exact
	c.check(t, conn)
	t.Logf("%d kills", kills)
}

func TestKillLoopAppend(t *testing.T) { testKillLoop(t, Append) }
func TestKillLoopUpsert(t *testing.T) { testKillLoop(t, Upsert) }

// failMidJob starts the job, breaks the server under it after a while, and
// checks it fails with a message that says what could not be done; then a
// rerun recovers with exact output.
func failMidJob(t *testing.T, mode Mode, breakIt func(c childJob)) {
	conn := dial(t)
	c := childJob{mode: mode, table: newTable(t, conn, mode), data: filepath.Join(t.TempDir(), "data"),
		count: 30_000, keys: 30, rate: 10_000, par: 2}
	cmd := c.cmd()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	breakIt(c)
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the job finished although its server broke:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "postgres: sink") {
		t.Fatalf("the job failed without naming the sink:\n%s", out.String())
	}
	t.Logf("the job failed with: %s", firstLine(out.String(), "child:"))
	c.runToEnd(t)
	conn = dial(t) // the old connection may have died with the server
	c.check(t, conn)
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestDroppedConnection(t *testing.T) {
	for _, mode := range []Mode{Append, Upsert} {
		t.Run(mode.String(), func(t *testing.T) {
			failMidJob(t, mode, func(c childJob) {
				conn := dial(t)
				n := queryInt(t, conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE $1",
					appName(jobOf(c.table), "t")+"%")
				if n == 0 {
					t.Fatal("no backend of the sink's writers to terminate")
				}
			})
		})
	}
}

func TestServerRestart(t *testing.T) {
	dial(t)
	restart := os.Getenv("STREAMD_PG_RESTART_CMD")
	if restart == "" {
		restart = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"
	}
	failMidJob(t, Append, func(childJob) {
		out, err := exec.Command("sh", "-c", restart).CombinedOutput()
		if err != nil {
			msg := fmt.Sprintf("cannot restart the server with %q (set STREAMD_PG_RESTART_CMD): %v\n%s", restart, err, out)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	})
}

// slowCommitSink is the real sink whose writers wait 20 ms before each
// commit.
type slowCommitSink struct{ *Sink[rec] }

func (s slowCommitSink) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[rec], error) {
	w, err := s.Sink.NewWriter(ctx)
	return slowCommitWriter{w}, err
}

type slowCommitWriter struct{ engine.SinkWriter[rec] }

func (w slowCommitWriter) Commit(id uint64) error {
	time.Sleep(20 * time.Millisecond)
	return w.SinkWriter.Commit(id)
}
