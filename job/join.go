package job

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/streamd/streamd/keyed"
)

// A spec with `sources:` reads two named sources and joins them (issue
// 12): the first step of its pipeline is a join step over them, run by
// package join — a regular inner join (join.Inner, state kept forever or
// for `ttl`) or a tumbling window join (join.Tumbling). Decisions:
//
//   - `sources:` lists exactly two sources, each a `source:` with a name
//     (the source's operator name and uid: step-name rules, unique among
//     step names and uids, not "source" or "sink") and an optional
//     pipeline of filter and map steps that its records go through before
//     the join. Keyed steps come after the join. `source:` and `sources:`
//     together are an error.
//   - The join's key fields (`on: {left: F, right: G}`) are fields of the
//     two sides' records (after their pipelines) of the same type; records
//     reach the join's tasks hashed by their key bytes (Schema.AppendKey),
//     which agree for equal values of one type.
//   - `select:` names the output fields: a mapping {name: left.F} or a
//     list [left.F, right.G] (each named after its field). References
//     only, not expressions: a map step after the join computes anything
//     else. Without select the output is every field of both sides,
//     prefixed left_ and right_, which must fit a Row (a Nexmark record
//     does not: 2 × 21 fields).
//   - Each side stores, per key, only the fields the output reads
//     (RowCodec), in join's map state "<uid>/left" and "<uid>/right". The
//     state signature lists those fields and the window, so a select that
//     stores other fields, or another window, refuses an old checkpoint
//     (the fingerprint says which step); a changed ttl value does not.
//   - A regular join's records carry the timestamp of the record that
//     completed the pair; a window join's the window's last millisecond.
//     A window join needs event_time on both sources; records of a window
//     that has fired are dropped, counted and logged, as a window step's.
//     A TTL is processing time (Flink SQL's table.exec.state.ttl).
//   - A stored side record is at most keyed.MaxKeyBytes bytes encoded (it
//     is a map state's user key); a larger one fails the job.
//   - Default step names are numbered across the job: the sources'
//     pipelines first, in order, then the job's ("filter-1" in persons,
//     "filter-2" in auctions).

// JoinSpec is a `join:` step.
type JoinSpec struct {
	Left, Right       string // the names of two sources of Spec.Sources
	LeftKey, RightKey string // `on:`: a field of each side
	// Window is the size of the tumbling windows of a window join; 0 for
	// a regular join.
	Window time.Duration
	// TTL is how long a regular join keeps a stored record after it was
	// last stored (processing time); 0 keeps it forever.
	TTL time.Duration
	// Select lists the output fields in order; nil means every field of
	// both sides, prefixed left_ and right_.
	Select []JoinField
}

// JoinField is one output field of a join's select.
type JoinField struct {
	Name string // the output field
	Ref  string // "left.F" or "right.G", as written
	path string // where to report a problem with it
	Line int    // position of Ref
	Col  int
}

// Join sides as select writes them.
const (
	joinLeft  = "left"
	joinRight = "right"
)

// sourcePath is "sources[i]".
func sourcePath(i int) string { return fmt.Sprintf("sources[%d]", i) }

// brokenSourceKey is brokenKey for a path under sources[i]: a step of its
// pipeline is its own unit, an error in anything that shapes the source's
// records breaks "sources[i]", its name breaks the join's view of all
// sources ("sources").
func brokenSourceKey(path string) string {
	i := strings.IndexByte(path, ']')
	src, rest := path[:i+1], path[i+1:]
	switch {
	case strings.HasPrefix(rest, ".pipeline["):
		j := strings.IndexByte(rest, ']')
		if r := rest[j+1:]; r == ".name" || r == ".parallelism" {
			return "not-structural:" + path
		}
		return src + rest[:j+1]
	case rest == "", rest == ".type", strings.HasPrefix(rest, ".fields"), rest == ".pipeline":
		return src
	case rest == ".name":
		return "sources"
	case strings.HasPrefix(rest, ".event_time"):
		return src + ".event_time"
	}
	return "not-structural:" + path
}

