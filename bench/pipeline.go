package bench

// A Karlo-shaped pipeline file with random weights: what `dalle2 convert`
// writes for the kakaobrain/karlo-v1-alpha diffusers folder (spec §12), with
// the same components, classes, configs, tensor names and shapes and the
// same per-tensor storage policy, but weights from RandomSource. It lets
// memory, load time and speed of full-size text-to-image runs be measured
// without downloading the release.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
)

// The remaining Karlo configs of spec §12.
const (
	KarloTextProjConfig = `{"_class_name": "UnCLIPTextProjModel", "clip_embeddings_dim": 768,
  "clip_extra_context_tokens": 4, "cross_attention_dim": 1536, "time_embed_dim": 1280}`

	KarloPriorSchedulerConfig = `{"_class_name": "UnCLIPScheduler", "num_train_timesteps": 1000,
  "variance_type": "fixed_small_log", "prediction_type": "sample", "clip_sample": true,
  "clip_sample_range": 5.0, "beta_schedule": "squaredcos_cap_v2"}`

	KarloDecoderSchedulerConfig = `{"_class_name": "UnCLIPScheduler", "num_train_timesteps": 1000,
  "variance_type": "learned_range", "prediction_type": "epsilon", "clip_sample": true,
  "clip_sample_range": 1.0, "beta_schedule": "squaredcos_cap_v2"}`

	KarloSuperResSchedulerConfig = `{"_class_name": "UnCLIPScheduler", "num_train_timesteps": 1000,
  "variance_type": "fixed_small_log", "prediction_type": "epsilon", "clip_sample": true,
  "clip_sample_range": 1.0, "beta_schedule": "squaredcos_cap_v2"}`

	// KarloTokenizerConfig is the hub tokenizer's tokenizer_config.json
	// (spec §12), stored as the tokenizer component's config and blob.
	KarloTokenizerConfig = `{"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": "!",
  "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
  "do_lower_case": true, "errors": "replace", "add_prefix_space": false}`

	karloSpecialTokens = `{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
  "pad_token": "!", "unk_token": "<|endoftext|>"}`
)

// PipelineConfigs are the config.json texts of an unCLIP text-to-image
// pipeline's components.
type PipelineConfigs struct {
	TextEncoder, Prior, TextProj, Decoder, SuperResFirst, SuperResLast string
	PriorScheduler, DecoderScheduler, SuperResScheduler                string
}

// KarloPipeline is Karlo v1-alpha's configs (spec §12; super_res_last is
// super_res_first with sample_size null).
func KarloPipeline() PipelineConfigs {
	var last map[string]any
	if err := json.Unmarshal([]byte(KarloSuperResConfig), &last); err != nil {
		panic(err) // a constant of this package
	}
	last["sample_size"] = nil
	b, err := json.Marshal(last)
	if err != nil {
		panic(err)
	}
	return PipelineConfigs{
		TextEncoder: KarloTextEncoderConfig, Prior: KarloPriorConfig, TextProj: KarloTextProjConfig,
		Decoder: KarloDecoderConfig, SuperResFirst: KarloSuperResConfig, SuperResLast: string(b),
		PriorScheduler: KarloPriorSchedulerConfig, DecoderScheduler: KarloDecoderSchedulerConfig,
		SuperResScheduler: KarloSuperResSchedulerConfig,
	}
}

// TextProjShapes is the key → shape table of UnCLIPTextProjModel (spec §5).
func TextProjShapes(cfg model.UnCLIPTextProjConfig) map[string][]int {
	e, x, t, k := cfg.ClipEmbeddingsDim, cfg.CrossAttentionDim, cfg.TimeEmbedDim, cfg.ClipExtraContextTokens
	s := map[string][]int{"learned_classifier_free_guidance_embeddings": {e}}
	lin := func(key string, out, in int) { s[key+".weight"], s[key+".bias"] = []int{out, in}, []int{out} }
	lin("embedding_proj", t, e)
	lin("clip_image_embeddings_project_to_time_embeddings", t, e)
	lin("clip_extra_context_tokens_proj", k*x, e)
	lin("encoder_hidden_states_proj", x, e)
	s["text_encoder_hidden_states_norm.weight"], s["text_encoder_hidden_states_norm.bias"] = []int{x}, []int{x}
	return s
}

