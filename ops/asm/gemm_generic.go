package asm

import "math"

// kernelGeneric is the pure-Go micro-kernel and the reference for the
// assembly ones (see Kernel for the contract). It is built on every target.
func kernelGeneric(k int, a, b, c []float32, ldc int, accumulate bool) {
	var acc [MR * NR]float32
	if accumulate {
		for i := 0; i < MR; i++ {
			copy(acc[i*NR:i*NR+NR], c[i*ldc:i*ldc+NR])
		}
	}
	a, b = a[:k*MR], b[:k*NR]
	var bw [NR]float64
	for p := 0; p < k; p++ {
		for j, v := range b[p*NR : p*NR+NR] {
			bw[j] = float64(v)
		}
		for i, ai := range a[p*MR : p*MR+MR] {
			aw := float64(ai)
			row := acc[i*NR : i*NR+NR]
			for j, bj := range bw {
				// fma32(ai, b[p*NR+j], row[j]), its fast path inlined.
				s := aw*bj + float64(row[j])
				if !fma32Fast(s) {
					s = float64(fma32Slow(ai, float32(bj), row[j]))
				}
				row[j] = float32(s)
			}
		}
	}
	for i := 0; i < MR; i++ {
		copy(c[i*ldc:i*ldc+NR], acc[i*NR:i*NR+NR])
	}
}

// fma32 is x·y+z rounded once to float32 (round to nearest even), exactly
// what VFMADD231PS and FMLA compute lane by lane. Go has no float32 FMA, so:
// x·y is exact in float64 (24+24 significant bits ≤ 53), and s = x·y+z is
// rounded once to float64. Rounding s again to float32 gives the right answer
// unless s landed exactly on a midpoint between two float32 values (double
// rounding); for float32-normal s that is the case iff the 29 bits dropped
// are 1000…0. Those cases, and subnormal or zero s, take fma32Slow.
func fma32(x, y, z float32) float32 {
	s := float64(x)*float64(y) + float64(z)
	if !fma32Fast(s) {
		return fma32Slow(x, y, z)
	}
	return float32(s)
}

// fma32Fast reports whether float32(s) is the correctly rounded value of the
// exact sum that s approximates: s is in float32's normal range (or beyond)
// and not on a float32 midpoint.
func fma32Fast(s float64) bool {
	b := math.Float64bits(s)
	return b&(1<<29-1) != 1<<28 && (b>>52)&0x7ff >= 1023-126
}

// fma32Slow is fma32 for the rare cases where float32(s) may round twice: it
// recovers the rounding error of s and breaks the tie with it.
func fma32Slow(x, y, z float32) float32 {
	p, w := float64(x)*float64(y), float64(z) // p is exact
	s := p + w
	r := float32(s)
	if s == 0 || math.IsInf(s, 0) || math.IsNaN(s) || float64(r) == s {
		// s exact zero (then so is x·y+z), special values, or s already a
		// float32 (|error| < ulp64/2 cannot move it to another float32).
		return r
	}
	// TwoSum (Knuth): e = (p + w) − s exactly.
	bv := s - p
	e := (p - (s - bv)) + (w - bv)
	if e == 0 {
		return r
	}
	// Neighbour of r on the other side of s; ±Inf counts as ±2^128 (the
	// overflow threshold is the midpoint between MaxFloat32 and 2^128).
	o := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-wide(r))))
	if wide(r)+wide(o) != 2*s {
		return r // not a tie: float32(s) rounded the right way
	}
	// s is exactly halfway, the exact value lies on the side of e.
	if (e > 0) == (wide(o) > wide(r)) {
		return o
	}
	return r
}

// wide is float64(f) with ±Inf mapped to ±2^128, the next float32 step past
// MaxFloat32.
func wide(f float32) float64 {
	if math.IsInf(float64(f), 0) {
		return math.Copysign(0x1p128, float64(f))
	}
	return float64(f)
}
