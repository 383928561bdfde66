package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/bench"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

const benchDescription = `Measures this machine, like llama-bench: the fp32 FMA peak, a 2048x2048x2048
matrix product (ops.Linear) and one forward pass of each full-size Karlo module
built with random weights (spec configs, no download):

   peak      independent FMA chains of the GEMM micro-kernel on L1-resident data
   gemm      ops.Linear [2048,2048] x [2048,2048]^T on the worker pool
   text      CLIP text encoder, batch 2 x 77 tokens          (124M params, 0.5 GB)
   prior     prior transformer, batch 2 (one guided step)    (1.0B params, 4.1 GB)
   decoder   decoder U-Net, batch 2 at 64x64 (guided step)   (885M params, 3.5 GB)
   superres  super_res_first U-Net, batch 1 at 256x256      (692M params, 2.8 GB)

The global --threads N sets the worker threads (default: all cores); the FMA
peak is measured on as many threads, at the start of the same run. Each module
is built, run once to warm up, then timed --runs times; the table shows the
median seconds per forward (for peak: the fastest run, as it is a limit),
GFLOP/s (the multiply-adds of the Linear, convolution and attention products
x 2, counted from the config) and the fraction of the FMA peak. Modules are
built one at a time and released, so memory peaks at the largest (the prior,
about 4.5 GB).

--json prints one JSON object per line instead: module, dtype, threads,
seconds (median per forward), gflops, then runs, run_seconds, warmup_seconds,
build_seconds, flops, params, peak_gflops, peak_fraction, kernels, version.

Examples:
   dalle2 bench --module gemm --threads 2
   dalle2 bench --threads 2 --json | tee dalle2.jsonl   # bench/side_by_side.sh compares with PyTorch
   dalle2 bench --module text,prior --runs 5 --json
   dalle2 bench                       # everything: minutes (fast kernels) to hours`

// benchModules are the --module names in the order "all" runs them.
var benchModules = append([]string{"peak", "gemm"}, bench.KarloModules...)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:        "bench",
		Usage:       "measure the FMA peak, GEMM and full-size Karlo module speed (random weights)",
		ArgsUsage:   " ",
		Description: benchDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "module", Value: "all", Usage: "comma-separated `LIST` of " + strings.Join(benchModules, ", ") + ", or all"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "weight and compute `TYPE` (only f32 so far)"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "timed runs `R` per module after one warm-up (the median is reported)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per module and line"},
		},
		Action: runBench,
	}
}

// benchResult is one measured module; the first five fields are the JSON
// contract other tools rely on.
type benchResult struct {
	Module        string    `json:"module"`
	DType         string    `json:"dtype"`
	Threads       int       `json:"threads"`
	Seconds       float64   `json:"seconds"`
	GFLOPS        float64   `json:"gflops"`
	Runs          int       `json:"runs"`
	RunSeconds    []float64 `json:"run_seconds"`
	WarmupSeconds float64   `json:"warmup_seconds"`
	BuildSeconds  float64   `json:"build_seconds"`
	FLOPs         float64   `json:"flops"`
	Params        int64     `json:"params"`
	PeakGFLOPS    float64   `json:"peak_gflops"`
	PeakFraction  float64   `json:"peak_fraction"`
	Kernels       string    `json:"kernels"`
	Version       string    `json:"version"`
}

// benchWorkload is something to time: one run of fixed work.
type benchWorkload struct {
	params  int64
	flops   float64
	run     func()
	release func()
}

func parseBenchModules(s string) ([]string, error) {
	if s == "all" {
		return benchModules, nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		known := false
		for _, k := range benchModules {
			known = known || k == m
		}
		if !known {
			return nil, usagef("bench: unknown --module %q (want %s, or all)", m, strings.Join(benchModules, ", "))
		}
		out = append(out, m)
	}
	return out, nil
}

