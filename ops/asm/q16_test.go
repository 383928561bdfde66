package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/dalle2/dalle2/quant"
	"github.com/stretchr/testify/require"
)

// q16Impls runs f with the generic kernels (SetFast(false)) and, when the
// build and CPU have them, with the AVX-512 ones.
func q16Impls(t *testing.T, f func(t *testing.T)) {
	t.Run("impl=go", func(t *testing.T) {
		defer SetFast(false)()
		require.False(t, Q16Fast())
		f(t)
	})
	if q16ArchName != "" && q16ArchOK() {
		t.Run("impl="+q16ArchName, func(t *testing.T) {
			defer SetFast(true)()
			require.True(t, Q16Fast())
			f(t)
		})
	}
}

// q16Acts returns n activations for the int16 family (blockActs with
// qmax 32767).
func q16Acts(r *rand.Rand, n int) []float32 { return blockActs(r, n, 32767) }

func TestQ16QuantizeAct(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := q16Acts(r, 64*q8Block)
	q, dx := make([]int16, len(x)), make([]float32, len(x)/q8Block)
	Q16QuantizeAct(q, dx, x)
	ties := 0
	for b, d := range dx {
		blk := x[b*q8Block : (b+1)*q8Block]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		if amax < q16FlushBelow {
			require.Zero(t, d, "block %d (amax %g) is flushed", b, amax)
			for i := range blk {
				require.Zero(t, q[b*q8Block+i])
			}
			continue
		}
		require.Equal(t, amax/32767, d, "block %d", b)
		hasMax := false
		for i, v := range blk {
			qi := q[b*q8Block+i]
			require.True(t, qi >= -32767, "block %d value %d: q=%d", b, i, qi)
			// |x − dx·q| ≤ dx/2, up to the rounding of id = 1/dx and of
			// x·id (each ≤ 2⁻²⁴ relative, i.e. ≤ 32767·2·2⁻²⁴ in units of q).
			err := math.Abs(float64(v) - float64(d)*float64(qi))
			require.LessOrEqual(t, err, float64(d)*(0.5+65534*0x1p-24), "block %d value %d", b, i)
			if err == float64(d)/2 {
				ties++
				require.Zero(t, qi%2, "block %d value %d: a tie rounds to even", b, i)
			}
			hasMax = hasMax || qi == 32767 || qi == -32767
		}
		require.True(t, hasMax, "block %d: the largest value maps to ±32767", b)
	}
	require.Positive(t, ties, "the test data must contain rounding ties")

	// Non-finite blocks get a non-finite scale.
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		blk := make([]float32, q8Block)
		blk[5], blk[9] = 1, bad
		Q16QuantizeAct(q[:q8Block], dx[:1], blk)
		require.False(t, math.Abs(float64(dx[0])) <= math.MaxFloat32, "scale of a block with %v is %v", bad, dx[0])
	}
}

// q16PackX packs the m×k activations x (leading dimension ldx) into
// ⌈m/32⌉ B panels, lane i being row i of x, the way a Linear does: through
// the transposed matrix xᵀ, 16 lanes per Q16PackB call (the assembly path)
// when wide is set, else one call per panel with all its lanes.
func q16PackX(x []float32, ldx, m, k int, wide bool) []byte {
	np := (m + Q16NR - 1) / Q16NR
	mpad := np * Q16NR
	xt := make([]float32, max(k*mpad, 1))
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			xt[p*mpad+i] = x[i*ldx+p]
		}
	}
	pb := Q16BPanelBytes(k)
	dst := make([]byte, np*pb)
	for i := range dst {
		dst[i] = 0xa5
	}
	if k == 0 {
		return dst
	}
	for p := 0; p < np; p++ {
		panel := dst[p*pb : (p+1)*pb]
		if !wide {
			Q16PackB(panel, k, 0, Q16NR, xt[p*Q16NR:], mpad)
			continue
		}
		for h := 0; h < 2; h++ {
			if l0 := p*Q16NR + 16*h; l0 < m {
				Q16PackB(panel, k, 16*h, 16, xt[l0:], mpad)
			} else {
				Q16PackB(panel, k, 16*h, 16, nil, 0)
			}
		}
	}
	return dst
}

