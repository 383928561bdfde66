package bench

import (
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/dalle2/dalle2/loader"
)

// RandomSource is a loader.Source that serves every tensor of a key → shape
// table as deterministic pseudo-random F32 values, so full-size models can
// be built without a weight file. Values follow PyTorch's default
// initialisation, which is also what bench/torch_modules.py uses:
//
//   - "X.weight" with two or more dimensions (Linear, Conv): uniform in
//     ±1/√fan_in, fan_in = numel/shape[0];
//   - "X.bias" next to such a weight: uniform in ±1/√fan_in of that weight;
//   - "X.weight" with one dimension (LayerNorm/GroupNorm γ): 1;
//     its "X.bias" (β): 0;
//   - anything else (embedding tables, learned tokens, CLIP statistics):
//     uniform in ±1/√(last dimension).
//
// Element i of tensor "name" is a function of (seed, name, i) only
// (splitmix64 of a counter: no state, filled in parallel), so a source
// gives the same weights on every machine and thread count.
//
// Each call of Tensor allocates the tensor afresh (a float32 slice that the
// returned bytes view without a copy, so model binding uses it in place):
// only the model that binds it holds the memory.
type RandomSource struct {
	shapes map[string][]int
	names  []string
	seed   uint64
}

// NewRandomSource serves shapes (not copied; do not modify it afterwards)
// with values drawn from seed.
func NewRandomSource(shapes map[string][]int, seed uint64) *RandomSource {
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	return &RandomSource{shapes: shapes, names: names, seed: seed}
}

// Names lists every tensor name, sorted.
func (s *RandomSource) Names() []string { return append([]string(nil), s.names...) }

// Tensor generates the named tensor.
func (s *RandomSource) Tensor(name string) (loader.Tensor, error) {
	shape, ok := s.shapes[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("bench: random source: no tensor %q", name)
	}
	n := numel(shape)
	data := make([]float32, n)
	switch lo, hi := s.init(name, shape); {
	case lo == hi:
		for i := range data {
			data[i] = lo
		}
	default:
		FillUniform(data, s.seed^nameHash(name), lo, hi)
	}
	var raw []byte
	if n > 0 {
		raw = unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*n)
	}
	return loader.Tensor{Name: name, DType: loader.F32, Shape: append([]int(nil), shape...), Data: raw}, nil
}

// init returns the value range of a tensor (lo == hi: the constant lo).
func (s *RandomSource) init(name string, shape []int) (lo, hi float32) {
	bound := func(fanIn int) (float32, float32) {
		b := float32(1 / math.Sqrt(float64(max(fanIn, 1))))
		return -b, b
	}
	switch {
	case strings.HasSuffix(name, ".weight") && len(shape) >= 2:
		return bound(numel(shape) / max(shape[0], 1))
	case strings.HasSuffix(name, ".weight") && len(shape) == 1:
		return 1, 1
	case strings.HasSuffix(name, ".bias"):
		if w, ok := s.shapes[strings.TrimSuffix(name, ".bias")+".weight"]; ok {
			if len(w) == 1 {
				return 0, 0
			}
			return bound(numel(w) / max(w[0], 1))
		}
	}
	if len(shape) == 0 {
		return bound(1)
	}
	return bound(shape[len(shape)-1])
}

// Params is the number of elements of all tensors of the source.
func (s *RandomSource) Params() int64 { return countParams(s.shapes) }

func countParams(shapes map[string][]int) int64 {
	var p int64
	for _, sh := range shapes {
		p += int64(numel(sh))
	}
	return p
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func nameHash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// splitmix64 is Steele, Lea and Flood's SplitMix64 finaliser of x.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// FillUniform sets dst[i] to a value in [lo, hi) that depends only on
// (stream, i): lo + (hi−lo)·u, u = the top 24 bits of splitmix64(stream +
// i·φ) / 2^24. Large slices are filled by several goroutines.
func FillUniform(dst []float32, stream uint64, lo, hi float32) {
	const chunk = 1 << 20
	fill := func(a, b int) {
		span := hi - lo
		for i := a; i < b; i++ {
			u := float32(splitmix64(stream+uint64(i)*0x9e3779b97f4a7c15)>>40) * (1.0 / (1 << 24))
			dst[i] = lo + span*u
		}
	}
	workers := min(runtime.GOMAXPROCS(0), (len(dst)+chunk-1)/chunk)
	if workers <= 1 {
		fill(0, len(dst))
		return
	}
	var wg sync.WaitGroup
	per := (len(dst) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		a, b := w*per, min((w+1)*per, len(dst))
		wg.Add(1)
		go func() {
			defer wg.Done()
			fill(a, b)
		}()
	}
	wg.Wait()
}
