package bench

// Full-size Karlo modules with random weights (spec §12 configs) and the
// analytic operation counts of their forward passes.
//
// FLOP convention: one multiply-add counts as 2 FLOPs, and only the matrix
// products are counted — Linear layers, convolutions and the two products of
// attention (Q·Kᵀ and softmax·V, each Lq·Lk·D multiply-adds per head, over
// all key positions even where a causal mask zeroes them, as PyTorch
// computes them). Norms, activations, softmax, resampling and additions are
// not counted (well under 1% of the total for every module here). A Linear
// from K to N features on M rows is M·N·K multiply-adds; a convolution is
// N·Ho·Wo·Cout·Cin·KH·KW.

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// Karlo's hub configs (spec §12), as the model package parses them.
const (
	KarloTextEncoderConfig = `{"architectures": ["CLIPTextModelWithProjection"], "vocab_size": 49408,
  "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
  "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
  "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
  "attention_dropout": 0.0, "dropout": 0.0, "torch_dtype": "float32"}`

	KarloPriorConfig = `{"_class_name": "PriorTransformer", "num_attention_heads": 32, "attention_head_dim": 64,
  "num_layers": 20, "embedding_dim": 768, "num_embeddings": 77, "additional_embeddings": 4,
  "dropout": 0.0, "time_embed_act_fn": "silu", "norm_in_type": null, "embedding_proj_norm_type": null,
  "encoder_hid_proj_type": "linear", "added_emb_type": "prd", "time_embed_dim": null,
  "embedding_proj_dim": null, "clip_embed_dim": null}`

	KarloDecoderConfig = `{"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 3,
  "out_channels": 6, "center_input_sample": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "down_block_types": ["ResnetDownsampleBlock2D","SimpleCrossAttnDownBlock2D",
                       "SimpleCrossAttnDownBlock2D","SimpleCrossAttnDownBlock2D"],
  "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
  "up_block_types": ["SimpleCrossAttnUpBlock2D","SimpleCrossAttnUpBlock2D",
                     "SimpleCrossAttnUpBlock2D","ResnetUpsampleBlock2D"],
  "block_out_channels": [320,640,960,1280], "layers_per_block": 3, "downsample_padding": 1,
  "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
  "cross_attention_dim": 1536, "attention_head_dim": 64, "class_embed_type": "identity",
  "num_class_embeds": null, "only_cross_attention": false, "dual_cross_attention": false,
  "use_linear_projection": false, "upcast_attention": false, "resnet_time_scale_shift": "scale_shift",
  "resnet_skip_time_act": false, "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional",
  "cross_attention_norm": null, "dropout": 0.0}`

	KarloSuperResConfig = `{"_class_name": "UNet2DModel", "sample_size": 256, "in_channels": 6,
  "out_channels": 3, "center_input_sample": false, "time_embedding_type": "positional",
  "flip_sin_to_cos": true, "freq_shift": 0,
  "down_block_types": ["ResnetDownsampleBlock2D","ResnetDownsampleBlock2D",
                       "ResnetDownsampleBlock2D","ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D","ResnetUpsampleBlock2D",
                     "ResnetUpsampleBlock2D","ResnetUpsampleBlock2D"],
  "mid_block_type": "UNetMidBlock2D", "add_attention": false, "attention_head_dim": 8,
  "block_out_channels": [320,640,960,1280], "layers_per_block": 3, "downsample_padding": 1,
  "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
  "resnet_time_scale_shift": "default", "dropout": 0.0}`
)

// The benchmark shapes of issue 5 (those of one pipeline step with
// classifier-free guidance, and of pytorch_cpu_timings.json).
const (
	KarloTextBatch     = 2   // [uncond ; cond] prompts, 77 tokens each
	KarloPriorBatch    = 2   // one prior step under guidance
	KarloDecoderBatch  = 2   // one decoder step under guidance, 64×64
	KarloDecoderSize   = 64  // decoder sample size
	KarloContextLen    = 81  // 4 extra tokens + 77 text tokens (text_proj)
	KarloSuperResBatch = 1   // super_res_first, no guidance
	KarloSuperResSize  = 256 // super_res_first sample size
)