// q16PackW packs the n×k Q8_0 matrix w into A panels, from dirty memory.
func q16PackW(w []byte, n, k int) []byte {
	dst := make([]byte, (n+Q16MR-1)/Q16MR*Q16APanelBytes(k))
	for i := range dst {
		dst[i] = 0x5a
	}
	Q16PackA(dst, w, k/q8Block*q8BlockBytes, n, k)
	return dst
}

// TestQ16Pack compares the assembly packing routines with the Go ones, byte
// for byte, including the padding rows and lanes (the buffers start dirty).
func TestQ16Pack(t *testing.T) {
	if q16ArchName == "" || !q16ArchOK() {
		t.Skip("no assembly q16 kernels on this build or CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{32, 64, 96, 288, 800} {
		for _, rows := range []int{1, 5, 6, 7, 16, 17, 33} {
			ldx := k + r.IntN(3)
			x := q16Acts(r, (rows-1)*ldx+k+r.IntN(2)*q8Block)
			w := q8dotWeight(r, rows, k)
			pack := func(on bool) (px, pw []byte) {
				defer SetFast(on)()
				return q16PackX(x, ldx, rows, k, true), q16PackW(w, rows, k)
			}
			wantX, wantW := pack(false)
			gotX, gotW := pack(true)
			require.Equal(t, wantX, gotX, "k=%d rows=%d: B panels", k, rows)
			require.Equal(t, wantW, gotW, "k=%d rows=%d: A panels", k, rows)
			// One call per panel (Go, every lane) gives the same panels
			// except lanes past the rows, which the wide packing zeroes.
			if rows%Q16NR == 0 {
				require.Equal(t, wantX, q16PackX(x, ldx, rows, k, false), "k=%d rows=%d: B panels in one call", k, rows)
			}
		}
	}
}

// checkQ16Gemm packs an m×n×k Linear case (activations x m×k, Q8_0 weight
// w n×k), runs Q16Gemm in both output layouts, whole and with the depth
// split at a block boundary (accumulate), with leading-dimension padding and
// a guard band around C, and compares bits with Q16GemmRef.
func checkQ16Gemm(t testing.TB, r *rand.Rand, m, n, k int, x []float32, ldx int, w []byte) {
	t.Helper()
	ldc := n + r.IntN(3)
	want := make([]float32, max(m*ldc, 1))
	Q16GemmRef(m, n, k, x, ldx, w, want, ldc)
	px := q16PackX(x, ldx, m, k, r.IntN(4) != 0)
	pw := q16PackW(w, n, k)
	split := q8Block * r.IntN(k/q8Block+1)

	for _, trans := range []bool{true, false} {
		for _, chunked := range []bool{false, true} {
			// trans: C[i][j] as the reference (weight rows j are the A
			// side); otherwise Cᵀ, with a leading dimension of its own.
			rows, cols, ld := n, m, m+r.IntN(3)
			if trans {
				rows, cols, ld = m, n, ldc
			}
			const g = 8 // guard floats on each side of C
			size := max(rows*ld, 1)
			buf := make([]float32, g+size+g)
			for i := range buf {
				buf[i] = math.Float32frombits(guard)
			}
			c := buf[g : g+size]
			if !chunked {
				Q16Gemm(n, m, k, pw, px, c, ld, trans, false, nil)
			} else {
				// The first split/32 blocks, then the rest from C.
				sub := func(panels []byte, count, panelBytes, from, depth int, blockBytes int) []byte {
					out := make([]byte, 0, count*depth/q8Block*blockBytes)
					for p := 0; p < count; p++ {
						pan := panels[p*panelBytes:]
						out = append(out, pan[from/q8Block*blockBytes:(from+depth)/q8Block*blockBytes]...)
					}
					return out
				}
				na, nbp := (n+Q16MR-1)/Q16MR, (m+Q16NR-1)/Q16NR
				for _, part := range [][2]int{{0, split}, {split, k - split}} {
					a := sub(pw, na, Q16APanelBytes(k), part[0], part[1], q16ABlockBytes)
					b := sub(px, nbp, Q16BPanelBytes(k), part[0], part[1], q16BBlockBytes)
					Q16Gemm(n, m, part[1], a, b, c, ld, trans, part[0] > 0, nil)
				}
			}
			for i, v := range buf {
				idx := i - g
				inside := idx >= 0 && idx < rows*ld && idx%ld < cols
				if !inside {
					if math.Float32bits(v) != guard {
						t.Fatalf("m=%d n=%d k=%d trans=%v: slot %d outside C overwritten", m, n, k, trans, idx)
					}
					continue
				}
				wi, wj := idx/ld, idx%ld // x row, weight row
				if !trans {
					wi, wj = wj, wi
				}
				ref := want[wi*ldc+wj]
				if math.Float32bits(v) != math.Float32bits(ref) {
					t.Fatalf("m=%d n=%d k=%d trans=%v chunked=%v (split %d): C[%d][%d] = %v (%#08x), reference %v (%#08x)",
						m, n, k, trans, chunked, split, wi, wj, v, math.Float32bits(v), ref, math.Float32bits(ref))
				}
			}
		}
	}
}

// TestQ16Gemm is the parity of every implementation with the reference at
// awkward sizes: partial tiles on both edges, one block, odd block counts.
func TestQ16Gemm(t *testing.T) {
	q16Impls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, k := range []int{0, 32, 64, 160, 1024} {
			for _, m := range []int{1, 2, 15, 16, 17, 32, 33, 70} {
				for _, n := range []int{1, 5, 6, 7, 13} {
					if k == 1024 && m*n > 200 {
						continue // keep the generic run short
					}
					ldx := k + r.IntN(2)*q8Block
					x := q16Acts(r, max((m-1)*ldx+k, 0))
					checkQ16Gemm(t, r, m, n, k, x, ldx, q8dotWeight(r, n, k))
				}
			}
		}
	})
}

