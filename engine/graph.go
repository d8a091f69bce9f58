package engine

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

type nodeKind uint8

const (
	kindSourceNode nodeKind = iota + 1
	kindOperatorNode
	kindSinkNode
)

func (k nodeKind) String() string {
	switch k {
	case kindSourceNode:
		return "source"
	case kindOperatorNode:
		return "operator"
	case kindSinkNode:
		return "sink"
	}
	return "unknown"
}

// partitioning is how records travel from a node's input to the node.
type partitioning uint8

const (
	partForward   partitioning = iota + 1 // task i to task i (chained when possible)
	partRebalance                         // round robin over all downstream tasks
	partKeyed                             // by key group
	partBroadcast                         // every record to every downstream task
)

func (p partitioning) String() string {
	switch p {
	case partForward:
		return "forward"
	case partRebalance:
		return "rebalance"
	case partKeyed:
		return "keyed"
	case partBroadcast:
		return "broadcast"
	}
	return "unknown"
}

// node is one operator of the graph. Everything that depends on the record
// types is captured in closures and interfaces when the typed API creates
// the node, so the graph itself is untyped.
type node struct {
	id   int
	name string
	// uid identifies the operator's state in checkpoints (WithUID;
	// default: its name). State belongs to operators, not to chains, so
	// chaining and the parallelism of stateless operators may change
	// between runs.
	uid string
	// stateSig describes what the operator's state means (WithStateSignature):
	// a checkpoint restores its state only into an operator of the same id
	// and signature.
	stateSig    string
	kind        nodeKind
	parallelism int
	input       *node
	part        partitioning
	consumers   []*node
	// input2, part2 and route2 are the second input of a two-input
	// operator (twoinput.go), nil for every other node.
	input2 *node
	part2  partitioning
	route2 func(maxPar, parallelism int) any
	// keyed says the operator uses keyed state: its task owns a key-group
	// range and a keyed.Backend.
	keyed bool
	// noChain forces a ring between this node and its input.
	noChain bool
	// How the node's records are counted (metrics.go, countPlan):
	// oneToOne, it emits exactly one record per record (Map, MapInPlace);
	// countsIn, its push function counts what it receives into
	// Runtime.recordsIn; countsOut, it counts what it emits into
	// Runtime.recordsOut.
	oneToOne, countsIn, countsOut bool
	// out provides the rings, readers and writers for the node's output
	// record type.
	out outType
	// route, for partKeyed edges into this node, returns (boxed) what
	// builds the push function of an upstream task's keyed output from
	// its ring writers (keyRoute).
	route func(maxPar, parallelism int) any
	// build returns the node's push function func(*In) given next
	// (func(*Out), or nil for sinks). Nil for sources.
	build func(rt *Runtime, next any) (any, error)
	// openSource returns the source runner of a source node.
	openSource func(rt *Runtime, next any, state []byte) (sourceRunner, error)
	// splits is the enumerator of a splittable source node (split.go),
	// nil for every other node.
	splits SplitEnumerator
	// watermarks and timestamp (a func(*T) int64) are a source's
	// watermark strategy (WithWatermarks), nil without event time.
	watermarks *wmSpec
	timestamp  any
	// sink is the sink of a sink node.
	sink sinkRecoverer
}

// Job is a dataflow under construction, then running.
type Job struct {
	name  string
	opts  Options
	nodes []*node
	names map[string]bool
	uids  map[string]bool
	errs  []error
	rt    *jobRuntime // set by Run, under jobsMu
	// stopRequested is set by Stop, under jobsMu, also before Run.
	stopRequested bool
	// stopSavepoint is the directory StopWithSavepoint asked for, under
	// jobsMu (savepoint.go).
	stopSavepoint string
}

var jobNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// NewJob starts a job graph. The name identifies the job's checkpoints in a
// store: it must match [a-z0-9][a-z0-9-]*.
func NewJob(name string, opts Options) *Job {
	opts.EnsureDefaults()
	j := &Job{name: name, opts: opts, names: make(map[string]bool), uids: make(map[string]bool)}
	if !jobNameRE.MatchString(name) {
		j.errs = append(j.errs, fmt.Errorf("engine: job name %q must match [a-z0-9][a-z0-9-]*", name))
	}
	if err := opts.Validate(); err != nil {
		j.errs = append(j.errs, err)
	}
	return j
}