// KarloModules are the module names Karlo accepts, in pipeline order.
var KarloModules = []string{"text", "prior", "decoder", "superres"}

// Module is a network with random weights and fixed inputs, ready to run
// forward passes.
type Module struct {
	Name        string // "text", "prior", "decoder" or "superres"
	DType       string // storage target of the weights: "f32", "f16" or "q8" (see WithDType)
	Params      int64  // parameters bound
	WeightBytes int64  // bytes of the weights as stored for DType (what a weight file holds)
	MACs        int64  // multiply-adds of one Forward (see the FLOP convention above)
	Inputs      string // the input shapes, for reports
	forward     func() *ops.Tensor
	out         *ops.Tensor
}

// FLOPs of one Forward (2 per multiply-add).
func (m *Module) FLOPs() float64 { return 2 * float64(m.MACs) }

// Forward runs one forward pass.
func (m *Module) Forward() { m.out = m.forward() }

// Output is the main output of the last Forward (text encoder: the text
// embeddings; prior: the predicted image embedding; U-Nets: the prediction),
// valid until the next Forward; nil before the first.
func (m *Module) Output() *ops.Tensor { return m.out }

// Release drops the module's weights and activations and returns the memory
// to the operating system, so the next module fits. m is unusable after.
func (m *Module) Release() {
	m.forward, m.out = nil, nil
	debug.FreeOSMemory()
}

// Karlo builds the full-size Karlo module name ("text", "prior", "decoder"
// or "superres") with random weights from seed, on the issue-5 shapes:
// text encoder batch 2 × 77 tokens; prior batch 2; decoder batch 2 at 64×64
// with an [2, 81, 1536] context, [2, 1280] class labels and a [2, 81] mask;
// super_res_first batch 1 at 256×256. The weights are F32 unless an option
// says otherwise (WithDType); the inputs depend on the seed only.
func Karlo(name string, seed uint64, opts ...Option) (*Module, error) {
	switch name {
	case "text":
		cfg, err := model.ParseCLIPTextConfig([]byte(KarloTextEncoderConfig))
		if err != nil {
			return nil, err
		}
		return NewTextEncoder(cfg, KarloTextBatch, seed, opts...)
	case "prior":
		cfg, err := model.ParsePriorConfig([]byte(KarloPriorConfig))
		if err != nil {
			return nil, err
		}
		return NewPrior(cfg, KarloPriorBatch, seed, opts...)
	case "decoder":
		cfg, err := model.ParseUNetConfig([]byte(KarloDecoderConfig))
		if err != nil {
			return nil, err
		}
		return NewUNet("decoder", cfg, KarloDecoderBatch, KarloDecoderSize, KarloContextLen, seed, opts...)
	case "superres":
		cfg, err := model.ParseUNetConfig([]byte(KarloSuperResConfig))
		if err != nil {
			return nil, err
		}
		return NewUNet("superres", cfg, KarloSuperResBatch, KarloSuperResSize, 0, seed, opts...)
	}
	return nil, fmt.Errorf("bench: unknown Karlo module %q (want one of %v)", name, KarloModules)
}

// newSource is the random weights of shapes as stored for the options'
// dtype, and the module's record so far (name, dtype, parameters, weight
// bytes).
func newSource(name, component string, shapes map[string][]int, seed uint64, opts []Option) (loader.Source, *Module) {
	o := applyOptions(opts)
	rs := NewRandomSource(shapes, seed)
	mod := &Module{Name: name, DType: DTypeName(o.dtype), Params: rs.Params(), WeightBytes: storedBytes(component, shapes, o.dtype, o.keep)}
	if o.dtype == loader.F32 {
		return rs, mod
	}
	src := NewStoredSource(rs, component, o.dtype)
	src.keep = o.keep
	return src, mod
}

// randomTensor is a tensor of uniform values in [lo, hi) from stream.
func randomTensor(stream uint64, lo, hi float32, shape ...int) *ops.Tensor {
	t := ops.New(shape...)
	FillUniform(t.Data, stream, lo, hi)
	return t
}

