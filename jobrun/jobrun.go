// Package jobrun turns a compiled YAML job (job.Plan) into an engine job
// and runs it: it maps the spec's source, steps and sink onto the typed
// engine API over job.Row records, wires checkpointing to a snapshot store
// in the data dir, and reports statistics. cmd/streamd and the benchmarks
// use it, so a YAML job runs the same code in both.
//
// Key partitioning: a key_by followed by an aggregation shuffles by key
// group. Later aggregations on the same key with the same parallelism chain
// with it (the stream is already partitioned: Flink's
// reinterpretAsKeyedStream) instead of shuffling again; a map that writes
// the key field or a change of parallelism ends that. The plan decides
// which (job.Stage.Shuffle), and lays the job out as the engine will run it
// (job.Plan.Vertices), so that the job package checks the engine's limits
// on that layout with the spec's lines; Build refuses a job the engine
// would refuse all the same.
//
// Connector sources and sinks (connectors.go): kafka and nats specs map
// onto connectors/kafka and connectors/nats over job.Row, values as JSON
// objects both ways (job.MessageDecoder, job.Schema.AppendJSON). Build
// calls kafka.CheckTransactionTimeout (package job checks the same rule
// with the spec's line, so a refusal here is a bug); Built.Run calls
// nats.CheckDuplicateWindow before the job starts and logs its warning.
// Build never connects: servers are first reached when the job runs.
//
// It imports engine, job, snapshot, keyed and the connectors, and nothing
// under cmd.
package jobrun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/connectors/console"
	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/connectors/nats"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/join"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
	"github.com/streamd/streamd/window"
)

// Options configures how a plan runs.
type Options struct {
	// Store receives checkpoints; required to run a spec with checkpointing
	// (Run fails without it).
	Store *snapshot.Store
	// Pinning selects CPU pinning of tasks.
	Pinning engine.PinMode
	// Stdout receives the stdout sink's lines. Default os.Stdout.
	Stdout io.Writer
	// Logger receives operational messages.
	Logger func(format string, args ...any)
	// OnCheckpoint receives checkpoint statistics.
	OnCheckpoint func(engine.CheckpointStats)
	// AllowDuplicateOutput is engine.Options.AllowDuplicateOutput.
	AllowDuplicateOutput bool
	// Restore is engine.Options.Restore: restore from a savepoint, and
	// whether state of removed operators may be dropped. Default nil.
	Restore *engine.RestoreOptions
	// FS is the filesystem the file sink writes through (Pebble's vfs.FS).
	// Default vfs.Default. Open the Store with the same FS
	// (snapshot.Options.FS): tests crash both at once.
	FS vfs.FS
}

// Built is a job ready to run.
type Built struct {
	Job *engine.Job
	// Blackhole counts the records of a blackhole sink (nil otherwise).
	Blackhole *console.Blackhole[job.Row]

	late   []lateCounter // one per window step and window join, in pipeline order
	logger func(format string, args ...any)
	// startChecks run when the job starts (Run), before its tasks: the
	// checks of a connector that need its server (nats.CheckDuplicateWindow)
	// or its environment (a postgres sink's password_env). An error stops
	// Run before the job starts.
	startChecks []func(context.Context) error
}

// lateCounter counts the records a window step or a window join dropped
// as late.
type lateCounter struct {
	step, kind string // kind: "window step" or "join"
	n          *atomic.Int64
}

// LateRecords returns, for every window step by name, the records it has
// dropped as late so far (every window they belong to was past the
// watermark plus the allowed lateness): Flink's numLateRecordsDropped.
// It may be called while the job runs; nil when the job has no window step.
func (b *Built) LateRecords() map[string]int64 {
	if len(b.late) == 0 {
		return nil
	}
	m := make(map[string]int64, len(b.late))
	for _, l := range b.late {
		m[l.step] = l.n.Load()
	}
	return m
}

