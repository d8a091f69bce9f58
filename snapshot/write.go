package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/failpoint"
)

// FailpointAsync is the failpoint WriteKeyed hits after every block it
// writes (see package failpoint).
const FailpointAsync = "snapshot-async"

// WriteKeyed writes key groups [start, end) of v as blocks of checkpoint
// ckpt of job, for scope (e.g. the task's vertex name), and returns the
// handle to put in the checkpoint's metadata. The blocks reach Pebble at the
// end, all at once: up to ~4 MiB in one unsynced batch, which becomes
// durable with CommitCheckpoint (see there); more as one sstable, synced
// and ingested.
//
// A key group whose version (v.KeyGroupVersion) equals its version in prev
// — the handle of the same scope in the newest completed checkpoint, or nil
// — is not written again: the new handle references prev's blocks
// (incremental checkpoint). If prev's checkpoint has been deleted by
// retention in the meantime, WriteKeyed writes everything instead.
//
// WriteKeyed runs off the task's goroutine and may be called concurrently
// for different tasks (also of the same scope: their key group ranges are
// disjoint). It hits failpoint "snapshot-async" after every block.
//
// Errors: a View error, or an I/O error such as a full disk, fails only this
// checkpoint, and leaves nothing behind in Pebble (the batch or the ingestion
// is atomic; a half-built sstable is removed). Errors name the block, key
// group, scope, job and checkpoint. A crash (or the failpoint) in the middle
// leaves at most an sstable in DIR/ingest, which the next Open removes.
//
// Before it writes anything, WriteKeyed checks the free space of the data
// dir's filesystem against twice the stored size of prev (the previous
// checkpoint's state of these key groups: this one is likely about as
// large) plus Options.DiskHeadroomBytes, and declines with an error wrapping
// ErrDiskFull when it does not fit. An error wrapping ErrStoreFailed means
// Pebble failed (e.g. its WAL could not be written): not only this
// checkpoint but the Store is done for.
func (s *Store) WriteKeyed(job string, ckpt uint64, scope string, start, end int, v View, prev *KeyedHandle) (*KeyedHandle, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return nil, err
	}
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	if ckpt == 0 || ckpt > maxCheckpointID {
		return nil, invalidf("checkpoint id %d of job %s is outside [1, %d]", ckpt, job, uint64(maxCheckpointID))
	}
	if start < 0 || start > end || end > MaxKeyGroups {
		return nil, invalidf("key group range [%d, %d) of job %s is outside [0, %d)", start, end, job, MaxKeyGroups)
	}
	if prev != nil && prev.Scope != scope {
		panic(fmt.Sprintf("snapshot: invariant violated: WriteKeyed for scope %q given the previous handle of scope %q", scope, prev.Scope))
	}
	states := v.States()
	if len(states) > MaxStatesPerBlock {
		return nil, invalidf("scope %q of job %s has %d states, more than the limit of %d", scope, job, len(states), MaxStatesPerBlock)
	}
	for _, name := range states {
		if len(name) > MaxStateNameBytes {
			return nil, invalidf("state name of %d bytes in scope %q of job %s exceeds the limit of %d", len(name), scope, job, MaxStateNameBytes)
		}
	}
	if err := checkFreeSpace(s.fs, s.dir, s.opts.DiskHeadroomBytes, 2*prev.totalStoredBytes(),
		fmt.Sprintf("checkpoint %d of job %s (scope %q) declined", ckpt, job, scope)); err != nil {
		return nil, err
	}
	prev, err := s.pin(job, ckpt, prev)
	if err != nil {
		return nil, err
	}
	prevIndex := newRefIndex(prev)

	w := s.getWriter()
	defer func() {
		// A writer whose batch a failed Pebble may still hold is dropped.
		if !w.abandoned && s.health.get() == nil {
			s.putWriter(w)
		}
	}()
	w.begin(job, ckpt, scope, states)

	h := &KeyedHandle{Scope: scope, Checkpoint: ckpt, KeyGroups: make([]KeyGroupRef, 0, end-start)}
	for kg := start; kg < end; kg++ {
		version := v.KeyGroupVersion(kg)
		if ref, ok := prevIndex.find(kg); ok && ref.Version == version {
			if ref.Blocks > 0 && ref.Writer >= ckpt {
				panic(fmt.Sprintf("snapshot: invariant violated: checkpoint %d would reuse key group %d written by checkpoint %d",
					ckpt, kg, ref.Writer))
			}
			h.KeyGroups = append(h.KeyGroups, ref)
			h.ReusedBytes += ref.StoredBytes
			continue
		}
		ref := w.writeKeyGroup(kg, version, v)
		if w.err != nil {
			break
		}
		h.KeyGroups = append(h.KeyGroups, ref)
		h.RawBytes += ref.RawBytes
		h.StoredBytes += ref.StoredBytes
	}
	w.finish()
	if w.err != nil {
		return nil, w.err
	}
	if invariantsEnabled {
		if p := h.problems(ckpt, 0); len(p) > 0 {
			panic(fmt.Sprintf("snapshot: invariant violated: WriteKeyed produced an inconsistent handle: %v", p))
		}
	}
	return h, nil
}

