package model_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// priorTol is relative to max(1, max|reference|). The prior's sinusoidal
// time embedding computes sin/cos(t·ω) with ω = exp(...): PyTorch's SLEEF exp
// is off by 1 ulp on ~10% of inputs (spec §0), and at t = 999 one ulp of ω
// moves an output by up to 6e-5; everything after is ~1e-6 fp32 summation
// noise. So 1e-4.
const priorTol = 1e-4

func newGoldenPrior(t *testing.T) (*model.Prior, *loader.Safetensors, model.PriorConfig) {
	st, raw := clipWeights(t, filepath.Join("tiny-unclip", "prior"))
	cfg, err := model.ParsePriorConfig(raw)
	require.NoError(t, err)
	p, err := model.NewPrior(cfg, st)
	require.NoError(t, err)
	return p, st, cfg
}

func TestPriorGolden(t *testing.T) {
	p, _, cfg := newGoldenPrior(t)
	// The tiny config's inner width differs from its embedding width, which
	// exercises every place where the two must not be confused.
	require.Equal(t, 24, cfg.InnerDim())
	require.Equal(t, 32, cfg.EmbeddingDim)
	g := clipOpenModule(t, "module_prior.safetensors", "prior")
	letters := g.letters()
	require.NotEmpty(t, letters)
	for _, l := range letters {
		t.Run(l, func(t *testing.T) {
			hooks, hook := clipHooks()
			p.Hook = hook
			defer func() { p.Hook = nil }()
			inputs := []string{"hidden_states", "timestep", "proj_embedding", "encoder_hidden_states"}
			var mask *ops.Tensor
			if g.has(l, "attention_mask") {
				inputs = append(inputs, "attention_mask")
				mask = g.get(t, l, "attention_mask")
			} // else: no mask, hence (as in diffusers) no causal mask either
			ts := g.get(t, l, "timestep")
			out := p.Forward(g.get(t, l, "hidden_states"), int64(ts.Data[0]), g.get(t, l, "proj_embedding"),
				g.get(t, l, "encoder_hidden_states"), mask)
			out = out.Clone()

			// post_process_latents is applied to the reference's own output:
			// x·std + mean are two rounded fp32 ops in the same order, exact.
			pred := g.get(t, l, "predicted_image_embedding")
			post := ops.New(pred.Shape...)
			p.PostProcess(post, pred)
			within(t, "post_process_latents", post, g.get(t, l, "post_process_latents"), 0)

			g.checkCall(t, l, inputs, map[string]*ops.Tensor{"predicted_image_embedding": out}, hooks,
				map[string]string{"post_process_latents": "checked exactly above from the reference's prediction"}, priorTol)
		})
	}
}

func TestPriorLoadErrors(t *testing.T) {
	_, st, cfg := newGoldenPrior(t)
	clipCheckLoadErrors(t, st, func(s loader.Source) error { _, err := model.NewPrior(cfg, s); return err })
}

func TestPriorConfig(t *testing.T) {
	_, raw := clipWeights(t, filepath.Join("tiny-unclip", "prior"))
	cfg, err := model.ParsePriorConfig(raw)
	require.NoError(t, err)
	// nulls resolve as in diffusers: time_embed_dim = inner dim, the others = embedding_dim.
	require.Equal(t, 24, cfg.TimeEmbedDim)
	require.Equal(t, 32, cfg.EmbeddingProjDim)
	require.Equal(t, 32, cfg.ClipEmbedDim)
	require.Equal(t, "", cfg.NormInType)

	for _, bad := range []string{
		`{"norm_in_type": "batch"}`,
		`{"embedding_proj_norm_type": "group"}`,
		`{"encoder_hid_proj_type": null}`,
		`{"added_emb_type": null}`,
		`{"additional_embeddings": 5}`,
		`{"time_embed_act_fn": "quick_gelu"}`,
		`{"time_embed_act_fn": null}`,
		`{"num_attention_heads": 0}`,
	} {
		_, err := model.ParsePriorConfig([]byte(bad))
		require.Error(t, err, bad)
	}
}

