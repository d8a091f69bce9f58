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
// — is not written again: the new handle references prev's blocks, its
// base and deltas (incremental checkpoint). If prev's checkpoint has been
// deleted by retention in the meantime, WriteKeyed writes everything
// instead.
//
// A key group that changed is written as a delta when v is a DeltaView,
// prev has a non-empty base for it, and the policy (Options.Incremental)
// allows: the operations DeltaView.Changes reports since prev's version go
// into delta blocks, and the new handle's chain is prev's base and deltas
// plus this delta. Otherwise — or when Changes cannot tell after all — it
// is written in full: a new base, no deltas.
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
	dv, _ := v.(DeltaView)
	if s.opts.Incremental.Disabled {
		dv = nil
	}

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
		ref, found := prevIndex.find(kg)
		if found && (ref.Version == version || dv != nil) && (ref.Blocks > 0 || len(ref.Deltas) > 0) && ref.lastWriter() >= ckpt {
			panic(fmt.Sprintf("snapshot: invariant violated: checkpoint %d would reference key group %d written by checkpoint %d",
				ckpt, kg, ref.lastWriter()))
		}
		if found && ref.Version == version {
			h.KeyGroups = append(h.KeyGroups, ref)
			h.ReusedBytes += ref.chainStoredBytes()
			h.ReusedKeyGroups++
			h.MaxChain = max(h.MaxChain, len(ref.Deltas))
			continue
		}
		if found && dv != nil && s.opts.Incremental.wantDelta(dv, scope, kg, &ref) {
			d, ok := w.writeDelta(kg, ref.Version, dv)
			if w.err != nil {
				break
			}
			if ok {
				next := ref
				next.Version = version
				if d.Blocks > 0 {
					// A new slice: prev's handle is a value shared with others.
					next.Deltas = append(ref.Deltas[:len(ref.Deltas):len(ref.Deltas)], d)
				}
				h.KeyGroups = append(h.KeyGroups, next)
				h.RawBytes += d.RawBytes
				h.StoredBytes += d.StoredBytes
				h.ReusedBytes += ref.chainStoredBytes()
				h.DeltaKeyGroups++
				h.MaxChain = max(h.MaxChain, len(next.Deltas))
				continue
			}
		}
		ref = w.writeKeyGroup(kg, version, v)
		if w.err != nil {
			break
		}
		h.KeyGroups = append(h.KeyGroups, ref)
		h.RawBytes += ref.RawBytes
		h.StoredBytes += ref.StoredBytes
		h.FullKeyGroups++
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
	s.recordWritten(job, ckpt, h)
	return h, nil
}

// recordWritten adds the key groups h's checkpoint ckpt wrote blocks for
// to the blocks Retain knows exist (retain.go).
func (s *Store) recordWritten(job string, ckpt uint64, h *KeyedHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.knownLocked(job)
	for i := range h.KeyGroups {
		r := &h.KeyGroups[i]
		wrote := r.Writer == ckpt && r.Blocks > 0
		if n := len(r.Deltas); n > 0 && r.Deltas[n-1].Writer == ckpt && r.Deltas[n-1].Blocks > 0 {
			wrote = true
		}
		if wrote {
			k.prefixes[string(kgPrefix(nil, job, ckpt, h.Scope, r.KeyGroup))] = struct{}{}
		}
	}
}

// totalStoredBytes returns the stored size of every key group h
// references (0 for nil): the size of that state in its checkpoint.
func (h *KeyedHandle) totalStoredBytes() int64 {
	if h == nil {
		return 0
	}
	var n int64
	for i := range h.KeyGroups {
		n += h.KeyGroups[i].chainStoredBytes()
	}
	return n
}

// lastWriter returns the writer of r's newest part: its last delta's, or
// its base's.
func (r *KeyGroupRef) lastWriter() uint64 {
	if n := len(r.Deltas); n > 0 {
		return r.Deltas[n-1].Writer
	}
	return r.Writer
}

// wantDelta decides whether key group kg, whose chain in the previous
// checkpoint is ref and which changed since, is written as a delta (true)
// or in full: in full when its base is empty, when its chain is as long
// as its (jittered) MaxChain, when dv cannot bound the changes, when they
// may exceed MaxDeltaFraction of its entries, or when the chain's deltas
// with this one's estimate would exceed its (jittered) MaxChainRatio of
// the base's stored bytes. The estimate is the changed entries at the
// base's stored bytes per entry.
func (o *IncrementalOptions) wantDelta(dv DeltaView, scope string, kg int, ref *KeyGroupRef) bool {
	if ref.Blocks == 0 || ref.Entries == 0 {
		return false
	}
	factor := o.jitterFactor(scope, kg, ref.Writer)
	maxChain := max(1, int(float64(o.MaxChain)*factor))
	if len(ref.Deltas) >= maxChain {
		return false
	}
	changed, ok := dv.ChangedEntries(kg, ref.Version)
	if !ok || changed < 0 {
		return false
	}
	if float64(changed) > o.MaxDeltaFraction*float64(dv.Len(kg)) {
		return false
	}
	estimate := float64(changed) * float64(ref.StoredBytes) / float64(ref.Entries)
	return float64(ref.deltaStoredBytes())+estimate <= o.MaxChainRatio*factor*float64(ref.StoredBytes)
}

