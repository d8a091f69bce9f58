package engine

import (
	"runtime"

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
	j := rt.job
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
	// connect task i to task i only.
	for _, v := range rt.vertices {
		if v.input == nil {
			continue
		}
		head, up := v.head(), v.input
		upTail := up.tail()
		var route func(maxPar, parallelism int) any = head.route
		// fanout: how many rings share a producer's records (a broadcast
		// writes every record to every ring, as a forward edge does to
		// its one).
		fanout := len(v.tasks)
		if head.part == partForward || head.part == partBroadcast {
			fanout = 1
		}
		for _, ut := range up.tasks {
			var rings []any
			for di, dt := range v.tasks {
				if head.part == partForward && di != ut.index {
					continue
				}
				r := upTail.out.newRing(rt.opts.RingCapacity, rt.opts.BatchSize, fanout, ut.waiter, dt.waiter)
				rings = append(rings, r)
				if dt.w == ut.w {
					ut.consumers = append(ut.consumers, dt)
				}
				rt.inputRings[dt] = append(rt.inputRings[dt], r)
			}
			var rf any
			if route != nil {
				rf = route(j.opts.MaxParallelism, v.parallelism)
			}
			ut.outputs = append(ut.outputs, upTail.out.newWriter(ut, head.part, rings, rf))
		}
	}
	for _, t := range rt.tasks {
		t.initCounts()
	}
	rt.publishMetricsView()
}