// textMask is a [n, l] 0/1 mask whose row r keeps its first 2 + 7·r
// positions (at most l): an empty prompt and longer ones.
func textMask(n, l int) *ops.Tensor {
	m := ops.New(n, l)
	for r := 0; r < n; r++ {
		for j := 0; j < min(l, 2+7*r); j++ {
			m.Data[r*l+j] = 1
		}
	}
	return m
}

// ---------------------------------------------------------------------------
// Text encoder

// TextEncoderShapes is the state-dict key → shape table of
// CLIPTextModelWithProjection for cfg (spec §3).
func TextEncoderShapes(cfg model.CLIPTextConfig) map[string][]int {
	d, inter := cfg.HiddenSize, cfg.IntermediateSize
	s := map[string][]int{
		"text_model.embeddings.token_embedding.weight":    {cfg.VocabSize, d},
		"text_model.embeddings.position_embedding.weight": {cfg.MaxPositionEmbeddings, d},
		"text_model.final_layer_norm.weight":              {d},
		"text_model.final_layer_norm.bias":                {d},
		"text_projection.weight":                          {cfg.ProjectionDim, d},
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := "text_model.encoder.layers." + strconv.Itoa(i) + "."
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			s[p+"self_attn."+proj+".weight"], s[p+"self_attn."+proj+".bias"] = []int{d, d}, []int{d}
		}
		for _, ln := range []string{"layer_norm1", "layer_norm2"} {
			s[p+ln+".weight"], s[p+ln+".bias"] = []int{d}, []int{d}
		}
		s[p+"mlp.fc1.weight"], s[p+"mlp.fc1.bias"] = []int{inter, d}, []int{inter}
		s[p+"mlp.fc2.weight"], s[p+"mlp.fc2.bias"] = []int{d, inter}, []int{d}
	}
	return s
}

// TextEncoderMACs counts one forward of n rows of l tokens: per layer the
// q, k, v, out projections (4·l·D²), the MLP (2·l·D·I) and attention
// (2·l²·D); then the projection of the n pooled rows (E·D).
func TextEncoderMACs(cfg model.CLIPTextConfig, n, l int) int64 {
	d, inter := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	L := int64(l)
	layer := 4*L*d*d + 2*L*d*inter + 2*L*L*d
	return int64(n) * (int64(cfg.NumHiddenLayers)*layer + int64(cfg.ProjectionDim)*d)
}

// NewTextEncoder builds a CLIP text encoder with random weights and a batch
// of n rows of max_position_embeddings token ids (bos, random ids, eos,
// padding), run without a mask as the pipeline does.
func NewTextEncoder(cfg model.CLIPTextConfig, n int, seed uint64, opts ...Option) (*Module, error) {
	src, mod := newSource("text", "text_encoder", TextEncoderShapes(cfg), seed, opts)
	m, err := model.NewCLIPTextModel(cfg, src)
	if err != nil {
		return nil, err
	}
	l, v := cfg.MaxPositionEmbeddings, cfg.VocabSize
	ids := make([]int, n*l)
	for r := 0; r < n; r++ {
		eos := min(l-1, 1+7*r) // row r: a prompt of 7·r tokens
		for j := 0; j < l; j++ {
			id := int(splitmix64(seed+uint64(r*l+j)) % uint64(max(v-2, 1)))
			switch {
			case j == 0:
				id = max(v-2, 0) // <|startoftext|>
			case j == eos:
				id = v - 1 // <|endoftext|>, the maximum id (pooled position)
			case j > eos:
				id = min(256, v-3) // "!" padding
			}
			ids[r*l+j] = max(id, 0)
		}
	}
	mod.MACs = TextEncoderMACs(cfg, n, l)
	mod.Inputs = fmt.Sprintf("input_ids [%d,%d]", n, l)
	mod.forward = func() *ops.Tensor { e, _ := m.Forward(ids, n); return e }
	return mod, nil
}

// ---------------------------------------------------------------------------
// Prior

