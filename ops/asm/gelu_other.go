//go:build !amd64 || purego

package asm

// Without an assembly kernel (arm64, purego) GELU runs its generic Go code.

func geluFast(dst, x []float32) { geluGeneric(dst, x) }
