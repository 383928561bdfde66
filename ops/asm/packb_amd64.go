//go:build amd64 && !purego

package asm

import "unsafe"

// packBT8AVX transposes n8 ≥ 1 blocks of 8×8 floats: dst[p*16+i] =
// src[i*ldb+p] for i < 8, p < 8·n8 (NR = 16). It needs AVX only.
//
//go:noescape
func packBT8AVX(dst, src *float32, ldb, n8 int)

// packBArchOK reports whether the CPU runs packBT8AVX (AVX2 implies the AVX
// it needs); PackB uses it only when SetFast is on as well.
func packBArchOK() bool { return Features.AVX2 }

// packBArchName names the block transposer in tests and benchmarks.
const packBArchName = "avx"

// packBT8Arch is the packBT8Func of this architecture.
func packBT8Arch(d, b []float32, off, ldb, n8 int) {
	_ = d[(8*n8-1)*NR+7]
	packBT8AVX(unsafe.SliceData(d), unsafe.SliceData(b[off:]), ldb, n8)
}
