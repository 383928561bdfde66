package ops

import (
	"sync"

	"github.com/dalle2/dalle2/ops/asm"
)

// The q16 path of Linear and Conv2D for Q8_0 weights (issue #6): where the
// CPU has AVX-512 VNNI (asm.Q16Fast), a FormatQ8 weight is multiplied with
// package asm's q16 family instead of being decoded to float32 while
// packing: the activations are quantized on the fly to int16 with a
// float32 scale per 32-block of the depth, every (activation block, weight
// block) pair gives an exact int32 sum (VPDPWSSD), and each output is the
// chain s = fma(dx·dw, isum, s) over the blocks in ascending order, then
// the bias is added (asm/q16.go has the exact contract). It differs from
// the decoded product by the int16 rounding of the activations: about
// 2·10⁻⁵ relative L2 error, against Q8_0's own 5·10⁻³. The results do not
// depend on the thread count: C is split into tiles over its rows and
// columns only, and a chain interrupted at a depth chunk resumes from the
// float32 it stored.

// q16On is SetQ16's switch.
var q16On = true

// SetQ16 switches the q16 path of Linear and Conv2D for Q8_0 weights on or
// off (it is on by default, and only ever used where asm.Q16Fast reports
// the AVX-512 VNNI kernels; off, such weights are decoded while packing for
// the float32 GEMM, bit-identical to the decoded weight). It returns a func
// that restores the previous setting. It is a test and benchmark hook: it
// must not be called while ops are running in other goroutines.
func SetQ16(on bool) (restore func()) {
	prev := q16On
	q16On = on
	return func() { q16On = prev }
}

// useQ16 reports whether Linear and Conv2D take the q16 path for w.
func useQ16(w *Tensor) bool {
	return q16On && w.Q != nil && w.Q.Format == FormatQ8 && asm.Q16Fast()
}

// q16Scratch is a worker's packing buffers for the q16 path.
type q16Scratch struct {
	a, b []byte    // packed weight panels, one packed activation panel
	f    []float32 // a float32 block of activations (xᵀ or im2col) before quantization
	tile asm.Q16Tile
}

// q16XTarget bounds the quantized rows of x that a Linear tile walks for
// every weight panel: they should stay in the L2 cache (1 MiB per core on
// the Zen 5 the kernels were tuned on), next to the weight panel.
const q16XTarget = 640 << 10

// q16XPool recycles the quantized activations of linearQ16.
var q16XPool sync.Pool // *[]byte

// q16Depth is the depth of the float32 blocks that linearQ16 transposes
// and quantizes at a time.
const q16Depth = 256

// linearQ16 computes d = x·wᵀ (+ bias) for x m×k and the Q8_0 matrix w (n
// rows of k/32 blocks), k > 0. It quantizes x once into B panels of 32
// rows (in parallel), then splits C into row blocks of panels that fit
// q16XTarget times column ranges of weight panels; each tile packs one
// weight panel (6 rows) at a time and runs the kernel over the block's
// activation panels over the whole depth, storing the tile transposed.
func linearQ16(d, x []float32, w []byte, bias []float32, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	const mr, nr = asm.Q16MR, asm.Q16NR
	xpb, wpb := asm.Q16BPanelBytes(k), asm.Q16APanelBytes(k)
	mp := (m + nr - 1) / nr
	bp, _ := q16XPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = asm.Q16Bytes(*bp, mp*xpb)
	xq := *bp
	defer q16XPool.Put(bp)

	parallelFor(mp, 8*nr*k, func(lo, hi int) {
		ws := getScratch()
		defer putScratch(ws)
		for p := lo; p < hi; p++ {
			q16PackX(&ws.q16, xq[p*xpb:(p+1)*xpb], x, k, p*nr, min(nr, m-p*nr))
		}
	})

	// Row blocks of whole panels that fit q16XTarget; then as many column
	// ranges (of whole weight panels) as it takes to give every thread
	// tilesPerThread tiles.
	mcPanels := max(1, min(mp, q16XTarget/xpb))
	rowBlocks := (mp + mcPanels - 1) / mcPanels
	mcPanels = (mp + rowBlocks - 1) / rowBlocks // even out the blocks
	np := (n + mr - 1) / mr
	colBlocks := max(1, min(np, (threads()*tilesPerThread+rowBlocks-1)/rowBlocks))
	rowBytes := k / 32 * 34
	parallelFor(rowBlocks*colBlocks, 2*mcPanels*nr*(np/colBlocks+1)*mr*k, func(lo, hi int) {
		ws := getScratch()
		defer putScratch(ws)
		s := &ws.q16
		s.a = asm.Q16Bytes(s.a, wpb)
		for t := lo; t < hi; t++ {
			rb, cb := t/colBlocks, t%colBlocks
			p0, p1 := rb*mcPanels, min((rb+1)*mcPanels, mp)
			i0, i1 := p0*nr, min(p1*nr, m)
			q0, q1 := cb*np/colBlocks, (cb+1)*np/colBlocks
			for q := q0; q < q1; q++ {
				j0 := q * mr
				rows := min(mr, n-j0)
				asm.Q16PackA(s.a, w[j0*rowBytes:], rowBytes, rows, k)
				asm.Q16Gemm(rows, i1-i0, k, s.a, xq[p0*xpb:p1*xpb], d[i0*n+j0:], n, true, false, &s.tile)
			}
			addBias(d, bias, n, i0, i1, q0*mr, min(q1*mr, n))
		}
	})
}

