package quant

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// q8Limit is the largest block magnitude Q8_0 holds: 127 times the largest
// binary16 value (exact in float32: 8319008 < 2^23).
const q8Limit = float32(127 * 65504)

// q8Steps[i] is 127·(value of binary16 pattern i) for the positive finite
// patterns, which are ordered like their values. 127·d is exact in float64
// (at most 18 significant bits), so comparisons with it are exact.
var q8Steps = func() []float64 {
	s := make([]float64, 0x7c00)
	for i := range s {
		s[i] = 127 * f16Value(uint16(i))
	}
	return s
}()

// refQ8Scale is the smallest binary16 d with 127·d ≥ amax, found by a linear
// scan over all positive finite patterns; ok is false when no finite pattern
// suffices.
func refQ8Scale(amax float32) (h uint16, ok bool) {
	for i, s := range q8Steps {
		if s >= float64(amax) {
			return uint16(i), true
		}
	}
	return 0, false
}

// exact is the exact value of the finite float32 f.
func exact(f float32) *big.Rat { return new(big.Rat).SetFloat64(float64(f)) }

// checkQ8Block verifies one encoded block against its source values with
// exact rational arithmetic: the scale is refQ8Scale's, it obeys the
// documented bound d ≤ amax/127·(1+2⁻¹⁰) + 2⁻²⁴, every value is within d/2
// of the original, and an exact tie went to the even multiple.
func checkQ8Block(t testing.TB, src []float32, enc []byte, where int) {
	t.Helper()
	var amax float32
	for _, x := range src {
		amax = max(amax, float32(math.Abs(float64(x))))
	}
	h := binary.LittleEndian.Uint16(enc)
	if amax == 0 {
		if h != 0 {
			t.Fatalf("block at %d: all-zero block has scale %#04x, want 0", where, h)
		}
	} else {
		want, ok := refQ8Scale(amax)
		if !ok || h != want {
			t.Fatalf("block at %d: amax %g: scale %#04x, want smallest %#04x (ok %v)", where, amax, h, want, ok)
		}
	}
	d := new(big.Rat).SetFloat64(f16Value(h))
	// d ≤ amax/127·(1+2⁻¹⁰) + 2⁻²⁴
	bound := new(big.Rat).Mul(exact(amax), big.NewRat(1025, 127*1024))
	bound.Add(bound, big.NewRat(1, 1<<24))
	if d.Cmp(bound) > 0 {
		t.Fatalf("block at %d: scale %s exceeds amax/127·(1+2⁻¹⁰)+2⁻²⁴ = %s", where, d.FloatString(30), bound.FloatString(30))
	}
	half := new(big.Rat).Quo(d, big.NewRat(2, 1))
	for i, x := range src {
		q := int8(enc[2+i])
		if q == -128 {
			t.Fatalf("value %d: q = -128 (the format uses −127…127)", where+i)
		}
		xh := new(big.Rat).Mul(d, big.NewRat(int64(q), 1))
		diff := new(big.Rat).Sub(exact(x), xh)
		diff.Abs(diff)
		switch diff.Cmp(half) {
		case 1:
			t.Fatalf("value %d: |%g − %d·%g| > d/2", where+i, x, q, f16Value(h))
		case 0:
			if d.Sign() != 0 && q%2 != 0 {
				t.Fatalf("value %d: %g is a tie between multiples of %g and went to odd %d", where+i, x, f16Value(h), q)
			}
		}
	}
}

// roundTrip quantizes src, checks every block exactly and checks that
// DequantizeQ8 gives F16ToF32(d)·q.
func roundTrip(t testing.TB, src []float32) []byte {
	t.Helper()
	enc := make([]byte, Q8Bytes(len(src)))
	require.NoError(t, QuantizeQ8(enc, src))
	for b := 0; b < len(src)/Q8Block; b++ {
		checkQ8Block(t, src[b*Q8Block:(b+1)*Q8Block], enc[b*Q8BlockBytes:(b+1)*Q8BlockBytes], b*Q8Block)
	}
	dec := make([]float32, len(src))
	DequantizeQ8(dec, enc)
	for i, v := range dec {
		blk := enc[i/Q8Block*Q8BlockBytes:]
		want := f16Value(binary.LittleEndian.Uint16(blk)) * float64(int8(blk[2+i%Q8Block]))
		if float64(v) != want {
			t.Fatalf("DequantizeQ8 value %d = %g, want %g", i, v, want)
		}
	}
	return enc
}

