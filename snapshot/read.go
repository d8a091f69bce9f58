package snapshot

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// ReadKeyed streams the key groups of h that lie in [start, end), in
// ascending key group order; key groups outside the range are skipped
// (that is how a rescaled task restores only its own). For each key group
// it streams its base image — every entry, with op OpPut — and then each
// delta of its chain in order, as written: the delta's deletions (OpDelete,
// value nil), then its inserted or changed entries (OpPut) and the
// elements appended to list entries (OpAppend). Applying them in the order
// they arrive — OpPut replaces the entry of the same state and key,
// OpDelete removes it and is a no-op when there is none, OpAppend appends
// to it — gives the key group's state at the checkpoint. Every
// block is checksum-verified and decompressed first. key and value are
// only valid during the call to fn; an error from fn stops the walk and is
// returned as it is.
//
// A damaged block, a missing one, a block of the wrong kind (a delta
// block where the base belongs, or the reverse), or totals that do not
// match the handle give an error for which IsCorruption is true, naming
// the job, checkpoint, scope, key group, the delta (its position in the
// chain and its writer) and block. A nil h has no entries.
func (s *Store) ReadKeyed(job string, h *KeyedHandle, start, end int, fn func(kg int, state string, key, value []byte, op uint8) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return err
	}
	if h == nil {
		return nil
	}
	r, err := s.getReader(job)
	if err != nil {
		return err
	}
	defer s.putReader(r)
	for i := range h.KeyGroups {
		ref := &h.KeyGroups[i]
		if ref.KeyGroup < start || ref.KeyGroup >= end {
			continue
		}
		if err := r.readRef(job, h.Checkpoint, h.Scope, ref, fn); err != nil {
			return err
		}
	}
	return nil
}

