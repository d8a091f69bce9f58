package nats

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The sink writer's state, stored in checkpoints: every pre-committed
// transaction not yet committed, with its messages.
//
//	state   = magic version uvarint(count) txn*
//	txn     = uvarint(task) uvarint(checkpoint) uvarint(messages) uvarint(len(body)) body
//	body    = message*
//	message = uvarint(len(subject)) subject uvarint(len(data)) data
//
// Varints are minimal; a transaction's body holds exactly its count of
// messages. The body is also the writer's buffer of the open transaction:
// sealing it at a barrier copies nothing.
const (
	stateMagic   = "\xffNSK"
	stateVersion = 1
	// MaxSubjectBytes bounds a message's subject.
	MaxSubjectBytes = 1024
	// MaxMessageBytes bounds a message's payload (servers default to 1 MiB,
	// and allow at most 64 MiB).
	MaxMessageBytes = 64 << 20
	// maxTxnsPerState bounds the transactions of one state: a writer holds
	// one per checkpoint not yet committed, and the engine bounds
	// checkpoints in flight far below it.
	maxTxnsPerState = 1 << 16
)

// ErrBadState is wrapped by the errors of decodeState.
var ErrBadState = errors.New("nats: malformed sink state")

// txn is one pre-committed transaction.
type txn struct {
	// task is the index of the task that wrote it: with checkpoint and
	// the message's index, it names each message (Nats-Msg-Id), also
	// when another task re-commits it after a rescale.
	task       int
	checkpoint uint64
	count      int
	body       []byte
}

// appendMessage appends one message to a transaction body.
func appendMessage(body []byte, subject string, data []byte) []byte {
	body = binary.AppendUvarint(body, uint64(len(subject)))
	body = append(body, subject...)
	body = binary.AppendUvarint(body, uint64(len(data)))
	return append(body, data...)
}

func appendState(dst []byte, txns []txn) []byte {
	dst = append(dst, stateMagic...)
	dst = append(dst, stateVersion)
	dst = binary.AppendUvarint(dst, uint64(len(txns)))
	for _, t := range txns {
		dst = binary.AppendUvarint(dst, uint64(t.task))
		dst = binary.AppendUvarint(dst, t.checkpoint)
		dst = binary.AppendUvarint(dst, uint64(t.count))
		dst = binary.AppendUvarint(dst, uint64(len(t.body)))
		dst = append(dst, t.body...)
	}
	return dst
}

// decoder reads varints and byte strings, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated %s", what)
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("non-minimal varint for %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string, limit uint64) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > limit {
		d.fail("%s of %d bytes, more than the limit %d", what, n, limit)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s of %d bytes, only %d left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// decodeState decodes a writer state; the bodies share b's memory. Errors
// wrap ErrBadState. It checks every message of every body, so that a
// commit never meets a malformed one halfway.
func decodeState(b []byte) ([]txn, error) {
	if !bytes.HasPrefix(b, []byte(stateMagic)) {
		return nil, fmt.Errorf("%w: it does not start with the sink state's magic", ErrBadState)
	}
	d := decoder{b: b[len(stateMagic):]}
	if len(d.b) == 0 {
		return nil, fmt.Errorf("%w: no version", ErrBadState)
	}
	if v := d.b[0]; v != stateVersion {
		return nil, fmt.Errorf("%w: version %d, this streamd reads version %d", ErrBadState, v, stateVersion)
	}
	d.b = d.b[1:]
	n := d.uvarint("transaction count")
	// A transaction takes at least four bytes.
	if d.err == nil && (n > maxTxnsPerState || n > uint64(len(d.b)/4)) {
		d.fail("%d transactions in %d bytes (limit %d)", n, len(d.b), maxTxnsPerState)
	}
	if d.err != nil {
		return nil, d.err
	}
	txns := make([]txn, 0, n)
	for range n {
		var t txn
		task := d.uvarint("task")
		t.checkpoint = d.uvarint("checkpoint")
		count := d.uvarint("message count")
		t.body = d.bytes("transaction body", uint64(len(d.b)))
		if d.err != nil {
			return nil, d.err
		}
		if task > 1<<30 {
			d.fail("task index %d", task)
		}
		if t.checkpoint == 0 {
			d.fail("a transaction of checkpoint 0")
		}
		// A message takes at least two bytes.
		if count > uint64(len(t.body)/2) {
			d.fail("%d messages in a body of %d bytes", count, len(t.body))
		}
		if d.err != nil {
			return nil, d.err
		}
		t.task, t.count = int(task), int(count)
		got := 0
		if err := eachMessage(t.body, func(subject, data []byte) error { got++; return nil }); err != nil {
			return nil, err
		}
		if got != t.count {
			return nil, fmt.Errorf("%w: transaction of task %d, checkpoint %d: %d messages, its header says %d", ErrBadState, t.task, t.checkpoint, got, t.count)
		}
		txns = append(txns, t)
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last transaction", ErrBadState, len(d.b))
	}
	return txns, nil
}

// eachMessage calls fn with every message of a body, in order; a
// malformed body is an ErrBadState error.
func eachMessage(body []byte, fn func(subject, data []byte) error) error {
	d := decoder{b: body}
	for len(d.b) > 0 {
		subject := d.bytes("subject", MaxSubjectBytes)
		data := d.bytes("message", MaxMessageBytes)
		if d.err != nil {
			return d.err
		}
		if len(subject) == 0 {
			return fmt.Errorf("%w: a message without a subject", ErrBadState)
		}
		if err := fn(subject, data); err != nil {
			return err
		}
	}
	return nil
}

// planRecovery is the sink's recovery protocol, a pure function: given the
// states every task recorded in the restored checkpoint and, per task
// index, the highest checkpoint the commit bucket says that task
// committed, it returns the transactions to publish (again), in checkpoint
// order, then task order. A transaction at or below its task's committed
// checkpoint was acknowledged in full before that entry was written: it is
// skipped. Every other listed transaction is published, all of it, with
// the same message ids as before, so that what a crashed commit already
// stored is dropped by the stream's duplicate window. No transaction needs
// aborting: nothing reaches NATS before its checkpoint is complete.
//
// A state that does not decode, or a transaction listed twice, is an error:
// recovery refuses rather than guess.
func planRecovery(states [][]byte, committed map[int]uint64) ([]txn, error) {
	var out []txn
	type id struct {
		task int
		cp   uint64
	}
	seen := make(map[id]bool)
	for i, s := range states {
		if len(s) == 0 {
			continue
		}
		txns, err := decodeState(s)
		if err != nil {
			return nil, fmt.Errorf("nats: the sink state of task %d in the checkpoint: %w", i, err)
		}
		for _, t := range txns {
			k := id{t.task, t.checkpoint}
			if seen[k] {
				return nil, fmt.Errorf("nats: the checkpoint lists the transaction of task %d, checkpoint %d twice", t.task, t.checkpoint)
			}
			seen[k] = true
			if t.checkpoint <= committed[t.task] {
				continue
			}
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b txn) int {
		return cmp.Or(cmp.Compare(a.checkpoint, b.checkpoint), cmp.Compare(a.task, b.task))
	})
	return out, nil
}
