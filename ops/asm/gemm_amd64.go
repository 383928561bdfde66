//go:build amd64 && !purego

package asm

import "unsafe"

// Micro-tile of the AVX2 kernel: 6 rows × 16 columns = 12 YMM accumulators.
const (
	MR = 6  // rows of the Kernel tile (packed A panel height)
	NR = 16 // columns of the Kernel tile (packed B panel width)
)

// kernel6x16 is Kernel for AVX2+FMA; k ≥ 1 and the pointers are valid for
// the extents Kernel documents.
//
//go:noescape
func kernel6x16(k int, a, b, c *float32, ldc int, accumulate bool)

// peakFMA runs n iterations of 12 independent VFMADD231PS on YMM registers:
// 12·8·2 = 192 flops per iteration.
//
//go:noescape
func peakFMA(n int)

const peakFlopsPerIter = 12 * 8 * 2

func kernelAVX2(k int, a, b, c []float32, ldc int, accumulate bool) {
	kernel6x16(k, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, accumulate)
}

func fastSupported() bool { return Features.AVX2 && Features.FMA }

var fastKernel = kernelAVX2

func fastName() string {
	if Features.F16C {
		return "amd64 avx2+fma+f16c"
	}
	return "amd64 avx2+fma"
}

// archImpls lists the assembly kernels this CPU can run, by benchmark name.
func archImpls() []impl {
	if !fastSupported() {
		return nil
	}
	return []impl{{name: "avx2", kernel: kernelAVX2, peak: peakFMA, peakFlops: peakFlopsPerIter}}
}
