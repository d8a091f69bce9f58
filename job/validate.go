package job

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
	"github.com/streamd/streamd/window"
)

// validator checks the values of a Spec (decoded, or built in code). It
// never sees YAML: Parse has already reported structural problems and
// marked their paths bad, and skip tells the validator to leave them alone.
type validator struct {
	s    *Spec
	skip func(path string) bool
	errs []*Error
}

// errAt reports a problem at path, positioned at the recorded position of
// path or else at (line, col).
func (v *validator) errAt(path string, line, col int, format string, args ...any) {
	v.report(path, v.s.posOf(path, line, col), format, args...)
}

func (v *validator) report(path string, p position, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.s.File, Line: p.line, Column: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// validate returns every value problem of s. skip may be nil.
func (s *Spec) validate(skip func(path string) bool) []*Error {
	if skip == nil {
		skip = func(string) bool { return false }
	}
	v := &validator{s: s, skip: skip}
	if skip("") {
		return nil
	}
	if !skip("name") {
		if msg := checkName(s.Name, "job"); msg != "" {
			v.errAt("name", 0, 0, "%s", msg)
		}
	}
	v.parallelism("parallelism", s.Parallelism, false, 0, 0)
	if !skip("max_parallelism") && (s.MaxParallelism < 1 || s.MaxParallelism > keyed.MaxMaxParallelism) {
		v.errAt("max_parallelism", 0, 0, "must be between 1 and %d, got %d", keyed.MaxMaxParallelism, s.MaxParallelism)
	}
	// Step names, uids and source names share one namespace (the
	// engine's operator names and ids): each maps to where it is taken.
	names := make(map[string]string)
	if len(s.Sources) > 0 {
		v.sources(names)
	} else {
		v.source("source", &s.Source)
	}
	v.steps("pipeline", s.Pipeline, names)
	v.sink()
	v.checkpointing()
	v.restart()
	return v.errs
}

// parallelism checks a parallelism; inherit allows 0 (use the job's).
func (v *validator) parallelism(path string, p int, inherit bool, line, col int) {
	if v.skip(path) || inherit && p == 0 {
		return
	}
	if p < 1 || p > engine.MaxParallelism {
		v.errAt(path, line, col, "must be between 1 and %d, got %d", engine.MaxParallelism, p)
	}
}

// source checks the source at path: "source", or "sources[i]".
func (v *validator) source(path string, src *SourceSpec) {
	if v.skip(path) {
		return
	}
	v.parallelism(path+".parallelism", src.Parallelism, true, src.Line, src.Column)
	switch src.Type {
	case SourceSequence:
		if !v.skip(path+".count") && src.Count < -1 {
			v.errAt(path+".count", src.Line, src.Column, "must be >= 0 or -1 (unbounded), got %d", src.Count)
		}
		if !v.skip(path+".keys") && src.Keys < 1 {
			v.errAt(path+".keys", src.Line, src.Column, "must be >= 1, got %d", src.Keys)
		}
		v.rate(path, src)
	case SourceFile, SourceKafka, SourceNATS, SourcePostgres:
		if src.Type == SourceFile && !v.skip(path+".path") && src.Path == "" {
			v.errAt(path+".path", src.Line, src.Column, "must not be empty")
		}
		v.connSource(path, src)
		if !v.fields(path, src) {
			return
		}
	case SourceNexmark:
		if !v.skip(path+".events") && (src.Events < -1 || src.Events > MaxNexmarkEvents) {
			v.errAt(path+".events", src.Line, src.Column, "must be between 0 and %d, or -1 (unbounded), got %d", MaxNexmarkEvents, src.Events)
		}
		v.rate(path, src)
	default:
		if !v.skip(path + ".type") {
			v.errAt(path+".type", src.Line, src.Column, "unknown source type %s: want sequence, file, nexmark, kafka, nats or postgres", quoteShort(src.Type))
		}
	}
	v.eventTime(path, src)
}

// fields checks the `fields:` schema of a file, kafka or nats source; it
// reports false when the fields could not be decoded.
func (v *validator) fields(path string, src *SourceSpec) bool {
	if v.skip(path + ".fields") {
		return false
	}
	if len(src.Fields) == 0 {
		v.errAt(path+".fields", src.Line, src.Column, "a %s source needs at least one field", src.Type)
	}
	var nNum, nStr int
	seen := make(map[string]bool, len(src.Fields))
	for _, f := range src.Fields {
		path := path + ".fields." + f.Name
		if v.skip(path) {
			continue
		}
		if msg := checkFieldName(f.Name); msg != "" {
			v.errAt(path, src.Line, src.Column, "%s", msg)
			continue
		}
		if seen[f.Name] {
			v.errAt(path, src.Line, src.Column, "declared twice")
		}
		seen[f.Name] = true
		v.metaField(path, src, f)
		switch {
		case f.Type == TypeString:
			nStr++
			if nStr > MaxStrFields {
				v.errAt(path, src.Line, src.Column, "%s", tooManyMsg(f.Type))
			}
		case f.Type.isNum():
			nNum++
			if nNum > MaxNumFields {
				v.errAt(path, src.Line, src.Column, "%s", tooManyMsg(f.Type))
			}
		default:
			v.errAt(path, src.Line, src.Column, "invalid type %v", f.Type)
		}
	}
	return true
}

func (v *validator) rate(path string, src *SourceSpec) {
	if !v.skip(path+".rate") && (src.RatePerSec < 0 || math.IsNaN(src.RatePerSec) || math.IsInf(src.RatePerSec, 0)) {
		v.errAt(path+".rate", src.Line, src.Column, "must be a finite number >= 0 (0 = as fast as possible), got %v", src.RatePerSec)
	}
}

// eventTime checks the values of `event_time:`; Compile checks its field
// against the source's schema.
func (v *validator) eventTime(path string, src *SourceSpec) {
	et := src.EventTime
	if et == nil || v.skip(path+".event_time") {
		return
	}
	check := func(field string, bad bool, format string, args ...any) {
		fpath := path + ".event_time." + field
		if bad && !v.skip(fpath) {
			v.errAt(fpath, et.Line, et.Column, format, args...)
		}
	}
	check("field", et.Field == "", "missing timestamp field")
	// Timestamps are whole milliseconds, and so is the engine's bound.
	check("out_of_orderness", et.OutOfOrderness < 0 || et.OutOfOrderness%time.Millisecond != 0,
		"must be a whole number of milliseconds >= 0, got %v", et.OutOfOrderness)
	check("idleness", et.Idleness < 0, "must be >= 0 (0 = never idle), got %v", et.Idleness)
	check("watermark_interval", et.WatermarkInterval <= 0, "must be > 0, got %v", et.WatermarkInterval)
}

// steps checks the steps of the pipeline at prefix ("pipeline" or
// "sources[i].pipeline"); names holds the names and uids taken so far.
func (v *validator) steps(prefix string, steps []StepSpec, names map[string]string) {
	s := v.s
	if v.skip(prefix) {
		return
	}
	if len(steps) > MaxSteps {
		v.errAt(prefix, 0, 0, "%d steps; the limit is %d", len(steps), MaxSteps)
		return
	}
	for i := range steps {
		st := &steps[i]
		path := fmt.Sprintf("%s[%d]", prefix, i)
		if v.skip(path) && st.Kind == 0 {
			continue
		}
		if !v.skip(path + ".name") {
			if msg := checkName(st.Name, "step"); msg != "" {
				v.errAt(path+".name", st.Line, st.Column, "%s", msg)
			} else if st.Name == SourceName || st.Name == SinkName {
				v.errAt(path+".name", st.Line, st.Column, "step name %q is taken by the job's %s; choose another", st.Name, st.Name)
			} else if j, dup := names[st.Name]; dup {
				v.errAt(path+".name", st.Line, st.Column, "duplicate step name %q (also the name of %s); step names must be unique", st.Name, j)
			} else {
				names[st.Name] = path
			}
		}
		if st.UID != "" && !v.skip(path+".uid") {
			// A uid shares the names' namespace: the engine identifies
			// state by uid, defaulting to the name.
			if msg := checkName(st.UID, "uid"); msg != "" {
				v.errAt(path+".uid", st.Line, st.Column, "%s", msg)
			} else if st.UID == SourceName || st.UID == SinkName {
				v.errAt(path+".uid", st.Line, st.Column, "uid %q is taken by the job's %s; choose another", st.UID, st.UID)
			} else if j, dup := names[st.UID]; dup && j != path {
				v.errAt(path+".uid", st.Line, st.Column, "uid %q is the name or uid of %s; ids must be unique", st.UID, j)
			} else {
				names[st.UID] = path
			}
		}
		v.parallelism(path+".parallelism", st.Parallelism, true, st.Line, st.Column)
		v.joinPlacement(prefix, i, st)
		opPath := path + "." + st.Kind.String()
		if v.skip(opPath) {
			continue
		}
		switch st.Kind {
		case StepFilter:
			v.exprText(opPath, st.Expr, st.Line, st.Column)
		case StepMap:
			if len(st.Assign) == 0 {
				v.errAt(opPath, st.Line, st.Column, "a map step needs at least one field")
			}
			seen := make(map[string]bool, len(st.Assign))
			for _, a := range st.Assign {
				apath := opPath + "." + a.Field
				if v.skip(apath) {
					continue
				}
				kpos := s.posOf(apath+":key", a.Line, a.Column)
				if msg := checkFieldName(a.Field); msg != "" {
					v.report(apath, kpos, "%s", msg)
				}
				if seen[a.Field] {
					v.errAt(apath, a.Line, a.Column, "assigned twice in one step")
				}
				seen[a.Field] = true
				v.exprText(apath, a.Expr, a.Line, a.Column)
			}
		case StepKeyBy, StepSum, StepMin, StepMax:
			if msg := checkFieldName(st.Field); msg != "" {
				v.errAt(opPath, st.Line, st.Column, "%s", msg)
			}
		case StepCount:
		case StepReduce:
			v.reduce(opPath, st)
		case StepAggregate:
			v.aggregate(opPath, st)
		case StepWindow:
			v.window(opPath, st)
		case StepJoin:
			v.join(opPath, st)
		default:
			v.errAt(path, st.Line, st.Column, "invalid step kind %v", st.Kind)
		}
	}
}

func (v *validator) reduce(path string, st *StepSpec) {
	r := st.Reduce
	if r == nil {
		v.errAt(path, st.Line, st.Column, "a reduce step needs field and value")
		return
	}
	if !v.skip(path + ".field") {
		if msg := checkFieldName(r.Field); msg != "" {
			v.errAt(path+".field", st.Line, st.Column, "%s", msg)
		} else if r.Field == reduceAcc {
			v.errAt(path+".field", st.Line, st.Column, "the reduced field cannot be named %q: that is the name of the accumulator in value", reduceAcc)
		}
	}
	if !v.skip(path + ".value") {
		v.exprText(path+".value", r.Value, st.Line, st.Column)
	}
	if r.Init != "" && !v.skip(path+".init") {
		v.exprText(path+".init", r.Init, st.Line, st.Column)
	}
}

func (v *validator) aggregate(path string, st *StepSpec) {
	if len(st.Accs) == 0 {
		v.errAt(path, st.Line, st.Column, "an aggregate step needs at least one accumulator")
	}
	seen := make(map[string]bool, len(st.Accs))
	for _, a := range st.Accs {
		apath := path + "." + a.Field
		if v.skip(apath) {
			continue
		}
		kpos := v.s.posOf(apath+":key", a.Line, a.Column)
		if msg := checkFieldName(a.Field); msg != "" {
			v.report(apath, kpos, "%s", msg)
		}
		if seen[a.Field] {
			v.report(apath, kpos, "two accumulators for one field")
		}
		seen[a.Field] = true
		switch {
		case a.Kind == AccCount:
			if a.Expr != "" {
				v.errAt(apath, a.Line, a.Column, "count takes no value (write {count: {}})")
			}
		case a.Kind > AccCount && int(a.Kind) < len(accKindNames):
			epath := apath + "." + a.Kind.String()
			if !v.skip(epath) {
				v.exprText(epath, a.Expr, a.Line, a.Column)
			}
		default:
			v.errAt(apath, a.Line, a.Column, "invalid accumulator kind %v", a.Kind)
		}
	}
}

func (v *validator) window(path string, st *StepSpec) {
	w := st.Window
	if w == nil {
		v.errAt(path, st.Line, st.Column, "a window step needs windows and an aggregate")
		return
	}
	// Window bounds and timestamps are whole milliseconds (package window).
	dur := func(field string, d time.Duration, zeroOK bool) {
		p := path + "." + field
		if v.skip(p) || d%time.Millisecond == 0 && (d > 0 || zeroOK && d == 0) {
			return
		}
		if zeroOK {
			v.errAt(p, st.Line, st.Column, "must be a whole number of milliseconds >= 0, got %v", d)
		} else {
			v.errAt(p, st.Line, st.Column, "must be a positive whole number of milliseconds, got %v", d)
		}
	}
	switch w.Kind {
	case WindowTumbling:
		dur(WindowTumbling, w.Size, false)
	case WindowSliding:
		dur("sliding.size", w.Size, false)
		dur("sliding.slide", w.Slide, false)
		if w.Size > 0 && w.Slide > 0 && w.Size%time.Millisecond == 0 && w.Slide%time.Millisecond == 0 && !v.skip(path+".sliding") {
			// The limits of package window: a window of at most
			// MaxPanesPerWindow panes of gcd(size, slide).
			size, slide := w.Size.Milliseconds(), w.Slide.Milliseconds()
			if pane := gcdInt64(size, slide); size/pane > window.MaxPanesPerWindow {
				v.errAt(path+".sliding", st.Line, st.Column, "a window of %v sliding by %v is %d panes of %dms, more than the limit %d: choose a slide that divides the size", w.Size, w.Slide, size/pane, pane, window.MaxPanesPerWindow)
			}
		}
	case WindowSession:
		dur("session.gap", w.Gap, false)
	case "":
		// Parse reported it.
	default:
		v.errAt(path, st.Line, st.Column, "unknown kind of windows %s: want tumbling, sliding or session", quoteShort(w.Kind))
	}
	dur("allowed_lateness", w.AllowedLateness, true)
	apath := path + ".aggregate"
	if v.skip(apath) {
		return
	}
	v.aggregate(apath, st)
	for _, a := range st.Accs {
		if !slices.Contains(windowAccKinds, a.Kind) && a.Kind >= AccCount && int(a.Kind) < len(accKindNames) && !v.skip(apath+"."+a.Field) {
			v.errAt(apath+"."+a.Field, a.Line, a.Column, "a window step aggregates with count, sum, min, max or avg, not %s", a.Kind)
		}
	}
}

func gcdInt64(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (v *validator) exprText(path, src string, line, col int) {
	switch {
	case src == "":
		v.errAt(path, line, col, "empty expression")
	case len(src) > MaxExprBytes:
		v.errAt(path, line, col, "expression is %d bytes; the limit is %d", len(src), MaxExprBytes)
	}
}

func (v *validator) sink() {
	sk := &v.s.Sink
	if v.skip("sink") {
		return
	}
	v.parallelism("sink.parallelism", sk.Parallelism, true, sk.Line, sk.Column)
	switch sk.Type {
	case SinkFile:
		if !v.skip("sink.path") && sk.Path == "" {
			v.errAt("sink.path", sk.Line, sk.Column, "must not be empty")
		}
	case SinkStdout, SinkBlackhole:
	case SinkKafka, SinkNATS, SinkPostgres:
		v.connSink(sk)
	default:
		if !v.skip("sink.type") {
			v.errAt("sink.type", sk.Line, sk.Column, "unknown sink type %s: want file, stdout, blackhole, kafka, nats or postgres", quoteShort(sk.Type))
		}
	}
}

func (v *validator) checkpointing() {
	cp := v.s.Checkpointing
	if cp == nil || v.skip("checkpointing") {
		return
	}
	check := func(field string, bad bool, format string, args ...any) {
		path := "checkpointing." + field
		if bad && !v.skip(path) {
			v.errAt(path, cp.Line, cp.Column, format, args...)
		}
	}
	check("interval", cp.Interval <= 0, "must be > 0, got %v", cp.Interval)
	check("timeout", cp.Timeout <= 0, "must be > 0, got %v", cp.Timeout)
	check("min_pause", cp.MinPause < 0, "must be >= 0, got %v", cp.MinPause)
	check("mode", cp.Mode != ModeExactlyOnce && cp.Mode != ModeAtLeastOnce,
		"unknown mode %s: want exactly_once or at_least_once", quoteShort(cp.Mode))
	check("max_concurrent", cp.MaxConcurrent < 1 || cp.MaxConcurrent > coord.MaxConcurrentLimit,
		"must be between 1 and %d, got %d", coord.MaxConcurrentLimit, cp.MaxConcurrent)
	check("tolerable_failures", cp.TolerableFailures < 0, "must be >= 0, got %d", cp.TolerableFailures)
	check("retained", cp.Retained < 1 || cp.Retained > engine.MaxRetained,
		"must be between 1 and %d, got %d", engine.MaxRetained, cp.Retained)
	_, err := snapshot.ParseCompression(cp.Compression)
	check("compression", err != nil, "unknown compression %s: want zstd, s2 or none", quoteShort(cp.Compression))
}

func (v *validator) restart() {
	r := v.s.Restart
	if r == nil || r.Line == 0 || v.skip("restart") {
		return
	}
	check := func(field string, bad bool, format string, args ...any) {
		path := "restart." + field
		if bad && !v.skip(path) {
			v.errAt(path, r.Line, r.Column, format, args...)
		}
	}
	switch r.Strategy {
	case RestartFixedDelay:
		check("attempts", r.Attempts < 0 || r.Attempts > MaxRestartAttempts, "must be between 0 and %d, got %d", MaxRestartAttempts, r.Attempts)
		check("delay", r.Delay < 0, "must be >= 0, got %v", r.Delay)
	case RestartExponentialDelay:
		check("initial_backoff", r.InitialBackoff <= 0, "must be > 0, got %v", r.InitialBackoff)
		check("max_backoff", r.MaxBackoff < r.InitialBackoff, "must be >= initial_backoff (%v), got %v", r.InitialBackoff, r.MaxBackoff)
		check("backoff_multiplier", !(r.Multiplier >= 1 && r.Multiplier <= 100), "must be between 1 and 100, got %g", r.Multiplier)
		check("reset_backoff_threshold", r.ResetThreshold <= 0, "must be > 0, got %v", r.ResetThreshold)
		check("jitter_factor", !(r.JitterFactor >= 0 && r.JitterFactor <= 1), "must be between 0 and 1, got %g", r.JitterFactor)
		check("attempts_before_reset", r.AttemptsBeforeReset < 1 || r.AttemptsBeforeReset > MaxRestartAttempts, "must be between 1 and %d, got %d", MaxRestartAttempts, r.AttemptsBeforeReset)
	}
	if r.Strategy != RestartNone && v.s.Checkpointing == nil && !v.skip("restart.strategy") {
		v.errAt("restart.strategy", r.Line, r.Column, "restarting a job without checkpointing would start it over and repeat its output: add checkpointing or use strategy: none")
	}
}

// checkName validates a job name ([a-z0-9][a-z0-9-]*, the engine's rule)
// or a step name ([a-z0-9_-]+, so default names like "key_by-1" fit); both
// at most MaxNameLen bytes. It returns "" when the name is fine.
func checkName(name, what string) string {
	if name == "" {
		return fmt.Sprintf("missing %s name", what)
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("%s name is longer than %d bytes", what, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || what != "job" && c == '_' {
			continue
		}
		if what != "job" {
			return fmt.Sprintf("invalid %s name %s: use lower-case letters, digits, '-' and '_'", what, quoteShort(name))
		}
		return fmt.Sprintf("invalid job name %s: use lower-case letters, digits and '-'", quoteShort(name))
	}
	if what == "job" && name[0] == '-' {
		return fmt.Sprintf("invalid job name %s: start it with a lower-case letter or a digit", quoteShort(name))
	}
	return ""
}
