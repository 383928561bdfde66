package model

// CLIP text and vision towers (transformers CLIPTextModelWithProjection and
// CLIPVisionModelWithProjection, spec §3 and §11), plus the Linear and
// LayerNorm parameter pairs that prior.go and textproj.go share.

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// ---------------------------------------------------------------------------
// Shared parameter blocks

// clipLinear is an nn.Linear: y = x·Weightᵀ + Bias.
type clipLinear struct {
	Weight *ops.Tensor // [out, in]
	Bias   *ops.Tensor // [out], nil for bias=False
}

// bindClipLinear binds key.weight (and key.bias when bias is set).
func bindClipLinear(b *binder, key string, out, in int, bias bool) clipLinear {
	s := b.sub(key)
	l := clipLinear{Weight: s.weight("weight", out, in)}
	if bias {
		l.Bias = s.tensor("bias", out)
	}
	return l
}

// forward maps x: [..., in] -> [..., out], allocated from a.
func (l *clipLinear) forward(a *ops.Arena, x *ops.Tensor) *ops.Tensor {
	shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), l.Weight.Dim(0))
	y := a.New(shape...)
	ops.Linear(y, x, l.Weight, l.Bias)
	return y
}

// clipNorm is an nn.LayerNorm over the last dimension.
type clipNorm struct {
	Weight *ops.Tensor // [D]
	Bias   *ops.Tensor // [D]
	eps    float32
}

func bindClipNorm(b *binder, key string, d int, eps float32) clipNorm {
	s := b.sub(key)
	return clipNorm{Weight: s.tensor("weight", d), Bias: s.tensor("bias", d), eps: eps}
}

// forward normalises x: [..., D] into a new tensor of the same shape.
func (n *clipNorm) forward(a *ops.Arena, x *ops.Tensor) *ops.Tensor {
	y := a.New(x.Shape...)
	ops.LayerNorm(y, x, n.Weight, n.Bias, n.eps)
	return y
}

// clipActivation maps a transformers/diffusers activation name to its op.
func clipActivation(name string) (func(dst, x *ops.Tensor), error) {
	switch name {
	case "quick_gelu":
		return ops.QuickGELU, nil
	case "gelu":
		return ops.GELU, nil
	case "silu", "swish":
		return ops.SiLU, nil
	}
	return nil, fmt.Errorf("unsupported activation %q", name)
}

// ---------------------------------------------------------------------------
// Encoder layer (identical in the text and vision towers)

// clipAttention is CLIPAttention: separate q, k, v projections, heads are
// channel groups of D/heads, output projection.
type clipAttention struct {
	KProj   clipLinear // [D, D]
	VProj   clipLinear // [D, D]
	QProj   clipLinear // [D, D]
	OutProj clipLinear // [D, D]
}

// clipMLP is CLIPMLP: fc2(act(fc1(x))).
type clipMLP struct {
	FC1 clipLinear // [I, D]
	FC2 clipLinear // [D, I]
}

// clipEncoderLayer is one pre-LN CLIPEncoderLayer.
type clipEncoderLayer struct {
	SelfAttn   clipAttention
	LayerNorm1 clipNorm // [D]
	MLP        clipMLP
	LayerNorm2 clipNorm // [D]
}

// clipEncoder holds what every layer of a tower shares.
type clipEncoder struct {
	Layers  []clipEncoderLayer
	release releaser // low-memory mode: drops each layer's weight pages after it runs
	heads   int
	scale   float32 // head_dim^-0.5, applied to q before the dot product
	act     func(dst, x *ops.Tensor)
}

