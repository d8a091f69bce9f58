package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/streamd/streamd/connectors/nexmark"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestExamplesValidate runs `streamd validate` on every examples/*.yaml:
// the examples the README points to must stay valid specs.
func TestExamplesValidate(t *testing.T) {
	wd, _ := os.Getwd()
	files, err := filepath.Glob(filepath.Join(wd, "..", "..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		code, stdout, stderr := run(t, t.TempDir(), "validate", f)
		if code != 0 {
			t.Errorf("streamd validate %s: exit %d\n%s%s", filepath.Base(f), code, stdout, stderr)
		}
	}
}

// TestExampleNexmarkWindows runs examples/nexmark/*.yaml with `streamd
// run` and compares their output with the same windows computed in batch
// over nexmark.EventAt: every window of every key, with the same counts and
// aggregates (the generator's timestamps do not go back within a split, so
// no record is late).
func TestExampleNexmarkWindows(t *testing.T) {
	wd, _ := os.Getwd()
	dir := filepath.Join(wd, "..", "..", "examples", "nexmark")
	type win struct{ key, start int64 }
	type agg struct {
		n, top, sum int64
	}
	// batch computes the windows of size/slide ms of the bids, keyed by key.
	// the first events events of the generator (as the example says).
	batch := func(events int64, key func(b *nexmark.Bid) int64, sizeMs, slideMs int64) map[win]*agg {
		out := map[win]*agg{}
		for n := int64(0); n < events; n++ {
			e := nexmark.EventAt(nexmark.Config{}, n)
			if e.Kind != nexmark.KindBid {
				continue
			}
			ts := e.Bid.DateTime
			last := ts - ((ts%slideMs)+slideMs)%slideMs
			for s := last; s > ts-sizeMs; s -= slideMs {
				w := win{key(&e.Bid), s}
				a := out[w]
				if a == nil {
					a = &agg{top: e.Bid.Price}
					out[w] = a
				}
				a.n++
				a.top = max(a.top, e.Bid.Price)
				a.sum += e.Bid.Price
			}
		}
		return out
	}
	type row struct {
		Auction, Bidder, WindowStart, WindowEnd, Bids, Top int64
		AvgPrice, Dollars                                  float64
	}
	runExample := func(name string) []row {
		code, stdout, stderr := run(t, t.TempDir(), "run", filepath.Join(dir, name))
		if code != 0 {
			t.Fatalf("streamd run %s: exit %d\n%s", name, code, stderr)
		}
		var rows []row
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var r struct {
				Auction     int64   `json:"auction"`
				Bidder      int64   `json:"bidder"`
				WindowStart int64   `json:"window_start"`
				WindowEnd   int64   `json:"window_end"`
				Bids        int64   `json:"bids"`
				Top         int64   `json:"top"`
				AvgPrice    float64 `json:"avg_price"`
				Dollars     float64 `json:"dollars"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: output line %q: %v", name, line, err)
			}
			rows = append(rows, row{r.Auction, r.Bidder, r.WindowStart, r.WindowEnd, r.Bids, r.Top, r.AvgPrice, r.Dollars})
		}
		return rows
	}

	t.Run("hot-items", func(t *testing.T) {
		want := batch(20000, func(b *nexmark.Bid) int64 { return b.Auction }, 10000, 2000)
		rows := runExample("hot-items.yaml")
		if len(rows) != len(want) {
			t.Errorf("%d windows, want %d", len(rows), len(want))
		}
		for _, r := range rows {
			a := want[win{r.Auction, r.WindowStart}]
			switch {
			case r.WindowEnd != r.WindowStart+10000:
				t.Fatalf("window [%d, %d) is not 10 s long", r.WindowStart, r.WindowEnd)
			case a == nil:
				t.Fatalf("auction %d, window at %d: not in the batch result", r.Auction, r.WindowStart)
			case r.Bids != a.n:
				t.Fatalf("auction %d, window at %d: %d bids, want %d", r.Auction, r.WindowStart, r.Bids, a.n)
			}
		}
	})
	t.Run("bid-stats", func(t *testing.T) {
		want := batch(200000, func(b *nexmark.Bid) int64 { return b.Bidder }, 10000, 10000)
		rows := runExample("bid-stats.yaml")
		starts := map[int64]bool{}
		for w := range want {
			starts[w.start] = true
		}
		if len(starts) < 2 {
			t.Fatalf("the example's events span %d windows; the test wants several", len(starts))
		}
		if len(rows) != len(want) {
			t.Errorf("%d windows, want %d", len(rows), len(want))
		}
		for _, r := range rows {
			a := want[win{r.Bidder, r.WindowStart}]
			if a == nil {
				t.Fatalf("bidder %d, window at %d: not in the batch result", r.Bidder, r.WindowStart)
			}
			avg, dollars := float64(a.sum)/float64(a.n), float64(a.sum)/100
			if r.Bids != a.n || r.Top != a.top || math.Abs(r.AvgPrice-avg) > 1e-9*avg || math.Abs(r.Dollars-dollars) > 1e-9*dollars {
				t.Fatalf("bidder %d, window at %d: got %+v, want n=%d top=%d avg=%v dollars=%v", r.Bidder, r.WindowStart, r, a.n, a.top, avg, dollars)
			}
		}
	})
}

// TestExampleNexmarkNewUsers runs examples/nexmark/new-users.yaml (a
// window join of two nexmark sources, after Nexmark's q8) with `streamd
// run` and compares its pairs with the same join computed in batch over
// nexmark.EventAt: a person and an auction they sell in the same 10 s
// window.
func TestExampleNexmarkNewUsers(t *testing.T) {
	wd, _ := os.Getwd()
	spec := filepath.Join(wd, "..", "..", "examples", "nexmark", "new-users.yaml")
	const events, sizeMs = 100000, 10000
	type key struct{ id, window int64 }
	persons := map[key][]nexmark.Person{}
	var want []string
	var auctions []nexmark.Auction
	for n := int64(0); n < events; n++ {
		e := nexmark.EventAt(nexmark.Config{}, n)
		switch e.Kind {
		case nexmark.KindPerson:
			k := key{e.Person.ID, e.Person.DateTime / sizeMs}
			persons[k] = append(persons[k], e.Person)
		case nexmark.KindAuction:
			auctions = append(auctions, e.Auction)
		}
	}
	for _, a := range auctions {
		for _, p := range persons[key{a.Seller, a.DateTime / sizeMs}] {
			b, _ := json.Marshal(map[string]any{"id": p.ID, "name": p.Name, "auction": a.ID, "reserve": a.Reserve, "auction_time": a.DateTime})
			want = append(want, string(b))
		}
	}
	code, stdout, stderr := run(t, t.TempDir(), "run", spec)
	if code != 0 {
		t.Fatalf("streamd run new-users.yaml: exit %d\n%s", code, stderr)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		b, _ := json.Marshal(m) // keys sorted, as want's
		got = append(got, string(b))
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) < 100 {
		t.Fatalf("the batch join has %d pairs; the example should have more", len(want))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%d pairs, want %d; got %.300q, want %.300q", len(got), len(want), got, want)
	}
	if !strings.Contains(stderr, `join "join-1" dropped 0 late records`) {
		t.Errorf("stderr does not say that the join dropped no late records:\n%s", stderr)
	}
}

// TestExamplesNexmarkValidate validates examples/nexmark/*.yaml as
// TestExamplesValidate does the others.
func TestExamplesNexmarkValidate(t *testing.T) {
	wd, _ := os.Getwd()
	files, _ := filepath.Glob(filepath.Join(wd, "..", "..", "examples", "nexmark", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("examples/nexmark has %d specs, want hot-items.yaml and bid-stats.yaml", len(files))
	}
	for _, f := range files {
		if code, stdout, stderr := run(t, t.TempDir(), "validate", f); code != 0 {
			t.Errorf("streamd validate %s: exit %d\n%s%s", filepath.Base(f), code, stdout, stderr)
		}
	}
}

// TestExampleNexmarkSelections runs the q1 and q2 examples and compares
// their output with the bids of the same events.
func TestExampleNexmarkSelections(t *testing.T) {
	wd, _ := os.Getwd()
	dir := filepath.Join(wd, "..", "..", "examples", "nexmark")
	type out struct {
		Kind    string   `json:"kind"`
		Auction int64    `json:"auction"`
		Bidder  int64    `json:"bidder"`
		Price   int64    `json:"price"`
		Euros   *float64 `json:"euros"`
	}
	for _, c := range []struct {
		file   string
		events int64
		keep   func(b *nexmark.Bid) bool
	}{
		{"q1.yaml", 20_000, func(*nexmark.Bid) bool { return true }},
		{"q2.yaml", 200_000, func(b *nexmark.Bid) bool { return b.Auction%123 == 0 }},
	} {
		t.Run(c.file, func(t *testing.T) {
			want := map[[3]int64]int{}
			for n := range c.events {
				e := nexmark.EventAt(nexmark.Config{}, n)
				if e.Kind == nexmark.KindBid && c.keep(&e.Bid) {
					want[[3]int64{e.Bid.Auction, e.Bid.Bidder, e.Bid.Price}]++
				}
			}
			code, stdout, stderr := run(t, t.TempDir(), "run", filepath.Join(dir, c.file))
			if code != 0 {
				t.Fatalf("streamd run %s: exit %d\n%s", c.file, code, stderr)
			}
			got := map[[3]int64]int{}
			for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
				var r out
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("output line %q: %v", line, err)
				}
				if r.Kind != "bid" {
					t.Fatalf("a %s passed the filter: %s", r.Kind, line)
				}
				if c.file == "q1.yaml" && (r.Euros == nil || *r.Euros != float64(r.Price)*0.908) {
					t.Fatalf("euros of %s: want price × 0.908", line)
				}
				got[[3]int64{r.Auction, r.Bidder, r.Price}]++
			}
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("%d distinct bids, want %d", len(got), len(want))
			}
			for k, n := range want {
				if got[k] != n {
					t.Fatalf("bid %v: %d times, want %d", k, got[k], n)
				}
			}
		})
	}
}

// exampleCount is an output record of examples/kafka-counts.yaml and
// examples/nats-counts.yaml.
type exampleCount struct {
	User  string `json:"user"`
	Count int64  `json:"count"`
}

// checkExampleCounts checks the output of a running count per user over
// clicks, click i of user "u<i%users>": every user's counts are exactly
// 1..n/users.
func checkExampleCounts(t *testing.T, rows []exampleCount, n, users int) {
	t.Helper()
	if len(rows) != n {
		t.Fatalf("%d output records, want %d", len(rows), n)
	}
	counts := make(map[string][]int64)
	for _, r := range rows {
		counts[r.User] = append(counts[r.User], r.Count)
	}
	for u := range users {
		c := counts["u"+strconv.Itoa(u)]
		slices.Sort(c)
		if len(c) != n/users {
			t.Fatalf("user u%d: %d counts, want %d", u, len(c), n/users)
		}
		for i, v := range c {
			if v != int64(i+1) {
				t.Fatalf("user u%d: counts %v, want 1..%d", u, c, n/users)
			}
		}
	}
}

// TestExampleKafkaCounts runs examples/kafka-counts.yaml with `streamd
// run` against an in-process Kafka (kfake) in place of its brokers and
// checks the committed output exactly.
func TestExampleKafkaCounts(t *testing.T) {
	const n, users = 400, 4
	wd, _ := os.Getwd()
	spec, err := os.ReadFile(filepath.Join(wd, "..", "..", "examples", "kafka-counts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "clicks", "click-counts"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	if !bytes.Contains(spec, []byte(`["127.0.0.1:9092"]`)) {
		t.Fatal("examples/kafka-counts.yaml no longer names its brokers as the test expects")
	}
	spec = bytes.ReplaceAll(spec, []byte(`["127.0.0.1:9092"]`), []byte(`["`+strings.Join(brokers, `", "`)+`"]`))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		r := &kgo.Record{Value: fmt.Appendf(nil, `{"user": "u%d", "page": "/p%d"}`, i%users, i)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, dir, "run", "--data-dir", dir, "job.yaml"); code != 0 {
		t.Fatalf("streamd run: exit %d\n%s", code, stderr)
	}

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "click-counts")
	if err != nil {
		t.Fatal(err)
	}
	left := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("click-counts"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var rows []exampleCount
	for len(left) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the output: timed out with %v left", left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var row exampleCount
			if err := json.Unmarshal(r.Value, &row); err != nil || string(r.Key) != row.User {
				t.Fatalf("output record key %q value %q: %v", r.Key, r.Value, err)
			}
			rows = append(rows, row)
		})
	}
	checkExampleCounts(t, rows, n, users)
}