func TestQ8Bytes(t *testing.T) {
	require.Equal(t, 0, Q8Bytes(0))
	require.Equal(t, 34, Q8Bytes(32))
	require.Equal(t, 34*4096/32, Q8Bytes(4096))
}

func TestQ8ScaleSmallest(t *testing.T) {
	check := func(amax float32) {
		t.Helper()
		got, err := Q8Scale(amax)
		want, ok := refQ8Scale(amax)
		if !ok {
			require.Error(t, err, "amax %g", amax)
			return
		}
		require.NoError(t, err, "amax %g", amax)
		require.Equal(t, want, got, "Q8Scale(%g)", amax)
	}
	// Every boundary: amax = 127·d for each positive finite d (exact in
	// float32: at most 18 significant bits) needs exactly d; one float32 ulp
	// less still needs d (the next d down is 127·ulp16 lower), one ulp more
	// needs the next d up. Every 61st boundary also goes through the
	// brute-force reference.
	for i := 1; i < 0x7c00; i++ {
		a := float32(q8Steps[i])
		for _, c := range []struct {
			amax float32
			want int
		}{{a, i}, {math.Nextafter32(a, 0), i}, {math.Nextafter32(a, float32(math.Inf(1))), i + 1}} {
			got, err := Q8Scale(c.amax)
			if c.want == 0x7c00 {
				require.Error(t, err, "amax %g", c.amax)
				continue
			}
			require.NoError(t, err, "amax %g", c.amax)
			require.Equal(t, uint16(c.want), got, "Q8Scale(%g)", c.amax)
			if i%61 == 0 {
				check(c.amax)
			}
		}
	}
	// Random magnitudes from below the smallest scale to the limit.
	r := rand.New(rand.NewPCG(8, 1))
	for range 3000 {
		check(float32(math.Ldexp(1+r.Float64(), r.IntN(175)-152)))
	}
	for _, a := range []float32{math.SmallestNonzeroFloat32, 1e-40, 1e-10, 127 * 0x1p-25, q8Limit} {
		check(a)
	}
}

func TestQ8ScaleSpecial(t *testing.T) {
	h, err := Q8Scale(0)
	require.NoError(t, err)
	require.Zero(t, h)
	h, err = Q8Scale(float32(math.Copysign(0, -1)))
	require.NoError(t, err)
	require.Zero(t, h)
	h, err = Q8Scale(math.SmallestNonzeroFloat32)
	require.NoError(t, err)
	require.Equal(t, uint16(0x0001), h, "smallest scale 2^-24")
	h, err = Q8Scale(q8Limit)
	require.NoError(t, err)
	require.Equal(t, uint16(0x7bff), h, "largest scale 65504")
	for _, a := range []float32{math.Nextafter32(q8Limit, float32(math.Inf(1))), -1, float32(math.Inf(1)), float32(math.NaN()), math.MaxFloat32} {
		_, err := Q8Scale(a)
		require.Error(t, err, "amax %g", a)
		require.Contains(t, err.Error(), "cannot be stored in Q8_0")
	}
}

func TestQ8RoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 2))
	src := make([]float32, 64*Q8Block)
	for b := 0; b < 64; b++ {
		// A different magnitude per block, from subnormal-scale blocks to
		// ones near the limit, and some blocks of mixed magnitudes.
		e := r.IntN(56) - 36 // normal deviates ≤ ~5σ stay below the limit at 2^19
		for i := range Q8Block {
			v := r.NormFloat64() * math.Ldexp(1, e)
			if b%5 == 0 {
				v *= math.Ldexp(1, -r.IntN(30))
			}
			src[b*Q8Block+i] = float32(v)
		}
	}
	roundTrip(t, src)
}

