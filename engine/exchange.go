package engine

import (
	"unsafe"

	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/ringbuf"
)

// elemKind tags what travels in a ring slot. Records, barriers, cancellation
// markers, watermarks and end-of-input share one in-order stream.
type elemKind uint8

const (
	elemRecord elemKind = iota
	elemBarrier
	elemCancel
	elemWatermark
	elemEnd
	// elemIdle: the producer has no input that holds watermarks back
	// (Flink's WatermarkStatus.IDLE); its next watermark makes it active
	// again (watermark.go).
	elemIdle
)

// element is one ring slot.
type element[T any] struct {
	kind elemKind
	// id is the checkpoint id of a barrier or cancellation marker, or the
	// timestamp of a watermark.
	id uint64
	// ts is a record's event-time timestamp, ms since the epoch (the
	// task's recTS when it was written; 0 without event time).
	ts  int64
	rec T
}

// outType builds the typed runtime pieces for records of one type.
type outType interface {
	// newRing creates a ring whose producer and consumer tasks park on the
	// given waiters. Waiters are bound here, before any task starts: the
	// ring reads them on every Publish and Release.
	// capacity 0 sizes the ring by its slot size and fanout, the
	// producer's number of rings on the edge (autoRingCapacity).
	newRing(capacity, batch, fanout int, producer, consumer *ringbuf.Waiter) any
	newWriter(t *task, part partitioning, rings []any, route any) outWriter
	newReader(t *task, rings []any, push any) inputReader
	fanout(pushes []any) any
	// countWrap returns push (a func(*T)) behind a closure that counts
	// each record into *c (metrics.go: countWrap).
	countWrap(push any, c *int64) any
	// countDiscard returns a func(*T) that only counts records into *c.
	countDiscard(c *int64) any
}

type typeOps[T any] struct{}

func (typeOps[T]) newRing(capacity, batch, fanout int, producer, consumer *ringbuf.Waiter) any {
	if capacity == 0 {
		capacity = autoRingCapacity(unsafe.Sizeof(element[T]{}), batch, fanout)
	}
	r := ringbuf.New[element[T]](capacity)
	r.SetProducerWaiter(producer)
	r.SetConsumerWaiter(consumer)
	return r
}

func (typeOps[T]) newWriter(t *task, part partitioning, rings []any, route any) outWriter {
	ws := make([]*ringWriter[T], len(rings))
	words := wordCount[T]()
	for i, r := range rings {
		ring := r.(*ringbuf.Ring[element[T]])
		w := &ringWriter[T]{t: t, ring: ring, words: words}
		w.hasRoom = func() bool { return ring.Len() < ring.Cap() || t.cancelled() || t.consumersReady() }
		ws[i] = w
	}
	pw := &partWriter[T]{ws: ws, part: part}
	// Closures rather than method values: a method value is a wrapper
	// around the method, one more call per record.
	switch part {
	case partForward:
		w := ws[0]
		pw.push = func(v *T) { w.put(v, 0) }
	case partRebalance:
		pw.push = pw.rebalance
	case partBroadcast:
		pw.push = pw.broadcast
	case partKeyed:
		pw.push = route.(func([]*ringWriter[T]) func(*T))(ws)
	default:
		panic("engine: unknown partitioning " + part.String())
	}
	return pw
}

func (typeOps[T]) newReader(t *task, rings []any, push any) inputReader {
	r := &ringReader[T]{t: t, push: push.(func(*T)), batch: t.job.opts.BatchSize, in: t.counter(0)}
	for _, x := range rings {
		r.rings = append(r.rings, x.(*ringbuf.Ring[element[T]]))
	}
	return r
}

func (typeOps[T]) fanout(pushes []any) any {
	fs := make([]func(*T), len(pushes))
	for i, p := range pushes {
		fs[i] = p.(func(*T))
	}
	if len(fs) == 1 {
		return fs[0]
	}
	return func(v *T) {
		for _, f := range fs {
			f(v)
		}
	}
}

func (typeOps[T]) countWrap(push any, c *int64) any {
	f := push.(func(*T))
	return func(v *T) {
		*c++
		f(v)
	}
}

