package main

// dalle2 vary, edit and interp: the uses of the decoder's image-embedding
// input (model.Pipeline.Vary, Edit, Interpolate).

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

const varyDescription = `Runs the image-variation pipeline: the CLIP image encoder embeds each IMAGE (PNG or
JPEG, any size and colour model: converted to RGB with alpha dropped, its shorter side
resized to the encoder's input with Pillow's bicubic, center-cropped), and the decoder and
super-resolution U-Nets draw new pictures from that embedding, with the empty prompt as
text. Needs a model file with an image encoder (convert
kakaobrain/karlo-v1-alpha-image-variations; see README).

Several IMAGEs run as one batch, -n variations each, written image-major: -o x.png writes
x-0.png, x-1.png, ... The same --seed gives the same decoder and super-res noise as
'dalle2 edit' (same images and -n) and 'dalle2 interp' (one image) with that seed. --dump writes every intermediate and
every noise tensor; --noise replays such a file (or a golden case).

Examples:
   dalle2 vary photo.jpg -o var.png --seed 3 --model karlo-var.d2
   dalle2 vary photo.jpg -n 4 -o var.png --model karlo-var.d2   # var-0.png ... var-3.png`

const editDescription = `Moves IMAGE's CLIP embedding towards the embedding the prior makes for TEXT and
decodes it: the embedding is slerp(image, prior(TEXT), ALPHA), the spherical
interpolation of DALL-E 2's text diffs with the angle of the normalised vectors and
the weights on the raw ones (as Karlo's and diffusers' interpolation examples do), and
the decoder's text conditioning moves from the empty prompt's to TEXT's the same way.
--alpha 0 is 'dalle2 vary' with the same seed, byte for byte; 1 is TEXT's own prior
embedding. The decoder and super-res noise is drawn first (as vary draws it), the
prior's after. Needs a model file with the text-to-image components and an image
encoder (see README).

Examples:
   dalle2 edit photo.png "a watercolor painting" --alpha 0.4 --seed 3 -o edit.png --model karlo-all.d2
   dalle2 edit photo.png "a cat" --alpha 0 --seed 3 -o same-as-vary.png --model karlo-all.d2`

const interpDescription = `Decodes K embeddings along the slerp path from A to B, t = k/(K-1), with the same noise
for every frame, and writes K PNGs (-o x.png: x-0.png ... x-(K-1).png), plus a contact
sheet x-grid.png (frames left to right, 8 per row) with --grid. A and B are each an image
(a path to an existing .png, .jpg or .jpeg file) or a prompt (anything else; its
embedding is the prior's). The text conditioning follows the same path (an image's is the
empty prompt's). The first and last frames are exactly the endpoints decoded alone with
that noise: 'dalle2 vary' with the same seed for an image endpoint; for a prompt
endpoint, 'dalle2 gen' with --noise set to this run's --dump. -o - writes only the
contact sheet to standard output (needs --grid).

Examples:
   dalle2 interp cat.png dog.png --frames 8 --grid --seed 1 -o walk.png --model karlo-all.d2
   dalle2 interp photo.jpg "a snowy mountain at night" --frames 5 -o morph.png --model karlo-all.d2`

