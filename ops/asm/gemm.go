package asm

import "fmt"

// Cache blocking of Gemm, tuned on an AMD EPYC (Zen 5: 48 KiB L1D, 1 MiB L2
// per core) with the 6×16 AVX2 kernel by sweeping kc ∈ {256, 384, 512},
// mc ∈ {72…576}, nc ∈ {1536, 3072, 6144} over BenchmarkGemm (differences
// past these values were within the noise of a shared machine). A packed B
// micro-panel (kcBlock·NR floats, 16 KiB) stays in L1 while the kernel walks
// the packed A block (mcBlock·kcBlock floats, 288 KiB) from L2; the packed B
// block (kcBlock·ncBlock floats, 3 MiB) lives in L3. kcBlock is kept at 256
// so that the B micro-panel also fits 32 KiB L1 caches. The blocking never
// changes the result (see Gemm), only the speed.
const (
	kcBlock = 256
	mcBlock = (288 / MR) * MR
	ncBlock = (3072 / NR) * NR
)

// kernel is the micro-kernel in use (fastKernel or kernelGeneric); SetFast
// switches it.
var kernel = kernelGeneric

// Kernel is the register-blocked micro-kernel under Gemm: it multiplies a
// packed MR×k panel of A by a packed k×NR panel of B into an MR×NR tile of C.
// For i < MR and j < NR it computes
//
//	s := float32(0)
//	if accumulate {
//		s = c[i*ldc+j]
//	}
//	for p := 0; p < k; p++ {
//		s = fma(a[p*MR+i], b[p*NR+j], s) // one fused multiply-add, p ascending
//	}
//	c[i*ldc+j] = s
//
// where fma rounds a·b+s to float32 once. The assembly and the generic Go
// versions are bit-identical. Kernel panics if a slice is too short
// (len(a) < k·MR, len(b) < k·NR, len(c) < (MR−1)·ldc+NR) or ldc < NR.
func Kernel(k int, a, b, c []float32, ldc int, accumulate bool) {
	if k < 0 || len(a) < k*MR || len(b) < k*NR || ldc < NR || len(c) < (MR-1)*ldc+NR {
		panic(fmt.Sprintf("asm.Kernel: k=%d len(a)=%d len(b)=%d len(c)=%d ldc=%d do not fit MR=%d NR=%d",
			k, len(a), len(b), len(c), ldc, MR, NR))
	}
	if k == 0 {
		kernelGeneric(0, a, b, c, ldc, accumulate)
		return
	}
	kernel(k, a, b, c, ldc, accumulate)
}

// FMA32 is x·y+z rounded once to float32 (round to nearest even): the step
// of every chain Kernel and Gemm compute, for code that models them (tests
// of callers of Gemm). It is exact but slow.
func FMA32(x, y, z float32) float32 { return fma32(x, y, z) }

// Scratch holds Gemm's packing buffers so that repeated calls do not
// allocate. The zero value is ready to use; a Scratch must not be used by two
// Gemm calls at once (give each worker its own).
type Scratch struct {
	a, b []float32        // packed A block (mcBlock×kcBlock), packed B block (kcBlock×ncBlock)
	tile [MR * NR]float32 // C tile for the edges of C
}

