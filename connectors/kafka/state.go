package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrBadState is wrapped by the errors of the decoders of what this
// package stores in checkpoints and in the control topic.
var ErrBadState = errors.New("kafka: malformed state")

// Limits of what the decoders accept.
const (
	// maxIDBytes bounds a transactional id or a topic name.
	maxIDBytes = 4096
	// maxPartitionsPerSplit bounds the partitions one discovery split
	// records.
	maxPartitionsPerSplit = 4096
)

const (
	sinkStateMagic  = "KTX"
	sinkStateFormat = 1
)

// pendingTxn is a pre-committed transaction not yet known to be committed.
type pendingTxn struct {
	Checkpoint uint64
	ProducerID int64
	Epoch      int16
}

// sinkState is what a sink task stores in a checkpoint.
type sinkState struct {
	TxnID   string
	Task    int
	Pending *pendingTxn // nil: none
}

// appendSinkState appends the encoding of st: magic, version, txn id,
// task, a pending flag and, with it, checkpoint, producer id and epoch.
func appendSinkState(dst []byte, st sinkState) []byte {
	dst = append(dst, sinkStateMagic...)
	dst = append(dst, sinkStateFormat)
	dst = binary.AppendUvarint(dst, uint64(len(st.TxnID)))
	dst = append(dst, st.TxnID...)
	dst = binary.AppendUvarint(dst, uint64(st.Task))
	if st.Pending == nil {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, st.Pending.Checkpoint)
	dst = binary.AppendUvarint(dst, uint64(st.Pending.ProducerID))
	return binary.AppendUvarint(dst, uint64(st.Pending.Epoch))
}

// reader decodes strictly: minimal varints, bounded lengths, nothing left
// over.
type reader struct {
	b   []byte
	err error
	ctx string
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrBadState, r.ctx, fmt.Sprintf(format, args...))
	}
}

func (r *reader) uvarint(what string, limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated %s", what)
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		r.fail("non-minimal varint for %s", what)
		return 0
	}
	if v > limit {
		r.fail("%s %d beyond the limit %d", what, v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string, limit int) []byte {
	n := r.uvarint(what+" length", uint64(limit))
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("%s of %d bytes, only %d left", what, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated %s", what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) end() {
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d bytes after the end", len(r.b))
	}
}

// decodeSinkState decodes what appendSinkState wrote.
func decodeSinkState(b []byte) (sinkState, error) {
	r := &reader{b: b, ctx: "sink state"}
	var st sinkState
	if len(b) < len(sinkStateMagic) || string(b[:len(sinkStateMagic)]) != sinkStateMagic {
		return st, fmt.Errorf("%w: sink state: not a Kafka sink's state (no magic)", ErrBadState)
	}
	r.b = r.b[len(sinkStateMagic):]
	if v := r.byte("version"); r.err == nil && v != sinkStateFormat {
		r.fail("version %d, this streamd reads version %d", v, sinkStateFormat)
	}
	st.TxnID = string(r.bytes("transactional id", maxIDBytes))
	st.Task = int(r.uvarint("task", math.MaxInt32))
	switch r.byte("pending flag") {
	case 0:
	case 1:
		p := pendingTxn{}
		p.Checkpoint = r.uvarint("checkpoint", math.MaxUint64)
		p.ProducerID = int64(r.uvarint("producer id", math.MaxInt64))
		p.Epoch = int16(r.uvarint("epoch", math.MaxInt16))
		st.Pending = &p
	default:
		r.fail("bad pending flag")
	}
	r.end()
	if r.err == nil && st.TxnID == "" {
		r.fail("empty transactional id")
	}
	if r.err == nil && st.Pending != nil && st.Pending.Checkpoint == 0 {
		r.fail("a pending transaction of checkpoint 0")
	}
	if r.err != nil {
		return sinkState{}, r.err
	}
	return st, nil
}

// The control record: key the transactional id, value the checkpoint as
// 8 bytes big-endian.
func controlValue(checkpoint uint64) []byte { return binary.BigEndian.AppendUint64(nil, checkpoint) }

func decodeControlValue(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: control record of %d bytes, want 8", ErrBadState, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// Source split states.
const (
	partStateFormat = 1
	discStateFormat = 2
)

// partState is a partition split's position.
type partState struct {
	Next int64 // the next offset to read
	Stop int64 // a bounded split ends at it; -1: unbounded
}

func appendPartState(dst []byte, s partState) []byte {
	dst = append(dst, partStateFormat)
	dst = binary.AppendUvarint(dst, uint64(s.Next))
	return binary.AppendUvarint(dst, uint64(s.Stop+1))
}

func (r *reader) partState() partState {
	var s partState
	s.Next = int64(r.uvarint("next offset", math.MaxInt64))
	s.Stop = int64(r.uvarint("stop offset", math.MaxInt64)) - 1
	return s
}

func decodePartState(b []byte) (partState, error) {
	r := &reader{b: b, ctx: "partition split"}
	if v := r.byte("version"); r.err == nil && v != partStateFormat {
		r.fail("version %d, want %d", v, partStateFormat)
	}
	s := r.partState()
	r.end()
	return s, r.err
}

// discovered is a partition a task discovered while running.
type discovered struct {
	Topic     string
	Partition int32
	partState
}

// discState is a discovery split's state: per topic the partitions the
// job's splits covered when they were dealt out (topics in options order),
// and what the task discovered since.
type discState struct {
	Known []int32
	Found []discovered
}

func appendDiscState(dst []byte, s discState) []byte {
	dst = append(dst, discStateFormat)
	dst = binary.AppendUvarint(dst, uint64(len(s.Known)))
	for _, k := range s.Known {
		dst = binary.AppendUvarint(dst, uint64(k))
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Found)))
	for _, f := range s.Found {
		dst = binary.AppendUvarint(dst, uint64(len(f.Topic)))
		dst = append(dst, f.Topic...)
		dst = binary.AppendUvarint(dst, uint64(f.Partition))
		dst = binary.AppendUvarint(dst, uint64(f.Next))
		dst = binary.AppendUvarint(dst, uint64(f.Stop+1))
	}
	return dst
}

func decodeDiscState(b []byte) (discState, error) {
	r := &reader{b: b, ctx: "discovery split"}
	if v := r.byte("version"); r.err == nil && v != discStateFormat {
		r.fail("version %d, want %d", v, discStateFormat)
	}
	var s discState
	n := r.uvarint("topic count", maxPartitionsPerSplit)
	if n > uint64(len(r.b)) {
		r.fail("%d topics in %d bytes", n, len(r.b))
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		s.Known = append(s.Known, int32(r.uvarint("known partitions", math.MaxInt32)))
	}
	n = r.uvarint("partition count", maxPartitionsPerSplit)
	if n > uint64(len(r.b)/4) {
		r.fail("%d partitions in %d bytes", n, len(r.b))
	}
	seen := make(map[string]bool)
	for i := uint64(0); i < n && r.err == nil; i++ {
		var f discovered
		f.Topic = string(r.bytes("topic", maxIDBytes))
		f.Partition = int32(r.uvarint("partition", math.MaxInt32))
		f.partState = r.partState()
		id := splitID(f.Topic, f.Partition)
		if r.err == nil && (f.Topic == "" || seen[id]) {
			r.fail("partition %q is empty or appears twice", id)
		}
		seen[id] = true
		s.Found = append(s.Found, f)
	}
	r.end()
	if r.err != nil {
		return discState{}, r.err
	}
	return s, nil
}
