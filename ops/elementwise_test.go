package ops

import (
	"fmt"
	"math"
	"testing"
)

func TestActivationsHand(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(dst, x *Tensor)
		x    float32
		want float64 // from Python's math module in float64
	}{
		{"SiLU", SiLU, 1, 0.7310585786300049},
		{"SiLU", SiLU, 0, 0},
		{"SiLU", SiLU, 1000, 1000},
		{"GELU", GELU, 1, 0.8413447460685429},
		{"GELU", GELU, -1, -0.15865525393145707},
		{"GELU", GELU, 0, 0},
		{"GELU", GELU, -5, -1.4332578593959731e-06}, // −2.5·erfc(5/√2)
		{"GELU", GELU, -8, -4.9767684594174555e-15}, // −4·erfc(8/√2)
		// 1/(1+exp(−1.702)); the float32 argument f32(1.702) = 1.70200002
		// moves the result by ~3e-9, far below half an ulp (3e-8).
		{"QuickGELU", QuickGELU, 1, 0.8457957659328212},
		{"QuickGELU", QuickGELU, -1, -0.1542042340671787},
	} {
		dst := New(1)
		tc.f(dst, FromData([]float32{tc.x}, 1))
		// The implementation rounds the float64 value once, so it must be
		// the float32 nearest to the exact value (the constants above are
		// accurate to ~1e-16).
		if got, want := dst.Data[0], float32(tc.want); got != want {
			t.Errorf("%s(%v) = %v, want %v", tc.name, tc.x, got, want)
		}
	}
	// Saturation and special values.
	dst := New(4)
	SiLU(dst, FromData([]float32{-1000, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}, 4))
	if dst.Data[0] != 0 || !math.IsInf(float64(dst.Data[1]), 1) || !math.IsNaN(float64(dst.Data[3])) {
		t.Errorf("SiLU special values: %v", dst.Data)
	}
	GELU(dst, FromData([]float32{-10, 10, float32(math.Inf(1)), float32(math.NaN())}, 4))
	if dst.Data[0] > 0 || dst.Data[0] < -1e-20 || dst.Data[1] != 10 || !math.IsInf(float64(dst.Data[2]), 1) || !math.IsNaN(float64(dst.Data[3])) {
		t.Errorf("GELU special values: %v", dst.Data)
	}
}

func TestActivationsRandom(t *testing.T) {
	r := newRand(5)
	x := randT(r, 3, 1001)
	for i := range x.Data {
		x.Data[i] *= 6
	}
	for _, tc := range []struct {
		name string
		f    func(dst, x *Tensor)
		ref  func(float64) float64 // written differently from the implementation
	}{
		{"SiLU", SiLU, func(v float64) float64 { return v * sigmoid64(v) }},
		// 1+erf cancels for negative x; below −3 it loses more than 3 of
		// float64's ~16 digits, so the tail is checked by hand values above.
		{"GELU", GELU, func(v float64) float64 { return max(v, -3) * 0.5 * (1 + math.Erf(max(v, -3)/math.Sqrt2)) }},
		{"QuickGELU", QuickGELU, func(v float64) float64 {
			a := float64(float32(v * float64(float32(1.702))))
			return v * sigmoid64(a)
		}},
	} {
		dst := New(x.Shape...)
		tc.f(dst, x)
		for i, v := range x.Data {
			if tc.name == "GELU" && v < -3 {
				continue
			}
			// Both sides are float64 evaluations (error ~1e-15 relative)
			// rounded once to float32, so they may differ by the rounding
			// of a value that lies within 1e-15 of a midpoint: ≤ 1 ulp.
			if d := ulps(dst.Data[i], float32(tc.ref(float64(v)))); d > 1 {
				t.Fatalf("%s(%v) = %v, reference %v (%d ulp)", tc.name, v, dst.Data[i], tc.ref(float64(v)), d)
			}
		}
		// In place.
		y := x.Clone()
		tc.f(y, y)
		requireBits(t, dst.Data, y.Data, tc.name+" in place")
	}
}

