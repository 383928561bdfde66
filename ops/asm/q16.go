package asm

import (
	"fmt"
	"unsafe"
)

// Family q16 (issue #6): products with Q8_0 weights computed as int16
// activations × int8 weights with exact int32 block sums, on AVX-512 VNNI
// (VPDPWSSD). Unlike q8dot, the activations are quantized to int16, so the
// path adds about 10⁻⁵ relative error to a product, nothing next to Q8_0's
// own 5·10⁻³.
//
// The weight W [rows, k] keeps its Q8_0 blocks exactly: 32 int8 values qw
// (any int8, −128 included) and a binary16 scale whose float32 value is dw.
//
// Activation quantization (Q16QuantizeAct is the reference): the
// activations are split into blocks of 32 consecutive values along the
// depth k (the blocks of the weight). For a block x with amax = max|x|
// (taken over the magnitudes' bit patterns, so a NaN dominates),
//
//	if amax < 2⁻¹⁰⁰ (the block is flushed to zero):  dx = 0, q[t] = 0
//	else:  dx = float32(amax / 32767), id = float32(1 / dx),
//	       q[t] = sat16(roundToEven(float32(x[t] · id)))
//
// where sat16 saturates to [−32768, 32767] (NaN and values out of the int32
// range give −32768, as VCVTPS2DQ then VPACKSSDW do). For a finite block,
// |x[t]·id| ≤ 32767·(1+2⁻²²) < 32767.5, so q[t] ∈ [−32767, 32767] and
// |x[t] − dx·q[t]| ≤ dx/2 plus ulp-level errors of id: a relative error of
// at most 1.6·10⁻⁵ of the block's amax. The flush keeps 1/dx finite
// (dx ≥ 2⁻¹¹⁵, a normal float32); a flushed block contributes exactly 0, an
// absolute error below 2⁻¹⁰⁰ per value. A block holding a NaN or ±Inf gets
// a non-finite dx, and then every output that uses it is non-finite.
//
// Product (Q16GemmRef is the reference), for activation row i and weight
// row j:
//
//	s := float32(0)
//	for b := 0; b < k/32; b++ {                    // blocks in ascending order
//		isum := Σ_t q[i][32b+t] · qw[j][32b+t]       // exact in int32, see below
//		d := float32(dx[i][b] · dw[j][b])            // rounded to float32
//		s = fma(d, float32(isum), s)                 // float32(isum) rounded to nearest even
//	}
//	C[i][j] = s
//
// Block sums are exact: |q| ≤ 2¹⁵ and |qw| ≤ 2⁷, so each of VPDPWSSD's pair
// sums is at most 2·2²² = 2²³ and a block's 32 products sum to at most
// 32·2²² = 2²⁷ < 2³¹ in magnitude, whatever the order of the additions; no
// intermediate int32 can wrap. float32(isum) is exact up to 2²⁴ and
// otherwise rounded once to nearest even (VCVTDQ2PS, Go's conversion); fma
// rounds once. Every implementation (the generic Go kernel and the
// AVX-512 one) and every blocking and thread split gives the same bits: the
// chain of one output runs over the blocks in ascending order, and a chain
// interrupted at a depth boundary (Q16Gemm's accumulate) resumes from the
// float32 value it stored.
//
// Layout. The kernel computes a Q16MR×Q16NR tile: Q16MR weight rows (the
// "A" operand, whose int16 pairs are broadcast) by Q16NR activation lanes
// (the "B" operand, 16 int32 lanes per zmm register). A convolution's
// output [Cout, positions] is stored row by row; a Linear's [m, n] is the
// transposed tile (Q16Gemm's trans). The weights are packed by Q16PackA
// (int8 sign-extended to int16, scale to float32), the activations
// quantized into B panels by Q16PackB from any float32 matrix whose columns
// are the lanes (an im2col block, or xᵀ as PackB writes it).

// Tile of the q16 kernel: Q16MR weight rows × Q16NR activation lanes.
const (
	Q16MR = 6  // weight rows per packed A panel
	Q16NR = 32 // activation lanes per packed B panel
)

// Packed block sizes. An A panel block is the six rows' 32 int16 values
// (row r at 64r) then their six float32 scales dw (at 384). A B panel block
// is, for each of the 16 pairs p of depth values, the 32 lanes' int32 words
// (q[2p] in the low half, q[2p+1] in the high half; pair p at 128p, lane l
// at 4l within it), then the 32 lanes' float32 scales dx (at 2048).
const (
	q16ABlockBytes = Q16MR*2*q8Block + 4*Q16MR // 408
	q16BBlockBytes = 16*4*Q16NR + 4*Q16NR      // 2176
	q16AScales     = Q16MR * 2 * q8Block       // offset of the scales in an A block
	q16BScales     = 16 * 4 * Q16NR            // offset of the scales in a B block
	q16FlushBelow  = float32(0x1p-100)         // activation blocks with amax below this are zero
	q16MaxIsum     = q8Block * 32768 * 128     // bound on |isum|: 2²⁷ < 2³¹
)

