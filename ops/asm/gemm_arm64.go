//go:build arm64 && !purego

package asm

import "unsafe"

// Micro-tile of the NEON kernel: 8 rows × 8 columns = 16 Q accumulators.
const (
	MR = 8 // rows of the Kernel tile (packed A panel height)
	NR = 8 // columns of the Kernel tile (packed B panel width)
)

// kernel8x8 is Kernel for NEON; k ≥ 1 and the pointers are valid for the
// extents Kernel documents.
//
//go:noescape
func kernel8x8(k int, a, b, c *float32, ldc int, accumulate bool)

// peakFMA runs n iterations of 16 independent 4-lane FMLA:
// 16·4·2 = 128 flops per iteration.
//
//go:noescape
func peakFMA(n int)

const peakFlopsPerIter = 16 * 4 * 2

func kernelNEON(k int, a, b, c []float32, ldc int, accumulate bool) {
	kernel8x8(k, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, accumulate)
}

func fastSupported() bool { return Features.NEON }

var fastKernel = kernelNEON

func fastName() string { return "arm64 neon" }

// archImpls lists the assembly kernels this CPU can run, by benchmark name.
func archImpls() []impl {
	if !fastSupported() {
		return nil
	}
	return []impl{{name: "neon", kernel: kernelNEON, peak: peakFMA, peakFlops: peakFlopsPerIter}}
}
