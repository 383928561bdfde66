//go:build amd64 && !purego

#include "textflag.h"

// Register use of kernel6x16:
//   Y0..Y11  accumulators: row i of the 6×16 tile is Y(2i) (columns 0-7)
//            and Y(2i+1) (columns 8-15)
//   Y12, Y13 the 16 floats of B at step p
//   Y14, Y15 a[p*6+i] broadcast (alternating, so loads run ahead)
//   SI = a, DI = b, CX = steps left, DX/R9/R10 = C rows 0/2/4, R8 = ldc*4

// KSTEP does one step p of the k loop: B row at DI+bo, A column at SI+ao.
// Each accumulator gets exactly one VFMADD231PS per step.
#define KSTEP(ao, bo) \
	VMOVUPS      bo(DI), Y12;           \
	VMOVUPS      bo+32(DI), Y13;        \
	VBROADCASTSS ao(SI), Y14;           \
	VFMADD231PS  Y12, Y14, Y0;          \
	VFMADD231PS  Y13, Y14, Y1;          \
	VBROADCASTSS ao+4(SI), Y15;         \
	VFMADD231PS  Y12, Y15, Y2;          \
	VFMADD231PS  Y13, Y15, Y3;          \
	VBROADCASTSS ao+8(SI), Y14;         \
	VFMADD231PS  Y12, Y14, Y4;          \
	VFMADD231PS  Y13, Y14, Y5;          \
	VBROADCASTSS ao+12(SI), Y15;        \
	VFMADD231PS  Y12, Y15, Y6;          \
	VFMADD231PS  Y13, Y15, Y7;          \
	VBROADCASTSS ao+16(SI), Y14;        \
	VFMADD231PS  Y12, Y14, Y8;          \
	VFMADD231PS  Y13, Y14, Y9;          \
	VBROADCASTSS ao+20(SI), Y15;        \
	VFMADD231PS  Y12, Y15, Y10;         \
	VFMADD231PS  Y13, Y15, Y11

// func kernel6x16(k int, a, b, c *float32, ldc int, accumulate bool)
TEXT ·kernel6x16(SB), NOSPLIT, $0-41
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8                // row stride in bytes
	LEAQ (DX)(R8*2), R9        // &c[2*ldc]
	LEAQ (R9)(R8*2), R10       // &c[4*ldc]
	CMPB accumulate+40(FP), $0
	JEQ  zero

	// Start every chain from C.
	VMOVUPS (DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS (DX)(R8*1), Y2
	VMOVUPS 32(DX)(R8*1), Y3
	VMOVUPS (R9), Y4
	VMOVUPS 32(R9), Y5
	VMOVUPS (R9)(R8*1), Y6
	VMOVUPS 32(R9)(R8*1), Y7
	VMOVUPS (R10), Y8
	VMOVUPS 32(R10), Y9
	VMOVUPS (R10)(R8*1), Y10
	VMOVUPS 32(R10)(R8*1), Y11
	JMP  loop4check

zero:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop4check:
	SUBQ $4, CX
	JLT  tail                  // fewer than 4 steps left

loop4: // four steps per iteration: A advances 4·6 floats, B 4·16 floats
	KSTEP(0, 0)
	KSTEP(24, 64)
	KSTEP(48, 128)
	KSTEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	JGE  loop4

tail:
	ADDQ $4, CX                // 0..3 steps left
	JEQ  store

loop1:
	KSTEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, (DX)(R8*1)
	VMOVUPS Y3, 32(DX)(R8*1)
	VMOVUPS Y4, (R9)
	VMOVUPS Y5, 32(R9)
	VMOVUPS Y6, (R9)(R8*1)
	VMOVUPS Y7, 32(R9)(R8*1)
	VMOVUPS Y8, (R10)
	VMOVUPS Y9, 32(R10)
	VMOVUPS Y10, (R10)(R8*1)
	VMOVUPS Y11, 32(R10)(R8*1)
	VZEROUPPER
	RET

// func peakFMA(n int)
// 12 independent chains of VFMADD231PS: enough to cover FMA latency × the
// number of FMA pipes on current x86 cores, so this measures throughput.
TEXT ·peakFMA(SB), NOSPLIT, $0-8
	MOVQ   n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	TESTQ  CX, CX
	JLE    done

loop:
	VFMADD231PS Y12, Y13, Y0
	VFMADD231PS Y12, Y13, Y1
	VFMADD231PS Y12, Y13, Y2
	VFMADD231PS Y12, Y13, Y3
	VFMADD231PS Y12, Y13, Y4
	VFMADD231PS Y12, Y13, Y5
	VFMADD231PS Y12, Y13, Y6
	VFMADD231PS Y12, Y13, Y7
	VFMADD231PS Y12, Y13, Y8
	VFMADD231PS Y12, Y13, Y9
	VFMADD231PS Y12, Y13, Y10
	VFMADD231PS Y12, Y13, Y11
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET
