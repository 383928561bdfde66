package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// Pipeline is a loaded unCLIP pipeline: diffusers' UnCLIPPipeline (text to
// image) and, when the file has an image encoder, the image-variation
// pipeline. Components the file lacks are nil (Has tells which the file
// has).
//
// In low-memory mode (LoadOptions.LowMemory) the model fields (TextEncoder
// … ImageEncoder) are nil except for the model of the stage running (or
// that ran last): each is built right before its stage and released before
// the next one.
type Pipeline struct {
	Tokenizer         *Tokenizer
	TextEncoder       *CLIPTextModel
	Prior             *Prior
	TextProj          *TextProj
	Decoder           *UNet
	SuperResFirst     *UNet
	SuperResLast      *UNet
	ImageEncoder      *CLIPVisionModel
	PriorScheduler    *Scheduler
	DecoderScheduler  *Scheduler
	SuperResScheduler *Scheduler

	// FeatureExtractor is the stored CLIPImageProcessor config (nil if the
	// file has none: the processor then uses CLIP's defaults).
	FeatureExtractor *CLIPImageProcessorConfig

	TextProjConfig UnCLIPTextProjConfig
	DecoderConfig  UNetConfig
	SuperResConfig UNetConfig // super_res_first's: its sample_size is the output size
	Meta           map[string]string

	parts configs      // every model component's config (nil: not in the file)
	file  *loader.File // low-memory mode: where models are built from; else nil

	// releaseErr is the first error of dropping a block's weight pages
	// in low-memory mode (loader.File.ReleasePrefix, called from inside a
	// model's Forward, which returns no error); the next stage reports it.
	releaseErr error
}

func wrap(component string, err error) error {
	if err == nil || strings.Contains(err.Error(), component) {
		return err
	}
	return fmt.Errorf("%s: %w", component, err)
}

// Options are the parameters of one text-to-image run. Zero values are
// replaced by Karlo's defaults (see Defaults).
type Options struct {
	Prompts         []string
	ImagesPerPrompt int
	PriorSteps      int
	DecoderSteps    int
	SuperResSteps   int
	PriorGuidance   float32
	DecoderGuidance float32
	// DecoderOnly stops after the decoder (the 64×64 image for Karlo).
	DecoderOnly bool
	// UpsampleAntialias selects the antialiased bicubic (a = −0.5) for the
	// decoder-to-super-res upsampling, which diffusers asks PyTorch for when
	// F.interpolate has an "antialias" parameter. The default, plain
	// bicubic (a = −0.75), is what the golden reference run recorded
	// (interpolate_kwargs without antialias).
	UpsampleAntialias bool
	// Noise supplies every random tensor (required).
	Noise Noise
	// Trace, when set, receives intermediates under the golden trace names.
	// The tensor is only valid during the call.
	Trace func(name string, t *ops.Tensor)
	// Progress, when set, is called after each denoising step.
	Progress func(stage string, step, total int)
}

// Defaults are Karlo's sampling defaults (diffusers UnCLIPPipeline).
var Defaults = Options{
	ImagesPerPrompt: 1,
	PriorSteps:      25,
	DecoderSteps:    25,
	SuperResSteps:   7,
	PriorGuidance:   4.0,
	DecoderGuidance: 8.0,
}

// Result holds a run's images.
type Result struct {
	// Images are NHWC floats in [0, 1] ([N, H, W, 3]); image k belongs to
	// prompt k / ImagesPerPrompt, like the reference's batch order.
	Images *ops.Tensor
	// Pixels are Images as bytes (numpy's (v*255).round()).
	Pixels []uint8
	// Timings are the wall-clock seconds of each stage: "text", "prior",
	// "decoder", "super_res".
	Timings []StageTiming
}

// StageTiming is how long one stage of a run took.
type StageTiming struct {
	Stage   string
	Seconds float64
}

