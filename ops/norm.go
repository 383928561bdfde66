package ops

import "math"

// meanVar returns the mean and the biased variance of xs, both accumulated in
// float64 (two passes, each over four interleaved partial sums so that the
// additions pipeline; the order is fixed, so the result is deterministic).
func meanVar(xs []float32) (mean, variance float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		v := xs[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(xs); i++ {
		s0 += float64(xs[i])
	}
	mean = ((s0 + s1) + (s2 + s3)) / float64(len(xs))
	var q0, q1, q2, q3 float64
	i = 0
	for ; i+4 <= len(xs); i += 4 {
		v := xs[i : i+4 : i+4]
		d0, d1, d2, d3 := float64(v[0])-mean, float64(v[1])-mean, float64(v[2])-mean, float64(v[3])-mean
		q0 += d0 * d0
		q1 += d1 * d1
		q2 += d2 * d2
		q3 += d3 * d3
	}
	for ; i < len(xs); i++ {
		d := float64(xs[i]) - mean
		q0 += d * d
	}
	return mean, ((q0 + q1) + (q2 + q3)) / float64(len(xs))
}

// normalize writes dst[i] = f32(f32((x−mean)·(1/sd))·w) + b (the normalised
// value is computed in float64 and rounded once).
func normalize(dst, xs []float32, mean, sd float64, w, b float32) {
	dst = dst[:len(xs)]
	inv := 1 / sd
	for i, v := range xs {
		nrm := float32((float64(v) - mean) * inv)
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
			inv := 1 / sd
			ys, w, b := ys[:len(xs)], wv[:len(xs)], bv[:len(xs)]
			for i, v := range xs {
				nrm := float32((float64(v) - mean) * inv)
				ys[i] = float32(nrm*w[i]) + b[i]
			}
		}
	})
}
