//go:build amd64 && !purego

package asm

import "unsafe"

// dequantQ8AVX2 decodes nb ≥ 1 Q8_0 blocks from src into dst (nb·32
// floats) with AVX2+F16C.
//
//go:noescape
func dequantQ8AVX2(dst *float32, src *byte, nb int)

// halfToFloatF16C decodes n halves (n a positive multiple of 8) with
// VCVTPH2PS.
//
//go:noescape
func halfToFloatF16C(dst *float32, src *byte, n int)

// dequantArchOK reports whether the CPU runs the AVX2+F16C decoders (FMA is
// not used, but SetFast only turns on with it).
func dequantArchOK() bool { return Features.AVX2 && Features.F16C }

// dequantArchName names the assembly decoders in tests and benchmarks.
const dequantArchName = "avx2"

func dequantQ8Arch(dst []float32, src []byte) {
	nb := len(src) / q8BlockBytes
	if nb == 0 {
		return
	}
	_ = dst[nb*q8Block-1]
	dequantQ8AVX2(unsafe.SliceData(dst), unsafe.SliceData(src), nb)
}

func halfToFloatArch(dst []float32, src []byte) {
	n := len(dst) &^ 7
	if n > 0 {
		_ = src[2*n-1]
		halfToFloatF16C(unsafe.SliceData(dst), unsafe.SliceData(src), n)
	}
	halfToFloatGo(dst[n:], src[2*n:])
}