// TestExampleNATSCounts runs examples/nats-counts.yaml with `streamd run`
// against the NATS server at STREAMD_NATS_URL (skipped loudly when there is
// none, failed under CI), its streams renamed for the test, and checks the
// output stream exactly.
func TestExampleNATSCounts(t *testing.T) {
	const n, users = 300, 3
	url := os.Getenv("STREAMD_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	if err != nil {
		msg := fmt.Sprintf("NO NATS SERVER at %s (set STREAMD_NATS_URL; .ci/setup-nats.sh starts one): %v", url, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wd, _ := os.Getwd()
	spec, err := os.ReadFile(filepath.Join(wd, "..", "..", "examples", "nats-counts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, inSubj, outSubj := "EXCLICKS_"+id, "exclicks."+id, "exclick-counts."+id
	for from, to := range map[string]string{"url: nats://127.0.0.1:4222": "url: " + url, "stream: CLICKS": "stream: " + in,
		"subject: click-counts": "subject: " + outSubj, "name: nats-counts": "name: nats-counts-" + strings.ToLower(id)} {
		if !bytes.Contains(spec, []byte(from)) {
			t.Fatalf("examples/nats-counts.yaml no longer says %q", from)
		}
		spec = bytes.ReplaceAll(spec, []byte(from), []byte(to))
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: in, Subjects: []string{inSubj + ".>"}, Storage: jetstream.MemoryStorage},
		{Name: "EXOUT_" + id, Subjects: []string{outSubj}, Storage: jetstream.MemoryStorage, Duplicates: 5 * time.Minute},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		name := cfg.Name
		defer js.DeleteStream(context.Background(), name)
	}
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("%s.u%d", inSubj, i%users), fmt.Appendf(nil, `{"user":"u%d"}`, i%users)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, dir, "run", "--data-dir", dir, "job.yaml"); code != 0 {
		t.Fatalf("streamd run: exit %d\n%s", code, stderr)
	}
	st, err := js.Stream(ctx, "EXOUT_"+id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []exampleCount
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var row exampleCount
		if err := json.Unmarshal(m.Data, &row); err != nil {
			t.Fatalf("output message %q: %v", m.Data, err)
		}
		rows = append(rows, row)
	}
	checkExampleCounts(t, rows, n, users)
}

// TestExamplePostgresCounts runs examples/postgres-counts.yaml with
// `streamd run` against the PostgreSQL server at STREAMD_PG_URL (skipped
// loudly when there is none, failed under CI), into a fresh table, with
// its password variable set (the test server trusts the host, so any
// value goes), and checks the table exactly: one row per key holding its
// final count.
func TestExamplePostgresCounts(t *testing.T) {
	const n, keys = 100000, 100
	url := os.Getenv("STREAMD_PG_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		msg := fmt.Sprintf("NO POSTGRESQL SERVER at %s (set STREAMD_PG_URL; .ci/setup-postgres.sh prepares one): %v", url, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	defer conn.Close(context.Background())
	wd, _ := os.Getwd()
	spec, err := os.ReadFile(filepath.Join(wd, "..", "..", "examples", "postgres-counts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	table := "ex_key_counts_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for from, to := range map[string]string{"url: postgres://streamd@127.0.0.1:5432/streamd?sslmode=disable": "url: " + url,
		"table: key_counts": "table: " + table, "count: 100000": "count: " + strconv.Itoa(n), "keys: 100": "keys: " + strconv.Itoa(keys)} {
		if !bytes.Contains(spec, []byte(from)) {
			t.Fatalf("examples/postgres-counts.yaml no longer says %q", from)
		}
		spec = bytes.ReplaceAll(spec, []byte(from), []byte(to))
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (key bigint PRIMARY KEY, count bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "DROP TABLE "+table)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the password variable the job does not start.
	if code, _, stderr := run(t, dir, "run", "--data-dir", filepath.Join(dir, "nopw"), "job.yaml"); code != 1 || !strings.Contains(stderr, "STREAMD_PG_PASSWORD") {
		t.Fatalf("streamd run without STREAMD_PG_PASSWORD: exit %d (want 1)\n%s", code, stderr)
	}
	t.Setenv("STREAMD_PG_PASSWORD", "unused-by-a-trusting-server")
	if code, _, stderr := run(t, dir, "run", "--data-dir", filepath.Join(dir, "data"), "job.yaml"); code != 0 {
		t.Fatalf("streamd run: exit %d\n%s", code, stderr)
	}
	rows, err := conn.Query(ctx, "SELECT key, count FROM "+table+" ORDER BY key")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Key, Count int64 }])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != keys {
		t.Fatalf("%d rows, want %d", len(got), keys)
	}
	for i, r := range got {
		if r.Key != int64(i) || r.Count != n/keys {
			t.Fatalf("row %d is %+v, want {Key:%d Count:%d}", i, r, i, n/keys)
		}
	}
}
