//go:build !amd64 || purego

package asm

// Without assembly (arm64 for now, other architectures, purego) the q8dot
// family runs its Go reference.

func q8dotArchOK() bool { return false }

// q8dotArchName names the assembly kernels in tests and benchmarks.
const q8dotArchName = ""

func q8dotArch(nb int, xp, wp []byte, c []float32, ldc int) { q8dotGeneric(nb, xp, wp, c, ldc) }

func quantRowXArch(panel []byte, x []float32, nb, i int) { quantRowXGo(panel, x, nb, i) }

func packRowWArch(panel []byte, row []byte, nb, j int) { packRowWGo(panel, row, nb, j) }
