//go:build arm64 && !purego

#include "textflag.h"

// Register use of packBT8NEON: R2..R9 = rows 0..7 of the block, R1 = dst,
// R0 = 4-input steps left, R10 = ldb in bytes. Each step loads inputs
// [p, p+4) of the 8 rows (V0..V7), pairs rows with TRN1/TRN2 on words
// (V8..V15), joins the pairs with TRN1/TRN2 on doublewords and stores inputs
// p..p+3 across rows 0-3 and 4-7 as dst rows p..p+3 (V16..V23, in order).

// func packBT8NEON(dst, src *float32, ldb, n8 int)
TEXT ·packBT8NEON(SB), NOSPLIT, $0-32
	MOVD dst+0(FP), R1
	MOVD src+8(FP), R2
	MOVD ldb+16(FP), R10
	MOVD n8+24(FP), R0
	LSL  $2, R10, R10
	LSL  $1, R0, R0
	ADD  R10, R2, R3
	ADD  R10, R3, R4
	ADD  R10, R4, R5
	ADD  R10, R5, R6
	ADD  R10, R6, R7
	ADD  R10, R7, R8
	ADD  R10, R8, R9

loop:
	VLD1.P 16(R2), [V0.S4]
	VLD1.P 16(R3), [V1.S4]
	VLD1.P 16(R4), [V2.S4]
	VLD1.P 16(R5), [V3.S4]
	VLD1.P 16(R6), [V4.S4]
	VLD1.P 16(R7), [V5.S4]
	VLD1.P 16(R8), [V6.S4]
	VLD1.P 16(R9), [V7.S4]
	VTRN1  V1.S4, V0.S4, V8.S4
	VTRN2  V1.S4, V0.S4, V9.S4
	VTRN1  V3.S4, V2.S4, V10.S4
	VTRN2  V3.S4, V2.S4, V11.S4
	VTRN1  V5.S4, V4.S4, V12.S4
	VTRN2  V5.S4, V4.S4, V13.S4
	VTRN1  V7.S4, V6.S4, V14.S4
	VTRN2  V7.S4, V6.S4, V15.S4
	VTRN1  V10.D2, V8.D2, V16.D2
	VTRN1  V14.D2, V12.D2, V17.D2
	VTRN1  V11.D2, V9.D2, V18.D2
	VTRN1  V15.D2, V13.D2, V19.D2
	VTRN2  V10.D2, V8.D2, V20.D2
	VTRN2  V14.D2, V12.D2, V21.D2
	VTRN2  V11.D2, V9.D2, V22.D2
	VTRN2  V15.D2, V13.D2, V23.D2
	VST1.P [V16.S4, V17.S4, V18.S4, V19.S4], 64(R1)
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R1)
	SUBS   $1, R0, R0
	BNE    loop
	RET