// Run runs the job (Job.Run) and then logs, through Options.Logger, the
// late records each window step dropped, so that a user sees data the
// windows left out. Before the job starts it makes the checks of its
// connectors that need their servers, and logs their warnings (a nats
// sink's duplicate window shorter than a checkpoint interval plus a
// recovery).
func (b *Built) Run(ctx context.Context) error {
	for _, check := range b.startChecks {
		if err := check(ctx); err != nil {
			return err
		}
	}
	err := b.Job.Run(ctx)
	if b.logger != nil {
		for _, l := range b.late {
			b.logger("streamd: %s %q dropped %d late records", l.kind, l.step, l.n.Load())
		}
	}
	return err
}

// Build maps plan onto an engine job.
func Build(plan *job.Plan, opts Options) (*Built, error) {
	spec := plan.Spec
	eo := engine.Options{
		Parallelism:          spec.Parallelism,
		MaxParallelism:       spec.MaxParallelism,
		Pinning:              opts.Pinning,
		Fingerprint:          plan.Fingerprint(),
		Logger:               opts.Logger,
		OnCheckpoint:         opts.OnCheckpoint,
		AllowDuplicateOutput: opts.AllowDuplicateOutput,
		Restore:              opts.Restore,
	}
	if c := spec.Checkpointing; c != nil {
		mode := coord.ExactlyOnce
		if c.Mode == "at_least_once" {
			mode = coord.AtLeastOnce
		}
		eo.Checkpointing = &engine.CheckpointOptions{
			Options: coord.Options{
				Interval: c.Interval, Timeout: c.Timeout, MinPause: c.MinPause,
				MaxConcurrent: c.MaxConcurrent, TolerableFailures: c.TolerableFailures, Mode: mode,
			},
			Store:           opts.Store,
			Retained:        c.Retained,
			FullCheckpoints: !c.Incremental,
		}
	}
	j := engine.NewJob(spec.Name, eo)
	b := &Built{Job: j, logger: opts.Logger}

	var s engine.Stream[job.Row]
	if len(plan.Inputs) == 0 {
		src := &plan.Spec.Source
		s, err := buildSource(j, job.SourceName, src, plan.SourceSchema, plan.SourceSignature())
		if err != nil {
			return nil, err
		}
		if s, err = b.stages(s, plan.Stages); err != nil {
			return nil, err
		}
		return b.finish(j, s, plan, opts)
	}
	// sources: each source and its pipeline, then the join.
	sides := make([]engine.Stream[job.Row], len(plan.Inputs))
	for i := range plan.Inputs {
		in := &plan.Inputs[i]
		s, err := buildSource(j, in.Source.Name, in.Source, in.Schema, in.SourceSignature())
		if err != nil {
			return nil, err
		}
		if sides[i], err = b.stages(s, in.Stages); err != nil {
			return nil, err
		}
	}
	s = b.join(plan, sides)
	s, err := b.stages(s, plan.Stages[1:])
	if err != nil {
		return nil, err
	}
	return b.finish(j, s, plan, opts)
}

