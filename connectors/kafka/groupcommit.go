package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The source reader learns which checkpoint the positions of its last
// Splits call belong to (engine.CheckpointTaker, called right after
// Splits on the task's goroutine), so that it commits to the group exactly
// the offsets of a checkpoint that completed (engine.CheckpointListener).
var (
	_ engine.CheckpointTaker    = (*sourceReader[int])(nil)
	_ engine.CheckpointListener = (*sourceReader[int])(nil)
)

// groupCommitter commits the offsets of completed checkpoints to a
// consumer group, for monitoring only. The commits run on their own
// goroutine, one at a time, so that a slow cluster never blocks the task;
// when several checkpoints complete meanwhile only the latest's offsets
// are committed (they supersede the others').
type groupCommitter struct {
	cl      *kgo.Client
	group   string
	timeout time.Duration

	taken   kadm.Offsets            // the offsets of the last Splits call
	pending map[uint64]kadm.Offsets // by checkpoint id, taken, not complete

	mu struct {
		sync.Mutex
		next    kadm.Offsets // to commit when the running commit ends
		running bool
		err     error // the last commit's error (monitoring only)
	}
	wg sync.WaitGroup
}

// snapshot records the positions Splits is about to store.
func (g *groupCommitter) snapshot(parts []*part) {
	offs := make(kadm.Offsets)
	for _, pt := range parts {
		offs.AddOffset(pt.topic, pt.p, pt.Next, -1)
	}
	g.taken = offs
}

// CheckpointTaken ties the last Splits call's positions to checkpoint id.
func (g *groupCommitter) CheckpointTaken(id uint64) {
	if g.taken == nil {
		return
	}
	if g.pending == nil {
		g.pending = make(map[uint64]kadm.Offsets)
	}
	g.pending[id], g.taken = g.taken, nil
}

// CheckpointCompleted implements engine.CheckpointListener: it starts
// committing checkpoint id's positions, and forgets those of older
// checkpoints (they never will complete, or are superseded). It returns
// the previous commit's error, once, for the engine to log.
func (g *groupCommitter) CheckpointCompleted(id uint64) error {
	offs, ok := g.pending[id]
	for k := range g.pending {
		if k <= id {
			delete(g.pending, k)
		}
	}
	if !ok || g.cl == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.mu.err
	g.mu.err = nil
	g.mu.next = offs
	if !g.mu.running {
		g.mu.running = true
		g.wg.Add(1)
		go g.commitLoop()
	}
	if err != nil {
		return fmt.Errorf("kafka: cannot commit the offsets of a checkpoint to group %q (for monitoring only): %w", g.group, err)
	}
	return nil
}

func (g *groupCommitter) commitLoop() {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		offs := g.mu.next
		g.mu.next = nil
		if offs == nil {
			g.mu.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		resp, err := kadm.NewClient(g.cl).CommitOffsets(ctx, g.group, offs)
		cancel()
		if err == nil {
			err = resp.Error()
		}
		g.mu.Lock()
		g.mu.err = err
		g.mu.Unlock()
	}
}

// waitCommits waits for the commit running, if any.
func (g *groupCommitter) waitCommits() { g.wg.Wait() }

// lastCommitError returns the last commit's error.
func (g *groupCommitter) lastCommitError() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.err
}
