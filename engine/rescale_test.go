package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/snapshot"
)

// rangeSplits is a splittable source for the engine's tests: its splits
// are ranges [lo, hi) of i, ID "lo-hi", position the next i in decimal;
// record i has Key i % keys and Seq i. A fresh start gives task j of p the
// range [n·j/p, n·(j+1)/p); Reassign keeps the unfinished rest of every
// range and halves the largest until every task can have one. Each task
// emits at most 16 records per tick·parallelism, so the whole source runs
// at about 16/tick records per second at any parallelism.
type rangeSplits struct {
	n, keys int64
	tick    time.Duration

	// lie makes every reader leave its first split out of Splits.
	lie bool
	// dup makes Reassign give task 1 the first split of task 0 too.
	dup bool

	mu         sync.Mutex
	reassigned int
	given      map[int][]engine.Split // per task index, the splits of the last run
}

type rangeSplit struct{ lo, hi, next int64 }

func (r rangeSplit) split() engine.Split {
	return engine.Split{ID: fmt.Sprintf("%d-%d", r.lo, r.hi), State: strconv.AppendInt(nil, r.next, 10)}
}

func parseRange(sp engine.Split) (rangeSplit, error) {
	var r rangeSplit
	lo, hi, ok := strings.Cut(sp.ID, "-")
	var err1, err2, err3 error
	r.lo, err1 = strconv.ParseInt(lo, 10, 64)
	r.hi, err2 = strconv.ParseInt(hi, 10, 64)
	r.next, err3 = strconv.ParseInt(string(sp.State), 10, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil || r.next < r.lo || r.next > r.hi {
		return r, fmt.Errorf("bad range split %v", sp)
	}
	return r, nil
}

func (s *rangeSplits) taskRange(index, parallelism int) rangeSplit {
	lo, hi := s.n*int64(index)/int64(parallelism), s.n*int64(index+1)/int64(parallelism)
	return rangeSplit{lo, hi, lo}
}

func (s *rangeSplits) Initial(parallelism int) ([][]engine.Split, error) {
	asg := make([][]engine.Split, parallelism)
	for j := range asg {
		asg[j] = []engine.Split{s.taskRange(j, parallelism).split()}
	}
	return asg, nil
}

func (s *rangeSplits) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	s.mu.Lock()
	s.reassigned++
	s.mu.Unlock()
	var open []rangeSplit
	for _, sp := range all {
		r, err := parseRange(sp)
		if err != nil {
			return nil, err
		}
		if r.next < r.hi {
			open = append(open, rangeSplit{r.next, r.hi, r.next})
		}
	}
	for len(open) < parallelism {
		i := 0
		for j, r := range open {
			if r.hi-r.lo > open[i].hi-open[i].lo {
				i = j
			}
		}
		if len(open) == 0 || open[i].hi-open[i].lo < 2 {
			break
		}
		r := open[i]
		mid := (r.lo + r.hi) / 2
		open[i] = rangeSplit{r.lo, mid, r.lo}
		open = append(open, rangeSplit{mid, r.hi, mid})
	}
	slices.SortFunc(open, func(a, b rangeSplit) int { return int(a.lo - b.lo) })
	asg := make([][]engine.Split, parallelism)
	for i, r := range open {
		asg[i%parallelism] = append(asg[i%parallelism], r.split())
	}
	if s.dup && parallelism > 1 && len(asg[0]) > 0 {
		asg[1] = append(asg[1], asg[0][0])
	}
	return asg, nil
}

func (s *rangeSplits) newReader(ctx engine.SourceContext, splits []engine.Split) (engine.SplitReader[rec], error) {
	s.mu.Lock()
	if s.given == nil {
		s.given = make(map[int][]engine.Split)
	}
	s.given[ctx.Index] = slices.Clone(splits)
	s.mu.Unlock()
	rd := &rangeReader{s: s, tick: time.Duration(ctx.Parallelism) * s.tick}
	for _, sp := range splits {
		r, err := parseRange(sp)
		if err != nil {
			return nil, err
		}
		rd.splits = append(rd.splits, r)
	}
	return rd, nil
}

type rangeReader struct {
	s      *rangeSplits
	splits []rangeSplit
	tick   time.Duration
	last   time.Time
}

