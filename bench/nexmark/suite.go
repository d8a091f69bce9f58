package nexmark

import (
	"context"
	"fmt"
)

// FlinkPerCore is Flink's published throughput per core, in events per
// second per core, from the nexmark repository's results table (Flink
// 1.13, 8 TaskManagers of one slot on 3+ machines of 8 cores, 100 M
// events, exactly-once checkpoints every 3 minutes, RocksDB; "Cores" there
// is measured CPU usage, so Throughput/Cores is events per CPU-second, the
// figure our EventsPerCPUSecond compares with).
var FlinkPerCore = map[string]float64{
	"q0": 155.02e3, "q1": 157.94e3, "q2": 175.21e3, "q3": 152.12e3,
	"q4": 34.33e3, "q5": 22.14e3, "q7": 12.33e3, "q8": 146.14e3,
}

// Report is one run of one query: what `streamd bench nexmark --json`
// prints, one JSON object per query, with the environment, streamd's
// figures, and the baseline's when it ran.
type Report struct {
	Env
	Result
	// Baseline is the plain-Go baseline's run (null without one).
	Baseline *Result `json:"baseline"`
	// StreamdVsBaseline is streamd's events per CPU-second divided by the
	// baseline's: above 1, streamd does more with the same CPU.
	StreamdVsBaseline *float64 `json:"streamd_vs_baseline_events_per_cpu_second"`
	// FlinkPerCoreEventsPerSecond is FlinkPerCore's figure for the query
	// (null when Flink published none), and StreamdVsFlinkPerCore
	// streamd's events per CPU-second divided by it.
	FlinkPerCoreEventsPerSecond *float64 `json:"flink_per_core_events_per_second"`
	StreamdVsFlinkPerCore       *float64 `json:"streamd_vs_flink_per_core"`
}

// RunQuery runs q on streamd and, when baseline is set, its plain-Go
// baseline after it, and checks that both saw the same results.
func RunQuery(ctx context.Context, q Query, cfg RunConfig, baseline bool, env Env) (Report, error) {
	r, err := Run(ctx, q, cfg)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Env: env, Result: r}
	if f, ok := FlinkPerCore[q.Name]; ok {
		rep.FlinkPerCoreEventsPerSecond = &f
		v := r.EventsPerCPUSecond / f
		rep.StreamdVsFlinkPerCore = &v
	}
	if !baseline {
		return rep, nil
	}
	b, err := RunBaseline(ctx, q, cfg)
	if err != nil {
		return Report{}, err
	}
	if err := sameResults(r, b); err != nil {
		return Report{}, err
	}
	rep.Baseline = &b
	if b.EventsPerCPUSecond > 0 {
		v := r.EventsPerCPUSecond / b.EventsPerCPUSecond
		rep.StreamdVsBaseline = &v
	}
	return rep, nil
}

// sameResults checks that two systems' blackholes saw the same results.
func sameResults(a, b Result) error {
	if a.Results != b.Results || a.ResultFieldSum != b.ResultFieldSum {
		return fmt.Errorf("nexmark bench: %s: %s and %s disagree: %d results (field sum %d) against %d (field sum %d)",
			a.Query, a.System, b.System, a.Results, a.ResultFieldSum, b.Results, b.ResultFieldSum)
	}
	return nil
}

// SuiteConfig configures a suite: several queries, several runs each.
type SuiteConfig struct {
	// Run configures every run (its Label is set per run).
	Run RunConfig
	// Runs is the number of runs of each query (and of each baseline).
	// Default 3.
	Runs int
	// Baseline runs each query's baseline too (queries without one run
	// alone).
	Baseline bool
	// CheckpointCost runs each query a second time without checkpoints,
	// right after the run with them, and reports what checkpointing cost
	// (SuiteResult.CheckpointCost). Needs a checkpoint interval.
	CheckpointCost bool
	// Queries are the queries to run. Default: every registered one.
	Queries []Query
	// Env describes the run.
	Env Env
}