// Generate runs text to image. It checks ctx between denoising steps.
func (p *Pipeline) Generate(ctx context.Context, o Options) (*Result, error) {
	if p.Tokenizer == nil || !p.Has("text_encoder") || !p.Has("prior") || p.PriorScheduler == nil ||
		!p.Has("text_proj") || !p.Has("decoder") || p.DecoderScheduler == nil {
		return nil, errors.New("this model file has no text-to-image pipeline (needs tokenizer, text_encoder, prior, text_proj, decoder and their schedulers)")
	}
	if o.Noise == nil {
		return nil, errors.New("model: Options.Noise is nil")
	}
	if len(o.Prompts) == 0 {
		return nil, errors.New("no prompt")
	}
	if o.ImagesPerPrompt < 1 {
		return nil, fmt.Errorf("images per prompt must be at least 1, got %d", o.ImagesPerPrompt)
	}
	trace := o.Trace
	if trace == nil {
		trace = func(string, *ops.Tensor) {}
	}
	cfg := o.PriorGuidance > 1 || o.DecoderGuidance > 1
	var timings []StageTiming
	start := time.Now()
	lap := func(stage string) {
		now := time.Now()
		timings = append(timings, StageTiming{stage, now.Sub(start).Seconds()})
		start = now
	}

	text, err := p.encodeText(o.Prompts, o.ImagesPerPrompt, cfg)
	if err != nil {
		return nil, err
	}
	lap("text")
	trace("prior.proj_embedding", text.embeds)
	trace("prior.encoder_hidden_states", text.hidden)
	trace("prior.attention_mask", text.mask)

	img, err := p.runPrior(ctx, text, cfg, o, trace)
	if err != nil {
		return nil, err
	}
	lap("prior")
	final, err := p.runDecoder(ctx, img, text, cfg, o, trace)
	if err != nil {
		return nil, err
	}
	lap("decoder")
	if !o.DecoderOnly && p.Has("super_res_first") {
		if final, err = p.runSuperRes(ctx, final, o, trace); err != nil {
			return nil, err
		}
		lap("super_res")
	}
	res := finish(final, trace)
	res.Timings = timings
	return res, nil
}

// textCond is the text conditioning of a batch: rows [uncond ; cond] under
// classifier-free guidance, each prompt's rows repeated per image.
type textCond struct {
	embeds *ops.Tensor // [M, E]
	hidden *ops.Tensor // [M, 77, E]
	mask   *ops.Tensor // [M, 77] 0/1
}

// encodeText tokenizes and encodes the prompts (and "" for the
// unconditional half when cfg is set), as diffusers' _encode_prompt does.
func (p *Pipeline) encodeText(prompts []string, perPrompt int, cfg bool) (textCond, error) {
	if err := p.use("text_encoder"); err != nil {
		return textCond{}, err
	}
	cond := p.encodeBatch(prompts, perPrompt)
	if !cfg {
		return cond, nil
	}
	empty := make([]string, len(prompts))
	uncond := p.encodeBatch(empty, perPrompt)
	m := cond.embeds.Dim(0)
	e, l := cond.embeds.Dim(1), cond.hidden.Dim(1)
	out := textCond{
		embeds: ops.New(2*m, e),
		hidden: ops.New(2*m, l, cond.hidden.Dim(2)),
		mask:   ops.New(2*m, l),
	}
	ops.Concat(out.embeds, 0, uncond.embeds, cond.embeds)
	ops.Concat(out.hidden, 0, uncond.hidden, cond.hidden)
	ops.Concat(out.mask, 0, uncond.mask, cond.mask)
	return out, nil
}

// encodeBatch runs the text encoder on the prompts and repeats each row
// perPrompt times (repeat_interleave). The result is owned by the caller.
func (p *Pipeline) encodeBatch(prompts []string, perPrompt int) textCond {
	b := len(prompts)
	ids := make([]int, 0, b*ContextLength)
	mask := ops.New(b, ContextLength)
	for i, s := range prompts {
		id, m := p.Tokenizer.Encode(s)
		ids = append(ids, id...)
		for j, v := range m {
			mask.Data[i*ContextLength+j] = float32(v)
		}
	}
	emb, hid := p.TextEncoder.Forward(ids, b)
	return textCond{
		embeds: repeatRows(emb, perPrompt),
		hidden: repeatRows(hid, perPrompt),
		mask:   repeatRows(mask, perPrompt),
	}
}

// repeatRows returns a new tensor with each row of x (along dim 0) repeated
// n times consecutively, like torch.repeat_interleave(n, dim=0).
func repeatRows(x *ops.Tensor, n int) *ops.Tensor {
	shape := append([]int{x.Dim(0) * n}, x.Shape[1:]...)
	out := ops.New(shape...)
	for i := 0; i < x.Dim(0); i++ {
		for k := 0; k < n; k++ {
			ops.Copy(out.Rows(i*n+k, i*n+k+1), x.Rows(i, i+1))
		}
	}
	return out
}

// doubled returns [x ; x] in dst (the model input under guidance).
func doubled(dst, x *ops.Tensor) *ops.Tensor {
	ops.Concat(dst, 0, x, x)
	return dst
}

