package model

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// LoadOptions choose how LoadPipelineWith builds a pipeline.
type LoadOptions struct {
	// LowMemory runs one model at a time: each model (text encoder,
	// prior, text_proj, decoder, super_res_first, super_res_last, image
	// encoder) is built right before the stage that runs it, and the one
	// before is released first: its Go memory is freed and the pages of
	// the memory-mapped file that hold its weights are handed back to the
	// operating system (loader.File.Release). Within a model's pass, the
	// pages of each block's weights (a U-Net's down, mid and up blocks, a
	// transformer's layers) are dropped as soon as the block has run
	// (loader.File.ReleasePrefix), so only about one block's weights are
	// resident at a time; the next pass faults them back in, from the page
	// cache as long as the system can keep the file there. Outputs are
	// bit-identical; a run costs one more build of each model it uses (a
	// few page faults for raw weights, decoding for compressed ones) and
	// those page faults again on every pass.
	//
	// Loading still checks everything it can without reading weights: the
	// configs, the tokenizer, the schedulers, how the components fit
	// together, and every model's tensor names, shapes and dtypes.
	// Corrupt weight data (a checksum mismatch) is found when its stage
	// runs. The pipeline's model fields change as it runs (see Pipeline):
	// a Hook set on a model does not survive its release.
	LowMemory bool
}

// LoadPipeline builds every component stored in f. Problems in several
// components are reported together.
func LoadPipeline(f *loader.File) (*Pipeline, error) {
	return LoadPipelineWith(f, LoadOptions{})
}

// modelComponents are the components holding a model, in load order.
var modelComponents = []string{
	"text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", "image_encoder",
}

// configs are the parsed configs of the model components (nil: the file
// has no such component).
type configs struct {
	textEncoder   *CLIPTextConfig
	prior         *PriorConfig
	textProj      *UnCLIPTextProjConfig
	decoder       *UNetConfig
	superResFirst *UNetConfig
	superResLast  *UNetConfig
	imageEncoder  *CLIPVisionConfig
}

// LoadPipelineWith builds the pipeline stored in f: every component, or
// with o.LowMemory everything but the models, which are built when a run
// needs them (f must then stay open as long as the pipeline is used).
// Problems in several components are reported together.
func LoadPipelineWith(f *loader.File, o LoadOptions) (*Pipeline, error) {
	p := &Pipeline{Meta: f.Meta()}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	config := func(name string) ([]byte, bool) {
		c, ok := f.Component(name)
		return c.Config, ok
	}

	vocab, err1 := f.Blob("tokenizer/vocab.json")
	merges, err2 := f.Blob("tokenizer/merges.txt")
	if err := errors.Join(err1, err2); err != nil {
		fail(fmt.Errorf("tokenizer: %w", err))
	} else if p.Tokenizer, err = NewTokenizer(vocab, merges); err != nil {
		fail(fmt.Errorf("tokenizer: %w", err))
	}

	var shapes map[string]shapeSource
	if o.LowMemory {
		shapes = shapeSources(f)
	}
	for _, name := range modelComponents {
		raw, ok := config(name)
		if !ok {
			continue
		}
		err := p.parseConfig(name, raw)
		if err == nil {
			if o.LowMemory {
				// Check names, shapes and dtypes without reading weights.
				dry := &Pipeline{parts: p.parts}
				err = dry.build(name, shapes[name])
			} else {
				err = p.build(name, f.Sub(name))
			}
		}
		fail(wrap(name, err))
	}
	if raw, ok := config("feature_extractor"); ok {
		cfg, err := ParseCLIPImageProcessorConfig(raw)
		if err == nil {
			p.FeatureExtractor = &cfg
		}
		fail(wrap("feature_extractor", err))
	}
	sched := func(name string) *Scheduler {
		raw, ok := config(name)
		if !ok {
			return nil
		}
		cfg, err := ParseSchedulerConfig(raw)
		var s *Scheduler
		if err == nil {
			s, err = NewScheduler(cfg)
		}
		fail(wrap(name, err))
		return s
	}
	p.PriorScheduler = sched("prior_scheduler")
	p.DecoderScheduler = sched("decoder_scheduler")
	p.SuperResScheduler = sched("super_res_scheduler")

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := p.checkConsistency(); err != nil {
		return nil, err
	}
	if o.LowMemory {
		p.file = f
	}
	return p, nil
}