func (typeOps[T]) countDiscard(c *int64) any {
	return func(*T) { *c++ }
}

// keyRoute returns the router of a keyed exchange: key, hash, key group,
// owning task, and the record into that task's ring, in one function per
// record that allocates nothing. The boxed value is a
// func([]*ringWriter[T]) func(*T), called once per upstream task with its
// writers (one per downstream task).
//
// The router passes the key's hash along in the ring slot's id field
// (unused by records) so the keyed operator downstream does not hash the
// key again.
func keyRoute[T any](key KeySelector[T]) func(maxPar, parallelism int) any {
	return func(maxPar, parallelism int) any {
		// owner[kg] is the task that owns key group kg: a table lookup
		// instead of a division per record.
		owner := make([]int32, maxPar)
		for kg := range owner {
			owner[kg] = int32(keyed.TaskForKeyGroup(maxPar, parallelism, kg))
		}
		if f := key.i64; f != nil {
			return routeNumber(f, owner)
		}
		if f := key.u64; f != nil {
			return routeNumber(f, owner)
		}
		appendKey := key.appendKey
		return func(ws []*ringWriter[T]) func(*T) {
			var buf []byte
			return func(v *T) {
				buf = appendKey(buf[:0], v)
				h := keyed.HashKey(buf)
				ws[owner[keyed.KeyGroupOf(h, maxPar)]].put(v, h)
			}
		}
	}
}

// routeNumber is keyRoute's router for a key that is a number (Int64Key,
// Uint64Key); owner maps each key group to its task.
func routeNumber[T any, N int64 | uint64](f func(v *T) N, owner []int32) func([]*ringWriter[T]) func(*T) {
	maxPar := len(owner)
	return func(ws []*ringWriter[T]) func(*T) {
		return func(v *T) {
			h := keyed.HashUint64Key(uint64(f(v)))
			ws[owner[keyed.KeyGroupOf(h, maxPar)]].put(v, h)
		}
	}
}

// outWriter is the control side of a task's output to one downstream
// vertex. Records go through the typed push function instead.
type outWriter interface {
	pushFunc() any
	emit(kind elemKind, id uint64)
	flush()
	// countInto makes the writer add the records it publishes to *c,
	// counting each record once (a broadcast writes it to every ring);
	// what else it must count goes to *scratch.
	countInto(c, scratch *int64)
}

// partWriter writes one task's output to the rings of a downstream vertex.
type partWriter[T any] struct {
	ws   []*ringWriter[T]
	push func(*T)
	next int
	part partitioning
}

func (p *partWriter[T]) countInto(c, scratch *int64) {
	for i, w := range p.ws {
		w.records = c
		if i > 0 && p.part == partBroadcast {
			w.records = scratch
		}
	}
}

func (p *partWriter[T]) pushFunc() any { return p.push }

func (p *partWriter[T]) rebalance(v *T) {
	w := p.ws[p.next]
	p.next++
	if p.next == len(p.ws) {
		p.next = 0
	}
	w.push(v)
}

func (p *partWriter[T]) broadcast(v *T) {
	for _, w := range p.ws {
		w.push(v)
	}
}

func (p *partWriter[T]) emit(kind elemKind, id uint64) {
	for _, w := range p.ws {
		e := w.slot()
		w.control++
		e.kind = kind
		e.id = id
	}
}

func (p *partWriter[T]) flush() {
	for _, w := range p.ws {
		w.flush()
	}
}

// ringWriter fills a reservation of ring slots and publishes it as a batch.
type ringWriter[T any] struct {
	t       *task
	ring    *ringbuf.Ring[element[T]]
	buf     []element[T] // the current reservation
	n       int          // slots of buf filled
	hasRoom func() bool
	// words is T's size in words when T is copied word by word (copy.go),
	// 0 when it is copied by assignment.
	words int
	// records counts the records published (metrics.go); control, the
	// slots of buf that hold control elements rather than records.
	records *int64
	control int
}

func (w *ringWriter[T]) push(v *T) { w.put(v, 0) }

