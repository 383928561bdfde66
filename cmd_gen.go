package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

// builtinModel is ../shared/golden/tiny-unclip converted with
// "dalle2 convert --dtype f16": a tiny pipeline with RANDOM weights, so that
// gen works on a fresh machine with no download. It draws noise, not pictures.
//
//go:embed testdata/builtin-tiny-unclip-f16.d2
var builtinModel []byte

const builtinName = "built-in tiny-unclip (random weights)"

// builtinParam is how generation parameters name the built-in model.
const builtinParam = "builtin"

const genDescription = `Runs the unCLIP pipeline: CLIP text encoder -> prior -> decoder -> super-resolution.

PROMPTS
   Prompt arguments run as ONE batch, in order, exactly like the reference's list of
   prompts: one seed draws the noise of the whole batch.
   "-" (same as --prompts -) reads prompts from standard input, --prompts FILE from a
   file, one per line; surrounding blanks are removed and blank lines skipped. Each line
   is its own generation, run one after the other with the model loaded once. With
   --seed S, line k (counted from 0) uses seed S+k; without --seed a random S is drawn
   and printed; with --noise every line replays the same recorded noise. Prompt
   arguments and prompt lines do not mix.

OUTPUT
   -o FILE writes FILE. A run that makes several images writes x-0.png, x-1.png, ... for
   -o x.png, in order: prompt-major within a batch, then line by line. -o - writes the PNG
   to standard output (one image only; refused when standard output is a terminal, and
   with --json). -o may instead be a name template with these placeholders:
      {index}         the image's number in this run, from 0
      {prompt_index}  its prompt's number in this run (argument or line), from 0
      {image_index}   its number among its prompt's -n images, from 0
      {seed}          its generation's seed (with --noise: the noise file's name)
      {slug}          its prompt in lower case, letters and digits joined by "-"
   Numbers take a zero-padded width, {index:03} -> 007; {slug:20} keeps 20 characters
   (at most 48 by default). Each image must get its own name. Missing folders are an
   error. Files appear only when complete (written to a temporary file, then renamed).

   Each PNG records how it was made in a text chunk (iTXt "dalle2": prompt, batch,
   seed or noise file, steps, guidance, size, model and its source, kernels, version).
   'dalle2 info IMAGE.png' prints it; --from-png IMAGE.png makes the same image again,
   byte for byte with the same model file and dalle2 build on the same kind of CPU.
   Flags given with --from-png (--seed, steps, guidance, --size, --model, ...)
   override the recorded values.

PROGRESS AND SCRIPTS
   Progress goes to standard error: on a terminal a bar per stage with step/total,
   seconds per step and ETA; otherwise one line per step; nothing with --quiet.
   --json prints one JSON object per written image on standard output:
   {"path", "prompt", "index", "prompt_index", "image_index", "seed" (null with
   --noise), "noise", "width", "height", "timings": {stage: seconds}, "seconds"}.
   Ctrl-C (SIGINT) or SIGTERM stops between denoising steps; images already written
   stay, no partial file is left, and the exit status is 130 (143).

Examples:
   dalle2 gen "a red horse" -o horse.png --seed 7
   dalle2 gen "a cat" "a dog" -n 2 -o pets.png --model karlo.d2
   echo "a lighthouse at dawn" | dalle2 gen - -o - > lighthouse.png
   dalle2 gen --prompts prompts.txt --seed 100 -o "out/{index:03}-{slug}-{seed}.png"
   dalle2 gen "a red horse" --json -q -o "horse-{image_index}.png" -n 4 | jq -r .path
   dalle2 gen --from-png horse.png -o again.png
   dalle2 gen --from-png horse.png --decoder-steps 50 -o finer.png`

