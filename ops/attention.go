package ops

import "math"

// attnQueryBlock is the number of queries of one head handled per work item,
// so that the head's keys and values are reused from cache.
const attnQueryBlock = 16

// attention runs attentionFast (two GEMMs per head on the assembly kernels)
// or the reference attentionRef. For query i of head h in batch n, the
// reference computes:
//
//	l_j = f32(f32(dot(q_i, k_j))·scale) + bias_ij   (dot: float32, d ascending)
//	m   = max_j l_j
//	e_j = f32(exp(f32(l_j − m)))                     (exp in float64)
//	p_j = e_j / Σ_j e_j                              (float32 sum, j ascending)
//	out = Σ_j f32(p_j·v_j)                            (float32, j ascending)
//
// over the allowed keys j (j ≤ i when causal; masked keys take no part at
// all, i.e. their weight is exactly 0). With no allowed key the output row is
// 0. Work items are (n, h, block of queries).
func attention(dst, q, k, v, bias *Tensor, heads int, causal bool, scale float32) {
	if useFast() {
		attentionFast(dst, q, k, v, bias, heads, causal, scale)
		return
	}
	attentionRef(dst, q, k, v, bias, heads, causal, scale)
}

// attentionDims checks Attention's shapes and returns N, Lq, Lk, H·D and the
// number of bias rows (0: no bias; 1: one row broadcast over queries; Lq:
// one per query).
func attentionDims(dst, q, k, v, bias *Tensor, heads int) (n, lq, lk, hd, biasRows int) {
	if len(q.Shape) != 3 || len(k.Shape) != 3 || len(v.Shape) != 3 || len(dst.Shape) != 3 ||
		!dst.SameShape(q) || !k.SameShape(v) || k.Shape[0] != q.Shape[0] || k.Shape[2] != q.Shape[2] ||
		heads <= 0 || q.Shape[2]%heads != 0 {
		badShapes("Attention", "want q, dst [N, Lq, H·D], k, v [N, Lk, H·D], H dividing H·D", dst, q, k, v)
	}
	n, lq, hd = q.Shape[0], q.Shape[1], q.Shape[2]
	lk = k.Shape[1]
	if bias != nil {
		if len(bias.Shape) != 3 || bias.Shape[0] != n || bias.Shape[2] != lk || (bias.Shape[1] != 1 && bias.Shape[1] != lq) {
			badShapes("Attention", "bias must be [N, Lq, Lk] or [N, 1, Lk]", bias, q, k)
		}
		biasRows = bias.Shape[1]
	}
	return n, lq, lk, hd, biasRows
}

// attentionRef is the reference attention, whatever the kernel set.
func attentionRef(dst, q, k, v, bias *Tensor, heads int, causal bool, scale float32) {
	n, lq, lk, hd, biasRows := attentionDims(dst, q, k, v, bias, heads)
	hdim := hd / heads
	qb := (lq + attnQueryBlock - 1) / attnQueryBlock
	parallelFor(n*heads*qb, attnQueryBlock*lk*(4*hdim+8), func(lo, hi int) {
		logits := make([]float32, lk)
		for it := lo; it < hi; it++ {
			b := it / (heads * qb)
			h := it / qb % heads
			i0 := it % qb * attnQueryBlock
			for i := i0; i < min(i0+attnQueryBlock, lq); i++ {
				var brow []float32
				switch biasRows {
				case 1:
					brow = bias.Data[b*lk : (b+1)*lk]
				case lq:
					brow = bias.Data[(b*lq+i)*lk : (b*lq+i+1)*lk]
				}
				attendRow(dst, q, k, v, brow, logits, b, h, i, hdim, causal, scale)
			}
		}
	})
}

// attendRow computes one query row of one head; logits is scratch of length Lk.
func attendRow(dst, q, k, v *Tensor, brow, logits []float32, b, h, i, hdim int, causal bool, scale float32) {
	lq, lk, hd := q.Shape[1], k.Shape[1], q.Shape[2]
	nk := lk
	if causal {
		nk = min(i+1, lk)
	}
	off := h * hdim
	qi := q.Data[(b*lq+i)*hd+off : (b*lq+i)*hd+off+hdim]
	krow := func(j int) []float32 { return k.Data[(b*lk+j)*hd+off : (b*lk+j)*hd+off+hdim] }
	out := dst.Data[(b*lq+i)*hd+off : (b*lq+i)*hd+off+hdim]
	clear(out)
	if nk <= 0 {
		return
	}
	ls := logits[:nk]
	j := 0
	for ; j+4 <= nk; j += 4 {
		s := dot1x4(qi, krow(j), krow(j+1), krow(j+2), krow(j+3))
		copy(ls[j:j+4], s[:])
	}
	for ; j < nk; j++ {
		ls[j] = dot(qi, krow(j))
	}
	m := float32(math.Inf(-1))
	for j, s := range ls {
		l := float32(s * scale)
		if brow != nil {
			l += brow[j]
		}
		ls[j] = l
		m = max(m, l)
	}
	var sum float32
	for j, l := range ls {
		e := float32(math.Exp(float64(l - m)))
		ls[j] = e
		sum += e
	}
	for j := range ls {
		ls[j] /= sum
	}
	vrow := func(j int) []float32 { return v.Data[(b*lk+j)*hd+off : (b*lk+j)*hd+off+len(out)] }
	// Four keys per sweep over out; each element still adds the keys in
	// ascending order.
	j = 0
	for ; j+4 <= nk; j += 4 {
		p0, p1, p2, p3 := ls[j], ls[j+1], ls[j+2], ls[j+3]
		v0, v1, v2, v3 := vrow(j), vrow(j+1), vrow(j+2), vrow(j+3)
		n := len(out)
		v0, v1, v2, v3 = v0[:n], v1[:n], v2[:n], v3[:n]
		for d := range out {
			o := out[d]
			o += float32(p0 * v0[d])
			o += float32(p1 * v1[d])
			o += float32(p2 * v2[d])
			o += float32(p3 * v3[d])
			out[d] = o
		}
	}
	for ; j < nk; j++ {
		p, vj := ls[j], vrow(j)
		vj = vj[:len(out)]
		for d := range out {
			out[d] += float32(p * vj[d])
		}
	}
}
