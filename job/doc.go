// Package job owns streamd's job specs: decoding the YAML a user writes
// (strictly), the schemas of the records at every step, the Row that holds a
// record, and the compiled, typed operators of each step. `streamd run`
// calls Load and turns the resulting Plan into an engine dataflow.
//
// # What it promises
//
//   - Parse decodes strictly. Unknown fields, wrong YAML types, bad values
//     and missing required fields are errors naming the field path and its
//     line and column ("counts.yaml:7:5: pipeline[1].map.double: ..."), and
//     every problem is reported at once, sorted by position, as *Errors.
//     Compile adds schema and expression errors the same way (unknown names,
//     type errors, aggregations without key_by, too many fields); Load does
//     both and reports the problems of both phases together.
//   - Records are fixed typed slots (Row), never a map. AppendJSON,
//     AppendKey, compiled Filter/Map on the fast path, and Aggregate.Apply
//     do not allocate (tests enforce it), nor do reduce and aggregate over
//     numbers.
//   - Expressions are parsed and type-checked once per job by expr-lang
//     against a typed environment built from the schema at that step, then
//     compiled to typed Go closures over *Row for the node kinds listed on
//     fastCompiler (fields, literals, arithmetic, comparisons, logic, ?:,
//     string predicates, `in` over literals, abs/int/float/ceil/floor/
//     round/len). Anything else runs on expr's VM with a per-call
//     environment (slower, allocates); Stage.SlowExprs lists those. Both
//     paths give the same results (a differential test checks it).
//   - A Plan and everything in it is immutable and safe for concurrent use.
//   - Everything has a limit: spec size, lines and YAML flow nesting
//     (MaxSpecBytes, MaxSpecLines, MaxSpecFlowDepth — the YAML parser is
//     superlinear in them), steps (MaxSteps), expression length
//     (MaxExprBytes), names (MaxNameLen, MaxFieldNameLen), fields per record
//     (MaxNumFields, MaxStrFields), and nesting of ignored JSON.
//   - A spec that Load accepts is one the engine runs: the limits on what a
//     spec asks of the engine (parallelism, key groups, the number of tasks
//     of the laid-out plan, checkpoint concurrency and retention, the names
//     of keyed chains in checkpoints) are the constants of the packages that
//     enforce them (engine, engine/coord, keyed, snapshot), checked here
//     with the field's line (limits.go lists them).
//
// # Decisions where the issue was silent
//
//   - The spec is one plain YAML document: tags, anchors, aliases and merge
//     keys are rejected. Any scalar is accepted as an expression and taken
//     as written (`filter: true`, `map: {one: 1}`); every other string field
//     needs a string. Integers must be written as integers (`1e6` is
//     rejected with a hint), durations need a unit (`100ms`).
//   - `pipeline:` may be omitted (source straight to sink). A `count:` step
//     takes `{}` or nothing. Options of the other source or sink type (e.g.
//     `keys:` on a file source) are errors. `parallelism: 0` cannot be
//     written: 0 in a Spec means "the job's parallelism".
//   - Step names default to "<kind>-<n>", the n-th step of that kind from 1
//     ("filter-1", "key_by-1", "count-2"); explicit names match
//     [a-z0-9_-]+ and all names must be unique. Job names match [a-z0-9-]+.
//     Both are at most 64 bytes.
//   - Field names are expression identifiers: [A-Za-z_][A-Za-z0-9_]*, at
//     most 64 bytes, not an expr keyword.
//   - A map step assigns simultaneously: every expression sees the step's
//     input, never a field assigned by the same step. Replaced fields keep
//     their place in the field order; new fields are appended in the order
//     written. count/sum/min/max add (or replace) a field named after the
//     step kind; reduce and aggregate the fields they name.
//   - A key_by stays in effect through filter, map and aggregation steps and
//     ends after a step that writes the key field (a map that assigns it, or
//     an aggregation whose output has its name); an aggregation after that
//     needs a new key_by. Keyed steps run at most max_parallelism tasks.
//   - sum/min/max take int or float fields (not bool). Int sums wrap; float
//     min/max follow math.Min/math.Max (NaN sticks, -0 < +0).
//   - reduce (Flink's ReduceFunction): `reduce: {field: F, value: EXPR,
//     init: EXPR}`. value sees the record's fields and `acc`, the key's
//     previous F; a key's first record gets init, or without init its own
//     F (which must exist: the first element is the accumulator). acc's
//     type is init's (or F's) and value must have it exactly (no implicit
//     int/float conversion: the message says which to wrap). While value
//     runs, acc sits in F's output slot, which Compile chooses among the
//     slots value does not read; a record field named acc is an error.
//     State: "<step>/value", 8 bytes (or a string's bytes).
//   - aggregate (Flink's AggregateFunction, several at once): `aggregate:
//     {NAME: {KIND: EXPR}, ...}` with KIND count ({} only), sum, avg, min,
//     max, first, last, count_distinct, count_distinct_approx; EXPR is any
//     expression, a plain unknown name is reported as an unknown field. All
//     accumulators see the step's input and take output slots as a map's
//     assignments do. Types: sum/avg of int or float, min/max of int, float
//     or string, the rest of anything; avg gives float, the counts int, the
//     others the input's type. State: the fixed-size accumulators packed in
//     "<step>/acc" (8 bytes each, avg 16: count and sum, an int64 sum for
//     ints); strings of min/max/first in "<step>/acc/<NAME>"; count_distinct
//     a map state "<step>/acc/<NAME>" used as a set (unbounded but by
//     memory: one entry per distinct value per key; numbers by their bits,
//     strings at most keyed.MaxKeyBytes) plus its count in the packed value;
//     count_distinct_approx a HyperLogLog sketch (hll.go: 2^14 registers,
//     0.81 % standard error, sparse up to 512 registers, Ertl's estimator
//     kept in the header). last keeps nothing: in a running aggregate the
//     last value is the current record's. Reducer.Open and
//     Accumulators.Open build a task's operator over a StateStore (jobrun:
//     keyed state); over numbers with fast expressions they allocate
//     nothing per record. The fingerprint lists a reduce's field and type
//     and an aggregate's accumulators with kinds and input types (they
//     decide the state's layout), not expressions.
//   - Runtime evaluation errors (integer `%` by zero — as in expr, an error;
//     or any error of expr's VM on the slow path) make Filter or Map panic
//     with *EvalError naming the step; the engine recovers it and fails the
//     job naming the operator. `/` is always float division (expr's rule),
//     so x/0 is ±Inf or NaN, not an error.
//   - File source records (DecodeJSON): every schema field must be present
//     with its type (ints as JSON integers that fit int64, floats as any
//     number, no nulls); other members are validated and ignored; a member
//     given twice is an error. Errors wrap ErrBadRecord; the caller adds the
//     file name and line.
//   - The nexmark source's records are the union of the three kinds'
//     fields (NexmarkSchema): the fields of other kinds are zero, not null
//     (a Row has no nulls); MaxStrFields is 12 so its 11 strings fit.
//   - event_time names an int field of the source (ms since the epoch); a
//     window step (window.go) needs it and a key_by, emits the key,
//     window_start, window_end and its aggregates (package window's
//     built-ins: count, sum, min, max, avg over int or float expressions),
//     and ends the key_by. Its state signature lists the aggregates, not
//     the windows (package window names its state by geometry).
//   - `sources:` (two named sources, each with filter and map steps) and a
//     first `join:` step over them (join.Inner with an optional ttl, or
//     join.Tumbling): decisions in join.go.
//   - Connector sources and sinks (connectors.go): `type: kafka` and
//     `type: nats` sources read JSON objects decoded against `fields:`
//     exactly as a file source's lines (DecodeJSON, via MessageDecoder);
//     reserved `_`-prefixed fields, declared with their type, carry a
//     message's metadata instead (kafka: _key string, _topic string,
//     _partition, _offset, _timestamp int; nats: _subject string, _seq,
//     _timestamp int; ms since the epoch), so `event_time: {field:
//     _timestamp}` works. Other `_` names are plain JSON fields. Sinks
//     write each row as AppendJSON's object; a kafka sink's optional `key:`
//     is a field of the sink's records, as AppendKeyText's text.
//     Credentials are only ever named (user_env, password_env, token_env):
//     keys such as password, token or user are errors pointing there, and a
//     nats URL with user:password@ is refused. Connector defaults the
//     checks need are copied here (jobrun asserts they agree). A kafka sink
//     refuses, with the line: a transaction_timeout (default 15m) shorter
//     than the checkpoint interval plus timeout (kafka.CheckTransactionTimeout's
//     rule), and max_concurrent > 1 (a task has one transaction: a second
//     checkpoint in flight would fold its records into the first's pending
//     transaction, which a recovery from the first commits). Without
//     checkpointing both sinks are allowed and commit when the input ends,
//     as the file sink does (no guarantee after a crash). `host:port` in a
//     flow sequence inside a flow mapping reads as a YAML mapping; the
//     error says to quote it. Postgres goes in the same shape (connectors.go
//     says where).
//   - Fingerprint lists every step (stateless ones too) but no expressions:
//     editing an expression keeps a checkpoint usable, changing the
//     pipeline's shape does not.
//
// # What it must never import
//
// Package job imports engine, engine/coord, keyed and snapshot for their
// limits, defaults and error classes only (keyed.ErrCorrupt) (none of them imports job); it must never
// import jobrun, connectors or cmd/, and never runs anything of the
// engine. Its other dependencies are the standard library,
// github.com/goccy/go-yaml, github.com/expr-lang/expr and
// github.com/cespare/xxhash/v2 (count_distinct_approx's hash).
package job