func genCommand() *cli.Command {
	d := model.Defaults
	return &cli.Command{
		Name:        "gen",
		Usage:       "generate images from text prompts",
		ArgsUsage:   `["prompt" ...] | - | --prompts FILE | --from-png IMAGE.png`,
		Description: genDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "weight `FILE` from 'dalle2 convert' (default: the built-in tiny random-weight model)", EnvVars: []string{"DALLE2_MODEL"}, TakesFile: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "dalle2.png", Usage: "output PNG `FILE` or name template (see above); \"-\": standard output", TakesFile: true},
			&cli.StringFlag{Name: "prompts", Usage: "read prompts from `FILE`, one per line, each its own generation (\"-\": standard input)", TakesFile: true},
			&cli.StringFlag{Name: "from-png", Usage: "make the image recorded in `IMAGE.png` again (its text chunk)", TakesFile: true},
			&cli.Int64Flag{Name: "seed", Value: -1, Usage: "random seed `N` (torch-compatible CPU normal generator); -1: pick one and print it"},
			&cli.StringFlag{Name: "noise", Usage: "replay recorded noise from a .safetensors `FILE` (golden case names) instead of a seed", TakesFile: true},
			&cli.StringFlag{Name: "dump", Usage: "write every intermediate tensor to this .safetensors `FILE` (golden names)", TakesFile: true},
			&cli.IntFlag{Name: "prior-steps", Value: d.PriorSteps, Usage: "prior denoising steps `N`"},
			&cli.IntFlag{Name: "decoder-steps", Value: d.DecoderSteps, Usage: "decoder denoising steps `N`"},
			&cli.IntFlag{Name: "sr-steps", Value: d.SuperResSteps, Usage: "super-resolution denoising steps `N`"},
			&cli.Float64Flag{Name: "prior-guidance", Value: float64(d.PriorGuidance), Usage: "prior classifier-free guidance `SCALE`"},
			&cli.Float64Flag{Name: "decoder-guidance", Value: float64(d.DecoderGuidance), Usage: "decoder classifier-free guidance `SCALE`"},
			&cli.IntFlag{Name: "n", Value: 1, Usage: "`N` images per prompt"},
			&cli.IntFlag{Name: "size", Usage: "output size in `PIXELS`: the decoder's (64 for Karlo) stops after the decoder", DefaultText: "the super-res size, 256 for Karlo"},
			&cli.BoolFlag{Name: "upsample-antialias", Usage: "antialiased bicubic (a=-0.5) from decoder to super-res, as diffusers asks of PyTorch >= 1.11; default: plain bicubic, as in the golden reference run"},
			&cli.BoolFlag{Name: "low-memory", Usage: "build each model just before its stage and release it after, and drop each block's weights once it has run: about one block's weights in memory at a time (same images, a little slower)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON line per written image on standard output (path, prompt, seed, timings)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or messages on stderr (same as the global --quiet)"},
		},
		Action: runGen,
	}
}

// genSettings are the parameters shared by every generation of a run.
type genSettings struct {
	model                          string // weight file; "" is the built-in model
	n                              int
	priorSteps, decoderSteps       int
	srSteps                        int
	priorGuidance, decoderGuidance float64
	size                           int // 0: the model's full size
	antialias                      bool
	noise                          string // replayed noise file (absolute), or ""
	randomSeed                     bool   // the seed was drawn, not given
}

// genJob is one pipeline run: a batch of prompts.
type genJob struct {
	prompts    []string
	promptBase int    // number of prompts[0] among the run's prompts
	seed       uint64 // when noise is ""
	only       int    // write only this batch index (--from-png); -1: all
}

// plannedImage is one image a run writes.
type plannedImage struct {
	job        *genJob
	batchIndex int // index in the job's output batch
	index      int // number in the run
	path       string
}

