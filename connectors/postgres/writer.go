package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/streamd/streamd/engine"
)

// writer is one task's writer. All methods run on the task goroutine.
type writer[T any] struct {
	s   *Sink[T]
	ctx engine.SinkContext
	// data holds the open transaction; commit runs COMMIT PREPARED (it
	// cannot run inside the open transaction).
	data, commit *pgx.Conn
	inTx         bool // data has an open transaction

	ncols int
	vals  []any // the buffered rows, ncols values each
	nrows int
	// byKey maps a buffered row's key to its index (upsert only), so a
	// batch holds one row per key: ON CONFLICT DO UPDATE refuses to
	// touch a row twice in one statement.
	byKey  map[string]int
	keyIdx []int // the key columns' indexes in Columns
	keyBuf []byte
	sql    map[int]string // upsert statements by row count

	pending []txnRef // prepared, not committed, in checkpoint order
	err     error    // sticky
}

// canSend reports whether buffered rows may go to the server now: in
// upsert mode not while a transaction of the writer is prepared and not
// committed (its row locks would block the upsert of a key it holds until
// this goroutine commits it: a deadlock; doc.go).
func (w *writer[T]) canSend() bool {
	return w.s.opts.Mode == Append || len(w.pending) == 0
}

func (w *writer[T]) Write(v *T) error {
	if w.err != nil {
		return w.err
	}
	n := len(w.vals)
	w.vals = w.s.opts.Encode(w.vals, v)
	if len(w.vals) != n+w.ncols {
		w.err = w.s.errf("Encode appended %d values for %d columns", len(w.vals)-n, w.ncols)
		return w.err
	}
	if w.byKey != nil {
		w.keyBuf = w.keyBuf[:0]
		for _, i := range w.keyIdx {
			w.keyBuf = appendKey(w.keyBuf, w.vals[n+i])
		}
		if r, ok := w.byKey[string(w.keyBuf)]; ok {
			// A later value of a buffered key replaces it.
			copy(w.vals[r*w.ncols:], w.vals[n:])
			clear(w.vals[n:])
			w.vals = w.vals[:n]
			return nil
		}
		w.byKey[string(w.keyBuf)] = w.nrows
	}
	w.nrows++
	if w.nrows >= w.s.opts.BatchRows {
		if w.canSend() {
			w.err = w.flush()
		} else if w.nrows >= w.s.opts.MaxBufferedRows {
			w.err = w.s.errf("task %d buffers %d keys while the transaction of checkpoint %d awaits its commit (MaxBufferedRows)",
				w.ctx.Index, w.nrows, w.pending[len(w.pending)-1].Checkpoint)
		}
	}
	return w.err
}

// appendKey appends a key value with its type, so that 1 and "1" differ.
func appendKey(dst []byte, v any) []byte {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(append(dst, 'i'), x, 10)
	case int:
		return strconv.AppendInt(append(dst, 'i'), int64(x), 10)
	case int32:
		return strconv.AppendInt(append(dst, 'i'), int64(x), 10)
	case string:
		dst = strconv.AppendInt(append(dst, 's'), int64(len(x)), 10)
		return append(append(dst, ':'), x...)
	case []byte:
		dst = strconv.AppendInt(append(dst, 'b'), int64(len(x)), 10)
		return append(append(dst, ':'), x...)
	case nil:
		return append(dst, 'n')
	}
	s := fmt.Sprintf("%T:%v", v, v)
	dst = strconv.AppendInt(append(dst, 'o'), int64(len(s)), 10)
	return append(append(dst, ':'), s...)
}

// flush sends the buffered rows in the open transaction, beginning one if
// needed.
func (w *writer[T]) flush() error {
	if w.nrows == 0 {
		return nil
	}
	ctx, cancel := w.s.ctx()
	defer cancel()
	if !w.inTx {
		if _, err := w.data.Exec(ctx, "BEGIN"); err != nil {
			return w.s.errf("task %d cannot begin a transaction: %w", w.ctx.Index, err)
		}
		w.inTx = true
	}
	if w.s.opts.Mode == Append {
		rows := pgx.CopyFromSlice(w.nrows, func(i int) ([]any, error) {
			return w.vals[i*w.ncols : (i+1)*w.ncols], nil
		})
		if _, err := w.data.CopyFrom(ctx, pgx.Identifier(splitName(w.s.opts.Table)), w.s.opts.Columns, rows); err != nil {
			return w.s.errf("task %d cannot copy %d rows into %s: %w", w.ctx.Index, w.nrows, w.s.opts.Table, err)
		}
	} else {
		per := min(w.s.opts.BatchRows, maxParams/w.ncols)
		for r := 0; r < w.nrows; r += per {
			n := min(per, w.nrows-r)
			sql, ok := w.sql[n]
			if !ok {
				if w.sql == nil {
					w.sql = make(map[int]string)
				}
				sql = w.s.upsertSQL(n)
				if len(w.sql) < 4 { // the full batch and a few tails
					w.sql[n] = sql
				}
			}
			if _, err := w.data.Exec(ctx, sql, w.vals[r*w.ncols:(r+n)*w.ncols]...); err != nil {
				return w.s.errf("task %d cannot upsert %d rows into %s: %w", w.ctx.Index, n, w.s.opts.Table, err)
			}
		}
		clear(w.byKey)
	}
	clear(w.vals)
	w.vals = w.vals[:0]
	w.nrows = 0
	return nil
}

// ErrDeclined is wrapped by the error of a pre-commit that an upsert
// writer declines (doc.go): the checkpoint fails, nothing is lost, and the
// writer goes on.
var ErrDeclined = errors.New("postgres: checkpoint declined")