func bindClipEncoder(b *binder, layers, d, inter, heads int, eps float32) []clipEncoderLayer {
	out := make([]clipEncoderLayer, layers)
	for i := range out {
		l := b.sub("encoder").sub("layers").sub(strconv.Itoa(i))
		out[i] = clipEncoderLayer{
			SelfAttn: clipAttention{
				KProj:   bindClipLinear(l.sub("self_attn"), "k_proj", d, d, true),
				VProj:   bindClipLinear(l.sub("self_attn"), "v_proj", d, d, true),
				QProj:   bindClipLinear(l.sub("self_attn"), "q_proj", d, d, true),
				OutProj: bindClipLinear(l.sub("self_attn"), "out_proj", d, d, true),
			},
			LayerNorm1: bindClipNorm(l, "layer_norm1", d, eps),
			MLP: clipMLP{
				FC1: bindClipLinear(l.sub("mlp"), "fc1", inter, d, true),
				FC2: bindClipLinear(l.sub("mlp"), "fc2", d, inter, true),
			},
			LayerNorm2: bindClipNorm(l, "layer_norm2", d, eps),
		}
	}
	return out
}

// forward runs every layer on h: [N, L, D] and returns the encoder output.
// bias (nil or [N, 1, L]) and causal mask the attention; prefix names the
// hooks ("text_model.encoder.layers.").
//
// Per layer: h = h + out_proj(attn(layer_norm1(h))); h = h + fc2(act(fc1(layer_norm2(h)))).
// As in transformers, q is multiplied by the scale before q·kᵀ.
func (e *clipEncoder) forward(a *ops.Arena, h, bias *ops.Tensor, causal bool, prefix string, hook func(string, *ops.Tensor)) *ops.Tensor {
	for i := range e.Layers {
		l := &e.Layers[i]
		name := prefix + strconv.Itoa(i)

		x := l.LayerNorm1.forward(a, h)
		clipHook(hook, name+".layer_norm1", x)
		q := l.SelfAttn.QProj.forward(a, x)
		ops.Scale(q, q, e.scale)
		k := l.SelfAttn.KProj.forward(a, x)
		v := l.SelfAttn.VProj.forward(a, x)
		att := a.New(h.Shape...)
		ops.Attention(att, q, k, v, bias, e.heads, causal, 1)
		att = l.SelfAttn.OutProj.forward(a, att)
		clipHook(hook, name+".self_attn", att)
		r := a.New(h.Shape...)
		ops.Add(r, h, att)

		x = l.LayerNorm2.forward(a, r)
		clipHook(hook, name+".layer_norm2", x)
		f := l.MLP.FC1.forward(a, x)
		e.act(f, f)
		f = l.MLP.FC2.forward(a, f)
		clipHook(hook, name+".mlp", f)
		h = a.New(r.Shape...)
		ops.Add(h, r, f)
		clipHook(hook, name, h)
		e.release.done(name)
	}
	return h
}

// clipHook calls hook if it is set.
func clipHook(hook func(string, *ops.Tensor), name string, t *ops.Tensor) {
	if hook != nil {
		hook(name, t)
	}
}

// clipMaskMin is torch.finfo(torch.float32).min, transformers' mask value.
const clipMaskMin = -math.MaxFloat32

// ---------------------------------------------------------------------------
// Text tower

// CLIPTextConfig is the transformers CLIPTextConfig (config.json of
// text_encoder/). Missing keys take Karlo's values (spec §12).
type CLIPTextConfig struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"` // "quick_gelu" or "gelu"
	LayerNormEps          float64 `json:"layer_norm_eps"`
	ProjectionDim         int     `json:"projection_dim"`
	// EOSTokenID selects the pooled position: 2 (legacy configs, Karlo's)
	// means argmax(input_ids), anything else the first position holding it.
	EOSTokenID int `json:"eos_token_id"`
}

// ParseCLIPTextConfig reads a text_encoder config.json.
func ParseCLIPTextConfig(raw []byte) (CLIPTextConfig, error) {
	c := CLIPTextConfig{
		VocabSize: 49408, HiddenSize: 768, IntermediateSize: 3072, NumHiddenLayers: 12,
		NumAttentionHeads: 12, MaxPositionEmbeddings: 77, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, ProjectionDim: 768, EOSTokenID: 2,
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("text_encoder config: %w", err)
	}
	return c, c.validate()
}