// varFlags are the flags vary, edit and interp share; withPrior adds the
// prior's, perImage adds -n.
func varFlags(withPrior, perImage bool) []cli.Flag {
	d := model.Defaults
	flags := []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "weight `FILE` from 'dalle2 convert', with an image encoder", EnvVars: []string{"DALLE2_MODEL"}, TakesFile: true},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "dalle2.png", Usage: "output PNG `FILE` (several images: FILE-0.png, FILE-1.png, ...); \"-\": standard output", TakesFile: true},
		&cli.Int64Flag{Name: "seed", Value: -1, Usage: "random seed `N` (torch-compatible CPU normal generator); -1: pick one and print it"},
		&cli.StringFlag{Name: "noise", Usage: "replay recorded noise from a .safetensors `FILE` (a --dump or a golden case) instead of a seed", TakesFile: true},
		&cli.StringFlag{Name: "dump", Usage: "write every intermediate and noise tensor to this .safetensors `FILE` (golden names)", TakesFile: true},
	}
	if withPrior {
		flags = append(flags,
			&cli.IntFlag{Name: "prior-steps", Value: d.PriorSteps, Usage: "prior denoising steps `N`"},
			&cli.Float64Flag{Name: "prior-guidance", Value: float64(d.PriorGuidance), Usage: "prior classifier-free guidance `SCALE`"})
	}
	flags = append(flags,
		&cli.IntFlag{Name: "decoder-steps", Value: d.DecoderSteps, Usage: "decoder denoising steps `N`"},
		&cli.IntFlag{Name: "sr-steps", Value: d.SuperResSteps, Usage: "super-resolution denoising steps `N`"},
		&cli.Float64Flag{Name: "decoder-guidance", Value: float64(d.DecoderGuidance), Usage: "decoder classifier-free guidance `SCALE` (<= 1: none)"},
		&cli.IntFlag{Name: "size", Usage: "output size in `PIXELS`: the decoder's (64 for Karlo) stops after the decoder; default: the super-res size (256)", DefaultText: "super-res size"},
		&cli.BoolFlag{Name: "upsample-antialias", Usage: "antialiased bicubic (a=-0.5) from decoder to super-res; default: plain bicubic, as in the golden reference run"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or messages on stderr (same as the global --quiet)"},
		&cli.BoolFlag{Name: "low-memory", Usage: "build each model just before its stage and release it after, and drop each block's weights once it has run: about one block's weights in memory at a time (same images, a little slower)"},
	)
	if perImage {
		flags = append(flags, &cli.IntFlag{Name: "n", Value: 1, Usage: "`N` variations per image"})
	}
	return flags
}

func varyCommand() *cli.Command {
	return &cli.Command{
		Name:        "vary",
		Usage:       "make variations of images (CLIP image embedding -> decoder)",
		ArgsUsage:   "IMAGE [IMAGE ...]",
		Description: varyDescription,
		Flags:       varFlags(false, true),
		Action:      runVary,
	}
}

func editCommand() *cli.Command {
	flags := append(varFlags(true, true),
		&cli.Float64Flag{Name: "alpha", Value: 0.5, Usage: "how far to move towards TEXT, `A` in [0, 1] (0: vary)"})
	return &cli.Command{
		Name:        "edit",
		Usage:       "edit an image towards a text (slerp of CLIP embeddings)",
		ArgsUsage:   `IMAGE "TEXT"`,
		Description: editDescription,
		Flags:       flags,
		Action:      runEdit,
	}
}

func interpCommand() *cli.Command {
	flags := append(varFlags(true, false),
		&cli.IntFlag{Name: "frames", Value: 5, Usage: "`K` frames, both ends included (at least 2)"},
		&cli.BoolFlag{Name: "grid", Usage: "also write a contact sheet FILE-grid.png"})
	return &cli.Command{
		Name:        "interp",
		Usage:       "interpolate between two images or prompts",
		ArgsUsage:   "A B",
		Description: interpDescription,
		Flags:       flags,
		Action:      runInterp,
	}
}

func runVary(c *cli.Context) error {
	if c.NArg() == 0 {
		return usagef("no image given: dalle2 vary IMAGE")
	}
	if c.Int("n") < 1 {
		return usagef("-n must be at least 1, got %d", c.Int("n"))
	}
	images, err := readImages(c.Args().Slice())
	if err != nil {
		return err
	}
	v, err := newVarCLI(c, c.NArg()*c.Int("n"), false)
	if err != nil {
		return err
	}
	defer v.close()
	res, err := v.p.Vary(v.ctx(), images, v.o)
	return v.finish(res, err, map[string]string{"command": "vary", "images": strings.Join(c.Args().Slice(), "\n")}, false)
}