// Verify checks that every block m references — bases and every delta of
// their chains — exists, passes its checksum, decompresses and decodes,
// is of its kind (full or delta), and that the totals of each base and
// delta match the handles. It also checks the metadata's own consistency.
// Every finding is a corruption error; an I/O error is not.
func (s *Store) Verify(m *Metadata) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if p := m.problems(); len(p) > 0 {
		return corruptf("job %s, checkpoint %d: metadata is inconsistent: %s", m.Job, m.CheckpointID, strings.Join(p, "; "))
	}
	r, err := s.getReader(m.Job)
	if err != nil {
		return err
	}
	defer s.putReader(r)
	for i := range m.Tasks {
		h := m.Tasks[i].Keyed
		if h == nil {
			continue
		}
		for j := range h.KeyGroups {
			if err := r.readRef(m.Job, m.CheckpointID, h.Scope, &h.KeyGroups[j], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxSkipReasons bounds how many skipped checkpoints Recover's error lists.
const maxSkipReasons = 5

// Latest returns the newest completed checkpoint of job whose metadata and
// blocks verify: Recover with Verify, which reads every block. Recovery
// itself calls Recover with a read that restores the blocks as it verifies
// them, so that it reads each block once.
func (s *Store) Latest(job string) (*Metadata, error) {
	return s.Recover(job, s.Verify)
}

// Recover finds the checkpoint of job to recover from: it walks the
// completed checkpoints from the newest down, loads and checks each one's
// metadata (LoadMetadata), and calls read with it; read typically reads
// the blocks the caller restores (ReadKeyed), which verifies each
// block as they read it. Recover returns the first checkpoint whose
// metadata loads and for which read returns nil.
//
// A checkpoint whose metadata, or for which read, fails with a corruption
// error (IsCorruption) is skipped and logged loudly with the reason, and
// the previous one is tried; the caller must drop whatever read restored
// from it. Any other error — an I/O error, which proves nothing about the
// checkpoint, or one of read's own — stops the search and is returned as
// it is. Recover returns (nil, nil) when the job has no completed
// checkpoint at all — unless the record of completed checkpoints names one
// (record.go): then the store lost it, and Recover returns an error
// wrapping ErrLost. When checkpoints exist but none verifies it returns a
// corruption error saying so: the caller must then refuse to start rather
// than start over and lose the job's state.
func (s *Store) Recover(job string, read func(m *Metadata) error) (*Metadata, error) {
	// A store that lost a completed checkpoint is not a store with fewer
	// checkpoints (record.go). The record is read first: it is written
	// only after the metadata it names is durable, so Pebble, listed
	// after it, holds at least what it names (a concurrent commit cannot
	// make a sound store look as if it lost one).
	recorded, hasRecord, err := s.CompletedRecord(job)
	if err != nil {
		return nil, err
	}
	ids, err := s.Completed(job)
	if err != nil {
		return nil, err
	}
	var newest uint64
	if len(ids) > 0 {
		newest = ids[len(ids)-1]
	}
	if hasRecord {
		if err := s.checkRecord(job, recorded, newest); err != nil {
			return nil, err
		}
	}
	var reasons []string
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		m, err := s.LoadMetadata(job, id)
		if err == nil {
			err = read(m)
		}
		if err == nil {
			if len(reasons) > 0 {
				s.opts.Logger("snapshot: WARNING: job %s falls back to checkpoint %d after skipping %d newer corrupt checkpoint(s)",
					job, id, len(reasons))
			}
			return m, nil
		}
		if !IsCorruption(err) {
			return nil, err
		}
		s.opts.Logger("snapshot: WARNING: skipping corrupt checkpoint %d of job %s: %v", id, job, err)
		if len(reasons) < maxSkipReasons {
			reasons = append(reasons, strings.TrimPrefix(err.Error(), "snapshot: "))
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	more := ""
	if len(ids) > len(reasons) {
		more = fmt.Sprintf("; and %d more", len(ids)-len(reasons))
	}
	return nil, corruptf("no checkpoint of job %s verifies (%d completed checkpoints, all corrupt): %s%s",
		job, len(ids), strings.Join(reasons, "; "), more)
}

// BlocksRead returns how many blocks the store has read (and verified:
// checksum, decompression, decoding) since Open, by ReadKeyed, Verify and
// Latest, whether or not they passed. Recovery reads each block of the
// checkpoint it restores once; tests hold it to that.
func (s *Store) BlocksRead() int64 { return s.blocksRead.Load() }

// reader reads and verifies the blocks of key groups. Readers are pooled;
// their buffers survive between calls.
type reader struct {
	iter *pebble.Iterator
	// blocksRead is the store's counter (Store.BlocksRead).
	blocksRead *atomic.Int64
	key        []byte
	scratch    []byte
	// names maps the current block's state ids to interned names.
	names  []string
	intern map[string]string
}

func (s *Store) getReader(job string) (*reader, error) {
	r, _ := s.readers.Get().(*reader)
	if r == nil {
		r = &reader{intern: make(map[string]string)}
	}
	r.blocksRead = &s.blocksRead
	var err error
	r.iter, err = s.newIter(jobPrefix(nil, blockTag, job), jobPrefixEnd(nil, blockTag, job))
	if err != nil {
		s.readers.Put(r)
		return nil, err
	}
	return r, nil
}

// maxInternedNames bounds the reader's cache of state names.
const maxInternedNames = 1 << 12

func (s *Store) putReader(r *reader) {
	_ = r.iter.Close()
	r.iter = nil
	if cap(r.scratch) > 4*s.opts.BlockSizeBytes+zstdSlackBytes {
		r.scratch = nil // do not keep a giant entry's buffer
	}
	if len(r.intern) > maxInternedNames {
		clear(r.intern)
	}
	s.readers.Put(r)
}

// readRef reads every block of ref — its base, then each delta — passing
// the entries to fn (if not nil). ckpt is the checkpoint that references
// ref (0 if unknown), for the errors, which carry every context.
func (r *reader) readRef(job string, ckpt uint64, scope string, ref *KeyGroupRef,
	fn func(kg int, state string, key, value []byte, op uint8) error) error {
	base := part{writer: ref.Writer, blocks: ref.Blocks, raw: ref.RawBytes, stored: ref.StoredBytes, entries: ref.Entries}
	if seq, err := r.readPart(job, scope, ref.KeyGroup, &base, fn); err != nil {
		return r.refError(err, job, ckpt, scope, ref, 0, seq)
	}
	for i := range ref.Deltas {
		d := &ref.Deltas[i]
		p := part{delta: true, writer: d.Writer, blocks: d.Blocks, raw: d.RawBytes, stored: d.StoredBytes,
			entries: d.Entries, deletes: d.Deletes}
		if seq, err := r.readPart(job, scope, ref.KeyGroup, &p, fn); err != nil {
			return r.refError(err, job, ckpt, scope, ref, i+1, seq)
		}
	}
	return nil
}

// part is what a key group's base, or one of its deltas, says of its blocks.
type part struct {
	delta                         bool
	writer                        uint64
	blocks                        int
	raw, stored, entries, deletes int64
}

// readPart reads the blocks of one part of key group kg. On failure it
// returns the block number (-1 when the failure is not about one block)
// with an error that lacks the rest of the context.
func (r *reader) readPart(job, scope string, kg int, p *part,
	fn func(kg int, state string, key, value []byte, op uint8) error) (int, error) {
	if p.blocks == 0 {
		return -1, nil
	}
	var rawBytes, storedBytes, entries, deletes int64
	r.key = blockKey(r.key[:0], job, p.writer, scope, kg, 0)
	valid := r.iter.SeekGE(r.key)
	for seq := 0; seq < p.blocks; seq++ {
		r.key = blockKey(r.key[:0], job, p.writer, scope, kg, seq)
		if !valid || !bytes.Equal(r.iter.Key(), r.key) {
			if err := r.iter.Error(); err != nil {
				return seq, ioErrorf(err, "cannot read block")
			}
			return seq, corruptf("block is missing")
		}
		val, err := r.iter.ValueAndErr()
		if err != nil {
			return seq, ioErrorf(err, "cannot read block")
		}
		r.blocksRead.Add(1)
		bv, err := parseBlock(val)
		if err != nil {
			return seq, err
		}
		if bv.delta != p.delta {
			return seq, corruptf("%s", blockKindMismatch(p.delta))
		}
		var raw []byte
		raw, r.scratch, err = bv.decompress(r.scratch)
		if err != nil {
			return seq, err
		}
		r.loadNames(bv.table)
		n := 0
		for off := 0; off < len(raw); n++ {
			e, k, err := decodeEntryOf(p.delta, raw[off:])
			if err == nil && e.State >= len(r.names) {
				err = corruptf("entry %d names state %d of %d", n, e.State, len(r.names))
			}
			if err != nil {
				return seq, err
			}
			off += k
			if e.Op == OpDelete {
				deletes++
			}
			if fn != nil {
				if err := fn(kg, r.names[e.State], e.Key, e.Value, e.Op); err != nil {
					return seq, callerError{err}
				}
			}
		}
		if n != bv.count {
			return seq, corruptf("block holds %d entries, its header says %d", n, bv.count)
		}
		rawBytes += int64(len(raw))
		storedBytes += int64(len(val))
		entries += int64(n)
		valid = r.iter.Next()
	}
	if rawBytes != p.raw || storedBytes != p.stored || entries != p.entries || deletes != p.deletes {
		what := "blocks hold"
		if p.delta {
			what = "delta blocks hold"
		}
		return -1, corruptf("%s %d entries (%d deletions), %d raw bytes, %d stored bytes; the checkpoint says %d (%d), %d, %d",
			what, entries, deletes, rawBytes, storedBytes, p.entries, p.deletes, p.raw, p.stored)
	}
	return -1, nil
}

// blockKindMismatch describes a block of the wrong kind for its part.
func blockKindMismatch(wantDelta bool) string {
	if wantDelta {
		return "a delta's block is a full block"
	}
	return "a base's block is a delta block"
}

// loadNames decodes a block's state table into r.names, interning the
// names so that a restore allocates per distinct name, not per block.
func (r *reader) loadNames(table []byte) {
	r.names = r.names[:0]
	for len(table) > 0 {
		var name []byte
		name, table = nextStateName(table)
		s, ok := r.intern[string(name)]
		if !ok {
			s = string(name)
			r.intern[s] = s
		}
		r.names = append(r.names, s)
	}
}

// callerError carries an error returned by the caller's callback through
// readRef unchanged.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

// refError adds the context of a key group — its base (delta 0) or delta
// number delta of its chain, and the block, if seq >= 0 — to an error of
// readPart.
func (r *reader) refError(err error, job string, ckpt uint64, scope string, ref *KeyGroupRef, delta, seq int) error {
	if ce, ok := err.(callerError); ok {
		return ce.err
	}
	return withContext(err, refContext(job, ckpt, scope, ref, delta, seq))
}

// refContext names a block (seq >= 0) or a part of a key group in an
// error: "job J, checkpoint C, scope S, key group K[, delta D of N][,
// block B] (written by checkpoint W)".
func refContext(job string, ckpt uint64, scope string, ref *KeyGroupRef, delta, seq int) string {
	ckptText := "checkpoint ?"
	if ckpt != 0 {
		ckptText = fmt.Sprintf("checkpoint %d", ckpt)
	}
	writer := ref.Writer
	deltaText := ""
	if delta > 0 {
		writer = ref.Deltas[delta-1].Writer
		deltaText = fmt.Sprintf(", delta %d of %d", delta, len(ref.Deltas))
	}
	blockText := ""
	if seq >= 0 {
		blockText = fmt.Sprintf(", block %d", seq)
	}
	return fmt.Sprintf("job %s, %s, scope %q, key group %d%s%s (written by checkpoint %d)",
		job, ckptText, scope, ref.KeyGroup, deltaText, blockText, writer)
}