func (r *rangeReader) Read(buf []rec) (int, error) {
	if time.Since(r.last) < r.tick {
		return 0, nil
	}
	r.last = time.Now()
	n := 0
	for i := range r.splits {
		sp := &r.splits[i]
		for ; n < min(len(buf), 16) && sp.next < sp.hi; n++ {
			buf[n] = rec{Key: sp.next % r.s.keys, Seq: sp.next}
			sp.next++
		}
	}
	for _, sp := range r.splits {
		if sp.next < sp.hi {
			return n, nil
		}
	}
	return n, io.EOF
}

func (r *rangeReader) Splits() ([]engine.Split, error) {
	var out []engine.Split
	for i, sp := range r.splits {
		if i == 0 && r.s.lie {
			continue
		}
		out = append(out, sp.split())
	}
	return out, nil
}

func (r *rangeReader) Close() error { return nil }

// SplitsOfPosition converts a position of plainRange.
func (s *rangeSplits) SplitsOfPosition(index, parallelism int, position []byte) ([]engine.Split, error) {
	r := s.taskRange(index, parallelism)
	next, err := strconv.ParseInt(string(position), 10, 64)
	if err != nil || next < r.lo || next > r.hi {
		return nil, fmt.Errorf("bad position %q of task %d/%d", position, index, parallelism)
	}
	r.next = next
	return []engine.Split{r.split()}, nil
}

// noConvert hides rangeSplits' PositionConverter.
type noConvert struct{ s *rangeSplits }

func (n noConvert) Initial(p int) ([][]engine.Split, error) { return n.s.Initial(p) }
func (n noConvert) Reassign(all []engine.Split, p int) ([][]engine.Split, error) {
	return n.s.Reassign(all, p)
}

// plainRange is rangeSplits as a plain source: task j of p reads range j,
// its position the next i.
func (s *rangeSplits) plainRange(ctx engine.SourceContext) (engine.Source[rec], error) {
	return &plainRangeSource{r: s.newRangeReader(s.taskRange(ctx.Index, ctx.Parallelism), ctx.Parallelism)}, nil
}

func (s *rangeSplits) newRangeReader(r rangeSplit, parallelism int) *rangeReader {
	return &rangeReader{s: s, splits: []rangeSplit{r}, tick: time.Duration(parallelism) * s.tick}
}

type plainRangeSource struct{ r *rangeReader }

func (p *plainRangeSource) Open(_ engine.SourceContext, state []byte) error {
	if state != nil {
		next, err := strconv.ParseInt(string(state), 10, 64)
		if err != nil {
			return err
		}
		p.r.splits[0].next = next
	}
	return nil
}
func (p *plainRangeSource) Read(buf []rec) (int, error) { return p.r.Read(buf) }
func (p *plainRangeSource) Position() ([]byte, error) {
	return strconv.AppendInt(nil, p.r.splits[0].next, 10), nil
}
func (p *plainRangeSource) Close() error { return nil }

// rescaleJob is countJob's shape over a splittable source, everything at
// the job's parallelism.
func rescaleJob(t testing.TB, opts engine.Options, enum engine.SplitEnumerator, s *rangeSplits, sink engine.Sink[rec]) *engine.Job {
	t.Helper()
	j := engine.NewJob("counts", opts)
	src := engine.FromSplitSource(j, "source", enum, s.newReader)
	return finishCountJob(j, src, sink)
}

func finishCountJob(j *engine.Job, s engine.Stream[rec], sink engine.Sink[rec]) *engine.Job {
	s = engine.Filter(s, "filter", func(r rec) bool { return r.Seq%3 != 0 })
	ks := engine.KeyBy(s, engine.Int64Key(func(r *rec) int64 { return r.Key }))
	engine.ToSink(engine.Process(ks, "count", countOp), "sink", sink)
	return j
}

// sourceSplits returns the split lists of the source's tasks in the
// newest checkpoint, by task index.
func sourceSplits(t *testing.T, st *snapshot.Store) [][]engine.Split {
	t.Helper()
	m, _ := newestCheckpoint(t, st)
	var out [][]engine.Split
	for _, tm := range m.Tasks {
		if tm.Operators[0] != "source" {
			continue
		}
		splits, err := engine.DecodeSplits(tm.Source)
		if err != nil {
			t.Fatalf("task %d: %v", tm.Index, err)
		}
		for len(out) <= tm.Index {
			out = append(out, nil)
		}
		out[tm.Index] = splits
	}
	return out
}

