package job

import (
	"fmt"
	"math"
	"time"
)

// Limits on specs ("put a limit on everything"). The limits on what a spec
// asks of the engine (parallelism, key groups, tasks, checkpoint options)
// live in the packages that enforce them; limits.go lists them.
const (
	MaxSpecBytes     = 256 << 10 // size of a spec file (the YAML parser is superlinear)
	MaxSpecLines     = 10000     // lines of a spec file
	MaxSpecFlowDepth = 64        // nesting of YAML flow collections ([...], {...})
	MaxSteps         = 256       // steps in a pipeline
	MaxExprBytes     = 4096      // source text of one expression
	MaxNameLen       = 64        // job and step names
)

// Source types.
const (
	SourceSequence = "sequence"
	SourceFile     = "file"
	SourceNexmark  = "nexmark"
)

// MaxNexmarkEvents is the largest `events:` of a nexmark source: the number
// of events the generator can produce (nexmark.MaxEvents; jobrun asserts
// at compile time that the two agree, since this package must not import
// connectors).
const MaxNexmarkEvents int64 = math.MaxInt64 / (50 * 500)

// Sink types.
const (
	SinkFile      = "file"
	SinkStdout    = "stdout"
	SinkBlackhole = "blackhole"
)

// Checkpoint modes and compressions, and the defaults of `checkpointing:`.
const (
	ModeExactlyOnce    = "exactly_once"
	ModeAtLeastOnce    = "at_least_once"
	CompressionZstd    = "zstd"
	CompressionS2      = "s2"
	CompressionNone    = "none"
	DefaultMode        = ModeExactlyOnce
	DefaultCompression = CompressionZstd
)

// Spec is a decoded job spec. Parse fills every default, so a Spec from
// Parse says exactly what will run. Line and Column fields are 1-based
// positions in the spec file (0 when unknown).
type Spec struct {
	File           string // the file name given to Parse, used in errors
	Name           string
	Parallelism    int // default parallelism of every task, 1..engine.MaxParallelism
	MaxParallelism int // number of key groups, 1..keyed.MaxMaxParallelism
	// Source is the job's one source (`source:`); unused (zero) when the
	// spec has Sources.
	Source SourceSpec
	// Sources are the named sources of `sources:` (join.go), in the order
	// written; nil when the spec has `source:`. Each has a Name and its
	// own Pipeline of filter and map steps; the job's Pipeline starts with
	// the join of two of them.
	Sources       []SourceSpec
	Pipeline      []StepSpec
	Sink          SinkSpec
	Checkpointing *CheckpointSpec // nil = no checkpoints
	// Restart is what `streamd serve` does when the job fails; never nil
	// after Parse (the defaults below when the spec has no `restart:`).
	// `streamd run` does not restart: it exits 1.
	Restart *RestartSpec

	// pos maps a field path ("pipeline[1].map.double") to the position of
	// its value in the file; "pipeline[1].map.double:key" to the key's.
	pos map[string]position
}

type position struct{ line, col int }

// SourceSpec is the `source:` section.
type SourceSpec struct {
	// Name and Pipeline belong to a source of `sources:`: its operator
	// name (unique among step names and uids) and the filter and map
	// steps its records go through before the join. Empty for `source:`.
	Name        string
	Pipeline    []StepSpec
	Type        string           // SourceSequence, SourceFile, SourceNexmark, SourceKafka, SourceNATS or SourcePostgres
	Count       int64            // sequence: records to emit; -1 = unbounded
	Events      int64            // nexmark: events to generate (0 … Events-1); -1 = unbounded
	Keys        int64            // sequence: distinct keys, >= 1
	RatePerSec  float64          // sequence, nexmark: records per second for the whole source; 0 = unthrottled
	Path        string           // file: a file, a directory of *.jsonl, or a glob
	Fields      []FieldSpec      // file, kafka, nats, postgres: the schema, in the order written
	Kafka       *KafkaSourceSpec // kafka: its options (connectors.go); nil for other types
	NATS        *NATSSourceSpec  // nats: its options; nil for other types
	Parallelism int              // 0 = the job's parallelism
	// Postgres is a postgres source's options (postgres.go); nil for
	// other types.
	Postgres *PostgresSourceSpec
	// EventTime, if set, gives the source's records timestamps and
	// watermarks (engine.WithWatermarks); nil = no event time, and then no
	// window step.
	EventTime *EventTimeSpec
	Line      int
	Column    int
}

// EventTimeSpec is a source's `event_time:`: which field holds a record's
// timestamp and how watermarks follow it (Flink's
// WatermarkStrategy.forBoundedOutOfOrderness(…).withIdleness(…)).
type EventTimeSpec struct {
	// Field is an int field of the source's schema: ms since the epoch.
	Field string
	// OutOfOrderness is how far behind the largest timestamp seen a record
	// may arrive without being late (engine.WatermarkStrategy). Default 0.
	OutOfOrderness time.Duration
	// Idleness: a split that produced nothing for this long stops holding
	// the watermark back. 0 (the default) = never idle.
	Idleness time.Duration
	// WatermarkInterval is how often the source emits its watermark;
	// default engine.DefaultWatermarkInterval.
	WatermarkInterval time.Duration
	Line, Column      int // of the `event_time:` key
}