func (p *Pipeline) runPrior(ctx context.Context, text textCond, cfg bool, o Options, trace func(string, *ops.Tensor)) (*ops.Tensor, error) {
	if err := p.use("prior"); err != nil {
		return nil, err
	}
	n := len(o.Prompts) * o.ImagesPerPrompt
	e := p.Prior.EmbeddingDim()
	ts, err := p.PriorScheduler.Timesteps(o.PriorSteps)
	if err != nil {
		return nil, fmt.Errorf("prior steps: %w", err)
	}
	x, err := o.Noise.Draw("inputs.prior_latents", n, e)
	if err != nil {
		return nil, err
	}
	in := x
	if cfg {
		in = ops.New(2*n, e)
	}
	guided := ops.New(n, e)
	next, pred := ops.New(n, e), ops.New(n, e)
	for i, t := range ts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("prior.%02d.", i)
		if cfg {
			doubled(in, x)
		}
		trace(name+"model_input", in)
		out := p.Prior.Forward(in, t, text.embeds, text.hidden, text.mask)
		trace(name+"model_output", out)
		mo := out
		if cfg {
			GuidePrior(guided, out, o.PriorGuidance)
			mo = guided
		}
		trace(name+"sched_model_output", mo)
		if err := p.step(p.PriorScheduler, name, mo, x, ts, i, o.Noise, next, pred, trace); err != nil {
			return nil, err
		}
		x, next = next, x
		if !cfg {
			in = x
		}
		progress(o, "prior", i+1, len(ts))
	}
	img := ops.New(n, e)
	p.Prior.PostProcess(img, x)
	trace("prior.image_embeddings", img)
	return img, nil
}

// GuidePrior applies classifier-free guidance to a prior output [2N, E]
// ([uncond ; cond]): dst [N, E] = u + g·(c − u).
func GuidePrior(dst, out *ops.Tensor, g float32) {
	n := out.Dim(0) / 2
	ops.Guidance(dst, out.Rows(0, n), out.Rows(n, 2*n), g)
}

// decoderGuidance holds the buffers of the decoder's guidance step.
type decoderGuidance struct {
	epsU, epsC, variance, out *ops.Tensor
}

func newDecoderGuidance(n, c, oc, s int) *decoderGuidance {
	return &decoderGuidance{
		epsU: ops.New(n, c, s, s), epsC: ops.New(n, c, s, s),
		variance: ops.New(n, oc-c, s, s), out: ops.New(n, oc, s, s),
	}
}

// apply guides a decoder output [2N, 2C, S, S] ([uncond ; cond]):
// ε = ε_u + g·(ε_c − ε_u) on the C sample channels, and the learned variance
// channels come from the conditional half. The result is [N, 2C, S, S].
func (d *decoderGuidance) apply(out *ops.Tensor, g float32) *ops.Tensor {
	n, c := d.epsU.Dim(0), d.epsU.Dim(1)
	ops.Narrow(d.epsU, out.Rows(0, n), 1, 0)
	ops.Narrow(d.epsC, out.Rows(n, 2*n), 1, 0)
	ops.Guidance(d.epsU, d.epsU, d.epsC, g)
	ops.Narrow(d.variance, out.Rows(n, 2*n), 1, c)
	ops.Concat(d.out, 1, d.epsU, d.variance)
	return d.out
}

// GuideDecoder is the decoder's guidance step for callers outside a run
// (tests): out [2N, 2C, S, S] -> [N, 2C, S, S] with C = sampleChannels.
func GuideDecoder(out *ops.Tensor, sampleChannels int, g float32) *ops.Tensor {
	n, oc, s := out.Dim(0)/2, out.Dim(1), out.Dim(2)
	return newDecoderGuidance(n, sampleChannels, oc, s).apply(out, g).Clone()
}

// step runs one scheduler step, drawing the variance noise when t > 0.
func (p *Pipeline) step(s *Scheduler, name string, modelOut, sample *ops.Tensor, ts []int64, i int, noise Noise, prev, pred *ops.Tensor, trace func(string, *ops.Tensor)) error {
	t, prevT := ts[i], int64(-1)
	if i+1 < len(ts) {
		prevT = ts[i+1]
	}
	var eps *ops.Tensor
	if t > 0 {
		var err error
		if eps, err = noise.Draw(name+"noise", sample.Shape...); err != nil {
			return err
		}
		trace(name+"noise", eps)
	}
	s.Step(modelOut, sample, t, prevT, eps, prev, pred)
	trace(name+"prev_sample", prev)
	trace(name+"pred_original_sample", pred)
	return nil
}

func progress(o Options, stage string, step, total int) {
	if o.Progress != nil {
		o.Progress(stage, step, total)
	}
}

