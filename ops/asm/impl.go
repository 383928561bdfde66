package asm

// impl is one implementation of the micro-kernel, for tests and benchmarks.
type impl struct {
	name      string
	kernel    func(k int, a, b, c []float32, ldc int, accumulate bool)
	peak      func(n int) // independent FMA chains, peakFlops flops per iteration
	peakFlops int
}

// impls lists the generic kernel first, then every assembly kernel the CPU
// supports.
func impls() []impl {
	return append([]impl{{name: "generic", kernel: kernelGeneric, peak: peakGeneric, peakFlops: 8 * 2}}, archImpls()...)
}

// peakGeneric runs n iterations of 8 independent float32 fused multiply-adds
// in Go, written as kernelGeneric's inner loop: the generic counterpart of
// peakFMA.
func peakGeneric(n int) {
	var s [8]float32
	x, y := float32(1), 0.5
	for ; n > 0; n-- {
		for i, v := range s {
			w := y*float64(x) + float64(v)
			if !fma32Fast(w) {
				w = float64(fma32Slow(x, float32(y), v))
			}
			s[i] = float32(w)
		}
	}
	sink = s[0]
}

var sink float32
