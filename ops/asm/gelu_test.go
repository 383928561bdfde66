package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// geluRef is GELU(x) = 0.5·x·erfc(−x/√2) in float64 with math.Erfc. Its
// relative error is below 5e-14 for |x| ≤ 14.4 (beyond, the float32 result
// is x or −0 anyway): the argument −x/√2 carries at most 1.5·2^−53 relative
// error (the constant and the division), which moves erfc(a) by a factor of
// at most e^(2a²·1.5·2^−53) ≈ 1 + 3.5e-14 at a = 10.2, and math.Erfc and the
// two products add a few float64 ulps. TestGELURefHand checks it against
// values computed with mpmath at 40 digits.
func geluRef(x float32) float64 {
	v := float64(x)
	return 0.5 * v * math.Erfc(-v/math.Sqrt2)
}

// ulp32 is the spacing of float32 values at |r|: 2^(e−23) for r in
// [2^e, 2^(e+1)), 2^−149 below 2^−126 (subnormals).
func ulp32(r float64) float64 {
	r = math.Abs(r)
	if r < 0x1p-126 {
		return 0x1p-149
	}
	_, e := math.Frexp(r) // r = f·2^e, f in [0.5, 1)
	return math.Ldexp(1, e-1-23)
}

// geluErr is |y − ref(x)| in ulps of the reference value.
func geluErr(x, y float32) float64 {
	r := geluRef(x)
	return math.Abs(float64(y)-r) / ulp32(r)
}

// geluMaxErr is the error bound GELU promises, in ulps: half an ulp for the
// final rounding, plus its float64 evaluation error (below 1.5e-12 relative:
// the rational fit 1.13e-12, the exponential's truncation 3.2e-13, and ~25
// float64 roundings of 1.1e-16), which is at most 1.5e-12·2^24 = 2.5e-5 ulp,
// plus the reference's own error (5e-14 relative, 8.4e-7 ulp).
const geluMaxErr = 0.5 + 2.6e-5

func TestGELURefHand(t *testing.T) {
	// mpmath, 40 digits: 0.5·x·erfc(−x/√2).
	for _, c := range []struct {
		x    float32
		want float64
	}{
		{0x1p-10, 0.00048866171094607474708},
		{0.5, 0.34573123063700655182},
		{-0.5, -0.15426876936299344818},
		{1.5, 1.399789198096712901},
		{-2.25, -0.027505063473850582093},
		{3, 2.9959503059051097164},
		{-3.5, -0.00081420177662433762722},
		{5.5, 5.4999998955574064376},
		{-6, -5.9195258702261888442e-9},
		{-8.5, -8.057604598872820601e-17},
		{-10, -7.619853024160526066e-23},
		{-12, -2.1317785344932147972e-32},
		{-13, -7.952313719414843587e-38},
		{-13.5, -1.0555389862638153141e-40},
		{-14, -1.0910951546869920356e-43},
		{-14.25, -3.1940038815884369878e-45},
		{-14.34375, -8.3611081731531328477e-46},
	} {
		// geluRef's documented bound, 5e-14 relative.
		require.InEpsilon(t, c.want, geluRef(c.x), 5e-14, "geluRef(%v)", c.x)
		// GELU rounds correctly here (none of these lies within 1.5e-12
		// of a midpoint): the float32 nearest the exact value. The
		// subnormal ones are the nearest multiple of 2^−149.
		got := []float32{0}
		GELU(got, []float32{c.x})
		require.Equal(t, float32(c.want), got[0], "GELU(%v)", c.x)
	}
}

