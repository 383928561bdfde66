// Package asm holds dalle2's assembly kernels (amd64 AVX2/FMA/F16C, arm64
// NEON) and CPU feature detection, each with a pure-Go fallback (forced by the
// purego build tag); it is a leaf package that imports only the standard
// library and golang.org/x/sys/cpu.
//
// Each kernel family follows one recipe: the exported entry and its contract
// (written as the reference loop) in x.go, the pure-Go reference in
// x_generic.go (built everywhere), and x_amd64.go/.s, x_arm64.go/.s behind
// "amd64 && !purego" / "arm64 && !purego". Tests run every implementation the
// CPU supports against the generic one, bit for bit.
//
// Family gemm: Gemm is a single-threaded, cache-blocked fp32 matrix product
// built from PackA, PackB and the MR×NR register-blocked micro-kernel Kernel.
// Every output element is one chain of fused multiply-adds in ascending k, so
// results do not depend on blocking, kernel set or how callers split C across
// threads.
//
// PackB's transposed case (a Linear weight [N, K] as the right operand)
// transposes 8×8 (AVX2) or 4×4 (NEON) blocks in assembly (packb_*.s).
//
// Family exp: ScaleMax, ExpShift and SigmoidMul (softmax, SiLU, QuickGELU)
// and GELU, vectorised with float64-accurate arithmetic and one rounding.
//
// Family dequant: DequantQ8 and HalfToFloat decode Q8_0 blocks and fp16
// values exactly, for the GEMM's packing of compact weights.
//
// Family q8dot: Q8Gemm multiplies int8-quantized activations by Q8_0
// weights with exact int32 block sums (measured against decoding while
// packing; not used by the model, see bench/RESULTS.md §6.5).
//
// Family q16: Q16Gemm multiplies int16-quantized activations by Q8_0
// weights with exact int32 block sums on AVX-512 VNNI (VPDPWSSD), adding
// about 2·10⁻⁵ relative error; ops.Linear and ops.Conv2D use it for Q8_0
// weights where the CPU has it (Q16Fast).
//
// Features reports the detected CPU features, Name the kernel set in use, and
// SetFast switches the assembly off for tests and benchmarks.
package asm
