package job

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
)

// Parse decodes a YAML job spec strictly: unknown fields, wrong types, bad
// values and missing required fields are all reported at once, as *Errors,
// each naming the field path and its position. It fills every default.
// Parse does not type-check expressions or follow schemas through the
// pipeline; Compile does, and Load does both and reports the problems of
// both phases together.
func Parse(filename string, data []byte) (*Spec, error) {
	spec, d := parse(filename, data)
	if len(d.errs) > 0 {
		return nil, asErrors(d.errs)
	}
	return spec, nil
}

// Load parses and compiles a spec, reporting every problem of both phases
// at once. It is what `streamd run` uses. When the spec has decode errors,
// the compile phase still checks the source and the steps before the first
// broken one (later steps would only yield errors that follow from the
// first).
func Load(filename string, data []byte) (*Plan, error) {
	spec, d := parse(filename, data)
	if len(d.errs) == 0 {
		return Compile(spec)
	}
	c := newCompiler(spec, d.broken)
	c.run()
	return nil, asErrors(append(d.errs, c.errs...))
}

// parse decodes and validates data. It always returns a Spec (partial when
// there are errors) and the decoder holding the errors and the paths that
// could not be decoded.
func parse(filename string, data []byte) (*Spec, *decoder) {
	spec := &Spec{
		File:           filename,
		Parallelism:    1,
		MaxParallelism: keyed.DefaultMaxParallelism,
		Source:         SourceSpec{Count: -1},
		pos:            make(map[string]position),
	}
	d := &decoder{file: filename, spec: spec, bad: make(map[string]bool), broken: make(map[string]bool)}
	d.decode(data)
	d.errs = append(d.errs, spec.validate(d.isBad)...)
	for _, e := range d.errs {
		d.broken[brokenKey(e.Path)] = true
	}
	return spec, d
}

// brokenKey maps an error's path to the unit it makes unreliable for
// compilation: "" (everything), "source" (the source schema),
// "pipeline[i]" (a step), or the top-level field. Errors that do not change
// any schema (a step's name or parallelism, a sequence source's count, ...)
// map to keys the compiler does not look at.
func brokenKey(path string) string {
	switch {
	case strings.HasPrefix(path, "sources["):
		return brokenSourceKey(path)
	case strings.HasPrefix(path, "pipeline["):
		i := strings.IndexByte(path, ']')
		if rest := path[i+1:]; rest == ".name" || rest == ".parallelism" {
			return "not-structural:" + path
		}
		return path[:i+1]
	case path == "source", path == "source.type", strings.HasPrefix(path, "source.fields"):
		return "source"
	case strings.HasPrefix(path, "source.event_time"):
		return "source.event_time"
	case strings.HasPrefix(path, "source."):
		return "not-structural:" + path
	}
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}

type decoder struct {
	file string
	spec *Spec
	errs []*Error
	// bad holds paths whose value could not be decoded (wrong YAML type,
	// missing); validate skips them and everything under them.
	bad map[string]bool
	// broken holds brokenKey of every error; Load's compile phase uses it.
	broken map[string]bool
	// unnamed lists the steps that do not name themselves (nameSteps).
	unnamed []stepRef
}

func (d *decoder) fail(p position, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Column: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
	d.bad[path] = true
}

// isBad reports whether path or one of its ancestors could not be decoded.
func (d *decoder) isBad(path string) bool {
	if d.bad[""] || d.bad[path] {
		return true
	}
	for i := 0; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && d.bad[path[:i]] {
			return true
		}
	}
	return false
}

func (d *decoder) decode(data []byte) {
	if len(data) > MaxSpecBytes {
		d.fail(position{}, "", "spec is %d bytes; the limit is %d", len(data), MaxSpecBytes)
		return
	}
	// The YAML parser takes time superlinear in these; refuse absurd
	// inputs before parsing.
	if n := bytes.Count(data, []byte{'\n'}); n > MaxSpecLines {
		d.fail(position{}, "", "spec has %d lines; the limit is %d", n, MaxSpecLines)
		return
	}
	if p, ok := flowDepthOK(data); !ok {
		d.fail(p, "", "YAML nested deeper than %d levels", MaxSpecFlowDepth)
		return
	}
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		p := position{}
		msg := err.Error()
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			p = tokenPos(ye.GetToken())
		}
		d.fail(p, "", "invalid YAML: %s", msg)
		return
	}
	var body ast.Node
	for i, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			d.fail(posOf(doc.Body), "", "a job spec is one YAML document; found another one (document %d)", i+1)
			return
		}
		body = doc.Body
	}
	if body == nil {
		d.fail(position{1, 1}, "", "empty job spec")
		return
	}
	d.top(body)
}

