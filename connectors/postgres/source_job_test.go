package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The source's job runs in a child process, which the test kills. The
// child is started by this package's test binary; init catches it before
// TestMain (pg_test.go's, which starts the sink's children).
const sourceChildEnv = "STREAMD_PG_SOURCE_CHILD"

func init() {
	if os.Getenv(sourceChildEnv) == "" {
		return
	}
	if err := runSourceChild(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// counted is the output record: a row's id and key, and the running count
// of its key.
type counted struct {
	ID int64 `json:"id"`
	K  int64 `json:"k"`
	N  int64 `json:"n"`
}

// runSourceChild runs the test job: the table, unbounded, keyed by k,
// counted per key (keyed state), into a file sink, with checkpoints every
// 30 ms. With STREAMD_PG_SOURCE_EXPECT it stops (a final checkpoint) once
// the sink's directory holds that many committed records.
func runSourceChild() error {
	par, _ := strconv.Atoi(os.Getenv("STREAMD_PG_SOURCE_PAR"))
	expect, _ := strconv.Atoi(os.Getenv("STREAMD_PG_SOURCE_EXPECT"))
	table, out := os.Getenv("STREAMD_PG_SOURCE_TABLE"), os.Getenv("STREAMD_PG_SOURCE_OUT")
	store, err := snapshot.Open(os.Getenv("STREAMD_PG_SOURCE_DATA"), snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	j := engine.NewJob("pgsrc", engine.Options{
		Parallelism: par,
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 30 * time.Millisecond, Mode: engine.ExactlyOnce},
			Store:   store,
		},
		Logger: func(string, ...any) {},
	})
	src, err := NewSource(itemOptions(table))
	if err != nil {
		return err
	}
	s := engine.FromSplitSource(j, "rows", src, src.NewReader)
	byKey := engine.KeyBy(s, engine.Int64Key(func(v *item) int64 { return v.K }))
	counts := engine.Process(byKey, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *item, func(*counted)), error) {
		st, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, v *item, emit func(*counted)) {
			n, _ := st.Get()
			st.Put(n + 1)
			emit(&counted{ID: v.ID, K: v.K, N: n + 1})
		}, nil
	})
	sink, err := file.NewSink("pgsrc", file.SinkOptions[counted]{Dir: out, Encode: func(dst []byte, c *counted) []byte {
		return fmt.Appendf(dst, `{"id":%d,"k":%d,"n":%d}`, c.ID, c.K, c.N)
	}})
	if err != nil {
		return err
	}
	engine.ToSink(counts, "out", engine.Sink[counted](sink))
	if expect > 0 {
		go func() {
			for {
				time.Sleep(20 * time.Millisecond)
				if recs, err := readCounted(out); err == nil && len(recs) >= expect {
					j.Stop()
					return
				}
			}
		}()
	}
	return j.Run(context.Background())
}

// readCounted reads every committed record of the sink's directory.
func readCounted(dir string) ([]counted, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []counted
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var c counted
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, c)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TestSourceKillLoop kills the job (SIGKILL) ten times while writers
// insert rows in concurrent transactions that commit out of order, and
// restores it at parallelism 1 and 2 in turn; then it lets the job read
// everything. The output holds every row of the table exactly once, and
// each key's counts are exactly 1..its rows: positions and keyed state
// restored together.
func TestSourceKillLoop(t *testing.T) {
	conn := dialSource(t)
	table := newSourceTable(t, conn, "k bigint NOT NULL")
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	child := func(ctx context.Context, par, expect int) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), sourceChildEnv+"=1", "STREAMD_PG_SOURCE_TABLE="+table, "STREAMD_PG_SOURCE_OUT="+out,
			"STREAMD_PG_SOURCE_DATA="+data, fmt.Sprintf("STREAMD_PG_SOURCE_PAR=%d", par), fmt.Sprintf("STREAMD_PG_SOURCE_EXPECT=%d", expect))
		return cmd
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 3 {
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
				for range 1 + rand.IntN(5) {
					if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (k) VALUES ($1)", rand.IntN(20)); err != nil {
						t.Error(err)
						return
					}
				}
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				if w == 0 && rand.IntN(5) == 0 {
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
	defer func() { stop.Store(true); wg.Wait() }()
	kills := 0
	for run := 0; kills < 10; run++ {
		cmd := child(context.Background(), 1+run%2, 0)
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
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
			t.Fatalf("run %d failed: %v\n%s", run, err, log.String())
		}
		if run > 30 {
			t.Fatalf("only %d kills in %d runs", kills, run)
		}
	}
	stop.Store(true)
	wg.Wait()
	if recs, err := readCounted(out); err != nil || len(recs) == 0 {
		t.Fatalf("nothing committed before the last run (%v): the kills came too early", err)
	}
	rows, _ := conn.Query(context.Background(), "SELECT id, k FROM "+table+" ORDER BY id")
	want, err := pgx.CollectRows(rows, pgx.RowToStructByPos[item])
	if err != nil {
		t.Fatal(err)
	}
	// The last run stops once it has written a record per row: one that
	// lost a row would never stop.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log, err := child(ctx, 2, len(want)).CombinedOutput()
	got, rerr := readCounted(out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("the last run failed with %d records for %d rows: %v\n%s", len(got), len(want), err, log)
	}
	byID := make(map[int64]counted, len(got))
	counts := make(map[int64][]bool)
	for _, c := range got {
		if _, dup := byID[c.ID]; dup {
			t.Fatalf("row %d read twice", c.ID)
		}
		byID[c.ID] = c
	}
	perKey := make(map[int64]int64)
	for _, w := range want {
		c, ok := byID[w.ID]
		if !ok {
			t.Fatalf("row %d (of %d) never read", w.ID, len(want))
		}
		if c.K != w.K {
			t.Fatalf("row %d has key %d, read %d", w.ID, w.K, c.K)
		}
		perKey[w.K]++
	}
	if len(got) != len(want) {
		t.Fatalf("%d records for %d rows", len(got), len(want))
	}
	for _, c := range got {
		if counts[c.K] == nil {
			counts[c.K] = make([]bool, perKey[c.K]+1)
		}
		if c.N < 1 || c.N > perKey[c.K] || counts[c.K][c.N] {
			t.Fatalf("key %d: count %d twice or beyond its %d rows", c.K, c.N, perKey[c.K])
		}
		counts[c.K][c.N] = true
	}
	t.Logf("%d kills; %d rows read exactly once", kills, len(want))
}
