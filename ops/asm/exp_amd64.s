//go:build amd64 && !purego

#include "textflag.h"

// Constants, each replicated over the lanes of a YMM register (32 bytes).
#define CONST8(name, bits) \
	DATA name<>+0(SB)/4, $bits;  \
	DATA name<>+4(SB)/4, $bits;  \
	DATA name<>+8(SB)/4, $bits;  \
	DATA name<>+12(SB)/4, $bits; \
	DATA name<>+16(SB)/4, $bits; \
	DATA name<>+20(SB)/4, $bits; \
	DATA name<>+24(SB)/4, $bits; \
	DATA name<>+28(SB)/4, $bits; \
	GLOBL name<>(SB), RODATA|NOPTR, $32

#define CONST4D(name, bits) \
	DATA name<>+0(SB)/8, bits;  \
	DATA name<>+8(SB)/8, bits;  \
	DATA name<>+16(SB)/8, bits; \
	DATA name<>+24(SB)/8, bits; \
	GLOBL name<>(SB), RODATA|NOPTR, $32

CONST8(expHi, 0x42b00000) // 88.0 (float32): larger differences are clamped
CONST4D(expLoD, $0xc055d589e0000000)    // float32(-87.33654) ≈ ln(2^-126): smaller differences give 0
CONST4D(expLog2eD, $0x3ff71547652b82fe)    // log2(e)
CONST4D(expLn2HiD, $0x3fe62e42fee00000)    // ln 2 = Ln2Hi + Ln2Lo (math package constants)
CONST4D(expLn2LoD, $0x3dea39ef35793c76)
CONST4D(expC2D, $0x3fe0000000000000)    // 1/2!
CONST4D(expC3D, $0x3fc5555555555555)    // 1/3!
CONST4D(expC4D, $0x3fa5555555555555)    // 1/4!
CONST4D(expC5D, $0x3f81111111111111)    // 1/5!
CONST4D(expC6D, $0x3f56c16c16c16c17)    // 1/6!
CONST4D(expC7D, $0x3f2a01a01a01a01a)    // 1/7!
CONST4D(expC8D, $0x3efa01a01a01a01a)    // 1/8!
CONST4D(expC9D, $0x3ec71de3a556c734)    // 1/9!
CONST4D(expC10D, $0x3e927e4fb7789f5c)    // 1/10!
CONST4D(expOneD, $0x3ff0000000000000)    // 1.0
CONST4D(expBiasD, $1023)                  // double exponent bias (int64)
CONST4D(sigLoD, $0xc086200000000000)      // -708.0: e^d below it is taken as 0
CONST4D(sigSignD, $0x8000000000000000)    // sign bit

// EXPD replaces the 4 doubles in d (≤ 709) with exp(d), or 0 where d < lo
// (lo ≥ −708; NaN stays NaN): k = round(d·log2e), r = d − k·ln2 (two fused
// steps), e^r = 1 + r + r²·Σ_{n=2..10} r^(n−2)/n! (truncation below 3e-13 for
// |r| ≤ ln2/2), times 2^k built in the exponent field. Clobbers m, k, q, t.
#define EXPD(d, m, k, q, t, xk, lo) \
	VCMPPD       $5, lo<>(SB), d, m;      \
	VMULPD       expLog2eD<>(SB), d, k;   \
	VROUNDPD     $0, k, k;                \
	VFNMADD231PD expLn2HiD<>(SB), k, d;   \
	VFNMADD231PD expLn2LoD<>(SB), k, d;   \
	VMOVUPD      expC10D<>(SB), q;        \
	VFMADD213PD  expC9D<>(SB), d, q;      \
	VFMADD213PD  expC8D<>(SB), d, q;      \
	VFMADD213PD  expC7D<>(SB), d, q;      \
	VFMADD213PD  expC6D<>(SB), d, q;      \
	VFMADD213PD  expC5D<>(SB), d, q;      \
	VFMADD213PD  expC4D<>(SB), d, q;      \
	VFMADD213PD  expC3D<>(SB), d, q;      \
	VFMADD213PD  expC2D<>(SB), d, q;      \
	VMULPD       d, d, t;                 \
	VFMADD213PD  d, t, q;                 \
	VADDPD       expOneD<>(SB), q, q;     \
	VCVTPD2DQY   k, xk;                   \
	VPMOVSXDQ    xk, k;                   \
	VPADDQ       expBiasD<>(SB), k, k;    \
	VPSLLQ       $52, k, k;               \
	VMULPD       k, q, q;                 \
	VANDPD       m, q, d