// flowDepthOK checks that [ and { nest at most MaxSpecFlowDepth deep. It
// ignores quoting, so brackets inside strings count too; no sensible spec
// comes near the limit either way.
func flowDepthOK(data []byte) (position, bool) {
	depth, line, col := 0, 1, 0
	for _, c := range data {
		col++
		switch c {
		case '\n':
			line, col = line+1, 0
		case '[', '{':
			if depth++; depth > MaxSpecFlowDepth {
				return position{line, col}, false
			}
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return position{}, true
}

// top decodes the top-level mapping.
func (d *decoder) top(body ast.Node) {
	s := d.spec
	ents, ok := d.entries(body, "", "a mapping of job fields (name, source, pipeline, sink, ...)")
	if !ok {
		d.bad[""] = true
		return
	}
	allowed := []string{"name", "parallelism", "max_parallelism", "source", "sources", "pipeline", "sink", "checkpointing", "restart"}
	var sourceAt, sourcesAt position // of the keys, when present
	for _, e := range ents {
		switch e.key {
		case "name":
			s.Name, _ = d.str(e)
		case "parallelism":
			if v, ok := d.int(e); ok {
				s.Parallelism = int(v)
			}
		case "max_parallelism":
			if v, ok := d.int(e); ok {
				s.MaxParallelism = int(v)
			}
		case "source":
			sourceAt = e.kpos
			if sourcesAt.line > 0 {
				d.fail(e.kpos, e.path, "a job has source: (one source) or sources: (named sources to join), not both; sources: is at line %d", sourcesAt.line)
				continue
			}
			d.source(e, &s.Source, "")
		case "sources":
			sourcesAt = e.kpos
			if sourceAt.line > 0 {
				d.fail(e.kpos, e.path, "a job has source: (one source) or sources: (named sources to join), not both; source: is at line %d", sourceAt.line)
				continue
			}
			d.sources(e)
		case "pipeline":
			s.Pipeline = d.pipeline(e, "pipeline")
		case "sink":
			d.sink(e)
		case "checkpointing":
			d.checkpointing(e)
		case "restart":
			d.restart(e)
		default:
			d.unknown(e, allowed)
		}
	}
	if sourcesAt.line > 0 {
		d.require(ents, posOf(body), "", "name", "sink")
	} else {
		d.require(ents, posOf(body), "", "name", "source", "sink")
	}
	d.nameSteps()
	if s.Restart == nil {
		s.Restart = defaultRestart(s.Checkpointing != nil)
	}
}

// source decodes `source:`, or one source of `sources:` when item is its
// path ("sources[1]"): then it has a name and a pipeline too.
func (d *decoder) source(e entry, src *SourceSpec, item string) {
	src.Line, src.Column = e.kpos.line, e.kpos.col
	ents, ok := d.entries(e.value, e.path, "a mapping with the source's type and options")
	if !ok {
		return
	}
	typ := ""
	for _, x := range ents {
		if x.key == "type" {
			typ, _ = d.str(x)
		}
	}
	src.Type = typ
	required := newConnSource(src)
	allowed := []string{"type", "parallelism", "count", "keys", "rate", "path", "fields", "events", "event_time"}
	if keys, ok := connSourceKeys[typ]; ok {
		allowed = append([]string{"type", "parallelism", "fields", "event_time"}, keys...)
	}
	if item != "" {
		allowed = append([]string{"name"}, append(allowed, "pipeline")...)
	}
	notFor := func(x entry, kind, why string) bool {
		if typ == kind {
			d.fail(x.kpos, x.path, "not used by a %s source%s", kind, why)
			return true
		}
		return false
	}
	for _, x := range ents {
		if d.postgresUser(x, typ) || d.credential(x, typ == SourceNATS) || d.connSource(x, src, typ) {
			continue
		}
		if isConnectorSource(typ) && slices.Contains(nonConnSourceKeys, x.key) {
			d.fail(x.kpos, x.path, "not used by a %s source", typ)
			continue
		}
		switch x.key {
		case "type":
		case "parallelism":
			src.Parallelism = d.explicitParallelism(x)
		case "count":
			if notFor(x, SourceFile, " (it reads its files to the end)") || notFor(x, SourceNexmark, " (write events)") {
				continue
			}
			if v, ok := d.int(x); ok {
				if v < 0 {
					d.fail(x.vpos, x.path, "must be >= 0, got %d (omit count for an unbounded source)", v)
					continue
				}
				src.Count = v
			}
		case "events":
			if notFor(x, SourceSequence, " (write count)") || notFor(x, SourceFile, " (it reads its files to the end)") {
				continue
			}
			if v, ok := d.int(x); ok {
				src.Events = v
			}
		case "keys":
			if notFor(x, SourceFile, "") || notFor(x, SourceNexmark, " (its keys are the events' ids)") {
				continue
			}
			src.Keys, _ = d.int(x)
		case "rate":
			if notFor(x, SourceFile, "") {
				continue
			}
			src.RatePerSec, _ = d.float(x)
		case "path":
			if notFor(x, SourceSequence, "") || notFor(x, SourceNexmark, "") {
				continue
			}
			src.Path, _ = d.str(x)
		case "fields":
			if notFor(x, SourceSequence, " (its schema is {key int, seq int})") ||
				notFor(x, SourceNexmark, " (its schema is the union of the person, auction and bid fields)") {
				continue
			}
			d.fields(x, src)
		case "event_time":
			d.eventTime(x, src)
		case "name", "pipeline":
			if item == "" {
				d.fail(x.kpos, x.path, "unknown field: only a source of sources: has a %s (the steps of source: are the job's pipeline)", x.key)
				continue
			}
			if x.key == "name" {
				src.Name, _ = d.str(x)
			} else {
				src.Pipeline = d.pipeline(x, x.path)
			}
		default:
			d.unknown(x, allowed)
		}
	}
	if item != "" {
		d.require(ents, e.kpos, e.path, "name")
	}
	d.require(ents, e.kpos, e.path, "type")
	switch typ {
	case SourceSequence:
		d.require(ents, e.kpos, e.path, "keys")
	case SourceFile:
		d.require(ents, e.kpos, e.path, "path", "fields")
	case SourceNexmark:
		d.require(ents, e.kpos, e.path, "events")
	default:
		d.require(ents, e.kpos, e.path, required...)
	}
}

// eventTime decodes a source's `event_time: {field: F, out_of_orderness:
// D, idleness: D, watermark_interval: D}`. The section exists (non-nil)
// as soon as its key does, so that a window step does not also report
// that event time is missing when the section has a mistake.
func (d *decoder) eventTime(e entry, src *SourceSpec) {
	et := &EventTimeSpec{WatermarkInterval: engine.DefaultWatermarkInterval, Line: e.kpos.line, Column: e.kpos.col}
	src.EventTime = et
	ents, ok := d.entries(e.value, e.path, "a mapping with the timestamp field and watermark options, such as {field: dateTime, out_of_orderness: 2s}")
	if !ok {
		return
	}
	for _, x := range ents {
		switch x.key {
		case "field":
			et.Field, _ = d.str(x)
		case "out_of_orderness":
			et.OutOfOrderness, _ = d.duration(x)
		case "idleness":
			et.Idleness, _ = d.duration(x)
		case "watermark_interval":
			if v, ok := d.duration(x); ok {
				et.WatermarkInterval = v
			}
		default:
			d.unknown(x, []string{"field", "out_of_orderness", "idleness", "watermark_interval"})
		}
	}
	d.require(ents, e.kpos, e.path, "field")
}

// fields decodes a file source's schema: a mapping of field name to type,
// in the order written.
func (d *decoder) fields(e entry, src *SourceSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping of field names to types (int, float, string or bool)")
	if !ok {
		return
	}
	for _, x := range ents {
		d.spec.pos[x.path] = x.kpos
		s, ok := d.str(x)
		if !ok {
			continue
		}
		t, ok := parseType(s)
		if !ok {
			d.fail(x.vpos, x.path, "unknown type %q: want int, float, string or bool", s)
			continue
		}
		src.Fields = append(src.Fields, FieldSpec{Name: x.key, Type: t})
	}
	if len(ents) == 0 {
		d.fail(e.vpos, e.path, "a %s source needs at least one field", src.Type)
	}
}

var operatorKeys = []string{"filter", "map", "key_by", "count", "sum", "min", "max", "reduce", "aggregate", "window", "join"}

// pipeline decodes a sequence of steps at path ("pipeline", or
// "sources[i].pipeline"). Steps get their default names later
// (nameSteps), numbered across the whole job.
func (d *decoder) pipeline(e entry, path string) []StepSpec {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return nil
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(e.vpos, e.path, "want a sequence of steps, got %s", describe(n))
		return nil
	}
	if len(seq.Values) > MaxSteps {
		d.fail(e.vpos, e.path, "%d steps; the limit is %d", len(seq.Values), MaxSteps)
		return nil
	}
	steps := make([]StepSpec, len(seq.Values))
	for i, item := range seq.Values {
		if !d.step(fmt.Sprintf("%s[%d]", path, i), item, &steps[i]) {
			d.unnamed = append(d.unnamed, stepRef{path, i})
		}
	}
	return steps
}

// stepRef is a step of a pipeline by the pipeline's path and its index.
type stepRef struct {
	path string
	i    int
}

// nameSteps gives the steps that do not name themselves their default
// names: "<kind>-<n>", the n-th step of that kind in the job, counting the
// pipelines of sources: first, in the order written, then the job's.
func (d *decoder) nameSteps() {
	s := d.spec
	unnamed := make(map[stepRef]bool, len(d.unnamed))
	for _, r := range d.unnamed {
		unnamed[r] = true
	}
	var perKind [len(stepKindNames)]int
	name := func(path string, steps []StepSpec) {
		for i := range steps {
			k := steps[i].Kind
			if k == 0 || int(k) >= len(perKind) {
				continue
			}
			perKind[k]++
			if unnamed[stepRef{path, i}] {
				steps[i].Name = fmt.Sprintf("%s-%d", k, perKind[k])
			}
		}
	}
	for i := range s.Sources {
		name(sourcePath(i)+".pipeline", s.Sources[i].Pipeline)
	}
	name("pipeline", s.Pipeline)
}

// step decodes the step at path; it reports whether the step names itself.
func (d *decoder) step(path string, n ast.Node, st *StepSpec) (named bool) {
	p := posOf(n)
	st.Line, st.Column = p.line, p.col
	d.spec.pos[path] = p
	ents, ok := d.entries(n, path, "a mapping with one operator (filter, map, key_by, count, sum, min, max, reduce, aggregate, window or join)")
	if !ok {
		return false
	}
	allowed := append(slices.Clone(operatorKeys), "name", "uid", "parallelism")
	op := ""
	for _, e := range ents {
		if k, isOp := parseStepKind(e.key); isOp {
			if op != "" {
				d.fail(e.kpos, path, "two operators in one step (%s and %s); give each its own step", op, e.key)
				continue
			}
			op = e.key
			st.Kind = k
			st.Line, st.Column = e.kpos.line, e.kpos.col
			d.spec.pos[path] = e.kpos
			switch k {
			case StepFilter:
				st.Expr, _ = d.expr(e)
			case StepMap:
				d.assignments(e, st)
			case StepKeyBy, StepSum, StepMin, StepMax:
				st.Field, _ = d.str(e)
			case StepCount:
				d.noOptions(e)
			case StepReduce:
				d.reduce(e, st)
			case StepAggregate:
				d.aggregate(e, st)
			case StepWindow:
				d.window(e, st)
			case StepJoin:
				d.join(e, st)
			}
			continue
		}
		switch e.key {
		case "name":
			st.Name, _ = d.str(e)
			named = true
		case "uid":
			st.UID, _ = d.str(e)
		case "parallelism":
			st.Parallelism = d.explicitParallelism(e)
		default:
			d.unknown(e, allowed)
		}
	}
	if op == "" {
		d.fail(p, path, "missing operator: want one of %s", strings.Join(operatorKeys, ", "))
	}
	return named
}

// noOptions accepts `count: {}` and `count:` (null).
func (d *decoder) noOptions(e entry) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return
	}
	switch m := n.(type) {
	case *ast.NullNode:
		return
	case *ast.MappingNode:
		for _, mv := range m.Values {
			d.fail(posOf(mv.Key), e.path+"."+keyText(mv.Key), "unknown field: %s takes no options (write %s: {})", e.key, e.key)
		}
		return
	}
	d.fail(e.vpos, e.path, "want {} (%s takes no options), got %s", e.key, describe(n))
}

