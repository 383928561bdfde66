package ops

// conv2d runs conv2dFast (an implicit GEMM on the assembly kernels) or the
// reference conv2dRef; see linear.go for how their results relate.
func conv2d(dst, x, w, b *Tensor, stride, pad int) {
	if useFast() {
		conv2dFast(dst, x, w, b, stride, pad)
		return
	}
	conv2dRef(dst, x, w, b, stride, pad)
}

// convGeom is the geometry of a Conv2D call.
type convGeom struct {
	n, cin, h, w, cout, kh, kw, ho, wo int
}

// convDims checks Conv2D's shapes and returns its geometry.
func convDims(dst, x, w, b *Tensor, stride, pad int) convGeom {
	if len(x.Shape) != 4 || len(w.Shape) != 4 || w.Shape[1] != x.Shape[1] || stride <= 0 || pad < 0 ||
		(b != nil && len(b.Data) != w.Shape[0]) {
		badShapes("Conv2D", "want x [N, Cin, H, W], w [Cout, Cin, KH, KW], b [Cout] or nil, stride > 0, pad ≥ 0", dst, x, w, b)
	}
	g := convGeom{n: x.Shape[0], cin: x.Shape[1], h: x.Shape[2], w: x.Shape[3], cout: w.Shape[0], kh: w.Shape[2], kw: w.Shape[3]}
	if g.h+2*pad < g.kh || g.w+2*pad < g.kw {
		badShapes("Conv2D", "kernel larger than the padded input", dst, x, w)
	}
	g.ho, g.wo = (g.h+2*pad-g.kh)/stride+1, (g.w+2*pad-g.kw)/stride+1
	if len(dst.Shape) != 4 || dst.Shape[0] != g.n || dst.Shape[1] != g.cout || dst.Shape[2] != g.ho || dst.Shape[3] != g.wo {
		badShapes("Conv2D", "dst has the wrong shape for x, w, stride and pad", dst, x, w)
	}
	return g
}

// conv2dRef is the reference direct convolution, whatever the kernel set.
// Each output element is
//
//	f32(Σ_{ic, ky, kx ascending} f32(w[oc, ic, ky, kx]·x[n, ic, iy, ix])) + b[oc]
//
// accumulated in float32 from 0 (taps that fall into the zero padding are
// skipped, which leaves the sum unchanged). Work items are output rows
// (n, oc, oy); within a row, the loop over ox is innermost so it runs over
// contiguous memory for stride 1. dst must not alias x or w.
func conv2dRef(dst, x, w, b *Tensor, stride, pad int) {
	g := convDims(dst, x, w, b, stride, pad)
	n, cin, h, wd := g.n, g.cin, g.h, g.w
	cout, kh, kw := g.cout, g.kh, g.kw
	ho, wo := g.ho, g.wo
	// For each kx, the range of ox whose input column ox·stride−pad+kx is
	// inside [0, W).
	oxLo, oxHi := make([]int, kw), make([]int, kw)
	for kx := 0; kx < kw; kx++ {
		oxLo[kx], oxHi[kx] = validRange(wd, wo, stride, pad, kx)
	}
	// Stride-1 3-wide kernels (the U-Nets' 3×3 convolutions) take a fused
	// path over the interior columns [intLo, intHi), where all taps are in
	// range.
	intLo := min(pad, wo)
	intHi := max(intLo, min(wd-kw+1+pad, wo))
	fuse3 := stride == 1 && kw == 3 && intLo < intHi
	wdata, release := decoded(w)
	defer release()
	xs, ws, ds := x.Data, wdata, dst.Data
	parallelFor(n*cout*ho, 2*cin*kh*kw*wo, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			oy := r % ho
			oc := r / ho % cout
			in := r / (ho * cout)
			out := ds[r*wo : (r+1)*wo]
			clear(out)
			for ic := 0; ic < cin; ic++ {
				plane := xs[(in*cin+ic)*h*wd : (in*cin+ic+1)*h*wd]
				wk := ws[(oc*cin+ic)*kh*kw : (oc*cin+ic+1)*kh*kw]
				for ky := 0; ky < kh; ky++ {
					iy := oy*stride - pad + ky
					if iy < 0 || iy >= h {
						continue
					}
					xrow := plane[iy*wd : (iy+1)*wd]
					wrow := wk[ky*kw : (ky+1)*kw]
					if fuse3 {
						// Edge columns tap by tap, the interior with all
						// three taps per element (same order: kx ascending).
						for ox := 0; ox < intLo; ox++ {
							convEdge(out, xrow, wrow, ox, pad)
						}
						convRow3(out[intLo:intHi], xrow[intLo-pad:intHi-pad+2], wrow[0], wrow[1], wrow[2])
						for ox := intHi; ox < wo; ox++ {
							convEdge(out, xrow, wrow, ox, pad)
						}
						continue
					}
					for kx, wv := range wrow {
						a, z := oxLo[kx], oxHi[kx]
						if a >= z {
							continue
						}
						off := kx - pad
						if stride == 1 {
							o := out[a:z]
							src := xrow[a+off : z+off]
							src = src[:len(o)]
							for i, v := range src {
								o[i] += float32(wv * v)
							}
						} else {
							for ox := a; ox < z; ox++ {
								out[ox] += float32(wv * xrow[ox*stride+off])
							}
						}
					}
				}
			}
			if b != nil {
				bv := b.Data[oc]
				for i := range out {
					out[i] += bv
				}
			}
		}
	})
}

// convEdge adds the in-range taps of one stride-1 output column ox, kx
// ascending.
func convEdge(out, xrow, wrow []float32, ox, pad int) {
	o := out[ox]
	for kx, wv := range wrow {
		if ix := ox - pad + kx; ix >= 0 && ix < len(xrow) {
			o += float32(wv * xrow[ix])
		}
	}
	out[ox] = o
}

// convRow3 adds three taps to every element: out[i] += w0·x[i], then w1·x[i+1],
// then w2·x[i+2]; len(x) = len(out)+2.
func convRow3(out, x []float32, w0, w1, w2 float32) {
	n := len(out)
	x0, x1, x2 := x[:n], x[1:n+1], x[2:n+2]
	for i, s := range out {
		s += float32(w0 * x0[i])
		s += float32(w1 * x1[i])
		s += float32(w2 * x2[i])
		out[i] = s
	}
}

// validRange returns [lo, hi): the output columns ox in [0, wo) for which
// ox·stride − pad + k lies in [0, w).
func validRange(w, wo, stride, pad, k int) (lo, hi int) {
	if d := pad - k; d > 0 {
		lo = (d + stride - 1) / stride
	}
	last := w - 1 + pad - k // ox·stride ≤ last
	if last < 0 {
		return 0, 0
	}
	hi = min(last/stride+1, wo)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}