func runBench(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("bench: unexpected argument %q", c.Args().First())
	}
	modules, err := parseBenchModules(c.String("module"))
	if err != nil {
		return err
	}
	if d := c.String("dtype"); d != "f32" {
		return usagef("bench: --dtype %q is not supported (only f32: every op computes in fp32)", d)
	}
	runs := c.Int("runs")
	if runs < 1 {
		return usagef("bench: --runs must be at least 1, got %d", runs)
	}
	threads := ops.Threads() // the global --threads
	asJSON := c.Bool("json")
	w, log := c.App.Writer, c.App.ErrWriter
	if log == nil || c.Bool("quiet") {
		log = io.Discard
	}

	// The FMA peak first: the yardstick of every other module.
	peak := bench.CalibratePeak(threads, 250*time.Millisecond)
	peakRes := timeWorkload("peak", benchWorkload{flops: peak.FLOPs(), run: peak.Run}, runs, 0)
	// A peak is a limit: report the fastest run, not the median, so that a
	// moment of contention on a shared machine does not lower it.
	peakRes.Seconds = slices.Min(peakRes.RunSeconds)
	peakRes.GFLOPS = bench.GFLOPS(peak.FLOPs(), peakRes.Seconds)
	fill := func(r *benchResult) {
		r.DType, r.Threads, r.Kernels, r.Version = "f32", threads, asm.Name(), version
		r.PeakGFLOPS = peakRes.GFLOPS
		if peakRes.GFLOPS > 0 {
			r.PeakFraction = r.GFLOPS / peakRes.GFLOPS
		}
	}
	fill(&peakRes)
	if !asJSON {
		fmt.Fprintf(w, "dalle2 %s bench: kernels %s, %d threads (%d CPUs), dtype f32, median of %d runs after 1 warm-up\n",
			version, asm.Name(), threads, runtime.NumCPU(), runs)
		fmt.Fprintf(w, "FMA peak: %.1f GFLOP/s (%s)\n\n", peakRes.GFLOPS, bench.PeakMethod)
		fmt.Fprintln(w, "| module   |          params | GFLOP/fwd | build s | s/fwd (median) |  GFLOP/s | % peak |")
		fmt.Fprintln(w, "|----------|----------------:|----------:|--------:|---------------:|---------:|-------:|")
	}
	for _, m := range modules {
		var res benchResult
		if m == "peak" {
			res = peakRes
		} else {
			fmt.Fprintf(log, "bench: building %s...\n", m)
			t0 := time.Now()
			wl, err := buildBenchWorkload(m)
			if err != nil {
				return err
			}
			build := time.Since(t0).Seconds()
			fmt.Fprintf(log, "bench: running %s (1 warm-up + %d runs)...\n", m, runs)
			res = timeWorkload(m, wl, runs, build)
			wl.release()
			fill(&res)
		}
		if err := writeBenchResult(w, res, asJSON); err != nil {
			return err
		}
	}
	return nil
}

// buildBenchWorkload builds the gemm product or a full-size Karlo module.
func buildBenchWorkload(name string) (benchWorkload, error) {
	if name == "gemm" {
		g := bench.NewGemm2048(1)
		return benchWorkload{flops: g.FLOPs(), run: g.Run, release: func() {}}, nil
	}
	m, err := bench.Karlo(name, 1)
	if err != nil {
		return benchWorkload{}, err
	}
	return benchWorkload{params: m.Params, flops: m.FLOPs(), run: m.Forward, release: m.Release}, nil
}

// timeWorkload runs wl once to warm up, then runs times, and reports the median.
func timeWorkload(name string, wl benchWorkload, runs int, build float64) benchResult {
	r := benchResult{Module: name, Runs: runs, BuildSeconds: build, FLOPs: wl.flops, Params: wl.params}
	t0 := time.Now()
	wl.run()
	r.WarmupSeconds = time.Since(t0).Seconds()
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		wl.run()
		r.RunSeconds = append(r.RunSeconds, time.Since(t0).Seconds())
	}
	r.Seconds = bench.Median(r.RunSeconds)
	r.GFLOPS = bench.GFLOPS(wl.flops, r.Seconds)
	return r
}

func writeBenchResult(w io.Writer, r benchResult, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	params := "-"
	if r.Params > 0 {
		params = groupDigits(r.Params)
	}
	_, err := fmt.Fprintf(w, "| %-8s | %15s | %9.1f | %7.1f | %14.4f | %8.1f | %5.1f%% |\n",
		r.Module, params, r.FLOPs/1e9, r.BuildSeconds, r.Seconds, r.GFLOPS, 100*r.PeakFraction)
	return err
}
