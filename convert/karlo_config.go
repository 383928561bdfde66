package convert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// KarloConfig holds what the original Karlo release's weight files do not
// store: attention head sizes (they decide how the fused projections are
// split), the decoder's image size, the super-resolution output size and the
// diffusion (scheduler) settings. DefaultKarloConfig has the release's
// values; LoadKarloConfig reads Karlo's own configs/*.yaml for other models.
// Values that the weights also determine (widths, layers, levels, ...) are
// recorded when a config states them, and the conversion checks them
// against the tensor shapes.
type KarloConfig struct {
	Prior   KarloPriorConfig
	Decoder KarloDecoderConfig
	SR      KarloSRConfig
	CLIP    KarloCLIPConfig
}

// KarloPriorConfig is the prior's part (Karlo's prior YAML, model.type
// "prior").
type KarloPriorConfig struct {
	File string // the config it was read from; "" for the built-in values
	// XfHeads is the number of attention heads (model.hparams.xf_heads);
	// 0 means width / 64 (the release: 2048 / 64 = 32 heads of 64).
	XfHeads int
	// Stated dimensions, checked against the weights; 0 (or nil) when the
	// config does not state them.
	XfWidth, XfLayers, ClipDim, TextCtx int
	XfFinalLN                           *bool
	Diffusion                           KarloDiffusion
}

// KarloDecoderConfig is the decoder's part (model.type "t2i-decoder").
type KarloDecoderConfig struct {
	File string
	// ImageSize is the decoder's output size (model.hparams.image_size;
	// release 64).
	ImageSize int
	// NumHeadChannels is the attention head size
	// (model.hparams.num_head_channels; release 64); -1 means NumHeads
	// heads in every attention block.
	NumHeadChannels int
	NumHeads        int // model.hparams.num_heads, used when NumHeadChannels is -1
	// Stated values, checked against the weights when set.
	NumChannels, NumResBlocks, ClipDim, ClipEmbMult, XfWidth int
	ChannelMult                                              []int // parsed "1,2,3,4"; nil: not stated (or "" = by image size)
	AttentionResolutions                                     []int // nil: not stated
	UseScaleShiftNorm, LearnSigma, ResblockUpdown            *bool
	Diffusion                                                KarloDiffusion
}

// KarloSRConfig is the super-resolution part (model.type
// "improved_sr_64_256").
type KarloSRConfig struct {
	File string
	// OutputSize is the super-resolution output size; 0 means four times
	// the decoder's image size (the "64 to 256" model; release 256). No
	// Karlo config states it.
	OutputSize int
	// Stated values, checked against both U-Nets when set.
	Channels, Depth  int
	ChannelsMultiple []int
	Diffusion        KarloDiffusion
}

// KarloCLIPConfig is the CLIP text encoder's part: OpenAI's CLIP
// dimensions as in a clip.json ({"transformer_heads": 12, ...}); the release
// ships none, the dimensions follow from the weights.
type KarloCLIPConfig struct {
	File string
	// TransformerHeads is the text tower's head count; 0 means width / 64,
	// as OpenAI's and Karlo's loaders compute it.
	TransformerHeads int
	// Stated values, checked when set.
	TransformerWidth, TransformerLayers, VocabSize, ContextLength, EmbedDim int
}

// KarloDiffusion is a Karlo config's "diffusion" section, which decides
// the scheduler configuration.
type KarloDiffusion struct {
	Steps         int    // diffusion.steps (num_train_timesteps)
	NoiseSchedule string // diffusion.noise_schedule; only squaredcos_cap_v2
	LearnSigma    bool   // learned_range variance
	SigmaSmall    bool   // fixed_small_log variance (when not learned)
	PredictXstart bool   // the model predicts x0 ("sample") instead of noise
}

// DefaultKarloConfig returns the values of the Karlo v1.0.alpha release
// (kakaobrain/karlo configs prior_1B_vit_l.yaml, decoder_900M_vit_l.yaml,
// improved_sr_64_256_1.4B.yaml; spec §12 and §13).
func DefaultKarloConfig() *KarloConfig {
	return &KarloConfig{
		Prior: KarloPriorConfig{
			Diffusion: KarloDiffusion{Steps: 1000, NoiseSchedule: "squaredcos_cap_v2", SigmaSmall: true, PredictXstart: true},
		},
		Decoder: KarloDecoderConfig{
			ImageSize: 64, NumHeadChannels: 64, NumHeads: -1,
			Diffusion: KarloDiffusion{Steps: 1000, NoiseSchedule: "squaredcos_cap_v2", LearnSigma: true},
		},
		SR: KarloSRConfig{
			Diffusion: KarloDiffusion{Steps: 1000, NoiseSchedule: "squaredcos_cap_v2", SigmaSmall: true},
		},
	}
}

