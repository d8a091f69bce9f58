package snapshot

import (
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// blockFormatV1 is the first byte of every full block (a key group's base
// image): magic and format version in one. A block starting with any
// byte but this or blockFormatDeltaV1 is corrupt (or from a newer streamd,
// which this one cannot read — the same thing to recovery).
const blockFormatV1 byte = 0xB1

// blockFormatDeltaV1 is the first byte of every delta block: the header
// of version 1, entries that each carry their operation (AppendDeltaEntry).
const blockFormatDeltaV1 byte = 0xB2

// blockTrailerBytes is the size of the crc32c at the end of a block.
const blockTrailerBytes = 4

// minEntryBytes is the encoded size of the smallest entry (state 0, empty
// key, empty value): three one-byte uvarints.
const minEntryBytes = 3

// minDeltaEntryBytes is the encoded size of the smallest delta entry (the
// deletion of an empty key of state 0): two one-byte uvarints.
const minDeltaEntryBytes = 2

// zstdSlackBytes is the room beyond the raw length given to the zstd decoder.
const zstdSlackBytes = 64

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zstd coders are shared by every Store: EncodeAll and DecodeAll are safe for
// concurrent use, each running at most GOMAXPROCS at a time.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(false), // the block has its own crc32c
		)
		if err != nil {
			panic("snapshot: cannot create zstd encoder: " + err.Error())
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxBlockRawBytes),
			zstd.WithDecodeAllCapLimit(true), // never inflate beyond the declared raw length
		)
		if err != nil {
			panic("snapshot: cannot create zstd decoder: " + err.Error())
		}
		return d
	})
)

// Entry is one decoded state entry. Key and Value alias the buffer it was
// decoded from.
type Entry struct {
	State      int // index into the enclosing block's state table
	Key, Value []byte
	// Op is the operation of an entry of a delta block: OpPut (the
	// only one of a full block), OpDelete (Value is nil) or OpAppend.
	Op uint8
}

