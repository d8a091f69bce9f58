package snapshot

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// MetadataFormatVersion is the version of the metadata encoding this build
// writes; CommitCheckpoint stores it in Metadata.FormatVersion. Version 3
// added delta chains (KeyGroupRef.Deltas) and the key group counts of a
// handle (KeyedHandle.FullKeyGroups …). This build also reads version 2
// (no deltas, counts 0) and version 1 (before state belonged to
// operators), migrating it: a task's Operators are its Vertex split at
// " -> " (the engine named chains so), and Operators is empty, which tells
// the engine to apply version 1's rule (restore only into the same
// chains). Decoding any other version is a corruption error.
const MetadataFormatVersion uint32 = 3

// minMetadataFormatVersion is the oldest version this build reads.
const minMetadataFormatVersion = 1

// chainSeparator joins the operator ids of a chain in a version 1 vertex
// name.
const chainSeparator = " -> "

// metadataMagic is the first byte of encoded metadata.
const metadataMagic byte = 0xCE

// KeyGroupRef says where the blocks of one key group are: its base image
// at the keys b/<job>/<Writer>/<scope>/<KeyGroup>/<0…Blocks-1>, then the
// deltas to apply to it in order, each at the same keys of its own writer.
// Writer is the checkpoint that wrote the base, which for a key group
// reused by an incremental checkpoint is an older checkpoint than the one
// referencing it. A checkpoint writes, per key group, either a base or a
// delta, never both, so a writer's blocks of a key group are one or the
// other; the writers of a chain strictly increase.
type KeyGroupRef struct {
	KeyGroup int
	// Version is the key group's version (View.KeyGroupVersion) when it was
	// written; an equal version later means the blocks can be reused.
	Version uint64
	// Writer is the id of the checkpoint that wrote the blocks.
	Writer uint64
	// Blocks is the number of blocks; 0 for an empty key group.
	Blocks int
	// RawBytes is the size of the encoded entries before compression;
	// StoredBytes the size of the stored block values.
	RawBytes, StoredBytes int64
	// Entries is the number of entries in all blocks.
	Entries int64
	// Deltas are applied to the base in order: each one's deletions and
	// upserts (DeltaRef). Empty for a key group written in full (and in
	// metadata of format versions 1 and 2).
	Deltas []DeltaRef
}

// DeltaRef describes one delta of a key group's chain: the blocks
// b/<job>/<Writer>/<scope>/<kg>/<0…Blocks-1> in the delta block format,
// holding the operations that turn the key group's previous state (the
// base and the deltas before this one) into its state at checkpoint
// Writer.
type DeltaRef struct {
	// Writer is the id of the checkpoint that wrote the delta.
	Writer uint64
	// Blocks is the number of blocks, at least 1 (a checkpoint that finds
	// nothing to write adds no delta).
	Blocks int
	// RawBytes and StoredBytes are the sizes of the encoded operations
	// before compression and of the stored block values.
	RawBytes, StoredBytes int64
	// Entries is the number of operations; Deletes how many of them are
	// deletions.
	Entries, Deletes int64
}

// chainStoredBytes returns the stored size of r's base and deltas.
func (r *KeyGroupRef) chainStoredBytes() int64 {
	n := r.StoredBytes
	for i := range r.Deltas {
		n += r.Deltas[i].StoredBytes
	}
	return n
}

// deltaStoredBytes returns the stored size of r's deltas.
func (r *KeyGroupRef) deltaStoredBytes() int64 {
	var n int64
	for i := range r.Deltas {
		n += r.Deltas[i].StoredBytes
	}
	return n
}

