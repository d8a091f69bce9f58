package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// storagePaths are the ways WriteKeyed hands blocks to Pebble: a batch
// (small snapshots), an ingested sstable (large ones), and a call that
// starts as a batch and switches.
var storagePaths = []struct {
	name      string
	threshold int
}{{"batch", 1 << 40}, {"ingest", 0}, {"switch", 3 * MinBlockSizeBytes}}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		for _, path := range storagePaths {
			t.Run(c.String()+"/"+path.name, func(t *testing.T) { testRoundTrip(t, c, path.threshold) })
		}
	}
}

func testRoundTrip(t *testing.T, c Compression, ingestThreshold int) {
	s, _ := openStore(t, Options{Compression: c, BlockSizeBytes: MinBlockSizeBytes})
	s.ingestThresholdBytes = ingestThreshold
	v := newMemView("count", "sum", "window-contents")
	v.counters(0, 6, 1000) // 19-byte entries: ~5 blocks per key group
	// Key groups 6 and 7 stay empty; 8 holds big values.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, compressible
	v.put(8, 2, []byte("small"), []byte("x"))
	v.put(8, 2, []byte("big"), big)
	v.put(8, 1, []byte("after-big"), []byte("y"))
	random := make([]byte, 3*MinBlockSizeBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	v.put(9, 0, []byte("incompressible"), random)

	h := mustWrite(t, s, "counts", 1, "counter", 0, 10, v, nil)
	if h.Scope != "counter" || h.Checkpoint != 1 || len(h.KeyGroups) != 10 {
		t.Fatalf("handle = scope %q checkpoint %d with %d key groups", h.Scope, h.Checkpoint, len(h.KeyGroups))
	}
	var raw, stored int64
	for i, r := range h.KeyGroups {
		if r.KeyGroup != i || r.Writer != 1 || r.Version != v.versions[i] {
			t.Errorf("ref %d = %+v", i, r)
		}
		if r.Entries != int64(len(v.groups[i])) {
			t.Errorf("key group %d: %d entries, want %d", i, r.Entries, len(v.groups[i]))
		}
		raw += r.RawBytes
		stored += r.StoredBytes
	}
	if h.RawBytes != raw || h.StoredBytes != stored || h.ReusedBytes != 0 {
		t.Errorf("handle totals %d/%d/%d, refs add up to %d/%d", h.RawBytes, h.StoredBytes, h.ReusedBytes, raw, stored)
	}
	if b := h.KeyGroups[0].Blocks; b < 3 {
		t.Errorf("key group 0 has %d blocks, want several", b)
	}
	for _, kg := range []int{6, 7} {
		if r := h.KeyGroups[kg]; r.Blocks != 0 || r.Entries != 0 {
			t.Errorf("empty key group %d: %+v", kg, r)
		}
	}
	if r := h.KeyGroups[8]; r.Blocks != 3 {
		t.Errorf("key group 8 (small, 1 MiB, small) has %d blocks, want 3", r.Blocks)
	}
	if c != CompressionNone && h.KeyGroups[0].StoredBytes >= h.KeyGroups[0].RawBytes {
		t.Errorf("compression %s did not compress counters: %d stored of %d raw", c, h.KeyGroups[0].StoredBytes, h.KeyGroups[0].RawBytes)
	}
	if r := h.KeyGroups[9]; r.StoredBytes > r.RawBytes+32 {
		t.Errorf("incompressible key group stored in %d bytes for %d raw: the raw fallback did not apply", r.StoredBytes, r.RawBytes)
	}
	m := commit(t, s, "counts", 1, h)
	if m.FormatVersion != MetadataFormatVersion {
		t.Errorf("FormatVersion = %d", m.FormatVersion)
	}
	if got, want := readAll(t, s, "counts", h, 0, 10), v.want(0, 10); got != want {
		t.Fatalf("ReadKeyed returned %d bytes of text, want %d", len(got), len(want))
	}
	// A rescaled task reads only its own key groups.
	if got, want := readAll(t, s, "counts", h, 3, 7), v.want(3, 7); got != want {
		t.Errorf("ReadKeyed [3,7) differs")
	}
	if got := readAll(t, s, "counts", h, 20, 30); got != "" {
		t.Errorf("ReadKeyed outside the handle returned %q", got)
	}
	if err := s.Verify(m); err != nil {
		t.Errorf("Verify: %v", err)
	}
	loaded, err := s.LoadMetadata("counts", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !metadataEqual(loaded, m) {
		t.Errorf("LoadMetadata = %+v, want %+v", loaded, m)
	}
	latest, err := s.Latest("counts")
	if err != nil || latest == nil || latest.CheckpointID != 1 {
		t.Fatalf("Latest = %v, %v", latest, err)
	}
	if names, _ := os.ReadDir(filepath.Join(s.dir, ingestDirName)); len(names) != 0 {
		t.Errorf("ingest dir holds %d files after WriteKeyed", len(names))
	}
}

func metadataEqual(a, b *Metadata) bool {
	return bytes.Equal(EncodeMetadata(nil, a), EncodeMetadata(nil, b)) && a.FormatVersion == b.FormatVersion
}

func TestReadKeyedCallbackError(t *testing.T) {
	s, _ := openStore(t, Options{})
	v := newMemView("a")
	v.counters(0, 2, 10)
	h := mustWrite(t, s, "j", 1, "sc", 0, 2, v, nil)
	stop := errors.New("stop here")
	n := 0
	err := s.ReadKeyed("j", h, 0, 2, func(int, string, []byte, []byte, uint8) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("ReadKeyed = %v after %d entries, want the callback's error after 3", err, n)
	}
	if err := s.ReadKeyed("j", nil, 0, 2, nil); err != nil {
		t.Fatalf("ReadKeyed(nil handle) = %v", err)
	}
}

func TestIncrementalReuse(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	s.ingestThresholdBytes = 0 // large-state path: every call ingests
	v := newMemView("count")
	v.counters(0, 8, 500)
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 8, v, nil)
	commit(t, s, "job", 1, h1)
	before := blockWriters(t, s, "job")

	// Nothing changed: no new blocks at all.
	h2 := mustWrite(t, s, "job", 2, "agg", 0, 8, v, h1)
	if h2.RawBytes != 0 || h2.StoredBytes != 0 || h2.ReusedBytes != h1.StoredBytes {
		t.Fatalf("unchanged checkpoint wrote %d raw / %d stored bytes, reused %d (want 0/0/%d)",
			h2.RawBytes, h2.StoredBytes, h2.ReusedBytes, h1.StoredBytes)
	}
	if after := blockWriters(t, s, "job"); after[2] != 0 || after[1] != before[1] {
		t.Fatalf("blocks by writer after an unchanged checkpoint: %v (before %v)", after, before)
	}
	commit(t, s, "job", 2, h2)

	// Change key groups 2 and 5: only they are written again.
	v.put(2, 0, []byte("new-key"), []byte("v"))
	v.put(5, 0, []byte("other"), []byte("w"))
	h3 := mustWrite(t, s, "job", 3, "agg", 0, 8, v, h2)
	for _, r := range h3.KeyGroups {
		wantWriter := uint64(1)
		if r.KeyGroup == 2 || r.KeyGroup == 5 {
			wantWriter = 3
		}
		if r.Writer != wantWriter {
			t.Errorf("key group %d written by %d, want %d", r.KeyGroup, r.Writer, wantWriter)
		}
	}
	if h3.StoredBytes != h3.KeyGroups[2].StoredBytes+h3.KeyGroups[5].StoredBytes {
		t.Errorf("checkpoint 3 stored %d bytes, want only key groups 2 and 5", h3.StoredBytes)
	}
	if h3.ReusedBytes+h3.StoredBytes < h1.StoredBytes {
		t.Errorf("reused %d + stored %d < full %d", h3.ReusedBytes, h3.StoredBytes, h1.StoredBytes)
	}
	m3 := commit(t, s, "job", 3, h3)
	if got, want := readAll(t, s, "job", h3, 0, 8), v.want(0, 8); got != want {
		t.Fatal("incremental checkpoint reads back different entries")
	}
	if err := s.Verify(m3); err != nil {
		t.Fatal(err)
	}

	// A prev handle listed out of order still works.
	shuffled := *h3
	shuffled.KeyGroups = slices.Clone(h3.KeyGroups)
	slices.Reverse(shuffled.KeyGroups)
	h4 := mustWrite(t, s, "job", 4, "agg", 0, 8, v, &shuffled)
	if h4.StoredBytes != 0 || h4.ReusedBytes != h3.StoredBytes+h3.ReusedBytes {
		t.Errorf("reuse through an unsorted handle: stored %d, reused %d", h4.StoredBytes, h4.ReusedBytes)
	}
}

func TestRetention(t *testing.T) {
	for _, path := range storagePaths {
		t.Run(path.name, func(t *testing.T) { testRetention(t, path.threshold) })
	}
}

func testRetention(t *testing.T, ingestThreshold int) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	s.ingestThresholdBytes = ingestThreshold
	v := newMemView("count")
	v.counters(0, 4, 400)
	h := mustWrite(t, s, "job", 1, "agg", 0, 4, v, nil)
	commit(t, s, "job", 1, h)
	// Checkpoint 2 fails (never committed); checkpoint 3 changes key group 1.
	v.put(3, 0, []byte("k"), []byte("v"))
	mustWrite(t, s, "job", 2, "agg", 0, 4, v, h)
	v.put(1, 0, []byte("k"), []byte("v"))
	h3 := mustWrite(t, s, "job", 3, "agg", 0, 4, v, h)
	commit(t, s, "job", 3, h3)
	// Checkpoint 4 is in flight.
	v.put(0, 0, []byte("k"), []byte("v"))
	h4 := mustWrite(t, s, "job", 4, "agg", 0, 4, v, h3)

	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Completed("job")
	if err != nil || !slices.Equal(ids, []uint64{3}) {
		t.Fatalf("Completed = %v, %v; want [3]", ids, err)
	}
	writers := blockWriters(t, s, "job")
	if writers[2] != 0 {
		t.Errorf("blocks of failed checkpoint 2 survived retention: %v", writers)
	}
	if writers[4] == 0 {
		t.Errorf("blocks of in-flight checkpoint 4 were deleted: %v", writers)
	}
	// Checkpoint 3 rewrote key groups 1 and 3 and reuses 0 and 2 of writer
	// 1: writer 1 must keep exactly those.
	prefix := jobPrefix(nil, blockTag, "job")
	kgs1 := map[int]bool{}
	for _, kv := range allKeys(t, s, string(prefix)) {
		k, _ := parseBlockKey(kv.key, len(prefix))
		if k.writer == 1 {
			kgs1[k.kg] = true
		}
	}
	if len(kgs1) != 2 || !kgs1[0] || !kgs1[2] {
		t.Errorf("writer 1 keeps key groups %v, want 0 and 2", kgs1)
	}
	m3, err := s.Latest("job")
	if err != nil || m3 == nil || m3.CheckpointID != 3 {
		t.Fatalf("Latest = %v, %v", m3, err)
	}
	if got, want := readAll(t, s, "job", m3.Tasks[0].Keyed, 0, 4), v.want(0, 4); got == want {
		t.Fatal("test is broken: checkpoint 3 should predate the last change")
	}
	commit(t, s, "job", 4, h4)
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	// Checkpoint 4 rewrote key group 0; writer 1 keeps 2, writer 3 keeps 1 and 3.
	writers = blockWriters(t, s, "job")
	if writers[1] == 0 || writers[3] == 0 || writers[4] == 0 {
		t.Errorf("referenced blocks deleted: %v", writers)
	}
	m4, err := s.Latest("job")
	if err != nil || m4.CheckpointID != 4 {
		t.Fatalf("Latest = %v, %v", m4, err)
	}
	if got, want := readAll(t, s, "job", m4.Tasks[0].Keyed, 0, 4), v.want(0, 4); got != want {
		t.Fatal("checkpoint 4 reads back different entries after retention")
	}
	// A second Retain changes nothing.
	before := allKeys(t, s, "")
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	if after := allKeys(t, s, ""); len(after) != len(before) {
		t.Errorf("a repeated Retain went from %d to %d keys", len(before), len(after))
	}
	if err := s.Retain("job", 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Retain(keep 0) = %v", err)
	}
}