func runGen(c *cli.Context) error {
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	quiet := anyBool(c, "quiet")
	verbose := anyBool(c, "verbose") && !quiet
	stderr := stderrOf(c)
	logf := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(stderr, format, args...)
		}
	}

	s, jobs, fromPNG, err := genPlan(c)
	if err != nil {
		return err
	}
	if c.String("dump") != "" && len(jobs) > 1 {
		return usagef("--dump records one generation; this run has %d (one per prompt line)", len(jobs))
	}
	images, err := planOutputs(c, s, jobs)
	if err != nil {
		return err
	}

	// The model.
	f, name, err := openModel(s.model)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	p, err := model.LoadPipelineWith(f, model.LoadOptions{LowMemory: c.Bool("low-memory")})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	loaded := time.Since(start)

	o := model.Defaults
	o.ImagesPerPrompt = s.n
	o.PriorSteps, o.DecoderSteps, o.SuperResSteps = s.priorSteps, s.decoderSteps, s.srSteps
	o.PriorGuidance, o.DecoderGuidance = float32(s.priorGuidance), float32(s.decoderGuidance)
	o.UpsampleAntialias = s.antialias
	outSize := p.DecoderConfig.SampleSize
	if p.Has("super_res_first") {
		outSize = p.SuperResConfig.SampleSize
	}
	switch {
	case s.size == 0 || s.size == outSize:
	case s.size == p.DecoderConfig.SampleSize:
		o.DecoderOnly = true
		outSize = s.size
	default:
		return usagef("--size %d: this model makes %d (decoder) or %d (super-res) pixel images", s.size, p.DecoderConfig.SampleSize, outSize)
	}
	if fromPNG != nil && fromPNG.only >= len(fromPNG.prompts)*s.n {
		return fmt.Errorf("%s: batch index %d out of range for %d prompts x %d images", c.String("from-png"), fromPNG.only, len(fromPNG.prompts), s.n)
	}

	if s.model == "" {
		logf("warning: using the built-in tiny model, which has RANDOM weights: the image is noise.\n" +
			"         Convert Karlo (see README) and pass --model for real images.\n")
	}
	logf("loaded %s in %.2fs\n", name, loaded.Seconds())
	if verbose {
		logf("model metadata: source=%q dtype=%q pipeline=%q converter=%q\n",
			p.Meta[loader.MetaSource], p.Meta[loader.MetaDType], p.Meta["pipeline"], p.Meta[loader.MetaConverter])
		logf("kernels: %s; threads: %d\n", asm.Name(), ops.Threads())
	}

	var replay *model.ReplayNoise
	if s.noise != "" {
		src, err := loader.OpenSafetensors(s.noise)
		if err != nil {
			return err
		}
		defer src.Close()
		replay = &model.ReplayNoise{Src: src, Name: s.noise}
	}
	params := genParams{
		Version:         version,
		ImagesPerPrompt: s.n,
		Noise:           s.noise,
		PriorSteps:      s.priorSteps, DecoderSteps: s.decoderSteps, SuperResSteps: s.srSteps,
		PriorGuidance: s.priorGuidance, DecoderGuidance: s.decoderGuidance,
		Size:              outSize,
		UpsampleAntialias: s.antialias,
		Model:             builtinParam,
		ModelSource:       p.Meta[loader.MetaSource],
		ModelDType:        p.Meta[loader.MetaDType],
		Kernels:           asm.Name(),
	}
	if s.model != "" {
		params.Model = s.model
	}

	if s.randomSeed {
		if len(jobs) > 1 {
			logf("seed: %d (line k uses seed %d+k)\n", jobs[0].seed, jobs[0].seed)
		} else {
			logf("seed: %d\n", jobs[0].seed)
		}
	}
	var prog *progress
	if !quiet {
		prog = newProgress(stderr, isTerminalWriter(stderr))
	}
	stdout := c.App.Writer
	if stdout == nil {
		stdout = os.Stdout
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	next := 0 // first planned image of the job
	for j, job := range jobs {
		if len(jobs) > 1 {
			prog.startJob(fmt.Sprintf("[%d/%d] ", j+1, len(jobs)))
		} else {
			prog.startJob("")
		}
		oj := o
		oj.Prompts = job.prompts
		if replay != nil {
			oj.Noise = replay
		} else {
			oj.Noise = model.NewSeededNoise(job.seed)
		}
		var dump []loader.Tensor
		if c.String("dump") != "" {
			oj.Trace = func(name string, t *ops.Tensor) { dump = append(dump, tensorBytes(name, t)) }
		}
		if prog != nil {
			oj.Progress = prog.step
		}
		res, err := p.Generate(ctx, oj)
		prog.end()
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return err
		}
		total := 0.0
		timings := map[string]float64{}
		var parts []string
		for _, t := range res.Timings {
			timings[t.Stage] = math.Round(t.Seconds*1e6) / 1e6
			total += t.Seconds
			parts = append(parts, fmt.Sprintf("%s %.2fs", t.Stage, t.Seconds))
		}
		if verbose {
			logf("timings: %s; total %.2fs\n", strings.Join(parts, ", "), total)
		}
		if len(dump) > 0 {
			if err := loader.WriteSafetensors(c.String("dump"), dump, map[string]string{"prompts": strings.Join(job.prompts, "\n")}); err != nil {
				return err
			}
		}

		jp := params
		if s.noise == "" {
			seed := job.seed
			jp.Seed = &seed
		}
		if len(job.prompts) > 1 {
			jp.Batch = job.prompts
		}
		for ; next < len(images) && images[next].job == job; next++ {
			im := images[next]
			ip := jp
			ip.Prompt = job.prompts[im.batchIndex/s.n]
			ip.BatchIndex = im.batchIndex
			data, err := encodePNG(res, im.batchIndex, &ip)
			if err != nil {
				return err
			}
			if im.path == "-" {
				if _, err := stdout.Write(data); err != nil {
					return fmt.Errorf("writing PNG to standard output: %w", err)
				}
			} else {
				if err := writeFileAtomic(im.path, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
					return err
				}
				logf("wrote %s\n", im.path)
			}
			if c.Bool("json") {
				rec := genRecord{
					Path: im.path, Prompt: ip.Prompt, Index: im.index,
					PromptIndex: job.promptBase + im.batchIndex/s.n, ImageIndex: im.batchIndex % s.n,
					Seed: ip.Seed, Noise: s.noise, Width: res.Images.Dim(2), Height: res.Images.Dim(1),
					Timings: timings, Seconds: math.Round(total*1e6) / 1e6,
				}
				if err := enc.Encode(rec); err != nil {
					return fmt.Errorf("writing JSON to standard output: %w", err)
				}
			}
		}
	}
	return nil
}

