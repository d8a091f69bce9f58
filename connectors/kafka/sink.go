package kafka

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SinkOptions configures a transactional Kafka sink.
type SinkOptions[T any] struct {
	Connection
	// ID names the sink within its job, stably across restarts: it is
	// part of every transactional id and control record. Required.
	ID string
	// Topic receives the records whose Encode leaves Topic empty.
	Topic string
	// Encode fills r (Key, Value, Headers, optionally Topic and
	// Partition) from v. Required. r is fresh for each record.
	Encode func(v *T, r *kgo.Record)
	// TransactionTimeout is the producers' transaction timeout. Default
	// DefaultTransactionTimeout. See CheckTransactionTimeout.
	TransactionTimeout time.Duration
	// TransactionalIDPrefix starts the transactional ids. Default
	// DefaultTransactionalIDPrefix.
	TransactionalIDPrefix string
	// ControlTopic holds the control records (created with one partition
	// if missing). Default DefaultControlTopic.
	ControlTopic string
	// MaxBufferedBytes bounds what a task holds between a pre-commit and
	// its commit; beyond it Write fails. Default DefaultMaxBufferedBytes.
	MaxBufferedBytes int
	// RequestTimeout bounds each blocking call. Default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (o *SinkOptions[T]) EnsureDefaults() {
	if o.TransactionTimeout == 0 {
		o.TransactionTimeout = DefaultTransactionTimeout
	}
	if o.TransactionalIDPrefix == "" {
		o.TransactionalIDPrefix = DefaultTransactionalIDPrefix
	}
	if o.ControlTopic == "" {
		o.ControlTopic = DefaultControlTopic
	}
	if o.MaxBufferedBytes == 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
}

// Validate reports every problem at once.
func (o *SinkOptions[T]) Validate() error {
	errs := o.Connection.validate()
	if o.ID == "" {
		errs = append(errs, errors.New("kafka: sink id is required"))
	}
	if o.Encode == nil {
		errs = append(errs, errors.New("kafka: sink needs an Encode function"))
	}
	if o.TransactionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("kafka: transaction timeout %v is below 1s", o.TransactionTimeout))
	}
	if o.MaxBufferedBytes < 0 || o.RequestTimeout < 0 {
		errs = append(errs, errors.New("kafka: max_buffered_bytes and request_timeout must be >= 0"))
	}
	return errors.Join(errs...)
}

// Sink is the transactional Kafka sink (doc.go).
type Sink[T any] struct {
	opts SinkOptions[T]
	job  string

	mu struct {
		sync.Mutex
		admin *kgo.Client // lazily opened, for Recover, LastCommitted and the control topic
	}
}

var (
	_ engine.Sink[int]      = (*Sink[int])(nil)
	_ engine.CommitReporter = (*Sink[int])(nil)
)

// NewSink returns the sink of job.
func NewSink[T any](job string, opts SinkOptions[T]) (*Sink[T], error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Sink[T]{opts: opts, job: job}, nil
}

// txnPrefix is the start of this sink's transactional ids.
func (s *Sink[T]) txnPrefix() string {
	return s.opts.TransactionalIDPrefix + "/" + url.PathEscape(s.job) + "/" + url.PathEscape(s.opts.ID) + "/"
}

// TransactionalID returns the transactional id of task index.
func (s *Sink[T]) TransactionalID(index int) string { return s.txnPrefix() + strconv.Itoa(index) }

func (s *Sink[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.RequestTimeout)
}

func (s *Sink[T]) admin() (*kgo.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.admin != nil {
		return s.mu.admin, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	cl, err := s.opts.newClient(ctx)
	if err != nil {
		return nil, err
	}
	// The control topic: one partition, so that reading it is one scan.
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, s.opts.ControlTopic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("kafka: cannot create the control topic %q: %w", s.opts.ControlTopic, err)
	}
	s.mu.admin = cl
	return cl, nil
}

// Close releases the sink's admin client.
func (s *Sink[T]) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.admin != nil {
		s.mu.admin.Close()
		s.mu.admin = nil
	}
	return nil
}

