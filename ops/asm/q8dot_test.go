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

// q8dotImpls runs f with the generic kernels (SetFast(false)) and, when the
// build and CPU have them, with the assembly ones.
func q8dotImpls(t *testing.T, f func(t *testing.T)) {
	t.Run("impl=go", func(t *testing.T) {
		defer SetFast(false)()
		f(t)
	})
	if q8dotArchName != "" && q8dotArchOK() {
		t.Run("impl="+q8dotArchName, func(t *testing.T) {
			defer SetFast(true)()
			require.True(t, fast)
			f(t)
		})
	}
}

// q8dotActs returns n activations for the int8 family (blockActs with
// qmax 127).
func q8dotActs(r *rand.Rand, n int) []float32 { return blockActs(r, n, 127) }

// blockActs returns n activations for a family that quantizes blocks to
// [−qmax, qmax]: N(0,1) values, with some blocks scaled by 2^e for e in
// [−130, 40] (flushed, tiny and large blocks), some exact zeros, and
// blocks whose values sit on rounding ties of their scale.
func blockActs(r *rand.Rand, n, qmax int) []float32 {
	x := make([]float32, n)
	for b := 0; b < n/q8Block; b++ {
		blk := x[b*q8Block : (b+1)*q8Block]
		scale := 1.0
		switch r.IntN(6) {
		case 0:
			scale = math.Ldexp(1, r.IntN(171)-130)
		case 1:
			// ties: amax qmax·2^e gives dx = 2^e exactly, id = 2^-e, and
			// half-integer multiples of dx land on x·id = t + 0.5.
			e := r.IntN(20) - 10
			for i := range blk {
				blk[i] = float32(math.Ldexp(float64(r.IntN(2*qmax+1)-qmax)+0.5, e))
			}
			blk[r.IntN(q8Block)] = float32(math.Ldexp(float64(qmax), e))
			continue
		}
		for i := range blk {
			if r.IntN(16) == 0 {
				continue // exact zero
			}
			blk[i] = float32(r.NormFloat64() * scale)
		}
	}
	return x
}

// q8dotWeight returns an n×k Q8_0 matrix with finite scales (normal,
// subnormal and zero binary16 values) and all int8 values, −128 included
// (the encoder never writes it, the kernels must still be exact).
func q8dotWeight(r *rand.Rand, n, k int) []byte {
	w := make([]byte, quant.Q8Bytes(n*k))
	for b := 0; b < len(w)/q8BlockBytes; b++ {
		blk := w[b*q8BlockBytes : (b+1)*q8BlockBytes]
		var h uint16
		switch r.IntN(8) {
		case 0:
			h = uint16(r.IntN(0x400)) // subnormal or zero
		default:
			h = uint16(0x400 + r.IntN(0x7800)) // normal, up to 65504
		}
		h |= uint16(r.IntN(2)) << 15
		binary.LittleEndian.PutUint16(blk, h)
		for i := 2; i < q8BlockBytes; i++ {
			blk[i] = byte(r.IntN(256))
		}
	}
	return w
}

