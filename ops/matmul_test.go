package ops

import (
	"fmt"
	"math"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
)

// Tests of Linear, Conv2D and Attention. Each implementation (the reference
// loops, and the fast path on the assembly GEMM where the CPU has it) is
// compared with two independent naive implementations: one in float32 that
// follows its documented rounding (rounded products added in order for the
// reference, one fused multiply-add chain for the fast path; must match bit
// for bit, whatever the blocking), and one in float64 (must agree within a
// rounding-error bound derived for that op).

// matImpl is one implementation of the matrix-product ops.
type matImpl struct {
	name      string
	fast      bool
	linear    func(dst, x, w, b *Tensor)
	conv2d    func(dst, x, w, b *Tensor, stride, pad int)
	attention func(dst, q, k, v, bias *Tensor, heads int, causal bool, scale float32)
}

// matImpls lists the reference, then the fast path when it is active (not
// under the purego tag or on CPUs without the assembly kernels).
func matImpls() []matImpl {
	ims := []matImpl{{name: "ref", linear: linearRef, conv2d: conv2dRef, attention: attentionRef}}
	if useFast() {
		ims = append(ims, matImpl{name: "fast/" + asm.Name(), fast: true, linear: Linear, conv2d: Conv2D, attention: Attention})
	}
	return ims
}

// fma is the float32 fused multiply-add of the fast path's chains.
func fma(x, y, z float32) float32 { return asm.FMA32(x, y, z) }

func TestLinearHand(t *testing.T) {
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	w := FromData([]float32{1, 0, -1, 0.5, 0.5, 0.5}, 2, 3)
	b := FromData([]float32{10, 20}, 2)
	dst := New(2, 2)
	Linear(dst, x, w, b)
	requireBits(t, []float32{10 - 2, 20 + 3, 10 - 2, 20 + 7.5}, dst.Data, "Linear")
	Linear(dst, x, w, nil)
	requireBits(t, []float32{-2, 3, -2, 7.5}, dst.Data, "Linear without bias")
}

func naiveLinear32(x, w, b []float32, m, n, k int) []float32 {
	out := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for kk := 0; kk < k; kk++ {
				s += float32(x[i*k+kk] * w[j*k+kk])
			}
			if b != nil {
				s += b[j]
			}
			out[i*n+j] = s
		}
	}
	return out
}

// naiveLinearFMA is the fast path's definition: one FMA chain per output
// from 0, then the bias.
func naiveLinearFMA(x, w, b []float32, m, n, k int) []float32 {
	out := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for kk := 0; kk < k; kk++ {
				s = fma(x[i*k+kk], w[j*k+kk], s)
			}
			if b != nil {
				s += b[j]
			}
			out[i*n+j] = s
		}
	}
	return out
}

func TestLinear(t *testing.T) {
	r := newRand(1)
	for _, tc := range []struct {
		lead    []int // leading dims of x
		k, n    int
		hasBias bool
	}{
		{[]int{0}, 3, 5, true},
		{[]int{1}, 1, 1, true},
		{[]int{2}, 0, 3, true}, // empty dot products: dst = b
		{[]int{3}, 7, 5, false},
		{[]int{2, 3}, 9, 6, true},
		{[]int{17}, 33, 67, true},   // odd sizes across 2×4 blocks and tiles
		{[]int{33}, 130, 129, true}, // several tiles both ways
		{[]int{1}, 320, 1280, true}, // one row (time embedding shape)
	} {
		m := numel(tc.lead)
		x := randT(r, append(append([]int(nil), tc.lead...), tc.k)...)
		w := randT(r, tc.n, tc.k)
		var b *Tensor
		var bd []float32
		if tc.hasBias {
			b = randT(r, tc.n)
			bd = b.Data
		}
		for _, im := range matImpls() {
			t.Run(fmt.Sprintf("%s/m=%d,k=%d,n=%d", im.name, m, tc.k, tc.n), func(t *testing.T) {
				dst := New(append(append([]int(nil), tc.lead...), tc.n)...)
				im.linear(dst, x, w, b)
				if im.fast {
					requireBits(t, naiveLinearFMA(x.Data, w.Data, bd, m, tc.n, tc.k), dst.Data, "Linear vs FMA chain")
				} else {
					requireBits(t, naiveLinear32(x.Data, w.Data, bd, m, tc.n, tc.k), dst.Data, "Linear vs float32 reference")
				}

				// float64: recursive float32 summation of k rounded products
				// plus the bias is within (k+2)·u·(Σ|x·w| + |b|) of the exact
				// value; an FMA chain has fewer roundings, same bound.
				want, tol := linear64(x.Data, w.Data, bd, m, tc.n, tc.k)
				requireClose(t, want, dst.Data, tol, "Linear vs float64")
			})
		}
	}
}

