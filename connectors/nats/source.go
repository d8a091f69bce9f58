package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamd/streamd/engine"
)

// DefaultBufferMessages is SourceOptions.BufferMessages's default.
const DefaultBufferMessages = 1024

// maxSourceSplits bounds the subject filters of one source.
const maxSourceSplits = 4096

// Message is what Decode gets: one message of the stream. Data is valid
// only during the call.
type Message struct {
	Subject string
	Data    []byte
	// Seq is the message's stream sequence.
	Seq uint64
	// TimeMs is when the stream stored it, in ms since the epoch.
	TimeMs int64
}

// SourceOptions configures a JetStream source.
type SourceOptions[T any] struct {
	Conn ConnOptions
	// Stream is the stream to read. Required.
	Stream string
	// Subjects are the subject filters that are the source's splits;
	// they must not overlap. Default: the stream's subjects.
	Subjects []string
	// Decode fills v from a message. Required (DecodeJSON decodes JSON
	// values into Record).
	Decode func(m *Message, v *T) error
	// Bounded makes the source end: at its first start it fixes, per
	// split, the last message then in the stream, and ends when every
	// split has read through it. Default false (runs until stopped).
	Bounded bool
	// StartSeq is the first stream sequence a fresh start reads; 0 reads
	// from the beginning. A restore continues from the checkpoint.
	StartSeq uint64
	// BufferMessages bounds the messages received ahead of the job, per
	// split. Default DefaultBufferMessages.
	BufferMessages int
}

// EnsureDefaults fills in every unset field.
func (o *SourceOptions[T]) EnsureDefaults() {
	o.Conn.ensureDefaults()
	if o.BufferMessages <= 0 {
		o.BufferMessages = DefaultBufferMessages
	}
}

// Validate reports every problem of the options at once.
func (o *SourceOptions[T]) Validate() error {
	errs := o.Conn.validate()
	if o.Stream == "" || strings.ContainsAny(o.Stream, ". *>\t\r\n") {
		errs = append(errs, fmt.Errorf("nats: source: Stream %q is not a stream name", o.Stream))
	}
	if o.Decode == nil {
		errs = append(errs, errors.New("nats: source: Decode is required"))
	}
	if err := checkFilters(o.Subjects); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Record is a decoded JSON value with where it came from (DecodeJSON).
type Record[V any] struct {
	Subject string
	Seq     uint64
	TimeMs  int64
	Value   V
}

// DecodeJSON returns a Decode function that decodes each message's payload
// as JSON into Record.Value.
func DecodeJSON[V any]() func(m *Message, r *Record[V]) error {
	return func(m *Message, r *Record[V]) error {
		*r = Record[V]{Subject: m.Subject, Seq: m.Seq, TimeMs: m.TimeMs}
		return json.Unmarshal(m.Data, &r.Value)
	}
}

// RecordTime returns the timestamp function for event time from the
// message time (engine.WatermarkStrategy.Timestamp).
func RecordTime[V any]() func(r *Record[V]) int64 {
	return func(r *Record[V]) int64 { return r.TimeMs }
}

// Source is a JetStream stream as a splittable source:
//
//	src, err := nats.NewSource(opts)
//	s := engine.FromSplitSource(j, "source", src, src.NewReader)
type Source[T any] struct {
	opts SourceOptions[T]
}

// NewSource returns the source of opts.
func NewSource[T any](opts SourceOptions[T]) (*Source[T], error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Source[T]{opts: opts}, nil
}

// srcSplit is one subject filter and its position.
type srcSplit struct {
	filter  string
	next    uint64 // the next stream sequence to read, >= 1
	bounded bool
	end     uint64 // bounded: the last sequence to read (0: none)
}

func (s srcSplit) finished() bool { return s.bounded && s.next > s.end }

func (s srcSplit) split() engine.Split {
	st := "next=" + strconv.FormatUint(s.next, 10)
	if s.bounded {
		st += " end=" + strconv.FormatUint(s.end, 10)
	}
	return engine.Split{ID: s.filter, State: []byte(st)}
}

// parseSplit decodes a split the source wrote, strictly.
func parseSplit(sp engine.Split) (srcSplit, error) {
	bad := func(why string) (srcSplit, error) {
		return srcSplit{}, fmt.Errorf("nats: split %q (position %q) %s", sp.ID, sp.State, why)
	}
	if err := checkFilters([]string{sp.ID}); err != nil {
		return bad("is not a subject filter")
	}
	s := srcSplit{filter: sp.ID}
	fields := strings.Split(string(sp.State), " ")
	if len(fields) < 1 || len(fields) > 2 {
		return bad("has a malformed position")
	}
	num := func(f, key string) (uint64, bool) {
		v, ok := strings.CutPrefix(f, key+"=")
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return 0, false
		}
		n, err := strconv.ParseUint(v, 10, 64)
		return n, err == nil
	}
	var ok bool
	if s.next, ok = num(fields[0], "next"); !ok || s.next == 0 {
		return bad("has a malformed position")
	}
	if len(fields) == 2 {
		s.bounded = true
		if s.end, ok = num(fields[1], "end"); !ok {
			return bad("has a malformed end")
		}
	}
	return s, nil
}

