//go:build amd64 && !purego

#include "textflag.h"

// Constants of the q16 kernels.
// VPSHUFB control that interleaves, in each 128-bit lane, the four words of
// row 2p (bytes 0-7, from VPACKSSDW) with the four of row 2p+1 (bytes 8-15):
// word t of a lane becomes the pair (row 2p, row 2p+1) of lane t.
DATA q16shuf<>+0(SB)/8, $0x0b0a030209080100
DATA q16shuf<>+8(SB)/8, $0x0f0e07060d0c0504
DATA q16shuf<>+16(SB)/8, $0x0b0a030209080100
DATA q16shuf<>+24(SB)/8, $0x0f0e07060d0c0504
DATA q16shuf<>+32(SB)/8, $0x0b0a030209080100
DATA q16shuf<>+40(SB)/8, $0x0f0e07060d0c0504
DATA q16shuf<>+48(SB)/8, $0x0b0a030209080100
DATA q16shuf<>+56(SB)/8, $0x0f0e07060d0c0504
GLOBL q16shuf<>(SB), RODATA|NOPTR, $64

DATA q16absmask<>+0(SB)/4, $0x7fffffff
GLOBL q16absmask<>(SB), RODATA|NOPTR, $4
DATA q16f32767<>+0(SB)/4, $0x46fffe00 // 32767.0
GLOBL q16f32767<>(SB), RODATA|NOPTR, $4
DATA q16f1<>+0(SB)/4, $0x3f800000 // 1.0
GLOBL q16f1<>(SB), RODATA|NOPTR, $4
DATA q16flush<>+0(SB)/4, $0x0d800000 // 2^-100
GLOBL q16flush<>(SB), RODATA|NOPTR, $4

// Register use of q16Kern6x32 (one 6×32 tile, one 32-deep block per
// iteration of blk):
//   Z0..Z11   int32 block sums: row r, lanes 16v..16v+15 in Z(2r+v)
//   Z12..Z23  float32 chains s: row r, lanes 16v..16v+15 in Z(12+2r+v)
//   Z24, Z25  the 32 lanes' int16 pairs of depth pair p
//   Z26, Z27  the lanes' activation scales dx of the block
//   Z28, Z29  d = dx·dw
//   AX = A panel, BX = B panel, CX = blocks left, DX = c, R8 = ldc·4,
//   R9 = flags

// PAIR(bo, ao): depth pair p (bo = 128p into the B block, ao = 4p into
// the A block): every block sum gets one VPDPWSSD, row r's two int16
// weights broadcast from A.
#define PAIR(bo, ao) \
	VMOVDQU32     bo(BX), Z24;         \
	VMOVDQU32     bo+64(BX), Z25;      \
	VPDPWSSD.BCST ao(AX), Z24, Z0;     \
	VPDPWSSD.BCST ao(AX), Z25, Z1;     \
	VPDPWSSD.BCST ao+64(AX), Z24, Z2;  \
	VPDPWSSD.BCST ao+64(AX), Z25, Z3;  \
	VPDPWSSD.BCST ao+128(AX), Z24, Z4; \
	VPDPWSSD.BCST ao+128(AX), Z25, Z5; \
	VPDPWSSD.BCST ao+192(AX), Z24, Z6; \
	VPDPWSSD.BCST ao+192(AX), Z25, Z7; \
	VPDPWSSD.BCST ao+256(AX), Z24, Z8; \
	VPDPWSSD.BCST ao+256(AX), Z25, Z9; \
	VPDPWSSD.BCST ao+320(AX), Z24, Z10; \
	VPDPWSSD.BCST ao+320(AX), Z25, Z11

// SCALE(so, I0, I1, S0, S1): the end of a block for one row (its scale dw
// at so into the A block): s = fma(float32(dx·dw), float32(isum), s), the
// conversion exact below 2^24 and rounded to nearest even above.
#define SCALE(so, I0, I1, S0, S1) \
	VCVTDQ2PS   I0, I0;           \
	VCVTDQ2PS   I1, I1;           \
	VMULPS.BCST so(AX), Z26, Z28; \
	VMULPS.BCST so(AX), Z27, Z29; \
	VFMADD231PS Z28, I0, S0;      \
	VFMADD231PS Z29, I1, S1

