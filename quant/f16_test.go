package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// f16Value is the exact value of the binary16 bit pattern h, computed from
// its fields in float64 (independently of F16ToF32).
func f16Value(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return s * math.Ldexp(m, -24)
	case 31:
		if m == 0 {
			return math.Inf(int(s))
		}
		return math.NaN()
	}
	return s * math.Ldexp(1+m/1024, e-15)
}

// magnitude is the value of the positive pattern h in 0..0x7c00, with the
// infinity pattern standing for 2^16, the next step above 65504: a value
// that rounds up to it overflows.
func magnitude(h uint16) float64 {
	if h == 0x7c00 {
		return 65536
	}
	return f16Value(h)
}

// refF32ToF16 rounds f to the nearest binary16, ties to even, by searching
// the ordered positive patterns; an independent reference for F32ToF16.
// Differences are exact in float64: both operands have at most 24
// significant bits within a span of fewer than 53 binary places.
func refF32ToF16(f float32) uint16 {
	if f != f {
		panic("NaN has no reference")
	}
	x := float64(f)
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	// Largest lo in [0, 0x7c00] with magnitude(lo) <= x.
	lo, hi := 0, 0x7c00+1
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if magnitude(uint16(mid)) <= x {
			lo = mid
		} else {
			hi = mid
		}
	}
	if lo == 0x7c00 {
		return sign | 0x7c00
	}
	dlo := x - magnitude(uint16(lo))
	dhi := magnitude(uint16(lo+1)) - x
	r := lo
	if dhi < dlo || (dhi == dlo && lo&1 == 1) {
		r = lo + 1
	}
	return sign | uint16(r)
}

func isNaN16(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }

func TestF16ToF32AllPatterns(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := F16ToF32(h)
		if isNaN16(h) {
			// NaN: sign and payload kept, in the top mantissa bits.
			require.Equal(t, uint32(h&0x8000)<<16|0x7f800000|uint32(h&0x3ff)<<13, math.Float32bits(got), "%#04x", h)
			continue
		}
		want := f16Value(h)
		require.Equal(t, want, float64(got), "%#04x", h)
		require.Equal(t, math.Signbit(want), math.Signbit(float64(got)), "%#04x sign", h)
	}
}

func TestF32ToF16RoundTripAllPatterns(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := F32ToF16(F16ToF32(h))
		if isNaN16(h) {
			require.Equal(t, h|0x0200, got, "%#04x: NaN stays NaN, quieted, payload kept", h)
			continue
		}
		require.Equal(t, h, got, "%#04x", h)
	}
}

func TestF32ToF16Random(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(b uint32) {
		f := math.Float32frombits(b)
		got := F32ToF16(f)
		if f != f {
			if !isNaN16(got) || got&0x0200 == 0 || got&0x8000 != uint16(b>>16)&0x8000 {
				t.Fatalf("%#08x: NaN became %#04x", b, got)
			}
			return
		}
		if want := refF32ToF16(f); got != want {
			t.Fatalf("F32ToF16(%#08x = %g) = %#04x, want %#04x", b, f, got, want)
		}
	}
	// 1M arbitrary patterns: mostly far outside the f16 range.
	for range 1 << 20 {
		check(r.Uint32())
	}
	// 1M patterns with exponents from 2^-27 to 2^17, where rounding,
	// subnormals and overflow happen.
	for range 1 << 20 {
		b := r.Uint32()
		exp := uint32(127-27+r.IntN(45)) << 23
		check(b&0x807fffff | exp)
	}
	// Patterns next to every rounding boundary: each f16 value, the midpoint
	// to its successor, one f32 ulp either side.
	for i := range 0x7c00 {
		lo, hi := magnitude(uint16(i)), magnitude(uint16(i+1))
		for _, v := range []float64{lo, (lo + hi) / 2} {
			b := math.Float32bits(float32(v))
			for _, d := range []uint32{b - 1, b, b + 1} {
				check(d)
				check(d | 0x80000000)
			}
		}
	}
}

