package asm

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// guard is the NaN bit pattern that fills everything around the matrices;
// elements outside C's m×n window must keep it bit for bit, and an element
// of A or B read from outside its window turns the result into NaN.
const guard = 0x7fc0dead

// useKernel makes Gemm run on im's kernel until the returned func is called.
func useKernel(im impl) (restore func()) {
	prev := kernel
	kernel = im.kernel
	return func() { kernel = prev }
}

// fillRand fills x with values in [-1, 1), or, when wide, with random signs
// and exponents over 2^-80..2^40 so that products and sums cover subnormal,
// tie and cancellation cases.
func fillRand(r *rand.Rand, x []float32, wide bool) {
	for i := range x {
		v := r.Float32()*2 - 1
		if wide {
			v = float32(math.Ldexp(float64(v), r.IntN(121)-80))
		}
		x[i] = v
	}
}

// matrix is a rows×cols window with leading dimension ld at offset off of a
// guard-filled buffer.
type matrix struct {
	buf           []float32
	off, rows, ld int
	cols          int
}

func newMatrix(r *rand.Rand, rows, cols, ldPad, off int, wide bool) matrix {
	ld := cols + ldPad
	n := off + max(rows-1, 0)*ld + cols + 8
	mt := matrix{buf: make([]float32, n), off: off, rows: rows, ld: ld, cols: cols}
	for i := range mt.buf {
		mt.buf[i] = math.Float32frombits(guard)
	}
	for i := 0; i < rows; i++ {
		fillRand(r, mt.buf[off+i*ld:off+i*ld+cols], wide)
	}
	return mt
}

func (mt matrix) data() []float32 { return mt.buf[mt.off:] }

func (mt matrix) clone() matrix {
	c := mt
	c.buf = append([]float32(nil), mt.buf...)
	return c
}

func (mt matrix) inWindow(idx int) bool {
	idx -= mt.off
	if idx < 0 || mt.ld == 0 {
		return false
	}
	i, j := idx/mt.ld, idx%mt.ld
	return i < mt.rows && j < mt.cols
}

// refGemm is the definition in Gemm's doc comment, one element at a time.
func refGemm(m, n, k int, a []float32, lda int, transA bool, b []float32, ldb int, transB bool,
	c []float32, ldc int, accumulate bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := float32(0)
			if accumulate {
				s = c[i*ldc+j]
			}
			for p := 0; p < k; p++ {
				ia, ib := i*lda+p, p*ldb+j
				if transA {
					ia = p*lda + i
				}
				if transB {
					ib = j*ldb + p
				}
				x, y := a[ia], b[ib]
				s = fma32(x, y, s)
			}
			c[i*ldc+j] = s
		}
	}
}

// requireSameBits fails unless got and want are bit-identical, naming the
// first differing index.
func requireSameBits(t testing.TB, want, got []float32, what string) {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("%s: element %d: got %v (%#08x), want %v (%#08x)", what, i,
				got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

type gemmCase struct {
	m, n, k        int
	transA, transB bool
	accumulate     bool
	pad, off       int // extra leading-dimension floats, slice start offset
	wide           bool
}

func (g gemmCase) String() string {
	return fmt.Sprintf("m=%d/n=%d/k=%d/tA=%v/tB=%v/acc=%v/pad=%d/off=%d/wide=%v",
		g.m, g.n, g.k, g.transA, g.transB, g.accumulate, g.pad, g.off, g.wide)
}

// checkGemm runs Gemm with the current kernel and refGemm on the same
// guard-banded inputs and requires bit-identical buffers (C window and guard).
func checkGemm(t testing.TB, g gemmCase, s *Scratch, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, uint64(g.m*1e6+g.n*1e3+g.k)))
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = g.n, g.k
	}
	a := newMatrix(r, ar, ac, g.pad, g.off, g.wide)
	b := newMatrix(r, br, bc, (g.pad*3)%5, (g.off+3)%8, g.wide)
	c := newMatrix(r, g.m, g.n, (g.pad*2)%7, (g.off+5)%8, g.wide)
	want := c.clone()
	refGemm(g.m, g.n, g.k, a.data(), a.ld, g.transA, b.data(), b.ld, g.transB, want.data(), want.ld, g.accumulate)
	Gemm(g.m, g.n, g.k, a.data(), a.ld, g.transA, b.data(), b.ld, g.transB, c.data(), c.ld, g.accumulate, s)
	requireSameBits(t, want.buf, c.buf, g.String())
	for i, v := range c.buf {
		if !c.inWindow(i) && math.Float32bits(v) != guard {
			t.Fatalf("%v: guard element %d overwritten: %v", g, i, v)
		}
	}
}

