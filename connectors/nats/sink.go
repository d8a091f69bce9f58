package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamd/streamd/engine"
)

const (
	// DefaultCommitBucket is SinkOptions.CommitBucket's default.
	DefaultCommitBucket = "streamd_sink_commits"
	// DefaultSinkName is SinkOptions.Name's default.
	DefaultSinkName = "nats"
	// DefaultMaxPendingBytes is SinkOptions.MaxPendingBytes's default:
	// the messages one task may hold between its last commit and the
	// next, all of which go into checkpoint metadata.
	DefaultMaxPendingBytes = 16 << 20
	// MaxPendingBytesLimit bounds SinkOptions.MaxPendingBytes.
	MaxPendingBytesLimit = 1 << 30
	// DefaultMaxInFlight is SinkOptions.MaxInFlight's default.
	DefaultMaxInFlight = 4096
	// DefaultExpectedRecovery is SinkOptions.ExpectedRecovery's default.
	DefaultExpectedRecovery = time.Minute
)

// SinkOptions configures a JetStream sink.
type SinkOptions[T any] struct {
	Conn ConnOptions
	// Subject every message is published to; a stream must capture it.
	// Required unless SubjectOf is set.
	Subject string
	// SubjectOf, when set, gives each record's subject instead.
	SubjectOf func(v *T) string
	// Stream is the output stream, for CheckDuplicateWindow; default the
	// stream that captures Subject.
	Stream string
	// Encode appends a record's payload to dst. Default: encoding/json.
	Encode func(dst []byte, v *T) ([]byte, error)
	// Name tells apart the sinks of one job: it is part of every message
	// id and commit-bucket key. Default DefaultSinkName. Keep it stable
	// across restarts.
	Name string
	// CommitBucket is the key-value bucket recording what each task
	// committed, created if missing. Default DefaultCommitBucket.
	CommitBucket string
	// MaxPendingBytes bounds the messages (subjects and payloads) one task
	// holds that are not yet committed: they are part of checkpoint
	// metadata. Beyond it Write fails the job. Default
	// DefaultMaxPendingBytes, at most MaxPendingBytesLimit.
	MaxPendingBytes int
	// MaxInFlight bounds the publishes awaiting acknowledgement during a
	// commit. Default DefaultMaxInFlight.
	MaxInFlight int
	// ExpectedRecovery is how long a restart after a crash is expected to
	// take, for CheckDuplicateWindow. Default DefaultExpectedRecovery.
	ExpectedRecovery time.Duration
}