func runEdit(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef(`want IMAGE and "TEXT", got %d arguments`, c.NArg())
	}
	alpha := c.Float64("alpha")
	if !(alpha >= 0 && alpha <= 1) {
		return usagef("--alpha must be in [0, 1], got %v", alpha)
	}
	if c.Int("n") < 1 {
		return usagef("-n must be at least 1, got %d", c.Int("n"))
	}
	images, err := readImages(c.Args().Slice()[:1])
	if err != nil {
		return err
	}
	v, err := newVarCLI(c, c.Int("n"), true)
	if err != nil {
		return err
	}
	defer v.close()
	text := c.Args().Get(1)
	res, err := v.p.Edit(v.ctx(), images, text, alpha, v.o)
	return v.finish(res, err, map[string]string{"command": "edit", "image": c.Args().First(), "text": text, "alpha": fmt.Sprint(alpha)}, false)
}

func runInterp(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("want two endpoints A and B (images or prompts), got %d arguments", c.NArg())
	}
	k := c.Int("frames")
	if k < 2 {
		return usagef("--frames must be at least 2, got %d", k)
	}
	if c.String("output") == "-" && !c.Bool("grid") {
		return usagef("-o - writes one image: add --grid to write the contact sheet there, or use -o FILE")
	}
	v, err := newVarCLI(c, k, true)
	if err != nil {
		return err
	}
	defer v.close()
	var ends [2]model.Endpoint
	for i, arg := range c.Args().Slice() {
		if ends[i], err = v.endpoint(arg); err != nil {
			return err
		}
	}
	res, err := v.p.Interpolate(v.ctx(), ends[0], ends[1], k, v.o)
	return v.finish(res, err, map[string]string{"command": "interp", "a": c.Args().Get(0), "b": c.Args().Get(1), "frames": fmt.Sprint(k)}, c.Bool("grid"))
}

// varCLI is what vary, edit and interp share: the loaded pipeline, the
// options, the progress display and the dump.
type varCLI struct {
	c       *cli.Context
	f       *loader.File
	p       *model.Pipeline
	o       model.Options
	logf    func(format string, args ...any)
	verbose bool
	prog    *progress
	noise   *loader.Safetensors
	dump    []loader.Tensor
	dumped  map[string]bool
	out     string
	paths   []string // frame or image files, in order ("-": none)
	grid    string   // contact sheet file ("" none, "-" standard output)
}

