// Command mkkarlo writes a Karlo-shaped dalle2 weight file with random
// weights: the ten components `dalle2 convert` writes for the
// kakaobrain/karlo-v1-alpha diffusers folder (spec §12 configs, the
// built-in CLIP tokenizer, the three schedulers), each tensor stored as
// convert's policy stores it for --dtype. The file loads with `dalle2 gen
// --model FILE` and makes noise images; it is for measuring memory, load
// time and speed at full size without downloading the release.
//
//	go run ./bench/mkkarlo -o /tmp/karlo-q8.d2 --dtype q8
//	go run ./bench/mkkarlo -o /tmp/karlo-f32.d2 --dtype f32 --seed 3
//
// Sizes: f32 13.7 GB, f16 about 6.9 GB, q8 about 3.7 GB. Tensors are
// generated and written one at a time (peak RSS measured: 0.8 GB for q8).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dalle2/dalle2/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkkarlo:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkkarlo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output weight `FILE` (required)")
	dtype := fs.String("dtype", "f32", "storage `TYPE` of the weights: f32, f16 or q8 (convert's per-tensor policy)")
	seed := fs.Uint64("seed", 1, "random weights `SEED` (the bench modules' weights for the same seed)")
	quiet := fs.Bool("q", false, "no progress on standard error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench/mkkarlo -o FILE [--dtype f32|f16|q8] [--seed N] [-q]\n\n"+
			"Writes a Karlo-shaped pipeline file with random weights.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		fs.Usage()
		return fmt.Errorf("-o FILE is required")
	}
	target, err := bench.ParseDType(*dtype)
	if err != nil {
		return err
	}
	opt := bench.WriteOptions{DType: target, Seed: *seed}
	if !*quiet {
		opt.Progress = stderr
	}
	rep, err := bench.WritePipeline(*out, bench.KarloPipeline(), opt)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stderr, "wrote %s: %d tensors, %d parameters, %.2f GB of tensors, file %.2f GB, %.1f s\n",
			rep.Path, rep.Tensors, rep.Params, float64(rep.Bytes)/1e9, float64(rep.FileSize)/1e9, rep.Seconds)
	}
	return nil
}