// EnsureDefaults fills in every unset field.
func (o *SinkOptions[T]) EnsureDefaults() {
	o.Conn.ensureDefaults()
	if o.Encode == nil {
		o.Encode = func(dst []byte, v *T) ([]byte, error) {
			b, err := json.Marshal(v)
			return append(dst, b...), err
		}
	}
	if o.Name == "" {
		o.Name = DefaultSinkName
	}
	if o.CommitBucket == "" {
		o.CommitBucket = DefaultCommitBucket
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.ExpectedRecovery <= 0 {
		o.ExpectedRecovery = DefaultExpectedRecovery
	}
}

// Validate reports every problem of the options at once.
func (o *SinkOptions[T]) Validate() error {
	errs := o.Conn.validate()
	if o.Subject == "" && o.SubjectOf == nil {
		errs = append(errs, errors.New("nats: sink: Subject (or SubjectOf) is required"))
	}
	if o.Subject != "" && !validPublishSubject(o.Subject) {
		errs = append(errs, fmt.Errorf("nats: sink: %q is not a subject to publish to (tokens separated by dots, no wildcards or spaces)", o.Subject))
	}
	if o.MaxPendingBytes < 1024 || o.MaxPendingBytes > MaxPendingBytesLimit {
		errs = append(errs, fmt.Errorf("nats: sink: MaxPendingBytes %d is out of range [1024, %d]", o.MaxPendingBytes, MaxPendingBytesLimit))
	}
	if !validKeyToken(o.CommitBucket) {
		errs = append(errs, fmt.Errorf("nats: sink: CommitBucket %q is not a bucket name (letters, digits, - and _)", o.CommitBucket))
	}
	return errors.Join(errs...)
}

func validPublishSubject(s string) bool {
	if s == "" || len(s) > MaxSubjectBytes {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

func validKeyToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// escapeToken turns any string into a key-value key token and header-safe
// text: letters, digits, - and _ stay, every other byte becomes =XX.
// Distinct inputs give distinct tokens.
func escapeToken(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// Sink is the exactly-once JetStream sink (package doc).
type Sink[T any] struct {
	opts SinkOptions[T]
	job  string
	// prefix is the commit-bucket key prefix "JOB.SINK." and idPrefix the
	// message-id prefix "streamd/JOB/SINK/", both escaped.
	prefix, idPrefix string

	mu struct {
		sync.Mutex
		nc     *natsgo.Conn       // nil until first needed, and after Close
		health *connHealth        // nc's losses
		kv     jetstream.KeyValue // the commit bucket
	}
}

// NewSink returns a JetStream sink for job. It connects lazily: the first
// LastCommitted, Recover or NewWriter does, and reports an unreachable
// server.
func NewSink[T any](job string, opts SinkOptions[T]) (*Sink[T], error) {
	opts.EnsureDefaults()
	if job == "" {
		return nil, errors.New("nats: sink: the job name is empty")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	j, n := escapeToken(job), escapeToken(opts.Name)
	return &Sink[T]{opts: opts, job: job, prefix: j + "." + n + ".", idPrefix: "streamd/" + j + "/" + n + "/"}, nil
}

// conn returns the connection and the commit bucket, connecting and
// checking the output's stream on first use.
func (s *Sink[T]) conn() (*natsgo.Conn, jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.nc != nil {
		return s.mu.nc, s.mu.kv, nil
	}
	nc, health, err := connect(s.opts.Conn, "sink of job "+s.job)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Conn.ConnectTimeout)
	defer cancel()
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = s.outputStream(ctx, js)
	}
	var kv jetstream.KeyValue
	if err == nil {
		kv, err = js.KeyValue(ctx, s.opts.CommitBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: s.opts.CommitBucket, Description: "streamd: the checkpoint each sink task committed", History: 1,
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, s.opts.CommitBucket)
			}
		}
		if err != nil {
			err = fmt.Errorf("nats: sink: cannot open the commit bucket %q: %w", s.opts.CommitBucket, err)
		}
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	s.mu.nc, s.mu.health, s.mu.kv = nc, health, kv
	return nc, kv, nil
}

// outputStream returns the name of the output stream: Stream, checked to
// exist, or the stream that captures Subject.
func (s *Sink[T]) outputStream(ctx context.Context, js jetstream.JetStream) (string, error) {
	if s.opts.Stream != "" {
		if _, err := js.Stream(ctx, s.opts.Stream); err != nil {
			return "", fmt.Errorf("nats: sink: cannot open the output stream %q: %w", s.opts.Stream, err)
		}
		return s.opts.Stream, nil
	}
	if s.opts.Subject == "" {
		return "", errors.New("nats: sink: with SubjectOf, name the output stream in Stream")
	}
	name, err := js.StreamNameBySubject(ctx, s.opts.Subject)
	if err != nil {
		return "", fmt.Errorf("nats: sink: no stream captures the subject %q (create one first): %w", s.opts.Subject, err)
	}
	return name, nil
}

// Close closes the sink's connection (the engine calls it when the job's
// run ends). The sink reconnects when used again.
func (s *Sink[T]) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.nc != nil {
		s.mu.nc.Close()
		s.mu.nc, s.mu.health, s.mu.kv = nil, nil, nil
	}
	return nil
}

// committed reads the commit bucket's entries of this job's sink: per
// task index, the checkpoint it committed through.
func (s *Sink[T]) committed(ctx context.Context, kv jetstream.KeyValue) (map[int]uint64, error) {
	out := make(map[int]uint64)
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats: sink: cannot list the commit bucket %q: %w", s.opts.CommitBucket, err)
	}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, s.prefix+"t")
		if !ok {
			continue
		}
		task, err := strconv.Atoi(rest)
		if err != nil || task < 0 || strconv.Itoa(task) != rest {
			return nil, fmt.Errorf("nats: sink: the commit bucket %q holds a key %q this sink did not write", s.opts.CommitBucket, k)
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("nats: sink: cannot read %s from the commit bucket %q: %w", k, s.opts.CommitBucket, err)
		}
		id, err := strconv.ParseUint(string(e.Value()), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("nats: sink: the commit bucket's entry %s is damaged (%q): cannot tell what this sink committed", k, e.Value())
		}
		out[task] = id
	}
	return out, nil
}

// LastCommitted returns the highest checkpoint any task of this job's sink
// recorded as committed, 0 if none. It implements engine.CommitReporter.
func (s *Sink[T]) LastCommitted() (uint64, error) {
	_, kv, err := s.conn()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Conn.ConnectTimeout)
	defer cancel()
	c, err := s.committed(ctx, kv)
	if err != nil {
		return 0, err
	}
	var top uint64
	for _, id := range c {
		top = max(top, id)
	}
	return top, nil
}