// PriorShapes is the state-dict key → shape table of PriorTransformer for
// cfg (spec §4.1).
func PriorShapes(cfg model.PriorConfig) map[string][]int {
	w, e, c := cfg.InnerDim(), cfg.EmbeddingDim, cfg.ClipEmbedDim
	s := map[string][]int{}
	lin := func(key string, out, in int) {
		s[key+".weight"], s[key+".bias"] = []int{out, in}, []int{out}
	}
	norm := func(key string, d int) {
		s[key+".weight"], s[key+".bias"] = []int{d}, []int{d}
	}
	lin("time_embedding.linear_1", cfg.TimeEmbedDim, w)
	lin("time_embedding.linear_2", w, cfg.TimeEmbedDim)
	lin("proj_in", w, e)
	lin("embedding_proj", w, cfg.EmbeddingProjDim)
	lin("encoder_hidden_states_proj", w, e)
	s["positional_embedding"] = []int{1, cfg.NumEmbeddings + cfg.AdditionalEmbeddings, w}
	s["prd_embedding"] = []int{1, 1, w}
	if cfg.NormInType == "layer" {
		norm("norm_in", w)
	}
	if cfg.EmbeddingProjNormType == "layer" {
		norm("embedding_proj_norm", cfg.EmbeddingProjDim)
	}
	for i := 0; i < cfg.NumLayers; i++ {
		p := "transformer_blocks." + strconv.Itoa(i) + "."
		norm(p+"norm1", w)
		norm(p+"norm3", w)
		for _, k := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			lin(p+"attn1."+k, w, w)
		}
		lin(p+"ff.net.0.proj", 4*w, w)
		lin(p+"ff.net.2", w, 4*w)
	}
	norm("norm_out", w)
	lin("proj_to_clip_embeddings", c, w)
	s["clip_mean"], s["clip_std"] = []int{1, c}, []int{1, c}
	return s
}

// PriorMACs counts one forward of n rows: the time MLP (T·W + W·T per row),
// the three input projections (W·E, W·Ep and 77·W·E per row), per layer
// the attention projections (4·L·W²), the feed-forward (8·L·W²) and
// attention (2·L²·W) over L = num_embeddings + 4 tokens, and the output head
// on the last token (C·W).
func PriorMACs(cfg model.PriorConfig, n int) int64 {
	w, e, t := int64(cfg.InnerDim()), int64(cfg.EmbeddingDim), int64(cfg.TimeEmbedDim)
	le := int64(cfg.NumEmbeddings)
	L := le + int64(cfg.AdditionalEmbeddings)
	in := 2*t*w + w*e + w*int64(cfg.EmbeddingProjDim) + le*w*e
	layer := 12*L*w*w + 2*L*L*w
	return int64(n) * (in + int64(cfg.NumLayers)*layer + int64(cfg.ClipEmbedDim)*w)
}

// NewPrior builds a PriorTransformer with random weights and the inputs of
// one guided step: x_t [n, E], proj_embedding [n, Ep], encoder hidden
// states [n, 77, E] and a [n, 77] mask.
func NewPrior(cfg model.PriorConfig, n int, seed uint64, opts ...Option) (*Module, error) {
	src, mod := newSource("prior", "prior", PriorShapes(cfg), seed, opts)
	p, err := model.NewPrior(cfg, src)
	if err != nil {
		return nil, err
	}
	le := cfg.NumEmbeddings
	x := randomTensor(seed+1, -1, 1, n, cfg.EmbeddingDim)
	proj := randomTensor(seed+2, -1, 1, n, cfg.EmbeddingProjDim)
	enc := randomTensor(seed+3, -1, 1, n, le, cfg.EmbeddingDim)
	mask := textMask(n, le)
	mod.MACs = PriorMACs(cfg, n)
	mod.Inputs = fmt.Sprintf("hidden_states [%d,%d], proj_embedding [%d,%d], encoder_hidden_states [%d,%d,%d], attention_mask [%d,%d]",
		n, cfg.EmbeddingDim, n, cfg.EmbeddingProjDim, n, le, cfg.EmbeddingDim, n, le)
	mod.forward = func() *ops.Tensor { return p.Forward(x, 999, proj, enc, mask) }
	return mod, nil
}

// ---------------------------------------------------------------------------
// U-Nets

// unetWalk visits the U-Net of cfg as model.NewUNet builds it: every
// resnet (in → out channels, at input resolution h×w, resampled by up or
// down before its convolutions) and every attention layer (ch channels,
// h×w queries, cross = whether it has added context projections).
type unetVisitor struct {
	resnet    func(key string, in, out, h, w int, up, down bool)
	attention func(key string, ch, h, w int, cross bool)
}

