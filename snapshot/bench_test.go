package snapshot

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// counterView is a View of counters: 8-byte keys, 8-byte values, one state,
// laid out in one flat slice per key group like a pointer-free backend.
type counterView struct {
	groups  [][]byte // per key group: 16 bytes per entry
	version uint64
}

func newCounterView(keyGroups, entriesPerGroup int) *counterView {
	v := &counterView{groups: make([][]byte, keyGroups), version: 1}
	for kg := range v.groups {
		buf := make([]byte, 0, 16*entriesPerGroup)
		for i := 0; i < entriesPerGroup; i++ {
			buf = binary.BigEndian.AppendUint64(buf, uint64(kg)<<40|uint64(i)*2654435761)
			buf = binary.LittleEndian.AppendUint64(buf, uint64(i%1000)) // small counts, like real counters
		}
		v.groups[kg] = buf
	}
	return v
}

func (v *counterView) States() []string           { return []string{"count"} }
func (v *counterView) KeyGroupVersion(int) uint64 { return v.version }
func (v *counterView) rawBytes() int64            { return int64(len(v.groups)) * int64(len(v.groups[0])/16) * 19 }
func (v *counterView) ForEach(kg int, fn func(int, []byte, []byte) error) error {
	buf := v.groups[kg]
	for off := 0; off < len(buf); off += 16 {
		if err := fn(0, buf[off:off+8], buf[off+8:off+16]); err != nil {
			return err
		}
	}
	return nil
}

var compressions = []Compression{CompressionZstd, CompressionS2, CompressionNone}

// BenchmarkWriteKeyed measures a full (non-incremental) snapshot of 128 key
// groups × 8192 counters (~19 MiB raw) into Pebble. MB/s are raw bytes.
func BenchmarkWriteKeyed(b *testing.B) {
	v := newCounterView(128, 8192)
	for _, c := range compressions {
		b.Run(c.String(), func(b *testing.B) {
			s, _ := openStore(b, Options{Compression: c})
			b.SetBytes(v.rawBytes())
			b.ReportAllocs()
			var stored int64
			for i := 0; b.Loop(); i++ {
				h, err := s.WriteKeyed("bench", uint64(i+1), "counter", 0, len(v.groups), v, nil)
				if err != nil {
					b.Fatal(err)
				}
				stored = h.StoredBytes
			}
			b.ReportMetric(float64(v.rawBytes())/float64(stored), "ratio")
		})
	}
}

// BenchmarkStorePath compares the two ways WriteKeyed hands blocks to
// Pebble for a large snapshot (128 key groups × 8192 counters, no
// compression, so that storage dominates): one unsynced batch, or an
// sstable that is synced and ingested (what WriteKeyed does above
// ingestThresholdBytes). Each iteration writes a new checkpoint, so the
// batch path pays for the flushes and compactions its data causes.
func BenchmarkStorePath(b *testing.B) {
	v := newCounterView(128, 8192)
	for _, path := range []struct {
		name      string
		threshold int
	}{{"batch", 1 << 40}, {"ingest", 0}} {
		b.Run(path.name, func(b *testing.B) {
			s, _ := openStore(b, Options{Compression: CompressionNone})
			s.ingestThresholdBytes = path.threshold
			b.SetBytes(v.rawBytes())
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := s.WriteKeyed("bench", uint64(i+1), "counter", 0, len(v.groups), v, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadKeyed measures restoring the snapshot BenchmarkWriteKeyed
// writes. MB/s are raw bytes.
func BenchmarkReadKeyed(b *testing.B) {
	v := newCounterView(128, 8192)
	for _, c := range compressions {
		b.Run(c.String(), func(b *testing.B) {
			s, _ := openStore(b, Options{Compression: c})
			h, err := s.WriteKeyed("bench", 1, "counter", 0, len(v.groups), v, nil)
			if err != nil {
				b.Fatal(err)
			}
			var n int
			fn := func(int, string, []byte, []byte, uint8) error { n++; return nil }
			b.SetBytes(h.RawBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ReadKeyed("bench", h, 0, len(v.groups), fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendBlock measures encoding alone: compression and checksum of
// one 1 MiB block of counters.
func BenchmarkAppendBlock(b *testing.B) {
	v := newCounterView(1, DefaultBlockSizeBytes/19)
	var raw []byte
	_ = v.ForEach(0, func(s int, k, val []byte) error { raw = AppendEntry(raw, s, k, val); return nil })
	count := len(v.groups[0]) / 16
	for _, c := range compressions {
		b.Run(c.String(), func(b *testing.B) {
			dst := appendBlock(nil, c, count, []string{"count"}, raw)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				dst = appendBlock(dst[:0], c, count, []string{"count"}, raw)
			}
		})
	}
}

// BenchmarkCommitCheckpoint measures the synced metadata write of a job
// with 4 tasks and maxParallelism 128 (the fsync dominates).
func BenchmarkCommitCheckpoint(b *testing.B) {
	s, _ := openStore(b, Options{})
	m := benchMetadata(128, 4)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.CheckpointID = uint64(i + 1)
		if err := s.CommitCheckpoint(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMetadata measures metadata encoding and decoding with
// 32768 key groups (Flink's largest maxParallelism).
func BenchmarkEncodeMetadata(b *testing.B) {
	m := benchMetadata(32768, 8)
	enc := EncodeMetadata(nil, m)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		buf := enc[:0]
		for b.Loop() {
			buf = EncodeMetadata(buf[:0], m)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeMetadata(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchMetadata(keyGroups, tasks int) *Metadata {
	m := &Metadata{Job: "bench", CheckpointID: 1, MaxParallelism: keyGroups, Fingerprint: "a>b>c"}
	per := keyGroups / tasks
	for t := 0; t < tasks; t++ {
		h := &KeyedHandle{Scope: "agg", Checkpoint: 1}
		for kg := t * per; kg < (t+1)*per; kg++ {
			h.KeyGroups = append(h.KeyGroups, KeyGroupRef{KeyGroup: kg, Version: uint64(kg) * 3, Writer: 1,
				Blocks: 1, RawBytes: 150_000, StoredBytes: 100_000, Entries: 8000})
		}
		m.Tasks = append(m.Tasks, TaskMeta{Vertex: "agg", Index: t, Parallelism: tasks,
			KeyGroupStart: t * per, KeyGroupEnd: (t + 1) * per, Keyed: h, Source: []byte(fmt.Sprint(t))})
	}
	return m
}