// totalStoredBytes returns the stored size of every key group h
// references (0 for nil): the size of that state in its checkpoint.
func (h *KeyedHandle) totalStoredBytes() int64 {
	if h == nil {
		return 0
	}
	var n int64
	for _, r := range h.KeyGroups {
		n += r.StoredBytes
	}
	return n
}

// refIndex finds a key group in a handle's list.
type refIndex struct {
	refs   []KeyGroupRef // sorted by KeyGroup
	byKG   map[int]int   // used when the handle's list is not sorted
	sorted bool
}

func newRefIndex(h *KeyedHandle) refIndex {
	if h == nil {
		return refIndex{sorted: true}
	}
	if slices.IsSortedFunc(h.KeyGroups, func(a, b KeyGroupRef) int { return a.KeyGroup - b.KeyGroup }) {
		return refIndex{refs: h.KeyGroups, sorted: true}
	}
	byKG := make(map[int]int, len(h.KeyGroups))
	for i, r := range h.KeyGroups {
		byKG[r.KeyGroup] = i
	}
	return refIndex{refs: h.KeyGroups, byKG: byKG}
}

func (x *refIndex) find(kg int) (KeyGroupRef, bool) {
	if !x.sorted {
		i, ok := x.byKG[kg]
		if !ok {
			return KeyGroupRef{}, false
		}
		return x.refs[i], true
	}
	i := sort.Search(len(x.refs), func(i int) bool { return x.refs[i].KeyGroup >= kg })
	if i < len(x.refs) && x.refs[i].KeyGroup == kg {
		return x.refs[i], true
	}
	return KeyGroupRef{}, false
}

// writer encodes key groups into blocks and stores them. Blocks are kept
// in memory until they add up to Store.ingestThresholdBytes; a call that
// stays below commits them in one unsynced Pebble batch at the end. A call
// that goes beyond writes them — they arrive in ascending key order — into
// an sstable that is ingested at the end: written once, synced, and placed
// in the lowest level it fits, so compactions do not rewrite it (measured
// ~4x faster than batches for large state, see BenchmarkStorePath).
//
// It keeps its first error (sticky): after it, every step is a no-op.
// Writers are pooled by the Store; their buffers survive between calls.
type writer struct {
	s           *Store
	compression Compression
	blockSize   int
	batch       *pebble.Batch
	addFn       func(state int, key, value []byte) error // w.add, bound once

	// Per call.
	job    string
	ckpt   uint64
	scope  string
	states []string // the View's state names, by state id
	err    error
	// abandoned is set when the Store failed while a write of the writer
	// was inside Pebble (Store.callPebble): its batch may still be in use.
	abandoned bool

	// Blocks not yet handed to Pebble (below the ingest threshold).
	pendBuf   []byte       // keys and values back to back
	pendEnds  []pendingEnd // where each key and value ends in pendBuf
	sst       *sstable.Writer
	sstPath   string
	sstBlocks int // blocks written to sst

	// Per key group.
	kg  int
	ref *KeyGroupRef

	// Per block.
	raw   []byte   // encoded entries
	count int      // entries in raw
	table []string // the block's state table
	local []int32  // View state id -> index in table, or -1
	used  []int    // View state ids in table, to reset local

	block []byte // encoded block
	key   []byte
}

// pendingEnd locates one pending block: its key is pendBuf[previous
// valueEnd:keyEnd], its value pendBuf[keyEnd:valueEnd].
type pendingEnd struct{ keyEnd, valueEnd int }

