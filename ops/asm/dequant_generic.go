package asm

import (
	"encoding/binary"
	"math"
)

// dequantQ8Go is the plain-Go DequantQ8: the reference for the assembly and
// the fallback.
func dequantQ8Go(dst []float32, src []byte) {
	for b := 0; b < len(src)/q8BlockBytes; b++ {
		blk := src[b*q8BlockBytes : (b+1)*q8BlockBytes]
		d := halfToFloat32(binary.LittleEndian.Uint16(blk))
		out := dst[b*q8Block : (b+1)*q8Block]
		for i := range out {
			out[i] = d * float32(int8(blk[2+i]))
		}
	}
}

// halfToFloatGo is the plain-Go HalfToFloat; normal values are converted
// inline (halfToFloat32's common case, which the compiler will not inline).
func halfToFloatGo(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		h := binary.LittleEndian.Uint16(src[2*i:])
		if em := uint32(h & 0x7fff); em-0x0400 < 0x7800 {
			dst[i] = math.Float32frombits(uint32(h&0x8000)<<16 | (em<<13 + 112<<23))
			continue
		}
		dst[i] = halfToFloat32(h)
	}
}

// halfToFloat32 converts one binary16 value exactly (subnormals and ±Inf
// included); NaNs keep sign and payload and are quieted, as VCVTPH2PS and
// FCVTL do.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff) // exponent and mantissa
	switch {
	case em > 0x7c00: // NaN: payload kept, quiet bit set
		return math.Float32frombits(sign | 0x7fc00000 | (em&0x3ff)<<13)
	case em == 0x7c00: // ±Inf
		return math.Float32frombits(sign | 0x7f800000)
	case em >= 0x0400: // normal: rebias the exponent by 127−15
		return math.Float32frombits(sign | (em<<13 + 112<<23))
	}
	// ±0 and subnormals: value = em·2⁻²⁴, exact in float32.
	return math.Float32frombits(sign | math.Float32bits(float32(em)*(1.0/(1<<24))))
}
