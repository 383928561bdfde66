//go:build amd64 && !purego

#include "textflag.h"

// Each constant replicated over the 4 float64 lanes of a YMM register. The
// values are geluGeneric's (gelu.go), bit for bit.
#define GCONST(name, bits) \
	DATA name<>+0(SB)/8, bits;  \
	DATA name<>+8(SB)/8, bits;  \
	DATA name<>+16(SB)/8, bits; \
	DATA name<>+24(SB)/8, bits; \
	GLOBL name<>(SB), RODATA|NOPTR, $32

GCONST(geluNegHalf, $0xbfe0000000000000) // -0.5
GCONST(geluAbs, $0x7fffffffffffffff)     // clears the sign bit
GCONST(geluRsqrt2, $0x3fe6a09e667f3bcd)  // 1/√2
GCONST(geluAmax, $0x4024800000000000)    // 10.25
GCONST(geluLo, $0xc05a000000000000)      // -104: e^d below it is taken as 0
GCONST(geluOne, $0x3ff0000000000000)     // 1.0

// P(a) and Q(a) (gelu.go's geluP*, geluQ*).
GCONST(geluP0, $0x3fe0000000000000) // 0.5
GCONST(geluP1, $0x3fe9d35c3789b20e) // 0.8070508084034047
GCONST(geluP2, $0x3fe47ca03403994d) // 0.6402131095790452
GCONST(geluP3, $0x3fd38f7960cb3112) // 0.3056319661379955
GCONST(geluP4, $0x3fb7768bdff7f655) // 0.09165262430175265
GCONST(geluP5, $0x3f90cc20ca9120b2) // 0.01640368687029143
GCONST(geluP6, $0x3f56cf7e74654f2d) // 0.001392243853463658
GCONST(geluQ1, $0x4005f099c3ea7106) // 2.7424807840271823
GCONST(geluQ2, $0x400afff7d1e6274f) // 3.3749843977319993
GCONST(geluQ3, $0x40036f33d25c16d6) // 2.4292980608323473
GCONST(geluQ4, $0x3ff1ccead88f2c5e) // 1.1125286540361894
GCONST(geluQ5, $0x3fd4f393887b808a) // 0.3273667176090461
GCONST(geluQ6, $0x3fadc5c8b262049e) // 0.058149596953634516
GCONST(geluQ7, $0x3f74371db3ec6db2) // 0.004935375239053229

// e^r (the exp family's constants).
GCONST(geluLog2e, $0x3ff71547652b82fe) // log2(e)
GCONST(geluLn2Hi, $0x3fe62e42fee00000) // ln 2 = Ln2Hi + Ln2Lo
GCONST(geluLn2Lo, $0x3dea39ef35793c76)
GCONST(geluC2, $0x3fe0000000000000)  // 1/2!
GCONST(geluC3, $0x3fc5555555555555)  // 1/3!
GCONST(geluC4, $0x3fa5555555555555)  // 1/4!
GCONST(geluC5, $0x3f81111111111111)  // 1/5!
GCONST(geluC6, $0x3f56c16c16c16c17)  // 1/6!
GCONST(geluC7, $0x3f2a01a01a01a01a)  // 1/7!
GCONST(geluC8, $0x3efa01a01a01a01a)  // 1/8!
GCONST(geluC9, $0x3ec71de3a556c734)  // 1/9!
GCONST(geluC10, $0x3e927e4fb7789f5c) // 1/10!
GCONST(geluBias, $1023)              // double exponent bias (int64)