// TestRescaleSplitSource runs a checkpointed job over a splittable source
// at parallelism 2, stops it (a final checkpoint), and restores it at 3,
// then 1, then 4, where it runs to the end: every record reaches the sink
// exactly once and every key's counts are exact. The keyed operator and
// the sink rescale with it; after each stop the test undoes the commits
// of the final checkpoint, as a crash between its metadata and its
// commits would leave them, so the next run must commit the pending
// transactions of every old sink task, at its new parallelism, once.
func TestRescaleSplitSource(t *testing.T) {
	dir := t.TempDir()
	sink := newTxnSink()
	undone := 0
	const n, keys = 60_000, 16
	src := &rangeSplits{n: n, keys: keys, tick: 160 * time.Microsecond}
	pars := []int{2, 3, 1, 4}
	for run, p := range pars {
		logs := &logBuffer{}
		st := openLoggedStore(t, dir, logs)
		opts := restoreOptions(st, logs)
		opts.Parallelism = p
		// Checkpoints far enough apart that the final one of a stop
		// holds records (their commits are what the test undoes).
		opts.Checkpointing.Interval = 40 * time.Millisecond
		j := rescaleJob(t, opts, src, src, sink)
		last := run == len(pars)-1
		if last {
			if err := j.Run(context.Background()); err != nil {
				t.Fatalf("run %d at parallelism %d: %v", run, p, err)
			}
		} else {
			runStopped(t, j, 60*time.Millisecond)
		}
		if run > 0 && j.RestoredFrom() == 0 {
			t.Fatalf("run %d at parallelism %d restored nothing", run, p)
		}
		if run > 0 && !strings.Contains(logs.String(), fmt.Sprintf("over %d tasks", p)) {
			t.Fatalf("run %d: the splits were not dealt out again:\n%s", run, logs)
		}
		if got := len(sink.records()); !last && got >= n*2/3 {
			t.Fatalf("run %d was stopped after every record was committed (%d)", run, got)
		}
		if !last {
			if got := len(sourceSplits(t, st)); got != p {
				t.Fatalf("run %d: the checkpoint has splits of %d source tasks, want %d", run, got, p)
			}
			m, _ := newestCheckpoint(t, st)
			undone += sink.uncommitAfter(m.CheckpointID - 1)
		}
		st.Close()
	}
	if undone == 0 {
		t.Fatal("no final checkpoint committed records: the test did not exercise the sinks' recovery")
	}
	if src.reassigned != len(pars)-1 {
		t.Fatalf("Reassign was called %d times, want %d", src.reassigned, len(pars)-1)
	}
	checkCounts(t, sink.records(), n, keys)
}

// At the same parallelism each task gets back exactly the splits it
// checkpointed, and Reassign is not called.
func TestRestoreSameParallelismKeepsSplits(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	const n, keys = 60_000, 16
	src := &rangeSplits{n: n, keys: keys, tick: 160 * time.Microsecond}
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	opts := restoreOptions(st, logs)
	opts.Parallelism = 3
	// At 3, then 2 (subdividing), then 2 again: the second run's tasks
	// hold several splits each.
	runStopped(t, rescaleJob(t, opts, src, src, sink), 30*time.Millisecond)
	opts.Parallelism = 2
	runStopped(t, rescaleJob(t, opts, src, src, sink), 30*time.Millisecond)
	want := sourceSplits(t, st)
	if src.reassigned != 1 {
		t.Fatalf("Reassign called %d times, want 1", src.reassigned)
	}
	src.given = nil
	j := rescaleJob(t, opts, src, src, sink)
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if src.reassigned != 1 {
		t.Fatalf("Reassign called %d times at the same parallelism, want no call", src.reassigned-1)
	}
	for i, w := range want {
		if got := src.given[i]; !slices.EqualFunc(got, w, func(a, b engine.Split) bool { return a.String() == b.String() }) {
			t.Fatalf("task %d opened with %v, its checkpoint had %v", i, got, w)
		}
	}
	checkCounts(t, sink.records(), n, keys)
}

// plainJob is rescaleJob over the plain form of src.
func plainJob(opts engine.Options, src *rangeSplits, sink engine.Sink[rec]) *engine.Job {
	j := engine.NewJob("counts", opts)
	return finishCountJob(j, engine.FromSource(j, "source", src.plainRange), sink)
}