// genRecord is one line of gen --json.
type genRecord struct {
	Path        string             `json:"path"`
	Prompt      string             `json:"prompt"`
	Index       int                `json:"index"`
	PromptIndex int                `json:"prompt_index"`
	ImageIndex  int                `json:"image_index"`
	Seed        *uint64            `json:"seed"`
	Noise       string             `json:"noise,omitempty"`
	Width       int                `json:"width"`
	Height      int                `json:"height"`
	Timings     map[string]float64 `json:"timings"`
	Seconds     float64            `json:"seconds"`
}

// genPlan reads the flags, the prompts and --from-png into the run's
// settings and jobs. fromPNG is the single job of a --from-png run.
func genPlan(c *cli.Context) (s genSettings, jobs []*genJob, fromPNG *genJob, err error) {
	s = genSettings{
		model: c.String("model"), n: c.Int("n"),
		priorSteps: c.Int("prior-steps"), decoderSteps: c.Int("decoder-steps"), srSteps: c.Int("sr-steps"),
		priorGuidance: c.Float64("prior-guidance"), decoderGuidance: c.Float64("decoder-guidance"),
		size: c.Int("size"), antialias: c.Bool("upsample-antialias"), noise: c.String("noise"),
	}
	if c.IsSet("seed") && c.IsSet("noise") {
		return s, nil, nil, usagef("--seed and --noise exclude each other")
	}
	if c.Int64("seed") < -1 {
		return s, nil, nil, usagef("--seed must be 0 or more (-1: random), got %d", c.Int64("seed"))
	}
	if c.Bool("json") && c.String("output") == "-" {
		return s, nil, nil, usagef("--json prints JSON on standard output, so PNGs cannot go there (-o -): use -o FILE")
	}
	seed := c.Int64("seed")

	if png := c.String("from-png"); png != "" {
		if c.NArg() > 0 || c.IsSet("prompts") {
			return s, nil, nil, usagef("--from-png takes the prompt from the PNG: give no prompt and no --prompts")
		}
		if c.IsSet("n") {
			return s, nil, nil, usagef("--from-png remakes one recorded image: -n is recorded and cannot change")
		}
		g, err := readGenParams(png)
		if err != nil {
			return s, nil, nil, err
		}
		if explicitModel(c) == "" {
			s.model = g.Model
			if s.model == builtinParam {
				s.model = ""
			}
		}
		s.n = g.ImagesPerPrompt
		setInt := func(dst *int, flag string, v int) {
			if !c.IsSet(flag) {
				*dst = v
			}
		}
		setInt(&s.priorSteps, "prior-steps", g.PriorSteps)
		setInt(&s.decoderSteps, "decoder-steps", g.DecoderSteps)
		setInt(&s.srSteps, "sr-steps", g.SuperResSteps)
		setInt(&s.size, "size", g.Size)
		if !c.IsSet("prior-guidance") {
			s.priorGuidance = g.PriorGuidance
		}
		if !c.IsSet("decoder-guidance") {
			s.decoderGuidance = g.DecoderGuidance
		}
		if !c.IsSet("upsample-antialias") {
			s.antialias = g.UpsampleAntialias
		}
		job := &genJob{prompts: g.prompts(), only: g.BatchIndex}
		switch {
		case c.IsSet("noise"):
		case c.IsSet("seed"):
			if seed < 0 {
				seed, s.randomSeed = randomSeed(), true
			}
			job.seed = uint64(seed)
		case g.Seed != nil:
			job.seed = *g.Seed
		case g.Noise != "":
			s.noise = g.Noise
		default:
			return s, nil, nil, fmt.Errorf("%s: the recorded parameters have neither a seed nor a noise file", png)
		}
		if err := s.check(); err != nil {
			return s, nil, nil, err
		}
		return s, []*genJob{job}, job, nil
	}

	if err := s.check(); err != nil {
		return s, nil, nil, err
	}
	var literal []string
	dash := false
	for _, a := range c.Args().Slice() {
		if a == "-" {
			dash = true
		} else {
			literal = append(literal, a)
		}
	}
	lines := c.String("prompts")
	switch {
	case dash && lines != "":
		return s, nil, nil, usagef("give - or --prompts FILE, not both")
	case len(literal) > 0 && (dash || lines != ""):
		return s, nil, nil, usagef("prompt arguments run as one batch and prompt lines (- or --prompts) one by one: give one or the other")
	case dash:
		lines = "-"
	}
	if seed < 0 {
		seed, s.randomSeed = randomSeed(), true
	}
	if lines == "" {
		if len(literal) == 0 {
			return s, nil, nil, usagef("no prompt given: dalle2 gen \"a red horse\" (or - to read prompts from standard input)")
		}
		return s, []*genJob{{prompts: literal, seed: uint64(seed), only: -1}}, nil, nil
	}
	var r io.Reader = c.App.Reader
	name := "standard input"
	if r == nil {
		r = os.Stdin
	}
	if lines != "-" {
		f, err := os.Open(lines)
		if err != nil {
			return s, nil, nil, err
		}
		defer f.Close()
		r, name = f, lines
	}
	prompts, err := readPromptLines(r, name)
	if err != nil {
		return s, nil, nil, err
	}
	if len(prompts) == 0 {
		return s, nil, nil, usagef("no prompt given: %s has no non-blank line", name)
	}
	for k, p := range prompts {
		jobs = append(jobs, &genJob{prompts: []string{p}, promptBase: k, seed: uint64(seed) + uint64(k), only: -1})
	}
	return s, jobs, nil, nil
}

