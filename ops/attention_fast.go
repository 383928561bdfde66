package ops

import "github.com/dalle2/dalle2/ops/asm"

// attnFastBlock is the number of queries per work item of attentionFast: a
// multiple of the micro-kernel height, large enough that packing the head's
// keys and values once per item is cheap next to the products.
const attnFastBlock = (96 / asm.MR) * asm.MR

// attentionFast is Attention with both products on the assembly GEMM. Work
// items are (n, h, block of attnFastBlock queries); per item
//
//	S = Q·Kᵀ           (asm.Gemm with transB; the head's columns are a strided
//	                    window of [N, L, H·D], leading dimension H·D)
//	E = exp(S − max)   (softmaxRow, with the row sums Σ)
//	O = (E·V) / Σ      (asm.Gemm into dst's window of the head, then one
//	                    float32 division per output)
//
// so the logits and outputs are FMA chains over d and j ascending, the
// weights are normalised after the product rather than before (both differ
// from the reference by rounding only), and the result does not depend on
// the thread count. Causal masking: the block's rows see keys [0, i0) in
// full, one GEMM; the keys [i0, i] of row i are added to that row's chain by
// a second, one-row GEMM, so masked keys never enter a product (their
// weight is exactly 0, even when a masked value is NaN).
func attentionFast(dst, q, k, v, bias *Tensor, heads int, causal bool, scale float32) {
	n, lq, lk, hd, biasRows := attentionDims(dst, q, k, v, bias, heads)
	d := hd / heads
	if lk == 0 {
		clear(dst.Data) // no key at all: every output row is 0
		return
	}
	nqb := (lq + attnFastBlock - 1) / attnFastBlock
	parallelFor(n*heads*nqb, attnFastBlock*lk*(4*d+20), func(lo, hi int) {
		ws := getScratch()
		defer putScratch(ws)
		for it := lo; it < hi; it++ {
			b, h := it/(heads*nqb), it/nqb%heads
			i0 := it % nqb * attnFastBlock
			i1 := min(i0+attnFastBlock, lq)
			rows := i1 - i0
			nk := lk // keys with a logit in this block
			if causal {
				nk = min(i1, lk)
			}
			ws.buf = floats(ws.buf, rows*nk)
			s := ws.buf
			kb := k.Data[b*lk*hd+h*d:]
			vb := v.Data[b*lk*hd+h*d:]
			out := dst.Data[(b*lq+i0)*hd+h*d:]
			asm.Gemm(rows, nk, d, q.Data[(b*lq+i0)*hd+h*d:], hd, false, kb, hd, true, s, nk, false, &ws.gemm)
			sums := floats(ws.sums, rows)
			ws.sums = sums
			for r := 0; r < rows; r++ {
				i := i0 + r
				cnt := nk
				if causal {
					cnt = min(i+1, lk)
				}
				var brow []float32
				switch biasRows {
				case 1:
					brow = bias.Data[b*lk : b*lk+cnt]
				case lq:
					brow = bias.Data[(b*lq+i)*lk : (b*lq+i)*lk+cnt]
				}
				sums[r] = softmaxRow(s[r*nk:r*nk+cnt], brow, scale)
			}
			if !causal {
				asm.Gemm(rows, d, nk, s, nk, false, vb, hd, false, out, hd, false, &ws.gemm)
			} else {
				full := min(i0, lk) // keys every row of the block may attend to
				asm.Gemm(rows, d, full, s, nk, false, vb, hd, false, out, hd, false, &ws.gemm)
				for r := 0; r < rows; r++ {
					if cnt := min(i0+r+1, lk); cnt > full {
						asm.Gemm(1, d, cnt-full, s[r*nk+full:], nk, false, vb[full*hd:], hd, false, out[r*hd:], hd, true, &ws.gemm)
					}
				}
			}
			for r := 0; r < rows; r++ {
				divRow(out[r*hd:r*hd+d], sums[r])
			}
		}
	})
}

// softmaxRow turns the raw dot products s_j of one query into unnormalised
// attention weights in place and returns their sum:
//
//	l_j = f32(s_j·scale) + bias_j,  m = max_j l_j       (asm.ScaleMax)
//	e_j = exp(f32(l_j − m)),        sum = f32(Σ_j e_j)  (asm.ExpShift)
//
// The exponential is a float32 one within 2 ulps (the reference: math.Exp
// rounded once) and the sum runs in float64. The caller divides the weighted
// sum of the values by sum, so the division happens once per output instead
// of once per key. brow is nil or the bias row (len(brow) = len(s)).
func softmaxRow(s, brow []float32, scale float32) float32 {
	if len(s) == 0 {
		return 0
	}
	m := asm.ScaleMax(s, brow, scale)
	return float32(asm.ExpShift(s, m))
}

// divRow divides every element of x by d.
func divRow(x []float32, d float32) {
	for i := range x {
		x[i] /= d
	}
}
