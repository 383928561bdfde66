package ops

import (
	"sync"

	"github.com/dalle2/dalle2/ops/asm"
)

// The fast paths of Linear, Conv2D and Attention run on asm.Gemm's
// micro-kernels. They split C into tiles over its rows and columns (never
// over the depth k), one tile per work item of the pool; because every
// element of C is one fused multiply-add chain in ascending k whatever the
// blocking (asm.Gemm's contract), the result does not depend on the tiling,
// and so not on the thread count.

// useFast reports whether the ops use the assembly GEMM. Under the purego
// build tag, on CPUs without the features, or after asm.SetFast(false), the
// kernel set is "purego" and the ops run their plain-Go reference loops
// instead (asm's generic kernel emulates an exact float32 FMA, which is far
// slower than the reference loops).
func useFast() bool { return asm.Name() != "purego" }

// workerScratch is the per-worker state of the fast paths: it is taken from
// a free list at the start of a chunk of work and returned at its end, so
// that steady-state calls do not allocate.
type workerScratch struct {
	gemm   asm.Scratch
	packed asm.PackedA // a tile's rows of a convolution's weights
	conv   convPacker
	wdec   compactPacker // a compact Linear weight's B panels
	dec    []float32     // decoded rows of a compact convolution weight
	buf    []float32     // attention logits
	sums   []float32     // attention row sums
	q16    q16Scratch    // the q16 path's panels (Q8_0 weights on AVX-512 VNNI)
}

var scratchFree struct {
	mu   sync.Mutex
	list []*workerScratch
}

func getScratch() *workerScratch {
	scratchFree.mu.Lock()
	defer scratchFree.mu.Unlock()
	if n := len(scratchFree.list); n > 0 {
		s := scratchFree.list[n-1]
		scratchFree.list = scratchFree.list[:n-1]
		return s
	}
	return new(workerScratch)
}

func putScratch(s *workerScratch) {
	scratchFree.mu.Lock()
	scratchFree.list = append(scratchFree.list, s)
	scratchFree.mu.Unlock()
}

// floats returns buf resized to n elements, reallocating only when short.
func floats(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// tilesPerThread over-splits C for load balancing (other processes share
// the cores); each extra tile costs one more packing of a strip of A or B.
const tilesPerThread = 2

// minTileFlops is the least work worth a tile of its own (a variable so that
// tests can split small products into many tiles).
var minTileFlops = float64(1 << 21)

// gemmGrid splits an m×n C (depth k) into gm×gn tiles for t threads: about
// tilesPerThread tiles per thread, never below minTileFlops each, shaped to
// minimise packing. Each tile packs its rows of A once and its columns of B
// bw times (bw images share one A), so the packing work is proportional to
// gn·m + gm·n·bw.
func gemmGrid(m, n, k, bw, t int) (gm, gn int) {
	if t <= 1 || m == 0 || n == 0 {
		return 1, 1
	}
	want := t * tilesPerThread
	if f := 2 * float64(m) * float64(n) * float64(max(k, 1)) * float64(bw); f < float64(want)*minTileFlops {
		want = max(1, int(f/minTileFlops))
	}
	if want == 1 {
		return 1, 1
	}
	mb, nb := (m+asm.MR-1)/asm.MR, (n+asm.NR-1)/asm.NR // micro-tiles
	best := -1.0
	for a := 1; a <= min(want, mb); a++ {
		b := min((want+a-1)/a, nb)
		tiles := a * b
		if tiles < t && tiles < mb*nb {
			continue // leaves threads idle
		}
		cost := float64(b)*float64(m) + float64(a)*float64(n)*float64(bw)
		if tiles%t != 0 {
			cost *= 1.5 // one thread runs an extra tile
		}
		if best < 0 || cost < best {
			best, gm, gn = cost, a, b
		}
	}
	if best < 0 {
		return min(mb, want), 1
	}
	return gm, gn
}

// tileRange is the range of tile t of g over n elements in steps of unit
// (MR or NR), so that tiles start on micro-tile boundaries.
func tileRange(t, g, n, unit int) (lo, hi int) {
	blocks := (n + unit - 1) / unit
	lo = min(t*blocks/g*unit, n)
	hi = min((t+1)*blocks/g*unit, n)
	return lo, hi
}

// parallelGemm runs fn over a gm×gn tiling of an m×n C (depth k, images
// copies of B and C sharing A), each call with a worker's scratch and the row
// and column ranges of one tile, for all images.
func parallelGemm(m, n, k, images int, fn func(ws *workerScratch, i0, i1, j0, j1 int)) {
	if images == 0 || m == 0 || n == 0 {
		return
	}
	gm, gn := gemmGrid(m, n, k, images, threads())
	cost := 2 * (m/gm + 1) * (n/gn + 1) * max(k, 1) * images
	parallelFor(gm*gn, cost, func(lo, hi int) {
		ws := getScratch()
		defer putScratch(ws)
		for t := lo; t < hi; t++ {
			i0, i1 := tileRange(t/gn, gm, m, asm.MR)
			j0, j1 := tileRange(t%gn, gn, n, asm.NR)
			if i0 < i1 && j0 < j1 {
				fn(ws, i0, i1, j0, j1)
			}
		}
	})
}