// controlThrough reads the control topic with read_committed up to its
// last stable offset and returns, per transactional id of this sink, the
// highest checkpoint a committed control record names.
func (s *Sink[T]) controlThrough() (map[string]uint64, error) {
	adm, err := s.admin()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	ka := kadm.NewClient(adm)
	ends, err := ka.ListCommittedOffsets(ctx, s.opts.ControlTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka: cannot list the offsets of the control topic %q: %w", s.opts.ControlTopic, err)
	}
	starts, err := ka.ListStartOffsets(ctx, s.opts.ControlTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka: cannot list the offsets of the control topic %q: %w", s.opts.ControlTopic, err)
	}
	want := make(map[int32]kgo.Offset)
	stop := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		st, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Err == nil && st.Err == nil && o.Offset > st.Offset {
			want[o.Partition] = kgo.NewOffset().At(st.Offset)
			stop[o.Partition] = o.Offset
		}
	})
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("kafka: cannot list the offsets of the control topic %q: %w", s.opts.ControlTopic, err)
	}
	out := make(map[string]uint64)
	if len(want) == 0 {
		return out, nil
	}
	cl, err := s.opts.newClient(ctx, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.opts.ControlTopic: want}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	prefix := s.txnPrefix()
	for len(stop) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("kafka: cannot read the control topic %q within %v", s.opts.ControlTopic, s.opts.RequestTimeout)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("kafka: cannot read the control topic %q: %w", s.opts.ControlTopic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := stop[r.Partition]; ok && r.Offset+1 >= end {
				delete(stop, r.Partition)
			}
			if r.Attrs.IsControl() || !strings.HasPrefix(string(r.Key), prefix) {
				return
			}
			if id, err := decodeControlValue(r.Value); err == nil {
				out[string(r.Key)] = max(out[string(r.Key)], id)
			}
		})
	}
	return out, nil
}

// LastCommitted implements engine.CommitReporter (doc.go).
func (s *Sink[T]) LastCommitted() (uint64, error) {
	through, err := s.controlThrough()
	if err != nil {
		return 0, err
	}
	var last uint64
	for _, id := range through {
		last = max(last, id)
	}
	return last, nil
}

// Recover commits the transactions the restored checkpoint lists and
// fences every transactional id of the restored tasks (doc.go).
func (s *Sink[T]) Recover(states [][]byte) error {
	decoded := make([]sinkState, 0, len(states))
	for _, b := range states {
		if b == nil {
			continue
		}
		st, err := decodeSinkState(b)
		if err != nil {
			return err
		}
		decoded = append(decoded, st)
	}
	plan, err := planRecovery(decoded)
	if err != nil {
		return err
	}
	if len(plan.Fence) == 0 {
		return nil
	}
	adm, err := s.admin()
	if err != nil {
		return err
	}
	outcomes := make(map[string]endOutcome)
	for _, id := range plan.Fence {
		p, ok := plan.Commit[id]
		if !ok {
			continue
		}
		out, err := s.endTxn(adm, id, p)
		if err != nil {
			return err
		}
		outcomes[id] = out
	}
	var through map[string]uint64
	for _, id := range plan.Fence {
		if err := s.fence(adm, id); err != nil {
			return err
		}
	}
	for _, id := range plan.Fence {
		out, ok := outcomes[id]
		if !ok {
			continue
		}
		if out == endFenced && through == nil {
			if through, err = s.controlThrough(); err != nil {
				return err
			}
		}
		if _, err := recoverDecision(id, plan.Commit[id], out, through[id]); err != nil {
			return err
		}
	}
	return nil
}

// endTxn sends EndTxn(commit) for the transaction p of id at its stored
// producer id and epoch.
func (s *Sink[T]) endTxn(adm *kgo.Client, id string, p pendingTxn) (endOutcome, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	for {
		req := kmsg.NewPtrEndTxnRequest()
		req.TransactionalID = id
		req.ProducerID = p.ProducerID
		req.ProducerEpoch = p.Epoch
		req.Commit = true
		resp, err := req.RequestWith(ctx, adm)
		if err != nil {
			return 0, fmt.Errorf("kafka: cannot commit the transaction of checkpoint %d of %q: %w", p.Checkpoint, id, err)
		}
		switch err := kerr.ErrorForCode(resp.ErrorCode); {
		case err == nil:
			return endOK, nil
		case errors.Is(err, kerr.ProducerFenced), errors.Is(err, kerr.InvalidProducerEpoch),
			errors.Is(err, kerr.InvalidTxnState), errors.Is(err, kerr.InvalidProducerIDMapping):
			return endFenced, nil
		case errors.Is(err, kerr.ConcurrentTransactions), errors.Is(err, kerr.CoordinatorLoadInProgress):
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return 0, fmt.Errorf("kafka: cannot commit the transaction of checkpoint %d of %q: still busy after %v", p.Checkpoint, id, s.opts.RequestTimeout)
			}
		default:
			return 0, fmt.Errorf("kafka: cannot commit the transaction of checkpoint %d of %q: %w", p.Checkpoint, id, err)
		}
	}
}

