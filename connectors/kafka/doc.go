// Package kafka holds the Kafka source (partitions as splits, offsets in
// the checkpoint) and the transactional exactly-once Kafka sink, both on
// github.com/twmb/franz-go. It imports engine and franz-go only.
//
// # The sink: one transactional id per task, a transaction per checkpoint
//
// Task i of sink ID s of job j produces with the transactional id
// TransactionalIDPrefix + "/" + j + "/" + s + "/" + i (j and s path-escaped),
// stable across restarts. Records go into an open transaction; at the
// checkpoint barrier (PreCommit) the writer adds a control record
// {transactional id → checkpoint} to ControlTopic in the same
// transaction, flushes, and stores {transactional id, checkpoint,
// producer id, epoch} in the checkpoint. When the checkpoint completes
// (Commit) it ends the transaction with a commit. Records written between
// PreCommit and Commit are held in memory (bounded by MaxBufferedBytes):
// one transactional id has one transaction at a time.
//
// Every transaction has its own producer epoch: brokers with KIP-890 bump
// it at each EndTxn; on older brokers the writer reopens its client after
// each commit, and the InitProducerID bumps it. That is what makes
// recovery exact: on recovery the sink ends each transaction the restored
// checkpoint lists with a raw EndTxn(commit) at the stored producer id and
// epoch, as Flink's sink resumes one. Kafka answers success when the
// transaction is still open (it is committed now) or was already committed
// (a retried commit); it answers with a fencing error when a later epoch
// exists — the transaction was ended earlier and the writer went on. Only
// then the sink reads ControlTopic with read_committed: a control record
// of that transactional id at or beyond the checkpoint proves it was
// committed; otherwise it was aborted (its transaction timeout expired
// before the job came back) and the sink refuses to start, naming the lost
// checkpoint, rather than continue with a hole in the output
// (recoverDecision is this rule as a pure function). Then every
// transactional id of the restored tasks is fenced (InitProducerID bumps
// its epoch), which aborts whatever the crashed run left open; the
// writers of the new run fence their own ids when they start.
//
// A transaction timeout shorter than the checkpoint interval plus the
// checkpoint timeout would let Kafka abort a pre-committed transaction
// before its checkpoint completes: CheckTransactionTimeout rejects it when
// the job is built. Consumers of the output must read with read_committed.
//
// CommitReporter: LastCommitted reads ControlTopic (read_committed, up to
// its last stable offset) and returns the highest checkpoint a control
// record of this job's sink names. An open transaction of the crashed run
// holds the last stable offset back until Recover ends it, so the answer
// may lag (never lead) right after a crash; that only narrows what the
// engine's sink-ahead check detects.
//
// # The source: partitions as splits
//
// Each partition of the topics is a split "TOPIC/PARTITION" whose state is
// the next offset to read (and the stop offset of a bounded source). The
// start offsets (earliest, latest, a timestamp, a consumer group's
// committed offsets) are resolved once, when the enumerator makes the
// initial splits, and stored: a restart never resolves them again. The
// group's offsets are never the source of truth; CommitToGroup optionally
// commits the offsets a checkpoint stored to Group once that checkpoint
// completes, for monitoring (best effort, off the task's goroutine). The
// reader learns of completions through CheckpointListener, which the
// engine must call (CheckpointTaken after Splits, CheckpointCompleted on
// completion); offsets of a checkpoint that never completes are never
// committed.
//
// New partitions: the engine deals splits out only at start, and a reader
// may not add splits. So each task also has one discovery split
// "#discover/INDEX/PARALLELISM" whose state holds, per topic, how many
// partitions the job's splits covered when they were dealt out, and the
// partitions the task discovered since, with their offsets. Every
// DiscoveryInterval a reader lists the topics; a partition numbered at or
// beyond the known count belongs to the task owner(topic, partition,
// parallelism) (Flink's rule: a topic hash plus the partition, modulo the
// parallelism), which reads it from its earliest offset and records it in
// its discovery split (a Metadata request, then ListOffsets for the
// topics that grew; the reader's client refreshes its metadata at once
// and fetches with a short max wait, so a new partition's first records
// come within about half a second of its discovery). Exactly one task
// claims each new partition, and a
// restore at the same parallelism keeps the claim; a restore at another
// parallelism turns discovered partitions into splits of their own.
//
// Event time: the reader returns the records of one split per Read and
// implements engine.SplitWatermarks, so each partition has its own
// watermark (the partitions a task discovered share its discovery split's
// until a rescale). The reader reads with read_committed and sees control
// records (which it skips), so its offsets move past transaction markers
// and a bounded source ends exactly at the last stable offset it was
// given.
package kafka
