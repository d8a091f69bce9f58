package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/snapshot"
)

// cmdCheckpoints lists and verifies the checkpoints of a data dir offline:
//
//	streamd checkpoints list --data-dir DIR [JOB]
//	streamd checkpoints inspect --data-dir DIR JOB [ID]
//	streamd checkpoints list|inspect --savepoint DIR [JOB [ID]]
//
// list prints every job's completed checkpoints with their times, sizes and
// format, and the record of completed checkpoints beside them. inspect
// reads and verifies every block of one checkpoint (the newest by default:
// checksums, decompression, decoding, totals) and prints its operators and
// tasks, with each splittable source task's splits and their positions.
// Both only read; the data dir is locked while they run, so they
// refuse a dir that a running streamd holds. With --savepoint (or a
// --data-dir that holds a savepoint's descriptor) they read a savepoint
// instead, read-only; inspect then defaults to its checkpoint, and a
// directory whose export never finished (no valid descriptor) is refused. Exit 0 when everything read
// verifies, 1 when something is corrupt or cannot be read, 2 for a bad
// command line.
func cmdCheckpoints(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "inspect") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "streamd checkpoints: want list or inspect\n%s", usage)
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("checkpoints "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "streamd-data", "the data dir to read")
	spDir := fs.String("savepoint", "", "read the savepoint in this directory instead of a data dir")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *spDir == "" {
		// A data dir that is a savepoint is read as one.
		if _, err := snapshot.ReadSavepointDescriptor(nil, *dataDir); err == nil {
			*spDir = *dataDir
		}
	}
	var store *snapshot.Store
	var sp *snapshot.SavepointDescriptor
	if *spDir != "" {
		st, d, err := snapshot.OpenSavepoint(*spDir, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
		store, sp = st, &d
		fmt.Fprintf(stdout, "savepoint %s: checkpoint %d of job %s, completed %s, %d blocks, %s stored\n",
			d.Dir, d.CheckpointID, d.Job, d.CompletedAt.Format(time.RFC3339Nano), d.Blocks, sizeOf(d.StoredBytes))
	} else {
		if _, err := os.Stat(*dataDir); err != nil {
			fmt.Fprintf(stderr, "streamd: data dir %s: %v\n", *dataDir, err)
			return exitFailure
		}
		st, err := snapshot.Open(*dataDir, snapshot.Options{Logger: func(string, ...any) {}})
		if err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
		store = st
	}
	defer store.Close()
	switch sub {
	case "list":
		if fs.NArg() > 1 {
			fmt.Fprintf(stderr, "streamd checkpoints list: want at most one JOB\n%s", usage)
			return exitUsage
		}
		return listCheckpoints(store, fs.Args(), stdout, stderr)
	default:
		if sp != nil && fs.NArg() == 0 {
			return inspectCheckpoint(store, sp.Job, sp.CheckpointID, stdout, stderr)
		}
		if fs.NArg() < 1 || fs.NArg() > 2 {
			fmt.Fprintf(stderr, "streamd checkpoints inspect: want JOB [ID]\n%s", usage)
			return exitUsage
		}
		var id uint64
		if fs.NArg() == 2 {
			if _, err := fmt.Sscan(fs.Arg(1), &id); err != nil || id == 0 {
				fmt.Fprintf(stderr, "streamd checkpoints inspect: checkpoint id %q is not a positive integer\n", fs.Arg(1))
				return exitUsage
			}
		}
		return inspectCheckpoint(store, fs.Arg(0), id, stdout, stderr)
	}
}

func listCheckpoints(store *snapshot.Store, only []string, stdout, stderr io.Writer) int {
	jobs := only
	if len(jobs) == 0 {
		var err error
		if jobs, err = store.Jobs(); err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
	}
	if len(jobs) == 0 {
		fmt.Fprintf(stdout, "data dir %s holds no checkpoints\n", store.Dir())
		return exitOK
	}
	code := exitOK
	for _, job := range jobs {
		ids, err := store.Completed(job)
		if err != nil {
			fmt.Fprintf(stderr, "streamd: job %s: %v\n", job, err)
			code = exitFailure
			continue
		}
		record := "none"
		if rec, ok, err := store.CompletedRecord(job); err != nil {
			record = "error: " + err.Error()
			code = exitFailure
		} else if ok {
			record = fmt.Sprint(rec)
			if len(ids) == 0 || ids[len(ids)-1] < rec {
				record += " (LOST: the store holds no such checkpoint)"
				code = exitFailure
			}
		}
		fmt.Fprintf(stdout, "job %s: %d completed checkpoints; the record of completed checkpoints names %s\n", job, len(ids), record)
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  id\tcompleted at\tformat\tfinished\ttasks\toperators\traw\tstored\t")
		for _, id := range ids {
			m, err := store.LoadMetadata(job, id)
			if err != nil {
				fmt.Fprintf(tw, "  %d\tunreadable: %v\t\t\t\t\t\t\t\n", id, err)
				code = exitFailure
				continue
			}
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%v\t%d\t%d\t%s\t%s\t\n", id,
				time.Unix(0, m.CompletedAtUnixNano).UTC().Format(time.RFC3339Nano), m.FormatVersion, m.Finished,
				len(m.Tasks), len(m.Operators), sizeOf(m.RawBytes), sizeOf(m.StoredBytes))
		}
		tw.Flush()
	}
	return code
}

