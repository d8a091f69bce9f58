// Command streamd runs streamd jobs: the daemon (serve) and one-shot runs.
//
//	streamd serve [--data-dir DIR] [--http 127.0.0.1:8081] [--auth-token TOKEN] [--grace 30s] …
//	streamd run [--data-dir DIR] [--from-savepoint DIR [--allow-non-restored-state]] [--stats FILE] [--pin auto|on|off] [--cpuprofile FILE] [--allow-duplicate-output] [--log-level debug|info|warn|error] JOB.yaml
//	streamd validate [--data-dir DIR] JOB.yaml
//	streamd checkpoints list|inspect [--data-dir DIR | --savepoint DIR] …
//	streamd nexmark generate --events N [--start K]
//	streamd bench nexmark --query qN [--events N] [--parallelism P] [--checkpoint-interval D] [--baseline channels] [--json] | --suite [--out DIR] [--runs N] | --list
//	streamd version
//
// Exit status of run: 0 when the job finished and its output is complete
// (or it was stopped by a signal after a final checkpoint), 2 for a bad
// command line, a bad spec or a checkpoint that does not fit the job
// (nothing is written), 1 for a failure while running, 130 after a second
// signal.
//
// Logging: one line per event on stderr — time, level, message, then
// key=value attributes (job, checkpoint where the message names one,
// data_dir for the store's lines) — at --log-level and above. Pebble's
// informational lines are debug, its errors error; the store's warnings
// warn. The final failure of a run is printed as "streamd: …" whatever
// the level.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/internal/logx"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/jobrun"
	"github.com/streamd/streamd/snapshot"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage:
  streamd serve [--data-dir DIR] [--http 127.0.0.1:8081] [--auth-token TOKEN] [--grace 30s] [--pin off|auto|on] [--log-level LEVEL]
  streamd run [--data-dir DIR] [--from-savepoint DIR [--allow-non-restored-state]] [--stats FILE] [--pin auto|on|off] [--cpuprofile FILE] [--allow-duplicate-output] [--log-level debug|info|warn|error] JOB.yaml
  streamd validate [--data-dir DIR] JOB.yaml
  streamd checkpoints list [--data-dir DIR | --savepoint DIR] [JOB]
  streamd checkpoints inspect [--data-dir DIR] JOB [ID]
  streamd checkpoints inspect --savepoint DIR [JOB [ID]]
  streamd nexmark generate --events N [--start K]
  streamd bench nexmark --query qN[,qM…|all] [--events N] [--parallelism P] [--checkpoint-interval D] [--baseline channels] [--json]
  streamd bench nexmark --suite [--out DIR] [--runs N] [options as above] | --list
  streamd version