// TSTORE(ROW0, …, ROW5): the transposed store of one 6×16 half of the tile
// (rows ROW0–ROW5, see trans below): 16 columns of six floats, ldc (R8)
// bytes apart from R11, which it advances past them.
#define TSTORE(ROW0, ROW1, ROW2, ROW3, ROW4, ROW5) \
	VUNPCKLPS      ROW1, ROW0, Z0; \
	VUNPCKHPS      ROW1, ROW0, Z1; \
	VUNPCKLPS      ROW3, ROW2, Z2; \
	VUNPCKHPS      ROW3, ROW2, Z3; \
	VUNPCKLPS      ROW5, ROW4, Z4; \
	VUNPCKHPS      ROW5, ROW4, Z5; \
	VUNPCKLPD      Z2, Z0, Z6; \
	VUNPCKHPD      Z2, Z0, Z7; \
	VUNPCKLPD      Z3, Z1, Z8; \
	VUNPCKHPD      Z3, Z1, Z9; \
	VMOVUPS        X6, (R11); \
	VMOVLPS        X4, 16(R11); \
	ADDQ           R8, R11; \
	VMOVUPS        X7, (R11); \
	VMOVHPS        X4, 16(R11); \
	ADDQ           R8, R11; \
	VMOVUPS        X8, (R11); \
	VMOVLPS        X5, 16(R11); \
	ADDQ           R8, R11; \
	VMOVUPS        X9, (R11); \
	VMOVHPS        X5, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $1, Z4, X10; \
	VEXTRACTF32X4  $1, Z5, X11; \
	VEXTRACTF32X4  $1, Z6, (R11); \
	VMOVLPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $1, Z7, (R11); \
	VMOVHPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $1, Z8, (R11); \
	VMOVLPS        X11, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $1, Z9, (R11); \
	VMOVHPS        X11, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $2, Z4, X10; \
	VEXTRACTF32X4  $2, Z5, X11; \
	VEXTRACTF32X4  $2, Z6, (R11); \
	VMOVLPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $2, Z7, (R11); \
	VMOVHPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $2, Z8, (R11); \
	VMOVLPS        X11, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $2, Z9, (R11); \
	VMOVHPS        X11, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $3, Z4, X10; \
	VEXTRACTF32X4  $3, Z5, X11; \
	VEXTRACTF32X4  $3, Z6, (R11); \
	VMOVLPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $3, Z7, (R11); \
	VMOVHPS        X10, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $3, Z8, (R11); \
	VMOVLPS        X11, 16(R11); \
	ADDQ           R8, R11; \
	VEXTRACTF32X4  $3, Z9, (R11); \
	VMOVHPS        X11, 16(R11); \
	ADDQ           R8, R11

// func q16Kern6x32(nb int, a, b *byte, c *float32, ldc int, flags int)
TEXT ·q16Kern6x32(SB), NOSPLIT, $0-48
	MOVQ nb+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	MOVQ flags+40(FP), R9
	SHLQ $2, R8
	TESTQ $1, R9
	JNZ  load
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	JMP  blk

// Accumulate (never with trans): start every chain from C.
load:
	MOVQ DX, R10
	VMOVUPS (R10), Z12
	VMOVUPS 64(R10), Z13
	ADDQ R8, R10
	VMOVUPS (R10), Z14
	VMOVUPS 64(R10), Z15
	ADDQ R8, R10
	VMOVUPS (R10), Z16
	VMOVUPS 64(R10), Z17
	ADDQ R8, R10
	VMOVUPS (R10), Z18
	VMOVUPS 64(R10), Z19
	ADDQ R8, R10
	VMOVUPS (R10), Z20
	VMOVUPS 64(R10), Z21
	ADDQ R8, R10
	VMOVUPS (R10), Z22
	VMOVUPS 64(R10), Z23

blk:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	PAIR(0, 0)
	PAIR(128, 4)
	PAIR(256, 8)
	PAIR(384, 12)
	PAIR(512, 16)
	PAIR(640, 20)
	PAIR(768, 24)
	PAIR(896, 28)
	PAIR(1024, 32)
	PAIR(1152, 36)
	PAIR(1280, 40)
	PAIR(1408, 44)
	PAIR(1536, 48)
	PAIR(1664, 52)
	PAIR(1792, 56)
	PAIR(1920, 60)
	VMOVUPS 2048(BX), Z26
	VMOVUPS 2112(BX), Z27
	SCALE(384, Z0, Z1, Z12, Z13)
	SCALE(388, Z2, Z3, Z14, Z15)
	SCALE(392, Z4, Z5, Z16, Z17)
	SCALE(396, Z6, Z7, Z18, Z19)
	SCALE(400, Z8, Z9, Z20, Z21)
	SCALE(404, Z10, Z11, Z22, Z23)
	ADDQ $408, AX
	ADDQ $2176, BX
	DECQ CX
	JNZ  blk

	TESTQ $2, R9
	JNZ  trans
	MOVQ DX, R10
	VMOVUPS Z12, (R10)
	VMOVUPS Z13, 64(R10)
	ADDQ R8, R10
	VMOVUPS Z14, (R10)
	VMOVUPS Z15, 64(R10)
	ADDQ R8, R10
	VMOVUPS Z16, (R10)
	VMOVUPS Z17, 64(R10)
	ADDQ R8, R10
	VMOVUPS Z18, (R10)
	VMOVUPS Z19, 64(R10)
	ADDQ R8, R10
	VMOVUPS Z20, (R10)
	VMOVUPS Z21, 64(R10)
	ADDQ R8, R10
	VMOVUPS Z22, (R10)
	VMOVUPS Z23, 64(R10)
	VZEROUPPER
	RET

