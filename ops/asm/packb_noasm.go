//go:build (!amd64 && !arm64) || purego

package asm

// Without assembly (other architectures, purego) PackB runs packBGo.

func packBArchOK() bool { return false }

// packBArchName names the block transposer in tests and benchmarks.
const packBArchName = ""

func packBT8Arch(d, b []float32, off, ldb, n8 int) { packBT8Go(d, b, off, ldb, n8) }
