package bench

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

func goldenDir(t testing.TB) string {
	if d := os.Getenv("DALLE2_GOLDEN"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "golden")
}

func parseKarlo(t testing.TB) (model.CLIPTextConfig, model.PriorConfig, model.UNetConfig, model.UNetConfig) {
	tc, err := model.ParseCLIPTextConfig([]byte(KarloTextEncoderConfig))
	require.NoError(t, err)
	pc, err := model.ParsePriorConfig([]byte(KarloPriorConfig))
	require.NoError(t, err)
	dc, err := model.ParseUNetConfig([]byte(KarloDecoderConfig))
	require.NoError(t, err)
	sc, err := model.ParseUNetConfig([]byte(KarloSuperResConfig))
	require.NoError(t, err)
	return tc, pc, dc, sc
}

// TestKarloTables checks the full-size key tables against spec §12's tensor
// and parameter counts, and the operation counts against the numbers
// bench/torch_side_by_side.py --count measured with forward hooks on its own
// torch.nn modules (nn.Linear, nn.Conv2d, attention bmm shapes), which agree
// to the multiply-add. Nothing is allocated.
func TestKarloTables(t *testing.T) {
	tc, pc, dc, sc := parseKarlo(t)
	for _, c := range []struct {
		name    string
		shapes  map[string][]int
		tensors int
		params  int64
		macs    int64
	}{
		{"text", TextEncoderShapes(tc), 197, 123_650_304, TextEncoderMACs(tc, KarloTextBatch, 77)},
		{"prior", PriorShapes(pc), 338, 1_022_030_080, PriorMACs(pc, KarloPriorBatch)},
		{"decoder", UNetShapes(dc), 716, 885_439_686, UNetMACs(dc, KarloDecoderBatch, 64, 64, KarloContextLen)},
		{"superres", UNetShapes(sc), 408, 691_579_523, UNetMACs(sc, KarloSuperResBatch, 256, 256, 0)},
	} {
		require.Len(t, c.shapes, c.tensors, c.name)
		require.Equal(t, c.params, countParams(c.shapes), c.name)
		want := map[string]int64{ // torch_side_by_side.py --count, FLOPs / 2
			"text":     13_299_683_328,
			"prior":    164_417_929_216,
			"decoder":  608_293_519_360,
			"superres": 4_248_681_349_120,
		}[c.name]
		require.Equal(t, want, c.macs, c.name)
	}
	// Spot checks of the tables against spec §4.1 and §7.1.
	require.Equal(t, []int{8192, 2048}, PriorShapes(pc)["transformer_blocks.19.ff.net.0.proj.weight"])
	ds := UNetShapes(dc)
	require.Equal(t, []int{1280, 2240, 3, 3}, ds["up_blocks.0.resnets.3.conv1.weight"])
	require.Equal(t, []int{640, 1536}, ds["up_blocks.2.attentions.3.add_v_proj.weight"])
	require.Equal(t, []int{1920, 1280}, ds["up_blocks.1.resnets.0.time_emb_proj.weight"]) // scale_shift: 2·960
	require.Equal(t, []int{960, 1280}, UNetShapes(sc)["up_blocks.1.resnets.0.time_emb_proj.weight"])
}

