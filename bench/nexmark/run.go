package nexmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

// SourceName is the name of the Nexmark source operator in every job the
// harness builds (the progress line counts its records).
const SourceName = "nexmark"

// Systems a Result describes.
const (
	SystemStreamd  = "streamd"
	SystemChannels = "channels" // the plain-Go baseline (Query.Baseline)
)

// MaxEventsPerRun bounds RunConfig.Events: a run is bounded, and the
// generator's event numbers are bounded (gen.MaxEvents).
const MaxEventsPerRun = gen.MaxEvents

// RunConfig configures one run of one query.
type RunConfig struct {
	// Events is the number of generated events (persons, auctions and
	// bids), events 0 … Events−1 of the default generator. Required: at
	// least 1, at most MaxEventsPerRun.
	Events int64
	// Parallelism is the parallelism of every operator (and the number of
	// generator goroutines of a baseline). Default runtime.GOMAXPROCS(0).
	Parallelism int
	// CheckpointInterval is the interval of exactly-once checkpoints; 0
	// runs without checkpoints. Default 0.
	CheckpointInterval time.Duration
	// CheckpointParent is the directory in which a run makes a fresh
	// directory for its checkpoints (removed after the run). Default
	// os.TempDir(). A fresh directory per run: a benchmark must never
	// resume from an earlier run's checkpoint.
	CheckpointParent string
	// Progress, if set, receives a progress line about once a second
	// (events so far, events per second), rewritten in place with a
	// carriage return and cleared at the end.
	Progress io.Writer
	// Label prefixes the progress line (default: the query and system).
	Label string
	// Logger receives the engine's operational messages. Default: none.
	Logger func(format string, args ...any)
}

// ensureDefaults fills the zero fields of c.
func (c *RunConfig) ensureDefaults() {
	if c.Parallelism == 0 {
		c.Parallelism = runtime.GOMAXPROCS(0)
	}
	if c.CheckpointParent == "" {
		c.CheckpointParent = os.TempDir()
	}
	if c.Logger == nil {
		c.Logger = func(string, ...any) {}
	}
}

// ErrInvalidConfig is wrapped by every problem Validate reports.
var ErrInvalidConfig = errors.New("nexmark bench: invalid configuration")

// Validate reports every problem of c (after its defaults) at once.
func (c *RunConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Events < 1 || c.Events > MaxEventsPerRun {
		bad("events %d is not in [1, %d]", c.Events, MaxEventsPerRun)
	}
	if c.Parallelism < 1 || c.Parallelism > engine.MaxParallelism {
		bad("parallelism %d is not in [1, %d]", c.Parallelism, engine.MaxParallelism)
	}
	if c.CheckpointInterval < 0 {
		bad("checkpoint interval %v is negative", c.CheckpointInterval)
	}
	return errors.Join(errs...)
}

