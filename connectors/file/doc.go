// Package file holds the file source (JSON lines, bounded) and the
// two-phase-commit file sink, the reference exactly-once sink.
//
// # The sink's directory layout (a contract other programs rely on)
//
// The sink's directory holds only committed output: files named
// JOB-TASK-RUN-SEQ.jsonl directly inside it, one record per line. RUN is 64
// random bits drawn when the writer starts, so a committed name never
// repeats, even across restarts. Work in progress lives only in the
// dot-named folder .streamd-inprogress inside the directory, and a file
// appears in the directory only by an atomic rename once it is complete.
// The folder also holds LOCK, the directory's lock (one job writes into a
// directory at a time; a second is refused, naming the holder), and one
// commit marker per job, JOB.committed: the highest checkpoint whose
// transactions the job committed, written durably before they become
// visible, so that recovery can tell a lost checkpoint from a fresh start
// (marker.go).
//
// # Two-phase commit
//
// Records go to a temporary file in .streamd-inprogress. At a checkpoint
// barrier (PreCommit) the file is flushed, fsynced and closed, the folder is
// fsynced, and the transaction {checkpoint, temporary name, final name}
// joins the writer's pending list, which is stored in the checkpoint. When
// the checkpoint is complete (Commit), every pending transaction up to it is
// renamed into the directory, and the directory is fsynced. Commit is
// idempotent: a transaction whose target exists and whose temporary file is
// gone is already committed. On recovery the sink commits the transactions
// the restored checkpoint lists and deletes every other temporary file of
// the job (strays of the crashed run). A pre-commit with nothing written
// creates no file.
//
// Without checkpoints a writer commits its file when its input ends (a
// crash leaves only temporary files, which the next run deletes).
//
// # Durability and the filesystem seam
//
// Every file operation of the sink — creating the directories, the
// temporary files, writes, fsyncs, renames, removals, listings and the
// fsyncs of directories — goes through SinkOptions.FS, Pebble's vfs.FS
// (default vfs.Default, the operating system's), so that tests can crash at
// any operation and drop what was not synced (vfs.NewCrashableMem; see
// internal/crashfs and jobrun's power-loss sweep). The sink creates the
// output directory and the work folder with the parent of each new
// directory fsynced: a new directory is part of its parent's entries, and
// without that fsync a power loss may forget the work folder with every
// pre-committed file in it. A temporary file is never created over an
// existing one (the sink checks with Stat, as vfs.FS.Create would replace
// it; names never repeat, so the check cannot race). A failed fsync fails
// the transaction and is never retried: not on the same file, and not on
// the same directory by another task's writer (the Sink remembers the
// failure and every later commit into that directory fails with it).
//
// It imports only engine, internal/failpoint and Pebble's vfs.
package file
