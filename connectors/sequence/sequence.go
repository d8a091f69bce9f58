// Package sequence is a bounded or unbounded source of generated records:
// record i (for i in [0, Count)) has key i % Keys and sequence number i,
// and every i is emitted exactly once across the source's tasks.
//
// It comes in two forms. NewSplitSource is a splittable source
// (engine.FromSplitSource): its splits are residue classes of i, which a
// restore at another parallelism deals out again, subdividing them when
// needed (splits.go); it restores the checkpoints of the plain form too.
// New is the plain source (engine.FromSource): task j of p emits the i
// with i % p == j, in increasing order, its checkpointed position is the
// next i, and a checkpoint of it restores only at the same parallelism.
//
// It imports only engine.
package sequence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/streamd/streamd/engine"
)

// Options configures a sequence source.
type Options[T any] struct {
	// Count is the number of records of the whole source; -1 = unbounded.
	Count int64
	// Keys is the number of distinct keys, >= 1.
	Keys int64
	// RatePerSec limits the records per second of the whole source (split
	// evenly over its tasks); 0 = as fast as possible.
	RatePerSec float64
	// Make fills *v with record i, whose key is key.
	Make func(i, key int64, v *T)
	// NewMake, when set instead of Make, is called once per task (reader)
	// and returns that task's Make: for a Make with state of its own that
	// one goroutine may use (the Nexmark generator's string chunks).
	NewMake func() func(i, key int64, v *T)
}

// maker returns the Make of one task.
func (o *Options[T]) maker() func(i, key int64, v *T) {
	if o.NewMake != nil {
		return o.NewMake()
	}
	return o.Make
}

// Validate reports every problem at once.
func (o *Options[T]) Validate() error {
	var errs []error
	if o.Count < -1 {
		errs = append(errs, fmt.Errorf("sequence: count %d must be >= 0 (or -1 for unbounded)", o.Count))
	}
	if o.Keys < 1 {
		errs = append(errs, fmt.Errorf("sequence: keys %d must be >= 1", o.Keys))
	}
	if !(o.RatePerSec >= 0) || math.IsInf(o.RatePerSec, 1) { // also NaN
		errs = append(errs, fmt.Errorf("sequence: rate %g must be finite and >= 0", o.RatePerSec))
	}
	if (o.Make == nil) == (o.NewMake == nil) {
		errs = append(errs, errors.New("sequence: exactly one of Make and NewMake is required"))
	}
	return errors.Join(errs...)
}

// New returns a source factory for engine.FromSource.
func New[T any](opts Options[T]) func(engine.SourceContext) (engine.Source[T], error) {
	return func(engine.SourceContext) (engine.Source[T], error) {
		if err := opts.Validate(); err != nil {
			return nil, err
		}
		return &source[T]{opts: opts, mk: opts.maker()}, nil
	}
}

type source[T any] struct {
	opts    Options[T]
	mk      func(i, key int64, v *T) // this task's Make
	next    int64                    // next i this task emits
	stride  int64
	rate    float64 // records per second for this task
	start   time.Time
	emitted float64 // records emitted since start (for the rate limit)
}

func (s *source[T]) Open(ctx engine.SourceContext, state []byte) error {
	s.stride = int64(ctx.Parallelism)
	s.next = int64(ctx.Index)
	if state != nil {
		n, err := decodePosition(state, ctx.Index, ctx.Parallelism)
		if err != nil {
			return err
		}
		s.next = n
	}
	s.rate = s.opts.RatePerSec / float64(ctx.Parallelism)
	s.start = time.Now()
	return nil
}

func (s *source[T]) Read(buf []T) (int, error) {
	n := len(buf)
	if s.rate > 0 {
		allowed := time.Since(s.start).Seconds()*s.rate - s.emitted
		if allowed < 1 {
			return 0, nil
		}
		if allowed < float64(n) { // compare as floats: int(allowed) may overflow
			n = int(allowed)
		}
	}
	count := s.opts.Count
	keys := s.opts.Keys
	i := 0
	for ; i < n; i++ {
		if count >= 0 && s.next >= count {
			break
		}
		s.mk(s.next, s.next%keys, &buf[i])
		s.next += s.stride
	}
	s.emitted += float64(i)
	if count >= 0 && s.next >= count {
		return i, io.EOF
	}
	return i, nil
}

// decodePosition decodes the position of task index of parallelism of
// the plain source: its next i, 8 bytes big-endian.
func decodePosition(state []byte, index, parallelism int) (int64, error) {
	if len(state) != 8 {
		return 0, fmt.Errorf("sequence: restored position has %d bytes, want 8", len(state))
	}
	n := int64(binary.BigEndian.Uint64(state))
	if n < 0 || parallelism < 1 || n%int64(parallelism) != int64(index) {
		return 0, fmt.Errorf("sequence: restored position %d does not belong to task %d of %d", n, index, parallelism)
	}
	return n, nil
}

func (s *source[T]) Position() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(s.next)), nil
}

func (s *source[T]) Close() error { return nil }
