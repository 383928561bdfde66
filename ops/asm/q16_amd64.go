//go:build amd64 && !purego

package asm

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// q16Features are the CPU features the AVX-512 q16 kernels need, detected
// once (x/sys/cpu also checks that the OS saves the ZMM and mask registers).
var q16Features = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI && cpu.X86.HasF16C

// q16Kern6x32 is the AVX-512 VNNI kernel: the 6×32 tile of C (ldc floats
// apart; flags as q16Generic's) from an A panel a and a B panel b of
// nb ≥ 1 blocks.
//
//go:noescape
func q16Kern6x32(nb int, a, b *byte, c *float32, ldc int, flags int)

// q16QuantB16 quantizes 16 lanes of nb ≥ 1 blocks: lane t of block b takes
// src[(32b+p)*ld/4+t] (ld in bytes); its int16 pairs go to dst+b·2176+128p
// and its scale to dst+b·2176+2048 (dst already offset to the lanes).
//
//go:noescape
func q16QuantB16(src *float32, ld int, dst *byte, nb int)

// q16PackARow copies nb ≥ 1 Q8_0 blocks at src: block b's 32 int8
// sign-extended to int16 go to q+b·408, its scale (as float32) to s+b·408.
//
//go:noescape
func q16PackARow(src *byte, q *byte, s *byte, nb int)

// q16ArchOK reports whether the CPU runs the AVX-512 q16 kernels.
func q16ArchOK() bool { return q16Features }

// q16ArchName names the assembly kernels in tests and benchmarks.
const q16ArchName = "avx512vnni"

func q16Arch(nb int, ap, bp []byte, c []float32, ldc int, flags int) {
	_, _ = ap[nb*q16ABlockBytes-1], bp[nb*q16BBlockBytes-1]
	if flags&q16Trans != 0 {
		_ = c[(Q16NR-1)*ldc+Q16MR-1]
	} else {
		_ = c[(Q16MR-1)*ldc+Q16NR-1]
	}
	q16Kern6x32(nb, unsafe.SliceData(ap), unsafe.SliceData(bp), unsafe.SliceData(c), ldc, flags)
}

func q16PackBArch(dst []byte, nb, j0 int, src []float32, ld int) {
	_, _ = dst[nb*q16BBlockBytes-1], src[(nb*q8Block-1)*ld+15]
	q16QuantB16(unsafe.SliceData(src), 4*ld, &dst[4*j0], nb)
}

func q16PackARowArch(panel []byte, row []byte, nb, r int) {
	_, _ = panel[nb*q16ABlockBytes-1], row[nb*q8BlockBytes-1]
	q16PackARow(unsafe.SliceData(row), &panel[64*r], &panel[q16AScales+4*r], nb)
}
