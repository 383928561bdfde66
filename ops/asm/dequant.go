package asm

import "fmt"

// Family dequant: weight decoders for the GEMM's packing routines. A kernel
// that multiplies by fp16 or 8-bit block-quantized weights first decodes a
// strip of them to float32 (into a cache-resident buffer) and packs that.
// Both decoders are exact (every binary16 value and every scale·int8 product
// is a float32), so every implementation gives the same bits as the
// reference loops below and as package quant's codecs, with one documented
// exception: a signalling-NaN half is quieted.
//
// Implementations: dequant_generic.go (plain Go, the reference and the
// fallback), dequant_amd64.s (AVX2+F16C: VPMOVSXBD, VCVTDQ2PS, VMULPS by the
// scale decoded with VCVTPH2PS; halves with VCVTPH2PS), dequant_arm64.s
// (NEON: SXTL chains, SCVTF, FMUL; halves with FCVTL/FCVTL2). The assembly
// is used when SetFast is on (the default) and the CPU has the features
// (amd64: AVX2, FMA and F16C), never under the purego tag.

// Q8 block layout (quant's Q8_0): a little-endian binary16 scale, then 32
// int8 values; value i is scale·q[i].
const (
	q8Block      = 32
	q8BlockBytes = 34
)

// DequantQ8 decodes the whole Q8_0 blocks in src into dst, which must hold
// exactly len(src)/34·32 values. Block b's value i is
//
//	dst[32b+i] = HalfToFloat(src[34b:34b+2]) · float32(int8(src[34b+2+i]))
//
// the float32 product being exact for finite scales; a NaN scale gives NaN
// (its payload kept, quieted), an infinite one ±Inf, or the CPU's default
// NaN where q is 0.
func DequantQ8(dst []float32, src []byte) {
	if len(src)%q8BlockBytes != 0 || len(dst) != len(src)/q8BlockBytes*q8Block {
		panic(fmt.Sprintf("asm.DequantQ8: %d values from %d bytes", len(dst), len(src)))
	}
	if fast && dequantArchOK() {
		dequantQ8Arch(dst, src)
		return
	}
	dequantQ8Go(dst, src)
}

// HalfToFloat decodes the little-endian binary16 values in src into dst,
// which must hold exactly len(src)/2 values. It is exact, subnormals
// included; a NaN keeps its sign and payload (in the top mantissa bits) and
// comes out quiet: a signalling NaN half gets the float32 quiet bit
// (0x00400000), as the hardware conversions (VCVTPH2PS, FCVTL) do. That is
// the one difference from quant.F16ToF32, which keeps the quiet bit as is.
func HalfToFloat(dst []float32, src []byte) {
	if len(src)%2 != 0 || len(dst) != len(src)/2 {
		panic(fmt.Sprintf("asm.HalfToFloat: %d values from %d bytes", len(dst), len(src)))
	}
	if fast && dequantArchOK() {
		halfToFloatArch(dst, src)
		return
	}
	halfToFloatGo(dst, src)
}