func TestElementwiseHand(t *testing.T) {
	a := FromData([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := FromData([]float32{10, 20, 30, 40, 50, 60}, 2, 3)
	dst := New(2, 3)

	Add(dst, a, b)
	requireBits(t, []float32{11, 22, 33, 44, 55, 66}, dst.Data, "Add")

	AddRows(dst, a, FromData([]float32{100, 200, 300}, 1, 3))
	requireBits(t, []float32{101, 202, 303, 104, 205, 306}, dst.Data, "AddRows")

	Scale(dst, a, 0.5)
	requireBits(t, []float32{0.5, 1, 1.5, 2, 2.5, 3}, dst.Data, "Scale")

	Clamp(dst, a, 2, 4.5)
	requireBits(t, []float32{2, 2, 3, 4, 4.5, 4.5}, dst.Data, "Clamp")

	// u + g·(c − u) with u = a, c = b, g = 2.
	Guidance(dst, a, b, 2)
	requireBits(t, []float32{19, 38, 57, 76, 95, 114}, dst.Data, "Guidance")

	Copy(dst, b)
	requireBits(t, b.Data, dst.Data, "Copy")

	// x [1, 2, 3] (2 channels of 3 positions), e [1, 2].
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 2, 3)
	AddChannel(dst, x, FromData([]float32{10, 20}, 1, 2))
	requireBits(t, []float32{11, 12, 13, 24, 25, 26}, dst.Data, "AddChannel")

	// e = [scale0, scale1, shift0, shift1].
	ScaleShift(dst, x, FromData([]float32{1, -0.5, 100, 200}, 1, 4))
	requireBits(t, []float32{102, 104, 106, 202, 202.5, 203}, dst.Data, "ScaleShift")
}

func TestElementwiseRandom(t *testing.T) {
	r := newRand(6)
	x, y := randT(r, 2, 5, 3, 7), randT(r, 2, 5, 3, 7)
	e := randT(r, 2, 10)
	dst := New(x.Shape...)

	// Each op is a fixed sequence of float32 operations; the loops below are
	// that definition written out, so results must match bit for bit.
	ScaleShift(dst, x, e)
	for i, v := range x.Data {
		n, c := i/105, i/21%5
		sc := float32(1 + e.Data[n*10+c])
		want := float32(v*sc) + e.Data[n*10+5+c]
		if dst.Data[i] != want {
			t.Fatalf("ScaleShift element %d: %v, want %v", i, dst.Data[i], want)
		}
	}
	// Against float64: three roundings, each ≤ u relative to its result.
	for i, v := range x.Data {
		n, c := i/105, i/21%5
		p := float64(v) * (1 + float64(e.Data[n*10+c]))
		want := p + float64(e.Data[n*10+5+c])
		tol := 3*u*math.Abs(p) + u*math.Abs(want)
		if d := math.Abs(float64(dst.Data[i]) - want); d > tol {
			t.Fatalf("ScaleShift element %d: %v, float64 %v", i, dst.Data[i], want)
		}
	}
	Guidance(dst, x, y, 4)
	for i := range x.Data {
		want := x.Data[i] + float32(4*float32(y.Data[i]-x.Data[i]))
		if dst.Data[i] != want {
			t.Fatalf("Guidance element %d: %v, want %v", i, dst.Data[i], want)
		}
	}
	AddChannel(dst, x, e.Reshape(4, 5).Rows(0, 2)) // e[n, c] = e.Data[n·5+c]
	for i, v := range x.Data {
		n, c := i/105, i/21%5
		if want := v + e.Data[n*5+c]; dst.Data[i] != want {
			t.Fatalf("AddChannel element %d: %v, want %v", i, dst.Data[i], want)
		}
	}
	// In place (dst aliases x) for every elementwise op.
	for _, op := range []struct {
		name string
		f    func(dst, x *Tensor)
	}{
		{"Add", func(d, x *Tensor) { Add(d, x, y) }},
		{"AddRows", func(d, x *Tensor) { AddRows(d, x, y.Reshape(2, 105).Rows(0, 1)) }},
		{"AddChannel", func(d, x *Tensor) { AddChannel(d, x, e.Reshape(4, 5).Rows(0, 2)) }},
		{"ScaleShift", func(d, x *Tensor) { ScaleShift(d, x, e) }},
		{"Scale", func(d, x *Tensor) { Scale(d, x, -3) }},
		{"Clamp", func(d, x *Tensor) { Clamp(d, x, -0.5, 0.7) }},
		{"Guidance", func(d, x *Tensor) { Guidance(d, x, y, 7.5) }},
	} {
		want := New(x.Shape...)
		op.f(want, x)
		got := x.Clone()
		op.f(got, got)
		requireBits(t, want.Data, got.Data, op.name+" in place")
	}
}

func TestElementwiseShapes(t *testing.T) {
	requirePanics(t, "Add", func() { Add(New(3), New(3), New(4)) })
	requirePanics(t, "AddRows", func() { AddRows(New(5), New(5), New(2)) })
	requirePanics(t, "AddChannel", func() { AddChannel(New(1, 2, 3), New(1, 2, 3), New(1, 3)) })
	requirePanics(t, "ScaleShift", func() { ScaleShift(New(1, 2, 3), New(1, 2, 3), New(1, 2)) })
	requirePanics(t, "SiLU", func() { SiLU(New(2), New(3)) })
	// Empty tensors are fine.
	AddRows(New(0), New(0), New(0))
	Add(New(0), New(0), New(0))
}

func TestClampNaN(t *testing.T) {
	dst := New(1)
	Clamp(dst, FromData([]float32{float32(math.NaN())}, 1), -1, 1)
	if !math.IsNaN(float64(dst.Data[0])) {
		t.Fatalf("Clamp(NaN) = %v, want NaN (as torch.clamp)", dst.Data[0])
	}
}

func TestNearestAndAvgPool(t *testing.T) {
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 1, 2, 3)
	up := New(1, 1, 4, 6)
	UpsampleNearest2x(up, x)
	requireBits(t, []float32{
		1, 1, 2, 2, 3, 3,
		1, 1, 2, 2, 3, 3,
		4, 4, 5, 5, 6, 6,
		4, 4, 5, 5, 6, 6,
	}, up.Data, "UpsampleNearest2x")

	// AvgPool2x undoes it exactly.
	down := New(1, 1, 2, 3)
	AvgPool2x(down, up)
	requireBits(t, x.Data, down.Data, "AvgPool2x of upsampled")

	// Odd sizes drop the last row and column (floor mode).
	y := FromData([]float32{
		1, 2, 3,
		4, 5, 6,
		7, 8, 9,
	}, 1, 1, 3, 3)
	p := New(1, 1, 1, 1)
	AvgPool2x(p, y)
	requireBits(t, []float32{3}, p.Data, "AvgPool2x 3×3")

	// Summation order: ((a+b)+c)+d, then /4.
	r := newRand(7)
	z := randT(r, 2, 3, 6, 8)
	q := New(2, 3, 3, 4)
	AvgPool2x(q, z)
	for i := range q.Data {
		ox, oy, pl := i%4, i/4%3, i/12
		at := func(dy, dx int) float32 { return z.Data[pl*48+(2*oy+dy)*8+2*ox+dx] }
		want := (((at(0, 0) + at(0, 1)) + at(1, 0)) + at(1, 1)) / 4
		if q.Data[i] != want {
			t.Fatalf("AvgPool2x element %d: %v, want %v", i, q.Data[i], want)
		}
	}
	requirePanics(t, "UpsampleNearest2x shape", func() { UpsampleNearest2x(New(1, 1, 4, 5), x) })
	requirePanics(t, "AvgPool2x shape", func() { AvgPool2x(New(1, 1, 2, 2), y) })
}

