package ops

import (
	"fmt"
	"math"

	"github.com/dalle2/dalle2/ops/asm"
)

// Reference implementations of the elementwise, normalisation and data-movement
// ops. Rounding follows spec §0: every step PyTorch performs as a separate fp32
// op is rounded with an explicit float32(...) conversion, which also stops the
// Go compiler from fusing a multiply and an add into an FMA.

// badShapes panics with a message naming the op and the shapes involved. It is
// only called on failure, so successful calls do not allocate.
func badShapes(op string, why string, ts ...*Tensor) {
	msg := "ops." + op + ": " + why
	for _, t := range ts {
		if t == nil {
			msg += " nil"
		} else {
			msg += fmt.Sprint(" ", t.Shape)
		}
	}
	panic(msg)
}

// Per-element work estimates for parallelFor.
const (
	costCopy = 1
	costExp  = 20
)

// mapUnary applies f to every element of x, writing dst (may alias x).
func mapUnary(op string, dst, x *Tensor, cost int, f func(float32) float32) {
	if len(dst.Data) != len(x.Data) {
		badShapes(op, "dst and x differ in size", dst, x)
	}
	d, s := dst.Data, x.Data
	parallelFor(len(d), cost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = f(s[i])
		}
	})
}

// silu is x·σ(x), evaluated in float64 by asm.SigmoidMul and rounded once.
func silu(dst, x *Tensor) { sigmoidMul("SiLU", dst, x, 1) }

// quickGELU is x·σ(1.702·x). As in PyTorch the argument f32(1.702·x) is a
// separate fp32 op; the rest is evaluated in float64 by asm.SigmoidMul and
// rounded once.
func quickGELU(dst, x *Tensor) { sigmoidMul("QuickGELU", dst, x, 1.702) }

// sigmoidMul is dst = x·σ(f32(alpha·x)) over the pool.
func sigmoidMul(op string, dst, x *Tensor, alpha float32) {
	if len(dst.Data) != len(x.Data) {
		badShapes(op, "dst and x differ in size", dst, x)
	}
	d, s := dst.Data, x.Data
	parallelFor(len(d), costExp, func(lo, hi int) {
		asm.SigmoidMul(d[lo:hi], s[lo:hi], alpha)
	})
}

// gelu is 0.5·x·(1+erf(x/√2)) by asm.GELU: evaluated in float64 as
// x·Φ(x) with Φ(x) from erfc(|x|/√2)/2 = e^(−x²/2)·P/Q (no cancellation of
// 1+erf for negative x; relative error below 1.5e-12) and rounded once, so
// within 0.5 ulp + 1.5e-12·|y| of the exact value everywhere, tiny negative
// results included, and bit-identical for every kernel set.
func gelu(dst, x *Tensor) {
	if len(dst.Data) != len(x.Data) {
		badShapes("GELU", "dst and x differ in size", dst, x)
	}
	d, s := dst.Data, x.Data
	parallelFor(len(d), costExp, func(lo, hi int) {
		asm.GELU(d[lo:hi], s[lo:hi])
	})
}

func add(dst, a, b *Tensor) {
	if len(dst.Data) != len(a.Data) || len(b.Data) != len(a.Data) {
		badShapes("Add", "sizes differ", dst, a, b)
	}
	d, x, y := dst.Data, a.Data, b.Data
	parallelFor(len(d), costCopy, func(lo, hi int) {
		ds, xs, ys := d[lo:hi], x[lo:hi], y[lo:hi]
		xs, ys = xs[:len(ds)], ys[:len(ds)]
		for i := range ds {
			ds[i] = xs[i] + ys[i]
		}
	})
}

func addRows(dst, x, y *Tensor) {
	m := len(y.Data)
	if len(dst.Data) != len(x.Data) || (m == 0 && len(x.Data) != 0) || (m != 0 && len(x.Data)%m != 0) {
		badShapes("AddRows", "x must be whole blocks of y", dst, x, y)
	}
	if m == 0 {
		return
	}
	d, s, r := dst.Data, x.Data, y.Data
	parallelFor(len(d)/m, m, func(lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			db, sb := d[blk*m:(blk+1)*m], s[blk*m:(blk+1)*m]
			for i, v := range r {
				db[i] = sb[i] + v
			}
		}
	})
}

// channelPlanes checks x: [N, C, ...] against a per-(n, channel) tensor e of
// shape [N, mult·C] and returns N, C and the plane size.
func channelPlanes(op string, dst, x, e *Tensor, mult int) (n, c, plane int) {
	if len(x.Shape) < 2 || len(e.Shape) != 2 || e.Shape[0] != x.Shape[0] ||
		e.Shape[1] != mult*x.Shape[1] || len(dst.Data) != len(x.Data) {
		badShapes(op, "want x [N, C, ...], e [N, C·k], dst like x", dst, x, e)
	}
	n, c = x.Shape[0], x.Shape[1]
	if n*c > 0 {
		plane = len(x.Data) / (n * c)
	}
	return n, c, plane
}

