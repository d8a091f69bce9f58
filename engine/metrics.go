package engine

import (
	"sync/atomic"
	"time"
)

// Runtime metrics: records in and out per operator and task, time blocked
// on full output rings, idle time, and the occupancy of every edge's rings.
//
// Counting costs the record path nothing measurable (bench/NOTES.md, issue
// 11) because no operator is counted by a call of its own and nothing is
// atomic per record:
//
//   - A task's counters are plain int64s that only its worker writes
//     (task.counts), padded away from other tasks' memory. The task
//     publishes them to atomics (task.pub) once per step that made
//     progress, before it waits for room in a full output, and when it
//     exits; Job.Metrics reads only the atomics.
//   - A chain of n operators has n+1 boundaries: its input, the hand-offs
//     between its operators, and its output. Operator k's records in are
//     boundary k's count, its records out boundary k+1's. Most boundaries
//     are counted where records are already handled a batch at a time:
//     a source task's input by the records each Read returned, an
//     operator task's input by the ring reader per batch, the tail's
//     output by the ring writer per published batch.
//   - A hand-off inside a chain is counted by the first of: the operator
//     before it emits exactly one record per record (Map, MapInPlace, a
//     source), so the count is the previous boundary's; the operator after
//     it counts its input in the closure the engine already builds for it
//     (sinks, keyed operators chained after AsKeyed); the operator before
//     it counts its output in its own closure (Filter, FlatMap); else, for
//     two user Transforms chained back to back, a counting closure between
//     them, one call per record (countPlan).
//
// Per task: BackpressuredNs adds up the time the task waited for room in a
// full output ring (the clock is read only when it has to wait); IdleNs the
// time its worker waited with nothing to do while the task was running (a
// worker runs task i of every vertex, worker.go, so a task's idle time is
// its worker's).

// Metrics is a point-in-time reading of a running job's counters
// (Job.Metrics). Counters are cumulative since the run started; readings
// taken while the job runs are each task's values as of its last step, so
// they may lag the records in flight by a batch, and a downstream count may
// briefly exceed what the upstream's last published count says. After Run
// returns they are exact and final.
type Metrics struct {
	At time.Time `json:"at"`
	// Tasks lists every task, vertex by vertex in graph order, by index
	// within a vertex.
	Tasks []TaskMetrics `json:"tasks"`
	// Edges lists every edge between vertices, in graph order.
	Edges []EdgeMetrics `json:"edges"`
}

// TaskMetrics is one task's counters.
type TaskMetrics struct {
	// Vertex is the chain's name, its operators' names joined by " -> "
	// (as TaskStats.Vertex).
	Vertex      string `json:"vertex"`
	Index       int    `json:"index"`
	Parallelism int    `json:"parallelism"`
	// Operators are the chain's operators, in order.
	Operators []OperatorMetrics `json:"operators"`
	// BackpressuredNs is the total time the task waited because an output
	// ring was full (after running the consumers that share its worker).
	BackpressuredNs int64 `json:"backpressured_ns"`
	// IdleNs is the total time the task's worker waited with nothing to
	// do (no input, no room, no control message) while the task had not
	// finished.
	IdleNs int64 `json:"idle_ns"`
	// Watermark is the task's current event-time watermark in ms since
	// the epoch (Flink's currentInputWatermark); nil before the first one
	// (MinWatermark).
	Watermark *int64 `json:"watermark_ms"`
}

// OperatorMetrics is one operator's counters in one task.
type OperatorMetrics struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
	// RecordsIn counts the records the operator received: for a source,
	// the records it read.
	RecordsIn int64 `json:"records_in"`
	// RecordsOut counts the records the operator emitted (each once, also
	// when a broadcast or several consumers receive it): for a sink, the
	// records it wrote.
	RecordsOut int64 `json:"records_out"`
}

// EdgeMetrics describes the rings of one edge between vertices.
type EdgeMetrics struct {
	From string `json:"from"` // upstream vertex
	To   string `json:"to"`   // downstream vertex
	// Partitioning is "forward", "keyed", "rebalance" or "broadcast".
	Partitioning string `json:"partitioning"`
	// Rings is the number of rings: one per pair of connected tasks.
	Rings int `json:"rings"`
	// CapacitySlots is the sum of the rings' capacities.
	CapacitySlots int64 `json:"capacity_slots"`
	// OccupiedSlots is the number of elements queued in the rings when
	// read (approximate while the job runs: each ring is read on its own).
	OccupiedSlots int64 `json:"occupied_slots"`
}

