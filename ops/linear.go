package ops

import "github.com/dalle2/dalle2/ops/asm"

// Matrix products (Linear; Conv2D and Attention share the machinery).
//
// Two implementations compute every product (three for Q8_0 weights):
//
//   - The fast path (whenever asm.Name() != "purego": amd64 with AVX2+FMA,
//     arm64 NEON) runs asm.Gemm's register-blocked micro-kernels from the
//     worker pool. Each output element is ONE chain of fused multiply-adds in
//     ascending k, s = fma(x_k, w_k, s), starting from 0; the bias (Linear,
//     Conv2D) is added to the finished chain, as in the reference and in
//     PyTorch. So it differs from the reference only by rounding: the
//     reference rounds every product before adding it. The chain does
//     not depend on cache blocking or on how C is split among threads, so the
//     results are bit-identical for any thread count on one architecture and
//     kernel set.
//   - Q8_0 weights on CPUs with AVX-512 VNNI (asm.Q16Fast, unless
//     SetQ16(false)) take the q16 path instead (q16.go): int16-quantized
//     activations, exact integer block sums, one chain of fused
//     multiply-adds over the 32-blocks; also bit-identical for any thread
//     count, and within ~2·10⁻⁵ relative error of the decoded product.
//   - The reference (the purego build tag, CPUs without the features, or
//     asm.SetFast(false)): plain Go loops, described below, kept callable as
//     linearRef, conv2dRef and attentionRef.
//
// Reference matrix products: every dot product is accumulated in float32 in
// ascending k order, starting from 0, with each product rounded to float32
// before it is added (no FMA), whatever kernel variant computes it; the
// bias is added to the finished sum. So any output element has one defined
// value, independent of blocking and thread count.

// Tile sizes of linear: a tile is linRows rows of x times linCols rows of w.
const (
	linRows = 16
	linCols = 64
)

func linear(dst, x, w, b *Tensor) {
	m, n, k, bias := linearDims(dst, x, w, b)
	switch {
	case useFast() && useQ16(w) && k > 0:
		linearQ16(dst.Data, x.Data, w.Q.Raw, bias, m, n, k)
	case useFast() && w.Q != nil:
		linearCompactFast(dst.Data, x.Data, w, bias, m, n, k)
	case useFast():
		linearFast(dst.Data, x.Data, w.Data, bias, m, n, k)
	default:
		linearRef(dst, x, w, b)
	}
}

// linearRef is Linear on the reference path, whatever the kernel set.
func linearRef(dst, x, w, b *Tensor) {
	m, n, k, bias := linearDims(dst, x, w, b)
	wd, release := decoded(w)
	defer release()
	gemmNT(dst.Data, x.Data, wd, bias, m, n, k)
}

// linearDims checks Linear's shapes and returns M, N, K and the bias (nil
// when b is nil).
func linearDims(dst, x, w, b *Tensor) (m, n, k int, bias []float32) {
	if len(x.Shape) == 0 || len(w.Shape) != 2 || w.Shape[1] != x.Dim(-1) ||
		(b != nil && len(b.Data) != w.Shape[0]) || len(dst.Shape) == 0 || dst.Dim(-1) != w.Shape[0] {
		badShapes("Linear", "want x [..., K], w [N, K], b [N] or nil, dst [..., N]", dst, x, w, b)
	}
	k, n = w.Shape[1], w.Shape[0]
	m = numel(x.Shape[:len(x.Shape)-1])
	if len(dst.Data) != m*n {
		badShapes("Linear", "dst has the wrong number of rows", dst, x, w)
	}
	if b != nil {
		bias = b.Data
	}
	return m, n, k, bias
}

// linearFast is gemmNT on the fast path: d = x·wᵀ (+ bias), each element one
// FMA chain over k from 0, then the bias added.
func linearFast(d, x, w, bias []float32, m, n, k int) {
	parallelGemm(m, n, k, 1, func(ws *workerScratch, i0, i1, j0, j1 int) {
		asm.GemmX(i1-i0, j1-j0, k, asm.OperandA{Data: x[i0*k:], LD: k},
			asm.OperandB{Data: w[j0*k:], LD: k, Trans: true}, d[i0*n+j0:], n, false, &ws.gemm)
		addBias(d, bias, n, i0, i1, j0, j1)
	})
}