// TestTablesMatchTinyUnclip compares the tables built from the tiny-unclip
// configs with the key sets and shapes of its real weight files, so the
// table builders follow the configs, not just Karlo's numbers.
func TestTablesMatchTinyUnclip(t *testing.T) {
	dir := filepath.Join(goldenDir(t), "tiny-unclip")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden folder missing under CI: %v", err)
		}
		t.Skipf("golden folder missing (%v); set DALLE2_GOLDEN", err)
	}
	read := func(comp string) ([]byte, *loader.Safetensors) {
		raw, err := os.ReadFile(filepath.Join(dir, comp, "config.json"))
		require.NoError(t, err)
		files, err := filepath.Glob(filepath.Join(dir, comp, "*.safetensors"))
		require.NoError(t, err)
		require.Len(t, files, 1, comp)
		st, err := loader.OpenSafetensors(files[0])
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return raw, st
	}
	check := func(comp string, shapes map[string][]int, st *loader.Safetensors) {
		got := map[string][]int{}
		for _, n := range st.Names() {
			if n == "text_model.embeddings.position_ids" {
				continue // buffer the model ignores (spec §3)
			}
			lt, err := st.Tensor(n)
			require.NoError(t, err)
			got[n] = lt.Shape
		}
		require.Equal(t, got, shapes, comp)
	}
	raw, st := read("text_encoder")
	tc, err := model.ParseCLIPTextConfig(raw)
	require.NoError(t, err)
	check("text_encoder", TextEncoderShapes(tc), st)
	raw, st = read("prior")
	pc, err := model.ParsePriorConfig(raw)
	require.NoError(t, err)
	check("prior", PriorShapes(pc), st)
	for _, comp := range []string{"decoder", "super_res_first"} {
		raw, st = read(comp)
		uc, err := model.ParseUNetConfig(raw)
		require.NoError(t, err)
		check(comp, UNetShapes(uc), st)
	}
}

// Small configs that go through the same builders as the full-size ones.
const (
	smallText = `{"vocab_size": 300, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
  "num_attention_heads": 4, "max_position_embeddings": 20, "projection_dim": 16}`
	smallPrior = `{"num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 2, "embedding_dim": 12,
  "num_embeddings": 9}`
	smallDecoder = `{"_class_name": "UNet2DConditionModel", "in_channels": 3, "out_channels": 6,
  "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
  "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
  "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32,
  "cross_attention_dim": 24, "attention_head_dim": 16, "class_embed_type": "identity",
  "resnet_time_scale_shift": "scale_shift"}`
	smallSuperRes = `{"_class_name": "UNet2DModel", "in_channels": 6, "out_channels": 3,
  "down_block_types": ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32,
  "add_attention": true, "attention_head_dim": 8}`
)

func buildSmall(t *testing.T, name string, seed uint64, opts ...Option) *Module {
	var (
		m   *Module
		err error
	)
	switch name {
	case "text":
		c, perr := model.ParseCLIPTextConfig([]byte(smallText))
		require.NoError(t, perr)
		m, err = NewTextEncoder(c, 2, seed, opts...)
	case "prior":
		c, perr := model.ParsePriorConfig([]byte(smallPrior))
		require.NoError(t, perr)
		m, err = NewPrior(c, 2, seed, opts...)
	case "decoder":
		c, perr := model.ParseUNetConfig([]byte(smallDecoder))
		require.NoError(t, perr)
		m, err = NewUNet(name, c, 2, 16, 7, seed, opts...)
	case "superres":
		c, perr := model.ParseUNetConfig([]byte(smallSuperRes))
		require.NoError(t, perr)
		m, err = NewUNet(name, c, 1, 16, 0, seed, opts...)
	}
	require.NoError(t, err, name)
	return m
}

// TestSmallModules builds small configs through the full-size code path and
// runs forwards: outputs have the right shape, are finite and not all
// zero, and depend only on the seed.
func TestSmallModules(t *testing.T) {
	want := map[string][]int{"text": {2, 16}, "prior": {2, 12}, "decoder": {2, 6, 16, 16}, "superres": {1, 3, 16, 16}}
	for _, name := range KarloModules {
		t.Run(name, func(t *testing.T) {
			m := buildSmall(t, name, 5)
			require.Nil(t, m.Output())
			require.Positive(t, m.Params)
			require.Positive(t, m.MACs)
			require.NotEmpty(t, m.Inputs)
			m.Forward()
			out := m.Output()
			require.Equal(t, want[name], out.Shape)
			nonzero := false
			for _, v := range out.Data {
				require.False(t, math.IsNaN(float64(v)) || math.IsInf(float64(v), 0), "non-finite output")
				nonzero = nonzero || v != 0
			}
			require.True(t, nonzero, "all-zero output")
			first := out.Clone()
			m2 := buildSmall(t, name, 5)
			m2.Forward()
			require.Equal(t, first.Data, m2.Output().Data, "same seed, same output")
			m3 := buildSmall(t, name, 6)
			m3.Forward()
			require.NotEqual(t, first.Data, m3.Output().Data, "another seed, other weights")
			m.Release()
			require.Nil(t, m.Output())
		})
	}
}

