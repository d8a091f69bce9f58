// Package postgres holds the PostgreSQL exactly-once sink, and a source
// that reads a table in the order of a monotonically increasing column
// (see "Source" below).
//
// # Two-phase commit with prepared transactions
//
// Each sink task writes through its own connection, in one transaction per
// checkpoint. Records are batched: COPY in append mode, multi-row
// INSERT … ON CONFLICT (key) DO UPDATE in upsert mode. At a checkpoint
// barrier (PreCommit) the writer inserts its progress row (job, sink, task,
// checkpoint) into the progress table and runs PREPARE TRANSACTION with the
// gid PREFIX_tTASK_cCHECKPOINT, where PREFIX is "sd" and 16 hex digits of a
// hash of the job and sink names: independent of the run, so that recovery
// finds the strays of any earlier run with one LIKE over pg_prepared_xacts.
// A prepared transaction is durable (it survives a server restart) and
// invisible. When the checkpoint is complete (Commit) the writer runs
// COMMIT PREPARED for every pending transaction up to it, in order, on a
// second connection (the first may already hold the next transaction).
//
// Recovery (Recover) lists the prepared transactions with the prefix,
// commits those the restored checkpoint lists as pending, and rolls back
// the rest. A listed transaction that is no longer prepared was committed
// if and only if its progress row exists: the row is written in the same
// transaction, so the progress table tells a committed gid from an aborted
// one. A listed transaction that is neither prepared nor committed is lost
// output, and recovery refuses (planRecovery, a pure function). The
// progress table is also the sink's engine.CommitReporter: the highest
// checkpoint among the job's rows is the last it committed.
//
// # Upsert mode and row locks
//
// A prepared transaction keeps its row locks until COMMIT PREPARED, and the
// writer's own Commit runs on the task goroutine. Were the writer to send
// the next transaction's upserts while its previous transaction is still
// prepared, an upsert of the same key would wait for a commit that only the
// waiting goroutine can issue: a deadlock. So in upsert mode a writer sends
// nothing while one of its transactions is prepared and not committed; it
// buffers the records (the last value per key, at most MaxBufferedRows
// keys) and sends them after the commit. A checkpoint barrier that arrives
// while an earlier transaction is still pending (the notification of the
// earlier checkpoint's completion has not arrived yet, or it was aborted)
// with buffered records is declined, and its records go into the next
// checkpoint. Keys should be partitioned by task (key the stream by the
// upsert key upstream), as with any upsert sink: rows of one key written
// by two tasks have no defined order.
//
// Append mode has no such constraint: COPY inserts new rows, which no
// prepared transaction locks.
//
// # Why PREPARE runs on the task goroutine
//
// The sink does not implement engine.AsyncPreCommitter. The durable step
// would own the data connection until it ran PREPARE, so the writer would
// need one more connection per checkpoint in flight; the records are
// already on the server when the barrier arrives (batches are sent as
// they fill), so the synchronous part is one batch, one progress row and
// one PREPARE: a few round trips on loopback (see the benchmark in the
// README section). In upsert mode the next transaction cannot start before
// the commit anyway.
//
// # Credentials and errors
//
// The connection URL must not hold a password: the password is read from
// the environment variable named in SinkOptions.PasswordEnv. Errors never
// contain it (every error the sink returns is scrubbed of it). A missing
// table or column, a missing unique index for the upsert key, a refused
// connection or authentication are errors of the first call (LastCommitted,
// Recover or NewWriter), before anything is written. A connection that
// fails mid-job (server restart, pg_terminate_backend) fails the job with
// an error naming the sink, the task and what could not be done; the open
// transaction is rolled back by the server, and the next run recovers.
//
// One run of a job writes through a sink at a time: the sink holds a
// session-level advisory lock on the job and sink while it runs.
//
// # Source
//
// Source reads a table (or view) in the order of an integer column whose
// values increase as rows are inserted: a bigserial or identity column,
// as Kafka Connect JDBC's "incrementing" mode does, but without its loss
// of rows (below). Its position is the largest column value V such that
// every row with a value up to V has been read; it is the state of the
// source's one split, stored in the checkpoint ("after=V", then " end=E"
// when bounded), and a restore reads the rows above V. A table is one
// split, read by task 0 in column order (the other tasks of the source end
// at once); the split moves to task 0 of any other parallelism on a
// restore. A restore onto another table or column, or with Bounded
// changed, is refused.
//
// A bounded source fixes its end at its first start (Initial): the
// column's largest value then, stored in the split. It reads every row up
// to the end, including rows that transactions in flight at the start
// commit later with smaller values, and then ends; a rerun from any
// checkpoint reads exactly the same rows. An unbounded source polls every
// PollInterval once it has read everything it may.
//
// # The rule that no row is skipped
//
// A sequence value is taken when a row is inserted (or earlier: an ORM
// calls nextval and inserts at flush), but the row becomes visible when
// its transaction commits. So value 11 can be visible while 10 is not; a
// reader that moved its position past 11 would never read 10. Rows must
// not be read past a value while a transaction that may still commit a
// smaller one is in progress.
//
// The reader takes fences. A fence is one statement: the column's largest
// value M in the statement's snapshot, and the list L of the
// transactions in progress, read from pg_locks after that snapshot was
// taken (each transaction holds a lock on its virtual transaction id from
// its start to its end, with or without a transaction id), plus the
// prepared transactions. Once none of L is in progress any more (a later
// fence's list does not hold it), every row with a value up to M is
// final: its value was taken before M's row committed, by a transaction
// that either had ended when L was read (committed, visible to any later
// snapshot, or rolled back) or was in L and has ended since. Later
// transactions take values above M. The reader then reads the rows up to
// M, in a statement whose snapshot comes after that check. A fence whose
// list is empty passes at once; otherwise it passes at a later poll. The
// reader keeps up to maxPendingFences of them, oldest first (a later one
// never passes before an earlier one).
//
// Why not a rule on transaction ids (read only rows whose xmin is older
// than pg_snapshot_xmin)? A transaction gets an id at its first write, not
// at nextval (a sequence logs, and assigns one, only every 32 values): an
// ORM's transaction that holds value 10 has no id while 11 commits, so no
// snapshot shows it as running. TestSourceOutOfOrderCommits has that case.
// Virtual transaction ids cover every transaction, and comparing them for
// equality has no wraparound.
//
// The rule's limits, each a case where rows could be skipped, and what
// the source does about them:
//   - Values must be taken in the transaction that inserts the row. An
//     application that reserves a block of values in one transaction and
//     inserts them from others (Hibernate's pooled optimizer with an
//     allocation size above 1) defeats any rule; so does a sequence with a
//     CACHE above 1 (each session hands out its own block), which the
//     source refuses at start for the column's own sequence (serial or
//     identity), as it refuses one that decreases or cycles. Values written
//     by the application must also increase in commit-visible order in the
//     same sense: assigned inside the inserting transaction, above every
//     value already committed.
//   - It must run against the primary: a standby's pg_locks does not show
//     the primary's transactions, so the source refuses a server in
//     recovery.
//   - Any transaction of the database, even a read-only one or one idle in
//     transaction, holds the reader back until it ends: the reader cannot
//     know it took no value. After stallWarning (a minute) the reader logs
//     one warning with the pids it waits for, and a line when it resumes.
//     Transactions of other databases do not count, nor those of
//     autovacuum workers, WAL senders and parallel workers (whose leader
//     counts), which never insert rows. A postgres sink of a
//     job into the same database holds it back for up to a checkpoint
//     interval (its prepared transactions commit when the checkpoint
//     completes).
//   - Rows are read once, as inserted: updates and deletes are not seen,
//     and a row whose column is NULL is never read (logged at start).
//
// # Reading the rows
//
// Each query reads up to BatchRows rows above the position, in column
// order (an index led by the column keeps it cheap: its absence is logged
// at start). Decode sees a Row: the values of Columns (default every
// column), with typed accessors that decode the wire format without
// allocating (Int, Float, Bool; Text allocates its string) and Value,
// which decodes as pgx does. Kinds says per column how Decode will read
// it: the source checks at start that every column's type can be read so
// (an error names the column and type), and asks for binary or text
// format to match. Timestamps, timestamptz and dates read as Int are ms
// since the epoch (UTC), for event time; DecodeRecord and RecordTime do
// it for the generic Record. A NULL reads as the accessor's zero value
// (IsNull tells it apart). Values read as text are in UTC with ISO dates:
// the source sets the session's TimeZone and DateStyle.
//
// # Errors
//
// A wrong address, role or password, a missing table or column, a column
// of the wrong type, a missing SELECT privilege, an unset PasswordEnv
// variable, a standby, or a cached sequence are errors of Initial (or of
// NewReader, on a restore), before anything is read. A connection that
// fails mid-job fails the job with an error naming the source's table and
// what it could not do; every round trip is bounded by Timeout, so a
// server that stops answering fails the job too. The source's errors never
// match io.EOF (only io.EOF itself ends a source) and never contain the
// password.
package postgres