// explicitModel is --model when given on the command line ("" when not
// given, or when it only comes from DALLE2_MODEL: a PNG's recorded model
// beats the environment's default).
func explicitModel(c *cli.Context) string {
	m := c.String("model")
	if !c.IsSet("model") || m == os.Getenv("DALLE2_MODEL") {
		return ""
	}
	return m
}

// check validates the settings and makes the model and noise paths
// absolute (they are recorded in the PNGs).
func (s *genSettings) check() error {
	if s.n < 1 {
		return usagef("-n must be at least 1, got %d", s.n)
	}
	for _, st := range []struct {
		flag string
		v    int
	}{{"prior-steps", s.priorSteps}, {"decoder-steps", s.decoderSteps}, {"sr-steps", s.srSteps}} {
		if st.v < 2 {
			return usagef("--%s must be at least 2, got %d", st.flag, st.v)
		}
	}
	for _, g := range []struct {
		flag string
		v    float64
	}{{"prior-guidance", s.priorGuidance}, {"decoder-guidance", s.decoderGuidance}} {
		if math.IsNaN(g.v) || math.IsInf(g.v, 0) {
			return usagef("--%s must be a finite number, got %v", g.flag, g.v)
		}
	}
	if s.size < 0 {
		return usagef("--size must be positive, got %d", s.size)
	}
	var err error
	if s.model != "" {
		if s.model, err = filepath.Abs(s.model); err != nil {
			return err
		}
	}
	if s.noise != "" {
		if s.noise, err = filepath.Abs(s.noise); err != nil {
			return err
		}
	}
	return nil
}

