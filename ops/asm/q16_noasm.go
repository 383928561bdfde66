//go:build !amd64 || purego

package asm

// Without assembly (arm64, other architectures, purego) the q16 family runs
// its Go reference.

func q16ArchOK() bool { return false }

// q16ArchName names the assembly kernels in tests and benchmarks.
const q16ArchName = ""

func q16Arch(nb int, ap, bp []byte, c []float32, ldc int, flags int) {
	q16Generic(nb, ap, bp, c, ldc, flags)
}

func q16PackBArch(dst []byte, nb, j0 int, src []float32, ld int) {
	q16PackBGo(dst, nb, j0, 16, src, ld)
}

func q16PackARowArch(panel []byte, row []byte, nb, r int) { q16PackARowGo(panel, row, nb, r) }