// sources decodes `sources:`, a sequence of named sources.
func (d *decoder) sources(e entry) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(e.vpos, e.path, "want a sequence of named sources, got %s", describe(n))
		return
	}
	d.spec.pos[e.path] = e.kpos
	d.spec.Sources = make([]SourceSpec, len(seq.Values))
	for i, item := range seq.Values {
		src := &d.spec.Sources[i]
		*src = SourceSpec{Count: -1}
		path := sourcePath(i)
		p := posOf(item)
		d.spec.pos[path] = p
		d.source(entry{key: path, path: path, kpos: p, vpos: p, value: item}, src, path)
	}
	if len(seq.Values) == 0 {
		d.fail(e.vpos, e.path, "want the two sources to join, got none")
	}
}

// join decodes `join: {left: S, right: S, on: {left: F, right: G},
// window: {tumbling: D} | ttl: D, select: ...}`.
func (d *decoder) join(e entry, st *StepSpec) {
	ents, ok := d.entries(e.value, e.path, "a mapping with left, right, on and optionally window or ttl and select")
	if !ok {
		return
	}
	j := &JoinSpec{}
	st.Join = j
	var windowAt position
	for _, x := range ents {
		switch x.key {
		case "left":
			j.Left, _ = d.str(x)
		case "right":
			j.Right, _ = d.str(x)
		case "on":
			d.spec.pos[x.path] = x.kpos
			on, ok := d.entries(x.value, x.path, "a mapping of the key field of each side, such as {left: id, right: seller}")
			if !ok {
				continue
			}
			for _, y := range on {
				switch y.key {
				case joinLeft:
					j.LeftKey, _ = d.str(y)
				case joinRight:
					j.RightKey, _ = d.str(y)
				default:
					d.unknown(y, []string{joinLeft, joinRight})
				}
			}
			d.require(on, x.kpos, x.path, joinLeft, joinRight)
		case "window":
			windowAt = x.kpos
			d.spec.pos[x.path] = x.kpos
			w, ok := d.entries(x.value, x.path, "a mapping such as {tumbling: 10s}")
			if !ok {
				continue
			}
			for _, y := range w {
				switch y.key {
				case WindowTumbling:
					j.Window, _ = d.duration(y)
				case WindowSliding, WindowSession, "allowed_lateness":
					d.fail(y.kpos, y.path, "a window join has tumbling windows only (join.Tumbling), without allowed lateness")
				default:
					d.unknown(y, []string{WindowTumbling})
				}
			}
			d.require(w, x.kpos, x.path, WindowTumbling)
		case "ttl":
			j.TTL, _ = d.duration(x)
		case "select":
			d.joinSelect(x, j)
		default:
			d.unknown(x, []string{"left", "right", "on", "window", "ttl", "select"})
		}
	}
	for _, x := range ents {
		if x.key == "ttl" && windowAt.line > 0 {
			d.fail(x.kpos, x.path, "ttl is for a regular join; a window join keeps a window's records until the window fires (remove window: or ttl:)")
		}
	}
	d.require(ents, e.kpos, e.path, "left", "right", "on")
}

// joinSelect decodes a join's select: a mapping of output names to
// references, or a list of references named after their fields.
func (d *decoder) joinSelect(e entry, j *JoinSpec) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return
	}
	j.Select = []JoinField{}
	if seq, isSeq := n.(*ast.SequenceNode); isSeq {
		for i, item := range seq.Values {
			path := fmt.Sprintf("%s[%d]", e.path, i)
			p := posOf(item)
			ref, ok := d.str(entry{path: path, kpos: p, vpos: p, value: item})
			if !ok {
				d.bad[e.path] = true // the step's schema is unknown
				continue
			}
			_, field, _ := strings.Cut(ref, ".")
			j.Select = append(j.Select, JoinField{Name: strings.TrimSpace(field), Ref: ref, path: path, Line: p.line, Col: p.col})
		}
		if len(seq.Values) == 0 {
			d.fail(e.vpos, e.path, "select lists no fields (omit it for every field of both sides)")
		}
		return
	}
	ents, ok := d.entries(n, e.path, "a mapping of output fields to left.FIELD or right.FIELD, or a list of them")
	if !ok {
		return
	}
	for _, x := range ents {
		d.spec.pos[x.path+":key"] = x.kpos
		ref, ok := d.str(x)
		if !ok {
			d.bad[e.path] = true
			continue
		}
		j.Select = append(j.Select, JoinField{Name: x.key, Ref: ref, path: x.path, Line: x.vpos.line, Col: x.vpos.col})
	}
	if len(ents) == 0 {
		d.fail(e.vpos, e.path, "select lists no fields (omit it for every field of both sides)")
	}
}