func addChannel(dst, x, e *Tensor) {
	n, c, plane := channelPlanes("AddChannel", dst, x, e, 1)
	d, s, ev := dst.Data, x.Data, e.Data
	parallelFor(n*c, plane, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			v := ev[p]
			db, sb := d[p*plane:(p+1)*plane], s[p*plane:(p+1)*plane]
			for i := range db {
				db[i] = sb[i] + v
			}
		}
	})
}

// scaleShift is f32(f32(x·f32(1+scale)) + shift) (spec §6.3 step 5).
func scaleShift(dst, x, e *Tensor) {
	n, c, plane := channelPlanes("ScaleShift", dst, x, e, 2)
	d, s, ev := dst.Data, x.Data, e.Data
	parallelFor(n*c, 2*plane, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			b, ch := p/c, p%c
			sc := float32(1 + ev[b*2*c+ch])
			sh := ev[b*2*c+c+ch]
			db, sb := d[p*plane:(p+1)*plane], s[p*plane:(p+1)*plane]
			for i := range db {
				db[i] = float32(sb[i]*sc) + sh
			}
		}
	})
}

func scale(dst, x *Tensor, s float32) {
	if len(dst.Data) != len(x.Data) {
		badShapes("Scale", "dst and x differ in size", dst, x)
	}
	d, xs := dst.Data, x.Data
	parallelFor(len(d), costCopy, func(lo, hi int) {
		ds, ss := d[lo:hi], xs[lo:hi]
		ss = ss[:len(ds)]
		for i, v := range ss {
			ds[i] = v * s
		}
	})
}

// clamp propagates NaN, like torch.clamp.
func clamp(dst, x *Tensor, lo, hi float32) {
	if len(dst.Data) != len(x.Data) {
		badShapes("Clamp", "dst and x differ in size", dst, x)
	}
	d, xs := dst.Data, x.Data
	parallelFor(len(d), costCopy, func(a, b int) {
		ds, ss := d[a:b], xs[a:b]
		ss = ss[:len(ds)]
		for i, v := range ss {
			if v < lo {
				v = lo
			} else if v > hi {
				v = hi
			}
			ds[i] = v
		}
	})
}

// guidance is f32(u + f32(g·f32(c − u))).
func guidance(dst, u, c *Tensor, g float32) {
	if len(dst.Data) != len(u.Data) || len(c.Data) != len(u.Data) {
		badShapes("Guidance", "sizes differ", dst, u, c)
	}
	d, us, cs := dst.Data, u.Data, c.Data
	parallelFor(len(d), costCopy, func(lo, hi int) {
		ds, ul, cl := d[lo:hi], us[lo:hi], cs[lo:hi]
		ul, cl = ul[:len(ds)], cl[:len(ds)]
		for i := range ds {
			ds[i] = ul[i] + float32(g*float32(cl[i]-ul[i]))
		}
	})
}

func upsampleNearest2x(dst, x *Tensor) {
	if len(x.Shape) != 4 || len(dst.Shape) != 4 || dst.Shape[0] != x.Shape[0] || dst.Shape[1] != x.Shape[1] ||
		dst.Shape[2] != 2*x.Shape[2] || dst.Shape[3] != 2*x.Shape[3] {
		badShapes("UpsampleNearest2x", "want x [N, C, H, W], dst [N, C, 2H, 2W]", dst, x)
	}
	h, w := x.Shape[2], x.Shape[3]
	d, s := dst.Data, x.Data
	// Items are output rows.
	parallelFor(x.Shape[0]*x.Shape[1]*2*h, 2*w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			plane, oy := r/(2*h), r%(2*h)
			src := s[(plane*h+oy/2)*w : (plane*h+oy/2+1)*w]
			out := d[r*2*w : (r+1)*2*w]
			for i, v := range src {
				out[2*i] = v
				out[2*i+1] = v
			}
		}
	})
}

// avgPool2x is F.avg_pool2d(kernel 2, stride 2) (floor mode): the window is
// summed in row-major order in fp32 and divided by 4.
func avgPool2x(dst, x *Tensor) {
	if len(x.Shape) != 4 || len(dst.Shape) != 4 || dst.Shape[0] != x.Shape[0] || dst.Shape[1] != x.Shape[1] ||
		dst.Shape[2] != x.Shape[2]/2 || dst.Shape[3] != x.Shape[3]/2 {
		badShapes("AvgPool2x", "want x [N, C, H, W], dst [N, C, H/2, W/2]", dst, x)
	}
	h, w := x.Shape[2], x.Shape[3]
	ho, wo := h/2, w/2
	d, s := dst.Data, x.Data
	parallelFor(x.Shape[0]*x.Shape[1]*ho, 4*wo, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			plane, oy := r/ho, r%ho
			r0 := s[(plane*h+2*oy)*w : (plane*h+2*oy+1)*w]
			r1 := s[(plane*h+2*oy+1)*w : (plane*h+2*oy+2)*w]
			out := d[r*wo : (r+1)*wo]
			for i := range out {
				sum := r0[2*i] + r0[2*i+1]
				sum += r1[2*i]
				sum += r1[2*i+1]
				out[i] = sum / 4
			}
		}
	})
}