// Recover publishes the transactions the restored checkpoint lists and
// its tasks did not record as committed (planRecovery).
func (s *Sink[T]) Recover(states [][]byte) error {
	nc, kv, err := s.conn()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Conn.ConnectTimeout)
	c, err := s.committed(ctx, kv)
	cancel()
	if err != nil {
		return err
	}
	txns, err := planRecovery(states, c)
	if err != nil {
		return err
	}
	if len(txns) == 0 {
		return nil
	}
	p, err := s.newPublisher(nc, kv)
	if err != nil {
		return err
	}
	for _, t := range txns {
		if err := p.commit(t, true); err != nil {
			return fmt.Errorf("%w (recovering)", err)
		}
	}
	return nil
}

// publisher publishes transactions and records their commits; one per
// writer (its JetStream context's pending publishes are its own).
type publisher[T any] struct {
	s      *Sink[T]
	nc     *natsgo.Conn
	health *connHealth
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	// stall makes a publish wait for room among MaxInFlight as long as
	// for an acknowledgement (ConnectTimeout), not the client's 200 ms.
	stall jetstream.PublishOpt
	id    []byte

	errMu    sync.Mutex
	firstErr error // the first failed publish of the current commit
}

func (s *Sink[T]) newPublisher(nc *natsgo.Conn, kv jetstream.KeyValue) (*publisher[T], error) {
	s.mu.Lock()
	health := s.mu.health
	s.mu.Unlock()
	if health == nil {
		panic("nats: a publisher of a sink without a connection")
	}
	p := &publisher[T]{s: s, nc: nc, health: health, kv: kv, stall: jetstream.WithStallWait(s.opts.Conn.ConnectTimeout)}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(s.opts.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(s.opts.Conn.ConnectTimeout),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
			p.errMu.Lock()
			if p.firstErr == nil {
				p.firstErr = fmt.Errorf("message %s on %q: %w", m.Header.Get(natsgo.MsgIdHdr), m.Subject, err)
			}
			p.errMu.Unlock()
		}))
	if err != nil {
		return nil, fmt.Errorf("nats: sink: %w", err)
	}
	p.js = js
	return p, nil
}

// commit publishes t's messages, with ids when withIDs, waits for every
// acknowledgement, and then, for a transactional commit, records t's
// checkpoint as committed by its task.
//
// A transactional commit that fails because the connection was lost or
// the server did not answer (retryable) is done again, whole, once the
// connection is back: the message ids make the stream drop what it
// already stored. It gives up, and the job fails, when the commit has not
// succeeded within ReconnectTimeout of its first failure (or of the loss
// of the connection, if that came first). A commit without ids (Finish,
// no checkpoints) is never repeated: it would duplicate output.
func (p *publisher[T]) commit(t txn, withIDs bool) error {
	s := p.s
	var firstFail time.Time
	for attempt := 1; ; attempt++ {
		err := p.health.check()
		if err == nil {
			err = p.try(t, withIDs)
		}
		if err == nil {
			if attempt > 1 {
				slog.Info("nats sink: commit done after the server came back", "job", s.job, "sink", s.opts.Name,
					"task", t.task, "checkpoint", t.checkpoint, "attempts", attempt)
			}
			return nil
		}
		if !withIDs {
			return fmt.Errorf("nats: sink: cannot publish the output of task %d to %s: %w", t.task, s.target(), err)
		}
		fail := func(err error) error {
			return fmt.Errorf("nats: sink: cannot commit checkpoint %d of task %d to %s: %w", t.checkpoint, t.task, s.target(), err)
		}
		if !retryable(err) {
			return fail(err)
		}
		if firstFail.IsZero() {
			firstFail = time.Now()
			if d := p.health.downSince(); !d.IsZero() && d.Before(firstFail) {
				firstFail = d
			}
			slog.Warn("nats sink: commit interrupted; trying again once the server answers", "job", s.job, "sink", s.opts.Name,
				"task", t.task, "checkpoint", t.checkpoint, "error", err.Error(), "reconnect_timeout", s.opts.Conn.ReconnectTimeout)
		}
		deadline := firstFail.Add(s.opts.Conn.ReconnectTimeout)
		if !waitUp(p.nc, deadline) || !time.Now().Before(deadline) {
			return fail(fmt.Errorf("%w; %w", err, p.health.giveUp(firstFail)))
		}
		// The connection is up, or back: a pause, in case the server
		// answers but fails at once (JetStream still starting).
		time.Sleep(min(reconnectWait, time.Until(deadline)))
	}
}