func TestQ8QuantizeAct(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := q8dotActs(r, 64*q8Block)
	q, dx := make([]int8, len(x)), make([]float32, len(x)/q8Block)
	Q8QuantizeAct(q, dx, x)
	for b, d := range dx {
		blk := x[b*q8Block : (b+1)*q8Block]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		if amax < q8FlushBelow {
			require.Zero(t, d, "block %d (amax %g) is flushed", b, amax)
			for i := range blk {
				require.Zero(t, q[b*q8Block+i])
			}
			continue
		}
		require.Equal(t, amax/127, d, "block %d", b)
		hasMax := false
		for i, v := range blk {
			qi := q[b*q8Block+i]
			require.True(t, qi >= -127 && qi <= 127, "block %d value %d: q=%d", b, i, qi)
			// |x − dx·q| ≤ dx/2, up to the rounding of id = 1/dx and of
			// x·id (each ≤ 2⁻²⁴ relative, i.e. ≤ 127·2·2⁻²⁴ in units of q).
			err := math.Abs(float64(v) - float64(d)*float64(qi))
			require.LessOrEqual(t, err, float64(d)*(0.5+254*0x1p-24), "block %d value %d", b, i)
			hasMax = hasMax || qi == 127 || qi == -127
		}
		require.True(t, hasMax, "block %d: the largest value maps to ±127", b)
	}

	// Non-finite blocks get a non-finite scale.
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		blk := make([]float32, q8Block)
		blk[5], blk[9] = 1, bad
		Q8QuantizeAct(q[:q8Block], dx[:1], blk)
		require.False(t, math.Abs(float64(dx[0])) <= math.MaxFloat32, "scale of a block with %v is %v", bad, dx[0])
	}
}

// TestQ8Pack compares the assembly packing routines with the Go ones, byte
// for byte, including the padding rows (the buffers start dirty).
func TestQ8Pack(t *testing.T) {
	if q8dotArchName == "" || !q8dotArchOK() {
		t.Skip("no assembly q8dot kernels on this build or CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{32, 64, 96, 288, 800} {
		for _, rows := range []int{1, 3, 4, 5, 9} {
			ldx := k + r.IntN(3)
			x := q8dotActs(r, (rows-1)*ldx+k+r.IntN(2)*q8Block)
			w := q8dotWeight(r, rows, k)
			pack := func(on bool) (px, pw []byte) {
				defer SetFast(on)()
				px = make([]byte, (rows+3)/4*Q8XPanelBytes(k))
				pw = make([]byte, (rows+3)/4*Q8WPanelBytes(k))
				for i := range px {
					px[i] = 0xa5
				}
				for i := range pw {
					pw[i] = 0xa5
				}
				Q8PackX(px, x, ldx, rows, k)
				Q8PackW(pw, w, rows, k)
				return px, pw
			}
			wantX, wantW := pack(false)
			gotX, gotW := pack(true)
			require.Equal(t, wantX, gotX, "k=%d rows=%d: X panels", k, rows)
			require.Equal(t, wantW, gotW, "k=%d rows=%d: W panels", k, rows)
		}
	}
}

// checkQ8Gemm runs Q8PackX, Q8PackW and Q8Gemm on an m×n×k case (with
// leading-dimension padding and a guard band around C) and compares bits
// with Q8GemmRef.
func checkQ8Gemm(t testing.TB, r *rand.Rand, m, n, k int, x []float32, ldx int, w []byte) {
	t.Helper()
	ldc := n + r.IntN(3)
	want := make([]float32, max(m*ldc, 1))
	Q8GemmRef(m, n, k, x, ldx, w, want, ldc)

	const g = 8 // guard floats on each side of C
	buf := make([]float32, g+len(want)+g)
	for i := range buf {
		buf[i] = math.Float32frombits(guard)
	}
	c := buf[g : g+len(want)]
	px := make([]byte, (m+3)/4*Q8XPanelBytes(k))
	pw := make([]byte, (n+3)/4*Q8WPanelBytes(k))
	Q8PackX(px, x, ldx, m, k)
	Q8PackW(pw, w, n, k)
	Q8Gemm(m, n, k, px, pw, c, ldc, nil)
	for i, v := range buf {
		idx := i - g
		inside := idx >= 0 && idx < m*ldc && idx%ldc < n
		if !inside {
			if math.Float32bits(v) != guard {
				t.Fatalf("m=%d n=%d k=%d: slot %d outside C overwritten", m, n, k, idx)
			}
			continue
		}
		if math.Float32bits(v) != math.Float32bits(want[idx]) {
			t.Fatalf("m=%d n=%d k=%d: C[%d][%d] = %v (%#08x), reference %v (%#08x)", m, n, k,
				idx/ldc, idx%ldc, v, math.Float32bits(v), want[idx], math.Float32bits(want[idx]))
		}
	}
}

// TestQ8Gemm is the parity of every implementation with the reference at
// awkward sizes: partial tiles on both edges, one block, odd block counts.
func TestQ8Gemm(t *testing.T) {
	q8dotImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, k := range []int{0, 32, 64, 160, 2048} {
			for _, m := range []int{1, 2, 3, 4, 5, 7, 8, 13} {
				for _, n := range []int{1, 3, 4, 6, 9, 16} {
					if k == 2048 && m*n > 40 {
						continue // keep the generic run short
					}
					ldx := k + r.IntN(2)*q8Block
					x := q8dotActs(r, max((m-1)*ldx+k, 0))
					checkQ8Gemm(t, r, m, n, k, x, ldx, q8dotWeight(r, n, k))
				}
			}
		}
	})
}