func TestGELUFit(t *testing.T) {
	// The pieces' documented errors, against math: the rational P/Q against
	// erfc(a)·e^(a²)/2 (whose float64 value is off by a²·2^−53 ≤ 1.2e-14
	// from the rounding of a², plus ~3e-16), and geluExp against math.Exp.
	var worstR, worstE float64
	for a := 0.0; a <= geluAmax; a += 1.0 / 4096 {
		p := ((((((geluP6*a+geluP5)*a+geluP4)*a+geluP3)*a+geluP2)*a+geluP1)*a + geluP0)
		q := (((((((geluQ7*a+geluQ6)*a+geluQ5)*a+geluQ4)*a+geluQ3)*a+geluQ2)*a+geluQ1)*a + 1)
		want := math.Erfc(a) * math.Exp(a*a) / 2
		worstR = max(worstR, math.Abs(p/q/want-1))
		if d := -a * a; d >= -geluSCut {
			worstE = max(worstE, math.Abs(geluExp(d)/math.Exp(d)-1))
		}
	}
	t.Logf("P/Q relative error %.3g, e^d relative error %.3g", worstR, worstE)
	// The fit's 1.13e-12, plus the reference's 1.3e-14 and the Horner
	// evaluation's few 1e-16.
	require.Less(t, worstR, 1.15e-12)
	// Truncation: Σ_{n≥11} r^n/n! ≤ 2.3e-13 at |r| = ln2/2, 3.2e-13
	// relative to e^(−ln2/2); plus ~15 roundings and math.Exp's ulp.
	require.Less(t, worstE, 3.3e-13)
	require.Zero(t, geluExp(-104.0001)) // the cut
	require.InEpsilon(t, math.Exp(-104), geluExp(-104), 3.3e-13)
}

// geluImpls runs f with the generic code and, where the CPU has it, the
// assembly kernel.
func geluImpls(t *testing.T, f func(t *testing.T)) {
	t.Run("impl=generic", func(t *testing.T) {
		defer SetFast(false)()
		f(t)
	})
	if Name() != "purego" {
		t.Run("impl="+Name(), f)
	}
}

// geluSweep lists the accuracy scan's inputs: float32 bit patterns of |x| ≤
// 15 at an even stride (every binade down to the subnormals, both signs),
// every float32 whose GELU is a subnormal or the step to −0 ([−14.5, −13.1]),
// the smallest inputs (x/2 rounding), and 2^17 consecutive float32 around
// points where something changes: Φ's branch at 0, the region where x·Φ(x)
// starts to round to x (5.3 … 5.5), the e^d cut (x = ±√208 = ±14.4222), and
// a spread of places in between (the rational fit's error peaks and the
// exponential's reduction steps fall anywhere). Without -short it adds the
// whole binade [−2, −1].
func geluSweep(short bool) []float32 {
	var xs []float32
	top := math.Float32bits(15)
	for b := uint32(0); b <= top; b += 1 << 10 { // 2^20 per sign
		f := math.Float32frombits(b)
		xs = append(xs, f, -f)
	}
	// all appends every float32 from lo to hi (same sign, |lo| ≤ |hi|).
	all := func(lo, hi float32) {
		sign := math.Float32bits(lo) & (1 << 31)
		for b := math.Float32bits(lo) &^ sign; b <= math.Float32bits(hi)&^sign; b++ {
			xs = append(xs, math.Float32frombits(b|sign))
		}
	}
	// around appends the 2^16 float32 on either side of c.
	around := func(c float32) {
		b := math.Float32bits(c)
		for i := b - 1<<16; i < b+1<<16; i++ {
			xs = append(xs, math.Float32frombits(i))
		}
	}
	all(0, 0x1p-140)
	all(float32(math.Copysign(0, -1)), -0x1p-140)
	all(-13.1, -14.5)
	for _, c := range []float32{0x1p-20, 0.01, 0.1, 0.3, 0.7, 1, 1.3, 1.7, 2.2, 2.9, 3.6, 4.4} {
		around(c)
		around(-c)
	}
	for _, c := range []float32{5.3, 5.35, 5.42, 5.5, 14.4222, -14.4222, -12, -10, -8, -6.5} {
		around(c)
	}
	if !short {
		all(-1, -2) // where the largest errors are (Φ = q, the fit's peaks)
	}
	return xs
}