// put writes a record into the next slot; id is the key hash on keyed
// exchanges (the keyed operator downstream reads it instead of hashing
// again), 0 elsewhere.
func (w *ringWriter[T]) put(v *T, id uint64) {
	// slot, by hand: the compiler does not inline it in generic code, and
	// the call cost ~14 instructions per record (callgrind, typed pipeline).
	if w.n == len(w.buf) {
		w.reserve()
	}
	e := &w.buf[w.n]
	w.n++
	e.kind = elemRecord
	e.id = id
	e.ts = w.t.recTS
	if w.words > 0 {
		copyWords(unsafe.Pointer(&e.rec), unsafe.Pointer(v), w.words)
		return
	}
	e.rec = *v
}

// slot returns the next free slot, publishing and reserving as needed. When
// the ring is full it first publishes every other output of the task (so no
// downstream task waits for records we hold back), runs the consumers that
// share the task's worker (worker.help), then waits: this is backpressure.
func (w *ringWriter[T]) slot() *element[T] {
	if w.n == len(w.buf) {
		w.reserve()
	}
	e := &w.buf[w.n]
	w.n++
	return e
}

func (w *ringWriter[T]) reserve() {
	w.flush()
	batch := w.t.job.opts.BatchSize
	for {
		w.buf = w.ring.TryReserve(batch)
		if len(w.buf) > 0 {
			return
		}
		w.t.flushOutputs()
		w.t.checkCancelled()
		if w.t.w.help(w.t) {
			continue
		}
		// Backpressure: the clock is read only now, when the task waits.
		w.t.publishCounts()
		start := w.t.backpressure.begin()
		w.t.job.opts.Wait.Await(w.t.waiter, w.hasRoom)
		w.t.backpressure.end(start)
	}
}

func (w *ringWriter[T]) flush() {
	if w.n > 0 {
		w.ring.Publish(w.n)
		*w.records += int64(w.n - w.control)
	}
	w.buf = nil
	w.n = 0
	w.control = 0
}

// inputReader is a task's input side: the rings from every upstream task.
type inputReader interface {
	// poll reads at most one batch from each readable ring and processes
	// it. It reports whether it consumed anything.
	poll() bool
	// readable reports whether some unblocked, live ring has elements.
	readable() bool
	numInputs() int
	// setBase makes the reader's first ring the aligner's channel base
	// (the second input of a two-input task).
	setBase(base int)
}

type ringReader[T any] struct {
	t *task
	// base is the aligner's channel index of rings[0]: 0, or the number of
	// channels of the first input for the second input of a two-input
	// operator (twoinput.go).
	base  int
	rings []*ringbuf.Ring[element[T]]
	push  func(*T)
	batch int
	// in counts the records read (metrics.go).
	in *int64
}

func (r *ringReader[T]) numInputs() int { return len(r.rings) }

func (r *ringReader[T]) setBase(base int) { r.base = base }

func (r *ringReader[T]) poll() bool {
	progress := false
	al := r.t.aligner
	for i, ring := range r.rings {
		i += r.base
		if al.Blocked(i) || al.Ended(i) {
			continue
		}
		els := ring.Peek(r.batch)
		if len(els) == 0 {
			continue
		}
		progress = true
		n := 0
		t, push := r.t, r.push
		for j := range els {
			e := &els[j]
			n++
			if e.kind == elemRecord {
				t.recHash = e.id // the key hash, on keyed exchanges
				t.recTS = e.ts
				push(&e.rec)
				continue
			}
			if t.onElement(i, e.kind, e.id) {
				// The channel is blocked or ended: what follows in the batch
				// is read after it is unblocked.
				break
			}
		}
		// Records: the elements read less the control elements, which
		// onElement counts (a counter of this loop's own, live across
		// push, cost ~4 instructions per record).
		*r.in += int64(n - t.ctrlRead)
		t.ctrlRead = 0
		ring.Release(n)
	}
	return progress
}

func (r *ringReader[T]) readable() bool {
	al := r.t.aligner
	for i, ring := range r.rings {
		if i += r.base; !al.Blocked(i) && !al.Ended(i) && ring.Len() > 0 {
			return true
		}
	}
	return false
}