func TestQ8Targeted(t *testing.T) {
	block := func(vals ...float32) []float32 {
		b := make([]float32, Q8Block)
		copy(b, vals)
		return b
	}
	t.Run("all zero", func(t *testing.T) {
		src := block()
		src[3] = float32(math.Copysign(0, -1))
		enc := roundTrip(t, src)
		require.Equal(t, make([]byte, Q8BlockBytes), enc, "zero scale, zero values (−0 becomes +0)")
	})
	t.Run("ties to even", func(t *testing.T) {
		// amax 127 gives d = 1 exactly, so x.5 values are ties.
		src := block(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5,
			math.Nextafter32(0.5, 1), math.Nextafter32(2.5, 0), math.Nextafter32(2.5, 3), -127)
		enc := roundTrip(t, src)
		require.Equal(t, uint16(0x3c00), binary.LittleEndian.Uint16(enc), "d = 1")
		want := []int8{127, 0, 2, 2, 0, -2, -2, 126, -126, 1, 2, 3, -127}
		for i, w := range want {
			require.Equal(t, w, int8(enc[2+i]), "value %d = %g", i, src[i])
		}
	})
	t.Run("scale rounded up", func(t *testing.T) {
		// amax 1: 1/127 is not a binary16; d is the next one up, so 1
		// encodes as 127·d ≥ 1 rounded to q = 127 (127·d − 1 < d/2).
		enc := roundTrip(t, block(1, -1, 0.25))
		h := binary.LittleEndian.Uint16(enc)
		require.Greater(t, 127*f16Value(h), 1.0)
		require.Less(t, 127*f16Value(h-1), 1.0)
		require.Equal(t, int8(127), int8(enc[2]))
		require.Equal(t, int8(-127), int8(enc[3]))
	})
	t.Run("tiny and subnormal", func(t *testing.T) {
		for _, a := range []float32{math.SmallestNonzeroFloat32, 1e-40, 0x1p-126, 0x1p-30, 127 * 0x1p-24, 0x1p-20, 3e-5} {
			src := block(a, -a/2, a/3, -a, a/127, math.SmallestNonzeroFloat32)
			roundTrip(t, src)
		}
		// Magnitudes below 2^-25 all round to 0 under the smallest scale.
		enc := roundTrip(t, block(1e-40, -1e-40))
		require.Equal(t, uint16(1), binary.LittleEndian.Uint16(enc))
		require.Zero(t, enc[2])
		require.Zero(t, enc[3])
	})
	t.Run("largest magnitude", func(t *testing.T) {
		enc := roundTrip(t, block(q8Limit, -q8Limit, 65504, -0.5))
		require.Equal(t, uint16(0x7bff), binary.LittleEndian.Uint16(enc))
		require.Equal(t, int8(127), int8(enc[2]))
		require.Equal(t, int8(-127), int8(enc[3]))
		require.Equal(t, int8(1), int8(enc[4]))
		dec := make([]float32, Q8Block)
		DequantizeQ8(dec, enc)
		require.Equal(t, q8Limit, dec[0])
		require.Equal(t, -q8Limit, dec[1])
	})
}

