package server

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/streamd/streamd/job"
)

// backoff decides, failure by failure, whether a job restarts and after how
// long: the restart strategy of its spec (job.RestartSpec), with Flink's
// semantics. It is a pure state machine: the caller passes the clock and
// the randomness, so tests script it.
//
//   - none: never restart.
//   - fixed_delay: restart Attempts times, Delay apart; the next failure
//     fails the job.
//   - exponential_delay: the first restart waits InitialBackoff, each
//     further one Multiplier times the previous, at most MaxBackoff, each
//     +- JitterFactor of itself at random. A failure more than
//     ResetThreshold after the previous one starts over from
//     InitialBackoff (the job ran well in between). After
//     AttemptsBeforeReset restarts without such a reset the job fails.
type backoff struct {
	spec        job.RestartSpec
	attempts    int           // restarts granted since the last reset
	current     time.Duration // the last backoff before jitter (exponential)
	lastFailure time.Time
}

func newBackoff(spec *job.RestartSpec) *backoff {
	if spec == nil {
		spec = &job.RestartSpec{Strategy: job.RestartNone}
	}
	return &backoff{spec: *spec}
}

// onFailure records a failure at now and returns whether to restart and
// after how long. rnd returns a number in [0, 1).
func (b *backoff) onFailure(now time.Time, rnd func() float64) (restart bool, delay time.Duration) {
	s := &b.spec
	defer func() { b.lastFailure = now }()
	switch s.Strategy {
	case job.RestartFixedDelay:
		if b.attempts >= s.Attempts {
			return false, 0
		}
		b.attempts++
		return true, s.Delay
	case job.RestartExponentialDelay:
		if !b.lastFailure.IsZero() && now.Sub(b.lastFailure) >= s.ResetThreshold {
			b.attempts, b.current = 0, 0
		}
		if b.attempts >= s.AttemptsBeforeReset {
			return false, 0
		}
		b.attempts++
		if b.current == 0 {
			b.current = s.InitialBackoff
		} else {
			next := float64(b.current) * s.Multiplier
			b.current = time.Duration(math.Min(next, float64(s.MaxBackoff)))
		}
		d := float64(b.current)
		if s.JitterFactor > 0 {
			d += d * s.JitterFactor * (2*rnd() - 1)
		}
		return true, time.Duration(max(d, 0))
	default:
		return false, 0
	}
}

// defaultRand is the randomness of jitter.
func defaultRand() float64 { return rand.Float64() }