// Figures are one system's figures over a suite's runs of one query: the
// median and range of each, and the runs themselves.
type Figures struct {
	WallSeconds          Spread `json:"wall_seconds"`
	CPUSeconds           Spread `json:"cpu_seconds"`
	EventsPerSecond      Spread `json:"events_per_second"`
	EventsPerCPUSecond   Spread `json:"events_per_cpu_second"`
	CoresUsed            Spread `json:"cores_used"`
	PeakRSSBytes         Spread `json:"peak_rss_bytes"`
	CheckpointsCompleted Spread `json:"checkpoints_completed"`
	// Figures that not every run has (null when no run has them).
	CheckpointE2EP50Ms       *Spread  `json:"checkpoint_e2e_p50_ms"`
	CheckpointE2EP99Ms       *Spread  `json:"checkpoint_e2e_p99_ms"`
	CheckpointSyncPauseP99Ms *Spread  `json:"checkpoint_sync_pause_p99_ms"`
	CheckpointAlignmentP99Ms *Spread  `json:"checkpoint_alignment_p99_ms"`
	OutputLatencyP50Ms       *Spread  `json:"output_latency_p50_ms"`
	OutputLatencyP99Ms       *Spread  `json:"output_latency_p99_ms"`
	Runs                     []Result `json:"runs"`
}

// figuresOf summarizes runs.
func figuresOf(runs []Result) Figures {
	f := Figures{Runs: runs}
	all := func(get func(*Result) float64) Spread {
		xs := make([]float64, len(runs))
		for i := range runs {
			xs[i] = get(&runs[i])
		}
		return SpreadOf(xs)
	}
	some := func(get func(*Result) *float64) *Spread {
		var xs []float64
		for i := range runs {
			if v := get(&runs[i]); v != nil {
				xs = append(xs, *v)
			}
		}
		if len(xs) == 0 {
			return nil
		}
		s := SpreadOf(xs)
		return &s
	}
	f.WallSeconds = all(func(r *Result) float64 { return r.WallSeconds })
	f.CPUSeconds = all(func(r *Result) float64 { return r.CPUSeconds })
	f.EventsPerSecond = all(func(r *Result) float64 { return r.EventsPerSecond })
	f.EventsPerCPUSecond = all(func(r *Result) float64 { return r.EventsPerCPUSecond })
	f.CoresUsed = all(func(r *Result) float64 { return r.CoresUsed })
	f.PeakRSSBytes = all(func(r *Result) float64 { return float64(r.PeakRSSBytes) })
	f.CheckpointsCompleted = all(func(r *Result) float64 { return float64(r.CheckpointsCompleted) })
	f.CheckpointE2EP50Ms = some(func(r *Result) *float64 { return r.CheckpointE2EP50Ms })
	f.CheckpointE2EP99Ms = some(func(r *Result) *float64 { return r.CheckpointE2EP99Ms })
	f.CheckpointSyncPauseP99Ms = some(func(r *Result) *float64 { return r.CheckpointSyncPauseP99Ms })
	f.CheckpointAlignmentP99Ms = some(func(r *Result) *float64 { return r.CheckpointAlignmentP99Ms })
	f.OutputLatencyP50Ms = some(func(r *Result) *float64 { return r.OutputLatencyP50Ms })
	f.OutputLatencyP99Ms = some(func(r *Result) *float64 { return r.OutputLatencyP99Ms })
	return f
}

// SuiteResult is a suite's result for one query: bench/results/nexmark-<query>.json.
type SuiteResult struct {
	Env
	Query                string  `json:"query"`
	SQL                  string  `json:"sql"`
	Windowed             bool    `json:"windowed"`
	Runs                 int     `json:"runs"`
	Events               int64   `json:"events"`
	Parallelism          int     `json:"parallelism"`
	CheckpointIntervalMs float64 `json:"checkpoint_interval_ms"`
	PeakRSSMethod        string  `json:"peak_rss_method"`
	Streamd              Figures `json:"streamd"`
	// Baseline is the plain-Go baseline's figures (null when it did not
	// run), and StreamdVsBaseline the ratio of events per CPU-second,
	// paired run by run (streamd's run i over the baseline's run i, which
	// ran right after it).
	Baseline          *Figures `json:"baseline"`
	StreamdVsBaseline *Spread  `json:"streamd_vs_baseline_events_per_cpu_second"`
	// NoCheckpoints is streamd's figures without checkpoints (null unless
	// SuiteConfig.CheckpointCost), and CheckpointCost what checkpointing
	// cost: 1 − events per CPU-second with them ÷ without, paired run by
	// run (the run without followed the run with).
	NoCheckpoints  *Figures `json:"no_checkpoints"`
	CheckpointCost *Spread  `json:"checkpoint_cost"`
	// FlinkPerCoreEventsPerSecond is FlinkPerCore's figure (null when
	// Flink published none); StreamdVsFlinkPerCore is streamd's median
	// events per CPU-second over it.
	FlinkPerCoreEventsPerSecond *float64 `json:"flink_per_core_events_per_second"`
	StreamdVsFlinkPerCore       *float64 `json:"streamd_vs_flink_per_core"`
}