func TestGELUAccuracy(t *testing.T) {
	xs := geluSweep(testing.Short())
	ys := make([]float32, len(xs))
	GELU(ys, xs)
	var worst float64
	var worstX, worstY float32
	misrounded := 0
	for i, x := range xs {
		e := geluErr(x, ys[i])
		if e > 0.5 {
			misrounded++ // within 1.5e-12 of a midpoint: the other neighbour
		}
		if e > worst {
			worst, worstX, worstY = e, x, ys[i]
		}
	}
	t.Logf("%s: %d inputs, max error %.6f ulp at x = %v (GELU %v, exact %.9g); %d not correctly rounded",
		Name(), len(xs), worst, worstX, worstY, geluRef(worstX), misrounded)
	require.LessOrEqual(t, worst, geluMaxErr, "x = %v", worstX)
	// A rate: a wrong rounding needs the exact value within 1.5e-12·|y| of
	// a midpoint, which happens for about 2·1.5e-12·2^24 = 5e-5 of the
	// inputs; more than 1e-3 would mean the evaluation is much worse than
	// documented.
	require.Less(t, float64(misrounded), 1e-3*float64(len(xs)))

	// And the kernels agree with the generic code bit for bit on all of
	// them.
	if fast {
		restore := SetFast(false)
		gs := make([]float32, len(xs))
		GELU(gs, xs)
		restore()
		for i := range xs {
			if math.Float32bits(gs[i]) != math.Float32bits(ys[i]) {
				t.Fatalf("x = %v: kernel %v (%#x), generic %v (%#x)", xs[i], ys[i], math.Float32bits(ys[i]), gs[i], math.Float32bits(gs[i]))
			}
		}
	}
}

// geluSpecials are inputs every test includes.
var geluSpecials = []float32{
	0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
	math.Float32frombits(0x7fc01234), math.Float32frombits(0xffa00001), // quiet and signalling NaNs with payloads
	math.Float32frombits(1), math.Float32frombits(0x80000001), 0x1p-126, -0x1p-126, 0x1.fffffcp-127,
	math.MaxFloat32, -math.MaxFloat32, 1e30, -1e30, 1e-30, -1e-30,
	14.356067, -14.356067, -14.356068, -14.42, 14.42, -14.422205, -14.422206, 20, -20,
	1, -1, 0.5, -0.5, 3, -3, 5.4, 5.5, 6, -6,
}

func TestGELUSpecial(t *testing.T) {
	geluImpls(t, func(t *testing.T) {
		x := append([]float32(nil), geluSpecials...)
		y := make([]float32, len(x))
		GELU(y, x)
		bits := func(f float32) uint32 { return math.Float32bits(f) }
		require.Equal(t, uint32(0), bits(y[0]), "GELU(+0)")
		require.Equal(t, uint32(0x80000000), bits(y[1]), "GELU(−0)")
		require.True(t, math.IsInf(float64(y[2]), 1), "GELU(+Inf) = %v", y[2])
		require.True(t, math.IsNaN(float64(y[3])), "GELU(−Inf) = %v", y[3])
		// NaN stays NaN, quieted, payload kept (float32 → float64 → float32).
		require.Equal(t, uint32(0x7fc00000), bits(y[4]))
		require.Equal(t, uint32(0x7fc01234), bits(y[5]))
		require.Equal(t, uint32(0xffe00001), bits(y[6]))
		// ±2^−149: the exact value x/2 + x²/√(2π) lies within 1e-45
		// (relative) of the tie x/2 between ±0 and ±2^−149, and Φ(x)
		// evaluates to exactly 1/2, so the result is the tie rounded to
		// even, ±0 (as PyTorch's x·0.5·(1+erf) gives): 0.5 + 1e-45 ulp off.
		require.Equal(t, uint32(0), bits(y[7]), "GELU(2^−149)")
		require.Equal(t, uint32(0x80000000), bits(y[8]), "GELU(−2^−149)")
		require.Equal(t, float32(math.MaxFloat32), y[12])
		require.Equal(t, float32(-0), y[13])
		require.True(t, math.Signbit(float64(y[13])))
		require.Equal(t, float32(1e30), y[14])
		require.Equal(t, uint32(0x80000000), bits(y[15]), "GELU(−1e30)")
		require.Equal(t, float32(0.5e-30), y[16]) // x/2 + O(x²)
		require.Equal(t, float32(-0.5e-30), y[17])
		// The documented edges: x itself from 5.3476 on, subnormal results
		// from −13.146247, −0 from −14.356069 (each the correctly rounded
		// value, checked by the loop below).
		one := func(v float32) float32 { y := []float32{0}; GELU(y, []float32{v}); return y[0] }
		require.Equal(t, float32(5.3475156), one(5.3475156))
		require.Equal(t, float32(6), one(6))
		require.NotEqual(t, float32(5.347515), one(5.347515))
		require.LessOrEqual(t, one(-13.146246), float32(-0x1p-126)) // normal
		require.Greater(t, one(-13.146247), float32(-0x1p-126))     // subnormal
		require.Equal(t, uint32(0x80000001), bits(one(-14.356068))) // −2^−149
		require.Equal(t, uint32(0x80000000), bits(one(-14.356069)))
		require.Equal(t, uint32(0x80000000), bits(one(-20)))
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				continue
			}
			require.LessOrEqual(t, geluErr(v, y[i]), geluMaxErr, "x = %v: %v", v, y[i])
		}
	})
}

