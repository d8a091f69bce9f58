package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// goldenSeeds adds the golden files of testdata to a fuzz corpus.
func goldenSeeds(f *testing.F, pattern string) {
	paths, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(undump(&testing.T{}, string(text)))
	}
}

// FuzzDecodeBlock: DecodeBlock never panics and reports every failure as
// corruption, for full and delta blocks; whatever decodes re-encodes to a
// block of the same kind that decodes to the same content; and arbitrary
// bytes cut into entries (and into delta operations) round-trip through
// AppendBlock (AppendDeltaBlock) with every compression.
func FuzzDecodeBlock(f *testing.F) {
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		for _, n := range []int{0, 1, 30} {
			b, _ := AppendBlock(nil, c, []string{"a", "bb"}, encodeEntries(n, 2))
			f.Add(b)
			b, _ = AppendDeltaBlock(nil, c, []string{"a", "bb"}, encodeDeltaEntries(n, 2))
			f.Add(b)
		}
	}
	goldenSeeds(f, "block_*.golden")
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBlock(nil, data)
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("DecodeBlock error is not corruption: %v", err)
			}
		} else {
			appendFn := AppendBlock
			if b.Delta {
				appendFn = AppendDeltaBlock
			}
			enc, err := appendFn(nil, b.Compression, b.States, b.Entries)
			if err != nil {
				t.Fatalf("a decoded block does not re-encode: %v", err)
			}
			again, err := DecodeBlock(nil, enc)
			if err != nil || again.Delta != b.Delta || again.Count != b.Count || !bytes.Equal(again.Entries, b.Entries) ||
				len(again.States) != len(b.States) {
				t.Fatalf("re-encoded block decodes to %+v, %v", again, err)
			}
			for off, i := 0, 0; off < len(b.Entries); i++ {
				e, n, err := decodeEntryOf(b.Delta, b.Entries[off:])
				if err != nil || e.State >= len(b.States) || (e.Op != OpPut && !b.Delta) || (e.Op == OpDelete && e.Value != nil) {
					t.Fatalf("entry %d of a block that decoded: %+v, %v", i, e, err)
				}
				off += n
			}
		}
		// data as delta operations: every fourth a deletion.
		var draw []byte
		ops := 0
		for rest := data; len(rest) > 0; ops++ {
			k := min(len(rest), int(rest[0]%16))
			key := rest[:k]
			rest = rest[k:]
			v := min(len(rest), ops%5*3)
			draw = AppendDeltaEntry(draw, ops%3, key, rest[:v], uint8(ops%3))
			rest = rest[v:]
		}
		for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
			enc, err := AppendDeltaBlock(nil, c, []string{"x", "", "z"}, draw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBlock(nil, enc)
			if err != nil || !got.Delta || got.Count != ops || !bytes.Equal(got.Entries, draw) {
				t.Fatalf("%s: %d delta operations do not round-trip: %d, %v", c, ops, got.Count, err)
			}
		}

		// data as entry contents: alternate keys and values of varying size.
		var raw []byte
		n := 0
		for rest := data; len(rest) > 0; n++ {
			k := min(len(rest), int(rest[0]%16))
			key := rest[:k]
			rest = rest[k:]
			v := min(len(rest), n%7*3)
			raw = AppendEntry(raw, n%3, key, rest[:v])
			rest = rest[v:]
		}
		for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
			enc, err := AppendBlock(nil, c, []string{"x", "", "z"}, raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBlock(nil, enc)
			if err != nil || got.Count != n || !bytes.Equal(got.Entries, raw) {
				t.Fatalf("%s: %d entries do not round-trip: %d, %v", c, n, got.Count, err)
			}
		}
	})
}

// FuzzDecodeEntry: DecodeEntry never panics, never reads past its input,
// and what decodes re-encodes to the same bytes when minimally encoded.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(AppendEntry(nil, 3, []byte("key"), []byte("value")))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, n, err := DecodeEntry(data)
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("not corruption: %v", err)
			}
			return
		}
		if n > len(data) || n < minEntryBytes {
			t.Fatalf("consumed %d of %d bytes", n, len(data))
		}
		enc := AppendEntry(nil, e.State, e.Key, e.Value)
		e2, n2, err := DecodeEntry(enc)
		if err != nil || n2 != len(enc) || e2.State != e.State || !bytes.Equal(e2.Key, e.Key) || !bytes.Equal(e2.Value, e.Value) {
			t.Fatalf("re-encoded entry differs")
		}
	})
}

// FuzzDecodeDeltaEntry: DecodeDeltaEntry never panics, never reads past
// its input, and what decodes re-encodes to the same operation.
func FuzzDecodeDeltaEntry(f *testing.F) {
	f.Add(AppendDeltaEntry(nil, 3, []byte("key"), []byte("value"), OpPut))
	f.Add(AppendDeltaEntry(nil, 3, []byte("key"), nil, OpDelete))
	f.Add([]byte{0x81})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, n, err := DecodeDeltaEntry(data)
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("not corruption: %v", err)
			}
			return
		}
		if n > len(data) || n < minDeltaEntryBytes || (e.Op == OpDelete && e.Value != nil) {
			t.Fatalf("consumed %d of %d bytes: %+v", n, len(data), e)
		}
		enc := AppendDeltaEntry(nil, e.State, e.Key, e.Value, e.Op)
		e2, n2, err := DecodeDeltaEntry(enc)
		if err != nil || n2 != len(enc) || e2.State != e.State || e2.Op != e.Op ||
			!bytes.Equal(e2.Key, e.Key) || !bytes.Equal(e2.Value, e.Value) {
			t.Fatalf("re-encoded delta entry differs")
		}
	})
}

// FuzzDecodeMetadata: DecodeMetadata never panics and reports every failure
// as corruption; whatever decodes re-encodes to bytes that decode to the
// same metadata (encode∘decode is idempotent).
func FuzzDecodeMetadata(f *testing.F) {
	f.Add(EncodeMetadata(nil, sampleMetadata()))
	f.Add(EncodeMetadata(nil, sampleMetadataV3()))
	f.Add(EncodeMetadata(nil, &Metadata{Job: "j", CheckpointID: 1}))
	goldenSeeds(f, "metadata_*.golden")
	f.Add([]byte{metadataMagic, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMetadata(data)
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("not corruption: %v", err)
			}
			return
		}
		enc := EncodeMetadata(nil, m)
		m2, err := DecodeMetadata(enc)
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if !bytes.Equal(EncodeMetadata(nil, m2), enc) {
			t.Fatal("encode∘decode is not idempotent")
		}
		_ = m.problems() // must not panic on any decodable input
	})
}
