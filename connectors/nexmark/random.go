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
