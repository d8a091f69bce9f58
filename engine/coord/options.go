package coord

import (
	"errors"
	"fmt"
	"time"
)

// Mode is the delivery guarantee the job runs with. The coordinator's
// protocol is the same in both modes; the mode is carried for the caller
// (it decides whether tasks align barriers).
type Mode uint8

const (
	// ExactlyOnce: aligned barriers, two-phase-commit sinks.
	ExactlyOnce Mode = iota + 1
	// AtLeastOnce: barriers are not aligned; duplicates are possible after
	// recovery.
	AtLeastOnce
)

// String returns "exactly_once" or "at_least_once", the spellings of the job
// spec.
func (m Mode) String() string {
	switch m {
	case ExactlyOnce:
		return "exactly_once"
	case AtLeastOnce:
		return "at_least_once"
	default:
		return fmt.Sprintf("Mode(%d)", uint8(m))
	}
}

const (
	// DefaultTimeout is Options.Timeout when it is left zero (Flink's
	// default).
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxConcurrent is Options.MaxConcurrent when it is left zero.
	DefaultMaxConcurrent = 1
	// MaxConcurrentLimit is the largest Options.MaxConcurrent accepted. It
	// is at most HistoryLen, so every checkpoint in flight is also in
	// Stats.History unless a checkpoint stays in its metadata write for more
	// than HistoryLen later triggers.
	MaxConcurrentLimit = 16
)

// Options configures a Coordinator. The zero value of every field except
// Interval means "the default"; EnsureDefaults fills them in.
type Options struct {
	// Interval is the time between two triggers, measured from the previous
	// trigger (as Flink does). Required: > 0. The first checkpoint is
	// triggered Interval after New.
	Interval time.Duration
	// Timeout aborts a checkpoint that has not been acknowledged by every
	// task this long after its trigger; the abort counts as a failure.
	// Default DefaultTimeout. A checkpoint whose metadata write has been
	// handed to the caller (Ready.Persist) no longer times out: the caller
	// bounds that write and reports PersistFailed when it cannot finish it.
	Timeout time.Duration
	// MinPause is the minimum time between the end (completion or abort) of
	// the most recent checkpoint and the next regular trigger. Default 0.
	MinPause time.Duration
	// MaxConcurrent is the number of checkpoints in flight at once,
	// including those whose metadata is being written. Default
	// DefaultMaxConcurrent; at most MaxConcurrentLimit.
	MaxConcurrent int
	// TolerableFailures is the number of consecutive failed checkpoints
	// (timeouts and declines with ReasonError) tolerated; one more fails the
	// job. A completed checkpoint resets the count. Default 0: the first
	// failed checkpoint fails the job (Flink's default).
	TolerableFailures int
	// Mode is informational for the caller. Default ExactlyOnce.
	Mode Mode
}

// ErrInvalidOptions is wrapped by every problem Validate reports.
var ErrInvalidOptions = errors.New("coord: invalid options")

// EnsureDefaults replaces zero fields by their defaults. Interval has no
// default.
func (o *Options) EnsureDefaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.Mode == 0 {
		o.Mode = ExactlyOnce
	}
}

// Validate reports every problem with o at once (joined with errors.Join,
// each wrapping ErrInvalidOptions), or nil. Zero values of fields that have a
// default are accepted, so Validate may be called before or after
// EnsureDefaults.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.Interval <= 0 {
		bad("Interval must be > 0, got %v", o.Interval)
	}
	if o.Timeout < 0 {
		bad("Timeout must be > 0 (0 for the default %v), got %v", DefaultTimeout, o.Timeout)
	}
	if o.MinPause < 0 {
		bad("MinPause must be >= 0, got %v", o.MinPause)
	}
	if o.MaxConcurrent < 0 || o.MaxConcurrent > MaxConcurrentLimit {
		bad("MaxConcurrent must be in [1, %d] (0 for the default %d), got %d",
			MaxConcurrentLimit, DefaultMaxConcurrent, o.MaxConcurrent)
	}
	if o.TolerableFailures < 0 {
		bad("TolerableFailures must be >= 0, got %d", o.TolerableFailures)
	}
	if o.Mode != 0 && o.Mode != ExactlyOnce && o.Mode != AtLeastOnce {
		bad("Mode must be ExactlyOnce or AtLeastOnce, got %v", o.Mode)
	}
	return errors.Join(errs...)
}
