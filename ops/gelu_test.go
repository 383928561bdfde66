package ops

import (
	"math"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
)

// geluRef is the previous implementation of GELU, kept as the reference:
// 0.5·x·erfc(−x/√2) in float64 with math.Erfc (relative error below 5e-14,
// see ops/asm's geluRef), rounded once.
func geluRef(v float32) float32 {
	x := float64(v)
	return float32(0.5 * x * math.Erfc(-x/math.Sqrt2))
}

// geluInputs is a tensor of typical GELU inputs (a transformer MLP's
// pre-activations) with tails down to the subnormal results and −0, and
// special values.
func geluInputs(shape ...int) *Tensor {
	x := randT(newRand(21), shape...)
	for i := range x.Data {
		switch i % 17 {
		case 3:
			x.Data[i] *= 10 // tails, x < −14.36 (−0) included
		case 9:
			x.Data[i] = -13 - float32(i%1000)*0.0015 // subnormal results
		default:
			x.Data[i] *= 2
		}
	}
	copy(x.Data, []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-40, -1e-40})
	return x
}

func TestGELUAgainstReference(t *testing.T) {
	x := geluInputs(3, 50021)
	dst := New(x.Shape...)
	GELU(dst, x)
	differ := 0
	for i, v := range x.Data {
		want, got := geluRef(v), dst.Data[i]
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("GELU(%v) = %v, want NaN", v, got)
			}
			continue
		}
		if got == want && math.Signbit(float64(got)) == math.Signbit(float64(want)) {
			continue
		}
		// Both round a float64 value (errors 1.5e-12 and 5e-14 relative)
		// once, so they differ only where the exact value lies within
		// 1.5e-12 of a midpoint, and then by one ulp.
		differ++
		if d := ulps(got, want); d > 1 {
			t.Fatalf("GELU(%v) = %v, reference %v (%d ulp)", v, got, want, d)
		}
	}
	// The chance of a value within 1.5e-12 of a midpoint is 2·1.5e-12·2^24
	// = 5e-5; 1e-3 of the elements would mean a much larger error.
	t.Logf("%d of %d elements differ from the reference by 1 ulp", differ, len(x.Data))
	if differ > len(x.Data)/1000 {
		t.Fatalf("%d of %d elements differ from the reference", differ, len(x.Data))
	}
}

func TestGELUKernelSets(t *testing.T) {
	// Split across threads or not, with the assembly or the generic code:
	// the same bits (the image must not depend on the machine's kernels or
	// thread count).
	x := geluInputs(7, 10007)
	want := New(x.Shape...)
	func() {
		defer asm.SetFast(false)()
		withThreads(t, 1)
		GELU(want, x)
	}()
	for _, th := range []int{1, 2, 3} {
		withThreads(t, th)
		got := New(x.Shape...)
		GELU(got, x)
		requireBits(t, want.Data, got.Data, "GELU "+asm.Name())
		y := x.Clone()
		GELU(y, y)
		requireBits(t, want.Data, y.Data, "GELU in place")
	}
}

// BenchmarkGELU compares the previous float64 math.Erfc GELU (impl=old) with
// asm.GELU through the pool, at the shape of one full-size prior MLP
// activation (2·81 tokens × 4·2048), reported per element.
func BenchmarkGELU(b *testing.B) {
	x := geluInputs(162, 8192)
	dst := New(x.Shape...)
	old := func(dst, x *Tensor) { mapUnary("GELU", dst, x, costExp, geluRef) }
	for _, impl := range []struct {
		name string
		f    func(dst, x *Tensor)
	}{{"impl=old", old}, {"impl=" + asm.Name(), GELU}} {
		benchThreads(b, impl.name, func(b *testing.B) {
			for b.Loop() {
				impl.f(dst, x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x.Data)), "ns/elem")
		})
	}
}
