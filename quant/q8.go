package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Q8_0 is dalle2's 8-bit block format (the layout of ggml's q8_0). A tensor
// of logical shape [d0, d1, …] is stored row by row, a row being the
// d1·d2·… values that share the first index (for a Linear weight [out, in]
// one output's inputs; for a convolution [Cout, Cin, KH, KW] one output
// channel's Cin·KH·KW taps, in that order). The row length must be a
// multiple of Q8Block, so that no block spans two rows. Each row is a run of
// blocks of Q8BlockBytes bytes:
//
//	bytes 0–1   d, the block's scale, IEEE 754 binary16, little-endian
//	bytes 2–33  q[0..31], two's-complement int8
//
// and block value i is F16ToF32(d) · q[i]. The scale is the block's largest
// magnitude divided by 127, rounded *up* to binary16, so that no value is
// clipped; each value is then rounded to the nearest multiple of the scale
// (ties to even). Hence every reconstructed value is within d/2 of the
// original, d ≤ max|x|/127 · (1 + 2⁻¹⁰) + 2⁻²⁴.
const (
	Q8Block      = 32 // values per block
	Q8BlockBytes = 34 // bytes per block: 2 (f16 scale) + 32 (int8 values)
)

// Q8Bytes is the size in bytes of n values in Q8_0 (n a multiple of
// Q8Block).
func Q8Bytes(n int) int { return n / Q8Block * Q8BlockBytes }

// Q8Scale returns the binary16 scale of a block whose largest magnitude is
// amax: the smallest binary16 value d with 127·d ≥ amax (0 for amax 0). It
// fails for amax above 127 · 65504 or not finite.
func Q8Scale(amax float32) (uint16, error) {
	if amax == 0 {
		return 0, nil
	}
	if !(amax > 0) || math.IsInf(float64(amax), 0) || float64(amax) > 127*65504 {
		return 0, fmt.Errorf("block magnitude %g cannot be stored in Q8_0 (scale limit 127·65504)", amax)
	}
	want := float64(amax) / 127
	h := F32ToF16(float32(want))
	if float64(F16ToF32(h)) < want {
		h++ // next binary16 up: positive values are ordered like their bits
	}
	return h, nil
}

// QuantizeQ8 encodes src (len a multiple of Q8Block) into dst
// (Q8Bytes(len(src)) bytes). It fails on NaN, infinities and magnitudes the
// format cannot hold, naming the value's index.
func QuantizeQ8(dst []byte, src []float32) error {
	if len(src)%Q8Block != 0 {
		return fmt.Errorf("QuantizeQ8: %d values is not a multiple of %d", len(src), Q8Block)
	}
	if len(dst) != Q8Bytes(len(src)) {
		return fmt.Errorf("QuantizeQ8: %d bytes for %d values, want %d", len(dst), len(src), Q8Bytes(len(src)))
	}
	for b := 0; b < len(src)/Q8Block; b++ {
		blk := src[b*Q8Block : (b+1)*Q8Block]
		var amax float32
		imax := 0 // index of the first value of magnitude amax
		for i, x := range blk {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("QuantizeQ8: value %d is %g", b*Q8Block+i, x)
			}
			if a := float32(math.Abs(float64(x))); a > amax {
				amax, imax = a, i
			}
		}
		h, err := Q8Scale(amax)
		if err != nil {
			return fmt.Errorf("QuantizeQ8: value %d: %w", b*Q8Block+imax, err)
		}
		out := dst[b*Q8BlockBytes : (b+1)*Q8BlockBytes]
		binary.LittleEndian.PutUint16(out, h)
		d := float64(F16ToF32(h))
		for i, x := range blk {
			var q float64
			if d != 0 {
				// x/d is exact enough in float64 (53-bit quotient of
				// 24-bit operands) that ties are real ties.
				q = math.RoundToEven(float64(x) / d)
			}
			out[2+i] = byte(int8(max(-127, min(127, q))))
		}
	}
	return nil
}

// DequantizeQ8 decodes src (whole blocks) into dst (len(src)/Q8BlockBytes·
// Q8Block values). It is the scalar reference of the kernels' dequantizer.
func DequantizeQ8(dst []float32, src []byte) {
	nb := len(src) / Q8BlockBytes
	if len(src)%Q8BlockBytes != 0 || len(dst) != nb*Q8Block {
		panic(fmt.Sprintf("quant.DequantizeQ8: %d values from %d bytes", len(dst), len(src)))
	}
	for b := 0; b < nb; b++ {
		blk := src[b*Q8BlockBytes : (b+1)*Q8BlockBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(blk))
		out := dst[b*Q8Block : (b+1)*Q8Block]
		for i := range out {
			out[i] = d * float32(int8(blk[2+i]))
		}
	}
}