// jitterFactor returns the factor in (1-Jitter, 1] that scales the
// materialization thresholds of a key group: a hash of the scope, the key
// group and the checkpoint that wrote its base, so that it is the same
// for every decision about one chain, differs between key groups, and
// changes when the key group materializes.
func (o *IncrementalOptions) jitterFactor(scope string, kg int, baseWriter uint64) float64 {
	if o.Jitter <= 0 {
		return 1
	}
	h := uint64(14695981039346656037) // FNV-1a of the scope
	for i := 0; i < len(scope); i++ {
		h ^= uint64(scope[i])
		h *= 1099511628211
	}
	h = mix64(h ^ mix64(uint64(kg)+0x9e3779b97f4a7c15) ^ mix64(baseWriter^0xbf58476d1ce4e5b9))
	u := float64(h>>11) / (1 << 53) // [0, 1)
	return 1 - o.Jitter*u
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
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
	s                *Store
	compression      Compression // of full blocks
	deltaCompression Compression // of delta blocks
	blockSize        int
	batch            *pebble.Batch
	addFn            func(state int, key, value []byte) error           // w.add, bound once
	changeFn         func(state int, key, value []byte, op uint8) error // w.addChange, bound once

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

	// Per part of a key group being written: its base or a delta.
	kg        int
	delta     bool       // writing a delta (delta blocks, operations)
	part      partTotals // what the part's flushed blocks hold
	sawUpsert bool       // a delta's upserts began: no deletion may follow

	// Per block.
	raw     []byte   // encoded entries
	count   int      // entries in raw
	deletes int      // deletions among them (delta blocks)
	table   []string // the block's state table
	local   []int32  // View state id -> index in table, or -1
	used    []int    // View state ids in table, to reset local

	block []byte // encoded block
	key   []byte
}

// partTotals adds up the blocks of one part of a key group.
type partTotals struct {
	blocks                        int
	raw, stored, entries, deletes int64
}

// pendingEnd locates one pending block: its key is pendBuf[previous
// valueEnd:keyEnd], its value pendBuf[keyEnd:valueEnd].
type pendingEnd struct{ keyEnd, valueEnd int }

func (s *Store) getWriter() *writer {
	if w, ok := s.writers.Get().(*writer); ok {
		return w
	}
	w := &writer{
		s:                s,
		compression:      s.opts.Compression,
		deltaCompression: *s.opts.Incremental.DeltaCompression,
		blockSize:        s.opts.BlockSizeBytes,
		batch:            s.db.NewBatch(pebble.WithMaxRetainedSizeBytes(2 * ingestThresholdBytes)),
	}
	w.addFn = w.add
	w.changeFn = w.addChange
	return w
}

func (s *Store) putWriter(w *writer) {
	w.abortSST()
	w.batch.Reset()
	w.job, w.scope, w.states, w.err = "", "", nil, nil
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
	w.deletes = 0
	for _, id := range w.used {
		w.local[id] = -1
	}
	w.used = w.used[:0]
	clear(w.table)
	w.table = w.table[:0]
}

// beginPart starts writing key group kg: its base, or a delta.
func (w *writer) beginPart(kg int, delta bool) {
	w.kg, w.delta, w.part, w.sawUpsert = kg, delta, partTotals{}, false
	w.resetBlock()
}

// writeKeyGroup writes every entry of key group kg; on failure it sets w.err.
func (w *writer) writeKeyGroup(kg int, version uint64, v View) KeyGroupRef {
	w.beginPart(kg, false)
	if err := v.ForEach(kg, w.addFn); err != nil && w.err == nil {
		w.err = fmt.Errorf("snapshot: cannot read key group %d of scope %q (job %s, checkpoint %d): %w",
			kg, w.scope, w.job, w.ckpt, err)
	}
	if w.err == nil && w.count > 0 {
		w.flushBlock()
	}
	p := w.part
	return KeyGroupRef{KeyGroup: kg, Version: version, Writer: w.ckpt,
		Blocks: p.blocks, RawBytes: p.raw, StoredBytes: p.stored, Entries: p.entries}
}

