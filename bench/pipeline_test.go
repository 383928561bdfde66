package bench

import (
	"context"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

// tinyPipeline is tiny-unclip's architecture (the golden test pipeline's
// configs, spec §12 keys only): the same code paths as Karlo at a size
// that writes and runs in well under a second. Its text encoder keeps the
// real 49,408-token vocabulary, which the built-in tokenizer needs.
func tinyPipeline() PipelineConfigs {
	return PipelineConfigs{
		TextEncoder: `{"architectures": ["CLIPTextModelWithProjection"], "vocab_size": 49408, "hidden_size": 32,
  "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
  "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "projection_dim": 32}`,
		Prior: `{"_class_name": "PriorTransformer", "num_attention_heads": 2, "attention_head_dim": 12,
  "num_layers": 1, "embedding_dim": 32, "num_embeddings": 77, "additional_embeddings": 4}`,
		TextProj: `{"_class_name": "UnCLIPTextProjModel", "clip_embeddings_dim": 32, "clip_extra_context_tokens": 4,
  "cross_attention_dim": 100, "time_embed_dim": 128}`,
		Decoder: `{"_class_name": "UNet2DConditionModel", "sample_size": 32, "in_channels": 3, "out_channels": 6,
  "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
  "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
  "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32, "cross_attention_dim": 100,
  "attention_head_dim": 4, "class_embed_type": "identity", "resnet_time_scale_shift": "scale_shift"}`,
		SuperResFirst: `{"_class_name": "UNet2DModel", "sample_size": 64, "in_channels": 6, "out_channels": 3,
  "down_block_types": ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32, "add_attention": true,
  "attention_head_dim": 8}`,
		SuperResLast: `{"_class_name": "UNet2DModel", "sample_size": null, "in_channels": 6, "out_channels": 3,
  "down_block_types": ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32, "add_attention": true,
  "attention_head_dim": 8}`,
		PriorScheduler:    KarloPriorSchedulerConfig,
		DecoderScheduler:  KarloDecoderSchedulerConfig,
		SuperResScheduler: KarloSuperResSchedulerConfig,
	}
}

// TestKarloPipelineTables: the full-size component tables add up to spec
// §12's tensor and parameter counts (nothing is allocated).
func TestKarloPipelineTables(t *testing.T) {
	comps, err := KarloPipeline().Components(1)
	require.NoError(t, err)
	var names []string
	tensors := map[string]int{}
	var params int64
	for _, c := range comps {
		names = append(names, c.Name)
		if c.Shapes != nil {
			tensors[c.Name] = len(c.Shapes)
			params += countParams(c.Shapes)
		}
	}
	require.Equal(t, []string{"decoder", "decoder_scheduler", "prior", "prior_scheduler", "super_res_first",
		"super_res_last", "super_res_scheduler", "text_encoder", "text_proj", "tokenizer"}, names)
	require.Equal(t, map[string]int{"decoder": 716, "prior": 338, "super_res_first": 408, "super_res_last": 408,
		"text_encoder": 197, "text_proj": 11}, tensors)
	require.Equal(t, int64(3_422_157_516), params) // spec §12: text-to-image total
	sc, err := model.ParseUNetConfig([]byte(KarloPipeline().SuperResLast))
	require.NoError(t, err)
	require.Zero(t, sc.SampleSize, "super_res_last: sample_size null")
}

// TestWritePipelineTiny writes the tiny pipeline in each storage type,
// loads it with model.LoadPipeline and runs two steps of every stage (the fewest the schedulers take): every
// traced intermediate is finite and the image has the super-res size. Each
// stored tensor has the dtype convert's policy gives it, and the file's
// weights are RandomSource's for the seed.
//
// Under -short (the race-detector run) only q8, whose files mix Q8_0 and F16
// tensors, is written.
func TestWritePipelineTiny(t *testing.T) {
	targets := []loader.DType{loader.F32, loader.F16, loader.Q8_0}
	if testing.Short() {
		targets = targets[2:]
	}
	for _, target := range targets {
		t.Run(DTypeName(target), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tiny.d2")
			rep, err := WritePipeline(path, tinyPipeline(), WriteOptions{DType: target, Seed: 3})
			require.NoError(t, err)
			require.Equal(t, path, rep.Path)
			require.Positive(t, rep.FileSize)

			f, err := loader.Open(path)
			require.NoError(t, err)
			defer f.Close()
			require.NoError(t, f.Verify())
			require.Equal(t, target.String(), f.Meta()[loader.MetaDType])
			require.Len(t, f.Components(), 10)
			comps, err := tinyPipeline().Components(3)
			require.NoError(t, err)
			var tensors int
			var bytes int64
			for _, c := range comps {
				fc, ok := f.Component(c.Name)
				require.True(t, ok, c.Name)
				require.Equal(t, c.Class, fc.Class)
				policy := convert.NewPolicy(c.Name, slices.Collect(maps.Keys(c.Shapes)), target)
				for key, shape := range c.Shapes {
					ti, err := f.Sub(c.Name).Tensor(key)
					require.NoError(t, err)
					require.Equal(t, shape, ti.Shape, key)
					require.Equal(t, policy.DType(key, shape), ti.DType, "%s/%s", c.Name, key)
					tensors++
				}
				bytes += StoredBytes(c.Name, c.Shapes, target)
			}
			require.Equal(t, tensors, rep.Tensors)
			require.Len(t, f.Names(), tensors)
			require.Equal(t, bytes, rep.Bytes, "StoredBytes counts what is written")

			// The decoder's conv_in is RandomSource's, bit for bit as F32,
			// rounded to nearest as F16 (the policy never quantizes it).
			lt, err := f.Sub("decoder").Tensor("conv_in.weight")
			require.NoError(t, err)
			src, err := NewRandomSource(comps[0].Shapes, 3).Tensor("conv_in.weight")
			require.NoError(t, err)
			want, got := mustF32(t, src.Data), decode(t, lt)
			require.Len(t, got, len(want))
			for i := range want {
				if lt.DType == loader.F16 {
					want[i] = quant.F16ToF32(quant.F32ToF16(want[i]))
				}
				require.Equal(t, want[i], got[i], "conv_in.weight[%d] as %s", i, lt.DType)
			}

			p, err := model.LoadPipeline(f)
			require.NoError(t, err)
			o := model.Defaults
			o.Prompts, o.Noise = []string{"a cat"}, model.NewSeededNoise(7)
			o.PriorSteps, o.DecoderSteps, o.SuperResSteps = 2, 2, 2 // the schedulers need at least 2
			traced := 0
			o.Trace = func(name string, x *ops.Tensor) {
				traced++
				for _, v := range x.Dense().Data {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("trace %s %v: non-finite value", name, x.Shape)
					}
				}
			}
			res, err := p.Generate(context.Background(), o)
			require.NoError(t, err)
			require.Positive(t, traced)
			require.Equal(t, []int{1, 64, 64, 3}, res.Images.Shape)
		})
	}
}
