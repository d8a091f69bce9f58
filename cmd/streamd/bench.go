package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	nexmarkbench "github.com/streamd/streamd/bench/nexmark"
)

// benchUsage is the usage of `streamd bench`.
const benchUsage = `usage:
  streamd bench nexmark --query qN[,qM…|all] [--events N] [--parallelism P] [--checkpoint-interval D] [--baseline channels] [--json]
  streamd bench nexmark --suite [--out DIR] [--runs N] [--events N] [--parallelism P] [--checkpoint-interval D] [--baseline channels] [--json]
  streamd bench nexmark --list
      runs Nexmark queries on streamd, the event generator in the same
      process, into a blackhole sink, and reports events/s, events per
      CPU-second, peak RSS, checkpoint and output-latency figures;
      --baseline channels also runs each query as plain Go (goroutines and
      channels) and prints the ratio; --suite runs every query --runs
      times and writes DIR/nexmark-<query>.json, DIR/nexmark.md and
      DIR/nexmark.png
`

// cmdBench runs `streamd bench SUBCOMMAND`.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return exitUsage
	}
	switch args[0] {
	case "nexmark":
		return cmdBenchNexmark(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, benchUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "streamd bench: unknown benchmark %q\n%s", args[0], benchUsage)
	return exitUsage
}

// cmdBenchNexmark runs `streamd bench nexmark`. Exit 2 for a bad command
// line, 1 when a run fails (or a baseline disagrees with streamd), 0
// otherwise. Reports go to stdout (JSON lines with --json), the progress
// line and the engine's messages to stderr.
func cmdBenchNexmark(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench nexmark", flag.ContinueOnError)
	fs.SetOutput(stderr)
	query := fs.String("query", "", "queries to run, comma-separated, or all (required without --suite or --list)")
	events := fs.Int64("events", 10_000_000, "generated events per run (persons, auctions and bids)")
	parallelism := fs.Int("parallelism", 0, "parallelism of every operator, and generator goroutines of a baseline (default GOMAXPROCS)")
	interval := fs.Duration("checkpoint-interval", 100*time.Millisecond, "exactly-once checkpoint interval; 0 runs without checkpoints")
	checkpointDir := fs.String("checkpoint-dir", "", "directory in which each run makes (and then removes) a fresh checkpoint directory (default the system's temp dir)")
	baseline := fs.String("baseline", "", `also run each query's plain-Go baseline: "channels"`)
	asJSON := fs.Bool("json", false, "print one JSON object per query run (per query with --suite) on stdout, and no progress line")
	suite := fs.Bool("suite", false, "run every query (or --query's) --runs times, and write the results into --out")
	out := fs.String("out", "bench/results", "with --suite: the directory of the result files")
	runs := fs.Int("runs", 3, "with --suite: runs of each query; the report shows medians and min–max")
	list := fs.Bool("list", false, "list the queries, and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the runs (baselines included) to this file")
	ckptCost := fs.Bool("checkpoint-cost", false, "with --suite: also run each query without checkpoints, right after, and report what checkpointing cost")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, benchUsage)
			fs.PrintDefaults()
			return exitOK
		}
		return exitUsage
	}
	if *list {
		for _, q := range nexmarkbench.Queries() {
			base := ""
			if q.Baseline != nil {
				base = " [baseline: channels]"
			}
			fmt.Fprintf(stdout, "%-4s %s%s\n", q.Name, q.SQL, base)
		}
		return exitOK
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var problems []string
	if fs.NArg() != 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if *query == "" && !*suite {
		problems = append(problems, "--query is required (or --suite, or --list)")
	}
	queries, err := selectQueries(*query)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if *baseline != "" && *baseline != nexmarkbench.SystemChannels {
		problems = append(problems, fmt.Sprintf("--baseline must be %q, not %q", nexmarkbench.SystemChannels, *baseline))
	}
	if !*suite {
		for _, name := range []string{"out", "runs", "checkpoint-cost"} {
			if set[name] {
				problems = append(problems, fmt.Sprintf("--%s needs --suite", name))
			}
		}
	} else if *runs < 1 {
		problems = append(problems, fmt.Sprintf("--runs %d is not at least 1", *runs))
	}
	cfg := nexmarkbench.RunConfig{
		Events: *events, Parallelism: *parallelism, CheckpointInterval: *interval, CheckpointParent: *checkpointDir,
	}
	if *parallelism < 0 {
		problems = append(problems, fmt.Sprintf("--parallelism %d is negative", *parallelism))
	} else {
		check := cfg // Validate needs the defaults; the run fills them itself
		if check.Parallelism == 0 {
			check.Parallelism = 1
		}
		if err := check.Validate(); err != nil {
			for _, e := range strings.Split(err.Error(), "\n") {
				problems = append(problems, strings.TrimPrefix(e, nexmarkbench.ErrInvalidConfig.Error()+": "))
			}
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "streamd bench nexmark: %s\n", p)
		}
		fmt.Fprint(stderr, benchUsage)
		return exitUsage
	}
	if !*asJSON {
		cfg.Progress = stderr
	}
	cfg.Logger = func(format string, args ...any) {
		fmt.Fprintf(stderr, "streamd bench: "+strings.TrimSuffix(format, "\n")+"\n", args...)
	}
	if *cpuProfile != "" {
		stop, ok := startCPUProfile(*cpuProfile, "streamd bench nexmark", stderr)
		if !ok {
			return exitFailure
		}
		defer stop()
	}
	withBaseline := *baseline != ""
	env := nexmarkbench.CurrentEnv(append([]string{"streamd", "bench", "nexmark"}, args...))

	// The first SIGINT/SIGTERM cancels the run in progress (its job stops
	// and the command exits 1); the default handling returns after it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *suite {
		if len(queries) == 0 {
			queries = nexmarkbench.Queries()
		}
		results, err := nexmarkbench.RunSuite(ctx, nexmarkbench.SuiteConfig{Run: cfg, Runs: *runs, Baseline: withBaseline, CheckpointCost: *ckptCost, Queries: queries, Env: env})
		if err != nil {
			fmt.Fprintf(stderr, "streamd bench nexmark: %v\n", err)
			return exitFailure
		}
		if err := nexmarkbench.WriteSuite(*out, results); err != nil {
			fmt.Fprintf(stderr, "streamd bench nexmark: %v\n", err)
			return exitFailure
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, r := range results {
				if err := enc.Encode(r); err != nil {
					fmt.Fprintf(stderr, "streamd bench nexmark: cannot write: %v\n", err)
					return exitFailure
				}
			}
			return exitOK
		}
		fmt.Fprint(stdout, nexmarkbench.Table(results))
		fmt.Fprintf(stdout, "\nwrote %s: %s, %s, %s\n", *out, nexmarkbench.TableFile, nexmarkbench.PlotFile, nexmarkbench.ResultFile("<query>"))
		return exitOK
	}

	enc := json.NewEncoder(stdout)
	for _, q := range queries {
		rep, err := nexmarkbench.RunQuery(ctx, q, cfg, withBaseline && q.Baseline != nil, env)
		if err != nil {
			fmt.Fprintf(stderr, "streamd bench nexmark: %v\n", err)
			return exitFailure
		}
		if withBaseline && q.Baseline == nil {
			fmt.Fprintf(stderr, "streamd bench nexmark: %s has no channels baseline; ran it alone\n", q.Name)
		}
		if *asJSON {
			err = enc.Encode(rep)
		} else {
			err = printReport(stdout, rep)
		}
		if err != nil {
			fmt.Fprintf(stderr, "streamd bench nexmark: cannot write: %v\n", err)
			return exitFailure
		}
	}
	return exitOK
}

