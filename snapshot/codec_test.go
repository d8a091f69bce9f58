package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata/")

func TestEntryRoundTrip(t *testing.T) {
	f := func(state int, key, value []byte) {
		t.Helper()
		enc := AppendEntry([]byte("prefix"), state, key, value)
		e, n, err := DecodeEntry(enc[len("prefix"):])
		if err != nil || n != len(enc)-len("prefix") || e.State != state || !bytes.Equal(e.Key, key) || !bytes.Equal(e.Value, value) {
			t.Fatalf("DecodeEntry(AppendEntry(%d, %q, %q)) = %+v, %d, %v", state, key, value, e, n, err)
		}
		if bound := entrySizeBound(state, len(key), len(value)); bound < n {
			t.Fatalf("entrySizeBound = %d < %d", bound, n)
		}
		for cut := 0; cut < n; cut++ {
			if _, _, err := DecodeEntry(enc[len("prefix") : len("prefix")+cut]); !IsCorruption(err) {
				t.Fatalf("DecodeEntry of %d of %d bytes = %v, want corruption", cut, n, err)
			}
		}
	}
	f(0, nil, nil)
	f(1, []byte("k"), []byte("v"))
	f(300, bytes.Repeat([]byte{0xAB}, 200), bytes.Repeat([]byte{0}, 70000))
	if _, _, err := DecodeEntry(AppendEntry(nil, MaxStatesPerBlock+1, nil, nil)); !IsCorruption(err) {
		t.Errorf("state id above the limit: %v", err)
	}
}

// encodeEntries encodes n counter entries over the given number of states.
func encodeEntries(n, states int) []byte {
	var raw []byte
	for i := 0; i < n; i++ {
		raw = AppendEntry(raw, i%states, fmt.Appendf(nil, "key-%08d", i), fmt.Appendf(nil, "%d", i*i))
	}
	return raw
}

func TestBlockRoundTrip(t *testing.T) {
	states := []string{"count", "", "window/contents"}
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		for _, n := range []int{0, 1, 1000} {
			raw := encodeEntries(n, len(states))
			block, err := AppendBlock([]byte("xyz"), c, states, raw)
			if err != nil {
				t.Fatal(err)
			}
			if string(block[:3]) != "xyz" {
				t.Fatal("AppendBlock overwrote dst")
			}
			b, err := DecodeBlock(nil, block[3:])
			if err != nil {
				t.Fatalf("%s/%d: DecodeBlock: %v", c, n, err)
			}
			if b.Count != n || !bytes.Equal(b.Entries, raw) || strings.Join(b.States, ",") != strings.Join(states, ",") {
				t.Fatalf("%s/%d: decoded %d entries, states %q", c, n, b.Count, b.States)
			}
			wantC := c
			if n < 2 {
				wantC = CompressionNone // too small to compress
			}
			if b.Compression != wantC {
				t.Errorf("%s/%d: stored with %s", c, n, b.Compression)
			}
		}
	}
}

func TestAppendBlockRejects(t *testing.T) {
	raw := AppendEntry(nil, 1, []byte("k"), []byte("v"))
	cases := map[string]func() ([]byte, error){
		"compression": func() ([]byte, error) { return AppendBlock(nil, 9, []string{"a", "b"}, raw) },
		"state id":    func() ([]byte, error) { return AppendBlock(nil, CompressionNone, []string{"a"}, raw) },
		"truncated":   func() ([]byte, error) { return AppendBlock(nil, CompressionNone, []string{"a", "b"}, raw[:len(raw)-1]) },
		"long name": func() ([]byte, error) {
			return AppendBlock(nil, CompressionNone, []string{strings.Repeat("n", MaxStateNameBytes+1)}, nil)
		},
		"too many": func() ([]byte, error) {
			return AppendBlock(nil, CompressionNone, make([]string, MaxStatesPerBlock+1), nil)
		},
		"too much data": func() ([]byte, error) {
			return AppendBlock(nil, CompressionNone, nil, make([]byte, MaxBlockRawBytes+1))
		},
	}
	for name, f := range cases {
		if _, err := f(); err == nil {
			t.Errorf("%s: AppendBlock accepted it", name)
		}
	}
}