// writeDelta writes the changes of key group kg since version since as a
// delta. ok is false when dv cannot tell (nothing was written; the caller
// writes the key group in full) or on failure, which sets w.err. A delta
// without operations has Blocks == 0.
func (w *writer) writeDelta(kg int, since uint64, dv DeltaView) (d DeltaRef, ok bool) {
	w.beginPart(kg, true)
	ok, err := dv.Changes(kg, since, w.changeFn)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("snapshot: cannot read the changes of key group %d of scope %q since version %d (job %s, checkpoint %d): %w",
			kg, w.scope, since, w.job, w.ckpt, err)
	}
	if w.err != nil {
		return DeltaRef{}, false
	}
	if !ok {
		if w.part.entries > 0 || w.count > 0 {
			panic(fmt.Sprintf("snapshot: invariant violated: DeltaView.Changes of key group %d returned ok=false after reporting changes", kg))
		}
		return DeltaRef{}, false
	}
	if w.count > 0 {
		if w.flushBlock(); w.err != nil {
			return DeltaRef{}, false
		}
	}
	p := w.part
	return DeltaRef{Writer: w.ckpt, Blocks: p.blocks, RawBytes: p.raw, StoredBytes: p.stored,
		Entries: p.entries, Deletes: p.deletes}, true
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
	if !w.room(state, entrySizeBound(len(w.states), len(key), len(value))) {
		return w.err
	}
	w.raw = AppendEntry(w.raw, int(w.localID(state)), key, value)
	w.count++
	return nil
}

// addChange is the DeltaView.Changes callback.
func (w *writer) addChange(state int, key, value []byte, op uint8) error {
	if w.err != nil {
		return w.err
	}
	if state < 0 || state >= len(w.states) {
		panic(fmt.Sprintf("snapshot: invariant violated: DeltaView.Changes passed state id %d, View.States() has %d states",
			state, len(w.states)))
	}
	if op >= numOps {
		panic(fmt.Sprintf("snapshot: invariant violated: DeltaView.Changes passed operation %d", op))
	}
	deleted := op == OpDelete
	if deleted {
		if w.sawUpsert {
			panic(fmt.Sprintf("snapshot: invariant violated: DeltaView.Changes of key group %d reported a deletion after an upsert", w.kg))
		}
		value = nil
	} else {
		w.sawUpsert = true
	}
	if !w.room(state, deltaEntrySizeBound(len(w.states), len(key), len(value), op)) {
		return w.err
	}
	w.raw = AppendDeltaEntry(w.raw, int(w.localID(state)), key, value, op)
	w.count++
	if deleted {
		w.deletes++
	}
	return nil
}

// room makes room in the current block for an entry of state of at most
// size bytes, flushing the block if the entry does not fit. It returns
// false (with w.err set) when the entry exceeds the limit or the flush
// failed.
func (w *writer) room(state, size int) bool {
	if size > MaxBlockRawBytes {
		w.err = fmt.Errorf("snapshot: cannot write key group %d of scope %q (job %s, checkpoint %d): "+
			"an entry of state %q is %d bytes, more than the limit of %d: %w",
			w.kg, w.scope, w.job, w.ckpt, w.states[state], size, MaxBlockRawBytes, ErrInvalidArgument)
		return false
	}
	if w.count > 0 && len(w.raw)+size > w.blockSize {
		if w.flushBlock(); w.err != nil {
			return false
		}
	}
	return true
}

// localID returns the index of state in the current block's state table,
// adding it.
func (w *writer) localID(state int) int32 {
	local := w.local[state]
	if local < 0 {
		local = int32(len(w.table))
		w.table = append(w.table, w.states[state])
		w.local[state] = local
		w.used = append(w.used, state)
	}
	return local
}

// flushBlock encodes the pending entries as the next block of the current
// part (base or delta) and stores it.
func (w *writer) flushBlock() {
	seq := w.part.blocks
	if w.delta {
		w.block = appendDeltaBlock(w.block[:0], w.deltaCompression, w.count, w.table, w.raw)
	} else {
		w.block = appendBlock(w.block[:0], w.compression, w.count, w.table, w.raw)
	}
	if invariantsEnabled {
		if b, err := DecodeBlock(nil, w.block); err != nil || b.Delta != w.delta {
			panic(fmt.Sprintf("snapshot: invariant violated: a block just encoded does not decode as written (delta %v): %v", w.delta, err))
		}
	}
	w.key = blockKey(w.key[:0], w.job, w.ckpt, w.scope, w.kg, seq)
	if err := w.put(w.key, w.block); err != nil {
		what := "block"
		if w.delta {
			what = "delta block"
		}
		w.err = ioErrorf(err, "cannot write %s %d of key group %d of scope %q (job %s, checkpoint %d)",
			what, seq, w.kg, w.scope, w.job, w.ckpt)
		return
	}
	w.part.blocks++
	w.part.raw += int64(len(w.raw))
	w.part.stored += int64(len(w.block))
	w.part.entries += int64(w.count)
	w.part.deletes += int64(w.deletes)
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
