package nexmark

import (
	"encoding/binary"
	"slices"
)

// This file is Beam's StringsGenerator, written for speed. Each shortcut
// draws exactly the values of java.util.Random that Beam's code draws, in
// the same order, and says why next to it; reference_test.go checks the
// result against the straightforward port.

// appendNextString is StringsGenerator.nextString: up to maxLength
// random lower-case letters and spaces, then String.trim().
//
// Per character Beam draws nextInt(13) and, unless that is 0 (a space),
// nextInt(26). The seeds of the next four draws are computed from the
// current one (jump-ahead, see jumpMul2), independently of each other:
// when the next two characters are both letters (85%), as the branch
// predictor guesses, they cost one step of the LCG's serial dependency
// chain instead of four. A character with a draw that nextInt's
// rejection loop might reject (nextIntRejected26: below 2^-24 per
// character) is drawn the plain way instead (nextStringChar).
func appendNextString(buf []byte, r *JavaRandom, maxLength int32) []byte {
	n := int(minStringLength + r.NextIntn(maxLength-minStringLength))
	start := len(buf)
	buf = slices.Grow(buf, n)[:start+n]
	out := buf[start:]
	h := r.high()
	for k := 0; k < len(out); {
		// The loop without the rare call keeps h in a register.
		for k < len(out) {
			h1 := h*jumpMul1 + highAdd1 // nextInt(13) of this character
			h2 := h*jumpMul2 + highAdd2 // nextInt(26) of this character
			if h1 >= nextIntRejected26 || h2 >= nextIntRejected26 {
				break
			}
			v1, l2 := int32(h1>>33)%13, int32(h2>>33)%26 // next(31)
			if v1 == 0 {
				out[k] = ' '
				h = h1
				k++
				continue
			}
			if k+1 < len(out) { // the next character's draws, if it follows a letter
				h3 := h*jumpMul3 + highAdd3
				h4 := h*jumpMul4 + highAdd4
				if v3 := int32(h3>>33) % 13; v3 != 0 && h3 < nextIntRejected26 && h4 < nextIntRejected26 {
					out[k], out[k+1] = byte('a'+l2), byte('a'+int32(h4>>33)%26)
					h = h4
					k += 2
					continue
				}
			}
			out[k] = byte('a' + l2)
			h = h2
			k++
		}
		if k < len(out) {
			out[k], h = nextStringChar(h)
			k++
		}
	}
	r.setHigh(h)
	// trim: only spaces can be at either end.
	i, j := start, len(buf)
	for i < j && buf[i] == ' ' {
		i++
	}
	for j > i && buf[j-1] == ' ' {
		j--
	}
	k := copy(buf[start:], buf[i:j])
	return buf[:start+k]
}

// nextIntRejected26, compared with a seed h (see JavaRandom.high), is
// where nextInt(26)'s rejection loop starts: it rejects a draw
// u = next(31) when u - u%26 + 25 overflows int32, that is when u is in
// the last, incomplete block of 26 values below 2^31 (the top 24 values).
// nextInt(13)'s incomplete block is its top 11 values, so one comparison
// with this bound catches every draw that either would reject, and a few
// more, which the plain way draws just as well.
const nextIntRejected26 = (1 << 31) / 26 * 26 << 33

// nextStringChar draws one character of nextString from the seed h the
// plain way, rejection loops included, and returns it with the seed
// after it.
//
//go:noinline
func nextStringChar(h uint64) (byte, uint64) {
	var r JavaRandom
	r.setHigh(h)
	if r.NextIntn(13) == 0 {
		return ' ', r.high()
	}
	return byte('a' + r.NextIntn(26)), r.high()
}

// nextExtraLength is the first half of StringsGenerator.nextExtra: it
// draws the length of the padding such that currentSize plus that length
// is desiredAverageSize on average. fillExactString draws the characters.
func nextExtraLength(r *JavaRandom, currentSize, desiredAverageSize int) int {
	if currentSize > desiredAverageSize {
		return 0
	}
	desiredAverageSize -= currentSize
	delta := int(int32(javaRound(float64(float64(desiredAverageSize) * 0.2))))
	minSize := desiredAverageSize - delta
	if delta == 0 {
		return minSize
	}
	return minSize + int(r.NextIntn(int32(2*delta)))
}