// q16PackX quantizes rows [i0, i0+rows) of x (m×k) into the B panel dst,
// q16Depth deep at a time: asm.PackB transposes them into float32 panels
// of asm.NR lanes (zero past the rows), which asm.Q16PackB quantizes.
func q16PackX(s *q16Scratch, dst []byte, x []float32, k, i0, rows int) {
	const nr = asm.NR
	for k0 := 0; k0 < k; k0 += q16Depth {
		kc := min(q16Depth, k-k0)
		s.f = floats(s.f, (rows+nr-1)/nr*nr*kc)
		asm.PackB(s.f, x, k, k0, kc, i0, rows, true)
		blk := dst[k0/32*asm.Q16BPanelBytes(32):]
		for l := 0; l < asm.Q16NR; l += nr {
			if l < rows {
				asm.Q16PackB(blk, kc, l, nr, s.f[l*kc:], nr)
			} else {
				asm.Q16PackB(blk, kc, l, nr, nil, 0)
			}
		}
	}
}

// q16ConvChunkBytes bounds the packed weight chunk of a conv2dQ16 tile
// (rows × depth int16 values): it should stay in the L2 cache while the
// activation panels stream through L1 (a variable so that tests can
// exercise the chunking).
var q16ConvChunkBytes = 256 << 10

// q16ConvDepth is the depth of the weight chunks a conv2dQ16 tile packs at
// a time: a multiple of 32, about q16ConvChunkBytes of packed weights.
func q16ConvDepth(rows int) int {
	return max(32, q16ConvChunkBytes/(2*max(rows, 1))/32*32)
}

// conv2dQ16 is conv2dFast for a FormatQ8 weight on the q16 path:
// out[Cout, Ho·Wo] = W · X per image, with the im2col matrix X produced 32
// columns at a time by convPacker (or read from x for a pointwise
// convolution) and quantized into one B panel, which the kernel multiplies
// by every weight panel of the tile's depth chunk (packed once for all
// images). Chains continue across depth chunks from the stored float32;
// the bias is added at the end.
func conv2dQ16(dst, x, w, b *Tensor, stride, pad int, g convGeom) {
	kk := g.cin * g.kh * g.kw
	np := g.ho * g.wo
	plane := g.cin * g.h * g.w
	rowBytes := kk / 32 * 34
	pointwise := g.kh == 1 && g.kw == 1 && stride == 1 && pad == 0
	const nr = asm.NR
	parallelGemm(g.cout, np, kk, g.n, func(ws *workerScratch, i0, i1, j0, j1 int) {
		defer func() { ws.conv.x = nil }() // do not keep the image (an arena slab) alive
		s := &ws.q16
		rows, cols := i1-i0, j1-j0
		depth := q16ConvDepth(rows)
		na := (rows + asm.Q16MR - 1) / asm.Q16MR
		for p0 := 0; p0 < kk; p0 += depth {
			kc := min(depth, kk-p0)
			s.a = asm.Q16Bytes(s.a, na*asm.Q16APanelBytes(kc))
			asm.Q16PackA(s.a, w.Q.Raw[i0*rowBytes+p0/32*34:], rowBytes, rows, kc)
			s.b = asm.Q16Bytes(s.b, asm.Q16BPanelBytes(kc))
			for img := 0; img < g.n; img++ {
				if !pointwise {
					ws.conv = convPacker{x: x.Data[img*plane : (img+1)*plane], h: g.h, w: g.w, kh: g.kh, kw: g.kw,
						stride: stride, pad: pad, wo: g.wo, row0: p0, col0: j0}
				}
				for jb := 0; jb < cols; jb += asm.Q16NR {
					nc := min(asm.Q16NR, cols-jb)
					if pointwise {
						src := x.Data[img*plane+p0*np+j0+jb:]
						for l := 0; l < nc; l += 16 {
							asm.Q16PackB(s.b, kc, l, min(16, nc-l), src[l:], np)
						}
					} else {
						s.f = floats(s.f, (nc+nr-1)/nr*nr*kc)
						ws.conv.PackB(s.f, 0, kc, jb, nc)
						for l := 0; l < nc; l += nr {
							asm.Q16PackB(s.b, kc, l, nr, s.f[l*kc:], nr)
						}
					}
					asm.Q16Gemm(rows, nc, kc, s.a, s.b, dst.Data[(img*g.cout+i0)*np+j0+jb:], np, false, p0 > 0, &s.tile)
				}
			}
		}
		if b == nil {
			return
		}
		for img := 0; img < g.n; img++ {
			c := dst.Data[(img*g.cout+i0)*np+j0:]
			for i := 0; i < rows; i++ {
				addScalar(c[i*np:i*np+cols], b.Data[i0+i])
			}
		}
	})
}

// Q8Path names how Linear and Conv2D multiply by Q8_0 weights on this
// machine: "int16×int8 avx512-vnni" (the q16 path), "decoded to float32"
// (decode while packing, for the float32 kernels), or "reference" (the
// plain-Go loops of the purego kernel set).
func Q8Path() string {
	switch {
	case !useFast():
		return "reference"
	case q16On && asm.Q16Fast():
		return "int16×int8 avx512-vnni"
	}
	return "decoded to float32"
}
