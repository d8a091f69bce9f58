package keyed

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// Limits. Every one is checked where data enters the backend.
const (
	// MaxKeyBytes bounds a key and, separately, a map state's user key.
	MaxKeyBytes = 16 << 10
	// MaxValueBytes bounds a stored value as the caller sees it (TTL states
	// add an 8-byte timestamp on top). A list state's whole list is one
	// value and is bounded by it too.
	MaxValueBytes = 64 << 20
	// MaxStates bounds the number of states registered in one backend.
	MaxStates = 4096
	// MaxStateNameBytes bounds a state's name.
	MaxStateNameBytes = 255

	// DefaultPageSizeBytes is the page size when Options.PageSizeBytes is
	// zero, chosen by measurement (bench_test.go, BenchmarkPageSize, 1 M
	// keys, random writes, copies included): with a snapshot every 100 000
	// writes (nearly every page copied once per snapshot) 4/16/64 KiB cost
	// about 575/420/372 ns per write; with one every 1 000 writes (each
	// write copies a page) 1.1/3.0/4.6 µs before the page pool was sized
	// to absorb the copies (16 KiB: 1.65 µs after). Forced GC times did not
	// differ measurably (pages hold no pointers). Dense writes are the
	// throughput-critical case; 16 KiB is within 15 % of the best there
	// and much cheaper than 64 KiB for sparse writes.
	DefaultPageSizeBytes = 16 << 10
	// MinPageSizeBytes and MaxPageSizeBytes bound Options.PageSizeBytes.
	MinPageSizeBytes = 1 << 10
	MaxPageSizeBytes = 1 << 20
)

// Options configures a Backend. The zero value is usable after
// EnsureDefaults.
type Options struct {
	// MaxParallelism is the number of key groups of the job, in
	// [1, MaxMaxParallelism]. Default DefaultMaxParallelism. It must be
	// the same for every task of a keyed operator and across restores.
	MaxParallelism int
	// Range is the key groups this backend owns; a key of another group
	// is a routing bug (SetCurrentKey panics) or, when restoring, an error.
	// Default (the zero value) [0, MaxParallelism).
	Range KeyGroupRange
	// PageSizeBytes is the size of the pointer-free pages that hold the
	// hash-table slots and the entries: a power of two in
	// [MinPageSizeBytes, MaxPageSizeBytes]. Default DefaultPageSizeBytes.
	// A record larger than a page gets a page of its own.
	PageSizeBytes int
	// Clock returns the time in unix milliseconds; it is read only by
	// states with a TTL. Default time.Now().UnixMilli().
	Clock func() int64
}

// EnsureDefaults fills the zero fields of o with their defaults.
func (o *Options) EnsureDefaults() {
	if o.MaxParallelism == 0 {
		o.MaxParallelism = DefaultMaxParallelism
	}
	if o.Range == (KeyGroupRange{}) {
		o.Range = KeyGroupRange{Start: 0, End: o.MaxParallelism}
	}
	if o.PageSizeBytes == 0 {
		o.PageSizeBytes = DefaultPageSizeBytes
	}
	if o.Clock == nil {
		o.Clock = func() int64 { return time.Now().UnixMilli() }
	}
}

// Validate reports every problem with o at once (errors.Join), each error
// naming the field. Call EnsureDefaults first: zero fields are problems.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("keyed: invalid options: "+format, args...))
	}
	maxOK := o.MaxParallelism >= 1 && o.MaxParallelism <= MaxMaxParallelism
	if !maxOK {
		bad("MaxParallelism = %d, want [1, %d]", o.MaxParallelism, MaxMaxParallelism)
	}
	switch {
	case o.Range.Start < 0 || o.Range.End <= o.Range.Start:
		bad("Range = %v, want a non-empty range of key groups", o.Range)
	case maxOK && o.Range.End > o.MaxParallelism:
		bad("Range = %v, want a range within [0, %d) (MaxParallelism)", o.Range, o.MaxParallelism)
	}
	if o.PageSizeBytes < MinPageSizeBytes || o.PageSizeBytes > MaxPageSizeBytes || bits.OnesCount(uint(o.PageSizeBytes)) != 1 {
		bad("PageSizeBytes = %d, want a power of two in [%d, %d]", o.PageSizeBytes, MinPageSizeBytes, MaxPageSizeBytes)
	}
	if o.Clock == nil {
		bad("Clock is nil")
	}
	return errors.Join(errs...)
}

// StateID names a registered state within one Backend: the index into
// Snapshot.States.
type StateID int

// Kind is the kind of a state. The backend stores every kind as bytes; the
// kind decides which operations apply (Get/Put versus GetUser/PutUser) and
// is recorded in snapshots (Snapshot.Kinds). A state restored from a
// checkpoint and not registered yet has no kind: Kind(0), none of these.
type Kind uint8

const (
	kindInvalid Kind = iota
	// KindValue holds one value per key.
	KindValue
	// KindList holds one list per key, stored as one value of
	// length-prefixed elements (ListState's framing).
	KindList
	// KindMap holds a map of user keys to values per key; each user key
	// is its own entry.
	KindMap
	// KindReducing holds one reduced value per key.
	KindReducing
	// KindAggregating holds one accumulator per key.
	KindAggregating
	kindEnd
)

func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindList:
		return "list"
	case KindMap:
		return "map"
	case KindReducing:
		return "reducing"
	case KindAggregating:
		return "aggregating"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// StateOptions configures one state.
type StateOptions struct {
	// TTL, when positive, makes an entry read as absent once TTL has
	// passed since it was last written (Flink's OnCreateAndWrite update
	// type with NeverReturnExpired visibility). Millisecond granularity;
	// 0 means entries never expire. For map state the TTL applies to each
	// user key; for list state to the list as a whole (last Add or Update).
	TTL time.Duration
}

// Errors. Operating errors returned by the backend wrap one of these.
var (
	// ErrUnknownState was RestoreEntry's error for a state not registered.
	//
	// Deprecated: RestoreEntry now accepts entries of states that are not
	// registered yet (see Backend.UnregisteredStates); nothing returns it.
	ErrUnknownState = errors.New("keyed: unknown state")
	// ErrStateMismatch: Register was called again for a name with a
	// different kind or TTL, or for a name whose restored entries cannot
	// be of that kind or TTL.
	ErrStateMismatch = errors.New("keyed: state registered with a different kind or TTL")
	// ErrTooManyStates: more than MaxStates states (registered, or
	// restored and not registered).
	ErrTooManyStates = errors.New("keyed: too many states")
	// ErrInvalidState: a bad name, kind or StateOptions given to Register.
	ErrInvalidState = errors.New("keyed: invalid state")
	// ErrKeyGroupOutOfRange: RestoreEntry got an entry of a key group this
	// backend does not own.
	ErrKeyGroupOutOfRange = errors.New("keyed: key group out of range")
	// ErrKeyTooLarge and ErrValueTooLarge are the panic values (wrapped)
	// of writes beyond MaxKeyBytes / MaxValueBytes, and errors of
	// RestoreEntry.
	ErrKeyTooLarge   = errors.New("keyed: key too large")
	ErrValueTooLarge = errors.New("keyed: value too large")
	// ErrCorrupt marks bytes that do not decode: a malformed restored
	// entry, or stored bytes that a Codec rejects. Test with IsCorruption.
	ErrCorrupt = errors.New("keyed: corrupt state")
)

// IsCorruption reports whether err is (or wraps) ErrCorrupt.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorrupt) }