// reduce decodes `reduce: {field: F, value: EXPR, init: EXPR}`.
func (d *decoder) reduce(e entry, st *StepSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping with field, value and optionally init")
	if !ok {
		return
	}
	r := &ReduceSpec{}
	st.Reduce = r
	for _, x := range ents {
		switch x.key {
		case "field":
			r.Field, _ = d.str(x)
		case "value":
			r.Value, _ = d.expr(x)
		case "init":
			if v, ok := d.expr(x); ok {
				if v == "" {
					d.fail(x.vpos, x.path, "empty expression (omit init to start from the first record's %s)", quoteShort(r.Field))
					continue
				}
				r.Init = v
			}
		default:
			d.unknown(x, []string{"field", "value", "init"})
		}
	}
	d.require(ents, e.kpos, e.path, "field", "value")
}

// accKeys lists the accumulator kinds for messages.
func accKeys() []string { return accKindNames[AccCount:] }

// aggregate decodes `aggregate: {NAME: {KIND: EXPR}, ...}`, one output
// field per accumulator, in the order written.
func (d *decoder) aggregate(e entry, st *StepSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping of output fields to accumulators, such as {total: {sum: amount}, n: {count: {}}}")
	if !ok {
		return
	}
	if len(ents) == 0 {
		d.fail(e.vpos, e.path, "an aggregate step needs at least one accumulator")
		return
	}
	for _, x := range ents {
		d.spec.pos[x.path+":key"] = x.kpos
		acc, ok := d.accumulator(x)
		if !ok {
			d.bad[e.path] = true // the step's schema is unknown
			continue
		}
		st.Accs = append(st.Accs, acc)
	}
}

