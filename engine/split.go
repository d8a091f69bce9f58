package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/streamd/streamd/snapshot"
)

// Limits of split lists: every split list the engine stores or hands to a
// reader stays within them, and the decoder refuses anything beyond them.
const (
	// MaxSplits bounds the splits of one source operator (all its tasks).
	MaxSplits = 1 << 20
	// MaxSplitIDBytes bounds a split's ID (a file path fits).
	MaxSplitIDBytes = 4096
	// MaxSplitStateBytes bounds a split's position.
	MaxSplitStateBytes = 64 << 10
)

// Split is one independently readable part of a splittable source: a
// range of a sequence, a file, a partition. ID names it, uniquely within
// its source operator and stably across checkpoints; State is its read
// position, opaque to the engine, which stores it in checkpoints. A source
// whose position is a set of splits can be restored at another
// parallelism: the engine gathers the splits of every old task and lets
// the source's SplitEnumerator deal them out again (FromSplitSource).
type Split struct {
	ID    string
	State []byte
}

// String returns the split's ID and, when its state is short printable
// text, the state ("i%2==1 @ 4097"), else the state's size.
func (s Split) String() string {
	id := s.ID
	if !printable([]byte(id), MaxSplitIDBytes) {
		id = strconv.Quote(id)
	}
	if len(s.State) > 0 && printable(s.State, 80) {
		return id + " @ " + string(s.State)
	}
	return fmt.Sprintf("%s (%d bytes)", id, len(s.State))
}

func printable(b []byte, limit int) bool {
	if len(b) > limit || !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// SplitEnumerator deals a splittable source's splits out to its tasks, as
// Flink's split enumerator does. Its methods are called once per run,
// before any task of the source opens, on one goroutine.
type SplitEnumerator interface {
	// Initial returns the splits of a fresh start: parallelism lists, the
	// list of task i at index i (an empty list leaves the task idle: it
	// ends at once).
	Initial(parallelism int) ([][]Split, error)
	// Reassign deals all, the splits of every task of a restored
	// checkpoint (finished ones included), out to parallelism tasks. It
	// is called only when the parallelism changed: at the same
	// parallelism each task gets back exactly its own splits. It may
	// subdivide splits into new ones (with new IDs), as long as the records
	// the result will read are exactly the records all would have read:
	// none twice, none lost.
	Reassign(all []Split, parallelism int) ([][]Split, error)
}

// PositionConverter is implemented by a SplitEnumerator whose source used
// to be a plain Source (FromSource) under the same operator id: it turns
// the position that task index of parallelism recorded then into that
// task's splits, so that checkpoints taken before the source became
// splittable still restore (at any parallelism). Without it such a
// checkpoint is refused.
type PositionConverter interface {
	SplitsOfPosition(index, parallelism int, position []byte) ([]Split, error)
}

// SplitReader reads the splits the enumerator gave one task. Each task of
// a splittable source has its own, created by the newReader given to
// FromSplitSource; all methods are called on the task's goroutine.
type SplitReader[T any] interface {
	// Read is Source.Read: it returns io.EOF itself when every split is
	// finished (an error wrapping io.EOF fails the job).
	Read(buf []T) (int, error)
	// Splits returns every split the reader was given (finished ones
	// too, with a position that says so), each with its position after
	// the records returned so far; it is stored in the checkpoint. Called
	// between Reads. Returning another set of IDs is a bug of the reader
	// (records would be lost or read twice): the job fails.
	Splits() ([]Split, error)
	// Close releases resources.
	Close() error
}

// FromSplitSource adds a splittable source operator: enum decides which
// splits each task reads, newReader is called once per parallel task with
// its splits (restored positions on a restore). Unlike a FromSource
// source, it may restore at another parallelism.
func FromSplitSource[T any](j *Job, name string, enum SplitEnumerator, newReader func(ctx SourceContext, splits []Split) (SplitReader[T], error), opts ...OpOption) Stream[T] {
	n := &node{name: name, kind: kindSourceNode, out: typeOps[T]{}, splits: enum}
	n.openSource = func(rt *Runtime, next any, state []byte) (sourceRunner, error) {
		// state is this task's split list, encoded by restoredSource.
		splits, err := DecodeSplits(state)
		if err != nil {
			panic(fmt.Sprintf("engine: the split list of %s does not decode: %v", rt, err))
		}
		sc := SourceContext{Job: rt.Job, Operator: name, Index: rt.TaskIndex, Parallelism: rt.Parallelism}
		r, err := newReader(sc, splits)
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(splits))
		for i, s := range splits {
			ids[i] = s.ID
		}
		slices.Sort(ids)
		sw, _ := r.(SplitWatermarks)
		return &typedSplitSource[T]{r: r, ids: ids, buf: make([]T, rt.batchSize), push: next.(func(*T)),
			sw: sw, et: openEventTime[T](n, rt, len(splits), sw)}, nil
	}
	if enum == nil {
		j.errs = append(j.errs, fmt.Errorf("engine: source %q: FromSplitSource needs a SplitEnumerator", name))
	}
	j.addNode(n, nil, opts)
	return Stream[T]{j: j, n: n}
}

