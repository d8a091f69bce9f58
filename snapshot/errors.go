package snapshot

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// Sentinel errors. Every error this package returns starts with "snapshot: "
// and wraps at most one of these, so callers test with errors.Is (or with
// IsCorruption).
var (
	// ErrCorruption is wrapped by every error that proves stored data is
	// damaged: a checksum mismatch, a missing block, an unknown format
	// version, metadata that does not decode, totals that do not match.
	// Recovery treats it differently from an I/O error: a corrupt checkpoint
	// is skipped (loudly), an I/O error stops the caller.
	ErrCorruption = errors.New("snapshot: corruption")
	// ErrNotFound is wrapped when a checkpoint asked for by id has no
	// metadata (it never completed, or retention deleted it).
	ErrNotFound = errors.New("snapshot: checkpoint not found")
	// ErrDirInUse is wrapped when another process (or another Store in this
	// process) holds the data dir's lock.
	ErrDirInUse = errors.New("snapshot: data dir in use")
	// ErrClosed is returned by methods of a closed Store.
	ErrClosed = errors.New("snapshot: store closed")
	// ErrInvalidArgument is wrapped when a caller passes a value the store
	// refuses before touching the disk: a bad job or scope name, a key
	// group range out of bounds, a checkpoint id that is not new.
	ErrInvalidArgument = errors.New("snapshot: invalid argument")
	// ErrStoreFailed is wrapped by every error of a Store after Pebble
	// reported a failure it cannot go on from: a failed write or sync of
	// its WAL or MANIFEST ("fatal commit error"), a panic inside Pebble.
	// The failure is sticky: every later call returns it at once, nothing
	// is retried (an fsync's outcome is unknown after it failed). Pebble's
	// in-memory state is then unusable: close the Store and end the job
	// (the process); a rerun recovers from what is durable. The error also
	// wraps the fault (e.g. syscall.ENOSPC: see IsDiskFull).
	ErrStoreFailed = errors.New("snapshot: store failed")
	// ErrDiskFull is wrapped when the data dir's filesystem has too little
	// free space for what the Store is asked to do: Open refuses to start,
	// WriteKeyed declines a checkpoint before writing anything (the job
	// goes on; a later checkpoint succeeds once space returns).
	ErrDiskFull = errors.New("snapshot: disk full")
)

// IsDiskFull reports whether err says the disk is full: a free-space check
// failed (ErrDiskFull) or an operation failed with ENOSPC.
func IsDiskFull(err error) bool {
	return errors.Is(err, ErrDiskFull) || errors.Is(err, syscall.ENOSPC)
}

// IsCorruption reports whether err (or an error it wraps) says stored data
// is corrupt, as opposed to an I/O error or a misuse.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorruption) }

// classError is an error with its own complete message that belongs to the
// class of one sentinel. Unlike fmt.Errorf("…: %w", ErrX) it does not repeat
// the sentinel's text at the end of the message.
type classError struct {
	msg   string // complete message, starting with "snapshot: "
	class error  // one of the sentinels above
	cause error  // optional underlying error (also reachable by errors.Is/As)
}

func (e *classError) Error() string { return e.msg }

func (e *classError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.class, e.cause}
	}
	return []error{e.class}
}

// corruptf returns a corruption error whose message is "snapshot: " + the
// formatted text.
func corruptf(format string, args ...any) error {
	return &classError{msg: "snapshot: " + fmt.Sprintf(format, args...), class: ErrCorruption}
}

// invalidf returns an ErrInvalidArgument error.
func invalidf(format string, args ...any) error {
	return &classError{msg: "snapshot: " + fmt.Sprintf(format, args...), class: ErrInvalidArgument}
}

// withContext prefixes err's message with ctx ("snapshot: <ctx>: <detail>")
// keeping its class. The detail loses its own "snapshot: " prefix so the
// message reads as one sentence.
func withContext(err error, ctx string) error {
	if err == nil {
		return nil
	}
	detail := strings.TrimPrefix(err.Error(), "snapshot: ")
	var ce *classError
	if errors.As(err, &ce) {
		return &classError{msg: "snapshot: " + ctx + ": " + detail, class: ce.class, cause: ce.cause}
	}
	if pebble.IsCorruptionError(err) {
		// Pebble found one of its own files damaged while reading our data:
		// for recovery that is the same as a bad block checksum.
		return &classError{msg: "snapshot: " + ctx + ": " + detail, class: ErrCorruption, cause: err}
	}
	return &ioError{msg: "snapshot: " + ctx + ": " + detail, cause: err}
}

// ioError wraps an error from the file system or Pebble with what could not
// be done. It is deliberately not a corruption error.
type ioError struct {
	msg   string
	cause error
}

func (e *ioError) Error() string { return e.msg }
func (e *ioError) Unwrap() error { return e.cause }

// ioErrorf wraps cause as "snapshot: <what>: <cause>".
func ioErrorf(cause error, format string, args ...any) error {
	return withContext(cause, fmt.Sprintf(format, args...))
}