func TestConcat(t *testing.T) {
	a := FromData([]float32{1, 2, 3, 4}, 2, 2)
	b := FromData([]float32{5, 6}, 2, 1)
	dst := New(2, 3)
	Concat(dst, 1, a, b)
	requireBits(t, []float32{1, 2, 5, 3, 4, 6}, dst.Data, "Concat axis 1")

	c := FromData([]float32{7, 8}, 1, 2)
	d0 := New(3, 2)
	Concat(d0, 0, a, c)
	requireBits(t, []float32{1, 2, 3, 4, 7, 8}, d0.Data, "Concat axis 0")

	// An input with zero extent along the axis, on the last axis of a 3-D tensor.
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 3, 2)
	dst3 := New(1, 3, 3)
	Concat(dst3, 2, x, New(1, 3, 0), FromData([]float32{9, 8, 7}, 1, 3, 1))
	requireBits(t, []float32{1, 2, 9, 3, 4, 8, 5, 6, 7}, dst3.Data, "Concat axis 2")

	requirePanics(t, "axis size", func() { Concat(New(2, 4), 1, a, b) })
	requirePanics(t, "other dims", func() { Concat(New(2, 3), 1, a, New(3, 1)) })
	requirePanics(t, "axis", func() { Concat(New(2, 3), 2, a, b) })
}

func TestTranspose(t *testing.T) {
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 2, 3)
	dst := New(1, 3, 2)
	Transpose(dst, x)
	requireBits(t, []float32{1, 4, 2, 5, 3, 6}, dst.Data, "Transpose")
	r := newRand(8)
	for _, s := range [][3]int{{1, 1, 1}, {2, 40, 33}, {3, 65, 7}, {1, 0, 4}} {
		x := randT(r, s[0], s[1], s[2])
		d := New(s[0], s[2], s[1])
		Transpose(d, x)
		for n := 0; n < s[0]; n++ {
			for i := 0; i < s[1]; i++ {
				for j := 0; j < s[2]; j++ {
					if d.Data[(n*s[2]+j)*s[1]+i] != x.Data[(n*s[1]+i)*s[2]+j] {
						t.Fatalf("Transpose %v: element (%d,%d,%d) wrong", s, n, i, j)
					}
				}
			}
		}
	}
	requirePanics(t, "shape", func() { Transpose(New(1, 2, 3), x) })
}

