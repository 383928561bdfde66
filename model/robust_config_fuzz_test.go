package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// robustEmptySource has no tensors at all.
type robustEmptySource struct{}

func (robustEmptySource) Names() []string { return nil }
func (robustEmptySource) Tensor(name string) (loader.Tensor, error) {
	return loader.Tensor{}, errors.New("no tensor " + name)
}

// robustConfigKinds are the config parsers FuzzDiffusersConfig and the
// limit tests drive, each with the constructor of its model (nil for the
// scheduler, built by NewScheduler without weights) and the component of
// the built-in tiny pipeline that holds matching weights ("" for none).
var robustConfigKinds = []struct {
	name, component string
	build           func(raw []byte, src loader.Source) error
}{
	{"unet", "decoder", func(raw []byte, src loader.Source) error {
		cfg, err := ParseUNetConfig(raw)
		if err == nil {
			_, err = NewUNet(cfg, src)
		}
		return err
	}},
	{"prior", "prior", func(raw []byte, src loader.Source) error {
		cfg, err := ParsePriorConfig(raw)
		if err == nil {
			_, err = NewPrior(cfg, src)
		}
		return err
	}},
	{"text_encoder", "text_encoder", func(raw []byte, src loader.Source) error {
		cfg, err := ParseCLIPTextConfig(raw)
		if err == nil {
			_, err = NewCLIPTextModel(cfg, src)
		}
		return err
	}},
	{"image_encoder", "", func(raw []byte, src loader.Source) error {
		cfg, err := ParseCLIPVisionConfig(raw)
		if err == nil {
			_, err = NewCLIPVisionModel(cfg, src)
		}
		return err
	}},
	{"text_proj", "text_proj", func(raw []byte, src loader.Source) error {
		cfg, err := ParseUnCLIPTextProjConfig(raw)
		if err == nil {
			_, err = NewTextProj(cfg, src)
		}
		return err
	}},
	{"scheduler", "", func(raw []byte, _ loader.Source) error {
		cfg, err := ParseSchedulerConfig(raw)
		if err == nil {
			_, err = NewScheduler(cfg)
		}
		return err
	}},
}

