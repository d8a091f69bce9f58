package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"runtime"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Compression selects how block payloads are compressed. The numeric values
// are stored in every block (byte 1 of the block format): never renumber.
type Compression uint8

const (
	// CompressionZstd is zstd at its fastest level (the default: the zero
	// value). Ratio ~1.5 on state-like data, ~150–180 MB/s per core.
	CompressionZstd Compression = 0
	// CompressionS2 is S2 block compression: ~3x faster than zstd, ratio
	// ~1.3.
	CompressionS2 Compression = 1
	// CompressionNone stores payloads as they are.
	CompressionNone Compression = 2

	numCompressions = 3
)

// String returns the name ParseCompression accepts.
func (c Compression) String() string {
	switch c {
	case CompressionZstd:
		return "zstd"
	case CompressionS2:
		return "s2"
	case CompressionNone:
		return "none"
	default:
		return fmt.Sprintf("Compression(%d)", uint8(c))
	}
}

// ParseCompression decodes "zstd", "s2" or "none".
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd":
		return CompressionZstd, nil
	case "s2":
		return CompressionS2, nil
	case "none":
		return CompressionNone, nil
	default:
		return 0, invalidf("unknown compression %q (want zstd, s2 or none)", s)
	}
}

// Limits. Everything has one.
const (
	// DefaultBlockSizeBytes is the default raw (uncompressed) size a block
	// is filled to before it is compressed and written.
	DefaultBlockSizeBytes = 1 << 20
	// MinBlockSizeBytes is the smallest BlockSizeBytes accepted.
	MinBlockSizeBytes = 4 << 10
	// MaxBlockRawBytes bounds the raw size of any block, and with it the
	// size of one encoded state entry (an entry larger than BlockSizeBytes
	// gets a block of its own). Decoders refuse to inflate beyond it.
	MaxBlockRawBytes = 64 << 20
	// MaxScopeBytes bounds the length of a scope name.
	MaxScopeBytes = 1024
	// MaxJobNameBytes bounds the length of a job name.
	MaxJobNameBytes = 128
	// MaxKeyGroups bounds key group numbers: 0 <= kg < MaxKeyGroups.
	MaxKeyGroups = 1 << 31
	// MaxStatesPerBlock bounds the state-name table of one block.
	MaxStatesPerBlock = 1 << 16
	// MaxStateNameBytes bounds the length of one state name.
	MaxStateNameBytes = 1 << 12
	// ingestThresholdBytes is the stored size beyond which one WriteKeyed
	// call writes an sstable and ingests it instead of committing a batch
	// (doc.go says why it is small).
	ingestThresholdBytes = 256 << 10
	// defaultMemTableSizeBytes is the Pebble memtable size streamd uses
	// unless PebbleOptions changes it (Pebble's own default, 4 MiB, would
	// flush after every four 1 MiB blocks).
	defaultMemTableSizeBytes = 64 << 20
	// DefaultDiskHeadroomBytes is the default Options.DiskHeadroomBytes:
	// room for Pebble to flush one memtable (defaultMemTableSizeBytes) and
	// write its WAL and MANIFEST while checkpoints are being declined.
	DefaultDiskHeadroomBytes = 64 << 20
	// MaxDiskHeadroomBytes bounds Options.DiskHeadroomBytes.
	MaxDiskHeadroomBytes = 1 << 40

	// MaxDeltaChain bounds IncrementalOptions.MaxChain and the deltas of
	// one key group in any metadata this build accepts.
	MaxDeltaChain = 1024
	// MaxChainRatioLimit bounds IncrementalOptions.MaxChainRatio.
	MaxChainRatioLimit = 100
)

// Defaults of IncrementalOptions. They are first guesses, to be tuned
// with the 10 M-key benchmark (issue 17); see IncrementalOptions for what
// each one trades.
const (
	// DefaultMaxChain is the default IncrementalOptions.MaxChain.
	DefaultMaxChain = 32
	// DefaultMaxChainRatio is the default IncrementalOptions.MaxChainRatio.
	DefaultMaxChainRatio = 1.0
	// DefaultMaxDeltaFraction is the default
	// IncrementalOptions.MaxDeltaFraction.
	DefaultMaxDeltaFraction = 0.5
	// DefaultJitter is the default IncrementalOptions.Jitter.
	DefaultJitter = 0.5
	// DefaultDeltaCompression is the default
	// IncrementalOptions.DeltaCompression (unless Options.Compression is
	// CompressionNone).
	DefaultDeltaCompression = CompressionS2
)