// randomSeed draws a seed below 2^32 (short enough to type back).
func randomSeed() int64 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint32(b[:]))
}

// readPromptLines returns the non-blank lines of r, without their
// surrounding blanks (and \r of CRLF line ends).
func readPromptLines(r io.Reader, name string) ([]string, error) {
	var prompts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			prompts = append(prompts, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading prompts from %s: %w", name, err)
	}
	return prompts, nil
}

// planOutputs names every image the run writes and checks the names:
// distinct, standard output only for a single image and not a terminal,
// existing folders.
func planOutputs(c *cli.Context, s genSettings, jobs []*genJob) ([]plannedImage, error) {
	out := c.String("output")
	var images []plannedImage
	for _, job := range jobs {
		for b := 0; b < len(job.prompts)*s.n; b++ {
			if job.only >= 0 && b != job.only {
				continue
			}
			images = append(images, plannedImage{job: job, batchIndex: b, index: len(images)})
		}
	}
	if out == "-" {
		if len(images) > 1 {
			return nil, usagef("-o - writes one image; this run makes %d (use -o FILE or a name template)", len(images))
		}
		if w, ok := c.App.Writer.(*os.File); ok && isTerminal(w) {
			return nil, usagef("refusing to write PNG data to a terminal; redirect standard output or use -o FILE")
		}
		images[0].path = "-"
		return images, nil
	}
	tmpl := placeholderRE.MatchString(out)
	if tmpl {
		if err := checkTemplate(out); err != nil {
			return nil, err
		}
	}
	paths := imagePaths(out, len(images))
	seen := map[string]int{}
	for i := range images {
		im := &images[i]
		if tmpl {
			im.path = expandTemplate(out, templateVars{
				index: im.index, promptIndex: im.job.promptBase + im.batchIndex/s.n, imageIndex: im.batchIndex % s.n,
				seed: seedLabel(s, im.job), prompt: im.job.prompts[im.batchIndex/s.n],
			})
		} else {
			im.path = paths[i]
		}
		if j, dup := seen[im.path]; dup {
			return nil, usagef("-o %q names images %d and %d both %q: add {index} to the template", out, j, i, im.path)
		}
		seen[im.path] = i
	}
	checked := map[string]bool{}
	for _, im := range images {
		dir := filepath.Dir(im.path)
		if checked[dir] {
			continue
		}
		checked[dir] = true
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("output folder %s does not exist (for %s)", dir, im.path)
		}
	}
	return images, nil
}

