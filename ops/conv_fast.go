package ops

import "github.com/dalle2/dalle2/ops/asm"

// conv2dFast is Conv2D as an implicit GEMM on the assembly kernels. Per image,
//
//	out[Cout, Ho·Wo] = W[Cout, Cin·KH·KW] · X[Cin·KH·KW, Ho·Wo]
//
// where X is the im2col matrix, X[(ic, ky, kx)][(oy, ox)] = x[ic][oy·s−pad+ky]
// [ox·s−pad+kx] (0 in the padding). X is never stored: convPacker writes its
// blocks straight from the image into the GEMM's packing buffer, so the
// memory stays bounded (one kcBlock×ncBlock block per worker) for any image
// size, and a 1×1 stride-1 convolution reads x itself as X. Each output is
// one FMA chain over (ic, ky, kx) ascending from 0, then the bias is added;
// taps in the padding contribute fma(w, 0, s) = s, as the reference skips
// them (except that a −0 partial sum may become +0).
//
// Work is split into tiles over (Cout, Ho·Wo) that cover every image of the
// batch, so that each tile packs its rows of W once for all images; W is
// packed in depth chunks of convDepth (rows × convDepth floats per worker).
// A Q8_0 weight takes conv2dQ16 instead where useQ16 allows (q16.go).
func conv2dFast(dst, x, w, b *Tensor, stride, pad int) {
	g := convDims(dst, x, w, b, stride, pad)
	if useQ16(w) && g.cin*g.kh*g.kw > 0 {
		conv2dQ16(dst, x, w, b, stride, pad, g) // Q8_0 weight on AVX-512 VNNI (q16.go)
		return
	}
	conv2dGemm(dst, x, w, nil, b, stride, pad, g)
}

// conv2dGemm is conv2dFast with the geometry checked; pw, when not nil, is w
// packed whole (PackConv2D), used instead of packing chunks per tile.
func conv2dGemm(dst, x, w *Tensor, pw *asm.PackedA, b *Tensor, stride, pad int, g convGeom) {
	kk := g.cin * g.kh * g.kw
	np := g.ho * g.wo
	plane := g.cin * g.h * g.w
	pointwise := g.kh == 1 && g.kw == 1 && stride == 1 && pad == 0
	parallelGemm(g.cout, np, kk, g.n, func(ws *workerScratch, i0, i1, j0, j1 int) {
		defer func() { ws.conv.x = nil }() // do not keep the image (an arena slab) alive
		rows, cols := i1-i0, j1-j0
		depth := convDepth(rows)
		if pw != nil {
			depth = max(kk, 1)
		}
		for p0 := 0; p0 < kk; p0 += depth {
			kc := min(depth, kk-p0)
			oa := asm.OperandA{Packed: pw, Row0: i0}
			switch {
			case pw == nil && w.Q != nil:
				// Decode the chunk (p0 is a multiple of 256, so a Q8_0
				// block boundary), then pack it.
				ws.dec = floats(ws.dec, rows*kc)
				for i := 0; i < rows; i++ {
					w.decodeSpan(ws.dec[i*kc:(i+1)*kc], i0+i, p0)
				}
				ws.packed.Pack(rows, kc, ws.dec, kc, false)
				oa = asm.OperandA{Packed: &ws.packed}
			case pw == nil:
				ws.packed.Pack(rows, kc, w.Data[i0*kk+p0:], kk, false)
				oa = asm.OperandA{Packed: &ws.packed}
			}
			for img := 0; img < g.n; img++ {
				var ob asm.OperandB
				if pointwise {
					ob = asm.OperandB{Data: x.Data[img*plane+p0*np+j0:], LD: np}
				} else {
					ws.conv = convPacker{x: x.Data[img*plane : (img+1)*plane], h: g.h, w: g.w, kh: g.kh, kw: g.kw,
						stride: stride, pad: pad, wo: g.wo, row0: p0, col0: j0}
					ob = asm.OperandB{Packer: &ws.conv}
				}
				asm.GemmX(rows, cols, kc, oa, ob, dst.Data[(img*g.cout+i0)*np+j0:], np, p0 > 0, &ws.gemm)
			}
		}
		if b == nil && kk > 0 {
			return
		}
		for img := 0; img < g.n; img++ {
			c := dst.Data[(img*g.cout+i0)*np+j0:]
			for i := 0; i < rows; i++ {
				row := c[i*np : i*np+cols]
				switch {
				case kk == 0 && b == nil:
					clear(row)
				case kk == 0:
					fill(row, b.Data[i0+i])
				default:
					addScalar(row, b.Data[i0+i])
				}
			}
		}
	})
}

