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
//     checkpoint being written, references — a key group's base or any
//     delta of its chain, however old the checkpoint that wrote it.
//   - A checkpoint restores exactly the state it was taken of: a key
//     group's base and deltas apply in order, and a missing or damaged
//     delta (or base) is corruption naming the job, checkpoint, scope, key
//     group, delta and block, so recovery falls back to an older
//     checkpoint (or refuses) — never a wrong state.
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
// blocks of older writers through KeyGroupRef.Writer (the base) and
// DeltaRef.Writer (each delta). A checkpoint writes, per key group, either
// a full image or a delta, never both, so the key layout is the same for
// both and the block's format byte says which it is. Retention deletes a
// whole writer, or a run of (scope, key group) prefixes of one writer, with
// one DeleteRange each, and old metadata with one more.
//
// # Formats
//
// A block (AppendBlock) holds the entries of one key group — at most
// Options.BlockSizeBytes of them raw, unless one entry alone is larger — with
// the table of the state names it uses, so that it stays decodable after
// the job's states change. An entry (AppendEntry) is state id, key and
// value, length-prefixed with uvarints. A delta block (AppendDeltaBlock,
// format byte 0xB2 where a full block has 0xB1; the same header, checksum
// and compression) holds operations (AppendDeltaEntry): state<<2|op (put,
// delete, append), key, and the value unless it is a deletion. Metadata (EncodeMetadata) is
// a binary encoding, versioned by MetadataFormatVersion (3: delta chains
// and key group counts; 1 and 2 still decode). Compression is chosen per
// store (zstd fastest by default, S2, or none; delta blocks S2 by default,
// IncrementalOptions.DeltaCompression) and recorded per block; a block
// that does not get smaller is stored uncompressed.
//
// # Incremental checkpoints
//
// Per key group a checkpoint does one of three things (KeyedHandle counts
// them: FullKeyGroups, DeltaKeyGroups, ReusedKeyGroups):
//
//   - reuse: the version (View.KeyGroupVersion) equals the previous
//     checkpoint's; the new handle references the previous chain as it is.
//   - delta: the View is a DeltaView (keyed.Snapshot is), the previous
//     checkpoint has a non-empty base for the key group, and the policy
//     (Options.Incremental) allows; DeltaView.Changes since the previous
//     version — its deletions, then its inserted or changed entries — go
//     into delta blocks, and the key group's chain (KeyGroupRef.Deltas)
//     grows by one. A change with nothing to write keeps the chain under
//     the new version.
//   - full: anything else — a new base, no deltas (a materialization).
//
// The policy writes in full when DeltaView.ChangedEntries cannot bound the
// changes or they exceed MaxDeltaFraction (default 0.5) of the key group's
// entries, when the chain holds MaxChain deltas (default 32), or when its
// deltas' stored bytes, with this one's estimate, would exceed
// MaxChainRatio (default 1.0) times the base's: a restore then reads at
// most about twice a full image. Both thresholds are lowered per key group
// by a deterministic jitter (default up to 50 %, fixed by the scope, the
// key group and the base's writer), so that the key groups of a uniformly
// updated state materialize spread over checkpoints instead of all in one.
// Statistics: a handle's RawBytes and StoredBytes are what the checkpoint
// wrote (Flink's checkpointed size), ReusedBytes what it references of
// older checkpoints (StoredBytes + ReusedBytes is the state size), and
// MaxChain its longest chain.
//
// Restore (ReadKeyed) streams each key group's base, then each delta's
// deletions and upserts in order; the caller applies them (keyed's
// RestoreEntry replaces an entry, RestoreDelete removes one). Verify reads
// every base and delta block and checks each part's totals. Retention keeps
// every block a retained or in-flight checkpoint's chains reference; a
// materialization frees the old chain once no retained checkpoint
// references it. A savepoint copies the chains' blocks too.
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
//     WriteKeyed call keeps its blocks in memory up to 256 KiB and then
//     commits them in one unsynced batch (cheap; made durable by the
//     metadata's sync). Beyond that it streams them — already in key order —
//     into an sstable in DIR/ingest and ingests it: written once, synced,
//     placed in the lowest level it fits and never rewritten by compactions.
//     Measured here (BenchmarkStorePath, 19 MiB per checkpoint, 2 busy
//     cores): ingestion ~310–440 MB/s, batches ~30–160 MB/s and falling as
//     their compactions pile up. The threshold was 4 MiB until incremental
//     checkpoints: deltas of a few MiB per checkpoint then went through
//     memtable flushes and L0 compactions (Pebble's Snappy over blocks
//     already compressed: ~16 % of the CPU of the 10 M-key benchmark);
//     at 256 KiB its runs took 11.6–13.7 s against 13.3–16.9 s.
//   - Deletions (Retain, DiscardIncomplete) are not synced: a lost deletion
//     is redone later, and a deletion can never be lost while a later
//     synced write survives.
//   - Delta chains are per key group, never across key groups, so a
//     rescaled task restores (and reuses) whole chains of its key groups.
//     A restored backend has versions of its own: unless it can tell the
//     changes since the restored state (otherwise its ChangedEntries says
//     ok=false), its first checkpoint writes every changed key group in
//     full.
//   - A chain costs about 12 bytes of metadata per delta, in every
//     checkpoint's metadata: with 32768 key groups and MaxChain 32 that is
//     up to ~12 MB (about half on average, with the jitter); jobs with that
//     many key groups should lower MaxChain.
//   - The free-space check of WriteKeyed still counts twice the stored size
//     of the previous checkpoint's whole chains (any key group may
//     materialize), although a checkpoint of deltas writes much less.
//   - A DeltaView that breaks its contract — a deletion after an upsert,
//     ok=false after reporting changes — is a bug and panics, like a
//     state id out of range.
package snapshot
