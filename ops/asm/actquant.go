package asm

import (
	"fmt"
	"math"
)

// The activation side shared by the q8dot (int8) and q16 (int16) families:
// their plain-Go block quantizer and the reference product with a Q8_0
// weight, which differ only in the integer type and its range.

// actInt is the integer type a family quantizes activations to.
type actInt interface{ int8 | int16 }

// quantActBlock quantizes one block of 32 activations into q by the
// families' rule (q8dot.go, q16.go) with qmax = 127 or 32767 and returns
// the scale dx: amax = max|x| (over the magnitudes' bit patterns, so a NaN
// dominates); dx = amax/qmax and q[t] = cvtSat(x[t]·(1/dx)), unless amax <
// flush (NaN is not), when dx = 0 and every q[t] = 0.
func quantActBlock[T actInt](q []T, x []float32, qmax, flush float32) float32 {
	x, q = x[:q8Block], q[:q8Block]
	var amaxBits uint32
	for _, v := range x {
		amaxBits = max(amaxBits, math.Float32bits(v)&0x7fffffff)
	}
	amax := math.Float32frombits(amaxBits)
	var dx, id float32
	if !(amax < flush) { // NaN included: it propagates through dx
		dx = amax / qmax
		id = 1 / dx
	}
	for t, v := range x {
		q[t] = cvtSat[T](v*id, float64(qmax))
	}
	return dx
}

// cvtSat is VCVTPS2DQ then signed saturating packs down to T (qmax is T's
// largest value): round to nearest even; NaN and values outside int32 give
// int32's −2³¹ and so T's smallest value; then saturation to [−qmax−1,
// qmax]. For the finite blocks of the activation rule the argument is in
// [−qmax−½, qmax+½] and this is plain rounding.
func cvtSat[T actInt](f float32, qmax float64) T {
	r := math.RoundToEven(float64(f))
	if !(r >= -0x1p31 && r < 0x1p31) {
		return T(-qmax - 1)
	}
	return T(max(-qmax-1, min(qmax, r)))
}

// actWeightGemmRef is the families' reference product C = x·Wᵀ for x m×k
// (leading dimension ldx) and the Q8_0 matrix w (n rows of k/32 blocks),
// written straight from their contract: each row of x quantized by
// quantize, exact integer block sums, d = float32(dx·dw), one fused
// multiply-add per block in ascending order. name is the caller, for the
// panic on bad arguments.
func actWeightGemmRef[T actInt](name string, quantize func(q []T, dx, x []float32), m, n, k int, x []float32, ldx int, w []byte, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 || k%q8Block != 0 || len(w) < n*(k/q8Block)*q8BlockBytes ||
		(m > 0 && k > 0 && (ldx < k || len(x) < (m-1)*ldx+k)) || (m > 0 && n > 0 && (ldc < n || len(c) < (m-1)*ldc+n)) {
		panic(fmt.Sprintf("asm.%s: m=%d n=%d k=%d len(x)=%d ldx=%d len(w)=%d len(c)=%d ldc=%d",
			name, m, n, k, len(x), ldx, len(w), len(c), ldc))
	}
	nb := k / q8Block
	qx, dx := make([]T, k), make([]float32, nb)
	rb := nb * q8BlockBytes
	for i := 0; i < m; i++ {
		quantize(qx, dx, x[i*ldx:i*ldx+k])
		for j := 0; j < n; j++ {
			row := w[j*rb : (j+1)*rb]
			s := float32(0)
			for b := 0; b < nb; b++ {
				blk := row[b*q8BlockBytes : (b+1)*q8BlockBytes]
				dw := halfToFloat32(uint16(blk[0]) | uint16(blk[1])<<8)
				var isum int32
				for t, v := range blk[2:] {
					isum += int32(qx[32*b+t]) * int32(int8(v))
				}
				d := float32(dx[b] * dw)
				s = fma32(d, float32(isum), s)
			}
			c[i*ldc+j] = s
		}
	}
}
