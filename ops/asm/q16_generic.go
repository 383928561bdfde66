package asm

import (
	"encoding/binary"
	"math"
)

// q16QuantBlockGo quantizes one block of 32 activations into q and returns
// its scale dx (the family's activation rule, see q16.go).
func q16QuantBlockGo(q []int16, x []float32) float32 {
	return quantActBlock(q, x, 32767, q16FlushBelow)
}

// q16PackARowGo writes one Q8_0 row (nb blocks) into row r of an A panel:
// the 32 int8 values sign-extended to int16, and the scale as float32.
func q16PackARowGo(panel []byte, row []byte, nb, r int) {
	for b := 0; b < nb; b++ {
		blk := panel[b*q16ABlockBytes : (b+1)*q16ABlockBytes]
		src := row[b*q8BlockBytes : (b+1)*q8BlockBytes]
		for t, v := range src[2:] {
			binary.LittleEndian.PutUint16(blk[64*r+2*t:], uint16(int16(int8(v))))
		}
		dw := halfToFloat32(binary.LittleEndian.Uint16(src))
		binary.LittleEndian.PutUint32(blk[q16AScales+4*r:], math.Float32bits(dw))
	}
}

// q16PackBGo quantizes lanes [j0, j0+nc) of a B panel of nb blocks from the
// columns of src (leading dimension ld).
func q16PackBGo(dst []byte, nb, j0, nc int, src []float32, ld int) {
	var col [q8Block]float32
	var q [q8Block]int16
	for b := 0; b < nb; b++ {
		blk := dst[b*q16BBlockBytes : (b+1)*q16BBlockBytes]
		for t := 0; t < nc; t++ {
			for p := range col {
				col[p] = src[(32*b+p)*ld+t]
			}
			dx := q16QuantBlockGo(q[:], col[:])
			l := j0 + t
			for p := 0; p < 16; p++ {
				binary.LittleEndian.PutUint16(blk[128*p+4*l:], uint16(q[2*p]))
				binary.LittleEndian.PutUint16(blk[128*p+4*l+2:], uint16(q[2*p+1]))
			}
			binary.LittleEndian.PutUint32(blk[q16BScales+4*l:], math.Float32bits(dx))
		}
	}
}

// q16Generic is the plain-Go kernel: the 6×32 tile of C (leading dimension
// ldc; transposed when flags has q16Trans) from one A panel and one B panel
// of nb blocks, per the family's contract. It is the reference for the
// assembly kernel.
func q16Generic(nb int, ap, bp []byte, c []float32, ldc int, flags int) {
	var acc [Q16MR][Q16NR]float32
	trans := flags&q16Trans != 0
	if flags&q16Accumulate != 0 {
		for r := range acc {
			for l := range acc[r] {
				acc[r][l] = c[q16Index(r, l, ldc, trans)]
			}
		}
	}
	ap, bp = ap[:nb*q16ABlockBytes], bp[:nb*q16BBlockBytes]
	for b := 0; b < nb; b++ {
		ab := ap[b*q16ABlockBytes : (b+1)*q16ABlockBytes]
		bb := bp[b*q16BBlockBytes : (b+1)*q16BBlockBytes]
		for r := 0; r < Q16MR; r++ {
			wr := ab[64*r : 64*r+64]
			dw := math.Float32frombits(binary.LittleEndian.Uint32(ab[q16AScales+4*r:]))
			for l := 0; l < Q16NR; l++ {
				var isum int32
				for p := 0; p < 16; p++ {
					x0 := int16(binary.LittleEndian.Uint16(bb[128*p+4*l:]))
					x1 := int16(binary.LittleEndian.Uint16(bb[128*p+4*l+2:]))
					w0 := int16(binary.LittleEndian.Uint16(wr[4*p:]))
					w1 := int16(binary.LittleEndian.Uint16(wr[4*p+2:]))
					isum += int32(x0)*int32(w0) + int32(x1)*int32(w1)
				}
				dx := math.Float32frombits(binary.LittleEndian.Uint32(bb[q16BScales+4*l:]))
				d := float32(dx * dw)
				acc[r][l] = fma32(d, float32(isum), acc[r][l])
			}
		}
	}
	for r := range acc {
		for l := range acc[r] {
			c[q16Index(r, l, ldc, trans)] = acc[r][l]
		}
	}
}