func concat(dst *Tensor, axis int, xs ...*Tensor) {
	rank := len(dst.Shape)
	if axis < 0 || axis >= rank || len(xs) == 0 {
		badShapes("Concat", fmt.Sprintf("axis %d, %d inputs", axis, len(xs)), dst)
	}
	total := 0
	for _, x := range xs {
		ok := len(x.Shape) == rank
		for i := 0; ok && i < rank; i++ {
			ok = i == axis || x.Shape[i] == dst.Shape[i]
		}
		if !ok {
			badShapes("Concat", fmt.Sprintf("axis %d: input does not match dst", axis), dst, x)
		}
		total += x.Shape[axis]
	}
	if total != dst.Shape[axis] {
		badShapes("Concat", fmt.Sprintf("axis %d: sizes do not add up", axis), append([]*Tensor{dst}, xs...)...)
	}
	outer, inner := 1, 1
	for _, v := range dst.Shape[:axis] {
		outer *= v
	}
	for _, v := range dst.Shape[axis+1:] {
		inner *= v
	}
	row := total * inner
	parallelFor(outer, row, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			off := o * row
			for _, x := range xs {
				m := x.Shape[axis] * inner
				copy(dst.Data[off:off+m], x.Data[o*m:(o+1)*m])
				off += m
			}
		}
	})
}

// transposeTile is the side of the square blocks transpose copies.
const transposeTile = 32

func transpose(dst, x *Tensor) {
	if len(x.Shape) != 3 || len(dst.Shape) != 3 || dst.Shape[0] != x.Shape[0] ||
		dst.Shape[1] != x.Shape[2] || dst.Shape[2] != x.Shape[1] {
		badShapes("Transpose", "want x [N, A, B], dst [N, B, A]", dst, x)
	}
	n, a, b := x.Shape[0], x.Shape[1], x.Shape[2]
	tb := (b + transposeTile - 1) / transposeTile
	// Items are (n, block of dst rows).
	parallelFor(n*tb, transposeTile*a, func(lo, hi int) {
		for it := lo; it < hi; it++ {
			s := x.Data[it/tb*a*b : (it/tb+1)*a*b]
			d := dst.Data[it/tb*a*b : (it/tb+1)*a*b]
			j0 := it % tb * transposeTile
			j1 := min(j0+transposeTile, b)
			for i0 := 0; i0 < a; i0 += transposeTile {
				i1 := min(i0+transposeTile, a)
				for j := j0; j < j1; j++ {
					for i := i0; i < i1; i++ {
						d[j*a+i] = s[i*b+j]
					}
				}
			}
		}
	})
}

func embedding(dst, table *Tensor, ids []int) {
	if len(table.Shape) != 2 || len(dst.Shape) != 2 || dst.Shape[0] != len(ids) || dst.Shape[1] != table.Shape[1] {
		badShapes("Embedding", fmt.Sprintf("want table [V, D], dst [%d, D]", len(ids)), dst, table)
	}
	v, dim := table.Shape[0], table.Shape[1]
	for r, id := range ids {
		if id < 0 || id >= v {
			panic(fmt.Sprintf("ops.Embedding: id %d at position %d outside [0, %d)", id, r, v))
		}
		copy(dst.Data[r*dim:(r+1)*dim], table.Data[id*dim:(id+1)*dim])
	}
}

// timesteps follows spec §6.1 (diffusers get_timestep_embedding): every fp32
// op is rounded; cos and sin are evaluated in float64 and rounded once. An odd
// D gets a zero last column, as in diffusers.
func timesteps(dst *Tensor, t int64, flipSinToCos bool, shift float32) {
	if len(dst.Shape) != 2 {
		badShapes("Timesteps", "want dst [N, D]", dst)
	}
	n, dim := dst.Shape[0], dst.Shape[1]
	if n == 0 || dim == 0 {
		return
	}
	half := dim / 2
	row := dst.Data[:dim]
	negLog := float32(-math.Log(10000))
	den := float32(float64(half) - float64(shift))
	tf := float32(t)
	for i := 0; i < half; i++ {
		e := float32(negLog*float32(i)) / den
		w := float32(math.Exp(float64(e)))
		a := float64(float32(tf * w))
		s, c := float32(math.Sin(a)), float32(math.Cos(a))
		if flipSinToCos {
			row[i], row[half+i] = c, s
		} else {
			row[i], row[half+i] = s, c
		}
	}
	if dim%2 == 1 {
		row[dim-1] = 0
	}
	for r := 1; r < n; r++ {
		copy(dst.Data[r*dim:(r+1)*dim], row)
	}
}