func TestKarloUnknown(t *testing.T) {
	_, err := Karlo("vae", 1)
	require.ErrorContains(t, err, `unknown Karlo module "vae"`)
}

func TestRandomSource(t *testing.T) {
	shapes := map[string][]int{
		"a.weight": {40, 3, 2, 2}, "a.bias": {40}, // conv: fan_in 12
		"n.weight": {6}, "n.bias": {6}, // norm
		"emb": {1, 5, 25}, // other: last dimension
	}
	s := NewRandomSource(shapes, 9)
	require.Equal(t, []string{"a.bias", "a.weight", "emb", "n.bias", "n.weight"}, s.Names())
	require.Equal(t, int64(480+40+12+125), s.Params())
	get := func(src *RandomSource, name string) []float32 {
		lt, err := src.Tensor(name)
		require.NoError(t, err)
		require.Equal(t, loader.F32, lt.DType)
		require.Equal(t, shapes[name], lt.Shape)
		return ops.FromData(mustF32(t, lt.Data), lt.Shape...).Data
	}
	inRange := func(xs []float32, b float64) {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range xs {
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
		require.GreaterOrEqual(t, lo, -b)
		require.Less(t, hi, b)
		require.Less(t, lo, 0.0) // both signs drawn (≥ 40 values: one sign only has p ≤ 2^-39)
		require.Greater(t, hi, 0.0)
	}
	inRange(get(s, "a.weight"), 1/math.Sqrt(12))
	inRange(get(s, "a.bias"), 1/math.Sqrt(12))
	inRange(get(s, "emb"), 1/math.Sqrt(25))
	require.Equal(t, []float32{1, 1, 1, 1, 1, 1}, get(s, "n.weight"))
	require.Equal(t, []float32{0, 0, 0, 0, 0, 0}, get(s, "n.bias"))
	require.Equal(t, get(s, "a.weight"), get(NewRandomSource(shapes, 9), "a.weight"), "deterministic")
	require.NotEqual(t, get(s, "a.weight"), get(NewRandomSource(shapes, 10), "a.weight"), "seeded")
	_, err := s.Tensor("missing")
	require.ErrorContains(t, err, `no tensor "missing"`)
}

func mustF32(t *testing.T, b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return out
}

// TestFillUniformParallel: the parallel fill equals the serial definition.
func TestFillUniformParallel(t *testing.T) {
	n := 3<<20 + 7 // several chunks, uneven split
	got := make([]float32, n)
	FillUniform(got, 42, -2, 3)
	for _, i := range []int{0, 1, 1 << 20, n/2 + 3, n - 1} {
		u := float32(splitmix64(42+uint64(i)*0x9e3779b97f4a7c15)>>40) * (1.0 / (1 << 24))
		require.Equal(t, -2+5*u, got[i], "element %d", i)
	}
}

func TestMedianAndGFLOPS(t *testing.T) {
	require.True(t, math.IsNaN(Median(nil)))
	xs := []float64{3, 1, 2}
	require.Equal(t, 2.0, Median(xs))
	require.Equal(t, []float64{3, 1, 2}, xs, "input untouched")
	require.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	require.Equal(t, 2.0, GFLOPS(4e9, 2))
	require.Equal(t, 0.0, GFLOPS(4e9, 0))
}

func TestPeak(t *testing.T) {
	p := CalibratePeak(2, 20*time.Millisecond)
	require.Equal(t, 2, p.Threads)
	require.Positive(t, p.Calls)
	require.Equal(t, float64(2*p.Calls*2*asm.MR*asm.NR*peakK), p.FLOPs())
	p.Run()
}
