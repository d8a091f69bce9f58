// Command custom shows how to write your own source and two-phase-commit
// sink for streamd's typed API, and what the engine promises them: it
// counts the words of a text into a transactional "ledger", which fails in
// the middle of the first attempt; the second attempt recovers from the last
// completed checkpoint, and every count reaches the ledger exactly once.
//
//	go run ./examples/go/custom
//
// The source (lines) reads a text line by line; its checkpointed position
// is the next line. The sink (ledgerSink) writes into ledger, a stand-in for
// an external transactional system (a database with PREPARE TRANSACTION and
// COMMIT PREPARED, a Kafka producer's transactions): records become visible
// there only when the checkpoint they belong to is complete.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The text to count: its lines, repeated.
var text = []string{
	"the quick brown fox jumps over the lazy dog",
	"the dog sleeps",
	"a fox is quick and a dog is lazy",
}

const (
	repeats        = 2000 // times the text is read
	linesPerSecond = 10000
	outageAfter    = 2 // in attempt 1, the ledger fails once this checkpoint is complete
)

// WordCount is the record the sink receives: a word and how often it was
// seen so far.
type WordCount struct {
	Word  string
	Count int64
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	dataDir, err := os.MkdirTemp("", "streamd-custom-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	store, err := snapshot.Open(dataDir, snapshot.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	// The external system outlives the job's attempts, as a database
	// outlives the processes that write to it.
	db := newLedger()

	// In attempt 1 the ledger has an outage once checkpoint outageAfter is
	// complete: the next prepare or commit fails, and the job with it,
	// possibly with a complete checkpoint whose transactions are prepared
	// but not committed. Attempt 2, once the ledger is back, restores the
	// latest complete checkpoint and runs to the end.
	for attempt := 1; attempt <= 2; attempt++ {
		db.outage.Store(false)
		job := buildJob(store, db, func(s engine.CheckpointStats) {
			if attempt == 1 && s.Status == "completed" && s.ID >= outageAfter {
				db.outage.Store(true)
			}
		})
		err := job.Run(context.Background())
		if id := job.RestoredFrom(); id != 0 {
			fmt.Fprintf(out, "attempt %d: restored from checkpoint %d; ", attempt, id)
		} else {
			fmt.Fprintf(out, "attempt %d: started afresh; ", attempt)
		}
		if err != nil {
			fmt.Fprintf(out, "failed: %v\n", err)
			continue
		}
		fmt.Fprintln(out, "finished")
	}

	// What the external system holds now.
	committed, recovered, aborted := db.result()
	counts := make(map[string]int64)
	seen := make(map[WordCount]bool)
	duplicates := 0
	for _, wc := range committed {
		if seen[wc] {
			duplicates++
		}
		seen[wc] = true
		counts[wc.Word] = max(counts[wc.Word], wc.Count)
	}
	fmt.Fprintf(out, "ledger: %d records committed, %d duplicates; recovery committed %d transactions and aborted %d\n",
		len(committed), duplicates, recovered, aborted)
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	slices.Sort(words)
	for _, w := range words {
		fmt.Fprintf(out, "%-6s %d\n", w, counts[w])
	}
	return nil
}

// buildJob builds lines -> split into words -> key by word -> count -> ledger.
func buildJob(store *snapshot.Store, db *ledger, onCheckpoint func(engine.CheckpointStats)) *engine.Job {
	job := engine.NewJob("words", engine.Options{
		Parallelism: 2,
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: 50 * time.Millisecond},
			Store:   store,
		},
		OnCheckpoint: onCheckpoint,
	})
	lines := engine.FromSource(job, "lines", func(engine.SourceContext) (engine.Source[string], error) {
		return &lineSource{}, nil
	})
	words := engine.FlatMap(lines, "split", func(line string, emit func(WordCount)) {
		for _, w := range strings.Fields(line) {
			emit(WordCount{Word: w})
		}
	})
	byWord := engine.KeyBy(words, engine.StringKey(func(wc *WordCount) string { return wc.Word }))
	counted := engine.Process(byWord, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *WordCount, func(*WordCount)), error) {
		count, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, wc *WordCount, emit func(*WordCount)) {
			n, _ := count.Get()
			count.Put(n + 1)
			wc.Count = n + 1
			emit(wc)
		}, nil
	})
	engine.ToSink(counted, "ledger", &ledgerSink{db: db})
	return job
}

// ---- The source ----

