package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/bench"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

const benchDescription = `Measures this machine, like llama-bench: the fp32 FMA peak, a 2048x2048x2048
matrix product (ops.Linear) and one forward pass of each full-size Karlo module
built with random weights (spec configs, no download):

   peak      independent FMA chains of the GEMM micro-kernel on L1-resident data
   gemm      ops.Linear [2048,2048] x [2048,2048]^T on the worker pool
   text      CLIP text encoder, batch 2 x 77 tokens          (124M params, 0.5 GB f32)
   prior     prior transformer, batch 2 (one guided step)    (1.0B params, 4.1 GB f32)
   decoder   decoder U-Net, batch 2 at 64x64 (guided step)   (885M params, 3.5 GB f32)
   superres  super_res_first U-Net, batch 1 at 256x256      (692M params, 2.8 GB f32)

The global --threads N sets the worker threads (default: all cores); the FMA
peak is measured on as many threads, at the start of the same run. Each module
is built, run once to warm up, then timed --runs times; the table shows the
median seconds per forward (for peak: the fastest run, as it is a limit),
GFLOP/s (the multiply-adds of the Linear, convolution and attention products
x 2, counted from the config) and the fraction of the FMA peak. Modules are
built one at a time and released, so memory peaks at the largest (the prior,
about 4.5 GB in f32).

--dtype f32,f16,q8 measures each module with its weights stored in each type,
one after the other in the same run: every tensor is stored as 'dalle2
convert --dtype' stores it (f16: every tensor f16; q8: Linear and convolution
weights q8, the rest f16, per convert's policy), from the same random
weights; computation stays fp32. peak is measured once; gemm stores its
weight in each type.

--compare also runs every module in f32 (if f32 is not in --dtype, once,
untimed) and prints, per other dtype, the relative L2 error of the output
against the f32 output, ||y - y_f32|| / ||y_f32||, same weights and inputs.

--json prints one JSON object per line instead: module, dtype, threads,
seconds (median per forward), gflops, then runs, run_seconds, warmup_seconds,
build_seconds, flops, params, weight_bytes, rel_l2 (with --compare),
peak_gflops, peak_fraction, kernels, version.

Examples:
   dalle2 bench --module gemm --threads 2
   dalle2 bench --threads 2 --json | tee dalle2.jsonl   # bench/side_by_side.sh compares with PyTorch
   dalle2 bench --module text,prior --runs 5 --json
   dalle2 bench --module decoder --dtype f32,f16,q8 --compare
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
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "comma-separated weight storage `TYPES`: f32, f16, q8 (computation is fp32)"},
			&cli.BoolFlag{Name: "compare", Usage: "relative L2 error of each dtype's output against the f32 output (same weights and inputs)"},
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
	WeightBytes   int64     `json:"weight_bytes"`
	RelL2         *float64  `json:"rel_l2,omitempty"`
	PeakGFLOPS    float64   `json:"peak_gflops"`
	PeakFraction  float64   `json:"peak_fraction"`
	Kernels       string    `json:"kernels"`
	Version       string    `json:"version"`
}

// benchWorkload is something to time: one run of fixed work.
type benchWorkload struct {
	params, weightBytes int64
	flops               float64
	run                 func()
	output              func() *ops.Tensor // the last run's output (nil for peak)
	release             func()
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

// parseBenchDTypes reads --dtype: distinct storage types, in order.
func parseBenchDTypes(s string) ([]loader.DType, error) {
	var out []loader.DType
	for _, name := range strings.Split(s, ",") {
		if name = strings.TrimSpace(name); name == "" {
			return nil, usagef("bench: --dtype %q has an empty entry (want a list of f32, f16, q8)", s)
		}
		d, err := bench.ParseDType(name)
		if err != nil {
			return nil, usagef("bench: --dtype: %v", err)
		}
		if slices.Contains(out, d) {
			return nil, usagef("bench: --dtype %q lists %s twice", s, bench.DTypeName(d))
		}
		out = append(out, d)
	}
	return out, nil
}

// f32First moves f32, if listed, to the front, keeping the others' order:
// with --compare its output is the reference of the others.
func f32First(dtypes []loader.DType) []loader.DType {
	i := slices.Index(dtypes, loader.F32)
	if i <= 0 {
		return dtypes
	}
	out := append([]loader.DType{loader.F32}, dtypes[:i]...)
	return append(out, dtypes[i+1:]...)
}

func runBench(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("bench: unexpected argument %q", c.Args().First())
	}
	modules, err := parseBenchModules(c.String("module"))
	if err != nil {
		return err
	}
	dtypes, err := parseBenchDTypes(c.String("dtype"))
	if err != nil {
		return err
	}
	compare := c.Bool("compare")
	if compare {
		dtypes = f32First(dtypes)
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
		r.Threads, r.Kernels, r.Version = threads, asm.Name(), version
		r.PeakGFLOPS = peakRes.GFLOPS
		if peakRes.GFLOPS > 0 {
			r.PeakFraction = r.GFLOPS / peakRes.GFLOPS
		}
	}
	peakRes.DType = "f32"
	fill(&peakRes)
	if !asJSON {
		names := make([]string, len(dtypes))
		for i, d := range dtypes {
			names[i] = bench.DTypeName(d)
		}
		fmt.Fprintf(w, "dalle2 %s bench: kernels %s, %d threads (%d CPUs), weights %s (Q8_0 weights: %s; otherwise fp32 compute), median of %d runs after 1 warm-up\n",
			version, asm.Name(), threads, runtime.NumCPU(), strings.Join(names, ", "), ops.Q8Path(), runs)
		fmt.Fprintf(w, "FMA peak: %.1f GFLOP/s (%s)\n\n", peakRes.GFLOPS, bench.PeakMethod)
		relHead, relRule := "", ""
		if compare {
			relHead, relRule = " rel L2 vs f32 |", "--------------:|"
		}
		fmt.Fprintln(w, "| module   | dtype |          params | weights GB | GFLOP/fwd | build s | s/fwd (median) |  GFLOP/s | % peak |"+relHead)
		fmt.Fprintln(w, "|----------|-------|----------------:|-----------:|----------:|--------:|---------------:|---------:|-------:|"+relRule)
	}
	for _, m := range modules {
		if m == "peak" {
			if err := writeBenchResult(w, peakRes, asJSON, compare); err != nil {
				return err
			}
			continue
		}
		var ref *ops.Tensor // the f32 output, with --compare
		if compare && !slices.Contains(dtypes, loader.F32) {
			fmt.Fprintf(log, "bench: building %s f32 (reference for --compare)...\n", m)
			wl, err := buildBenchWorkload(m, loader.F32)
			if err != nil {
				return err
			}
			fmt.Fprintf(log, "bench: running %s f32 once (reference)...\n", m)
			wl.run()
			ref = wl.output().Clone()
			wl.release()
		}
		for _, d := range dtypes {
			name := bench.DTypeName(d)
			fmt.Fprintf(log, "bench: building %s %s...\n", m, name)
			t0 := time.Now()
			wl, err := buildBenchWorkload(m, d)
			if err != nil {
				return err
			}
			build := time.Since(t0).Seconds()
			fmt.Fprintf(log, "bench: running %s %s (1 warm-up + %d runs)...\n", m, name, runs)
			res := timeWorkload(m, wl, runs, build)
			res.DType = name
			if compare {
				out := wl.output()
				if d == loader.F32 {
					ref = out.Clone()
				}
				rel, err := bench.CompareOutputs(out, ref)
				if err != nil {
					return fmt.Errorf("bench: %s %s: %w", m, name, err)
				}
				res.RelL2 = &rel
				if math.IsNaN(rel) || math.IsInf(rel, 0) {
					fmt.Fprintf(c.App.ErrWriter, "bench: warning: %s %s: relative L2 error against f32 is %v (non-finite output?)\n", m, name, rel)
				}
			}
			wl.release()
			fill(&res)
			if err := writeBenchResult(w, res, asJSON, compare); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildBenchWorkload builds the gemm product or a full-size Karlo module
// with its weights stored as dtype.
func buildBenchWorkload(name string, dtype loader.DType) (benchWorkload, error) {
	if name == "gemm" {
		g, err := bench.NewGemm2048(1, bench.WithDType(dtype))
		if err != nil {
			return benchWorkload{}, err
		}
		return benchWorkload{weightBytes: g.WeightBytes, flops: g.FLOPs(), run: g.Run, output: g.Output, release: func() {}}, nil
	}
	m, err := bench.Karlo(name, 1, bench.WithDType(dtype))
	if err != nil {
		return benchWorkload{}, err
	}
	return benchWorkload{params: m.Params, weightBytes: m.WeightBytes, flops: m.FLOPs(), run: m.Forward, output: m.Output, release: m.Release}, nil
}

// timeWorkload runs wl once to warm up, then runs times, and reports the median.
func timeWorkload(name string, wl benchWorkload, runs int, build float64) benchResult {
	r := benchResult{Module: name, Runs: runs, BuildSeconds: build, FLOPs: wl.flops, Params: wl.params, WeightBytes: wl.weightBytes}
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

func writeBenchResult(w io.Writer, r benchResult, asJSON, compare bool) error {
	if asJSON {
		if r.RelL2 != nil && (math.IsNaN(*r.RelL2) || math.IsInf(*r.RelL2, 0)) {
			r.RelL2 = nil // JSON has no NaN; runBench warned
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	params, weights := "-", "-"
	if r.Params > 0 {
		params = groupDigits(r.Params)
	}
	if r.WeightBytes > 0 {
		weights = fmt.Sprintf("%.3f", float64(r.WeightBytes)/1e9)
	}
	rel := ""
	switch {
	case compare && r.RelL2 != nil:
		rel = fmt.Sprintf(" %13.3e |", *r.RelL2)
	case compare:
		rel = fmt.Sprintf(" %13s |", "-")
	}
	_, err := fmt.Fprintf(w, "| %-8s | %-5s | %15s | %10s | %9.1f | %7.1f | %14.4f | %8.1f | %5.1f%% |%s\n",
		r.Module, r.DType, params, weights, r.FLOPs/1e9, r.BuildSeconds, r.Seconds, r.GFLOPS, 100*r.PeakFraction, rel)
	return err
}
