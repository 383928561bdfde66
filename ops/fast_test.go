package ops

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
)

// Tests of the fast paths of Linear, Conv2D and Attention against the
// reference loops, their independence of the thread count, and their
// allocations. They skip where the fast path is off (purego).

func requireFast(t testing.TB) {
	t.Helper()
	if !useFast() {
		t.Skipf("fast path off (kernels: %s)", asm.Name())
	}
}

// requireNear fails unless |got−want| ≤ tol[i] elementwise.
func requireNear(t testing.TB, want, got []float32, tol []float64, what string) {
	t.Helper()
	w := make([]float64, len(want))
	for i, v := range want {
		w[i] = float64(v)
	}
	requireClose(t, w, got, tol, what)
}

// twice doubles every bound: the fast path and the reference each lie
// within the bound of the exact value (float64 helpers), so they lie within
// twice the bound of each other. For a dot product of length k that is
// 2·(k+2)·u·(Σ|x·w| + |b|): an FMA chain and a sum of rounded products
// round differently at each of their k steps.
func twice(tol []float64) []float64 {
	for i := range tol {
		tol[i] *= 2
	}
	return tol
}

func TestLinearFastVsReference(t *testing.T) {
	requireFast(t)
	r := newRand(21)
	mr, nr := asm.MR, asm.NR
	for _, m := range []int{0, 1, mr - 1, mr, mr + 1, 2*mr + 1} {
		for _, n := range []int{1, nr - 1, nr, nr + 1, 3*nr + 5} {
			for _, k := range []int{0, 1, 7, 300} {
				x, w, b := randT(r, m, k), randT(r, n, k), randT(r, n)
				if (m+n+k)%2 == 1 {
					b = nil
				}
				got, want := New(m, n), New(m, n)
				Linear(got, x, w, b)
				linearRef(want, x, w, b)
				var bd []float32
				if b != nil {
					bd = b.Data
				}
				_, tol := linear64(x.Data, w.Data, bd, m, n, k)
				requireNear(t, want.Data, got.Data, twice(tol), fmt.Sprintf("Linear m=%d n=%d k=%d", m, n, k))
			}
		}
	}
}

func TestConv2DFastVsReference(t *testing.T) {
	requireFast(t)
	r := newRand(22)
	for _, tc := range []struct{ n, cin, h, w, cout, k, stride, pad int }{
		{1, 1, 1, 1, 1, 1, 1, 0},
		{2, 7, 13, 9, asm.MR + 1, 3, 1, 1},
		{1, 5, 8, 8, asm.MR - 1, 3, 1, 1},
		{2, 3, 16, 17, 2*asm.MR + 1, 1, 1, 0},
		{1, 3, 28, 42, 5, 14, 14, 0},
		{1, 4, 11, 10, 3, 3, 3, 2},
		{2, 33, 9, 7, 4, 3, 2, 1},
	} {
		x := randT(r, tc.n, tc.cin, tc.h, tc.w)
		wt, b := randT(r, tc.cout, tc.cin, tc.k, tc.k), randT(r, tc.cout)
		ho, wo := (tc.h+2*tc.pad-tc.k)/tc.stride+1, (tc.w+2*tc.pad-tc.k)/tc.stride+1
		got, want := New(tc.n, tc.cout, ho, wo), New(tc.n, tc.cout, ho, wo)
		Conv2D(got, x, wt, b, tc.stride, tc.pad)
		conv2dRef(want, x, wt, b, tc.stride, tc.pad)
		_, tol := conv64(x, wt, b, tc.stride, tc.pad)
		requireNear(t, want.Data, got.Data, twice(tol), fmt.Sprintf("Conv2D %+v", tc))
	}
}