// addBias adds bias[j0:j1] to rows [i0, i1) (leading dimension n) of d;
// bias may be nil.
func addBias(d, bias []float32, n, i0, i1, j0, j1 int) {
	if bias == nil {
		return
	}
	bs := bias[j0:j1]
	for i := i0; i < i1; i++ {
		addRow(d[i*n+j0:i*n+j1], bs)
	}
}

// addRow adds y to x elementwise (len(y) = len(x)).
func addRow(x, y []float32) {
	y = y[:len(x)]
	for i, v := range y {
		x[i] += v
	}
}

// gemmNT computes d[i·n+j] = Σ_k x[i·kk+k]·w[j·kk+k] (+ bias[j]) for an m×kk
// matrix x and an n×kk matrix w. bias may be nil. d must not alias x or w.
func gemmNT(d, x, w, bias []float32, m, n, kk int) {
	tm := (m + linRows - 1) / linRows
	tn := (n + linCols - 1) / linCols
	parallelFor(tm*tn, 2*linRows*linCols*kk, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			i0, j0 := t/tn*linRows, t%tn*linCols
			gemmTile(d, x, w, bias, n, kk, i0, min(i0+linRows, m), j0, min(j0+linCols, n))
		}
	})
}

// gemmTile computes rows [i0, i1) × columns [j0, j1) of gemmNT, two rows by
// four columns at a time.
func gemmTile(d, x, w, bias []float32, n, kk, i0, i1, j0, j1 int) {
	store := func(i, j int, s float32) {
		if bias != nil {
			s += bias[j]
		}
		d[i*n+j] = s
	}
	row := func(a []float32, i int) []float32 { return a[i*kk : (i+1)*kk] }
	j := j0
	for ; j+4 <= j1; j += 4 {
		w0, w1, w2, w3 := row(w, j), row(w, j+1), row(w, j+2), row(w, j+3)
		i := i0
		for ; i+2 <= i1; i += 2 {
			s := dot2x4(row(x, i), row(x, i+1), w0, w1, w2, w3)
			for c := 0; c < 4; c++ {
				store(i, j+c, s[c])
				store(i+1, j+c, s[4+c])
			}
		}
		if i < i1 {
			s := dot1x4(row(x, i), w0, w1, w2, w3)
			for c := 0; c < 4; c++ {
				store(i, j+c, s[c])
			}
		}
	}
	for ; j < j1; j++ {
		for i := i0; i < i1; i++ {
			store(i, j, dot(row(x, i), row(w, j)))
		}
	}
}

// dot is Σ x[k]·y[k] in float32, k ascending, each product rounded.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s float32
	for k, v := range x {
		s += float32(v * y[k])
	}
	return s
}

// dot1x4 is [dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3)].
func dot1x4(x, w0, w1, w2, w3 []float32) [4]float32 {
	n := len(x)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	var s0, s1, s2, s3 float32
	for k, a := range x {
		s0 += float32(a * w0[k])
		s1 += float32(a * w1[k])
		s2 += float32(a * w2[k])
		s3 += float32(a * w3[k])
	}
	return [4]float32{s0, s1, s2, s3}
}

// dot2x4 is [dot(x0, w0..w3), dot(x1, w0..w3)].
func dot2x4(x0, x1, w0, w1, w2, w3 []float32) [8]float32 {
	n := len(x0)
	x1, w0, w1, w2, w3 = x1[:n], w0[:n], w1[:n], w2[:n], w3[:n]
	var s00, s01, s02, s03, s10, s11, s12, s13 float32
	for k, a := range x0 {
		c := x1[k]
		b0, b1, b2, b3 := w0[k], w1[k], w2[k], w3[k]
		s00 += float32(a * b0)
		s01 += float32(a * b1)
		s02 += float32(a * b2)
		s03 += float32(a * b3)
		s10 += float32(c * b0)
		s11 += float32(c * b1)
		s12 += float32(c * b2)
		s13 += float32(c * b3)
	}
	return [8]float32{s00, s01, s02, s03, s10, s11, s12, s13}
}