// IncrementalOptions is the policy of delta (incremental) checkpoints:
// when WriteKeyed writes a changed key group as a delta on top of its
// previous chain, and when it writes it in full (materializes it). A key
// group is written as a delta only when the View is a DeltaView, the
// previous handle has a non-empty base for it, and none of the thresholds
// below is reached; otherwise in full. MaxChain and MaxChainRatio are
// lowered per key group by a deterministic jitter (Jitter), so that the
// key groups of a uniformly updated state do not all materialize in the
// same checkpoint.
//
// What the thresholds trade: a long or large chain makes each checkpoint
// cheaper (a materialization rewrites the whole key group) but makes a
// restore read more (the base and every delta: at most
// (1 + MaxChainRatio) x the base's stored bytes, plus one seek per delta)
// and the metadata larger (about 12 bytes per delta, in every checkpoint's
// metadata). With the defaults, a key group of which a fraction f changes
// per checkpoint materializes about every min(32, 1/f) checkpoints (fewer
// with its jitter), so a checkpoint writes on average about 2f to 3f of
// the key group's size while f >= 1/32, and about 1/32 + f below that.
type IncrementalOptions struct {
	// Disabled turns delta checkpoints off: every changed key group is
	// written in full, as before incremental checkpoints. Default false
	// (on).
	Disabled bool
	// MaxChain is the number of deltas a key group's chain may hold; a
	// change beyond it is written in full. Default DefaultMaxChain (32);
	// 1 to MaxDeltaChain.
	MaxChain int
	// MaxChainRatio bounds the stored bytes of a chain's deltas, this one's
	// estimate included, as a multiple of its base's stored bytes; beyond
	// it the key group is written in full. It bounds what a restore reads
	// (and the disk a chain holds) relative to a full image. Default
	// DefaultMaxChainRatio (1.0); above 0, at most MaxChainRatioLimit.
	MaxChainRatio float64
	// MaxDeltaFraction: a key group whose changed entries (an upper bound,
	// DeltaView.ChangedEntries) exceed this fraction of its entries
	// (DeltaView.Len) is written in full, since the delta would be nearly
	// as large. Default DefaultMaxDeltaFraction (0.5); above 0, at most 1.
	MaxDeltaFraction float64
	// Jitter lowers MaxChain and MaxChainRatio of each key group by a
	// fraction in [0, Jitter), fixed by the scope, the key group and the
	// checkpoint that wrote its base, so that materializations spread over
	// checkpoints instead of coming all at once. Default DefaultJitter
	// (0.5); below 1; a negative value turns it off.
	Jitter float64
	// DeltaCompression is the compression of delta blocks. Default (nil):
	// DefaultDeltaCompression (S2: deltas are small, written at every
	// checkpoint and soon replaced by a materialization, so speed matters
	// more than ratio), or none when Options.Compression is none.
	DeltaCompression *Compression
}

// ensureDefaults fills in unset fields; c is Options.Compression.
func (o *IncrementalOptions) ensureDefaults(c Compression) {
	if o.MaxChain == 0 {
		o.MaxChain = DefaultMaxChain
	}
	if o.MaxChainRatio == 0 {
		o.MaxChainRatio = DefaultMaxChainRatio
	}
	if o.MaxDeltaFraction == 0 {
		o.MaxDeltaFraction = DefaultMaxDeltaFraction
	}
	if o.Jitter == 0 {
		o.Jitter = DefaultJitter
	}
	if o.DeltaCompression == nil {
		dc := DefaultDeltaCompression
		if c == CompressionNone {
			dc = CompressionNone
		}
		o.DeltaCompression = &dc
	}
}