func TestEmbedding(t *testing.T) {
	table := FromData([]float32{0, 1, 10, 11, 20, 21}, 3, 2)
	dst := New(4, 2)
	Embedding(dst, table, []int{2, 0, 2, 1})
	requireBits(t, []float32{20, 21, 0, 1, 20, 21, 10, 11}, dst.Data, "Embedding")
	Embedding(New(0, 2), table, nil)
	requirePanics(t, "id out of range", func() { Embedding(New(1, 2), table, []int{3}) })
	requirePanics(t, "negative id", func() { Embedding(New(1, 2), table, []int{-1}) })
	requirePanics(t, "dst rows", func() { Embedding(New(2, 2), table, []int{1}) })
}

func TestTimestepsHand(t *testing.T) {
	// D = 4, shift 0: ω = [1, f32(exp(f32(−ln 10000)/2))] = [1, 0.0099999998];
	// t·ω₁ = 0.99999998 rounds to exactly 1 in float32.
	dst := New(2, 4)
	Timesteps(dst, 100, true, 0)
	c100, s100 := float32(math.Cos(100)), float32(math.Sin(100))
	c1, s1 := float32(math.Cos(1)), float32(math.Sin(1))
	requireBits(t, []float32{c100, c1, s100, s1, c100, c1, s100, s1}, dst.Data, "flip_sin_to_cos")
	Timesteps(dst, 100, false, 0)
	requireBits(t, []float32{s100, s1, c100, c1, s100, s1, c100, c1}, dst.Data, "sin first")

	// shift 1: the divisor is half − 1 = 1, so ω₁ = f32(exp(−9.2103405)) =
	// 1.0000e-4 (within an ulp); t = 10000 gives a₁ = f32(10000·ω₁).
	one := New(1, 4)
	Timesteps(one, 10000, true, 1)
	w1 := float32(math.Exp(float64(float32(-math.Log(10000)))))
	a1 := float64(float32(10000 * w1))
	if math.Abs(a1-1) > 1e-6 {
		t.Fatalf("a₁ = %v, want ≈1", a1)
	}
	requireBits(t, []float32{float32(math.Cos(10000)), float32(math.Cos(a1)), float32(math.Sin(10000)), float32(math.Sin(a1))}, one.Data, "shift 1")

	// Odd D: zero last column.
	odd := New(1, 5)
	Timesteps(odd, 3, true, 0)
	if odd.Data[4] != 0 || odd.Data[0] != float32(math.Cos(3)) {
		t.Fatalf("odd D: %v", odd.Data)
	}
	Timesteps(New(0, 4), 1, true, 0)
}

func TestTimestepsSpec(t *testing.T) {
	// D = 320, t = 999 against float64 math. The float32 steps make ω_i off
	// by up to ~2 ulp (two roundings of e_i, one of exp), i.e. a relative
	// error ≤ 1.2e-7·(|e_i|+1); a_i = 999·ω_i then is off by at most
	// 999·ω_i·1.2e-7·(|e_i|+1) ≤ 7.3e-5 (largest at e_i = −0.5), plus
	// half an ulp of a_i (≤ 3.1e-5 below 1024). cos and sin move by at most
	// as much, so 1e-4 bounds the error.
	dst := New(1, 320)
	Timesteps(dst, 999, true, 0)
	var maxd float64
	for i := 0; i < 160; i++ {
		w := math.Exp(-math.Log(10000) * float64(i) / 160)
		a := 999 * w
		maxd = max(maxd, math.Abs(float64(dst.Data[i])-math.Cos(a)), math.Abs(float64(dst.Data[160+i])-math.Sin(a)))
	}
	t.Logf("max |Timesteps − float64| = %.3g", maxd)
	if maxd > 1e-4 {
		t.Fatalf("max difference %g > 1e-4", maxd)
	}
}

