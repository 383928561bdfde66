package model

// The image-variation pipeline (diffusers' UnCLIPImageVariationPipeline,
// spec §11) and two more uses of the decoder's image-embedding input:
// text-guided edits and interpolation.
//
// All three decode with the same code: an image embedding per row plus
// the text conditioning, then §10.1 steps 3–6. Their random draws are the
// variation pipeline's, in its order (decoder latents, decoder step noises,
// super-res latents, super-res step noises), made before anything else;
// the prior's draws, when a prompt needs them, come after. So an edit or an
// interpolation frame that lands exactly on an image's embedding reproduces
// Vary bit for bit with the same Noise, seeded or replayed.

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"strings"
	"time"

	"github.com/dalle2/dalle2/ops"
)

// ImageProcessor is the preprocessing ImageEmbeddings applies: CLIP's
// (DefaultCLIPImageProcessorConfig) at the image encoder's input size,
// which is what both Karlo's and the golden tiny pipeline's
// preprocessor_config.json specify.
func (p *Pipeline) ImageProcessor() (*CLIPImageProcessor, error) {
	if !p.Has("image_encoder") {
		return nil, errNoImageEncoder
	}
	if p.FeatureExtractor != nil {
		return NewCLIPImageProcessor(*p.FeatureExtractor)
	}
	return NewCLIPImageProcessor(DefaultCLIPImageProcessorConfig(p.parts.imageEncoder.ImageSize))
}

var errNoImageEncoder = errors.New("this model file has no image encoder (convert a pipeline that has one, e.g. kakaobrain/karlo-v1-alpha-image-variations)")

// ImageEmbeddings preprocesses images and runs the image encoder on them
// as one batch: the CLIP image embeddings [N, E] (not normalised), owned
// by the caller.
func (p *Pipeline) ImageEmbeddings(images []image.Image) (*ops.Tensor, error) {
	return p.imageEmbeddings(images, func(string, *ops.Tensor) {})
}

func (p *Pipeline) imageEmbeddings(images []image.Image, trace func(string, *ops.Tensor)) (*ops.Tensor, error) {
	proc, err := p.ImageProcessor()
	if err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("no image")
	}
	px, err := proc.Preprocess(images)
	if err != nil {
		return nil, err
	}
	c := *p.parts.imageEncoder
	if c.NumChannels != 3 || px.Dim(2) != c.ImageSize || px.Dim(3) != c.ImageSize {
		return nil, fmt.Errorf("preprocessed images are %v, the image encoder takes [N, %d, %d, %d]", px.Shape, c.NumChannels, c.ImageSize, c.ImageSize)
	}
	trace("feature_extractor.pixel_values", px)
	if err := p.use("image_encoder"); err != nil {
		return nil, err
	}
	emb, _ := p.ImageEncoder.Forward(px)
	emb = emb.Clone() // the encoder's arena is reused by its next call
	trace("image_encoder.image_embeds", emb)
	return emb, nil
}

// Vary runs the image-variation pipeline on images: each image's CLIP
// embedding conditions the decoder, with the empty prompt's text
// conditioning (for both halves under guidance, whose unconditional image
// row is text_proj's learned vector), then the super-resolution stage.
// o.ImagesPerPrompt is the number of variations of each image (the batch
// is image-major); o.Prompts and the prior's settings are not used.
// Guidance is on iff o.DecoderGuidance > 1, as in diffusers.
func (p *Pipeline) Vary(ctx context.Context, images []image.Image, o Options) (*Result, error) {
	if len(images) == 0 {
		return nil, errors.New("no image")
	}
	r, err := p.newVarRun(o, len(images)*max(o.ImagesPerPrompt, 1), false)
	if err != nil {
		return nil, err
	}
	c, err := r.imageCond(images, o.ImagesPerPrompt)
	if err != nil {
		return nil, err
	}
	return r.decode(ctx, c, r.trace)
}