`

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitSignal  = 130
)

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "checkpoints":
		return cmdCheckpoints(args[1:], stdout, stderr)
	case "nexmark":
		return cmdNexmark(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "streamd", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "streamd: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// parseFlags parses a command's flags. When it returns ok false the
// command returns code: 0 after -h/--help (the usage went to stdout, as
// asked for), exitUsage after a bad flag (the flag package told stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	if err == nil {
		return 0, true
	}
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usage)
		fs.PrintDefaults()
		return exitOK, false
	}
	return exitUsage, false
}

// loadPlan reads, decodes and compiles a job spec.
func loadPlan(path string) (*job.Plan, error) {
	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	// Load reports the mistakes of both phases (YAML structure, then values,
	// schemas and expressions) at once.
	return job.Load(path, data)
}

// readSpec reads a spec file, refusing before it reads anything what is
// not a regular file (a FIFO, a device such as /dev/zero, a directory) or
// is larger than job.MaxSpecBytes, and never reading more than that (the
// file may grow while it is read).
func readSpec(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; the type is checked on the open file, so a file swapped in
	// after a check by name cannot slip through.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s); a job spec must be a YAML file", path, fi.Mode().Type())
	}
	if fi.Size() > job.MaxSpecBytes {
		return nil, fmt.Errorf("%s: spec is %d bytes; the limit is %d", path, fi.Size(), job.MaxSpecBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, job.MaxSpecBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > job.MaxSpecBytes {
		return nil, fmt.Errorf("%s: spec is more than %d bytes; the limit is %d", path, job.MaxSpecBytes, job.MaxSpecBytes)
	}
	return data, nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "also check the spec against the job's newest checkpoint in this data dir (nothing is run or written)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "streamd validate: want exactly one JOB.yaml, have %d arguments\n%s", fs.NArg(), usage)
		return exitUsage
	}
	path := fs.Arg(0)
	plan, err := loadPlan(path)
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitUsage
	}
	var store *snapshot.Store
	if *dataDir != "" {
		if _, err := os.Stat(*dataDir); err != nil {
			fmt.Fprintf(stderr, "streamd: data dir %s: %v\n", *dataDir, err)
			return exitFailure
		}
		if store, err = snapshot.Open(*dataDir, snapshot.Options{Logger: func(string, ...any) {}}); err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
		defer store.Close()
	}
	b, err := jobrun.Build(plan, jobrun.Options{Store: store})
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok\n%s", path, b.Job.Describe())
	if store == nil {
		return exitOK
	}
	id, err := b.Job.CheckCheckpoint(store)
	switch {
	case err != nil:
		return reportRunError(stderr, err)
	case id == 0:
		fmt.Fprintf(stdout, "data dir %s holds no checkpoint of job %q: a run starts fresh\n", *dataDir, plan.Spec.Name)
	default:
		fmt.Fprintf(stdout, "checkpoint %d of job %q in %s fits the spec: a run resumes from it\n", id, plan.Spec.Name, *dataDir)
	}
	return exitOK
}

// reportRunError prints an error of a run (or of a check against a
// checkpoint) and returns the exit status: 2 for a checkpoint that does not
// fit the spec, with what changed; 1 otherwise.
func reportRunError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "streamd: %v\n", err)
	if errors.Is(err, engine.ErrIncompatible) {
		var ie *engine.IncompatibleError
		if errors.As(err, &ie) && ie.Old != "" {
			fmt.Fprintf(stderr, "what changed (- checkpoint, + spec):\n")
			for _, l := range job.FingerprintDiff(ie.Old, ie.New) {
				fmt.Fprintf(stderr, "  %s\n", l)
			}
		}
		return exitUsage
	}
	return exitFailure
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "streamd-data", "directory of checkpoints (created if missing)")
	statsPath := fs.String("stats", "", "write checkpoint statistics as JSON to this file when the job ends")
	pin := fs.String("pin", "auto", "pin worker threads to cores: auto, on or off")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the run to this file")
	allowDup := fs.Bool("allow-duplicate-output", false, "start although the sink has committed output beyond the newest checkpoint in the data dir (that output is emitted again)")
	logLevel := fs.String("log-level", "info", "log events at this level and above: debug, info, warn or error (Pebble's informational lines are debug)")
	fromSavepoint := fs.String("from-savepoint", "", "start from the savepoint in this directory instead of the newest checkpoint in the data dir (new checkpoints go to the data dir)")
	allowNonRestored := fs.Bool("allow-non-restored-state", false, "start although the savepoint or checkpoint holds state of operators the job no longer has (that state is dropped, with a warning)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "streamd run: want exactly one JOB.yaml, have %d arguments\n%s", fs.NArg(), usage)
		return exitUsage
	}
	pinning, ok := parsePin(*pin)
	if !ok {
		fmt.Fprintf(stderr, "streamd run: --pin must be auto, on or off, not %q\n", *pin)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil || !validLogLevel(*logLevel) {
		fmt.Fprintf(stderr, "streamd run: --log-level must be debug, info, warn or error, not %q\n", *logLevel)
		return exitUsage
	}
	plan, err := loadPlan(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitUsage
	}
	slogger := slog.New(logx.NewLineHandler(stderr, level)).With("job", plan.Spec.Name)
	logf := logx.PrintfLogger(slogger)
	opts := jobrun.Options{Pinning: pinning, Stdout: stdout, Logger: logf, AllowDuplicateOutput: *allowDup}
	if *fromSavepoint != "" || *allowNonRestored {
		if *fromSavepoint != "" {
			if plan.Spec.Checkpointing == nil {
				fmt.Fprintf(stderr, "streamd run: --from-savepoint needs checkpointing in the spec (%s has none)\n", fs.Arg(0))
				return exitUsage
			}
			if _, err := snapshot.ReadSavepointDescriptor(nil, *fromSavepoint); err != nil {
				fmt.Fprintf(stderr, "streamd run: --from-savepoint: %v\n", err)
				return exitUsage
			}
		}
		opts.Restore = &engine.RestoreOptions{Savepoint: *fromSavepoint, AllowNonRestoredState: *allowNonRestored}
	}
	if c := plan.Spec.Checkpointing; c != nil {
		comp, err := snapshot.ParseCompression(c.Compression)
		if err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitUsage
		}
		// Pebble's informational lines (WAL replay on open) are debug; its
		// errors, and the store's warnings, are not.
		store, err := snapshot.Open(*dataDir, snapshot.Options{Compression: comp, LevelLogger: slogger.With("data_dir", *dataDir)})
		if err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
		// After a failure of the store (snapshot.ErrStoreFailed) Close
		// returns within seconds, leaking Pebble if a failed goroutine
		// holds its locks: the process exits 1 right after.
		defer store.Close()
		opts.Store = store
	}
	built, err := jobrun.Build(plan, opts)
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitUsage
	}
	stopProfile := func() {}
	if *cpuProfile != "" {
		stop, ok := startCPUProfile(*cpuProfile, "streamd", stderr)
		if !ok {
			return exitFailure
		}
		stopProfile = stop
		defer stop()
	}

	// The first SIGINT/SIGTERM stops the job gracefully (final checkpoint,
	// commit); the second exits at once.
	var stopped atomic.Bool
	defer onSignals(func(sig os.Signal) {
		stopped.Store(true)
		logf("streamd: %v: stopping job %q (final checkpoint, then exit; signal again to exit at once)", sig, plan.Spec.Name)
		built.Job.Stop()
	}, func() {
		logf("streamd: second signal: exiting at once")
		stopProfile()
	})()

	start := time.Now()
	runErr := built.Run(context.Background())
	elapsed := time.Since(start)
	stats := built.Job.CheckpointStats()
	if *statsPath != "" {
		if err := writeStats(*statsPath, plan.Spec.Name, elapsed, stats); err != nil {
			fmt.Fprintf(stderr, "streamd: cannot write statistics: %v\n", err)
		}
	}
	if runErr != nil {
		return reportRunError(stderr, runErr)
	}
	completed, last := 0, uint64(0)
	for _, s := range stats {
		if s.Status == "completed" {
			completed++
			last = max(last, s.ID)
		}
	}
	var msg string
	switch {
	case stopped.Load() && plan.Spec.Checkpointing != nil:
		msg = fmt.Sprintf("streamd: job %q stopped after checkpoint %d in %v; rerun to resume", plan.Spec.Name, last, elapsed.Round(time.Millisecond))
	case stopped.Load():
		msg = fmt.Sprintf("streamd: job %q stopped in %v; its output is committed (no checkpoints: a rerun starts from the beginning)", plan.Spec.Name, elapsed.Round(time.Millisecond))
	default:
		msg = fmt.Sprintf("streamd: job %q finished in %v", plan.Spec.Name, elapsed.Round(time.Millisecond))
	}
	if built.Blackhole != nil {
		msg += fmt.Sprintf(", %d records", built.Blackhole.Count())
	}
	if plan.Spec.Checkpointing != nil {
		msg += fmt.Sprintf(", %d checkpoints completed", completed)
	}
	slogger.Info(msg)
	return exitOK
}

func validLogLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// statsFile is the JSON written by --stats.
type statsFile struct {
	Job         string                   `json:"job"`
	DurationNs  time.Duration            `json:"duration_ns"`
	Completed   int                      `json:"completed"`
	Failed      int                      `json:"failed"`
	Summary     map[string]int64         `json:"summary_ns,omitempty"`
	Checkpoints []engine.CheckpointStats `json:"checkpoints"`
}

func writeStats(path, name string, elapsed time.Duration, stats []engine.CheckpointStats) error {
	sf := statsFile{Job: name, DurationNs: elapsed, Checkpoints: stats}
	var durations, syncs []int64
	for _, s := range stats {
		if s.Status != "completed" {
			sf.Failed++
			continue
		}
		sf.Completed++
		durations = append(durations, int64(s.Duration))
		for _, t := range s.Tasks {
			syncs = append(syncs, int64(t.SyncPause))
		}
	}
	if len(durations) > 0 {
		sf.Summary = map[string]int64{
			"end_to_end_p50": percentile(durations, 0.50),
			"end_to_end_p99": percentile(durations, 0.99),
			"end_to_end_max": percentile(durations, 1),
			"sync_pause_p50": percentile(syncs, 0.50),
			"sync_pause_p99": percentile(syncs, 0.99),
		}
	}
	b, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile returns the nearest-rank percentile q in [0, 1] of xs.
func percentile(xs []int64, q float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