func (w *writer[T]) PreCommit(id uint64) ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.nrows > 0 && !w.canSend() {
		// Not sticky: the records stay buffered for the next checkpoint.
		return nil, fmt.Errorf("%w: sink %q task %d cannot pre-commit checkpoint %d while its transaction of checkpoint %d awaits its commit (upsert mode); its records go into the next checkpoint",
			ErrDeclined, w.s.opts.Name, w.ctx.Index, id, w.pending[len(w.pending)-1].Checkpoint)
	}
	if w.err = w.flush(); w.err != nil {
		return nil, w.err
	}
	if w.inTx {
		if len(w.pending) > 0 && w.pending[len(w.pending)-1].Checkpoint >= id {
			panic(fmt.Sprintf("postgres: pre-commit of checkpoint %d after checkpoint %d: checkpoint ids must increase", id, w.pending[len(w.pending)-1].Checkpoint))
		}
		t := txnRef{Task: w.ctx.Index, Checkpoint: id}
		if w.err = w.prepare(t); w.err != nil {
			return nil, w.err
		}
		w.pending = append(w.pending, t)
	}
	if len(w.pending) == 0 {
		return nil, nil
	}
	st, err := encodeState(w.pending)
	if err != nil {
		w.err = err
	}
	return st, err
}

// prepare writes t's progress row and prepares the open transaction. If
// it fails, the transaction is either rolled back or prepared with nobody
// listing it: the next recovery rolls it back.
func (w *writer[T]) prepare(t txnRef) error {
	ctx, cancel := w.s.ctx()
	defer cancel()
	if t.Checkpoint > math.MaxInt64 {
		panic(fmt.Sprintf("postgres: checkpoint id %d does not fit a bigint", t.Checkpoint))
	}
	if _, err := w.data.Exec(ctx, "INSERT INTO "+w.s.progress+" (job, sink, task, checkpoint) VALUES ($1, $2, $3, $4)",
		w.s.job, w.s.opts.Name, int32(t.Task), int64(t.Checkpoint)); err != nil {
		return w.s.errf("task %d cannot write its progress row for checkpoint %d: %w", t.Task, t.Checkpoint, err)
	}
	if _, err := w.data.Exec(ctx, "PREPARE TRANSACTION '"+gid(w.s.prefix, t)+"'"); err != nil {
		return w.s.errf("task %d cannot prepare the transaction of checkpoint %d: %w", t.Task, t.Checkpoint, err)
	}
	w.inTx = false
	return nil
}

func (w *writer[T]) Commit(id uint64) error {
	if len(w.pending) == 0 || w.pending[0].Checkpoint > id {
		return nil
	}
	ctx, cancel := w.s.ctx()
	defer cancel()
	n := 0
	var last uint64
	for _, t := range w.pending {
		if t.Checkpoint > id {
			w.pending[n] = t
			n++
			continue
		}
		if err := w.commitPrepared(ctx, t); err != nil {
			w.err = err
			return err
		}
		last = t.Checkpoint
	}
	w.pending = w.pending[:n]
	if _, err := w.commit.Exec(ctx, "DELETE FROM "+w.s.progress+" WHERE job = $1 AND sink = $2 AND task = $3 AND checkpoint < $4",
		w.s.job, w.s.opts.Name, int32(w.ctx.Index), int64(last)); err != nil {
		w.err = w.s.errf("task %d cannot prune the progress table: %w", w.ctx.Index, err)
		return w.err
	}
	return nil
}

// commitPrepared commits t, idempotently: a transaction that is no longer
// prepared committed if and only if its progress row exists.
func (w *writer[T]) commitPrepared(ctx context.Context, t txnRef) error {
	g := gid(w.s.prefix, t)
	_, err := w.commit.Exec(ctx, "COMMIT PREPARED '"+g+"'")
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42704" {
		return w.s.errf("task %d cannot commit prepared transaction %s: %w", t.Task, g, err)
	}
	var one int
	err = w.commit.QueryRow(ctx, "SELECT 1 FROM "+w.s.progress+" WHERE job = $1 AND sink = $2 AND task = $3 AND checkpoint = $4",
		w.s.job, w.s.opts.Name, int32(t.Task), int64(t.Checkpoint)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return w.s.errf("task %d cannot commit transaction %s: it is neither prepared nor committed (the output of checkpoint %d is lost)", t.Task, g, t.Checkpoint)
	}
	if err != nil {
		return w.s.errf("task %d cannot tell whether transaction %s committed: %w", t.Task, g, err)
	}
	return nil
}

// Finish commits what was written, for a job without checkpoints.
func (w *writer[T]) Finish() error {
	if w.err != nil {
		return w.err
	}
	if !w.canSend() {
		panic("postgres: Finish with prepared transactions pending: Finish is for jobs without checkpoints")
	}
	if w.err = w.flush(); w.err != nil || !w.inTx {
		return w.err
	}
	ctx, cancel := w.s.ctx()
	defer cancel()
	if _, err := w.data.Exec(ctx, "COMMIT"); err != nil {
		w.err = w.s.errf("task %d cannot commit: %w", w.ctx.Index, err)
		return w.err
	}
	w.inTx = false
	return nil
}

// Close closes both connections; the server rolls back an open transaction.
// Prepared transactions stay for Commit or the next recovery.
func (w *writer[T]) Close() error {
	ctx, cancel := w.s.ctx()
	defer cancel()
	var err error
	for _, c := range []*pgx.Conn{w.data, w.commit} {
		if c != nil {
			if cerr := c.Close(ctx); cerr != nil && err == nil {
				err = w.s.errf("task %d cannot close its connection: %w", w.ctx.Index, cerr)
			}
		}
	}
	w.data, w.commit = nil, nil
	return err
}