// TestQ8GemmMatchesIntegers checks the reference itself on small integers,
// where everything is exact: with x already integers in [−127, 127] and
// amax 127 (so dx = 1, q = x) and weight scales 1, C is the integer product.
func TestQ8GemmMatchesIntegers(t *testing.T) {
	require.Less(t, q8MaxIsum, 1<<24, "block sums must convert to float32 exactly")
	r := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 5, 6, 96
	x := make([]float32, m*k)
	xi := make([]int, m*k)
	for i := range x {
		xi[i] = r.IntN(255) - 127
		if i%q8Block == 0 {
			xi[i] = 127
		}
		x[i] = float32(xi[i])
	}
	w, wi := integerQ8Weight(r, n, k)
	got := make([]float32, m*n)
	Q8GemmRef(m, n, k, x, k, w, got, n)
	requireIntegerProduct(t, m, n, k, xi, wi, got)
	q8dotImpls(t, func(t *testing.T) { checkQ8Gemm(t, r, m, n, k, x, k, w) })
}

// TestQ8GemmNonFinite: a NaN or ±Inf activation makes every output of its
// row non-finite, in every implementation; the other rows are unaffected.
func TestQ8GemmNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const m, n, k = 6, 5, 128
	w := q8dotWeight(r, n, k)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		x := q8dotActs(r, m*k)
		clean := append([]float32(nil), x...)
		x[2*k+70] = bad
		want := make([]float32, m*n)
		Q8GemmRef(m, n, k, clean, k, w, want, n)
		q8dotImpls(t, func(t *testing.T) {
			px := make([]byte, 2*Q8XPanelBytes(k))
			pw := make([]byte, 2*Q8WPanelBytes(k))
			Q8PackX(px, x, k, m, k)
			Q8PackW(pw, w, n, k)
			c := make([]float32, m*n)
			Q8Gemm(m, n, k, px, pw, c, n, nil)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					v := c[i*n+j]
					if i == 2 {
						require.False(t, math.Abs(float64(v)) <= math.MaxFloat32, "%v: C[2][%d] = %v", bad, j, v)
					} else {
						require.Equal(t, math.Float32bits(want[i*n+j]), math.Float32bits(v), "%v: C[%d][%d]", bad, i, j)
					}
				}
			}
		})
	}
}

func TestQ8GemmPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"k not a multiple of 32": func() { Q8PackX(nil, make([]float32, 40), 40, 1, 40) },
		"short X panel buffer":   func() { Q8PackX(make([]byte, 10), make([]float32, 32), 32, 1, 32) },
		"short weight":           func() { Q8PackW(make([]byte, Q8WPanelBytes(32)), make([]byte, 33), 1, 32) },
		"short C":                func() { Q8Gemm(4, 4, 32, make([]byte, 144), make([]byte, 192), make([]float32, 15), 4, nil) },
		"short panels":           func() { Q8Gemm(5, 4, 32, make([]byte, 144), make([]byte, 192), make([]float32, 20), 4, nil) },
	} {
		require.Panics(t, f, name)
	}
}