// TestQ16GemmMatchesIntegers checks the reference itself on integers, where
// everything is exact: with x integers in [−32767, 32767] and amax 32767 in
// every block (so dx = 1, q = x) and weight scales 1, C is the integer
// product. Each block's first value is ±32767 (it sets the scale), the
// others |x| ≤ 300, so that every block sum (≤ 31·300·128 + 32767·128 <
// 5.4·10⁶) and every partial sum over the 3 blocks (< 1.63·10⁷ < 2²⁴) is
// exact in float32.
func TestQ16GemmMatchesIntegers(t *testing.T) {
	require.Less(t, q16MaxIsum, 1<<31, "block sums must not wrap in int32")
	r := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 17, 7, 96
	x := make([]float32, m*k)
	xi := make([]int, m*k)
	for i := range x {
		xi[i] = r.IntN(601) - 300
		if i%q8Block == 0 {
			xi[i] = 32767 * (1 - 2*r.IntN(2))
		}
		x[i] = float32(xi[i])
	}
	w, wi := integerQ8Weight(r, n, k)
	got := make([]float32, m*n)
	Q16GemmRef(m, n, k, x, k, w, got, n)
	requireIntegerProduct(t, m, n, k, xi, wi, got)
	q16Impls(t, func(t *testing.T) { checkQ16Gemm(t, r, m, n, k, x, k, w) })
}

