package keyed

import (
	"encoding/binary"
	"math/bits"
)

// The layout. Everything that grows with the number of entries lives in
// pointer-free pages:
//
//   - slot pages ([]slot): the open-addressing hash table of one key
//     group, linear probing, tombstones. A slot is {tag, addr}: tag is the
//     high 32 bits of the entry hash, and the table index is the top bits
//     of the tag, so a rehash never reads entries. addr 0 is an empty slot,
//     tombAddr a deleted one. Snapshots never read slots (ForEach walks the
//     data pages), so slot pages are private to the owner: written in
//     place even while snapshots are open, never copied on write.
//   - data pages ([]byte): records appended one after another. A record
//     never spans pages; a record larger than a page gets a page of its
//     own (a "big page", len > page size, the record at offset 0).
//
// An address is pageIndex<<pageShift | offset within the page. Page index
// 0 is never used, so address 0 means "none" (empty slot, end of a map
// list).
//
// Record layout (little endian):
//
//	[0:2)   state ID (low 12 bits) | flags << 12
//	[2:4)   encoded key length
//	[4:8)   value length
//	[8:12)  value capacity (value length <= capacity; the rest is slack)
//	[12:20) map entries only: prev, next addresses of the key's user-key list
//	then    encoded key: uvarint(len(key)) || key || userKey
//	then    value bytes, then slack up to the capacity
//
// A map state has, per key, a head record (flagHead, value = first entry
// address u32 || entry count u32) and one entry record per user key
// (flagEntry), doubly linked so iteration needs no scan and removal is O(1).
// Records that die (deleted, or moved because the value outgrew its
// capacity) get flagDead, so a snapshot can walk data pages sequentially.
const (
	hdrBytes  = 12
	linkBytes = 8
	ttlBytes  = 8

	flagDead  = 1
	flagHead  = 2
	flagEntry = 4

	stateBits = 12
	stateMask = 1<<stateBits - 1

	tombAddr = ^uint32(0)

	minDataPageBytes = 256
	minSlotBits      = 3
)

// slot is one hash-table slot; in a slot page it is 8 bytes, tag then
// addr, little endian. Slot and data pages are both []byte, so one pool
// serves both.
type slot struct{ tag, addr uint32 }

func slotAt(sp []byte, j int) slot {
	v := binary.LittleEndian.Uint64(sp[j*8:])
	return slot{tag: uint32(v), addr: uint32(v >> 32)}
}

func putSlot(sp []byte, j int, s slot) {
	binary.LittleEndian.PutUint64(sp[j*8:], uint64(s.tag)|uint64(s.addr)<<32)
}

// pageRef is one entry of a page table. epoch is the backend epoch the page
// was created (or copied) in: the page may be written in place only while
// no unreleased snapshot has an epoch >= it.
type pageRef struct {
	b     []byte
	epoch uint64
	used  int // bytes of records (live and dead) at the start of b
}

// table is one key group: its page tables and counters. A table, like a
// page, is copied before the first write after a snapshot that shares it
// (a copy of O(pages) page references); the pages are copied one by one
// as writes reach them.
type table struct {
	epoch   uint64 // epoch this header was created or copied in
	version uint64 // epoch of the last write; see Snapshot.KeyGroupVersion

	slots [][]byte // slot pages; never shared with a snapshot
	slot0 []byte   // slots[0] when there is exactly one slot page, else nil (one load less per lookup)
	bits  uint     // log2 of the slot count; meaningful when slots != nil
	count int      // live slots: entries and map heads
	tombs int      // tombstone slots

	data      []pageRef // data[0] is a placeholder so that address 0 is "none"
	tail      int       // index of the small page appends go to; 0: none
	liveBytes int       // bytes of live records in small pages
	usedBytes int       // bytes of all records (live and dead) in small pages
	holes     int       // nil references in data[1:] (freed big pages)
	entries   int       // live entries, heads excluded (what ForEach yields)

	// The change log (changes.go): every write to a record of the group
	// appends (epoch - logEpoch0)<<32 | address. Snapshot.Changes answers
	// for a version since >= logSince from it. Like the data pages, the
	// backing array is shared with the snapshots' copies of the table,
	// which read only their own length of it.
	log       []uint64
	logEpoch0 uint64 // the epoch entries count from
	logSince  uint64 // the oldest version Changes answers for (0: the empty group)
	logOff    uint64 // the epoch in which the log outgrew the group: no logging until the next
	logHint   int    // the length the log had then: the capacity of its next one
}

