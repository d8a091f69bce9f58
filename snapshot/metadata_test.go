package snapshot

import (
	"bytes"
	"strings"
	"testing"
)

func sampleMetadata() *Metadata {
	return &Metadata{
		Job: "word-count", CheckpointID: 42,
		TriggeredAtUnixNano: 1_700_000_000_000_000_000, CompletedAtUnixNano: 1_700_000_000_050_000_000,
		Fingerprint: "source>map>keyBy>sum", MaxParallelism: 128, Finished: true,
		RawBytes: 1 << 20, StoredBytes: 700_000,
		Tasks: []TaskMeta{
			{Vertex: "source", Index: 0, Parallelism: 1, KeyGroupEnd: 128, Source: []byte(`{"offset":17}`)},
			{Vertex: "sum", Index: 0, Parallelism: 2, KeyGroupStart: 0, KeyGroupEnd: 64, Keyed: &KeyedHandle{
				Scope: "sum", Checkpoint: 42, RawBytes: 1000, StoredBytes: 700, ReusedBytes: 300,
				KeyGroups: []KeyGroupRef{
					{KeyGroup: 0, Version: 7, Writer: 42, Blocks: 1, RawBytes: 1000, StoredBytes: 700, Entries: 50},
					{KeyGroup: 1, Version: 3, Writer: 40, Blocks: 1, RawBytes: 400, StoredBytes: 300, Entries: 20},
					{KeyGroup: 2, Version: 0, Writer: 42},
				}}},
			{Vertex: "sink", Index: 1, Parallelism: 2, KeyGroupStart: 64, KeyGroupEnd: 128,
				Sink: []byte("txn-41,txn-42"), Operator: []byte{0, 1, 2}},
		},
	}
}

// sampleMetadataV2 adds what format version 2 records: the operators of
// each task's chain and the table of stateful operators.
func sampleMetadataV2() *Metadata {
	m := sampleMetadata()
	m.Tasks[0].Operators = []string{"source", "map"}
	m.Tasks[0].Vertex = "source -> map"
	m.Tasks[1].Operators = []string{"sum"}
	m.Tasks[2].Operators = []string{"sink"}
	m.Operators = []OperatorMeta{
		{ID: "source", Kind: "source", Signature: "sequence", Parallelism: 1},
		{ID: "sum", Kind: "keyed", Signature: "key=word:string field=n:int", Parallelism: 2},
		{ID: "sink", Kind: "sink", Parallelism: 2},
	}
	return m
}

// sampleMetadataV3 adds what format version 3 records: delta chains and
// the key group counts of a handle.
func sampleMetadataV3() *Metadata {
	m := sampleMetadataV2()
	h := m.Tasks[1].Keyed
	h.KeyGroups[0].Deltas = []DeltaRef{
		{Writer: 41, Blocks: 1, RawBytes: 120, StoredBytes: 90, Entries: 6, Deletes: 2},
		{Writer: 42, Blocks: 2, RawBytes: 300, StoredBytes: 200, Entries: 15},
	}
	h.KeyGroups[0].Writer = 40
	h.FullKeyGroups, h.DeltaKeyGroups, h.ReusedKeyGroups, h.MaxChain = 1, 1, 1, 2
	return m
}

func TestMetadataRoundTrip(t *testing.T) {
	for _, m := range []*Metadata{sampleMetadataV3(), sampleMetadataV2(), sampleMetadata(), {Job: "j", CheckpointID: 1}} {
		enc := EncodeMetadata([]byte("prefix"), m)
		got, err := DecodeMetadata(enc[len("prefix"):])
		if err != nil {
			t.Fatal(err)
		}
		if got.FormatVersion != MetadataFormatVersion {
			t.Errorf("FormatVersion = %d", got.FormatVersion)
		}
		if !bytes.Equal(EncodeMetadata(nil, got), enc[len("prefix"):]) {
			t.Errorf("round trip changed %+v into %+v", m, got)
		}
		if len(m.Tasks) > 0 && (got.Tasks[2].Keyed != nil || string(got.Tasks[2].Sink) != "txn-41,txn-42" ||
			got.Tasks[1].Keyed.KeyGroups[1].Writer != 40 || !got.Finished) {
			t.Errorf("decoded %+v", got)
		}
		if len(m.problems()) != 0 {
			t.Errorf("sample metadata has problems: %v", m.problems())
		}
	}
}

func TestMetadataCorruption(t *testing.T) {
	enc := EncodeMetadata(nil, sampleMetadataV3())
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 0x04
		if _, err := DecodeMetadata(bad); !IsCorruption(err) {
			t.Fatalf("flipping byte %d: DecodeMetadata = %v", i, err)
		}
	}
	for n := 0; n < len(enc); n++ {
		if _, err := DecodeMetadata(enc[:n]); !IsCorruption(err) {
			t.Fatalf("cut to %d bytes: DecodeMetadata = %v", n, err)
		}
	}
	body := enc[:len(enc)-blockTrailerBytes]
	f := func(name string, b []byte, want string) {
		t.Helper()
		_, err := DecodeMetadata(withCRC(b))
		if !IsCorruption(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: DecodeMetadata = %v, want corruption mentioning %q", name, err, want)
		}
	}
	v4 := bytes.Clone(body)
	v4[1] = 4
	f("version 4", v4, "unknown format version 4")
	v0 := bytes.Clone(body)
	v0[1] = 0
	f("version 0", v0, "unknown format version 0")
	f("magic", append([]byte{0x00}, body[1:]...), "magic")
	f("trailing", append(bytes.Clone(body), 0), "trailing")
	f("truncated", body[:len(body)-3], "cannot decode")
	// A huge element count must not allocate: it fails on the length check.
	huge := []byte{metadataMagic, 1, 1, 'j', 1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}
	f("task count", huge, "tasks")
}
