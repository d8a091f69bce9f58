package nexmark

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSuite runs a small suite (two queries, two runs each, with their
// baselines and checkpoints) and checks the files it writes: every
// figure in the JSON under its documented name, the table's rows, and a
// PNG of the documented size.
func TestSuite(t *testing.T) {
	q0, _ := Lookup("q0")
	q2, _ := Lookup("q2")
	dir := filepath.Join(t.TempDir(), "results")
	env := CurrentEnv([]string{"streamd", "bench", "nexmark", "--suite"})
	results, err := RunSuite(context.Background(), SuiteConfig{
		Run:            RunConfig{Events: 30_000, Parallelism: 2, CheckpointInterval: 2 * time.Millisecond, CheckpointParent: t.TempDir()},
		Runs:           2,
		Baseline:       true,
		CheckpointCost: true,
		Queries:        []Query{q0, q2},
		Env:            env,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Query != "q0" || results[1].Query != "q2" {
		t.Fatalf("results for %d queries", len(results))
	}
	for _, r := range results {
		if len(r.Streamd.Runs) != 2 || r.Baseline == nil || len(r.Baseline.Runs) != 2 || r.StreamdVsBaseline == nil {
			t.Fatalf("%s: %d streamd runs, baseline %v", r.Query, len(r.Streamd.Runs), r.Baseline != nil)
		}
		if r.NoCheckpoints == nil || len(r.NoCheckpoints.Runs) != 2 || r.NoCheckpoints.CheckpointE2EP99Ms != nil || r.CheckpointCost == nil {
			t.Fatalf("%s: no runs without checkpoints, or they checkpointed, or no checkpoint cost", r.Query)
		}
		c0 := 1 - r.Streamd.Runs[0].EventsPerCPUSecond/r.NoCheckpoints.Runs[0].EventsPerCPUSecond
		c1 := 1 - r.Streamd.Runs[1].EventsPerCPUSecond/r.NoCheckpoints.Runs[1].EventsPerCPUSecond
		if c := r.CheckpointCost; c.Min != min(c0, c1) || c.Max != max(c0, c1) {
			t.Errorf("%s: checkpoint cost %+v is not paired run by run (%v, %v)", r.Query, c, c0, c1)
		}
		s := r.Streamd.EventsPerCPUSecond
		if !(s.Min <= s.Median && s.Median <= s.Max && s.Min > 0) {
			t.Errorf("%s: events per CPU-second spread %+v", r.Query, s)
		}
		if r.FlinkPerCoreEventsPerSecond == nil || *r.StreamdVsFlinkPerCore != s.Median / *r.FlinkPerCoreEventsPerSecond {
			t.Errorf("%s: Flink comparison missing or wrong", r.Query)
		}
		if r.Streamd.CheckpointE2EP99Ms == nil || r.Baseline.CheckpointE2EP99Ms != nil || r.Streamd.OutputLatencyP99Ms != nil {
			t.Errorf("%s: checkpoint figures for streamd only, no output latency (not windowed)", r.Query)
		}
	}
	if err := WriteSuite(dir, results); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(filepath.Join(dir, ResultFile("q0")))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"command_line", "date", "go_version", "gomaxprocs", "commit", "query", "sql", "runs", "events",
		"parallelism", "checkpoint_interval_ms", "peak_rss_method", "streamd", "baseline",
		"streamd_vs_baseline_events_per_cpu_second", "flink_per_core_events_per_second", "streamd_vs_flink_per_core"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("%s has no %q", ResultFile("q0"), k)
		}
	}
	streamd := doc["streamd"].(map[string]any)
	for _, k := range []string{"wall_seconds", "cpu_seconds", "events_per_second", "events_per_cpu_second", "peak_rss_bytes",
		"checkpoint_e2e_p50_ms", "checkpoint_e2e_p99_ms", "checkpoint_sync_pause_p99_ms", "checkpoint_alignment_p99_ms",
		"output_latency_p50_ms", "output_latency_p99_ms", "runs"} {
		if _, ok := streamd[k]; !ok {
			t.Errorf("%s: streamd has no %q", ResultFile("q0"), k)
		}
	}
	run := streamd["runs"].([]any)[0].(map[string]any)
	for _, k := range []string{"events", "results", "wall_seconds", "cpu_seconds", "cpu_user_seconds", "cpu_system_seconds",
		"events_per_second", "events_per_cpu_second", "peak_rss_bytes", "checkpoints_completed", "checkpoint_e2e_p99_ms",
		"output_latency_p99_ms"} {
		if _, ok := run[k]; !ok {
			t.Errorf("%s: a run has no %q", ResultFile("q0"), k)
		}
	}

	table, err := os.ReadFile(filepath.Join(dir, TableFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| q0 | ", "| q2 | ", "median of 2 runs", "155 k", "exactly-once checkpoints every 2ms"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("the table has no %q:\n%s", want, table)
		}
	}

	checkPNG(t, filepath.Join(dir, PlotFile))
	if matches, _ := filepath.Glob(filepath.Join(dir, ".*")); len(matches) > 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != PlotWidthPx || b.Dy() != PlotHeightPx {
		t.Errorf("%s is %dx%d, want %dx%d", path, b.Dx(), b.Dy(), PlotWidthPx, PlotHeightPx)
	}
	// Something was drawn: not every pixel is the background.
	first := img.At(0, 0)
	drawn := false
	for y := 0; y < PlotHeightPx && !drawn; y += 3 {
		for x := 0; x < PlotWidthPx; x += 3 {
			if img.At(x, y) != first {
				drawn = true
				break
			}
		}
	}
	if !drawn {
		t.Errorf("%s is blank", path)
	}
}

// TestPlotQueriesWithoutFlinkOrBaseline: a query Flink published nothing
// for, without a baseline, still plots.
func TestPlotQueriesWithoutFlinkOrBaseline(t *testing.T) {
	r := SuiteResult{Query: "q42", Streamd: Figures{EventsPerCPUSecond: Spread{Median: 1e6, Min: 1e6, Max: 1e6}}}
	path := filepath.Join(t.TempDir(), "x.png")
	var buf bytes.Buffer
	if err := Plot(&buf, []SuiteResult{r}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, path)
	if err := Plot(&buf, nil); err == nil {
		t.Errorf("Plot of no results did not fail")
	}
}