// parseRef splits "left.F" or "right.G" into side and field.
func parseRef(ref string) (side, field string, ok bool) {
	side, field, ok = strings.Cut(strings.TrimSpace(ref), ".")
	if !ok || side != joinLeft && side != joinRight || checkFieldName(field) != "" {
		return "", "", false
	}
	return side, field, true
}

// sources checks `sources:`: two of them, their names, each as a source,
// and their pipelines (filter and map steps only).
func (v *validator) sources(names map[string]string) {
	s := v.s
	if v.skip("sources") {
		return
	}
	if len(s.Sources) != 2 && len(s.Sources) > 0 {
		v.errAt("sources", 0, 0, "a job joins two sources; sources: lists %d (join the result of a join in another job)", len(s.Sources))
	}
	for i := range s.Sources {
		src := &s.Sources[i]
		path := sourcePath(i)
		if v.skip(path) {
			continue
		}
		if !v.skip(path + ".name") {
			if msg := checkName(src.Name, "source"); msg != "" {
				v.errAt(path+".name", src.Line, src.Column, "%s", msg)
			} else if src.Name == SourceName || src.Name == SinkName {
				v.errAt(path+".name", src.Line, src.Column, "source name %q is reserved; choose another", src.Name)
			} else if j, dup := names[src.Name]; dup {
				v.errAt(path+".name", src.Line, src.Column, "duplicate source name %q (also the name of %s)", src.Name, j)
			} else {
				names[src.Name] = path
			}
		}
		v.source(path, src)
	}
	for i := range s.Sources {
		prefix := sourcePath(i) + ".pipeline"
		if v.skip(sourcePath(i)) {
			continue
		}
		v.steps(prefix, s.Sources[i].Pipeline, names)
		for j := range s.Sources[i].Pipeline {
			st := &s.Sources[i].Pipeline[j]
			if path := fmt.Sprintf("%s[%d]", prefix, j); st.Kind != StepFilter && st.Kind != StepMap && st.Kind != 0 && !v.skip(path) {
				v.errAt(path, st.Line, st.Column, "a source's pipeline has filter and map steps only (its records before the join); put the %s step after the join", st.Kind)
			}
		}
	}
	if v.skip("pipeline") {
		return
	}
	if len(s.Pipeline) == 0 || s.Pipeline[0].Kind != StepJoin && s.Pipeline[0].Kind != 0 {
		line, col := 0, 0
		if len(s.Pipeline) > 0 {
			line, col = s.Pipeline[0].Line, s.Pipeline[0].Column
		}
		v.errAt("pipeline", line, col, "a job with sources: starts its pipeline with a join of them (- join: {left: ..., right: ..., on: ...})")
	}
}

// joinPlacement reports a join anywhere but first in the job's pipeline
// of a spec with sources:.
func (v *validator) joinPlacement(prefix string, i int, st *StepSpec) {
	path := fmt.Sprintf("%s[%d]", prefix, i)
	if st.Kind != StepJoin || prefix != "pipeline" || v.skip(path) {
		return
	}
	switch {
	case len(v.s.Sources) == 0:
		v.errAt(path, st.Line, st.Column, "a join reads two named sources: write sources: (a list of sources with names) instead of source:")
	case i > 0:
		v.errAt(path, st.Line, st.Column, "a join is the first step of the pipeline (it reads the sources); a job has one join")
	}
}