// runDecoder conditions the decoder on image embeddings img ([N, E]) and
// the text, and returns the clamped 64×64 sample ([N, 3, S, S]).
func (p *Pipeline) runDecoder(ctx context.Context, img *ops.Tensor, text textCond, cfg bool, o Options, trace func(string, *ops.Tensor)) (*ops.Tensor, error) {
	n := img.Dim(0)
	if err := p.use("text_proj"); err != nil {
		return nil, err
	}
	ctxStates, additive := p.TextProj.Forward(img, text.embeds, text.hidden, cfg)
	// Keep copies: the text_proj arena is reused by the next call.
	ctxStates, additive = ctxStates.Clone(), additive.Clone()
	trace("text_proj.out_encoder_hidden_states", ctxStates)
	trace("text_proj.out_additive_clip_time_embeddings", additive)
	k := p.TextProjConfig.ClipExtraContextTokens
	m, l := text.mask.Dim(0), text.mask.Dim(1)
	ones := ops.New(m, k)
	for i := range ones.Data {
		ones.Data[i] = 1
	}
	dmask := ops.New(m, k+l)
	ops.Concat(dmask, 1, ones, text.mask)
	trace("decoder.attention_mask", dmask)

	c, s := p.DecoderConfig.InChannels, p.DecoderConfig.SampleSize
	ts, err := p.DecoderScheduler.Timesteps(o.DecoderSteps)
	if err != nil {
		return nil, fmt.Errorf("decoder steps: %w", err)
	}
	if err := p.use("decoder"); err != nil {
		return nil, err
	}
	y, err := o.Noise.Draw("inputs.decoder_latents", n, c, s, s)
	if err != nil {
		return nil, err
	}
	in := y
	if cfg {
		in = ops.New(2*n, c, s, s)
	}
	oc := p.DecoderConfig.OutChannels
	guide := newDecoderGuidance(n, c, oc, s)
	next, pred := ops.New(n, c, s, s), ops.New(n, c, s, s)
	for i, t := range ts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("decoder.%02d.", i)
		if cfg {
			doubled(in, y)
		}
		trace(name+"model_input", in)
		out := p.Decoder.Forward(in, t, ctxStates, additive, dmask)
		trace(name+"model_output", out)
		model := out
		if cfg {
			model = guide.apply(out, o.DecoderGuidance)
		}
		trace(name+"sched_model_output", model)
		if err := p.step(p.DecoderScheduler, name, model, y, ts, i, o.Noise, next, pred, trace); err != nil {
			return nil, err
		}
		y, next = next, y
		if !cfg {
			in = y
		}
		progress(o, "decoder", i+1, len(ts))
	}
	ops.Clamp(y, y, -1, 1)
	trace("super_res.image_small", y)
	return y, nil
}

// runSuperRes upsamples the decoder output and runs the super-resolution
// U-Nets (super_res_last on the final step only, no guidance). In
// low-memory mode super_res_last is built for the final step, after
// super_res_first is released.
func (p *Pipeline) runSuperRes(ctx context.Context, small *ops.Tensor, o Options, trace func(string, *ops.Tensor)) (*ops.Tensor, error) {
	if !p.Has("super_res_last") || p.SuperResScheduler == nil {
		return nil, errors.New("this model file has super_res_first but no super_res_last or super_res_scheduler")
	}
	n, size := small.Dim(0), p.SuperResConfig.SampleSize
	c := p.SuperResConfig.InChannels / 2
	up := ops.New(n, small.Dim(1), size, size)
	if o.UpsampleAntialias {
		ops.UpsampleBicubicAA(up, small)
	} else {
		ops.UpsampleBicubic(up, small)
	}
	trace("super_res.image_upscaled", up)
	ts, err := p.SuperResScheduler.Timesteps(o.SuperResSteps)
	if err != nil {
		return nil, fmt.Errorf("super-res steps: %w", err)
	}
	z, err := o.Noise.Draw("inputs.super_res_latents", n, c, size, size)
	if err != nil {
		return nil, err
	}
	in := ops.New(n, c+up.Dim(1), size, size)
	next, pred := ops.New(z.Shape...), ops.New(z.Shape...)
	for i, t := range ts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("super_res.%02d.", i)
		ops.Concat(in, 1, z, up)
		trace(name+"model_input", in)
		stage, unet := "super_res_first", &p.SuperResFirst
		if i == len(ts)-1 {
			stage, unet = "super_res_last", &p.SuperResLast
		}
		if err := p.use(stage); err != nil {
			return nil, err
		}
		out := (*unet).Forward(in, t, nil, nil, nil)
		trace(name+"model_output", out)
		if err := p.step(p.SuperResScheduler, name, out, z, ts, i, o.Noise, next, pred, trace); err != nil {
			return nil, err
		}
		z, next = next, z
		progress(o, "super_res", i+1, len(ts))
	}
	return z, nil
}

// finish converts the final sample to NHWC [0, 1] floats and bytes.
func finish(x *ops.Tensor, trace func(string, *ops.Tensor)) *Result {
	img := ops.New(x.Dim(0), x.Dim(2), x.Dim(3), x.Dim(1))
	ops.ImageFromSample(img, x)
	trace("output.image_float", img)
	px := make([]uint8, img.Numel())
	ops.QuantizeU8(px, img)
	return &Result{Images: img, Pixels: px}
}