func TestRetentionKeepsSeveral(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	v := newMemView("count")
	var prev *KeyedHandle
	for id := uint64(1); id <= 6; id++ {
		v.counters(int(id%4), int(id%4)+1, 50) // change one key group each time
		prev = mustWrite(t, s, "job", id, "agg", 0, 4, v, prev)
		commit(t, s, "job", id, prev)
		if err := s.Retain("job", 3); err != nil {
			t.Fatal(err)
		}
	}
	ids, _ := s.Completed("job")
	if !slices.Equal(ids, []uint64{4, 5, 6}) {
		t.Fatalf("Completed = %v", ids)
	}
	for _, id := range ids {
		m, err := s.LoadMetadata("job", id)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(m); err != nil {
			t.Errorf("retained checkpoint %d does not verify: %v", id, err)
		}
	}
	if _, err := s.LoadMetadata("job", 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadMetadata(deleted) = %v, want ErrNotFound", err)
	}
}

// TestRetentionWithConcurrentCheckpoints: checkpoint 3 is written with prev
// = checkpoint 1 while checkpoint 2 completes and retention keeps only 2.
func TestRetentionWithConcurrentCheckpoints(t *testing.T) {
	s, logs := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	v := newMemView("count")
	v.counters(0, 4, 100)
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 4, v, nil)
	commit(t, s, "job", 1, h1)

	// Checkpoint 2 rewrites everything (e.g. its task restarted).
	h2 := mustWrite(t, s, "job", 2, "agg", 0, 4, v, nil)
	// Checkpoint 3 starts before 2 completes and reuses 1's blocks.
	h3 := mustWrite(t, s, "job", 3, "agg", 0, 4, v, h1)
	commit(t, s, "job", 2, h2)
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	if blockWriters(t, s, "job")[1] == 0 {
		t.Fatal("retention deleted blocks that in-flight checkpoint 3 reuses")
	}
	m3 := commit(t, s, "job", 3, h3)
	if err := s.Verify(m3); err != nil {
		t.Fatal(err)
	}
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(m3); err != nil {
		t.Fatalf("after retention: %v", err)
	}
	if blockWriters(t, s, "job")[2] != 0 {
		t.Error("blocks of checkpoint 2 survive although nothing references them")
	}

	// A checkpoint that starts with a prev whose checkpoint was already
	// deleted writes everything instead of reusing.
	h4 := mustWrite(t, s, "job", 4, "agg", 0, 4, v, h2)
	if h4.ReusedBytes != 0 || h4.StoredBytes == 0 {
		t.Errorf("checkpoint 4 reused %d bytes of a deleted checkpoint", h4.ReusedBytes)
	}
	if !strings.Contains(logs.String(), "no longer exists") {
		t.Errorf("log does not say why nothing was reused: %q", logs.String())
	}
	// An old checkpoint can no longer commit.
	if err := s.CommitCheckpoint(&Metadata{Job: "job", CheckpointID: 2}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("committing an old id = %v, want ErrInvalidArgument", err)
	}
}

