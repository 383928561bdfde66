package asm

import "fmt"

// Family q8dot (an experiment for issue #6, not wired into the ops): the
// product C = X·Wᵀ of float32 activations X [m, k] and a Q8_0 weight W
// [n, k] computed with integer dot products. X is quantized on the fly, row
// by row and block by block (32 values), to int8 with a float32 scale of its
// own; each pair of blocks then gives an exact integer dot product, which is
// scaled and accumulated in float32.
//
// Activation quantization (Q8QuantizeAct is the reference): for a block x of
// 32 values with amax = max|x| (taken over the magnitudes' bit patterns, so
// a NaN dominates),
//
//	if amax < 2⁻¹⁰⁰ (the block is flushed to zero):  dx = 0, q[t] = 0
//	else:  dx = float32(amax / 127), id = float32(1 / dx),
//	       q[t] = roundToEven(float32(x[t] · id))        ∈ [−127, 127]
//
// so |x[t] − dx·q[t]| ≤ dx/2 (plus one ulp-level error of id). The flush
// keeps 1/dx finite (dx ≥ 2⁻¹⁰⁷); a flushed block contributes exactly 0, an
// absolute error below 2⁻¹⁰⁰ per value. A block holding a NaN or ±Inf gets
// a non-finite dx, and then every output of its row is non-finite (NaN or
// ±Inf); the q values of such a block are unspecified.
//
// Product (Q8GemmRef is the reference): with dw the float32 value of W's
// binary16 block scale and qw its int8 values,
//
//	for i < m, j < n:
//		s := float32(0)
//		for b := 0; b < k/32; b++ {               // blocks in ascending order
//			isum := Σ_t qx[i][32b+t] · qw[j][32b+t]  // exact int32, |isum| ≤ 32·127·128
//			d := float32(dx[i][b] · dw[j][b])        // rounded to float32
//			s = fma(d, float32(isum), s)             // float32(isum) is exact
//		}
//		c[i*ldc+j] = s
//
// Every implementation (the generic Go kernel, the AVX2 one) gives the same
// bits, for any blocking and thread split. The AVX2 kernel forms the 32
// products as |qw|·sign(qx, qw) (VPABSB, VPSIGNB, VPMADDUBSW, VPMADDWD); the
// sums cannot saturate for qx ∈ [−127, 127], and every int8 weight value,
// −128 included, gives the exact product.
//
// The fast path works on packed panels of Q8DotMR rows of X and Q8DotNR rows
// of W (Q8PackX, Q8PackW, Q8Gemm); panels are padded with zero rows.

// Register tile of the q8dot kernel: Q8DotMR rows of X × Q8DotNR rows of W.
const (
	Q8DotMR = 4 // rows of X per packed panel
	Q8DotNR = 4 // rows of W per packed panel
)

// Packed block sizes. An X panel block is the four rows' 32 int8 values
// (row i at 32i) then their four float32 scales dx (at 128); a W panel
// block is the four rows' 32 int8 values (row j at 32j) then the scales
// dw0×4, dw1×4, dw2×4, dw3×4 as float32 (at 128, each repeated so that the
// kernel multiplies them lane by lane with the X scales).
const (
	q8xBlockBytes = Q8DotMR*q8Block + 4*Q8DotMR   // 144
	q8wBlockBytes = Q8DotNR*q8Block + 4*4*Q8DotNR // 192
	q8FlushBelow  = float32(0x1p-100)             // activation blocks with amax below this are zero
	q8MaxIsum     = q8Block * 127 * 128           // bound on |isum|, < 2^24 so float32(isum) is exact
)

// Q8XPanelBytes is the size of one packed X panel of depth k (k a multiple
// of 32).
func Q8XPanelBytes(k int) int { return k / q8Block * q8xBlockBytes }

// Q8WPanelBytes is the size of one packed W panel of depth k.
func Q8WPanelBytes(k int) int { return k / q8Block * q8wBlockBytes }

// Q8QuantizeAct quantizes the activations x (len a multiple of 32) block by
// block as described above: q[t] and dx[t/32]. It is the plain-Go reference
// (the packing routine Q8PackX does the same in assembly).
func Q8QuantizeAct(q []int8, dx []float32, x []float32) {
	if len(x)%q8Block != 0 || len(q) != len(x) || len(dx) != len(x)/q8Block {
		panic(fmt.Sprintf("asm.Q8QuantizeAct: %d values into %d int8 and %d scales", len(x), len(q), len(dx)))
	}
	for b := range dx {
		dx[b] = quantBlockGo(q[32*b:32*b+32], x[32*b:32*b+32])
	}
}

// Q8PackX quantizes the m×k matrix x (leading dimension ldx; k a multiple of
// 32) into ⌈m/4⌉ consecutive X panels of Q8XPanelBytes(k) bytes each, rows
// past m zero. dst must hold exactly that many bytes.
func Q8PackX(dst []byte, x []float32, ldx, m, k int) {
	if m < 0 || k < 0 || k%q8Block != 0 || (m > 0 && k > 0 && (ldx < k || len(x) < (m-1)*ldx+k)) ||
		len(dst) != (m+Q8DotMR-1)/Q8DotMR*Q8XPanelBytes(k) {
		panic(fmt.Sprintf("asm.Q8PackX: %d×%d matrix (ldx=%d, len=%d) into %d bytes", m, k, ldx, len(x), len(dst)))
	}
	nb := k / q8Block
	if nb == 0 {
		return
	}
	arch := fast && q8dotArchOK()
	pb := Q8XPanelBytes(k)
	for p := 0; p*Q8DotMR < m; p++ {
		panel := dst[p*pb : (p+1)*pb]
		for i := 0; i < Q8DotMR; i++ {
			r := p*Q8DotMR + i
			if r >= m {
				clearRowX(panel, nb, i)
				continue
			}
			if arch {
				quantRowXArch(panel, x[r*ldx:r*ldx+k], nb, i)
			} else {
				quantRowXGo(panel, x[r*ldx:r*ldx+k], nb, i)
			}
		}
	}
}

