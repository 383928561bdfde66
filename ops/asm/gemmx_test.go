package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// matPacker is a BPacker over a plain matrix that also scribbles NaN into the
// panel entries past the block's last column, which the BPacker contract says
// GemmX must ignore.
type matPacker struct {
	b      []float32
	ldb    int
	transB bool
	calls  int
}

func (p *matPacker) PackB(dst []float32, k0, kc, j0, nc int) {
	p.calls++
	PackB(dst, p.b, p.ldb, k0, kc, j0, nc, p.transB)
	if rem := nc % NR; rem != 0 {
		q := nc / NR
		for pp := 0; pp < kc; pp++ {
			for j := rem; j < NR; j++ {
				dst[q*NR*kc+pp*NR+j] = float32(math.NaN())
			}
		}
	}
}

// TestGemmX runs GemmX with every operand form (matrix, packed, packer) over
// windows of C at awkward offsets and requires Gemm's bits.
func TestGemmX(t *testing.T) {
	dims := [][3]int{{1, 1, 1}, {MR - 1, NR + 1, 3}, {MR + 1, NR - 1, kcBlock + 1}, {2*MR + 3, 3*NR + 5, 2*kcBlock + 7},
		{mcBlock + MR + 1, NR, 33}, {5, ncBlock + NR + 3, 9}, {4, 5, 0}}
	if testing.Short() {
		dims = dims[:4]
	}
	for _, im := range impls() {
		for di, d := range dims {
			for tr := 0; tr < 4; tr++ {
				transA, transB := tr&1 != 0, tr&2 != 0
				m, n, k := d[0], d[1], d[2]
				t.Run(fmt.Sprintf("impl=%s/m=%d/n=%d/k=%d/tA=%v/tB=%v", im.name, m, n, k, transA, transB), func(t *testing.T) {
					defer useKernel(im)()
					r := rand.New(rand.NewPCG(uint64(di), uint64(tr)))
					// The full operands are bigger than the window: rows
					// [i0, i0+m) of op(A) and columns [j0, j0+n) of op(B).
					i0, j0 := MR*(di%3), NR*(tr%2)
					fm, fn := i0+m+2, j0+n+3
					ar, ac, br, bc := fm, k, k, fn
					if transA {
						ar, ac = k, fm
					}
					if transB {
						br, bc = fn, k
					}
					a := newMatrix(r, ar, ac, 1, 0, tr == 3)
					b := newMatrix(r, br, bc, 2, 0, tr == 3)
					c0 := newMatrix(r, m, n, 3, 5, false)
					var aWin, bWin []float32
					if transA {
						aWin = a.data()[i0:]
					} else {
						aWin = a.data()[i0*a.ld:]
					}
					if transB {
						bWin = b.data()[j0*b.ld:]
					} else {
						bWin = b.data()[j0:]
					}
					var pa PackedA
					pa.Pack(fm, k, a.data(), a.ld, transA)
					require.Equal(t, fm, pa.Rows())
					require.Equal(t, k, pa.Cols())
					var pb PackedB
					pb.Pack(k, fn, b.data(), b.ld, transB)
					require.Equal(t, k, pb.Rows())
					require.Equal(t, fn, pb.Cols())
					var s Scratch
					for _, acc := range []bool{false, true} {
						want := c0.clone()
						Gemm(m, n, k, aWin, a.ld, transA, bWin, b.ld, transB, want.data(), want.ld, acc, &s)
						opA := []OperandA{{Data: aWin, LD: a.ld, Trans: transA}, {Packed: &pa, Row0: i0}}
						mp := &matPacker{b: bWin, ldb: b.ld, transB: transB}
						opB := []OperandB{{Data: bWin, LD: b.ld, Trans: transB}, {Packed: &pb, Col0: j0}, {Packer: mp}}
						for ai, oa := range opA {
							for bi, ob := range opB {
								got := c0.clone()
								GemmX(m, n, k, oa, ob, got.data(), got.ld, acc, &s)
								requireSameBits(t, want.buf, got.buf, fmt.Sprintf("acc=%v A form %d, B form %d", acc, ai, bi))
							}
						}
						if k > 0 && m > 0 && n > 0 {
							require.Positive(t, mp.calls, "the packer was not used")
						}
					}
				})
			}
		}
	}
}

func TestGemmXPanics(t *testing.T) {
	a := make([]float32, 64*64)
	var pa PackedA
	pa.Pack(2*MR, 8, a, 8, false)
	var pb PackedB
	pb.Pack(8, 2*NR, a, 2*NR, false)
	c := make([]float32, 64*64)
	require.Panics(t, func() { GemmX(1, 1, 8, OperandA{Packed: &pa, Row0: 1}, OperandB{Data: a, LD: 8}, c, 8, false, nil) }, "Row0 not a multiple of MR")
	require.Panics(t, func() { GemmX(MR+1, 1, 8, OperandA{Packed: &pa, Row0: MR}, OperandB{Data: a, LD: 8}, c, 8, false, nil) }, "rows past the packed A")
	require.Panics(t, func() { GemmX(1, 1, 7, OperandA{Packed: &pa}, OperandB{Data: a, LD: 8}, c, 8, false, nil) }, "depth differs from the packed A")
	require.Panics(t, func() { GemmX(1, 1, 8, OperandA{Data: a, LD: 8}, OperandB{Packed: &pb, Col0: 3}, c, 8, false, nil) }, "Col0 not a multiple of NR")
	require.Panics(t, func() {
		GemmX(1, NR+1, 8, OperandA{Data: a, LD: 8}, OperandB{Packed: &pb, Col0: NR}, c, 64, false, nil)
	}, "columns past the packed B")
	require.Panics(t, func() { GemmX(2, 2, 8, OperandA{Data: a, LD: 8}, OperandB{Data: a, LD: 8}, c[:3], 2, false, nil) }, "C too short")
	require.Panics(t, func() { var p PackedA; p.Pack(-1, 2, a, 2, false) })
	require.NotPanics(t, func() {
		GemmX(MR, NR, 8, OperandA{Packed: &pa, Row0: MR}, OperandB{Packed: &pb, Col0: NR}, c, NR, false, nil)
	})
}

func TestGemmXNoAlloc(t *testing.T) {
	const m, n, k = 37, 45, 300
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	var pa PackedA
	pa.Pack(m, k, a, k, false)
	var pb PackedB
	pb.Pack(k, n, b, n, false)
	mp := &matPacker{b: b, ldb: n}
	var s Scratch
	GemmX(m, n, k, OperandA{Data: a, LD: k}, OperandB{Packer: mp}, c, n, false, &s)
	allocs := testing.AllocsPerRun(10, func() {
		GemmX(m, n, k, OperandA{Packed: &pa}, OperandB{Packed: &pb}, c, n, false, &s)
		GemmX(m, n, k, OperandA{Data: a, LD: k}, OperandB{Packer: mp}, c, n, true, &s)
		pa.Pack(m, k, a, k, false)
	})
	require.Zero(t, allocs)
}