func (s *Store) getWriter() *writer {
	if w, ok := s.writers.Get().(*writer); ok {
		return w
	}
	w := &writer{
		s:           s,
		compression: s.opts.Compression,
		blockSize:   s.opts.BlockSizeBytes,
		batch:       s.db.NewBatch(pebble.WithMaxRetainedSizeBytes(2 * ingestThresholdBytes)),
	}
	w.addFn = w.add
	return w
}

func (s *Store) putWriter(w *writer) {
	w.abortSST()
	w.batch.Reset()
	w.job, w.scope, w.states, w.err, w.ref = "", "", nil, nil, nil
	w.pendBuf, w.pendEnds = w.pendBuf[:0], w.pendEnds[:0]
	clear(w.table)
	w.table = w.table[:0]
	if cap(w.raw) > 4*w.blockSize {
		w.raw, w.block = nil, nil // do not keep a giant entry's buffers
	}
	if cap(w.pendBuf) > 2*ingestThresholdBytes {
		w.pendBuf = nil
	}
	s.writers.Put(w)
}

func (w *writer) begin(job string, ckpt uint64, scope string, states []string) {
	w.job, w.ckpt, w.scope, w.states, w.err = job, ckpt, scope, states, nil
	if cap(w.local) < len(states) {
		w.local = make([]int32, len(states))
	}
	w.local = w.local[:len(states)]
	for i := range w.local {
		w.local[i] = -1
	}
	w.resetBlock()
}

func (w *writer) resetBlock() {
	w.raw = w.raw[:0]
	w.count = 0
	for _, id := range w.used {
		w.local[id] = -1
	}
	w.used = w.used[:0]
	clear(w.table)
	w.table = w.table[:0]
}

// writeKeyGroup writes every entry of key group kg; on failure it sets w.err.
func (w *writer) writeKeyGroup(kg int, version uint64, v View) KeyGroupRef {
	ref := KeyGroupRef{KeyGroup: kg, Version: version, Writer: w.ckpt}
	w.kg, w.ref = kg, &ref
	w.resetBlock()
	if err := v.ForEach(kg, w.addFn); err != nil && w.err == nil {
		w.err = fmt.Errorf("snapshot: cannot read key group %d of scope %q (job %s, checkpoint %d): %w",
			kg, w.scope, w.job, w.ckpt, err)
	}
	if w.err == nil && w.count > 0 {
		w.flushBlock()
	}
	w.ref = nil
	return ref
}

// add is the View.ForEach callback.
func (w *writer) add(state int, key, value []byte) error {
	if w.err != nil {
		return w.err
	}
	if state < 0 || state >= len(w.states) {
		panic(fmt.Sprintf("snapshot: invariant violated: View.ForEach passed state id %d, View.States() has %d states",
			state, len(w.states)))
	}
	size := entrySizeBound(len(w.states), len(key), len(value))
	if size > MaxBlockRawBytes {
		w.err = fmt.Errorf("snapshot: cannot write key group %d of scope %q (job %s, checkpoint %d): "+
			"an entry of state %q is %d bytes, more than the limit of %d: %w",
			w.kg, w.scope, w.job, w.ckpt, w.states[state], size, MaxBlockRawBytes, ErrInvalidArgument)
		return w.err
	}
	if w.count > 0 && len(w.raw)+size > w.blockSize {
		if w.flushBlock(); w.err != nil {
			return w.err
		}
	}
	local := w.local[state]
	if local < 0 {
		local = int32(len(w.table))
		w.table = append(w.table, w.states[state])
		w.local[state] = local
		w.used = append(w.used, state)
	}
	w.raw = AppendEntry(w.raw, int(local), key, value)
	w.count++
	return nil
}

// flushBlock encodes the pending entries as the next block of the current
// key group and stores it.
func (w *writer) flushBlock() {
	seq := w.ref.Blocks
	w.block = appendBlock(w.block[:0], w.compression, w.count, w.table, w.raw)
	if invariantsEnabled {
		if _, err := DecodeBlock(nil, w.block); err != nil {
			panic("snapshot: invariant violated: a block just encoded does not decode: " + err.Error())
		}
	}
	w.key = blockKey(w.key[:0], w.job, w.ckpt, w.scope, w.kg, seq)
	if err := w.put(w.key, w.block); err != nil {
		w.err = ioErrorf(err, "cannot write block %d of key group %d of scope %q (job %s, checkpoint %d)",
			seq, w.kg, w.scope, w.job, w.ckpt)
		return
	}
	w.ref.Blocks++
	w.ref.RawBytes += int64(len(w.raw))
	w.ref.StoredBytes += int64(len(w.block))
	w.ref.Entries += int64(w.count)
	w.resetBlock()
	failpoint.Hit(FailpointAsync)
}