// checkFilters checks subject filters: well formed, at most
// maxSourceSplits, and no two overlapping (a message matching both would
// be read twice).
func checkFilters(fs []string) error {
	if len(fs) > maxSourceSplits {
		return fmt.Errorf("nats: source: %d subject filters, more than the limit %d", len(fs), maxSourceSplits)
	}
	for i, f := range fs {
		toks := strings.Split(f, ".")
		if f == "" || len(f) > MaxSubjectBytes {
			return fmt.Errorf("nats: source: subject filter %q is empty or too long", f)
		}
		for j, t := range toks {
			if t == "" || strings.ContainsAny(t, " \t\r\n") || (t == ">" && j != len(toks)-1) ||
				(len(t) > 1 && strings.ContainsAny(t, "*>")) {
				return fmt.Errorf("nats: source: %q is not a subject filter", f)
			}
		}
		for _, g := range fs[:i] {
			if filtersOverlap(f, g) {
				return fmt.Errorf("nats: source: the subject filters %q and %q overlap: a message matching both would be read twice", g, f)
			}
		}
	}
	return nil
}

// filtersOverlap reports whether some subject matches both filters.
func filtersOverlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i < len(ta) && ta[i] == ">", i < len(tb) && tb[i] == ">":
			// ">" matches one or more tokens: the other must still have one.
			return i < len(ta) && i < len(tb)
		case i == len(ta) || i == len(tb):
			return len(ta) == len(tb)
		case ta[i] != tb[i] && ta[i] != "*" && tb[i] != "*":
			return false
		}
	}
}

// stream opens the source's stream on a new connection.
func (src *Source[T]) stream(what string) (*natsgo.Conn, *connHealth, jetstream.Stream, error) {
	nc, health, err := connect(src.opts.Conn, what)
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("nats: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), src.opts.Conn.ConnectTimeout)
	defer cancel()
	st, err := js.Stream(ctx, src.opts.Stream)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("nats: source: cannot open stream %q: %w", src.opts.Stream, err)
	}
	return nc, health, st, nil
}

// Initial makes one split per subject filter (SourceOptions.Subjects, or
// the stream's subjects), fixing its end when the source is bounded, and
// deals them out round robin.
func (src *Source[T]) Initial(parallelism int) ([][]engine.Split, error) {
	nc, _, st, err := src.stream("source " + src.opts.Stream)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	filters := src.opts.Subjects
	if len(filters) == 0 {
		filters = st.CachedInfo().Config.Subjects
		if len(filters) == 0 {
			return nil, fmt.Errorf("nats: source: stream %q has no subjects: name the filters in Subjects", src.opts.Stream)
		}
		if err := checkFilters(filters); err != nil {
			return nil, fmt.Errorf("%w (the subjects of stream %q)", err, src.opts.Stream)
		}
	}
	splits := make([]srcSplit, len(filters))
	for i, f := range filters {
		splits[i] = srcSplit{filter: f, next: max(1, src.opts.StartSeq), bounded: src.opts.Bounded}
		if src.opts.Bounded {
			if splits[i].end, err = src.lastSeq(st, f); err != nil {
				return nil, err
			}
		}
	}
	return deal(splits, parallelism), nil
}

