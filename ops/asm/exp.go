package asm

import "math"

// Family exp: the two passes of a softmax row over float32 vectors, for
// attention. Unlike Gemm's, the kernels are not bit-identical by
// construction (their float64 exponentials differ in the last bits), so each
// is tested against math.Exp with an error bound.
//
// ScaleMax and ExpShift are deterministic (they do not depend on anything but
// their arguments and the kernel set), and they work on one row, so callers
// split rows across threads, never a row.

// ScaleMax computes, in place and in float32 (two roundings per element, no
// fused multiply-add),
//
//	for i := range x {
//		x[i] = x[i]*scale + bias[i]   // bias[i] read as 0 when bias is nil
//	}
//
// and returns the largest x[i] (−Inf when x is empty). bias, when not nil,
// must be at least as long as x. The results are exact-rounded IEEE
// operations, identical for every kernel set; only the maximum of rows that
// hold NaN may differ (the NaN elements themselves stay NaN).
func ScaleMax(x, bias []float32, scale float32) float32 {
	if bias != nil {
		bias = bias[:len(x)]
	}
	m := float32(math.Inf(-1))
	n := 0
	if fast {
		n = len(x) &^ 7
		if n > 0 {
			m = scaleMaxFast(x[:n], bias, scale)
		}
	}
	return scaleMaxGeneric(x[n:], tail(bias, n), scale, m)
}

// tail is b[n:], or nil when b is nil.
func tail(b []float32, n int) []float32 {
	if b == nil {
		return nil
	}
	return b[n:]
}

func scaleMaxGeneric(x, bias []float32, scale, m float32) float32 {
	if bias != nil {
		bias = bias[:len(x)]
		for i, v := range x {
			l := float32(v*scale) + bias[i]
			x[i] = l
			if l > m {
				m = l
			}
		}
		return m
	}
	for i, v := range x {
		l := float32(v * scale)
		x[i] = l
		if l > m {
			m = l
		}
	}
	return m
}

// ExpShift computes, in place,
//
//	for i := range x {
//		x[i] = exp(x[i] − shift)   // the difference rounded to float32 first
//	}
//
// and returns Σ x[i] of the results, accumulated in float64 in an order fixed
// by len(x). Every kernel evaluates the exponential of the float32 difference
// in float64 (relative error below 1e-13) and rounds it to float32 once: the
// correctly rounded value except within 1e-13 of a rounding midpoint, and
// never more than 1 ulp from it. Differences below float32(−87.33654) ≈
// ln(2^−126) give 0 (so do masked logits, −10000), differences above 88 are
// clamped to 88, and NaN stays NaN. It is meant for x[i] ≤ shift (a softmax
// row minus its maximum).
func ExpShift(x []float32, shift float32) float64 {
	var sum float64
	n := 0
	if fast {
		n = len(x) &^ 7
		if n > 0 {
			sum = expShiftFast(x[:n], shift)
		}
		if n < len(x) {
			// The tail through the same kernel: padded to 8 lanes with
			// arguments whose exponential is 0.
			var buf [8]float32
			for i := range buf {
				buf[i] = shift - 1000
			}
			copy(buf[:], x[n:])
			sum += expShiftFast(buf[:], shift)
			copy(x[n:], buf[:])
		}
		return sum
	}
	return expShiftGeneric(x, shift)
}

// expLo ≈ ln(2^−126): ExpShift gives 0 below it.
const expLo = -87.33654

// expShiftGeneric is ExpShift with exp64 rounded to float32 (the correctly
// rounded result except within ~1e-15 of a rounding midpoint), summed in
// order.
func expShiftGeneric(x []float32, shift float32) float64 {
	var sum float64
	for i, v := range x {
		d := v - shift
		var e float32
		if !(d < expLo) { // also NaN
			e = float32(exp64(float64(min(d, 88))))
		}
		x[i] = e
		sum += float64(e)
	}
	return sum
}

// SigmoidMul computes dst[i] = x[i]·σ(f32(alpha·x[i])), σ(a) = 1/(1+e^−a):
// SiLU for alpha = 1, QuickGELU for alpha = 1.702. After the float32 product
// alpha·x (PyTorch's separate fp32 op), it is evaluated in float64 as
//
//	t = e^(−|a|),  x·(a < 0 ? t : 1)/(1 + t)
//
// (no overflow for any a) and rounded to float32 once, so every kernel gives
// the correctly rounded value except within ~1e-13 of a rounding midpoint.
// x = −Inf gives NaN, like x/(1+e^−x). dst may alias x; len(x) ≥ len(dst).
// The result of an element depends only on its value, not on its position.
func SigmoidMul(dst, x []float32, alpha float32) {
	x = x[:len(dst)]
	if !fast {
		sigmoidMulGeneric(dst, x, alpha)
		return
	}
	n := len(dst) &^ 7
	if n > 0 {
		sigmoidMulFast(dst[:n], x[:n], alpha)
	}
	if n < len(dst) {
		// The tail through the same kernel, so that an element's result
		// does not depend on where a caller's chunk boundaries fall.
		var buf [8]float32
		copy(buf[:], x[n:])
		sigmoidMulFast(buf[:], buf[:], alpha)
		copy(dst[n:], buf[:])
	}
}

func sigmoidMulGeneric(dst, x []float32, alpha float32) {
	x = x[:len(dst)]
	for i, v := range x {
		a := float64(v * alpha)
		var t float64 // e^(−|a|), taken as 0 below e^−708 like the kernels
		if !(math.Abs(a) > 708) {
			t = exp64(-math.Abs(a))
		}
		num := 1.0
		if math.Signbit(a) {
			num = t
		}
		dst[i] = float32(float64(v) * num / (1 + t))
	}
}

// exp64 is e^x in float64 with a relative error of a few float64 ulps (about
// 1e-15; math.Exp: < 1 ulp), written to be cheap enough for elementwise
// loops. Rounded to float32, its results agree with math.Exp's except where
// the float64 value lies within ~1e-15 of a float32 rounding midpoint (then
// by one float32 ulp).
//
// Method (as in musl's exp): x = k·ln2/32 + r with |r| ≤ ln2/64, e^x =
// 2^(k/32)·e^r, 2^(k/32) from a 32-entry table and a power of two, e^r − 1
// from its Taylor polynomial to r⁶ (truncation below 4e-18). NaN, overflow
// and subnormal results take math.Exp.
func exp64(x float64) float64 {
	if !(x > -708 && x < 709) {
		if x < -746 {
			return 0 // e^x < 2^-1075 (e.g. masked attention logits, x ≈ −10000)
		}
		return math.Exp(x)
	}
	const (
		invLn2x32 = 32 / math.Ln2
		// ln2/32 split so that k·ln2hi is exact for |k| < 2^21 (ln2hi has
		// 21 trailing zero bits; these are math's Ln2Hi and Ln2Lo over 32).
		ln2hi = 6.93147180369123816490e-01 / 32
		ln2lo = 1.90821492927058770002e-10 / 32
		round = 0x1.8p52 // adding and subtracting it rounds to an integer
	)
	kf := x*invLn2x32 + round - round
	r := x - kf*ln2hi - kf*ln2lo
	p := r + r*r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720)))))
	k := int64(kf)
	s := exp2Table[k&31]
	// 2^(k>>5): k ≥ −708·32/ln2 > −32700, so the exponent is ≥ −1022.
	return (s + s*p) * math.Float64frombits(uint64((k>>5)+1023)<<52)
}

// exp2Table[j] = 2^(j/32).
var exp2Table = func() (t [32]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 32)
	}
	return t
}()
