//go:build arm64 && !purego

package asm

import "unsafe"

// dequantQ8NEON decodes nb ≥ 1 Q8_0 blocks from src into dst (nb·32
// floats) with NEON.
//
//go:noescape
func dequantQ8NEON(dst *float32, src *byte, nb int)

// halfToFloatNEON decodes n halves (n a positive multiple of 8) with
// FCVTL/FCVTL2.
//
//go:noescape
func halfToFloatNEON(dst *float32, src *byte, n int)

// dequantArchOK reports whether the CPU runs the NEON decoders (ASIMD,
// architecturally always present).
func dequantArchOK() bool { return Features.NEON }

// dequantArchName names the assembly decoders in tests and benchmarks.
const dequantArchName = "neon"

func dequantQ8Arch(dst []float32, src []byte) {
	nb := len(src) / q8BlockBytes
	if nb == 0 {
		return
	}
	_ = dst[nb*q8Block-1]
	dequantQ8NEON(unsafe.SliceData(dst), unsafe.SliceData(src), nb)
}

func halfToFloatArch(dst []float32, src []byte) {
	n := len(dst) &^ 7
	if n > 0 {
		_ = src[2*n-1]
		halfToFloatNEON(unsafe.SliceData(dst), unsafe.SliceData(src), n)
	}
	halfToFloatGo(dst[n:], src[2*n:])
}