// TestPriorOptionalNorms checks that norm_in_type / embedding_proj_norm_type
// "layer" bind their LayerNorms (diffusers' keys norm_in.*, embedding_proj_norm.*).
func TestPriorOptionalNorms(t *testing.T) {
	_, st, cfg := newGoldenPrior(t)
	cfg.NormInType, cfg.EmbeddingProjNormType = "layer", "layer"
	m := clipCopySource(t, st)
	_, err := model.NewPrior(cfg, m)
	require.ErrorContains(t, err, `missing tensor "norm_in.weight"`)
	require.ErrorContains(t, err, `missing tensor "embedding_proj_norm.bias"`)
	for key, d := range map[string]int{"norm_in": 24, "embedding_proj_norm": 32} {
		for _, p := range []string{".weight", ".bias"} {
			m[key+p] = loader.Tensor{Name: key + p, DType: loader.F32, Shape: []int{d}, Data: make([]byte, 4*d)}
		}
	}
	p, err := model.NewPrior(cfg, m)
	require.NoError(t, err)
	require.NotNil(t, p.NormIn)
	require.NotNil(t, p.EmbeddingProjNorm)
}

const karloPriorConfig = `{"_class_name": "PriorTransformer", "num_attention_heads": 32, "attention_head_dim": 64,
  "num_layers": 20, "embedding_dim": 768, "num_embeddings": 77, "additional_embeddings": 4,
  "dropout": 0.0, "time_embed_act_fn": "silu", "norm_in_type": null, "embedding_proj_norm_type": null,
  "encoder_hid_proj_type": "linear", "added_emb_type": "prd", "time_embed_dim": null,
  "embedding_proj_dim": null, "clip_embed_dim": null}`

// TestPriorKarloSize binds the full-size prior (spec §4.1 table, §12
// counts) to zero weights.
func TestPriorKarloSize(t *testing.T) {
	cfg, err := model.ParsePriorConfig([]byte(karloPriorConfig))
	require.NoError(t, err)
	want, err := model.ParsePriorConfig([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, want, cfg, "defaults are Karlo's")
	require.Equal(t, 2048, cfg.TimeEmbedDim)

	const w, e = 2048, 768
	shapes := map[string][]int{
		"time_embedding.linear_1.weight": {w, w}, "time_embedding.linear_1.bias": {w},
		"time_embedding.linear_2.weight": {w, w}, "time_embedding.linear_2.bias": {w},
		"proj_in.weight": {w, e}, "proj_in.bias": {w},
		"embedding_proj.weight": {w, e}, "embedding_proj.bias": {w},
		"encoder_hidden_states_proj.weight": {w, e}, "encoder_hidden_states_proj.bias": {w},
		"positional_embedding": {1, 81, w},
		"prd_embedding":        {1, 1, w},
		"norm_out.weight":      {w}, "norm_out.bias": {w},
		"proj_to_clip_embeddings.weight": {e, w}, "proj_to_clip_embeddings.bias": {e},
		"clip_mean": {1, e}, "clip_std": {1, e},
	}
	for i := 0; i < 20; i++ {
		p := fmt.Sprintf("transformer_blocks.%d.", i)
		for _, k := range []string{"norm1", "norm3"} {
			shapes[p+k+".weight"], shapes[p+k+".bias"] = []int{w}, []int{w}
		}
		for _, k := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			shapes[p+"attn1."+k+".weight"], shapes[p+"attn1."+k+".bias"] = []int{w, w}, []int{w}
		}
		shapes[p+"ff.net.0.proj.weight"], shapes[p+"ff.net.0.proj.bias"] = []int{4 * w, w}, []int{4 * w}
		shapes[p+"ff.net.2.weight"], shapes[p+"ff.net.2.bias"] = []int{w, 4 * w}, []int{w}
	}
	n, params := clipCount(shapes)
	require.Equal(t, 338, n)
	require.Equal(t, 1_022_030_080, params)

	p, err := model.NewPrior(cfg, newClipZeroSource(shapes))
	require.NoError(t, err)
	require.Len(t, p.TransformerBlocks, 20)
	require.Equal(t, 768, p.EmbeddingDim())
}