// windowAccKinds are the accumulators a window step supports: the
// built-in aggregates of package window.
var windowAccKinds = []AccKind{AccCount, AccSum, AccMin, AccMax, AccAvg}

// window decodes `window: {tumbling: D | sliding: {size: D, slide: D} |
// session: {gap: D}, allowed_lateness: D, aggregate: {NAME: {KIND:
// EXPR}, ...}}`.
func (d *decoder) window(e entry, st *StepSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping with the windows (tumbling, sliding or session) and an aggregate")
	if !ok {
		return
	}
	w := &WindowSpec{}
	st.Window = w
	assigners := []string{WindowTumbling, WindowSliding, WindowSession}
	for _, x := range ents {
		if slices.Contains(assigners, x.key) {
			if w.Kind != "" {
				d.fail(x.kpos, x.path, "two kinds of windows in one step (%s and %s); give each its own step", w.Kind, x.key)
				d.bad[e.path] = true
				continue
			}
			w.Kind = x.key
		}
		switch x.key {
		case WindowTumbling:
			if v, ok := d.duration(x); ok {
				w.Size = v
			}
		case WindowSliding:
			sub, ok := d.entries(x.value, x.path, "a mapping with size and slide, such as {size: 10s, slide: 2s}")
			if !ok {
				continue
			}
			for _, y := range sub {
				switch y.key {
				case "size":
					w.Size, _ = d.duration(y)
				case "slide":
					w.Slide, _ = d.duration(y)
				default:
					d.unknown(y, []string{"size", "slide"})
				}
			}
			d.require(sub, x.kpos, x.path, "size", "slide")
		case WindowSession:
			sub, ok := d.entries(x.value, x.path, "a mapping with the gap, such as {gap: 30s}")
			if !ok {
				continue
			}
			for _, y := range sub {
				switch y.key {
				case "gap":
					w.Gap, _ = d.duration(y)
				default:
					d.unknown(y, []string{"gap"})
				}
			}
			d.require(sub, x.kpos, x.path, "gap")
		case "allowed_lateness":
			w.AllowedLateness, _ = d.duration(x)
		case "aggregate":
			d.aggregate(x, st)
		default:
			d.unknown(x, []string{WindowTumbling, WindowSliding, WindowSession, "allowed_lateness", "aggregate"})
		}
	}
	if w.Kind == "" {
		d.fail(e.kpos, e.path, "missing windows: want one of tumbling: 10s, sliding: {size: 10s, slide: 2s} or session: {gap: 30s}")
	}
	d.require(ents, e.kpos, e.path, "aggregate")
}