func TestQ8GemmNoAlloc(t *testing.T) {
	const m, n, k = 6, 7, 64
	r := rand.New(rand.NewPCG(11, 12))
	x, w := q8dotActs(r, m*k), q8dotWeight(r, n, k)
	px, pw := make([]byte, 2*Q8XPanelBytes(k)), make([]byte, 2*Q8WPanelBytes(k))
	c := make([]float32, m*n)
	var tile Q8Tile
	allocs := testing.AllocsPerRun(10, func() {
		Q8PackX(px, x, k, m, k)
		Q8PackW(pw, w, n, k)
		Q8Gemm(m, n, k, px, pw, c, n, &tile)
	})
	require.Zero(t, allocs)
}

// TestQ8DotAccuracy measures the price of quantizing the activations: the
// relative L2 error of Q8GemmRef against the float64 product of the same x
// with the dequantized weight, over N(0, 1) activations and a Q8_0-encoded
// N(0, 1) weight. With dx ≈ amax/127 and amax ≈ 2.0–2.5 for 32 normal
// values, the rounding error of each activation is uniform of variance
// dx²/12 ≈ 3·10⁻⁵, so the expected relative error is about √(3·10⁻⁵)
// ≈ 0.55%; the bound 0.8% leaves room for the spread of amax (the scale is
// set by the block's largest value) without hiding a broken scale (an
// off-by-one block or a wrong scale gives errors of order 100%). For
// comparison it also logs the error the weight quantization itself causes
// against the fp32 weight, and the total of both.
func TestQ8DotAccuracy(t *testing.T) {
	const m, n, k = 32, 48, 1024
	r := rand.New(rand.NewPCG(13, 14))
	x, wf := make([]float32, m*k), make([]float32, n*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range wf {
		wf[i] = float32(r.NormFloat64())
	}
	w := make([]byte, quant.Q8Bytes(n*k))
	require.NoError(t, quant.QuantizeQ8(w, wf))
	wd := make([]float32, n*k)
	quant.DequantizeQ8(wd, w)
	got := make([]float32, m*n)
	Q8GemmRef(m, n, k, x, k, w, got, n)

	// int8-dot against the exact product with the dequantized weight: the
	// activation quantization alone; and the dequantized weight against
	// the fp32 weight: the weight quantization alone.
	var num, den, wnum, wden, tnum float64
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sd float64
			for p := 0; p < k; p++ {
				s += float64(x[i*k+p]) * float64(wf[j*k+p])
				sd += float64(x[i*k+p]) * float64(wd[j*k+p])
			}
			v := float64(got[i*n+j])
			num, den = num+(v-sd)*(v-sd), den+sd*sd
			wnum, wden = wnum+(sd-s)*(sd-s), wden+s*s
			tnum += (v - s) * (v - s)
		}
	}
	actErr := math.Sqrt(num / den)
	wErr := math.Sqrt(wnum / wden)
	t.Logf("relative L2 error: activation quantization %.4f%%, weight quantization %.4f%%, both (int8-dot vs the fp32 weight) %.4f%%",
		100*actErr, 100*wErr, 100*math.Sqrt(tnum/wden))
	require.Less(t, actErr, 0.008)
	require.Greater(t, actErr, 0.003, "suspiciously small: is x quantized at all?")
}

// FuzzQ8Gemm compares every implementation with the reference on fuzzed
// sizes and data.
func FuzzQ8Gemm(f *testing.F) {
	f.Add(uint64(1), uint8(5), uint8(3), uint8(2))
	f.Add(uint64(2), uint8(4), uint8(4), uint8(1))
	f.Add(uint64(3), uint8(1), uint8(9), uint8(7))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, nb8 uint8) {
		m, n, k := 1+int(m8%13), 1+int(n8%13), q8Block*int(nb8%12)
		r := rand.New(rand.NewPCG(seed, 99))
		x := q8dotActs(r, m*k)
		w := q8dotWeight(r, n, k)
		for _, on := range []bool{false, true} {
			func() {
				defer SetFast(on)()
				checkQ8Gemm(t, r, m, n, k, x, k, w)
			}()
		}
	})
}