// validate appends the problems of o to errs.
func (o *IncrementalOptions) validate(errs []error) []error {
	if o.MaxChain < 1 || o.MaxChain > MaxDeltaChain {
		errs = append(errs, invalidf("Options.Incremental.MaxChain: %d is outside [1, %d]", o.MaxChain, MaxDeltaChain))
	}
	if !(o.MaxChainRatio > 0 && o.MaxChainRatio <= MaxChainRatioLimit) {
		errs = append(errs, invalidf("Options.Incremental.MaxChainRatio: %v is outside (0, %d]", o.MaxChainRatio, MaxChainRatioLimit))
	}
	if !(o.MaxDeltaFraction > 0 && o.MaxDeltaFraction <= 1) {
		errs = append(errs, invalidf("Options.Incremental.MaxDeltaFraction: %v is outside (0, 1]", o.MaxDeltaFraction))
	}
	if !(o.Jitter < 1) { // NaN too
		errs = append(errs, invalidf("Options.Incremental.Jitter: %v is not below 1", o.Jitter))
	}
	switch {
	case o.DeltaCompression == nil:
		errs = append(errs, invalidf("Options.Incremental.DeltaCompression: must not be nil (call EnsureDefaults)"))
	case *o.DeltaCompression >= numCompressions:
		errs = append(errs, invalidf("Options.Incremental.DeltaCompression: unknown compression %d", uint8(*o.DeltaCompression)))
	}
	return errs
}

// Options configures a Store. The zero value is usable: EnsureDefaults fills
// in every unset field.
type Options struct {
	// Compression is applied to every block written. Default: zstd
	// (the zero value). Blocks record their own compression, so changing it
	// between runs is safe.
	Compression Compression
	// BlockSizeBytes is the raw size a block is filled to before it is
	// compressed. Default DefaultBlockSizeBytes (1 MiB); at least
	// MinBlockSizeBytes, at most MaxBlockRawBytes.
	BlockSizeBytes int
	// Logger receives loud warnings (a checkpoint skipped on recovery, a
	// retained checkpoint whose metadata does not decode) and Pebble's own
	// log lines. Default log.Printf.
	Logger func(format string, args ...any)
	// LevelLogger, if set, receives Pebble's log lines with a level instead
	// of Logger: its informational lines at slog.LevelDebug, its errors at
	// slog.LevelError, and a fatal error (which fails the Store, see
	// ErrStoreFailed) at slog.LevelError. When Logger is unset, the Store's
	// own warnings go to LevelLogger too, at slog.LevelWarn. Default: when
	// Logger is unset too, slog.Default() (so Pebble's informational lines
	// are not printed unless debug logging is on); otherwise nil.
	LevelLogger *slog.Logger
	// DiskHeadroomBytes is the free space the Store keeps in reserve on the
	// data dir's filesystem (vfs.FS.GetDiskUsage; a filesystem that cannot
	// tell is not checked). Open refuses to open Pebble with less free
	// space than this (ErrDiskFull: Pebble cannot work on a full disk, and
	// a WAL or MANIFEST write that fails for want of space is fatal to
	// it). WriteKeyed declines a checkpoint before it writes anything when
	// the free space is less than this plus twice the stored size of the
	// previous checkpoint's state of the same task (ErrDiskFull). Default
	// DefaultDiskHeadroomBytes (64 MiB); at most MaxDiskHeadroomBytes; a
	// negative value turns the checks off.
	DiskHeadroomBytes int64
	// FS is the filesystem seam every durable write of the Store goes
	// through: Pebble, the ingest dir and the data dir's lock. Default
	// vfs.Default (the operating system's). On the OS filesystem the lock
	// is an flock on dir/LOCK holding our pid; on any other FS it is
	// FS.Lock (tests use Pebble's crashable in-memory FS, vfs.NewCrashableMem,
	// and wrappers of it that crash or fail at an operation).
	FS vfs.FS
	// Incremental is the policy of delta checkpoints (on by default):
	// see IncrementalOptions.
	Incremental IncrementalOptions
	// PebbleOptions, if set, may adjust the Pebble options after streamd
	// has set its own (memtable size, format version, logger, FS). It must
	// not disable the WAL: the durability of unsynced block writes rests on
	// it; and it must not change FS (set Options.FS).
	PebbleOptions func(*pebble.Options)
}

