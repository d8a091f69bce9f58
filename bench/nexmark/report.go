package nexmark

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files a suite writes into its output directory (WriteSuite).
const (
	TableFile = "nexmark.md"
	PlotFile  = "nexmark.png"
)

// ResultFile is the JSON file of one query's suite result.
func ResultFile(query string) string { return "nexmark-" + query + ".json" }

// WriteSuite writes a suite's results into dir (created if missing):
// ResultFile(q) for each query, TableFile (the markdown table) and
// PlotFile (the chart). It says which file it could not write.
func WriteSuite(dir string, results []SuiteResult) error {
	if len(results) == 0 {
		return fmt.Errorf("nexmark bench: no results to write to %s", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("nexmark bench: cannot make the results directory: %w", err)
	}
	for _, r := range results {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fmt.Errorf("nexmark bench: cannot encode the result of %s: %w", r.Query, err)
		}
		if err := writeFile(filepath.Join(dir, ResultFile(r.Query)), append(data, '\n')); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, TableFile), []byte(Table(results))); err != nil {
		return err
	}
	var png bytes.Buffer
	if err := Plot(&png, results); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, PlotFile), png.Bytes())
}

// writeFile writes a result file whole: into a temporary file beside it,
// renamed over it, so a reader never sees half a table.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("nexmark bench: cannot write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := firstErr(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("nexmark bench: cannot write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("nexmark bench: cannot write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("nexmark bench: cannot write %s: %w", path, err)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Table returns the suite's markdown table: one row per query, medians
// with their min–max range, streamd's events per CPU-second beside
// Flink's published throughput per core, and the baseline ratio.
func Table(results []SuiteResult) string {
	var b strings.Builder
	first := results[0]
	ckpt := "no checkpoints"
	if first.CheckpointIntervalMs > 0 {
		ckpt = fmt.Sprintf("exactly-once checkpoints every %v", time.Duration(first.CheckpointIntervalMs*float64(time.Millisecond)))
	}
	commit := first.Commit
	if commit == "" {
		commit = "unknown"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if first.CommitModified {
		commit += " (modified)"
	}
	fmt.Fprintf(&b, "<!-- Written by `%s`; do not edit. -->\n\n", first.CommandLine)
	fmt.Fprintf(&b, "Nexmark on streamd, %s: parallelism %d, %s; median of %d runs (min–max). "+
		"%s %s/%s, GOMAXPROCS %d, %d CPUs, commit %s.\n\n",
		dateOnly(first.Date), first.Parallelism, ckpt, first.Runs,
		first.GoVersion, first.GOOS, first.GOARCH, first.GOMAXPROCS, first.NumCPU, commit)
	b.WriteString("| query | events | events/s | events/CPU-s | Flink events/s per core | streamd per CPU-s ÷ Flink per core | streamd ÷ channels (events/CPU-s) | checkpoint cost | checkpoint e2e p99 | output latency p99 | peak RSS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		s := r.Streamd
		flink, vsFlink := "—", "—"
		if r.FlinkPerCoreEventsPerSecond != nil {
			flink = human(*r.FlinkPerCoreEventsPerSecond)
			vsFlink = fmt.Sprintf("%.1f×", *r.StreamdVsFlinkPerCore)
		}
		vsBase := "—"
		if r.StreamdVsBaseline != nil {
			v := r.StreamdVsBaseline
			vsBase = fmt.Sprintf("%.2f× (%.2f–%.2f)", v.Median, v.Min, v.Max)
		}
		cost := "—"
		if c := r.CheckpointCost; c != nil {
			cost = fmt.Sprintf("%.1f %% (%.1f–%.1f)", 100*c.Median, 100*c.Min, 100*c.Max)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Query, human(float64(r.Events)), spreadHuman(s.EventsPerSecond), spreadHuman(s.EventsPerCPUSecond), flink, vsFlink, vsBase,
			cost, spreadMs(s.CheckpointE2EP99Ms), spreadMs(s.OutputLatencyP99Ms), mib(s.PeakRSSBytes.Median))
	}
	b.WriteString("\nevents: generated events (persons, auctions, bids), the generator running inside the job as nexmark-flink's datagen does. " +
		"events/CPU-s: events ÷ the process's user+system CPU time (getrusage), comparable with Flink's throughput per core, which nexmark measures as events ÷ (cores used × time). " +
		"channels: the same query as plain Go (goroutines, channels of 256-event batches), same generator and blackhole. " +
		"checkpoint cost: 1 − events/CPU-s with checkpoints ÷ without, the run without right after the run with (negative: noise). " +
		"checkpoint e2e p99: trigger to completion. output latency p99: window end passing the source watermark → result at the sink (windowed queries only). " +
		"peak RSS: " + first.PeakRSSMethod + ", per run.\n")
	return b.String()
}

// dateOnly returns the date part of an RFC 3339 time.
func dateOnly(rfc3339 string) string {
	if t, err := time.Parse(time.RFC3339, rfc3339); err == nil {
		return t.Format("2006-01-02")
	}
	return rfc3339
}

func spreadHuman(s Spread) string {
	return fmt.Sprintf("%s (%s–%s)", human(s.Median), human(s.Min), human(s.Max))
}

func spreadMs(s *Spread) string {
	if s == nil {
		return "—"
	}
	return fmt.Sprintf("%s ms (%s–%s)", msText(s.Median), msText(s.Min), msText(s.Max))
}

// msText formats milliseconds with three significant digits.
func msText(v float64) string { return sig3(v) }

func mib(bytes float64) string { return fmt.Sprintf("%.0f MiB", bytes/(1<<20)) }