// Result is every figure of one run of one query by one system. Figures
// that do not apply are null in JSON: checkpoint figures of a run without
// completed checkpoints (and of a baseline), output latency of a query
// that is not windowed.
type Result struct {
	Query  string `json:"query"`
	System string `json:"system"` // SystemStreamd or SystemChannels
	// Events is the number of generated events; Results the number of
	// results the blackhole received, and ResultFieldSum the sum of the
	// field it read (the same for every system, or the run fails).
	Events         int64 `json:"events"`
	Results        int64 `json:"results"`
	ResultFieldSum int64 `json:"result_field_sum"`
	Parallelism    int   `json:"parallelism"`
	// CheckpointIntervalMs is the configured interval, 0 without
	// checkpoints.
	CheckpointIntervalMs float64 `json:"checkpoint_interval_ms"`

	WallSeconds      float64 `json:"wall_seconds"`
	CPUSeconds       float64 `json:"cpu_seconds"` // user + system
	CPUUserSeconds   float64 `json:"cpu_user_seconds"`
	CPUSystemSeconds float64 `json:"cpu_system_seconds"`
	// EventsPerSecond is Events / WallSeconds; EventsPerCPUSecond is
	// Events / CPUSeconds, the figure comparable with Flink's
	// throughput per core.
	EventsPerSecond    float64 `json:"events_per_second"`
	EventsPerCPUSecond float64 `json:"events_per_cpu_second"`
	// CoresUsed is CPUSeconds / WallSeconds: the average number of busy
	// cores (nexmark-flink's "Cores").
	CoresUsed     float64 `json:"cores_used"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`
	PeakRSSMethod string  `json:"peak_rss_method"`

	CheckpointsCompleted     int      `json:"checkpoints_completed"`
	CheckpointsFailed        int      `json:"checkpoints_failed"`
	CheckpointE2EP50Ms       *float64 `json:"checkpoint_e2e_p50_ms"`
	CheckpointE2EP99Ms       *float64 `json:"checkpoint_e2e_p99_ms"`
	CheckpointSyncPauseP99Ms *float64 `json:"checkpoint_sync_pause_p99_ms"`
	CheckpointAlignmentP99Ms *float64 `json:"checkpoint_alignment_p99_ms"`

	// Output latency of a windowed query (LatencyRecorder): percentiles,
	// the number of results measured, those of them that arrived before
	// the hook reported their window's passing (early, counted as 0), and
	// those that could not be measured (unmatched: their window never
	// passed by the recorder's account; expired: older than its history).
	OutputLatencyP50Ms     *float64 `json:"output_latency_p50_ms"`
	OutputLatencyP99Ms     *float64 `json:"output_latency_p99_ms"`
	OutputLatencyResults   *int64   `json:"output_latency_results"`
	OutputLatencyEarly     *int64   `json:"output_latency_early"`
	OutputLatencyUnmatched *int64   `json:"output_latency_unmatched"`
	OutputLatencyExpired   *int64   `json:"output_latency_expired"`
}

// measure runs f, timing it and measuring its CPU time and peak RSS into
// r (events must be set).
func measure(r *Result, f func() error) error {
	method := resetPeakRSS()
	u0, s0, err := cpuTime()
	if err != nil {
		return err
	}
	start := time.Now()
	runErr := f()
	wall := time.Since(start)
	u1, s1, err := cpuTime()
	if runErr != nil {
		return runErr
	}
	if err != nil {
		return err
	}
	peak, err := readPeakRSS(method)
	if err != nil {
		return err
	}
	user, sys := u1-u0, s1-s0
	r.WallSeconds = wall.Seconds()
	r.CPUUserSeconds, r.CPUSystemSeconds = user.Seconds(), sys.Seconds()
	r.CPUSeconds = (user + sys).Seconds()
	r.EventsPerSecond = float64(r.Events) / r.WallSeconds
	if r.CPUSeconds > 0 {
		r.EventsPerCPUSecond = float64(r.Events) / r.CPUSeconds
		r.CoresUsed = r.CPUSeconds / r.WallSeconds
	}
	r.PeakRSSBytes, r.PeakRSSMethod = peak, method
	return nil
}

// Run runs q on streamd: the Nexmark source and the query in one job, in
// this process, into the blackhole, and returns its figures.
func Run(ctx context.Context, q Query, cfg RunConfig) (Result, error) {
	return runStreamd(ctx, q, cfg, nil)
}