func unetWalk(cfg model.UNetConfig, h, w int, v unetVisitor) {
	const (
		crossDown = "SimpleCrossAttnDownBlock2D"
		crossUp   = "SimpleCrossAttnUpBlock2D"
		crossMid  = "UNetMidBlock2DSimpleCrossAttn"
	)
	boc := cfg.BlockOutChannels
	nb := len(boc)
	out := boc[0]
	for i, typ := range cfg.DownBlockTypes {
		in := out
		out = boc[i]
		p := fmt.Sprintf("down_blocks.%d.", i)
		for j := 0; j < cfg.LayersPerBlock; j++ {
			cin := out
			if j == 0 {
				cin = in
			}
			v.resnet(p+fmt.Sprintf("resnets.%d", j), cin, out, h, w, false, false)
			if typ == crossDown {
				v.attention(p+fmt.Sprintf("attentions.%d", j), out, h, w, true)
			}
		}
		if i < nb-1 {
			v.resnet(p+"downsamplers.0", out, out, h, w, false, true)
			h, w = h/2, w/2
		}
	}
	ch := boc[nb-1]
	v.resnet("mid_block.resnets.0", ch, ch, h, w, false, false)
	if cfg.MidBlockType == crossMid {
		v.attention("mid_block.attentions.0", ch, h, w, true)
	} else if cfg.AddAttention {
		v.attention("mid_block.attentions.0", ch, h, w, false)
	}
	v.resnet("mid_block.resnets.1", ch, ch, h, w, false, false)
	prev := ch
	for i, typ := range cfg.UpBlockTypes {
		out := boc[nb-1-i]
		in := boc[max(nb-2-i, 0)]
		p := fmt.Sprintf("up_blocks.%d.", i)
		layers := cfg.LayersPerBlock + 1
		for j := 0; j < layers; j++ {
			skip, cin := out, out
			if j == layers-1 {
				skip = in
			}
			if j == 0 {
				cin = prev
			}
			v.resnet(p+fmt.Sprintf("resnets.%d", j), cin+skip, out, h, w, false, false)
			if typ == crossUp {
				v.attention(p+fmt.Sprintf("attentions.%d", j), out, h, w, true)
			}
		}
		if i < nb-1 {
			v.resnet(p+"upsamplers.0", out, out, h, w, true, false)
			h, w = 2*h, 2*w
		}
		prev = out
	}
}

// UNetShapes is the state-dict key → shape table of the decoder
// (UNet2DConditionModel) or super-res (UNet2DModel) U-Net of cfg (spec §6–§8).
func UNetShapes(cfg model.UNetConfig) map[string][]int {
	s := map[string][]int{}
	c0, t := cfg.BlockOutChannels[0], cfg.TimeEmbedDim
	lin := func(key string, shape ...int) {
		s[key+".weight"], s[key+".bias"] = shape, []int{shape[0]}
	}
	norm := func(key string, c int) { s[key+".weight"], s[key+".bias"] = []int{c}, []int{c} }
	lin("conv_in", c0, cfg.InChannels, 3, 3)
	lin("time_embedding.linear_1", t, c0)
	lin("time_embedding.linear_2", t, t)
	unetWalk(cfg, 0, 0, unetVisitor{
		resnet: func(key string, in, out, _, _ int, _, _ bool) {
			tout := out
			if cfg.ResnetTimeScaleShift == "scale_shift" {
				tout = 2 * out
			}
			norm(key+".norm1", in)
			lin(key+".conv1", out, in, 3, 3)
			lin(key+".time_emb_proj", tout, t)
			norm(key+".norm2", out)
			lin(key+".conv2", out, out, 3, 3)
			if in != out {
				lin(key+".conv_shortcut", out, in, 1, 1)
			}
		},
		attention: func(key string, ch, _, _ int, cross bool) {
			norm(key+".group_norm", ch)
			for _, k := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
				lin(key+"."+k, ch, ch)
			}
			if cross {
				lin(key+".add_k_proj", ch, cfg.CrossAttentionDim)
				lin(key+".add_v_proj", ch, cfg.CrossAttentionDim)
			}
		},
	})
	norm("conv_norm_out", c0)
	lin("conv_out", cfg.OutChannels, c0, 3, 3)
	return s
}

