package bench

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

// PeakMethod describes how Peak measures the FMA limit.
//
// ops/asm has an assembly routine of independent FMA chains (peakFMA, used
// by its BenchmarkPeakFMA) but does not export it, so the peak is measured
// through the exported micro-kernel asm.Kernel on packed panels that stay
// in L1 (k = 256: 6 KiB of A, 16 KiB of B on amd64): a loop of MR·NR
// independent fused multiply-add chains fed by broadcasts and in-cache
// loads. It is a lower bound of the true FMA peak (the loads share the
// issue ports), typically within a few percent of it, so fractions of peak
// reported against it are slightly optimistic.
const PeakMethod = "asm.Kernel on L1-resident panels (k=256)"

// peakK is the depth of the L1-resident panels.
const peakK = 256

// Peak is the peak workload: Threads goroutines, each locked to its own OS
// thread, each running Calls micro-kernel calls (asm.Kernel of the kernel
// set in use, see asm.Name) on its own L1-resident panels, all at once.
type Peak struct {
	Threads, Calls int
	panels         []peakPanels
}

type peakPanels struct{ a, b, c []float32 }

// NewPeak prepares the panels of threads workers running calls kernel calls
// each per Run.
func NewPeak(threads, calls int) *Peak {
	p := &Peak{Threads: max(threads, 1), Calls: max(calls, 1)}
	for g := 0; g < p.Threads; g++ {
		pp := peakPanels{make([]float32, peakK*asm.MR), make([]float32, peakK*asm.NR), make([]float32, asm.MR*asm.NR)}
		FillUniform(pp.a, uint64(g), -1e-3, 1e-3)
		FillUniform(pp.b, uint64(g)+100, -1e-3, 1e-3)
		p.panels = append(p.panels, pp)
	}
	return p
}

// CalibratePeak returns a Peak whose Run takes about target.
func CalibratePeak(threads int, target time.Duration) *Peak {
	p := NewPeak(threads, 64)
	for {
		t0 := time.Now()
		p.Run()
		el := time.Since(t0)
		if el >= target/4 || p.Calls >= 1<<30 {
			p.Calls = max(1, int(float64(p.Calls)*target.Seconds()/max(el.Seconds(), 1e-9)))
			return p
		}
		p.Calls *= 4
	}
}

// FLOPs of one Run.
func (p *Peak) FLOPs() float64 {
	return float64(p.Threads) * float64(p.Calls) * 2 * asm.MR * asm.NR * peakK
}

// Run runs every worker's calls concurrently and returns when all are done.
func (p *Peak) Run() {
	var wg sync.WaitGroup
	for _, pp := range p.panels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := 0; i < p.Calls; i++ {
				asm.Kernel(peakK, pp.a, pp.b, pp.c, asm.NR, false)
			}
		}()
	}
	wg.Wait()
}

// Gemm2048 is the square matrix product of the kernel benchmark: ops.Linear
// of a [2048, 2048] input by a [2048, 2048] weight (x·wᵀ), on the ops
// worker pool (ops.SetThreads), as the models call it. With WithDType the
// weight is a compact F16 or Q8_0 tensor (ops.NewCompact), as a Linear
// layer's weight from a converted file is.
type Gemm2048 struct {
	x, w, dst *ops.Tensor
	// DType is the weight's storage: "f32", "f16" or "q8".
	DType string
	// WeightBytes is the size of the stored weight.
	WeightBytes int64
}

// GemmSize is the side of the kernel benchmark's matrices.
const GemmSize = 2048

// NewGemm2048 allocates the operands (random values from seed; the same
// for every dtype before the weight is converted).
func NewGemm2048(seed uint64, opts ...Option) (*Gemm2048, error) {
	o := applyOptions(opts)
	g := &Gemm2048{
		x:     randomTensor(seed, -1, 1, GemmSize, GemmSize),
		w:     randomTensor(seed+1, -1, 1, GemmSize, GemmSize),
		dst:   ops.New(GemmSize, GemmSize),
		DType: DTypeName(o.dtype),
	}
	g.WeightBytes = int64(4 * len(g.w.Data))
	if o.dtype == loader.F32 {
		return g, nil
	}
	var format ops.Format
	switch o.dtype {
	case loader.F16:
		format = ops.FormatF16
	case loader.Q8_0:
		format = ops.FormatQ8
	default:
		return nil, fmt.Errorf("bench: gemm: cannot store the weight as %s", o.dtype)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&g.w.Data[0])), 4*len(g.w.Data))
	lt, err := convert.ConvertTensor(loader.Tensor{Name: "w", DType: loader.F32, Shape: g.w.Shape, Data: raw}, o.dtype)
	if err != nil {
		return nil, fmt.Errorf("bench: gemm: %w", err)
	}
	if g.w, err = ops.NewCompact(format, lt.Data, GemmSize, GemmSize); err != nil {
		return nil, fmt.Errorf("bench: gemm: %w", err)
	}
	g.WeightBytes = int64(len(lt.Data))
	return g, nil
}

// Run computes one product.
func (g *Gemm2048) Run() { ops.Linear(g.dst, g.x, g.w, nil) }

// Output is the product of the last Run.
func (g *Gemm2048) Output() *ops.Tensor { return g.dst }

// FLOPs of one product (2·n³).
func (g *Gemm2048) FLOPs() float64 { return 2 * float64(GemmSize) * GemmSize * GemmSize }
