package ops

import "math"

// meanVar returns the mean and the biased variance of xs, both accumulated in
// float64 in ascending order (two passes).
func meanVar(xs []float32) (mean, variance float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s float64
	for _, v := range xs {
		s += float64(v)
	}
	mean = s / float64(len(xs))
	var q float64
	for _, v := range xs {
		d := float64(v) - mean
		q += d * d
	}
	return mean, q / float64(len(xs))
}

// normalize writes dst[i] = f32(f32((x−mean)/sqrt(var+eps))·w) + b (the
// normalised value is computed in float64 and rounded once).
func normalize(dst, xs []float32, mean, sd float64, w, b float32) {
	dst = dst[:len(xs)]
	for i, v := range xs {
		nrm := float32((float64(v) - mean) / sd)
		dst[i] = float32(nrm*w) + b
	}
}

func groupNorm(dst, x *Tensor, groups int, w, b *Tensor, eps float32) {
	if len(x.Shape) < 2 || groups <= 0 || x.Shape[1]%groups != 0 || len(dst.Data) != len(x.Data) ||
		w == nil || b == nil || len(w.Data) != x.Shape[1] || len(b.Data) != x.Shape[1] {
		badShapes("GroupNorm", "want x [N, C, ...], C divisible by groups, dst like x, w, b [C]", dst, x, w, b)
	}
	n, c := x.Shape[0], x.Shape[1]
	if n*c == 0 {
		return
	}
	plane := len(x.Data) / (n * c)
	cg := c / groups
	size := cg * plane
	d, s, wv, bv := dst.Data, x.Data, w.Data, b.Data
	// Items are (n, group); each group's elements are contiguous.
	parallelFor(n*groups, 4*size, func(lo, hi int) {
		for it := lo; it < hi; it++ {
			off := it * size
			mean, variance := meanVar(s[off : off+size])
			sd := math.Sqrt(variance + float64(eps))
			g := it % groups
			for k := 0; k < cg; k++ {
				ch := g*cg + k
				p := off + k*plane
				normalize(d[p:p+plane], s[p:p+plane], mean, sd, wv[ch], bv[ch])
			}
		}
	})
}

func layerNorm(dst, x, w, b *Tensor, eps float32) {
	if len(x.Shape) == 0 || len(dst.Data) != len(x.Data) || w == nil || b == nil ||
		len(w.Data) != x.Dim(-1) || len(b.Data) != x.Dim(-1) {
		badShapes("LayerNorm", "want x [..., D], dst like x, w, b [D]", dst, x, w, b)
	}
	dim := x.Dim(-1)
	if dim == 0 {
		return
	}
	d, s, wv, bv := dst.Data, x.Data, w.Data, b.Data
	parallelFor(len(s)/dim, 4*dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xs, ys := s[r*dim:(r+1)*dim], d[r*dim:(r+1)*dim]
			mean, variance := meanVar(xs)
			sd := math.Sqrt(variance + float64(eps))
			for i, v := range xs {
				nrm := float32((float64(v) - mean) / sd)
				ys[i] = float32(nrm*wv[i]) + bv[i]
			}
		}
	})
}