// EnsureDefaults fills in unset fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.BlockSizeBytes == 0 {
		o.BlockSizeBytes = DefaultBlockSizeBytes
	}
	if o.Logger == nil && o.LevelLogger == nil {
		// Library users get one logger, slog's default: Pebble's errors
		// and the Store's warnings, not Pebble's informational lines
		// (they are debug).
		o.LevelLogger = slog.Default()
	}
	if o.Logger == nil && o.LevelLogger != nil {
		ll := o.LevelLogger
		o.Logger = func(format string, args ...any) {
			ll.Warn(strings.TrimPrefix(fmt.Sprintf(format, args...), "snapshot: WARNING: "))
		}
	}
	if o.Logger == nil {
		o.Logger = log.Printf
	}
	if o.DiskHeadroomBytes == 0 {
		o.DiskHeadroomBytes = DefaultDiskHeadroomBytes
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	o.Incremental.ensureDefaults(o.Compression)
}

// Validate reports every problem with o at once (errors.Join), each wrapping
// ErrInvalidArgument. Call it after EnsureDefaults.
func (o *Options) Validate() error {
	var errs []error
	if o.Compression >= numCompressions {
		errs = append(errs, invalidf("Options.Compression: unknown compression %d", uint8(o.Compression)))
	}
	if o.BlockSizeBytes < MinBlockSizeBytes || o.BlockSizeBytes > MaxBlockRawBytes {
		errs = append(errs, invalidf("Options.BlockSizeBytes: %d is outside [%d, %d]",
			o.BlockSizeBytes, MinBlockSizeBytes, MaxBlockRawBytes))
	}
	if o.Logger == nil {
		errs = append(errs, invalidf("Options.Logger: must not be nil (call EnsureDefaults)"))
	}
	if o.FS == nil {
		errs = append(errs, invalidf("Options.FS: must not be nil (call EnsureDefaults)"))
	}
	if o.DiskHeadroomBytes > MaxDiskHeadroomBytes {
		errs = append(errs, invalidf("Options.DiskHeadroomBytes: %d exceeds %d", o.DiskHeadroomBytes, int64(MaxDiskHeadroomBytes)))
	}
	errs = o.Incremental.validate(errs)
	return errors.Join(errs...)
}

// pebbleOptions returns the Pebble options a Store opens its database
// with; h receives Pebble's fatal errors.
func (o *Options) pebbleOptions(h *health) (*pebble.Options, error) {
	logger := pebbleLogger{logf: o.Logger, level: o.LevelLogger, h: h}
	po := &pebble.Options{
		// Pinned, so that upgrading Pebble never silently ratchets the
		// on-disk format of an existing data dir.
		FormatMajorVersion: pebble.FormatValueSeparation,
		MemTableSize:       defaultMemTableSizeBytes,
		Logger:             logger,
		FS:                 o.FS,
		EventListener: &pebble.EventListener{
			// Pebble's default calls Fatalf, on the goroutine that read
			// the damaged block: in the middle of a recovery, which must
			// instead see the read's corruption error and fall back to
			// the previous checkpoint (withContext classes it as
			// ErrCorruption). Log it loudly and let the read fail.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				logger.Errorf("on-disk corruption: %s", info)
			},
		},
	}
	// Pebble keeps its own block compression (Snappy) although state
	// blocks arrive compressed: turning it off saved ~17 % of the CPU of
	// writing an S2 snapshot through a batch, but the 100 ms checkpoint
	// benchmark ran slower (0.75-0.84x vs 0.90-1.15x of no checkpoints,
	// interleaved runs, 2026-12-01; why was not measured - likely more
	// bytes to flush and compact).
	if o.PebbleOptions != nil {
		o.PebbleOptions(po)
	}
	if !sameFS(po.FS, o.FS) {
		return nil, invalidf("Options.PebbleOptions: must not change FS (set Options.FS: the lock and the ingest dir must use the same filesystem as Pebble)")
	}
	if po.DisableWAL {
		return nil, invalidf("Options.PebbleOptions: must not set DisableWAL " +
			"(checkpoint metadata is synced through the WAL, and that sync is what makes the unsynced block writes durable)")
	}
	return po, nil
}

// sameFS reports whether a and b are the same filesystem; FS values of an
// uncomparable type count as the same (they cannot be told apart).
func sameFS(a, b vfs.FS) (same bool) {
	defer func() {
		if recover() != nil {
			same = true
		}
	}()
	return a == b
}

