//go:build amd64 && !purego

package asm

import "unsafe"

// q8dot4x4AVX2 is the AVX2 kernel: the 4×4 tile of C (ldc floats apart)
// from an X panel x and a W panel w of nb ≥ 1 blocks.
//
//go:noescape
func q8dot4x4AVX2(nb int, x, w *byte, c *float32, ldc int)

// q8quantRowAVX2 quantizes nb ≥ 1 blocks of 32 floats at x: block b's 32
// int8 go to q+b·stride, its scale to s+b·stride.
//
//go:noescape
func q8quantRowAVX2(x *float32, q *byte, s *byte, nb, stride int)

// q8packRowAVX2 copies nb ≥ 1 Q8_0 blocks at src: block b's 32 int8 go to
// q+b·stride, its scale (as float32, four times) to s+b·stride.
//
//go:noescape
func q8packRowAVX2(src *byte, q *byte, s *byte, nb, stride int)

// q8dotArchOK reports whether the CPU runs the AVX2 q8dot kernels (they use
// FMA and F16C too).
func q8dotArchOK() bool { return Features.AVX2 && Features.FMA && Features.F16C }

// q8dotArchName names the assembly kernels in tests and benchmarks.
const q8dotArchName = "avx2"

func q8dotArch(nb int, xp, wp []byte, c []float32, ldc int) {
	if nb == 0 {
		q8dotGeneric(0, xp, wp, c, ldc)
		return
	}
	_, _ = xp[nb*q8xBlockBytes-1], wp[nb*q8wBlockBytes-1]
	_ = c[(Q8DotMR-1)*ldc+Q8DotNR-1]
	q8dot4x4AVX2(nb, unsafe.SliceData(xp), unsafe.SliceData(wp), unsafe.SliceData(c), ldc)
}

func quantRowXArch(panel []byte, x []float32, nb, i int) {
	_, _ = panel[nb*q8xBlockBytes-1], x[nb*q8Block-1]
	q8quantRowAVX2(unsafe.SliceData(x), &panel[32*i], &panel[128+4*i], nb, q8xBlockBytes)
}

func packRowWArch(panel []byte, row []byte, nb, j int) {
	_, _ = panel[nb*q8wBlockBytes-1], row[nb*q8BlockBytes-1]
	q8packRowAVX2(unsafe.SliceData(row), &panel[32*j], &panel[128+16*j], nb, q8wBlockBytes)
}