func BenchmarkQ8Kernel(b *testing.B) {
	const nb = 64 // k = 2048
	r := rand.New(rand.NewPCG(1, 1))
	x, w := q8dotActs(r, 4*nb*q8Block), q8dotWeight(r, 4, nb*q8Block)
	px, pw := make([]byte, Q8XPanelBytes(nb*q8Block)), make([]byte, Q8WPanelBytes(nb*q8Block))
	Q8PackX(px, x, nb*q8Block, 4, nb*q8Block)
	Q8PackW(pw, w, 4, nb*q8Block)
	c := make([]float32, 16)
	kerns := []struct {
		name string
		f    func(nb int, xp, wp []byte, c []float32, ldc int)
	}{{"go", q8dotGeneric}}
	if q8dotArchName != "" && q8dotArchOK() {
		kerns = append(kerns, struct {
			name string
			f    func(nb int, xp, wp []byte, c []float32, ldc int)
		}{q8dotArchName, q8dotArch})
	}
	for _, kr := range kerns {
		b.Run("impl="+kr.name, func(b *testing.B) {
			for b.Loop() {
				kr.f(nb, px, pw, c, 4)
			}
			b.ReportMetric(2*16*nb*q8Block*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkQ8Pack measures the packing routines per 32-value block.
func BenchmarkQ8Pack(b *testing.B) {
	const rows, k = 64, 2048
	r := rand.New(rand.NewPCG(1, 1))
	x, w := q8dotActs(r, rows*k), q8dotWeight(r, rows, k)
	px, pw := make([]byte, rows/4*Q8XPanelBytes(k)), make([]byte, rows/4*Q8WPanelBytes(k))
	for _, on := range []bool{false, true} {
		name := "go"
		if on {
			if q8dotArchName == "" || !q8dotArchOK() {
				continue
			}
			name = q8dotArchName
		}
		b.Run(fmt.Sprintf("X/impl=%s", name), func(b *testing.B) {
			defer SetFast(on)()
			for b.Loop() {
				Q8PackX(px, x, k, rows, k)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*k/q8Block), "ns/block")
		})
		b.Run(fmt.Sprintf("W/impl=%s", name), func(b *testing.B) {
			defer SetFast(on)()
			for b.Loop() {
				Q8PackW(pw, w, rows, k)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*k/q8Block), "ns/block")
		})
	}
}

// integerQ8Weight is a random Q8_0 matrix of n rows of k values whose block
// scales are all 1, and its values as ints, so that products with integer
// activations are exact integers.
func integerQ8Weight(r *rand.Rand, n, k int) (w []byte, wi []int) {
	w = make([]byte, quant.Q8Bytes(n*k))
	wi = make([]int, n*k)
	for b := 0; b < n*k/q8Block; b++ {
		binary.LittleEndian.PutUint16(w[b*q8BlockBytes:], 0x3c00) // 1.0
		for i := 0; i < q8Block; i++ {
			v := r.IntN(256) - 128
			wi[b*q8Block+i] = v
			w[b*q8BlockBytes+2+i] = byte(int8(v))
		}
	}
	return w, wi
}

// requireIntegerProduct checks got (m×n) against the exact integer product
// of xi (m×k) and wiᵀ (wi n×k).
func requireIntegerProduct(t *testing.T, m, n, k int, xi, wi []int, got []float32) {
	t.Helper()
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0
			for p := 0; p < k; p++ {
				s += xi[i*k+p] * wi[j*k+p]
			}
			require.Equal(t, float32(s), got[i*n+j], "C[%d][%d]", i, j)
		}
	}
}