// KeyedHandle describes the keyed state of one task (or, after a rescale,
// of any set of key groups of one scope) in one checkpoint. It lists every
// key group of the range it was written for, empty ones included, in
// ascending order. Handles are values: the store never changes one after
// returning it, and callers must not either.
type KeyedHandle struct {
	// Scope names whose state this is, e.g. the task's vertex name. It must
	// not depend on the parallelism (tasks of one vertex share a scope and
	// own disjoint key groups), so that a rescaled job can read and reuse it.
	Scope string
	// Checkpoint is the checkpoint that produced this handle (set by
	// WriteKeyed). WriteKeyed uses it to make sure an incremental
	// checkpoint only reuses blocks that retention still keeps; 0 means
	// unknown and skips that check.
	Checkpoint uint64
	// KeyGroups lists the key groups in ascending order.
	KeyGroups []KeyGroupRef
	// RawBytes and StoredBytes count what THIS checkpoint wrote, full
	// images and deltas (Flink's checkpointed size).
	RawBytes, StoredBytes int64
	// ReusedBytes counts the stored bytes of blocks referenced from older
	// checkpoints instead of written again: the bases and older deltas of
	// the key groups written as a delta, and the whole chains of the key
	// groups that did not change. StoredBytes + ReusedBytes is the stored
	// size of the state (Flink's state size).
	ReusedBytes int64
	// FullKeyGroups, DeltaKeyGroups and ReusedKeyGroups count the key
	// groups this checkpoint wrote in full, wrote as a delta (or found
	// changed with nothing to write), and referenced unchanged. MaxChain is
	// the longest delta chain of KeyGroups. All 0 in metadata of format
	// versions 1 and 2.
	FullKeyGroups, DeltaKeyGroups, ReusedKeyGroups int
	MaxChain                                       int
}

// TaskMeta is the part of a checkpoint that belongs to one task.
type TaskMeta struct {
	// Vertex names the task's chain, for people (statistics, messages);
	// Operators are the ids of the chain's operators, in order: state
	// belongs to operators, so restore matches these, never Vertex.
	Vertex                     string
	Operators                  []string
	Index, Parallelism         int
	KeyGroupStart, KeyGroupEnd int
	// Keyed is nil for a task without keyed state.
	Keyed *KeyedHandle
	// Source is the opaque source position.
	Source []byte
	// Sink holds the opaque pending (pre-committed) sink transactions.
	Sink []byte
	// Operator is other opaque operator state.
	Operator []byte
}

// OperatorMeta describes one stateful operator of a checkpoint.
type OperatorMeta struct {
	// ID is the operator's stable id (its uid, or its name).
	ID string
	// Kind is "source", "keyed" or "sink".
	Kind string
	// Signature is the engine's opaque description of what the operator's
	// state means (e.g. its key and value types): a job restores the
	// operator's state only into an operator of the same signature.
	Signature   string
	Parallelism int
}

// Metadata describes one completed checkpoint. It is written last, in a
// synced batch: a checkpoint without metadata does not exist.
type Metadata struct {
	// FormatVersion is the encoding version; CommitCheckpoint sets it.
	FormatVersion uint32
	Job           string
	CheckpointID  uint64
	// TriggeredAtUnixNano and CompletedAtUnixNano are wall-clock times.
	TriggeredAtUnixNano, CompletedAtUnixNano int64
	// Fingerprint is the engine's opaque description of the job's topology,
	// for compatibility checks on restore.
	Fingerprint    string
	MaxParallelism int
	// Finished says the job's sources had all ended: the final checkpoint
	// of a bounded job.
	Finished bool
	Tasks    []TaskMeta
	// Operators lists the job's stateful operators (sources, keyed
	// operators, sinks) and what their state must be restored into; empty
	// in a checkpoint of format version 1.
	Operators []OperatorMeta
	// RawBytes and StoredBytes are the totals the engine reports.
	RawBytes, StoredBytes int64
}