// parseConfig parses a model component's config.json into p.parts (and the
// exported config fields).
func (p *Pipeline) parseConfig(name string, raw []byte) error {
	c := &p.parts
	switch name {
	case "text_encoder":
		cfg, err := ParseCLIPTextConfig(raw)
		if err != nil {
			return err
		}
		c.textEncoder = &cfg
	case "prior":
		cfg, err := ParsePriorConfig(raw)
		if err != nil {
			return err
		}
		c.prior = &cfg
	case "text_proj":
		cfg, err := ParseUnCLIPTextProjConfig(raw)
		if err != nil {
			return err
		}
		c.textProj, p.TextProjConfig = &cfg, cfg
	case "decoder", "super_res_first", "super_res_last":
		cfg, err := ParseUNetConfig(raw)
		if err != nil {
			return err
		}
		switch name {
		case "decoder":
			c.decoder, p.DecoderConfig = &cfg, cfg
		case "super_res_first":
			c.superResFirst, p.SuperResConfig = &cfg, cfg
		default:
			c.superResLast = &cfg
		}
	case "image_encoder":
		cfg, err := ParseCLIPVisionConfig(raw)
		if err != nil {
			return err
		}
		c.imageEncoder = &cfg
	default:
		panic("model: parseConfig of " + name)
	}
	return nil
}

// build builds model component name (its config parsed) from src into
// its field.
func (p *Pipeline) build(name string, src loader.Source) error {
	c := &p.parts
	var err error
	switch name {
	case "text_encoder":
		p.TextEncoder, err = NewCLIPTextModel(*c.textEncoder, src)
	case "prior":
		p.Prior, err = NewPrior(*c.prior, src)
	case "text_proj":
		p.TextProj, err = NewTextProj(*c.textProj, src)
	case "decoder":
		p.Decoder, err = NewUNet(*c.decoder, src)
	case "super_res_first":
		p.SuperResFirst, err = NewUNet(*c.superResFirst, src)
	case "super_res_last":
		p.SuperResLast, err = NewUNet(*c.superResLast, src)
	case "image_encoder":
		p.ImageEncoder, err = NewCLIPVisionModel(*c.imageEncoder, src)
	default:
		panic("model: build of " + name)
	}
	if err == nil && p.file != nil {
		p.setReleaser(name)
	}
	return wrap(name, err)
}

// setReleaser makes the built model component name drop the pages of each
// block's weights once the block has run (low-memory mode): during a
// pass only the weights of the block running are resident; the next pass
// (the next denoising step) faults them back in from the page cache.
func (p *Pipeline) setReleaser(name string) {
	r := releaser(func(module string) {
		if err := p.file.ReleasePrefix(name + "/" + module + "."); err != nil && p.releaseErr == nil {
			p.releaseErr = err
		}
	})
	switch name {
	case "text_encoder":
		p.TextEncoder.Encoder.release = r
	case "prior":
		p.Prior.release = r
	case "decoder":
		p.Decoder.release = r
	case "super_res_first":
		p.SuperResFirst.release = r
	case "super_res_last":
		p.SuperResLast.release = r
	case "image_encoder":
		p.ImageEncoder.Encoder.release = r
	}
}

// releaser is called by a model after each of its blocks has run, with the
// block's state-dict prefix ("up_blocks.0", "transformer_blocks.3",
// "text_model.encoder.layers.11"); nil outside low-memory mode.
type releaser func(module string)

func (r releaser) done(module string) {
	if r != nil {
		r(module)
	}
}

// loaded reports whether model component name is built.
func (p *Pipeline) loaded(name string) bool {
	switch name {
	case "text_encoder":
		return p.TextEncoder != nil
	case "prior":
		return p.Prior != nil
	case "text_proj":
		return p.TextProj != nil
	case "decoder":
		return p.Decoder != nil
	case "super_res_first":
		return p.SuperResFirst != nil
	case "super_res_last":
		return p.SuperResLast != nil
	case "image_encoder":
		return p.ImageEncoder != nil
	}
	panic("model: loaded of " + name)
}

// drop forgets model component name.
func (p *Pipeline) drop(name string) {
	switch name {
	case "text_encoder":
		p.TextEncoder = nil
	case "prior":
		p.Prior = nil
	case "text_proj":
		p.TextProj = nil
	case "decoder":
		p.Decoder = nil
	case "super_res_first":
		p.SuperResFirst = nil
	case "super_res_last":
		p.SuperResLast = nil
	case "image_encoder":
		p.ImageEncoder = nil
	default:
		panic("model: drop of " + name)
	}
}