// Metrics returns the job's counters. It is safe to call from any
// goroutine at any time: before Run has built the tasks it returns the
// zero Metrics, after Run has returned the final values.
func (j *Job) Metrics() Metrics {
	rt := j.runtime()
	if rt == nil {
		return Metrics{}
	}
	v := rt.metrics.Load()
	if v == nil {
		return Metrics{}
	}
	// At and the waits in progress are read from one clock reading.
	now := monoNs()
	m := Metrics{At: metricsEpoch.Add(time.Duration(now)), Tasks: make([]TaskMetrics, len(v.tasks)), Edges: make([]EdgeMetrics, len(v.edges))}
	for i, t := range v.tasks {
		tm := TaskMetrics{
			Vertex: t.v.name, Index: t.index, Parallelism: t.v.parallelism,
			Operators:       make([]OperatorMetrics, len(t.v.nodes)),
			BackpressuredNs: t.backpressure.read(now),
		}
		// The worker's idle wait in progress counts for its live tasks.
		idle := t.idle.total.Load() // before idleSince: see worker.run
		var since int64
		if !t.finished.Load() {
			since = t.w.idleSince.Load()
		}
		tm.IdleNs = t.idle.show(idle, since, now)
		if wm := t.pubWM.Load(); wm != MinWatermark {
			tm.Watermark = &wm
		}
		for k, n := range t.v.nodes {
			tm.Operators[k] = OperatorMetrics{
				Name: n.name, UID: n.uid,
				RecordsIn:  t.pub[t.plan.bound[k]].Load(),
				RecordsOut: t.pub[t.plan.bound[k+1]].Load(),
			}
		}
		m.Tasks[i] = tm
	}
	for i, e := range v.edges {
		em := EdgeMetrics{From: e.from, To: e.to, Partitioning: e.part, Rings: len(e.rings)}
		for _, r := range e.rings {
			em.CapacitySlots += int64(r.Cap())
			em.OccupiedSlots += int64(r.Len())
		}
		m.Edges[i] = em
	}
	return m
}

// metricsEpoch is the origin of monoNs.
var metricsEpoch = time.Now()

// monoNs is a monotonic clock reading in ns, always > 0.
func monoNs() int64 { return max(int64(time.Since(metricsEpoch)), 1) }

// waitTime is a cumulative waiting time that readers see grow also while
// a wait is in progress. Only one goroutine (the task's or its worker's)
// calls begin and end; any goroutine may call read.
type waitTime struct {
	total atomic.Int64 // completed waits, ns
	since atomic.Int64 // monoNs when the wait in progress began; 0: none
	// shown is the largest value read returned: readings never go back,
	// also when read runs between end's two stores.
	shown atomic.Int64
}

func (w *waitTime) begin() int64 {
	now := monoNs()
	w.since.Store(now)
	return now
}

// end closes the wait that began at start: the wait in progress is
// cleared before the total grows, so a reader in between undercounts
// (and shows its last reading) rather than counting the wait twice.
func (w *waitTime) end(start int64) {
	w.since.Store(0)
	w.total.Add(monoNs() - start)
}

// add adds a completed wait of d ns (a worker's idle wait, added to each
// of its tasks).
func (w *waitTime) add(d int64) { w.total.Add(d) }

// read returns the total, with the wait in progress up to now, never less
// than an earlier reading.
func (w *waitTime) read(now int64) int64 {
	total := w.total.Load() // before since: see end
	return w.show(total, w.since.Load(), now)
}

// show returns total plus the wait in progress since since (0: none) up
// to now, never less than an earlier reading. total must have been loaded
// before since.
func (w *waitTime) show(total, since, now int64) int64 {
	v := total
	if since != 0 && now > since {
		v += now - since
	}
	for {
		old := w.shown.Load()
		if v <= old {
			return old
		}
		if w.shown.CompareAndSwap(old, v) {
			return v
		}
	}
}

// metricsView is what Job.Metrics reads: set once by buildTasks, before
// any task starts, and never changed.
type metricsView struct {
	tasks []*task
	edges []edgeView
}

type edgeView struct {
	from, to, part string
	rings          []ringGauge
}

// ringGauge is what metrics read of a ring (*ringbuf.Ring[element[T]]):
// both are safe from any goroutine.
type ringGauge interface {
	Len() int
	Cap() int
}

// publishMetricsView makes the job's tasks and edges readable by
// Job.Metrics.
func (rt *jobRuntime) publishMetricsView() {
	v := &metricsView{tasks: rt.tasks}
	for _, vx := range rt.vertices {
		if vx.input == nil {
			continue
		}
		v.edges = append(v.edges, rt.newEdgeView(vx, vx.input, vx.head().part, rt.inputRings))
		if vx.input2 != nil {
			v.edges = append(v.edges, rt.newEdgeView(vx, vx.input2, vx.head().part2, rt.inputRings2))
		}
	}
	rt.metrics.Store(v)
}

// edgeView describes the edge from up into vx, whose rings are in rings.
func (rt *jobRuntime) newEdgeView(vx, up *vertex, part partitioning, rings map[*task][]any) edgeView {
	e := edgeView{from: up.name, to: vx.name, part: part.String()}
	for _, t := range vx.tasks {
		for _, r := range rings[t] {
			e.rings = append(e.rings, r.(ringGauge))
		}
	}
	return e
}