// EncodeMetadata appends the encoding of m to dst. The encoding is binary
// (JSON would be ~5x larger and slower for jobs with tens of thousands of
// key groups, and it is on the checkpoint's critical path):
//
//	byte     0xCE (magic)
//	uvarint  format version (MetadataFormatVersion; m.FormatVersion is
//	         ignored)
//	…        fields in declaration order: strings and byte slices as uvarint
//	         length + bytes, unsigned integers as uvarints, signed ones as
//	         zigzag varints, bools as one byte, Keyed as a presence byte,
//	         a key group's Deltas as a uvarint count and each delta's fields
//	uint32   crc32c (Castagnoli, little endian) of every byte before it
//
// Empty byte slices decode as nil.
func EncodeMetadata(dst []byte, m *Metadata) []byte {
	start := len(dst)
	dst = append(dst, metadataMagic)
	dst = binary.AppendUvarint(dst, uint64(MetadataFormatVersion))
	dst = appendString(dst, m.Job)
	dst = binary.AppendUvarint(dst, m.CheckpointID)
	dst = binary.AppendVarint(dst, m.TriggeredAtUnixNano)
	dst = binary.AppendVarint(dst, m.CompletedAtUnixNano)
	dst = appendString(dst, m.Fingerprint)
	dst = binary.AppendVarint(dst, int64(m.MaxParallelism))
	dst = appendBool(dst, m.Finished)
	dst = binary.AppendVarint(dst, m.RawBytes)
	dst = binary.AppendVarint(dst, m.StoredBytes)
	dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
	for i := range m.Tasks {
		t := &m.Tasks[i]
		dst = appendString(dst, t.Vertex)
		dst = binary.AppendVarint(dst, int64(t.Index))
		dst = binary.AppendVarint(dst, int64(t.Parallelism))
		dst = binary.AppendVarint(dst, int64(t.KeyGroupStart))
		dst = binary.AppendVarint(dst, int64(t.KeyGroupEnd))
		dst = appendBytes(dst, t.Source)
		dst = appendBytes(dst, t.Sink)
		dst = appendBytes(dst, t.Operator)
		dst = appendBool(dst, t.Keyed != nil)
		if h := t.Keyed; h != nil {
			dst = appendString(dst, h.Scope)
			dst = binary.AppendUvarint(dst, h.Checkpoint)
			dst = binary.AppendVarint(dst, h.RawBytes)
			dst = binary.AppendVarint(dst, h.StoredBytes)
			dst = binary.AppendVarint(dst, h.ReusedBytes)
			dst = binary.AppendVarint(dst, int64(h.FullKeyGroups))
			dst = binary.AppendVarint(dst, int64(h.DeltaKeyGroups))
			dst = binary.AppendVarint(dst, int64(h.ReusedKeyGroups))
			dst = binary.AppendVarint(dst, int64(h.MaxChain))
			dst = binary.AppendUvarint(dst, uint64(len(h.KeyGroups)))
			for j := range h.KeyGroups {
				r := &h.KeyGroups[j]
				dst = binary.AppendVarint(dst, int64(r.KeyGroup))
				dst = binary.AppendUvarint(dst, r.Version)
				dst = binary.AppendUvarint(dst, r.Writer)
				dst = binary.AppendVarint(dst, int64(r.Blocks))
				dst = binary.AppendVarint(dst, r.RawBytes)
				dst = binary.AppendVarint(dst, r.StoredBytes)
				dst = binary.AppendVarint(dst, r.Entries)
				dst = binary.AppendUvarint(dst, uint64(len(r.Deltas)))
				for k := range r.Deltas {
					d := &r.Deltas[k]
					dst = binary.AppendUvarint(dst, d.Writer)
					dst = binary.AppendVarint(dst, int64(d.Blocks))
					dst = binary.AppendVarint(dst, d.RawBytes)
					dst = binary.AppendVarint(dst, d.StoredBytes)
					dst = binary.AppendVarint(dst, d.Entries)
					dst = binary.AppendVarint(dst, d.Deletes)
				}
			}
		}
		dst = binary.AppendUvarint(dst, uint64(len(t.Operators)))
		for _, op := range t.Operators {
			dst = appendString(dst, op)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Operators)))
	for i := range m.Operators {
		o := &m.Operators[i]
		dst = appendString(dst, o.ID)
		dst = appendString(dst, o.Kind)
		dst = appendString(dst, o.Signature)
		dst = binary.AppendVarint(dst, int64(o.Parallelism))
	}
	crc := crc32.Checksum(dst[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// Minimum encoded sizes, used to bound allocations while decoding.
const (
	minTaskBytes   = 9 // 4 one-byte varints + 3 empty slices + presence + empty vertex
	minRefBytes    = 7 // version 3: 8 (the delta count)
	minDeltaBytes  = 6
	maxDecodeDelta = MaxDeltaChain // a longer chain does not decode
)

// DecodeMetadata verifies data (checksum, magic, format version) and decodes
// it. Every failure is a corruption error. The result does not alias data.
// DecodeMetadata checks only the encoding; see Store.LoadMetadata for the
// checks of the content.
func DecodeMetadata(data []byte) (*Metadata, error) {
	if len(data) < 2+blockTrailerBytes {
		return nil, corruptf("metadata of %d bytes is too short", len(data))
	}
	body := data[:len(data)-blockTrailerBytes]
	stored := binary.LittleEndian.Uint32(data[len(body):])
	if computed := crc32.Checksum(body, castagnoli); computed != stored {
		return nil, corruptf("metadata checksum mismatch (stored %08x, computed %08x)", stored, computed)
	}
	if body[0] != metadataMagic {
		return nil, corruptf("metadata: bad magic byte 0x%02x", body[0])
	}
	d := metaDecoder{buf: body[1:]}
	version := d.uvarint("format version")
	if d.err == nil && (version < minMetadataFormatVersion || version > uint64(MetadataFormatVersion)) {
		return nil, corruptf("metadata: unknown format version %d (this build reads %d to %d)", version, minMetadataFormatVersion, MetadataFormatVersion)
	}
	m := &Metadata{FormatVersion: uint32(version)}
	m.Job = d.string("job")
	m.CheckpointID = d.uvarint("checkpoint id")
	m.TriggeredAtUnixNano = d.varint("triggered at")
	m.CompletedAtUnixNano = d.varint("completed at")
	m.Fingerprint = d.string("fingerprint")
	m.MaxParallelism = d.int("max parallelism")
	m.Finished = d.bool("finished")
	m.RawBytes = d.varint("raw bytes")
	m.StoredBytes = d.varint("stored bytes")
	numTasks := d.count("tasks", minTaskBytes)
	if numTasks > 0 {
		m.Tasks = make([]TaskMeta, numTasks)
	}
	for i := 0; i < numTasks && d.err == nil; i++ {
		t := &m.Tasks[i]
		t.Vertex = d.string("vertex")
		t.Index = d.int("task index")
		t.Parallelism = d.int("parallelism")
		t.KeyGroupStart = d.int("key group start")
		t.KeyGroupEnd = d.int("key group end")
		t.Source = d.bytes("source")
		t.Sink = d.bytes("sink")
		t.Operator = d.bytes("operator")
		if d.bool("keyed") {
			t.Keyed = d.keyedHandle(version)
		}
		if version == 1 {
			t.Operators = strings.Split(t.Vertex, chainSeparator)
			continue
		}
		numOps := d.count("task operators", 1)
		if numOps > 0 {
			t.Operators = make([]string, numOps)
		}
		for j := 0; j < numOps && d.err == nil; j++ {
			t.Operators[j] = d.string("task operator")
		}
	}
	if version >= 2 {
		numOps := d.count("operators", 4)
		if numOps > 0 {
			m.Operators = make([]OperatorMeta, numOps)
		}
		for i := 0; i < numOps && d.err == nil; i++ {
			o := &m.Operators[i]
			o.ID = d.string("operator id")
			o.Kind = d.string("operator kind")
			o.Signature = d.string("operator signature")
			o.Parallelism = d.int("operator parallelism")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.buf) != 0 {
		return nil, corruptf("metadata: %d bytes of trailing garbage", len(d.buf))
	}
	return m, nil
}

// keyedHandle decodes a KeyedHandle of metadata format version.
func (d *metaDecoder) keyedHandle(version uint64) *KeyedHandle {
	h := &KeyedHandle{}
	h.Scope = d.string("scope")
	h.Checkpoint = d.uvarint("handle checkpoint")
	h.RawBytes = d.varint("handle raw bytes")
	h.StoredBytes = d.varint("handle stored bytes")
	h.ReusedBytes = d.varint("handle reused bytes")
	refBytes := minRefBytes
	if version >= 3 {
		h.FullKeyGroups = d.int("full key groups")
		h.DeltaKeyGroups = d.int("delta key groups")
		h.ReusedKeyGroups = d.int("reused key groups")
		h.MaxChain = d.int("longest delta chain")
		refBytes++
	}
	numRefs := d.count("key groups", refBytes)
	if numRefs > 0 {
		h.KeyGroups = make([]KeyGroupRef, numRefs)
	}
	for j := 0; j < numRefs && d.err == nil; j++ {
		r := &h.KeyGroups[j]
		r.KeyGroup = d.int("key group")
		r.Version = d.uvarint("key group version")
		r.Writer = d.uvarint("writer")
		r.Blocks = d.int("blocks")
		r.RawBytes = d.varint("key group raw bytes")
		r.StoredBytes = d.varint("key group stored bytes")
		r.Entries = d.varint("entries")
		if version < 3 {
			continue
		}
		numDeltas := d.count("deltas", minDeltaBytes)
		if numDeltas > maxDecodeDelta {
			d.fail("deltas")
		}
		if numDeltas > 0 && d.err == nil {
			r.Deltas = make([]DeltaRef, numDeltas)
		}
		for k := 0; k < numDeltas && d.err == nil; k++ {
			dr := &r.Deltas[k]
			dr.Writer = d.uvarint("delta writer")
			dr.Blocks = d.int("delta blocks")
			dr.RawBytes = d.varint("delta raw bytes")
			dr.StoredBytes = d.varint("delta stored bytes")
			dr.Entries = d.varint("delta entries")
			dr.Deletes = d.varint("delta deletes")
		}
	}
	return h
}

// metaDecoder reads fields with a sticky error: after the first failure
// every read returns a zero value.
type metaDecoder struct {
	buf []byte
	err error
}

func (d *metaDecoder) fail(what string) {
	if d.err == nil {
		d.err = corruptf("metadata: cannot decode %s", what)
	}
	d.buf = nil
}

func (d *metaDecoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *metaDecoder) varint(what string) int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *metaDecoder) int(what string) int {
	v := d.varint(what)
	if int64(int(v)) != v {
		d.fail(what)
		return 0
	}
	return int(v)
}

func (d *metaDecoder) bool(what string) bool {
	if len(d.buf) == 0 || d.buf[0] > 1 {
		d.fail(what)
		return false
	}
	b := d.buf[0] == 1
	d.buf = d.buf[1:]
	return b
}

func (d *metaDecoder) raw(what string) []byte {
	n := d.uvarint(what)
	if n > uint64(len(d.buf)) {
		d.fail(what)
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *metaDecoder) string(what string) string { return string(d.raw(what)) }

func (d *metaDecoder) bytes(what string) []byte {
	b := d.raw(what)
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// count reads a number of elements, each at least minBytes long, and fails
// if the rest of the input cannot hold that many.
func (d *metaDecoder) count(what string, minBytes int) int {
	n := d.uvarint(what)
	if n > uint64(len(d.buf)/minBytes) {
		d.fail(what)
		return 0
	}
	return int(n)
}

// problems lists what is wrong with the content of m (an encoding can be
// intact and still describe an impossible checkpoint). It returns nil when m
// is consistent.
func (m *Metadata) problems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if err := checkJobName(m.Job); err != nil {
		add("%s", strings.TrimPrefix(err.Error(), "snapshot: "))
	}
	if m.CheckpointID == 0 {
		add("checkpoint id is 0")
	}
	if m.MaxParallelism < 0 || m.MaxParallelism > MaxKeyGroups {
		add("max parallelism %d is outside [0, %d]", m.MaxParallelism, MaxKeyGroups)
	}
	for i := range m.Tasks {
		t := &m.Tasks[i]
		if t.Parallelism < 1 || t.Index < 0 || t.Index >= t.Parallelism {
			add("task %d (%s): index %d of parallelism %d", i, t.Vertex, t.Index, t.Parallelism)
		}
		if t.KeyGroupStart < 0 || t.KeyGroupStart > t.KeyGroupEnd {
			add("task %d (%s): key group range [%d, %d)", i, t.Vertex, t.KeyGroupStart, t.KeyGroupEnd)
		}
		if t.Keyed != nil {
			for _, s := range t.Keyed.problems(m.CheckpointID, m.MaxParallelism) {
				add("task %d (%s): %s", i, t.Vertex, s)
			}
		}
	}
	return p
}

// problems lists what is wrong with h as part of checkpoint ckpt.
func (h *KeyedHandle) problems(ckpt uint64, maxParallelism int) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if len(h.Scope) > MaxScopeBytes {
		add("scope of %d bytes exceeds the limit of %d", len(h.Scope), MaxScopeBytes)
	}
	if h.FullKeyGroups < 0 || h.DeltaKeyGroups < 0 || h.ReusedKeyGroups < 0 ||
		h.FullKeyGroups+h.DeltaKeyGroups+h.ReusedKeyGroups > len(h.KeyGroups) {
		add("key group counts %d full, %d delta, %d reused do not fit %d key groups",
			h.FullKeyGroups, h.DeltaKeyGroups, h.ReusedKeyGroups, len(h.KeyGroups))
	}
	if h.MaxChain < 0 || h.MaxChain > MaxDeltaChain {
		add("longest delta chain %d is outside [0, %d]", h.MaxChain, MaxDeltaChain)
	}
	prev := -1
	for i := range h.KeyGroups {
		r := &h.KeyGroups[i]
		switch {
		case r.KeyGroup <= prev:
			add("key group %d follows key group %d", r.KeyGroup, prev)
		case r.KeyGroup >= MaxKeyGroups || (maxParallelism > 0 && r.KeyGroup >= maxParallelism):
			add("key group %d is outside [0, %d)", r.KeyGroup, maxParallelism)
		case r.Blocks < 0 || r.RawBytes < 0 || r.StoredBytes < 0 || r.Entries < 0:
			add("key group %d has negative sizes", r.KeyGroup)
		case r.Blocks == 0 && (r.RawBytes != 0 || r.StoredBytes != 0 || r.Entries != 0):
			add("key group %d has no blocks but %d entries", r.KeyGroup, r.Entries)
		case r.Blocks > 0 && (r.Writer == 0 || r.Writer > ckpt):
			add("key group %d was written by checkpoint %d, not in [1, %d]", r.KeyGroup, r.Writer, ckpt)
		case len(r.Deltas) > MaxDeltaChain:
			add("key group %d has %d deltas, more than the limit of %d", r.KeyGroup, len(r.Deltas), MaxDeltaChain)
		default:
			if s := r.chainProblem(ckpt); s != "" {
				add("key group %d: %s", r.KeyGroup, s)
			}
		}
		if len(p) > 10 {
			add("…")
			return p
		}
		prev = r.KeyGroup
	}
	return p
}

// chainProblem says what is wrong with r's deltas as part of checkpoint
// ckpt ("" when nothing): writers strictly increasing, above the base's,
// at most ckpt; at least one block and one operation each; sizes that
// cannot be negative are not.
func (r *KeyGroupRef) chainProblem(ckpt uint64) string {
	last := r.Writer
	for i := range r.Deltas {
		d := &r.Deltas[i]
		switch {
		case d.Writer <= last || d.Writer > ckpt:
			return fmt.Sprintf("delta %d was written by checkpoint %d, not in [%d, %d]", i+1, d.Writer, last+1, ckpt)
		case d.Blocks < 1 || d.RawBytes < 0 || d.StoredBytes < 0 || d.Deletes < 0:
			return fmt.Sprintf("delta %d (written by checkpoint %d) has %d blocks or negative sizes", i+1, d.Writer, d.Blocks)
		case d.Entries < int64(d.Blocks) || d.Deletes > d.Entries:
			return fmt.Sprintf("delta %d (written by checkpoint %d) has %d operations (%d deletions) in %d blocks",
				i+1, d.Writer, d.Entries, d.Deletes, d.Blocks)
		}
		last = d.Writer
	}
	return ""
}
