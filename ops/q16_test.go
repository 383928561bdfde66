package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
)

// The q16 path (Q8_0 weights on AVX-512 VNNI) against package asm's
// reference Q16GemmRef, bit for bit, and against the float32 product with
// the decoded weight within the int16 rounding. Where the CPU lacks the
// kernels, the same code runs on asm's generic q16 kernels (called
// directly, since Linear and Conv2D then take the decode path).

// linearQ16Op runs Linear on the q16 path: through Linear where it is the
// dispatch's choice, else linearQ16 itself.
func linearQ16Op(t testing.TB, dst, x, w, b *Tensor) {
	if useFast() && useQ16(w) {
		Linear(dst, x, w, b)
		return
	}
	m, n, k, bias := linearDims(dst, x, w, b)
	linearQ16(dst.Data, x.Data, w.Q.Raw, bias, m, n, k)
}

// conv2dQ16Op runs Conv2D on the q16 path (see linearQ16Op).
func conv2dQ16Op(dst, x, w, b *Tensor, stride, pad int) {
	if useFast() && useQ16(w) {
		Conv2D(dst, x, w, b, stride, pad)
		return
	}
	conv2dQ16(dst, x, w, b, stride, pad, convDims(dst, x, w, b, stride, pad))
}

// linearQ16Ref is Linear's q16 contract: asm.Q16GemmRef, then the bias.
func linearQ16Ref(x, w, b *Tensor) *Tensor {
	n, k := w.Shape[0], w.Shape[1]
	m := x.Numel() / max(k, 1)
	out := New(m, n)
	asm.Q16GemmRef(m, n, k, x.Data, k, w.Q.Raw, out.Data, n)
	if b != nil {
		for i := 0; i < m; i++ {
			addRow(out.Data[i*n:(i+1)*n], b.Data)
		}
	}
	return out
}

// conv2dQ16Ref is Conv2D's q16 contract: the im2col matrix of each image,
// transposed (positions × taps, 0 in the padding), times the weight through
// asm.Q16GemmRef, then the bias.
func conv2dQ16Ref(x, w, b *Tensor, stride, pad int) *Tensor {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo := (h+2*pad-kh)/stride+1, (wd+2*pad-kw)/stride+1
	kk, np := cin*kh*kw, ho*wo
	out := New(n, cout, ho, wo)
	cols := make([]float32, np*kk)
	res := make([]float32, np*cout)
	for img := 0; img < n; img++ {
		for pos := 0; pos < np; pos++ {
			oy, ox := pos/wo, pos%wo
			for r := 0; r < kk; r++ {
				ic, ky, kx := r/(kh*kw), r%(kh*kw)/kw, r%kw
				iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
				v := float32(0)
				if iy >= 0 && iy < h && ix >= 0 && ix < wd {
					v = x.Data[((img*cin+ic)*h+iy)*wd+ix]
				}
				cols[pos*kk+r] = v
			}
		}
		asm.Q16GemmRef(np, cout, kk, cols, kk, w.Q.Raw, res, cout)
		for oc := 0; oc < cout; oc++ {
			for pos := 0; pos < np; pos++ {
				v := res[pos*cout+oc]
				if b != nil {
					v += b.Data[oc]
				}
				out.Data[(img*cout+oc)*np+pos] = v
			}
		}
	}
	return out
}

// relL2 is ‖got − want‖₂ / ‖want‖₂.
func relL2(want, got []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num, den = num+d*d, den+float64(w)*float64(w)
	}
	return math.Sqrt(num / den)
}

// q16Tol is the bound on the relative L2 error of a q16 product against the
// float32 product with the decoded weight, for N(0, 1) activations: the
// int16 rounding of each activation is uniform of standard deviation
// dx/√12 with dx = amax/32767 and amax ≈ 2–2.5 for a block of 32 normal
// values, so the relative error is about 2·10⁻⁵ (asm's TestQ16Accuracy
// measures 2.1·10⁻⁵); the float32 rounding of the two products adds
// ~10⁻⁷, and 3·10⁻⁵ leaves room for the spread of amax over few blocks.
const q16Tol = 3e-5

func TestLinearQ16(t *testing.T) {
	old := minTileFlops
	minTileFlops = 1 << 10
	t.Cleanup(func() { minTileFlops = old })
	r := newRand(61)
	// K of one block to past q16Depth, M and N across the 32-lane and
	// 6-row edges, M beyond q16XTarget's row block (k = 4096: 278 KiB per
	// panel of 32 rows, so 66 rows make two row blocks).
	type shape struct{ m, n, k int }
	shapes := []shape{{1, 1, 32}, {7, 5, 64}, {32, 6, 288}, {33, 13, 544}, {70, 40, 96}, {66, 7, 4096}}
	for _, s := range shapes {
		x, w, b := randT(r, s.m, s.k), randT(r, s.n, s.k), randT(r, s.n)
		cw := compactOf(t, w, FormatQ8)
		want := linearQ16Ref(x, cw, b)
		for _, th := range []int{1, 2, 3} {
			withThreads(t, th)
			got := New(s.m, s.n)
			linearQ16Op(t, got, x, cw, b)
			requireBits(t, want.Data, got.Data, fmt.Sprintf("q16 Linear %+v threads=%d", s, th))
		}
		f32 := New(s.m, s.n)
		linearRef(f32, x, cw.Dense(), b)
		if e := relL2(f32.Data, want.Data); s.m*s.n >= 100 && !(e < q16Tol) {
			t.Fatalf("q16 Linear %+v: relative L2 error %g against the decoded weight", s, e)
		}
	}
}