// typedSplitSource is the untyped side of a splittable source task.
type typedSplitSource[T any] struct {
	r SplitReader[T]
	// ids are the sorted IDs of the splits the task was given.
	ids  []string
	buf  []T
	push func(*T)
	// sw says which split a Read came from (nil: the reader does not).
	sw SplitWatermarks
	et eventTime[T]
}

func (s *typedSplitSource[T]) step() (int, bool, error) {
	n, err := s.r.Read(s.buf)
	split := 0
	if s.sw != nil && s.et.ts != nil {
		split = s.sw.LastSplit()
	}
	return pushRead(n, err, s.buf, s.push, "SplitReader", &s.et, split)
}

func (s *typedSplitSource[T]) completed(id uint64) error { return notifyCompleted(s.r, id) }

func (s *typedSplitSource[T]) position(id uint64) ([]byte, error) {
	splits, err := s.r.Splits()
	if err != nil {
		return nil, err
	}
	checkpointTaken(s.r, id)
	got := make([]string, len(splits))
	for i, sp := range splits {
		got[i] = sp.ID
	}
	slices.Sort(got)
	if !slices.Equal(got, s.ids) {
		panic(fmt.Sprintf("engine: SplitReader.Splits returned the splits %q, but the reader was given %q (a bug of the source: records would be lost or read twice)", got, s.ids))
	}
	if err := checkSplits(splits); err != nil {
		return nil, fmt.Errorf("SplitReader.Splits: %w", err)
	}
	return AppendSplits(nil, splits), nil
}

func (s *typedSplitSource[T]) close() error { return s.r.Close() }

// The encoding of a split list (what a splittable source task stores as
// snapshot.TaskMeta.Source): splitMagic, a version byte, then a uvarint
// count and per split its ID and its state, each a uvarint length and
// bytes. Varints are minimal. A plain source's position is stored as the
// source returned it, without framing; the magic's first byte 0xff tells
// the two apart (a checkpoint of a plain source whose position starts with
// the whole magic and decodes as a split list would be mistaken for one:
// no source of this repository writes such positions).
const (
	splitMagic         = "\xffSPL"
	splitFormatVersion = 1
)

// ErrBadSplits is wrapped by the errors of DecodeSplits.
var ErrBadSplits = errors.New("engine: malformed split list")

// IsSplitList reports whether b, a source task's checkpointed position,
// is a split list (rather than the position of a plain source).
func IsSplitList(b []byte) bool { return bytes.HasPrefix(b, []byte(splitMagic)) }

// AppendSplits appends the encoding of splits to dst.
func AppendSplits(dst []byte, splits []Split) []byte {
	dst = append(dst, splitMagic...)
	dst = append(dst, splitFormatVersion)
	dst = binary.AppendUvarint(dst, uint64(len(splits)))
	for _, s := range splits {
		dst = binary.AppendUvarint(dst, uint64(len(s.ID)))
		dst = append(dst, s.ID...)
		dst = binary.AppendUvarint(dst, uint64(len(s.State)))
		dst = append(dst, s.State...)
	}
	return dst
}