func TestNorms(t *testing.T) {
	// Hand case: one group of [1, 2, 3, 4], w = 1, b = 0, eps = 0:
	// mean 2.5, variance 1.25, normalised ±1.3416408, ±0.4472136.
	x := FromData([]float32{1, 2, 3, 4}, 1, 4)
	ones, zeros := FromData([]float32{1, 1, 1, 1}, 4), New(4)
	want := []float32{float32(-1.5 / math.Sqrt(1.25)), float32(-0.5 / math.Sqrt(1.25)), float32(0.5 / math.Sqrt(1.25)), float32(1.5 / math.Sqrt(1.25))}
	dst := New(1, 4)
	LayerNorm(dst, x, ones, zeros, 0)
	requireBits(t, want, dst.Data, "LayerNorm hand")
	GroupNorm(dst, x, 1, ones, zeros, 0)
	requireBits(t, want, dst.Data, "GroupNorm hand (one group)")
	// Four groups of one element: variance 0, normalised value 0, y = b.
	b := FromData([]float32{5, 6, 7, 8}, 4)
	GroupNorm(dst, x, 4, ones, b, 1e-5)
	requireBits(t, b.Data, dst.Data, "GroupNorm single-element groups")

	r := newRand(9)
	for _, tc := range []struct {
		shape  []int
		groups int // 0: LayerNorm
	}{
		{[]int{2, 6, 3, 5}, 3},
		{[]int{1, 4, 1, 1}, 2},
		{[]int{2, 64, 7, 7}, 32},
		{[]int{3, 8}, 4},
		{[]int{0, 4, 2, 2}, 2},
		{[]int{3, 5, 7}, 0},
		{[]int{1, 1}, 0},
		{[]int{0, 3}, 0},
		{[]int{4, 1000}, 0},
	} {
		name := fmt.Sprintf("%v/groups=%d", tc.shape, tc.groups)
		t.Run(name, func(t *testing.T) {
			x := randT(r, tc.shape...)
			for i := range x.Data {
				x.Data[i] = x.Data[i]*3 + 2 // nonzero mean
			}
			c := tc.shape[len(tc.shape)-1]
			if tc.groups > 0 {
				c = tc.shape[1]
			}
			w, b := randT(r, c), randT(r, c)
			dst := New(tc.shape...)
			var seg, per int // elements per group; elements per channel
			if tc.groups > 0 {
				GroupNorm(dst, x, tc.groups, w, b, 1e-5)
				per = 1
				for _, d := range tc.shape[2:] {
					per *= d
				}
				seg = per * c / tc.groups
			} else {
				LayerNorm(dst, x, w, b, 1e-5)
				per, seg = 1, c
			}
			// float64 reference; ours rounds the normalised value n, the
			// product n·w and the sum, so |err| ≤ u·(2|n·w| + |y|) plus
			// second-order terms (hence the 1.01 factor).
			want := make([]float64, len(x.Data))
			tol := make([]float64, len(x.Data))
			for s := 0; s*seg < len(x.Data); s++ {
				xs := x.Data[s*seg : (s+1)*seg]
				var m, v float64
				for _, e := range xs {
					m += float64(e)
				}
				m /= float64(seg)
				for _, e := range xs {
					v += (float64(e) - m) * (float64(e) - m)
				}
				v /= float64(seg)
				for i, e := range xs {
					ch := i % c
					if tc.groups > 0 {
						ch = (s*seg + i) / per % c
					}
					nw := (float64(e) - m) / math.Sqrt(v+float64(float32(1e-5))) * float64(w.Data[ch])
					y := nw + float64(b.Data[ch])
					want[s*seg+i], tol[s*seg+i] = y, 1.01*u*(2*math.Abs(nw)+math.Abs(y))
				}
			}
			requireClose(t, want, dst.Data, tol, name)
			y := x.Clone()
			if tc.groups > 0 {
				GroupNorm(y, y, tc.groups, w, b, 1e-5)
			} else {
				LayerNorm(y, y, w, b, 1e-5)
			}
			requireBits(t, dst.Data, y.Data, "in place")
		})
	}
	requirePanics(t, "groups", func() { GroupNorm(New(1, 6, 2), New(1, 6, 2), 4, New(6), New(6), 1e-5) })
	requirePanics(t, "GroupNorm w", func() { GroupNorm(New(1, 6, 2), New(1, 6, 2), 3, New(5), New(6), 1e-5) })
	requirePanics(t, "LayerNorm w", func() { LayerNorm(New(2, 3), New(2, 3), New(2), New(3), 1e-5) })
}

// sigmoid64 is 1/(1+e^(−a)) computed as e^(−log1p(e^(−a))), accurate for
// either sign of a.
func sigmoid64(a float64) float64 { return math.Exp(-math.Log1p(math.Exp(-a))) }
