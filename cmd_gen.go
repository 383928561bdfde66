package main

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// builtinModel is ../shared/golden/tiny-unclip converted with
// "dalle2 convert --dtype f16": a tiny pipeline with RANDOM weights, so that
// gen works on a fresh machine with no download. It draws noise, not pictures.
//
//go:embed testdata/builtin-tiny-unclip-f16.d2
var builtinModel []byte

const builtinName = "built-in tiny-unclip (random weights)"

func genCommand() *cli.Command {
	d := model.Defaults
	return &cli.Command{
		Name:      "gen",
		Usage:     "generate images from text prompts",
		ArgsUsage: `"prompt" ["prompt" ...]`,
		Description: `Runs the unCLIP pipeline: CLIP text encoder -> prior -> decoder -> super-resolution.
Several prompts run as one batch, in order. With more than one image, -o x.png writes
x-0.png, x-1.png, ... in batch order (prompt-major). A prompt of "-" reads prompts from
standard input, one per line.

Examples:
   dalle2 gen "a red horse" -o horse.png --seed 7
   dalle2 gen "a cat" "a dog" -n 2 -o pets.png --model karlo.d2
   echo "a lighthouse at dawn" | dalle2 gen - -o - > lighthouse.png`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "weight file from 'dalle2 convert' (default: the built-in tiny random-weight model)", EnvVars: []string{"DALLE2_MODEL"}},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "dalle2.png", Usage: "output PNG (\"-\": standard output)"},
			&cli.Int64Flag{Name: "seed", Value: -1, Usage: "random seed (torch-compatible CPU normal generator); -1: pick one and print it"},
			&cli.StringFlag{Name: "noise", Usage: "replay recorded noise from a .safetensors file (golden case names) instead of a seed"},
			&cli.StringFlag{Name: "dump", Usage: "write every intermediate tensor to this .safetensors file (golden names)"},
			&cli.IntFlag{Name: "prior-steps", Value: d.PriorSteps, Usage: "prior denoising steps"},
			&cli.IntFlag{Name: "decoder-steps", Value: d.DecoderSteps, Usage: "decoder denoising steps"},
			&cli.IntFlag{Name: "sr-steps", Value: d.SuperResSteps, Usage: "super-resolution denoising steps"},
			&cli.Float64Flag{Name: "prior-guidance", Value: float64(d.PriorGuidance), Usage: "prior classifier-free guidance scale"},
			&cli.Float64Flag{Name: "decoder-guidance", Value: float64(d.DecoderGuidance), Usage: "decoder classifier-free guidance scale"},
			&cli.IntFlag{Name: "n", Value: 1, Usage: "images per prompt"},
			&cli.IntFlag{Name: "size", Usage: "output size: the decoder's (64 for Karlo) stops after the decoder; default: the super-res size (256)"},
			&cli.BoolFlag{Name: "upsample-antialias", Usage: "antialiased bicubic (a=-0.5) from decoder to super-res, as diffusers asks of PyTorch >= 1.11; default: plain bicubic, as in the golden reference run"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
		},
		Action: runGen,
	}
}

