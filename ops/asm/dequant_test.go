package asm

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dalle2/dalle2/quant"
	"github.com/stretchr/testify/require"
)

// decoderImpl is one implementation of the decoders, for tests and
// benchmarks.
type decoderImpl struct {
	name string
	q8   func(dst []float32, src []byte)
	half func(dst []float32, src []byte)
}

// decoderImpls lists the Go reference, then the assembly decoders when the
// build and CPU have them.
func decoderImpls() []decoderImpl {
	ims := []decoderImpl{{"go", dequantQ8Go, halfToFloatGo}}
	if dequantArchName != "" && dequantArchOK() {
		ims = append(ims, decoderImpl{dequantArchName, dequantQ8Arch, halfToFloatArch})
	}
	return ims
}

// wantHalfBits is quant.F16ToF32(h)'s bits with a NaN quieted: the one
// documented difference of HalfToFloat.
func wantHalfBits(h uint16) uint32 {
	b := math.Float32bits(quant.F16ToF32(h))
	if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
		b |= 0x00400000
	}
	return b
}

// dqGuard is the NaN pattern written around destinations: slots outside the
// destination must keep it.
const dqGuard = 0x7fa5a5a5

const dqGuardLen = 8 // floats of guard band on each side (a 32-byte vector)

// dqGuarded returns a buffer of n floats starting off floats into a slice with
// dqGuard bands on both sides, and a func that checks the bands.
func dqGuarded(t testing.TB, n, off int) ([]float32, func()) {
	t.Helper()
	buf := make([]float32, dqGuardLen+off+n+dqGuardLen)
	for i := range buf {
		buf[i] = math.Float32frombits(dqGuard)
	}
	dst := buf[dqGuardLen+off : dqGuardLen+off+n : dqGuardLen+off+n]
	return dst, func() {
		t.Helper()
		for i, v := range buf {
			if i >= dqGuardLen+off && i < dqGuardLen+off+n {
				continue
			}
			if math.Float32bits(v) != dqGuard {
				t.Fatalf("n=%d off=%d: guard slot %d overwritten with %#08x", n, off, i-dqGuardLen-off, math.Float32bits(v))
			}
		}
	}
}

// randomHalf draws a binary16 pattern from all classes: normal, subnormal,
// ±0, ±Inf, quiet and signalling NaNs.
func randomHalf(r *rand.Rand) uint16 {
	sign := uint16(r.IntN(2)) << 15
	switch r.IntN(10) {
	case 0:
		return sign | uint16(r.IntN(0x400)) // subnormal or 0
	case 1:
		return sign // ±0
	case 2:
		return sign | 0x7c00 // ±Inf
	case 3:
		return sign | 0x7c00 | uint16(1+r.IntN(0x3ff)) // NaN, quiet or signalling
	}
	return sign | uint16(0x400+r.IntN(0x7800)) // normal
}

// randomQ8 returns nb random blocks with scales of every class and all int8
// values (−128 too, which the encoder never writes but the decoder must
// handle).
func randomQ8(r *rand.Rand, nb int) []byte {
	src := make([]byte, nb*q8BlockBytes)
	for b := 0; b < nb; b++ {
		binary.LittleEndian.PutUint16(src[b*q8BlockBytes:], randomHalf(r))
		for i := 2; i < q8BlockBytes; i++ {
			src[b*q8BlockBytes+i] = byte(r.IntN(256))
		}
		if b%3 == 0 {
			src[b*q8BlockBytes+2+r.IntN(q8Block)] = 0 // 0·Inf, 0·NaN
		}
	}
	return src
}

// checkQ8 runs every implementation on src (whole blocks) at every dst
// offset 0..7 and compares bits with quant.DequantizeQ8.
func checkQ8(t testing.TB, src []byte) {
	t.Helper()
	want := make([]float32, len(src)/q8BlockBytes*q8Block)
	quant.DequantizeQ8(want, src)
	for _, im := range decoderImpls() {
		for off := range 8 {
			dst, check := dqGuarded(t, len(want), off)
			im.q8(dst, src)
			check()
			for i := range want {
				if g, w := math.Float32bits(dst[i]), math.Float32bits(want[i]); g != w {
					blk := src[i/q8Block*q8BlockBytes:]
					t.Fatalf("%s: %d blocks, dst off %d: value %d (scale %#04x, q %d) = %#08x, want %#08x",
						im.name, len(src)/q8BlockBytes, off, i, binary.LittleEndian.Uint16(blk), int8(blk[2+i%q8Block]), g, w)
				}
			}
		}
	}
}

// checkHalf runs every implementation on src (whole halves) at every dst
// offset 0..7 and compares bits with quant.F16ToF32 (NaNs quieted).
func checkHalf(t testing.TB, src []byte) {
	t.Helper()
	n := len(src) / 2
	for _, im := range decoderImpls() {
		for off := range 8 {
			dst, check := dqGuarded(t, n, off)
			im.half(dst, src)
			check()
			for i := range dst {
				h := binary.LittleEndian.Uint16(src[2*i:])
				if g, w := math.Float32bits(dst[i]), wantHalfBits(h); g != w {
					t.Fatalf("%s: n=%d dst off %d: value %d (%#04x) = %#08x, want %#08x", im.name, n, off, i, h, g, w)
				}
			}
		}
	}
}

func TestDequantImpls(t *testing.T) {
	names := []string{}
	for _, im := range decoderImpls() {
		names = append(names, im.name)
	}
	t.Logf("decoders: %v (kernel set %q)", names, Name())
	if Name() != "purego" && dequantArchName != "" {
		require.Len(t, names, 2, "the fast kernel set is on, so the assembly decoders must be tested too")
	}
}

