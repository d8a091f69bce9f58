package jobrun

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/job"
)

func build(t *testing.T, spec string, opts Options) *Built {
	t.Helper()
	plan, err := job.Load("test.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Aggregations on the same key and parallelism share a task; a change of
// key reshuffles.
func TestKeyedChaining(t *testing.T) {
	b := build(t, `name: chain
parallelism: 2
source: {type: sequence, count: 100, keys: 10}
pipeline:
  - key_by: key
  - count: {}
  - filter: "count > 0"
  - sum: seq
  - map: {key: "seq % 3"}
  - key_by: key
  - max: seq
sink: {type: blackhole}
`, Options{})
	got := b.Job.Describe()
	want := "vertex 0 [source] parallelism=2\n" +
		"vertex 1 [count-1 -> filter-1 -> sum-1 -> map-1] parallelism=2 keyed input=vertex 0 (keyed)\n" +
		"vertex 2 [max-1 -> sink] parallelism=2 keyed input=vertex 1 (keyed)\n"
	if got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := b.Job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := b.Blackhole.Count(); n != 100 {
		t.Fatalf("blackhole saw %d records, want 100", n)
	}
}

func TestFileSourceToStdout(t *testing.T) {
	dir := t.TempDir()
	in := `{"user":"ann","amount":1.5,"qty":2}
{"user":"bob","amount":2,"qty":3}

{"user":"ann","amount":0.25,"qty":5}
`
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b := build(t, `name: files
source:
  type: file
  path: `+dir+`
  fields: {user: string, amount: float, qty: int}
pipeline:
  - map: {total: "amount * qty"}
  - key_by: user
  - sum: qty
sink: {type: stdout}
`, Options{Stdout: &out})
	if err := b.Job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `{"user":"ann","amount":1.5,"qty":2,"total":3,"sum":2}
{"user":"bob","amount":2,"qty":3,"total":6,"sum":3}
{"user":"ann","amount":0.25,"qty":5,"total":1.25,"sum":7}
`
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBadInputLineFailsNamingFileAndLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte("{\"qty\":1}\n{\"qty\":\"two\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, `name: bad
source: {type: file, path: `+dir+`, fields: {qty: int}}
sink: {type: blackhole}
`, Options{})
	err := b.Job.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "a.jsonl:2") {
		t.Fatalf("got %v, want an error naming a.jsonl:2", err)
	}
}