// func expShift8(x *float32, n int, shift float32) float64
//
// Per 8 lanes: d = x − shift (float32), clamped to ≤ 88, widened to float64;
// exp(d) in float64 (EXPD, relative error ~1e-13), rounded to float32 and
// stored. The sum of the stored values runs in two float64 accumulators of
// 4 lanes (low and high halves).
TEXT ·expShift8(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y15
	VMOVUPS      expHi<>(SB), Y14
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9

loop:
	VMOVUPS      (SI), Y0
	VSUBPS       Y15, Y0, Y0   // d = x − shift
	VMINPS       Y0, Y14, Y0   // min(88, d); NaN d stays NaN
	VCVTPS2PD    X0, Y1        // lanes 0-3
	VEXTRACTF128 $1, Y0, X2
	VCVTPS2PD    X2, Y2        // lanes 4-7
	EXPD(Y1, Y3, Y4, Y5, Y6, X4, expLoD)
	EXPD(Y2, Y3, Y4, Y5, Y6, X4, expLoD)
	VCVTPD2PSY   Y1, X1
	VCVTPD2PSY   Y2, X2
	VCVTPS2PD    X1, Y3
	VCVTPS2PD    X2, Y4
	VADDPD       Y3, Y8, Y8
	VADDPD       Y4, Y9, Y9
	VINSERTF128  $1, X2, Y1, Y1
	VMOVUPS      Y1, (SI)
	ADDQ         $32, SI
	SUBQ         $8, CX
	JNZ          loop

	// sum = Σ lanes of Y8 + Y9: (l0+h0)+(l2+h2) + (l1+h1)+(l3+h3).
	VADDPD       Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD       X9, X8, X8
	VPERMILPD    $1, X8, X9
	VADDSD       X9, X8, X8
	MOVSD        X8, ret+24(FP)
	VZEROUPPER
	RET

// func scaleMax8(x, bias *float32, n int, scale float32) float32
//
// x = x·scale (+ bias), each operation rounded; returns the maximum.
TEXT ·scaleMax8(SB), NOSPLIT, $0-36
	MOVQ         x+0(FP), SI
	MOVQ         bias+8(FP), DI
	MOVQ         n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y15
	VMOVUPS      (SI), Y14
	VMULPS       Y15, Y14, Y14        // running maximum from the first lanes
	TESTQ        DI, DI
	JZ           nobias
	VADDPS       (DI), Y14, Y14

biasloop:
	VMOVUPS (SI), Y0
	VMULPS  Y15, Y0, Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (SI)
	VMAXPS  Y0, Y14, Y14
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     biasloop
	JMP     reduce

nobias:
	VMOVUPS (SI), Y0
	VMULPS  Y15, Y0, Y0
	VMOVUPS Y0, (SI)
	VMAXPS  Y0, Y14, Y14
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     nobias

reduce:
	VEXTRACTF128 $1, Y14, X13
	VMAXPS       X13, X14, X14
	VPERMILPS    $0x4e, X14, X13
	VMAXPS       X13, X14, X14
	VPERMILPS    $0xb1, X14, X13
	VMAXPS       X13, X14, X14
	MOVSS        X14, ret+32(FP)
	VZEROUPPER
	RET

// SIGHALF computes 4 lanes of x·σ(a) from x and a (doubles), into x:
// t = e^(−|a|), x·(a < 0 ? t : 1)/(1 + t). Clobbers a and Y3..Y6.
#define SIGHALF(x, a, xa) \
	VORPD        sigSignD<>(SB), a, Y3;        \
	EXPD(Y3, Y4, Y5, Y6, xa, X5, sigLoD);      \
	VBLENDVPD    a, Y3, Y13, Y4;               \
	VADDPD       Y13, Y3, Y3;                  \
	VMULPD       Y4, x, x;                     \
	VDIVPD       Y3, x, x

// func sigmoidMul8(dst, x *float32, n int, alpha float32)
//
// dst = x·σ(f32(alpha·x)) per lane, in float64 (SIGHALF), rounded to float32.
TEXT ·sigmoidMul8(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS alpha+24(FP), Y15
	VMOVUPD      expOneD<>(SB), Y13

sigloop:
	VMOVUPS      (SI), Y0
	VMULPS       Y15, Y0, Y7     // a = f32(alpha·x)
	VCVTPS2PD    X0, Y1          // x, lanes 0-3
	VCVTPS2PD    X7, Y2          // a, lanes 0-3
	SIGHALF(Y1, Y2, Y11)
	VEXTRACTF128 $1, Y0, X8
	VCVTPS2PD    X8, Y8          // x, lanes 4-7
	VEXTRACTF128 $1, Y7, X9
	VCVTPS2PD    X9, Y9          // a, lanes 4-7
	SIGHALF(Y8, Y9, Y11)
	VCVTPD2PSY   Y1, X1
	VCVTPD2PSY   Y8, X8
	VINSERTF128  $1, X8, Y1, Y1
	VMOVUPS      Y1, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	SUBQ         $8, CX
	JNZ          sigloop
	VZEROUPPER
	RET
