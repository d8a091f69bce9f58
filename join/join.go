// Package join is streamd's stream–stream joins over two keyed streams:
// a regular (unbounded) inner join with state retention, as Flink SQL's
// regular join with table.exec.state.ttl, and a tumbling window join, as
// Flink's window join. Both are two-input keyed operators
// (engine.CoProcess): records of one key from both sides meet in one task,
// a checkpoint's barriers align across both inputs, and the join's state
// (and, for the window join, its timers) is keyed state, checkpointed
// copy-on-write with the rest.
//
// # State
//
// Each side's records are stored per key in a map state from the record's
// encoding (the side's Codec) to how many times it was seen, as Flink's
// join state keeps records without a unique key: equal records share one
// entry. A record of one side is joined with every stored record of the
// other, once per copy. With a TTL, a stored record is forgotten TTL after
// it was last stored (processing time), and its entry is removed by the
// backend's cleanup; without one, state grows with the input, as in Flink.
//
// The window join keys its entries by side and window as well, fires each
// window once when the watermark passes its end (an event-time timer per
// key and window), emits the cross product of the window's two sides and
// clears them. Records of a window that has fired (late) are dropped and
// counted.
//
// It imports engine and keyed only.
package join

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/keyed"
)

// Options configures a join.
type Options[L, R any] struct {
	// LeftCodec and RightCodec encode the records of each side in keyed
	// state. Required.
	LeftCodec  keyed.Codec[L]
	RightCodec keyed.Codec[R]
	// TTL is how long a stored record of the regular join is kept after it
	// was last stored (processing time; Flink SQL's table.exec.state.ttl);
	// 0 keeps records forever. The window join ignores it: a window's
	// records are removed when it fires.
	TTL time.Duration
	// Late, when set, counts records the window join dropped because their
	// window had already fired.
	Late *atomic.Int64
}

func (o *Options[L, R]) validate(name string) error {
	if o.LeftCodec == nil || o.RightCodec == nil {
		return fmt.Errorf("join %q: LeftCodec and RightCodec are required", name)
	}
	if o.TTL < 0 {
		return fmt.Errorf("join %q: TTL %v is negative", name, o.TTL)
	}
	return nil
}

// side is one input's view of the join: its state, its codec and the
// decoded record of the other side, reused.
type side[T any] struct {
	st    *keyed.MapState[[]byte, int64]
	codec keyed.Codec[T]
	enc   []byte
	// found and keys are each's and removeWindow's scratch, reused.
	found []entry[T]
	keys  [][]byte
}

// entry is a stored record decoded, with its number of copies.
type entry[T any] struct {
	v T
	n int64
}

func newSide[T any](rt *engine.Runtime, name string, c keyed.Codec[T], ttl time.Duration) (side[T], error) {
	st, err := keyed.NewMapState(rt.Backend(), rt.StateName(name), keyed.BytesCodec, keyed.Int64Codec, keyed.StateOptions{TTL: ttl})
	return side[T]{st: st, codec: c}, err
}

// add stores v (under prefix, the window of a window join) once more.
func (s *side[T]) add(prefix []byte, v *T) {
	s.enc = s.codec.Append(append(s.enc[:0], prefix...), *v)
	n, _ := s.st.Get(s.enc)
	s.st.Put(s.enc, n+1)
}

// each calls f with every stored record whose entry starts with prefix,
// once per copy. The entries are decoded first: f may write state.
func (s *side[T]) each(prefix []byte, f func(v *T)) {
	found := s.found[:0]
	for k, n := range s.st.All() {
		if len(k) < len(prefix) || string(k[:len(prefix)]) != string(prefix) {
			continue
		}
		v, err := s.codec.Decode(k[len(prefix):])
		if err != nil {
			panic(fmt.Errorf("join: a stored record does not decode: %w", err))
		}
		found = append(found, entry[T]{v, n})
	}
	// f may call each again (on the other side: its own scratch) but not
	// on this one, so the scratch is free again after the loop.
	for i := range found {
		for range found[i].n {
			f(&found[i].v)
		}
	}
	clear(found) // drop references to decoded strings
	s.found = found[:0]
}