// stages adds the operators of stages after s.
func (b *Built) stages(s engine.Stream[job.Row], stages []job.Stage) (engine.Stream[job.Row], error) {
	for i := range stages {
		st := &stages[i]
		name := st.Step.Name
		par := engine.WithParallelism(st.Parallelism)
		switch st.Step.Kind {
		case job.StepFilter:
			f := st.Filter
			s = engine.Transform(s, name, func(_ *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
				return func(r *job.Row) {
					if f(r) {
						next(r)
					}
				}, nil
			}, par)
		case job.StepMap:
			m := st.Map
			s = engine.Transform(s, name, func(_ *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
				return func(r *job.Row) {
					m(r)
					next(r)
				}, nil
			}, par)
		case job.StepKeyBy:
			// An exchange, not an operator: the next aggregation shuffles.
		case job.StepWindow:
			key, in, w := st.Key, st.In, st.Window
			sel := engine.BytesKey(func(dst []byte, r *job.Row) []byte { return in.AppendKey(dst, r, key) })
			ks := engine.AsKeyed(s, sel)
			if st.Shuffle {
				ks = engine.KeyBy(s, sel)
			}
			opts := []engine.OpOption{par, engine.WithStateSignature(st.StateSignature())}
			if st.Step.UID != "" {
				opts = append(opts, engine.WithUID(st.Step.UID))
			}
			late := &atomic.Int64{}
			b.late = append(b.late, lateCounter{step: name, kind: "window step", n: late})
			s = window.Aggregate(ks, name, w.Assigner, w.Function(),
				window.Options{AllowedLateness: w.AllowedLateness, LateRecords: late},
				func(ctx *engine.KeyedContext, win window.Window, acc job.WindowAcc, r *job.Row) {
					w.Emit(ctx.Key(), win, &acc, r)
				}, opts...)
		case job.StepCount, job.StepSum, job.StepMin, job.StepMax, job.StepReduce, job.StepAggregate:
			key := st.Key
			in := st.In
			sel := engine.BytesKey(func(dst []byte, r *job.Row) []byte { return in.AppendKey(dst, r, key) })
			ks := engine.AsKeyed(s, sel)
			if st.Shuffle {
				ks = engine.KeyBy(s, sel)
			}
			// State belongs to the step: its uid (default its name) and
			// what its state means, not its place in the pipeline.
			opts := []engine.OpOption{par, engine.WithStateSignature(st.StateSignature())}
			if st.Step.UID != "" {
				opts = append(opts, engine.WithUID(st.Step.UID))
			}
			switch {
			case st.Reduce != nil:
				s = engine.ProcessRaw(ks, name, keyedOp(st.Reduce.States, st.Reduce.Open), opts...)
			case st.Accs != nil:
				s = engine.ProcessRaw(ks, name, keyedOp(st.Accs.States, st.Accs.Open), opts...)
			default:
				s = engine.ProcessRaw(ks, name, aggregate(st.Agg), opts...)
			}
		default:
			return s, fmt.Errorf("jobrun: step %q: unknown kind %v", name, st.Step.Kind)
		}
	}
	return s, nil
}

// finish adds the sink and checks the job as the engine will.
func (b *Built) finish(j *engine.Job, s engine.Stream[job.Row], plan *job.Plan, opts Options) (*Built, error) {
	spec := plan.Spec
	if err := buildSink(j, s, plan, opts, b); err != nil {
		return nil, err
	}
	if err := engineProblems(j, opts.Store == nil); err != nil {
		return nil, fmt.Errorf("jobrun: the engine refuses job %q, whose spec was accepted (a bug: package job should have named the field): %w", spec.Name, err)
	}
	return b, nil
}

// engineProblems returns what the engine would refuse of j before running
// it (engine.Job.Validate), without the missing store when noStore: a
// caller that only describes the job (streamd validate) gives none.
func engineProblems(j *engine.Job, noStore bool) error {
	err := j.Validate()
	if !noStore || err == nil {
		return err
	}
	var keep []error
	var walk func(error)
	walk = func(err error) {
		if errs, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range errs.Unwrap() {
				walk(e)
			}
		} else if !errors.Is(err, engine.ErrNoStore) {
			keep = append(keep, err)
		}
	}
	walk(err)
	return errors.Join(keep...)
}

// buildSource adds a source of the spec, as operator name, with records
// of schema. Every source is splittable (engine.FromSplitSource), so a job
// restores with another parallelism; they restore the checkpoints of
// their plain forms too.
func buildSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, sig string) (engine.Stream[job.Row], error) {
	opt := []engine.OpOption{engine.WithStateSignature(sig)}
	if src.Parallelism > 0 {
		opt = append(opt, engine.WithParallelism(src.Parallelism))
	}
	s, err := newSource(j, name, src, schema, opt)
	if err != nil || src.EventTime == nil {
		return s, err
	}
	ts, ok := schema.Lookup(src.EventTime.Field)
	if !ok || ts.Type != job.TypeInt {
		panic(fmt.Sprintf("jobrun: event_time field %q is not an int field of the source's schema %s, and Compile accepted it", src.EventTime.Field, schema))
	}
	slot := ts.Slot
	return engine.WithWatermarks(s, engine.WatermarkStrategy[job.Row]{
		Timestamp:      func(r *job.Row) int64 { return int64(r.Num[slot]) },
		OutOfOrderness: src.EventTime.OutOfOrderness,
		Idleness:       src.EventTime.Idleness,
		Interval:       src.EventTime.WatermarkInterval,
	}), nil
}

