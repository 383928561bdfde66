package ops

import (
	"fmt"
	"math"
)

func narrow(dst, x *Tensor, axis, start int) {
	if len(dst.Shape) != len(x.Shape) || axis < 0 || axis >= len(x.Shape) ||
		start < 0 || start+dst.Shape[axis] > x.Shape[axis] {
		panic(fmt.Sprintf("ops.Narrow: dst %v from x %v axis %d start %d", dst.Shape, x.Shape, axis, start))
	}
	outer, inner := 1, 1
	for i, d := range x.Shape {
		switch {
		case i < axis:
			outer *= d
			if dst.Shape[i] != d {
				panic(fmt.Sprintf("ops.Narrow: dst %v from x %v", dst.Shape, x.Shape))
			}
		case i > axis:
			inner *= d
			if dst.Shape[i] != d {
				panic(fmt.Sprintf("ops.Narrow: dst %v from x %v", dst.Shape, x.Shape))
			}
		}
	}
	src, n := x.Shape[axis]*inner, dst.Shape[axis]*inner
	for o := 0; o < outer; o++ {
		copy(dst.Data[o*n:(o+1)*n], x.Data[o*src+start*inner:o*src+start*inner+n])
	}
}

func imageFromSample(dst, x *Tensor) {
	if len(x.Shape) != 4 || len(dst.Shape) != 4 || dst.Shape[0] != x.Shape[0] ||
		dst.Shape[1] != x.Shape[2] || dst.Shape[2] != x.Shape[3] || dst.Shape[3] != x.Shape[1] {
		panic(fmt.Sprintf("ops.ImageFromSample: dst %v from x %v", dst.Shape, x.Shape))
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	for b := 0; b < n; b++ {
		for ch := 0; ch < c; ch++ {
			for i := 0; i < h*w; i++ {
				v := float32(x.Data[(b*c+ch)*h*w+i]*0.5) + 0.5
				if v < 0 {
					v = 0
				} else if v > 1 {
					v = 1
				}
				dst.Data[(b*h*w+i)*c+ch] = v
			}
		}
	}
}

func quantizeU8(dst []uint8, x *Tensor) {
	if len(dst) != len(x.Data) {
		panic(fmt.Sprintf("ops.QuantizeU8: %d bytes for %d values", len(dst), len(x.Data)))
	}
	for i, v := range x.Data {
		r := math.RoundToEven(float64(float32(v * 255)))
		if r < 0 {
			r = 0
		} else if r > 255 {
			r = 255
		}
		dst[i] = uint8(r)
	}
}
