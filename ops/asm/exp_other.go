//go:build !amd64 || purego

package asm

import "math"

// Without an assembly kernel (arm64, purego) the exp family runs its generic
// Go code.

func expShiftFast(x []float32, shift float32) float64 { return expShiftGeneric(x, shift) }

func scaleMaxFast(x, bias []float32, scale float32) float32 {
	return scaleMaxGeneric(x, bias, scale, float32(math.Inf(-1)))
}

func sigmoidMulFast(dst, x []float32, alpha float32) { sigmoidMulGeneric(dst, x, alpha) }
