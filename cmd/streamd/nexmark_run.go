package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	nexmarkbench "github.com/streamd/streamd/bench/nexmark"
)

// cmdNexmarkRun runs `streamd nexmark run`: a benchmark query into the
// exactly-once file sink, resumable (nexmarkbench.BuildToFiles). Exit 0 when
// the input is exhausted and the output committed (or after a graceful
// stop by SIGINT/SIGTERM), 1 on failure, 2 for a bad command line.
func cmdNexmarkRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nexmark run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	query := fs.String("query", "", "the query (streamd bench nexmark --list names them; required)")
	events := fs.Int64("events", 0, "events 0 … N−1 of the default generator (required)")
	out := fs.String("out", "", "directory of the committed results (required)")
	dataDir := fs.String("data-dir", "streamd-data", "directory of the checkpoint store")
	rate := fs.Float64("rate", 0, "events per second of the source (0: as fast as possible)")
	parallelism := fs.Int("parallelism", 1, "parallelism of every operator")
	interval := fs.Duration("checkpoint-interval", 100*time.Millisecond, "exactly-once checkpoint interval")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, nexmarkUsage)
			fs.PrintDefaults()
			return exitOK
		}
		return exitUsage
	}
	var problems []string
	if fs.NArg() != 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	q, ok := nexmarkbench.Lookup(*query)
	if !ok {
		problems = append(problems, fmt.Sprintf("--query %q is not a query (streamd bench nexmark --list)", *query))
	}
	if *events <= 0 {
		problems = append(problems, "--events must be at least 1")
	}
	if *out == "" {
		problems = append(problems, "--out is required")
	}
	if *parallelism < 1 {
		problems = append(problems, fmt.Sprintf("--parallelism %d is not at least 1", *parallelism))
	}
	if *interval <= 0 {
		problems = append(problems, "--checkpoint-interval must be positive")
	}
	if *rate < 0 {
		problems = append(problems, "--rate must be >= 0")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "streamd nexmark run: %s\n", p)
		}
		return exitUsage
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	j, store, err := nexmarkbench.BuildToFiles(q, nexmarkbench.FileRunOptions{
		Out: *out, DataDir: *dataDir, Events: *events, RatePerSec: *rate,
		Parallelism: *parallelism, CheckpointInterval: *interval, Logger: logf,
	})
	if err != nil {
		fmt.Fprintf(stderr, "streamd nexmark run: %v\n", err)
		return exitFailure
	}
	defer store.Close()
	// The first SIGINT/SIGTERM stops the job gracefully; the second exits.
	defer onSignals(func(os.Signal) { j.Stop() }, nil)()
	if err := j.Run(context.Background()); err != nil {
		fmt.Fprintf(stderr, "streamd nexmark run: %s: %v\n", q.Name, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "streamd nexmark run: %s: finished; results in %s (restored from checkpoint %d)\n", q.Name, *out, j.RestoredFrom())
	return exitOK
}