// fence bumps the epoch of id, which aborts any transaction it has open.
func (s *Sink[T]) fence(adm *kgo.Client, id string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &id
		req.TransactionTimeoutMillis = int32(s.opts.TransactionTimeout.Milliseconds())
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, adm)
		if err != nil {
			return fmt.Errorf("kafka: cannot fence the transactional id %q: %w", id, err)
		}
		switch err := kerr.ErrorForCode(resp.ErrorCode); {
		case err == nil:
			return nil
		case errors.Is(err, kerr.ConcurrentTransactions), errors.Is(err, kerr.CoordinatorLoadInProgress):
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return fmt.Errorf("kafka: cannot fence the transactional id %q: still busy after %v", id, s.opts.RequestTimeout)
			}
		default:
			return fmt.Errorf("kafka: cannot fence the transactional id %q: %w", id, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// NewWriter creates the writer of one task: its producer fences the
// task's transactional id (aborting what an earlier run left open).
func (s *Sink[T]) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[T], error) {
	if _, err := s.admin(); err != nil { // creates the control topic
		return nil, err
	}
	w := &writer[T]{s: s, task: ctx.Index, txnID: s.TransactionalID(ctx.Index), transactional: ctx.Transactional}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// writer is one task's transactional producer.
type writer[T any] struct {
	s             *Sink[T]
	task          int
	txnID         string
	transactional bool
	cl            *kgo.Client

	// inTxn: a transaction is open and takes the records written.
	inTxn bool
	// sealed is the pre-committed transaction waiting for its commit
	// (then records go to buf), nil if none.
	sealed   *pendingTxn
	buf      []*kgo.Record
	bufBytes int

	// produceErr keeps the first failed produce (promises run on
	// franz-go's goroutines).
	produceMu  sync.Mutex
	produceErr error
	// err is sticky: the first error fails every later call.
	err     error
	promise func(*kgo.Record, error)
}

func (w *writer[T]) open() error {
	ctx, cancel := w.s.ctx()
	defer cancel()
	cl, err := w.s.opts.newClient(ctx, kgo.TransactionalID(w.txnID), kgo.TransactionTimeout(w.s.opts.TransactionTimeout),
		kgo.DefaultProduceTopic(w.s.opts.Topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	// Loading the producer id runs InitProducerID: it fences the id.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("kafka: cannot initialize the transactional producer %q: %w", w.txnID, scrub(err, &w.s.opts.Connection))
	}
	w.cl = cl
	w.promise = func(_ *kgo.Record, err error) {
		if err != nil {
			w.produceMu.Lock()
			if w.produceErr == nil {
				w.produceErr = err
			}
			w.produceMu.Unlock()
		}
	}
	return nil
}

func (w *writer[T]) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *writer[T]) produced() error {
	w.produceMu.Lock()
	defer w.produceMu.Unlock()
	if w.produceErr != nil {
		return fmt.Errorf("kafka: %q: cannot produce: %w", w.txnID, w.produceErr)
	}
	return nil
}

func (w *writer[T]) produce(r *kgo.Record) error {
	if !w.inTxn {
		if err := w.cl.BeginTransaction(); err != nil {
			return w.fail(fmt.Errorf("kafka: %q: cannot begin a transaction: %w", w.txnID, err))
		}
		w.inTxn = true
	}
	w.cl.Produce(context.Background(), r, w.promise)
	return nil
}

// Write adds v to the open transaction, or holds it while the previous
// checkpoint's transaction waits for its commit.
func (w *writer[T]) Write(v *T) error {
	if w.err != nil {
		return w.err
	}
	r := &kgo.Record{}
	w.s.opts.Encode(v, r)
	if w.sealed != nil {
		w.bufBytes += len(r.Key) + len(r.Value) + 64
		if w.bufBytes > w.s.opts.MaxBufferedBytes {
			return w.fail(fmt.Errorf("kafka: %q: more than %d bytes written while checkpoint %d waits for its commit (max_buffered_bytes)",
				w.txnID, w.s.opts.MaxBufferedBytes, w.sealed.Checkpoint))
		}
		w.buf = append(w.buf, r)
		return nil
	}
	return w.produce(r)
}

func (w *writer[T]) state() []byte {
	return appendSinkState(nil, sinkState{TxnID: w.txnID, Task: w.task, Pending: w.sealed})
}

// PreCommit adds the control record, flushes, and seals the transaction.
// When the previous transaction is still sealed (its checkpoint was
// aborted), the records held since join it and it moves to checkpointID.
func (w *writer[T]) PreCommit(checkpointID uint64) ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.sealed != nil {
		for _, r := range w.buf {
			w.cl.Produce(context.Background(), r, w.promise)
		}
		w.buf, w.bufBytes = nil, 0
	} else if !w.inTxn {
		return w.state(), nil
	}
	ctl := &kgo.Record{Topic: w.s.opts.ControlTopic, Key: []byte(w.txnID), Value: controlValue(checkpointID)}
	w.cl.Produce(context.Background(), ctl, w.promise)
	ctx, cancel := w.s.ctx()
	defer cancel()
	if err := w.cl.Flush(ctx); err != nil {
		return nil, w.fail(fmt.Errorf("kafka: %q: cannot flush checkpoint %d: %w", w.txnID, checkpointID, err))
	}
	if err := w.produced(); err != nil {
		return nil, w.fail(err)
	}
	pid, epoch, err := w.cl.ProducerID(ctx)
	if err != nil {
		return nil, w.fail(fmt.Errorf("kafka: %q: cannot read the producer id at checkpoint %d: %w", w.txnID, checkpointID, err))
	}
	if w.sealed != nil && (w.sealed.ProducerID != pid || w.sealed.Epoch != epoch) {
		panic(fmt.Sprintf("kafka: %q: the producer epoch changed inside a sealed transaction (%d/%d → %d/%d)",
			w.txnID, w.sealed.ProducerID, w.sealed.Epoch, pid, epoch))
	}
	w.sealed = &pendingTxn{Checkpoint: checkpointID, ProducerID: pid, Epoch: epoch}
	w.inTxn = false
	return w.state(), nil
}