// join checks a join step's values; Compile checks its fields against the
// sides' schemas.
func (v *validator) join(path string, st *StepSpec) {
	j := st.Join
	if j == nil {
		v.errAt(path, st.Line, st.Column, "a join step needs left, right and on")
		return
	}
	if len(v.s.Sources) > 0 && !v.skip("sources") {
		for _, side := range []struct{ key, name string }{{"left", j.Left}, {"right", j.Right}} {
			p := path + "." + side.key
			if v.skip(p) || v.sourceIndex(side.name) >= 0 {
				continue
			}
			var known []string
			for _, s := range v.s.Sources {
				known = append(known, s.Name)
			}
			v.errAt(p, st.Line, st.Column, "unknown source %s; the sources are %s", quoteShort(side.name), strings.Join(known, " and "))
		}
		if j.Left == j.Right && j.Left != "" && !v.skip(path+".right") {
			v.errAt(path+".right", st.Line, st.Column, "left and right are both %q; a join reads two different sources", j.Right)
		}
	}
	for _, k := range []struct{ path, field string }{{path + ".on.left", j.LeftKey}, {path + ".on.right", j.RightKey}} {
		if !v.skip(k.path) && !v.skip(path+".on") {
			if msg := checkFieldName(k.field); msg != "" {
				v.errAt(k.path, st.Line, st.Column, "%s", msg)
			}
		}
	}
	if p := path + ".window.tumbling"; !v.skip(p) && !v.skip(path+".window") && (j.Window < 0 || j.Window%time.Millisecond != 0 || j.Window == 0 && v.s.posOf(p, 0, 0).line > 0) {
		v.errAt(p, st.Line, st.Column, "must be a positive whole number of milliseconds, got %v", j.Window)
	}
	if p := path + ".ttl"; !v.skip(p) && (j.TTL < 0 || j.TTL == 0 && v.s.posOf(p, 0, 0).line > 0) {
		v.errAt(p, st.Line, st.Column, "must be > 0, got %v (omit ttl to keep records forever)", j.TTL)
	}
	seen := make(map[string]bool, len(j.Select))
	for _, f := range j.Select {
		if v.skip(f.path) {
			continue
		}
		if _, _, ok := parseRef(f.Ref); !ok {
			v.errAt(f.path, f.Line, f.Col, "want left.FIELD or right.FIELD (a field of one side; compute other values in a map step after the join), got %s", quoteShort(f.Ref))
			continue
		}
		kpos := v.s.posOf(f.path+":key", f.Line, f.Col)
		if msg := checkFieldName(f.Name); msg != "" {
			v.report(f.path, kpos, "%s", msg)
		} else if seen[f.Name] {
			v.report(f.path, kpos, "output field %q selected twice", f.Name)
		}
		seen[f.Name] = true
	}
}

func (v *validator) sourceIndex(name string) int {
	for i := range v.s.Sources {
		if v.s.Sources[i].Name == name {
			return i
		}
	}
	return -1
}

// Input is one source of a spec with sources: and the steps of its own
// pipeline.
type Input struct {
	Source *SourceSpec
	Schema *Schema // the source's records
	Stages []Stage // its pipeline (filter and map steps)
	Out    *Schema // its records after them: a side of the join
	path   string  // "sources[i]"
}

// Parallelism is the number of tasks of the source.
func (in *Input) Parallelism(p *Plan) int { return cmpOr(in.Source.Parallelism, p.Spec.Parallelism) }

// SourceSignature describes what the source's positions mean.
func (in *Input) SourceSignature() string { return "source " + in.Source.Type }

// EventTimeField returns the source's timestamp field, and false when the
// source has no event time.
func (in *Input) EventTimeField() (Field, bool) {
	if in.Source.EventTime == nil {
		return Field{}, false
	}
	return in.Schema.Lookup(in.Source.EventTime.Field)
}

// Join is a compiled join step: which inputs it reads, by which keys, how
// each side is stored, and how a pair becomes an output record. A Join is
// immutable and safe for concurrent use.
type Join struct {
	Left, Right       int   // indexes into Plan.Inputs
	LeftKey, RightKey Field // the key fields of the two sides (Input.Out)
	// Window is the tumbling window of a window join, 0 for a regular one;
	// TTL the regular join's retention, 0 = forever.
	Window, TTL time.Duration
	// LeftCodec and RightCodec store the fields of each side the output
	// reads.
	LeftCodec, RightCodec RowCodec
	copies                []joinCopy
}

// joinCopy moves one field of a side into the output row.
type joinCopy struct {
	right, str bool
	from, to   int
}

// Emit fills out with the output record of the pair (l, r). It does not
// allocate.
func (j *Join) Emit(l, r, out *Row) {
	for _, c := range j.copies {
		in := l
		if c.right {
			in = r
		}
		if c.str {
			out.Str[c.to] = in.Str[c.from]
		} else {
			out.Num[c.to] = in.Num[c.from]
		}
	}
}

// signature describes the join's state for StateSignature.
func (j *Join) signature() string {
	s := fmt.Sprintf(" on=%s:%s left=%s right=%s", j.RightKey.Name, j.RightKey.Type, j.LeftCodec.fields, j.RightCodec.fields)
	if j.Window > 0 {
		return s + fmt.Sprintf(" window=tumbling %v", j.Window)
	}
	if j.TTL > 0 {
		return s + " ttl"
	}
	return s
}

