package job

import (
	"fmt"
	"strings"
)

// dumpPlan renders everything a Plan decides, for golden tests.
func dumpPlan(p *Plan) string {
	var b strings.Builder
	s := p.Spec
	fmt.Fprintf(&b, "job %s parallelism=%d max_parallelism=%d\n", s.Name, s.Parallelism, s.MaxParallelism)
	if len(p.Inputs) == 0 {
		dumpSource(&b, &s.Source, p.SourceParallelism(), p.SourceSchema)
	}
	for _, in := range p.Inputs {
		fmt.Fprintf(&b, "input %s ", in.Source.Name)
		dumpSource(&b, in.Source, in.Parallelism(p), in.Schema)
		dumpStages(&b, in.Stages, "  ")
	}
	dumpStages(&b, p.Stages, "")
	dumpRest(&b, p)
	return b.String()
}

func dumpSource(b *strings.Builder, src *SourceSpec, par int, schema *Schema) {
	fmt.Fprintf(b, "source %s", src.Type)
	switch src.Type {
	case SourceSequence:
		fmt.Fprintf(b, " count=%d keys=%d rate=%v", src.Count, src.Keys, src.RatePerSec)
	case SourceFile:
		fmt.Fprintf(b, " path=%q", src.Path)
	case SourceNexmark:
		fmt.Fprintf(b, " events=%d rate=%v", src.Events, src.RatePerSec)
	case SourceKafka:
		fmt.Fprintf(b, " %+v", *src.Kafka)
	case SourceNATS:
		fmt.Fprintf(b, " %+v", *src.NATS)
	case SourcePostgres:
		fmt.Fprintf(b, " %+v", *src.Postgres)
	}
	if et := src.EventTime; et != nil {
		fmt.Fprintf(b, " event_time(%s out_of_orderness=%v idleness=%v interval=%v)", et.Field, et.OutOfOrderness, et.Idleness, et.WatermarkInterval)
	}
	fmt.Fprintf(b, " tasks=%d at %d:%d\n", par, src.Line, src.Column)
	fmt.Fprintf(b, "  schema %s\n", schema.layout())
}

func dumpStages(b *strings.Builder, stages []Stage, indent string) {
	for i, st := range stages {
		fmt.Fprintf(b, "%sstage %d %s %s tasks=%d at %d:%d", indent, i, st.Step.Name, st.Step.Kind, st.Parallelism, st.Step.Line, st.Step.Column)
		if st.Keyed {
			fmt.Fprintf(b, " keyed(%s %s@%d)", st.Key.Name, st.Key.Type, st.Key.Slot)
		}
		switch st.Step.Kind {
		case StepFilter:
			fmt.Fprintf(b, " %q", st.Step.Expr)
		case StepMap:
			for _, a := range st.Step.Assign {
				fmt.Fprintf(b, " %s=%q@%d:%d", a.Field, a.Expr, a.Line, a.Column)
			}
		case StepKeyBy:
			fmt.Fprintf(b, " %s", st.Step.Field)
		}
		if r := st.Reduce; r != nil {
			init := "from " + r.From.Name
			if r.init != nil {
				init = fmt.Sprintf("init=%q", r.init.src)
			}
			fmt.Fprintf(b, " reduce %s value=%q -> %s %s@%d states=%s", init, r.value.src, r.Out.Name, r.Out.Type, r.Out.Slot, dumpStates(r.States))
		}
		if a := st.Accs; a != nil {
			fmt.Fprintf(b, " aggregate fixed=%dB states=%s", a.FixedBytes, dumpStates(a.States))
		}
		if w := st.Window; w != nil {
			fmt.Fprintf(b, " window %s key %s %s@%d", st.Step.Window, w.KeyOut.Name, w.KeyOut.Type, w.KeyOut.Slot)
		}
		if a := st.Agg; a != nil {
			in := "-"
			if a.Kind != StepCount {
				in = fmt.Sprintf("%s %s@%d", a.In.Name, a.In.Type, a.In.Slot)
			}
			fmt.Fprintf(b, " agg %s(%s) -> %s %s@%d", a.Kind, in, a.Out.Name, a.Out.Type, a.Out.Slot)
		}
		if st.Shuffle {
			b.WriteString(" shuffle")
		}
		if len(st.SlowExprs) > 0 {
			fmt.Fprintf(b, " slow=%q", st.SlowExprs)
		}
		if a := st.Accs; a != nil {
			for _, acc := range a.List {
				in := "-"
				if acc.In != 0 {
					in = fmt.Sprintf("%q %s", acc.Expr, acc.In)
				}
				fmt.Fprintf(b, "\n    %s(%s) -> %s %s@%d off=%d state=%d", acc.Kind, in, acc.Out.Name, acc.Out.Type, acc.Out.Slot, acc.off, acc.state)
			}
		}
		if w := st.Window; w != nil {
			for _, acc := range w.List {
				in := "-"
				if acc.In != 0 {
					in = fmt.Sprintf("%q %s", acc.Expr, acc.In)
				}
				fmt.Fprintf(b, "\n    %s(%s) -> %s %s@%d", acc.Kind, in, acc.Out.Name, acc.Out.Type, acc.Out.Slot)
			}
		}
		if j := st.Join; j != nil {
			fmt.Fprintf(b, " join inputs=%d,%d on %s=%s window=%v ttl=%v stores left=%s right=%s", j.Left, j.Right, j.LeftKey.Name, j.RightKey.Name, j.Window, j.TTL, j.LeftCodec.fields, j.RightCodec.fields)
		}
		fmt.Fprintf(b, "\n%s  out %s\n", indent, st.Out.layout())
	}
}