// lineSource reads the text's lines, repeats times over. Each parallel task
// has its own lineSource (FromSource's factory is called once per task); task
// i of p reads the lines whose number is i modulo p. All methods are called
// on the task's goroutine.
type lineSource struct {
	next, stride, end int64 // line numbers over all repeats
	opened            time.Time
	startedAt         int64 // next, when opened
}

// Open is called once, before any Read, with the position this task
// stored in the checkpoint the job restores from (nil on a fresh start).
func (s *lineSource) Open(ctx engine.SourceContext, state []byte) error {
	s.next, s.stride = int64(ctx.Index), int64(ctx.Parallelism)
	s.end = int64(len(text) * repeats)
	if state != nil {
		if len(state) != 8 {
			return fmt.Errorf("lines: restored position has %d bytes, want 8", len(state))
		}
		s.next = int64(binary.BigEndian.Uint64(state))
	}
	s.opened, s.startedAt = time.Now(), s.next
	return nil
}

// Read fills buf with up to len(buf) records and says how many. Lines
// "arrive" at linesPerSecond, as from a live feed: when none has arrived,
// Read returns (0, nil) at once rather than waiting, so that the task can
// take barriers and control messages in between (it calls Read again a
// little later). At the end it returns io.EOF, here with the last records.
func (s *lineSource) Read(buf []string) (int, error) {
	arrived := s.startedAt + int64(time.Since(s.opened).Seconds()*linesPerSecond)
	n := 0
	for n < len(buf) && s.next < s.end && s.next <= arrived {
		buf[n] = text[s.next%int64(len(text))]
		s.next += s.stride
		n++
	}
	if s.next >= s.end {
		return n, io.EOF
	}
	return n, nil
}

// Position returns the position after the records Read has returned: the
// engine calls it between two Reads, when a checkpoint barrier passes, and
// stores it in the checkpoint.
func (s *lineSource) Position() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(s.next)), nil
}

// Close releases resources (files, connections); here there are none.
func (s *lineSource) Close() error { return nil }

// ---- The external system ----

// ledger stands in for an external transactional system. A transaction is
// first prepared (durable in the system, invisible to its readers), then
// committed (visible) or aborted (gone). Only committed records count.
type ledger struct {
	outage atomic.Bool // when set, prepare and commit fail

	mu        sync.Mutex
	prepared  map[string][]WordCount // by transaction name
	committed map[string]bool        // names of committed transactions
	records   []WordCount            // the visible records, in commit order
	recovered int                    // transactions committed by Recover
	aborted   int                    // transactions aborted by Recover
}

var errOutage = errors.New("ledger: unavailable")

func newLedger() *ledger {
	return &ledger{prepared: make(map[string][]WordCount), committed: make(map[string]bool)}
}

func (l *ledger) prepare(name string, recs []WordCount) error {
	if l.outage.Load() {
		return errOutage
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prepared[name] = recs
	return nil
}

// commit makes a prepared transaction visible and says whether it did so
// now. Committing a committed one again does nothing, so callers can be
// idempotent; committing one the system never saw is an error: it was
// lost, and its records with it.
func (l *ledger) commit(name string) (now bool, err error) {
	if l.outage.Load() {
		return false, errOutage
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.committed[name] {
		return false, nil
	}
	recs, ok := l.prepared[name]
	if !ok {
		return false, fmt.Errorf("ledger: cannot commit transaction %s: it was never prepared", name)
	}
	delete(l.prepared, name)
	l.committed[name] = true
	l.records = append(l.records, recs...)
	return true, nil
}

// abortAllExcept aborts every prepared transaction not in keep.
func (l *ledger) abortAllExcept(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.prepared {
		if !keep[name] {
			delete(l.prepared, name)
			l.aborted++
		}
	}
}

func (l *ledger) countRecovered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recovered++
}

func (l *ledger) result() (records []WordCount, recovered, aborted int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records), l.recovered, l.aborted
}

// ---- The sink ----

// ledgerSink is an engine.Sink: the engine's side of exactly-once output
// into the ledger. One Sink serves every task of the sink operator; each
// task writes through its own writer (NewWriter).
type ledgerSink struct {
	db *ledger
}

// pendingTxn is a transaction a writer prepared at a checkpoint and has not
// committed yet. The list of them is the writer's state in the checkpoint.
type pendingTxn struct {
	Checkpoint uint64 `json:"checkpoint"`
	Name       string `json:"name"`
}

