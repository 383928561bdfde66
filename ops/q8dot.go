package ops

import (
	"fmt"
	"sync"

	"github.com/dalle2/dalle2/ops/asm"
)

// LinearQ8Dot is an experimental Linear for a FormatQ8 weight w [N, K]
// (issue #6, candidate "int8 dot products"; Linear itself decodes Q8_0
// weights while packing them for the fp32 GEMM): dst = x·wᵀ (+ b), with
// every row of x quantized on the fly, block of 32 by block of 32, to int8
// with a float32 scale of its own, and each pair of blocks multiplied as an
// exact integer dot product scaled by dx·dw (the contract of package asm's
// q8dot family, which Q8GemmRef writes out). It costs the accuracy of the
// activation rounding (about 0.5% relative L2 error on N(0, 1) activations,
// see asm's TestQ8DotAccuracy) and gives the same bits for any thread
// count. Shapes are those of Linear; it panics unless w is a FormatQ8
// compact tensor.
func LinearQ8Dot(dst, x, w, b *Tensor) {
	m, n, k, bias := linearDims(dst, x, w, b)
	if w.Q == nil || w.Q.Format != FormatQ8 {
		panic(fmt.Sprintf("ops.LinearQ8Dot: weight %v is not a Q8_0 compact tensor", w.Shape))
	}
	q8dotLinear(dst.Data, x.Data, w.Q.Raw, bias, m, n, k)
}

// q8dotXTarget is the size of the quantized rows of x that one tile walks
// for every packed W panel: they should stay in the L2 cache (1 MiB per core
// on the Zen 5 the GEMM was tuned on, 512 KiB and up elsewhere), next to the
// tile's output rows.
const q8dotXTarget = 384 << 10

// q8dotScratch is a worker's packed W panel and edge tile.
type q8dotScratch struct {
	w    []byte
	tile asm.Q8Tile
}

var (
	q8dotScratchPool sync.Pool // *q8dotScratch
	q8dotXPool       sync.Pool // *[]byte: the quantized rows of x
)

// q8dotLinear computes d = x·wᵀ (+ bias) for x m×k and the Q8_0 matrix w
// (n rows of k/32 blocks). It quantizes all of x once (in parallel, panel by
// panel), then splits C into row blocks that keep their quantized rows in L2
// times column ranges; each tile packs one W panel (4 rows of w) at a time
// and runs the kernel over the block's X panels. Every element is one call
// of the kernel over the whole depth, so the split does not change the bits.
func q8dotLinear(d, x []float32, w []byte, bias []float32, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	const mr, nr = asm.Q8DotMR, asm.Q8DotNR
	xpb, wpb := asm.Q8XPanelBytes(k), asm.Q8WPanelBytes(k)
	mp := (m + mr - 1) / mr
	bp, _ := q8dotXPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if cap(*bp) < mp*xpb {
		*bp = make([]byte, mp*xpb)
	}
	xq := (*bp)[:mp*xpb]
	defer q8dotXPool.Put(bp)

	parallelFor(mp, 8*mr*max(k, 1), func(lo, hi int) {
		asm.Q8PackX(xq[lo*xpb:hi*xpb], x[lo*mr*k:], k, min(hi*mr, m)-lo*mr, k)
	})

	// Row blocks of whole panels whose X panels fit q8dotXTarget; then as
	// many column ranges (of whole W panels) as it takes to give every
	// thread tilesPerThread tiles.
	mcPanels := max(1, min(mp, q8dotXTarget/max(xpb, 1)))
	rowBlocks := (mp + mcPanels - 1) / mcPanels
	mcPanels = (mp + rowBlocks - 1) / rowBlocks // even out the blocks
	np := (n + nr - 1) / nr
	colBlocks := max(1, min(np, (threads()*tilesPerThread+rowBlocks-1)/rowBlocks))
	rowBytes := k / 32 * 34
	parallelFor(rowBlocks*colBlocks, 2*mcPanels*mr*(np/colBlocks+1)*nr*max(k, 1), func(lo, hi int) {
		s, _ := q8dotScratchPool.Get().(*q8dotScratch)
		if s == nil {
			s = new(q8dotScratch)
		}
		if cap(s.w) < wpb {
			s.w = make([]byte, wpb)
		}
		wp := s.w[:wpb]
		for t := lo; t < hi; t++ {
			rb, cb := t/colBlocks, t%colBlocks
			p0, p1 := rb*mcPanels, min((rb+1)*mcPanels, mp)
			i0, i1 := p0*mr, min(p1*mr, m)
			q0, q1 := cb*np/colBlocks, (cb+1)*np/colBlocks
			for q := q0; q < q1; q++ {
				j0 := q * nr
				cols := min(nr, n-j0)
				asm.Q8PackW(wp, w[j0*rowBytes:(j0+cols)*rowBytes], cols, k)
				asm.Q8Gemm(i1-i0, cols, k, xq[p0*xpb:p1*xpb], wp, d[i0*n+j0:], n, &s.tile)
			}
			addBias(d, bias, n, i0, i1, q0*nr, min(q1*nr, n))
		}
		q8dotScratchPool.Put(s)
	})
}