// runStreamd is Run; observe, when not nil, is a func(*T) for q's result
// type, called with every result (tests).
func runStreamd(ctx context.Context, q Query, cfg RunConfig, observe any) (Result, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	var rec *LatencyRecorder
	if q.Windowed {
		// The source runs at the job's parallelism: one watermark per task.
		rec = NewLatencyRecorder(cfg.Parallelism)
	}
	sink := NewSink(rec)
	sink.observe = observe
	opts := engine.Options{Parallelism: cfg.Parallelism, Logger: cfg.Logger}
	if rec != nil {
		opts.OnSourceWatermark = rec.SourceWatermark
	}
	if cfg.CheckpointInterval > 0 {
		dir, err := os.MkdirTemp(cfg.CheckpointParent, "streamd-nexmark-"+q.Name+"-")
		if err != nil {
			return Result{}, fmt.Errorf("nexmark bench: %s: cannot make a checkpoint directory: %w", q.Name, err)
		}
		defer os.RemoveAll(dir)
		// S2: the fastest of the store's codecs (DESIGN.md); stateless
		// queries store source positions and little else.
		// Pebble's informational lines (slog debug) are dropped; its
		// errors and the store's warnings go to the run's Logger.
		levels := slog.New(slog.NewTextHandler(logWriter(cfg.Logger), &slog.HandlerOptions{Level: slog.LevelWarn}))
		store, err := snapshot.Open(dir, snapshot.Options{Compression: snapshot.CompressionS2, LevelLogger: levels})
		if err != nil {
			return Result{}, fmt.Errorf("nexmark bench: %s: %w", q.Name, err)
		}
		defer store.Close()
		opts.Checkpointing = &engine.CheckpointOptions{
			Options: coord.Options{Interval: cfg.CheckpointInterval, Mode: engine.ExactlyOnce},
			Store:   store,
		}
	}
	j := engine.NewJob("nexmark-"+q.Name, opts)
	events, err := gen.NewSource(j, SourceName, gen.SourceOptions{Events: cfg.Events})
	if err != nil {
		return Result{}, fmt.Errorf("nexmark bench: %s: %w", q.Name, err)
	}
	if err := q.Build(j, events, sink); err != nil {
		return Result{}, fmt.Errorf("nexmark bench: cannot build %s: %w", q.Name, err)
	}
	if err := j.Validate(); err != nil {
		return Result{}, fmt.Errorf("nexmark bench: %s: %w", q.Name, err)
	}

	r := Result{
		Query: q.Name, System: SystemStreamd, Events: cfg.Events, Parallelism: cfg.Parallelism,
		CheckpointIntervalMs: ms(cfg.CheckpointInterval),
	}
	label := cfg.Label
	if label == "" {
		label = q.Name + " " + SystemStreamd
	}
	err = measure(&r, func() error {
		stop := startProgress(cfg.Progress, label, cfg.Events, func() int64 { return sourceRecords(j.Metrics()) })
		defer stop()
		return j.Run(ctx)
	})
	if err != nil {
		return Result{}, fmt.Errorf("nexmark bench: %s on streamd: %w", q.Name, err)
	}
	if got := sourceRecords(j.Metrics()); got != cfg.Events {
		return Result{}, fmt.Errorf("nexmark bench: %s on streamd: the source emitted %d events, want %d", q.Name, got, cfg.Events)
	}
	r.Results, r.ResultFieldSum = sink.Results(), sink.Sum()
	checkpointFigures(&r, j.CheckpointStats())
	if rec != nil {
		latencyFigures(&r, rec.Summary())
	}
	return r, nil
}

// logWriter passes each write, a log line, to a Printf-style logger.
type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// sourceRecords returns the records the Nexmark source's tasks emitted.
func sourceRecords(m engine.Metrics) int64 {
	var n int64
	for _, t := range m.Tasks {
		if len(t.Operators) > 0 && t.Operators[0].Name == SourceName {
			n += t.Operators[0].RecordsOut
		}
	}
	return n
}

// checkpointFigures sets r's checkpoint figures from the run's statistics:
// percentiles over the completed checkpoints (end to end), and over every
// task of every completed checkpoint (sync pause, alignment).
func checkpointFigures(r *Result, stats []engine.CheckpointStats) {
	var e2e, pause, align []int64
	for _, s := range stats {
		if s.Status != "completed" {
			r.CheckpointsFailed++
			continue
		}
		r.CheckpointsCompleted++
		e2e = append(e2e, int64(s.Duration))
		for _, t := range s.Tasks {
			pause = append(pause, int64(t.SyncPause))
			align = append(align, int64(t.Alignment))
		}
	}
	if len(e2e) > 0 {
		p := Percentiles(e2e, 0.50, 0.99)
		r.CheckpointE2EP50Ms, r.CheckpointE2EP99Ms = msPtr(p[0]), msPtr(p[1])
	}
	if len(pause) > 0 {
		r.CheckpointSyncPauseP99Ms = msPtr(Percentiles(pause, 0.99)[0])
		r.CheckpointAlignmentP99Ms = msPtr(Percentiles(align, 0.99)[0])
	}
}

