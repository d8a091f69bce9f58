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
	// call writes an sstable and ingests it instead of committing a batch.
	ingestThresholdBytes = 4 << 20
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
)

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
