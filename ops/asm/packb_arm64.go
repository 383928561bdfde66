//go:build arm64 && !purego

package asm

import "unsafe"

// packBT8NEON transposes n8 ≥ 1 blocks of 8×8 floats: dst[p*8+i] =
// src[i*ldb+p] for i < 8, p < 8·n8 (NR = 8).
//
//go:noescape
func packBT8NEON(dst, src *float32, ldb, n8 int)

// packBArchOK reports whether the CPU runs packBT8NEON; PackB uses it only
// when SetFast is on as well.
func packBArchOK() bool { return Features.NEON }

// packBArchName names the block transposer in tests and benchmarks.
const packBArchName = "neon"

// packBT8Arch is the packBT8Func of this architecture.
func packBT8Arch(d, b []float32, off, ldb, n8 int) {
	_ = d[(8*n8-1)*NR+7]
	packBT8NEON(unsafe.SliceData(d), unsafe.SliceData(b[off:]), ldb, n8)
}