func TestAttentionFastVsReference(t *testing.T) {
	requireFast(t)
	r := newRand(23)
	for _, tc := range []struct {
		n, lq, lk, heads, d int
		causal              bool
	}{
		{1, 1, 1, 1, 1, false}, {2, 7, 13, 3, 5, false}, {1, 81, 81, 2, 12, true},
		{2, 77, 77, 4, 8, true}, {1, 100, 117, 1, 64, false},
	} {
		hd := tc.heads * tc.d
		q, k, v := randT(r, tc.n, tc.lq, hd), randT(r, tc.n, tc.lk, hd), randT(r, tc.n, tc.lk, hd)
		bias := randT(r, tc.n, 1, tc.lk)
		scale := float32(1 / math.Sqrt(float64(tc.d)))
		got, want := New(tc.n, tc.lq, hd), New(tc.n, tc.lq, hd)
		Attention(got, q, k, v, bias, tc.heads, tc.causal, scale)
		attentionRef(want, q, k, v, bias, tc.heads, tc.causal, scale)
		_, tol := attention64(q, k, v, bias, tc.heads, tc.causal, scale)
		requireNear(t, want.Data, got.Data, twice(tol), fmt.Sprintf("Attention %+v", tc))
	}
}

// TestConv2DDepthChunks shrinks the chunks of W a tile packs so that a
// small convolution runs in several, and requires the FMA chain's bits:
// chunking the depth continues the same chain.
func TestConv2DDepthChunks(t *testing.T) {
	requireFast(t)
	old := convChunkFloats
	convChunkFloats = 1000
	t.Cleanup(func() { convChunkFloats = old })
	r := newRand(24)
	x, w, b := randT(r, 2, 70, 5, 6), randT(r, 9, 70, 3, 3), randT(r, 9) // K = 630: three chunks of 256
	want := naiveConvFMA(x, w, b, 1, 1)
	got := New(want.Shape...)
	Conv2D(got, x, w, b, 1, 1)
	requireBits(t, want.Data, got.Data, "chunked Conv2D vs FMA chain")
}

// TestFastThreadCountInvariance runs the fast paths at sizes that split into
// many tiles, at 1, 2, 3 and 7 threads, and requires identical bits.
func TestFastThreadCountInvariance(t *testing.T) {
	requireFast(t)
	old := minTileFlops
	minTileFlops = 1 << 12 // tiles of a few micro-tiles: many uneven splits
	t.Cleanup(func() { minTileFlops = old })
	r := newRand(25)
	lx, lw, lb := randT(r, 2*asm.MR+5, 301), randT(r, 5*asm.NR+3, 301), randT(r, 5*asm.NR+3)
	cx, cw, cb := randT(r, 2, 19, 13, 11), randT(r, 3*asm.MR+1, 19, 3, 3), randT(r, 3*asm.MR+1)
	px, pw := randT(r, 1, 33, 20, 25), randT(r, 2*asm.MR+1, 33, 1, 1)
	q, k, v := randT(r, 2, attnFastBlock+7, 24), randT(r, 2, 50, 24), randT(r, 2, 50, 24)
	qc := randT(r, 2, 50, 24)
	ops := []struct {
		name string
		run  func() *Tensor
	}{
		{"Linear", func() *Tensor { d := New(lx.Dim(0), lw.Dim(0)); Linear(d, lx, lw, lb); return d }},
		{"Conv2D 3×3", func() *Tensor { d := New(2, cw.Dim(0), 13, 11); Conv2D(d, cx, cw, cb, 1, 1); return d }},
		{"Conv2D 1×1", func() *Tensor { d := New(1, pw.Dim(0), 20, 25); Conv2D(d, px, pw, nil, 1, 0); return d }},
		{"Attention", func() *Tensor { d := New(q.Shape...); Attention(d, q, k, v, nil, 3, false, 0.3); return d }},
		{"AttentionCausal", func() *Tensor { d := New(qc.Shape...); Attention(d, qc, k, v, nil, 2, true, 0.3); return d }},
	}
	for _, op := range ops {
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
				requireBits(t, want.Data, got.Data, fmt.Sprintf("%s at %d threads", op.name, n))
			}
		})
	}
}