// RowCodec encodes the fields of a row that a join stores (keyed.Codec of
// Row): the numeric fields' 8 bytes each, big endian, in the order given,
// then each string as its length (uvarint) and bytes. Decode fills the
// same slots and leaves the others zero. Append does not allocate when
// dst has room; Decode allocates the strings.
type RowCodec struct {
	num, str []int // slots
	fields   string
}

// NewRowCodec returns the codec of fields (of one schema).
func NewRowCodec(fields []Field) RowCodec {
	var c RowCodec
	var names []string
	for _, f := range fields {
		if f.Type == TypeString {
			c.str = append(c.str, f.Slot)
		} else {
			c.num = append(c.num, f.Slot)
		}
		names = append(names, f.Name+":"+f.Type.String())
	}
	c.fields = "{" + strings.Join(names, ",") + "}"
	return c
}

// Append appends r's encoding.
func (c RowCodec) Append(dst []byte, r Row) []byte {
	for _, s := range c.num {
		dst = binary.BigEndian.AppendUint64(dst, r.Num[s])
	}
	for _, s := range c.str {
		dst = binary.AppendUvarint(dst, uint64(len(r.Str[s])))
		dst = append(dst, r.Str[s]...)
	}
	return dst
}

// Decode decodes what Append wrote. Anything else is an error wrapping
// keyed.ErrCorrupt: only one encoding of a row is accepted, so equal rows
// are equal bytes (the join counts copies of a record by its bytes).
func (c RowCodec) Decode(b []byte) (Row, error) {
	var r Row
	if len(b) < 8*len(c.num) {
		return r, fmt.Errorf("%w: a stored join record of %d bytes is shorter than its %d numeric fields", keyed.ErrCorrupt, len(b), len(c.num))
	}
	for _, s := range c.num {
		r.Num[s] = binary.BigEndian.Uint64(b)
		b = b[8:]
	}
	for i, s := range c.str {
		n, k := binary.Uvarint(b)
		if k <= 0 || k != uvarintLen(n) || n > uint64(len(b)-k) {
			return r, fmt.Errorf("%w: a stored join record's string %d has a bad length", keyed.ErrCorrupt, i)
		}
		r.Str[s] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	if len(b) > 0 {
		return r, fmt.Errorf("%w: a stored join record has %d bytes after its fields", keyed.ErrCorrupt, len(b))
	}
	return r, nil
}

func uvarintLen(n uint64) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}

// runSources compiles a spec with sources:: each source and its
// pipeline, the join, then the job's pipeline after it.
func (c *compiler) runSources() {
	s := c.s
	if c.broken[""] || c.broken["sources"] {
		return
	}
	plan := &Plan{Spec: s, Inputs: make([]Input, len(s.Sources))}
	ok := true
	for i := range s.Sources {
		src := &s.Sources[i]
		path := sourcePath(i)
		in := &plan.Inputs[i]
		in.Source, in.path = src, path
		if c.broken[path] {
			ok = false
			continue
		}
		in.Schema = c.sourceSchema(src)
		if in.Schema == nil {
			ok = false
			continue
		}
		c.eventTime(path, src, in.Schema)
		var complete bool
		in.Stages, in.Out, complete = c.steps(path+".pipeline", src.Pipeline, 0, in.Schema, nil)
		ok = ok && complete
	}
	if !ok || len(s.Sources) != 2 || c.broken["pipeline"] || len(s.Pipeline) == 0 || s.Pipeline[0].Kind != StepJoin || c.broken["pipeline[0]"] {
		return
	}
	c.prefix = "pipeline"
	stage, ok := c.joinStep(plan)
	if !ok {
		return
	}
	stages, out, complete := c.steps("pipeline", s.Pipeline, 1, stage.Out, []Stage{stage})
	plan.Stages, plan.SinkSchema = stages, out
	if complete {
		c.plan = plan
	}
}

