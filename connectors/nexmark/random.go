package nexmark

import "math"

// JavaRandom is java.util.Random ported bit for bit: the 48-bit linear
// congruential generator of the JDK (Knuth, TAOCP 3.2.1) with the JDK's
// seed scrambling, next(bits), nextInt(bound) with its rejection loop,
// nextLong, nextDouble and nextBoolean exactly as java.util.Random defines
// them (JDK 17 still uses these legacy algorithms in java.util.Random).
// The zero value is not seeded; use NewJavaRandom.
type JavaRandom struct {
	seed int64 // 48 significant bits
}

const (
	javaMultiplier = 0x5DEECE66D
	javaAddend     = 0xB
	javaMask       = 1<<48 - 1
)

// Jumping ahead: k steps of the LCG, seed ← (seed·a + c) mod 2^48, are
// one affine map seed ← (seed·jumpMulK + jumpAddK) mod 2^48, because
// composing affine maps gives an affine map: a·(A·s + C) + c =
// (a·A)·s + (a·C + c). So the seeds of draws k+1 … k+4 can be computed
// from the seed of draw k independently of each other, which lets the
// CPU overlap four multiplications instead of waiting for each. The
// constants are exact: Go evaluates untyped constant expressions with
// arbitrary precision, and reducing mod 2^48 after each composition is
// the same as reducing once at the end.
const (
	jumpMul1 = javaMultiplier
	jumpAdd1 = javaAddend
	jumpMul2 = jumpMul1 * javaMultiplier & javaMask
	jumpAdd2 = (jumpAdd1*javaMultiplier + javaAddend) & javaMask
	jumpMul3 = jumpMul2 * javaMultiplier & javaMask
	jumpAdd3 = (jumpAdd2*javaMultiplier + javaAddend) & javaMask
	jumpMul4 = jumpMul3 * javaMultiplier & javaMask
	jumpAdd4 = (jumpAdd3*javaMultiplier + javaAddend) & javaMask
)

// The hot loops keep the seed in the top 48 bits of a uint64,
// h = seed << 16. Then uint64 arithmetic wraps exactly where the LCG's
// mod 2^48 does — ((seed·a + c) mod 2^48) << 16 = (h·a + c<<16) mod 2^64
// — so no mask is needed, and next(bits) is h >> (64 - bits).
const (
	highAdd1 = jumpAdd1 << 16
	highAdd2 = jumpAdd2 << 16
	highAdd3 = jumpAdd3 << 16
	highAdd4 = jumpAdd4 << 16
)

// high returns the seed as h = seed << 16.
func (r *JavaRandom) high() uint64 { return uint64(r.seed) << 16 }

// setHigh sets the seed from h = seed << 16.
func (r *JavaRandom) setHigh(h uint64) { r.seed = int64(h >> 16) }

// NewJavaRandom returns the generator `new java.util.Random(seed)`.
func NewJavaRandom(seed int64) JavaRandom {
	return JavaRandom{seed: (seed ^ javaMultiplier) & javaMask}
}

// SetSeed is java.util.Random.setSeed.
func (r *JavaRandom) SetSeed(seed int64) { r.seed = (seed ^ javaMultiplier) & javaMask }

// next is java.util.Random.next(bits): bits in [1, 32].
func (r *JavaRandom) next(bits uint) int32 {
	r.seed = (r.seed*javaMultiplier + javaAddend) & javaMask
	return int32(uint64(r.seed) >> (48 - bits))
}

// NextInt is java.util.Random.nextInt().
func (r *JavaRandom) NextInt() int32 { return r.next(32) }

// NextIntn is java.util.Random.nextInt(bound). bound must be positive
// (Java throws IllegalArgumentException; here it is a bug and panics).
func (r *JavaRandom) NextIntn(bound int32) int32 {
	if bound <= 0 {
		panic("nexmark: JavaRandom.NextIntn: bound must be positive")
	}
	v := r.next(31)
	m := bound - 1
	if bound&m == 0 { // a power of two
		return int32((int64(bound) * int64(v)) >> 31)
	}
	// Java: for (int u = r; u - (r = u % bound) + m < 0; u = next(31));
	// int32 arithmetic wraps in Go as in Java.
	for u := v; ; u = r.next(31) {
		v = u % bound
		if u-v+m >= 0 {
			break
		}
	}
	return v
}

// NextLong is java.util.Random.nextLong().
func (r *JavaRandom) NextLong() int64 {
	hi := int64(r.next(32))
	lo := int64(r.next(32))
	return hi<<32 + lo
}

// NextDouble is java.util.Random.nextDouble().
func (r *JavaRandom) NextDouble() float64 {
	hi := int64(r.next(26))
	lo := int64(r.next(27))
	return float64(hi<<27+lo) * 0x1.0p-53
}

// NextBoolean is java.util.Random.nextBoolean().
func (r *JavaRandom) NextBoolean() bool { return r.next(1) != 0 }

// javaRound is java.lang.Math.round(double) as the JDK (8 and later)
// implements it: round half up, NaN to 0, saturating at the long range.
func javaRound(a float64) int64 {
	bits := math.Float64bits(a)
	biasedExp := int64(bits&0x7FF0000000000000) >> 52
	shift := (53 - 2 + 1023) - biasedExp // SIGNIFICAND_WIDTH - 2 + EXP_BIAS
	if shift&-64 == 0 {
		r := int64(bits&0x000FFFFFFFFFFFFF | 0x0010000000000000)
		if int64(bits) < 0 {
			r = -r
		}
		return ((r >> uint(shift)) + 1) >> 1
	}
	return javaD2L(a)
}

// javaD2L is Java's (long) cast of a double: NaN to 0, saturating.
func javaD2L(a float64) int64 {
	switch {
	case a != a:
		return 0
	case a >= 0x1p63:
		return math.MaxInt64
	case a <= -0x1p63:
		return math.MinInt64
	}
	return int64(a)
}