func runGen(c *cli.Context) error {
	prompts, err := readPrompts(c.Args().Slice(), os.Stdin)
	if err != nil {
		return err
	}
	if c.Int("n") < 1 {
		return usagef("-n must be at least 1, got %d", c.Int("n"))
	}
	for _, f := range []string{"prior-steps", "decoder-steps", "sr-steps"} {
		if c.Int(f) < 2 {
			return usagef("--%s must be at least 2, got %d", f, c.Int(f))
		}
	}
	if c.IsSet("seed") && c.IsSet("noise") {
		return usagef("--seed and --noise exclude each other")
	}
	out := c.String("output")
	if out == "-" && isTerminal(os.Stdout) {
		return usagef("refusing to write PNG data to a terminal; redirect standard output or use -o FILE")
	}
	quiet := c.Bool("quiet")
	logf := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(os.Stderr, format, args...)
		}
	}

	f, name, err := openModel(c.String("model"))
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	p, err := model.LoadPipeline(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if name == builtinName {
		logf("warning: using the built-in tiny model, which has RANDOM weights: the image is noise.\n" +
			"         Convert Karlo (see README) and pass --model for real images.\n")
	}
	logf("loaded %s in %.2fs\n", name, time.Since(start).Seconds())

	o := model.Defaults
	o.Prompts = prompts
	o.ImagesPerPrompt = c.Int("n")
	o.PriorSteps, o.DecoderSteps, o.SuperResSteps = c.Int("prior-steps"), c.Int("decoder-steps"), c.Int("sr-steps")
	o.PriorGuidance, o.DecoderGuidance = float32(c.Float64("prior-guidance")), float32(c.Float64("decoder-guidance"))
	o.UpsampleAntialias = c.Bool("upsample-antialias")
	switch size := c.Int("size"); {
	case size == 0 || (p.SuperResFirst != nil && size == p.SuperResConfig.SampleSize):
	case size == p.DecoderConfig.SampleSize:
		o.DecoderOnly = true
	default:
		return usagef("--size %d: this model makes %d (decoder) or %d (super-res) pixel images", size, p.DecoderConfig.SampleSize, p.SuperResConfig.SampleSize)
	}

	if path := c.String("noise"); path != "" {
		src, err := loader.OpenSafetensors(path)
		if err != nil {
			return err
		}
		defer src.Close()
		o.Noise = &model.ReplayNoise{Src: src, Name: path}
	} else {
		seed := c.Int64("seed")
		if seed < 0 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			seed = int64(binary.LittleEndian.Uint64(b[:]) >> 1)
			logf("seed: %d\n", seed)
		}
		o.Noise = model.NewSeededNoise(uint64(seed))
	}
	var dump []loader.Tensor
	if c.String("dump") != "" {
		o.Trace = func(name string, t *ops.Tensor) { dump = append(dump, tensorBytes(name, t)) }
	}
	stageStart := time.Now()
	o.Progress = func(stage string, step, total int) {
		logf("%-9s %3d/%-3d %6.2fs\n", stage, step, total, time.Since(stageStart).Seconds())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := p.Generate(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			return cli.Exit("interrupted; no output written", 130)
		}
		return err
	}
	if len(dump) > 0 {
		if err := loader.WriteSafetensors(c.String("dump"), dump, map[string]string{"prompts": strings.Join(prompts, "\n")}); err != nil {
			return err
		}
	}
	paths, err := writeImages(out, res)
	if err != nil {
		return err
	}
	for _, p := range paths {
		logf("wrote %s\n", p)
	}
	return nil
}

// readPrompts returns the prompt arguments; "-" reads one prompt per
// non-empty line of stdin.
func readPrompts(args []string, stdin io.Reader) ([]string, error) {
	var prompts []string
	for _, a := range args {
		if a != "-" {
			prompts = append(prompts, a)
			continue
		}
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if line := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(line) != "" {
				prompts = append(prompts, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading prompts from standard input: %w", err)
		}
	}
	if len(prompts) == 0 {
		return nil, usagef("no prompt given: dalle2 gen \"a red horse\" (or - to read standard input)")
	}
	return prompts, nil
}

// openModel opens the weight file at path, or the built-in model if path is empty.
func openModel(path string) (*loader.File, string, error) {
	if path == "" {
		f, err := loader.OpenBytes(builtinModel, builtinName)
		return f, builtinName, err
	}
	f, err := loader.Open(path)
	return f, path, err
}

func tensorBytes(name string, t *ops.Tensor) loader.Tensor {
	b := make([]byte, 4*len(t.Data))
	for i, v := range t.Data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return loader.Tensor{Name: name, DType: loader.F32, Shape: append([]int(nil), t.Shape...), Data: b}
}

// imagePaths names the output files: one image keeps out; several get
// "-K" before the extension, in batch order.
func imagePaths(out string, n int) []string {
	if n == 1 || out == "-" {
		return []string{out}
	}
	ext := filepath.Ext(out)
	base := strings.TrimSuffix(out, ext)
	paths := make([]string, n)
	for k := range paths {
		paths[k] = fmt.Sprintf("%s-%d%s", base, k, ext)
	}
	return paths
}

func writeImages(out string, res *model.Result) ([]string, error) {
	n, h, w := res.Images.Dim(0), res.Images.Dim(1), res.Images.Dim(2)
	paths := imagePaths(out, n)
	if out == "-" && n > 1 {
		return nil, usagef("-o - writes one image; this run makes %d", n)
	}
	for k, path := range paths {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		px := res.Pixels[k*h*w*3 : (k+1)*h*w*3]
		for i := 0; i < h*w; i++ {
			copy(img.Pix[4*i:4*i+3], px[3*i:3*i+3])
			img.Pix[4*i+3] = 255
		}
		if path == "-" {
			if err := png.Encode(os.Stdout, img); err != nil {
				return nil, fmt.Errorf("writing PNG to standard output: %w", err)
			}
			continue
		}
		if err := writeFileAtomic(path, func(wr io.Writer) error { return png.Encode(wr, img) }); err != nil {
			return nil, err
		}
	}
	if out == "-" {
		return nil, nil
	}
	return paths, nil
}

// writeFileAtomic writes path through a temporary file in the same folder,
// synced and renamed, so a reader never sees a partial file.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	// CreateTemp makes the file 0600; an image is for everyone to read.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	bw := bufio.NewWriter(tmp)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
