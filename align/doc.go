// Package align owns barrier alignment: the state machine one task runs over
// the in-band control elements (checkpoint barriers, cancellation markers,
// end-of-input) it reads from its input channels, deciding when to block a
// channel, when to snapshot and forward a barrier, and when a checkpoint is
// abandoned.
//
// It is a pure state machine in the style of etcd's raft: no goroutines,
// clocks, I/O, channels or allocations per call. The caller feeds one element
// at a time (Barrier, Cancel, EndOfInput; Abandon from the control path) and
// applies the returned Decision in the order documented on it. Records never
// pass through the Aligner: the caller simply does not read a channel while
// Blocked reports true.
//
// # Protocol
//
// Checkpoint ids are positive; on every channel barriers arrive in strictly
// increasing id order. A channel is live until it delivers end-of-input;
// from then on it counts as having delivered every barrier with an id above
// the last barrier it delivered. A checkpoint completes when its barrier has
// arrived on every live channel. (A channel that skipped a checkpoint, i.e.
// delivered a later barrier without it, never counts for it, even after it
// ends: otherwise a barrier ignored as stale while that channel was live
// could later complete. Flink's tracker counts such an ended channel; the
// difference only shows in AtLeastOnce, where the skipped checkpoint then
// waits to be subsumed by a newer one.)
//
// ExactlyOnce (Flink's SingleCheckpointBarrierHandler, aligned):
//   - Barrier n on channel i blocks i (only channels that delivered n are
//     blocked; the others keep flowing). When n has arrived on every live
//     channel: Snapshot n and UnblockAll. With one live channel the snapshot
//     is immediate and nothing is blocked.
//   - A barrier m newer than the checkpoint n being aligned abandons n
//     (Abort n, which resumes every channel) and starts aligning m (Block i).
//   - At most one checkpoint is in progress.
//
// AtLeastOnce (Flink's CheckpointBarrierTracker): nothing is ever blocked.
// Up to MaxPendingCheckpoints checkpoints are tracked at once, each
// completing independently; this keeps overlapping checkpoints completing
// under skew (max concurrent checkpoints > 1) instead of each newer one
// starving the older. When one completes, older ones still pending are
// dropped silently (subsumed: either a channel skipped their barrier, so they
// could never complete, or they completed at the same end-of-input). A barrier that would exceed the limit
// evicts the oldest, reported as Abort.
//
// Both modes:
//   - Stale elements are ignored (a Decision that asks for nothing): a
//     barrier or cancellation marker for an id at or below LastFinished, or
//     for an id older than a checkpoint already in progress that was never
//     seen here (another channel has already moved past it).
//   - Cancel n (a cancellation marker from a channel) or Abandon n (the
//     control path: coordinator abort, alignment timeout) for a checkpoint
//     in progress: Abort n (ExactlyOnce: plus UnblockAll; AtLeastOnce: older
//     pending checkpoints are dropped silently, as Flink's tracker aborts
//     them). Cancel or Abandon m newer than anything seen: Abort m, anything
//     in progress is dropped, and m's late barriers are stale. We report m,
//     not the older checkpoint in progress, because m's cancellation marker
//     is what downstream tasks need: it also ends their alignment of
//     anything older. Any other id is stale.
//   - Decision.AbortCause says why: subsumed (newer barrier, ExactlyOnce),
//     cancelled (marker), evicted (tracker full, AtLeastOnce), abandoned
//     (Abandon).
//   - Once every channel has ended nothing is in progress, and no call asks
//     for anything to be forwarded again (Abandon then does nothing), since
//     the task has forwarded end-of-input on its outputs.
//   - Abort and Snapshot ids strictly increase over the Aligner's life and
//     each id is reported at most once, so "this task reported n" implies
//     "this task will never acknowledge any id <= n". (An engine that acks
//     asynchronously must still order acks of older snapshots before a
//     decline it treats as covering them.)
//
// Protocol bugs panic, naming the channel and id, and leave the state
// unchanged: an element on a channel out of range, checkpoint id 0, a
// duplicate or decreasing barrier on a channel, any element read from a
// blocked channel (including end-of-input: a blocked channel is not read),
// and anything read after a channel's end-of-input. Building with
// -tags invariants re-checks the whole state after every call.
//
// # Limits
//
// MaxInputs channels per Aligner; MaxPendingCheckpoints tracked checkpoints
// in AtLeastOnce (ExactlyOnce tracks one). Memory is one bit per channel per
// tracked checkpoint plus eight bytes per channel, allocated by New.
//
// # Imports
//
// This package sits at the bottom of streamd: it imports only fmt, strconv
// and strings, and must never import another streamd package, a clock, a
// logger or anything that does I/O.
package align