// Transposed store: lane l of row r goes to c[l·ldc+r]. For each half v of
// the lanes, the 6×16 block of rows is transposed in 128-bit lanes
// (VUNPCK*PS then VUNPCK*PD: rows 0-3 of column 4L+q in lane L of Z(6+q),
// rows 4-5 of columns 4L, 4L+1 in lane L of Z4 and of 4L+2, 4L+3 in Z5),
// then each column's six floats are stored as 4 + 2.
trans:
	MOVQ DX, R11
	TSTORE(Z12, Z14, Z16, Z18, Z20, Z22)
	TSTORE(Z13, Z15, Z17, Z19, Z21, Z23)
	VZEROUPPER
	RET

// func q16QuantB16(src *float32, ld int, dst *byte, nb int)
// One block (32 rows of 16 lanes) per iteration of qblk: amax per lane from
// the magnitudes' bits (VPMAXSD, so a NaN wins), dx = amax/32767 and
// id = 1/dx (both zeroed where amax < 2^-100; a NaN amax compares "not
// less" and propagates), then per pair of rows q = VCVTPS2DQ(x·id) (round
// to nearest even), packed to int16 with signed saturation and interleaved
// into the lanes' pairs.
TEXT ·q16QuantB16(SB), NOSPLIT, $0-32
	MOVQ         src+0(FP), SI
	MOVQ         ld+8(FP), R8
	MOVQ         dst+16(FP), DI
	MOVQ         nb+24(FP), CX
	LEAQ         (R8)(R8*2), R10 // 3·ld
	VPBROADCASTD q16absmask<>(SB), Z31
	VBROADCASTSS q16f32767<>(SB), Z30
	VBROADCASTSS q16f1<>(SB), Z29
	VBROADCASTSS q16flush<>(SB), Z28
	VMOVDQU64    q16shuf<>(SB), Z27

qblk:
	MOVQ   SI, R9
	VPANDD (R9), Z31, Z0
	VPANDD (R9)(R8*1), Z31, Z1
	VPANDD (R9)(R8*2), Z31, Z2
	VPANDD (R9)(R10*1), Z31, Z3
	LEAQ   (R9)(R8*4), R9
	MOVQ   $7, DX

amax:
	VPANDD  (R9), Z31, Z4
	VPMAXSD Z4, Z0, Z0
	VPANDD  (R9)(R8*1), Z31, Z5
	VPMAXSD Z5, Z1, Z1
	VPANDD  (R9)(R8*2), Z31, Z6
	VPMAXSD Z6, Z2, Z2
	VPANDD  (R9)(R10*1), Z31, Z7
	VPMAXSD Z7, Z3, Z3
	LEAQ    (R9)(R8*4), R9
	DECQ    DX
	JNZ     amax
	VPMAXSD   Z1, Z0, Z0
	VPMAXSD   Z3, Z2, Z2
	VPMAXSD   Z2, Z0, Z0      // amax of each lane
	VDIVPS    Z30, Z0, Z1     // dx = amax/32767
	VDIVPS    Z1, Z29, Z2     // id = 1/dx
	VCMPPS    $5, Z28, Z0, K1 // !(amax < 2^-100)
	VMOVAPS.Z Z1, K1, Z1
	VMOVAPS.Z Z2, K1, Z2
	VMOVUPS   Z1, 2048(DI)
	MOVQ      SI, R9
	MOVQ      DI, R11
	MOVQ      $16, DX

qpair:
	VMULPS    (R9), Z2, Z3
	VMULPS    (R9)(R8*1), Z2, Z4
	VCVTPS2DQ Z3, Z3
	VCVTPS2DQ Z4, Z4
	VPACKSSDW Z4, Z3, Z5
	VPSHUFB   Z27, Z5, Z5
	VMOVDQU32 Z5, (R11)
	LEAQ      (R9)(R8*2), R9
	ADDQ      $128, R11
	DECQ      DX
	JNZ       qpair
	MOVQ      R9, SI
	ADDQ      $2176, DI
	DECQ      CX
	JNZ       qblk
	VZEROUPPER
	RET

// func q16PackARow(src *byte, q *byte, s *byte, nb int)
TEXT ·q16PackARow(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ q+8(FP), DI
	MOVQ s+16(FP), R8
	MOVQ nb+24(FP), CX

aloop:
	VPMOVSXBW 2(SI), Z0
	VMOVDQU32 Z0, (DI)
	VCVTPH2PS (SI), X1
	VMOVSS    X1, (R8)
	ADDQ      $34, SI
	ADDQ      $408, DI
	ADDQ      $408, R8
	DECQ      CX
	JNZ       aloop
	VZEROUPPER
	RET