// RunSuite runs every query of cfg cfg.Runs times, in rounds: each round
// runs every query once (then its baseline), so that drift in the
// machine's load hits every query alike. It returns one SuiteResult per
// query, in cfg.Queries' order.
func RunSuite(ctx context.Context, cfg SuiteConfig) ([]SuiteResult, error) {
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.Runs < 1 {
		return nil, fmt.Errorf("%w: runs %d is not at least 1", ErrInvalidConfig, cfg.Runs)
	}
	if len(cfg.Queries) == 0 {
		cfg.Queries = Queries()
	}
	run := cfg.Run
	run.ensureDefaults()
	if err := run.Validate(); err != nil {
		return nil, err
	}
	if cfg.CheckpointCost && run.CheckpointInterval <= 0 {
		return nil, fmt.Errorf("%w: the checkpoint cost needs a checkpoint interval", ErrInvalidConfig)
	}
	streamd := make([][]Result, len(cfg.Queries))
	unchecked := make([][]Result, len(cfg.Queries))
	base := make([][]Result, len(cfg.Queries))
	for round := range cfg.Runs {
		for i, q := range cfg.Queries {
			rc := run
			rc.Label = fmt.Sprintf("run %d/%d %s %s", round+1, cfg.Runs, q.Name, SystemStreamd)
			r, err := Run(ctx, q, rc)
			if err != nil {
				return nil, err
			}
			streamd[i] = append(streamd[i], r)
			if cfg.CheckpointCost {
				nc := rc
				nc.CheckpointInterval = 0
				nc.Label = fmt.Sprintf("run %d/%d %s %s without checkpoints", round+1, cfg.Runs, q.Name, SystemStreamd)
				u, err := Run(ctx, q, nc)
				if err != nil {
					return nil, err
				}
				if err := sameResults(r, u); err != nil {
					return nil, err
				}
				unchecked[i] = append(unchecked[i], u)
			}
			if !cfg.Baseline || q.Baseline == nil {
				continue
			}
			rc.Label = fmt.Sprintf("run %d/%d %s %s", round+1, cfg.Runs, q.Name, SystemChannels)
			b, err := RunBaseline(ctx, q, rc)
			if err != nil {
				return nil, err
			}
			if err := sameResults(r, b); err != nil {
				return nil, err
			}
			base[i] = append(base[i], b)
		}
	}
	out := make([]SuiteResult, len(cfg.Queries))
	for i, q := range cfg.Queries {
		sr := SuiteResult{
			Env: cfg.Env, Query: q.Name, SQL: q.SQL, Windowed: q.Windowed, Runs: cfg.Runs,
			Events: run.Events, Parallelism: run.Parallelism, CheckpointIntervalMs: ms(run.CheckpointInterval),
			PeakRSSMethod: streamd[i][0].PeakRSSMethod,
			Streamd:       figuresOf(streamd[i]),
		}
		if len(base[i]) > 0 {
			b := figuresOf(base[i])
			sr.Baseline = &b
			ratios := make([]float64, len(base[i]))
			for k := range ratios {
				ratios[k] = streamd[i][k].EventsPerCPUSecond / base[i][k].EventsPerCPUSecond
			}
			s := SpreadOf(ratios)
			sr.StreamdVsBaseline = &s
		}
		if len(unchecked[i]) > 0 {
			u := figuresOf(unchecked[i])
			sr.NoCheckpoints = &u
			costs := make([]float64, len(unchecked[i]))
			for k := range costs {
				costs[k] = 1 - streamd[i][k].EventsPerCPUSecond/unchecked[i][k].EventsPerCPUSecond
			}
			c := SpreadOf(costs)
			sr.CheckpointCost = &c
		}
		if f, ok := FlinkPerCore[q.Name]; ok {
			v := sr.Streamd.EventsPerCPUSecond.Median / f
			sr.FlinkPerCoreEventsPerSecond, sr.StreamdVsFlinkPerCore = &f, &v
		}
		out[i] = sr
	}
	return out, nil
}
