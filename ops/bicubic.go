package ops

import "math"

// Antialiased bicubic resampling, following PyTorch's CPU kernel for
// F.interpolate(mode="bicubic", align_corners=False, antialias=True) step by
// step (spec §8, golden MANIFEST numerical note 5): separable, width pass
// first, Keys cubic with a = −0.5, truncated taps renormalised at the edges,
// float32 weights and fused multiply-add accumulation.

// aaTaps holds, for each output index of one axis, the first input index and
// the normalised weights of its taps.
type aaTaps struct {
	start []int
	w     [][]float32
}

// aaWeights computes the taps for resampling an axis of length in to out.
//
//	scale   = f32(in)/f32(out); support = 2·max(scale, 1)
//	center  = f32(scale·(i+0.5))
//	xmin    = max(trunc(f32(center−support)+0.5), 0)
//	xmax    = min(trunc(f32(center+support)+0.5), in)
//	w_j     = keys(f32((f32(f32(j+xmin) − center) + 0.5)·invscale)),
//	          invscale = f32(1/scale) when downsampling, else 1
//	w_j    /= f32 sum of w (taps in order), unless the sum is 0
func aaWeights(in, out int) aaTaps {
	t := aaTaps{start: make([]int, out), w: make([][]float32, out)}
	scale := float32(in) / float32(out)
	support := float32(2)
	invscale := float32(1)
	if scale >= 1 {
		support = 2 * scale
		invscale = float32(1 / float64(scale))
	}
	for i := 0; i < out; i++ {
		center := float32(float64(scale) * (float64(i) + 0.5))
		xmin := max(int(float64(center-support)+0.5), 0)
		xmax := min(int(float64(center+support)+0.5), in)
		ws := make([]float32, max(xmax-xmin, 0))
		var total float32
		for j := range ws {
			d := float32(j+xmin) - center
			arg := float32((float64(d) + 0.5) * float64(invscale))
			ws[j] = keysAA(arg)
			total += ws[j]
		}
		if total != 0 {
			for j := range ws {
				ws[j] /= total
			}
		}
		t.start[i], t.w[i] = xmin, ws
	}
	return t
}

// keysAA is the Keys cubic with a = −0.5 as PyTorch evaluates it in float32
// (compiled with FMA contraction):
//
//	|x| < 1: ((a+2)|x| − (a+3))·|x|·|x| + 1
//	|x| < 2: ((a|x| − 5a)|x| + 8a)|x| − 4a
func keysAA(x float32) float32 {
	const a = -0.5
	x = float32(math.Abs(float64(x)))
	if x < 1 {
		u := fma32(a+2, x, -(a + 3))
		return fma32(float32(u*x), x, 1)
	}
	if x < 2 {
		u := fma32(a, x, -5*a)
		u = fma32(u, x, 8*a)
		return fma32(u, x, -4*a)
	}
	return 0
}

// fma32 is a float32 fused multiply-add: a·b + c rounded once to float32.
//
// a·b is exact in float64. The sum is rounded to float64 with round-to-odd
// (round to nearest, then, if inexact and the result's last bit is even, step
// one ulp towards the exact value); rounding that to float32 is then the
// correctly rounded result, because float64 has more than 2·24+2 bits (a
// plain float64 FMA followed by a float32 conversion can round twice).
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b))
	cc := float64(c)
	s := p + cc
	// TwoSum: p + cc = s + e exactly.
	bb := s - p
	e := (p - (s - bb)) + (cc - bb)
	if e != 0 {
		bits := math.Float64bits(s)
		if bits&1 == 0 {
			if (e > 0) == (s > 0) {
				bits++ // away from zero
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}

// aaPassRows resamples the last axis of src, viewed as rows of length in, into
// dst rows of length len(t.start) (rows items). acc = x0·w0, then
// acc = fma(x_j, w_j, acc).
func aaPassRows(dst, src []float32, rows, in int, t aaTaps) {
	out := len(t.start)
	parallelFor(rows, 8*out, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			s := src[r*in : (r+1)*in]
			d := dst[r*out : (r+1)*out]
			for i := range d {
				ws := t.w[i]
				xs := s[t.start[i] : t.start[i]+len(ws)]
				acc := xs[0] * ws[0]
				for j := 1; j < len(ws); j++ {
					acc = fma32(xs[j], ws[j], acc)
				}
				d[i] = acc
			}
		}
	})
}

// aaPassCols resamples the second-to-last axis: src is planes of h rows of
// width w, dst planes of len(t.start) rows of width w. Items are output rows.
func aaPassCols(dst, src []float32, planes, h, w int, t aaTaps) {
	ho := len(t.start)
	parallelFor(planes*ho, 8*w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p, y := r/ho, r%ho
			ws := t.w[y]
			base := p*h*w + t.start[y]*w
			d := dst[r*w : (r+1)*w]
			x0 := src[base : base+w]
			for i, v := range x0 {
				d[i] = v * ws[0]
			}
			for j := 1; j < len(ws); j++ {
				xj := src[base+j*w : base+(j+1)*w]
				for i, v := range xj {
					d[i] = fma32(v, ws[j], d[i])
				}
			}
		}
	})
}

func upsampleBicubicAA(dst, x *Tensor) {
	if len(x.Shape) != 4 || len(dst.Shape) != 4 || dst.Shape[0] != x.Shape[0] || dst.Shape[1] != x.Shape[1] {
		badShapes("UpsampleBicubicAA", "want x [N, C, H, W], dst [N, C, Ho, Wo]", dst, x)
	}
	planes := x.Shape[0] * x.Shape[1]
	h, w := x.Shape[2], x.Shape[3]
	ho, wo := dst.Shape[2], dst.Shape[3]
	if (h == 0 && ho > 0) || (w == 0 && wo > 0) {
		badShapes("UpsampleBicubicAA", "cannot resample an empty axis to a non-empty one", dst, x)
	}
	if planes*ho*wo == 0 {
		return
	}
	tmp := make([]float32, planes*h*wo)
	aaPassRows(tmp, x.Data, planes*h, w, aaWeights(w, wo))
	aaPassCols(dst.Data, tmp, planes, h, wo, aaWeights(h, ho))
}
