//go:build arm64 && !purego

#include "textflag.h"

// Register use of kernel8x8:
//   V0..V15  accumulators: row i of the 8×8 tile is V(2i) (columns 0-3) and
//            V(2i+1) (columns 4-7)
//   V16, V17 the 8 floats of B at step p
//   V18..V21 a[p*8+i] replicated to 4 lanes (LD1R; Go's assembler has no
//            FMLA-by-element)
//   R0 = steps left, R1 = a, R2 = b, R3 = c, R4 = ldc*4, R6 = C row pointer

// ROW2 does rows r and r+1 of one step: one FMLA per accumulator.
#define ROW2(va, vb, acc0, acc1, acc2, acc3) \
	VLD1R.P 4(R1), [va.S4];           \
	VLD1R.P 4(R1), [vb.S4];           \
	VFMLA   V16.S4, va.S4, acc0.S4;   \
	VFMLA   V17.S4, va.S4, acc1.S4;   \
	VFMLA   V16.S4, vb.S4, acc2.S4;   \
	VFMLA   V17.S4, vb.S4, acc3.S4

// func kernel8x8(k int, a, b, c *float32, ldc int, accumulate bool)
TEXT ·kernel8x8(SB), NOSPLIT, $0-41
	MOVD  k+0(FP), R0
	MOVD  a+8(FP), R1
	MOVD  b+16(FP), R2
	MOVD  c+24(FP), R3
	MOVD  ldc+32(FP), R4
	LSL   $2, R4, R4                 // row stride in bytes
	MOVBU accumulate+40(FP), R5
	CBZ   R5, zero

	// Start every chain from C.
	MOVD   R3, R6
	VLD1.P (R6)(R4), [V0.S4, V1.S4]
	VLD1.P (R6)(R4), [V2.S4, V3.S4]
	VLD1.P (R6)(R4), [V4.S4, V5.S4]
	VLD1.P (R6)(R4), [V6.S4, V7.S4]
	VLD1.P (R6)(R4), [V8.S4, V9.S4]
	VLD1.P (R6)(R4), [V10.S4, V11.S4]
	VLD1.P (R6)(R4), [V12.S4, V13.S4]
	VLD1   (R6), [V14.S4, V15.S4]
	B      loop

zero:
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16

loop: // one step p: B advances 8 floats, A 8 floats (in ROW2)
	VLD1.P 32(R2), [V16.S4, V17.S4]
	ROW2(V18, V19, V0, V1, V2, V3)
	ROW2(V20, V21, V4, V5, V6, V7)
	ROW2(V18, V19, V8, V9, V10, V11)
	ROW2(V20, V21, V12, V13, V14, V15)
	SUBS   $1, R0, R0
	BNE    loop

	MOVD   R3, R6
	VST1.P [V0.S4, V1.S4], (R6)(R4)
	VST1.P [V2.S4, V3.S4], (R6)(R4)
	VST1.P [V4.S4, V5.S4], (R6)(R4)
	VST1.P [V6.S4, V7.S4], (R6)(R4)
	VST1.P [V8.S4, V9.S4], (R6)(R4)
	VST1.P [V10.S4, V11.S4], (R6)(R4)
	VST1.P [V12.S4, V13.S4], (R6)(R4)
	VST1   [V14.S4, V15.S4], (R6)
	RET

// func peakFMA(n int)
// 16 independent chains of 4-lane FMLA, enough to cover FMA latency × FMA
// pipes on current arm64 cores, so this measures throughput.
TEXT ·peakFMA(SB), NOSPLIT, $0-8
	MOVD n+0(FP), R0
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	CMP  $0, R0
	BLE  done

loop:
	VFMLA V16.S4, V17.S4, V0.S4
	VFMLA V16.S4, V17.S4, V1.S4
	VFMLA V16.S4, V17.S4, V2.S4
	VFMLA V16.S4, V17.S4, V3.S4
	VFMLA V16.S4, V17.S4, V4.S4
	VFMLA V16.S4, V17.S4, V5.S4
	VFMLA V16.S4, V17.S4, V6.S4
	VFMLA V16.S4, V17.S4, V7.S4
	VFMLA V16.S4, V17.S4, V8.S4
	VFMLA V16.S4, V17.S4, V9.S4
	VFMLA V16.S4, V17.S4, V10.S4
	VFMLA V16.S4, V17.S4, V11.S4
	VFMLA V16.S4, V17.S4, V12.S4
	VFMLA V16.S4, V17.S4, V13.S4
	VFMLA V16.S4, V17.S4, V14.S4
	VFMLA V16.S4, V17.S4, V15.S4
	SUBS  $1, R0, R0
	BNE   loop

done:
	RET