// LoadKarloConfig reads Karlo-schema configs from dir: every *.yaml / *.yml
// file is classified by its model.type ("prior", "t2i-decoder",
// "improved_sr_64_256"; other types are an error), and clip.json, if
// present, gives the CLIP dimensions. Parts without a file keep the
// release values. dir may also be a single YAML file.
func LoadKarloConfig(dir string) (*KarloConfig, error) {
	c := DefaultKarloConfig()
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("convert: config: %w", err)
	}
	var files []string
	if fi.IsDir() {
		des, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("convert: config: %w", err)
		}
		for _, de := range des {
			n := de.Name()
			if de.IsDir() {
				continue
			}
			if ext := strings.ToLower(filepath.Ext(n)); ext == ".yaml" || ext == ".yml" || n == "clip.json" {
				files = append(files, filepath.Join(dir, n))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("convert: config: %s holds no Karlo *.yaml config and no clip.json", dir)
		}
	} else {
		files = []string{dir}
	}
	slices.Sort(files)
	seen := map[string]string{}
	for _, f := range files {
		if filepath.Base(f) == "clip.json" {
			if err := c.CLIP.read(f); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := readSmall(f)
		if err != nil {
			return nil, fmt.Errorf("convert: config: %w", err)
		}
		doc, err := parseYAML(raw)
		if err != nil {
			return nil, fmt.Errorf("convert: config %s: %w", f, err)
		}
		r := &yamlReader{file: f, doc: doc}
		typ := r.str("model.type")
		if r.err == nil && typ == "" {
			r.fail("model.type", "missing (want prior, t2i-decoder or improved_sr_64_256)")
		}
		if prev, dup := seen[typ]; dup && typ != "" {
			return nil, fmt.Errorf("convert: config: %s and %s are both %q configs", prev, f, typ)
		}
		seen[typ] = f
		switch typ {
		case "":
		case "prior":
			c.Prior.read(r)
		case "t2i-decoder":
			c.Decoder.read(r)
		case "improved_sr_64_256":
			c.SR.read(r)
		default:
			r.fail("model.type", fmt.Sprintf("%q is not a text-to-image Karlo part (want prior, t2i-decoder or improved_sr_64_256)", typ))
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return c, nil
}

// yamlReader reads typed values from one config, keeping the first error.
type yamlReader struct {
	file string
	doc  *yamlMap
	err  error
}

func (r *yamlReader) fail(key, msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("convert: config %s: %s: %s", r.file, key, msg)
	}
}

func (r *yamlReader) get(key string, parse func(any) error) bool {
	v, ok := r.doc.lookup(key)
	if !ok || r.err != nil {
		return false
	}
	if err := parse(v); err != nil {
		r.fail(key, err.Error())
		return false
	}
	return true
}

func (r *yamlReader) int(key string, dst *int) {
	r.get(key, func(v any) (err error) { *dst, err = yamlInt(v); return })
}

func (r *yamlReader) boolp(key string, dst **bool) {
	r.get(key, func(v any) error {
		b, err := yamlBool(v)
		*dst = &b
		return err
	})
}

func (r *yamlReader) bool(key string, dst *bool) {
	r.get(key, func(v any) (err error) { *dst, err = yamlBool(v); return })
}

func (r *yamlReader) str(key string) string {
	var s string
	r.get(key, func(v any) (err error) { s, err = yamlString(v); return })
	return s
}

// intList reads "1,2,3" (a string, as Karlo writes channel_mult and
// attention_resolutions), a single integer, or a YAML list.
func (r *yamlReader) intList(key string) ([]int, bool) {
	var out []int
	ok := r.get(key, func(v any) error {
		if _, isList := v.([]any); isList {
			var err error
			out, err = yamlInts(v)
			return err
		}
		s, err := yamlString(v)
		if err != nil {
			return err
		}
		out = []int{}
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			n, err := strconv.Atoi(part)
			if err != nil {
				return fmt.Errorf("want comma-separated integers, got %q", s)
			}
			out = append(out, n)
		}
		return nil
	})
	return out, ok
}

func (r *yamlReader) diffusion(d *KarloDiffusion) {
	r.int("diffusion.steps", &d.Steps)
	if s := r.str("diffusion.noise_schedule"); s != "" {
		d.NoiseSchedule = s
	}
	r.bool("diffusion.learn_sigma", &d.LearnSigma)
	r.bool("diffusion.sigma_small", &d.SigmaSmall)
	r.bool("diffusion.predict_xstart", &d.PredictXstart)
}

func (p *KarloPriorConfig) read(r *yamlReader) {
	p.File = r.file
	r.int("model.hparams.xf_heads", &p.XfHeads)
	r.int("model.hparams.xf_width", &p.XfWidth)
	r.int("model.hparams.xf_layers", &p.XfLayers)
	r.int("model.hparams.clip_dim", &p.ClipDim)
	r.int("model.hparams.text_ctx", &p.TextCtx)
	r.boolp("model.hparams.xf_final_ln", &p.XfFinalLN)
	r.diffusion(&p.Diffusion)
	if _, ok := r.doc.lookup("model.hparams.xf_heads"); r.err == nil && !ok {
		r.fail("model.hparams.xf_heads", "missing (the prior's number of attention heads)")
	}
	if r.err == nil && p.XfHeads <= 0 {
		r.fail("model.hparams.xf_heads", fmt.Sprintf("%d: want a positive number of heads", p.XfHeads))
	}
}

