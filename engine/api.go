package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/streamd/streamd/keyed"
)

// Stream is a typed stream of records of type T.
type Stream[T any] struct {
	j *Job
	n *node
	// part is the partitioning requested for the next edge (Rebalance,
	// Broadcast, Forward); 0 = the default.
	part partitioning
}

// KeyedStream is a stream partitioned by a key: records with equal keys go
// to the same task, which owns their keyed state.
type KeyedStream[T any] struct {
	Stream[T]
	key KeySelector[T]
	// reinterpret: the stream is already partitioned by key (forward edge).
	reinterpret bool
}

// KeySelector says what a record's key is. Keys are compared and hashed as
// bytes; build a selector with Int64Key, Uint64Key, StringKey or, for any
// other key, BytesKey.
type KeySelector[T any] struct {
	// appendKey appends the key of v to dst and returns the extended slice.
	appendKey func(dst []byte, v *T) []byte
	// i64 or u64, when set, returns the key as a number whose 8
	// big-endian bytes are the key: the engine then hashes and sets the
	// key without building a byte slice (and without a second call).
	i64 func(v *T) int64
	u64 func(v *T) uint64
}

// BytesKey selects a key that f appends to dst (returning the extended
// slice, as append does).
func BytesKey[T any](f func(dst []byte, v *T) []byte) KeySelector[T] {
	return KeySelector[T]{appendKey: f}
}

// Int64Key selects an int64 key, encoded as 8 big-endian bytes.
func Int64Key[T any](f func(v *T) int64) KeySelector[T] {
	return KeySelector[T]{
		appendKey: func(dst []byte, v *T) []byte { return binary.BigEndian.AppendUint64(dst, uint64(f(v))) },
		i64:       f,
	}
}

// Uint64Key selects a uint64 key, encoded as 8 big-endian bytes.
func Uint64Key[T any](f func(v *T) uint64) KeySelector[T] {
	return KeySelector[T]{
		appendKey: func(dst []byte, v *T) []byte { return binary.BigEndian.AppendUint64(dst, f(v)) },
		u64:       f,
	}
}

// StringKey selects a string key, encoded as its bytes.
func StringKey[T any](f func(v *T) string) KeySelector[T] {
	return BytesKey(func(dst []byte, v *T) []byte { return append(dst, f(v)...) })
}

// Source produces the records of a source operator. Each parallel task has
// its own Source, created by the factory given to FromSource; all methods
// are called on the task's goroutine. A Source's position is one opaque
// value per task, so a checkpoint of it restores only at the same
// parallelism; a source whose position is a set of splits
// (FromSplitSource, SplitReader) restores at any parallelism.
type Source[T any] interface {
	// Open prepares reading. state is the position this task's source
	// recorded in the checkpoint the job restores from, nil on a fresh
	// start.
	Open(ctx SourceContext, state []byte) error
	// Read fills buf with up to len(buf) records and returns how many. It
	// returns io.EOF itself (possibly with n > 0) when the source is
	// exhausted — an error that merely wraps io.EOF is a failure;
	// (0, nil) means nothing is available right now: the task then waits a
	// little, handling control messages, and calls Read again. Read should
	// not block for long: barriers are injected between two Reads.
	Read(buf []T) (int, error)
	// Position returns the read position after the records returned so
	// far; it is stored in the checkpoint. Called between Reads.
	Position() ([]byte, error)
	// Close releases resources.
	Close() error
}

// SourceContext describes the task a source runs in.
type SourceContext struct {
	Job         string
	Operator    string
	Index       int
	Parallelism int
}

// FromSource adds a source operator; newSource is called once per parallel
// task.
func FromSource[T any](j *Job, name string, newSource func(SourceContext) (Source[T], error), opts ...OpOption) Stream[T] {
	n := &node{name: name, kind: kindSourceNode, out: typeOps[T]{}}
	n.openSource = func(rt *Runtime, next any, state []byte) (sourceRunner, error) {
		sc := SourceContext{Job: rt.Job, Operator: name, Index: rt.TaskIndex, Parallelism: rt.Parallelism}
		src, err := newSource(sc)
		if err != nil {
			return nil, err
		}
		if err := src.Open(sc, state); err != nil {
			return nil, err
		}
		return &typedSource[T]{src: src, buf: make([]T, rt.batchSize), push: next.(func(*T)), et: openEventTime[T](n, rt, 1, nil)}, nil
	}
	j.addNode(n, nil, opts)
	return Stream[T]{j: j, n: n}
}