// DecodeSplits decodes a split list written by AppendSplits. The states
// of the result share b's memory. Errors wrap ErrBadSplits and say what
// is wrong; a list with a duplicate or empty ID, or beyond the limits, is
// malformed.
func DecodeSplits(b []byte) ([]Split, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSplits, fmt.Sprintf(format, args...))
	}
	if !IsSplitList(b) {
		return nil, bad("it does not start with the split list's magic")
	}
	b = b[len(splitMagic):]
	if len(b) == 0 {
		return nil, bad("no version")
	}
	if v := b[0]; v != splitFormatVersion {
		return nil, bad("version %d, this streamd reads version %d", v, splitFormatVersion)
	}
	b = b[1:]
	uvarint := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad("truncated %s", what)
		}
		if n != uvarintLen(v) {
			return 0, bad("non-minimal varint for %s", what)
		}
		b = b[n:]
		return v, nil
	}
	bytesOf := func(what string, limit int) ([]byte, error) {
		n, err := uvarint(what + " length")
		if err != nil {
			return nil, err
		}
		if n > uint64(limit) {
			return nil, bad("%s of %d bytes, more than the limit %d", what, n, limit)
		}
		if n > uint64(len(b)) {
			return nil, bad("%s of %d bytes, only %d left", what, n, len(b))
		}
		v := b[:n:n]
		b = b[n:]
		return v, nil
	}
	count, err := uvarint("split count")
	if err != nil {
		return nil, err
	}
	// Each split takes at least two bytes: the count cannot ask for more
	// memory than the input justifies.
	if count > MaxSplits || count > uint64(len(b)/2) {
		return nil, bad("%d splits in %d bytes (limit %d)", count, len(b), MaxSplits)
	}
	splits := make([]Split, count)
	for i := range splits {
		id, err := bytesOf("split ID", MaxSplitIDBytes)
		if err != nil {
			return nil, err
		}
		state, err := bytesOf("split state", MaxSplitStateBytes)
		if err != nil {
			return nil, err
		}
		splits[i] = Split{ID: string(id), State: state}
	}
	if len(b) > 0 {
		return nil, bad("%d bytes after the last split", len(b))
	}
	if err := checkSplits(splits); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSplits, err)
	}
	return splits, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// checkSplits checks one list of splits against the limits: IDs non-empty
// and unique, sizes bounded.
func checkSplits(splits []Split) error {
	if len(splits) > MaxSplits {
		return fmt.Errorf("%d splits, more than the limit %d", len(splits), MaxSplits)
	}
	seen := make(map[string]bool, len(splits))
	for _, s := range splits {
		switch {
		case s.ID == "":
			return errors.New("a split has an empty ID")
		case len(s.ID) > MaxSplitIDBytes:
			return fmt.Errorf("split ID %.40q… has %d bytes, more than the limit %d", s.ID, len(s.ID), MaxSplitIDBytes)
		case len(s.State) > MaxSplitStateBytes:
			return fmt.Errorf("split %q has a state of %d bytes, more than the limit %d", s.ID, len(s.State), MaxSplitStateBytes)
		case seen[s.ID]:
			return fmt.Errorf("split %q appears twice", s.ID)
		}
		seen[s.ID] = true
	}
	return nil
}

// checkAssignment checks what an enumerator returned for parallelism
// tasks: one list per task, and no split in two places (which would read
// its records twice).
func checkAssignment(asg [][]Split, parallelism int) error {
	if len(asg) != parallelism {
		return fmt.Errorf("it returned %d lists of splits for %d tasks", len(asg), parallelism)
	}
	var all []Split
	for _, l := range asg {
		all = append(all, l...)
	}
	return checkSplits(all)
}

// splitAssignments holds, per splittable source vertex, the splits each
// of its tasks starts with in this run: restored (the checkpoint's, dealt
// out again when the parallelism changed) or initial. Computed once per
// vertex, by the restore phase or by the first task that opens.
type splitAssignments struct {
	mu       sync.Mutex
	byVertex map[*vertex][][]Split // guarded by mu
}

