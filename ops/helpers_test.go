package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// u is the unit roundoff of float32 (half an ulp of 1).
const u = 0x1p-24

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randT fills a new tensor with N(0, 1) values.
func randT(r *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(r.NormFloat64())
	}
	return t
}

// withThreads sets the pool size for the rest of the test.
func withThreads(t testing.TB, n int) {
	old := Threads()
	SetThreads(n)
	t.Cleanup(func() { SetThreads(old) })
}

// ulps is the distance between a and b in units in the last place (a and b
// of the same sign, or both zero).
func ulps(a, b float32) int64 {
	ia, ib := int64(int32(math.Float32bits(a))), int64(int32(math.Float32bits(b)))
	if ia < 0 {
		ia = math.MinInt32 - ia
	}
	if ib < 0 {
		ib = math.MinInt32 - ib
	}
	if ia > ib {
		return ia - ib
	}
	return ib - ia
}

// requireBits fails unless got and want are bit-identical.
func requireBits(t testing.TB, want, got []float32, what string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("%s: element %d is %v (%#08x), want %v (%#08x)", what, i,
				got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// requireClose fails if |got−want| > tol[i] for some i.
func requireClose(t testing.TB, want []float64, got []float32, tol []float64, what string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol[i]) {
			t.Fatalf("%s: element %d is %v, want %v ± %g (off by %g)", what, i, got[i], want[i], tol[i], d)
		}
	}
}

// requirePanics fails unless f panics.
func requirePanics(t testing.TB, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s: no panic", what)
		}
	}()
	f()
}
