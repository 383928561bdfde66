package asm

import "math"

// Family gelu: the exact (erf) GELU over float32 vectors, evaluated in
// float64 by one fixed sequence of IEEE operations and fused multiply-adds
// that every implementation performs in the same order, so the results are
// bit-identical for every kernel set (the generic Go code with math.FMA, the
// AVX2+FMA kernel; arm64 runs the Go code).

// GELU computes dst[i] = x[i]·Φ(x[i]) = 0.5·x[i]·(1 + erf(x[i]/√2)), the
// exact GELU of PyTorch's F.gelu (approximate="none"), for every element.
// dst may alias x; len(x) ≥ len(dst). An element's result depends only on
// its value, never on its position or on the kernel set (bit for bit).
//
// Each value is computed in float64 (see geluGeneric for the method) with a
// relative error below 1.5e-12 and rounded to float32 once: the correctly
// rounded result except within 1.5e-12 (relative) of a rounding midpoint,
// where it may be the other neighbour, so never more than 0.5 ulp + 2.5e-5
// ulp from the exact value (measured: 0.500013). That holds over the whole
// range, tiny and subnormal results included (in units of 2^−149 there):
//
//   - x ≥ 5.3476: Φ(x) is within half an ulp of 1 and the result is x
//     itself (the correctly rounded value);
//   - x ≤ −11.675: |result| < 1e-30, still correctly rounded; x ≤ −13.146:
//     a float32 subnormal; x ≤ −14.35607 (where |GELU(x)| ≤ 2^−150): −0;
//   - tiny x: x/2 rounded (for odd subnormal x the tie x/2 goes to even,
//     0.5 + 1e-45 ulp from the exact x/2 + x²/√(2π));
//   - ±0 gives ±0, +Inf gives +Inf, −Inf gives NaN (x·Φ(x) = −Inf·0, as in
//     PyTorch and the float64 formula), NaN gives the same NaN, quieted.
//
// PyTorch's float32 CPU kernel computes x·0.5·(1 + erf(x/√2)) with SLEEF's
// erff, so below x ≈ −3 its 1 + erf loses digits to cancellation and below
// x ≈ −5.4 it is exactly 0 (giving −0); GELU keeps the tiny negative values,
// which differ from PyTorch's by less than 4e-7 in absolute terms.
func GELU(dst, x []float32) {
	x = x[:len(dst)]
	n := 0
	if fast {
		n = len(dst) &^ 7
		if n > 0 {
			geluFast(dst[:n], x[:n])
		}
	}
	// The tail (everything without a kernel): the generic code gives the
	// same bits.
	geluGeneric(dst[n:], x[n:])
}

// Constants of the method. The P and Q coefficients are a minimax fit
// (relative error 1.13e-12 on [0, geluAmax], p0 fixed at 1/2 so that Φ is
// exactly 1/2 at 0) of R(a) = erfc(a)·e^(a²)/2, computed with mpmath at 60
// digits: Loeb's linearised least squares for P − R·Q with Lawson's
// reweighting, on 600 Chebyshev nodes, 40 iterations. All are positive, so
// the Horner evaluations do not cancel. TestGELUFit checks the error.
const (
	geluRsqrt2 = 0.7071067811865476 // 1/√2
	// Below −geluSCut, e^d is taken as 0: at d = −103.048 (x = −14.356)
	// |GELU(x)| = 2^−150, so every x with d < −104 rounds to −0 (or, for
	// x > 0, to x) anyway.
	geluSCut = 104
	// a = |x|/√2 is clamped to geluAmax > √104, which only happens where
	// e^d is already 0 (and keeps R finite for x = ±Inf).
	geluAmax = 10.25

	geluP0 = 0.5
	geluP1 = 0.8070508084034047
	geluP2 = 0.6402131095790452
	geluP3 = 0.3056319661379955
	geluP4 = 0.09165262430175265
	geluP5 = 0.01640368687029143
	geluP6 = 0.001392243853463658

	geluQ1 = 2.7424807840271823
	geluQ2 = 3.3749843977319993
	geluQ3 = 2.4292980608323473
	geluQ4 = 1.1125286540361894
	geluQ5 = 0.3273667176090461
	geluQ6 = 0.058149596953634516
	geluQ7 = 0.004935375239053229

	// e^r for |r| ≤ ln2/2: r + r²·Σ_{n=2..10} r^(n−2)/n!, plus 1
	// (truncation 2.3e-13, below 3.2e-13 relative to e^r at r = −ln2/2).
	// The constants are the float64 values of the exp family's tables.
	geluLog2e = 1.4426950408889634
	geluLn2Hi = 6.93147180369123816490e-01 // ln2 = Ln2Hi + Ln2Lo (math's split)
	geluLn2Lo = 1.90821492927058770002e-10
)