// target names where the sink writes, for errors.
func (s *Sink[T]) target() string {
	subject := "the subjects SubjectOf gives"
	if s.opts.Subject != "" {
		subject = strconv.Quote(s.opts.Subject)
	}
	if s.opts.Stream != "" {
		return fmt.Sprintf("stream %q (subject %s)", s.opts.Stream, subject)
	}
	return "subject " + subject
}

// retryable reports whether a commit that failed with err may succeed when
// done again: the connection was lost, or the server (or JetStream) did
// not answer in time.
func retryable(err error) bool {
	for _, target := range []error{
		natsgo.ErrDisconnected, natsgo.ErrConnectionReconnecting, natsgo.ErrReconnectBufExceeded,
		natsgo.ErrTimeout, natsgo.ErrNoResponders, context.DeadlineExceeded,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrNoStreamResponse, jetstream.ErrTooManyStalledMsgs,
		errNotAcknowledged,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// try is one attempt at commit.
func (p *publisher[T]) try(t txn, withIDs bool) error {
	s := p.s
	p.errMu.Lock()
	p.firstErr = nil
	p.errMu.Unlock()
	i := 0
	err := eachMessage(t.body, func(subject, data []byte) error {
		// Each message needs its own header map: the client keeps the
		// message until its acknowledgement arrives.
		m := &natsgo.Msg{Subject: string(subject), Data: data}
		opts := []jetstream.PublishOpt{p.stall}
		if withIDs {
			p.id = append(p.id[:0], s.idPrefix...)
			p.id = strconv.AppendInt(p.id, int64(t.task), 10)
			p.id = append(p.id, '/')
			p.id = strconv.AppendUint(p.id, t.checkpoint, 10)
			p.id = append(p.id, '/')
			p.id = strconv.AppendInt(p.id, int64(i), 10)
			opts = append(opts, jetstream.WithMsgID(string(p.id)))
		}
		i++
		if _, err := p.js.PublishMsgAsync(m, opts...); err != nil {
			return fmt.Errorf("cannot publish to %q: %w", m.Subject, err)
		}
		return nil
	})
	// Wait for what is in flight even after a failed publish: the next
	// attempt starts with nothing pending.
	if werr := p.wait(); err == nil {
		err = werr
	}
	if err != nil || !withIDs {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Conn.ConnectTimeout)
	defer cancel()
	key := s.prefix + "t" + strconv.Itoa(t.task)
	if _, err := p.kv.Put(ctx, key, strconv.AppendUint(nil, t.checkpoint, 10)); err != nil {
		return fmt.Errorf("the messages are published, but recording the commit in the commit bucket %q failed: %w", s.opts.CommitBucket, err)
	}
	return nil
}

// errNotAcknowledged is wait's error when the client never completes.
var errNotAcknowledged = errors.New("publishes not acknowledged")

// wait waits for the acknowledgements of every publish in flight.
func (p *publisher[T]) wait() error {
	// Each publish times out after ConnectTimeout on its own; the
	// deadline here only guards against a client that never completes.
	deadline := time.NewTimer(p.s.opts.Conn.ConnectTimeout + time.Minute)
	defer deadline.Stop()
	select {
	case <-p.js.PublishAsyncComplete():
	case <-deadline.C:
		return fmt.Errorf("%w: %d", errNotAcknowledged, p.js.PublishAsyncPending())
	}
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.firstErr
}

// NewWriter creates the writer of one task.
func (s *Sink[T]) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[T], error) {
	nc, kv, err := s.conn()
	if err != nil {
		return nil, err
	}
	p, err := s.newPublisher(nc, kv)
	if err != nil {
		return nil, err
	}
	maxPayload := int(nc.MaxPayload())
	if maxPayload <= 0 || maxPayload > MaxMessageBytes {
		maxPayload = MaxMessageBytes
	}
	return &writer[T]{s: s, p: p, task: ctx.Index, transactional: ctx.Transactional, maxPayload: maxPayload}, nil
}

// writer is one task's side of the sink.
type writer[T any] struct {
	s             *Sink[T]
	p             *publisher[T]
	task          int
	transactional bool
	maxPayload    int

	open    txn   // the open transaction (checkpoint unset)
	pending []txn // pre-committed, not yet committed, in checkpoint order
	// pendingBytes is the size of open's and pending's bodies.
	pendingBytes int
	scratch      []byte
	err          error // sticky
}

func (w *writer[T]) Write(v *T) error {
	if w.err != nil {
		return w.err
	}
	subject := w.s.opts.Subject
	if f := w.s.opts.SubjectOf; f != nil {
		subject = f(v)
		if !validPublishSubject(subject) {
			w.err = fmt.Errorf("nats: sink: SubjectOf returned %q, not a subject to publish to", subject)
			return w.err
		}
	}
	b, err := w.s.opts.Encode(w.scratch[:0], v)
	if err != nil {
		w.err = fmt.Errorf("nats: sink: cannot encode a record: %w", err)
		return w.err
	}
	w.scratch = b
	if len(b) > w.maxPayload {
		w.err = fmt.Errorf("nats: sink: a record encodes to %d bytes, more than the server's maximum payload %d", len(b), w.maxPayload)
		return w.err
	}
	before := len(w.open.body)
	w.open.body = appendMessage(w.open.body, subject, b)
	w.open.count++
	w.pendingBytes += len(w.open.body) - before
	if w.transactional && w.pendingBytes > w.s.opts.MaxPendingBytes {
		w.err = fmt.Errorf("nats: sink: task %d holds %d bytes of messages not yet committed, more than MaxPendingBytes (%d): "+
			"they are stored in checkpoint metadata; shorten the checkpoint interval or raise the limit", w.task, w.pendingBytes, w.s.opts.MaxPendingBytes)
		return w.err
	}
	return nil
}

func (w *writer[T]) PreCommit(checkpointID uint64) ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.open.count > 0 {
		if n := len(w.pending); n > 0 && w.pending[n-1].checkpoint >= checkpointID {
			panic(fmt.Sprintf("nats: pre-commit of checkpoint %d after checkpoint %d: checkpoint ids must grow", checkpointID, w.pending[n-1].checkpoint))
		}
		w.open.task, w.open.checkpoint = w.task, checkpointID
		w.pending = append(w.pending, w.open)
		w.open = txn{}
	}
	return appendState(nil, w.pending), nil
}