// newSource adds the source itself, without event time.
func newSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, opt []engine.OpOption) (engine.Stream[job.Row], error) {
	switch src.Type {
	case job.SourceNexmark:
		return nexmarkSource(j, name, src, schema, opt)
	case "sequence":
		ks, _ := schema.Lookup("key")
		ss, _ := schema.Lookup("seq")
		kslot, sslot := ks.Slot, ss.Slot
		seq := sequence.NewSplitSource(sequence.Options[job.Row]{
			Count: src.Count, Keys: src.Keys, RatePerSec: src.RatePerSec,
			Make: func(i, key int64, r *job.Row) {
				r.Num[kslot] = uint64(key)
				r.Num[sslot] = uint64(i)
			},
		})
		return engine.FromSplitSource(j, name, seq, seq.NewReader, opt...), nil
	case job.SourceKafka:
		return kafkaSource(j, name, src, schema, opt)
	case job.SourceNATS:
		return natsSource(j, name, src, schema, opt)
	case job.SourcePostgres:
		return postgresSource(j, name, src, schema, opt)
	case "file":
		files := file.NewSplitSource(file.SourceOptions[job.Row]{
			Path:   src.Path,
			Decode: func(line []byte, r *job.Row) error { return schema.DecodeJSON(line, r) },
		})
		return engine.FromSplitSource(j, name, files, files.NewReader, opt...), nil
	}
	return engine.Stream[job.Row]{}, fmt.Errorf("jobrun: unknown source type %q", src.Type)
}

func buildSink(j *engine.Job, s engine.Stream[job.Row], plan *job.Plan, opts Options, b *Built) error {
	spec := plan.Spec.Sink
	schema := plan.SinkSchema
	encode := func(dst []byte, r *job.Row) []byte { return schema.AppendJSON(dst, r) }
	// A checkpoint's pending transactions are only the same kind of sink's
	// to commit.
	opt := []engine.OpOption{engine.WithStateSignature(plan.SinkSignature())}
	if spec.Parallelism > 0 {
		opt = append(opt, engine.WithParallelism(spec.Parallelism))
	}
	switch spec.Type {
	case "file":
		sink, err := file.NewSink(plan.Spec.Name, file.SinkOptions[job.Row]{Dir: spec.Path, Encode: encode, FS: opts.FS})
		if err != nil {
			return err
		}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](sink), opt...)
	case "stdout":
		out := console.NewStdout(encode)
		if opts.Stdout != nil {
			out.Out = opts.Stdout
		}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](out), opt...)
	case "blackhole":
		b.Blackhole = &console.Blackhole[job.Row]{}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](b.Blackhole), opt...)
	case job.SinkKafka:
		sink, err := kafkaSink(plan)
		if err != nil {
			return err
		}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](sink), opt...)
	case job.SinkNATS:
		sink, err := nats.NewSink(plan.Spec.Name, natsOptions(plan))
		if err != nil {
			return fmt.Errorf("jobrun: sink: %w", err)
		}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](sink), opt...)
		b.startChecks = append(b.startChecks, natsDuplicateCheck(plan, opts.Logger))
	case job.SinkPostgres:
		sink, err := postgresSink(plan)
		if err != nil {
			return err
		}
		engine.ToSink(s, job.SinkName, engine.Sink[job.Row](sink), opt...)
		b.startChecks = append(b.startChecks, postgresEnvCheck(plan))
	default:
		return fmt.Errorf("jobrun: unknown sink type %q", spec.Type)
	}
	return nil
}