// grow returns buf resized to n elements, reallocating only when it is short.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// Gemm computes C (+)= op(A)·op(B) for an m×n matrix C, an m×k op(A) and a
// k×n op(B), all row-major with leading dimensions lda, ldb, ldc:
//
//	op(A)[i][p] = a[i*lda+p], or a[p*lda+i] when transA (A stored k×m)
//	op(B)[p][j] = b[p*ldb+j], or b[j*ldb+p] when transB (B stored n×k, like
//	              a PyTorch Linear weight W[out, in])
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			s := float32(0)
//			if accumulate {
//				s = c[i*ldc+j]
//			}
//			for p := 0; p < k; p++ {
//				s = fma(op(A)[i][p], op(B)[p][j], s) // rounded to float32 once
//			}
//			c[i*ldc+j] = s
//		}
//	}
//
// Every element is one chain of fused multiply-adds in ascending p, so the
// result is bit-identical whatever the cache blocking, the kernel set
// (assembly or generic) or the way a caller splits C into blocks (pass
// sub-slices of a, b, c with the same leading dimensions). Only the elements
// of C inside the m×n window are written; c must not overlap a or b. Gemm
// does not start goroutines.
//
// scratch may be nil (Gemm then allocates). Gemm panics if a dimension is
// negative, a leading dimension is smaller than its row, or a slice is too
// short for its matrix; these are programming errors.
func Gemm(m, n, k int, a []float32, lda int, transA bool, b []float32, ldb int, transB bool,
	c []float32, ldc int, accumulate bool, scratch *Scratch) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("asm.Gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("A", a, ar, ac, lda)
	checkMatrix("B", b, br, bc, ldb)
	checkMatrix("C", c, m, n, ldc)
	GemmX(m, n, k, OperandA{Data: a, LD: lda, Trans: transA}, OperandB{Data: b, LD: ldb, Trans: transB},
		c, ldc, accumulate, scratch)
}

// macroKernel multiplies the packed mc×kc block ap by the packed kc×nc block
// bp into the mc×nc block of C at c, tile by tile. Partial tiles at the
// right and bottom edges go through s.tile so that the kernel never writes
// outside the block.
func (s *Scratch) macroKernel(apk, bpk []float32, mc, nc, kc int, c []float32, ldc int, accumulate bool) {
	for jr := 0; jr < nc; jr += NR {
		bp := bpk[jr*kc : (jr+NR)*kc]
		nr := min(NR, nc-jr)
		for ir := 0; ir < mc; ir += MR {
			ap := apk[ir*kc : (ir+MR)*kc]
			mr := min(MR, mc-ir)
			ct := c[ir*ldc+jr:]
			if mr == MR && nr == NR {
				kernel(kc, ap, bp, ct, ldc, accumulate)
				continue
			}
			t := s.tile[:]
			if accumulate {
				for i := 0; i < mr; i++ {
					copy(t[i*NR:i*NR+nr], ct[i*ldc:i*ldc+nr])
				}
			}
			kernel(kc, ap, bp, t, NR, accumulate)
			for i := 0; i < mr; i++ {
				copy(ct[i*ldc:i*ldc+nr], t[i*NR:i*NR+nr])
			}
		}
	}
}

// PackA packs rows [i0, i0+mr) and columns [k0, k0+kc) of op(A) (see Gemm)
// into ⌈mr/MR⌉ consecutive MR×kc micro-panels, the layout Kernel reads:
//
//	dst[q*MR*kc + p*MR + i] = op(A)[i0+q*MR+i][k0+p]   (0 past row i0+mr)
//
// dst must hold ⌈mr/MR⌉·MR·kc floats; the zero padding of the last panel lets
// Kernel run on full tiles at the bottom edge.
func PackA(dst []float32, a []float32, lda, i0, mr, k0, kc int, transA bool) {
	for q := 0; q*MR < mr; q++ {
		d := dst[q*MR*kc : (q+1)*MR*kc]
		r0 := i0 + q*MR
		rows := min(MR, mr-q*MR)
		if transA {
			// op(A) row i is column i of the stored k×m matrix: runs of up
			// to MR contiguous floats per p.
			for p := 0; p < kc; p++ {
				src := a[(k0+p)*lda+r0 : (k0+p)*lda+r0+rows]
				dp := d[p*MR : p*MR+rows]
				for i, v := range src {
					dp[i] = v
				}
			}
		} else if rows == MR {
			// A full panel: MR source rows read side by side, so that
			// dst is written sequentially.
			packRowsA(d, a[r0*lda+k0:], lda, kc)
		} else {
			for i := 0; i < rows; i++ {
				for p, v := range a[(r0+i)*lda+k0 : (r0+i)*lda+k0+kc] {
					d[p*MR+i] = v
				}
			}
		}
		if rows < MR {
			for p := 0; p < kc; p++ {
				clear(d[p*MR+rows : p*MR+MR])
			}
		}
	}
}