func TestMaxCheckpointIDAndDiscardIncomplete(t *testing.T) {
	s, _ := openStore(t, Options{})
	if id, err := s.MaxCheckpointID("job"); id != 0 || err != nil {
		t.Fatalf("MaxCheckpointID(empty) = %d, %v", id, err)
	}
	v := newMemView("count")
	v.counters(0, 2, 10)
	// No completed checkpoint yet, but blocks of checkpoint 3 exist.
	mustWrite(t, s, "job", 3, "agg", 0, 2, v, nil)
	if id, _ := s.MaxCheckpointID("job"); id != 3 {
		t.Fatalf("MaxCheckpointID = %d, want 3", id)
	}
	if err := s.DiscardIncomplete("job"); err != nil {
		t.Fatal(err)
	}
	if w := blockWriters(t, s, "job"); len(w) != 0 {
		t.Fatalf("DiscardIncomplete left %v", w)
	}
	h5 := mustWrite(t, s, "job", 5, "agg", 0, 2, v, nil)
	commit(t, s, "job", 5, h5)
	mustWrite(t, s, "job", 7, "agg", 0, 2, v, nil)
	mustWrite(t, s, "job", 9, "other-scope", 0, 2, v, nil)
	// Another job's keys do not count.
	mustWrite(t, s, "job2", 100, "agg", 0, 2, v, nil)
	if id, _ := s.MaxCheckpointID("job"); id != 9 {
		t.Fatalf("MaxCheckpointID = %d, want 9", id)
	}
	if err := s.DiscardIncomplete("job"); err != nil {
		t.Fatal(err)
	}
	if w := blockWriters(t, s, "job"); len(w) != 1 || w[5] == 0 {
		t.Fatalf("after DiscardIncomplete: %v, want only writer 5", w)
	}
	if id, _ := s.MaxCheckpointID("job"); id != 5 {
		t.Fatalf("MaxCheckpointID = %d, want 5", id)
	}
	if w := blockWriters(t, s, "job2"); w[100] == 0 {
		t.Fatal("DiscardIncomplete of job deleted blocks of job2")
	}
	jobs, err := s.Jobs()
	if err != nil || !slices.Equal(jobs, []string{"job", "job2"}) {
		t.Fatalf("Jobs = %v, %v", jobs, err)
	}
	if m, err := s.Latest("job2"); m != nil || err != nil {
		t.Fatalf("Latest of a job without a completed checkpoint = %v, %v", m, err)
	}
	// An ingested checkpoint inside the range DiscardIncomplete just deleted
	// is visible (its sequence numbers are newer than the tombstone's).
	s.ingestThresholdBytes = 0
	h10 := mustWrite(t, s, "job", 10, "agg", 0, 2, v, nil)
	m10 := commit(t, s, "job", 10, h10)
	if err := s.Verify(m10); err != nil {
		t.Fatal(err)
	}
}

