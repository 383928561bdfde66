package model

// The diffusion prior (diffusers PriorTransformer, spec §4).

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// PriorConfig is the diffusers PriorTransformer config (config.json of
// prior/). Nullable dimensions are resolved as diffusers does: time_embed_dim
// = inner dim (heads × head dim), embedding_proj_dim = clip_embed_dim =
// embedding_dim. Missing keys take Karlo's values (spec §12).
type PriorConfig struct {
	NumAttentionHeads    int
	AttentionHeadDim     int
	NumLayers            int
	EmbeddingDim         int // E: latent, text embedding and text hidden width
	NumEmbeddings        int // text tokens (77)
	AdditionalEmbeddings int // extra tokens (4: proj_embedding, time, latent, prd)
	TimeEmbedActFn       string
	// NormInType and EmbeddingProjNormType are "" (none) or "layer".
	NormInType            string
	EmbeddingProjNormType string
	EncoderHidProjType    string // "linear" (the only supported value)
	AddedEmbType          string // "prd" (the only supported value)
	TimeEmbedDim          int
	EmbeddingProjDim      int
	ClipEmbedDim          int
}

// InnerDim is the transformer width W = heads × head dim.
func (c PriorConfig) InnerDim() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// ParsePriorConfig reads a prior config.json and rejects variants this
// implementation does not support.
func ParsePriorConfig(raw []byte) (PriorConfig, error) {
	str := func(s string) *string { return &s }
	r := struct {
		NumAttentionHeads     int     `json:"num_attention_heads"`
		AttentionHeadDim      int     `json:"attention_head_dim"`
		NumLayers             int     `json:"num_layers"`
		EmbeddingDim          int     `json:"embedding_dim"`
		NumEmbeddings         int     `json:"num_embeddings"`
		AdditionalEmbeddings  int     `json:"additional_embeddings"`
		Dropout               float64 `json:"dropout"`
		TimeEmbedActFn        *string `json:"time_embed_act_fn"`
		NormInType            *string `json:"norm_in_type"`
		EmbeddingProjNormType *string `json:"embedding_proj_norm_type"`
		EncoderHidProjType    *string `json:"encoder_hid_proj_type"`
		AddedEmbType          *string `json:"added_emb_type"`
		TimeEmbedDim          *int    `json:"time_embed_dim"`
		EmbeddingProjDim      *int    `json:"embedding_proj_dim"`
		ClipEmbedDim          *int    `json:"clip_embed_dim"`
	}{
		NumAttentionHeads: 32, AttentionHeadDim: 64, NumLayers: 20, EmbeddingDim: 768,
		NumEmbeddings: 77, AdditionalEmbeddings: 4, TimeEmbedActFn: str("silu"),
		EncoderHidProjType: str("linear"), AddedEmbType: str("prd"),
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return PriorConfig{}, fmt.Errorf("prior config: %w", err)
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	c := PriorConfig{
		NumAttentionHeads:     r.NumAttentionHeads,
		AttentionHeadDim:      r.AttentionHeadDim,
		NumLayers:             r.NumLayers,
		EmbeddingDim:          r.EmbeddingDim,
		NumEmbeddings:         r.NumEmbeddings,
		AdditionalEmbeddings:  r.AdditionalEmbeddings,
		TimeEmbedActFn:        deref(r.TimeEmbedActFn),
		NormInType:            deref(r.NormInType),
		EmbeddingProjNormType: deref(r.EmbeddingProjNormType),
		EncoderHidProjType:    deref(r.EncoderHidProjType),
		AddedEmbType:          deref(r.AddedEmbType),
		TimeEmbedDim:          r.NumAttentionHeads * r.AttentionHeadDim,
		EmbeddingProjDim:      r.EmbeddingDim,
		ClipEmbedDim:          r.EmbeddingDim,
	}
	if r.TimeEmbedDim != nil {
		c.TimeEmbedDim = *r.TimeEmbedDim
	}
	if r.EmbeddingProjDim != nil {
		c.EmbeddingProjDim = *r.EmbeddingProjDim
	}
	if r.ClipEmbedDim != nil {
		c.ClipEmbedDim = *r.ClipEmbedDim
	}
	return c, c.validate()
}

func (c PriorConfig) validate() error {
	var l limitCheck
	l.max("num_attention_heads", c.NumAttentionHeads, MaxConfigWidth)
	l.max("attention_head_dim", c.AttentionHeadDim, MaxConfigWidth)
	l.max("num_layers", c.NumLayers, MaxConfigLayers)
	l.max("embedding_dim", c.EmbeddingDim, MaxConfigWidth)
	l.max("num_embeddings", c.NumEmbeddings, MaxConfigTokens)
	l.max("time_embed_dim", c.TimeEmbedDim, MaxConfigWidth)
	l.max("embedding_proj_dim", c.EmbeddingProjDim, MaxConfigWidth)
	l.max("clip_embed_dim", c.ClipEmbedDim, MaxConfigWidth)
	if c.NumAttentionHeads <= MaxConfigWidth && c.AttentionHeadDim <= MaxConfigWidth { // no overflow
		l.max("num_attention_heads × attention_head_dim", c.InnerDim(), MaxConfigWidth)
	}
	if err := l.err("prior"); err != nil {
		return err
	}
	if c.NumAttentionHeads <= 0 || c.AttentionHeadDim <= 0 || c.NumLayers < 0 || c.EmbeddingDim <= 0 ||
		c.NumEmbeddings <= 0 || c.TimeEmbedDim <= 0 || c.EmbeddingProjDim <= 0 || c.ClipEmbedDim <= 0 {
		return fmt.Errorf("prior config: non-positive size in %+v", c)
	}
	if _, err := clipActivation(c.TimeEmbedActFn); err != nil || c.TimeEmbedActFn == "quick_gelu" {
		return fmt.Errorf("prior config: unsupported time_embed_act_fn %q (want silu, swish or gelu)", c.TimeEmbedActFn)
	}
	for _, n := range []struct{ key, v string }{{"norm_in_type", c.NormInType}, {"embedding_proj_norm_type", c.EmbeddingProjNormType}} {
		if n.v != "" && n.v != "layer" {
			return fmt.Errorf("prior config: unsupported %s %q (want null or \"layer\")", n.key, n.v)
		}
	}
	if c.EncoderHidProjType != "linear" {
		return fmt.Errorf("prior config: unsupported encoder_hid_proj_type %q (only \"linear\" is implemented)", c.EncoderHidProjType)
	}
	if c.AddedEmbType != "prd" {
		return fmt.Errorf("prior config: unsupported added_emb_type %q (only \"prd\" is implemented)", c.AddedEmbType)
	}
	if c.AdditionalEmbeddings != 4 {
		return fmt.Errorf("prior config: additional_embeddings %d, want 4 (proj_embedding, time, latent, prd tokens)", c.AdditionalEmbeddings)
	}
	return nil
}

// priorTimeEmbedding is diffusers' TimestepEmbedding with out_dim = W.
type priorTimeEmbedding struct {
	Linear1 clipLinear // linear_1 [T, W]
	Linear2 clipLinear // linear_2 [W, T]
}

// priorAttention is the self-attention (attn1) of a BasicTransformerBlock.
type priorAttention struct {
	ToQ   clipLinear // to_q [W, W]
	ToK   clipLinear // to_k [W, W]
	ToV   clipLinear // to_v [W, W]
	ToOut clipLinear // to_out.0 [W, W]
}

// priorFeedForward is FeedForward with exact GELU.
type priorFeedForward struct {
	Net0Proj clipLinear // net.0.proj [4W, W]
	Net2     clipLinear // net.2 [W, 4W]
}

// priorBlock is a BasicTransformerBlock without cross-attention (no norm2).
type priorBlock struct {
	Norm1 clipNorm // [W]
	Attn1 priorAttention
	Norm3 clipNorm // [W]
	FF    priorFeedForward
}

// Prior is diffusers' PriorTransformer.
type Prior struct {
	Config PriorConfig

	TimeEmbedding           priorTimeEmbedding // time_embedding
	ProjIn                  clipLinear         // proj_in [W, E]
	EmbeddingProjNorm       *clipNorm          // embedding_proj_norm [Ep], when embedding_proj_norm_type is "layer"
	EmbeddingProj           clipLinear         // embedding_proj [W, Ep]
	EncoderHiddenStatesProj clipLinear         // encoder_hidden_states_proj [W, E]
	PositionalEmbedding     *ops.Tensor        // positional_embedding [1, L, W], L = num_embeddings + 4
	PrdEmbedding            *ops.Tensor        // prd_embedding [1, 1, W]
	NormIn                  *clipNorm          // norm_in [W], when norm_in_type is "layer"
	TransformerBlocks       []priorBlock       // transformer_blocks.{i}
	NormOut                 clipNorm           // norm_out [W]
	ProjToClipEmbeddings    clipLinear         // proj_to_clip_embeddings [C, W]
	ClipMean                *ops.Tensor        // clip_mean [1, C]
	ClipStd                 *ops.Tensor        // clip_std [1, C]

	// Hook, when set, receives submodule outputs under the golden names
	// ("time_proj", "time_embedding", "embedding_proj",
	// "encoder_hidden_states_proj", "proj_in", "transformer_blocks.0",
	// "norm_out", "proj_to_clip_embeddings", ...) and the input of each
	// block as "pre_hook.transformer_blocks.{i}.arg0". The tensor is only
	// valid during the call.
	Hook func(name string, t *ops.Tensor)

	timeAct func(dst, x *ops.Tensor)
	scale   float32
	arena   ops.Arena
	release releaser // low-memory mode: drops each block's weight pages after it runs
}

// NewPrior binds the prior's weights from src.
func NewPrior(cfg PriorConfig, src loader.Source) (*Prior, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w, e, c := cfg.InnerDim(), cfg.EmbeddingDim, cfg.ClipEmbedDim
	const eps = 1e-5 // nn.LayerNorm's default, used by every norm of the prior
	act, _ := clipActivation(cfg.TimeEmbedActFn)
	b := newBinder("prior", src)
	p := &Prior{
		Config: cfg,
		TimeEmbedding: priorTimeEmbedding{
			Linear1: bindClipLinear(b.sub("time_embedding"), "linear_1", cfg.TimeEmbedDim, w, true),
			Linear2: bindClipLinear(b.sub("time_embedding"), "linear_2", w, cfg.TimeEmbedDim, true),
		},
		ProjIn:                  bindClipLinear(b, "proj_in", w, e, true),
		EmbeddingProj:           bindClipLinear(b, "embedding_proj", w, cfg.EmbeddingProjDim, true),
		EncoderHiddenStatesProj: bindClipLinear(b, "encoder_hidden_states_proj", w, e, true),
		PositionalEmbedding:     b.tensor("positional_embedding", 1, cfg.NumEmbeddings+cfg.AdditionalEmbeddings, w),
		PrdEmbedding:            b.tensor("prd_embedding", 1, 1, w),
		NormOut:                 bindClipNorm(b, "norm_out", w, eps),
		ProjToClipEmbeddings:    bindClipLinear(b, "proj_to_clip_embeddings", c, w, true),
		ClipMean:                b.tensor("clip_mean", 1, c),
		ClipStd:                 b.tensor("clip_std", 1, c),
		timeAct:                 act,
		scale:                   float32(math.Pow(float64(cfg.AttentionHeadDim), -0.5)),
	}
	if cfg.EmbeddingProjNormType == "layer" {
		n := bindClipNorm(b, "embedding_proj_norm", cfg.EmbeddingProjDim, eps)
		p.EmbeddingProjNorm = &n
	}
	if cfg.NormInType == "layer" {
		n := bindClipNorm(b, "norm_in", w, eps)
		p.NormIn = &n
	}
	p.TransformerBlocks = make([]priorBlock, cfg.NumLayers)
	for i := range p.TransformerBlocks {
		t := b.sub("transformer_blocks").sub(strconv.Itoa(i))
		a := t.sub("attn1")
		p.TransformerBlocks[i] = priorBlock{
			Norm1: bindClipNorm(t, "norm1", w, eps),
			Attn1: priorAttention{
				ToQ:   bindClipLinear(a, "to_q", w, w, true),
				ToK:   bindClipLinear(a, "to_k", w, w, true),
				ToV:   bindClipLinear(a, "to_v", w, w, true),
				ToOut: bindClipLinear(a.sub("to_out"), "0", w, w, true),
			},
			Norm3: bindClipNorm(t, "norm3", w, eps),
			FF: priorFeedForward{
				Net0Proj: bindClipLinear(t.sub("ff").sub("net").sub("0"), "proj", 4*w, w, true),
				Net2:     bindClipLinear(t.sub("ff").sub("net"), "2", w, 4*w, true),
			},
		}
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// EmbeddingDim is the width E of the prior's latents and text inputs.
func (p *Prior) EmbeddingDim() int { return p.Config.EmbeddingDim }

// Forward predicts the clean image embedding x̂₀ from the noisy one.
//
//	x: [N, E] noisy image embedding, t: timestep,
//	projEmb: [N, Ep] CLIP text embeddings, enc: [N, num_embeddings, E] text hidden states,
//	mask: [N, num_embeddings] 0/1 text padding mask, or nil
//	-> [N, C] (an arena tensor valid until the next Forward)
//
// With a mask the attention bias is (1−mask)·(−10000) over the text tokens
// (0 over the 4 extra tokens) plus −10000 above the diagonal; with a nil
// mask there is no bias at all, not even the causal one (as in diffusers).
func (p *Prior) Forward(x *ops.Tensor, t int64, projEmb, enc, mask *ops.Tensor) *ops.Tensor {
	c := p.Config
	n, w, le := x.Dim(0), c.InnerDim(), c.NumEmbeddings
	l := le + c.AdditionalEmbeddings
	var maskShape []int
	if mask != nil {
		maskShape = mask.Shape
	}
	if len(x.Shape) != 2 || x.Shape[1] != c.EmbeddingDim ||
		len(projEmb.Shape) != 2 || projEmb.Shape[0] != n || projEmb.Shape[1] != c.EmbeddingProjDim ||
		len(enc.Shape) != 3 || enc.Shape[0] != n || enc.Shape[1] != le || enc.Shape[2] != c.EmbeddingDim ||
		(mask != nil && (len(mask.Shape) != 2 || mask.Shape[0] != n || mask.Shape[1] != le)) {
		panic(fmt.Sprintf("model: Prior.Forward: x %v, projEmb %v, enc %v, mask %v; want [N, %d], [N, %d], [N, %d, %d], [N, %d]",
			x.Shape, projEmb.Shape, enc.Shape, maskShape, c.EmbeddingDim, c.EmbeddingProjDim, le, c.EmbeddingDim, le))
	}
	a := &p.arena
	a.Reset()

	// Time embedding: linear_2(act(linear_1(sinusoidal(t)))).
	tp := a.New(n, w)
	ops.Timesteps(tp, t, true, 0)
	clipHook(p.Hook, "time_proj", tp)
	temb := p.TimeEmbedding.Linear1.forward(a, tp)
	p.timeAct(temb, temb)
	temb = p.TimeEmbedding.Linear2.forward(a, temb)
	clipHook(p.Hook, "time_embedding", temb)

	if p.EmbeddingProjNorm != nil {
		projEmb = p.EmbeddingProjNorm.forward(a, projEmb)
	}
	pe := p.EmbeddingProj.forward(a, projEmb)
	clipHook(p.Hook, "embedding_proj", pe)
	e := p.EncoderHiddenStatesProj.forward(a, enc)
	clipHook(p.Hook, "encoder_hidden_states_proj", e)
	h := p.ProjIn.forward(a, x)
	clipHook(p.Hook, "proj_in", h)

	// Sequence [text tokens, proj_embedding, time, latent, prd] + positions.
	prd := a.New(n, 1, w)
	for i := 0; i < n; i++ {
		ops.Copy(prd.Rows(i, i+1), p.PrdEmbedding)
	}
	seq := a.New(n, l, w)
	ops.Concat(seq, 1, e, pe.Reshape(n, 1, w), temb.Reshape(n, 1, w), h.Reshape(n, 1, w), prd)
	ops.AddRows(seq, seq, p.PositionalEmbedding)

	var bias *ops.Tensor
	if mask != nil {
		// bias[n, i, j] = f32(t_j + c_ij): t_j = f32((1−mask_j)·−10000) for
		// text tokens and 0 for the extra ones; c_ij = −10000 when j > i.
		bias = a.New(n, l, l)
		for b := 0; b < n; b++ {
			for i := 0; i < l; i++ {
				row := bias.Data[(b*l+i)*l : (b*l+i+1)*l]
				for j := range row {
					var tj, cij float32
					if j < le {
						tj = float32(1-mask.Data[b*le+j]) * -10000
					}
					if j > i {
						cij = -10000
					}
					row[j] = tj + cij
				}
			}
		}
	}

	if p.NormIn != nil {
		seq = p.NormIn.forward(a, seq)
	}
	for i := range p.TransformerBlocks {
		name := "transformer_blocks." + strconv.Itoa(i)
		clipHook(p.Hook, "pre_hook."+name+".arg0", seq)
		seq = p.TransformerBlocks[i].forward(a, seq, bias, c.NumAttentionHeads, p.scale)
		clipHook(p.Hook, name, seq)
		p.release.done(name)
	}
	seq = p.NormOut.forward(a, seq)
	clipHook(p.Hook, "norm_out", seq)

	// Output = projection of the last (prd) token.
	last := a.New(n, 1, w)
	ops.Narrow(last, seq, 1, l-1)
	out := p.ProjToClipEmbeddings.forward(a, last.Reshape(n, w))
	clipHook(p.Hook, "proj_to_clip_embeddings", out)
	return out
}

// forward is h = h + to_out(MHA(norm1(h), bias)); h = h + ff(norm3(h)).
func (blk *priorBlock) forward(a *ops.Arena, h, bias *ops.Tensor, heads int, scale float32) *ops.Tensor {
	x := blk.Norm1.forward(a, h)
	q := blk.Attn1.ToQ.forward(a, x)
	k := blk.Attn1.ToK.forward(a, x)
	v := blk.Attn1.ToV.forward(a, x)
	att := a.New(q.Shape...)
	ops.Attention(att, q, k, v, bias, heads, false, scale)
	att = blk.Attn1.ToOut.forward(a, att)
	r := a.New(h.Shape...)
	ops.Add(r, att, h)

	x = blk.Norm3.forward(a, r)
	f := blk.FF.Net0Proj.forward(a, x)
	ops.GELU(f, f)
	f = blk.FF.Net2.forward(a, f)
	out := a.New(h.Shape...)
	ops.Add(out, f, r)
	return out
}

// PostProcess un-normalises the final prior latents:
// dst = f32(f32(x·clip_std) + clip_mean), broadcast over rows.
//
//	x, dst: [N, C] (dst may alias x)
func (p *Prior) PostProcess(dst, x *ops.Tensor) {
	c := p.Config.ClipEmbedDim
	if len(x.Shape) != 2 || x.Shape[1] != c || !dst.SameShape(x) {
		panic(fmt.Sprintf("model: Prior.PostProcess: dst %v, x %v, want [N, %d]", dst.Shape, x.Shape, c))
	}
	// No op broadcasts a per-column product, and this runs once per image.
	std, mean := p.ClipStd.Data, p.ClipMean.Data
	for i, v := range x.Data {
		dst.Data[i] = float32(v*std[i%c]) + mean[i%c]
	}
}
