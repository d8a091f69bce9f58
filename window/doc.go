// Package window owns event-time windows over keyed streams: the
// tumbling, sliding and session assigners, incremental aggregation into
// one accumulator per key and pane (or session), and the operator that
// fires each window once, built on engine.KeyedProcess and its timers.
//
// # Semantics
//
// They are Flink's event-time windows with the default (event-time)
// trigger, an AggregateFunction and allowedLateness, matched rule by rule:
//
//   - Tumbling(size).WithOffset(off): a record at ts belongs to
//     [ts − (ts−off) mod size, +size), mod taken in [0, size) also for
//     negative timestamps (Flink ≥ 1.15's getWindowStartWithOffset; older
//     versions put a negative ts in the wrong window).
//   - Sliding(size, slide): to every [s, s+size) with s ≡ off (mod slide)
//     and s ≤ ts < s+size (SlidingEventTimeWindows.assignWindows). A slide
//     larger than the size leaves gaps; a record in one belongs to no
//     window and is dropped, counted as late only if it is late.
//   - Session(gap): to [ts, ts+gap), merged with every session of its key
//     it intersects, touching included: [a,b) and [c,d) merge when a <= d
//     and b >= c (TimeWindow.intersects, mergeWindows). A record can
//     bridge two sessions into one.
//   - A window fires when the watermark reaches its MaxTimestamp() (End−1),
//     once, with one result per key and window that received a record;
//     the result's timestamp is MaxTimestamp().
//   - With AllowedLateness L, a window's state stays until the watermark
//     reaches MaxTimestamp()+L; meanwhile every record for it updates it
//     and fires it again at once (EventTimeTrigger.onElement), a session
//     that such a record extends past the watermark fires again when the
//     watermark reaches its new end. Then the state is dropped.
//   - A record is skipped by each of its windows whose cleanup time
//     (MaxTimestamp()+L) is at or below the watermark; a record skipped by
//     all of them is dropped and counted in Options.LateRecords (Flink's
//     numLateRecordsDropped). For a session the check is made on the
//     session after merging, as Flink does: a record whose own session
//     would be late but that merges into a live one is kept.
//   - A record outside [MinTimestamp, MaxTimestamp] (±2^62 ms) is dropped
//     and counted as late.
//
// # State
//
// A window's state is its accumulator, never its records. The
// accumulators are a keyed map state of the operator (under its uid, so it
// follows the operator across chains and restores), with user key the
// 8-byte start of a pane, window or session; the timers are the engine's
// keyed timers. Both are copy-on-write keyed state, checkpointed with the
// task, and the engine restores the task's watermark with them: after a
// restore no window fires twice (its timer was consumed and its state
// dropped before the checkpoint, or it was in its lateness) and none is
// lost (its state and timer are in the checkpoint).
//
// Sliding windows are pane-based (sliced, as in "No pane, no gain", Li et
// al. 2005, and Flink's sliced windows in Flink SQL): a pane is
// gcd(size, slide) long, each record updates the one accumulator of its
// pane (one state read and write per record, not size/slide), and a
// window merges its size/pane panes, oldest first, when it fires. A pane
// is dropped when the last window that holds it is past its cleanup time.
// So a key holds O((size + out-of-orderness + lateness)/pane) accumulators
// and one timer, at its next event (a window of one of its panes to fire,
// or a pane to drop): when it fires, every window of the key that the
// watermark has passed fires, oldest first, from one read of its panes.
// Tumbling windows are the case of one pane per window. Panes need the aggregate's Merge; without it, or with more than
// MaxPanesPerWindow panes per window, a sliding window keeps one
// accumulator per window, as Flink does, and each record updates all of
// its ceil(size/slide) windows (at most MaxWindowsPerRecord).
//
// Session windows keep one accumulator per session, which merges fold
// together (Merge is required).
//
// # Cost
//
// Per record of a tumbling or pane-based sliding window: one map-state
// read and write of the accumulator; when the record creates a pane, a
// walk of the key's panes that stops at the first one due no later (with
// records in order, the pane before it), and a timer registration when
// the key had no pane due earlier. Per key and watermark that passes one
// or more of its windows: one timer, one walk of the key's panes, a merge
// of each fired window's panes in memory, one delete per pane that no
// window needs any more (one clear when none is left), and one timer
// registration; not a timer and size/pane reads per window. Within one
// watermark, results are emitted key by key, each key's in window order
// (Flink emits them window by window; the order across keys between two
// watermarks is not part of either's contract). Per record of
// a session window: a scan of the key's sessions (usually one), a write,
// and when the session's end moves, a timer deleted and one registered.
// With a fixed-size accumulator codec nothing allocates per record
// (TestZeroAllocsPerRecord).
//
// # Decisions where the design is silent
//
//   - Timers are per key and timestamp (keyed.Timers has no namespaces):
//     a timer means "look at this key then", and what fires or is cleaned
//     up is decided from the state, by the timer's timestamp (as Flink's
//     onEventTime decides by it). Sessions delete a retired session's
//     timers only when no other session of the key uses the same time.
//   - The state name holds the window geometry ("panes/size=…,slide=…,
//     offset=…,pane=…"): a job restored with other windows starts with
//     empty windows rather than misreading the old accumulators, which the
//     engine keeps and logs as unregistered state.
//   - The operator reads and writes its state before it emits: what the
//     results run downstream in the same task may change the backend's
//     current key, which the operator sets back between two results.
//   - Late records are counted in an atomic the caller owns
//     (Options.LateRecords): one counter for all tasks of the operator,
//     readable by a test after Run and by a metric while it runs, touched
//     only by late records.
//
// window imports engine and keyed; it must never import connectors, job,
// jobrun, server or cmd.
package window