func (w *writer[T]) Commit(checkpointID uint64) error {
	if w.err != nil {
		return w.err
	}
	n := 0
	for _, t := range w.pending {
		if t.checkpoint > checkpointID {
			break
		}
		if err := w.p.commit(t, true); err != nil {
			w.err = err
			return err
		}
		w.pendingBytes -= len(t.body)
		n++
	}
	w.pending = append(w.pending[:0], w.pending[n:]...)
	return nil
}

func (w *writer[T]) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.open.count == 0 {
		return nil
	}
	// Without checkpoints there is no guarantee after a crash, and no
	// message id to give: a rerun writes everything again.
	t := w.open
	t.task = w.task
	w.open = txn{}
	w.pendingBytes = 0
	if err := w.p.commit(t, false); err != nil {
		w.err = err
	}
	return w.err
}

// Close releases nothing: the connection is the Sink's, and pre-committed
// transactions stay in the checkpoint.
func (w *writer[T]) Close() error { return nil }

// CheckDuplicateWindow compares the output stream's duplicate window with
// the time within which a commit may be replayed: the checkpoint interval,
// plus ReconnectTimeout (a commit caught by a lost connection is done again
// until then), plus ExpectedRecovery (a crashed one is done again at
// recovery). It returns a warning when the window is
// shorter (a replay after the window duplicates output), "" when it is
// not, and an error when it cannot tell (server unreachable, no stream).
func CheckDuplicateWindow[T any](ctx context.Context, opts SinkOptions[T], interval time.Duration) (string, error) {
	s, err := NewSink[T]("check", opts)
	if err != nil {
		return "", err
	}
	nc, _, err := connect(s.opts.Conn, "duplicate-window check")
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", fmt.Errorf("nats: %w", err)
	}
	name, err := s.outputStream(ctx, js)
	if err != nil {
		return "", err
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return "", fmt.Errorf("nats: cannot read the configuration of stream %q: %w", name, err)
	}
	window := st.CachedInfo().Config.Duplicates
	need := interval + s.opts.Conn.ReconnectTimeout + s.opts.ExpectedRecovery
	if window < need {
		return fmt.Sprintf("nats sink: the duplicate window of stream %q is %v, shorter than the checkpoint interval (%v) plus the reconnect timeout (%v) plus the expected recovery time (%v): "+
			"a commit replayed later than %v after it first ran duplicates output; raise the stream's duplicate window (Duplicates) to at least %v",
			name, window, interval, s.opts.Conn.ReconnectTimeout, s.opts.ExpectedRecovery, window, need), nil
	}
	return "", nil
}
