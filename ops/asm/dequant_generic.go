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

// halfToFloatGo is the plain-Go HalfToFloat.
func halfToFloatGo(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = halfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// halfToFloat32 converts one binary16 value exactly (subnormals and ±Inf
// included); NaNs keep sign and payload and are quieted, as VCVTPH2PS and
// FCVTL do.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f && man != 0: // NaN: payload kept, quiet bit set
		return math.Float32frombits(sign | 0x7fc00000 | man<<13)
	case exp == 0x1f: // ±Inf
		return math.Float32frombits(sign | 0x7f800000)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: value = man·2⁻²⁴, exact in float32.
	return math.Float32frombits(sign | math.Float32bits(float32(man)*(1.0/(1<<24))))
}