// put stores one block: pending in memory, or in the sstable once the
// pending blocks have outgrown the ingest threshold.
func (w *writer) put(key, value []byte) error {
	if w.sst != nil {
		w.sstBlocks++
		return w.sst.Set(key, value)
	}
	w.pendBuf = append(w.pendBuf, key...)
	keyEnd := len(w.pendBuf)
	w.pendBuf = append(w.pendBuf, value...)
	w.pendEnds = append(w.pendEnds, pendingEnd{keyEnd: keyEnd, valueEnd: len(w.pendBuf)})
	if len(w.pendBuf) <= w.s.ingestThresholdBytes {
		return nil
	}
	// Switch to an sstable and move the pending blocks into it.
	if err := w.createSST(); err != nil {
		return err
	}
	start := 0
	for _, e := range w.pendEnds {
		w.sstBlocks++
		if err := w.sst.Set(w.pendBuf[start:e.keyEnd], w.pendBuf[e.keyEnd:e.valueEnd]); err != nil {
			return err
		}
		start = e.valueEnd
	}
	w.pendBuf, w.pendEnds = w.pendBuf[:0], w.pendEnds[:0]
	return nil
}

func (w *writer) createSST() error {
	w.sstPath = w.s.fs.PathJoin(w.s.ingestDir, fmt.Sprintf("%d-%d.sst", w.ckpt, w.s.ingestSeq.Add(1)))
	f, err := w.s.fs.Create(w.sstPath, vfs.WriteCategoryUnspecified)
	if err != nil {
		w.sstPath = ""
		return err
	}
	wo := w.s.pebbleOpts.MakeWriterOptions(len(w.s.pebbleOpts.Levels)-1, w.s.db.TableFormat())
	// Blocks are compressed already; no filter: every read is a seek.
	wo.Compression = sstable.NoCompression
	wo.FilterPolicy = nil
	wo.WritingToLowestLevel = false // it goes to the lowest level that fits, not necessarily L6
	w.sst = sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)
	w.sstBlocks = 0
	return nil
}

// abortSST removes an sstable that will not be ingested.
func (w *writer) abortSST() {
	if w.sst != nil {
		_ = w.sst.Close()
		w.sst = nil
	}
	if w.sstPath != "" {
		_ = w.s.fs.Remove(w.sstPath)
		w.sstPath = ""
	}
}

// finish hands what is left to Pebble: the pending blocks in one unsynced
// batch, or the sstable (closed, which syncs it) by ingestion.
func (w *writer) finish() {
	if w.err != nil {
		return
	}
	if w.sst != nil {
		err := w.sst.Close()
		w.sst = nil
		if err == nil {
			path := w.sstPath
			err, w.abandoned = w.s.callPebble(func() error {
				return w.s.db.Ingest(context.Background(), []string{path})
			})
			if errors.Is(err, ErrStoreFailed) {
				w.err = err
				if !w.abandoned {
					w.abortSST()
				}
				return
			}
		}
		if err != nil {
			w.err = ioErrorf(err, "cannot ingest %d blocks of scope %q (job %s, checkpoint %d)",
				w.sstBlocks, w.scope, w.job, w.ckpt)
		}
		w.abortSST() // removes our name for the file; Pebble linked its own
		return
	}
	if len(w.pendEnds) == 0 {
		return
	}
	w.batch.Reset()
	start := 0
	for _, e := range w.pendEnds {
		if err := w.batch.Set(w.pendBuf[start:e.keyEnd], w.pendBuf[e.keyEnd:e.valueEnd], nil); err != nil {
			w.err = ioErrorf(err, "cannot write blocks of scope %q (job %s, checkpoint %d)", w.scope, w.job, w.ckpt)
			return
		}
		start = e.valueEnd
	}
	err, abandoned := w.s.callPebble(func() error { return w.batch.Commit(pebble.NoSync) })
	w.abandoned = abandoned
	switch {
	case errors.Is(err, ErrStoreFailed):
		w.err = err
		return
	case err != nil:
		w.err = ioErrorf(err, "cannot write %d blocks of scope %q (job %s, checkpoint %d)",
			len(w.pendEnds), w.scope, w.job, w.ckpt)
	}
	w.batch.Reset()
}