// Name returns the job's name.
func (j *Job) Name() string { return j.name }

// OpOption adjusts one operator.
type OpOption func(*node)

// WithParallelism sets an operator's parallelism.
func WithParallelism(p int) OpOption { return func(n *node) { n.parallelism = p } }

// DisableChaining puts a ring between the operator and its input even when
// they could be chained.
func DisableChaining() OpOption { return func(n *node) { n.noChain = true } }

// WithUID sets the id that identifies the operator's state in checkpoints,
// as Flink's uid(): by default the operator's name. Give a stateful
// operator (a source, a keyed operator, a sink) a uid when its name may
// change; ids are unique in a job and contain no '/'.
func WithUID(uid string) OpOption { return func(n *node) { n.uid = uid } }

// WithStateSignature describes what a stateful operator's state means,
// e.g. its key and value types: a checkpoint restores the operator's state
// only into an operator of the same id and signature, and refuses with a
// message naming the operator otherwise. Default: "".
func WithStateSignature(sig string) OpOption { return func(n *node) { n.stateSig = sig } }

func (j *Job) addNode(n *node, input *node, opts []OpOption) {
	n.id = len(j.nodes)
	n.parallelism = j.opts.Parallelism
	n.input = input
	for _, o := range opts {
		o(n)
	}
	if n.name == "" || strings.ContainsAny(n.name, "\x00/") {
		j.errs = append(j.errs, fmt.Errorf("engine: operator name %q must be non-empty and contain no '/' or NUL", n.name))
	}
	nameTwice := j.names[n.name]
	if nameTwice {
		j.errs = append(j.errs, fmt.Errorf("engine: operator name %q is used twice", n.name))
	}
	j.names[n.name] = true
	if n.uid == "" {
		n.uid = n.name
	} else if strings.ContainsAny(n.uid, "\x00/") || strings.Contains(n.uid, " -> ") {
		j.errs = append(j.errs, fmt.Errorf("engine: operator %q: uid %q must contain no '/', NUL or \" -> \"", n.name, n.uid))
	}
	if j.uids[n.uid] && !(nameTwice && n.uid == n.name) {
		j.errs = append(j.errs, fmt.Errorf("engine: operator %q: uid %q is used twice", n.name, n.uid))
	}
	j.uids[n.uid] = true
	if n.parallelism < 1 || n.parallelism > MaxParallelism {
		j.errs = append(j.errs, fmt.Errorf("engine: operator %q: parallelism %d is outside [1, %d]", n.name, n.parallelism, MaxParallelism))
	}
	if n.keyed && n.parallelism > j.opts.MaxParallelism {
		j.errs = append(j.errs, fmt.Errorf("engine: keyed operator %q: parallelism %d exceeds max parallelism %d", n.name, n.parallelism, j.opts.MaxParallelism))
	}
	if input != nil {
		if input.kind == kindSinkNode {
			j.errs = append(j.errs, fmt.Errorf("engine: operator %q reads from sink %q", n.name, input.name))
		}
		input.consumers = append(input.consumers, n)
		if n.part == 0 {
			if n.parallelism == input.parallelism {
				n.part = partForward
			} else {
				n.part = partRebalance
			}
		}
		if n.part == partForward && n.parallelism != input.parallelism {
			j.errs = append(j.errs, fmt.Errorf("engine: operator %q: a forward (or reinterpreted keyed) edge needs equal parallelism, have %d after %d", n.name, n.parallelism, input.parallelism))
		}
	}
	j.nodes = append(j.nodes, n)
}

// chainsWithInput reports whether n runs in the same task as its input.
func (n *node) chainsWithInput() bool {
	in := n.input
	return in != nil && n.input2 == nil && n.part == partForward && !n.noChain &&
		n.parallelism == in.parallelism && len(in.consumers) == 1
}