// Inner adds a regular inner join of left and right, keyed by the same
// key: each record is stored, and joined with every stored record of the
// other side; emit builds the output of a pair. The output of a pair
// carries the timestamp of the record that completed it.
func Inner[L, R, O any](left engine.KeyedStream[L], right engine.KeyedStream[R], name string, o Options[L, R], emit func(l *L, r *R, out *O), opts ...engine.OpOption) engine.Stream[O] {
	return engine.CoProcess(left, right, name, func(rt *engine.Runtime) (engine.CoProcessor[L, R, O], error) {
		if err := o.validate(name); err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		ls, err := newSide(rt, "left", o.LeftCodec, o.TTL)
		if err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		rs, err := newSide(rt, "right", o.RightCodec, o.TTL)
		if err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		var out O
		return engine.CoProcessor[L, R, O]{
			Process1: func(_ *engine.KeyedContext, l *L, next func(*O)) {
				ls.add(nil, l)
				rs.each(nil, func(r *R) { emit(l, r, &out); next(&out) })
			},
			Process2: func(_ *engine.KeyedContext, r *R, next func(*O)) {
				rs.add(nil, r)
				ls.each(nil, func(l *L) { emit(l, r, &out); next(&out) })
			},
		}, nil
	}, opts...)
}

// Window is a window of the window join: [Start, End) in ms.
type Window struct{ Start, End int64 }

// Tumbling adds a tumbling event-time window join of left and right: the
// pairs of records of one key whose timestamps fall in the same window
// [k·size+offset, (k+1)·size+offset) are emitted when the watermark passes
// the window's end, with the window's last millisecond as their timestamp.
func Tumbling[L, R, O any](left engine.KeyedStream[L], right engine.KeyedStream[R], name string, size, offset time.Duration, o Options[L, R], emit func(w Window, l *L, r *R, out *O), opts ...engine.OpOption) engine.Stream[O] {
	sizeMs, offsetMs := size.Milliseconds(), offset.Milliseconds()
	return engine.CoProcess(left, right, name, func(rt *engine.Runtime) (engine.CoProcessor[L, R, O], error) {
		if err := o.validate(name); err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		if sizeMs <= 0 || offsetMs < 0 || offsetMs >= sizeMs {
			return engine.CoProcessor[L, R, O]{}, fmt.Errorf("join %q: window size %v must be >= 1ms and offset %v in [0, size)", name, size, offset)
		}
		ls, err := newSide(rt, "left", o.LeftCodec, 0)
		if err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		rs, err := newSide(rt, "right", o.RightCodec, 0)
		if err != nil {
			return engine.CoProcessor[L, R, O]{}, err
		}
		var prefix [8]byte
		// windowOf returns the end of the record's window, or false when
		// the window has fired already (a late record, dropped).
		windowOf := func(ctx *engine.KeyedContext) (int64, bool) {
			ts := ctx.Timestamp()
			start := ts - mod(ts-offsetMs, sizeMs)
			end := start + sizeMs
			if end-1 <= ctx.CurrentWatermark() {
				if o.Late != nil {
					o.Late.Add(1)
				}
				return 0, false
			}
			binary.BigEndian.PutUint64(prefix[:], uint64(end))
			ctx.RegisterEventTimeTimer(end - 1)
			return end, true
		}
		var out O
		return engine.CoProcessor[L, R, O]{
			Process1: func(ctx *engine.KeyedContext, l *L, _ func(*O)) {
				if _, ok := windowOf(ctx); ok {
					ls.add(prefix[:], l)
				}
			},
			Process2: func(ctx *engine.KeyedContext, r *R, _ func(*O)) {
				if _, ok := windowOf(ctx); ok {
					rs.add(prefix[:], r)
				}
			},
			OnTimer: func(ctx *engine.KeyedContext, ts int64, _ engine.TimeDomain, next func(*O)) {
				end := ts + 1
				w := Window{Start: end - sizeMs, End: end}
				var p [8]byte
				binary.BigEndian.PutUint64(p[:], uint64(end))
				var lefts []L
				ls.each(p[:], func(l *L) { lefts = append(lefts, *l) })
				if len(lefts) > 0 {
					rs.each(p[:], func(r *R) {
						for i := range lefts {
							emit(w, &lefts[i], r, &out)
							next(&out)
						}
					})
				}
				ls.removeWindow(p[:])
				rs.removeWindow(p[:])
			},
		}, nil
	}, opts...)
}

// removeWindow removes the entries that start with prefix.
func (s *side[T]) removeWindow(prefix []byte) {
	keys := s.keys[:0]
	for k := range s.st.All() {
		if len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix) {
			i := len(keys)
			if i < cap(keys) {
				keys = keys[:i+1]
				keys[i] = append(keys[i][:0], k...)
			} else {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
	}
	for _, k := range keys {
		s.st.Remove(k)
	}
	s.keys = keys[:0]
}

// mod is the floor modulo (the remainder has the sign of m).
func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}
