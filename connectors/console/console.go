// Package console holds the stdout sink (JSON lines on standard output) and
// the blackhole sink (discards records, counts them). Neither is
// transactional: with checkpoints they are at-least-once at best; only the
// file sink gives exactly-once output.
//
// It imports only engine.
package console

import (
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/streamd/streamd/engine"
)

// Stdout writes records as lines to an io.Writer (os.Stdout by default).
// Lines of different tasks never interleave: each task buffers whole lines
// and writes them under a lock.
type Stdout[T any] struct {
	Encode func(dst []byte, v *T) []byte
	Out    io.Writer
	mu     sync.Mutex
}

// NewStdout returns a stdout sink.
func NewStdout[T any](encode func(dst []byte, v *T) []byte) *Stdout[T] {
	return &Stdout[T]{Encode: encode, Out: os.Stdout}
}

func (s *Stdout[T]) Recover([][]byte) error { return nil }

func (s *Stdout[T]) NewWriter(engine.SinkContext) (engine.SinkWriter[T], error) {
	return &stdoutWriter[T]{s: s}, nil
}

type stdoutWriter[T any] struct {
	s   *Stdout[T]
	buf []byte
}

const stdoutFlushBytes = 64 << 10

func (w *stdoutWriter[T]) Write(v *T) error {
	w.buf = append(w.s.Encode(w.buf, v), '\n')
	if len(w.buf) >= stdoutFlushBytes {
		return w.flush()
	}
	return nil
}

func (w *stdoutWriter[T]) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.s.mu.Lock()
	_, err := w.s.Out.Write(w.buf)
	w.s.mu.Unlock()
	w.buf = w.buf[:0]
	return err
}

func (w *stdoutWriter[T]) PreCommit(uint64) ([]byte, error) { return nil, w.flush() }
func (w *stdoutWriter[T]) Commit(uint64) error              { return nil }
func (w *stdoutWriter[T]) Finish() error                    { return w.flush() }
func (w *stdoutWriter[T]) Close() error                     { return w.flush() }

// Blackhole discards records and counts them.
type Blackhole[T any] struct {
	n atomic.Int64
}

// Count returns the number of records received so far.
func (b *Blackhole[T]) Count() int64 { return b.n.Load() }

func (b *Blackhole[T]) Recover([][]byte) error { return nil }

func (b *Blackhole[T]) NewWriter(engine.SinkContext) (engine.SinkWriter[T], error) {
	return &blackholeWriter[T]{b: b}, nil
}

type blackholeWriter[T any] struct {
	b *Blackhole[T]
	n int64
}

func (w *blackholeWriter[T]) Write(*T) error { w.n++; return nil }
func (w *blackholeWriter[T]) publish() {
	w.b.n.Add(w.n)
	w.n = 0
}
func (w *blackholeWriter[T]) PreCommit(uint64) ([]byte, error) { w.publish(); return nil, nil }
func (w *blackholeWriter[T]) Commit(uint64) error              { return nil }
func (w *blackholeWriter[T]) Finish() error                    { w.publish(); return nil }
func (w *blackholeWriter[T]) Close() error                     { w.publish(); return nil }
