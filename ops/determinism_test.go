package ops

import (
	"testing"
)

// TestThreadCountInvariance runs every parallel op at 1, 2, 3 and 7 threads
// and requires bit-identical results. Sizes are chosen so that each op
// actually dispatches to the pool (checked) yet stays small enough for -race.
func TestThreadCountInvariance(t *testing.T) {
	old := minTileFlops
	minTileFlops = 1 << 12 // let the fast GEMM paths split these small products too
	t.Cleanup(func() { minTileFlops = old })
	r := newRand(12)
	big := randT(r, 2, 10, 60, 60) // 72000 elements
	big2 := randT(r, 2, 10, 60, 60)
	e2 := randT(r, 2, 20)
	e1 := randT(r, 2, 10)
	rows := randT(r, 1, 60, 60)
	gn := randT(r, 2, 8, 40, 40)
	cw, cb := randT(r, 8), randT(r, 8)
	ln := randT(r, 300, 64)
	lw, lb := randT(r, 64), randT(r, 64)
	lx, wt, bias := randT(r, 20, 40), randT(r, 70, 40), randT(r, 70)
	cx, cwt, cbias := randT(r, 2, 3, 16, 16), randT(r, 5, 3, 3, 3), randT(r, 5)
	px := randT(r, 2, 8, 64, 64)
	bx := randT(r, 2, 4, 32, 32)
	ca, cc := randT(r, 50, 30, 20), randT(r, 50, 50, 20)
	tx := randT(r, 3, 300, 70)
	q, k, v := randT(r, 2, 20, 15), randT(r, 2, 23, 15), randT(r, 2, 23, 15)
	abias := randT(r, 2, 20, 23)

	ops := []struct {
		name string
		run  func() *Tensor
	}{
		{"SiLU", func() *Tensor { d := New(big.Shape...); SiLU(d, big); return d }},
		{"GELU", func() *Tensor { d := New(big.Shape...); GELU(d, big); return d }},
		{"QuickGELU", func() *Tensor { d := New(big.Shape...); QuickGELU(d, big); return d }},
		{"Add", func() *Tensor { d := New(big.Shape...); Add(d, big, big2); return d }},
		{"AddRows", func() *Tensor { d := New(big.Shape...); AddRows(d, big, rows); return d }},
		{"AddChannel", func() *Tensor { d := New(big.Shape...); AddChannel(d, big, e1); return d }},
		{"ScaleShift", func() *Tensor { d := New(big.Shape...); ScaleShift(d, big, e2); return d }},
		{"Scale", func() *Tensor { d := New(big.Shape...); Scale(d, big, 0.3); return d }},
		{"Clamp", func() *Tensor { d := New(big.Shape...); Clamp(d, big, -1, 1); return d }},
		{"Guidance", func() *Tensor { d := New(big.Shape...); Guidance(d, big, big2, 5); return d }},
		{"GroupNorm", func() *Tensor { d := New(gn.Shape...); GroupNorm(d, gn, 4, cw, cb, 1e-5); return d }},
		{"LayerNorm", func() *Tensor { d := New(ln.Shape...); LayerNorm(d, ln, lw, lb, 1e-5); return d }},
		{"Linear", func() *Tensor { d := New(20, 70); Linear(d, lx, wt, bias); return d }},
		{"Conv2D", func() *Tensor { d := New(2, 5, 16, 16); Conv2D(d, cx, cwt, cbias, 1, 1); return d }},
		{"UpsampleNearest2x", func() *Tensor { d := New(2, 8, 128, 128); UpsampleNearest2x(d, px); return d }},
		{"AvgPool2x", func() *Tensor { d := New(2, 8, 32, 32); AvgPool2x(d, px); return d }},
		{"UpsampleBicubicAA", func() *Tensor { d := New(2, 4, 64, 64); UpsampleBicubicAA(d, bx); return d }},
		{"Concat", func() *Tensor { d := New(50, 80, 20); Concat(d, 1, ca, cc); return d }},
		{"Transpose", func() *Tensor { d := New(3, 70, 300); Transpose(d, tx); return d }},
		{"Attention", func() *Tensor { d := New(2, 20, 15); Attention(d, q, k, v, abias, 3, false, 0.4); return d }},
		{"AttentionCausal", func() *Tensor { d := New(2, 20, 15); Attention(d, q, k, v, nil, 3, true, 0.4); return d }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			withThreads(t, 1)
			want := op.run()
			for _, n := range []int{2, 3, 7} {
				SetThreads(n)
				before := dispatched.Load()
				got := op.run()
				if dispatched.Load() == before {
					t.Fatalf("%d threads: the op did not use the pool; make the test input larger", n)
				}
				requireBits(t, want.Data, got.Data, op.name)
			}
		})
	}
}
