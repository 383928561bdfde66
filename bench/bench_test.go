package bench

// Benchmarks. The full-size Karlo modules need DALLE2_BENCH_FULL=1 (and no
// -short): they build 0.5–4 GB of random fp32 weights and one forward takes
// seconds to minutes. Threads: DALLE2_THREADS (default: all cores), as for
// the dalle2 command. Typical use (2 threads, 3 timed forwards each):
//
//	DALLE2_BENCH_FULL=1 DALLE2_THREADS=2 go test ./bench/ -run '^$' \
//	    -bench 'TextEncoder|Prior|Decoder|SuperResFirst' -benchtime 3x -timeout 60m
//
// DALLE2_BENCH_DTYPE=f16 or q8 stores the modules' weights in that type
// (WithDType; default f32).
//
// DALLE2_BENCH_CPUPROFILE=FILE writes a CPU profile of the timed forwards
// only (not of building the weights or the warm-up), e.g. of one decoder step:
//
//	DALLE2_BENCH_FULL=1 DALLE2_THREADS=2 DALLE2_BENCH_CPUPROFILE=/tmp/decoder.prof \
//	    go test ./bench/ -run '^$' -bench Decoder -benchtime 1x -o /tmp/bench.test
//	go tool pprof -top /tmp/bench.test /tmp/decoder.prof

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// setThreads applies DALLE2_THREADS to the ops worker pool.
func setThreads(b *testing.B) int {
	n := 0
	if s := os.Getenv("DALLE2_THREADS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("DALLE2_THREADS=%q: %v", s, err)
		}
	}
	ops.SetThreads(n)
	return ops.Threads()
}

func benchKarlo(b *testing.B, name string) {
	if testing.Short() || os.Getenv("DALLE2_BENCH_FULL") != "1" {
		b.Skip("full-size Karlo module: set DALLE2_BENCH_FULL=1 (without -short) to run it")
	}
	setThreads(b)
	dtype := loader.F32
	if s := os.Getenv("DALLE2_BENCH_DTYPE"); s != "" {
		var err error
		if dtype, err = ParseDType(s); err != nil {
			b.Fatalf("DALLE2_BENCH_DTYPE=%q: %v", s, err)
		}
	}
	m, err := Karlo(name, 1, WithDType(dtype))
	require.NoError(b, err)
	defer m.Release()
	m.Forward() // warm-up: sizes the arenas
	if path := os.Getenv("DALLE2_BENCH_CPUPROFILE"); path != "" {
		// A profile of the timed forwards only (go test -cpuprofile would
		// also cover building the weights and the warm-up).
		f, err := os.Create(path)
		require.NoError(b, err)
		require.NoError(b, pprof.StartCPUProfile(f))
		defer func() {
			pprof.StopCPUProfile()
			require.NoError(b, f.Close())
		}()
	}
	for b.Loop() {
		m.Forward()
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec, "s/fwd")
	b.ReportMetric(GFLOPS(m.FLOPs(), sec), "GFLOP/s")
}

// BenchmarkTextEncoder is one forward of the CLIP text encoder, batch 2 × 77.
func BenchmarkTextEncoder(b *testing.B) { benchKarlo(b, "text") }

// BenchmarkPrior is one forward of the prior, batch 2.
func BenchmarkPrior(b *testing.B) { benchKarlo(b, "prior") }

// BenchmarkDecoder is one forward of the decoder U-Net, batch 2 at 64×64.
func BenchmarkDecoder(b *testing.B) { benchKarlo(b, "decoder") }

// BenchmarkSuperResFirst is one forward of super_res_first, batch 1 at 256×256.
func BenchmarkSuperResFirst(b *testing.B) { benchKarlo(b, "superres") }

// BenchmarkPeakFMA is the fp32 FMA throughput of the micro-kernel on
// L1-resident panels (see PeakMethod), on 1 thread and on the pool's
// thread count: each iteration, every thread runs 1000 kernel calls.
func BenchmarkPeakFMA(b *testing.B) {
	for _, threads := range []int{1, setThreads(b)} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			p := NewPeak(threads, 1000)
			for b.Loop() {
				p.Run()
			}
			b.ReportMetric(GFLOPS(p.FLOPs()*float64(b.N), b.Elapsed().Seconds()), "GFLOP/s")
		})
	}
}

// BenchmarkGemm2048 is ops.Linear at 2048×2048×2048 on the worker pool.
func BenchmarkGemm2048(b *testing.B) {
	if testing.Short() {
		b.Skip("2048³ product: skipped under -short")
	}
	setThreads(b)
	g, err := NewGemm2048(1)
	require.NoError(b, err)
	g.Run()
	for b.Loop() {
		g.Run()
	}
	b.ReportMetric(GFLOPS(g.FLOPs()*float64(b.N), b.Elapsed().Seconds()), "GFLOP/s")
}

// BenchmarkTinyGen is `dalle2 gen "a red horse" --seed 7` on the built-in
// tiny random-weight model (Karlo's default steps and guidance), reporting
// the wall-clock seconds of each stage (model.Result.Timings) per run.
func BenchmarkTinyGen(b *testing.B) {
	setThreads(b)
	f, err := loader.Open(filepath.Join("..", "testdata", "builtin-tiny-unclip-f16.d2"))
	require.NoError(b, err)
	defer f.Close()
	p, err := model.LoadPipeline(f)
	require.NoError(b, err)
	stages := map[string]float64{}
	var order []string
	gen := func() {
		o := model.Defaults // Karlo's steps and guidance, as gen uses them
		o.Prompts, o.Noise = []string{"a red horse"}, model.NewSeededNoise(7)
		res, err := p.Generate(context.Background(), o)
		require.NoError(b, err)
		for _, st := range res.Timings {
			if _, ok := stages[st.Stage]; !ok {
				order = append(order, st.Stage)
			}
			stages[st.Stage] += st.Seconds
		}
	}
	gen() // warm-up
	clear(stages)
	for b.Loop() {
		gen()
	}
	for _, s := range order {
		b.ReportMetric(stages[s]/float64(b.N), s+"-s")
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "total-s")
}
