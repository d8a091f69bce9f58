package engine_test

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
)

// Click is the record type of the example.
type Click struct {
	User  string
	Page  int64
	Count int64
}

// clicks is a bounded source: each of its tasks emits its share of n clicks.
type clicks struct {
	n, next, stride int64
}

func (c *clicks) Open(ctx engine.SourceContext, state []byte) error {
	c.next, c.stride = int64(ctx.Index), int64(ctx.Parallelism)
	if state != nil { // restored from a checkpoint
		_, err := fmt.Sscan(string(state), &c.next)
		return err
	}
	return nil
}

func (c *clicks) Read(buf []Click) (int, error) {
	i := 0
	for ; i < len(buf) && c.next < c.n; i++ {
		buf[i] = Click{User: []string{"ann", "bob", "cyd"}[c.next%3], Page: c.next}
		c.next += c.stride
	}
	if c.next >= c.n {
		return i, io.EOF
	}
	return i, nil
}

func (c *clicks) Position() ([]byte, error) { return fmt.Append(nil, c.next), nil }
func (c *clicks) Close() error              { return nil }

// lastCount keeps the latest count per user. It applies records as they
// come and ignores checkpoints, which is enough for a job without them. A
// real sink implements two-phase commit: see connectors/file, and
// examples/go/custom for one written from scratch.
type lastCount struct {
	mu   sync.Mutex
	last map[string]int64
}

func (s *lastCount) Recover([][]byte) error { return nil }
func (s *lastCount) NewWriter(engine.SinkContext) (engine.SinkWriter[Click], error) {
	return &lastCountWriter{s: s}, nil
}

type lastCountWriter struct{ s *lastCount }

func (w *lastCountWriter) Write(c *Click) error {
	w.s.mu.Lock()
	w.s.last[c.User] = max(w.s.last[c.User], c.Count)
	w.s.mu.Unlock()
	return nil
}
func (w *lastCountWriter) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (w *lastCountWriter) Commit(uint64) error              { return nil }
func (w *lastCountWriter) Finish() error                    { return nil }
func (w *lastCountWriter) Close() error                     { return nil }

// Example counts clicks per user with keyed state: source -> filter ->
// key by user -> count -> sink, at parallelism 2, without checkpoints.
// Complete programs with checkpoints, the file sink, and a custom source
// and two-phase-commit sink are in examples/go (quoted in the README).
func Example() {
	job := engine.NewJob("clicks", engine.Options{Parallelism: 2})
	src := engine.FromSource(job, "clicks", func(engine.SourceContext) (engine.Source[Click], error) {
		return &clicks{n: 3000}, nil
	})
	even := engine.Filter(src, "even-pages", func(c Click) bool { return c.Page%2 == 0 })
	byUser := engine.KeyBy(even, engine.StringKey(func(c *Click) string { return c.User }))
	counted := engine.Process(byUser, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *Click, func(*Click)), error) {
		// Keyed state is registered once per task and scoped to the
		// current record's key.
		count, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, c *Click, emit func(*Click)) {
			n, _ := count.Get()
			count.Put(n + 1)
			c.Count = n + 1
			emit(c)
		}, nil
	})
	sink := &lastCount{last: make(map[string]int64)}
	engine.ToSink(counted, "last-count", engine.Sink[Click](sink))

	if err := job.Run(context.Background()); err != nil {
		fmt.Println("job failed:", err)
		return
	}
	users := make([]string, 0, len(sink.last))
	for u := range sink.last {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		fmt.Println(u, sink.last[u])
	}
	// Output:
	// ann 500
	// bob 500
	// cyd 500
}
