package engine

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/streamd/streamd/internal/invariants"
)

// mailbox is the control path between the driver and the tasks: a FIFO
// that never blocks its senders, so that the driver never waits for a task
// and a task or snapshot worker never waits for the driver (a bounded
// channel each way made the shutdown depend on their capacities, and could
// deadlock when both sides were full).
//
// Its length is bounded by the protocol, not by the type; limit is that
// bound, checked under invariants (internal/invariants): see the callers
// for why each mailbox stays below it.
type mailbox[T any] struct {
	mu    sync.Mutex
	queue []T // guarded by mu
	// n mirrors len(queue), so that pending costs one atomic load (tasks
	// check it between batches).
	n     atomic.Int32
	limit int
	// notify, if not nil, receives a token when the mailbox becomes non
	// empty (capacity 1: tokens never pile up).
	notify chan struct{}
}

func newMailbox[T any](limit int, notify bool) *mailbox[T] {
	m := &mailbox[T]{limit: limit}
	if notify {
		m.notify = make(chan struct{}, 1)
	}
	return m
}

// put appends v. It never blocks.
func (m *mailbox[T]) put(v T) {
	m.mu.Lock()
	m.queue = append(m.queue, v)
	n := len(m.queue)
	m.n.Store(int32(n))
	m.mu.Unlock()
	if invariants.Enabled && n > m.limit {
		panic(fmt.Sprintf("engine: a mailbox holds %d messages, above its protocol bound %d", n, m.limit))
	}
	if m.notify != nil {
		select {
		case m.notify <- struct{}{}:
		default:
		}
	}
}

// pending reports whether the mailbox holds a message.
func (m *mailbox[T]) pending() bool { return m.n.Load() > 0 }

// takeAll appends every queued message to dst, oldest first, and empties
// the mailbox.
func (m *mailbox[T]) takeAll(dst []T) []T {
	if !m.pending() {
		return dst
	}
	m.mu.Lock()
	dst = append(dst, m.queue...)
	clear(m.queue)
	m.queue = m.queue[:0]
	m.n.Store(0)
	m.mu.Unlock()
	return dst
}
