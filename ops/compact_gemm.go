package ops

import (
	"sync"

	"github.com/dalle2/dalle2/ops/asm"
)

// linearCompactFast is linearFast for a compact weight w [N, K]: the GEMM's
// B operand (wᵀ) is produced block by block by compactPacker, which decodes
// the block's rows of w and packs them. Decoding is exact, so every element
// is the same FMA chain as linearFast with the decoded weight.
func linearCompactFast(d, x []float32, w *Tensor, bias []float32, m, n, k int) {
	parallelGemm(m, n, k, 1, func(ws *workerScratch, i0, i1, j0, j1 int) {
		ws.wdec.w, ws.wdec.col0 = w, j0
		asm.GemmX(i1-i0, j1-j0, k, asm.OperandA{Data: x[i0*k:], LD: k},
			asm.OperandB{Packer: &ws.wdec}, d[i0*n+j0:], n, false, &ws.gemm)
		ws.wdec.w = nil
		addBias(d, bias, n, i0, i1, j0, j1)
	})
}

// compactPacker is the asm.BPacker of a compact Linear weight w [N, K]:
// op(B) = wᵀ shifted by col0 columns.
type compactPacker struct {
	w    *Tensor
	col0 int
	buf  []float32 // decoded rows, nc × kc
}

// PackB decodes rows [col0+j0, col0+j0+nc), inputs [k0, k0+kc) of w and packs
// them transposed. GemmX's depth blocks start at multiples of 256, so k0 is a
// Q8_0 block boundary.
func (c *compactPacker) PackB(dst []float32, k0, kc, j0, nc int) {
	c.buf = floats(c.buf, nc*kc)
	for j := 0; j < nc; j++ {
		c.w.decodeSpan(c.buf[j*kc:(j+1)*kc], c.col0+j0+j, k0)
	}
	asm.PackB(dst, c.buf, kc, 0, kc, 0, nc, true)
}

// decodedPool recycles the whole-weight buffers of the reference paths.
var decodedPool sync.Pool

// decoded returns w's values as float32: w.Data itself for a dense tensor,
// else a decoded copy in a pooled buffer that release gives back (the
// reference paths decode whole weights; they are the slow fallback).
func decoded(w *Tensor) (data []float32, release func()) {
	if w.Q == nil {
		return w.Data, func() {}
	}
	n := w.Numel()
	bp, _ := decodedPool.Get().(*[]float32)
	if bp == nil {
		bp = new([]float32)
	}
	*bp = floats(*bp, n)
	buf := *bp
	w.decodeAll(buf)
	return buf, func() { decodedPool.Put(bp) }
}