// StepKind is the operator of a pipeline step.
type StepKind uint8

// The step kinds. The zero StepKind is invalid.
const (
	StepFilter StepKind = iota + 1
	StepMap
	StepKeyBy
	StepCount
	StepSum
	StepMin
	StepMax
	StepReduce
	StepAggregate
	StepWindow
	StepJoin
)

var stepKindNames = [...]string{
	StepFilter:    "filter",
	StepMap:       "map",
	StepKeyBy:     "key_by",
	StepCount:     "count",
	StepSum:       "sum",
	StepMin:       "min",
	StepMax:       "max",
	StepReduce:    "reduce",
	StepAggregate: "aggregate",
	StepWindow:    "window",
	StepJoin:      "join",
}

// String returns the operator key used in specs ("key_by", "count", ...).
func (k StepKind) String() string {
	if k >= StepFilter && int(k) < len(stepKindNames) {
		return stepKindNames[k]
	}
	return fmt.Sprintf("StepKind(%d)", uint8(k))
}

// IsAggregate reports whether k keeps per-key state and so needs a key_by
// in effect: count, sum, min, max, reduce, aggregate or window.
func (k StepKind) IsAggregate() bool { return k >= StepCount && k <= StepWindow }

func parseStepKind(s string) (StepKind, bool) {
	for k := StepFilter; int(k) < len(stepKindNames); k++ {
		if stepKindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

// StepSpec is one step of `pipeline:`.
type StepSpec struct {
	Kind StepKind
	// Name is unique in the job. When the spec does not name a step, Parse
	// names it "<kind>-<n>": the n-th step of that kind, counting from 1
	// ("filter-1", "key_by-1", "count-2"). Numbering per kind means that
	// adding or removing steps of other kinds does not rename a step; name
	// stateful steps explicitly to keep their state across any edit.
	Name string
	// UID, if set, identifies the step's state in checkpoints instead of
	// its name (Flink's uid): rename a stateful step and keep its uid to
	// keep its state. Same rules as a name; unique among names and uids.
	UID         string
	Parallelism int          // 0 = the job's parallelism
	Expr        string       // filter: the predicate
	Assign      []Assignment // map: in the order written
	Field       string       // key_by, sum, min, max: the field
	Reduce      *ReduceSpec  // reduce
	Accs        []AccSpec    // aggregate, window: the accumulators, in the order written
	Window      *WindowSpec  // window: the windows (Accs holds the aggregates)
	Join        *JoinSpec    // join
	Line        int          // position of the operator key
	Column      int
}

// ReduceSpec is a `reduce:` step: a running reduce per key of one field.
type ReduceSpec struct {
	// Field is the output field, added or replaced; it is also the
	// accumulator, named `acc` in Value.
	Field string
	// Value computes the new accumulator from `acc` (the key's previous
	// value of Field) and the current record's fields.
	Value string
	// Init computes the accumulator from a key's first record; "" when the
	// spec omits it, and then the first record's own Field is the first
	// accumulator (Flink's ReduceFunction: the first element is the
	// accumulator), which needs Field in the input.
	Init string
}

// Window assigner kinds of a window step.
const (
	WindowTumbling = "tumbling"
	WindowSliding  = "sliding"
	WindowSession  = "session"
)

// WindowSpec is a `window:` step: event-time windows per key (package
// window), with the aggregates of the step's Accs (count, sum, min, max,
// avg). Durations are whole milliseconds.
type WindowSpec struct {
	Kind            string        // WindowTumbling, WindowSliding or WindowSession
	Size            time.Duration // tumbling, sliding: the window's length
	Slide           time.Duration // sliding: how far apart windows start
	Gap             time.Duration // session: the inactivity that closes a session
	AllowedLateness time.Duration // >= 0, default 0
}

// AccKind is an accumulator of an aggregate step. The zero AccKind is
// invalid.
type AccKind uint8

// The accumulator kinds.
const (
	AccCount AccKind = iota + 1
	AccSum
	AccMin
	AccMax
	AccAvg
	AccFirst
	AccLast
	AccCountDistinct
	AccCountDistinctApprox
)

var accKindNames = [...]string{
	AccCount:               "count",
	AccSum:                 "sum",
	AccMin:                 "min",
	AccMax:                 "max",
	AccAvg:                 "avg",
	AccFirst:               "first",
	AccLast:                "last",
	AccCountDistinct:       "count_distinct",
	AccCountDistinctApprox: "count_distinct_approx",
}

// String returns the accumulator's name in specs ("avg", "count_distinct").
func (k AccKind) String() string {
	if k >= AccCount && int(k) < len(accKindNames) {
		return accKindNames[k]
	}
	return fmt.Sprintf("AccKind(%d)", uint8(k))
}

func parseAccKind(s string) (AccKind, bool) {
	for k := AccCount; int(k) < len(accKindNames); k++ {
		if accKindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

// AccSpec is one `name: {kind: expression}` of an aggregate step.
type AccSpec struct {
	Field  string // the output field, added or replaced
	Kind   AccKind
	Expr   string // the aggregated expression; "" for count
	Line   int    // position of the accumulator kind
	Column int
}

// Assignment is one `field: expression` of a map step.
type Assignment struct {
	Field  string
	Expr   string
	Line   int // position of the expression
	Column int
}

// SinkSpec is the `sink:` section.
type SinkSpec struct {
	Type        string            // SinkFile, SinkStdout, SinkBlackhole, SinkKafka, SinkNATS or SinkPostgres
	Path        string            // file: the output directory
	Kafka       *KafkaSinkSpec    // kafka: its options (connectors.go); nil for other types
	NATS        *NATSSinkSpec     // nats: its options; nil for other types
	Postgres    *PostgresSinkSpec // postgres: its options (postgres.go); nil for other types
	Parallelism int               // 0 = the job's parallelism
	Line        int
	Column      int
}

// CheckpointSpec is the `checkpointing:` section, with defaults filled.
type CheckpointSpec struct {
	Interval          time.Duration // > 0
	Timeout           time.Duration // > 0, default coord.DefaultTimeout (10m)
	MinPause          time.Duration // >= 0, default 0
	Mode              string        // ModeExactlyOnce (default) or ModeAtLeastOnce
	MaxConcurrent     int           // 1..coord.MaxConcurrentLimit, default coord.DefaultMaxConcurrent
	TolerableFailures int           // >= 0, default 0
	Retained          int           // 1..engine.MaxRetained, default engine.DefaultRetained
	Compression       string        // CompressionZstd (default), CompressionS2 or CompressionNone
	Incremental       bool          // delta checkpoints (default true); false writes changed key groups in full
	Line              int
	Column            int
}

// Restart strategies and the defaults of `restart:`, Flink's (1.19 and
// later): exponential_delay when the job checkpoints, none when it does
// not (a restart without checkpoints would start over and repeat its
// output).
const (
	RestartExponentialDelay = "exponential_delay"
	RestartFixedDelay       = "fixed_delay"
	RestartNone             = "none"

	DefaultFixedDelayAttempts = 1
	DefaultFixedDelay         = time.Second
	DefaultInitialBackoff     = time.Second
	DefaultMaxBackoff         = time.Minute
	DefaultBackoffMultiplier  = 1.5
	DefaultResetThreshold     = time.Hour
	DefaultJitterFactor       = 0.1
	// MaxRestartAttempts bounds attempts (fixed_delay) and
	// attempts_before_reset (exponential_delay); it is also the default of
	// the latter (Flink: Integer.MAX_VALUE, i.e. unbounded).
	MaxRestartAttempts = 1 << 30
)

// RestartSpec is the `restart:` section, with defaults filled. The fields
// a strategy does not use are zero.
type RestartSpec struct {
	Strategy string // RestartExponentialDelay, RestartFixedDelay or RestartNone
	// fixed_delay: Attempts restarts, Delay apart; then the job fails.
	Attempts int
	Delay    time.Duration
	// exponential_delay: the first restart waits InitialBackoff, each
	// further one Multiplier times longer, up to MaxBackoff, each +- a
	// random JitterFactor share; after ResetThreshold without a failure
	// the backoff (and the attempt count) start over. The job fails after
	// AttemptsBeforeReset restarts without such a reset.
	InitialBackoff      time.Duration
	MaxBackoff          time.Duration
	Multiplier          float64
	ResetThreshold      time.Duration
	JitterFactor        float64
	AttemptsBeforeReset int
	Line, Column        int // of the `restart:` key; 0 when defaulted
}

// defaultRestart is the restart strategy of a spec without `restart:`.
func defaultRestart(checkpointing bool) *RestartSpec {
	if !checkpointing {
		return &RestartSpec{Strategy: RestartNone}
	}
	return newRestart(RestartExponentialDelay)
}

// newRestart returns strategy with its defaults.
func newRestart(strategy string) *RestartSpec {
	r := &RestartSpec{Strategy: strategy}
	switch strategy {
	case RestartFixedDelay:
		r.Attempts, r.Delay = DefaultFixedDelayAttempts, DefaultFixedDelay
	case RestartExponentialDelay:
		r.InitialBackoff, r.MaxBackoff = DefaultInitialBackoff, DefaultMaxBackoff
		r.Multiplier, r.ResetThreshold = DefaultBackoffMultiplier, DefaultResetThreshold
		r.JitterFactor, r.AttemptsBeforeReset = DefaultJitterFactor, MaxRestartAttempts
	}
	return r
}

// posOf returns the recorded position of path, falling back to fallback.
func (s *Spec) posOf(path string, line, col int) position {
	if p, ok := s.pos[path]; ok {
		return p
	}
	return position{line, col}
}

// stepPath is "pipeline[i]".
func stepPath(i int) string { return fmt.Sprintf("pipeline[%d]", i) }
