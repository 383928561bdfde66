package ops

import (
	"math"
	"math/big"
	"testing"
)

// fma32Exact is a·b + c computed exactly and rounded once to float32.
func fma32Exact(a, b, c float32) float32 {
	p := new(big.Float).SetPrec(400).SetFloat64(float64(a))
	p.Mul(p, new(big.Float).SetFloat64(float64(b)))
	p.Add(p, new(big.Float).SetFloat64(float64(c)))
	f, _ := p.Float32()
	return f
}

func TestFMA32(t *testing.T) {
	// A double-rounding case: a·b + c = 1 + 2⁻²⁴ + 2⁻⁵⁴. Rounding to
	// float64 first gives the float32 midpoint 1 + 2⁻²⁴, which then ties to
	// even (1); the correctly rounded float32 result is 1 + 2⁻²³.
	a := -(1 + 0x1p-15) * float32(0x1p-24)
	b := float32(1 - 0x1p-15)
	c := float32(1 + 0x1p-23)
	if naive := float32(math.FMA(float64(a), float64(b), float64(c))); naive != 1 {
		t.Fatalf("test case is not a double-rounding case: naive result %v", naive)
	}
	if got := fma32(a, b, c); got != 1+0x1p-23 {
		t.Fatalf("fma32 = %v, want 1+2⁻²³", got)
	}
	// The same case with signs flipped, and random operands over a range of
	// exponents, against exact big.Float arithmetic.
	if got := fma32(-a, b, -c); got != -(1 + 0x1p-23) {
		t.Fatalf("fma32 negative = %v", got)
	}
	r := newRand(10)
	for i := 0; i < 20000; i++ {
		x := float32(math.Ldexp(r.Float64()-0.5, r.IntN(40)-20))
		y := float32(math.Ldexp(r.Float64()-0.5, r.IntN(40)-20))
		z := float32(math.Ldexp(r.Float64()-0.5, r.IntN(40)-20))
		if r.IntN(4) == 0 { // near-cancellation
			z = -x * y * float32(1+(r.Float64()-0.5)*1e-6)
		}
		if got, want := fma32(x, y, z), fma32Exact(x, y, z); got != want {
			t.Fatalf("fma32(%v, %v, %v) = %v, want %v", x, y, z, got, want)
		}
	}
}

func TestAAWeightsSpec(t *testing.T) {
	// Spec §8: 64 → 256. Interior outputs have 4 dyadic taps by phase.
	tw := aaWeights(64, 256)
	phase := [4][4]float32{
		{-0.0439453125, 0.3896484375, 0.7275390625, -0.0732421875},
		{-0.0068359375, 0.0908203125, 0.9638671875, -0.0478515625},
		{-0.0478515625, 0.9638671875, 0.0908203125, -0.0068359375},
		{-0.0732421875, 0.7275390625, 0.3896484375, -0.0439453125},
	}
	first := [4]int{-2, -2, -1, -1}
	for i := 6; i <= 249; i++ {
		q, p := i/4, i%4
		if tw.start[i] != q+first[p] {
			t.Fatalf("output %d: first tap %d, want %d", i, tw.start[i], q+first[p])
		}
		requireBits(t, phase[p][:], tw.w[i], "interior weights")
	}
	// Edges (the spec prints 10 significant digits, enough to pin each
	// float32 value).
	for _, e := range []struct {
		i, start int
		w        []float64
	}{
		{0, 0, []float64{1.1119402647, -0.1119403020}},
		{2, 0, []float64{0.9198508859, 0.0866728798, -0.0065237652}},
		{4, 0, []float64{0.3732460141, 0.6969130039, -0.0701590255}},
		{255, 62, []float64{-0.1119403020, 1.1119402647}},
	} {
		if tw.start[e.i] != e.start || len(tw.w[e.i]) != len(e.w) {
			t.Fatalf("output %d: start %d, %d taps", e.i, tw.start[e.i], len(tw.w[e.i]))
		}
		for j, w := range e.w {
			if tw.w[e.i][j] != float32(w) {
				t.Fatalf("output %d tap %d: %.10f, want %.10f", e.i, j, tw.w[e.i][j], w)
			}
		}
	}
}

func TestAAWeightsGeneral(t *testing.T) {
	// Same size: the identity. Any size pair: weights sum to 1 within
	// rounding (each of ≤ 2·support+1 divisions rounds by u), and the taps
	// stay inside the input.
	id := aaWeights(9, 9)
	for i := range id.start {
		for j, w := range id.w[i] {
			want := float32(0)
			if id.start[i]+j == i {
				want = 1
			}
			if w != want {
				t.Fatalf("identity output %d tap %d: %v", i, j, w)
			}
		}
	}
	for _, s := range [][2]int{{7, 13}, {5, 11}, {1, 4}, {13, 7}, {64, 16}, {10, 3}, {3, 1}} {
		tw := aaWeights(s[0], s[1])
		for i := range tw.start {
			if tw.start[i] < 0 || tw.start[i]+len(tw.w[i]) > s[0] || len(tw.w[i]) == 0 {
				t.Fatalf("%v output %d: taps [%d, %d)", s, i, tw.start[i], tw.start[i]+len(tw.w[i]))
			}
			var sum float64
			for _, w := range tw.w[i] {
				sum += float64(w)
			}
			if math.Abs(sum-1) > float64(len(tw.w[i])+1)*2*u {
				t.Fatalf("%v output %d: weights sum to %v", s, i, sum)
			}
		}
	}
	// Downsampling widens the kernel: 64 → 16 (scale 4) has support 8.
	if tw := aaWeights(64, 16); len(tw.w[8]) != 16 {
		t.Fatalf("64→16: %d taps in the interior, want 16", len(tw.w[8]))
	}
}

func TestUpsampleBicubicAA(t *testing.T) {
	// A constant image stays constant up to the weight rounding (weights sum
	// to 1 within a few u, see above).
	x := New(1, 2, 5, 7)
	for i := range x.Data {
		x.Data[i] = 3
	}
	for _, s := range [][2]int{{10, 14}, {5, 7}, {3, 2}, {11, 13}, {1, 1}} {
		dst := New(1, 2, s[0], s[1])
		UpsampleBicubicAA(dst, x)
		for i, v := range dst.Data {
			if math.Abs(float64(v)-3) > 3*16*u {
				t.Fatalf("%v: element %d = %v, want ≈3", s, i, v)
			}
		}
	}
	// The width pass runs first: an image that varies only along W and is
	// resized only along H is unchanged (identity weights in W, taps summing
	// to ≈1 in H).
	r := newRand(11)
	row := randT(r, 6)
	img := New(1, 1, 4, 6)
	for y := 0; y < 4; y++ {
		copy(img.Data[y*6:], row.Data)
	}
	dst := New(1, 1, 9, 6)
	UpsampleBicubicAA(dst, img)
	for i, v := range dst.Data {
		if want := row.Data[i%6]; math.Abs(float64(v-want)) > 8*u*math.Abs(float64(want)) {
			t.Fatalf("element %d = %v, want ≈%v", i, v, want)
		}
	}
	UpsampleBicubicAA(New(0, 3, 4, 4), New(0, 3, 2, 2))
	requirePanics(t, "channels", func() { UpsampleBicubicAA(New(1, 2, 4, 4), New(1, 3, 2, 2)) })
	requirePanics(t, "empty input", func() { UpsampleBicubicAA(New(1, 1, 4, 4), New(1, 1, 0, 2)) })
}