// TestGemmGrid checks the tiling: tiles cover C exactly, and there are
// enough of them to keep every thread busy when the work allows.
func TestGemmGrid(t *testing.T) {
	for _, tc := range []struct{ m, n, k, images, threads int }{
		{2048, 2048, 2048, 1, 2}, {4096, 320, 2880, 1, 2}, {320, 4096, 2880, 2, 2}, {1280, 64, 11520, 2, 2},
		{2, 2560, 1280, 1, 4}, {77, 768, 768, 1, 12}, {5, 7, 3, 1, 8}, {1, 1, 1, 1, 1},
	} {
		gm, gn := gemmGrid(tc.m, tc.n, tc.k, tc.images, tc.threads)
		covered := 0
		for i := 0; i < gm; i++ {
			i0, i1 := tileRange(i, gm, tc.m, asm.MR)
			for j := 0; j < gn; j++ {
				j0, j1 := tileRange(j, gn, tc.n, asm.NR)
				covered += (i1 - i0) * (j1 - j0)
			}
		}
		if covered != tc.m*tc.n {
			t.Fatalf("%+v: %d×%d tiles cover %d of %d elements", tc, gm, gn, covered, tc.m*tc.n)
		}
		flops := 2 * float64(tc.m) * float64(tc.n) * float64(tc.k) * float64(tc.images)
		if flops >= float64(tc.threads)*4*minTileFlops && gm*gn < tc.threads {
			t.Fatalf("%+v: %d×%d tiles for %d threads", tc, gm, gn, tc.threads)
		}
	}
}

// TestFastNoScratchGrowth: once warm, the fast paths reuse their per-worker
// scratch; what they still allocate is the pool's small job record and
// closures, never buffers that grow with the problem.
func TestFastNoScratchGrowth(t *testing.T) {
	requireFast(t)
	withThreads(t, 1)
	r := newRand(26)
	x, w, b := randT(r, 64, 512), randT(r, 256, 512), randT(r, 256)
	cx, cw := randT(r, 2, 32, 16, 16), randT(r, 32, 32, 3, 3)
	q, k, v := randT(r, 1, 100, 64), randT(r, 1, 120, 64), randT(r, 1, 120, 64)
	ld, cd, ad := New(64, 256), New(2, 32, 16, 16), New(1, 100, 64)
	run := func() {
		Linear(ld, x, w, b)
		Conv2D(cd, cx, cw, nil, 1, 1)
		Attention(ad, q, k, v, nil, 2, false, 0.1)
	}
	run()
	var before, after runtimeMem
	before.read()
	for i := 0; i < 5; i++ {
		run()
	}
	after.read()
	if perCall := float64(after.bytes-before.bytes) / 15; perCall > 1024 {
		t.Fatalf("%.0f bytes allocated per call once warm; scratch is not reused", perCall)
	}
}

// runtimeMem is the total of bytes allocated so far.
type runtimeMem struct{ bytes uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.bytes = s.TotalAlloc
}

