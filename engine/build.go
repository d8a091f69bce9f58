package engine

import (
	"runtime"
	"slices"

	"github.com/streamd/streamd/engine/coord"
)

// maxControlMessages bounds, under invariants, the control messages queued
// for one task. The driver sends a task per checkpoint at most a trigger
// (sources) and a complete or an abort, plus one finish and one stop. A
// task drains its mailbox between batches; one that waits for a long time
// (a full output) gets at most MaxConcurrent completes meanwhile (the
// others need its acknowledgement) and one abort per checkpoint that times
// out, and those are bounded by TolerableFailures before the job fails. The
// bound is generous: exceeding it is a bug.
const maxControlMessages = 1 << 16

// buildTasks creates the workers, the tasks, their rings and writers.
func (rt *jobRuntime) buildTasks() {
	nw := 0
	for _, v := range rt.vertices {
		nw = max(nw, v.parallelism)
	}
	for i := range nw {
		rt.workers = append(rt.workers, newWorker(rt, i))
	}
	cpus := planPinning(rt.opts.Pinning, nw, usableCPUs(rt.opts.cpus), runtime.GOMAXPROCS(0))
	for i, w := range rt.workers {
		if cpus != nil {
			w.cpu = cpus[i]
		}
	}
	id := 0
	for _, v := range rt.vertices {
		for i := 0; i < v.parallelism; i++ {
			w := rt.workers[i]
			t := &task{job: rt, v: v, index: i, id: coord.TaskID(id), w: w, waiter: w.waiter,
				ctrl: newMailbox[ctrlMsg](maxControlMessages, false)}
			if rt.checkpointing && (v.keyed || v.tail().kind == kindSinkNode) {
				t.lane = &lane{t: t, slots: make(chan struct{}, maxLaneJobs)}
			}
			v.tasks = append(v.tasks, t)
			rt.tasks = append(rt.tasks, t)
			w.tasks = append(w.tasks, t)
			id++
		}
	}
	// One ring per (upstream task, downstream task) pair; forward edges
	// connect task i to task i only. A two-input vertex has a second
	// input, whose rings come after the first's (twoinput.go).
	for _, v := range rt.vertices {
		if v.input == nil {
			continue
		}
		head := v.head()
		rt.connect(v, v.input, head.part, head.route, rt.inputRings)
		if v.input2 != nil {
			rt.connect(v, v.input2, head.part2, head.route2, rt.inputRings2)
		}
	}
	// A task waiting for room runs, nested, the tasks of its worker that
	// lie further down the graph (a higher level): its own consumers, but
	// also the others, because another worker's task that would make room
	// may itself wait for one of them (source 0 → join 1 on worker 1 →
	// sink 0 on worker 0, while worker 0 waits in source 0). None of them
	// is upstream of a task on the stack, so none waits for one.
	for _, w := range rt.workers {
		for _, t := range w.tasks {
			for _, c := range w.tasks {
				if c.v.level > t.v.level {
					t.consumers = append(t.consumers, c)
				}
			}
			slices.SortStableFunc(t.consumers, func(a, b *task) int { return a.v.level - b.v.level })
		}
	}
	for _, t := range rt.tasks {
		t.initCounts()
	}
	rt.publishMetricsView()
}

// connect builds the rings of the edge from vertex up into v, partitioned
// by part (route for keyed edges), and records them as inputs of v's tasks
// in into.
func (rt *jobRuntime) connect(v, up *vertex, part partitioning, route func(maxPar, parallelism int) any, into map[*task][]any) {
	upTail := up.tail()
	// fanout: how many rings share a producer's records (a broadcast
	// writes every record to every ring, as a forward edge does to its
	// one).
	fanout := len(v.tasks)
	if part == partForward || part == partBroadcast {
		fanout = 1
	}
	for _, ut := range up.tasks {
		var rings []any
		for di, dt := range v.tasks {
			if part == partForward && di != ut.index {
				continue
			}
			r := upTail.out.newRing(rt.opts.RingCapacity, rt.opts.BatchSize, fanout, ut.waiter, dt.waiter)
			rings = append(rings, r)
			into[dt] = append(into[dt], r)
		}
		var rf any
		if route != nil {
			rf = route(rt.job.opts.MaxParallelism, v.parallelism)
		}
		ut.outputs = append(ut.outputs, upTail.out.newWriter(ut, part, rings, rf))
	}
}
