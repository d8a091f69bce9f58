package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Retain keeps the newest keep completed checkpoints of job and deletes
// the metadata of older ones, then deletes every block that no retained
// checkpoint references — a reference is to a key group's base or to any
// delta of its chain, so a retained checkpoint keeps every block its
// chains need, however old: blocks of deleted checkpoints, and blocks of
// checkpoints that never completed and are older than the newest completed
// one. It never deletes a block a retained checkpoint references (an
// incremental checkpoint references blocks of older ones), nor blocks of
// checkpoints newer than the newest completed one (they may be in flight),
// nor blocks an in-flight WriteKeyed may reuse.
//
// A held checkpoint (Hold, ExportSavepoint) is kept whatever its age, with
// every block it references, until its holds are released; it does not
// count towards keep.
//
// Checkpoints whose metadata does not decode do not count towards keep; if
// one lies among the retained, Retain deletes no blocks at all (it cannot
// know what that checkpoint references — it may come from a newer streamd)
// and logs why. Deletions are not synced: if they are lost in a crash, the
// next Retain does them again.
func (s *Store) Retain(job string, keep int) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return err
	}
	if keep < 1 {
		return invalidf("cannot retain %d checkpoints of job %s: keep must be at least 1", keep, job)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	ids, err := s.Completed(job)
	if err != nil || len(ids) == 0 {
		return err
	}
	newest := ids[len(ids)-1]
	s.prunePinsLocked(job, newest)

	// Walk from the newest down until keep checkpoints decoded.
	var retained []*Metadata
	cutoff := ids[0] // metadata below cutoff is deleted
	undecodable := false
	for i := len(ids) - 1; i >= 0 && len(retained) < keep; i-- {
		m, err := s.LoadMetadata(job, ids[i])
		if err != nil {
			if !IsCorruption(err) {
				return err
			}
			s.opts.Logger("snapshot: WARNING: retention of job %s keeps checkpoint %d, whose metadata does not decode, "+
				"and deletes no blocks: %v", job, ids[i], err)
			undecodable = true
			continue
		}
		retained = append(retained, m)
		cutoff = ids[i]
	}

	b := s.db.NewBatch()
	defer func() {
		if b != nil {
			_ = b.Close()
		}
	}()
	// Held checkpoints below the cutoff keep their metadata and blocks.
	lo := uint64(0)
	for _, h := range s.heldLocked(job) {
		if h >= cutoff || !slices.Contains(ids, h) {
			continue
		}
		m, err := s.LoadMetadata(job, h)
		if err != nil {
			if !IsCorruption(err) {
				return err
			}
			s.opts.Logger("snapshot: WARNING: retention of job %s keeps held checkpoint %d, whose metadata does not decode, "+
				"and deletes no blocks: %v", job, h, err)
			undecodable = true
		} else {
			retained = append(retained, m)
		}
		if h > lo {
			if err := b.DeleteRange(metaKey(nil, job, lo), metaKey(nil, job, h), nil); err != nil {
				return ioErrorf(err, "cannot delete old checkpoints of job %s", job)
			}
		}
		lo = h + 1
	}
	if cutoff > ids[0] && cutoff > lo {
		if err := b.DeleteRange(metaKey(nil, job, lo), metaKey(nil, job, cutoff), nil); err != nil {
			return ioErrorf(err, "cannot delete old checkpoints of job %s", job)
		}
	}
	if !undecodable {
		if err := s.deleteUnreferencedLocked(b, job, newest, retained); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	err, abandoned := s.callPebble(func() error {
		if err := b.Commit(pebble.NoSync); err != nil {
			return ioErrorf(err, "cannot delete old checkpoints of job %s", job)
		}
		return nil
	})
	if abandoned {
		b = nil // still in Pebble's hands: the deferred Close must not touch it
	}
	if err != nil {
		// The runs it meant to delete are forgotten: scan next time.
		s.knownLocked(job).scanned = false
	}
	return err
}

// knownBlocks is what a Store knows of the blocks of one job that exist:
// after its first Retain of the job, which scans the store (the blocks of
// earlier processes), every key group block run (writer, scope, key group)
// that a retained checkpoint referenced or that WriteKeyed wrote since.
// Later Retains delete the runs of these that nothing references any more
// without reading the store: a scan seeks (and so reads a block value) per
// writer and per gap, which with delta chains referencing many writers
// measured 18 % of the CPU of a job checkpointing 10 M keys every 100 ms,
// on the driver's goroutine.
type knownBlocks struct {
	scanned  bool
	prefixes map[string]struct{} // kgPrefix keys
}

func (s *Store) knownLocked(job string) *knownBlocks {
	k := s.mu.known[job]
	if k == nil {
		k = &knownBlocks{prefixes: make(map[string]struct{})}
		s.mu.known[job] = k
	}
	return k
}

// deleteUnreferencedLocked adds to b the range deletions of every block of
// a writer up to newest that neither a retained checkpoint nor an in-flight
// checkpoint's pin references: by scanning the store the first time for a
// job, by the blocks it knows of afterwards (knownBlocks).
func (s *Store) deleteUnreferencedLocked(b *pebble.Batch, job string, newest uint64, retained []*Metadata) error {
	// live[writer] = the kgPrefix of every referenced (scope, key group):
	// the bases and every delta of the chains.
	live := make(map[uint64][][]byte)
	addHandle := func(h *KeyedHandle) {
		for i := range h.KeyGroups {
			r := &h.KeyGroups[i]
			if r.Blocks > 0 {
				live[r.Writer] = append(live[r.Writer], kgPrefix(nil, job, r.Writer, h.Scope, r.KeyGroup))
			}
			for _, d := range r.Deltas {
				if d.Blocks > 0 {
					live[d.Writer] = append(live[d.Writer], kgPrefix(nil, job, d.Writer, h.Scope, r.KeyGroup))
				}
			}
		}
	}
	for _, m := range retained {
		for i := range m.Tasks {
			if h := m.Tasks[i].Keyed; h != nil {
				addHandle(h)
			}
		}
	}
	for ckpt, handles := range s.mu.pins[job] {
		if ckpt > newest {
			for _, h := range handles {
				addHandle(h)
			}
		}
	}
	k := s.knownLocked(job)
	if k.scanned {
		return s.deleteKnownLocked(b, job, newest, live, k)
	}
	if err := s.deleteScannedLocked(b, job, newest, live); err != nil {
		return err
	}
	k.scanned = true
	for _, ps := range live {
		for _, p := range ps {
			if len(p) > 0 { // the scan compacted ps in place, leaving nils
				k.prefixes[string(p)] = struct{}{}
			}
		}
	}
	return nil
}

// deleteKnownLocked deletes the known block runs of writers up to newest
// that live does not reference, merging adjacent key groups of a writer
// and scope into one range.
func (s *Store) deleteKnownLocked(b *pebble.Batch, job string, newest uint64, live map[uint64][][]byte, k *knownBlocks) error {
	isLive := make(map[string]struct{})
	for _, ps := range live {
		for _, p := range ps {
			isLive[string(p)] = struct{}{}
		}
	}
	if invariantsEnabled {
		for p := range k.prefixes {
			if len(p) < len(jobPrefix(nil, blockTag, job))+8 {
				panic(fmt.Sprintf("snapshot: invariant violated: a known block prefix %q of job %s is too short", p, job))
			}
		}
	}
	writerAt := len(jobPrefix(nil, blockTag, job))
	var dead []string
	for p := range k.prefixes {
		if binary.BigEndian.Uint64([]byte(p[writerAt:])) > newest {
			continue // in flight
		}
		if _, ok := isLive[p]; !ok {
			dead = append(dead, p)
		}
	}
	slices.Sort(dead)
	for i := 0; i < len(dead); {
		// A run of key groups kg, kg+1, … of one writer and scope is one
		// range: the prefixes differ only in the last 4 bytes.
		j := i + 1
		for j < len(dead) && sameRunNext(dead[j-1], dead[j]) {
			j++
		}
		end := prefixSuccessor([]byte(dead[j-1]))
		if err := b.DeleteRange([]byte(dead[i]), end, nil); err != nil {
			return ioErrorf(err, "cannot delete unreferenced blocks of job %s", job)
		}
		for _, p := range dead[i:j] {
			delete(k.prefixes, p)
		}
		i = j
	}
	return nil
}

// sameRunNext reports whether key group prefix b is the one after a (the
// same writer and scope, the next key group).
func sameRunNext(a, b string) bool {
	n := len(a)
	if len(b) != n || n < 4 || a[:n-4] != b[:n-4] {
		return false
	}
	return binary.BigEndian.Uint32([]byte(a[n-4:]))+1 == binary.BigEndian.Uint32([]byte(b[n-4:]))
}

// deleteScannedLocked deletes what live does not reference by scanning the
// job's blocks: every writer up to newest, the gaps between its live key
// groups (only the non-empty ones).
func (s *Store) deleteScannedLocked(b *pebble.Batch, job string, newest uint64, live map[uint64][][]byte) error {
	prefix := jobPrefix(nil, blockTag, job)
	it, err := s.newIter(prefix, writerPrefixEnd(nil, job, newest))
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; {
		key := it.Key()
		if len(key) < len(prefix)+8 {
			return corruptf("job %s: block key %q does not follow the key layout", job, key)
		}
		w := binary.BigEndian.Uint64(key[len(prefix):])
		if err := s.deleteWriterGapsLocked(b, it, job, w, live[w]); err != nil {
			return err
		}
		valid = it.SeekGE(writerPrefixEnd(nil, job, w))
	}
	if err := it.Error(); err != nil {
		return ioErrorf(err, "cannot list the blocks of job %s", job)
	}
	return nil
}

// deleteWriterGapsLocked deletes every block of writer w outside the live
// key group prefixes: the whole writer when none is live, else each
// non-empty gap between them.
func (s *Store) deleteWriterGapsLocked(b *pebble.Batch, it *pebble.Iterator, job string, w uint64, live [][]byte) error {
	lo, hi := writerPrefix(nil, job, w), writerPrefixEnd(nil, job, w)
	if len(live) == 0 {
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return ioErrorf(err, "cannot delete the blocks of checkpoint %d of job %s", w, job)
		}
		return nil
	}
	slices.SortFunc(live, bytes.Compare)
	live = slices.CompactFunc(live, bytes.Equal)
	cursor := lo
	deleteGap := func(start, end []byte) error {
		if bytes.Compare(start, end) >= 0 {
			return nil
		}
		// Only non-empty gaps: repeated Retains must not pile up range
		// tombstones over key groups that are long gone.
		if !it.SeekGE(start) || bytes.Compare(it.Key(), end) >= 0 {
			if err := it.Error(); err != nil {
				return ioErrorf(err, "cannot list the blocks of checkpoint %d of job %s", w, job)
			}
			return nil
		}
		if err := b.DeleteRange(start, end, nil); err != nil {
			return ioErrorf(err, "cannot delete unreferenced blocks of checkpoint %d of job %s", w, job)
		}
		return nil
	}
	for _, p := range live {
		if err := deleteGap(cursor, p); err != nil {
			return err
		}
		cursor = prefixSuccessor(slices.Clone(p))
	}
	return deleteGap(cursor, hi)
}

// DiscardIncomplete deletes the blocks of job's checkpoints newer than its
// newest completed one (all of its blocks if none completed): the strays of
// a run that crashed while writing a checkpoint. Call it at startup, after
// MaxCheckpointID and before the first WriteKeyed; it must not run while
// checkpoints are being written.
func (s *Store) DiscardIncomplete(job string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := checkJobName(job); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	newest, _, err := s.newestCompleted(job)
	if err != nil {
		return err
	}
	delete(s.mu.pins, job)
	delete(s.mu.known, job) // the next Retain scans
	err, _ = s.callPebble(func() error {
		if err := s.db.DeleteRange(writerPrefix(nil, job, newest+1), jobPrefixEnd(nil, blockTag, job), pebble.NoSync); err != nil {
			return ioErrorf(err, "cannot discard incomplete checkpoints of job %s", job)
		}
		return nil
	})
	return err
}