// Q8PackW packs the n rows of the Q8_0 matrix w (n×k, row after row, each
// row k/32 blocks of 34 bytes) into ⌈n/4⌉ consecutive W panels of
// Q8WPanelBytes(k) bytes each, rows past n zero. dst must hold exactly that
// many bytes.
func Q8PackW(dst []byte, w []byte, n, k int) {
	if n < 0 || k < 0 || k%q8Block != 0 || len(w) < n*(k/q8Block)*q8BlockBytes ||
		len(dst) != (n+Q8DotNR-1)/Q8DotNR*Q8WPanelBytes(k) {
		panic(fmt.Sprintf("asm.Q8PackW: %d×%d Q8_0 matrix (%d bytes) into %d bytes", n, k, len(w), len(dst)))
	}
	nb := k / q8Block
	if nb == 0 {
		return
	}
	arch := fast && q8dotArchOK()
	pb := Q8WPanelBytes(k)
	rb := nb * q8BlockBytes
	for p := 0; p*Q8DotNR < n; p++ {
		panel := dst[p*pb : (p+1)*pb]
		for j := 0; j < Q8DotNR; j++ {
			r := p*Q8DotNR + j
			if r >= n {
				clearRowW(panel, nb, j)
				continue
			}
			if arch {
				packRowWArch(panel, w[r*rb:(r+1)*rb], nb, j)
			} else {
				packRowWGo(panel, w[r*rb:(r+1)*rb], nb, j)
			}
		}
	}
}

// Q8Gemm computes the m×n matrix C = X·Wᵀ (leading dimension ldc) from
// ⌈m/4⌉ packed X panels xp and ⌈n/4⌉ packed W panels wp of depth k, W panel
// by W panel (outer loop) and X panel by X panel (inner loop): callers keep
// m small enough that the X panels stay in the L2 cache. Every element is
// the chain of the family's contract; only the m×n window of c is written.
// tile is scratch for the edges (may be nil). Q8Gemm does not start
// goroutines.
func Q8Gemm(m, n, k int, xp, wp []byte, c []float32, ldc int, tile *Q8Tile) {
	mp, np := (m+Q8DotMR-1)/Q8DotMR, (n+Q8DotNR-1)/Q8DotNR
	xb, wb := Q8XPanelBytes(k), Q8WPanelBytes(k)
	if m < 0 || n < 0 || k < 0 || k%q8Block != 0 || len(xp) < mp*xb || len(wp) < np*wb ||
		(m > 0 && n > 0 && (ldc < n || len(c) < (m-1)*ldc+n)) {
		panic(fmt.Sprintf("asm.Q8Gemm: m=%d n=%d k=%d with %d X bytes, %d W bytes, len(c)=%d ldc=%d",
			m, n, k, len(xp), len(wp), len(c), ldc))
	}
	if m == 0 || n == 0 {
		return
	}
	if tile == nil {
		tile = new(Q8Tile)
	}
	nb := k / q8Block
	kern := q8dotGeneric
	if fast && q8dotArchOK() {
		kern = q8dotArch
	}
	for jp := 0; jp < np; jp++ {
		w := wp[jp*wb : (jp+1)*wb]
		j0 := jp * Q8DotNR
		nr := min(Q8DotNR, n-j0)
		for ip := 0; ip < mp; ip++ {
			x := xp[ip*xb : (ip+1)*xb]
			i0 := ip * Q8DotMR
			mr := min(Q8DotMR, m-i0)
			if mr == Q8DotMR && nr == Q8DotNR {
				kern(nb, x, w, c[i0*ldc+j0:], ldc)
				continue
			}
			t := tile[:]
			kern(nb, x, w, t, Q8DotNR)
			for i := 0; i < mr; i++ {
				copy(c[(i0+i)*ldc+j0:(i0+i)*ldc+j0+nr], t[i*Q8DotNR:i*Q8DotNR+nr])
			}
		}
	}
}

// Q8Tile is Q8Gemm's scratch for partial tiles at the edges of C.
type Q8Tile [Q8DotMR * Q8DotNR]float32

// Q8GemmRef is the plain-Go reference of the family: C = X·Wᵀ for x m×k
// (leading dimension ldx) and the Q8_0 matrix w (n rows of k/32 blocks),
// written straight from the contract above (Q8QuantizeAct, exact integer
// block sums, d = dx·dw, one fused multiply-add per block).
func Q8GemmRef(m, n, k int, x []float32, ldx int, w []byte, c []float32, ldc int) {
	actWeightGemmRef("Q8GemmRef", Q8QuantizeAct, m, n, k, x, ldx, w, c, ldc)
}