// Q16APanelBytes is the size of one packed A (weight) panel of depth k (a
// multiple of 32).
func Q16APanelBytes(k int) int { return k / q8Block * q16ABlockBytes }

// Q16BPanelBytes is the size of one packed B (activation) panel of depth k.
func Q16BPanelBytes(k int) int { return k / q8Block * q16BBlockBytes }

// Q16Fast reports whether the q16 family runs its assembly kernels: the
// assembly kernel set is on (SetFast), the build is not purego, and the CPU
// has AVX-512 F, BW and VNNI (and F16C). Without them every q16 function
// still works, on the generic Go code (bit-identical, slow).
func Q16Fast() bool { return fast && q16ArchOK() }

// Q16QuantizeAct quantizes the activations x (len a multiple of 32) block
// by block as the family's contract says: q[t] and dx[t/32]. It is the
// plain-Go reference of Q16PackB's quantization.
func Q16QuantizeAct(q []int16, dx []float32, x []float32) {
	if len(x)%q8Block != 0 || len(q) != len(x) || len(dx) != len(x)/q8Block {
		panic(fmt.Sprintf("asm.Q16QuantizeAct: %d values into %d int16 and %d scales", len(x), len(q), len(dx)))
	}
	for b := range dx {
		dx[b] = q16QuantBlockGo(q[32*b:32*b+32], x[32*b:32*b+32])
	}
}

// Q16PackA packs rows [0, rows) of a Q8_0 matrix into ⌈rows/6⌉ consecutive
// A panels of depth k (a multiple of 32): row r's k/32 blocks of 34 bytes
// start at w[r*ldw]. Rows past rows are zero. dst must hold exactly
// ⌈rows/6⌉·Q16APanelBytes(k) bytes. A chunk of the depth is packed by
// passing w from the chunk's first block with ldw the full row's bytes.
func Q16PackA(dst []byte, w []byte, ldw, rows, k int) {
	nb := k / q8Block
	if rows < 0 || k < 0 || k%q8Block != 0 || len(dst) != (rows+Q16MR-1)/Q16MR*Q16APanelBytes(k) ||
		(rows > 0 && nb > 0 && (ldw < nb*q8BlockBytes || len(w) < (rows-1)*ldw+nb*q8BlockBytes)) {
		panic(fmt.Sprintf("asm.Q16PackA: %d rows of depth %d (ldw=%d, %d bytes) into %d bytes", rows, k, ldw, len(w), len(dst)))
	}
	if nb == 0 {
		return
	}
	arch := Q16Fast()
	pb := Q16APanelBytes(k)
	for p := 0; p*Q16MR < rows; p++ {
		panel := dst[p*pb : (p+1)*pb]
		for r := 0; r < Q16MR; r++ {
			row := p*Q16MR + r
			if row >= rows {
				for b := 0; b < nb; b++ {
					blk := panel[b*q16ABlockBytes : (b+1)*q16ABlockBytes]
					clear(blk[64*r : 64*r+64])
					clear(blk[q16AScales+4*r : q16AScales+4*r+4])
				}
				continue
			}
			src := w[row*ldw : row*ldw+nb*q8BlockBytes]
			if arch {
				q16PackARowArch(panel, src, nb, r)
			} else {
				q16PackARowGo(panel, src, nb, r)
			}
		}
	}
}

// Q16PackB quantizes lanes [j0, j0+nc) of one B panel of depth k (a
// multiple of 32; dst holds Q16BPanelBytes(k) bytes or more): lane j0+t
// takes the column src[p*ld+t], p < k, of a float32 matrix (k rows of at
// least nc values, leading dimension ld), quantized block by block as
// Q16QuantizeAct does. A nil src writes zero lanes (flushed blocks). The
// other lanes of dst are left as they are: a lane only reaches its own
// column of C.
func Q16PackB(dst []byte, k, j0, nc int, src []float32, ld int) {
	nb := k / q8Block
	if k < 0 || k%q8Block != 0 || j0 < 0 || nc < 0 || j0+nc > Q16NR || len(dst) < Q16BPanelBytes(k) ||
		(src != nil && nb > 0 && nc > 0 && (ld < nc || len(src) < (k-1)*ld+nc)) {
		panic(fmt.Sprintf("asm.Q16PackB: lanes [%d, %d) of depth %d from %d floats (ld=%d) into %d bytes",
			j0, j0+nc, k, len(src), ld, len(dst)))
	}
	if nb == 0 || nc == 0 {
		return
	}
	if src == nil {
		for b := 0; b < nb; b++ {
			blk := dst[b*q16BBlockBytes : (b+1)*q16BBlockBytes]
			for p := 0; p < 16; p++ {
				clear(blk[128*p+4*j0 : 128*p+4*(j0+nc)])
			}
			clear(blk[q16BScales+4*j0 : q16BScales+4*(j0+nc)])
		}
		return
	}
	if Q16Fast() && j0%16 == 0 && nc == 16 {
		q16PackBArch(dst, nb, j0, src, ld)
		return
	}
	q16PackBGo(dst, nb, j0, nc, src, ld)
}

// Q16Tile is Q16Gemm's scratch for partial tiles at the edges of C.
type Q16Tile [Q16MR * Q16NR]float32