// linear64 is Linear in float64, with the error bound (k+2)·u·(Σ|x·w| + |b|)
// of a float32 implementation.
func linear64(x, w, b []float32, m, n, k int) (want, tol []float64) {
	want, tol = make([]float64, m*n), make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, a float64
			for kk := 0; kk < k; kk++ {
				p := float64(x[i*k+kk]) * float64(w[j*k+kk])
				s += p
				a += math.Abs(p)
			}
			if b != nil {
				s += float64(b[j])
				a += math.Abs(float64(b[j]))
			}
			want[i*n+j] = s
			tol[i*n+j] = float64(k+2) * u * a
		}
	}
	return want, tol
}

func TestLinearShapes(t *testing.T) {
	requirePanics(t, "K mismatch", func() { Linear(New(2, 3), New(2, 4), New(3, 5), nil) })
	requirePanics(t, "bias size", func() { Linear(New(2, 3), New(2, 4), New(3, 4), New(2)) })
	requirePanics(t, "dst rows", func() { Linear(New(3, 3), New(2, 4), New(3, 4), nil) })
	requirePanics(t, "dst cols", func() { Linear(New(2, 4), New(2, 4), New(3, 4), nil) })
}

// naiveConv32 sums in (ic, ky, kx) order, skipping taps in the padding.
func naiveConv32(x, w, b *Tensor, stride, pad int) *Tensor {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo := (h+2*pad-kh)/stride+1, (wd+2*pad-kw)/stride+1
	out := New(n, cout, ho, wo)
	for in := 0; in < n; in++ {
		for oc := 0; oc < cout; oc++ {
			for oy := 0; oy < ho; oy++ {
				for ox := 0; ox < wo; ox++ {
					var s float32
					for ic := 0; ic < cin; ic++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								s += float32(w.Data[((oc*cin+ic)*kh+ky)*kw+kx] * x.Data[((in*cin+ic)*h+iy)*wd+ix])
							}
						}
					}
					if b != nil {
						s += b.Data[oc]
					}
					out.Data[((in*cout+oc)*ho+oy)*wo+ox] = s
				}
			}
		}
	}
	return out
}

