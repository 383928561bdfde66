package ops

import (
	"fmt"
	"math"
)

// cubicTaps holds, for each output index along one axis, the first of the
// four input taps (before clamping) and their weights.
type cubicTaps struct {
	first []int
	w     [][4]float32
}

// plainCubicTaps follows ATen's compute_indices_weights_cubic: opmath
// (float32) source index, floor, t, and get_cubic_upsample_coefficients
// with A = −0.75.
func plainCubicTaps(in, out int) cubicTaps {
	const a = float32(-0.75)
	conv1 := func(x float32) float32 { return float32(float32(float32(float32((a+2)*x)-(a+3))*x)*x) + 1 }
	conv2 := func(x float32) float32 {
		return float32(float32(float32(float32(float32(a*x)-5*a)*x)+8*a)*x) - 4*a
	}
	scale := float32(in) / float32(out)
	taps := cubicTaps{first: make([]int, out), w: make([][4]float32, out)}
	for i := 0; i < out; i++ {
		src := float32(scale*(float32(i)+0.5)) - 0.5
		f := float32(math.Floor(float64(src)))
		t := src - f
		taps.first[i] = int(f) - 1
		x2 := 1 - t
		taps.w[i] = [4]float32{conv2(t + 1), conv1(t), conv1(x2), conv2(x2 + 1)}
	}
	return taps
}

func clampIndex(i, n int) int {
	if i < 0 {
		return 0
	}
	if i >= n {
		return n - 1
	}
	return i
}

func upsampleBicubic(dst, x *Tensor) {
	if len(x.Shape) != 4 || len(dst.Shape) != 4 || dst.Shape[0] != x.Shape[0] || dst.Shape[1] != x.Shape[1] {
		panic(fmt.Sprintf("ops.UpsampleBicubic: dst %v from x %v", dst.Shape, x.Shape))
	}
	nc, h, w := x.Shape[0]*x.Shape[1], x.Shape[2], x.Shape[3]
	ho, wo := dst.Shape[2], dst.Shape[3]
	if h == 0 || w == 0 {
		panic(fmt.Sprintf("ops.UpsampleBicubic: empty input %v", x.Shape))
	}
	ty, tx := plainCubicTaps(h, ho), plainCubicTaps(w, wo)
	parallelFor(nc*ho, 40*wo, func(lo, hi int) {
		var rows [4]float32
		for r := lo; r < hi; r++ {
			plane, oy := r/ho, r%ho
			src := x.Data[plane*h*w : (plane+1)*h*w]
			out := dst.Data[r*wo : (r+1)*wo]
			for ox := 0; ox < wo; ox++ {
				wx := tx.w[ox]
				for i := 0; i < 4; i++ {
					row := src[clampIndex(ty.first[oy]+i, h)*w:]
					s := row[clampIndex(tx.first[ox], w)] * wx[0]
					for j := 1; j < 4; j++ {
						s = fma32(row[clampIndex(tx.first[ox]+j, w)], wx[j], s)
					}
					rows[i] = s
				}
				wy := ty.w[oy]
				s := rows[0] * wy[0]
				for i := 1; i < 4; i++ {
					s = fma32(rows[i], wy[i], s)
				}
				out[ox] = s
			}
		}
	})
}