// A plain source keeps its parallelism: a restore at another is refused,
// before anything runs, with a message naming the step and what to do;
// CheckCheckpoint (streamd validate) says the same.
func TestRescalePlainSourceRefused(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	src := &rangeSplits{n: 60_000, keys: 16, tick: 160 * time.Microsecond}
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	defer st.Close()
	opts := restoreOptions(st, logs)
	opts.Parallelism = 2
	runStopped(t, plainJob(opts, src, sink), 30*time.Millisecond)
	committed := len(sink.records())
	opts.Parallelism = 3
	err := plainJob(opts, src, sink).Run(context.Background())
	var ie *engine.IncompatibleError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `source "source" had parallelism 2, now 3; it is not splittable`) {
		t.Fatalf("got %v, want an IncompatibleError naming the source and its parallelism", err)
	}
	if _, cerr := plainJob(opts, src, sink).CheckCheckpoint(st); cerr == nil || cerr.Error() != err.Error() {
		t.Fatalf("CheckCheckpoint = %v, want %v", cerr, err)
	}
	if got := len(sink.records()); got != committed {
		t.Fatalf("the refused run committed %d records", got-committed)
	}
}

// A checkpoint of the plain form of a source restores into its splittable
// form through the enumerator's PositionConverter, at another parallelism
// too, exactly once; without a converter it is refused. The other way, a
// plain source cannot restore split lists.
func TestPlainPositionsBecomeSplits(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	const n, keys = 60_000, 16
	src := &rangeSplits{n: n, keys: keys, tick: 160 * time.Microsecond}
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	defer st.Close()
	opts := restoreOptions(st, logs)
	opts.Parallelism = 2
	runStopped(t, plainJob(opts, src, sink), 30*time.Millisecond)
	opts.Parallelism = 3
	err := rescaleJob(t, opts, noConvert{src}, src, sink).Run(context.Background())
	if !errors.Is(err, engine.ErrIncompatible) || !strings.Contains(err.Error(), `source "source" is now splittable, but the checkpoint holds positions of its plain predecessor`) {
		t.Fatalf("without a converter: got %v", err)
	}
	runStopped(t, rescaleJob(t, opts, src, src, sink), 30*time.Millisecond)
	opts.Parallelism = 2
	err = plainJob(opts, src, sink).Run(context.Background())
	if !errors.Is(err, engine.ErrIncompatible) || !strings.Contains(err.Error(), `source "source" was splittable and is now a plain source`) {
		t.Fatalf("split lists into a plain source: got %v", err)
	}
	opts.Parallelism = 4
	if err := rescaleJob(t, opts, src, src, sink).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, sink.records(), n, keys)
}

// A reader that checkpoints other splits than it was given would lose
// records: the job fails, naming the splits, and that checkpoint never
// completes.
func TestSplitReaderLosingASplitFailsJob(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	src := &rangeSplits{n: 60_000, keys: 16, tick: 160 * time.Microsecond, lie: true}
	opts := checkpointed(st, 0)
	opts.Parallelism = 2
	err := rescaleJob(t, opts, src, src, newMemSink()).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SplitReader.Splits returned the splits") {
		t.Fatalf("got %v, want the job to fail naming the splits", err)
	}
	if ids, _ := st.Completed("counts"); len(ids) != 0 {
		t.Fatalf("checkpoints %v completed without the lost split", ids)
	}
}

// An enumerator that gives one split to two tasks would read it twice:
// the restore is refused before anything runs.
func TestEnumeratorDuplicatingASplitRefused(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	src := &rangeSplits{n: 60_000, keys: 16, tick: 160 * time.Microsecond}
	logs := &logBuffer{}
	st := openLoggedStore(t, dir, logs)
	defer st.Close()
	opts := restoreOptions(st, logs)
	opts.Parallelism = 2
	runStopped(t, rescaleJob(t, opts, src, src, sink), 30*time.Millisecond)
	committed := len(sink.records())
	src.dup = true
	opts.Parallelism = 3
	err := rescaleJob(t, opts, src, src, sink).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `cannot assign the splits of source "source"`) || !strings.Contains(err.Error(), "appears twice") {
		t.Fatalf("got %v, want a refusal naming the source and the duplicate split", err)
	}
	if got := len(sink.records()); got != committed {
		t.Fatalf("the refused run committed %d records", got-committed)
	}
}