func TestConv2DHand(t *testing.T) {
	// 1 channel 3×3 input, 3×3 kernel of ones, pad 1: each output is the sum
	// of its in-range neighbourhood.
	x := FromData([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 1, 3, 3)
	w := New(1, 1, 3, 3)
	for i := range w.Data {
		w.Data[i] = 1
	}
	dst := New(1, 1, 3, 3)
	Conv2D(dst, x, w, FromData([]float32{0.5}, 1), 1, 1)
	requireBits(t, []float32{12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5}, dst.Data, "Conv2D 3×3 ones")
	// Stride 2, no padding, 2×2 kernel picking the top-left element.
	x4 := New(1, 1, 4, 4)
	for i := range x4.Data {
		x4.Data[i] = float32(i)
	}
	w2 := FromData([]float32{1, 0, 0, 0}, 1, 1, 2, 2)
	d2 := New(1, 1, 2, 2)
	Conv2D(d2, x4, w2, nil, 2, 0)
	requireBits(t, []float32{0, 2, 8, 10}, d2.Data, "Conv2D stride 2")
}

func TestConv2D(t *testing.T) {
	r := newRand(2)
	for _, tc := range []struct {
		n, cin, h, w, cout, kh, kw, stride, pad int
		bias                                    bool
	}{
		{1, 1, 1, 1, 1, 1, 1, 1, 0, true},
		{2, 3, 7, 6, 5, 3, 3, 1, 1, true},       // 3×3 pad 1
		{1, 4, 5, 5, 3, 1, 1, 1, 0, true},       // 1×1
		{2, 3, 9, 7, 4, 3, 3, 2, 1, false},      // stride 2
		{1, 3, 28, 42, 5, 14, 14, 14, 0, false}, // patch embedding
		{1, 2, 5, 4, 2, 2, 3, 3, 2, true},       // odd kernel, pad > kernel/2
		{0, 2, 4, 4, 3, 3, 3, 1, 1, true},       // empty batch
		{1, 0, 4, 4, 3, 3, 3, 1, 1, true},       // no input channels: dst = b
		{1, 2, 1, 1, 2, 3, 3, 1, 1, true},       // 1×1 image, 3×3 kernel
		{2, 3, 5, 4, 7, 3, 3, 1, 1, true},       // rows narrower than a panel: several per panel
		{1, 2, 3, 17, 3, 3, 3, 1, 1, false},     // NR+1 columns
		{1, 2, 6, 15, 9, 3, 3, 1, 1, true},      // NR−1 columns, MR+3 output channels
		{2, 3, 8, 11, 5, 3, 3, 2, 1, true},      // stride 2, odd width
		{1, 3, 6, 6, 4, 1, 1, 2, 0, true},       // 1×1, stride 2 (not a plain GEMM)
		{1, 3, 4, 4, 5, 1, 1, 1, 1, true},       // 1×1 with padding
		{2, 40, 6, 9, 13, 3, 3, 1, 1, true},     // K = 360: more than one depth block
	} {
		x := randT(r, tc.n, tc.cin, tc.h, tc.w)
		w := randT(r, tc.cout, tc.cin, tc.kh, tc.kw)
		var b *Tensor
		if tc.bias {
			b = randT(r, tc.cout)
		}
		for _, im := range matImpls() {
			t.Run(fmt.Sprintf("%s/%+v", im.name, tc), func(t *testing.T) {
				var want *Tensor
				if im.fast {
					want = naiveConvFMA(x, w, b, tc.stride, tc.pad)
				} else {
					want = naiveConv32(x, w, b, tc.stride, tc.pad)
				}
				dst := New(want.Shape...)
				im.conv2d(dst, x, w, b, tc.stride, tc.pad)
				requireBits(t, want.Data, dst.Data, im.name+" Conv2D vs its float32 definition")
				w64, tol := conv64(x, w, b, tc.stride, tc.pad)
				requireClose(t, w64, dst.Data, tol, "Conv2D vs float64")
			})
		}
	}
}

// naiveConvFMA is the fast path's definition: one FMA chain per output over
// (ic, ky, kx) ascending from 0, then the bias; taps in the padding are
// fma(w, 0, s).
func naiveConvFMA(x, w, b *Tensor, stride, pad int) *Tensor {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo := (h+2*pad-kh)/stride+1, (wd+2*pad-kw)/stride+1
	out := New(n, cout, ho, wo)
	for in := 0; in < n; in++ {
		for oc := 0; oc < cout; oc++ {
			for oy := 0; oy < ho; oy++ {
				for ox := 0; ox < wo; ox++ {
					var s float32
					for ic := 0; ic < cin; ic++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
								var xv float32
								if iy >= 0 && iy < h && ix >= 0 && ix < wd {
									xv = x.Data[((in*cin+ic)*h+iy)*wd+ix]
								}
								s = fma(w.Data[((oc*cin+ic)*kh+ky)*kw+kx], xv, s)
							}
						}
					}
					if b != nil {
						s += b.Data[oc]
					}
					out.Data[((in*cout+oc)*ho+oy)*wo+ox] = s
				}
			}
		}
	}
	return out
}

