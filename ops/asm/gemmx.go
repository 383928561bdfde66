package asm

import "fmt"

// GemmX generalises Gemm to operands that are packed ahead of time or
// produced on demand, for callers that reuse one operand across many calls
// (a layer's weights) or never hold the other as a matrix (a convolution's
// im2col matrix, packed straight from the image by a BPacker).
//
// Whatever the operands' form, every element of C is the same chain of fused
// multiply-adds as in Gemm, in ascending p, so GemmX and Gemm give the same
// bits for the same op(A), op(B) and C.

// PackedA is an m×k matrix op(A) packed once, in the layout Kernel reads: for
// each depth block p0 = 0, kcBlock, 2·kcBlock, … (kc = min(kcBlock, k−p0)
// deep) the ⌈m/MR⌉ MR×kc panels PackA writes, block after block:
//
//	data[p0·⌈m/MR⌉·MR + q·MR·kc + p·MR + i] = op(A)[q·MR+i][p0+p]   (0 past row m)
//
// The zero value is an empty matrix; Pack fills it.
type PackedA struct {
	m, k int
	data []float32
}

// Pack packs the m×k matrix op(A) (a, lda, transA as in Gemm) into p,
// reusing p's memory when it is large enough.
func (p *PackedA) Pack(m, k int, a []float32, lda int, transA bool) {
	if m < 0 || k < 0 {
		panic(fmt.Sprintf("asm.PackedA.Pack: negative dimension m=%d k=%d", m, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	checkMatrix("A", a, ar, ac, lda)
	mp := roundUp(m, MR)
	p.m, p.k = m, k
	p.data = grow(p.data, mp*k)
	for p0 := 0; p0 < k; p0 += kcBlock {
		kc := min(kcBlock, k-p0)
		if m > 0 {
			PackA(p.data[p0*mp:(p0+kc)*mp], a, lda, 0, m, p0, kc, transA)
		}
	}
}

// Rows and Cols are the dimensions m and k of the packed op(A).
func (p *PackedA) Rows() int { return p.m }

// Cols is the depth k of the packed op(A).
func (p *PackedA) Cols() int { return p.k }

// block returns the packed panels of rows [i0, i0+mc) (i0 a multiple of MR)
// and depth block [p0, p0+kc).
func (p *PackedA) block(i0, mc, p0, kc int) []float32 {
	off := p0*roundUp(p.m, MR) + i0*kc
	return p.data[off : off+roundUp(mc, MR)*kc]
}

// PackedB is a k×n matrix op(B) packed once, in the layout Kernel reads: for
// each depth block p0 = 0, kcBlock, … (kc = min(kcBlock, k−p0) deep) the
// ⌈n/NR⌉ kc×NR panels PackB writes, block after block:
//
//	data[p0·⌈n/NR⌉·NR + q·NR·kc + p·NR + j] = op(B)[p0+p][q·NR+j]   (0 past column n)
//
// A PyTorch Linear weight W[out, in] packed with transB is the right operand
// of x·Wᵀ. The zero value is an empty matrix; Pack fills it.
type PackedB struct {
	k, n int
	data []float32
}

// Pack packs the k×n matrix op(B) (b, ldb, transB as in Gemm) into p,
// reusing p's memory when it is large enough.
func (p *PackedB) Pack(k, n int, b []float32, ldb int, transB bool) {
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("asm.PackedB.Pack: negative dimension k=%d n=%d", k, n))
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("B", b, br, bc, ldb)
	np := roundUp(n, NR)
	p.k, p.n = k, n
	p.data = grow(p.data, np*k)
	for p0 := 0; p0 < k; p0 += kcBlock {
		kc := min(kcBlock, k-p0)
		if n > 0 {
			PackB(p.data[p0*np:(p0+kc)*np], b, ldb, p0, kc, 0, n, transB)
		}
	}
}

// Rows is the depth k of the packed op(B).
func (p *PackedB) Rows() int { return p.k }

// Cols is the number of columns n of the packed op(B).
func (p *PackedB) Cols() int { return p.n }

// block returns the packed panels of columns [j0, j0+nc) (j0 a multiple of
// NR) and depth block [p0, p0+kc).
func (p *PackedB) block(j0, nc, p0, kc int) []float32 {
	off := p0*roundUp(p.n, NR) + j0*kc
	return p.data[off : off+roundUp(nc, NR)*kc]
}

// BPacker produces op(B) for GemmX one block at a time.
type BPacker interface {
	// PackB writes rows [k0, k0+kc) and columns [j0, j0+nc) of op(B) into
	// dst as ⌈nc/NR⌉ kc×NR panels, the layout of PackB:
	//
	//	dst[q*NR*kc + p*NR + j] = op(B)[k0+p][j0+q*NR+j]   (j0+q*NR+j < j0+nc)
	//
	// The entries past column j0+nc of the last panel may hold anything:
	// they only reach tile columns that GemmX discards.
	PackB(dst []float32, k0, kc, j0, nc int)
}

// OperandA is the left operand of GemmX: rows [Row0, Row0+m) of Packed when
// Packed is non-nil (Row0 a multiple of MR, depth equal to GemmX's k),
// otherwise the matrix Data with leading dimension LD, transposed when Trans,
// exactly as Gemm reads a, lda, transA.
type OperandA struct {
	Data   []float32
	LD     int
	Trans  bool
	Packed *PackedA
	Row0   int
}

// OperandB is the right operand of GemmX: columns [Col0, Col0+n) of Packed
// when Packed is non-nil (Col0 a multiple of NR, depth equal to GemmX's k),
// else the blocks Packer produces when Packer is non-nil, otherwise the
// matrix Data with leading dimension LD, transposed when Trans, exactly as
// Gemm reads b, ldb, transB.
type OperandB struct {
	Data   []float32
	LD     int
	Trans  bool
	Packed *PackedB
	Col0   int
	Packer BPacker
}

// GemmX computes C (+)= op(A)·op(B) for an m×n window of C (leading
// dimension ldc) with the operands a and b, with Gemm's contract: every
// element is one chain of fused multiply-adds in ascending p, starting from
// C when accumulate and from 0 otherwise. scratch may be nil (GemmX then
// allocates); it panics on inconsistent dimensions or short slices, which are
// programming errors.
func GemmX(m, n, k int, a OperandA, b OperandB, c []float32, ldc int, accumulate bool, scratch *Scratch) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("asm.GemmX: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if a.Packed != nil {
		if a.Row0 < 0 || a.Row0%MR != 0 || a.Row0+m > a.Packed.m || (m > 0 && n > 0 && a.Packed.k != k) {
			panic(fmt.Sprintf("asm.GemmX: rows [%d, %d) depth %d of a packed %d×%d A (MR=%d)",
				a.Row0, a.Row0+m, k, a.Packed.m, a.Packed.k, MR))
		}
	} else if m > 0 && n > 0 {
		ar, ac := m, k
		if a.Trans {
			ar, ac = k, m
		}
		checkMatrix("A", a.Data, ar, ac, a.LD)
	}
	if b.Packed != nil {
		if b.Col0 < 0 || b.Col0%NR != 0 || b.Col0+n > b.Packed.n || (m > 0 && n > 0 && b.Packed.k != k) {
			panic(fmt.Sprintf("asm.GemmX: columns [%d, %d) depth %d of a packed %d×%d B (NR=%d)",
				b.Col0, b.Col0+n, k, b.Packed.k, b.Packed.n, NR))
		}
	} else if b.Packer == nil && m > 0 && n > 0 {
		br, bc := k, n
		if b.Trans {
			br, bc = n, k
		}
		checkMatrix("B", b.Data, br, bc, b.LD)
	}
	if m == 0 || n == 0 {
		return
	}
	checkMatrix("C", c, m, n, ldc)
	if k == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if scratch == nil {
		scratch = new(Scratch)
	}
	s := scratch
	kcMax := min(k, kcBlock)
	if a.Packed == nil {
		s.a = grow(s.a, min(roundUp(m, MR), mcBlock)*kcMax)
	}
	if b.Packed == nil {
		s.b = grow(s.b, min(roundUp(n, NR), ncBlock)*kcMax)
	}
	for jc := 0; jc < n; jc += ncBlock {
		nc := min(ncBlock, n-jc)
		for pc := 0; pc < k; pc += kcBlock {
			kc := min(kcBlock, k-pc)
			var bp []float32
			switch {
			case b.Packed != nil:
				bp = b.Packed.block(b.Col0+jc, nc, pc, kc)
			case b.Packer != nil:
				bp = s.b[:roundUp(nc, NR)*kc]
				b.Packer.PackB(bp, pc, kc, jc, nc)
			default:
				bp = s.b[:roundUp(nc, NR)*kc]
				PackB(bp, b.Data, b.LD, pc, kc, jc, nc, b.Trans)
			}
			for ic := 0; ic < m; ic += mcBlock {
				mc := min(mcBlock, m-ic)
				var ap []float32
				if a.Packed != nil {
					ap = a.Packed.block(a.Row0+ic, mc, pc, kc)
				} else {
					ap = s.a[:roundUp(mc, MR)*kc]
					PackA(ap, a.Data, a.LD, ic, mc, pc, kc, a.Trans)
				}
				s.macroKernel(ap, bp, mc, nc, kc, c[ic*ldc+jc:], ldc, accumulate || pc > 0)
			}
		}
	}
}