// Transform adds an operator at the lowest level of the typed API: build is
// called once per parallel task and returns the function that processes
// each record, given next, which passes a record on. Records are passed by
// pointer and may be modified in place; next may be called any number of
// times per record (pointers passed to next are not retained by the
// engine beyond the call). Map, Filter and FlatMap are built on it.
func Transform[T, U any](s Stream[T], name string, build func(rt *Runtime, next func(*U)) (func(*T), error), opts ...OpOption) Stream[U] {
	n := &node{name: name, kind: kindOperatorNode, out: typeOps[U]{}, part: s.part}
	n.build = func(rt *Runtime, next any) (any, error) { return build(rt, next.(func(*U))) }
	s.j.addNode(n, s.n, opts)
	return Stream[U]{j: s.j, n: n}
}

// Map transforms every record.
func Map[T, U any](s Stream[T], name string, fn func(T) U, opts ...OpOption) Stream[U] {
	st := Transform(s, name, func(_ *Runtime, next func(*U)) (func(*T), error) {
		var out U
		return func(v *T) {
			out = fn(*v)
			next(&out)
		}, nil
	}, opts...)
	st.n.oneToOne = true
	return st
}

// MapInPlace modifies every record in place: the cheapest way to change
// fields without changing the type. fn must not keep v after it returns.
// Prefer it to Map on hot paths with records of more than a few words:
// passing a struct by value and returning it costs store-forwarding stalls
// that MapInPlace avoids (bench suite "pipeline").
func MapInPlace[T any](s Stream[T], name string, fn func(v *T), opts ...OpOption) Stream[T] {
	st := Transform(s, name, func(_ *Runtime, next func(*T)) (func(*T), error) {
		return func(v *T) {
			fn(v)
			next(v)
		}, nil
	}, opts...)
	st.n.oneToOne = true
	return st
}

// Filter keeps the records for which keep returns true.
func Filter[T any](s Stream[T], name string, keep func(T) bool, opts ...OpOption) Stream[T] {
	st := Transform(s, name, func(rt *Runtime, next func(*T)) (func(*T), error) {
		out := rt.recordsOut
		return func(v *T) {
			if keep(*v) {
				*out++
				next(v)
			}
		}, nil
	}, opts...)
	st.n.countsOut = true
	return st
}

// FlatMap emits zero or more records per record.
func FlatMap[T, U any](s Stream[T], name string, fn func(v T, emit func(U)), opts ...OpOption) Stream[U] {
	st := Transform(s, name, func(rt *Runtime, next func(*U)) (func(*T), error) {
		var out U
		count := rt.recordsOut
		emit := func(u U) {
			out = u
			*count++
			next(&out)
		}
		return func(v *T) { fn(*v, emit) }, nil
	}, opts...)
	st.n.countsOut = true
	return st
}

// Rebalance distributes the records round robin over the next operator's
// tasks.
func Rebalance[T any](s Stream[T]) Stream[T] { return s.withPart(partRebalance) }

// Broadcast sends every record to every task of the next operator.
func Broadcast[T any](s Stream[T]) Stream[T] { return s.withPart(partBroadcast) }

// Forward sends the records of task i to task i of the next operator, which
// must have the same parallelism (the default between equal parallelisms).
func Forward[T any](s Stream[T]) Stream[T] { return s.withPart(partForward) }

func (s Stream[T]) withPart(p partitioning) Stream[T] {
	s.part = p
	return s
}

// KeyBy partitions the stream by key. Operators applied to the result
// (Process, ProcessRaw) run keyed: each record's key is the current key of
// the state they access.
func KeyBy[T any](s Stream[T], key KeySelector[T]) KeyedStream[T] {
	return KeyedStream[T]{Stream: s, key: key}
}

// AsKeyed reinterprets a stream that is already partitioned by key — the
// output of a keyed operator that did not change the key — as keyed, so the
// next keyed operator chains with it instead of shuffling again (Flink's
// reinterpretAsKeyedStream). Records must really be partitioned by this key:
// a record whose key group is not owned by its task makes the job fail.
func AsKeyed[T any](s Stream[T], key KeySelector[T]) KeyedStream[T] {
	return KeyedStream[T]{Stream: s, key: key, reinterpret: true}
}