// exactFMA is x·y+z rounded once to float32, computed with math/big.
func exactFMA(x, y, z float32) float32 {
	// 1100 bits hold x·y+z exactly for any float32 x, y, z.
	p := new(big.Float).SetPrec(1100).SetFloat64(float64(x))
	p.Mul(p, new(big.Float).SetFloat64(float64(y)))
	p.Add(p, new(big.Float).SetFloat64(float64(z)))
	f, _ := p.Float32()
	if f == 0 { // big.Float has no signed zero result of a sum; IEEE does
		return float32(float64(x)*float64(y) + float64(z))
	}
	return f
}

var negZero = float32(math.Copysign(0, -1))

// fmaCases are x, y, z triples where float32 FMA is easy to get wrong.
var fmaCases = [][3]float32{
	// x·y = 1+2^-24 exactly: a tie in float32; + 2^-80 breaks it upward,
	// which naive float32(math.FMA(...)) gets wrong (double rounding).
	{24929, 673 * 0x1p-24, 0x1p-80},
	{24929, 673 * 0x1p-24, -0x1p-80},
	{24929, 673 * 0x1p-24, 0},
	{-24929, 673 * 0x1p-24, 0x1p-80},
	{0x1p-75, 0x1p-75, 0},          // subnormal result
	{0x1p-75, 0x1.8p-75, 0x1p-149}, // subnormal tie region
	// x·y = 2^128−2^103, the overflow threshold (midpoint of MaxFloat32
	// and 2^128); ±2^50 is lost in float64 but decides the float32 result.
	{18631 * 0x1p103, 1801, 0}, {18631 * 0x1p103, 1801, 0x1p50}, {18631 * 0x1p103, 1801, -0x1p50},
	{-18631 * 0x1p103, 1801, -0x1p50}, {-18631 * 0x1p103, 1801, 0x1p50},
	{0x1.00001p-75, 0x1p-75, 0}, // 2^-150 + 2^-170: just above the tie 0 | 2^-149
	{0, 5, 0}, {0, -5, 0}, {negZero, 1, negZero}, {negZero, 1, 0}, {0, -5, negZero},
	{1, 1, -1}, {3, 0.1, -0.3},
}

func TestFMA32(t *testing.T) {
	for _, c := range fmaCases {
		require.Equal(t, math.Float32bits(exactFMA(c[0], c[1], c[2])), math.Float32bits(fma32(c[0], c[1], c[2])), "fma32(%g, %g, %g)", c[0], c[1], c[2])
	}
	require.True(t, math.IsNaN(float64(fma32(float32(math.NaN()), 1, 1))))
	require.True(t, math.IsInf(float64(fma32(float32(math.Inf(1)), 1, 1)), 1))

	r := rand.New(rand.NewPCG(1, 2))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	v := make([]float32, 3)
	for i := 0; i < n; i++ {
		fillRand(r, v, i%2 == 0)
		if i%3 == 0 { // force near-ties: z close to −x·y
			v[2] = -float32(float64(v[0]) * float64(v[1]))
			v[2] = math.Nextafter32(v[2], float32(r.IntN(3)-1))
		}
		want := exactFMA(v[0], v[1], v[2])
		if got := fma32(v[0], v[1], v[2]); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", v[0], v[1], v[2], got, want)
		}
	}
}

func TestKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, im := range impls() {
		for _, k := range []int{1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257} {
			for _, ldc := range []int{NR, NR + 5} {
				for _, acc := range []bool{false, true} {
					for _, wide := range []bool{false, true} {
						a := make([]float32, k*MR+1)[1:] // unaligned starts
						b := make([]float32, k*NR+3)[3:]
						fillRand(r, a, wide)
						fillRand(r, b, wide)
						c := newMatrix(r, MR, NR, ldc-NR, 1+k%7, wide)
						want := c.clone()
						kernelGeneric(k, a, b, want.data(), ldc, acc)
						im.kernel(k, a, b, c.data(), ldc, acc)
						requireSameBits(t, want.buf, c.buf, fmt.Sprintf("%s k=%d ldc=%d acc=%v wide=%v", im.name, k, ldc, acc, wide))
					}
				}
			}
		}
	}
}

// TestKernelFMACases runs the hard fmaCases through every kernel: row i,
// column j of the tile computes x·y+z with k = 1.
func TestKernelFMACases(t *testing.T) {
	for _, im := range impls() {
		for _, fc := range fmaCases {
			a, b, c := make([]float32, MR), make([]float32, NR), make([]float32, MR*NR)
			for i := range a {
				a[i] = fc[0]
			}
			for j := range b {
				b[j] = fc[1]
			}
			for i := range c {
				c[i] = fc[2]
			}
			im.kernel(1, a, b, c, NR, true)
			want := exactFMA(fc[0], fc[1], fc[2])
			for i, got := range c {
				require.Equal(t, math.Float32bits(want), math.Float32bits(got), "%s: fma(%g, %g, %g) element %d", im.name, fc[0], fc[1], fc[2], i)
			}
		}
	}
}

// TestKernelZeroK checks the k = 0 contract of the exported Kernel.
func TestKernelZeroK(t *testing.T) {
	c := make([]float32, MR*NR)
	for i := range c {
		c[i] = float32(i)
	}
	Kernel(0, nil, nil, c, NR, true)
	require.Equal(t, float32(MR*NR-1), c[MR*NR-1])
	Kernel(0, nil, nil, c, NR, false)
	require.Equal(t, make([]float32, MR*NR), c)
}

func gemmDims() []int {
	return []int{0, 1, MR - 1, MR, MR + 1, NR - 1, NR, NR + 1, 31}
}

func TestGemm(t *testing.T) {
	for _, im := range impls() {
		t.Run("impl="+im.name, func(t *testing.T) {
			defer useKernel(im)()
			var s Scratch
			idx := 0
			for _, m := range gemmDims() {
				for _, n := range gemmDims() {
					for _, k := range gemmDims() {
						g := gemmCase{m: m, n: n, k: k, transA: idx&1 != 0, transB: idx&2 != 0,
							accumulate: idx%3 == 0, pad: idx % 4, off: idx % 8, wide: idx%5 == 0}
						checkGemm(t, g, &s, uint64(idx))
						idx++
					}
				}
			}
			// Sizes that cross every cache block (kcBlock, mcBlock, ncBlock) and
			// leave partial tiles; all four transpositions.
			big := []gemmCase{
				{m: 257, n: 33, k: 300}, {m: 13, n: ncBlock + 5, k: 5}, {m: mcBlock + 7, n: 40, k: 2*kcBlock + 3},
				{m: 31, n: 257, k: kcBlock + 1}, {m: 2, n: 3, k: 1000},
			}
			if testing.Short() {
				big = big[:3]
			}
			for _, g := range big {
				for tr := 0; tr < 4; tr++ {
					g.transA, g.transB, g.accumulate = tr&1 != 0, tr&2 != 0, tr == 1
					g.pad, g.off = tr, 7-tr
					checkGemm(t, g, &s, uint64(tr))
				}
			}
		})
	}
}