// PipelineComponent is one component of a pipeline file.
type PipelineComponent struct {
	Name   string           // "decoder", "prior_scheduler", "tokenizer", ...
	Class  string           // diffusers/transformers class
	Config string           // config.json text
	Shapes map[string][]int // weights (nil for schedulers and the tokenizer)
	Seed   uint64           // RandomSource seed of the weights
}

// Components lists the pipeline's components in the order `dalle2 convert`
// writes a diffusers folder's (model_index.json order), with their weight
// tables. The weights of every model use seed, so that they equal those of
// the bench modules (Karlo) built from the same seed, except
// super_res_last, which uses seed+1 (its tensor names are those of
// super_res_first).
func (c PipelineConfigs) Components(seed uint64) ([]PipelineComponent, error) {
	tc, err := model.ParseCLIPTextConfig([]byte(c.TextEncoder))
	if err != nil {
		return nil, fmt.Errorf("bench: text_encoder: %w", err)
	}
	pc, err := model.ParsePriorConfig([]byte(c.Prior))
	if err != nil {
		return nil, fmt.Errorf("bench: prior: %w", err)
	}
	tp, err := model.ParseUnCLIPTextProjConfig([]byte(c.TextProj))
	if err != nil {
		return nil, fmt.Errorf("bench: text_proj: %w", err)
	}
	unet := func(name, raw string) (map[string][]int, error) {
		u, err := model.ParseUNetConfig([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		return UNetShapes(u), nil
	}
	dec, err := unet("decoder", c.Decoder)
	if err != nil {
		return nil, err
	}
	srf, err := unet("super_res_first", c.SuperResFirst)
	if err != nil {
		return nil, err
	}
	srl, err := unet("super_res_last", c.SuperResLast)
	if err != nil {
		return nil, err
	}
	return []PipelineComponent{
		{"decoder", "UNet2DConditionModel", c.Decoder, dec, seed},
		{"decoder_scheduler", "UnCLIPScheduler", c.DecoderScheduler, nil, 0},
		{"prior", "PriorTransformer", c.Prior, PriorShapes(pc), seed},
		{"prior_scheduler", "UnCLIPScheduler", c.PriorScheduler, nil, 0},
		{"super_res_first", "UNet2DModel", c.SuperResFirst, srf, seed},
		{"super_res_last", "UNet2DModel", c.SuperResLast, srl, seed + 1},
		{"super_res_scheduler", "UnCLIPScheduler", c.SuperResScheduler, nil, 0},
		{"text_encoder", "CLIPTextModelWithProjection", c.TextEncoder, TextEncoderShapes(tc), seed},
		{"text_proj", "UnCLIPTextProjModel", c.TextProj, TextProjShapes(tp), seed},
		{"tokenizer", "CLIPTokenizer", KarloTokenizerConfig, nil, 0},
	}, nil
}

// WriteOptions configures WritePipeline.
type WriteOptions struct {
	DType    loader.DType // storage target: loader.F32 (also when zero), F16 or Q8_0
	Seed     uint64       // weights seed (see PipelineConfigs.Components)
	Progress io.Writer    // one line per component; nil: silent
	Version  string       // recorded in the "converter" metadata
}

// WriteReport summarises a written pipeline file.
type WriteReport struct {
	Path       string
	DType      loader.DType
	Components []ComponentReport
	Tensors    int
	Params     int64
	Bytes      int64 // tensor bytes as stored (before the writer's compression)
	FileSize   int64
	Seconds    float64
}

// ComponentReport is one written model component.
type ComponentReport struct {
	Name    string
	Tensors int
	Params  int64
	Bytes   int64
	DTypes  map[string]int // storage dtype → tensors
}

// WritePipeline writes the pipeline of cfgs with random weights to path as
// a dalle2 weight file: every component as `dalle2 convert` writes a
// diffusers folder (same names, classes, configs and per-tensor storage
// dtypes through convert.Policy and convert.ConvertTensor), the
// built-in CLIP tokenizer, and metadata naming the seed. Tensors are
// generated, converted and written one at a time, so memory follows the
// largest tensor (the token embedding, 152 MB as F32), not the file's
// size (under 1 GB of RSS for Karlo, Go's garbage collector included). The
// file appears at path only if everything succeeded.
func WritePipeline(path string, cfgs PipelineConfigs, opt WriteOptions) (*WriteReport, error) {
	t0 := time.Now()
	target := opt.DType
	if target == loader.Invalid {
		target = loader.F32
	}
	comps, err := cfgs.Components(opt.Seed)
	if err != nil {
		return nil, err
	}
	vocab, merges, err := convert.BuiltinCLIPTokenizer()
	if err != nil {
		return nil, fmt.Errorf("bench: built-in tokenizer: %w", err)
	}
	w, err := loader.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rep, err := writePipeline(w, comps, target, opt, vocab, merges)
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	rep.Path = path
	if fi, err := os.Stat(path); err == nil {
		rep.FileSize = fi.Size()
	}
	rep.Seconds = time.Since(t0).Seconds()
	return rep, nil
}

func writePipeline(w *loader.Writer, comps []PipelineComponent, target loader.DType, opt WriteOptions, vocab, merges []byte) (*WriteReport, error) {
	converter := "dalle2 bench/mkkarlo"
	if opt.Version != "" {
		converter += " " + opt.Version
	}
	w.SetMeta(loader.MetaSource, "random weights (bench.RandomSource, seed "+strconv.FormatUint(opt.Seed, 10)+")")
	w.SetMeta(loader.MetaConverter, converter)
	w.SetMeta(loader.MetaDType, target.String())
	w.SetMeta(loader.MetaCreated, time.Now().UTC().Format(time.RFC3339))
	w.SetMeta(convert.MetaPipeline, "UnCLIPPipeline")
	rep := &WriteReport{DType: target}
	if opt.Progress != nil {
		fmt.Fprintf(opt.Progress, "writing a Karlo-shaped pipeline with random weights (seed %d) as %s\n", opt.Seed, target)
	}
	for _, c := range comps {
		cfg := json.RawMessage(c.Config)
		if err := w.AddComponent(loader.Component{Name: c.Name, Class: c.Class, Config: cfg}); err != nil {
			return nil, fmt.Errorf("bench: component %q: %w", c.Name, err)
		}
		switch {
		case c.Name == "tokenizer":
			for _, b := range []struct {
				name string
				data []byte
			}{{"vocab.json", vocab}, {"merges.txt", merges}, {"tokenizer_config.json", []byte(KarloTokenizerConfig)},
				{"special_tokens_map.json", []byte(karloSpecialTokens)}} {
				if err := w.AddBlob(c.Name+"/"+b.name, b.data); err != nil {
					return nil, fmt.Errorf("bench: tokenizer %s: %w", b.name, err)
				}
			}
		case c.Shapes != nil:
			cr, err := writeComponent(w, c, target)
			if err != nil {
				return nil, err
			}
			rep.Components = append(rep.Components, *cr)
			rep.Tensors += cr.Tensors
			rep.Params += cr.Params
			rep.Bytes += cr.Bytes
			if opt.Progress != nil {
				fmt.Fprintf(opt.Progress, "  %-20s %-28s %5d tensors %14s params %8.1f MB  %s\n",
					c.Name, c.Class, cr.Tensors, groupDigits(cr.Params), float64(cr.Bytes)/1e6, dtypeCounts(cr.DTypes))
			}
		}
	}
	return rep, nil
}

// writeComponent generates, converts and writes c's tensors one at a time.
func writeComponent(w *loader.Writer, c PipelineComponent, target loader.DType) (*ComponentReport, error) {
	src := NewRandomSource(c.Shapes, c.Seed)
	cr := &ComponentReport{Name: c.Name, DTypes: map[string]int{}}
	policy := convert.NewPolicy(c.Name, src.Names(), target)
	for _, name := range src.Names() {
		t, err := src.Tensor(name)
		if err != nil {
			return nil, err
		}
		d := policy.DType(name, t.Shape)
		out, err := convert.ConvertTensor(t, d)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: tensor %q as %s: %w", c.Name, name, d, err)
		}
		if err := w.AddTensor(c.Name, out); err != nil {
			return nil, fmt.Errorf("bench: %s: tensor %q: %w", c.Name, name, err)
		}
		cr.Tensors++
		cr.Params += int64(t.Numel())
		cr.Bytes += int64(len(out.Data))
		cr.DTypes[out.DType.String()]++
	}
	return cr, nil
}

// groupDigits writes n with thousands separators: 885,439,686.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// dtypeCounts lists dtype → count pairs sorted by name: "F16:455 Q8_0:261".
func dtypeCounts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, " ")
}