// TestQ16GemmNonFinite: a NaN or ±Inf activation makes every output of its
// row non-finite, in every implementation; the other rows are unaffected.
func TestQ16GemmNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const m, n, k = 20, 7, 128
	w := q8dotWeight(r, n, k)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		x := q16Acts(r, m*k)
		clean := append([]float32(nil), x...)
		x[17*k+70] = bad
		want := make([]float32, m*n)
		Q16GemmRef(m, n, k, clean, k, w, want, n)
		q16Impls(t, func(t *testing.T) {
			c := make([]float32, m*n)
			Q16Gemm(n, m, k, q16PackW(w, n, k), q16PackX(x, k, m, k, true), c, n, true, false, nil)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					v := c[i*n+j]
					if i == 17 {
						require.False(t, math.Abs(float64(v)) <= math.MaxFloat32, "%v: C[17][%d] = %v", bad, j, v)
					} else {
						require.Equal(t, math.Float32bits(want[i*n+j]), math.Float32bits(v), "%v: C[%d][%d]", bad, i, j)
					}
				}
			}
		})
	}
}

func TestQ16GemmPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"k not a multiple of 32": func() { Q16PackA(nil, make([]byte, 40), 34, 1, 40) },
		"short A panel buffer":   func() { Q16PackA(make([]byte, 10), make([]byte, 34), 34, 1, 32) },
		"short weight":           func() { Q16PackA(make([]byte, Q16APanelBytes(32)), make([]byte, 33), 34, 1, 32) },
		"lanes past the panel":   func() { Q16PackB(make([]byte, Q16BPanelBytes(32)), 32, 16, 17, make([]float32, 32*17), 17) },
		"short source":           func() { Q16PackB(make([]byte, Q16BPanelBytes(32)), 32, 0, 16, make([]float32, 31*16), 16) },
		"short C": func() {
			Q16Gemm(6, 32, 32, make([]byte, Q16APanelBytes(32)), make([]byte, Q16BPanelBytes(32)), make([]float32, 6*32-1), 32, false, false, nil)
		},
		"short panels": func() {
			Q16Gemm(7, 32, 32, make([]byte, Q16APanelBytes(32)), make([]byte, Q16BPanelBytes(32)), make([]float32, 7*32), 32, false, false, nil)
		},
	} {
		require.Panics(t, f, name)
	}
}

func TestQ16GemmNoAlloc(t *testing.T) {
	const m, n, k = 40, 7, 64
	r := rand.New(rand.NewPCG(11, 12))
	x, w := q16Acts(r, m*k), q8dotWeight(r, n, k)
	xt := make([]float32, k*64)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			xt[p*64+i] = x[i*k+p]
		}
	}
	pa, pb := make([]byte, 2*Q16APanelBytes(k)), make([]byte, 2*Q16BPanelBytes(k))
	c := make([]float32, m*n)
	var tile Q16Tile
	allocs := testing.AllocsPerRun(10, func() {
		Q16PackA(pa, w, k/q8Block*q8BlockBytes, n, k)
		for l := 0; l < 64; l += 16 {
			Q16PackB(pb[l/32*Q16BPanelBytes(k):], k, l%32, 16, xt[l:], 64)
		}
		Q16Gemm(n, m, k, pa, pb, c, n, true, false, &tile)
	})
	require.Zero(t, allocs)
}

func unsafePointer(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestQ16Bytes(t *testing.T) {
	b := Q16Bytes(nil, 100)
	require.Len(t, b, 100)
	require.Zero(t, unsafePointer(b)%64)
	require.Equal(t, unsafePointer(b), unsafePointer(Q16Bytes(b, 80)), "reuses an aligned buffer")
}

// TestQ16Accuracy measures the price of quantizing the activations to
// int16: the relative L2 error of Q16GemmRef against the float64 product of
// the same x with the dequantized weight, over N(0, 1) activations and a
// Q8_0-encoded N(0, 1) weight. With dx = amax/32767 and amax ≈ 2.0–2.5 for
// 32 normal values, the rounding error of each activation is uniform of
// standard deviation dx/√12 ≈ 2.2/32767/3.46 ≈ 1.9·10⁻⁵, so the expected
// relative error is about 1.9·10⁻⁵ (float32 rounding of the chain adds
// ~10⁻⁷). The bounds [1·10⁻⁵, 3·10⁻⁵] leave room for the spread of amax
// while catching a broken scale (order 1) and an unquantized path
// (~10⁻⁷). It logs the weight quantization's error for comparison
// (~5·10⁻³, 250 times more).
func TestQ16Accuracy(t *testing.T) {
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
	Q16GemmRef(m, n, k, x, k, w, got, n)
	var num, den, wnum, wden float64
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
		}
	}
	actErr, wErr := math.Sqrt(num/den), math.Sqrt(wnum/wden)
	t.Logf("relative L2 error: int16 activation quantization %.3g, Q8_0 weight quantization %.3g", actErr, wErr)
	require.Less(t, actErr, 3e-5)
	require.Greater(t, actErr, 1e-5, "suspiciously small: is x quantized at all?")
}

