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
// Go's math.Pow is not Java's Math.pow: on these arguments about half of
// math.Pow's results differ from Java's in the last bit (measured on 20 M
// arguments). Java's Math.pow is within 1 ulp and, on every argument we
// compared, correctly rounded. The price only depends on those last bits
// when pow·100 lies next to a half-integer, so: when math.Pow's result
// is clearly away from one (a margin of 1e-12 relative, thousands of
// ulps), the rounded price is certain; otherwise (about 1 in 10^5
// prices) the price is computed from the correctly rounded 10^x,
// evaluated with 320-bit arithmetic.
func priceOf(x float64) int64 {
	g := math.Pow(10, x)
	v := float64(g * 100.0)
	d := v - math.Floor(v) - 0.5
	if math.Abs(d) > 1e-12*v {
		return javaRound(v)
	}
	return javaRound(float64(pow10Exact(x) * 100.0))
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