// conv64 is Conv2D in float64 with the bound of a float32 sum of
// K = cin·kh·kw products plus the bias: (K+2)·u·(Σ|w·x| + |b|).
func conv64(x, w, b *Tensor, stride, pad int) (want, tol []float64) {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo := (h+2*pad-kh)/stride+1, (wd+2*pad-kw)/stride+1
	want, tol = make([]float64, n*cout*ho*wo), make([]float64, n*cout*ho*wo)
	kk := cin * kh * kw
	for i := range want {
		ox, oy := i%wo, i/wo%ho
		oc, in := i/(wo*ho)%cout, i/(wo*ho*cout)
		var s, a float64
		for ic := 0; ic < cin; ic++ {
			for ky := 0; ky < kh; ky++ {
				for kx := 0; kx < kw; kx++ {
					iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
					if iy >= 0 && iy < h && ix >= 0 && ix < wd {
						p := float64(w.Data[((oc*cin+ic)*kh+ky)*kw+kx]) * float64(x.Data[((in*cin+ic)*h+iy)*wd+ix])
						s += p
						a += math.Abs(p)
					}
				}
			}
		}
		if b != nil {
			s += float64(b.Data[oc])
			a += math.Abs(float64(b.Data[oc]))
		}
		want[i], tol[i] = s, float64(kk+2)*u*a
	}
	return want, tol
}

func TestConv2DShapes(t *testing.T) {
	requirePanics(t, "cin mismatch", func() { Conv2D(New(1, 2, 3, 3), New(1, 3, 3, 3), New(2, 2, 3, 3), nil, 1, 1) })
	requirePanics(t, "dst shape", func() { Conv2D(New(1, 2, 4, 3), New(1, 3, 3, 3), New(2, 3, 3, 3), nil, 1, 1) })
	requirePanics(t, "stride 0", func() { Conv2D(New(1, 2, 3, 3), New(1, 3, 3, 3), New(2, 3, 3, 3), nil, 0, 1) })
	requirePanics(t, "kernel too big", func() { Conv2D(New(1, 2, 1, 1), New(1, 3, 2, 2), New(2, 3, 3, 3), nil, 1, 0) })
}

// naiveAttention32 follows attention's documented order in float32: with
// rounded products added in order and math.Exp (the reference), or, when
// chains, as the fast path: FMA chains for the two products, asm.ExpShift's
// exponential, a float64 sum of the weights, and the division after the
// weighted sum.
func naiveAttention32(q, k, v, bias *Tensor, heads int, causal bool, scale float32, chains bool) *Tensor {
	n, lq, hd := q.Shape[0], q.Shape[1], q.Shape[2]
	lk, d := k.Shape[1], hd/heads
	out := New(n, lq, hd)
	for b := 0; b < n; b++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < lq; i++ {
				nk := lk
				if causal {
					nk = min(i+1, lk)
				}
				ls := make([]float32, nk)
				m := float32(math.Inf(-1))
				for j := range ls {
					var s float32
					for c := 0; c < d; c++ {
						qv, kv := q.Data[(b*lq+i)*hd+h*d+c], k.Data[(b*lk+j)*hd+h*d+c]
						if chains {
							s = fma(qv, kv, s)
						} else {
							s += float32(qv * kv)
						}
					}
					l := float32(s * scale)
					if bias != nil {
						row := i
						if bias.Shape[1] == 1 {
							row = 0
						}
						l += bias.Data[(b*bias.Shape[1]+row)*lk+j]
					}
					ls[j] = l
					m = max(m, l)
				}
				var sum float32
				if chains {
					// asm.ExpShift (the exponential and the float64 sum) is
					// checked in its package; here it is the definition.
					sum = float32(asm.ExpShift(ls, m))
				} else {
					for j := range ls {
						ls[j] = float32(math.Exp(float64(ls[j] - m)))
						sum += ls[j]
					}
				}
				for c := 0; c < d; c++ {
					var o float32
					for j := range ls {
						if chains {
							o = fma(ls[j], v.Data[(b*lk+j)*hd+h*d+c], o)
						} else {
							o += float32(ls[j] / sum * v.Data[(b*lk+j)*hd+h*d+c])
						}
					}
					if chains && len(ls) > 0 {
						o /= sum
					}
					out.Data[(b*lq+i)*hd+h*d+c] = o
				}
			}
		}
	}
	return out
}