// TestPackedWeights: LinearPacked and Conv2DPacked give Linear's and
// Conv2D's bits (on either path), at awkward sizes and thread counts.
func TestPackedWeights(t *testing.T) {
	old, oldChunk := minTileFlops, convChunkFloats
	minTileFlops = 1 << 12 // many tiles, so that packed columns start mid-matrix
	convChunkFloats = 1000 // Conv2D packs W in depth chunks, Conv2DPacked whole
	t.Cleanup(func() { minTileFlops, convChunkFloats = old, oldChunk })
	r := newRand(27)
	for _, threads := range []int{1, 3} {
		withThreads(t, threads)
		for _, s := range [][3]int{{1, 1, 1}, {2, 300, 2*asm.NR + 3}, {asm.MR + 1, 7, asm.NR - 1}, {37, 260, 41}, {3, 0, 5}} {
			m, k, n := s[0], s[1], s[2]
			x, w, b := randT(r, m, k), randT(r, n, k), randT(r, n)
			want, got := New(m, n), New(m, n)
			Linear(want, x, w, b)
			pw := PackLinear(w)
			LinearPacked(got, x, pw, b)
			requireBits(t, want.Data, got.Data, fmt.Sprintf("LinearPacked m=%d k=%d n=%d threads=%d", m, k, n, threads))
			LinearPacked(got, x, pw, nil)
			Linear(want, x, w, nil)
			requireBits(t, want.Data, got.Data, "LinearPacked without bias")
		}
		for _, s := range []struct{ n, cin, h, w, cout, k, stride, pad int }{
			{2, 5, 9, 7, 2*asm.MR + 1, 3, 1, 1}, {1, 3, 8, 8, 4, 1, 1, 0}, {2, 40, 5, 6, 7, 3, 2, 1}, {1, 0, 3, 3, 2, 3, 1, 1},
		} {
			x, w, b := randT(r, s.n, s.cin, s.h, s.w), randT(r, s.cout, s.cin, s.k, s.k), randT(r, s.cout)
			ho, wo := (s.h+2*s.pad-s.k)/s.stride+1, (s.w+2*s.pad-s.k)/s.stride+1
			want, got := New(s.n, s.cout, ho, wo), New(s.n, s.cout, ho, wo)
			Conv2D(want, x, w, b, s.stride, s.pad)
			Conv2DPacked(got, x, PackConv2D(w), b, s.stride, s.pad)
			requireBits(t, want.Data, got.Data, fmt.Sprintf("Conv2DPacked %+v threads=%d", s, threads))
		}
	}
	requirePanics(t, "PackLinear rank", func() { PackLinear(New(2, 3, 4)) })
	requirePanics(t, "LinearPacked shapes", func() { LinearPacked(New(2, 3), New(2, 5), PackLinear(New(3, 4)), nil) })
}

// FuzzLinearFast checks the fast Linear against its FMA-chain definition bit
// for bit, and against the reference within twice the float32 error bound,
// at random shapes, value ranges and thread counts.
func FuzzLinearFast(f *testing.F) {
	f.Add(uint64(1), uint8(6), uint8(16), uint8(7), uint8(0))
	f.Add(uint64(2), uint8(13), uint8(33), uint8(64), uint8(3))
	f.Add(uint64(3), uint8(1), uint8(1), uint8(0), uint8(5))
	f.Add(uint64(4), uint8(40), uint8(17), uint8(255), uint8(0xfe))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, k8, flags uint8) {
		requireFast(t)
		m, n, k := int(m8)%48, int(n8)%48, int(k8)
		old := minTileFlops
		minTileFlops = 1 << 10 // split even these small products into tiles
		defer func() { minTileFlops = old }()
		withThreads(t, 1+int(flags>>5)%4)
		r := newRand(seed)
		x, w := randT(r, m, k), randT(r, n, k)
		var b *Tensor
		var bd []float32
		if flags&1 != 0 {
			b = randT(r, n)
			bd = b.Data
		}
		if flags&2 != 0 { // wide exponents: cancellation, tiny and huge products
			for _, d := range [][]float32{x.Data, w.Data} {
				for i := range d {
					d[i] = float32(math.Ldexp(float64(d[i]), r.IntN(60)-30))
				}
			}
		}
		got, want := New(m, n), New(m, n)
		Linear(got, x, w, b)
		requireBits(t, naiveLinearFMA(x.Data, w.Data, bd, m, n, k), got.Data, "fast Linear vs FMA chain")
		linearRef(want, x, w, b)
		_, tol := linear64(x.Data, w.Data, bd, m, n, k)
		requireNear(t, want.Data, got.Data, twice(tol), "fast Linear vs reference")
	})
}