// AppendEntry appends the encoding of one entry to dst:
//
//	uvarint state | uvarint len(key) | key | uvarint len(value) | value
func AppendEntry(dst []byte, state int, key, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(state))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// entrySizeBound returns an upper bound of the encoded size of an entry.
func entrySizeBound(state, keyBytes, valueBytes int) int {
	return uvarintLen(uint64(state)) + uvarintLen(uint64(keyBytes)) + keyBytes +
		uvarintLen(uint64(valueBytes)) + valueBytes
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeEntry decodes the entry at the start of src and returns it with the
// number of bytes it occupied. A truncated or malformed entry is a
// corruption error.
func DecodeEntry(src []byte) (e Entry, n int, err error) {
	state, k := binary.Uvarint(src)
	if k <= 0 || state > MaxStatesPerBlock {
		return Entry{}, 0, corruptf("entry: bad state id")
	}
	n = k
	keyLen, k := binary.Uvarint(src[n:])
	if k <= 0 || keyLen > uint64(len(src)-n-k) {
		return Entry{}, 0, corruptf("entry: bad key length")
	}
	n += k
	key := src[n : n+int(keyLen) : n+int(keyLen)]
	n += int(keyLen)
	valueLen, k := binary.Uvarint(src[n:])
	if k <= 0 || valueLen > uint64(len(src)-n-k) {
		return Entry{}, 0, corruptf("entry: bad value length")
	}
	n += k
	value := src[n : n+int(valueLen) : n+int(valueLen)]
	n += int(valueLen)
	return Entry{State: int(state), Key: key, Value: value}, n, nil
}

// The operations of a delta (DeltaView.Changes, ReadKeyed).
const (
	// OpPut sets the entry to the value: every entry of a full image,
	// and an inserted or changed entry of a delta.
	OpPut uint8 = 0
	// OpDelete removes the entry (no value).
	OpDelete uint8 = 1
	// OpAppend appends the value to the entry's value: the elements added
	// to a list state's entry since the previous checkpoint.
	OpAppend uint8 = 2
	numOps         = 3
)

// AppendDeltaEntry appends the encoding of one operation (OpPut, OpDelete,
// OpAppend) of a delta block to dst:
//
//	uvarint state<<2 | op | uvarint len(key) | key [| uvarint len(value) | value]
//
// A deletion has no value: value is ignored.
func AppendDeltaEntry(dst []byte, state int, key, value []byte, op uint8) []byte {
	dst = binary.AppendUvarint(dst, uint64(state)<<2|uint64(op))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	if op == OpDelete {
		return dst
	}
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// deltaEntrySizeBound returns an upper bound of the encoded size of a
// delta entry.
func deltaEntrySizeBound(state, keyBytes, valueBytes int, op uint8) int {
	n := uvarintLen(uint64(state)<<2|3) + uvarintLen(uint64(keyBytes)) + keyBytes
	if op != OpDelete {
		n += uvarintLen(uint64(valueBytes)) + valueBytes
	}
	return n
}

// DecodeDeltaEntry decodes the delta entry (AppendDeltaEntry) at the start
// of src and returns it with the number of bytes it occupied. A deletion
// has a nil Value. A truncated or malformed entry (or an unknown
// operation) is a corruption error.
func DecodeDeltaEntry(src []byte) (e Entry, n int, err error) {
	op, k := binary.Uvarint(src)
	if k <= 0 || op>>2 > MaxStatesPerBlock || op&3 >= numOps {
		return Entry{}, 0, corruptf("delta entry: bad operation")
	}
	n = k
	keyLen, k := binary.Uvarint(src[n:])
	if k <= 0 || keyLen > uint64(len(src)-n-k) {
		return Entry{}, 0, corruptf("delta entry: bad key length")
	}
	n += k
	key := src[n : n+int(keyLen) : n+int(keyLen)]
	n += int(keyLen)
	if uint8(op&3) == OpDelete {
		return Entry{State: int(op >> 2), Key: key, Op: OpDelete}, n, nil
	}
	valueLen, k := binary.Uvarint(src[n:])
	if k <= 0 || valueLen > uint64(len(src)-n-k) {
		return Entry{}, 0, corruptf("delta entry: bad value length")
	}
	n += k
	value := src[n : n+int(valueLen) : n+int(valueLen)]
	n += int(valueLen)
	return Entry{State: int(op >> 2), Key: key, Value: value, Op: uint8(op & 3)}, n, nil
}

// decodeEntryOf decodes one entry of a full (delta false) or a delta block.
func decodeEntryOf(delta bool, src []byte) (Entry, int, error) {
	if delta {
		return DecodeDeltaEntry(src)
	}
	return DecodeEntry(src)
}

// checkEntries walks raw and verifies that it holds exactly count well-formed
// entries (delta entries if delta) whose state ids are below numStates.
func checkEntries(raw []byte, delta bool, count, numStates int) error {
	seen := 0
	for off := 0; off < len(raw); seen++ {
		e, n, err := decodeEntryOf(delta, raw[off:])
		if err != nil {
			return withContext(err, "entry "+strconv.Itoa(seen))
		}
		if e.State >= numStates {
			return corruptf("entry %d: state id %d outside the block's table of %d states", seen, e.State, numStates)
		}
		off += n
	}
	if seen != count {
		return corruptf("block holds %d entries, its header says %d", seen, count)
	}
	return nil
}

// AppendBlock appends one block to dst:
//
//	byte     0xB1 (magic and format version 1)
//	byte     compression (Compression; may be "none" even if another was
//	         asked for, when compressing did not make the payload smaller)
//	uvarint  raw length (bytes of encoded entries before compression)
//	uvarint  number of entries
//	uvarint  number of state names, then each: uvarint length, bytes
//	…        payload: the entries, compressed
//	uint32   crc32c (Castagnoli, little endian) of every byte before it
//
// entries are encoded with AppendEntry; their state ids index states. The
// state table travels with the block so that a block stays decodable when a
// later checkpoint references it (incremental checkpoints) after the job's
// set of states has changed.
func AppendBlock(dst []byte, c Compression, states []string, entries []byte) ([]byte, error) {
	return appendBlockChecked(dst, false, c, states, entries)
}

// AppendDeltaBlock appends one delta block to dst: the layout of
// AppendBlock with first byte 0xB2 (delta, format version 1), whose
// entries are operations encoded with AppendDeltaEntry. The operations of
// one key group's delta apply in order (a checkpoint writes its deletions
// first, then its inserted and changed entries).
func AppendDeltaBlock(dst []byte, c Compression, states []string, entries []byte) ([]byte, error) {
	return appendBlockChecked(dst, true, c, states, entries)
}

func appendBlockChecked(dst []byte, delta bool, c Compression, states []string, entries []byte) ([]byte, error) {
	if c >= numCompressions {
		return dst, invalidf("block: unknown compression %d", uint8(c))
	}
	if len(entries) > MaxBlockRawBytes {
		return dst, invalidf("block: %d bytes of entries exceed the limit of %d", len(entries), MaxBlockRawBytes)
	}
	if len(states) > MaxStatesPerBlock {
		return dst, invalidf("block: %d states exceed the limit of %d", len(states), MaxStatesPerBlock)
	}
	for _, name := range states {
		if len(name) > MaxStateNameBytes {
			return dst, invalidf("block: state name of %d bytes exceeds the limit of %d", len(name), MaxStateNameBytes)
		}
	}
	count := 0
	for off := 0; off < len(entries); count++ {
		e, n, err := decodeEntryOf(delta, entries[off:])
		if err != nil || e.State >= len(states) {
			return dst, invalidf("block: entry %d is malformed or names a state outside the table", count)
		}
		off += n
	}
	if delta {
		return appendDeltaBlock(dst, c, count, states, entries), nil
	}
	return appendBlock(dst, c, count, states, entries), nil
}

// appendBlock is AppendBlock without the validation; the writer calls it
// with entries it encoded itself.
func appendBlock(dst []byte, c Compression, count int, states []string, entries []byte) []byte {
	return appendBlockFormat(dst, blockFormatV1, c, count, states, entries)
}

// appendDeltaBlock is AppendDeltaBlock without the validation.
func appendDeltaBlock(dst []byte, c Compression, count int, states []string, entries []byte) []byte {
	return appendBlockFormat(dst, blockFormatDeltaV1, c, count, states, entries)
}

func appendBlockFormat(dst []byte, format byte, c Compression, count int, states []string, entries []byte) []byte {
	start := len(dst)
	dst = append(dst, format, byte(c))
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	dst = binary.AppendUvarint(dst, uint64(count))
	dst = binary.AppendUvarint(dst, uint64(len(states)))
	for _, name := range states {
		dst = binary.AppendUvarint(dst, uint64(len(name)))
		dst = append(dst, name...)
	}
	payloadStart := len(dst)
	switch c {
	case CompressionNone:
		dst = append(dst, entries...)
	case CompressionS2:
		maxLen := s2.MaxEncodedLen(len(entries))
		dst = slices.Grow(dst, maxLen+blockTrailerBytes)
		enc := s2.Encode(dst[payloadStart:payloadStart+maxLen], entries)
		dst = dst[:payloadStart+len(enc)]
	case CompressionZstd:
		// Room for the worst case, so EncodeAll does not reallocate.
		dst = slices.Grow(dst, len(entries)+len(entries)/64+64+blockTrailerBytes)
		dst = zstdEncoder().EncodeAll(entries, dst)
	default:
		panic("snapshot: invariant violated: appendBlock called with unknown compression " + c.String())
	}
	if c != CompressionNone && len(dst)-payloadStart >= len(entries) {
		// Incompressible: storing it raw is smaller and faster to read.
		dst = append(dst[:payloadStart], entries...)
		dst[start+1] = byte(CompressionNone)
	}
	crc := crc32.Checksum(dst[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

// blockView is a parsed, checksum-verified block whose payload has not been
// decompressed yet.
type blockView struct {
	delta       bool // a delta block (blockFormatDeltaV1)
	compression Compression
	rawLen      int
	count       int
	numStates   int
	table       []byte // the encoded state names
	payload     []byte
}

// parseBlock verifies the checksum and the header of src.
func parseBlock(src []byte) (blockView, error) {
	var b blockView
	if len(src) < 2+3+blockTrailerBytes {
		return b, corruptf("block of %d bytes is too short", len(src))
	}
	body := src[:len(src)-blockTrailerBytes]
	stored := binary.LittleEndian.Uint32(src[len(body):])
	if computed := crc32.Checksum(body, castagnoli); computed != stored {
		return b, corruptf("block checksum mismatch (stored %08x, computed %08x)", stored, computed)
	}
	minBytes := uint64(minEntryBytes)
	switch body[0] {
	case blockFormatV1:
	case blockFormatDeltaV1:
		b.delta = true
		minBytes = minDeltaEntryBytes
	default:
		return b, corruptf("unknown block format version 0x%02x", body[0])
	}
	b.compression = Compression(body[1])
	if b.compression >= numCompressions {
		return b, corruptf("block: unknown compression %d", body[1])
	}
	off := 2
	rawLen, n := binary.Uvarint(body[off:])
	if n <= 0 || rawLen > MaxBlockRawBytes {
		return b, corruptf("block: bad raw length")
	}
	off += n
	count, n := binary.Uvarint(body[off:])
	if n <= 0 || count > rawLen/minBytes {
		return b, corruptf("block: bad entry count")
	}
	off += n
	numStates, n := binary.Uvarint(body[off:])
	if n <= 0 || numStates > MaxStatesPerBlock {
		return b, corruptf("block: bad state table size")
	}
	off += n
	tableStart := off
	for i := uint64(0); i < numStates; i++ {
		nameLen, n := binary.Uvarint(body[off:])
		if n <= 0 || nameLen > MaxStateNameBytes || nameLen > uint64(len(body)-off-n) {
			return b, corruptf("block: bad state name %d", i)
		}
		off += n + int(nameLen)
	}
	b.rawLen = int(rawLen)
	b.count = int(count)
	b.numStates = int(numStates)
	b.table = body[tableStart:off]
	b.payload = body[off:]
	return b, nil
}

// nextStateName decodes the first name of an encoded state table and returns
// it with the rest of the table. The table was validated by parseBlock.
func nextStateName(table []byte) (name, rest []byte) {
	n, k := binary.Uvarint(table)
	return table[k : k+int(n)], table[k+int(n):]
}

// decompress returns the raw entries of b, using scratch when it needs a
// buffer (grown as needed and returned for reuse). For CompressionNone the
// entries alias the block.
func (b *blockView) decompress(scratch []byte) (raw, newScratch []byte, err error) {
	switch b.compression {
	case CompressionNone:
		if len(b.payload) != b.rawLen {
			return nil, scratch, corruptf("block: payload of %d bytes, header says %d", len(b.payload), b.rawLen)
		}
		return b.payload, scratch, nil
	case CompressionS2:
		n, err := s2.DecodedLen(b.payload)
		if err != nil || n != b.rawLen {
			return nil, scratch, corruptf("block: s2 payload does not match the raw length %d", b.rawLen)
		}
		if cap(scratch) < b.rawLen {
			scratch = make([]byte, b.rawLen)
		}
		raw, err := s2.Decode(scratch[:b.rawLen], b.payload)
		if err != nil {
			return nil, scratch, corruptf("block: cannot decompress s2 payload: %v", err)
		}
		return raw, scratch, nil
	case CompressionZstd:
		// A little slack lets the decoder use its fast paths; the capacity
		// limit means a damaged frame cannot inflate without bound.
		limit := b.rawLen + zstdSlackBytes
		if cap(scratch) < limit {
			scratch = make([]byte, 0, limit)
		}
		raw, err := zstdDecoder().DecodeAll(b.payload, scratch[:0:limit])
		if err != nil {
			return nil, scratch, corruptf("block: cannot decompress zstd payload: %v", err)
		}
		if len(raw) != b.rawLen {
			return nil, scratch, corruptf("block: zstd payload inflates to %d bytes, header says %d", len(raw), b.rawLen)
		}
		return raw, scratch, nil
	default:
		panic("snapshot: invariant violated: parseBlock accepted compression " + b.compression.String())
	}
}

// Block is a decoded block.
type Block struct {
	// Delta is set for a delta block: its entries are operations
	// (DecodeDeltaEntry), not state entries (DecodeEntry).
	Delta bool
	// Compression is the compression the payload was stored with.
	Compression Compression
	// States is the block's state-name table; Entry.State indexes it.
	States []string
	// Count is the number of entries.
	Count int
	// Entries are the raw encoded entries (decode them with DecodeEntry).
	// They alias the scratch buffer or, for CompressionNone, the block.
	Entries []byte
}

// DecodeBlock verifies src (checksum, format version, header, payload,
// every entry) and decodes it, a full block or a delta block (Block.Delta). scratch is used for the decompressed entries
// if it is large enough. Every failure is a corruption error.
func DecodeBlock(scratch []byte, src []byte) (Block, error) {
	bv, err := parseBlock(src)
	if err != nil {
		return Block{}, err
	}
	raw, _, err := bv.decompress(scratch)
	if err != nil {
		return Block{}, err
	}
	if err := checkEntries(raw, bv.delta, bv.count, bv.numStates); err != nil {
		return Block{}, err
	}
	states := make([]string, 0, bv.numStates)
	for table := bv.table; len(table) > 0; {
		var name []byte
		name, table = nextStateName(table)
		states = append(states, string(name))
	}
	return Block{Delta: bv.delta, Compression: bv.compression, States: states, Count: bv.count, Entries: raw}, nil
}
