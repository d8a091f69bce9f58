package engine

import "fmt"

// Two-input operators (Flink's connect(…).process(KeyedCoProcessFunction)):
// a keyed operator with two input streams of different types, keyed by the
// same key on both sides, so that records of one key from either side meet
// in the same task and its keyed state. A two-input operator is always the
// head of its task: its inputs are channels 0 … n1−1 (the first input's
// upstream tasks) and n1 … n1+n2−1 (the second's) of one aligner, so a
// checkpoint's barrier aligns across both inputs, and its watermark is
// the minimum over both.

// CoProcessor is what a two-input keyed operator does: Process1 with each
// record of the first input, Process2 with each of the second, each with
// the record's key as the current key; OnTimer (optional) when one of the
// operator's timers fires. As with Process, records are passed by pointer
// and must not be kept after the call.
type CoProcessor[A, B, U any] struct {
	Process1 func(ctx *KeyedContext, v *A, emit func(*U))
	Process2 func(ctx *KeyedContext, v *B, emit func(*U))
	OnTimer  func(ctx *KeyedContext, ts int64, domain TimeDomain, emit func(*U))
}

// CoProcess adds a two-input keyed operator over left and right, which must
// be keyed by keys of the same encoding (the same kind of KeySelector over
// the same key values: both Int64Key, say). open is called once per task,
// on the task's goroutine, to register state and timers.
func CoProcess[A, B, U any](left KeyedStream[A], right KeyedStream[B], name string, open func(rt *Runtime) (CoProcessor[A, B, U], error), opts ...OpOption) Stream[U] {
	j := left.j
	n := &node{name: name, kind: kindOperatorNode, keyed: true, out: typeOps[U]{}}
	n.part, n.route = inputPart(left)
	n.part2, n.route2 = inputPart(right)
	n.build = func(rt *Runtime, next any) (any, error) {
		cp, err := open(rt)
		if err != nil {
			return nil, err
		}
		if cp.Process1 == nil || cp.Process2 == nil {
			return nil, fmt.Errorf("engine: two-input operator %q: Process1 and Process2 are required", name)
		}
		emit := next.(func(*U))
		ctx := &KeyedContext{rt: rt}
		if cp.OnTimer != nil {
			if err := openTimers(ctx, cp.OnTimer, emit); err != nil {
				return nil, err
			}
		}
		p1, p2 := cp.Process1, cp.Process2
		return twoPush{
			a: keyedHead(left, rt, func(v *A) { p1(ctx, v, emit) }),
			b: keyedHead(right, rt, func(v *B) { p2(ctx, v, emit) }),
		}, nil
	}
	j.addNode(n, left.n, opts)
	if right.j != j {
		j.errs = append(j.errs, fmt.Errorf("engine: two-input operator %q: its inputs belong to different jobs", name))
		return Stream[U]{j: j, n: n}
	}
	n.input2 = right.n
	right.n.consumers = append(right.n.consumers, n)
	if right.n.kind == kindSinkNode {
		j.errs = append(j.errs, fmt.Errorf("engine: operator %q reads from sink %q", name, right.n.name))
	}
	for _, in := range []struct {
		ks   *node
		part partitioning
	}{{left.n, n.part}, {right.n, n.part2}} {
		if in.part == partForward && n.parallelism != in.ks.parallelism {
			j.errs = append(j.errs, fmt.Errorf("engine: operator %q: a reinterpreted keyed input needs equal parallelism, have %d after %d", name, n.parallelism, in.ks.parallelism))
		}
	}
	if left.key.appendKey == nil || right.key.appendKey == nil {
		j.errs = append(j.errs, fmt.Errorf("engine: two-input operator %q: both inputs need a key selector (KeyBy)", name))
	}
	return Stream[U]{j: j, n: n}
}

// inputPart is the partitioning of a keyed input: by key, or forward when
// the stream is already partitioned (AsKeyed).
func inputPart[T any](ks KeyedStream[T]) (partitioning, func(maxPar, parallelism int) any) {
	if ks.reinterpret {
		return partForward, nil
	}
	return partKeyed, keyRoute(ks.key)
}

// keyedHead returns the push function of one input of a keyed operator
// that is the head of its task: it makes the record's key current, then
// runs inner. After a keyed exchange the ring slot carries the key's hash
// (task.recHash).
func keyedHead[T any](ks KeyedStream[T], rt *Runtime, inner func(*T)) func(*T) {
	b, t := rt.backend, rt.task
	key := ks.key
	if ks.reinterpret {
		var kb []byte
		return func(v *T) {
			kb = key.appendKey(kb[:0], v)
			b.SetCurrentKey(kb)
			inner(v)
		}
	}
	switch {
	case key.i64 != nil:
		f := key.i64
		return func(v *T) {
			b.SetCurrentKeyUint64(uint64(f(v)), t.recHash)
			inner(v)
		}
	case key.u64 != nil:
		f := key.u64
		return func(v *T) {
			b.SetCurrentKeyUint64(f(v), t.recHash)
			inner(v)
		}
	}
	var kb []byte
	return func(v *T) {
		kb = key.appendKey(kb[:0], v)
		b.SetCurrentKeyHashed(kb, t.recHash)
		inner(v)
	}
}

// twoPush is what a two-input operator's build returns: the push
// functions of its first and second input.
type twoPush struct{ a, b any }

// newReader builds the task's input side over its rings: one reader, or,
// for a two-input head, one per input behind twoReader.
func (t *task) newReader(next any) inputReader {
	head := t.v.head()
	rings := t.job.inputRings[t]
	if head.input2 == nil {
		return head.input.out.newReader(t, rings, next)
	}
	tp := next.(twoPush)
	r1 := head.input.out.newReader(t, rings, tp.a)
	r2 := head.input2.out.newReader(t, t.job.inputRings2[t], tp.b)
	r2.setBase(len(rings))
	return twoReader{r1, r2}
}

// twoReader reads both inputs of a two-input task, a batch from each
// readable ring of each per poll.
type twoReader struct{ a, b inputReader }

func (r twoReader) poll() bool {
	pa := r.a.poll()
	pb := r.b.poll()
	return pa || pb
}

func (r twoReader) readable() bool { return r.a.readable() || r.b.readable() }
func (r twoReader) numInputs() int { return r.a.numInputs() + r.b.numInputs() }
func (r twoReader) setBase(int)    { panic("engine: twoReader.setBase") }
