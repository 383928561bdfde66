//go:build amd64 && !purego

package asm

import "unsafe"

// gelu8 is GELU over n floats (n a positive multiple of 8) with AVX2+FMA:
// geluGeneric's float64 sequence over 4 lanes, twice per 8 floats.
//
//go:noescape
func gelu8(dst, x *float32, n int)

func geluFast(dst, x []float32) {
	gelu8(unsafe.SliceData(dst), unsafe.SliceData(x[:len(dst)]), len(dst))
}
