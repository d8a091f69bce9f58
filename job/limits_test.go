package job

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// limitCase is a spec at or just past one of the limits of limits.go.
// Path is the field the spec error names; "" when the spec is at the
// limit and valid. (jobrun's tests sweep the same limits through the
// engine.)
type limitCase struct {
	Name string
	Spec string
	Path string
}

// limitSpec writes a spec: the job's top-level fields, its steps (each a
// YAML flow mapping) and its checkpointing section ("" for none).
func limitSpec(top string, steps []string, sinkPar int, checkpointing string) string {
	var b strings.Builder
	b.WriteString("name: limits\n")
	b.WriteString(top)
	b.WriteString("source: {type: sequence, keys: 10, count: 0}\n")
	if len(steps) > 0 {
		b.WriteString("pipeline:\n")
		for _, s := range steps {
			fmt.Fprintf(&b, "  - %s\n", s)
		}
	}
	if sinkPar > 0 {
		fmt.Fprintf(&b, "sink: {type: blackhole, parallelism: %d}\n", sinkPar)
	} else {
		b.WriteString("sink: {type: blackhole}\n")
	}
	if checkpointing != "" {
		fmt.Fprintf(&b, "checkpointing: {interval: 1s, %s}\n", checkpointing)
	}
	return b.String()
}

// chainSteps returns a key_by and steps named so that the keyed chain
// they run in with the sink, "agg -> f-... -> ... -> sink", is n bytes
// long (n >= 32).
func chainSteps(n int) []string {
	steps := []string{"{key_by: key}", "{count: {}, name: agg}"}
	left := n - len("agg") - len(" -> sink") // for the filters, " -> " and a name each
	for left > 0 {
		l := left - len(" -> ")
		if l > MaxNameLen {
			l = min(MaxNameLen, l-12) // leave 12 bytes for the next
		}
		name := fmt.Sprintf("f%d-", len(steps))
		name += strings.Repeat("x", l-len(name))
		steps = append(steps, fmt.Sprintf("{filter: 'true', name: %s}", name))
		left -= len(" -> ") + l
	}
	return steps
}

