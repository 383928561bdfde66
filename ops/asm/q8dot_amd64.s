//go:build amd64 && !purego

#include "textflag.h"

// Constants of the q8dot kernels.
DATA q8ones16<>+0(SB)/8, $0x0001000100010001
DATA q8ones16<>+8(SB)/8, $0x0001000100010001
DATA q8ones16<>+16(SB)/8, $0x0001000100010001
DATA q8ones16<>+24(SB)/8, $0x0001000100010001
GLOBL q8ones16<>(SB), RODATA|NOPTR, $32

// VPERMD index that undoes the lane interleaving of VPACKSSDW/VPACKSSWB.
DATA q8packperm<>+0(SB)/4, $0
DATA q8packperm<>+4(SB)/4, $4
DATA q8packperm<>+8(SB)/4, $1
DATA q8packperm<>+12(SB)/4, $5
DATA q8packperm<>+16(SB)/4, $2
DATA q8packperm<>+20(SB)/4, $6
DATA q8packperm<>+24(SB)/4, $3
DATA q8packperm<>+28(SB)/4, $7
GLOBL q8packperm<>(SB), RODATA|NOPTR, $32

DATA q8absmask<>+0(SB)/4, $0x7fffffff
GLOBL q8absmask<>(SB), RODATA|NOPTR, $4
DATA q8f127<>+0(SB)/4, $0x42fe0000 // 127.0
GLOBL q8f127<>(SB), RODATA|NOPTR, $4
DATA q8f1<>+0(SB)/4, $0x3f800000 // 1.0
GLOBL q8f1<>(SB), RODATA|NOPTR, $4
DATA q8flush<>+0(SB)/4, $0x0d800000 // 2^-100
GLOBL q8flush<>(SB), RODATA|NOPTR, $4

// Register use of q8dot4x4AVX2 (one 4×4 tile, one 32-value block per
// iteration):
//   Y0..Y3   the block of X rows 0..3 (int8)
//   Y4, Y5   accumulators: Y4 = [C(0..3, 0) | C(0..3, 1)], Y5 the same for
//            columns 2 and 3 (column-major pairs, transposed at the end)
//   Y6       int16 ones (VPMADDWD)
//   Y7       |w_j| (unsigned bytes)
//   Y8..Y10  products, Y11, Y12 per-column sums, Y13, Y14 temporaries
//   Y15      [dx0 dx1 dx2 dx3 | dx0 dx1 dx2 dx3]
//   SI = X panel, DI = W panel, CX = blocks left, DX = c, R8 = ldc·4

// Q8COL(wo, G): the four int32 block sums of column j (W row at DI+wo)
// against X rows 0..3, as G = [r0 r1 r2 r3 (bytes 0-15) | r0 r1 r2 r3
// (bytes 16-31)]. The products are |w|·sign(x, w): the unsigned operand is
// |w| ≤ 128 and the signed one |x| ≤ 127, so the pair sums of VPMADDUBSW
// (≤ 2·128·127) cannot saturate.
#define Q8COL(wo, G) \
	VPABSB     wo(DI), Y7;      \
	VPSIGNB    wo(DI), Y0, Y8;  \
	VPMADDUBSW Y8, Y7, Y8;      \
	VPMADDWD   Y6, Y8, Y8;      \
	VPSIGNB    wo(DI), Y1, Y9;  \
	VPMADDUBSW Y9, Y7, Y9;      \
	VPMADDWD   Y6, Y9, Y9;      \
	VPHADDD    Y9, Y8, Y8;      \
	VPSIGNB    wo(DI), Y2, Y9;  \
	VPMADDUBSW Y9, Y7, Y9;      \
	VPMADDWD   Y6, Y9, Y9;      \
	VPSIGNB    wo(DI), Y3, Y10; \
	VPMADDUBSW Y10, Y7, Y10;    \
	VPMADDWD   Y6, Y10, Y10;    \
	VPHADDD    Y10, Y9, Y9;     \
	VPHADDD    Y9, Y8, G

// Q8PAIR(so, ACC): the exact block sums of two columns (Y11, Y12) as
// [col j rows 0-3 | col j+1 rows 0-3], converted (exactly) to float, and
// ACC += (dx·dw)·isum with one rounding of dx·dw and one FMA.
#define Q8PAIR(so, ACC) \
	VPERM2I128  $0x20, Y12, Y11, Y13; \
	VPERM2I128  $0x31, Y12, Y11, Y14; \
	VPADDD      Y14, Y13, Y13;        \
	VCVTDQ2PS   Y13, Y13;             \
	VMULPS      so(DI), Y15, Y14;     \
	VFMADD231PS Y13, Y14, ACC

// func q8dot4x4AVX2(nb int, x, w *byte, c *float32, ldc int)
TEXT ·q8dot4x4AVX2(SB), NOSPLIT, $0-40
	MOVQ    nb+0(FP), CX
	MOVQ    x+8(FP), SI
	MOVQ    w+16(FP), DI
	MOVQ    c+24(FP), DX
	MOVQ    ldc+32(FP), R8
	SHLQ    $2, R8
	VXORPS  Y4, Y4, Y4
	VXORPS  Y5, Y5, Y5
	VMOVDQU q8ones16<>(SB), Y6