// newVarCLI checks the flags and outputs for a run writing n images,
// loads the model and prepares the options.
func newVarCLI(c *cli.Context, n int, withPrior bool) (*varCLI, error) {
	quiet := anyBool(c, "quiet")
	stderr := stderrOf(c)
	v := &varCLI{c: c, verbose: anyBool(c, "verbose") && !quiet, out: c.String("output")}
	v.logf = func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(stderr, format, args...)
		}
	}
	if c.IsSet("seed") && c.IsSet("noise") {
		return nil, usagef("--seed and --noise exclude each other")
	}
	if c.Int64("seed") < -1 {
		return nil, usagef("--seed must be 0 or more (-1: random), got %d", c.Int64("seed"))
	}
	steps := []string{"decoder-steps", "sr-steps"}
	guidance := []string{"decoder-guidance"}
	if withPrior {
		steps, guidance = append(steps, "prior-steps"), append(guidance, "prior-guidance")
	}
	for _, f := range steps {
		if c.Int(f) < 2 {
			return nil, usagef("--%s must be at least 2, got %d", f, c.Int(f))
		}
	}
	for _, f := range guidance {
		if g := c.Float64(f); math.IsNaN(g) || math.IsInf(g, 0) {
			return nil, usagef("--%s must be a finite number, got %v", f, g)
		}
	}
	if c.Int("size") < 0 {
		return nil, usagef("--size must be positive, got %d", c.Int("size"))
	}
	if err := v.planOutputs(n, c.Bool("grid")); err != nil {
		return nil, err
	}

	f, name, err := openModel(c.String("model"))
	if err != nil {
		return nil, err
	}
	v.f = f
	start := time.Now()
	p, err := model.LoadPipelineWith(f, model.LoadOptions{LowMemory: c.Bool("low-memory")})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	v.p = p
	v.logf("loaded %s in %.2fs\n", name, time.Since(start).Seconds())
	if v.verbose {
		v.logf("model metadata: source=%q dtype=%q pipeline=%q converter=%q\n",
			p.Meta[loader.MetaSource], p.Meta[loader.MetaDType], p.Meta["pipeline"], p.Meta[loader.MetaConverter])
		v.logf("kernels: %s; threads: %d\n", asm.Name(), ops.Threads())
	}

	o := model.Defaults
	o.ImagesPerPrompt = c.Int("n")
	if withPrior {
		o.PriorSteps, o.PriorGuidance = c.Int("prior-steps"), float32(c.Float64("prior-guidance"))
	}
	o.DecoderSteps, o.SuperResSteps = c.Int("decoder-steps"), c.Int("sr-steps")
	o.DecoderGuidance = float32(c.Float64("decoder-guidance"))
	o.UpsampleAntialias = c.Bool("upsample-antialias")
	outSize := p.DecoderConfig.SampleSize
	if p.Has("super_res_first") {
		outSize = p.SuperResConfig.SampleSize
	}
	switch size := c.Int("size"); {
	case size == 0 || size == outSize:
	case size == p.DecoderConfig.SampleSize:
		o.DecoderOnly = true
	default:
		v.close()
		return nil, usagef("--size %d: this model makes %d (decoder) or %d (super-res) pixel images", size, p.DecoderConfig.SampleSize, outSize)
	}

	if path := c.String("noise"); path != "" {
		src, err := loader.OpenSafetensors(path)
		if err != nil {
			v.close()
			return nil, err
		}
		v.noise = src
		o.Noise = &model.ReplayNoise{Src: src, Name: path}
	} else {
		seed := c.Int64("seed")
		if seed < 0 {
			seed = randomSeed()
			v.logf("seed: %d\n", seed)
		}
		o.Noise = model.NewSeededNoise(uint64(seed))
	}
	if c.String("dump") != "" {
		v.dumped = map[string]bool{}
		o.Trace = func(name string, t *ops.Tensor) {
			// The noise is traced when drawn and again by the step that
			// uses it: keep the first.
			if !v.dumped[name] {
				v.dumped[name] = true
				v.dump = append(v.dump, tensorBytes(name, t))
			}
		}
	}
	if !quiet {
		v.prog = newProgress(stderr, isTerminalWriter(stderr))
		v.prog.startJob("")
		o.Progress = v.prog.step
	}
	v.o = o
	return v, nil
}

// ctx is the context the command runs under (run cancels it on SIGINT
// and SIGTERM).
func (v *varCLI) ctx() context.Context {
	if v.c.Context != nil {
		return v.c.Context
	}
	return context.Background()
}

func (v *varCLI) close() {
	if v.noise != nil {
		v.noise.Close()
	}
	if v.f != nil {
		v.f.Close()
	}
}

// planOutputs names the n output files (and the contact sheet) and checks
// their folders before any work is done.
func (v *varCLI) planOutputs(n int, grid bool) error {
	out := v.out
	if out == "-" {
		if n > 1 && !grid {
			return usagef("-o - writes one image; this run makes %d (use -o FILE)", n)
		}
		if isTerminalWriter(v.stdout()) {
			return usagef("refusing to write PNG data to a terminal; redirect standard output or use -o FILE")
		}
		if grid {
			v.grid = "-"
		} else {
			v.paths = []string{"-"}
		}
		return nil
	}
	v.paths = imagePaths(out, n)
	if grid {
		ext := filepath.Ext(out)
		v.grid = strings.TrimSuffix(out, ext) + "-grid" + ext
	}
	dir := filepath.Dir(out)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("output folder %s does not exist (for %s)", dir, out)
	}
	return nil
}

