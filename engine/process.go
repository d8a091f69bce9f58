package engine

import (
	"fmt"
	"time"

	"github.com/streamd/streamd/keyed"
)

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the operator's watermark reaches them.
	EventTime TimeDomain = iota + 1
	// ProcessingTime timers fire when the wall clock (ms since the
	// epoch) reaches them.
	ProcessingTime
)

func (d TimeDomain) String() string {
	switch d {
	case EventTime:
		return "event time"
	case ProcessingTime:
		return "processing time"
	}
	return fmt.Sprintf("TimeDomain(%d)", uint8(d))
}

// KeyedProcessor is what a keyed process function with timers does
// (Flink's KeyedProcessFunction): Process with each record, its key
// current; OnTimer when a timer it registered fires, the timer's key
// current and the timer's timestamp as the timestamp of what it emits.
type KeyedProcessor[T, U any] struct {
	Process func(ctx *KeyedContext, v *T, emit func(*U))
	OnTimer func(ctx *KeyedContext, ts int64, domain TimeDomain, emit func(*U))
}

// KeyedProcess adds a keyed process function with timers. open is called
// once per task, on the task's goroutine, to register state; the engine
// registers the operator's timers (in its keyed state, so that they are
// checkpointed copy-on-write with it) when OnTimer is set.
func KeyedProcess[T, U any](ks KeyedStream[T], name string, open func(rt *Runtime) (KeyedProcessor[T, U], error), opts ...OpOption) Stream[U] {
	return keyedOp(ks, name, func(rt *Runtime, next func(*U)) (keyedFunc[T, U], error) {
		kp, err := open(rt)
		if err != nil {
			return keyedFunc[T, U]{}, err
		}
		if kp.Process == nil {
			return keyedFunc[T, U]{}, fmt.Errorf("engine: keyed process %q: Process is required", name)
		}
		ctx := &KeyedContext{rt: rt}
		if kp.OnTimer != nil {
			if err := openTimers(ctx, kp.OnTimer, next); err != nil {
				return keyedFunc[T, U]{}, err
			}
		}
		return keyedFunc[T, U]{fn: kp.Process, ctx: ctx, next: next}, nil
	}, opts)
}

// openTimers registers the operator's timers and the hooks that fire
// them: event-time timers on each watermark advance, processing-time
// timers when the task finds them due (task.fireProcessingTimers).
func openTimers[U any](c *KeyedContext, onTimer func(ctx *KeyedContext, ts int64, domain TimeDomain, emit func(*U)), emit func(*U)) error {
	rt := c.rt
	tm, err := keyed.NewTimers(rt.backend, rt.StateName("timers"))
	if err != nil {
		return fmt.Errorf("cannot register the timers of %s: %w", rt, err)
	}
	c.timers = tm
	fireEvent := func(ts int64) {
		rt.SetTimestamp(ts)
		onTimer(c, ts, EventTime, emit)
	}
	rt.OnWatermark(func(wm int64) { tm.AdvanceWatermark(wm, fireEvent) })
	fireProc := func(ts int64) {
		rt.SetTimestamp(ts)
		onTimer(c, ts, ProcessingTime, emit)
	}
	t := rt.task
	t.procTimers = append(t.procTimers, procTimers{
		next:    tm.NextProcessingTime,
		advance: func(nowMs int64) { tm.AdvanceProcessingTime(nowMs, fireProc) },
	})
	return nil
}

// procTimers is one operator's processing-time timers, as its task sees
// them.
type procTimers struct {
	next    func() (int64, bool)
	advance func(nowMs int64)
}

// fireProcessingTimers fires the processing-time timers of the task's
// operators that are due.
func (t *task) fireProcessingTimers() {
	if len(t.procTimers) == 0 {
		return
	}
	now := time.Now().UnixMilli()
	for _, p := range t.procTimers {
		if ts, ok := p.next(); ok && ts <= now {
			p.advance(now)
		}
	}
}

// nextProcessingTimer returns the earliest processing-time timer of the
// task's operators, in ms since the epoch.
func (t *task) nextProcessingTimer() (int64, bool) {
	first, found := int64(0), false
	for _, p := range t.procTimers {
		if ts, ok := p.next(); ok && (!found || ts < first) {
			first, found = ts, true
		}
	}
	return first, found
}

// Timestamp returns the event-time timestamp of the record being
// processed, or of the timer firing (ms since the epoch).
func (c *KeyedContext) Timestamp() int64 { return c.rt.task.recTS }

// CurrentWatermark returns the operator's watermark.
func (c *KeyedContext) CurrentWatermark() int64 { return c.rt.wm }

// CurrentProcessingTime returns the wall clock in ms since the epoch.
func (c *KeyedContext) CurrentProcessingTime() int64 { return time.Now().UnixMilli() }

// RegisterEventTimeTimer registers a timer for the current key that fires
// when the watermark reaches ts (once per key and timestamp: registering
// it again does nothing). The operator must have an OnTimer.
func (c *KeyedContext) RegisterEventTimeTimer(ts int64) { c.mustTimers().RegisterEventTime(ts) }

// DeleteEventTimeTimer deletes the current key's event-time timer at ts,
// if any.
func (c *KeyedContext) DeleteEventTimeTimer(ts int64) { c.mustTimers().DeleteEventTime(ts) }

// RegisterProcessingTimeTimer registers a timer for the current key that
// fires when the wall clock reaches ts (ms since the epoch).
func (c *KeyedContext) RegisterProcessingTimeTimer(ts int64) {
	c.mustTimers().RegisterProcessingTime(ts)
}

// DeleteProcessingTimeTimer deletes the current key's processing-time
// timer at ts, if any.
func (c *KeyedContext) DeleteProcessingTimeTimer(ts int64) {
	c.mustTimers().DeleteProcessingTime(ts)
}

func (c *KeyedContext) mustTimers() *keyed.Timers {
	if c.timers == nil {
		panic(fmt.Sprintf("engine: %s registers a timer but has no OnTimer (use KeyedProcess or CoProcess with OnTimer)", c.rt))
	}
	return c.timers
}
