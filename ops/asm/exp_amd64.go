//go:build amd64 && !purego

package asm

import "unsafe"

// expShift8 is ExpShift over n floats (n a positive multiple of 8) with
// AVX2+FMA: a float64 exponential over 4 lanes, twice per 8 floats, summed in
// float64 over 8 lanes.
//
//go:noescape
func expShift8(x *float32, n int, shift float32) float64

// scaleMax8 is ScaleMax over n floats (n a positive multiple of 8); bias may
// be nil.
//
//go:noescape
func scaleMax8(x, bias *float32, n int, scale float32) float32

// sigmoidMul8 is SigmoidMul over n floats (n a positive multiple of 8):
// float64 arithmetic over 4 lanes, twice per 8 floats.
//
//go:noescape
func sigmoidMul8(dst, x *float32, n int, alpha float32)

func sigmoidMulFast(dst, x []float32, alpha float32) {
	sigmoidMul8(unsafe.SliceData(dst), unsafe.SliceData(x[:len(dst)]), len(dst), alpha)
}

func expShiftFast(x []float32, shift float32) float64 {
	return expShift8(unsafe.SliceData(x), len(x), shift)
}

func scaleMaxFast(x, bias []float32, scale float32) float32 {
	var b *float32
	if bias != nil {
		b = unsafe.SliceData(bias[:len(x)])
	}
	return scaleMax8(unsafe.SliceData(x), b, len(x), scale)
}
