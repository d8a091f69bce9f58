package nexmark

import (
	"math"
	"math/big"
)

// nextPrice is Beam's PriceGenerator.nextPrice:
// Math.round(Math.pow(10.0, random.nextDouble() * 6.0) * 100.0).
func nextPrice(r *JavaRandom) int64 {
	return priceOf(float64(r.NextDouble() * 6.0))
}

// priceOf returns Java's Math.round(Math.pow(10.0, x) * 100.0) for x in
// [0, 6).
//
// Java's Math.pow is within 1 ulp and, on every argument we compared,
// correctly rounded (Go's math.Pow differs from it in the last bit on
// about half of these arguments). The price only depends on those last
// bits when pow·100 lies next to a half-integer, so: when an estimate of
// 10^x whose relative error is far below 1e-12 (pow10Fast's is below
// 2e-15) puts pow·100 clearly away from one (a margin of 1e-12 relative,
// thousands of ulps), the rounded price is certain, because Java's value
// lies on the same side of that half-integer; otherwise (about 1 in 10^5
// prices) the price is computed from the correctly rounded 10^x,
// evaluated with 320-bit arithmetic.
func priceOf(x float64) int64 {
	v := float64(pow10Fast(x) * 100.0)
	d := v - math.Floor(v) - 0.5
	if math.Abs(d) > 1e-12*v {
		return javaRound(v)
	}
	return javaRound(float64(pow10Exact(x) * 100.0))
}

// 10^x for x in [0, 6) is 10^(i/64) · 10^(j/4096) · e^y with
// 64x = i + j/64 + f (i, j integers, f in [0, 1/64)) and y = f/64·ln 10:
// two table entries and a short polynomial.
var (
	// pow10Coarse[i] is 10^(i/64), i < 6·64.
	pow10Coarse = func() (t [6 * 64]float64) {
		for i := range t {
			t[i] = math.Pow(10, float64(i)/64)
		}
		return t
	}()
	// pow10Fine[j] is 10^(j/4096), j < 64.
	pow10Fine = func() (t [64]float64) {
		for j := range t {
			t[j] = math.Pow(10, float64(j)/4096)
		}
		return t
	}()
)

// pow10Fast returns 10^x for x in [0, 6) with a relative error below
// 2e-15, several times faster than math.Pow (which was a third of a
// bid's cost). The error budget: each table entry is within 2 ulps
// (math.Pow at exactly representable arguments; TestPow10Fast checks
// every entry against the 320-bit 10^x); 4096x and 4096x - k are exact
// (a power-of-two scaling and Sterbenz's lemma), so y = (4096x - k) ·
// ln 10/4096, in [0, 5.7e-4), is off by 1 ulp of y, a relative error of
// at most 6e-20 in e^y; the Taylor polynomial of degree 4 leaves out
// less than y^5/5! · e^y < 1e-18; evaluating it (Estrin's scheme, for a
// shorter chain of dependent operations) and the two products cost a few
// ulps. In all below 2e-15, hundreds of times inside priceOf's margin.
func pow10Fast(x float64) float64 {
	t := x * 4096
	k := int(t)
	y := (t - float64(k)) * (math.Ln10 / 4096)
	y2 := y * y
	p := (1 + y) + y2*((1.0/2+y*(1.0/6))+y2*(1.0/24))
	return pow10Coarse[k>>6] * pow10Fine[k&63] * p
}

const pow10Prec = 320

// ln10 is ln(10) to pow10Prec bits: 3·ln 2 + ln 1.25, each as 2·atanh(1/k).
var ln10 = func() *big.Float {
	ln2 := atanhInv(3)
	ln2.Mul(ln2, big.NewFloat(2).SetPrec(pow10Prec))
	ln125 := atanhInv(9)
	ln125.Mul(ln125, big.NewFloat(2).SetPrec(pow10Prec))
	r := new(big.Float).SetPrec(pow10Prec).Mul(ln2, big.NewFloat(3).SetPrec(pow10Prec))
	return r.Add(r, ln125)
}()

// atanhInv returns atanh(1/k) = Σ 1/((2i+1)·k^(2i+1)).
func atanhInv(k int64) *big.Float {
	sum := new(big.Float).SetPrec(pow10Prec)
	kk := new(big.Float).SetPrec(pow10Prec).SetInt64(k * k)
	pow := new(big.Float).SetPrec(pow10Prec).Quo(big.NewFloat(1).SetPrec(pow10Prec), new(big.Float).SetPrec(pow10Prec).SetInt64(k))
	term := new(big.Float).SetPrec(pow10Prec)
	eps := new(big.Float).SetPrec(pow10Prec).SetMantExp(big.NewFloat(1), -pow10Prec-8)
	for i := int64(0); ; i++ {
		term.Quo(pow, new(big.Float).SetPrec(pow10Prec).SetInt64(2*i+1))
		if term.Cmp(eps) < 0 {
			return sum
		}
		sum.Add(sum, term)
		pow.Quo(pow, kk)
	}
}

// pow10Exact returns 10^x rounded to the nearest float64 (ties to even),
// computed as exp(x·ln 10) with pow10Prec bits: exp(t) = exp(t/2^16)^(2^16)
// and a Taylor series for the small argument.
func pow10Exact(x float64) float64 {
	t := new(big.Float).SetPrec(pow10Prec).SetFloat64(x)
	t.Mul(t, ln10)
	const halvings = 16
	t.SetMantExp(t, -halvings)
	sum := new(big.Float).SetPrec(pow10Prec).SetInt64(1)
	term := new(big.Float).SetPrec(pow10Prec).SetInt64(1)
	eps := new(big.Float).SetPrec(pow10Prec).SetMantExp(big.NewFloat(1), -pow10Prec-8)
	for i := int64(1); ; i++ {
		term.Mul(term, t)
		term.Quo(term, new(big.Float).SetPrec(pow10Prec).SetInt64(i))
		if term.Sign() == 0 || new(big.Float).Abs(term).Cmp(eps) < 0 {
			break
		}
		sum.Add(sum, term)
	}
	for i := 0; i < halvings; i++ {
		sum.Mul(sum, sum)
	}
	f, _ := sum.Float64()
	return f
}