// TestGemmBlockSplit computes C whole, as 4 column blocks and as 3 row
// blocks (uneven, not multiples of MR or NR) and requires identical bits:
// how a caller splits C must not change any element.
func TestGemmBlockSplit(t *testing.T) {
	const m, n, k = 160, 90, 2*kcBlock + 44
	for _, im := range impls() {
		for tr := 0; tr < 4; tr++ {
			transA, transB := tr&1 != 0, tr&2 != 0
			t.Run(fmt.Sprintf("impl=%s/tA=%v/tB=%v", im.name, transA, transB), func(t *testing.T) {
				defer useKernel(im)()
				r := rand.New(rand.NewPCG(5, uint64(tr)))
				a := make([]float32, m*k)
				b := make([]float32, k*n)
				c0 := make([]float32, m*n)
				fillRand(r, a, false)
				fillRand(r, b, false)
				fillRand(r, c0, false)
				lda, ldb := k, n
				if transA {
					lda = m
				}
				if transB {
					ldb = k
				}
				// aRows/bCols return the sub-slices of A and B for rows i0.. and columns j0..
				aRows := func(i0 int) []float32 {
					if transA {
						return a[i0:]
					}
					return a[i0*lda:]
				}
				bCols := func(j0 int) []float32 {
					if transB {
						return b[j0*ldb:]
					}
					return b[j0:]
				}
				whole := append([]float32(nil), c0...)
				Gemm(m, n, k, a, lda, transA, b, ldb, transB, whole, n, true, nil)

				cols := append([]float32(nil), c0...)
				for _, blk := range [][2]int{{0, 17}, {17, 40}, {40, 41}, {41, n}} {
					Gemm(m, blk[1]-blk[0], k, a, lda, transA, bCols(blk[0]), ldb, transB, cols[blk[0]:], n, true, nil)
				}
				requireSameBits(t, whole, cols, "4 column blocks")

				rows := append([]float32(nil), c0...)
				for _, blk := range [][2]int{{0, 50}, {50, 53}, {53, m}} {
					Gemm(blk[1]-blk[0], n, k, aRows(blk[0]), lda, transA, b, ldb, transB, rows[blk[0]*n:], n, true, nil)
				}
				requireSameBits(t, whole, rows, "3 row blocks")
			})
		}
	}
}

func TestPack(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	const rows, cols, ld = 23, 37, 41
	src := make([]float32, rows*ld)
	fillRand(r, src, false)
	nan := float32(math.NaN())
	for _, trans := range []bool{false, true} {
		// op(X)[i][p] of the stored matrix, as Gemm defines it.
		at := func(i, p int) float32 {
			if trans {
				return src[p*ld+i]
			}
			return src[i*ld+p]
		}
		// PackA: rows [3, 3+mr) of op(A), columns [5, 5+kc).
		for _, mr := range []int{1, MR - 1, MR, MR + 1, 2*MR + 3} {
			kc := 9
			dst := make([]float32, roundUp(mr, MR)*kc+1)
			for i := range dst {
				dst[i] = nan
			}
			PackA(dst, src, ld, 3, mr, 5, kc, trans)
			for q := 0; q*MR < mr; q++ {
				for p := 0; p < kc; p++ {
					for i := 0; i < MR; i++ {
						want := float32(0)
						if q*MR+i < mr {
							want = at(3+q*MR+i, 5+p)
						}
						require.Equal(t, want, dst[q*MR*kc+p*MR+i], "PackA trans=%v mr=%d q=%d p=%d i=%d", trans, mr, q, p, i)
					}
				}
			}
			require.True(t, math.IsNaN(float64(dst[len(dst)-1])), "PackA wrote past its panels")
		}
		// PackB: rows [4, 4+kc) of op(B), columns [2, 2+nr).
		for _, nr := range []int{1, NR - 1, NR, NR + 1, 2*NR + 3} {
			kc := 11
			if !trans {
				nr = min(nr, ld-2) // op(B) has ld columns when not transposed
			} else {
				nr = min(nr, rows-2)
			}
			dst := make([]float32, roundUp(nr, NR)*kc+1)
			for i := range dst {
				dst[i] = nan
			}
			PackB(dst, src, ld, 4, kc, 2, nr, trans)
			bt := func(p, j int) float32 { // op(B)[p][j]
				if trans {
					return src[j*ld+p]
				}
				return src[p*ld+j]
			}
			for q := 0; q*NR < nr; q++ {
				for p := 0; p < kc; p++ {
					for j := 0; j < NR; j++ {
						want := float32(0)
						if q*NR+j < nr {
							want = bt(4+p, 2+q*NR+j)
						}
						require.Equal(t, want, dst[q*NR*kc+p*NR+j], "PackB trans=%v nr=%d q=%d p=%d j=%d", trans, nr, q, p, j)
					}
				}
			}
			require.True(t, math.IsNaN(float64(dst[len(dst)-1])), "PackB wrote past its panels")
		}
	}
}

