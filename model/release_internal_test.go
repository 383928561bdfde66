package model

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dalle2/dalle2/loader"
	"github.com/stretchr/testify/require"
)

// In low-memory mode each model reports every block once it has run, in
// order, under the block's state-dict prefix, so that the pipeline can drop
// that block's weight pages (loader.File.ReleasePrefix): every weight of
// the repeated blocks lies under a reported prefix, and no reported prefix
// misses the file. The run's pixels match the default mode's.
func TestLowMemoryReleasesEveryBlock(t *testing.T) {
	path := filepath.Join("..", "testdata", "builtin-tiny-unclip-f16.d2")
	f, err := loader.Open(path)
	require.NoError(t, err)
	defer f.Close()
	p, err := LoadPipelineWith(f, LoadOptions{LowMemory: true})
	require.NoError(t, err)

	got := map[string][]string{} // component -> reported modules of one pass
	record := func(component string, r *releaser) {
		require.NotNil(t, *r, "%s: no releaser in low-memory mode", component)
		orig := *r
		*r = func(module string) {
			got[component] = append(got[component], module)
			orig(module)
		}
	}
	// The text encoder runs once per prompt: build it and run it here.
	require.NoError(t, p.use("text_encoder"))
	record("text_encoder", &p.TextEncoder.Encoder.release)
	p.TextEncoder.Forward(make([]int, p.TextEncoder.Config.MaxPositionEmbeddings), 1)
	text := got["text_encoder"] // Generate runs it again below
	// The others: wrap each model after its first pass, so that the
	// second pass is recorded.
	wrapped := map[string]bool{}
	opts := Options{
		Prompts: []string{"a red horse"}, ImagesPerPrompt: 1, PriorSteps: 2, DecoderSteps: 2, SuperResSteps: 3,
		PriorGuidance: 4, DecoderGuidance: 8, Noise: NewSeededNoise(7),
		Progress: func(stage string, step, total int) {
			if step != 1 || wrapped[stage] {
				return
			}
			wrapped[stage] = true
			switch stage {
			case "prior":
				record("prior", &p.Prior.release)
			case "decoder":
				record("decoder", &p.Decoder.release)
			case "super_res":
				record("super_res_first", &p.SuperResFirst.release)
			}
		},
	}
	res, err := p.Generate(context.Background(), opts)
	require.NoError(t, err)
	got["text_encoder"] = text

	block := map[string]func(key string) (string, bool){
		"text_encoder": prefixModule("text_model.encoder.layers.", 1),
		"prior":        prefixModule("transformer_blocks.", 1),
		"decoder":      unetModule,
	}
	block["super_res_first"] = unetModule
	for comp, modules := range got {
		want := []string{}
		for _, key := range f.Sub(comp).Names() {
			if m, ok := block[comp](key); ok && !slices.Contains(want, m) {
				want = append(want, m)
			}
		}
		require.NotEmpty(t, want, comp)
		require.ElementsMatch(t, want, modules, "%s: reported blocks against the file's", comp)
		require.Len(t, modules, len(want), "%s: each block once per pass: %v", comp, modules)
	}
	require.Len(t, got, 4, "components recorded: %v", got)
	for _, m := range got["decoder"] {
		require.True(t, strings.HasPrefix(m, "down_blocks.") || m == "mid_block" || strings.HasPrefix(m, "up_blocks."), m)
	}

	// Same pixels as the default mode.
	def, err := LoadPipeline(f)
	require.NoError(t, err)
	opts.Progress = nil
	opts.Noise = NewSeededNoise(7)
	want, err := def.Generate(context.Background(), opts)
	require.NoError(t, err)
	require.Equal(t, want.Pixels, res.Pixels)
}

// prefixModule returns a func that maps a key under prefix to its module:
// prefix plus the next parts dot-separated parts ("transformer_blocks.3").
func prefixModule(prefix string, parts int) func(string) (string, bool) {
	return func(key string) (string, bool) {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok {
			return "", false
		}
		f := strings.SplitN(rest, ".", parts+1)
		return prefix + strings.Join(f[:parts], "."), true
	}
}

// unetModule maps a U-Net key to its top-level block ("down_blocks.1",
// "mid_block", "up_blocks.0").
func unetModule(key string) (string, bool) {
	if strings.HasPrefix(key, "mid_block.") {
		return "mid_block", true
	}
	for _, p := range []string{"down_blocks.", "up_blocks."} {
		if m, ok := prefixModule(p, 1)(key); ok {
			return m, true
		}
	}
	return "", false
}
