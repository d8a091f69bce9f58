package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runBench(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := mainErr(append([]string{"bench", "nexmark"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestBenchNexmarkJSON runs q0 for real, with checkpoints and its
// baseline, and checks the JSON object it prints: every documented field,
// figures consistent with each other, and the baseline agreeing with
// streamd.
func TestBenchNexmarkJSON(t *testing.T) {
	const events = 200_000
	code, stdout, stderr := runBench("--query", "q0", "--events", "200000", "--parallelism", "2",
		"--checkpoint-interval", "5ms", "--checkpoint-dir", t.TempDir(), "--baseline", "channels", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "events/s,") {
		t.Errorf("--json printed a progress line:\n%s", stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines on stdout, want one JSON object:\n%s", len(lines), stdout)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	for _, k := range []string{"command_line", "date", "go_version", "gomaxprocs", "num_cpu", "commit", "query", "system",
		"events", "results", "parallelism", "checkpoint_interval_ms", "wall_seconds", "cpu_seconds", "events_per_second",
		"events_per_cpu_second", "peak_rss_bytes", "peak_rss_method", "checkpoints_completed", "checkpoint_e2e_p50_ms",
		"checkpoint_e2e_p99_ms", "checkpoint_sync_pause_p99_ms", "checkpoint_alignment_p99_ms", "output_latency_p50_ms",
		"output_latency_p99_ms", "baseline", "streamd_vs_baseline_events_per_cpu_second", "flink_per_core_events_per_second",
		"streamd_vs_flink_per_core"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("the JSON has no %q", k)
		}
	}
	var rep struct {
		CommandLine        string   `json:"command_line"`
		Query              string   `json:"query"`
		System             string   `json:"system"`
		Events             int64    `json:"events"`
		Results            int64    `json:"results"`
		Parallelism        int      `json:"parallelism"`
		WallSeconds        float64  `json:"wall_seconds"`
		CPUSeconds         float64  `json:"cpu_seconds"`
		EventsPerSecond    float64  `json:"events_per_second"`
		EventsPerCPUSecond float64  `json:"events_per_cpu_second"`
		PeakRSSBytes       int64    `json:"peak_rss_bytes"`
		Checkpoints        int      `json:"checkpoints_completed"`
		E2EP99Ms           *float64 `json:"checkpoint_e2e_p99_ms"`
		LatencyP99Ms       *float64 `json:"output_latency_p99_ms"`
		Baseline           *struct {
			System  string `json:"system"`
			Events  int64  `json:"events"`
			Results int64  `json:"results"`
		} `json:"baseline"`
		Ratio *float64 `json:"streamd_vs_baseline_events_per_cpu_second"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rep); err != nil {
		t.Fatal(err)
	}
	// 46 of every 50 events are bids, and q0 passes every bid.
	if rep.Query != "q0" || rep.System != "streamd" || rep.Events != events || rep.Results != events/50*46 || rep.Parallelism != 2 {
		t.Errorf("query %s on %s: %d events, %d results, parallelism %d", rep.Query, rep.System, rep.Events, rep.Results, rep.Parallelism)
	}
	if !strings.Contains(rep.CommandLine, "bench nexmark --query q0") {
		t.Errorf("command line %q", rep.CommandLine)
	}
	if rep.WallSeconds <= 0 || rep.CPUSeconds <= 0 || rep.PeakRSSBytes <= 0 {
		t.Errorf("wall %v s, CPU %v s, peak RSS %d", rep.WallSeconds, rep.CPUSeconds, rep.PeakRSSBytes)
	}
	if d := rep.EventsPerCPUSecond*rep.CPUSeconds - events; d > 1 || d < -1 {
		t.Errorf("events per CPU-second %v × CPU seconds %v is not the events", rep.EventsPerCPUSecond, rep.CPUSeconds)
	}
	if d := rep.EventsPerSecond*rep.WallSeconds - events; d > 1 || d < -1 {
		t.Errorf("events per second %v × wall seconds %v is not the events", rep.EventsPerSecond, rep.WallSeconds)
	}
	if rep.Checkpoints < 1 || rep.E2EP99Ms == nil || *rep.E2EP99Ms <= 0 {
		t.Errorf("%d checkpoints, end-to-end p99 %v", rep.Checkpoints, rep.E2EP99Ms)
	}
	if rep.LatencyP99Ms != nil {
		t.Errorf("q0 is not windowed, yet has an output latency")
	}
	if b := rep.Baseline; b == nil || b.System != "channels" || b.Events != events || b.Results != rep.Results || rep.Ratio == nil || *rep.Ratio <= 0 {
		t.Errorf("baseline %+v, ratio %v", b, rep.Ratio)
	}
}

// TestBenchNexmarkText runs two queries with the human-readable report
// and the progress line on stderr.
func TestBenchNexmarkText(t *testing.T) {
	code, stdout, stderr := runBench("--query", "q1,q2", "--events", "20000", "--checkpoint-interval", "0")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"q1 streamd: 20000 events in ", "q2 streamd: 20000 events in ", "checkpoints: off", "Flink publishes 157940 events/s per core for q1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout has no %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "channels") {
		t.Errorf("a baseline ran without --baseline:\n%s", stdout)
	}
}

// TestBenchNexmarkSuite runs a one-run suite of q2 and checks the files.
func TestBenchNexmarkSuite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := runBench("--suite", "--query", "q2", "--runs", "1", "--events", "20000", "--out", out, "--baseline", "channels")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "| q2 | ") || !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout:\n%s", stdout)
	}
	for _, f := range []string{"nexmark-q2.json", "nexmark.md", "nexmark.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	f, err := os.Open(filepath.Join(out, "nexmark.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.DecodeConfig(bufio.NewReader(f)); err != nil {
		t.Errorf("nexmark.png: %v", err)
	}
}

func TestBenchNexmarkFlags(t *testing.T) {
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, out, errOut := runBench(args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", args, code, errOut, wantCode, wantErr)
		}
		if wantCode != 0 && out != "" {
			t.Errorf("%q: printed %q", args, out)
		}
	}
	f(2, "--query is required")
	f(2, `--query: unknown "q99", "x" (have q0, q1, q2`, "--query", "q0,q99,x")
	f(2, `--baseline must be "channels", not "goroutines"`, "--query", "q0", "--baseline", "goroutines")
	f(2, "events 0 is not in [1, ", "--query", "q0", "--events", "0")
	f(2, "--parallelism -1 is negative", "--query", "q0", "--parallelism", "-1")
	f(2, "parallelism 5000 is not in [1, 1024]", "--query", "q0", "--parallelism", "5000")
	f(2, "checkpoint interval -1s is negative", "--query", "q0", "--checkpoint-interval", "-1s")
	f(2, "--runs needs --suite", "--query", "q0", "--runs", "2")
	f(2, "--out needs --suite", "--query", "q0", "--out", "x")
	f(2, "--runs 0 is not at least 1", "--suite", "--runs", "0")
	f(2, "unexpected arguments", "--query", "q0", "extra")
	f(2, "invalid value", "--events", "many")
	var stderr bytes.Buffer
	if code := mainErr([]string{"bench", "tpch"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown benchmark "tpch"`) {
		t.Errorf("bench tpch: exit %d, %q", code, stderr.String())
	}
	code, out, _ := runBench("--list")
	if code != 0 || !strings.Contains(out, "q2   SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0 [baseline: channels]") {
		t.Errorf("--list: exit %d:\n%s", code, out)
	}
}
