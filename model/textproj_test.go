package model_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// textProjTol is relative to max(1, max|reference|): three fp32 Linears of
// width 32 and one LayerNorm, no transcendentals; only summation order
// differs from PyTorch (~1e-7), so 1e-5 leaves a wide margin while still
// catching any layout error (those are O(1)).
const textProjTol = 1e-5

func newGoldenTextProj(t *testing.T) (*model.TextProj, *loader.Safetensors, model.UnCLIPTextProjConfig) {
	st, raw := clipWeights(t, filepath.Join("tiny-unclip", "text_proj"))
	cfg, err := model.ParseUnCLIPTextProjConfig(raw)
	require.NoError(t, err)
	m, err := model.NewTextProj(cfg, st)
	require.NoError(t, err)
	return m, st, cfg
}

func TestTextProjGolden(t *testing.T) {
	m, _, _ := newGoldenTextProj(t)
	g := clipOpenModule(t, "module_text_proj.safetensors", "text_proj")
	letters := g.letters()
	require.NotEmpty(t, letters)
	for _, l := range letters {
		t.Run(l, func(t *testing.T) {
			hooks, hook := clipHooks()
			m.Hook = hook
			defer func() { m.Hook = nil }()
			img, prompt := g.get(t, l, "image_embeddings"), g.get(t, l, "prompt_embeds")
			// The call used do_classifier_free_guidance iff the image rows
			// are half the prompt rows (the learned vector fills the rest).
			cfg := 2*img.Dim(0) == prompt.Dim(0)
			require.True(t, cfg || img.Dim(0) == prompt.Dim(0), "image %v, prompt %v", img.Shape, prompt.Shape)
			enc, add := m.Forward(img, prompt, g.get(t, l, "text_encoder_hidden_states"), cfg)
			g.checkCall(t, l, []string{"image_embeddings", "prompt_embeds", "text_encoder_hidden_states"},
				map[string]*ops.Tensor{"out_encoder_hidden_states": enc, "out_additive_clip_time_embeddings": add},
				hooks, nil, textProjTol)
		})
	}
}

func TestTextProjLoadErrors(t *testing.T) {
	_, st, cfg := newGoldenTextProj(t)
	clipCheckLoadErrors(t, st, func(s loader.Source) error { _, err := model.NewTextProj(cfg, s); return err })
}

const karloTextProjConfig = `{"_class_name": "UnCLIPTextProjModel", "clip_embeddings_dim": 768,
  "clip_extra_context_tokens": 4, "cross_attention_dim": 1536, "time_embed_dim": 1280}`

// TestTextProjKarloSize binds the full-size text projection (spec §5 table,
// §12 counts) to zero weights.
func TestTextProjKarloSize(t *testing.T) {
	cfg, err := model.ParseUnCLIPTextProjConfig([]byte(karloTextProjConfig))
	require.NoError(t, err)
	want, err := model.ParseUnCLIPTextProjConfig([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, want, cfg, "defaults are Karlo's")
	_, err = model.ParseUnCLIPTextProjConfig([]byte(`{"clip_extra_context_tokens": 0}`))
	require.Error(t, err)

	shapes := map[string][]int{
		"learned_classifier_free_guidance_embeddings":             {768},
		"embedding_proj.weight":                                   {1280, 768},
		"embedding_proj.bias":                                     {1280},
		"clip_image_embeddings_project_to_time_embeddings.weight": {1280, 768},
		"clip_image_embeddings_project_to_time_embeddings.bias":   {1280},
		"clip_extra_context_tokens_proj.weight":                   {6144, 768},
		"clip_extra_context_tokens_proj.bias":                     {6144},
		"encoder_hidden_states_proj.weight":                       {1536, 768},
		"encoder_hidden_states_proj.bias":                         {1536},
		"text_encoder_hidden_states_norm.weight":                  {1536},
		"text_encoder_hidden_states_norm.bias":                    {1536},
	}
	n, p := clipCount(shapes)
	require.Equal(t, 11, n)
	require.Equal(t, 7_878_400, p)
	_, err = model.NewTextProj(cfg, newClipZeroSource(shapes))
	require.NoError(t, err)
}