loop:
	VMOVDQU        (SI), Y0
	VMOVDQU        32(SI), Y1
	VMOVDQU        64(SI), Y2
	VMOVDQU        96(SI), Y3
	VBROADCASTF128 128(SI), Y15
	Q8COL(0, Y11)
	Q8COL(32, Y12)
	Q8PAIR(128, Y4)
	Q8COL(64, Y11)
	Q8COL(96, Y12)
	Q8PAIR(160, Y5)
	ADDQ           $144, SI
	ADDQ           $192, DI
	DECQ           CX
	JNZ            loop

	// Transpose the column pairs into rows: c_j = column j (rows 0..3).
	VEXTRACTF128 $1, Y4, X1      // c1 (X4 = c0)
	VEXTRACTF128 $1, Y5, X3      // c3 (X5 = c2)
	VUNPCKLPS    X1, X4, X6      // c0[0] c1[0] c0[1] c1[1]
	VUNPCKHPS    X1, X4, X7      // c0[2] c1[2] c0[3] c1[3]
	VUNPCKLPS    X3, X5, X8      // c2[0] c3[0] c2[1] c3[1]
	VUNPCKHPS    X3, X5, X9      // c2[2] c3[2] c2[3] c3[3]
	VMOVLHPS     X8, X6, X10     // row 0
	VMOVHLPS     X6, X8, X11     // row 1
	VMOVLHPS     X9, X7, X12     // row 2
	VMOVHLPS     X7, X9, X13     // row 3
	VMOVUPS      X10, (DX)
	VMOVUPS      X11, (DX)(R8*1)
	LEAQ         (DX)(R8*2), DX
	VMOVUPS      X12, (DX)
	VMOVUPS      X13, (DX)(R8*1)
	VZEROUPPER
	RET

// func q8quantRowAVX2(x *float32, q *byte, s *byte, nb, stride int)
// One block of 32 floats per iteration: amax from the magnitudes' bits
// (VPMAXSD, so a NaN wins), dx = amax/127 and id = 1/dx (both zeroed when
// amax < 2^-100; a NaN amax compares "not less" and propagates), q =
// VCVTPS2DQ(x·id) (round to nearest even) packed to int8 with saturation.
TEXT ·q8quantRowAVX2(SB), NOSPLIT, $0-40
	MOVQ         x+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         s+16(FP), R8
	MOVQ         nb+24(FP), CX
	MOVQ         stride+32(FP), DX
	VBROADCASTSS q8absmask<>(SB), Y15
	VMOVDQU      q8packperm<>(SB), Y14
	VMOVSS       q8flush<>(SB), X13
	VMOVSS       q8f127<>(SB), X12
	VMOVSS       q8f1<>(SB), X11

qloop:
	VMOVUPS      (SI), Y0
	VMOVUPS      32(SI), Y1
	VMOVUPS      64(SI), Y2
	VMOVUPS      96(SI), Y3
	VANDPS       Y15, Y0, Y4
	VANDPS       Y15, Y1, Y5
	VANDPS       Y15, Y2, Y6
	VANDPS       Y15, Y3, Y7
	VPMAXSD      Y5, Y4, Y4
	VPMAXSD      Y7, Y6, Y6
	VPMAXSD      Y6, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPMAXSD      X5, X4, X4
	VPSHUFD      $0x4e, X4, X5
	VPMAXSD      X5, X4, X4
	VPSHUFD      $0xb1, X4, X5
	VPMAXSD      X5, X4, X4      // amax in every lane
	VDIVSS       X12, X4, X5     // dx = amax/127
	VDIVSS       X5, X11, X6     // id = 1/dx
	VCMPSS       $5, X13, X4, X7 // !(amax < 2^-100)
	VANDPS       X7, X5, X5
	VANDPS       X7, X6, X6
	VMOVSS       X5, (R8)
	VBROADCASTSS X6, Y6
	VMULPS       Y6, Y0, Y0
	VMULPS       Y6, Y1, Y1
	VMULPS       Y6, Y2, Y2
	VMULPS       Y6, Y3, Y3
	VCVTPS2DQ    Y0, Y0
	VCVTPS2DQ    Y1, Y1
	VCVTPS2DQ    Y2, Y2
	VCVTPS2DQ    Y3, Y3
	VPACKSSDW    Y1, Y0, Y0      // 0-3 8-11 | 4-7 12-15 (int16)
	VPACKSSDW    Y3, Y2, Y2      // 16-19 24-27 | 20-23 28-31
	VPACKSSWB    Y2, Y0, Y0      // groups of 4: 0 2 4 6 | 1 3 5 7
	VPERMD       Y0, Y14, Y0
	VMOVDQU      Y0, (DI)
	ADDQ         $128, SI
	ADDQ         DX, DI
	ADDQ         DX, R8
	DECQ         CX
	JNZ          qloop
	VZEROUPPER
	RET

// func q8packRowAVX2(src *byte, q *byte, s *byte, nb, stride int)
TEXT ·q8packRowAVX2(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ q+8(FP), DI
	MOVQ s+16(FP), R8
	MOVQ nb+24(FP), CX
	MOVQ stride+32(FP), DX

ploop:
	VMOVDQU      2(SI), Y0
	VMOVDQU      Y0, (DI)
	VPBROADCASTW (SI), X1
	VCVTPH2PS    X1, X1
	VMOVUPS      X1, (R8)
	ADDQ         $34, SI
	ADDQ         DX, DI
	ADDQ         DX, R8
	DECQ         CX
	JNZ          ploop
	VZEROUPPER
	RET
