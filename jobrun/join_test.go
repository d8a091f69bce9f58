package jobrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/snapshot"
)

// readLines reads every committed JSON line of the file sink's dir as
// fields of JSON integers and strings.
func readLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			d.UseNumber()
			if err := d.Decode(&m); err != nil {
				t.Fatalf("%s: %q: %v", name, sc.Text(), err)
			}
			out = append(out, m)
		}
	}
	return out
}

// line renders an output record's fields, in the order given, as a
// comparable string.
func line(m map[string]any, fields ...string) string {
	var parts []string
	for _, f := range fields {
		parts = append(parts, fmt.Sprint(m[f]))
	}
	return strings.Join(parts, "|")
}

// sortedDiff reports the first difference of two sorted multisets.
func sortedDiff(got, want []string) string {
	slices.Sort(got)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return ""
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("%d records, want %d; first difference at %d: got %q, want %q", len(got), len(want), i, got[i], want[i])
		}
	}
	return fmt.Sprintf("%d records, want %d", len(got), len(want))
}

const windowJoinSpec = `
name: new-users
parallelism: 2
sources:
  - name: persons
    type: nexmark
    events: 60000
    event_time: {field: dateTime}
    pipeline:
      - filter: 'kind == "person"'
  - name: auctions
    type: nexmark
    events: 60000
    event_time: {field: dateTime}
    pipeline:
      - filter: 'kind == "auction"'
      - map: {seller_id: seller}
pipeline:
  - join:
      left: persons
      right: auctions
      on: {left: id, right: seller_id}
      window: {tumbling: 10s}
      select: [left.id, left.name, right.reserve, right.dateTime]
  - map: {auction_time: dateTime}
sink: {type: file, path: OUT}
`

// TestWindowJoinMatchesBatch runs a q8-like window join of two nexmark
// sources (persons, and auctions whose seller is a person of the same 10 s
// window) and compares its output with the same join computed over
// nexmark.EventAt. The generator's timestamps do not go back within a
// split, so no record is late.
func TestWindowJoinMatchesBatch(t *testing.T) {
	const events, sizeMs = 60000, 10000
	out := filepath.Join(t.TempDir(), "out")
	b := build(t, strings.Replace(windowJoinSpec, "OUT", out, 1), Options{Pinning: engine.PinOff, Logger: func(string, ...any) {}})
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	type key struct{ id, window int64 }
	persons := map[key][]nexmark.Person{}
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
	var want []string
	for _, a := range auctions {
		for _, p := range persons[key{a.Seller, a.DateTime / sizeMs}] {
			want = append(want, fmt.Sprintf("%d|%s|%d|%d", p.ID, p.Name, a.Reserve, a.DateTime))
		}
	}
	if len(want) < 50 {
		t.Fatalf("the batch join has %d pairs; the test wants more", len(want))
	}
	var got []string
	for _, m := range readLines(t, out) {
		got = append(got, line(m, "id", "name", "reserve", "auction_time"))
	}
	if d := sortedDiff(got, want); d != "" {
		t.Fatal(d)
	}
	if late := b.LateRecords()["join-1"]; late != 0 {
		t.Fatalf("the join dropped %d late records", late)
	}
}

const regularJoinSpec = `
name: q3
parallelism: 2
checkpointing: {interval: 50ms}
sources:
  - name: persons
    type: nexmark
    events: 40000
    rate: 20000
    pipeline:
      - filter: 'kind == "person" && state in ["OR", "ID", "CA"]'
  - name: auctions
    type: nexmark
    events: 40000
    rate: 20000
    pipeline:
      - filter: 'kind == "auction" && category == 10'
pipeline:
  - name: q3-join
    join:
      left: persons
      right: auctions
      on: {left: id, right: seller}
      select:
        name: left.name
        city: left.city
        state: left.state
        auction: right.id
sink: {type: file, path: OUT}
`

// TestRegularJoinSurvivesCrash runs a q3-like regular join (persons in
// OR, ID or CA with the category-10 auctions they sell) with checkpoints,
// cancels it once three checkpoints have completed and output is
// committed, reruns it over the same data dir to the end, and compares the
// committed union with the join computed over nexmark.EventAt: every pair
// exactly once (the join's stored records come back from the checkpoint).
func TestRegularJoinSurvivesCrash(t *testing.T) {
	const events = 40000
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	spec := strings.Replace(regularJoinSpec, "OUT", out, 1)
	run := func(cancelAfter int64) (checkpoints int64) {
		store, err := snapshot.Open(data, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		plan, err := job.Load("q3.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var completed atomic.Int64
		b, err := Build(plan, Options{Store: store, Pinning: engine.PinOff, Logger: func(string, ...any) {},
			OnCheckpoint: func(s engine.CheckpointStats) {
				if s.Status != "completed" {
					return
				}
				// Output is committed once its checkpoint completed: a
				// committed file means an earlier checkpoint's output.
				if n := completed.Add(1); cancelAfter > 0 && n >= cancelAfter {
					if files, _ := filepath.Glob(filepath.Join(out, "*.jsonl")); len(files) > 0 {
						cancel()
					}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Run(ctx); err != nil && !(cancelAfter > 0 && errors.Is(err, context.Canceled)) {
			t.Fatal(err)
		}
		return completed.Load()
	}
	var want []string
	persons := map[int64][]nexmark.Person{}
	var auctions []nexmark.Auction
	for n := int64(0); n < events; n++ {
		e := nexmark.EventAt(nexmark.Config{}, n)
		switch {
		case e.Kind == nexmark.KindPerson && slices.Contains([]string{"OR", "ID", "CA"}, e.Person.State):
			persons[e.Person.ID] = append(persons[e.Person.ID], e.Person)
		case e.Kind == nexmark.KindAuction && e.Auction.Category == 10:
			auctions = append(auctions, e.Auction)
		}
	}
	for _, a := range auctions {
		for _, p := range persons[a.Seller] {
			want = append(want, fmt.Sprintf("%s|%s|%s|%d", p.Name, p.City, p.State, a.ID))
		}
	}
	if len(want) < 50 {
		t.Fatalf("the batch join has %d pairs; the test wants more", len(want))
	}
	n1 := run(3)
	first := len(readLines(t, out))
	if n1 < 3 || first == 0 || first >= len(want) {
		t.Fatalf("the first run completed %d checkpoints and committed %d of %d records; the test needs it cancelled mid-way after 3 checkpoints", n1, first, len(want))
	}
	run(0)
	var got []string
	for _, m := range readLines(t, out) {
		got = append(got, line(m, "name", "city", "state", "auction"))
	}
	if d := sortedDiff(got, want); d != "" {
		t.Fatal(d)
	}
	t.Logf("the first run committed %d records after %d checkpoints; then all %d", first, n1, len(got))
}
