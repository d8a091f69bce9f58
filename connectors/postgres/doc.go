// Package postgres holds the PostgreSQL exactly-once sink.
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
package postgres