func (c CLIPTextConfig) validate() error {
	var l limitCheck
	l.max("vocab_size", c.VocabSize, MaxConfigVocab)
	l.max("max_position_embeddings", c.MaxPositionEmbeddings, MaxConfigTokens)
	if err := checkTowerLimits(&l, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.ProjectionDim).err("text_encoder"); err != nil {
		return err
	}
	if err := checkTower("text_encoder", c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers,
		c.NumAttentionHeads, c.ProjectionDim, c.HiddenAct, c.LayerNormEps); err != nil {
		return err
	}
	if c.VocabSize <= 0 || c.MaxPositionEmbeddings <= 0 {
		return fmt.Errorf("text_encoder config: vocab_size %d and max_position_embeddings %d must be positive",
			c.VocabSize, c.MaxPositionEmbeddings)
	}
	return nil
}

// checkTowerLimits adds the size limits of the fields the two CLIP towers
// share to l.
func checkTowerLimits(l *limitCheck, hidden, inter, layers, heads, proj int) *limitCheck {
	l.max("hidden_size", hidden, MaxConfigWidth)
	l.max("intermediate_size", inter, MaxConfigWidth)
	l.max("num_hidden_layers", layers, MaxConfigLayers)
	l.max("num_attention_heads", heads, MaxConfigWidth)
	l.max("projection_dim", proj, MaxConfigWidth)
	return l
}

// checkTower validates the fields the two CLIP towers share.
func checkTower(what string, hidden, inter, layers, heads, proj int, act string, eps float64) error {
	if hidden <= 0 || inter <= 0 || layers <= 0 || heads <= 0 || proj <= 0 {
		return fmt.Errorf("%s config: hidden_size %d, intermediate_size %d, num_hidden_layers %d, num_attention_heads %d and projection_dim %d must be positive",
			what, hidden, inter, layers, heads, proj)
	}
	if hidden%heads != 0 {
		return fmt.Errorf("%s config: hidden_size %d is not a multiple of num_attention_heads %d", what, hidden, heads)
	}
	if act != "quick_gelu" && act != "gelu" {
		return fmt.Errorf("%s config: unsupported hidden_act %q (want quick_gelu or gelu)", what, act)
	}
	if !(eps > 0) {
		return fmt.Errorf("%s config: layer_norm_eps %g must be positive", what, eps)
	}
	return nil
}

// CLIPTextModel is CLIPTextModelWithProjection.
type CLIPTextModel struct {
	Config CLIPTextConfig

	TokenEmbedding    *ops.Tensor // text_model.embeddings.token_embedding.weight [V, D]
	PositionEmbedding *ops.Tensor // text_model.embeddings.position_embedding.weight [P, D]
	Encoder           clipEncoder // text_model.encoder.layers.{i}
	FinalLayerNorm    clipNorm    // text_model.final_layer_norm [D]
	TextProjection    *ops.Tensor // text_projection.weight [E, D], no bias

	// Hook, when set, receives submodule outputs under the golden names
	// ("text_model.embeddings", "text_model.encoder.layers.0.self_attn",
	// "text_projection", ...) and "pre_hook.text_model.encoder.layers.0.arg0".
	// The tensor is only valid during the call.
	Hook func(name string, t *ops.Tensor)

	arena ops.Arena
}

