package nexmark

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	gen "github.com/streamd/streamd/connectors/nexmark"
	"github.com/streamd/streamd/engine"
)

// The generator's types, under the names the queries use.
type (
	Event   = gen.Event
	Bid     = gen.Bid
	Auction = gen.Auction
	Person  = gen.Person
)

// Query is one Nexmark query the harness can run.
type Query struct {
	// Name is the query's name as nexmark-flink has it: "q0", "q1", …
	Name string
	// SQL is nexmark-flink's statement for the query (shown by the
	// command's listing and in the report).
	SQL string
	// Windowed says that the query emits window results: the harness
	// then reports their output latency (Build ends the query with
	// EmitWindowed).
	Windowed bool
	// Build adds the query to j, reading events, and ends it in sink with
	// Emit or EmitWindowed. It returns an error only for a query that
	// cannot be built; the job's own errors surface from Run.
	Build func(j *engine.Job, events engine.Stream[Event], sink *Sink) error
	// Baseline, when set, runs the same query as plain Go: goroutines and
	// channels, the same generator (Config.Fill) and the same blackhole
	// accounting. nil: the query has no baseline.
	Baseline func(cfg BaselineConfig) (BaselineResult, error)
}

// registry holds the registered queries; queries register from init
// functions, commands read it afterwards.
var registry struct {
	mu      sync.Mutex
	queries map[string]Query
}

// Register adds a query. It panics on a query without a name or Build,
// or a name registered twice: both are mistakes in the program.
func Register(q Query) {
	if q.Name == "" || q.Build == nil {
		panic(fmt.Sprintf("nexmark: Register: query %q needs a name and a Build function", q.Name))
	}
	if strings.ContainsAny(q.Name, ", /") {
		panic(fmt.Sprintf("nexmark: Register: query name %q may not contain a comma, space or slash", q.Name))
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.queries == nil {
		registry.queries = make(map[string]Query)
	}
	if _, dup := registry.queries[q.Name]; dup {
		panic(fmt.Sprintf("nexmark: Register: query %q registered twice", q.Name))
	}
	registry.queries[q.Name] = q
}

// Queries returns the registered queries in their natural order (q0, q1,
// …, q9, q10: by the number after the first letter, then by name).
func Queries() []Query {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	qs := make([]Query, 0, len(registry.queries))
	for _, q := range registry.queries {
		qs = append(qs, q)
	}
	slices.SortFunc(qs, func(a, b Query) int {
		return cmp.Or(cmp.Compare(queryNumber(a.Name), queryNumber(b.Name)), cmp.Compare(a.Name, b.Name))
	})
	return qs
}

// queryNumber is the number in a name like "q12" (-1 if there is none),
// so that q10 sorts after q9.
func queryNumber(name string) int {
	if len(name) < 2 {
		return -1
	}
	n, err := strconv.Atoi(name[1:])
	if err != nil {
		return -1
	}
	return n
}

// Lookup returns the registered query of that name.
func Lookup(name string) (Query, bool) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	q, ok := registry.queries[name]
	return q, ok
}

// Bids is nexmark-flink's bid view (SELECT … FROM datagen WHERE
// event_type = 2): the bids among the events, passed on by pointer into
// the event, so no event is copied. Every query over bids starts here.
func Bids(events engine.Stream[Event]) engine.Stream[Bid] {
	return engine.Transform(events, "bids", func(_ *engine.Runtime, next func(*Bid)) (func(*Event), error) {
		return func(e *Event) {
			if e.Kind == gen.KindBid {
				next(&e.Bid)
			}
		}, nil
	})
}

// Project maps every record of s to a U, written by f into a value reused
// for every record: a Map that passes records by pointer (engine.Map
// passes and returns them by value, which costs a copy each way).
func Project[T, U any](s engine.Stream[T], name string, f func(dst *U, src *T)) engine.Stream[U] {
	return engine.Transform(s, name, func(_ *engine.Runtime, next func(*U)) (func(*T), error) {
		var out U
		return func(v *T) {
			f(&out, v)
			next(&out)
		}, nil
	})
}

// Where keeps the records of s for which keep returns true: a Filter that
// passes records by pointer (engine.Filter passes them by value, a copy
// per record).
func Where[T any](s engine.Stream[T], name string, keep func(*T) bool) engine.Stream[T] {
	return engine.Transform(s, name, func(_ *engine.Runtime, next func(*T)) (func(*T), error) {
		return func(v *T) {
			if keep(v) {
				next(v)
			}
		}, nil
	})
}
