package asm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// gemmBench is one benchmark shape; transB marks the Linear layout (W[out, in]).
type gemmBench struct {
	m, n, k int
	transB  bool
	slow    bool // too slow for the generic kernel
}

var gemmBenches = []gemmBench{
	{m: 256, n: 256, k: 256},
	{m: 77, n: 768, k: 768, transB: true},                // CLIP text encoder Linear
	{m: 4096, n: 320, k: 2880, transB: true, slow: true}, // 3×3 conv, 320 channels at 64×64 (im2col)
	{m: 2048, n: 2048, k: 2048, slow: true},
}

func benchGemm(b *testing.B, g gemmBench) {
	r := rand.New(rand.NewPCG(1, 1))
	a, bm, c := make([]float32, g.m*g.k), make([]float32, g.k*g.n), make([]float32, g.m*g.n)
	fillRand(r, a, false)
	fillRand(r, bm, false)
	ldb := g.n
	if g.transB {
		ldb = g.k
	}
	var s Scratch
	Gemm(g.m, g.n, g.k, a, g.k, false, bm, ldb, g.transB, c, g.n, false, &s)
	b.ResetTimer()
	for b.Loop() {
		Gemm(g.m, g.n, g.k, a, g.k, false, bm, ldb, g.transB, c, g.n, false, &s)
	}
	b.ReportMetric(2*float64(g.m)*float64(g.n)*float64(g.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkGemm is single-threaded Gemm per kernel implementation and shape.
func BenchmarkGemm(b *testing.B) {
	for _, im := range impls() {
		for _, g := range gemmBenches {
			if g.slow && im.name == "generic" {
				continue
			}
			name := fmt.Sprintf("impl=%s/m=%d/n=%d/k=%d", im.name, g.m, g.n, g.k)
			if g.transB {
				name += "/transB"
			}
			b.Run(name, func(b *testing.B) {
				defer useKernel(im)()
				benchGemm(b, g)
			})
		}
	}
}

// BenchmarkPeakFMA is the single-core fp32 FMA throughput the Gemm is judged
// against: independent FMA chains, no loads.
func BenchmarkPeakFMA(b *testing.B) {
	const iters = 1 << 20
	for _, im := range impls() {
		b.Run("impl="+im.name, func(b *testing.B) {
			for b.Loop() {
				im.peak(iters)
			}
			b.ReportMetric(float64(im.peakFlops)*iters*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkPack measures the packing routines on one full cache block
// (reported per packed float).
func BenchmarkPack(b *testing.B) {
	const rows, k = 2048, 2048
	src := make([]float32, rows*k)
	for _, trans := range []bool{false, true} {
		b.Run(fmt.Sprintf("A/trans=%v", trans), func(b *testing.B) {
			mc := mcBlock
			dst := make([]float32, roundUp(mc, MR)*kcBlock)
			for b.Loop() {
				PackA(dst, src, k, 64, mc, 128, kcBlock, trans)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*mc*kcBlock), "ns/float")
		})
		b.Run(fmt.Sprintf("B/trans=%v", trans), func(b *testing.B) {
			nc := 1024
			dst := make([]float32, roundUp(nc, NR)*kcBlock)
			for b.Loop() {
				PackB(dst, src, k, 128, kcBlock, 64, nc, trans)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nc*kcBlock), "ns/float")
		})
	}
}
