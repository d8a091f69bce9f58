// Package nexmark is streamd's Nexmark benchmark harness: the queries
// (nexmark-flink's SQL, written on the typed engine API), a registry of
// them, the runner behind `streamd bench nexmark`, the plain-Go baselines
// it compares against, the statistics it reports, and the suite's report
// files (JSON, a markdown table, a PNG chart).
//
// # Queries
//
// A query is one Query value, registered from an init function in a file
// of its own (q0.go, q1.go, …): Register is the only coupling between a
// query and the harness, so adding q3–q8 is adding a file each. Build adds
// the query to a job, over the stream of generated events (the Nexmark
// source of connectors/nexmark, in the same process: its cost is counted,
// as nexmark-flink counts its datagen source) and ends it in the harness's
// blackhole with Emit or EmitWindowed. Baseline, when set, is the same
// query as a Go programmer would write it with goroutines and channels
// (RunChannels does the plumbing for stateless queries).
//
// The generator is imported as gen; Event, Bid, Auction and Person are
// aliases of its types, so query files read as the SQL does.
//
// # What is measured, and how
//
//   - Wall and CPU time around the job's Run (or the baseline's function):
//     CPU is getrusage(RUSAGE_SELF) user + system, so it covers every
//     thread of the process — tasks, the generator inside the source
//     tasks, the garbage collector, the checkpoint writer and Pebble.
//   - Events are the generated events (persons, auctions and bids), as
//     nexmark-flink counts its source's records; events per CPU-second is
//     what compares with Flink's published per-core throughput.
//   - Peak RSS: before each run the harness collects garbage, returns
//     free memory to the OS, and resets the kernel's high-water mark
//     (writing "5" to /proc/self/clear_refs); after the run it reads
//     VmHWM from /proc/self/status. Without /proc (not Linux) it reports
//     getrusage's ru_maxrss, the process's lifetime peak, and says so
//     (Result.PeakRSSMethod).
//   - Checkpoints: the engine's statistics of every completed checkpoint
//     of the run (Job.CheckpointStats): end-to-end duration p50/p99, and
//     over every task of every completed checkpoint the synchronous pause
//     p99 and the alignment p99. The final checkpoint at the end of input
//     counts like the others.
//   - Output latency (windowed queries): LatencyRecorder. The engine
//     reports every source task's watermark (Options.OnSourceWatermark);
//     the recorder keeps, for each advance of the minimum over the source
//     tasks, the wall time it happened. When a window's result reaches the
//     sink, the latency is the wall time since the source watermark first
//     passed the window (reached its end − 1 ms: the window's last
//     timestamp, Flink's window.maxTimestamp()).
//
// Percentiles are nearest-rank (Percentile). A suite runs every query
// several times, interleaving streamd and baseline runs, and reports the
// median of each figure with its min–max spread. No test here judges a
// speed.
//
// # The blackhole
//
// Emit's sink consumes every result for real, as Flink's blackhole
// connector does after the query has produced its rows: each task counts
// its results and adds up one numeric field of each (the query's read
// function), so the compiler cannot drop the work that made the field. The
// counts and sums are published at every checkpoint and at the end, and
// the harness checks them: a baseline that disagrees with streamd about the
// number of results or the sum is an error.
//
// bench/nexmark sits at the top of the package graph with bench/: it
// imports the engine, the snapshot store and connectors; only commands
// import it.
package nexmark
