//go:build (!amd64 && !arm64) || purego

package asm

// Without assembly (other architectures, purego) the decoders run their Go
// reference.

func dequantArchOK() bool { return false }

func dequantQ8Arch(dst []float32, src []byte) { dequantQ8Go(dst, src) }

func halfToFloatArch(dst []float32, src []byte) { halfToFloatGo(dst, src) }

// dequantArchName names the assembly decoders in tests and benchmarks.
const dequantArchName = ""
