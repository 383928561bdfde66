package asm

import (
	"encoding/binary"
	"math"
)

// quantBlockGo quantizes one block of 32 activations into q and returns its
// scale dx (the family's activation rule, see q8dot.go).
func quantBlockGo(q []int8, x []float32) float32 {
	return quantActBlock(q, x, 127, q8FlushBelow)
}

// quantRowXGo quantizes one row of nb blocks into row i of the X panel.
func quantRowXGo(panel []byte, x []float32, nb, i int) {
	var q [q8Block]int8
	for b := 0; b < nb; b++ {
		blk := panel[b*q8xBlockBytes : (b+1)*q8xBlockBytes]
		dx := quantBlockGo(q[:], x[b*q8Block:(b+1)*q8Block])
		for t, v := range q {
			blk[32*i+t] = byte(v)
		}
		binary.LittleEndian.PutUint32(blk[128+4*i:], math.Float32bits(dx))
	}
}

// clearRowX zeroes row i (values and scales) of an X panel.
func clearRowX(panel []byte, nb, i int) {
	for b := 0; b < nb; b++ {
		blk := panel[b*q8xBlockBytes : (b+1)*q8xBlockBytes]
		clear(blk[32*i : 32*i+32])
		clear(blk[128+4*i : 128+4*i+4])
	}
}

// packRowWGo copies one Q8_0 row (nb blocks) into row j of a W panel: the
// 32 int8 values, and the scale decoded to float32 four times.
func packRowWGo(panel []byte, row []byte, nb, j int) {
	for b := 0; b < nb; b++ {
		blk := panel[b*q8wBlockBytes : (b+1)*q8wBlockBytes]
		src := row[b*q8BlockBytes : (b+1)*q8BlockBytes]
		copy(blk[32*j:32*j+32], src[2:])
		dw := math.Float32bits(halfToFloat32(binary.LittleEndian.Uint16(src)))
		s := blk[128+16*j : 128+16*j+16]
		for l := 0; l < 4; l++ {
			binary.LittleEndian.PutUint32(s[4*l:], dw)
		}
	}
}

// clearRowW zeroes row j (values and scales) of a W panel.
func clearRowW(panel []byte, nb, j int) {
	for b := 0; b < nb; b++ {
		blk := panel[b*q8wBlockBytes : (b+1)*q8wBlockBytes]
		clear(blk[32*j : 32*j+32])
		clear(blk[128+16*j : 128+16*j+16])
	}
}

// q8dotGeneric is the plain-Go kernel: the 4×4 tile of C (leading dimension
// ldc) from one X panel and one W panel of nb blocks, per the family's
// contract. It is the reference for the assembly kernels.
func q8dotGeneric(nb int, xp, wp []byte, c []float32, ldc int) {
	var acc [Q8DotMR][Q8DotNR]float32
	xp, wp = xp[:nb*q8xBlockBytes], wp[:nb*q8wBlockBytes]
	for b := 0; b < nb; b++ {
		xb := xp[b*q8xBlockBytes : (b+1)*q8xBlockBytes]
		wb := wp[b*q8wBlockBytes : (b+1)*q8wBlockBytes]
		for i := 0; i < Q8DotMR; i++ {
			xq := xb[32*i : 32*i+32]
			dx := math.Float32frombits(binary.LittleEndian.Uint32(xb[128+4*i:]))
			for j := 0; j < Q8DotNR; j++ {
				wq := wb[32*j : 32*j+32]
				dw := math.Float32frombits(binary.LittleEndian.Uint32(wb[128+16*j:]))
				var isum int32
				for t, v := range xq {
					isum += int32(int8(v)) * int32(int8(wq[t]))
				}
				d := float32(dx * dw)
				acc[i][j] = fma32(d, float32(isum), acc[i][j])
			}
		}
	}
	for i := 0; i < Q8DotMR; i++ {
		copy(c[i*ldc:i*ldc+Q8DotNR], acc[i][:])
	}
}