func TestConv2DQ16(t *testing.T) {
	oldT, oldC := minTileFlops, q16ConvChunkBytes
	minTileFlops = 1 << 10
	t.Cleanup(func() { minTileFlops, q16ConvChunkBytes = oldT, oldC })
	r := newRand(62)
	type shape struct{ n, cin, h, w, cout, k, stride, pad int }
	for _, s := range []shape{
		{1, 32, 5, 7, 3, 1, 1, 0},   // pointwise, 35 positions (a partial panel)
		{2, 32, 6, 5, 7, 3, 1, 1},   // 3×3, row 288
		{1, 64, 9, 9, 13, 3, 2, 1},  // strided, row 576
		{2, 96, 8, 8, 20, 1, 1, 0},  // pointwise, batch 2, 64 positions
		{2, 32, 12, 12, 8, 3, 1, 0}, // no padding, 100 positions
	} {
		x := randT(r, s.n, s.cin, s.h, s.w)
		w, b := randT(r, s.cout, s.cin, s.k, s.k), randT(r, s.cout)
		cw := compactOf(t, w, FormatQ8)
		want := conv2dQ16Ref(x, cw, b, s.stride, s.pad)
		for _, chunk := range []int{256 << 10, 1 << 10} { // whole depth; chunks of 32 deep
			q16ConvChunkBytes = chunk
			for _, th := range []int{1, 2, 3} {
				withThreads(t, th)
				got := New(want.Shape...)
				conv2dQ16Op(got, x, cw, b, s.stride, s.pad)
				requireBits(t, want.Data, got.Data, fmt.Sprintf("q16 Conv2D %+v chunk=%d threads=%d", s, chunk, th))
			}
		}
		f32 := New(want.Shape...)
		conv2dRef(f32, x, cw.Dense(), b, s.stride, s.pad)
		if e := relL2(f32.Data, want.Data); !(e < q16Tol) {
			t.Fatalf("q16 Conv2D %+v: relative L2 error %g against the decoded weight", s, e)
		}
	}
}

// TestQ16Dispatch: Linear and Conv2D take the q16 path exactly when
// useQ16 says so, and SetQ16(false) gives back the decode path.
func TestQ16Dispatch(t *testing.T) {
	r := newRand(63)
	x, w := randT(r, 5, 64), randT(r, 9, 64)
	cw := compactOf(t, w, FormatQ8)
	q16, dec := New(5, 9), New(5, 9)
	Linear(q16, x, cw, nil)
	func() {
		defer SetQ16(false)()
		if useQ16(cw) {
			t.Fatal("SetQ16(false) leaves the q16 path on")
		}
		Linear(dec, x, cw, nil)
	}()
	want := New(5, 9)
	Linear(want, x, cw.Dense(), nil)
	requireBits(t, want.Data, dec.Data, "decode path")
	if useFast() && asm.Q16Fast() {
		requireBits(t, linearQ16Ref(x, cw, nil).Data, q16.Data, "q16 path")
	} else {
		requireBits(t, want.Data, q16.Data, "no q16 kernels: decode path")
	}
}

// TestQ16ThreadCountInvariance is determinism_test's check for the q16
// ops: 1, 2, 3 and 7 threads give the same bits, with the pool in use.
func TestQ16ThreadCountInvariance(t *testing.T) {
	old := minTileFlops
	minTileFlops = 1 << 12
	t.Cleanup(func() { minTileFlops = old })
	r := newRand(64)
	lx, lw, lb := randT(r, 100, 320), compactOf(t, randT(r, 70, 320), FormatQ8), randT(r, 70)
	cx, cw, cb := randT(r, 2, 32, 16, 16), compactOf(t, randT(r, 12, 32, 3, 3), FormatQ8), randT(r, 12)
	for _, op := range []struct {
		name string
		run  func() *Tensor
	}{
		{"Linear", func() *Tensor { d := New(100, 70); linearQ16Op(t, d, lx, lw, lb); return d }},
		{"Conv2D", func() *Tensor { d := New(2, 12, 16, 16); conv2dQ16Op(d, cx, cw, cb, 1, 1); return d }},
	} {
		t.Run(op.name, func(t *testing.T) {
			withThreads(t, 1)
			want := op.run()
			for _, n := range []int{2, 3, 7} {
				SetThreads(n)
				before := dispatched.Load()
				got := op.run()
				if dispatched.Load() == before {
					t.Fatalf("%d threads: the op did not use the pool; make the test input larger", n)
				}
				requireBits(t, want.Data, got.Data, op.name)
			}
		})
	}
}