// How a boundary between two chained operators is counted (countPlan).
const (
	countAlias   uint8 = iota + 1 // the operator before emits one record per record: the previous boundary's count
	countInline                   // the operator after counts its input (Runtime.recordsIn)
	countOutline                  // the operator before counts its output (Runtime.recordsOut)
	countWrap                     // a counting closure in front of the operator after
	countEdge                     // the task's input (source reads, ring reader) or output (ring writer, discard)
)

// countPlan says where each boundary of a task's chain is counted. It
// depends only on the vertex, and is fixed before the task starts.
type countPlan struct {
	// bound[b] is the counter slot of boundary b, 0 <= b <= len(nodes):
	// operator k reads bound[k] and bound[k+1].
	bound []int
	// how[b] is how boundary b is counted.
	how []uint8
	// scratch is a slot that nothing reads: operators that count
	// although their boundary is counted elsewhere count into it.
	scratch int
}

// metricsPad separates a task's counters from other heap objects that
// another core may write (two cache lines each side, as ringbuf pads).
const metricsPad = 128 / 8

// initCounts plans the task's counters and allocates them. Called by
// buildTasks after the task's writers exist, before the task starts.
func (t *task) initCounts() {
	nodes := t.v.nodes
	n := len(nodes)
	p := countPlan{bound: make([]int, n+1), how: make([]uint8, n+1)}
	slots := 0
	newSlot := func() int { slots++; return slots - 1 }
	p.bound[0], p.how[0] = newSlot(), countEdge
	for b := 1; b < n; b++ {
		before, after := nodes[b-1], nodes[b]
		switch {
		case before.onePerRecord():
			p.bound[b], p.how[b] = p.bound[b-1], countAlias
		case after.countsIn:
			p.bound[b], p.how[b] = newSlot(), countInline
		case before.countsOut:
			p.bound[b], p.how[b] = newSlot(), countOutline
		default:
			p.bound[b], p.how[b] = newSlot(), countWrap
		}
	}
	tail := nodes[n-1]
	switch {
	case tail.kind == kindSinkNode || (tail.onePerRecord() && len(t.outputs) == 0):
		p.bound[n], p.how[n] = p.bound[n-1], countAlias
	case len(t.outputs) == 0 && tail.countsOut:
		p.bound[n], p.how[n] = newSlot(), countOutline
	default:
		p.bound[n], p.how[n] = newSlot(), countEdge
	}
	p.scratch = newSlot()
	t.plan = p
	t.counts = make([]int64, slots+2*metricsPad)[metricsPad : metricsPad+slots]
	t.pub = make([]atomic.Int64, p.scratch) // the scratch slot is the last
	for i, o := range t.outputs {
		c := &t.counts[p.scratch]
		if i == 0 {
			// Every output receives every record: one counts them.
			c = &t.counts[p.bound[n]]
		}
		o.countInto(c, &t.counts[p.scratch])
	}
}

// onePerRecord reports whether the node emits exactly one record per
// record it receives: a source (records read = records emitted), Map,
// MapInPlace.
func (n *node) onePerRecord() bool { return n.kind == kindSourceNode || n.oneToOne }

// counter returns the counter of boundary b.
func (t *task) counter(b int) *int64 { return &t.counts[t.plan.bound[b]] }

// runtimeCounters sets the counters that node k's closures count into
// (Runtime.recordsIn and recordsOut): its boundaries' when the plan counts
// them there, the scratch slot otherwise.
func (t *task) runtimeCounters(rt *Runtime, k int) {
	p := &t.plan
	rt.recordsIn, rt.recordsOut = &t.counts[p.scratch], &t.counts[p.scratch]
	if p.how[k] == countInline {
		rt.recordsIn = t.counter(k)
	}
	if p.how[k+1] == countOutline {
		rt.recordsOut = t.counter(k + 1)
	}
}

// countedPush returns node k's push function with its input counted when
// the plan says the engine counts it with a closure (countWrap).
func (t *task) countedPush(k int, push any) any {
	if t.plan.how[k] != countWrap {
		return push
	}
	return t.v.nodes[k-1].out.countWrap(push, t.counter(k))
}

// countedDiscard returns what a tail with no consumer pushes into: a
// counting discard when the plan counts its output there.
func (t *task) countedDiscard(next any) any {
	n := len(t.v.nodes)
	if len(t.outputs) == 0 && t.plan.how[n] == countEdge && t.v.tail().kind != kindSinkNode {
		return t.v.tail().out.countDiscard(t.counter(n))
	}
	return next
}

// publishCounts makes the task's counters visible to Job.Metrics: one
// atomic store per counter that changed.
func (t *task) publishCounts() {
	pub := t.pub
	for i, c := range t.counts[:len(pub)] {
		if pub[i].Load() != c {
			pub[i].Store(c)
		}
	}
}
