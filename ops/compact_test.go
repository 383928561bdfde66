package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
	"github.com/dalle2/dalle2/quant"
)

// Compact weights must change how a weight is stored, never the numbers:
// Linear and Conv2D with a compact weight give the same bits as with the
// decoded weight (decoding is exact), on the fast path and on the reference
// path, for every thread count.

// compactOf encodes w in format f (Q8_0 rows must be multiples of 32).
func compactOf(t testing.TB, w *Tensor, f Format) *Tensor {
	t.Helper()
	var raw []byte
	switch f {
	case FormatF16:
		raw = make([]byte, 2*len(w.Data))
		for i, v := range w.Data {
			h := quant.F32ToF16(v)
			raw[2*i], raw[2*i+1] = byte(h), byte(h>>8)
		}
	case FormatQ8:
		raw = make([]byte, quant.Q8Bytes(len(w.Data)))
		if err := quant.QuantizeQ8(raw, w.Data); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewCompact(f, raw, w.Shape...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bothPaths runs f on the fast path (if this machine has it) and on the
// reference path.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	if useFast() {
		t.Run("fast", f)
	}
	t.Run("ref", func(t *testing.T) {
		t.Cleanup(asm.SetFast(false))
		f(t)
	})
}

func TestLinearCompactBitIdentical(t *testing.T) {
	t.Cleanup(SetQ16(false)) // the decode path; q16_test.go tests the q16 one
	old := minTileFlops
	minTileFlops = 1 << 10 // split even small products into tiles
	t.Cleanup(func() { minTileFlops = old })
	bothPaths(t, func(t *testing.T) {
		r := newRand(31)
		// A tile wider than the GEMM's column block (3072 on amd64): the
		// packer is called at a non-zero column offset within the tile.
		withThreads(t, 1)
		x, w := randT(r, 2, 64), randT(r, 3100, 64)
		for _, f := range []Format{FormatF16, FormatQ8} {
			cw := compactOf(t, w, f)
			want, got := New(2, 3100), New(2, 3100)
			Linear(want, x, cw.Dense(), nil)
			Linear(got, x, cw, nil)
			requireBits(t, want.Data, got.Data, "wide Linear "+f.String())
		}
		// K crosses the GEMM's depth block (256) and ends mid-block; N and
		// M cross the micro-tile edges (MR = 6, NR = 16 on amd64).
		for _, k := range []int{32, 64, 288, 544} {
			for _, n := range []int{1, 15, 17, 40} {
				for _, m := range []int{1, 7, 13} {
					for _, f := range []Format{FormatF16, FormatQ8} {
						for _, th := range []int{1, 3} {
							withThreads(t, th)
							x, w, b := randT(r, m, k), randT(r, n, k), randT(r, n)
							cw := compactOf(t, w, f)
							want, got := New(m, n), New(m, n)
							Linear(want, x, cw.Dense(), b)
							Linear(got, x, cw, b)
							what := fmt.Sprintf("Linear %v m=%d n=%d k=%d threads=%d", f, m, n, k, th)
							requireBits(t, want.Data, got.Data, what)
							LinearPacked(got, x, PackLinear(cw), b)
							requireBits(t, want.Data, got.Data, "packed "+what)
						}
					}
				}
			}
		}
	})
}

func TestConv2DCompactBitIdentical(t *testing.T) {
	t.Cleanup(SetQ16(false)) // the decode path; q16_test.go tests the q16 one
	oldT, oldC := minTileFlops, convChunkFloats
	minTileFlops = 1 << 10
	convChunkFloats = 1 << 10 // chunks of 256 deep: exercise the chunked decode
	t.Cleanup(func() { minTileFlops, convChunkFloats = oldT, oldC })
	bothPaths(t, func(t *testing.T) {
		r := newRand(32)
		type shape struct{ n, cin, h, w, cout, k, stride, pad int }
		for _, s := range []shape{
			{1, 32, 5, 7, 3, 1, 1, 0},  // pointwise, row 32
			{2, 32, 6, 5, 7, 3, 1, 1},  // 3×3, row 288 (crosses 256)
			{1, 64, 9, 9, 13, 3, 2, 1}, // strided, row 576
			{2, 96, 4, 4, 20, 1, 1, 0}, // pointwise, row 96
		} {
			for _, f := range []Format{FormatF16, FormatQ8} {
				for _, th := range []int{1, 2} {
					withThreads(t, th)
					x := randT(r, s.n, s.cin, s.h, s.w)
					w, b := randT(r, s.cout, s.cin, s.k, s.k), randT(r, s.cout)
					cw := compactOf(t, w, f)
					ho, wo := (s.h+2*s.pad-s.k)/s.stride+1, (s.w+2*s.pad-s.k)/s.stride+1
					want, got := New(s.n, s.cout, ho, wo), New(s.n, s.cout, ho, wo)
					Conv2D(want, x, cw.Dense(), b, s.stride, s.pad)
					Conv2D(got, x, cw, b, s.stride, s.pad)
					what := fmt.Sprintf("Conv2D %v %+v threads=%d", f, s, th)
					requireBits(t, want.Data, got.Data, what)
					Conv2DPacked(got, x, PackConv2D(cw), b, s.stride, s.pad)
					requireBits(t, want.Data, got.Data, "packed "+what)
				}
			}
		}
	})
}

func TestCompactDense(t *testing.T) {
	r := newRand(33)
	w := randT(r, 3, 64)
	for _, f := range []Format{FormatF16, FormatQ8} {
		c := compactOf(t, w, f)
		d := c.Dense()
		if c.Numel() != 192 || d.Numel() != 192 || c.Data != nil {
			t.Fatalf("%v: numel %d / %d, data %v", f, c.Numel(), d.Numel(), c.Data != nil)
		}
		// The decoded values are those of the scalar reference codecs.
		want := make([]float32, 192)
		if f == FormatQ8 {
			quant.DequantizeQ8(want, c.Q.Raw)
		} else {
			for i := range want {
				want[i] = quant.F16ToF32(uint16(c.Q.Raw[2*i]) | uint16(c.Q.Raw[2*i+1])<<8)
			}
		}
		requireBits(t, want, d.Data, f.String()+" Dense")
	}
}

func TestNewCompactErrors(t *testing.T) {
	for _, tc := range []struct {
		f     Format
		n     int
		shape []int
	}{
		{FormatQ8, 34, []int{2, 16}},           // row of 16: not whole blocks
		{FormatQ8, 33, []int{1, 32}},           // one byte short
		{FormatF16, 10, []int{2, 3}},           // 12 bytes wanted
		{Format(9), 4, []int{2}},               // unknown format
		{FormatF16, 0, nil},                    // no shape
		{FormatF16, 4, []int{-2, -1}},          // negative dimension
		{FormatQ8, 0, []int{1 << 40, 1 << 40}}, // overflowing shape
	} {
		if _, err := NewCompact(tc.f, make([]byte, tc.n), tc.shape...); err == nil {
			t.Errorf("NewCompact(%v, %d bytes, %v): no error", tc.f, tc.n, tc.shape)
		}
	}
}

// FuzzLinearCompact checks Linear with a compact weight against Linear with
// the decoded weight, bit for bit, at random shapes and thread counts.
func FuzzLinearCompact(f *testing.F) {
	f.Add(uint64(1), uint8(6), uint8(16), uint8(1), uint8(0))
	f.Add(uint64(2), uint8(13), uint8(33), uint8(9), uint8(3))
	f.Add(uint64(3), uint8(1), uint8(1), uint8(20), uint8(0xfe))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, kb8, flags uint8) {
		m, n, k := int(m8)%40, 1+int(n8)%40, 32*(1+int(kb8)%20)
		old := minTileFlops
		minTileFlops = 1 << 10
		defer func() { minTileFlops = old }()
		defer SetQ16(false)() // the decode path; FuzzLinearQ16 fuzzes the q16 one
		withThreads(t, 1+int(flags>>5)%4)
		if flags&4 != 0 {
			defer asm.SetFast(false)()
		}
		r := rand.New(rand.NewPCG(seed, 1))
		x, w := randT(r, m, k), randT(r, n, k)
		format := FormatF16
		if flags&1 != 0 {
			format = FormatQ8
		}
		cw := compactOf(t, w, format)
		want, got := New(m, n), New(m, n)
		Linear(want, x, cw.Dense(), nil)
		Linear(got, x, cw, nil)
		requireBits(t, want.Data, got.Data, "compact Linear")
	})
}