// TestBlockEveryByteFlip: the checksum catches every single-byte change,
// and every truncation, of a block of each compression.
func TestBlockEveryByteFlip(t *testing.T) {
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		block, err := AppendBlock(nil, c, []string{"a", "b"}, encodeEntries(50, 2))
		if err != nil {
			t.Fatal(err)
		}
		for i := range block {
			for _, mask := range []byte{0x01, 0x10, 0xFF} {
				bad := bytes.Clone(block)
				bad[i] ^= mask
				if _, err := DecodeBlock(nil, bad); !IsCorruption(err) {
					t.Fatalf("%s: flipping byte %d with %02x: DecodeBlock = %v", c, i, mask, err)
				}
			}
		}
		for n := 0; n < len(block); n++ {
			if _, err := DecodeBlock(nil, block[:n]); !IsCorruption(err) {
				t.Fatalf("%s: block cut to %d bytes: DecodeBlock = %v", c, n, err)
			}
		}
	}
}

// withCRC recomputes the checksum of a hand-made block or metadata value so
// that the checks behind it are reached.
func withCRC(body []byte) []byte {
	b := bytes.Clone(body)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func TestBlockHeaderChecks(t *testing.T) {
	good, _ := AppendBlock(nil, CompressionNone, []string{"a"}, encodeEntries(3, 1))
	body := good[:len(good)-blockTrailerBytes]
	f := func(name string, mutate func(b []byte) []byte, want string) {
		t.Helper()
		_, err := DecodeBlock(nil, withCRC(mutate(bytes.Clone(body))))
		if !IsCorruption(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: DecodeBlock = %v, want corruption mentioning %q", name, err, want)
		}
	}
	f("version", func(b []byte) []byte { b[0] = 0xB3; return b }, "unknown block format version 0xb3")
	f("compression", func(b []byte) []byte { b[1] = 3; return b }, "unknown compression")
	f("raw length", func(b []byte) []byte { b[2]++; return b }, "")
	f("count", func(b []byte) []byte { b[3]++; return b }, "entries")
	f("trailing", func(b []byte) []byte { return append(b, 0) }, "")
	f("s2 label on raw data", func(b []byte) []byte { b[1] = byte(CompressionS2); return b }, "s2")
	f("zstd label on raw data", func(b []byte) []byte { b[1] = byte(CompressionZstd); return b }, "zstd")
}

// golden checks (or with -rewrite, writes) a hex golden file.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *rewrite && got != nil {
		if err := os.WriteFile(path, []byte(hex.Dump(got)), 0o644); err != nil {
			t.Fatal(err)
		}
		return got
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	want := undump(t, string(text))
	if got != nil && !bytes.Equal(got, want) {
		t.Errorf("%s: encoding changed (a format change must bump the version):\ngot:\n%swant:\n%s",
			name, hex.Dump(got), text)
	}
	return want
}