// NewCLIPTextModel binds the text tower's weights from src (keys as in
// transformers' state dict, optional position_ids buffer ignored).
func NewCLIPTextModel(cfg CLIPTextConfig, src loader.Source) (*CLIPTextModel, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d, eps := cfg.HiddenSize, float32(cfg.LayerNormEps)
	act, _ := clipActivation(cfg.HiddenAct)
	b := newBinder("text_encoder", src)
	t := b.sub("text_model")
	t.sub("embeddings").ignore("position_ids")
	m := &CLIPTextModel{
		Config:            cfg,
		TokenEmbedding:    t.sub("embeddings").sub("token_embedding").tensor("weight", cfg.VocabSize, d),
		PositionEmbedding: t.sub("embeddings").sub("position_embedding").tensor("weight", cfg.MaxPositionEmbeddings, d),
		Encoder: clipEncoder{
			Layers: bindClipEncoder(t, cfg.NumHiddenLayers, d, cfg.IntermediateSize, cfg.NumAttentionHeads, eps),
			heads:  cfg.NumAttentionHeads,
			scale:  float32(math.Pow(float64(d/cfg.NumAttentionHeads), -0.5)),
			act:    act,
		},
		FinalLayerNorm: bindClipNorm(t, "final_layer_norm", d, eps),
		TextProjection: b.sub("text_projection").weight("weight", cfg.ProjectionDim, d),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward encodes n rows of token ids (len(ids) = n·L, L ≤
// max_position_embeddings, every id in [0, vocab_size)) with the causal mask
// only, as the unCLIP pipeline calls it.
//
//	-> textEmbeds [n, projection_dim], lastHidden [n, L, D]
//
// Both are arena tensors valid until the next Forward.
func (m *CLIPTextModel) Forward(ids []int, n int) (textEmbeds, lastHidden *ops.Tensor) {
	return m.forward(ids, n, nil)
}

// ForwardMasked is Forward with a padding mask ([n, L], 1 = keep, 0 =
// padding) combined with the causal mask, as transformers does when given
// attention_mask: masked keys get finfo(float32).min added to their logits.
// The unCLIP pipeline does not use it.
func (m *CLIPTextModel) ForwardMasked(ids []int, n int, mask *ops.Tensor) (textEmbeds, lastHidden *ops.Tensor) {
	if mask == nil {
		panic("model: CLIPTextModel.ForwardMasked: nil mask")
	}
	return m.forward(ids, n, mask)
}

func (m *CLIPTextModel) forward(ids []int, n int, mask *ops.Tensor) (textEmbeds, lastHidden *ops.Tensor) {
	c := m.Config
	if n <= 0 || len(ids)%n != 0 || len(ids)/n == 0 || len(ids)/n > c.MaxPositionEmbeddings {
		panic(fmt.Sprintf("model: CLIPTextModel.Forward: %d ids for %d rows (max length %d)", len(ids), n, c.MaxPositionEmbeddings))
	}
	l, d := len(ids)/n, c.HiddenSize
	for _, id := range ids {
		if id < 0 || id >= c.VocabSize {
			panic(fmt.Sprintf("model: CLIPTextModel.Forward: token id %d outside [0, %d)", id, c.VocabSize))
		}
	}
	a := &m.arena
	a.Reset()

	// Embeddings: token_embedding[ids] + position_embedding[0..L-1].
	h := a.New(n, l, d)
	ops.Embedding(h.Reshape(n*l, d), m.TokenEmbedding, ids)
	ops.AddRows(h, h, m.PositionEmbedding.Rows(0, l))
	clipHook(m.Hook, "text_model.embeddings", h)
	clipHook(m.Hook, "pre_hook.text_model.encoder.layers.0.arg0", h)

	var bias *ops.Tensor
	if mask != nil {
		if !mask.SameShape(&ops.Tensor{Shape: []int{n, l}}) {
			panic(fmt.Sprintf("model: CLIPTextModel.ForwardMasked: mask %v for %d rows of %d", mask.Shape, n, l))
		}
		bias = a.New(n, 1, l)
		for i, v := range mask.Data {
			bias.Data[i] = 0
			if v == 0 {
				bias.Data[i] = clipMaskMin
			}
		}
	}
	h = m.Encoder.forward(a, h, bias, true, "text_model.encoder.layers.", m.Hook)

	lastHidden = m.FinalLayerNorm.forward(a, h)
	clipHook(m.Hook, "text_model.final_layer_norm", lastHidden)

	// Pooled state at the eos position of each row (transformers 4.36):
	// legacy eos_token_id 2 -> first index of the largest id; otherwise the
	// first index equal to eos_token_id (0 when absent, as argmax of zeros).
	pooled := a.New(n, d)
	rows := lastHidden.Reshape(n*l, d)
	for r := 0; r < n; r++ {
		row := ids[r*l : (r+1)*l]
		p := 0
		for j, id := range row {
			if c.EOSTokenID == 2 {
				if id > row[p] {
					p = j
				}
			} else if id == c.EOSTokenID {
				p = j
				break
			}
		}
		ops.Copy(pooled.Rows(r, r+1), rows.Rows(r*l+p, r*l+p+1))
	}
	textEmbeds = a.New(n, c.ProjectionDim)
	ops.Linear(textEmbeds, pooled, m.TextProjection, nil)
	clipHook(m.Hook, "text_projection", textEmbeds)
	return textEmbeds, lastHidden
}

// ---------------------------------------------------------------------------
// Vision tower

// CLIPVisionConfig is the transformers CLIPVisionConfig (config.json of
// image_encoder/). Missing keys take Karlo's values (spec §12).
type CLIPVisionConfig struct {
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	NumChannels       int     `json:"num_channels"`
	ProjectionDim     int     `json:"projection_dim"`
	HiddenAct         string  `json:"hidden_act"` // "quick_gelu" or "gelu"
	LayerNormEps      float64 `json:"layer_norm_eps"`
}

// ParseCLIPVisionConfig reads an image_encoder config.json.
func ParseCLIPVisionConfig(raw []byte) (CLIPVisionConfig, error) {
	c := CLIPVisionConfig{
		HiddenSize: 1024, IntermediateSize: 4096, NumHiddenLayers: 24, NumAttentionHeads: 16,
		ImageSize: 224, PatchSize: 14, NumChannels: 3, ProjectionDim: 768,
		HiddenAct: "quick_gelu", LayerNormEps: 1e-5,
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("image_encoder config: %w", err)
	}
	return c, c.validate()
}

func (c CLIPVisionConfig) validate() error {
	var l limitCheck
	l.max("image_size", c.ImageSize, MaxConfigImageSize)
	l.max("patch_size", c.PatchSize, MaxConfigImageSize)
	l.max("num_channels", c.NumChannels, MaxConfigWidth)
	if err := checkTowerLimits(&l, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.ProjectionDim).err("image_encoder"); err != nil {
		return err
	}
	if err := checkTower("image_encoder", c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers,
		c.NumAttentionHeads, c.ProjectionDim, c.HiddenAct, c.LayerNormEps); err != nil {
		return err
	}
	if c.ImageSize <= 0 || c.PatchSize <= 0 || c.NumChannels <= 0 || c.ImageSize%c.PatchSize != 0 {
		return fmt.Errorf("image_encoder config: image_size %d must be a positive multiple of patch_size %d (num_channels %d)",
			c.ImageSize, c.PatchSize, c.NumChannels)
	}
	return nil
}

// Patches is the number of patches per image side.
func (c CLIPVisionConfig) Patches() int { return c.ImageSize / c.PatchSize }

// CLIPVisionModel is CLIPVisionModelWithProjection.
type CLIPVisionModel struct {
	Config CLIPVisionConfig

	ClassEmbedding    *ops.Tensor // vision_model.embeddings.class_embedding [D]
	PatchEmbedding    *ops.Tensor // vision_model.embeddings.patch_embedding.weight [D, C, P, P], no bias
	PositionEmbedding *ops.Tensor // vision_model.embeddings.position_embedding.weight [G²+1, D]
	PreLayrnorm       clipNorm    // vision_model.pre_layrnorm (sic) [D]
	Encoder           clipEncoder // vision_model.encoder.layers.{i}
	PostLayernorm     clipNorm    // vision_model.post_layernorm [D]
	VisualProjection  *ops.Tensor // visual_projection.weight [E, D], no bias

	// Hook, when set, receives submodule outputs under the golden names
	// ("vision_model.embeddings", "vision_model.encoder.layers.N",
	// "vision_model.post_layernorm", "visual_projection", ...). The tensor is
	// only valid during the call.
	Hook func(name string, t *ops.Tensor)

	arena ops.Arena
}

// NewCLIPVisionModel binds the vision tower's weights from src.
func NewCLIPVisionModel(cfg CLIPVisionConfig, src loader.Source) (*CLIPVisionModel, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d, eps, g := cfg.HiddenSize, float32(cfg.LayerNormEps), cfg.Patches()
	act, _ := clipActivation(cfg.HiddenAct)
	b := newBinder("image_encoder", src)
	v := b.sub("vision_model")
	e := v.sub("embeddings")
	e.ignore("position_ids")
	m := &CLIPVisionModel{
		Config:            cfg,
		ClassEmbedding:    e.tensor("class_embedding", d),
		PatchEmbedding:    e.sub("patch_embedding").weight("weight", d, cfg.NumChannels, cfg.PatchSize, cfg.PatchSize),
		PositionEmbedding: e.sub("position_embedding").tensor("weight", g*g+1, d),
		PreLayrnorm:       bindClipNorm(v, "pre_layrnorm", d, eps),
		Encoder: clipEncoder{
			Layers: bindClipEncoder(v, cfg.NumHiddenLayers, d, cfg.IntermediateSize, cfg.NumAttentionHeads, eps),
			heads:  cfg.NumAttentionHeads,
			scale:  float32(math.Pow(float64(d/cfg.NumAttentionHeads), -0.5)),
			act:    act,
		},
		PostLayernorm:    bindClipNorm(v, "post_layernorm", d, eps),
		VisualProjection: b.sub("visual_projection").weight("weight", cfg.ProjectionDim, d),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward encodes preprocessed images (full attention, no mask).
//
//	pixels: [N, num_channels, image_size, image_size]
//	-> imageEmbeds [N, projection_dim], lastHidden [N, G²+1, D] (encoder output, before post_layernorm)
//
// Both are arena tensors valid until the next Forward.
func (m *CLIPVisionModel) Forward(pixels *ops.Tensor) (imageEmbeds, lastHidden *ops.Tensor) {
	c := m.Config
	if len(pixels.Shape) != 4 || pixels.Shape[1] != c.NumChannels || pixels.Shape[2] != c.ImageSize || pixels.Shape[3] != c.ImageSize {
		panic(fmt.Sprintf("model: CLIPVisionModel.Forward: pixels %v, want [N, %d, %d, %d]", pixels.Shape, c.NumChannels, c.ImageSize, c.ImageSize))
	}
	n, d, g := pixels.Shape[0], c.HiddenSize, c.Patches()
	a := &m.arena
	a.Reset()

	// Patch embedding (conv, stride = patch, no bias), flattened row-major
	// to [N, G², D]; class token first; plus position embeddings.
	conv := a.New(n, d, g, g)
	ops.Conv2D(conv, pixels, m.PatchEmbedding, nil, c.PatchSize, 0)
	patches := a.New(n, g*g, d)
	ops.Transpose(patches, conv.Reshape(n, d, g*g))
	cls := a.New(n, 1, d)
	for i := 0; i < n; i++ {
		ops.Copy(cls.Rows(i, i+1), m.ClassEmbedding)
	}
	h := a.New(n, g*g+1, d)
	ops.Concat(h, 1, cls, patches)
	ops.AddRows(h, h, m.PositionEmbedding)
	clipHook(m.Hook, "vision_model.embeddings", h)

	h = m.PreLayrnorm.forward(a, h)
	clipHook(m.Hook, "vision_model.pre_layrnorm", h)
	lastHidden = m.Encoder.forward(a, h, nil, false, "vision_model.encoder.layers.", m.Hook)

	first := a.New(n, 1, d)
	ops.Narrow(first, lastHidden, 1, 0)
	pooled := m.PostLayernorm.forward(a, first.Reshape(n, d))
	clipHook(m.Hook, "vision_model.post_layernorm", pooled)
	imageEmbeds = a.New(n, c.ProjectionDim)
	ops.Linear(imageEmbeds, pooled, m.VisualProjection, nil)
	clipHook(m.Hook, "visual_projection", imageEmbeds)
	return imageEmbeds, lastHidden
}