// GELUD replaces the 4 doubles x with x·Φ(x), geluGeneric's sequence (Y13
// holds 1.0). Clobbers e, a, p, q, m, k (xk is k's low half).
#define GELUD(x, e, a, p, q, m, k, xk) \
	VMULPD       geluNegHalf<>(SB), x, e; \ // d = (x·(−1/2))·x
	VMULPD       x, e, e;                 \
	VANDPD       geluAbs<>(SB), x, a;     \ // a = min(|x|·(1/√2), 10.25)
	VMULPD       geluRsqrt2<>(SB), a, a;  \
	VMINPD       geluAmax<>(SB), a, a;    \
	VCMPPD       $5, geluLo<>(SB), e, m;  \ // m: !(d < −104)
	VMULPD       geluLog2e<>(SB), e, k;   \ // k = round(d·log2e)
	VROUNDPD     $0, k, k;                \
	VFNMADD231PD geluLn2Hi<>(SB), k, e;   \ // r = d − k·Ln2Hi − k·Ln2Lo
	VFNMADD231PD geluLn2Lo<>(SB), k, e;   \
	VMOVUPD      geluC10<>(SB), q;        \
	VFMADD213PD  geluC9<>(SB), e, q;      \
	VFMADD213PD  geluC8<>(SB), e, q;      \
	VFMADD213PD  geluC7<>(SB), e, q;      \
	VFMADD213PD  geluC6<>(SB), e, q;      \
	VFMADD213PD  geluC5<>(SB), e, q;      \
	VFMADD213PD  geluC4<>(SB), e, q;      \
	VFMADD213PD  geluC3<>(SB), e, q;      \
	VFMADD213PD  geluC2<>(SB), e, q;      \
	VMULPD       e, e, p;                 \
	VFMADD213PD  e, p, q;                 \ // r + r²·c(r)
	VADDPD       Y13, q, q;               \
	VCVTPD2DQY   k, xk;                   \ // 2^k in the exponent field
	VPMOVSXDQ    xk, k;                   \
	VPADDQ       geluBias<>(SB), k, k;    \
	VPSLLQ       $52, k, k;               \
	VMULPD       k, q, q;                 \
	VANDPD       m, q, e;                 \ // E = e^d, 0 where d < −104
	VMOVUPD      geluP6<>(SB), p;         \ // P(a), Q(a) by Horner
	VMOVUPD      geluQ7<>(SB), q;         \
	VFMADD213PD  geluP5<>(SB), a, p;      \
	VFMADD213PD  geluQ6<>(SB), a, q;      \
	VFMADD213PD  geluP4<>(SB), a, p;      \
	VFMADD213PD  geluQ5<>(SB), a, q;      \
	VFMADD213PD  geluP3<>(SB), a, p;      \
	VFMADD213PD  geluQ4<>(SB), a, q;      \
	VFMADD213PD  geluP2<>(SB), a, p;      \
	VFMADD213PD  geluQ3<>(SB), a, q;      \
	VFMADD213PD  geluP1<>(SB), a, p;      \
	VFMADD213PD  geluQ2<>(SB), a, q;      \
	VFMADD213PD  geluP0<>(SB), a, p;      \
	VFMADD213PD  geluQ1<>(SB), a, q;      \
	VFMADD213PD  Y13, a, q;               \
	VDIVPD       q, p, p;                 \
	VMULPD       p, e, e;                 \ // q = E·P/Q = Φ(−|x|)
	VSUBPD       e, Y13, p;               \ // Φ = x < 0 (sign bit) ? q : 1 − q
	VBLENDVPD    x, e, p, p;              \
	VMULPD       p, x, x

// func gelu8(dst, x *float32, n int)
TEXT ·gelu8(SB), NOSPLIT, $0-24
	MOVQ    dst+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    n+16(FP), CX
	VMOVUPD geluOne<>(SB), Y13

loop:
	VMOVUPS      (SI), Y0
	VCVTPS2PD    X0, Y1       // lanes 0-3
	VEXTRACTF128 $1, Y0, X8
	VCVTPS2PD    X8, Y8       // lanes 4-7
	GELUD(Y1, Y2, Y3, Y4, Y5, Y6, Y7, X7)
	GELUD(Y8, Y9, Y10, Y11, Y12, Y14, Y15, X15)
	VCVTPD2PSY   Y1, X1
	VCVTPD2PSY   Y8, X8
	VINSERTF128  $1, X8, Y1, Y1
	VMOVUPS      Y1, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	SUBQ         $8, CX
	JNZ          loop
	VZEROUPPER
	RET
