package model

// UnCLIPTextProjModel (spec §5): turns the image embedding and the text
// encoder outputs into the decoder's context tokens and additive time
// embedding.

import (
	"encoding/json"
	"fmt"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// UnCLIPTextProjConfig is the config.json of text_proj/. Missing keys take
// Karlo's values (spec §12).
type UnCLIPTextProjConfig struct {
	ClipEmbeddingsDim      int `json:"clip_embeddings_dim"`       // E
	ClipExtraContextTokens int `json:"clip_extra_context_tokens"` // K
	CrossAttentionDim      int `json:"cross_attention_dim"`       // X
	TimeEmbedDim           int `json:"time_embed_dim"`            // T
}

// ParseUnCLIPTextProjConfig reads a text_proj config.json.
func ParseUnCLIPTextProjConfig(raw []byte) (UnCLIPTextProjConfig, error) {
	c := UnCLIPTextProjConfig{ClipEmbeddingsDim: 768, ClipExtraContextTokens: 4, CrossAttentionDim: 1536, TimeEmbedDim: 1280}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("text_proj config: %w", err)
	}
	return c, c.validate()
}

func (c UnCLIPTextProjConfig) validate() error {
	var l limitCheck
	l.max("clip_embeddings_dim", c.ClipEmbeddingsDim, MaxConfigWidth)
	l.max("clip_extra_context_tokens", c.ClipExtraContextTokens, MaxConfigTokens)
	l.max("cross_attention_dim", c.CrossAttentionDim, MaxConfigWidth)
	l.max("time_embed_dim", c.TimeEmbedDim, MaxConfigWidth)
	if err := l.err("text_proj"); err != nil {
		return err
	}
	if c.ClipEmbeddingsDim <= 0 || c.ClipExtraContextTokens <= 0 || c.CrossAttentionDim <= 0 || c.TimeEmbedDim <= 0 {
		return fmt.Errorf("text_proj config: non-positive size in %+v", c)
	}
	return nil
}

// TextProj is diffusers' UnCLIPTextProjModel.
type TextProj struct {
	Config UnCLIPTextProjConfig

	LearnedClassifierFreeGuidanceEmbeddings    *ops.Tensor // learned_classifier_free_guidance_embeddings [E]
	EmbeddingProj                              clipLinear  // embedding_proj [T, E]
	ClipImageEmbeddingsProjectToTimeEmbeddings clipLinear  // clip_image_embeddings_project_to_time_embeddings [T, E]
	ClipExtraContextTokensProj                 clipLinear  // clip_extra_context_tokens_proj [K·X, E]
	EncoderHiddenStatesProj                    clipLinear  // encoder_hidden_states_proj [X, E]
	TextEncoderHiddenStatesNorm                clipNorm    // text_encoder_hidden_states_norm [X], eps 1e-5

	// Hook, when set, receives submodule outputs under the golden names
	// ("embedding_proj", "clip_image_embeddings_project_to_time_embeddings",
	// "clip_extra_context_tokens_proj", "encoder_hidden_states_proj",
	// "text_encoder_hidden_states_norm"). The tensor is only valid during
	// the call.
	Hook func(name string, t *ops.Tensor)

	arena ops.Arena
}

// NewTextProj binds the text projection's weights from src.
func NewTextProj(cfg UnCLIPTextProjConfig, src loader.Source) (*TextProj, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e, x, t := cfg.ClipEmbeddingsDim, cfg.CrossAttentionDim, cfg.TimeEmbedDim
	b := newBinder("text_proj", src)
	m := &TextProj{
		Config:                                  cfg,
		LearnedClassifierFreeGuidanceEmbeddings: b.tensor("learned_classifier_free_guidance_embeddings", e),
		EmbeddingProj:                           bindClipLinear(b, "embedding_proj", t, e, true),
		ClipImageEmbeddingsProjectToTimeEmbeddings: bindClipLinear(b, "clip_image_embeddings_project_to_time_embeddings", t, e, true),
		ClipExtraContextTokensProj:                 bindClipLinear(b, "clip_extra_context_tokens_proj", cfg.ClipExtraContextTokens*x, e, true),
		EncoderHiddenStatesProj:                    bindClipLinear(b, "encoder_hidden_states_proj", x, e, true),
		TextEncoderHiddenStatesNorm:                bindClipNorm(b, "text_encoder_hidden_states_norm", x, 1e-5),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward builds the decoder conditioning.
//
//	imageEmbeds: [B, E], promptEmbeds: [M, E], textHidden: [M, L, E]
//	cfg: prepend B copies of the learned guidance vector to the image rows (M = 2B),
//	     so row i < B (unconditional) pairs it with the "" text; otherwise M = B
//	-> encoderHidden [M, K+L, X] = [extra context tokens ; LayerNorm(proj(textHidden))],
//	   additive [M, T] = proj_img(image) + proj_text(promptEmbeds)
//
// Extra token k, feature c is clip_extra_context_tokens_proj(image)[c·K + k].
// Both outputs are arena tensors valid until the next Forward.
func (m *TextProj) Forward(imageEmbeds, promptEmbeds, textHidden *ops.Tensor, cfg bool) (encoderHidden, additive *ops.Tensor) {
	c := m.Config
	e, k, x := c.ClipEmbeddingsDim, c.ClipExtraContextTokens, c.CrossAttentionDim
	b := imageEmbeds.Dim(0)
	rows := b
	if cfg {
		rows = 2 * b
	}
	if len(imageEmbeds.Shape) != 2 || imageEmbeds.Shape[1] != e ||
		len(promptEmbeds.Shape) != 2 || promptEmbeds.Shape[0] != rows || promptEmbeds.Shape[1] != e ||
		len(textHidden.Shape) != 3 || textHidden.Shape[0] != rows || textHidden.Shape[2] != e {
		panic(fmt.Sprintf("model: TextProj.Forward: image %v, prompt %v, hidden %v (cfg %v); want [B, %d], [%d, %d], [%d, L, %d]",
			imageEmbeds.Shape, promptEmbeds.Shape, textHidden.Shape, cfg, e, rows, e, rows, e))
	}
	l := textHidden.Dim(1)
	a := &m.arena
	a.Reset()

	img := imageEmbeds
	if cfg {
		img = a.New(rows, e)
		for i := 0; i < b; i++ {
			ops.Copy(img.Rows(i, i+1), m.LearnedClassifierFreeGuidanceEmbeddings)
		}
		ops.Copy(img.Rows(b, rows), imageEmbeds)
	}

	tp := m.EmbeddingProj.forward(a, promptEmbeds)
	clipHook(m.Hook, "embedding_proj", tp)
	ti := m.ClipImageEmbeddingsProjectToTimeEmbeddings.forward(a, img)
	clipHook(m.Hook, "clip_image_embeddings_project_to_time_embeddings", ti)
	additive = a.New(rows, c.TimeEmbedDim)
	ops.Add(additive, ti, tp)

	v := m.ClipExtraContextTokensProj.forward(a, img)
	clipHook(m.Hook, "clip_extra_context_tokens_proj", v)
	tokens := a.New(rows, k, x)
	ops.Transpose(tokens, v.Reshape(rows, x, k))

	th := m.EncoderHiddenStatesProj.forward(a, textHidden)
	clipHook(m.Hook, "encoder_hidden_states_proj", th)
	th = m.TextEncoderHiddenStatesNorm.forward(a, th)
	clipHook(m.Hook, "text_encoder_hidden_states_norm", th)

	encoderHidden = a.New(rows, k+l, x)
	ops.Concat(encoderHidden, 1, tokens, th)
	return encoderHidden, additive
}
