package ops

import "github.com/dalle2/dalle2/ops/asm"

// Pre-packed weights: Linear and Conv2D repack their weight matrix into the
// GEMM micro-kernel's panel layout on every call. For a weight used at every
// denoising step, a model can pack it once at load time (PackLinear,
// PackConv2D) and call LinearPacked / Conv2DPacked instead: the results are
// bit-identical to Linear / Conv2D (the same FMA chains), without the
// per-call packing, which matters where the other operand is small (a few
// rows: the time-embedding projections, the text encoder and the prior at
// batch 2; convolutions over 8×8 and 16×16 maps). The packed copy costs as
// much memory as the weight itself (padded to the micro-tile). A compact
// weight (NewCompact) is not packed ahead: that would undo its saving; the
// Packed ops then decode and pack it per call, like Linear and Conv2D.

// PackedLinear is a Linear weight prepared by PackLinear.
type PackedLinear struct {
	// W is the weight as given, [N, K]; the reference path (purego, or the
	// fast path off at call time) uses it.
	W      *Tensor
	packed asm.PackedB // Wᵀ as the GEMM's right operand; empty if packed on the reference path
}

// PackLinear packs the Linear weight w [N, K] for LinearPacked. With the
// fast path off (purego) it only records w. w must not change afterwards.
func PackLinear(w *Tensor) *PackedLinear {
	if len(w.Shape) != 2 {
		badShapes("PackLinear", "want w [N, K]", w)
	}
	p := &PackedLinear{W: w}
	if useFast() && w.Q == nil {
		p.packed.Pack(w.Shape[1], w.Shape[0], w.Data, w.Shape[1], true)
	}
	return p
}

// LinearPacked is Linear(dst, x, w.W, b) with the weight packed once.
func LinearPacked(dst, x *Tensor, w *PackedLinear, b *Tensor) {
	m, n, k, bias := linearDims(dst, x, w.W, b)
	if !useFast() || w.packed.Cols() != n || w.packed.Rows() != k {
		linear(dst, x, w.W, b)
		return
	}
	d, xs := dst.Data, x.Data
	parallelGemm(m, n, k, 1, func(ws *workerScratch, i0, i1, j0, j1 int) {
		asm.GemmX(i1-i0, j1-j0, k, asm.OperandA{Data: xs[i0*k:], LD: k},
			asm.OperandB{Packed: &w.packed, Col0: j0}, d[i0*n+j0:], n, false, &ws.gemm)
		addBias(d, bias, n, i0, i1, j0, j1)
	})
}

// PackedConv2D is a Conv2D weight prepared by PackConv2D.
type PackedConv2D struct {
	// W is the weight as given, [Cout, Cin, KH, KW]; the reference path uses it.
	W      *Tensor
	packed asm.PackedA // W as a Cout×(Cin·KH·KW) left operand; empty on the reference path
}

// PackConv2D packs the Conv2D weight w [Cout, Cin, KH, KW] for
// Conv2DPacked. With the fast path off (purego) it only records w. w must
// not change afterwards.
func PackConv2D(w *Tensor) *PackedConv2D {
	if len(w.Shape) != 4 {
		badShapes("PackConv2D", "want w [Cout, Cin, KH, KW]", w)
	}
	p := &PackedConv2D{W: w}
	if useFast() && w.Q == nil {
		k := w.Shape[1] * w.Shape[2] * w.Shape[3]
		p.packed.Pack(w.Shape[0], k, w.Data, max(k, 1), false)
	}
	return p
}

// Conv2DPacked is Conv2D(dst, x, w.W, b, stride, pad) with the weight packed
// once.
func Conv2DPacked(dst, x *Tensor, w *PackedConv2D, b *Tensor, stride, pad int) {
	g := convDims(dst, x, w.W, b, stride, pad)
	if !useFast() || w.packed.Rows() != g.cout || w.packed.Cols() != g.cin*g.kh*g.kw {
		conv2d(dst, x, w.W, b, stride, pad)
		return
	}
	conv2dGemm(dst, x, w.W, &w.packed, b, stride, pad, g)
}