// latencyFigures sets r's output latency figures.
func latencyFigures(r *Result, s LatencySummary) {
	r.OutputLatencyResults, r.OutputLatencyEarly = &s.Results, &s.Early
	r.OutputLatencyUnmatched, r.OutputLatencyExpired = &s.Unmatched, &s.Expired
	if s.Results > 0 {
		r.OutputLatencyP50Ms, r.OutputLatencyP99Ms = msPtr(int64(s.P50)), msPtr(int64(s.P99))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msPtr(ns int64) *float64 {
	v := ms(time.Duration(ns))
	return &v
}

// RunBaseline runs q's plain-Go baseline with the same events and
// parallelism, measured the same way as Run.
func RunBaseline(ctx context.Context, q Query, cfg RunConfig) (Result, error) {
	return runBaseline(ctx, q, cfg, nil)
}

func runBaseline(ctx context.Context, q Query, cfg RunConfig, observe any) (Result, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if q.Baseline == nil {
		return Result{}, fmt.Errorf("nexmark bench: query %s has no %s baseline", q.Name, SystemChannels)
	}
	var generated atomic.Int64
	bc := BaselineConfig{
		Ctx: ctx, Events: cfg.Events, Parallelism: cfg.Parallelism, BatchSize: DefaultBaselineBatch,
		Generated: &generated, observe: observe,
	}
	r := Result{Query: q.Name, System: SystemChannels, Events: cfg.Events, Parallelism: cfg.Parallelism}
	label := cfg.Label
	if label == "" {
		label = q.Name + " " + SystemChannels
	}
	var br BaselineResult
	err := measure(&r, func() error {
		stop := startProgress(cfg.Progress, label, cfg.Events, generated.Load)
		defer stop()
		var err error
		br, err = q.Baseline(bc)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("nexmark bench: %s on %s: %w", q.Name, SystemChannels, err)
	}
	if got := generated.Load(); got != cfg.Events {
		return Result{}, fmt.Errorf("nexmark bench: %s on %s: the generators made %d events, want %d", q.Name, SystemChannels, got, cfg.Events)
	}
	r.Results, r.ResultFieldSum = br.Results, br.Sum
	return r, nil
}

// startProgress writes a progress line to w about once a second until the
// returned function is called, which clears it. count returns the events
// generated so far. A nil w shows nothing.
func startProgress(w io.Writer, label string, total int64, count func() int64) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start, last, lastAt, width := time.Now(), int64(0), time.Now(), 0
		for {
			select {
			case <-done:
				if width > 0 {
					fmt.Fprintf(w, "\r%*s\r", width, "")
				}
				return
			case now := <-tick.C:
				n := count()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				line := fmt.Sprintf("%s: %s events (%.0f %%), %s events/s, %s",
					label, human(float64(n)), 100*float64(n)/float64(total), human(rate), now.Sub(start).Round(time.Second))
				// Pad over a longer previous line.
				fmt.Fprintf(w, "\r%-*s", width, line)
				width = max(width, len(line))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// human formats a count with a k, M or G suffix and three significant
// digits: "4.12 M".
func human(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 999.5e6:
		return sig3(x/1e9) + " G"
	case ax >= 999.5e3:
		return sig3(x/1e6) + " M"
	case ax >= 999.5:
		return sig3(x/1e3) + " k"
	}
	return sig3(x)
}

// sig3 formats x with three significant digits, without an exponent (and
// more digits left of the point when it has more than three).
func sig3(x float64) string {
	if x == 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	// The exponent of x rounded to three digits (0.9996 rounds to 1.00).
	e := strconv.FormatFloat(x, 'e', 2, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	decimals := max(0, 2-exp)
	return strconv.FormatFloat(x, 'f', decimals, 64)
}