func TestF32ToF16Targeted(t *testing.T) {
	p2 := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	cases := []struct {
		name string
		in   float32
		want uint16
	}{
		{"+0", 0, 0x0000},
		{"-0", float32(math.Copysign(0, -1)), 0x8000},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"one", 1, 0x3c00},
		{"max half", 65504, 0x7bff},
		{"65519.99 -> max half", 65519.99, 0x7bff},
		{"65520 ties to Inf", 65520, 0x7c00},
		{"-65520 ties to -Inf", -65520, 0xfc00},
		{"MaxFloat32", math.MaxFloat32, 0x7c00},
		{"smallest subnormal 2^-24", p2(-24), 0x0001},
		{"2^-25 ties to 0", p2(-25), 0x0000},
		{"-2^-25 ties to -0", -p2(-25), 0x8000},
		{"2^-25 + ulp rounds up", math.Nextafter32(p2(-25), 1), 0x0001},
		{"1.5*2^-25", 1.5 * p2(-25), 0x0001},
		{"2^-26", p2(-26), 0x0000},
		{"smallest f32 subnormal", math.SmallestNonzeroFloat32, 0x0000},
		{"3*2^-25 subnormal tie to even 2", 3 * p2(-25), 0x0002},
		{"5*2^-25 subnormal tie to even 2", 5 * p2(-25), 0x0002},
		{"7*2^-25 subnormal tie to even 4", 7 * p2(-25), 0x0004},
		{"largest subnormal", 1023 * p2(-24), 0x03ff},
		{"subnormal/normal tie to 2^-14", 2047 * p2(-25), 0x0400},
		{"min normal", p2(-14), 0x0400},
		{"1+2^-11 ties to even 1", 1 + p2(-11), 0x3c00},
		{"1+3*2^-11 ties to even", 1 + 3*p2(-11), 0x3c02},
		{"1+2^-11+ulp rounds up", 1 + p2(-11) + p2(-23), 0x3c01},
		{"2049 ties to 2048", 2049, 0x6800},
		{"2051 ties to 2052", 2051, 0x6802},
		{"-2.5", -2.5, 0xc100},
		{"carry into exponent", 2047.5, 0x6800},
	}
	for _, c := range cases {
		require.Equal(t, c.want, F32ToF16(c.in), "%s: F32ToF16(%g)", c.name, c.in)
		require.Equal(t, refF32ToF16(c.in), c.want, "%s: reference agrees", c.name)
	}
	for _, b := range []uint32{0x7fc00000, 0x7f800001, 0xffc00000, 0xff800001, 0x7fffffff, 0x7f802000} {
		h := F32ToF16(math.Float32frombits(b))
		require.True(t, isNaN16(h), "%#08x -> %#04x must be NaN", b, h)
		require.NotZero(t, h&0x0200, "%#08x -> %#04x must be quiet", b, h)
		require.Equal(t, uint16(b>>16)&0x8000, h&0x8000, "%#08x sign", b)
	}
}

func TestBF16ToF32(t *testing.T) {
	for _, c := range []struct {
		in   uint16
		want float32
	}{
		{0x0000, 0},
		{0x3f80, 1},
		{0xc000, -2},
		{0x4049, 3.140625},
		{0x7f7f, 3.3895314e38},
		{0x0001, float32(math.Ldexp(1, -133))},
		{0x7f80, float32(math.Inf(1))},
		{0xff80, float32(math.Inf(-1))},
	} {
		require.Equal(t, c.want, BF16ToF32(c.in), "%#04x", c.in)
	}
	require.True(t, math.Signbit(float64(BF16ToF32(0x8000))))
	nan := BF16ToF32(0x7fc1)
	require.True(t, nan != nan)
	require.Equal(t, uint32(0x7fc10000), math.Float32bits(nan))
}

func TestToFloat32(t *testing.T) {
	vals := []float32{1, -2.5, 3.1415927, 0, float32(math.Inf(-1)), 1e-40}
	buf := make([]byte, 4*len(vals)+1)
	for i, v := range vals {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}

	t.Run("F32 aligned is zero-copy", func(t *testing.T) {
		data := buf[:4*len(vals)]
		require.Zero(t, uintptr(unsafe.Pointer(&data[0]))%4)
		got, err := ToFloat32("F32", data)
		require.NoError(t, err)
		require.Equal(t, vals, got)
		require.Equal(t, unsafe.Pointer(&data[0]), unsafe.Pointer(&got[0]), "aligned F32 must alias its input")
	})
	t.Run("F32 unaligned is copied", func(t *testing.T) {
		un := buf[1:]
		copy(un, buf[:4*len(vals)])
		got, err := ToFloat32("F32", un[:4*len(vals)])
		require.NoError(t, err)
		require.Equal(t, vals, got)
		require.NotEqual(t, unsafe.Pointer(&un[0]), unsafe.Pointer(&got[0]))
	})
	t.Run("F16", func(t *testing.T) {
		got, err := ToFloat32("F16", []byte{0x00, 0x3c, 0x00, 0xc1, 0xff, 0x7b, 0x01, 0x00, 0x00, 0xfc})
		require.NoError(t, err)
		require.Equal(t, []float32{1, -2.5, 65504, float32(math.Ldexp(1, -24)), float32(math.Inf(-1))}, got)
	})
	t.Run("BF16", func(t *testing.T) {
		got, err := ToFloat32("BF16", []byte{0x80, 0x3f, 0x20, 0xc0})
		require.NoError(t, err)
		require.Equal(t, []float32{1, -2.5}, got)
	})
	t.Run("F64", func(t *testing.T) {
		in := []float64{1, -2.5, 0.1, 1e300, 1e-300}
		var b []byte
		for _, v := range in {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		got, err := ToFloat32("F64", b)
		require.NoError(t, err)
		require.Equal(t, []float32{1, -2.5, float32(0.1), float32(math.Inf(1)), 0}, got)
	})
	t.Run("empty", func(t *testing.T) {
		for _, dt := range []string{"F32", "F16", "BF16", "F64"} {
			got, err := ToFloat32(dt, nil)
			require.NoError(t, err)
			require.Empty(t, got)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			dt   string
			n    int
			want string
		}{
			{"F32", 6, "F32 data of 6 bytes"},
			{"F16", 3, "F16 data of 3 bytes"},
			{"BF16", 5, "BF16 data of 5 bytes"},
			{"F64", 12, "F64 data of 12 bytes"},
			{"I64", 8, "dtype I64 cannot be read as float32"},
		} {
			_, err := ToFloat32(c.dt, make([]byte, c.n))
			require.EqualError(t, err, c.want)
		}
	})
}