// geluExpC[n] = 1/n! for n = 2..10 as the kernel's table holds them.
var geluExpC = [11]float64{
	2:  0x1p-1,
	3:  0x1.5555555555555p-3,
	4:  0x1.5555555555555p-5,
	5:  0x1.1111111111111p-7,
	6:  0x1.6c16c16c16c17p-10,
	7:  0x1.a01a01a01a01ap-13,
	8:  0x1.a01a01a01a01ap-16,
	9:  0x1.71de3a556c734p-19,
	10: 0x1.27e4fb7789f5cp-22,
}

// geluGeneric is GELU in plain Go, the reference for the kernels: for each
// element, in float64 (x is exact in float64),
//
//	d = (x·(−1/2))·x                      // −x²/2, exact
//	a = min(|x|·(1/√2), 10.25)            // NaN → 10.25, like VMINPD
//	E = e^d                               // 0 where d < −104
//	q = E·(P(a)/Q(a))                     // erfc(|x|/√2)/2 = Φ(−|x|)
//	Φ = q if x's sign bit is set, else 1 − q
//	y = float32(x·Φ)
//
// with P and Q evaluated by Horner's rule in fused multiply-adds and e^d as
// k = round(d·log2e) (ties to even), r = d − k·Ln2Hi − k·Ln2Lo (two fused
// steps), (1 + (r + r²·c(r)))·2^k with c's Horner steps fused. Every step is
// one IEEE operation in this order, as the kernels perform it.
func geluGeneric(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = gelu64(v)
	}
}

func gelu64(v float32) float32 {
	x := float64(v)
	d := x * -0.5
	d *= x
	a := math.Abs(x) * geluRsqrt2
	if !(a < geluAmax) {
		a = geluAmax
	}
	e := geluExp(d)
	p := math.FMA(geluP6, a, geluP5)
	p = math.FMA(p, a, geluP4)
	p = math.FMA(p, a, geluP3)
	p = math.FMA(p, a, geluP2)
	p = math.FMA(p, a, geluP1)
	p = math.FMA(p, a, geluP0)
	q := math.FMA(geluQ7, a, geluQ6)
	q = math.FMA(q, a, geluQ5)
	q = math.FMA(q, a, geluQ4)
	q = math.FMA(q, a, geluQ3)
	q = math.FMA(q, a, geluQ2)
	q = math.FMA(q, a, geluQ1)
	q = math.FMA(q, a, 1)
	e = float64(e * (p / q)) // rounded: never fused with 1 − e
	phi := e
	if !math.Signbit(x) {
		phi = 1 - e
	}
	return float32(x * phi)
}

// geluExp is e^d for −104 ≤ d ≤ 0 (0 below −104, NaN for NaN) by the exp
// family's method (see exp_amd64.s's EXPD).
func geluExp(d float64) float64 {
	if d < -geluSCut {
		return 0
	}
	k := math.RoundToEven(d * geluLog2e)
	// k·(−c) rather than (−k)·c: the same value, but a NaN k keeps its
	// sign, as in VFNMADD231PD.
	r := math.FMA(k, -geluLn2Hi, d)
	r = math.FMA(k, -geluLn2Lo, r)
	c := &geluExpC
	p := math.FMA(c[10], r, c[9])
	p = math.FMA(p, r, c[8])
	p = math.FMA(p, r, c[7])
	p = math.FMA(p, r, c[6])
	p = math.FMA(p, r, c[5])
	p = math.FMA(p, r, c[4])
	p = math.FMA(p, r, c[3])
	p = math.FMA(p, r, c[2])
	p = math.FMA(p, r*r, r)
	p += 1
	// k ≥ −151 here, so 2^k is a normal float64. For NaN d, k is NaN and
	// its conversion is unspecified, but p is already NaN.
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}