// Linear over a prior-shaped product (batch 2 × 81 tokens, 2048 → 2048) and
// a decoder-shaped 3×3 convolution, with f32, f16 and q8 weights.
func BenchmarkLinearCompact(b *testing.B) {
	r := newRand(34)
	x, w := randT(r, 162, 2048), randT(r, 2048, 2048)
	dst := New(162, 2048)
	for _, f := range []Format{0, FormatF16, FormatQ8} {
		cw, name := w, "f32"
		if f != 0 {
			cw, name = compactOf(b, w, f), f.String()
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * 162 * 2048 * 2048)) // FLOPs, reported as "MB/s" = MFLOP/s
			for range b.N {
				Linear(dst, x, cw, nil)
			}
		})
	}
}

func BenchmarkConv2DCompact(b *testing.B) {
	r := newRand(35)
	x, w := randT(r, 2, 320, 32, 32), randT(r, 320, 320, 3, 3)
	dst := New(2, 320, 32, 32)
	for _, f := range []Format{0, FormatF16, FormatQ8} {
		cw, name := w, "f32"
		if f != 0 {
			cw, name = compactOf(b, w, f), f.String()
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * 2 * 320 * 1024 * 320 * 9))
			for range b.N {
				Conv2D(dst, x, cw, nil, 1, 1)
			}
		})
	}
}