// Q16Gemm computes the m×n product of ⌈m/6⌉ packed A panels a (weight rows)
// and ⌈n/32⌉ packed B panels b (activation lanes) of depth k, with the
// family's chain for every element, into
//
//	c[i*ldc+j]   (i < m a weight row, j < n a lane), or
//	c[j*ldc+i]   when trans (a Linear's C = x·Wᵀ, x's rows being the lanes).
//
// When accumulate, every chain starts from the element's value in c instead
// of 0, so that a product split at a block boundary of the depth gives the
// same bits as one call over the whole depth. The loops run B panel by B
// panel (outer) and A panel by A panel (inner). Only the m×n window is
// written; tile is scratch for the edges (may be nil). Q16Gemm does not
// start goroutines.
func Q16Gemm(m, n, k int, a, b []byte, c []float32, ldc int, trans, accumulate bool, tile *Q16Tile) {
	mp, np := (m+Q16MR-1)/Q16MR, (n+Q16NR-1)/Q16NR
	ab, bb := Q16APanelBytes(k), Q16BPanelBytes(k)
	rows, cols := m, n // extent of C
	if trans {
		rows, cols = n, m
	}
	if m < 0 || n < 0 || k < 0 || k%q8Block != 0 || len(a) < mp*ab || len(b) < np*bb || ldc > 1<<26 ||
		(m > 0 && n > 0 && (ldc < cols || len(c) < (rows-1)*ldc+cols)) {
		panic(fmt.Sprintf("asm.Q16Gemm: m=%d n=%d k=%d trans=%v with %d A bytes, %d B bytes, len(c)=%d ldc=%d",
			m, n, k, trans, len(a), len(b), len(c), ldc))
	}
	if m == 0 || n == 0 {
		return
	}
	nb := k / q8Block
	if nb == 0 {
		if !accumulate {
			for i := 0; i < rows; i++ {
				clear(c[i*ldc : i*ldc+cols])
			}
		}
		return
	}
	if tile == nil {
		tile = new(Q16Tile)
	}
	kern := q16Generic
	if Q16Fast() {
		kern = q16Arch
	}
	flags := 0
	if accumulate {
		flags |= q16Accumulate
	}
	for jp := 0; jp < np; jp++ {
		bp := b[jp*bb : (jp+1)*bb]
		j0 := jp * Q16NR
		nr := min(Q16NR, n-j0)
		for ip := 0; ip < mp; ip++ {
			ap := a[ip*ab : (ip+1)*ab]
			i0 := ip * Q16MR
			mr := min(Q16MR, m-i0)
			switch {
			case mr == Q16MR && nr == Q16NR && trans && !accumulate: // (the kernel's trans store does not load C)
				kern(nb, ap, bp, c[j0*ldc+i0:], ldc, flags|q16Trans)
				continue
			case mr == Q16MR && nr == Q16NR && !trans:
				kern(nb, ap, bp, c[i0*ldc+j0:], ldc, flags)
				continue
			}
			t := tile[:]
			if accumulate {
				for i := 0; i < mr; i++ {
					for j := 0; j < nr; j++ {
						t[i*Q16NR+j] = c[q16Index(i0+i, j0+j, ldc, trans)]
					}
				}
			}
			kern(nb, ap, bp, t, Q16NR, flags)
			for i := 0; i < mr; i++ {
				if !trans {
					copy(c[(i0+i)*ldc+j0:(i0+i)*ldc+j0+nr], t[i*Q16NR:i*Q16NR+nr])
					continue
				}
				for j := 0; j < nr; j++ {
					c[(j0+j)*ldc+i0+i] = t[i*Q16NR+j]
				}
			}
		}
	}
}

// q16Index is the position of element (weight row i, lane j) in C.
func q16Index(i, j, ldc int, trans bool) int {
	if trans {
		return j*ldc + i
	}
	return i*ldc + j
}

// Kernel flags.
const (
	q16Accumulate = 1 // start the chains from C
	q16Trans      = 2 // store the tile transposed: C[l*ldc+r]
)

// Q16GemmRef is the plain-Go reference of the family for a Linear: C = x·Wᵀ
// for x m×k (leading dimension ldx) and the Q8_0 matrix w (n rows of k/32
// blocks), C[i*ldc+j] written straight from the contract above
// (Q16QuantizeAct, exact integer block sums, d = dx·dw, one fused
// multiply-add per block).
func Q16GemmRef(m, n, k int, x []float32, ldx int, w []byte, c []float32, ldc int) {
	actWeightGemmRef("Q16GemmRef", Q16QuantizeAct, m, n, k, x, ldx, w, c, ldc)
}

// Q16Bytes returns n bytes starting at a 64-byte boundary (so that the
// kernels' 64-byte loads of packed panels never straddle cache lines):
// buf[:n] when buf is large enough and aligned, else a new allocation.
// The contents are unspecified.
func Q16Bytes(buf []byte, n int) []byte {
	if cap(buf) >= n && (cap(buf) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%64 == 0) {
		return buf[:n]
	}
	b := make([]byte, n+64)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & 63)
	return b[off : off+n : off+n]
}