// attention64 is attention in float64. For each output it also returns an
// error bound for the float32 implementation: a logit carries at most
// δl = (D+2)·u·scale·Σ_d|q·k| + 2u·|l| error; exp(l−m) then has relative error
// ≤ 2·max δl + 2u (the shift by the max, exp rounding), the sum and division
// add (Lk+1)·u, and the weighted sum of v adds (Lk+1)·u·Σ p|v|.
func attention64(q, k, v, bias *Tensor, heads int, causal bool, scale float32) (want, tol []float64) {
	n, lq, hd := q.Shape[0], q.Shape[1], q.Shape[2]
	lk, d := k.Shape[1], hd/heads
	want, tol = make([]float64, n*lq*hd), make([]float64, n*lq*hd)
	for b := 0; b < n; b++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < lq; i++ {
				nk := lk
				if causal {
					nk = min(i+1, lk)
				}
				ls := make([]float64, nk)
				m, dl := math.Inf(-1), 0.0
				for j := range ls {
					var s, a float64
					for c := 0; c < d; c++ {
						p := float64(q.Data[(b*lq+i)*hd+h*d+c]) * float64(k.Data[(b*lk+j)*hd+h*d+c])
						s += p
						a += math.Abs(p)
					}
					l := s * float64(scale)
					if bias != nil {
						row := i
						if bias.Shape[1] == 1 {
							row = 0
						}
						l += float64(bias.Data[(b*bias.Shape[1]+row)*lk+j])
					}
					ls[j] = l
					m = max(m, l)
					dl = max(dl, float64(d+2)*u*float64(scale)*a+2*u*math.Abs(l))
				}
				var sum float64
				for j := range ls {
					ls[j] = math.Exp(ls[j] - m)
					sum += ls[j]
				}
				rel := 2*dl + 2*u + float64(nk+1)*u
				for c := 0; c < d; c++ {
					var o, a float64
					for j := range ls {
						p := ls[j] / sum * float64(v.Data[(b*lk+j)*hd+h*d+c])
						o += p
						a += math.Abs(p)
					}
					idx := (b*lq+i)*hd + h*d + c
					want[idx] = o
					tol[idx] = (rel + float64(nk+1)*u) * a * 1.01 // 1%: second-order terms
				}
			}
		}
	}
	return want, tol
}

func TestAttention(t *testing.T) {
	r := newRand(3)
	for _, tc := range []struct {
		n, lq, lk, heads, d int
		bias                string // "", "full", "row"
		causal              bool
	}{
		{1, 1, 1, 1, 1, "", false},
		{2, 3, 5, 1, 4, "", false},
		{2, 5, 7, 3, 5, "full", false},
		{2, 6, 9, 2, 8, "row", false},
		{1, 7, 7, 2, 3, "", true},
		{2, 9, 9, 3, 4, "row", true},
		{1, 20, 37, 2, 16, "full", false}, // several query blocks, odd key count
		{1, 3, 5, 1, 2, "", true},         // causal with more keys than queries
		{0, 3, 5, 1, 2, "", false},
		{1, 4, 0, 2, 3, "", false},                    // no keys: the output is 0
		{1, 4, 0, 1, 3, "", true},                     // no keys, causal
		{1, attnFastBlock + 3, 19, 2, 7, "row", true}, // causal, more queries than keys, two query blocks
		{2, attnFastBlock + 5, attnFastBlock + 9, 1, 17, "", true},
		{1, 2*attnFastBlock + 1, 23, 2, 64, "full", false},
	} {
		hd := tc.heads * tc.d
		q, k, v := randT(r, tc.n, tc.lq, hd), randT(r, tc.n, tc.lk, hd), randT(r, tc.n, tc.lk, hd)
		var bias *Tensor
		switch tc.bias {
		case "full":
			bias = randT(r, tc.n, tc.lq, tc.lk)
		case "row":
			bias = New(tc.n, 1, tc.lk)
			for i := range bias.Data {
				if r.IntN(3) == 0 {
					bias.Data[i] = -10000 // a masked key, as in the models
				}
			}
		}
		scale := float32(1 / math.Sqrt(float64(tc.d)))
		for _, im := range matImpls() {
			t.Run(fmt.Sprintf("%s/%+v", im.name, tc), func(t *testing.T) {
				dst := New(tc.n, tc.lq, hd)
				for i := range dst.Data {
					dst.Data[i] = float32(math.NaN()) // every output must be written
				}
				im.attention(dst, q, k, v, bias, tc.heads, tc.causal, scale)
				want := naiveAttention32(q, k, v, bias, tc.heads, tc.causal, scale, im.fast)
				requireBits(t, want.Data, dst.Data, im.name+" Attention vs its float32 definition")
				w64, tol := attention64(q, k, v, bias, tc.heads, tc.causal, scale)
				requireClose(t, w64, dst.Data, tol, "Attention vs float64")
			})
		}
	}
}