// lastSeq returns the stream sequence of the last message matching
// filter, 0 if none.
func (src *Source[T]) lastSeq(st jetstream.Stream, filter string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), src.opts.Conn.ConnectTimeout)
	defer cancel()
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPolicy,
	})
	if err == nil {
		var b jetstream.MessageBatch
		if b, err = c.FetchNoWait(1); err == nil {
			var seq uint64
			for m := range b.Messages() {
				md, merr := m.Metadata()
				if merr != nil {
					return 0, fmt.Errorf("nats: source: stream %q: %w", src.opts.Stream, merr)
				}
				seq = md.Sequence.Stream
			}
			err = b.Error()
			if err == nil {
				return seq, nil
			}
		}
	}
	return 0, fmt.Errorf("nats: source: cannot find the last message of %q in stream %q: %w", filter, src.opts.Stream, err)
}

// deal sorts splits by filter and deals them round robin.
func deal(splits []srcSplit, parallelism int) [][]engine.Split {
	slices.SortFunc(splits, func(a, b srcSplit) int { return strings.Compare(a.filter, b.filter) })
	asg := make([][]engine.Split, parallelism)
	for i, s := range splits {
		asg[i%parallelism] = append(asg[i%parallelism], s.split())
	}
	return asg
}

// Reassign deals the splits, with their positions, out again: a filter's
// messages stay in one split, so a task reads them in stream order.
func (src *Source[T]) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	splits := make([]srcSplit, len(all))
	for i, sp := range all {
		s, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		splits[i] = s
	}
	return deal(splits, parallelism), nil
}

// NewReader returns the reader of one task's splits (for
// engine.FromSplitSource). It opens its own connection and one ordered
// consumer per unfinished split.
func (src *Source[T]) NewReader(sc engine.SourceContext, splits []engine.Split) (engine.SplitReader[T], error) {
	r := &reader[T]{opts: src.opts, last: -1}
	for _, sp := range splits {
		s, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		r.splits = append(r.splits, &readSplit{srcSplit: s})
	}
	if !slices.ContainsFunc(r.splits, func(s *readSplit) bool { return !s.finished() }) {
		return r, nil
	}
	nc, health, st, err := src.stream(fmt.Sprintf("source %s of job %s, task %d", sc.Operator, sc.Job, sc.Index))
	if err != nil {
		return nil, err
	}
	r.nc, r.health, r.done = nc, health, make(chan struct{})
	for _, s := range r.splits {
		if s.finished() {
			continue
		}
		if err := r.open(st, s); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// readSplit is a split being read: the ordered consumer's messages arrive
// in ch.
type readSplit struct {
	srcSplit
	ch chan jetstream.Msg
	cc jetstream.ConsumeContext
}

type reader[T any] struct {
	opts   SourceOptions[T]
	nc     *natsgo.Conn
	health *connHealth // nc's losses; nil when every split was finished at start
	splits []*readSplit
	done   chan struct{} // closed by Close: handlers stop waiting
	rr     int           // the split the next Read looks at first
	last   int           // LastSplit
	msg    Message

	errMu sync.Mutex
	err   error // a consumer's error, reported by the next Read
}

func (r *reader[T]) open(st jetstream.Stream, s *readSplit) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Conn.ConnectTimeout)
	defer cancel()
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    s.next,
	})
	if err != nil {
		return fmt.Errorf("nats: source: cannot read %q of stream %q from %d: %w", s.filter, r.opts.Stream, s.next, err)
	}
	ch, done := make(chan jetstream.Msg, r.opts.BufferMessages), r.done
	s.ch = ch
	// The handler blocks while the job is behind: the ordered consumer
	// then stops pulling (and, should its heartbeats lapse, recreates
	// itself after the last message handed over, which is still in order).
	s.cc, err = c.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-done:
		}
	}, jetstream.PullMaxMessages(min(r.opts.BufferMessages, 512)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// The ordered consumer recovers from transient errors by
			// itself; these it cannot.
			if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, natsgo.ErrConnectionClosed) {
				r.errMu.Lock()
				if r.err == nil {
					r.err = fmt.Errorf("nats: source: cannot read %q of stream %q: %w", s.filter, r.opts.Stream, err)
				}
				r.errMu.Unlock()
			}
		}))
	if err != nil {
		return fmt.Errorf("nats: source: cannot read %q of stream %q from %d: %w", s.filter, r.opts.Stream, s.next, err)
	}
	return nil
}

// LastSplit implements engine.SplitWatermarks: a Read returns messages of
// one split.
func (r *reader[T]) LastSplit() int { return r.last }

// SplitFinished implements engine.SplitWatermarks.
func (r *reader[T]) SplitFinished(i int) bool { return r.splits[i].finished() }