func (d *KarloDecoderConfig) read(r *yamlReader) {
	d.File = r.file
	r.int("model.hparams.image_size", &d.ImageSize)
	r.int("model.hparams.num_head_channels", &d.NumHeadChannels)
	r.int("model.hparams.num_heads", &d.NumHeads)
	r.int("model.hparams.num_channels", &d.NumChannels)
	r.int("model.hparams.num_res_blocks", &d.NumResBlocks)
	r.int("model.hparams.clip_dim", &d.ClipDim)
	r.int("model.hparams.clip_emb_mult", &d.ClipEmbMult)
	r.int("model.hparams.xf_width", &d.XfWidth)
	if cm, ok := r.intList("model.hparams.channel_mult"); ok && len(cm) > 0 {
		d.ChannelMult = cm
	}
	if ar, ok := r.intList("model.hparams.attention_resolutions"); ok {
		d.AttentionResolutions = ar
	}
	r.boolp("model.hparams.use_scale_shift_norm", &d.UseScaleShiftNorm)
	r.boolp("model.hparams.learn_sigma", &d.LearnSigma)
	r.boolp("model.hparams.resblock_updown", &d.ResblockUpdown)
	r.diffusion(&d.Diffusion)
	if r.err != nil {
		return
	}
	switch {
	case d.ImageSize <= 0:
		r.fail("model.hparams.image_size", fmt.Sprintf("%d: want a positive size", d.ImageSize))
	case d.NumHeadChannels == 0 || d.NumHeadChannels < -1:
		r.fail("model.hparams.num_head_channels", fmt.Sprintf("%d: want a positive head size, or -1 with num_heads", d.NumHeadChannels))
	case d.NumHeadChannels == -1 && d.NumHeads <= 0:
		r.fail("model.hparams.num_heads", fmt.Sprintf("%d: want a positive number of heads when num_head_channels is -1", d.NumHeads))
	}
}

func (s *KarloSRConfig) read(r *yamlReader) {
	s.File = r.file
	r.int("model.hparams.channels", &s.Channels)
	r.int("model.hparams.depth", &s.Depth)
	if cm, ok := r.intList("model.hparams.channels_multiple"); ok {
		s.ChannelsMultiple = cm
	}
	r.diffusion(&s.Diffusion)
}

func (c *KarloCLIPConfig) read(path string) error {
	raw, err := readSmall(path)
	if err != nil {
		return fmt.Errorf("convert: config: %w", err)
	}
	var j struct {
		EmbedDim          *int `json:"embed_dim"`
		ContextLength     *int `json:"context_length"`
		VocabSize         *int `json:"vocab_size"`
		TransformerWidth  *int `json:"transformer_width"`
		TransformerLayers *int `json:"transformer_layers"`
		TransformerHeads  *int `json:"transformer_heads"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return fmt.Errorf("convert: config %s: %w", path, err)
	}
	c.File = path
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.EmbedDim, j.EmbedDim)
	set(&c.ContextLength, j.ContextLength)
	set(&c.VocabSize, j.VocabSize)
	set(&c.TransformerWidth, j.TransformerWidth)
	set(&c.TransformerLayers, j.TransformerLayers)
	set(&c.TransformerHeads, j.TransformerHeads)
	if j.TransformerHeads != nil && *j.TransformerHeads <= 0 {
		return fmt.Errorf("convert: config %s: transformer_heads %d: want a positive number of heads", path, *j.TransformerHeads)
	}
	return nil
}

// schedulerConfig turns a diffusion section into an UnCLIPScheduler
// config.json, as diffusers' conversion writes it; clipRange is
// clip_sample_range (diffusers uses 5.0 for the prior, 1.0 otherwise).
func (d KarloDiffusion) schedulerConfig(what string, clipRange float64) (json.RawMessage, error) {
	if d.NoiseSchedule != "squaredcos_cap_v2" {
		return nil, fmt.Errorf("%s: diffusion.noise_schedule %q is not supported (UnCLIPScheduler has only squaredcos_cap_v2)", what, d.NoiseSchedule)
	}
	if d.Steps < 2 {
		return nil, fmt.Errorf("%s: diffusion.steps %d: need at least 2", what, d.Steps)
	}
	variance := "fixed_small_log"
	switch {
	case d.LearnSigma:
		variance = "learned_range"
	case !d.SigmaSmall:
		return nil, errors.New(what + ": diffusion.sigma_small false (fixed large variance) is not supported by UnCLIPScheduler")
	}
	pred := "epsilon"
	if d.PredictXstart {
		pred = "sample"
	}
	return marshalConfig(map[string]any{
		"_class_name":         "UnCLIPScheduler",
		"beta_schedule":       "squaredcos_cap_v2",
		"clip_sample":         true,
		"clip_sample_range":   clipRange,
		"num_train_timesteps": d.Steps,
		"prediction_type":     pred,
		"variance_type":       variance,
	})
}

// marshalConfig writes a config.json as diffusers does: sorted keys, two
// spaces of indentation, a final newline.
func marshalConfig(m map[string]any) (json.RawMessage, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
