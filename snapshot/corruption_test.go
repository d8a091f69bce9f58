package snapshot

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// corruptionFixture commits checkpoint 1 and checkpoint 2 of job "job";
// checkpoint 2 rewrites key groups 0 and 2 and reuses 1 and 3.
func corruptionFixture(t *testing.T, c Compression) (*Store, *logBuffer, *Metadata, *Metadata) {
	t.Helper()
	s, logs := openStore(t, Options{Compression: c, BlockSizeBytes: MinBlockSizeBytes})
	if c == CompressionS2 {
		s.ingestThresholdBytes = 0 // also walk blocks that arrived by ingestion
	}
	v := newMemView("count", "sum")
	v.counters(0, 4, 300) // two blocks per key group
	h1 := mustWrite(t, s, "job", 1, "agg", 0, 4, v, nil)
	m1 := commit(t, s, "job", 1, h1)
	v.put(0, 1, []byte("changed"), []byte("!"))
	v.put(2, 0, []byte("changed"), []byte("!"))
	h2 := mustWrite(t, s, "job", 2, "agg", 0, 4, v, h1)
	m2 := commit(t, s, "job", 2, h2)
	if h2.KeyGroups[0].Writer != 2 || h2.KeyGroups[1].Writer != 1 || h2.KeyGroups[0].Blocks < 2 {
		t.Fatalf("fixture is not what the test expects: %+v", h2.KeyGroups)
	}
	return s, logs, m1, m2
}

// set rewrites one stored value through Pebble.
func set(t *testing.T, s *Store, key, value []byte) {
	t.Helper()
	if err := s.db.Set(key, value, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionWalk flips bytes in every stored value of the newer
// checkpoint and checks that it is reported as corruption and that Latest
// falls back to the older one, loudly.
func TestCorruptionWalk(t *testing.T) {
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		t.Run(c.String(), func(t *testing.T) {
			s, logs, _, m2 := corruptionFixture(t, c)
			var values []storedKV
			values = append(values, allKeys(t, s, string(metaKey(nil, "job", 2)))...)
			values = append(values, allKeys(t, s, string(writerPrefix(nil, "job", 2)))...)
			if len(values) < 5 {
				t.Fatalf("only %d values to corrupt", len(values))
			}
			for _, kv := range values {
				isMeta := kv.key[0] == metaTag
				n := len(kv.value)
				for _, off := range []int{0, 1, 2, n / 3, n / 2, n - 5, n - 1} {
					for _, mask := range []byte{0x01, 0x80} {
						name := fmt.Sprintf("key %x offset %d mask %02x", kv.key, off, mask)
						bad := bytes.Clone(kv.value)
						bad[off] ^= mask
						set(t, s, kv.key, bad)
						logs.reset()

						m, err := s.LoadMetadata("job", 2)
						if isMeta {
							if !IsCorruption(err) {
								t.Fatalf("%s: LoadMetadata = %v, want corruption", name, err)
							}
						} else {
							if err != nil {
								t.Fatalf("%s: LoadMetadata = %v", name, err)
							}
							err = s.Verify(m)
							if !IsCorruption(err) {
								t.Fatalf("%s: Verify = %v, want corruption", name, err)
							}
							for _, want := range []string{"snapshot: job job, checkpoint 2, scope \"agg\", key group ", ", block "} {
								if !strings.Contains(err.Error(), want) {
									t.Fatalf("%s: Verify = %q, want it to contain %q", name, err, want)
								}
							}
							rerr := s.ReadKeyed("job", m2.Tasks[0].Keyed, 0, 4, func(int, string, []byte, []byte, uint8) error { return nil })
							if !IsCorruption(rerr) {
								t.Fatalf("%s: ReadKeyed = %v, want corruption", name, rerr)
							}
						}
						latest, err := s.Latest("job")
						if err != nil || latest == nil || latest.CheckpointID != 1 {
							t.Fatalf("%s: Latest = %v, %v; want checkpoint 1", name, latest, err)
						}
						log := logs.String()
						if !strings.Contains(log, "WARNING: skipping corrupt checkpoint 2 of job job: ") ||
							!strings.Contains(log, "falls back to checkpoint 1") {
							t.Fatalf("%s: log does not say which checkpoint was skipped and why:\n%s", name, log)
						}
					}
				}
				set(t, s, kv.key, kv.value)
			}
			if m, err := s.Latest("job"); err != nil || m.CheckpointID != 2 {
				t.Fatalf("after restoring every value: Latest = %v, %v", m, err)
			}
		})
	}
}

func TestMissingBlock(t *testing.T) {
	s, logs, _, m2 := corruptionFixture(t, CompressionS2)
	ref := m2.Tasks[0].Keyed.KeyGroups[2]
	for seq := 0; seq < ref.Blocks; seq++ {
		key := blockKey(nil, "job", 2, "agg", 2, seq)
		val, closer, err := s.db.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		val = bytes.Clone(val)
		closer.Close()
		if err := s.db.Delete(key, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		err = s.Verify(m2)
		want := fmt.Sprintf("snapshot: job job, checkpoint 2, scope \"agg\", key group 2, block %d (written by checkpoint 2): block is missing", seq)
		if !IsCorruption(err) || err.Error() != want {
			t.Fatalf("Verify with block %d deleted = %q, want %q", seq, err, want)
		}
		if m, err := s.Latest("job"); err != nil || m.CheckpointID != 1 {
			t.Fatalf("Latest = %v, %v", m, err)
		}
		if !strings.Contains(logs.String(), "is missing") {
			t.Errorf("log does not say why: %s", logs)
		}
		set(t, s, key, val)
	}
	if err := s.Verify(m2); err != nil {
		t.Fatal(err)
	}
}

// TestAllCheckpointsCorrupt: a block both checkpoints share goes bad.
func TestAllCheckpointsCorrupt(t *testing.T) {
	s, logs, m1, _ := corruptionFixture(t, CompressionZstd)
	key := blockKey(nil, "job", 1, "agg", 1, 0) // reused by checkpoint 2
	val, closer, err := s.db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(val)
	closer.Close()
	bad[len(bad)/2] ^= 0x10
	set(t, s, key, bad)
	m, err := s.Latest("job")
	if m != nil || !IsCorruption(err) {
		t.Fatalf("Latest = %v, %v; want a corruption error", m, err)
	}
	for _, want := range []string{"snapshot: no checkpoint of job job verifies", "checkpoint 2", "checkpoint 1", "checksum mismatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Latest error %q does not contain %q", err, want)
		}
	}
	if strings.Count(logs.String(), "WARNING: skipping corrupt checkpoint") != 2 {
		t.Errorf("log:\n%s", logs)
	}
	// The error names the block of the newest checkpoint.
	if !strings.Contains(err.Error(), `checkpoint 2, scope "agg", key group 1, block 0 (written by checkpoint 1): block checksum mismatch`) {
		t.Errorf("Latest error %q does not name the block", err)
	}
	_ = m1
}