// dir is the backend's table of key groups, copied on write like a table.
type dir struct {
	epoch  uint64
	tables []*table // index kg - Range.Start; nil: never written
}

func hwOf(id StateID, flags uint16) uint16 { return uint16(id) | flags<<stateBits }

func le16(p []byte) int     { return int(binary.LittleEndian.Uint16(p)) }
func le32(p []byte) int     { return int(binary.LittleEndian.Uint32(p)) }
func put16(p []byte, v int) { binary.LittleEndian.PutUint16(p, uint16(v)) }
func put32(p []byte, v int) { binary.LittleEndian.PutUint32(p, uint32(v)) }

// recKeyOff is the offset of the encoded key of the record at off.
func recKeyOff(p []byte, off int) int {
	if p[off+1]&(flagEntry<<(stateBits-8)) != 0 {
		return off + hdrBytes + linkBytes
	}
	return off + hdrBytes
}

func recFlags(p []byte, off int) int     { return le16(p[off:]) >> stateBits }
func recState(p []byte, off int) StateID { return StateID(le16(p[off:]) & stateMask) }
func recKeyLen(p []byte, off int) int    { return le16(p[off+2:]) }
func recValLen(p []byte, off int) int    { return le32(p[off+4:]) }
func recValCap(p []byte, off int) int    { return le32(p[off+8:]) }

// recSize is the number of bytes the record at off occupies.
func recSize(p []byte, off int) int {
	return recKeyOff(p, off) - off + recKeyLen(p, off) + recValCap(p, off)
}

func recKey(p []byte, off int) []byte {
	ko := recKeyOff(p, off)
	kl := recKeyLen(p, off)
	return p[ko : ko+kl : ko+kl]
}

func recValOff(p []byte, off int) int { return recKeyOff(p, off) + recKeyLen(p, off) }

func recValue(p []byte, off int) []byte {
	vo := recValOff(p, off)
	vl := recValLen(p, off)
	return p[vo : vo+vl : vo+vl]
}

func recordBytes(entry bool, keyLen, valCap int) int {
	n := hdrBytes + keyLen + valCap
	if entry {
		n += linkBytes
	}
	return n
}

// Hashes of the three record kinds. The table hash must mix the state ID
// into the key hash, and its high 32 bits (the tag, whose top bits index
// the table) must not be the key hash's high 32 bits (every key of a group
// shares KeyGroupOf's bits of them). headHash and entryHash apply a 64-bit
// finalizer (murmur3's fmix64); valueHash, on the per-record path, swaps
// the halves instead. These only place records within a group (slots are
// never in a checkpoint) and may change between versions; HashKey may not.
const (
	seedValue = 0x9E3779B97F4A7C15
	seedHead  = 0xC2B2AE3D27D4EB4F
	seedEntry = 0x165667B19E3779F9
)

func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// valueHash, the hot path's, needs no finalizer: only its high 32 bits
// are used (the tag), and those are the low 32 bits of the key hash, which
// xxHash64 mixes as well as the high ones, independently of KeyGroupOf
// (which reads only the high 32), xored with a per-state constant.
func valueHash(keyHash uint64, id StateID) uint64 {
	return bits.RotateLeft64(keyHash, 32) ^ (uint64(id)+1)*seedValue
}

func headHash(keyHash uint64, id StateID) uint64 {
	return fmix64(keyHash ^ (uint64(id)+1)*seedHead)
}

func entryHash(keyHash uint64, id StateID, userKeyHash uint64) uint64 {
	return fmix64(keyHash ^ (uint64(id)+1)*seedEntry ^ fmix64(userKeyHash))
}

func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// val is a value to store: [8-byte timestamp if hasTS] || a || b.
type val struct {
	ts    int64
	hasTS bool
	a, b  []byte
}

func (v *val) size() int {
	n := len(v.a) + len(v.b)
	if v.hasTS {
		n += ttlBytes
	}
	return n
}

func (v *val) writeTo(dst []byte) {
	if v.hasTS {
		binary.LittleEndian.PutUint64(dst, uint64(v.ts))
		dst = dst[ttlBytes:]
	}
	n := copy(dst, v.a)
	copy(dst[n:], v.b)
}