// accumulator decodes one `{KIND: EXPR}` (count: `{count: {}}`).
func (d *decoder) accumulator(x entry) (AccSpec, bool) {
	want := "a mapping with one accumulator (" + strings.Join(accKeys(), ", ") + "), such as {sum: amount}"
	kinds, ok := d.entries(x.value, x.path, want)
	if !ok {
		return AccSpec{}, false
	}
	if len(kinds) == 0 {
		d.fail(x.vpos, x.path, "want %s, got an empty mapping", want)
		return AccSpec{}, false
	}
	acc := AccSpec{Field: x.key}
	good := true
	for i, k := range kinds {
		kind, known := parseAccKind(k.key)
		if !known {
			if s := suggest(k.key, accKeys()); s != "" {
				d.fail(k.kpos, k.path, "unknown accumulator %s (did you mean %q?)", quoteShort(k.key), s)
			} else {
				d.fail(k.kpos, k.path, "unknown accumulator %s; want one of %s", quoteShort(k.key), strings.Join(accKeys(), ", "))
			}
			good = false
			continue
		}
		if i > 0 {
			d.fail(k.kpos, x.path, "two accumulators for one field (%s and %s); give each its own field", kinds[0].key, k.key)
			good = false
			continue
		}
		acc.Kind = kind
		acc.Line, acc.Column = k.kpos.line, k.kpos.col
		d.spec.pos[x.path] = k.kpos
		if kind == AccCount {
			d.noOptions(k)
			continue
		}
		src, ok := d.expr(k)
		if !ok {
			good = false
			continue
		}
		acc.Expr = src
	}
	return acc, good
}

func (d *decoder) assignments(e entry, st *StepSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping of field names to expressions")
	if !ok {
		return
	}
	if len(ents) == 0 {
		d.fail(e.vpos, e.path, "a map step needs at least one field")
		return
	}
	for _, x := range ents {
		d.spec.pos[x.path+":key"] = x.kpos
		src, ok := d.expr(x)
		if !ok {
			d.bad[e.path] = true // the step's schema is unknown
			continue
		}
		st.Assign = append(st.Assign, Assignment{Field: x.key, Expr: src, Line: x.vpos.line, Column: x.vpos.col})
	}
}

// expr decodes an expression. Any scalar is accepted and taken as written,
// so `filter: true` and `map: {one: 1}` work without quotes.
func (d *decoder) expr(e entry) (string, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return "", false
	}
	d.spec.pos[e.path] = e.vpos
	var src string
	switch n := n.(type) {
	case *ast.StringNode:
		src = n.Value
	case *ast.LiteralNode:
		src = n.Value.Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		src = n.GetToken().Value
	default:
		d.fail(e.vpos, e.path, "want an expression, got %s", describe(n))
		return "", false
	}
	return strings.TrimSpace(src), true
}