func TestAttentionHand(t *testing.T) {
	// Two keys with equal logits: the output is the mean of the values.
	q := FromData([]float32{1, 0}, 1, 1, 2)
	k := FromData([]float32{1, 0, 1, 0}, 1, 2, 2)
	v := FromData([]float32{2, 4, 6, 8}, 1, 2, 2)
	dst := New(1, 1, 2)
	Attention(dst, q, k, v, nil, 1, false, 1)
	requireBits(t, []float32{4, 6}, dst.Data, "equal weights")
	// A bias of −10000 removes key 1 (exp(−10000) underflows to 0).
	Attention(dst, q, k, v, FromData([]float32{0, -10000}, 1, 1, 2), 1, false, 1)
	requireBits(t, []float32{2, 4}, dst.Data, "masked key")
}

func TestAttentionCausalIgnoresFuture(t *testing.T) {
	r := newRand(4)
	q, k, v := randT(r, 2, 6, 6), randT(r, 2, 6, 6), randT(r, 2, 6, 6)
	a := New(2, 6, 6)
	Attention(a, q, k, v, nil, 2, true, 0.5)
	// Changing keys and values after position 3 must leave rows 0..3 as they
	// are, bit for bit: future keys get weight exactly 0.
	k2, v2 := k.Clone(), v.Clone()
	for b := 0; b < 2; b++ {
		for j := 4; j < 6; j++ {
			for c := 0; c < 6; c++ {
				k2.Data[(b*6+j)*6+c] = 1e3
				v2.Data[(b*6+j)*6+c] = float32(math.NaN())
			}
		}
	}
	b2 := New(2, 6, 6)
	Attention(b2, q, k2, v2, nil, 2, true, 0.5)
	for b := 0; b < 2; b++ {
		requireBits(t, a.Data[b*36:b*36+24], b2.Data[b*36:b*36+24], "rows 0..3")
	}
	// Row 0 attends only to key 0: its output is v[0] exactly.
	requireBits(t, v.Data[:6], a.Data[:6], "row 0")
}

func TestAttentionShapes(t *testing.T) {
	q := New(1, 2, 4)
	requirePanics(t, "heads", func() { Attention(New(1, 2, 4), q, New(1, 3, 4), New(1, 3, 4), nil, 3, false, 1) })
	requirePanics(t, "k width", func() { Attention(New(1, 2, 4), q, New(1, 3, 2), New(1, 3, 2), nil, 1, false, 1) })
	requirePanics(t, "v length", func() { Attention(New(1, 2, 4), q, New(1, 3, 4), New(1, 2, 4), nil, 1, false, 1) })
	requirePanics(t, "bias", func() { Attention(New(1, 2, 4), q, New(1, 3, 4), New(1, 3, 4), New(1, 2, 2), 1, false, 1) })
}
