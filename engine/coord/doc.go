// Package coord owns the checkpoint coordinator of one job as a pure state
// machine, in the style of etcd raft's RawNode: the caller feeds it time
// (Tick) and events (Step: acks, declines, persisted metadata, failures,
// TriggerNow, TriggerFinal, Stop), and acts on a Ready whose fields say what to do in
// which order — persist metadata, inject barriers, notify completion, notify
// aborts — then calls Advance. It decides when a checkpoint is triggered,
// when it is complete, when it is aborted and when the job must fail.
//
// It must never import anything of streamd's (it sits below engine/, which
// drives it from its coordinator goroutine), and owns no goroutines, clocks,
// channels, files or other I/O: every time is passed in.
//
// # Promises
//
//   - Ids are consecutive and strictly increasing from New's firstID.
//   - A checkpoint is listed in Ready.Persist only when every task acked it,
//     and in Ready.Complete only after its Persisted event. Completions are
//     strictly increasing; a completion subsumes (aborts) every older
//     pending checkpoint in the same Ready.
//   - Every triggered id is completed or aborted at most once. Unless the job
//     fails, every triggered id is eventually completed or aborted once the
//     caller stops triggering (no more Tick, or Stop), the tasks ack, and
//     every handed-out Persist is answered; Ticks past the timeout abort
//     whatever tasks do not ack.
//   - At most Options.MaxConcurrent checkpoints are in flight, counting
//     those whose metadata is being written.
//   - The Ready that carries Failed is the last Ready.
//
// # Decisions where the brief was silent
//
//   - Interval is measured from the previous trigger time (the Tick that
//     triggered it), and the first checkpoint is due Interval after New. At
//     most one checkpoint is triggered per Tick. MinPause is measured from
//     the most recent end (completion or abort) of any checkpoint.
//   - Timeout applies while acks are collected. Once Ready hands out a
//     checkpoint's Persist entry, only its Persisted or PersistFailed event
//     (or a newer completion) resolves it: aborting it while its metadata may
//     become durable would let sinks abort transactions that recovery must
//     commit. The caller bounds metadata writes. For the same reason
//     TaskFailed, Stop and too many failures abort every pending checkpoint
//     except those. A newer completion may subsume one: its Complete comes
//     first, committing everything up to the newer id.
//   - A job failure (TaskFailed, too many failures) aborts with
//     AbortTaskFailed or AbortJobFailed; PersistFailed aborts nothing and
//     withdraws the Persist entries not yet handed out (nothing more is
//     written to a store that failed; those checkpoints stay "abandoned").
//     Trigger entries are never withdrawn.
//   - After the job failed every event is ignored (late), and Tick does
//     nothing. After Stop, a handed-out checkpoint still completes on
//     Persisted. After the final checkpoint completes nothing more is
//     triggered.
//   - A final checkpoint waits for a free slot (MaxConcurrent) rather than
//     exceeding it; while it is wanted no regular checkpoint is triggered.
//     Retries after an abort happen at the next Tick with a free slot,
//     without a limit on their number (declines other than ReasonError are
//     not failures, so a task that keeps declining keeps the final
//     checkpoint retrying).
//   - On-demand checkpoints (TriggerNow: "checkpoint now", savepoints)
//     ignore Interval and MinPause but wait for a MaxConcurrent slot;
//     requests not yet triggered merge into one. While one is in flight
//     nothing else is triggered (with MaxConcurrent > 1 a newer checkpoint
//     completing first would subsume it, and the caller could not hand the
//     requester the checkpoint it asked for). They are not retried, and
//     their failures do not count towards TolerableFailures (Flink does not
//     count savepoint failures either). The history records which
//     checkpoints were on-demand and which were savepoints.
//   - Late events (acks or declines for resolved checkpoints, or ids from
//     before firstID) are ignored and counted; events for ids never
//     triggered, from unknown tasks, a decline after the same task's ack,
//     and Persisted for a checkpoint whose metadata was not handed out are
//     errors: they change nothing.
//   - A time earlier than one already seen is treated as the latest time
//     seen.
//   - Invalid arguments to New panic (they are bugs); validate user options
//     with Options.Validate first.
//
// Build with -tags invariants to check the internal invariants after every
// call.
package coord