func (d *decoder) sink(e entry) {
	sk := &d.spec.Sink
	sk.Line, sk.Column = e.kpos.line, e.kpos.col
	ents, ok := d.entries(e.value, e.path, "a mapping with the sink's type and options")
	if !ok {
		return
	}
	for _, x := range ents {
		if x.key == "type" {
			sk.Type, _ = d.str(x)
		}
	}
	required := newConnSink(sk)
	allowed := []string{"type", "path", "parallelism"}
	if keys, ok := connSinkKeys[sk.Type]; ok {
		allowed = append([]string{"type", "parallelism"}, keys...)
	}
	for _, x := range ents {
		if d.postgresUser(x, sk.Type) || d.credential(x, sk.Type == SinkNATS) || d.connSink(x, sk) {
			continue
		}
		switch x.key {
		case "type":
		case "path":
			if sk.Type != SinkFile && slices.Contains(validSinkTypes, sk.Type) {
				d.fail(x.kpos, x.path, "not used by a %s sink", sk.Type)
				continue
			}
			sk.Path, _ = d.str(x)
		case "parallelism":
			sk.Parallelism = d.explicitParallelism(x)
		default:
			d.unknown(x, allowed)
		}
	}
	d.require(ents, e.kpos, e.path, "type")
	if sk.Type == SinkFile {
		d.require(ents, e.kpos, e.path, "path")
	}
	d.require(ents, e.kpos, e.path, required...)
}

func (d *decoder) checkpointing(e entry) {
	cp := &CheckpointSpec{
		Timeout:       coord.DefaultTimeout,
		Mode:          DefaultMode,
		MaxConcurrent: coord.DefaultMaxConcurrent,
		Retained:      engine.DefaultRetained,
		Compression:   DefaultCompression,
		Line:          e.kpos.line,
		Column:        e.kpos.col,
	}
	d.spec.Checkpointing = cp
	ents, ok := d.entries(e.value, e.path, "a mapping of checkpoint options")
	if !ok {
		return
	}
	cp.Incremental = true
	allowed := []string{"interval", "mode", "timeout", "min_pause", "max_concurrent", "tolerable_failures", "retained", "compression", "incremental", "unaligned"}
	for _, x := range ents {
		switch x.key {
		case "interval":
			cp.Interval, _ = d.duration(x)
		case "timeout":
			if v, ok := d.duration(x); ok {
				cp.Timeout = v
			}
		case "min_pause":
			cp.MinPause, _ = d.duration(x)
		case "mode":
			if v, ok := d.str(x); ok {
				cp.Mode = v
			}
		case "compression":
			if v, ok := d.str(x); ok {
				cp.Compression = v
			}
		case "max_concurrent":
			if v, ok := d.int(x); ok {
				cp.MaxConcurrent = int(v)
			}
		case "tolerable_failures":
			if v, ok := d.int(x); ok {
				cp.TolerableFailures = int(v)
			}
		case "retained":
			if v, ok := d.int(x); ok {
				cp.Retained = int(v)
			}
		case "incremental":
			if v, ok := d.bool(x); ok {
				cp.Incremental = v
			}
		case "unaligned":
			if v, ok := d.bool(x); ok && v {
				d.fail(x.vpos, x.path, "unaligned checkpoints are not implemented (they need a priority slot per ring); remove it or set it to false")
			}
		default:
			d.unknown(x, allowed)
		}
	}
	d.require(ents, e.kpos, e.path, "interval")
}

// restart decodes `restart: {strategy: …, …}`: the strategy first, so
// that its defaults are filled and options of another strategy are
// errors.
func (d *decoder) restart(e entry) {
	ents, ok := d.entries(e.value, e.path, "a mapping of restart options (strategy, ...)")
	if !ok {
		return
	}
	strategy := ""
	for _, x := range ents {
		if x.key == "strategy" {
			strategy, _ = d.str(x)
		}
	}
	var allowed []string
	switch strategy {
	case RestartFixedDelay:
		allowed = []string{"strategy", "attempts", "delay"}
	case RestartExponentialDelay:
		allowed = []string{"strategy", "initial_backoff", "max_backoff", "backoff_multiplier", "reset_backoff_threshold", "jitter_factor", "attempts_before_reset"}
	case RestartNone:
		allowed = []string{"strategy"}
	case "":
		d.require(ents, e.kpos, e.path, "strategy")
		return
	default:
		for _, x := range ents {
			if x.key == "strategy" {
				d.fail(x.vpos, x.path, "unknown restart strategy %s: want exponential_delay, fixed_delay or none", quoteShort(strategy))
			}
		}
		return
	}
	r := newRestart(strategy)
	r.Line, r.Column = e.kpos.line, e.kpos.col
	d.spec.Restart = r
	// Where each option of any strategy goes.
	counts := map[string]*int{"attempts": &r.Attempts, "attempts_before_reset": &r.AttemptsBeforeReset}
	durations := map[string]*time.Duration{"delay": &r.Delay, "initial_backoff": &r.InitialBackoff,
		"max_backoff": &r.MaxBackoff, "reset_backoff_threshold": &r.ResetThreshold}
	floats := map[string]*float64{"backoff_multiplier": &r.Multiplier, "jitter_factor": &r.JitterFactor}
	for _, x := range ents {
		n, isCount := counts[x.key]
		dur, isDur := durations[x.key]
		f, isFloat := floats[x.key]
		switch {
		case x.key == "strategy":
		case !slices.Contains(allowed, x.key) && (isCount || isDur || isFloat):
			d.fail(x.kpos, x.path, "%s is not an option of the %s strategy (its options: %s)", x.key, strategy, strings.Join(allowed[1:], ", "))
		case !slices.Contains(allowed, x.key):
			d.unknown(x, allowed)
		case isCount:
			if v, ok := d.int(x); ok {
				*n = int(min(max(v, -1), MaxRestartAttempts+1)) // out of range: validate names it
			}
		case isDur:
			if v, ok := d.duration(x); ok {
				*dur = v
			}
		case isFloat:
			if v, ok := d.float(x); ok {
				*f = v
			}
		}
	}
}