// Recover is called once, before any writer exists, with the state every
// task of this sink stored in the checkpoint the job restores from (nil
// on a fresh start). Those transactions were pre-committed for a
// checkpoint that completed, so they must become visible: commit them,
// idempotently (the crashed run may have committed some of them already).
// Every other prepared transaction is a stray of the crashed run, written
// after that checkpoint: abort it, the restored sources will read its
// records again.
func (s *ledgerSink) Recover(states [][]byte) error {
	keep := make(map[string]bool)
	for _, st := range states {
		var pending []pendingTxn
		if err := json.Unmarshal(st, &pending); err != nil {
			return fmt.Errorf("ledger sink: cannot decode a restored state: %w", err)
		}
		for _, t := range pending {
			now, err := s.db.commit(t.Name)
			if err != nil {
				return err
			}
			if now {
				s.db.countRecovered()
			}
			keep[t.Name] = true
		}
	}
	// A real sink would abort only its own job's transactions (by a name
	// prefix); this ledger holds no others.
	s.db.abortAllExcept(keep)
	return nil
}

// NewWriter creates the writer of one task.
func (s *ledgerSink) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[WordCount], error) {
	// Transaction names must never repeat, or an idempotent commit would
	// mistake a new transaction for an old one: each writer draws a random
	// run id (as the file sink does).
	return &ledgerWriter{db: s.db, ctx: ctx, run: rand.Text()[:8]}, nil
}

// ledgerWriter is one task's engine.SinkWriter. All its methods are called
// on the task's goroutine, so it needs no lock of its own.
type ledgerWriter struct {
	db      *ledger
	ctx     engine.SinkContext
	run     string
	open    []WordCount  // the open transaction: written, not yet prepared
	pending []pendingTxn // prepared, not yet committed
}

// Write adds a record to the open transaction. The engine owns *v and
// reuses it after Write returns: copy what you keep.
func (w *ledgerWriter) Write(v *WordCount) error {
	w.open = append(w.open, *v)
	return nil
}

// PreCommit runs at checkpoint barrier id: it makes everything written
// since the last barrier durable in a prepared transaction and returns
// the writer's state, every pending transaction, which goes into
// checkpoint id. Nothing is visible yet: the checkpoint may still fail.
// With nothing written, it prepares nothing.
//
// A sink whose prepare is slow (fsyncs) can also implement
// engine.AsyncPreCommitter, as the file sink does, to run that part off the
// task goroutine.
func (w *ledgerWriter) PreCommit(id uint64) ([]byte, error) {
	if len(w.open) > 0 {
		name := fmt.Sprintf("%s-%d-%s-cp%d", w.ctx.Operator, w.ctx.Index, w.run, id)
		if err := w.db.prepare(name, w.open); err != nil {
			return nil, err
		}
		w.pending = append(w.pending, pendingTxn{Checkpoint: id, Name: name})
		w.open = nil
	}
	return json.Marshal(w.pending)
}

// Commit runs once checkpoint id is complete (its metadata is durable):
// it commits every transaction prepared at or before id. Earlier ones can
// still be pending when an earlier checkpoint failed after its pre-commit.
// Idempotent: after a crash, Recover commits the same transactions again.
func (w *ledgerWriter) Commit(id uint64) error {
	var err error
	w.pending = slices.DeleteFunc(w.pending, func(t pendingTxn) bool {
		if t.Checkpoint > id || err != nil {
			return false
		}
		_, err = w.db.commit(t.Name)
		return err == nil
	})
	return err
}

// Finish is called at the end of the input of a job without checkpoints
// (SinkContext.Transactional is false): nothing drives commits then, so it
// commits what was written. (With checkpoints the engine takes a final
// checkpoint at the end instead, and commits it.)
func (w *ledgerWriter) Finish() error {
	if len(w.open) == 0 {
		return nil
	}
	name := fmt.Sprintf("%s-%d-%s-final", w.ctx.Operator, w.ctx.Index, w.run)
	if err := w.db.prepare(name, w.open); err != nil {
		return err
	}
	w.open = nil
	_, err := w.db.commit(name)
	return err
}

// Close releases resources, also after a failure. It must not abort what
// was pre-committed: a checkpoint that lists it may be complete, and
// Recover will commit it. The open transaction is simply dropped.
func (w *ledgerWriter) Close() error {
	w.open = nil
	return nil
}

// The compiler checks that the types implement the engine's interfaces.
var (
	_ engine.Source[string]        = (*lineSource)(nil)
	_ engine.Sink[WordCount]       = (*ledgerSink)(nil)
	_ engine.SinkWriter[WordCount] = (*ledgerWriter)(nil)
)