func inspectCheckpoint(store *snapshot.Store, job string, id uint64, stdout, stderr io.Writer) int {
	if id == 0 {
		ids, err := store.Completed(job)
		if err != nil {
			fmt.Fprintf(stderr, "streamd: %v\n", err)
			return exitFailure
		}
		if len(ids) == 0 {
			fmt.Fprintf(stderr, "streamd: data dir %s holds no completed checkpoint of job %q\n", store.Dir(), job)
			return exitFailure
		}
		id = ids[len(ids)-1]
	}
	m, err := store.LoadMetadata(job, id)
	if err != nil {
		fmt.Fprintf(stderr, "streamd: checkpoint %d of job %s: %v\n", id, job, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "checkpoint %d of job %s: format %d, completed %s, finished %v, max parallelism %d, %s raw, %s stored\n",
		m.CheckpointID, m.Job, m.FormatVersion, time.Unix(0, m.CompletedAtUnixNano).UTC().Format(time.RFC3339Nano),
		m.Finished, m.MaxParallelism, sizeOf(m.RawBytes), sizeOf(m.StoredBytes))
	if len(m.Operators) > 0 {
		fmt.Fprintln(stdout, "stateful operators:")
		for _, o := range m.Operators {
			fmt.Fprintf(stdout, "  %-24s %-6s parallelism %-5d %s\n", o.ID, o.Kind, o.Parallelism, o.Signature)
		}
	}
	fmt.Fprintln(stdout, "tasks:")
	code := exitOK
	for _, t := range m.Tasks {
		var splits []engine.Split
		var parts []string
		if t.Keyed != nil {
			blocks, entries, deltas, changes := 0, int64(0), 0, int64(0)
			for _, r := range t.Keyed.KeyGroups {
				blocks += r.Blocks
				entries += r.Entries
				for _, d := range r.Deltas {
					deltas++
					blocks += d.Blocks
					changes += d.Entries
				}
			}
			text := fmt.Sprintf("key groups [%d, %d): %d entries in %d blocks", t.KeyGroupStart, t.KeyGroupEnd, entries, blocks)
			if deltas > 0 {
				text = fmt.Sprintf("key groups [%d, %d): %d entries in full images, %d changes in %d deltas (longest chain %d), %d blocks",
					t.KeyGroupStart, t.KeyGroupEnd, entries, changes, deltas, t.Keyed.MaxChain, blocks)
			}
			parts = append(parts, text)
		}
		switch {
		case engine.IsSplitList(t.Source):
			var err error
			if splits, err = engine.DecodeSplits(t.Source); err != nil {
				fmt.Fprintf(stderr, "streamd: checkpoint %d of job %s: task %d of [%s]: %v\n", id, job, t.Index, strings.Join(t.Operators, " -> "), err)
				code = exitFailure
				parts = append(parts, "source splits that do not decode")
			} else {
				parts = append(parts, fmt.Sprintf("source splits %d", len(splits)))
			}
		case t.Source != nil:
			parts = append(parts, fmt.Sprintf("source position %d bytes", len(t.Source)))
		}
		if t.Sink != nil {
			parts = append(parts, fmt.Sprintf("pending sink transactions %d bytes", len(t.Sink)))
		}
		if len(parts) == 0 {
			parts = append(parts, "no state")
		}
		fmt.Fprintf(stdout, "  [%s] %d/%d: %s\n", strings.Join(t.Operators, " -> "), t.Index, t.Parallelism, strings.Join(parts, "; "))
		for i, sp := range splits {
			if i == maxSplitsShown {
				fmt.Fprintf(stdout, "      … and %d more splits\n", len(splits)-i)
				break
			}
			fmt.Fprintf(stdout, "      split %s\n", sp)
		}
	}
	before := store.BlocksRead()
	if err := store.Verify(m); err != nil {
		fmt.Fprintf(stderr, "streamd: checkpoint %d of job %s does not verify: %v\n", id, job, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "verified: %d blocks read, every checksum, decompression and total matches\n", store.BlocksRead()-before)
	return code
}

// maxSplitsShown bounds the splits inspect prints per task.
const maxSplitsShown = 100

// sizeOf formats a byte count for people.
func sizeOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