// KeyedContext is passed to keyed process functions.
type KeyedContext struct {
	rt *Runtime
	// timers are the operator's timers (process.go), nil without OnTimer.
	timers *keyed.Timers
}

// Key returns the current record's key bytes.
func (c *KeyedContext) Key() []byte { return c.rt.backend.CurrentKey() }

// Runtime returns the task's runtime.
func (c *KeyedContext) Runtime() *Runtime { return c.rt }

// ProcessRaw adds a keyed operator at the lowest level: like Transform, but
// before each record reaches the returned function the engine sets the
// record's key as the current key of rt.Backend().
func ProcessRaw[T, U any](ks KeyedStream[T], name string, build func(rt *Runtime, next func(*U)) (func(*T), error), opts ...OpOption) Stream[U] {
	return keyedOp(ks, name, func(rt *Runtime, next func(*U)) (keyedFunc[T, U], error) {
		inner, err := build(rt, next)
		return keyedFunc[T, U]{inner: inner}, err
	}, opts)
}

// Process adds a keyed process function. open is called once per task, on
// the task's goroutine, to register state (keyed.NewValueState(rt.Backend(),
// …)) and returns the function called for each record.
//
// Records are passed by pointer, as Flink passes reused objects with object
// reuse enabled: fn may read and modify *v, and emit any number of records
// (v itself, modified in place, is the cheapest). Neither v nor an emitted
// pointer may be kept after the call returns. Pointers instead of values
// are deliberate: a struct of several words passed and returned by value
// costs a store-forwarding stall per copy (~30 ns per record measured on the
// project's machine, DESIGN.md), more than the rest of the operator.
func Process[T, U any](ks KeyedStream[T], name string, open func(rt *Runtime) (func(ctx *KeyedContext, v *T, emit func(*U)), error), opts ...OpOption) Stream[U] {
	return keyedOp(ks, name, func(rt *Runtime, next func(*U)) (keyedFunc[T, U], error) {
		fn, err := open(rt)
		return keyedFunc[T, U]{fn: fn, ctx: &KeyedContext{rt: rt}, next: next}, err
	}, opts)
}

// keyedFunc is what a keyed operator does with a record once its key is
// set: inner(v) (ProcessRaw), or fn(ctx, v, next) (Process), called
// directly by the function that sets the key rather than through a wrapper.
type keyedFunc[T, U any] struct {
	inner func(*T)
	fn    func(*KeyedContext, *T, func(*U))
	ctx   *KeyedContext
	next  func(*U)
}

func (k keyedFunc[T, U]) asInner() func(*T) {
	if k.inner != nil {
		return k.inner
	}
	fn, ctx, next := k.fn, k.ctx, k.next
	return func(v *T) { fn(ctx, v, next) }
}

// keyedOp adds a keyed operator: the function that build returns runs
// with each record's key as the current key of rt.Backend().
func keyedOp[T, U any](ks KeyedStream[T], name string, build func(rt *Runtime, next func(*U)) (keyedFunc[T, U], error), opts []OpOption) Stream[U] {
	n := &node{name: name, kind: kindOperatorNode, keyed: true, out: typeOps[U]{}}
	key := ks.key
	if ks.reinterpret {
		n.part = partForward
		n.countsIn = true
	} else {
		n.part = partKeyed
		n.route = keyRoute(key)
	}
	n.build = func(rt *Runtime, next any) (any, error) {
		kf, err := build(rt, next.(func(*U)))
		if err != nil {
			return nil, err
		}
		b := rt.backend
		var kb []byte
		if !ks.reinterpret {
			// After a keyed exchange (always the head of its task: keyed
			// edges never chain) the exchange already hashed the key and
			// passed the hash along in the ring slot.
			t := rt.task
			if f := key.i64; f != nil {
				return setNumberKey(f, b, t, kf), nil
			}
			if f := key.u64; f != nil {
				return setNumberKey(f, b, t, kf), nil
			}
			appendKey, inner := key.appendKey, kf.asInner()
			return func(v *T) {
				kb = appendKey(kb[:0], v)
				b.SetCurrentKeyHashed(kb, t.recHash)
				inner(v)
			}, nil
		}
		// A reinterpreted keyed stream usually follows a keyed operator in
		// the same task, which already made this key current: compare the
		// key bytes before hashing again. It counts its input (countsIn):
		// the operator before it is usually a keyed one, whose output
		// nothing else counts.
		appendKey, inner, in := key.appendKey, kf.asInner(), rt.recordsIn
		return func(v *T) {
			*in++
			kb = appendKey(kb[:0], v)
			if !b.HasCurrentKey(kb) {
				b.SetCurrentKey(kb)
			}
			inner(v)
		}, nil
	}
	ks.j.addNode(n, ks.n, opts)
	if key.appendKey == nil {
		ks.j.errs = append(ks.j.errs, fmt.Errorf("engine: keyed operator %q: the KeyBy has no key selector (use Int64Key, Uint64Key, StringKey or BytesKey)", name))
	}
	return Stream[U]{j: ks.j, n: n}
}

