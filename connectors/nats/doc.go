// Package nats holds the NATS JetStream source and the exactly-once
// JetStream sink.
//
// # The source
//
// A stream is read from the stream sequence stored in the checkpoint, with
// JetStream ordered consumers (ephemeral, in-memory, no acks: the position
// is ours, not the server's). The splits are subject filters: by default
// the stream's own subjects, or the filters SourceOptions.Subjects lists,
// which must not overlap (a message matching two filters would be read
// twice; Initial refuses overlapping filters). A split's position is the
// next stream sequence to read ("next=N", plus "end=M" for a bounded
// source), so a restore at another parallelism deals the same splits out
// to another number of tasks; splits are never subdivided. A bounded source
// (SourceOptions.Bounded) fixes, at its first start, the stream's last
// sequence as every split's end, stores it in the split, and ends when each
// split has read through it: reruns after a crash read exactly the same
// messages. Values are decoded by SourceOptions.Decode; DecodeJSON and
// Record give JSON values with the subject, stream sequence and message
// time, and RecordTime is the timestamp function for event time.
//
// # The sink: where pending messages live
//
// A transaction is the messages one task wrote between two checkpoint
// barriers. They are published only at commit, after the checkpoint is
// complete, so they must survive a crash between the pre-commit and the
// commit. The sink keeps them in the checkpoint itself: PreCommit returns
// them as the writer's state, which the engine stores in the checkpoint's
// metadata, synced before the checkpoint counts as complete. So exactly the
// transactions that the restored checkpoint lists exist after a crash,
// Recover publishes them, and there is nothing to abort: nothing reached
// NATS before its checkpoint was complete. A staging stream would have
// needed its own cleanup of strays, a read-back on recovery and a second
// copy of every message on the wire; the price of our choice is that
// checkpoint metadata grows with the output of one interval, so it is
// bounded: SinkOptions.MaxPendingBytes (default DefaultMaxPendingBytes)
// per task, beyond which Write fails the job with a message that says to
// shorten the checkpoint interval or raise the limit.
//
// # Commit and duplicates
//
// Commit publishes a transaction's messages asynchronously, each with the
// header Nats-Msg-Id "streamd/JOB/SINK/TASK/CHECKPOINT/INDEX", waits for
// every acknowledgement, then records the checkpoint in the commit bucket
// (a JetStream key-value bucket, key JOB.SINK.tTASK). A crash during a
// commit publishes the transaction again at recovery with the same ids, and
// the output stream's duplicate window drops what it already stored. The
// window is the limit of the guarantee: a replay later than the stream's
// Duplicates setting after the first attempt duplicates output.
// CheckDuplicateWindow warns when the checkpoint interval plus the expected
// recovery time exceeds it.
//
// # A server that fails mid-job
//
// The client reconnects by itself, without limit, while the job runs; a
// job bounds the wait with ConnOptions.ReconnectTimeout (default
// DefaultReconnectTimeout, 30 s). A server back within it costs nothing:
// each ordered consumer resumes after the last message it handed over, and
// a commit caught by the loss is done again, whole, once the server
// answers (the same message ids, so the duplicate window drops what was
// stored already; CheckDuplicateWindow counts ReconnectTimeout in). A
// server away for longer fails the job: a source reader without a
// connection for ReconnectTimeout, or a commit that has not succeeded
// within ReconnectTimeout of its first failure, returns an error that
// names the stream or subject, the server (without credentials), how long
// it was gone and why. A rerun resumes from the last completed
// checkpoint, whose pending commits Recover publishes, so nothing is lost
// or counted twice. The source never hands the engine an error wrapping
// io.EOF (a closed connection's): only io.EOF itself ends it.
//
// # What the sink committed
//
// LastCommitted (engine.CommitReporter) is the highest checkpoint recorded
// in the commit bucket under the job's and sink's prefix, over every task
// of every parallelism. An entry is written only after every message of
// its checkpoint was acknowledged, so it never runs ahead of the output.
// To start a job over into the same stream, delete its keys from the
// bucket.
//
// Credentials come from environment variables named in ConnOptions, never
// from the spec, and no error or log line of this package contains them.
//
// It imports engine and the NATS client only.
package nats
