package window_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/window"
)

// Clicks per user in tumbling windows of 10 seconds: the average price,
// with the built-in aggregate chosen by name as a job spec would.
func ExampleAggregate() {
	type click struct {
		User, TS int64
		Price    float64
	}
	type perUser struct {
		User, WindowEnd int64
		AvgPrice        float64
	}
	j := engine.NewJob("clicks", engine.Options{Parallelism: 2})
	// 40 clicks of 2 users, one every second.
	src := engine.FromSource(j, "clicks", sequence.New(sequence.Options[click]{Count: 40, Keys: 2, Make: func(i, key int64, c *click) {
		*c = click{User: key, TS: i * 1000, Price: float64(i)}
	}}))
	src = engine.WithWatermarks(src, engine.WatermarkStrategy[click]{Timestamp: func(c *click) int64 { return c.TS }})
	avg, err := window.Builtin("avg", func(c *click) float64 { return c.Price })
	if err != nil {
		panic(err)
	}
	out := window.Aggregate(engine.KeyBy(src, engine.Int64Key(func(c *click) int64 { return c.User })),
		"avg-price", window.Tumbling(10*time.Second), avg, window.Options{},
		func(ctx *engine.KeyedContext, w window.Window, v window.Value, r *perUser) {
			*r = perUser{User: int64(binary.BigEndian.Uint64(ctx.Key())), WindowEnd: w.End, AvgPrice: v.Float}
		})
	sink := &printSink[perUser]{}
	engine.ToSink(out, "print", engine.Sink[perUser](sink))
	if err := j.Run(context.Background()); err != nil {
		panic(err)
	}
	slices.SortFunc(sink.out, func(a, b perUser) int { return int(a.WindowEnd-b.WindowEnd)*2 + int(a.User-b.User) })
	for _, r := range sink.out {
		fmt.Printf("user %d, window ending %ds: %.0f\n", r.User, r.WindowEnd/1000, r.AvgPrice)
	}
	// Output:
	// user 0, window ending 10s: 4
	// user 1, window ending 10s: 5
	// user 0, window ending 20s: 14
	// user 1, window ending 20s: 15
	// user 0, window ending 30s: 24
	// user 1, window ending 30s: 25
	// user 0, window ending 40s: 34
	// user 1, window ending 40s: 35
}

// printSink collects records without transactions (the example runs
// without checkpoints); its tasks' writers share it.
type printSink[T any] struct {
	mu  sync.Mutex
	out []T
}

func (p *printSink[T]) Recover([][]byte) error { return nil }
func (p *printSink[T]) NewWriter(engine.SinkContext) (engine.SinkWriter[T], error) {
	return (*printWriter[T])(p), nil
}

type printWriter[T any] printSink[T]

func (w *printWriter[T]) Write(v *T) error {
	w.mu.Lock()
	w.out = append(w.out, *v)
	w.mu.Unlock()
	return nil
}
func (w *printWriter[T]) PreCommit(uint64) ([]byte, error) { return nil, nil }
func (w *printWriter[T]) Commit(uint64) error              { return nil }
func (w *printWriter[T]) Finish() error                    { return nil }
func (w *printWriter[T]) Close() error                     { return nil }