func TestQ8Errors(t *testing.T) {
	above := math.Nextafter32(q8Limit, float32(math.Inf(1)))
	for _, c := range []struct {
		name string
		at   int
		v    float32
		want string
	}{
		{"NaN", 37, float32(math.NaN()), "QuantizeQ8: value 37 is NaN"},
		{"+Inf", 5, float32(math.Inf(1)), "QuantizeQ8: value 5 is +Inf"},
		{"-Inf", 95, float32(math.Inf(-1)), "QuantizeQ8: value 95 is -Inf"},
		{"above limit", 70, above, "QuantizeQ8: value 70: block magnitude 8.3190085e+06 cannot be stored"},
		{"below -limit", 64, -above, "QuantizeQ8: value 64: block magnitude 8.3190085e+06 cannot be stored"},
		{"MaxFloat32", 33, -math.MaxFloat32, "QuantizeQ8: value 33: block magnitude 3.4028235e+38 cannot be stored"},
	} {
		src := make([]float32, 3*Q8Block)
		for i := range src {
			src[i] = float32(i%7) - 3
		}
		src[c.at] = c.v
		err := QuantizeQ8(make([]byte, Q8Bytes(len(src))), src)
		require.Error(t, err, c.name)
		require.True(t, strings.HasPrefix(err.Error(), c.want), "%s: %q, want prefix %q", c.name, err, c.want)
	}
	// The value named for a too-large block is its largest magnitude.
	src := make([]float32, Q8Block)
	src[2], src[9] = 1e7, -2e7
	err := QuantizeQ8(make([]byte, Q8BlockBytes), src)
	require.ErrorContains(t, err, "value 9:")

	// Lengths.
	require.EqualError(t, QuantizeQ8(make([]byte, 34), make([]float32, 31)), "QuantizeQ8: 31 values is not a multiple of 32")
	require.EqualError(t, QuantizeQ8(make([]byte, 33), make([]float32, 32)), "QuantizeQ8: 33 bytes for 32 values, want 34")
	require.EqualError(t, QuantizeQ8(make([]byte, 68), make([]float32, 32)), "QuantizeQ8: 68 bytes for 32 values, want 34")
	require.NoError(t, QuantizeQ8(nil, nil))
	require.Panics(t, func() { DequantizeQ8(make([]float32, 32), make([]byte, 33)) })
	require.Panics(t, func() { DequantizeQ8(make([]float32, 31), make([]byte, 34)) })
	require.Panics(t, func() { DequantizeQ8(make([]float32, 64), make([]byte, 34)) })
	require.NotPanics(t, func() { DequantizeQ8(nil, nil) })
}

// fuzzFloats turns fuzz bytes into whole Q8 blocks of float32. mode 0 reads
// raw float32 bit patterns (mostly out of range or NaN); other modes read
// int16 values scaled by 2^(mode−150), which sweeps every magnitude class
// the format holds and some beyond.
func fuzzFloats(data []byte, mode uint8) []float32 {
	var out []float32
	if mode == 0 {
		for i := 0; i+4 <= len(data); i += 4 {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(data[i:])))
		}
	} else {
		s := math.Ldexp(1, int(mode)-150)
		for i := 0; i+2 <= len(data); i += 2 {
			out = append(out, float32(float64(int16(binary.LittleEndian.Uint16(data[i:])))*s))
		}
	}
	return out[:len(out)/Q8Block*Q8Block]
}

func FuzzQ8(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	seed := make([]byte, 4*Q8Block)
	for i := range Q8Block {
		binary.LittleEndian.PutUint32(seed[4*i:], math.Float32bits(float32(i)-15.5))
	}
	f.Add(seed, uint8(0))
	f.Add(seed, uint8(150))
	f.Add(seed[:2*Q8Block], uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		src := fuzzFloats(data, mode)
		// Expected outcome: the first NaN/Inf or too-large block fails.
		wantErr := ""
		for b := 0; b < len(src)/Q8Block && wantErr == ""; b++ {
			var amax float32
			for i, x := range src[b*Q8Block : (b+1)*Q8Block] {
				if x != x || math.IsInf(float64(x), 0) {
					wantErr = "value " + strconv.Itoa(b*Q8Block+i) + " is "
					break
				}
				amax = max(amax, float32(math.Abs(float64(x))))
			}
			if wantErr == "" && amax > q8Limit {
				wantErr = "cannot be stored"
			}
		}
		enc := make([]byte, Q8Bytes(len(src)))
		err := QuantizeQ8(enc, src)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("QuantizeQ8: error %v, want one containing %q", err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("QuantizeQ8: %v", err)
		}
		roundTrip(t, src)
	})
}
