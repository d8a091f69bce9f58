package job

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// A HyperLogLog sketch (Flajolet et al. 2007) for count_distinct_approx,
// kept as the bytes of a keyed value so that it is pointer-free and
// checkpointed verbatim. It is written here rather than taken from a
// library: the well-kept Go one (github.com/axiomhq/hyperloglog) keeps its
// sketch behind pointers and a map, must be unmarshalled and marshalled
// around every insert, and computes an estimate in O(registers); a running
// aggregate needs an estimate per record. This one updates the bytes in
// place of a copy only when a register grows and keeps the estimate's sum
// alongside the registers, so reading the estimate is O(1).
//
// Layout (little-endian):
//
//	[0:8)     the estimate (int64), recomputed whenever a register grows
//	[8:12)    sparse: number of 3-byte entries that follow; hllDense: dense
//	[12:116)  histogram: how many registers hold each value 0..hllQ+1 (uint16s)
//	[116:)    sparse: entries (register index uint16, value uint8), unsorted;
//	          dense: hllM register bytes
//
// A sketch starts sparse (a key with few distinct values costs 3 bytes per
// value) and turns dense once it has more than hllSparseMax non-zero
// registers (16 KiB + 116 bytes from then on). Both forms give the same
// estimate, which depends only on the registers' histogram: Ertl's
// improved estimator ("New cardinality estimation algorithms for
// HyperLogLog sketches", 2017; the one Redis uses), which needs neither
// linear counting nor empirical bias tables and is unbiased over the
// whole range.
const (
	hllP         = 14 // precision: 2^14 registers
	hllM         = 1 << hllP
	hllQ         = 64 - hllP // bits of the hash after the index; registers hold 0..hllQ+1
	hllSparseMax = 512       // entries of a sparse sketch (1.5 KiB)
	hllHistOff   = 12
	hllHeader    = hllHistOff + 2*(hllQ+2) // bytes before the registers
	hllDense     = 1 << 31                 // the entry count of a dense sketch
	// HLLStdError is the relative standard error of count_distinct_approx,
	// 1.04/sqrt(2^14); small counts (hundreds) are nearly exact.
	HLLStdError = 0.0081
)

// hllIndexRank splits a 64-bit hash into its register index (the top hllP
// bits) and the rank of the rest (position of the first 1 bit, from 1;
// hllQ+1 when the rest is 0).
func hllIndexRank(h uint64) (uint32, uint8) {
	return uint32(h >> (64 - hllP)), uint8(bits.LeadingZeros64(h<<hllP|1<<(hllP-1)) + 1)
}