// joinStep compiles pipeline[0], the join.
func (c *compiler) joinStep(plan *Plan) (Stage, bool) {
	s := c.s
	st := &s.Pipeline[0]
	js := st.Join
	path := "pipeline[0].join"
	j := &Join{Left: -1, Right: -1, Window: js.Window, TTL: js.TTL}
	for i := range s.Sources {
		switch s.Sources[i].Name {
		case js.Left:
			j.Left = i
		case js.Right:
			j.Right = i
		}
	}
	if j.Left < 0 || j.Right < 0 {
		panic(fmt.Sprintf("job: a join that validate accepted reads unknown sources %q and %q", js.Left, js.Right))
	}
	left, right := &plan.Inputs[j.Left], &plan.Inputs[j.Right]
	ok := true
	key := func(side, field string, in *Input) Field {
		kpath := path + ".on." + side
		f, found := in.Out.Lookup(field)
		if !found {
			c.errAt(kpath, s.posOf(kpath, st.Line, st.Column), "unknown field %q; the records of %s here are %s", field, in.Source.Name, in.Out)
			ok = false
		}
		return f
	}
	j.LeftKey, j.RightKey = key(joinLeft, js.LeftKey, left), key(joinRight, js.RightKey, right)
	if ok && j.LeftKey.Type != j.RightKey.Type {
		c.errAt(path+".on", s.posOf(path+".on", st.Line, st.Column), "the keys have different types: left %q is %s, right %q is %s (equal values of one type meet)", js.LeftKey, withArticle(j.LeftKey.Type), js.RightKey, withArticle(j.RightKey.Type))
		ok = false
	}
	if j.Window > 0 {
		for _, in := range []*Input{left, right} {
			if in.Source.EventTime == nil {
				c.errAt(path+".window", s.posOf(path+".window", st.Line, st.Column), "a window join needs event time on both sources: add event_time: {field: ...} to source %q", in.Source.Name)
				ok = false
			}
		}
	}
	// The output: the selected fields, or every field of both sides.
	type pick struct {
		name  string
		right bool
		from  Field
		path  string
		pos   position
	}
	var picks []pick
	if js.Select == nil {
		for _, side := range []struct {
			right bool
			in    *Input
		}{{false, left}, {true, right}} {
			prefix := joinLeft + "_"
			if side.right {
				prefix = joinRight + "_"
			}
			for _, f := range side.in.Out.Fields {
				picks = append(picks, pick{prefix + f.Name, side.right, f, path, s.posOf(path, st.Line, st.Column)})
			}
		}
	}
	for _, sel := range js.Select {
		side, field, _ := parseRef(sel.Ref)
		in := left
		if side == joinRight {
			in = right
		}
		f, found := in.Out.Lookup(field)
		if !found {
			c.errAt(sel.path, position{sel.Line, sel.Col}, "unknown field %q of %s (%s); its records here are %s", field, side, in.Source.Name, in.Out)
			ok = false
			continue
		}
		picks = append(picks, pick{sel.Name, side == joinRight, f, sel.path, s.posOf(sel.path+":key", sel.Line, sel.Col)})
	}
	out := &Schema{}
	var stored [2][]Field
	for _, p := range picks {
		if msg := checkFieldName(p.name); msg != "" {
			c.errAt(p.path, p.pos, "output field %q: %s; list the fields you need in select", p.name, msg)
			ok = false
			break
		}
		next, f, msg := withField(out, p.name, p.from.Type, 0, 0)
		if msg != "" {
			if js.Select == nil {
				c.errAt(p.path, p.pos, "cannot add field %q: %s; without select the output has every field of both sides (%d), so list the fields you need in select", p.name, msg, len(picks))
			} else {
				c.errAt(p.path, p.pos, "cannot add field %q: %s", p.name, msg)
			}
			ok = false
			break
		}
		out = next
		side := 0
		if p.right {
			side = 1
		}
		dup := false
		for _, g := range stored[side] {
			dup = dup || g.Name == p.from.Name
		}
		if !dup {
			stored[side] = append(stored[side], p.from)
		}
		j.copies = append(j.copies, joinCopy{right: p.right, str: f.Type == TypeString, from: p.from.Slot, to: f.Slot})
	}
	if !ok {
		return Stage{}, false
	}
	j.LeftCodec, j.RightCodec = NewRowCodec(stored[0]), NewRowCodec(stored[1])
	out.mustBeValid()
	return Stage{
		Step: st, In: left.Out, Out: out, Parallelism: cmpOr(st.Parallelism, s.Parallelism),
		Keyed: true, Key: j.LeftKey, Shuffle: true, Join: j,
	}, true
}