func (v *varCLI) stdout() io.Writer {
	if v.c.App != nil && v.c.App.Writer != nil {
		return v.c.App.Writer
	}
	return os.Stdout
}

// endpoint reads an interp argument: an existing .png/.jpg/.jpeg file is
// an image, anything else a prompt.
func (v *varCLI) endpoint(arg string) (model.Endpoint, error) {
	switch strings.ToLower(filepath.Ext(arg)) {
	case ".png", ".jpg", ".jpeg":
		if st, err := os.Stat(arg); err == nil && st.Mode().IsRegular() {
			img, err := model.ReadImageFile(arg)
			return model.Endpoint{Image: img}, err
		}
		v.logf("note: no file %s: using %q as a prompt\n", arg, arg)
	}
	return model.Endpoint{Prompt: arg}, nil
}

// readImages decodes the image files.
func readImages(paths []string) ([]image.Image, error) {
	images := make([]image.Image, len(paths))
	for i, path := range paths {
		img, err := model.ReadImageFile(path)
		if err != nil {
			return nil, err
		}
		images[i] = img
	}
	return images, nil
}

// finish reports the run's error or writes its dump, images and contact sheet.
func (v *varCLI) finish(res *model.Result, err error, meta map[string]string, grid bool) error {
	v.prog.end()
	if err == nil && v.c.Context != nil {
		err = v.c.Context.Err()
	}
	if err != nil {
		return err
	}
	if v.verbose {
		var parts []string
		total := 0.0
		for _, t := range res.Timings {
			parts = append(parts, fmt.Sprintf("%s %.2fs", t.Stage, t.Seconds))
			total += t.Seconds
		}
		v.logf("timings: %s; total %.2fs\n", strings.Join(parts, ", "), total)
	}
	if path := v.c.String("dump"); path != "" {
		if err := loader.WriteSafetensors(path, v.dump, meta); err != nil {
			return err
		}
	}
	n := res.Images.Dim(0)
	for k, path := range v.paths {
		if k >= n {
			break
		}
		if err := v.writePNG(path, resultImage(res, k)); err != nil {
			return err
		}
	}
	if grid && v.grid != "" {
		return v.writePNG(v.grid, contactSheet(res))
	}
	return nil
}

func (v *varCLI) writePNG(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	if path == "-" {
		if _, err := v.stdout().Write(buf.Bytes()); err != nil {
			return fmt.Errorf("writing PNG to standard output: %w", err)
		}
		return nil
	}
	if err := writeFileAtomic(path, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err }); err != nil {
		return err
	}
	v.logf("wrote %s\n", path)
	return nil
}

// resultImage is image k of res.
func resultImage(res *model.Result, k int) *image.NRGBA {
	h, w := res.Images.Dim(1), res.Images.Dim(2)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	px := res.Pixels[k*h*w*3 : (k+1)*h*w*3]
	for i := range h * w {
		copy(img.Pix[4*i:4*i+3], px[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img
}

// contactSheet lays res's images out left to right, 8 per row, on black.
func contactSheet(res *model.Result) *image.NRGBA {
	n, h, w := res.Images.Dim(0), res.Images.Dim(1), res.Images.Dim(2)
	cols := min(n, 8)
	rows := (n + cols - 1) / cols
	sheet := image.NewNRGBA(image.Rect(0, 0, cols*w, rows*h))
	for i := range sheet.Pix {
		if i%4 == 3 {
			sheet.Pix[i] = 255
		}
	}
	for k := range n {
		img := resultImage(res, k)
		x0, y0 := (k%cols)*w, (k/cols)*h
		for y := range h {
			copy(sheet.Pix[(y0+y)*sheet.Stride+4*x0:], img.Pix[y*img.Stride:(y+1)*img.Stride])
		}
	}
	return sheet
}