// UNetMACs counts one forward of n samples of h×w with a context of ctxLen
// tokens (cross-attention layers only): the time MLP (C0·T + T·T per
// sample), conv_in and conv_out (3×3 at h×w); per resnet conv1 and conv2
// (3×3, at the resolution after its resampling), the 1×1 shortcut when the
// channels change, and time_emb_proj; per attention layer with HW queries
// and C channels the q, k, v, out projections (4·HW·C²), the added context
// projections (2·ctxLen·X·C) and attention over HW (+ ctxLen) keys
// (2·HW·keys·C).
func UNetMACs(cfg model.UNetConfig, n, h, w, ctxLen int) int64 {
	c0, t := int64(cfg.BlockOutChannels[0]), int64(cfg.TimeEmbedDim)
	hw := int64(h * w)
	macs := c0*t + t*t + hw*9*c0*int64(cfg.InChannels+cfg.OutChannels)
	unetWalk(cfg, h, w, unetVisitor{
		resnet: func(_ string, in, out, h, w int, up, down bool) {
			hw := int64(h * w)
			if up {
				hw *= 4
			}
			if down {
				hw /= 4
			}
			i, o := int64(in), int64(out)
			tout := o
			if cfg.ResnetTimeScaleShift == "scale_shift" {
				tout = 2 * o
			}
			macs += hw*9*o*i + hw*9*o*o + tout*t
			if in != out {
				macs += hw * o * i
			}
		},
		attention: func(_ string, ch, h, w int, cross bool) {
			c, q := int64(ch), int64(h*w)
			keys := q
			macs += 4 * q * c * c
			if cross {
				l := int64(ctxLen)
				macs += 2 * l * int64(cfg.CrossAttentionDim) * c
				keys += l
			}
			macs += 2 * q * keys * c
		},
	})
	return int64(n) * macs
}

// NewUNet builds the U-Net of cfg with random weights and n samples of
// size×size. A UNet2DConditionModel (the decoder) also gets a context of
// ctxLen tokens ([n, ctxLen, cross_attention_dim]), identity class labels
// [n, T] and a [n, ctxLen] mask, as in one guided decoder step. name
// "superres" stores its weights under convert's policy for
// super_res_first; any other name is used as the component name.
func NewUNet(name string, cfg model.UNetConfig, n, size, ctxLen int, seed uint64, opts ...Option) (*Module, error) {
	component := name
	if name == "superres" {
		component = "super_res_first"
	}
	src, mod := newSource(name, component, UNetShapes(cfg), seed, opts)
	u, err := model.NewUNet(cfg, src)
	if err != nil {
		return nil, err
	}
	x := randomTensor(seed+1, -1, 1, n, cfg.InChannels, size, size)
	inputs := fmt.Sprintf("sample %v", x.Shape)
	var enc, labels, mask *ops.Tensor
	if cfg.ClassName == "UNet2DConditionModel" {
		enc = randomTensor(seed+2, -1, 1, n, ctxLen, cfg.CrossAttentionDim)
		mask = textMask(n, ctxLen)
		inputs += fmt.Sprintf(", encoder_hidden_states %v, attention_mask %v", enc.Shape, mask.Shape)
		if cfg.ClassEmbedType == "identity" {
			labels = randomTensor(seed+3, -1, 1, n, cfg.TimeEmbedDim)
			inputs += fmt.Sprintf(", class_labels %v", labels.Shape)
		}
	} else {
		ctxLen = 0
	}
	mod.MACs = UNetMACs(cfg, n, size, size, ctxLen)
	mod.Inputs = inputs
	mod.forward = func() *ops.Tensor { return u.Forward(x, 999, enc, labels, mask) }
	return mod, nil
}

// GFLOPS is flops/seconds/1e9 (0 when seconds is not positive).
func GFLOPS(flops, seconds float64) float64 {
	if !(seconds > 0) {
		return 0
	}
	return flops / seconds / 1e9
}

// Median returns the median of xs (the mean of the middle two for an even
// count; NaN for none). xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ { // insertion sort: a handful of runs
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