// Has reports whether the model file has the named component
// ("text_encoder", "prior", "text_proj", "decoder", "super_res_first",
// "super_res_last", "image_encoder", "tokenizer", "feature_extractor",
// "prior_scheduler", "decoder_scheduler", "super_res_scheduler"), built
// or, in low-memory mode, to be built when needed.
func (p *Pipeline) Has(component string) bool {
	c := &p.parts
	switch component {
	case "text_encoder":
		return c.textEncoder != nil
	case "prior":
		return c.prior != nil
	case "text_proj":
		return c.textProj != nil
	case "decoder":
		return c.decoder != nil
	case "super_res_first":
		return c.superResFirst != nil
	case "super_res_last":
		return c.superResLast != nil
	case "image_encoder":
		return c.imageEncoder != nil
	case "tokenizer":
		return p.Tokenizer != nil
	case "feature_extractor":
		return p.FeatureExtractor != nil
	case "prior_scheduler":
		return p.PriorScheduler != nil
	case "decoder_scheduler":
		return p.DecoderScheduler != nil
	case "super_res_scheduler":
		return p.SuperResScheduler != nil
	}
	return false
}

// LowMemory reports whether the pipeline was loaded in low-memory mode.
func (p *Pipeline) LowMemory() bool { return p.file != nil }

// use makes the named models (which the file has) available for the
// stage about to run. In low-memory mode it first releases every other
// built model, then builds the missing named ones; otherwise every model
// is built already and use does nothing.
func (p *Pipeline) use(names ...string) error {
	if p.file == nil {
		// Everything stays built; but the activation buffers of the
		// models this stage does not run are dropped (they are rebuilt,
		// once, the next time those models run): at 256×256 a
		// super-resolution U-Net's buffers are gigabytes, and the two
		// super-res models never run at the same time.
		freed := false
		for _, n := range modelComponents {
			if p.loaded(n) && !slices.Contains(names, n) {
				freed = p.freeBuffers(n) || freed
			}
		}
		if freed {
			debug.FreeOSMemory()
		}
		return nil
	}
	if err := p.releaseErr; err != nil {
		p.releaseErr = nil
		return err
	}
	released := false
	for _, n := range modelComponents {
		if p.loaded(n) && !slices.Contains(names, n) {
			p.drop(n)
			if err := p.file.Release(n); err != nil {
				return err
			}
			released = true
		}
	}
	if released {
		// Free the dropped model's Go memory (decoded tensors, arenas,
		// decompressed data) before building the next one.
		debug.FreeOSMemory() // a garbage collection first, then the release

	}
	for _, n := range names {
		if !p.loaded(n) {
			if err := p.build(n, p.file.Sub(n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// freeBuffers drops the activation buffers of the built model component
// name and reports whether it held any.
func (p *Pipeline) freeBuffers(name string) bool {
	switch name {
	case "text_encoder":
		return p.TextEncoder.arena.Free()
	case "prior":
		return p.Prior.arena.Free()
	case "text_proj":
		return p.TextProj.arena.Free()
	case "decoder":
		return p.Decoder.freeBuffers()
	case "super_res_first":
		return p.SuperResFirst.freeBuffers()
	case "super_res_last":
		return p.SuperResLast.freeBuffers()
	case "image_encoder":
		return p.ImageEncoder.arena.Free()
	}
	panic("model: freeBuffers of " + name)
}

// shapeSource serves a component's tensor names, dtypes and shapes from
// the file's index, without data: binders reading from it are dry (see
// binder.dry).
type shapeSource struct {
	names []string // sorted
	infos map[string]loader.TensorInfo
}

// shapeSources returns a shapeSource per component of f.
func shapeSources(f *loader.File) map[string]shapeSource {
	out := map[string]shapeSource{}
	for _, info := range f.Index() {
		comp, key, ok := strings.Cut(info.Name, "/")
		if !ok {
			continue
		}
		s, ok := out[comp]
		if !ok {
			s = shapeSource{infos: map[string]loader.TensorInfo{}}
		}
		s.names = append(s.names, key)
		s.infos[key] = info
		out[comp] = s
	}
	for _, s := range out {
		slices.Sort(s.names)
	}
	return out
}

// Names lists the component's keys, sorted.
func (s shapeSource) Names() []string { return slices.Clone(s.names) }

// Tensor returns key's dtype and shape, without data.
func (s shapeSource) Tensor(key string) (loader.Tensor, error) {
	info, ok := s.infos[key]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("no tensor %q", key)
	}
	return loader.Tensor{Name: key, DType: info.DType, Shape: slices.Clone(info.Shape)}, nil
}