// limitCases are the specs at and past every limit the engine, engine/coord,
// keyed and snapshot put on what a spec can ask for.
func limitCases() []limitCase {
	maxPar := engine.MaxParallelism
	keyedPar := func(p int) []string { return []string{"{key_by: key}", fmt.Sprintf("{count: {}, parallelism: %d}", p)} }
	// keyedChains returns n keyed vertices (a key_by and a count each, on
	// alternating keys so that each reshuffles).
	keyedChains := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("{key_by: %s}", []string{"key", "seq"}[i%2]), "{count: {}}")
		}
		return s
	}
	atScope := chainSteps(snapshot.MaxScopeBytes)
	par := func(p int) string {
		return fmt.Sprintf("parallelism: %d\nmax_parallelism: %d\n", p, keyed.MaxMaxParallelism)
	}
	return []limitCase{
		{"job parallelism at the limit", limitSpec(par(maxPar), keyedPar(maxPar), 0, ""), ""},
		{"job parallelism past the limit", limitSpec(par(maxPar+1), nil, 0, ""), "parallelism"},
		{"step parallelism at the limit", limitSpec("", []string{fmt.Sprintf("{filter: 'true', parallelism: %d}", maxPar)}, 0, ""), ""},
		{"step parallelism past the limit", limitSpec("", []string{fmt.Sprintf("{filter: 'true', parallelism: %d}", maxPar+1)}, 0, ""), "pipeline[0].parallelism"},
		{"sink parallelism at the limit", limitSpec("", nil, maxPar, ""), ""},
		{"sink parallelism past the limit", limitSpec("", nil, maxPar+1, ""), "sink.parallelism"},
		{"max_parallelism at the limit", limitSpec(fmt.Sprintf("max_parallelism: %d\n", keyed.MaxMaxParallelism), keyedPar(1), 0, ""), ""},
		{"max_parallelism past the limit", limitSpec(fmt.Sprintf("max_parallelism: %d\n", keyed.MaxMaxParallelism+1), keyedPar(1), 0, ""), "max_parallelism"},
		{"keyed step at max_parallelism", limitSpec("max_parallelism: 8\n", keyedPar(8), 0, ""), ""},
		{"keyed step past max_parallelism", limitSpec("max_parallelism: 8\n", keyedPar(9), 0, ""), "pipeline[1].parallelism"},
		// The source's tasks, then a vertex per count, the sink chained
		// with the last one unless its parallelism differs.
		{"tasks at the limit", limitSpec(par(maxPar), keyedChains(engine.MaxTasks/maxPar-1), 0, ""), ""},
		{"tasks past the limit", limitSpec(par(maxPar), keyedChains(engine.MaxTasks/maxPar-1), 1, ""), "parallelism"},
		{"max_concurrent at the limit", limitSpec("", nil, 0, fmt.Sprintf("max_concurrent: %d", coord.MaxConcurrentLimit)), ""},
		{"max_concurrent past the limit", limitSpec("", nil, 0, fmt.Sprintf("max_concurrent: %d", coord.MaxConcurrentLimit+1)), "checkpointing.max_concurrent"},
		{"retained at the limit", limitSpec("", nil, 0, fmt.Sprintf("retained: %d", engine.MaxRetained)), ""},
		{"retained past the limit", limitSpec("", nil, 0, fmt.Sprintf("retained: %d", engine.MaxRetained+1)), "checkpointing.retained"},
		{"keyed chain name at the limit", limitSpec("", chainSteps(snapshot.MaxScopeBytes), 0, "retained: 1"), ""},
		{"keyed chain name past the limit", limitSpec("", chainSteps(snapshot.MaxScopeBytes+1), 0, "retained: 1"), "sink"},
		{"keyed chain name past the limit before the sink", limitSpec("", append(atScope, "{filter: 'true', name: one-more}"), 0, "retained: 1"),
			fmt.Sprintf("pipeline[%d].name", len(atScope))},
		{"keyed chain name past the limit, no checkpoints", limitSpec("", chainSteps(snapshot.MaxScopeBytes+1), 0, ""), ""},
		{"job name at the limit", strings.Replace(limitSpec("", nil, 0, ""), "name: limits", "name: 0"+strings.Repeat("a", MaxNameLen-1), 1), ""},
		{"job name past the limit", strings.Replace(limitSpec("", nil, 0, ""), "name: limits", "name: "+strings.Repeat("a", MaxNameLen+1), 1), "name"},
		{"job name starting with '-'", strings.Replace(limitSpec("", nil, 0, ""), "name: limits", "name: -limits", 1), "name"},
		{"a step named like the source", limitSpec("", []string{"{filter: 'true', name: source}"}, 0, ""), "pipeline[0].name"},
		{"a step named like the sink", limitSpec("", []string{"{filter: 'true', name: sink}"}, 0, ""), "pipeline[0].name"},
	}
}

// TestLimits checks that a spec at each limit loads and one past it is
// exactly one spec error, naming the field with its line.
func TestLimits(t *testing.T) {
	for _, c := range limitCases() {
		p, err := Load("job.yaml", []byte(c.Spec))
		if c.Path == "" {
			if err != nil {
				t.Errorf("%s: %v\n%s", c.Name, err, c.Spec)
			}
			continue
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Errorf("%s: Load = %v, %v; want a spec error at %s\n%s", c.Name, p != nil, err, c.Path, c.Spec)
			continue
		}
		if len(errs.List) != 1 {
			t.Errorf("%s: %d errors, want 1:\n%v", c.Name, len(errs.List), err)
			continue
		}
		e := errs.List[0]
		if e.Path != c.Path || e.Line == 0 || e.Column == 0 {
			t.Errorf("%s: error %q, want one at %s with its line and column", c.Name, e, c.Path)
		}
	}
}

// TestChainSteps checks the helper that builds keyed chains of a given
// name length.
func TestChainSteps(t *testing.T) {
	for n := 32; n < 2*snapshot.MaxScopeBytes; n += 7 {
		p, err := Load("job.yaml", []byte(limitSpec("", chainSteps(n), 0, "")))
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if v := p.Vertices[len(p.Vertices)-1]; len(v.Name) != n || !v.Keyed {
			t.Fatalf("%d: last vertex %q has %d bytes (keyed %v)", n, v.Name, len(v.Name), v.Keyed)
		}
	}
}
