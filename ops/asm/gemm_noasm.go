//go:build (!amd64 && !arm64) || purego

package asm

// Micro-tile of the generic Go kernel.
const (
	MR = 4 // rows of the Kernel tile (packed A panel height)
	NR = 8 // columns of the Kernel tile (packed B panel width)
)

func fastSupported() bool { return false }

var fastKernel = kernelGeneric

func fastName() string { return "purego" }

func archImpls() []impl { return nil }
