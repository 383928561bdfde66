package asm

// Family packb: the transposed path of PackB (op(B) = Wᵀ for a Linear weight
// W[N, K]), which copies rows of W into the columns of kc×NR panels. Only
// copies, so every implementation gives the bits of packBGo, the reference.
//
// packBTrans tiles a panel into blocks of 8 rows of W × 8·n8 inputs that a
// block transposer (packBT8Arch, or packBT8Go) writes; packBTransCols does
// the rest (kc not a multiple of 8, panels with fewer than 8 columns left)
// and packBTrans clears the columns past nr, exactly as packBGo.
//
// Implementations of the block transposer: packb_amd64.s (AVX: 8×8 blocks
// built from 4-float loads paired with VINSERTF128, then VUNPCKLPS/VUNPCKHPS
// and VSHUFPS), packb_arm64.s (NEON: 4×4 blocks with TRN1/TRN2 on words,
// then on doublewords), used when SetFast is on (the default) and the CPU
// has the assembly kernels' features; packBT8Go in plain Go elsewhere (it
// exists for tests of the tiling under purego). Eight rows at a time, not
// NR: sixteen rows ldb = 2048 floats apart fall into one L1 set and evict
// each other (measured 16 against 24 GB/s on the benchmark below).

// packBT8Func writes d[p*NR+i] = b[off+i*ldb+p] for i < 8, p < 8·n8 (n8 ≥
// 1). The caller has checked that rows 0 and 7 of the block lie in b (rows
// are affine in i, so all of them do) and that d holds (8·n8−1)·NR+8 floats.
type packBT8Func func(d, b []float32, off, ldb, n8 int)

// packBTrans is PackB for transB with the block transposer t8.
func packBTrans(dst, b []float32, ldb, k0, kc, j0, nr int, t8 packBT8Func) {
	kc8 := kc &^ 7
	for q := 0; q*NR < nr; q++ {
		d := dst[q*NR*kc : (q+1)*NR*kc]
		c0 := j0 + q*NR
		cols := min(NR, nr-q*NR)
		j := 0
		if kc8 > 0 {
			for ; j+8 <= cols; j += 8 {
				off := (c0+j)*ldb + k0
				_ = b[off : off+kc8]
				_ = b[off+7*ldb : off+7*ldb+kc8]
				t8(d[j:], b, off, ldb, kc8/8)
				if kc8 < kc {
					packBTransCols(d[kc8*NR:], b, ldb, k0+kc8, kc-kc8, c0, j, j+8)
				}
			}
		}
		packBTransCols(d, b, ldb, k0, kc, c0, j, cols)
		if cols < NR {
			for p := 0; p < kc; p++ {
				clear(d[p*NR+cols : p*NR+NR])
			}
		}
	}
}

// packBT8Go is the block transposer in plain Go.
func packBT8Go(d, b []float32, off, ldb, n8 int) {
	for i := 0; i < 8; i++ {
		for p, v := range b[off+i*ldb : off+i*ldb+8*n8] {
			d[p*NR+i] = v
		}
	}
}
