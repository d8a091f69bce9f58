package keyed

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

const (
	// DefaultMaxParallelism is the number of key groups when
	// Options.MaxParallelism is zero (Flink's default lower bound).
	DefaultMaxParallelism = 128
	// MaxMaxParallelism is the largest number of key groups a job may have
	// (Flink's upper bound, 2^15).
	MaxMaxParallelism = 32768
)

// HashKey returns the 64-bit hash of a key: xxHash64 with seed 0 over the
// key bytes.
//
// It MUST NEVER CHANGE. Together with KeyGroupOf it decides which key group,
// and so which task, owns a key; checkpoints store entries by key group, and
// a restore into a backend whose hash differs would put keys into groups
// their task does not own.
func HashKey(key []byte) uint64 {
	if len(key) == 8 {
		return xxh64of8(binary.LittleEndian.Uint64(key))
	}
	return xxhash.Sum64(key)
}

// xxh64of8 is xxhash.Sum64 of the 8 bytes whose little-endian value is x
// (xxHash64, seed 0, for a length of 8: one round, then the avalanche),
// inlined for the common 8-byte key; TestHashKey8 checks it against
// xxhash.Sum64.
func xxh64of8(x uint64) uint64 {
	const (
		prime1 = 11400714785074694791
		prime2 = 14029467366897019727
		prime3 = 1609587929392839161
		prime4 = 9650029242287828579
		prime5 = 2870177450012600261
	)
	h := uint64(prime5 + 8)
	h ^= bits.RotateLeft64(x*prime2, 31) * prime1
	h = bits.RotateLeft64(h, 27)*prime1 + prime4
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

// KeyGroupOf maps a key hash (from HashKey) to its key group in
// [0, maxParallelism). It scales the high 32 bits of the hash into the range
// (a multiply and a shift, no division). Like HashKey it MUST NEVER CHANGE.
//
// maxParallelism must be in [1, MaxMaxParallelism]; this is not checked
// (it is on the per-record path).
func KeyGroupOf(hash uint64, maxParallelism int) int {
	return int(((hash >> 32) * uint64(maxParallelism)) >> 32)
}

// KeyGroupRange is the half-open interval [Start, End) of key groups.
type KeyGroupRange struct{ Start, End int }

// Contains reports whether kg is in [r.Start, r.End).
func (r KeyGroupRange) Contains(kg int) bool { return kg >= r.Start && kg < r.End }

// Len is the number of key groups in r (0 when r is empty or inverted).
func (r KeyGroupRange) Len() int { return max(0, r.End-r.Start) }

func (r KeyGroupRange) String() string { return fmt.Sprintf("[%d, %d)", r.Start, r.End) }

// RangeForTask returns the contiguous key groups owned by task taskIndex of
// an operator with the given parallelism. It is Flink's
// KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex:
// start = ceil(i*max/par), end (exclusive) = floor(((i+1)*max-1)/par)+1.
// Every range is non-empty, the ranges of tasks 0..parallelism-1 are
// consecutive and together cover [0, maxParallelism).
//
// It panics unless 1 <= parallelism <= maxParallelism <= MaxMaxParallelism
// and 0 <= taskIndex < parallelism: those are bugs in the job graph, which
// validates parallelism before it builds tasks.
func RangeForTask(maxParallelism, parallelism, taskIndex int) KeyGroupRange {
	checkParallelism(maxParallelism, parallelism)
	if taskIndex < 0 || taskIndex >= parallelism {
		panic(fmt.Sprintf("keyed: task index %d out of range [0, %d)", taskIndex, parallelism))
	}
	start := (taskIndex*maxParallelism + parallelism - 1) / parallelism
	end := ((taskIndex+1)*maxParallelism-1)/parallelism + 1
	return KeyGroupRange{Start: start, End: end}
}

// TaskForKeyGroup returns the index of the task that owns key group kg; it
// is consistent with RangeForTask (Flink's computeOperatorIndexForKeyGroup:
// kg*parallelism/maxParallelism). It panics on the same bad arguments as
// RangeForTask, and when kg is not in [0, maxParallelism).
func TaskForKeyGroup(maxParallelism, parallelism, kg int) int {
	checkParallelism(maxParallelism, parallelism)
	if kg < 0 || kg >= maxParallelism {
		panic(fmt.Sprintf("keyed: key group %d out of range [0, %d)", kg, maxParallelism))
	}
	return kg * parallelism / maxParallelism
}

func checkParallelism(maxParallelism, parallelism int) {
	if maxParallelism < 1 || maxParallelism > MaxMaxParallelism {
		panic(fmt.Sprintf("keyed: max parallelism %d out of range [1, %d]", maxParallelism, MaxMaxParallelism))
	}
	if parallelism < 1 || parallelism > maxParallelism {
		panic(fmt.Sprintf("keyed: parallelism %d out of range [1, %d]", parallelism, maxParallelism))
	}
}