// setNumberKey is the head of a keyed operator whose key is a number
// (Int64Key, Uint64Key): it sets the record's key, which the exchange
// hashed (task.recHash), and runs the operator.
func setNumberKey[T, U any, N int64 | uint64](f func(v *T) N, b *keyed.Backend, t *task, kf keyedFunc[T, U]) func(*T) {
	if fn := kf.fn; fn != nil {
		ctx, next := kf.ctx, kf.next
		return func(v *T) {
			b.SetCurrentKeyUint64(uint64(f(v)), t.recHash)
			fn(ctx, v, next)
		}
	}
	inner := kf.inner
	return func(v *T) {
		b.SetCurrentKeyUint64(uint64(f(v)), t.recHash)
		inner(v)
	}
}

// Runtime is what an operator sees of the task it runs in.
type Runtime struct {
	Job      string
	Operator string
	// UID identifies the operator's state (WithUID; default Operator).
	UID            string
	TaskIndex      int
	Parallelism    int
	MaxParallelism int
	batchSize      int
	backend        *keyed.Backend
	task           *task
	// recordsIn and recordsOut are the task's plain counters that an
	// operator built by the engine with countsIn or countsOut increments
	// per record (metrics.go); never nil once the task opens it.
	recordsIn, recordsOut *int64
	// wm is the operator's current watermark; onWatermark its hook
	// (OnWatermark), called by the task when wm advances (watermark.go).
	wm          int64
	onWatermark func(wm int64)
}

// OnWatermark registers f, called on the task's goroutine each time the
// operator's watermark advances, before the watermark passes on to the
// operators after it: f may emit records (through the next function the
// operator was built with), which those operators receive before the
// watermark. Call it while building the operator.
func (rt *Runtime) OnWatermark(f func(wm int64)) { rt.onWatermark = f }

// CurrentWatermark returns the operator's watermark: MinWatermark before
// the first, MaxWatermark after the end of a bounded input.
func (rt *Runtime) CurrentWatermark() int64 { return rt.wm }

// Timestamp returns the event-time timestamp of the record being
// processed (ms since the epoch; 0 without event time), or, in an
// OnWatermark hook or a timer, of the record last emitted.
func (rt *Runtime) Timestamp() int64 { return rt.task.recTS }

// SetTimestamp sets the timestamp of the records the operator emits from
// now on in this call (a window's result carries its window's last
// millisecond); records emitted while processing a record otherwise carry
// that record's timestamp.
func (rt *Runtime) SetTimestamp(ts int64) { rt.task.recTS = ts }

// Backend returns the task's keyed state backend (nil for operators that
// are not keyed). State names are scoped by the engine: register them with
// rt.StateName("count").
func (rt *Runtime) Backend() *keyed.Backend { return rt.backend }

// StateName returns a state name unique to this operator: its uid, "/",
// name. Checkpoints restore keyed state by this prefix, so that the state
// follows the operator whatever chain it runs in.
func (rt *Runtime) StateName(name string) string { return rt.UID + "/" + name }

// KeyGroups returns the key groups the task owns.
func (rt *Runtime) KeyGroups() keyed.KeyGroupRange {
	return keyed.RangeForTask(rt.MaxParallelism, rt.Parallelism, rt.TaskIndex)
}

func (rt *Runtime) String() string {
	return fmt.Sprintf("%s[%d/%d]", rt.Operator, rt.TaskIndex, rt.Parallelism)
}

// Parallelism returns the parallelism of the operator that produces s.
func (s Stream[T]) Parallelism() int { return s.n.parallelism }

// Name returns the name of the operator that produces s.
func (s Stream[T]) Name() string { return s.n.name }