// explicitParallelism decodes a `parallelism:` of a source, step or sink,
// where 0 means "inherit" and so cannot be written.
func (d *decoder) explicitParallelism(e entry) int {
	v, ok := d.int(e)
	if !ok {
		return 0
	}
	if v < 1 {
		d.fail(e.vpos, e.path, "must be >= 1, got %d", v)
		return 0
	}
	return int(v)
}

// entry is one key: value of a mapping.
type entry struct {
	key   string
	path  string
	kpos  position
	vpos  position
	value ast.Node
}

func childPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// entries checks that n is a mapping with unique string keys and returns
// its entries in order. want describes the expected mapping for errors.
func (d *decoder) entries(n ast.Node, path, want string) ([]entry, bool) {
	n, ok := d.plain(n, path)
	if !ok {
		return nil, false
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.fail(posOf(n), path, "want %s, got %s", want, describe(n))
		return nil, false
	}
	out := make([]entry, 0, len(m.Values))
	seen := make(map[string]position, len(m.Values))
	for _, mv := range m.Values {
		kp := posOf(mv.Key)
		var key string
		switch k := mv.Key.(type) {
		case *ast.StringNode:
			key = k.Value
		case *ast.MergeKeyNode:
			d.fail(kp, path, "YAML merge keys (<<) are not supported in job specs")
			continue
		default:
			d.fail(kp, path, "want a field name, got %s", describe(mv.Key))
			continue
		}
		cp := childPath(path, key)
		if first, dup := seen[key]; dup {
			d.fail(kp, cp, "duplicate field (first at line %d)", first.line)
			continue
		}
		seen[key] = kp
		vp := posOf(mv.Value)
		if _, isNull := mv.Value.(*ast.NullNode); isNull && vp.line == 0 {
			vp = kp
		}
		out = append(out, entry{key: key, path: cp, kpos: kp, vpos: vp, value: mv.Value})
	}
	return out, true
}

// require reports each of keys that ents lacks, at pos (the mapping's key).
func (d *decoder) require(ents []entry, pos position, path string, keys ...string) {
	for _, k := range keys {
		if !slices.ContainsFunc(ents, func(e entry) bool { return e.key == k }) {
			d.fail(pos, childPath(path, k), "missing required field")
		}
	}
}

func (d *decoder) unknown(e entry, allowed []string) {
	if s := suggest(e.key, allowed); s != "" {
		d.fail(e.kpos, e.path, "unknown field (did you mean %q?)", s)
		return
	}
	d.fail(e.kpos, e.path, "unknown field; want one of %s", strings.Join(allowed, ", "))
}