// vertex is a chain of nodes that runs as one task per parallel instance.
type vertex struct {
	id          int
	name        string // the names of the chained operators, joined by " -> "
	nodes       []*node
	uids        []string // the uids of nodes, in order
	parallelism int
	keyed       bool
	// inputs: the upstream vertex, nil for a source vertex; input2 the
	// second input of a two-input vertex.
	input, input2 *vertex
	// level is the vertex's depth in the graph: 0 for a source, else one
	// more than its deepest input's. An upstream vertex has a lower level.
	level int
	// tasks are the vertex's parallel instances, set by Run.
	tasks []*task
}

func (v *vertex) head() *node { return v.nodes[0] }
func (v *vertex) tail() *node { return v.nodes[len(v.nodes)-1] }

// buildVertices splits the graph into chains.
func (j *Job) buildVertices() ([]*vertex, error) {
	var vs []*vertex
	of := make(map[*node]*vertex)
	for _, n := range j.nodes { // nodes are in topological order: inputs come first
		if n.chainsWithInput() {
			v := of[n.input]
			v.nodes = append(v.nodes, n)
			v.keyed = v.keyed || n.keyed
			of[n] = v
			continue
		}
		v := &vertex{id: len(vs), nodes: []*node{n}, parallelism: n.parallelism, keyed: n.keyed}
		if n.input != nil {
			v.input = of[n.input]
			v.level = v.input.level + 1
		}
		if n.input2 != nil {
			v.input2 = of[n.input2]
			v.level = max(v.level, v.input2.level+1)
		}
		vs = append(vs, v)
		of[n] = v
	}
	tasks := 0
	for _, v := range vs {
		names := make([]string, len(v.nodes))
		for i, n := range v.nodes {
			names[i] = n.name
			v.uids = append(v.uids, n.uid)
		}
		v.name = strings.Join(names, " -> ")
		tasks += v.parallelism
	}
	if tasks > MaxTasks {
		return nil, fmt.Errorf("engine: job %q has %d tasks, more than the limit %d", j.name, tasks, MaxTasks)
	}
	return vs, nil
}

// stateKind names what state a node has in checkpoints ("" for none):
// sources have positions, keyed operators keyed state, sinks pending
// transactions.
func (n *node) stateKind() string {
	switch {
	case n.kind == kindSourceNode:
		return "source"
	case n.kind == kindSinkNode:
		return "sink"
	case n.keyed:
		return "keyed"
	}
	return ""
}

// statefulOperators lists the job's stateful operators as checkpoint
// metadata records them.
func (j *Job) statefulOperators() []snapshot.OperatorMeta {
	var ops []snapshot.OperatorMeta
	for _, n := range j.nodes {
		if k := n.stateKind(); k != "" {
			ops = append(ops, snapshot.OperatorMeta{ID: n.uid, Kind: k, Signature: n.stateSig, Parallelism: n.parallelism})
		}
	}
	return ops
}

// fingerprint describes the state-relevant shape of the job.
func (j *Job) fingerprint() string {
	if j.opts.Fingerprint != "" {
		return j.opts.Fingerprint
	}
	var b strings.Builder
	fmt.Fprintf(&b, "max_parallelism=%d", j.opts.MaxParallelism)
	for _, n := range j.nodes {
		fmt.Fprintf(&b, "; %s %q", n.kind, n.name)
		if n.keyed {
			b.WriteString(" keyed")
		}
	}
	return b.String()
}

// keyGroupRange is the key groups task index of a keyed vertex owns.
func (j *Job) keyGroupRange(v *vertex, index int) keyed.KeyGroupRange {
	return keyed.RangeForTask(j.opts.MaxParallelism, v.parallelism, index)
}

// Describe returns a human-readable plan of the job: its tasks, chains and
// exchanges, as Flink's execution plan.
func (j *Job) Describe() string {
	vs, err := j.buildVertices()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "vertex %d [%s] parallelism=%d", v.id, v.name, v.parallelism)
		if v.keyed {
			b.WriteString(" keyed")
		}
		if v.input != nil {
			fmt.Fprintf(&b, " input=vertex %d (%s)", v.input.id, v.head().part)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