// Edit moves each image's embedding towards the prior's embedding for
// text and decodes the result, as in the DALL-E 2 paper's text diffs
// (§3.3), with one choice made explicit: the paper rotates the image
// embedding z_i towards a normalised text-embedding difference z_d; here
// the target is the image embedding z_p the prior produces for text (what
// the decoder was trained on), and the embedding decoded is
//
//	slerp(z_i, z_p, α) = sin((1−α)θ)/sin θ · z_i + sin(αθ)/sin θ · z_p,  cos θ = ẑ_i·ẑ_p
//
// with the angle of the normalised vectors and the weights applied to the
// raw ones, as Karlo's and diffusers' unCLIP interpolation examples do
// (see slerp). The decoder's text conditioning moves with it, from the
// empty prompt's (Vary's) to text's, by the same slerp on the text
// embedding and the encoder hidden states (mask: union of the two), as in
// diffusers' UnCLIPTextInterpolationPipeline. α = 0 is Vary exactly (with
// the same Noise: the prior's draws come after the decoder's), α = 1 the
// text's own prior embedding and conditioning. α must be in [0, 1].
//
// The prior runs once per output image ([text] × len(images), each
// o.ImagesPerPrompt times) with o's prior settings; its guidance is on iff
// o.PriorGuidance > 1 or o.DecoderGuidance > 1 (as in Generate), the
// decoder's iff o.DecoderGuidance > 1 (as in Vary).
func (p *Pipeline) Edit(ctx context.Context, images []image.Image, text string, alpha float64, o Options) (*Result, error) {
	if !(alpha >= 0 && alpha <= 1) {
		return nil, fmt.Errorf("edit strength alpha must be in [0, 1], got %v", alpha)
	}
	if len(images) == 0 {
		return nil, errors.New("no image")
	}
	r, err := p.newVarRun(o, len(images)*max(o.ImagesPerPrompt, 1), true)
	if err != nil {
		return nil, err
	}
	from, err := r.imageCond(images, o.ImagesPerPrompt)
	if err != nil {
		return nil, err
	}
	prompts := make([]string, len(images))
	for i := range prompts {
		prompts[i] = text
	}
	to, err := r.promptCond(ctx, prompts, o.ImagesPerPrompt, r.trace)
	if err != nil {
		return nil, err
	}
	return r.decode(ctx, mixCond(from, to, alpha), r.trace)
}

// Endpoint is one end of an interpolation: an image (when Image is set)
// or a prompt, whose embedding is the prior's.
type Endpoint struct {
	Prompt string
	Image  image.Image
}

// String describes the endpoint for messages.
func (e Endpoint) String() string {
	if e.Image != nil {
		return "image"
	}
	return fmt.Sprintf("prompt %q", e.Prompt)
}

// Interpolate decodes frames ≥ 2 embeddings along slerp(a, b, t_k),
// t_k = k/(frames−1) (see Edit for the slerp and the text conditioning,
// which follows the same path), one image per frame in order. Every frame
// uses the same noise: it is drawn once (decoder and super-res first, in
// Vary's order, then the prior's, shared by two prompt endpoints) and
// replayed for each frame, so the first and last frames are exactly the
// endpoints decoded alone with that noise (Vary for an image, Generate
// for a prompt). Frames are decoded one at a time (batch 1);
// o.ImagesPerPrompt is not used. Trace names are prefixed "a." and "b."
// for the endpoints' own computations and "frame.NN." per frame; every
// noise tensor is traced once under its plain name.
func (p *Pipeline) Interpolate(ctx context.Context, a, b Endpoint, frames int, o Options) (*Result, error) {
	if frames < 2 {
		return nil, fmt.Errorf("interpolation needs at least 2 frames, got %d", frames)
	}
	o.ImagesPerPrompt = 1
	r, err := p.newVarRun(o, 1, a.Image == nil || b.Image == nil)
	if err != nil {
		return nil, err
	}
	ends := make([]decodeCond, 2)
	for i, e := range []Endpoint{a, b} {
		tr := prefixTrace(r.trace, string(rune('a'+i))+".")
		var err error
		if e.Image != nil {
			ends[i], err = r.imageCondTraced([]image.Image{e.Image}, 1, tr)
		} else {
			ends[i], err = r.promptCond(ctx, []string{e.Prompt}, 1, tr)
		}
		if err != nil {
			return nil, fmt.Errorf("endpoint %c (%v): %w", 'A'+i, e, err)
		}
	}
	var out *Result
	progress := o.Progress
	for k := range frames {
		t := float64(k) / float64(frames-1)
		if progress != nil {
			r.o.Progress = func(stage string, step, total int) {
				progress(fmt.Sprintf("%s %d/%d", stage, k+1, frames), step, total)
			}
		}
		res, err := r.decode(ctx, mixCond(ends[0], ends[1], t), prefixTrace(r.trace, fmt.Sprintf("frame.%02d.", k)))
		if err != nil {
			return nil, err
		}
		if out == nil {
			s := res.Images.Shape
			out = &Result{Images: ops.New(frames, s[1], s[2], s[3]), Pixels: make([]uint8, 0, frames*len(res.Pixels))}
		}
		ops.Copy(out.Images.Rows(k, k+1), res.Images)
		out.Pixels = append(out.Pixels, res.Pixels...)
	}
	out.Timings = r.timings
	return out, nil
}

