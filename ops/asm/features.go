package asm

import "golang.org/x/sys/cpu"

// Features lists the CPU features the kernels care about, detected once at
// init through golang.org/x/sys/cpu (which also checks that the OS saves the
// YMM registers before reporting AVX2/FMA). They describe the machine, not the
// build: under the purego tag they are still detected but never used.
var Features struct {
	AVX2 bool // amd64: 256-bit integer and float SIMD
	FMA  bool // amd64: VFMADD231PS and friends
	F16C bool // amd64: VCVTPH2PS / VCVTPS2PH half-float conversion
	NEON bool // arm64: Advanced SIMD (ASIMD); architecturally always present
}

// fast reports whether the assembly kernels are in use; SetFast switches it.
var fast bool

func init() {
	Features.AVX2 = cpu.X86.HasAVX2
	Features.FMA = cpu.X86.HasFMA
	Features.F16C = cpu.X86.HasF16C
	Features.NEON = cpu.ARM64.HasASIMD
	SetFast(true)
}

// SetFast selects the assembly kernels (on) or the generic Go ones (off) and
// returns a func that restores the previous choice. Turning it on is a no-op
// when the CPU lacks the features or the package is built with the purego
// tag. It is a test and benchmark hook: it must not be called while kernels
// are running in other goroutines.
func SetFast(on bool) (restore func()) {
	prev := fast
	fast = on && fastSupported()
	if fast {
		kernel = fastKernel
	} else {
		kernel = kernelGeneric
	}
	return func() { SetFast(prev) }
}

// Name is the kernel set in use: "amd64 avx2+fma+f16c" (or "amd64 avx2+fma"
// without F16C), "arm64 neon", or "purego" for the generic Go kernels (purego
// build tag, a CPU without the features, or SetFast(false)).
func Name() string {
	if !fast {
		return "purego"
	}
	return fastName()
}