// seedLabel is what {seed} stands for in an image name.
func seedLabel(s genSettings, job *genJob) string {
	if s.noise != "" {
		return strings.TrimSuffix(filepath.Base(s.noise), filepath.Ext(s.noise))
	}
	return strconv.FormatUint(job.seed, 10)
}

// placeholderRE matches a name-template placeholder: {name} or {name:width}.
var placeholderRE = regexp.MustCompile(`\{([a-z_]+)(?::(\d+))?\}`)

// templateVars are the values of one image's placeholders.
type templateVars struct {
	index, promptIndex, imageIndex int
	seed, prompt                   string
}

func checkTemplate(out string) error {
	for _, m := range placeholderRE.FindAllStringSubmatch(out, -1) {
		switch m[1] {
		case "index", "prompt_index", "image_index", "seed", "slug":
		default:
			return usagef("-o %q: unknown placeholder {%s}; use {index}, {prompt_index}, {image_index}, {seed} or {slug}", out, m[1])
		}
	}
	return nil
}

// expandTemplate fills in a name template (checked by checkTemplate).
func expandTemplate(out string, v templateVars) string {
	return placeholderRE.ReplaceAllStringFunc(out, func(s string) string {
		m := placeholderRE.FindStringSubmatch(s)
		width, _ := strconv.Atoi(m[2])
		num := func(n string) string {
			if len(n) < width {
				n = strings.Repeat("0", width-len(n)) + n
			}
			return n
		}
		switch m[1] {
		case "index":
			return num(strconv.Itoa(v.index))
		case "prompt_index":
			return num(strconv.Itoa(v.promptIndex))
		case "image_index":
			return num(strconv.Itoa(v.imageIndex))
		case "seed":
			return num(v.seed)
		case "slug":
			if width == 0 {
				width = 48
			}
			return slug(v.prompt, width)
		}
		return s
	})
}

// slug is the prompt in lower case with runs of other characters than
// letters and digits replaced by "-", at most n letters long (cut at a "-"
// when one is near), "image" when nothing is left.
func slug(prompt string, n int) string {
	var b []rune
	dash := false
	for _, r := range strings.ToLower(prompt) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			b = append(b, r)
			dash = false
		} else {
			dash = true
		}
	}
	if len(b) > n {
		cut := n
		for i := n; i > n/2; i-- {
			if b[i] == '-' {
				cut = i
				break
			}
		}
		b = b[:cut]
	}
	s := strings.Trim(string(b), "-")
	if s == "" {
		return "image"
	}
	return s
}

// openModel opens the weight file at path, or the built-in model if path is empty.
func openModel(path string) (*loader.File, string, error) {
	if path == "" {
		f, err := loader.OpenBytes(builtinModel, builtinName)
		return f, builtinName, err
	}
	f, err := loader.Open(path)
	if err != nil && !strings.Contains(err.Error(), path) {
		err = fmt.Errorf("model %s: %w", path, err)
	}
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
// "-K" before the extension, in order.
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

// encodePNG encodes image k of res as PNG carrying params in text chunks.
func encodePNG(res *model.Result, k int, params *genParams) ([]byte, error) {
	h, w := res.Images.Dim(1), res.Images.Dim(2)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	px := res.Pixels[k*h*w*3 : (k+1)*h*w*3]
	for i := 0; i < h*w; i++ {
		copy(img.Pix[4*i:4*i+3], px[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	chunks, err := pngTextChunks(params)
	if err != nil {
		return nil, err
	}
	return insertTextChunks(buf.Bytes(), chunks...)
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

// isTerminalWriter reports whether w is a terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}