// robustBuiltin opens the committed tiny pipeline (../testdata), whose
// components give the fuzzer real weights to bind against.
func robustBuiltin(t testing.TB) *loader.File {
	f, err := loader.Open(filepath.Join("..", "testdata", "builtin-tiny-unclip-f16.d2"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// maxBuildAlloc bounds what building a model from any accepted config may
// allocate when its weights are missing: the binder's key map and error
// lines. The largest configs the limits admit have about 50000 keys (16
// U-Net blocks of 65 layers); at a few hundred bytes per key that is ~15
// MiB. Allocating the weights a config describes (up to 2^32 floats per
// tensor at the width limit) would exceed this by orders of magnitude.
const maxBuildAlloc = 64 << 20

// FuzzDiffusersConfig feeds arbitrary JSON to every config parser, then
// builds the model: never a panic; against a source without tensors
// building must fail, without allocating the weights the config describes;
// with the built-in pipeline's weights (kind >= 128) it may succeed.
func FuzzDiffusersConfig(f *testing.F) {
	builtin := robustBuiltin(f)
	for i, k := range robustConfigKinds {
		if k.component != "" {
			c, ok := builtin.Component(k.component)
			require.True(f, ok, k.component)
			f.Add(uint8(i), []byte(c.Config))
			f.Add(uint8(i|128), []byte(c.Config))
		}
		f.Add(uint8(i), []byte(`{}`))
	}
	f.Fuzz(func(t *testing.T, kind uint8, raw []byte) {
		k := robustConfigKinds[int(kind&127)%len(robustConfigKinds)]
		if kind >= 128 && k.component != "" {
			_ = k.build(raw, builtin.Sub(k.component))
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := k.build(raw, robustEmptySource{})
		runtime.ReadMemStats(&after)
		if k.name != "scheduler" && err == nil {
			t.Fatalf("%s built without weights from %q", k.name, raw)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > maxBuildAlloc {
			t.Fatalf("%s: allocated %d bytes for %d bytes of config", k.name, n, len(raw))
		}
	})
}

// TestRobustConfigLimits: configs declaring absurd sizes are refused by the
// parsers with an error naming the key; configs at the limits parse, and
// building their models without weights fails with the missing keys
// without allocating the (tens of GiB of) weights they describe.
func TestRobustConfigLimits(t *testing.T) {
	const unetBlocks = `"down_block_types":["ResnetDownsampleBlock2D","ResnetDownsampleBlock2D"],"up_block_types":["ResnetUpsampleBlock2D","ResnetUpsampleBlock2D"]`
	refused := []struct {
		kind, config, want string
	}{
		{"unet", `{"_class_name":"UNet2DModel",` + unetBlocks + `,"block_out_channels":[32,1000000000000]}`, "block_out_channels[1] = 1000000000000 exceeds the limit of 65536"},
		{"unet", `{"_class_name":"UNet2DModel",` + unetBlocks + `,"block_out_channels":[32,64],"layers_per_block":100000}`, "layers_per_block = 100000 exceeds the limit of 64"},
		{"unet", `{"_class_name":"UNet2DModel","down_block_types":` + strings.Repeat(`["ResnetDownsampleBlock2D"`+strings.Repeat(`,"ResnetDownsampleBlock2D"`, 69)+`]`, 1) + `,"up_block_types":[],"block_out_channels":[32]}`, "number of blocks = 70 exceeds the limit of 16"},
		{"unet", `{"_class_name":"UNet2DConditionModel",` + unetBlocks + `,"block_out_channels":[32,64],"cross_attention_dim":9223372036854775807}`, "cross_attention_dim = 9223372036854775807 exceeds"},
		{"prior", `{"num_attention_heads":65536,"attention_head_dim":65536}`, "num_attention_heads × attention_head_dim = 4294967296 exceeds the limit of 65536"},
		{"prior", `{"num_layers":1000000}`, "num_layers = 1000000 exceeds the limit of 256"},
		{"prior", `{"embedding_dim":4611686018427387904}`, "embedding_dim = 4611686018427387904 exceeds"},
		{"text_encoder", `{"vocab_size":100000000000}`, "vocab_size = 100000000000 exceeds the limit of 1048576"},
		{"text_encoder", `{"hidden_size":1048576,"num_attention_heads":1}`, "hidden_size = 1048576 exceeds the limit of 65536"},
		{"text_encoder", `{"max_position_embeddings":1000000000}`, "max_position_embeddings = 1000000000 exceeds"},
		{"image_encoder", `{"image_size":1000000,"patch_size":1}`, "image_size = 1000000 exceeds the limit of 16384"},
		{"image_encoder", `{"num_hidden_layers":4096}`, "num_hidden_layers = 4096 exceeds the limit of 256"},
		{"text_proj", `{"clip_extra_context_tokens":1000000000}`, "clip_extra_context_tokens = 1000000000 exceeds the limit of 65536"},
		{"text_proj", `{"cross_attention_dim":1000000000}`, "cross_attention_dim = 1000000000 exceeds"},
		{"scheduler", `{"num_train_timesteps":1000000000000}`, "num_train_timesteps 1000000000000 exceeds the limit of 1048576"},
	}
	kinds := map[string]func([]byte, loader.Source) error{}
	for _, k := range robustConfigKinds {
		kinds[k.name] = k.build
	}
	for i, c := range refused {
		t.Run(fmt.Sprintf("refused %d %s", i, c.kind), func(t *testing.T) {
			var err error
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = kinds[c.kind](cfgBytes(c.config), robustEmptySource{})
			runtime.ReadMemStats(&after)
			require.ErrorContains(t, err, c.want)
			require.ErrorContains(t, err, "config")
			// Parsing a config this size allocates a few KiB.
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
		})
	}

	// At the limits: accepted, and building without weights fails cheaply
	// (the weights described are 2^32 floats per square matrix and more).
	atLimits := []struct{ kind, config, missing string }{
		{"unet", `{"_class_name":"UNet2DConditionModel","down_block_types":["ResnetDownsampleBlock2D","SimpleCrossAttnDownBlock2D"],"up_block_types":["SimpleCrossAttnUpBlock2D","ResnetUpsampleBlock2D"],"mid_block_type":"UNetMidBlock2DSimpleCrossAttn","block_out_channels":[16384,65536],"time_embedding_dim":65536,"cross_attention_dim":65536,"attention_head_dim":64,"layers_per_block":64}`, `missing tensor "conv_in.weight"`},
		{"prior", `{"num_attention_heads":256,"attention_head_dim":256,"embedding_dim":65536,"num_layers":256}`, `missing tensor "proj_in.weight"`},
		{"text_encoder", `{"vocab_size":1048576,"hidden_size":65536,"intermediate_size":65536,"num_attention_heads":64,"num_hidden_layers":256,"projection_dim":65536,"max_position_embeddings":65536}`, `missing tensor "text_model.embeddings.token_embedding.weight"`},
		{"image_encoder", `{"image_size":16384,"patch_size":1,"hidden_size":65536,"intermediate_size":65536,"num_attention_heads":64,"num_hidden_layers":256}`, `missing tensor "vision_model.embeddings.position_embedding.weight"`},
		{"text_proj", `{"clip_embeddings_dim":65536,"clip_extra_context_tokens":65536,"cross_attention_dim":65536,"time_embed_dim":65536}`, `missing tensor "clip_extra_context_tokens_proj.weight"`},
	}
	for _, c := range atLimits {
		t.Run("at limits "+c.kind, func(t *testing.T) {
			var err error
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = kinds[c.kind](cfgBytes(c.config), robustEmptySource{})
			runtime.ReadMemStats(&after)
			require.ErrorContains(t, err, c.missing)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(maxBuildAlloc))
		})
	}
}

// cfgBytes is the bytes of a config literal.
func cfgBytes(s string) []byte { return []byte(s) }

// TestRobustConfigSeeds checks the committed seed corpus exists and is
// small (the fuzzer reads testdata/fuzz/FuzzDiffusersConfig).
func TestRobustConfigSeeds(t *testing.T) {
	des, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzDiffusersConfig"))
	require.NoError(t, err)
	require.NotEmpty(t, des)
	for _, de := range des {
		fi, err := de.Info()
		require.NoError(t, err)
		require.Less(t, fi.Size(), int64(20<<10), de.Name())
	}
}