// pebbleLogger forwards Pebble's log lines to Options.LevelLogger (with a
// level) or Options.Logger (prefixed "pebble: "), and turns Fatalf into a
// failure of the Store.
type pebbleLogger struct {
	logf  func(format string, args ...any)
	level *slog.Logger
	h     *health
}

func (l pebbleLogger) log(lv slog.Level, prefix, format string, args ...any) {
	if l.level != nil {
		if l.level.Enabled(context.Background(), lv) {
			l.level.Log(context.Background(), lv, "pebble: "+strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"))
		}
		return
	}
	l.logf("pebble: "+prefix+format, args...)
}

// Infof logs Pebble's informational lines (WAL replay, compactions): debug.
func (l pebbleLogger) Infof(format string, args ...any) { l.log(slog.LevelDebug, "", format, args...) }

// Errorf logs Pebble's errors (a failed background job it will retry).
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log(slog.LevelError, "ERROR: ", format, args...)
}

// Fatalf is called by Pebble when it cannot go on, and must not return.
// Pebble calls it on the goroutine that hit the failure:
//
//   - on a goroutine of a Store call that writes (runGuarded) or of Open
//     (openPebble): a WAL write or sync that failed in a commit ("fatal
//     commit error", db.go), a MANIFEST write of an ingestion
//     (versionSet.UpdateVersionLocked). Fatalf panics; the guard recovers
//     it and the call returns ErrStoreFailed. Pebble holds no lock of its
//     own there that a deferred call does not release, except on an
//     ingestion's path through commitPipeline.AllocateSeqNum, which leaves
//     the commit pipeline's mutex locked and its sequence number unpublished.
//   - on one of Pebble's background goroutines: the MANIFEST write of a
//     flush or compaction (with DB.mu held; the callers' deferred calls
//     unlock it), table statistics or validation finding corruption.
//     Fatalf ends that goroutine with runtime.Goexit, which runs its
//     deferred calls; its other bookkeeping (a flush or compaction in
//     progress) is never finished.
//
// Either way it first records the failure in the Store (every later call
// returns it, and calls waiting inside Pebble are abandoned: see
// Store.callPebble), so Pebble is never used again by this process. A
// Fatalf on any other goroutine of ours (a read path: only Pebble's
// invariant checks, i.e. a bug) panics as before.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := strings.TrimPrefix(strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"), "pebble: ")
	l.log(slog.LevelError, "FATAL: ", "%s", msg)
	var cause error
	for _, a := range args {
		if e, ok := a.(error); ok {
			cause = e
			break
		}
	}
	failure := l.h.fail("pebble: "+msg, cause)
	switch callerKind() {
	case guardedCaller:
		panic(pebbleFatal{failure})
	case pebbleCaller:
		runtime.Goexit()
	}
	panic("pebble: " + msg)
}

// pebbleFatal is the panic value of Fatalf on a guarded goroutine.
type pebbleFatal struct{ err error }

type callerKindT uint8

const (
	guardedCaller   callerKindT = iota // runGuarded or openPebble is on the stack
	pebbleCaller                       // only Pebble's (and the runtime's) frames
	unguardedCaller                    // one of our goroutines without a guard
)

// callerKind tells whose goroutine calls Fatalf from its stack.
func callerKind() callerKindT {
	var pcs [256]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs[:])])
	kind := pebbleCaller
	for {
		f, more := frames.Next()
		switch {
		case f.Function == guardFunc || f.Function == openFunc:
			return guardedCaller
		case strings.HasPrefix(f.Function, modulePrefix) &&
			!strings.HasPrefix(f.Function, loggerPrefix) && !strings.HasPrefix(f.Function, loggerPtrPrefix):
			kind = unguardedCaller
		}
		if !more {
			return kind
		}
	}
}

const (
	modulePrefix    = "github.com/streamd/streamd/"
	loggerPrefix    = "github.com/streamd/streamd/snapshot.pebbleLogger."
	loggerPtrPrefix = "github.com/streamd/streamd/snapshot.(*pebbleLogger)."
	guardFunc       = "github.com/streamd/streamd/snapshot.runGuarded"
	openFunc        = "github.com/streamd/streamd/snapshot.openPebble"
)
