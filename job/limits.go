package job

import (
	"fmt"
	"slices"
	"strings"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The limits of what a spec asks of the engine live in the package that
// enforces them; this package checks each of them against its constant, so
// that every spec it accepts is one the engine runs, and every violation is
// a spec error with its line:
//
//	spec field                        limit                             home
//	parallelism (job, source, steps,  1..engine.MaxParallelism          engine (Options.Validate, every operator)
//	  sink)
//	max_parallelism                   1..keyed.MaxMaxParallelism        keyed (Options.Validate; engine.Options.Validate)
//	a keyed step's parallelism        <= max_parallelism                engine (keyed operators); checked by Compile for every step a key_by is in effect at
//	all steps together                engine.MaxTasks tasks             engine (Job.Validate): Plan.Vertices
//	name                              [a-z0-9][a-z0-9-]*, MaxNameLen    engine (job name), snapshot.MaxJobNameBytes
//	step names                        unique, not SourceName/SinkName   engine (operator names are unique)
//	checkpointing.max_concurrent      1..coord.MaxConcurrentLimit       engine/coord (Options.Validate)
//	checkpointing.retained            1..engine.MaxRetained             engine (Options.Validate)
//	checkpointing.compression         zstd, s2, none                    snapshot (ParseCompression)
//	chained step names, checkpointed  snapshot.MaxScopeBytes per chain  snapshot (WriteKeyed: a keyed chain's name is its state's scope)
//
// The defaults come from the same homes: keyed.DefaultMaxParallelism,
// coord.DefaultTimeout, coord.DefaultMaxConcurrent, engine.DefaultRetained.
// Limits the engine has that a spec cannot reach (ring capacity, batch
// size) are not checked here.

// SourceName and SinkName are the operator names of the source and the
// sink (jobrun names them so, and Plan.Vertices does); no step may take them.
const (
	SourceName = "source"
	SinkName   = "sink"
)

// A job name and a step name are at most MaxNameLen bytes; the engine keeps
// state under "<step name>/value" or "<step name>/acc/<field>" (jobrun) and checkpoints under the job
// name, so both fit their homes' limits.
const (
	_ = uint(snapshot.MaxJobNameBytes - MaxNameLen)
	_ = uint(keyed.MaxStateNameBytes - MaxNameLen - len("/value")) // reduce too; aggregate: accumulate.go
	_ = uint(coord.MaxConcurrentLimit - coord.DefaultMaxConcurrent)
	_ = uint(engine.MaxRetained - engine.DefaultRetained)
)

// Vertex is a chain of operators that the engine runs as one task per
// parallel instance (engine vertices): the source, every step but key_by
// (an exchange, not an operator), and the sink, in order; an operator
// chains with the one before it when it gets that operator's records
// forward (the same parallelism, and no key_by shuffle in between).
type Vertex struct {
	// Name is the operators' names joined by " -> ", as the engine names
	// the vertex; it is also the scope of the vertex's keyed state in
	// checkpoints.
	Name string
	// Parallelism is the number of tasks of the vertex.
	Parallelism int
	// Keyed reports that an aggregation of the vertex keeps keyed state.
	Keyed bool
	// Exchange is how records reach the vertex from the one before it:
	// "keyed" (hashed by the key), "rebalance" (round robin, at a change of
	// parallelism), or "" for the source.
	Exchange string

	// at is where to report a problem of the vertex growing too long: the
	// path of its last operator and that operator's position.
	at []opAt
}

// opAt is an operator of a vertex as the spec writes it.
type opAt struct {
	name, path string
	pos        position
}

// layout decides how the stages shuffle (Stage.Shuffle), splits the
// operators into vertices as the engine chains them (Plan.Vertices), and
// reports what the engine would refuse of that layout: more than
// engine.MaxTasks tasks, and (with checkpoints) a keyed vertex whose name
// exceeds snapshot.MaxScopeBytes. Compile calls it only on a spec without
// other errors.
func (c *compiler) layout(p *Plan) {
	s := p.Spec
	type op struct {
		opAt
		par      int
		keyed    bool
		exchange string // "forward", "rebalance" or "keyed"; "" for the source
		parPath  string // where the operator's parallelism is written
	}
	parPath := func(own string, explicit bool) string {
		if explicit {
			return own
		}
		return "parallelism"
	}
	// Each source's chain, then the job's pipeline (from the join, with
	// sources:) to the sink. Each list starts a new vertex.
	var lists [][]op
	var ops []op
	// addStages appends the operators of stages (of the pipeline at
	// prefix) to ops.
	addStages := func(prefix string, stages []Stage) {
		// The stream's partitioning by key: set after an aggregation, ended by
		// anything that reshuffles or writes the key (jobrun's AsKeyed).
		partKey, partPar, pending := "", 0, false
		for i := range stages {
			st := &stages[i]
			path := fmt.Sprintf("%s[%d]", prefix, i)
			prevPar := 0
			if len(ops) > 0 {
				prevPar = ops[len(ops)-1].par
			}
			o := op{
				opAt:    opAt{st.Step.Name, path, s.posOf(path, st.Step.Line, st.Step.Column)},
				par:     st.Parallelism,
				parPath: parPath(path+".parallelism", st.Step.Parallelism != 0),
			}
			if _, named := s.pos[path+".name"]; named {
				o.path = path + ".name"
				o.pos = s.posOf(o.path, st.Step.Line, st.Step.Column)
			}
			writesKey := false
			switch st.Step.Kind {
			case StepKeyBy:
				pending, partKey = true, ""
				continue
			case StepMap:
				for _, a := range st.Step.Assign {
					writesKey = writesKey || st.Keyed && a.Field == st.Key.Name
				}
			case StepJoin:
				// A two-input operator heads its own vertex, both inputs
				// shuffled by key; its records are new ones, not keyed.
				o.keyed, o.exchange = true, "keyed"
				ops = append(ops, o)
				continue
			case StepCount, StepSum, StepMin, StepMax, StepReduce, StepAggregate, StepWindow:
				st.Shuffle = pending || partKey != st.Key.Name || partPar != st.Parallelism
				o.keyed = true
				partKey, partPar, pending = st.Key.Name, st.Parallelism, false
				// A window step's records are new ones: what follows it is
				// not keyed (Compile ends the key_by there).
				writesKey = st.writesAggregate(st.Key.Name) || st.Step.Kind == StepWindow
			}
			if st.Parallelism != prevPar || writesKey {
				partKey = ""
			}
			switch {
			case st.Shuffle:
				o.exchange = "keyed"
			case o.par == prevPar:
				o.exchange = "forward"
			default:
				o.exchange = "rebalance"
			}
			ops = append(ops, o)
		}
	}
	if len(p.Inputs) == 0 {
		ops = []op{{
			opAt:    opAt{SourceName, "source", s.posOf("source", s.Source.Line, s.Source.Column)},
			par:     p.SourceParallelism(),
			parPath: parPath("source.parallelism", s.Source.Parallelism != 0),
		}}
	}
	for i := range p.Inputs {
		in := &p.Inputs[i]
		ops = []op{{
			opAt:    opAt{in.Source.Name, in.path + ".name", s.posOf(in.path+".name", in.Source.Line, in.Source.Column)},
			par:     in.Parallelism(p),
			parPath: parPath(in.path+".parallelism", in.Source.Parallelism != 0),
		}}
		addStages(in.path+".pipeline", in.Stages)
		lists = append(lists, ops)
		ops = nil
	}
	addStages("pipeline", p.Stages)
	sk := op{
		opAt:    opAt{SinkName, "sink", s.posOf("sink", s.Sink.Line, s.Sink.Column)},
		par:     p.SinkParallelism(),
		parPath: parPath("sink.parallelism", s.Sink.Parallelism != 0),
	}
	sk.exchange = "rebalance"
	if sk.par == ops[len(ops)-1].par {
		sk.exchange = "forward"
	}
	ops = append(ops, sk)
	lists = append(lists, ops)

	// Chain as the engine does: an operator joins its input's vertex when
	// its records come forward (each operator here has one consumer).
	var heads []op
	tasks := 0
	for _, o := range slices.Concat(lists...) {
		if o.exchange != "forward" {
			p.Vertices = append(p.Vertices, Vertex{Name: o.name, Parallelism: o.par, Keyed: o.keyed, Exchange: o.exchange})
			heads = append(heads, o)
			tasks += o.par
		} else {
			v := &p.Vertices[len(p.Vertices)-1]
			v.Name += " -> " + o.name
			v.Keyed = v.Keyed || o.keyed
		}
		v := &p.Vertices[len(p.Vertices)-1]
		v.at = append(v.at, o.opAt)
	}

	if tasks > engine.MaxTasks {
		big := 0
		for i, h := range heads {
			if h.par > heads[big].par {
				big = i
			}
		}
		var parts []string
		for i, v := range p.Vertices {
			if i == 8 && len(p.Vertices) > 9 {
				parts = append(parts, fmt.Sprintf("and %d more", len(p.Vertices)-i))
				break
			}
			what := v.at[0].name
			if n := len(v.at) - 1; n > 0 {
				what += fmt.Sprintf(" (and %d chained)", n)
			}
			parts = append(parts, fmt.Sprintf("%d for %s", v.Parallelism, what))
		}
		h := heads[big]
		c.errAt(h.parPath, s.posOf(h.parPath, h.pos.line, h.pos.col),
			"the job would run %d tasks, more than the limit %d: %s; lower the parallelism of some steps "+
				"(a step runs in the tasks of the step before it when their parallelism is equal and no key_by is between them)",
			tasks, engine.MaxTasks, strings.Join(parts, ", "))
	}

	if s.Checkpointing != nil {
		for _, v := range p.Vertices {
			if !v.Keyed || len(v.Name) <= snapshot.MaxScopeBytes {
				continue
			}
			n, last := 0, v.at[0]
			for i, o := range v.at {
				if i > 0 {
					n += len(" -> ")
				}
				if n += len(o.name); n > snapshot.MaxScopeBytes {
					last = o
					break
				}
			}
			c.errAt(last.path, last.pos,
				"the chain of steps that this one runs in (%s) is named by %d bytes in checkpoints, more than the limit %d: "+
					"use shorter step names, or give a step of the chain another parallelism than the one before it",
				quoteShort(v.Name), len(v.Name), snapshot.MaxScopeBytes)
		}
	}
}