func TestJobNamesDoNotCollide(t *testing.T) {
	s, _ := openStore(t, Options{})
	v := newMemView("count")
	v.counters(0, 1, 3)
	for i, job := range []string{"a", "a-b", "ab", "a0"} {
		h := mustWrite(t, s, job, uint64(i+1), "x", 0, 1, v, nil)
		commit(t, s, job, uint64(i+1), h)
	}
	for i, job := range []string{"a", "a-b", "ab", "a0"} {
		ids, _ := s.Completed(job)
		if !slices.Equal(ids, []uint64{uint64(i + 1)}) {
			t.Errorf("Completed(%s) = %v", job, ids)
		}
		if id, _ := s.MaxCheckpointID(job); id != uint64(i+1) {
			t.Errorf("MaxCheckpointID(%s) = %d", job, id)
		}
	}
	if err := s.Retain("a", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DiscardIncomplete("a"); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"a-b", "ab", "a0"} {
		if m, err := s.Latest(job); err != nil || m == nil {
			t.Errorf("Latest(%s) = %v, %v after retention of job a", job, m, err)
		}
	}
	for _, bad := range []string{"", "A", "a b", "a/b", "a\x00", strings.Repeat("a", MaxJobNameBytes+1)} {
		if _, err := s.WriteKeyed(bad, 1, "x", 0, 1, v, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("WriteKeyed(job %q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestScopesWithOddBytes(t *testing.T) {
	s, _ := openStore(t, Options{})
	v := newMemView("s")
	v.counters(0, 3, 5)
	scopes := []string{"", "a", "a\x00", "a\xff\xff", "vertex/with spaces", "b"}
	var handles []*KeyedHandle
	for _, sc := range scopes {
		handles = append(handles, mustWrite(t, s, "job", 1, sc, 0, 3, v, nil))
	}
	m := commit(t, s, "job", 1, handles...)
	if err := s.Verify(m); err != nil {
		t.Fatal(err)
	}
	for _, h := range handles {
		if got := readAll(t, s, "job", h, 0, 3); got != v.want(0, 3) {
			t.Errorf("scope %q reads back wrong entries", h.Scope)
		}
	}
	if _, err := s.WriteKeyed("job", 2, strings.Repeat("x", MaxScopeBytes+1), 0, 1, v, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("long scope: %v", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s, _ := openStore(t, Options{Compression: CompressionS2, BlockSizeBytes: MinBlockSizeBytes})
	v := newMemView("a", "b")
	v.counters(0, 32, 200)
	const tasks = 4
	handles := make([]*KeyedHandle, 2*tasks)
	var wg sync.WaitGroup
	for i := 0; i < tasks; i++ {
		for j, scope := range []string{"left", "right"} {
			wg.Go(func() {
				h, err := s.WriteKeyed("job", 1, scope, i*8, i*8+8, v, nil)
				if err != nil {
					t.Error(err)
				}
				handles[j*tasks+i] = h
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	m := commit(t, s, "job", 1, handles...)
	if err := s.Verify(m); err != nil {
		t.Fatal(err)
	}
	for i, h := range handles {
		start := (i % tasks) * 8
		if got := readAll(t, s, "job", h, 0, 32); got != v.want(start, start+8) {
			t.Errorf("task %d of scope %s reads back wrong entries", i%tasks, h.Scope)
		}
	}
}

func TestWriteKeyedErrors(t *testing.T) {
	s, _ := openStore(t, Options{BlockSizeBytes: MinBlockSizeBytes})
	v := newMemView("a")
	v.counters(0, 4, 1000)
	viewErr := errors.New("view broke")
	v.err, v.errKG = viewErr, 2
	_, err := s.WriteKeyed("job", 1, "sc", 0, 4, v, nil)
	if !errors.Is(err, viewErr) || !strings.Contains(err.Error(), "key group 2") || !strings.HasPrefix(err.Error(), "snapshot: ") {
		t.Fatalf("WriteKeyed with a failing view = %v", err)
	}
	if w := blockWriters(t, s, "job"); len(w) != 0 {
		t.Errorf("a failed WriteKeyed left blocks: %v", w)
	}
	v.errKG = -1
	huge := newMemView("a")
	huge.put(0, 0, []byte("k"), make([]byte, MaxBlockRawBytes))
	if _, err := s.WriteKeyed("job", 1, "sc", 0, 1, huge, nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized entry: %v", err)
	}
	for _, tc := range []struct {
		ckpt       uint64
		start, end int
	}{{0, 0, 1}, {1, -1, 1}, {1, 3, 2}, {1 << 63, 0, 1}} {
		if _, err := s.WriteKeyed("job", tc.ckpt, "sc", tc.start, tc.end, v, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("WriteKeyed(ckpt %d, [%d,%d)) = %v", tc.ckpt, tc.start, tc.end, err)
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invariant") {
				t.Errorf("a handle of another scope as prev: recover() = %v, want an invariant panic", r)
			}
		}()
		_, _ = s.WriteKeyed("job", 2, "sc", 0, 1, v, &KeyedHandle{Scope: "other"})
	}()
}

func TestCommitCheckpointValidation(t *testing.T) {
	s, _ := openStore(t, Options{})
	bad := []*Metadata{
		{Job: "", CheckpointID: 1},
		{Job: "j", CheckpointID: 0},
		{Job: "j", CheckpointID: 1, Tasks: []TaskMeta{{Vertex: "v", Index: 2, Parallelism: 2}}},
		{Job: "j", CheckpointID: 1, Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, Keyed: &KeyedHandle{
			KeyGroups: []KeyGroupRef{{KeyGroup: 1, Blocks: 1, Writer: 2}}}}}},
		{Job: "j", CheckpointID: 1, MaxParallelism: 4, Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, Keyed: &KeyedHandle{
			KeyGroups: []KeyGroupRef{{KeyGroup: 5}}}}}},
		{Job: "j", CheckpointID: 1, Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, Keyed: &KeyedHandle{
			KeyGroups: []KeyGroupRef{{KeyGroup: 3}, {KeyGroup: 2}}}}}},
	}
	for i, m := range bad {
		if err := s.CommitCheckpoint(m); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("case %d: CommitCheckpoint = %v, want ErrInvalidArgument", i, err)
		}
	}
	if ids, _ := s.Completed("j"); len(ids) != 0 {
		t.Fatalf("invalid metadata was committed: %v", ids)
	}
	// A job without keyed state.
	m := &Metadata{Job: "j", CheckpointID: 7, Finished: true, Tasks: []TaskMeta{{Vertex: "src", Parallelism: 1, Source: []byte{1, 2}}}}
	if err := s.CommitCheckpoint(m); err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest("j")
	if err != nil || !metadataEqual(got, m) || !got.Finished {
		t.Fatalf("Latest = %+v, %v", got, err)
	}
	if _, err := s.LoadMetadata("j", 6); !errors.Is(err, ErrNotFound) || IsCorruption(err) {
		t.Errorf("LoadMetadata(missing) = %v", err)
	}
}

func TestOptions(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.BlockSizeBytes != DefaultBlockSizeBytes || o.Compression != CompressionZstd || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Options{Compression: 7, BlockSizeBytes: 10}
	err := bad.Validate()
	for _, want := range []string{"Options.Compression", "Options.BlockSizeBytes", "Options.Logger"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Validate() = %v, want ErrInvalidArgument", err)
	}
	for _, name := range []string{"zstd", "s2", "none"} {
		c, err := ParseCompression(name)
		if err != nil || c.String() != name {
			t.Errorf("ParseCompression(%q) = %v, %v", name, c, err)
		}
	}
	if _, err := ParseCompression("gzip"); err == nil {
		t.Error("ParseCompression(gzip) succeeded")
	}
	if _, err := Open(t.TempDir(), Options{BlockSizeBytes: 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Open with bad options = %v", err)
	}
}

func TestFlock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Open creates it
	s, _ := openStoreIn(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrDirInUse) {
		t.Fatalf("second Open = %v, want ErrDirInUse", err)
	}
	want := fmt.Sprintf("data dir %s is in use by another streamd (pid %d)", dir, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("second Open = %q, want it to contain %q", err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.Completed("job"); !errors.Is(err, ErrClosed) {
		t.Errorf("Completed after Close = %v", err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReopenKeepsCheckpoints(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStoreIn(t, dir, Options{Compression: CompressionS2})
	v := newMemView("a")
	v.counters(0, 3, 100)
	h := mustWrite(t, s, "job", 1, "sc", 0, 3, v, nil)
	commit(t, s, "job", 1, h)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening with another compression reads the old blocks.
	s2, _ := openStoreIn(t, dir, Options{Compression: CompressionZstd})
	m, err := s2.Latest("job")
	if err != nil || m == nil {
		t.Fatalf("Latest after reopen = %v, %v", m, err)
	}
	if got := readAll(t, s2, "job", m.Tasks[0].Keyed, 0, 3); got != v.want(0, 3) {
		t.Fatal("entries differ after reopen")
	}
}

func TestPebbleOptionsMustKeepWAL(t *testing.T) {
	_, err := Open(t.TempDir(), Options{PebbleOptions: func(o *pebbleOptions) { o.DisableWAL = true }})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "DisableWAL") {
		t.Fatalf("Open with DisableWAL = %v", err)
	}
}

// TestCloseDuringCalls closes the store while goroutines write blocks,
// commit checkpoints and read them. Pebble panics when used after
// its Close; the store must instead let the calls in progress finish and
// fail later ones with ErrClosed. Every commit that returned nil must be
// readable after reopening.
func TestCloseDuringCalls(t *testing.T) {
	for round := range 20 {
		dir := t.TempDir()
		s, _ := openStoreIn(t, dir, Options{Compression: CompressionS2, BlockSizeBytes: MinBlockSizeBytes})
		v := newMemView("a")
		v.counters(0, 8, 50)
		var committed atomic.Uint64 // the newest id whose commit returned nil
		var wg sync.WaitGroup
		fail := func(what string, err error) bool {
			if err == nil {
				return false
			}
			if !errors.Is(err, ErrClosed) {
				t.Errorf("round %d: %s: %v, want nil or ErrClosed", round, what, err)
			}
			return true
		}
		wg.Go(func() { // the checkpoint writer
			for id := uint64(1); ; id++ {
				h, err := s.WriteKeyed("job", id, "v", 0, 8, v, nil)
				if fail("WriteKeyed", err) {
					return
				}
				m := &Metadata{Job: "job", CheckpointID: id, MaxParallelism: 128, Fingerprint: "fp",
					Tasks: []TaskMeta{{Vertex: "v", Parallelism: 1, KeyGroupStart: 0, KeyGroupEnd: 128, Keyed: h}}}
				if fail("CommitCheckpoint", s.CommitCheckpoint(m)) {
					return
				}
				committed.Store(id)
				// Retain keeps everything: deleting the blocks of a
				// checkpoint the reader reads would fail it (restore and
				// Retain never overlap), but its nested calls still race
				// with Close.
				if fail("Retain", s.Retain("job", 1000)) {
					return
				}
				if _, err := s.MaxCheckpointID("job"); fail("MaxCheckpointID", err) {
					return
				}
			}
		})
		wg.Go(func() { // a reader
			for {
				m, err := s.Latest("job")
				if fail("Latest", err) {
					return
				}
				if m != nil {
					for _, tm := range m.Tasks {
						err := s.ReadKeyed("job", tm.Keyed, 0, 128, func(int, string, []byte, []byte, uint8) error { return nil })
						if fail("ReadKeyed", err) {
							return
						}
					}
				}
				if _, err := s.Jobs(); fail("Jobs", err) {
					return
				}
			}
		})
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		wg.Wait()
		s2, _ := openStoreIn(t, dir, Options{})
		if id := committed.Load(); id > 0 {
			m, err := s2.Latest("job")
			if err != nil || m == nil || m.CheckpointID < id {
				t.Fatalf("round %d: after reopening, Latest = %v, %v; want checkpoint %d or newer", round, m, err, id)
			}
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