// undump parses the output of hex.Dump.
func undump(t *testing.T, text string) []byte {
	var out []byte
	for _, line := range strings.Split(text, "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:min(len(line), 58)]
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("bad golden line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

// TestGoldenFormats pins the block and metadata formats: this build must
// encode exactly as the golden files say (where the encoding is
// deterministic) and must decode the golden files of every compression (so
// blocks written by older builds stay readable).
func TestGoldenFormats(t *testing.T) {
	states := []string{"count", "last-seen"}
	raw := encodeEntries(40, 2)
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		var enc []byte
		if c == CompressionNone || *rewrite {
			enc, _ = AppendBlock(nil, c, states, raw)
		}
		want := golden(t, "block_v1_"+c.String()+".golden", enc)
		b, err := DecodeBlock(nil, want)
		if err != nil {
			t.Fatalf("%s golden block: %v", c, err)
		}
		if b.Compression != c || !bytes.Equal(b.Entries, raw) || strings.Join(b.States, ",") != "count,last-seen" {
			t.Errorf("%s golden block decodes to %s, %d entries", c, b.Compression, b.Count)
		}
	}
	// Delta blocks, every compression.
	draw := encodeDeltaEntries(40, 2)
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		var enc []byte
		if c == CompressionNone || *rewrite {
			enc, _ = AppendDeltaBlock(nil, c, states, draw)
		}
		want := golden(t, "block_delta_v1_"+c.String()+".golden", enc)
		b, err := DecodeBlock(nil, want)
		if err != nil {
			t.Fatalf("%s golden delta block: %v", c, err)
		}
		if !b.Delta || b.Compression != c || !bytes.Equal(b.Entries, draw) || strings.Join(b.States, ",") != "count,last-seen" {
			t.Errorf("%s golden delta block decodes to delta %v, %s, %d entries", c, b.Delta, b.Compression, b.Count)
		}
	}
	// Version 1 (written by builds before state belonged to operators)
	// is still read, and migrated: each task's operators are its chain's
	// names.
	v1 := golden(t, "metadata_v1.golden", nil)
	got, err := DecodeMetadata(v1)
	if err != nil {
		t.Fatal(err)
	}
	if got.FormatVersion != 1 || len(got.Operators) != 0 {
		t.Errorf("golden v1 metadata decodes as version %d with %d operators", got.FormatVersion, len(got.Operators))
	}
	for _, tm := range got.Tasks {
		if strings.Join(tm.Operators, " -> ") != tm.Vertex {
			t.Errorf("v1 task %q migrates to operators %q", tm.Vertex, tm.Operators)
		}
	}
	// Version 2 (before delta chains) is still read: no deltas, no key
	// group counts.
	v2 := golden(t, "metadata_v2.golden", nil)
	got, err = DecodeMetadata(v2)
	if err != nil {
		t.Fatal(err)
	}
	if got.FormatVersion != 2 || len(got.Operators) != 3 || !bytes.Equal(EncodeMetadata(nil, got), EncodeMetadata(nil, sampleMetadataV2())) {
		t.Errorf("golden v2 metadata decodes to %+v", got)
	}
	m := sampleMetadataV3()
	want := golden(t, "metadata_v3.golden", EncodeMetadata(nil, m))
	got, err = DecodeMetadata(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeMetadata(nil, got), want) || got.FormatVersion != 3 || len(got.Operators) != 3 ||
		len(got.Tasks[1].Keyed.KeyGroups[0].Deltas) != 2 || got.Tasks[1].Keyed.MaxChain != 2 {
		t.Errorf("golden metadata does not round-trip: %+v", got)
	}
	if p := got.problems(); len(p) > 0 {
		t.Errorf("golden v3 metadata has problems: %v", p)
	}
}

// encodeDeltaEntries encodes n delta operations over the given number of
// states: every third a deletion.
func encodeDeltaEntries(n, states int) []byte {
	var raw []byte
	for i := 0; i < n; i++ {
		raw = AppendDeltaEntry(raw, i%states, fmt.Appendf(nil, "key-%08d", i), fmt.Appendf(nil, "%d", i*i), uint8(i%3))
	}
	return raw
}

func TestDeltaEntryRoundTrip(t *testing.T) {
	f := func(state int, key, value []byte, op uint8) {
		t.Helper()
		deleted := op == OpDelete
		enc := AppendDeltaEntry([]byte("prefix"), state, key, value, op)
		e, n, err := DecodeDeltaEntry(enc[len("prefix"):])
		wantValue := value
		if deleted {
			wantValue = nil
		}
		if err != nil || n != len(enc)-len("prefix") || e.State != state || e.Op != op ||
			!bytes.Equal(e.Key, key) || !bytes.Equal(e.Value, wantValue) || (deleted && e.Value != nil) {
			t.Fatalf("DecodeDeltaEntry(AppendDeltaEntry(%d, %q, %q, %v)) = %+v, %d, %v", state, key, value, op, e, n, err)
		}
		if bound := deltaEntrySizeBound(state, len(key), len(value), op); bound < n {
			t.Fatalf("deltaEntrySizeBound = %d < %d", bound, n)
		}
		for cut := 0; cut < n; cut++ {
			if _, _, err := DecodeDeltaEntry(enc[len("prefix") : len("prefix")+cut]); !IsCorruption(err) {
				t.Fatalf("DecodeDeltaEntry of %d of %d bytes = %v, want corruption", cut, n, err)
			}
		}
	}
	f(0, nil, nil, OpPut)
	f(0, nil, nil, OpDelete)
	f(1, []byte("k"), []byte("v"), OpPut)
	f(1, []byte("k"), []byte("ignored"), OpDelete)
	f(2, []byte("k"), []byte("more elements"), OpAppend)
	f(300, bytes.Repeat([]byte{0xAB}, 200), bytes.Repeat([]byte{0}, 70000), OpPut)
	if _, _, err := DecodeDeltaEntry([]byte{3, 0}); !IsCorruption(err) {
		t.Errorf("operation 3: %v, want corruption", err)
	}
	if _, _, err := DecodeDeltaEntry(AppendDeltaEntry(nil, MaxStatesPerBlock+1, nil, nil, OpDelete)); !IsCorruption(err) {
		t.Errorf("state id above the limit: %v", err)
	}
	// A full block's entries are not a delta block's and vice versa: the
	// block format byte says which.
	full, _ := AppendBlock(nil, CompressionNone, []string{"a", "b"}, encodeEntries(10, 2))
	delta, _ := AppendDeltaBlock(nil, CompressionNone, []string{"a", "b"}, encodeDeltaEntries(10, 2))
	if b, err := DecodeBlock(nil, full); err != nil || b.Delta {
		t.Errorf("full block decodes as delta %v, %v", b.Delta, err)
	}
	if b, err := DecodeBlock(nil, delta); err != nil || !b.Delta || b.Count != 10 {
		t.Errorf("delta block decodes as delta %v with %d entries, %v", b.Delta, b.Count, err)
	}
	if _, err := AppendDeltaBlock(nil, CompressionNone, []string{"a"}, encodeDeltaEntries(10, 2)); err == nil {
		t.Error("AppendDeltaBlock accepted a state id outside the table")
	}
}

// TestDeltaBlockEveryByteFlip: the checksum catches every single-byte
// change, and every truncation, of a delta block of each compression.
func TestDeltaBlockEveryByteFlip(t *testing.T) {
	for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionNone} {
		block, err := AppendDeltaBlock(nil, c, []string{"a", "b"}, encodeDeltaEntries(50, 2))
		if err != nil {
			t.Fatal(err)
		}
		for i := range block {
			bad := bytes.Clone(block)
			bad[i] ^= 0x10
			if _, err := DecodeBlock(nil, bad); !IsCorruption(err) {
				t.Fatalf("%s: flipping byte %d: DecodeBlock = %v", c, i, err)
			}
		}
		for n := 0; n < len(block); n++ {
			if _, err := DecodeBlock(nil, block[:n]); !IsCorruption(err) {
				t.Fatalf("%s: block cut to %d bytes: DecodeBlock = %v", c, n, err)
			}
		}
	}
}

func TestCodecAllocations(t *testing.T) {
	skipAllocationBudgets(t)
	raw := encodeEntries(2000, 2)
	states := []string{"a", "b"}
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		dst := make([]byte, 0, 2*len(raw)+1024)
		block := appendBlock(nil, c, 2000, states, raw) // warm up pools
		if n := testing.AllocsPerRun(20, func() { dst = appendBlock(dst[:0], c, 2000, states, raw) }); n != 0 {
			t.Errorf("appendBlock(%s) allocates %.1f times", c, n)
		}
		scratch := make([]byte, 0, len(raw)+zstdSlackBytes)
		if n := testing.AllocsPerRun(20, func() {
			bv, err := parseBlock(block)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := bv.decompress(scratch); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("parse and decompress (%s) allocate %.1f times", c, n)
		}
	}
	var buf []byte
	key, value := []byte("12345678"), []byte("abcdefgh")
	buf = AppendEntry(buf, 1, key, value)
	if n := testing.AllocsPerRun(100, func() { buf = AppendEntry(buf[:0], 1, key, value) }); n != 0 {
		t.Errorf("AppendEntry allocates %.1f times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := DecodeEntry(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeEntry allocates %.1f times", n)
	}
}