// hllAdd adds a hashed value to the sketch prev (nil: none yet). When a
// register grows it returns the new sketch, built in dst[:0] (prev is never
// modified), and true; otherwise prev and false. It does not allocate when
// dst has room (hllHeader+hllM bytes is always enough). prev must be
// hllValid; a register value or sparse index out of range in it (restored
// bytes damaged inside a well-formed shape) is reported by corrupt, with
// prev and false, instead of indexing out of range.
func hllAdd(dst, prev []byte, h uint64) (sk []byte, changed, corrupt bool) {
	idx, rank := hllIndexRank(h)
	if len(prev) == 0 {
		dst = append(dst[:0], make([]byte, hllHeader)...)
		binary.LittleEndian.PutUint16(dst[hllHistOff:], hllM)
		dst = append(dst, byte(idx), byte(idx>>8), rank)
		binary.LittleEndian.PutUint32(dst[8:12], 1)
		hllSetRegister(dst, 0, rank)
		return dst, true, false
	}
	if !hllHistSound(prev) {
		return prev, false, true
	}
	n := binary.LittleEndian.Uint32(prev[8:12])
	if n == hllDense {
		old := prev[hllHeader+idx]
		if old > hllQ+1 {
			return prev, false, true
		}
		if rank <= old {
			return prev, false, false
		}
		dst = append(dst[:0], prev...)
		dst[hllHeader+idx] = rank
		hllSetRegister(dst, old, rank)
		return dst, true, false
	}
	for k := uint32(0); k < n; k++ {
		e := prev[hllHeader+3*k:]
		if uint32(e[0])|uint32(e[1])<<8 != idx {
			continue
		}
		old := e[2]
		if old > hllQ+1 {
			return prev, false, true
		}
		if rank <= old {
			return prev, false, false
		}
		dst = append(dst[:0], prev...)
		dst[hllHeader+3*k+2] = rank
		hllSetRegister(dst, old, rank)
		return dst, true, false
	}
	if n < hllSparseMax {
		dst = append(dst[:0], prev...)
		dst = append(dst, byte(idx), byte(idx>>8), rank)
		binary.LittleEndian.PutUint32(dst[8:12], n+1)
		hllSetRegister(dst, 0, rank)
		return dst, true, false
	}
	// Dense from now on.
	dst = append(dst[:0], prev[:hllHeader]...)
	for range hllM {
		dst = append(dst, 0)
	}
	for k := uint32(0); k < n; k++ {
		e := prev[hllHeader+3*k:]
		at := uint32(e[0]) | uint32(e[1])<<8
		if at >= hllM || e[2] > hllQ+1 {
			return prev, false, true
		}
		dst[hllHeader+at] = e[2]
	}
	binary.LittleEndian.PutUint32(dst[8:12], hllDense)
	dst[hllHeader+idx] = rank
	hllSetRegister(dst, 0, rank)
	return dst, true, false
}

// hllHistSound reports whether the histogram of sk counts exactly hllM
// registers (a damaged one would make the estimator diverge).
func hllHistSound(sk []byte) bool {
	sum := 0
	for k := range hllQ + 2 {
		sum += int(binary.LittleEndian.Uint16(sk[hllHistOff+2*k:]))
	}
	return sum == hllM
}

// hllSetRegister updates the histogram and the estimate of sk for a
// register going from old to rank.
func hllSetRegister(sk []byte, old, rank uint8) {
	hist := sk[hllHistOff:hllHeader]
	o, r := 2*int(old), 2*int(rank)
	binary.LittleEndian.PutUint16(hist[o:], binary.LittleEndian.Uint16(hist[o:])-1)
	binary.LittleEndian.PutUint16(hist[r:], binary.LittleEndian.Uint16(hist[r:])+1)
	binary.LittleEndian.PutUint64(sk[0:8], uint64(hllEstimateHist(hist)))
}

// hllEstimate returns the estimated number of distinct values added to sk.
func hllEstimate(sk []byte) int64 {
	if len(sk) < hllHeader {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(sk[0:8]))
}

// hllEstimateHist is Ertl's improved estimator over a histogram of
// register values (hllQ+2 uint16s).
func hllEstimateHist(hist []byte) int64 {
	const m = float64(hllM)
	c := func(k int) float64 { return float64(binary.LittleEndian.Uint16(hist[2*k:])) }
	z := m * hllTau((m-c(hllQ+1))/m)
	for k := hllQ; k >= 1; k-- {
		z += c(k)
		z *= 0.5
	}
	z += m * hllSigma(c(0)/m)
	return int64(math.Round(m * m / (2 * math.Ln2) / z))
}

// hllMaxIterations bounds the series of hllSigma and hllTau: for x in
// [0, 1] they converge in well under 64 steps in float64.
const hllMaxIterations = 200

func hllSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for range hllMaxIterations {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
	return z
}

func hllTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for range hllMaxIterations {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
	return z / 3
}

// hllValid reports whether sk is a well-formed sketch (restored bytes are
// checked before they are trusted).
func hllValid(sk []byte) bool {
	if len(sk) < hllHeader {
		return false
	}
	n := binary.LittleEndian.Uint32(sk[8:12])
	if n == hllDense {
		return len(sk) == hllHeader+hllM
	}
	return n <= hllSparseMax && len(sk) == hllHeader+3*int(n)
}
