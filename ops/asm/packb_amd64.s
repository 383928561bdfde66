//go:build amd64 && !purego

#include "textflag.h"

// Register use of packBT8AVX: SI = row 0 of the block, R8 = row 4, BX = ldb
// in bytes, R9 = 3·ldb in bytes, DI = dst, CX = blocks left.

// HALF4 transposes inputs [o/4, o/4+4) of the 8 rows into dst rows 0..3 at
// DI+do. Y0..Y3 hold rows i (low lane) and i+4 (high lane); the unpacks
// pair rows (0,1) and (2,3) of each lane, the shuffles join the pairs, so
// each of Y12..Y15 is one input p across rows 0..7.
#define HALF4(o, do) \
	VMOVUPS     o(SI), X0;                   \
	VINSERTF128 $1, o(R8), Y0, Y0;           \
	VMOVUPS     o(SI)(BX*1), X1;             \
	VINSERTF128 $1, o(R8)(BX*1), Y1, Y1;     \
	VMOVUPS     o(SI)(BX*2), X2;             \
	VINSERTF128 $1, o(R8)(BX*2), Y2, Y2;     \
	VMOVUPS     o(SI)(R9*1), X3;             \
	VINSERTF128 $1, o(R8)(R9*1), Y3, Y3;     \
	VUNPCKLPS   Y1, Y0, Y8;                  \
	VUNPCKHPS   Y1, Y0, Y9;                  \
	VUNPCKLPS   Y3, Y2, Y10;                 \
	VUNPCKHPS   Y3, Y2, Y11;                 \
	VSHUFPS     $0x44, Y10, Y8, Y12;         \
	VSHUFPS     $0xEE, Y10, Y8, Y13;         \
	VSHUFPS     $0x44, Y11, Y9, Y14;         \
	VSHUFPS     $0xEE, Y11, Y9, Y15;         \
	VMOVUPS     Y12, do(DI);                 \
	VMOVUPS     Y13, do+64(DI);              \
	VMOVUPS     Y14, do+128(DI);             \
	VMOVUPS     Y15, do+192(DI)

// func packBT8AVX(dst, src *float32, ldb, n8 int)
TEXT ·packBT8AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), BX
	MOVQ n8+24(FP), CX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R9
	LEAQ (SI)(BX*4), R8

loop:
	HALF4(0, 0)
	HALF4(16, 256)
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $512, DI
	DECQ CX
	JNZ  loop
	VZEROUPPER
	RET
