package window

import (
	"fmt"

	"github.com/streamd/streamd/engine"
)

// Aggregate adds a keyed event-time window operator: the records of each
// key are assigned to windows by a, aggregated incrementally by agg, and
// each window fires once when the watermark reaches its MaxTimestamp()
// (again for each record within opts.AllowedLateness after that). A
// firing calls emit with the key's context (ctx.Key() is the window's
// key), the window and the aggregate's result; emit fills *r, which is
// zeroed before each call and passed on downstream with timestamp
// w.MaxTimestamp(). emit must not keep r.
//
// The assigner, aggregate and options are checked when the job starts
// (each task's open): a problem fails Run with an error naming the
// operator. Callers that build jobs from data can check them beforehand
// with Assigner.Validate, AggregateFunction.Validate and Options.Validate
// (a session assigner also needs agg.Merge).
//
// The state is keyed state of the operator (map state "panes/…",
// "windows/…" or "sessions" under the operator's uid, and its timers),
// checkpointed with the task, so a restored job fires every window once:
// windows that fired before the checkpoint do not fire again, and the
// others fire after it. Its state signature (engine.WithStateSignature)
// names the assigner and the accumulator's type, so a checkpoint restores
// only into the same window; pass one of your own among eopts to decide
// otherwise.
func Aggregate[T, ACC, OUT, R any](ks engine.KeyedStream[T], name string, a Assigner, agg AggregateFunction[T, ACC, OUT], opts Options,
	emit func(ctx *engine.KeyedContext, w Window, out OUT, r *R), eopts ...engine.OpOption) engine.Stream[R] {
	return engine.KeyedProcess(ks, name, func(rt *engine.Runtime) (engine.KeyedProcessor[T, R], error) {
		g, mode, err := plan(a, &agg, &opts)
		if err == nil && emit == nil {
			err = fmt.Errorf("%w: emit is required", ErrInvalid)
		}
		if err != nil {
			return engine.KeyedProcessor[T, R]{}, fmt.Errorf("window operator %q: %w", name, err)
		}
		op, err := newOperator(rt.Backend(), rt.StateName(stateName(g, mode)), g, mode, agg, opts.LateRecords)
		if err != nil {
			return engine.KeyedProcessor[T, R]{}, fmt.Errorf("window operator %q: %w", name, err)
		}
		// The context and the downstream function of the call in
		// progress: the engine passes the same ones to every call, but
		// only through the calls.
		var (
			ctx  *engine.KeyedContext
			next func(*R)
			r    R
		)
		op.emit = func(w Window, out *OUT) {
			rt.SetTimestamp(w.MaxTimestamp())
			var zero R
			r = zero
			emit(ctx, w, *out, &r)
			next(&r)
		}
		return engine.KeyedProcessor[T, R]{
			Process: func(c *engine.KeyedContext, v *T, n func(*R)) {
				ctx, next, op.timers = c, n, c
				op.process(v, c.Timestamp(), c.CurrentWatermark())
			},
			OnTimer: func(c *engine.KeyedContext, ts int64, d engine.TimeDomain, n func(*R)) {
				if d != engine.EventTime {
					panic(fmt.Sprintf("window: operator %q: a %v timer fired, but it registers only event-time timers", name, d))
				}
				ctx, next, op.timers = c, n, c
				op.onTimer(ts, c.CurrentWatermark())
			},
		}, nil
	}, append([]engine.OpOption{engine.WithStateSignature(signature[ACC](a))}, eopts...)...)
}

// signature is the default state signature of a window operator (an
// engine.WithStateSignature among eopts replaces it): the assigner and the
// accumulator's type, whose encoding the state holds. A checkpoint of the
// operator restores only into one with the same, and is refused with the
// operator named otherwise, rather than decoding one accumulator type as
// another.
func signature[ACC any](a Assigner) string {
	var acc ACC
	return fmt.Sprintf("window %s, accumulator %T", a, acc)
}