// fillExactString fills dst with StringsGenerator.nextExactString(random,
// len(dst)): Beam draws one nextInt() per six characters and appends
// 'a' + rnd%26, rnd /= 26 six times, with Java's truncating division and
// signed remainder ('H'..'z').
//
// Two shortcuts, both exact:
//   - Four draws at a time: their seeds are computed from one seed with
//     the jump-ahead constants, independently of each other, and the
//     chain advances by four. Their 24 characters are stored as three
//     8-byte words. Every draw but the last yields six characters, the
//     last the rest: ceil(len/6) draws, as Beam's.
//   - The six characters of a draw come from three base-676 digits
//     (base676, sixChars): three multiplications and three table
//     lookups instead of a chain of six divisions.
func fillExactString(dst []byte, r *JavaRandom) {
	h := r.high()
	i := 0
	for ; len(dst)-i >= 24; i += 24 {
		h1 := h*jumpMul1 + highAdd1
		h2 := h*jumpMul2 + highAdd2
		h3 := h*jumpMul3 + highAdd3
		h4 := h*jumpMul4 + highAdd4
		c1 := sixChars(base676(int32(h1 >> 32))) // next(32)
		c2 := sixChars(base676(int32(h2 >> 32)))
		c3 := sixChars(base676(int32(h3 >> 32)))
		c4 := sixChars(base676(int32(h4 >> 32)))
		b := dst[i : i+24]
		binary.LittleEndian.PutUint64(b[0:], c1|c2<<48)
		binary.LittleEndian.PutUint64(b[8:], c2>>16|c3<<32)
		binary.LittleEndian.PutUint64(b[16:], c3>>32|c4<<16)
		h = h4
	}
	for ; len(dst)-i >= 6; i += 6 {
		h = h*jumpMul1 + highAdd1
		c := sixChars(base676(int32(h >> 32)))
		b := dst[i : i+6]
		binary.LittleEndian.PutUint32(b, uint32(c))
		binary.LittleEndian.PutUint16(b[4:], uint16(c>>32))
	}
	if i < len(dst) {
		h = h*jumpMul1 + highAdd1
		c := sixChars(base676(int32(h >> 32)))
		for ; i < len(dst); i++ {
			dst[i] = byte(c)
			c >>= 8
		}
	}
	r.setHigh(h)
}

// charPairs[0][p] holds the characters of the base-26 digits p%26 and
// p/26 as Beam prints them for a non-negative rnd ('a' + digit), the
// first in the low byte; charPairs[1][p] holds them for a negative rnd
// ('a' - digit).
var charPairs = func() (t [2][676]uint16) {
	for p := range 676 {
		lo, hi := p%26, p/26
		t[0][p] = uint16('a'+lo) | uint16('a'+hi)<<8
		t[1][p] = uint16('a'-lo) | uint16('a'-hi)<<8
	}
	return t
}()

// sixCharsMul is ceil(2^64 / 26^6).
const sixCharsMul = (1<<64 + 26*26*26*26*26*26 - 1) / (26 * 26 * 26 * 26 * 26 * 26)

// sixChars returns the six characters Beam appends for one rnd (Beam's
// nextExactString draws one rnd per six characters), the first in the
// low byte; the top two bytes are zero. Call it as
// sixChars(base676(rnd)): two functions small enough to inline.
//
// Beam's k-th character is 'a' + (rnd/26^k) % 26 (repeated truncating
// division by 26 is truncating division by 26^k). Truncating division and
// Java's remainder are odd functions, so for a negative rnd the character
// is 'a' - ((|rnd|/26^k) % 26): the base-26 digits d0..d5 of |rnd|, which
// base676 returns two at a time, turned into characters by a table
// chosen by the sign.
func sixChars(neg uint32, p0, p1, p2 uint64) uint64 {
	c := &charPairs[neg&1]
	return uint64(c[p0]) | uint64(c[p1])<<16 | uint64(c[p2])<<32
}

// base676 returns the sign of rnd (all ones if negative, else 0) and the
// low three base-676 digits of u = |rnd| (which fits in a uint32 even
// for MinInt32): p0 = d0 + 26·d1, p1 = d2 + 26·d3, p2 = d4 + 26·d5.
//
// The digits come from the fraction f = frac(u / 26^6), held as a 32-bit
// fixed-point number g, most significant pair first: the integer part of
// g·676 is p2, its fraction times 676 gives p1, and so on: three cheap
// multiplications instead of a chain of divisions and remainders. It is
// exact for every u in [0, 2^31] (TestSixChars checks them all with
// STREAMD_NEXMARK_EXHAUSTIVE=1): u·sixCharsMul mod 2^64 is f·2^64 + e
// with 0 <= e < u <= 2^31 (sixCharsMul exceeds 2^64/26^6 by less than 1),
// so g = (that >> 32) + 1 is f·2^32 + ε with 0 < ε < 1.5: never below the
// exact value. Multiplying by 676 three times scales ε to less than
// 676³·1.5/2^32 < 0.11 (in units of the last pair), and to less than the
// distance to the next integer at the earlier steps (at least 1/26^4,
// then 1/26^2), while the exact value at the last step is an integer: no
// integer part is ever pushed up. And g·676 < 2^42 never overflows.
func base676(rnd int32) (neg uint32, p0, p1, p2 uint64) {
	neg = uint32(rnd >> 31)
	g := uint64((uint32(rnd)^neg)-neg)*sixCharsMul>>32 + 1
	g *= 676
	p2 = g >> 32
	g = uint64(uint32(g)) * 676
	p1 = g >> 32
	g = uint64(uint32(g)) * 676
	return neg, g >> 32, p1, p2
}