func dumpRest(b *strings.Builder, p *Plan) {
	s := p.Spec
	sk := s.Sink
	fmt.Fprintf(b, "sink %s", sk.Type)
	if sk.Path != "" {
		fmt.Fprintf(b, " path=%q", sk.Path)
	}
	if sk.Kafka != nil {
		fmt.Fprintf(b, " %+v", *sk.Kafka)
	}
	if sk.NATS != nil {
		fmt.Fprintf(b, " %+v", *sk.NATS)
	}
	if sk.Postgres != nil {
		fmt.Fprintf(b, " %+v", *sk.Postgres)
	}
	fmt.Fprintf(b, " tasks=%d at %d:%d\n", p.SinkParallelism(), sk.Line, sk.Column)
	fmt.Fprintf(b, "  schema %s\n", p.SinkSchema.layout())
	if cols := p.PostgresColumns(); cols != nil {
		fmt.Fprintf(b, "  columns %s\n", (&Schema{Fields: cols}).layout())
	}
	if cp := s.Checkpointing; cp != nil {
		fmt.Fprintf(b, "checkpointing interval=%v timeout=%v min_pause=%v mode=%s max_concurrent=%d tolerable_failures=%d retained=%d compression=%s at %d:%d\n",
			cp.Interval, cp.Timeout, cp.MinPause, cp.Mode, cp.MaxConcurrent, cp.TolerableFailures, cp.Retained, cp.Compression, cp.Line, cp.Column)
	} else {
		b.WriteString("checkpointing none\n")
	}
	for _, v := range p.Vertices {
		fmt.Fprintf(b, "vertex [%s] tasks=%d", v.Name, v.Parallelism)
		if v.Keyed {
			b.WriteString(" keyed")
		}
		if v.Exchange != "" {
			fmt.Fprintf(b, " from %s", v.Exchange)
		}
		b.WriteByte('\n')
	}
	b.WriteString("fingerprint:\n")
	for _, l := range strings.Split(strings.TrimSuffix(p.Fingerprint(), "\n"), "\n") {
		fmt.Fprintf(b, "  %s\n", l)
	}
}

func dumpStates(states []StateDecl) string {
	var parts []string
	for _, d := range states {
		if d.Set {
			parts = append(parts, d.Name+"(set)")
		} else {
			parts = append(parts, d.Name)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
