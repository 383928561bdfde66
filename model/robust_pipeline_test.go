package model

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// robustRewrite copies the built-in tiny pipeline to a new weight file,
// letting edit change component configs, tensors and blobs on the way.
func robustRewrite(t *testing.T, edit func(t *testing.T, kind, name string, data []byte, shape []int) ([]byte, []int)) *loader.File {
	src := robustBuiltin(t)
	path := filepath.Join(t.TempDir(), "edited.d2")
	w, err := loader.Create(path)
	require.NoError(t, err)
	for k, v := range src.Meta() {
		w.SetMeta(k, v)
	}
	for _, c := range src.Components() {
		c.Config, _ = edit(t, "config", c.Name, c.Config, nil)
		require.NoError(t, w.AddComponent(c))
	}
	for _, info := range src.Index() {
		tn, err := src.Tensor(info.Name)
		require.NoError(t, err)
		comp, key, _ := strings.Cut(info.Name, "/")
		tn.Name = key
		tn.Data, tn.Shape = edit(t, "tensor", info.Name, tn.Data, tn.Shape)
		require.NoError(t, w.AddTensor(comp, tn))
	}
	for _, b := range src.Blobs() {
		d, err := src.Blob(b.Name)
		require.NoError(t, err)
		d, _ = edit(t, "blob", b.Name, d, nil)
		require.NoError(t, w.AddBlob(b.Name, d))
	}
	require.NoError(t, w.Commit())
	f, err := loader.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestRobustPipelineConsistency: model files whose components are each
// valid but do not fit together are refused by LoadPipeline with an error
// naming the mismatch, where they used to make Generate panic.
func TestRobustPipelineConsistency(t *testing.T) {
	type editFunc = func(*testing.T, string, string, []byte, []int) ([]byte, []int)
	replace := func(kind, name, old, new string) editFunc {
		return func(t *testing.T, k, n string, data []byte, shape []int) ([]byte, []int) {
			if k == kind && n == name {
				require.True(t, bytes.Contains(data, []byte(old)), "%s %s has no %q", k, n, old)
				data = bytes.Replace(data, []byte(old), []byte(new), 1)
			}
			return data, shape
		}
	}
	for _, c := range []struct {
		name string
		edit editFunc
		want string
	}{
		{"token id beyond the text encoder's vocabulary", replace("blob", "tokenizer/vocab.json", `"a</w>": 320`, `"a</w>": 60000`),
			"tokenizer: vocab.json has ids up to 60000, text_encoder vocab_size is 49408"},
		{"decoder scheduler without learned variance", replace("config", "decoder_scheduler", `"learned_range"`, `"fixed_small_log"`),
			"decoder_scheduler: variance_type fixed_small_log needs a model output of 3 channels, the model makes 6"},
		{"prior for 50 tokens", func(t *testing.T, k, n string, data []byte, shape []int) ([]byte, []int) {
			if k == "config" && n == "prior" {
				require.Contains(t, string(data), `"num_embeddings":77`)
				return bytes.Replace(data, []byte(`"num_embeddings":77`), []byte(`"num_embeddings":50`), 1), shape
			}
			if k == "tensor" && n == "prior/positional_embedding" { // [1, 77+4, W] -> [1, 50+4, W]
				return data[:54*shape[2]*2], []int{1, 54, shape[2]}
			}
			return data, shape
		}, "prior: num_embeddings 50, prompts are 77 tokens"},
		{"super-res sample size not a multiple of 2", replace("config", "super_res_first", `"sample_size":64`, `"sample_size":63`),
			"super_res_first: sample_size 63 is not a positive multiple of 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := robustRewrite(t, c.edit)
			p, err := LoadPipeline(f)
			require.Nil(t, p)
			require.ErrorContains(t, err, "components do not fit together")
			require.ErrorContains(t, err, c.want)
		})
	}

	// The unedited file loads and runs.
	f := robustRewrite(t, func(_ *testing.T, _, _ string, data []byte, shape []int) ([]byte, []int) { return data, shape })
	p, err := LoadPipeline(f)
	require.NoError(t, err)
	o := Defaults
	o.Prompts, o.PriorSteps, o.DecoderSteps, o.SuperResSteps, o.DecoderOnly = []string{"a"}, 2, 2, 2, true
	o.Noise = NewSeededNoise(1)
	_, err = p.Generate(context.Background(), o)
	require.NoError(t, err)
}