func TestDequantQ8Sizes(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	for _, nb := range []int{0, 1, 2, 7, 8, 9, 31, 33, 100} {
		whole := randomQ8(r, nb+1)
		for so := range 4 { // unaligned sources
			buf := make([]byte, so+len(whole))
			copy(buf[so:], whole)
			checkQ8(t, buf[so:so+nb*q8BlockBytes])
		}
	}
}

func TestDequantQ8Scales(t *testing.T) {
	// Every binary16 scale, each with all 256 int8 values over 8
	// consecutive scales.
	src := make([]byte, 0, 1<<16*q8BlockBytes)
	for h := range 1 << 16 {
		src = binary.LittleEndian.AppendUint16(src, uint16(h))
		for i := range q8Block {
			src = append(src, byte(h%8*q8Block+i))
		}
	}
	checkQ8(t, src)
	// Special scales exactly.
	for _, h := range []uint16{0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff,
		0x7c00, 0xfc00, 0x7c01, 0x7dff, 0x7e00, 0x7fff, 0xfc01, 0xfe00, 0x3c00} {
		blk := make([]byte, q8BlockBytes)
		binary.LittleEndian.PutUint16(blk, h)
		for i := range q8Block {
			blk[2+i] = byte(int8(i*9 - 128))
		}
		blk[2+16] = 0
		checkQ8(t, blk)
	}
}

func TestHalfToFloatAllPatterns(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	checkHalf(t, src)
	// Through the exported entry, fast and not.
	for _, on := range []bool{true, false} {
		restore := SetFast(on)
		dst := make([]float32, 1<<16)
		HalfToFloat(dst, src)
		restore()
		for i, v := range dst {
			require.Equal(t, wantHalfBits(uint16(i)), math.Float32bits(v), "SetFast(%v): %#04x", on, i)
		}
	}
}

func TestHalfToFloatSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 2))
	for _, n := range append(rangeInts(0, 41), 63, 64, 65, 1000, 4099) {
		whole := make([]byte, 2*n+4)
		for i := 0; i+2 <= len(whole); i += 2 {
			binary.LittleEndian.PutUint16(whole[i:], randomHalf(r))
		}
		for so := range 4 { // odd and even byte offsets
			checkHalf(t, whole[so:so+2*n])
		}
	}
}

func rangeInts(lo, hi int) []int {
	s := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestDequantEntries(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 3))
	src := randomQ8(r, 9)
	want := make([]float32, 9*q8Block)
	quant.DequantizeQ8(want, src)
	for _, on := range []bool{true, false} {
		restore := SetFast(on)
		got := make([]float32, len(want))
		DequantQ8(got, src)
		restore()
		for i := range want {
			require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "SetFast(%v): value %d", on, i)
		}
	}
	require.NotPanics(t, func() { DequantQ8(nil, nil) })
	require.NotPanics(t, func() { HalfToFloat(nil, nil) })
	require.PanicsWithValue(t, "asm.DequantQ8: 32 values from 33 bytes", func() { DequantQ8(make([]float32, 32), make([]byte, 33)) })
	require.PanicsWithValue(t, "asm.DequantQ8: 31 values from 34 bytes", func() { DequantQ8(make([]float32, 31), make([]byte, 34)) })
	require.PanicsWithValue(t, "asm.DequantQ8: 64 values from 34 bytes", func() { DequantQ8(make([]float32, 64), make([]byte, 34)) })
	require.PanicsWithValue(t, "asm.HalfToFloat: 2 values from 3 bytes", func() { HalfToFloat(make([]float32, 2), make([]byte, 3)) })
	require.PanicsWithValue(t, "asm.HalfToFloat: 9 values from 16 bytes", func() { HalfToFloat(make([]float32, 9), make([]byte, 16)) })
}

func FuzzDequant(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0x00, 0x3c, 0x81, 0x7f, 0x00, 0x01}, uint8(1))
	seed := randomQ8(rand.New(rand.NewPCG(6, 4)), 3)
	f.Add(seed, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, off uint8) {
		if int(off) > len(data) {
			off = 0
		}
		data = data[off:]
		checkQ8(t, data[:len(data)/q8BlockBytes*q8BlockBytes])
		checkHalf(t, data[:len(data)/2*2])
	})
}

// BenchmarkDequant decodes 4096×4096 values per implementation; GB/s counts
// the float32 output.
func BenchmarkDequant(b *testing.B) {
	const n = 4096 * 4096
	r := rand.New(rand.NewPCG(6, 5))
	q8 := make([]byte, n/q8Block*q8BlockBytes)
	for i := range q8 {
		q8[i] = byte(r.Uint32())
	}
	for i := 0; i < len(q8); i += q8BlockBytes {
		binary.LittleEndian.PutUint16(q8[i:], 0x2000+uint16(r.IntN(0x1000))) // finite scales
	}
	half := make([]byte, 2*n)
	for i := 0; i < len(half); i += 2 {
		binary.LittleEndian.PutUint16(half[i:], uint16(r.IntN(0x7800)))
	}
	dst := make([]float32, n)
	for _, im := range decoderImpls() {
		for _, c := range []struct {
			name string
			f    func(dst []float32, src []byte)
			src  []byte
		}{{"q8", im.q8, q8}, {"f16", im.half, half}} {
			b.Run(fmt.Sprintf("impl=%s/%s", im.name, c.name), func(b *testing.B) {
				b.SetBytes(4 * n)
				for b.Loop() {
					c.f(dst, c.src)
				}
				b.ReportMetric(4*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}