// PackB packs rows [k0, k0+kc) and columns [j0, j0+nr) of op(B) (see Gemm)
// into ⌈nr/NR⌉ consecutive kc×NR micro-panels, the layout Kernel reads:
//
//	dst[q*NR*kc + p*NR + j] = op(B)[k0+p][j0+q*NR+j]   (0 past column j0+nr)
//
// dst must hold ⌈nr/NR⌉·NR·kc floats. Packing only copies, so every
// implementation writes the same bits: with transB and SetFast on, the
// assembly transposes 8×8 blocks (packBTrans, packb_*.s); otherwise, and
// for the edges, packBGo does.
func PackB(dst []float32, b []float32, ldb, k0, kc, j0, nr int, transB bool) {
	if transB && fast && packBArchOK() {
		packBTrans(dst, b, ldb, k0, kc, j0, nr, packBT8Arch)
		return
	}
	packBGo(dst, b, ldb, k0, kc, j0, nr, transB)
}

// packBGo is PackB in plain Go: the reference of the assembly path.
func packBGo(dst []float32, b []float32, ldb, k0, kc, j0, nr int, transB bool) {
	for q := 0; q*NR < nr; q++ {
		d := dst[q*NR*kc : (q+1)*NR*kc]
		c0 := j0 + q*NR
		cols := min(NR, nr-q*NR)
		if transB {
			packBTransCols(d, b, ldb, k0, kc, c0, 0, cols)
		} else {
			for p := 0; p < kc; p++ {
				copy(d[p*NR:p*NR+cols], b[(k0+p)*ldb+c0:(k0+p)*ldb+c0+cols])
			}
		}
		if cols < NR {
			for p := 0; p < kc; p++ {
				clear(d[p*NR+cols : p*NR+NR])
			}
		}
	}
}

// packBTransCols fills columns [j, cols) of the transposed panel d (kc×NR)
// from rows c0+j … c0+cols−1 of b, inputs [k0, k0+kc): op(B) column j is
// row j of the stored n×k matrix. Four rows per pass (NR is a multiple of
// 4), then single ones.
func packBTransCols(d, b []float32, ldb, k0, kc, c0, j, cols int) {
	for ; j+4 <= cols; j += 4 {
		s0 := b[(c0+j)*ldb+k0 : (c0+j)*ldb+k0+kc]
		s1 := b[(c0+j+1)*ldb+k0 : (c0+j+1)*ldb+k0+kc]
		s2 := b[(c0+j+2)*ldb+k0 : (c0+j+2)*ldb+k0+kc]
		s3 := b[(c0+j+3)*ldb+k0 : (c0+j+3)*ldb+k0+kc]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		for p, v := range s0 {
			dp := d[p*NR+j : p*NR+j+4]
			dp[0], dp[1], dp[2], dp[3] = v, s1[p], s2[p], s3[p]
		}
	}
	for ; j < cols; j++ {
		for p, v := range b[(c0+j)*ldb+k0 : (c0+j)*ldb+k0+kc] {
			d[p*NR+j] = v
		}
	}
}

// checkMatrix panics unless x can hold a rows×cols row-major matrix with
// leading dimension ld.
func checkMatrix(name string, x []float32, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols || len(x) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("asm.Gemm: %s is %d×%d with leading dimension %d, but len=%d", name, rows, cols, ld, len(x)))
	}
}

// roundUp rounds x up to a multiple of m.
func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packRowsA packs one full panel: MR rows of a (leading dimension lda), kc
// columns, into d[p*MR+i]. The rows are read two at a time so that d is
// written in order.
func packRowsA(d, a []float32, lda, kc int) {
	d = d[:kc*MR]
	for i := 0; i+1 < MR; i += 2 {
		s0 := a[i*lda : i*lda+kc]
		s1 := a[(i+1)*lda : (i+1)*lda+kc]
		for p, v := range s0 {
			d[p*MR+i] = v
			d[p*MR+i+1] = s1[p]
		}
	}
}
