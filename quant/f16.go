package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// F16ToF32 converts an IEEE 754 binary16 value to float32 (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN (payload kept, quiet bit preserved)
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // ±0
		return math.Float32frombits(sign)
	default: // subnormal: mant·2^-24
		f := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(f))
	}
}

// F32ToF16 converts float32 to binary16 with round-to-nearest-even, as
// numpy's and PyTorch's .half() do: overflow goes to ±Inf, values below the
// smallest subnormal round to ±0, NaN stays NaN (quiet).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 { // NaN: keep the top payload bits, force quiet
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // rebias
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal (or zero) in f16: shift the full significand.
		if e < -10 {
			return sign // too small even to round up to the smallest subnormal
		}
		m := mant | 0x800000 // implicit bit
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rem := m & (1<<shift - 1)
		r := m >> shift
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to Inf: correct
	}
	return sign | uint16(r)
}

// BF16ToF32 converts a bfloat16 value to float32 (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// ToFloat32 decodes little-endian tensor bytes of the named dtype ("F32",
// "F16", "BF16", "F64") to float32. F32 data that is 4-byte aligned is
// returned in place, without a copy: the result then aliases data (which may
// be a read-only memory map) and must not be written.
func ToFloat32(dtype string, data []byte) ([]float32, error) {
	switch dtype {
	case "F32":
		if len(data)%4 != 0 {
			return nil, fmt.Errorf("F32 data of %d bytes", len(data))
		}
		n := len(data) / 4
		if n == 0 {
			return []float32{}, nil
		}
		if littleEndian && uintptr(unsafe.Pointer(&data[0]))%4 == 0 {
			return unsafe.Slice((*float32)(unsafe.Pointer(&data[0])), n), nil
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		return out, nil
	case "F16", "BF16":
		if len(data)%2 != 0 {
			return nil, fmt.Errorf("%s data of %d bytes", dtype, len(data))
		}
		out := make([]float32, len(data)/2)
		conv := F16ToF32
		if dtype == "BF16" {
			conv = BF16ToF32
		}
		for i := range out {
			out[i] = conv(binary.LittleEndian.Uint16(data[2*i:]))
		}
		return out, nil
	case "F64":
		if len(data)%8 != 0 {
			return nil, fmt.Errorf("F64 data of %d bytes", len(data))
		}
		out := make([]float32, len(data)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("dtype %s cannot be read as float32", dtype)
}