// TestUndecodableMetadataStopsBlockDeletion: retention with a retained
// checkpoint whose metadata does not decode deletes no blocks.
func TestUndecodableMetadataStopsBlockDeletion(t *testing.T) {
	s, logs, _, _ := corruptionFixture(t, CompressionNone)
	key := metaKey(nil, "job", 2)
	val, closer, _ := s.db.Get(key)
	bad := bytes.Clone(val)
	closer.Close()
	bad[0] ^= 0xFF
	set(t, s, key, bad)
	before := len(allKeys(t, s, "b"))
	if err := s.Retain("job", 1); err != nil {
		t.Fatal(err)
	}
	if after := len(allKeys(t, s, "b")); after != before {
		t.Errorf("retention deleted %d blocks while a retained checkpoint's metadata does not decode", before-after)
	}
	if !strings.Contains(logs.String(), "deletes no blocks") {
		t.Errorf("log: %s", logs)
	}
	ids, _ := s.Completed("job")
	if len(ids) != 2 {
		t.Errorf("Completed = %v: both the undecodable and the decodable checkpoint must stay", ids)
	}
}

func TestMetadataUnderWrongKey(t *testing.T) {
	s, _, m1, _ := corruptionFixture(t, CompressionNone)
	// Checkpoint 1's metadata stored as checkpoint 3's.
	set(t, s, metaKey(nil, "job", 3), EncodeMetadata(nil, m1))
	_, err := s.LoadMetadata("job", 3)
	if !IsCorruption(err) || !strings.Contains(err.Error(), "is that of checkpoint 1") {
		t.Fatalf("LoadMetadata = %v", err)
	}
	if m, err := s.Latest("job"); err != nil || m.CheckpointID != 2 {
		t.Fatalf("Latest = %v, %v", m, err)
	}
}