func TestSetFastName(t *testing.T) {
	name := Name()
	restore := SetFast(false)
	require.Equal(t, "purego", Name())
	restore()
	require.Equal(t, name, Name())
	switch {
	case len(archImpls()) == 0:
		require.Equal(t, "purego", name)
	case Features.AVX2:
		require.True(t, strings.HasPrefix(name, "amd64 avx2+fma"), name)
	case Features.NEON:
		require.Equal(t, "arm64 neon", name)
	}
	t.Logf("kernels: %s (MR=%d NR=%d), features %+v", name, MR, NR, Features)
}

func TestGemmPanics(t *testing.T) {
	a := make([]float32, 12)
	require.Panics(t, func() { Gemm(-1, 2, 2, a, 2, false, a, 2, false, a, 2, false, nil) })
	require.Panics(t, func() { Gemm(3, 4, 4, a, 4, false, a, 4, false, a, 4, false, nil) }, "A 3×4 needs 12 floats: ok; B 4×4 needs 16")
	require.Panics(t, func() { Gemm(2, 2, 2, a, 1, false, a, 2, false, a, 2, false, nil) }, "lda < k")
	require.Panics(t, func() { Kernel(2, a, a, a, NR, false) })
	require.NotPanics(t, func() { Gemm(2, 2, 2, a, 2, false, a, 2, false, a, 2, false, nil) })
}

func TestGemmNoAlloc(t *testing.T) {
	const m, n, k = 37, 45, 300
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	var s Scratch
	Gemm(m, n, k, a, k, false, b, n, false, c, n, false, &s)
	allocs := testing.AllocsPerRun(10, func() {
		Gemm(m, n, k, a, k, false, b, k, true, c, n, true, &s)
	})
	require.Zero(t, allocs)
}

// FuzzGemm cross-checks the active kernels (assembly where the CPU has it)
// against the generic ones through Gemm, bit for bit.
func FuzzGemm(f *testing.F) {
	f.Add(uint64(1), uint8(6), uint8(16), uint8(7), uint8(0))
	f.Add(uint64(2), uint8(64), uint8(64), uint8(64), uint8(3))
	f.Add(uint64(3), uint8(1), uint8(33), uint8(0), uint8(5))
	f.Add(uint64(4), uint8(13), uint8(17), uint8(19), uint8(0xff))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, k8, flags uint8) {
		m, n, k := int(m8)%65, int(n8)%65, int(k8)%65
		transA, transB, acc, wide := flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
		off := int(flags>>4) % 8
		r := rand.New(rand.NewPCG(seed, 0))
		ar, ac := m, k
		if transA {
			ar, ac = k, m
		}
		br, bc := k, n
		if transB {
			br, bc = n, k
		}
		a := newMatrix(r, ar, ac, off%3, off, wide)
		b := newMatrix(r, br, bc, off%2, 7-off, wide)
		c := newMatrix(r, m, n, 1, off, wide)
		want := c.clone()
		restore := SetFast(false)
		Gemm(m, n, k, a.data(), a.ld, transA, b.data(), b.ld, transB, want.data(), want.ld, acc, nil)
		restore()
		Gemm(m, n, k, a.data(), a.ld, transA, b.data(), b.ld, transB, c.data(), c.ld, acc, nil)
		requireSameBits(t, want.buf, c.buf, Name()+" vs purego")
	})
}