// suggest returns the allowed name closest to name, if close enough to be a
// likely typo.
func suggest(name string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if dist := editDistance(name, a); dist < bestDist && dist <= len(a)/3+1 {
			best, bestDist = a, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	var d [65][65]int
	for i := 0; i <= len(a); i++ {
		d[i][0] = i
	}
	for j := 0; j <= len(b); j++ {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// plain rejects the YAML features a job spec does not use: tags, anchors
// and aliases. A spec is plain data; rejecting them keeps positions honest
// and rules out alias bombs.
func (d *decoder) plain(n ast.Node, path string) (ast.Node, bool) {
	switch n.(type) {
	case *ast.TagNode:
		d.fail(posOf(n), path, "YAML tags (%s) are not supported in job specs", n.GetToken().Value)
		return nil, false
	case *ast.AnchorNode:
		d.fail(posOf(n), path, "YAML anchors are not supported in job specs")
		return nil, false
	case *ast.AliasNode:
		d.fail(posOf(n), path, "YAML aliases are not supported in job specs")
		return nil, false
	}
	return n, true
}

func (d *decoder) str(e entry) (string, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return "", false
	}
	d.spec.pos[e.path] = e.vpos
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		return n.Value.Value, true
	}
	d.fail(e.vpos, e.path, "want a string, got %s", describe(n))
	return "", false
}

func (d *decoder) int(e entry) (int64, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return 0, false
	}
	d.spec.pos[e.path] = e.vpos
	switch n := n.(type) {
	case *ast.IntegerNode:
		switch v := n.Value.(type) {
		case int64:
			return v, true
		case uint64:
			if v <= math.MaxInt64 {
				return int64(v), true
			}
		}
		d.fail(e.vpos, e.path, "integer %s is out of range", n.GetToken().Value)
		return 0, false
	case *ast.FloatNode:
		d.failNotInt(e, n.GetToken().Value, n.Value)
		return 0, false
	case *ast.StringNode:
		if isPlain(n.Token) {
			if isDigits(strings.TrimPrefix(n.Value, "-")) {
				d.fail(e.vpos, e.path, "integer %s is out of range", n.Value)
				return 0, false
			}
			if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
				d.failNotInt(e, n.Value, f)
				return 0, false
			}
		}
	}
	d.fail(e.vpos, e.path, "want an integer, got %s", describe(n))
	return 0, false
}

func (d *decoder) failNotInt(e entry, text string, f float64) {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		d.fail(e.vpos, e.path, "want an integer, got float %s (write %d)", text, int64(f))
		return
	}
	d.fail(e.vpos, e.path, "want an integer, got float %s", text)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isPlain(tk *token.Token) bool {
	return tk != nil && tk.Type != token.SingleQuoteType && tk.Type != token.DoubleQuoteType
}

func (d *decoder) float(e entry) (float64, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return 0, false
	}
	d.spec.pos[e.path] = e.vpos
	switch n := n.(type) {
	case *ast.IntegerNode:
		switch v := n.Value.(type) {
		case int64:
			return float64(v), true
		case uint64:
			return float64(v), true
		}
	case *ast.FloatNode:
		return n.Value, true
	case *ast.InfinityNode:
		return n.Value, true
	case *ast.NanNode:
		return math.NaN(), true
	case *ast.StringNode:
		// YAML 1.2 reads 1e6 as a string; a number is what was meant.
		if isPlain(n.Token) {
			if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
				return f, true
			}
		}
	}
	d.fail(e.vpos, e.path, "want a number, got %s", describe(n))
	return 0, false
}

func (d *decoder) bool(e entry) (bool, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return false, false
	}
	d.spec.pos[e.path] = e.vpos
	if b, ok := n.(*ast.BoolNode); ok {
		return b.Value, true
	}
	d.fail(e.vpos, e.path, "want true or false, got %s", describe(n))
	return false, false
}

func (d *decoder) duration(e entry) (time.Duration, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return 0, false
	}
	d.spec.pos[e.path] = e.vpos
	s, isStr := n.(*ast.StringNode)
	if !isStr {
		if _, isInt := n.(*ast.IntegerNode); isInt {
			d.fail(e.vpos, e.path, "want a duration with a unit such as 100ms, 10s or 1m30s, got %s", describe(n))
			return 0, false
		}
		d.fail(e.vpos, e.path, "want a duration such as 100ms, 10s or 1m30s, got %s", describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(s.Value)
	if err != nil {
		d.fail(e.vpos, e.path, "invalid duration %s: want a Go duration such as 100ms, 10s or 1m30s", quoteShort(s.Value))
		return 0, false
	}
	return v, true
}

// posOf is the position where a node starts, for messages: a block
// mapping's first key, otherwise its first token.
func posOf(n ast.Node) position {
	switch m := n.(type) {
	case nil:
		return position{}
	case *ast.MappingNode:
		if m == nil {
			return position{}
		}
		if !m.IsFlowStyle && len(m.Values) > 0 {
			return posOf(m.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if m == nil {
			return position{}
		}
		return posOf(m.Key)
	}
	return tokenPos(n.GetToken())
}

func tokenPos(tk *token.Token) position {
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

func keyText(n ast.Node) string {
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return "?"
}

// describe names a YAML value for "want X, got Y" messages.
func describe(n ast.Node) string {
	switch n := n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.StringNode:
		return "string " + quoteShort(n.Value)
	case *ast.LiteralNode:
		return "string " + quoteShort(n.Value.Value)
	case *ast.IntegerNode:
		return "integer " + n.GetToken().Value
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "float " + n.GetToken().Value
	case *ast.BoolNode:
		return "boolean " + n.GetToken().Value
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a sequence"
	case *ast.TagNode:
		return "a tagged value"
	case *ast.AnchorNode:
		return "an anchored value"
	case *ast.AliasNode:
		return "an alias"
	}
	return "a " + n.Type().String()
}

// quoteShort quotes s, shortened to keep messages on one line.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