// convChunkFloats is the size of the chunk of W a conv2dFast tile packs at a
// time (a variable so that tests can exercise the chunking).
var convChunkFloats = 1 << 20

// convDepth is the depth of the chunks of W a conv2dFast tile packs at a
// time: a multiple of asm's depth block (256), about convChunkFloats floats
// of packed W.
func convDepth(rows int) int {
	return max(256, convChunkFloats/max(rows, 1)/256*256)
}

// convPacker is the asm.BPacker of conv2dFast: it packs blocks of the im2col
// matrix of one image, shifted by row0 rows and col0 columns.
type convPacker struct {
	x                         []float32 // one image, [Cin, H, W]
	h, w, kh, kw, stride, pad int
	wo                        int // output width
	row0, col0                int
}

// convSeg is a run of a panel's columns that lie in one output row.
type convSeg struct {
	j, n, oy, ox int // panel column, length, output row and first column
}

// PackB writes rows [k0, k0+kc) and columns [j0, j0+nc) of the (shifted)
// im2col matrix in asm.PackB's panel layout. Rows are taps (ic, ky, kx),
// columns output positions oy·Wo+ox.
func (c *convPacker) PackB(dst []float32, k0, kc, j0, nc int) {
	const nr = asm.NR
	khw := c.kh * c.kw
	hw := c.h * c.w
	for q := 0; q*nr < nc; q++ {
		d := dst[q*nr*kc : (q+1)*nr*kc]
		pos0 := c.col0 + j0 + q*nr
		cols := min(nr, nc-q*nr)
		// Split the panel's columns into runs within one output row.
		var segs [nr]convSeg
		ns := 0
		for j := 0; j < cols; {
			pos := pos0 + j
			oy, ox := pos/c.wo, pos%c.wo
			run := min(cols-j, c.wo-ox)
			segs[ns] = convSeg{j: j, n: run, oy: oy, ox: ox}
			ns++
			j += run
		}
		r := c.row0 + k0
		ic, ky, kx := r/khw, r%khw/c.kw, r%c.kw
		for p := 0; p < kc; p++ {
			dp := d[p*nr : p*nr+nr]
			img := c.x[ic*hw : (ic+1)*hw]
			for _, sg := range segs[:ns] {
				out := dp[sg.j : sg.j+sg.n]
				iy := sg.oy*c.stride - c.pad + ky
				if iy < 0 || iy >= c.h {
					clear(out)
					continue
				}
				row := img[iy*c.w : (iy+1)*c.w]
				ix0 := sg.ox*c.stride - c.pad + kx
				if c.stride == 1 {
					if ix0 >= 0 && ix0+sg.n <= c.w {
						if sg.n == nr {
							*(*[nr]float32)(out) = *(*[nr]float32)(row[ix0:])
						} else {
							copy(out, row[ix0:ix0+sg.n])
						}
						continue
					}
					for t := range out {
						if ix := ix0 + t; ix >= 0 && ix < c.w {
							out[t] = row[ix]
						} else {
							out[t] = 0
						}
					}
					continue
				}
				for t := range out {
					if ix := ix0 + t*c.stride; ix >= 0 && ix < c.w {
						out[t] = row[ix]
					} else {
						out[t] = 0
					}
				}
			}
			if kx++; kx == c.kw {
				kx = 0
				if ky++; ky == c.kh {
					ky = 0
					ic++
				}
			}
		}
	}
}

// fill sets every element of x to v.
func fill(x []float32, v float32) {
	for i := range x {
		x[i] = v
	}
}

// addScalar adds v to every element of x.
func addScalar(x []float32, v float32) {
	for i := range x {
		x[i] += v
	}
}
