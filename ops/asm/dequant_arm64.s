//go:build arm64 && !purego

#include "textflag.h"

// Go's arm64 assembler has no SXTL, vector SCVTF, vector FMUL or FCVTL, so
// they are encoded here (register numbers d, n, m are 0…31):
//   SXTL_8H   d.8H ← n.8B     (SSHLL #0, immh=0001)
//   SXTL2_8H  d.8H ← n.16B (upper half)
//   SXTL_4S   d.4S ← n.4H     (SSHLL #0, immh=0010)
//   SXTL2_4S  d.4S ← n.8H (upper half)
//   SCVTF_4S  d.4S ← float(n.4S)
//   FMUL_4S   d.4S ← n.4S · m.4S
//   FCVTL_4S  d.4S ← n.4H (binary16 → float32, exact)
//   FCVTL2_4S d.4S ← n.8H (upper half)
#define SXTL_8H(d, n) WORD $(0x0F08A400 | ((n)<<5) | (d))
#define SXTL2_8H(d, n) WORD $(0x4F08A400 | ((n)<<5) | (d))
#define SXTL_4S(d, n) WORD $(0x0F10A400 | ((n)<<5) | (d))
#define SXTL2_4S(d, n) WORD $(0x4F10A400 | ((n)<<5) | (d))
#define SCVTF_4S(d, n) WORD $(0x4E21D800 | ((n)<<5) | (d))
#define FMUL_4S(d, n, m) WORD $(0x6E20DC00 | ((m)<<16) | ((n)<<5) | (d))
#define FCVTL_4S(d, n) WORD $(0x0E217800 | ((n)<<5) | (d))
#define FCVTL2_4S(d, n) WORD $(0x4E217800 | ((n)<<5) | (d))

// CVTMUL converts lane group d from int32 to float32 and scales it by V0.
#define CVTMUL(d) SCVTF_4S(d, d); FMUL_4S(d, d, 0)

// func dequantQ8NEON(dst *float32, src *byte, nb int)
// One 34-byte block per iteration: the f16 scale replicated to 8 lanes
// (LD1R) and widened (FCVTL) into V0; the 32 int8 widened to int32 in
// V16..V23 (SXTL, SXTL2 twice), converted (SCVTF, exact) and scaled (FMUL,
// exact). Loads read exactly the block's 34 bytes.
TEXT ·dequantQ8NEON(SB), NOSPLIT, $0-24
	MOVD dst+0(FP), R0
	MOVD src+8(FP), R1
	MOVD nb+16(FP), R2

loop:
	VLD1R.P 2(R1), [V0.H8]
	FCVTL_4S(0, 0)
	VLD1.P  32(R1), [V1.B16, V2.B16]
	SXTL_8H(3, 1)
	SXTL2_8H(4, 1)
	SXTL_8H(5, 2)
	SXTL2_8H(6, 2)
	SXTL_4S(16, 3)
	SXTL2_4S(17, 3)
	SXTL_4S(18, 4)
	SXTL2_4S(19, 4)
	SXTL_4S(20, 5)
	SXTL2_4S(21, 5)
	SXTL_4S(22, 6)
	SXTL2_4S(23, 6)
	CVTMUL(16)
	CVTMUL(17)
	CVTMUL(18)
	CVTMUL(19)
	CVTMUL(20)
	CVTMUL(21)
	CVTMUL(22)
	CVTMUL(23)
	VST1.P  [V16.S4, V17.S4, V18.S4, V19.S4], 64(R0)
	VST1.P  [V20.S4, V21.S4, V22.S4, V23.S4], 64(R0)
	SUBS    $1, R2, R2
	BNE     loop
	RET

// func halfToFloatNEON(dst *float32, src *byte, n int)
// n is a positive multiple of 8: 16 halves per iteration, then 8.
TEXT ·halfToFloatNEON(SB), NOSPLIT, $0-24
	MOVD dst+0(FP), R0
	MOVD src+8(FP), R1
	MOVD n+16(FP), R2

loop16:
	CMP     $16, R2
	BLT     tail8
	VLD1.P  32(R1), [V0.H8, V1.H8]
	FCVTL_4S(2, 0)
	FCVTL2_4S(3, 0)
	FCVTL_4S(4, 1)
	FCVTL2_4S(5, 1)
	VST1.P  [V2.S4, V3.S4, V4.S4, V5.S4], 64(R0)
	SUB     $16, R2, R2
	B       loop16

tail8:
	CBZ     R2, done
	VLD1    (R1), [V0.H8]
	FCVTL_4S(2, 0)
	FCVTL2_4S(3, 0)
	VST1    [V2.S4, V3.S4], (R0)

done:
	RET