// ---------------------------------------------------------------------------
// Shared machinery

// varRun is the state of one Vary, Edit or Interpolate call.
type varRun struct {
	p       *Pipeline
	o       Options // o.Noise is the run's fixedNoise
	trace   func(string, *ops.Tensor)
	cfg     bool // decoder guidance (the variation pipeline's rule)
	timings []StageTiming
	start   time.Time
}

// newVarRun checks the pipeline and options and draws the decoder's and
// super-res stage's noise for a batch of n, in the order Vary draws it.
func (p *Pipeline) newVarRun(o Options, n int, prior bool) (*varRun, error) {
	var missing []string
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"image_encoder", p.Has("image_encoder")}, {"tokenizer", p.Tokenizer != nil}, {"text_encoder", p.Has("text_encoder")},
		{"text_proj", p.Has("text_proj")}, {"decoder", p.Has("decoder")}, {"decoder_scheduler", p.DecoderScheduler != nil},
		{"prior", !prior || p.Has("prior")}, {"prior_scheduler", !prior || p.PriorScheduler != nil},
	} {
		if !c.ok {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		what := "image variations (needs image_encoder, tokenizer, text_encoder, text_proj, decoder and decoder_scheduler)"
		if prior {
			what = "edits and interpolation with prompts (needs the text-to-image components and an image_encoder)"
		}
		return nil, fmt.Errorf("this model file cannot do %s: it lacks %s", what, strings.Join(missing, ", "))
	}
	e := p.TextProjConfig.ClipEmbeddingsDim
	if d := p.parts.imageEncoder.ProjectionDim; d != e {
		return nil, fmt.Errorf("image_encoder makes %d-dimensional embeddings, text_proj takes %d", d, e)
	}
	if prior && p.parts.prior.EmbeddingDim != e {
		return nil, fmt.Errorf("prior makes %d-dimensional embeddings, text_proj takes %d", p.parts.prior.EmbeddingDim, e)
	}
	if o.Noise == nil {
		return nil, errors.New("model: Options.Noise is nil")
	}
	if o.ImagesPerPrompt < 1 {
		return nil, fmt.Errorf("images per input must be at least 1, got %d", o.ImagesPerPrompt)
	}
	trace := o.Trace
	if trace == nil {
		trace = func(string, *ops.Tensor) {}
	}
	noise := &fixedNoise{src: o.Noise, drawn: map[string]*ops.Tensor{}, trace: trace}
	o.Noise = noise
	r := &varRun{p: p, o: o, trace: trace, cfg: o.DecoderGuidance > 1, start: time.Now()}

	c, s := p.DecoderConfig.InChannels, p.DecoderConfig.SampleSize
	if err := noise.prefetch(p.DecoderScheduler, "decoder", o.DecoderSteps, n, c, s); err != nil {
		return nil, err
	}
	if !o.DecoderOnly && p.Has("super_res_first") && p.SuperResScheduler != nil {
		c, s := p.SuperResConfig.InChannels/2, p.SuperResConfig.SampleSize
		if err := noise.prefetch(p.SuperResScheduler, "super_res", o.SuperResSteps, n, c, s); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// lap adds the time since the last lap to stage's total.
func (r *varRun) lap(stage string) {
	now := time.Now()
	d := now.Sub(r.start).Seconds()
	r.start = now
	for i := range r.timings {
		if r.timings[i].Stage == stage {
			r.timings[i].Seconds += d
			return
		}
	}
	r.timings = append(r.timings, StageTiming{stage, d})
}

// decodeCond is the decoder's conditioning for a batch of N: image
// embeddings and the text conditioning ([uncond ; cond] under guidance).
type decodeCond struct {
	img  *ops.Tensor // [N, E]
	text textCond
}

func (r *varRun) imageCond(images []image.Image, n int) (decodeCond, error) {
	return r.imageCondTraced(images, n, r.trace)
}

// imageCondTraced is an image's conditioning as the variation pipeline
// makes it: its embedding, repeated n times, and the empty prompt.
func (r *varRun) imageCondTraced(images []image.Image, n int, trace func(string, *ops.Tensor)) (decodeCond, error) {
	emb, err := r.p.imageEmbeddings(images, trace)
	if err != nil {
		return decodeCond{}, err
	}
	r.lap("image")
	text, err := r.p.encodeText(make([]string, len(images)), n, r.cfg)
	if err != nil {
		return decodeCond{}, err
	}
	r.lap("text")
	return decodeCond{img: repeatRows(emb, n), text: text}, nil
}

// promptCond is prompts' conditioning as Generate makes it: the prior's
// image embeddings and the prompts' text conditioning.
func (r *varRun) promptCond(ctx context.Context, prompts []string, n int, trace func(string, *ops.Tensor)) (decodeCond, error) {
	p, o := r.p, r.o
	o.Prompts, o.ImagesPerPrompt = prompts, n
	priorCFG := o.PriorGuidance > 1 || o.DecoderGuidance > 1
	text, err := p.encodeText(prompts, n, priorCFG)
	if err != nil {
		return decodeCond{}, err
	}
	r.lap("text")
	trace("prior.proj_embedding", text.embeds)
	trace("prior.encoder_hidden_states", text.hidden)
	trace("prior.attention_mask", text.mask)
	img, err := p.runPrior(ctx, text, priorCFG, o, trace)
	if err != nil {
		return decodeCond{}, err
	}
	r.lap("prior")
	if priorCFG != r.cfg {
		if text, err = p.encodeText(prompts, n, r.cfg); err != nil {
			return decodeCond{}, err
		}
		r.lap("text")
	}
	return decodeCond{img: img, text: text}, nil
}

// decode runs the decoder and, unless o.DecoderOnly, the super-resolution stage.
func (r *varRun) decode(ctx context.Context, c decodeCond, trace func(string, *ops.Tensor)) (*Result, error) {
	p := r.p
	trace("text_proj.image_embeddings", c.img)
	trace("text_proj.prompt_embeds", c.text.embeds)
	trace("text_proj.text_encoder_hidden_states", c.text.hidden)
	y, err := p.runDecoder(ctx, c.img, c.text, r.cfg, r.o, trace)
	if err != nil {
		return nil, err
	}
	r.lap("decoder")
	if !r.o.DecoderOnly && p.Has("super_res_first") {
		if y, err = p.runSuperRes(ctx, y, r.o, trace); err != nil {
			return nil, err
		}
		r.lap("super_res")
	}
	res := finish(y, trace)
	res.Timings = r.timings
	return res, nil
}

func prefixTrace(trace func(string, *ops.Tensor), prefix string) func(string, *ops.Tensor) {
	return func(name string, t *ops.Tensor) { trace(prefix+name, t) }
}

// fixedNoise draws each named tensor once from src and replays a copy of
// it whenever the same name is drawn again; each tensor is traced once,
// under its name, when first drawn.
type fixedNoise struct {
	src   Noise
	drawn map[string]*ops.Tensor
	trace func(string, *ops.Tensor)
}

// Draw returns the tensor called name, drawing it on first use.
func (f *fixedNoise) Draw(name string, shape ...int) (*ops.Tensor, error) {
	if t, ok := f.drawn[name]; ok {
		if !shapeMatches(t.Shape, shape) {
			return nil, fmt.Errorf("noise %q was drawn with shape %v and is now needed with shape %v", name, t.Shape, shape)
		}
		return t.Clone(), nil
	}
	t, err := f.src.Draw(name, shape...)
	if err != nil {
		return nil, err
	}
	f.drawn[name] = t.Clone()
	f.trace(name, t)
	return t, nil
}

// prefetch draws a denoising stage's noise in the order its loop draws it:
// the initial latents "inputs.<stage>_latents", then "<stage>.NN.noise"
// for every step NN with t > 0 (see Pipeline.step).
func (f *fixedNoise) prefetch(s *Scheduler, stage string, steps, n, c, size int) error {
	ts, err := s.Timesteps(steps)
	if err != nil {
		return fmt.Errorf("%s steps: %w", strings.ReplaceAll(stage, "_", "-"), err)
	}
	if _, err := f.Draw("inputs."+stage+"_latents", n, c, size, size); err != nil {
		return err
	}
	for i, t := range ts {
		if t > 0 {
			if _, err := f.Draw(fmt.Sprintf("%s.%02d.noise", stage, i), n, c, size, size); err != nil {
				return err
			}
		}
	}
	return nil
}

// mixCond is the conditioning at t along the path from a to b: slerp of
// the image embeddings, of the text embeddings and of the encoder hidden
// states (each row flattened), and the union of the text masks. t = 0 and
// t = 1 return a and b themselves.
func mixCond(a, b decodeCond, t float64) decodeCond {
	switch t {
	case 0:
		return a
	case 1:
		return b
	}
	mask := a.text.mask.Clone()
	for i, v := range b.text.mask.Data {
		mask.Data[i] = max(mask.Data[i], v)
	}
	return decodeCond{
		img: slerpRows(a.img, b.img, t),
		text: textCond{
			embeds: slerpRows(a.text.embeds, b.text.embeds, t),
			hidden: slerpRows(a.text.hidden, b.text.hidden, t),
			mask:   mask,
		},
	}
}

// slerpRows applies slerp to each row (along dim 0) of a and b.
func slerpRows(a, b *ops.Tensor, t float64) *ops.Tensor {
	out := ops.New(a.Shape...)
	for i := range a.Dim(0) {
		slerp(out.Rows(i, i+1).Data, a.Rows(i, i+1).Data, b.Rows(i, i+1).Data, t)
	}
	return out
}

// slerp writes the spherical interpolation of a and b at t to dst, the
// formula of Karlo's and diffusers' unCLIP interpolation examples: the
// angle is that of the normalised vectors, the weights apply to the
// vectors as they are,
//
//	θ = acos(â·b̂),  dst = sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b,
//
// so the norm moves smoothly between |a| and |b| (exactly so when they are
// equal). Computed in float64 and rounded once. Equal vectors are copied;
// (nearly) parallel or opposite ones and zero vectors, where the angle is
// undefined or sin θ < 1e-7, use the linear (1−t)·a + t·b.
func slerp(dst, a, b []float32, t float64) {
	same := true
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
		same = same && a[i] == b[i]
	}
	if same {
		copy(dst, a)
		return
	}
	wa, wb := 1-t, t
	if na > 0 && nb > 0 {
		cos := math.Max(-1, math.Min(1, dot/math.Sqrt(na*nb)))
		theta := math.Acos(cos)
		if s := math.Sin(theta); s >= 1e-7 {
			wa, wb = math.Sin((1-t)*theta)/s, math.Sin(t*theta)/s
		}
	}
	for i := range a {
		dst[i] = float32(wa*float64(a[i]) + wb*float64(b[i]))
	}
}