// FuzzQ16Gemm compares every implementation with the reference on fuzzed
// sizes and data.
func FuzzQ16Gemm(f *testing.F) {
	f.Add(uint64(1), uint8(5), uint8(3), uint8(2))
	f.Add(uint64(2), uint8(40), uint8(6), uint8(1))
	f.Add(uint64(3), uint8(1), uint8(9), uint8(7))
	f.Fuzz(func(t *testing.T, seed uint64, m8, n8, nb8 uint8) {
		m, n, k := 1+int(m8%70), 1+int(n8%13), q8Block*int(nb8%12)
		r := rand.New(rand.NewPCG(seed, 99))
		x := q16Acts(r, m*k)
		w := q8dotWeight(r, n, k)
		for _, on := range []bool{false, true} {
			func() {
				defer SetFast(on)()
				checkQ16Gemm(t, r, m, n, k, x, k, w)
			}()
		}
	})
}

func BenchmarkQ16Kernel(b *testing.B) {
	const nb = 64 // k = 2048
	r := rand.New(rand.NewPCG(1, 1))
	x, w := q16Acts(r, Q16NR*nb*q8Block), q8dotWeight(r, Q16MR, nb*q8Block)
	pa := q16PackW(w, Q16MR, nb*q8Block)
	pb := q16PackX(x, nb*q8Block, Q16NR, nb*q8Block, false)
	c := make([]float32, Q16MR*Q16NR)
	type kern struct {
		name string
		f    func(nb int, ap, bp []byte, c []float32, ldc int, flags int)
	}
	kerns := []kern{{"go", q16Generic}}
	if q16ArchName != "" && q16ArchOK() {
		kerns = append(kerns, kern{q16ArchName, q16Arch})
	}
	for _, kr := range kerns {
		for _, flags := range []int{0, q16Trans} {
			b.Run(fmt.Sprintf("impl=%s/trans=%v", kr.name, flags != 0), func(b *testing.B) {
				ldc := Q16NR
				if flags&q16Trans != 0 {
					ldc = Q16MR
				}
				for b.Loop() {
					kr.f(nb, pa, pb, c, ldc, flags)
				}
				b.ReportMetric(2*Q16MR*Q16NR*nb*q8Block*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkQ16Pack measures the packing routines per 32-value block.
func BenchmarkQ16Pack(b *testing.B) {
	const rows, k = 64, 2048
	r := rand.New(rand.NewPCG(1, 1))
	xt, w := q16Acts(r, rows*k), q8dotWeight(r, rows, k)
	pa, pb := make([]byte, (rows+5)/6*Q16APanelBytes(k)), make([]byte, Q16BPanelBytes(k))
	for _, on := range []bool{false, true} {
		name := "go"
		if on {
			if q16ArchName == "" || !q16ArchOK() {
				continue
			}
			name = q16ArchName
		}
		b.Run("B/impl="+name, func(b *testing.B) {
			defer SetFast(on)()
			for b.Loop() {
				for l := 0; l < rows; l += 16 {
					Q16PackB(pb, k, l%32, 16, xt[l:], rows)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*k/q8Block), "ns/block")
		})
		b.Run("A/impl="+name, func(b *testing.B) {
			defer SetFast(on)()
			for b.Loop() {
				Q16PackA(pa, w, k/q8Block*q8BlockBytes, rows, k)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*k/q8Block), "ns/block")
		})
	}
}