// geluRandom fills x with values of a GELU input's typical spread plus
// tails, subnormals and special values.
func geluRandom(r *rand.Rand, x []float32) {
	for i := range x {
		switch i % 13 {
		case 3:
			x[i] = float32(r.NormFloat64() * 8)
		case 5:
			x[i] = math.Float32frombits(r.Uint32()) // anything, NaNs included
		case 7:
			x[i] = geluSpecials[r.IntN(len(geluSpecials))]
		default:
			x[i] = float32(r.NormFloat64() * 2)
		}
	}
}

func TestGELUBitIdentical(t *testing.T) {
	if !fastSupported() {
		t.Skip("no assembly kernel for GELU on this build/CPU (" + Name() + ")")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 64, 1000, 4099} {
		x := make([]float32, n)
		geluRandom(r, x)
		want := make([]float32, n)
		restore := SetFast(false)
		GELU(want, x)
		restore()
		got := make([]float32, n)
		GELU(got, x)
		for i := range x {
			require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "n=%d x[%d]=%v: kernel %v, generic %v", n, i, x[i], got[i], want[i])
		}
		// In place, and shifted by one (position independence).
		y := append([]float32(nil), x...)
		GELU(y, y)
		require.Equal(t, bitsOf(want), bitsOf(y), "n=%d in place", n)
		if n > 1 {
			z := make([]float32, n-1)
			GELU(z, x[1:])
			require.Equal(t, bitsOf(want[1:]), bitsOf(z), "n=%d shifted", n)
		}
	}
}

func bitsOf(x []float32) []uint32 {
	b := make([]uint32, len(x))
	for i, v := range x {
		b[i] = math.Float32bits(v)
	}
	return b
}

func FuzzGELU(f *testing.F) {
	for _, v := range geluSpecials {
		f.Add(math.Float32bits(v), uint32(0x3f800000))
	}
	f.Add(uint32(0xc1660000), uint32(0x41660000)) // ∓14.375
	f.Fuzz(func(t *testing.T, b0, b1 uint32) {
		// 9 lanes: 8 through the kernel, one through the tail code.
		x := make([]float32, 9)
		for i := range x {
			bits := b0
			if i%2 == 1 {
				bits = b1
			}
			x[i] = math.Float32frombits(bits ^ uint32(i)<<(i%3)) // nearby values
		}
		y := make([]float32, len(x))
		GELU(y, x)
		g := make([]float32, len(x))
		geluGeneric(g, x)
		for i, v := range x {
			require.Equal(t, math.Float32bits(g[i]), math.Float32bits(y[i]), "x = %v (%#x)", v, math.Float32bits(v))
			switch {
			case math.IsNaN(float64(v)):
				require.True(t, math.IsNaN(float64(y[i])))
			case math.IsInf(float64(v), 0): // checked by TestGELUSpecial
			default:
				require.LessOrEqual(t, geluErr(v, y[i]), geluMaxErr, "x = %v: %v", v, y[i])
			}
		}
	})
}

func BenchmarkGELU(b *testing.B) {
	x := make([]float32, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range x {
		x[i] = float32(r.NormFloat64() * 2)
	}
	y := make([]float32, len(x))
	for _, fastOn := range []bool{false, true} {
		b.Run(fmt.Sprintf("fast=%v", fastOn), func(b *testing.B) {
			defer SetFast(fastOn)()
			for b.Loop() {
				GELU(y, x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
		})
	}
}