// aggregate builds a keyed running aggregation: one 8-byte value per key.
func aggregate(a *job.Aggregate) func(rt *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
	return func(rt *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
		b := rt.Backend()
		// The name fits keyed.MaxStateNameBytes with any step name (job
		// checks it against "<step>/value").
		id, err := b.Register(rt.StateName("value"), keyed.KindValue, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		var buf [8]byte
		return func(r *job.Row) {
			var prev uint64
			v, ok := b.Get(id)
			if ok {
				prev = binary.LittleEndian.Uint64(v)
			}
			binary.LittleEndian.PutUint64(buf[:], a.Apply(prev, ok, r))
			b.Put(id, buf[:])
			next(r)
		}, nil
	}
}

// keyedOp builds a reduce or aggregate step: it registers the states the
// step declares (value states, and map states used as sets) and opens the
// step's operator over them.
func keyedOp(decls []job.StateDecl, open func(job.StateStore) func(*job.Row)) func(rt *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
	return func(rt *engine.Runtime, next func(*job.Row)) (func(*job.Row), error) {
		st := &stateStore{b: rt.Backend(), ids: make([]keyed.StateID, len(decls))}
		for i, d := range decls {
			kind := keyed.KindValue
			if d.Set {
				kind = keyed.KindMap
			}
			id, err := st.b.Register(rt.StateName(d.Name), kind, keyed.StateOptions{})
			if err != nil {
				return nil, err
			}
			st.ids[i] = id
		}
		fn := open(st)
		return func(r *job.Row) {
			fn(r)
			next(r)
		}, nil
	}
}

// stateStore is job.StateStore over a task's keyed backend, for the
// current key the engine set.
type stateStore struct {
	b   *keyed.Backend
	ids []keyed.StateID
}

func (s *stateStore) Get(i int) ([]byte, bool) { return s.b.Get(s.ids[i]) }
func (s *stateStore) Put(i int, v []byte)      { s.b.Put(s.ids[i], v) }

// AddMember keeps a set as a map state whose user keys are the members,
// with empty values.
func (s *stateStore) AddMember(i int, member []byte) bool {
	if _, ok := s.b.GetUser(s.ids[i], member); ok {
		return false
	}
	s.b.PutUser(s.ids[i], member, nil)
	return true
}

// join adds the join of plan's first stage over the streams of its inputs:
// join.Tumbling for a window join, join.Inner otherwise, each side keyed
// by its key field's bytes (equal values of one type, equal bytes).
func (b *Built) join(plan *job.Plan, sides []engine.Stream[job.Row]) engine.Stream[job.Row] {
	st := &plan.Stages[0]
	jn := st.Join
	if jn == nil {
		panic(fmt.Sprintf("jobrun: the first stage of a plan with sources is %v, not a join", st.Step.Kind))
	}
	keyOf := func(in *job.Input, f job.Field) engine.KeySelector[job.Row] {
		schema := in.Out
		return engine.BytesKey(func(dst []byte, r *job.Row) []byte { return schema.AppendKey(dst, r, f) })
	}
	left := engine.KeyBy(sides[jn.Left], keyOf(&plan.Inputs[jn.Left], jn.LeftKey))
	right := engine.KeyBy(sides[jn.Right], keyOf(&plan.Inputs[jn.Right], jn.RightKey))
	opts := []engine.OpOption{engine.WithParallelism(st.Parallelism), engine.WithStateSignature(st.StateSignature())}
	if st.Step.UID != "" {
		opts = append(opts, engine.WithUID(st.Step.UID))
	}
	o := join.Options[job.Row, job.Row]{LeftCodec: jn.LeftCodec, RightCodec: jn.RightCodec, TTL: jn.TTL}
	name := st.Step.Name
	if jn.Window > 0 {
		o.Late = &atomic.Int64{}
		b.late = append(b.late, lateCounter{step: name, kind: "join", n: o.Late})
		return join.Tumbling(left, right, name, jn.Window, 0, o, func(_ join.Window, l, r, out *job.Row) { jn.Emit(l, r, out) }, opts...)
	}
	return join.Inner(left, right, name, o, jn.Emit, opts...)
}