// FuzzLinearQ16 checks the q16 Linear against its reference, bit for bit,
// at random shapes and thread counts.
func FuzzLinearQ16(f *testing.F) {
	f.Add(uint64(1), uint8(6), uint8(16), uint8(1), uint8(0))
	f.Add(uint64(2), uint8(33), uint8(13), uint8(9), uint8(0x43))
	f.Add(uint64(3), uint8(1), uint8(1), uint8(20), uint8(0xfe))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, kb8, flags uint8) {
		m, n, k := int(m8)%80, 1+int(n8)%40, 32*(1+int(kb8)%20)
		old := minTileFlops
		minTileFlops = 1 << 10
		defer func() { minTileFlops = old }()
		withThreads(t, 1+int(flags>>5)%4)
		r := rand.New(rand.NewPCG(seed, 1))
		x, w, b := randT(r, m, k), randT(r, n, k), randT(r, n)
		if flags&1 != 0 {
			b = nil
		}
		if flags&2 != 0 && m > 0 {
			x.Data[r.IntN(len(x.Data))] = float32(math.Inf(1)) // a non-finite row
		}
		cw := compactOf(t, w, FormatQ8)
		want := linearQ16Ref(x, cw, b)
		got := New(m, n)
		linearQ16Op(t, got, x, cw, b)
		for i := range want.Data {
			wv, gv := want.Data[i], got.Data[i]
			if math.Float32bits(wv) != math.Float32bits(gv) && !(wv != wv && gv != gv) { // NaN payloads may differ
				t.Fatalf("element %d: %v, reference %v", i, gv, wv)
			}
		}
	})
}

// BenchmarkQ16 compares, at full-size shapes, the q16 path, the decode path
// (decode while packing) and the float32 weight; it reports GFLOP/s and,
// for q16, the relative L2 error against the decode path (the float32
// product with the decoded weight).
//
//	go test ./ops -run '^$' -bench Q16 -count 3 [-cpu 1,2]
func BenchmarkQ16(b *testing.B) {
	r := newRand(65)
	type lin struct {
		name    string
		m, k, n int
	}
	for _, s := range []lin{{"prior2048", 162, 2048, 2048}, {"prior8192", 162, 2048, 8192}, {"text3072", 154, 768, 3072}} {
		x, w := randT(r, s.m, s.k), randT(r, s.n, s.k)
		cw := compactOf(b, w, FormatQ8)
		dense := cw.Dense()
		dst := New(s.m, s.n)
		flops := 2 * float64(s.m*s.n) * float64(s.k)
		q16Bench(b, "Linear/"+s.name, flops, cw, dense, dst, func(wt *Tensor) { Linear(dst, x, wt, nil) })
	}
	type conv struct {
		name               string
		n, cin, h, w, cout int
	}
	for _, s := range []conv{{"dec320x64", 2, 320, 64, 64, 320}, {"dec640x32", 2, 640, 32, 32, 640}} {
		x, w := randT(r, s.n, s.cin, s.h, s.w), randT(r, s.cout, s.cin, 3, 3)
		cw := compactOf(b, w, FormatQ8)
		dense := cw.Dense()
		dst := New(s.n, s.cout, s.h, s.w)
		flops := 2 * float64(s.n*s.cout*s.h*s.w) * float64(s.cin*9)
		q16Bench(b, "Conv3x3/"+s.name, flops, cw, dense, dst, func(wt *Tensor) { Conv2D(dst, x, wt, nil, 1, 1) })
	}
}

// q16Bench runs one shape's three variants at 1 and 2 threads.
func q16Bench(b *testing.B, name string, flops float64, cw, dense, dst *Tensor, run func(w *Tensor)) {
	have := useFast() && asm.Q16Fast()
	errL2 := math.NaN()
	if have {
		func() {
			defer SetQ16(false)()
			run(cw)
		}()
		dec := append([]float32(nil), dst.Data...)
		run(cw)
		errL2 = relL2(dec, dst.Data)
	}
	for _, v := range []string{"f32", "q8dec", "q16"} {
		benchThreads(b, name+"/"+v, func(b *testing.B) {
			wt := cw
			switch v {
			case "f32":
				wt = dense
			case "q8dec":
				defer SetQ16(false)()
			case "q16":
				if !have {
					b.Skip("no AVX-512 VNNI q16 kernels on this CPU or build")
				}
			}
			run(wt)
			b.ResetTimer()
			for b.Loop() {
				run(wt)
			}
			reportGFLOPS(b, flops)
			if v == "q16" {
				b.ReportMetric(errL2, "relL2")
			}
		})
	}
}