// assignSplits returns the splits of every task of v, a splittable source
// vertex, computing them on the first call.
//
// On a restore the splits come from the checkpoint's tasks of v's source
// operator: each task's split list, or, for a task that recorded the
// position of a plain source (before the source became splittable), the
// splits the enumerator converts it into (PositionConverter). At the same
// parallelism every task gets back exactly its own splits; at another the
// enumerator's Reassign deals all of them out. A source that is new in the
// job, and every fresh start, takes the enumerator's Initial assignment.
func (rt *jobRuntime) assignSplits(v *vertex) ([][]Split, error) {
	a := &rt.splitsPerTask
	a.mu.Lock()
	defer a.mu.Unlock()
	if asg, ok := a.byVertex[v]; ok {
		return asg, nil
	}
	n := v.head()
	asg, err := rt.computeSplits(n, v.parallelism)
	if err != nil {
		return nil, fmt.Errorf("engine: job %q: cannot assign the splits of source %q: %w", rt.job.name, n.name, err)
	}
	if a.byVertex == nil {
		a.byVertex = make(map[*vertex][][]Split)
	}
	a.byVertex[v] = asg
	return asg, nil
}

func (rt *jobRuntime) computeSplits(n *node, parallelism int) ([][]Split, error) {
	var old []*snapshot.TaskMeta
	if m := rt.restored; m != nil {
		for i := range m.Tasks {
			if tm := &m.Tasks[i]; len(tm.Operators) > 0 && tm.Operators[0] == n.uid {
				old = append(old, tm)
			}
		}
	}
	if len(old) == 0 {
		asg, err := n.splits.Initial(parallelism)
		if err != nil {
			return nil, err
		}
		if err := checkAssignment(asg, parallelism); err != nil {
			return nil, fmt.Errorf("the enumerator's initial assignment is wrong: %w", err)
		}
		return asg, nil
	}
	id := rt.restored.CheckpointID
	slices.SortFunc(old, func(a, b *snapshot.TaskMeta) int { return a.Index - b.Index })
	oldPar := old[0].Parallelism
	perTask := make([][]Split, len(old))
	for i, tm := range old {
		if tm.Parallelism != oldPar || tm.Index != i {
			return nil, fmt.Errorf("checkpoint %d has tasks %d/%d and %d/%d of the source: its tasks do not fit together", id, old[0].Index, oldPar, tm.Index, tm.Parallelism)
		}
		var err error
		if IsSplitList(tm.Source) {
			perTask[i], err = DecodeSplits(tm.Source)
		} else if conv, ok := n.splits.(PositionConverter); ok {
			perTask[i], err = conv.SplitsOfPosition(tm.Index, tm.Parallelism, tm.Source)
		} else {
			err = errors.New("it holds the position of a plain source, and the source's enumerator cannot convert positions into splits (PositionConverter)")
		}
		if err != nil {
			return nil, fmt.Errorf("task %d/%d of checkpoint %d: %w", tm.Index, tm.Parallelism, id, err)
		}
	}
	if len(old) != oldPar {
		return nil, fmt.Errorf("checkpoint %d has %d tasks of the source, which had parallelism %d", id, len(old), oldPar)
	}
	var all []Split
	for _, l := range perTask {
		all = append(all, l...)
	}
	if err := checkSplits(all); err != nil {
		return nil, fmt.Errorf("the splits of checkpoint %d: %w", id, err)
	}
	if oldPar == parallelism {
		return perTask, nil
	}
	asg, err := n.splits.Reassign(all, parallelism)
	if err != nil {
		return nil, err
	}
	if err := checkAssignment(asg, parallelism); err != nil {
		return nil, fmt.Errorf("the enumerator's reassignment is wrong: %w", err)
	}
	total := 0
	for _, l := range asg {
		total += len(l)
	}
	rt.opts.Logger("streamd: job %q: source %q: the %d splits of its %d tasks in checkpoint %d dealt out as %d splits over %d tasks", rt.job.name, n.name, len(all), oldPar, id, total, parallelism)
	return asg, nil
}
