// Package snapshot owns the durable side of checkpoints: it encodes the
// frozen keyed state of a task into compressed, checksummed blocks, stores
// them and the checkpoint metadata in Pebble, finds the newest checkpoint
// that verifies on restore, streams it back, and deletes what retention no
// longer needs.
//
// It must never import keyed/, engine/ or anything above them: the keyed
// state reaches it through the View interface, defined here. Its only
// streamd import is internal/failpoint.
//
// # Promises
//
//   - A checkpoint exists exactly when its metadata exists. WriteKeyed
//     writes blocks without syncing; CommitCheckpoint writes the metadata
//     last, in a synced batch, and that sync makes the earlier blocks
//     durable too (Pebble's WAL is one ordered log; see CommitCheckpoint).
//   - Every stored value (block or metadata) ends in a crc32c of everything
//     before it and starts with a format byte. A mismatch, an unknown
//     format, a missing block or totals that do not add up is corruption
//     (IsCorruption), distinct from I/O errors. Latest skips corrupt
//     checkpoints loudly and falls back to older ones; if every checkpoint
//     is corrupt it says so instead of pretending the job is new.
//   - Retain never deletes a block that a retained checkpoint, or a
//     checkpoint being written, references.
//   - A held checkpoint (Hold; ExportSavepoint holds the one it copies) is
//     kept by Retain, with its blocks, until its holds are released.
//   - A savepoint (savepoint.go) is a directory that is a data dir of its
//     own, holding one checkpoint copied verbatim, plus a descriptor file
//     written last: a directory without a valid descriptor is never taken
//     for a savepoint. OpenSavepoint reads one with Pebble read-only.
//   - Checkpoint ids only grow: CommitCheckpoint refuses an id not above the
//     newest completed one, and MaxCheckpointID sees the ids of incomplete
//     checkpoints too.
//   - One process per data dir: Open takes an exclusive flock on DIR/LOCK.
//
// # Key layout
//
// One Pebble database in DIR/pebble holds every job (integers big endian):
//
//	m <job> 0x00 <checkpoint id: 8>                                       metadata
//	b <job> 0x00 <writer id: 8> <len(scope): 2> <scope> <kg: 4> <seq: 4>   block seq of a key group
//
// Job names are [a-z0-9-]+ (at most MaxJobNameBytes), so the 0x00 ends the
// name and no job's prefix covers another's. The writer id is the
// checkpoint that wrote the block; an incremental checkpoint references
// blocks of older writers through KeyGroupRef.Writer. Retention deletes a
// whole writer, or a run of (scope, key group) prefixes of one writer, with
// one DeleteRange each, and old metadata with one more.
//
// # Formats
//
// A block (AppendBlock) holds the entries of one key group — at most
// Options.BlockSizeBytes of them raw, unless one entry alone is larger — with
// the table of the state names it uses, so that it stays decodable after
// the job's states change. An entry (AppendEntry) is state id, key and
// value, length-prefixed with uvarints. Metadata (EncodeMetadata) is a
// binary encoding, versioned by MetadataFormatVersion. Compression is
// chosen per store (zstd fastest by default, S2, or none) and recorded per
// block; a block that does not get smaller is stored uncompressed.
//
// # Decisions where the design was silent
//
//   - A KeyedHandle lists every key group of its range, empty ones too
//     (Blocks == 0), so that an unchanged empty group is reused like any
//     other. Handles carry the id of the checkpoint that made them
//     (KeyedHandle.Checkpoint). WriteKeyed pins its prev handle until a
//     checkpoint at least as new as its own completes, and checks under the
//     same lock that prev's checkpoint still exists: with several
//     checkpoints in flight, retention can neither delete blocks an
//     unfinished checkpoint reuses nor let it reuse blocks already deleted.
//   - Pebble runs on manifestSyncFS (markerfs.go): the directory is
//     fsynced before each MANIFEST marker is created, so that a power loss
//     never leaves a marker naming a lost MANIFEST (Pebble v2.1.7 made both
//     durable with one fsync; cockroachdb/pebble#5825). Remove it once
//     streamd runs a Pebble release with that fix.
//   - The scope names the owner of the state independently of parallelism
//     (the vertex name): tasks of one vertex share the scope and write
//     disjoint key groups, and a rescaled job reads and reuses them.
//   - View versions must not repeat for different contents of a key group
//     across restores (see View.KeyGroupVersion), or reuse would pick stale
//     blocks.
//   - Metadata is binary, not JSON: with 32768 key groups it is 0.5 MB and
//     encodes in ~0.7 ms (decodes in ~2.3 ms); encoding/json measured 3.6 MB,
//     ~9 ms to encode and ~64 ms to decode, on the checkpoint's critical path.
//   - Pebble runs with a 64 MiB memtable (1 MiB blocks would flush a 4 MiB
//     one constantly) and a pinned format major version, so that upgrading
//     Pebble never silently changes the on-disk format. Options.PebbleOptions
//     may change both but may not disable the WAL.
//   - Small snapshots and large ones take different paths into Pebble. A
//     WriteKeyed call keeps its blocks in memory up to ~4 MiB and then
//     commits them in one unsynced batch (cheap; made durable by the
//     metadata's sync). Beyond that it streams them — already in key order —
//     into an sstable in DIR/ingest and ingests it: written once, synced,
//     placed in the lowest level it fits and never rewritten by compactions.
//     Measured here (BenchmarkStorePath, 19 MiB per checkpoint, 2 busy
//     cores): ingestion ~310–440 MB/s, batches ~30–160 MB/s and falling as
//     their compactions pile up.
//   - Deletions (Retain, DiscardIncomplete) are not synced: a lost deletion
//     is redone later, and a deletion can never be lost while a later
//     synced write survives.
package snapshot