// Commit commits the sealed transaction if it belongs to checkpointID or
// an earlier one, then opens the next with the records held meanwhile.
func (w *writer[T]) Commit(checkpointID uint64) error {
	if w.err != nil {
		return w.err
	}
	if w.sealed == nil || w.sealed.Checkpoint > checkpointID {
		return nil
	}
	if err := w.commitSealed(); err != nil {
		return err
	}
	buf := w.buf
	w.buf, w.bufBytes = nil, 0
	for _, r := range buf {
		if err := w.produce(r); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer[T]) commitSealed() error {
	ctx, cancel := w.s.ctx()
	defer cancel()
	sealed := w.sealed
	// EndTransaction ends the client's transaction, which was left
	// open by PreCommit (inTxn in franz-go's view).
	if err := w.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return w.fail(fmt.Errorf("kafka: %q: cannot commit the transaction of checkpoint %d: %w", w.txnID, sealed.Checkpoint, err))
	}
	w.sealed = nil
	// Every transaction must have its own epoch (doc.go): without
	// KIP-890 the broker did not bump it, and reopening the client does.
	pid, epoch, err := w.cl.ProducerID(ctx)
	if err != nil {
		return w.fail(fmt.Errorf("kafka: %q: cannot read the producer id: %w", w.txnID, err))
	}
	if pid == sealed.ProducerID && epoch == sealed.Epoch {
		w.cl.Close()
		w.cl = nil
		if err := w.open(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// Finish commits what was written, for a job without checkpoints.
func (w *writer[T]) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.sealed != nil {
		if err := w.Commit(w.sealed.Checkpoint); err != nil {
			return err
		}
	}
	if !w.inTxn {
		return nil
	}
	ctx, cancel := w.s.ctx()
	defer cancel()
	if err := w.cl.Flush(ctx); err != nil {
		return w.fail(fmt.Errorf("kafka: %q: cannot flush: %w", w.txnID, err))
	}
	if err := w.produced(); err != nil {
		return w.fail(err)
	}
	if err := w.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return w.fail(fmt.Errorf("kafka: %q: cannot commit: %w", w.txnID, err))
	}
	w.inTxn = false
	return nil
}

// Close closes the producer without ending its transaction: a sealed one
// stays for the next recovery to commit or abort.
func (w *writer[T]) Close() error {
	if w.cl != nil {
		w.cl.Close()
		w.cl = nil
	}
	return nil
}