// Read hands over the messages the splits' consumers received. While
// the connection is lost the consumers wait and the client reconnects
// (then each ordered consumer resumes after the last message it handed
// over); Read goes on returning what was received before, and fails once
// the connection has been lost for longer than ReconnectTimeout.
// The only error wrapping io.EOF it may return is io.EOF itself, at the
// end of a bounded source: anything else fails the job.
func (r *reader[T]) Read(buf []T) (int, error) {
	n, err := r.read(buf)
	if err != nil && err != io.EOF && errors.Is(err, io.EOF) {
		// A Decode or a library error that wraps io.EOF is a failure, not
		// the end: keep its text, drop the chain.
		err = errors.New(err.Error())
	}
	return n, err
}

func (r *reader[T]) read(buf []T) (int, error) {
	r.last = -1
	r.errMu.Lock()
	err := r.err
	r.errMu.Unlock()
	if err != nil {
		return 0, err
	}
	if r.health != nil && !r.allFinished() {
		if err := r.health.check(); err != nil {
			return 0, fmt.Errorf("nats: source: cannot read %s of stream %q: %w", r.unfinished(), r.opts.Stream, err)
		}
	}
	n := len(r.splits)
	for k := range n {
		i := (r.rr + k) % n
		s := r.splits[i]
		if s.finished() || len(s.ch) == 0 {
			continue
		}
		r.rr = (i + 1) % n
		r.last = i
		got, err := r.readSplit(s, buf)
		if err != nil {
			return got, err
		}
		if r.allFinished() {
			return got, io.EOF
		}
		return got, nil
	}
	if r.allFinished() {
		return 0, io.EOF
	}
	return 0, nil
}

// unfinished lists the filters of the splits not yet finished, quoted, for
// errors.
func (r *reader[T]) unfinished() string {
	var fs []string
	for _, s := range r.splits {
		if !s.finished() {
			fs = append(fs, strconv.Quote(s.filter))
		}
	}
	if len(fs) > 4 {
		fs = append(fs[:4], fmt.Sprintf("and %d more", len(fs)-4))
	}
	return strings.Join(fs, ", ")
}

// readSplit decodes into buf the messages s has received, up to len(buf).
func (r *reader[T]) readSplit(s *readSplit, buf []T) (int, error) {
	got := 0
	for got < len(buf) && !s.finished() {
		var m jetstream.Msg
		select {
		case m = <-s.ch:
		default:
			return got, nil
		}
		md, err := m.Metadata()
		if err != nil {
			return got, fmt.Errorf("nats: source: a message of %q in stream %q: %w", s.filter, r.opts.Stream, err)
		}
		seq := md.Sequence.Stream
		if seq < s.next {
			continue // the ordered consumer never goes back; be safe.
		}
		if s.bounded && seq > s.end {
			// The end message is gone (limits, purge): nothing of the
			// split remains below the end.
			s.next = s.end + 1
			break
		}
		r.msg = Message{Subject: m.Subject(), Data: m.Data(), Seq: seq, TimeMs: md.Timestamp.UnixMilli()}
		if err := r.opts.Decode(&r.msg, &buf[got]); err != nil {
			return got, fmt.Errorf("nats: source: cannot decode message %d of stream %q (subject %q): %w", seq, r.opts.Stream, r.msg.Subject, err)
		}
		got++
		s.next = seq + 1
		if s.bounded && md.NumPending == 0 {
			// Nothing else matches the filter now: all later messages
			// are beyond the end.
			s.next = max(s.next, s.end+1)
		}
	}
	if s.finished() && s.cc != nil {
		s.cc.Stop()
		s.cc = nil
	}
	return got, nil
}

func (r *reader[T]) allFinished() bool {
	for _, s := range r.splits {
		if !s.finished() {
			return false
		}
	}
	return true
}

func (r *reader[T]) Splits() ([]engine.Split, error) {
	out := make([]engine.Split, len(r.splits))
	for i, s := range r.splits {
		out[i] = s.split()
	}
	return out, nil
}

func (r *reader[T]) Close() error {
	if r.done != nil {
		close(r.done)
		r.done = nil
	}
	for _, s := range r.splits {
		if s.cc != nil {
			s.cc.Stop()
			s.cc = nil
		}
	}
	if r.nc != nil {
		r.nc.Close()
		r.nc = nil
	}
	return nil
}