// selectQueries returns the registered queries a --query value names:
// "" for none, "all" for every one.
func selectQueries(list string) ([]nexmarkbench.Query, error) {
	if list == "" {
		return nil, nil
	}
	if list == "all" {
		return nexmarkbench.Queries(), nil
	}
	var qs []nexmarkbench.Query
	var unknown []string
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if seen[name] {
			continue
		}
		seen[name] = true
		q, ok := nexmarkbench.Lookup(name)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", name))
			continue
		}
		qs = append(qs, q)
	}
	if len(unknown) > 0 {
		var have []string
		for _, q := range nexmarkbench.Queries() {
			have = append(have, q.Name)
		}
		return nil, fmt.Errorf("--query: unknown %s (have %s, or all)", strings.Join(unknown, ", "), strings.Join(have, ", "))
	}
	return qs, nil
}

// printReport prints one query's figures for a person.
func printReport(w io.Writer, rep nexmarkbench.Report) error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	system := func(r *nexmarkbench.Result) {
		line("%s %s: %d events in %.2f s wall, %.2f s CPU (%.2f cores): %.0f events/s, %.0f events per CPU-second",
			r.Query, r.System, r.Events, r.WallSeconds, r.CPUSeconds, r.CoresUsed, r.EventsPerSecond, r.EventsPerCPUSecond)
		line("  results %d (field sum %d), peak RSS %.1f MiB (%s)", r.Results, r.ResultFieldSum, float64(r.PeakRSSBytes)/(1<<20), r.PeakRSSMethod)
	}
	r := &rep.Result
	system(r)
	switch {
	case r.CheckpointIntervalMs == 0:
		line("  checkpoints: off")
	case r.CheckpointE2EP50Ms == nil:
		line("  checkpoints every %v ms: none completed, %d failed", r.CheckpointIntervalMs, r.CheckpointsFailed)
	default:
		line("  checkpoints every %v ms: %d completed, %d failed; end-to-end p50 %.2f ms, p99 %.2f ms; sync pause p99 %.3f ms; alignment p99 %.3f ms",
			r.CheckpointIntervalMs, r.CheckpointsCompleted, r.CheckpointsFailed, *r.CheckpointE2EP50Ms, *r.CheckpointE2EP99Ms,
			*r.CheckpointSyncPauseP99Ms, *r.CheckpointAlignmentP99Ms)
	}
	if r.OutputLatencyResults != nil {
		if r.OutputLatencyP50Ms != nil {
			line("  output latency (window end → sink): p50 %.2f ms, p99 %.2f ms over %d results (%d early, %d unmatched, %d expired)",
				*r.OutputLatencyP50Ms, *r.OutputLatencyP99Ms, *r.OutputLatencyResults, *r.OutputLatencyEarly, *r.OutputLatencyUnmatched, *r.OutputLatencyExpired)
		} else {
			line("  output latency: no result measured (%d unmatched, %d expired)", *r.OutputLatencyUnmatched, *r.OutputLatencyExpired)
		}
	}
	if rep.FlinkPerCoreEventsPerSecond != nil {
		line("  Flink publishes %.0f events/s per core for %s: streamd does %.1f× that per CPU-second", *rep.FlinkPerCoreEventsPerSecond, r.Query, *rep.StreamdVsFlinkPerCore)
	}
	if rep.Baseline != nil {
		system(rep.Baseline)
		if rep.StreamdVsBaseline != nil {
			line("  streamd ÷ channels, events per CPU-second: %.2f×", *rep.StreamdVsBaseline)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
