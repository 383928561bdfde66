package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// expImpls runs f with the generic code and, where the CPU has them, the
// assembly kernels; maxULP is the error bound each promises (a float64
// exponential rounded once: 1 ulp from the correctly rounded float32 value
// at most, and only within 1e-13 of a midpoint).
func expImpls(t *testing.T, f func(t *testing.T, maxULP int)) {
	t.Run("impl=generic", func(t *testing.T) {
		defer SetFast(false)()
		f(t, 1)
	})
	if Name() != "purego" {
		t.Run("impl="+Name(), func(t *testing.T) { f(t, 1) })
	}
}

// ulpDiff is the distance between a and b in float32 ulps (both finite,
// same sign).
func ulpDiff(a, b float32) int {
	d := int(math.Float32bits(a)) - int(math.Float32bits(b))
	if d < 0 {
		d = -d
	}
	return d
}

func TestExpShift(t *testing.T) {
	expImpls(t, func(t *testing.T, maxULP int) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 64, 1105} {
			for _, shift := range []float32{0, 3.5, -20} {
				x := make([]float32, n)
				for i := range x {
					x[i] = shift - float32(r.Float64()*95) // differences in [−95, 0]
					if i%5 == 1 {
						x[i] = shift - float32(r.Float64()*3)
					}
				}
				// Special differences: 0, the underflow cut, a masked logit.
				for i, d := range []float32{0, expLo, expLo + 1e-5, expLo - 1e-5, -10000, -0.5} {
					if i < n {
						x[(i*7)%n] = shift + d
					}
				}
				in := append([]float32(nil), x...)
				sum := ExpShift(x, shift)
				var want float64
				for i, v := range in {
					d := v - shift
					ref := float32(math.Exp(float64(d)))
					got := x[i]
					switch {
					case d < expLo:
						require.Zero(t, got, "exp(%v) below the cut", d)
					case ref < 0x1p-126: // the cut's neighbourhood: subnormal results
						require.InDelta(t, float64(ref), float64(got), 0x1p-126)
					default:
						require.LessOrEqual(t, ulpDiff(ref, got), maxULP, "exp(%v) = %v, want %v", d, got, ref)
					}
					want += float64(got)
				}
				// The sum of the results, in some fixed order: float64
				// rounding only (n·2^-53 relative).
				require.InDelta(t, want, sum, float64(n+1)*0x1p-52*want, fmt.Sprintf("n=%d sum", n))
			}
		}
		// NaN stays NaN; differences above 88 are clamped.
		x := []float32{float32(math.NaN()), 100, 0, 0, 0, 0, 0, 0, float32(math.NaN())}
		sum := ExpShift(x, 0)
		require.True(t, math.IsNaN(float64(x[0])) && math.IsNaN(float64(x[8])) && math.IsNaN(sum))
		require.LessOrEqual(t, ulpDiff(float32(math.Exp(88)), x[1]), maxULP)
		require.Equal(t, float32(1), x[2])
	})
}

func TestExpShiftDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 1001)
	for i := range x {
		x[i] = -float32(r.Float64() * 30)
	}
	a, b := append([]float32(nil), x...), append([]float32(nil), x...)
	sa, sb := ExpShift(a, 0), ExpShift(b, 0)
	require.Equal(t, math.Float64bits(sa), math.Float64bits(sb))
	require.Equal(t, a, b)
}

func TestScaleMax(t *testing.T) {
	expImpls(t, func(t *testing.T, _ int) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range []int{0, 1, 7, 8, 9, 16, 23, 1105} {
			for _, withBias := range []bool{false, true} {
				x, bias := make([]float32, n), make([]float32, n+3)
				for i := range x {
					x[i] = float32(r.NormFloat64() * 10)
				}
				for i := range bias {
					bias[i] = float32(r.NormFloat64())
				}
				if !withBias {
					bias = nil
				}
				in := append([]float32(nil), x...)
				m := ScaleMax(x, bias, 0.37)
				want := float32(math.Inf(-1))
				for i, v := range in {
					l := float32(v * 0.37)
					if bias != nil {
						l += bias[i]
					}
					require.Equal(t, math.Float32bits(l), math.Float32bits(x[i]), "element %d", i)
					want = max(want, l)
				}
				require.Equal(t, want, m, "n=%d bias=%v", n, withBias)
			}
		}
	})
}

func BenchmarkExpShift(b *testing.B) {
	x := make([]float32, 1105)
	for _, fastOn := range []bool{false, true} {
		b.Run(fmt.Sprintf("fast=%v", fastOn), func(b *testing.B) {
			defer SetFast(fastOn)()
			for b.Loop() {
				for i := range x {
					x[i] = -float32(i%97) * 0.3
				}
				ExpShift(x, 0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
		})
	}
}

func TestSigmoidMul(t *testing.T) {
	expImpls(t, func(t *testing.T, maxULP int) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range []int{0, 1, 7, 8, 9, 31, 1000} {
			for _, alpha := range []float32{1, 1.702} {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(r.NormFloat64() * 8)
					if i%11 == 3 {
						x[i] = float32(r.NormFloat64() * 60) // tails: tiny and saturated sigmoids
					}
				}
				dst := make([]float32, n)
				SigmoidMul(dst, x, alpha)
				for i, v := range x {
					// The float64 formula as the ops' reference wrote it.
					a := float64(v * alpha)
					want := float32(float64(v) / (1 + math.Exp(-a)))
					if want == 0 {
						require.Zero(t, dst[i], "x=%v", v)
						continue
					}
					require.LessOrEqual(t, ulpDiff(want, dst[i]), maxULP, "alpha=%v x=%v: got %v, want %v", alpha, v, dst[i], want)
				}
				// In place, and position independence: the same values
				// shifted by one element give the same results.
				y := make([]float32, n)
				copy(y, x)
				SigmoidMul(y, y, alpha)
				require.Equal(t, dst, y, "in place")
				if n > 1 {
					z := make([]float32, n-1)
					SigmoidMul(z, x[1:], alpha)
					require.Equal(t, dst[1:], z, "shifted by one")
				}
			}
		}
		// Special values.
		x := []float32{0, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -1000, 1000, -100, float32(math.Copysign(0, -1)), -90}
		dst := make([]float32, len(x))
		SigmoidMul(dst, x, 1)
		require.Equal(t, float32(0), dst[0])
		require.True(t, math.IsInf(float64(dst[1]), 1))
		require.True(t, math.IsNaN(float64(dst[2])) && math.IsNaN(float64(dst[3])))
		require.Equal(t, float32(0), dst[4])
		require.Equal(t, float32(1000), dst[5])
		require.Equal(t, float32(-100*math.Exp(-100)), dst[6]) // a float32 subnormal
		require.Equal(t, float32(-90*math.Exp(-90)), dst[8])
	})
}
