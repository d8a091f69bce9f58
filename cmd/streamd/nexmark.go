package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"

	"github.com/streamd/streamd/connectors/nexmark"
)

// nexmarkUsage is the usage of `streamd nexmark`.
const nexmarkUsage = `usage:
  streamd nexmark generate --events N [--start K]
      prints events K … K+N−1 of the default Nexmark generator (Apache
      Beam's, NexmarkConfiguration.DEFAULT) as JSON lines
  streamd nexmark run --query QUERY --events N --out DIR [--data-dir DIR]
      [--rate R] [--parallelism P] [--checkpoint-interval D]
      runs one of the benchmark's queries over events 0 … N−1 with its
      results written exactly once to JSON lines files in --out,
      checkpointed into --data-dir (default streamd-data): a run that is
      killed resumes from its newest checkpoint when started again; exit 0
      once the input is exhausted and every result is committed
`

// cmdNexmark runs `streamd nexmark SUBCOMMAND`.
func cmdNexmark(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, nexmarkUsage)
		return exitUsage
	}
	switch args[0] {
	case "generate":
		return cmdNexmarkGenerate(args[1:], stdout, stderr)
	case "run":
		return cmdNexmarkRun(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, nexmarkUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "streamd nexmark: unknown subcommand %q\n%s", args[0], nexmarkUsage)
	return exitUsage
}

// cmdNexmarkGenerate prints events start … start+events−1, one JSON
// object per line (nexmark.AppendJSON). Exit 2 for bad flags, 1 when
// stdout fails.
func cmdNexmarkGenerate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nexmark generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int64("events", 0, fmt.Sprintf("number of events to print, in [0, %d] (required)", nexmark.MaxEvents))
	start := fs.Int64("start", 0, fmt.Sprintf("number of the first event, in [0, %d]", nexmark.MaxEvents))
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case !set["events"]:
		problems = append(problems, "--events is required")
	case *events < 0:
		problems = append(problems, fmt.Sprintf("--events %d is negative", *events))
	}
	if *start < 0 {
		problems = append(problems, fmt.Sprintf("--start %d is negative", *start))
	}
	if *start >= 0 && *events >= 0 && *events > nexmark.MaxEvents-*start {
		problems = append(problems, fmt.Sprintf("--start %d plus --events %d is beyond the generator's last event: start+events must be at most %d", *start, *events, nexmark.MaxEvents))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "streamd nexmark generate: %s\n", p)
		}
		fmt.Fprint(stderr, nexmarkUsage)
		return exitUsage
	}
	cfg := nexmark.DefaultConfig()
	w := bufio.NewWriterSize(stdout, 256<<10)
	var e nexmark.Event
	buf := make([]byte, 0, 8<<10)
	for n := *start; n < *start+*events; n++ {
		cfg.Fill(n, &e)
		buf = nexmark.AppendJSON(buf[:0], &e)
		if _, err := w.Write(buf); err != nil {
			fmt.Fprintf(stderr, "streamd nexmark generate: cannot write event %d: %v\n", n, err)
			return exitFailure
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "streamd nexmark generate: cannot write: %v\n", err)
		return exitFailure
	}
	return exitOK
}
