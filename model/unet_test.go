package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// unetGoldenDir finds the golden folder ($DALLE2_GOLDEN, else ../../shared/golden).
func unetGoldenDir(t testing.TB) string {
	d := os.Getenv("DALLE2_GOLDEN")
	if d == "" {
		d = filepath.Join("..", "..", "shared", "golden")
	}
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden folder %s missing: %v", d, err)
		}
		t.Skipf("golden folder %s missing (set DALLE2_GOLDEN)", d)
	}
	return d
}

// loadTinyUNet builds one of the tiny-unclip U-Nets.
func loadTinyUNet(t testing.TB, component string) (*UNet, *loader.Safetensors) {
	dir := filepath.Join(unetGoldenDir(t), "tiny-unclip", component)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	cfg, err := ParseUNetConfig(raw)
	require.NoError(t, err)
	st, err := loader.OpenSafetensors(filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	u, err := NewUNet(cfg, st)
	require.NoError(t, err)
	return u, st
}

// unetTensor copies a stored F32 tensor, or a U8 0/1 mask, into an ops.Tensor.
func unetTensor(t testing.TB, st *loader.Safetensors, name string) *ops.Tensor {
	lt, err := st.Tensor(name)
	require.NoError(t, err)
	out := ops.New(lt.Shape...)
	switch lt.DType {
	case loader.F32:
		for i := range out.Data {
			out.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(lt.Data[4*i:]))
		}
	case loader.U8:
		for i, b := range lt.Data {
			out.Data[i] = float32(b)
		}
	default:
		t.Fatalf("%s: unexpected dtype %v", name, lt.DType)
	}
	return out
}

func unetScalarI64(t testing.TB, st *loader.Safetensors, name string) int64 {
	lt, err := st.Tensor(name)
	require.NoError(t, err)
	require.Equal(t, loader.I64, lt.DType, name)
	require.Len(t, lt.Data, 8, name)
	return int64(binary.LittleEndian.Uint64(lt.Data))
}

// unetMaxDiff returns max|got−want| and max|want|.
func unetMaxDiff(got, want *ops.Tensor) (diff, mag float64) {
	for i, w := range want.Data {
		diff = max(diff, math.Abs(float64(got.Data[i])-float64(w)))
		mag = max(mag, math.Abs(float64(w)))
	}
	return diff, mag
}

// unetTol bounds max|got−want| / max(1, max|want|) against the PyTorch
// goldens (MANIFEST note 1: ~1e-5 relative expected for a model call).
// Measured: ≤ 1.9e-6 over every case and hook. Bit equality is not
// attainable: PyTorch sums GEMM/conv products in blocked order (ours:
// ascending k) and uses SLEEF exp/sin/cos (spec §0, MANIFEST note 9), and the
// difference grows through ~20 layers; 1e-5 leaves 5× headroom.
const unetTol = 1e-5

func TestUNetGolden(t *testing.T) {
	for _, comp := range []string{"decoder", "super_res_first", "super_res_last"} {
		t.Run(comp, func(t *testing.T) {
			u, _ := loadTinyUNet(t, comp)
			st, err := loader.OpenSafetensors(filepath.Join(unetGoldenDir(t), "cases", "module_"+comp+".safetensors"))
			require.NoError(t, err)
			defer st.Close()
			names := st.Names()
			// Discover the calls ("<comp>.<X>.out_sample").
			var calls []string
			for _, n := range names {
				if rest, ok := strings.CutPrefix(n, comp+"."); ok {
					if x, ok := strings.CutSuffix(rest, ".out_sample"); ok {
						calls = append(calls, x)
					}
				}
			}
			require.NotEmpty(t, calls, "no %s.*.out_sample in golden", comp)
			for _, call := range calls {
				t.Run(call, func(t *testing.T) {
					p := comp + "." + call + "."
					if lt, err := st.Tensor(p + "sample"); err == nil && testing.Short() && lt.Numel() > 1*6*64*64 {
						t.Skip("-short: skipping the largest call (batch 2 at 64×64)")
					}
					opt := func(key string) *ops.Tensor {
						if slices.Contains(names, p+key) {
							return unetTensor(t, st, p+key)
						}
						return nil
					}
					x := unetTensor(t, st, p+"sample")
					ts := unetScalarI64(t, st, p+"timestep")
					enc, cls, mask := opt("encoder_hidden_states"), opt("class_labels"), opt("attention_mask")
					// Hooks in the golden: "<p>hook.<name>" and "<p>pre_hook.<name>".
					want := map[string]string{} // our hook name -> golden name
					for _, n := range names {
						if h, ok := strings.CutPrefix(n, p+"hook."); ok {
							want[h] = n
						} else if h, ok := strings.CutPrefix(n, p+"pre_hook."); ok {
							want["pre:"+h] = n
						}
					}
					got := map[string]*ops.Tensor{}
					u.Hook = func(name string, t *ops.Tensor) {
						if _, ok := want[name]; ok {
							got[name] = t.Clone()
						}
					}
					out := u.Forward(x, ts, enc, cls, mask)
					u.Hook = nil
					check := func(label string, g, w *ops.Tensor) {
						require.Equal(t, w.Shape, g.Shape, label)
						d, m := unetMaxDiff(g, w)
						rel := d / max(1, m)
						t.Logf("%-40s max|Δ| %.3g  max|want| %.3g", label, d, m)
						require.LessOrEqual(t, rel, unetTol, "%s: max|Δ| %g, max|want| %g", label, d, m)
					}
					hooks := make([]string, 0, len(want))
					for h := range want {
						hooks = append(hooks, h)
					}
					sort.Strings(hooks)
					for _, h := range hooks {
						g, ok := got[h]
						require.True(t, ok, "Forward did not emit hook %q", h)
						check(h, g, unetTensor(t, st, want[h]))
					}
					check("out_sample", out, unetTensor(t, st, p+"out_sample"))
				})
			}
		})
	}
}

// TestUNetForwardNoAlloc: once warm, Forward serves every activation from
// its arenas. (ops.Arena sizes its slab at the Reset after a pass that
// spilled, so the pass-wide arena settles at the start of the second call.)
func TestUNetForwardNoAlloc(t *testing.T) {
	u, _ := loadTinyUNet(t, "decoder")
	st, err := loader.OpenSafetensors(filepath.Join(unetGoldenDir(t), "cases", "module_decoder.safetensors"))
	require.NoError(t, err)
	defer st.Close()
	p := "decoder.S." // 8×8: fast
	x, enc := unetTensor(t, st, p+"sample"), unetTensor(t, st, p+"encoder_hidden_states")
	cls, mask := unetTensor(t, st, p+"class_labels"), unetTensor(t, st, p+"attention_mask")
	run := func() { u.Forward(x, 999, enc, cls, mask) }
	run()
	run()

	// Every hooked activation and the output sit at the same address pass
	// after pass: nothing is allocated anew.
	addrs := func() map[string]*float32 {
		m := map[string]*float32{}
		u.Hook = func(name string, t *ops.Tensor) { m[name] = &t.Data[0] }
		m["output"] = &u.Forward(x, 999, enc, cls, mask).Data[0]
		u.Hook = nil
		return m
	}
	first := addrs()
	require.Greater(t, len(first), 10)
	require.Equal(t, first, addrs())

	arena := u.arena.Bytes() + u.scratch.Bytes()
	nviews, nskips := len(u.views.ts), cap(u.skips)
	var m0, m1 runtime.MemStats
	const runs = 3
	runtime.ReadMemStats(&m0)
	allocs := testing.AllocsPerRun(runs, run)
	runtime.ReadMemStats(&m1)
	bytes := float64(m1.TotalAlloc-m0.TotalAlloc) / (runs + 1) // AllocsPerRun adds a warm-up run
	t.Logf("arenas %d bytes; per Forward: %.0f allocations, %.0f bytes", arena, allocs, bytes)
	// What remains are small objects from ops (a job per parallel op call
	// and a recover slot per chunk, an attention logits row per chunk) and
	// the shape slices of ops.Arena.New (its panic message makes them
	// escape): about 60 bytes each on average; no activation tensor.
	require.Less(t, bytes, 256*allocs)
	require.Equal(t, arena, u.arena.Bytes()+u.scratch.Bytes())
	require.Equal(t, nviews, len(u.views.ts))
	require.Equal(t, nskips, cap(u.skips))
}

// unetEditSource wraps a Source: drops, reshapes and adds tensors.
type unetEditSource struct {
	loader.Source
	drop    string
	reshape string
	extra   string
}

func (s unetEditSource) Names() []string {
	var out []string
	for _, n := range s.Source.Names() {
		if n != s.drop {
			out = append(out, n)
		}
	}
	out = append(out, s.extra)
	sort.Strings(out)
	return out
}

func (s unetEditSource) Tensor(name string) (loader.Tensor, error) {
	switch name {
	case s.drop:
		return loader.Tensor{}, fmt.Errorf("no tensor %q", name)
	case s.extra:
		return loader.Tensor{Name: name, DType: loader.F32, Shape: []int{1}, Data: make([]byte, 4)}, nil
	}
	t, err := s.Source.Tensor(name)
	if err == nil && name == s.reshape {
		t.Shape = []int{t.Numel()}
	}
	return t, err
}

func TestUNetLoadErrorsListedTogether(t *testing.T) {
	_, st := loadTinyUNet(t, "decoder")
	raw, err := os.ReadFile(filepath.Join(unetGoldenDir(t), "tiny-unclip", "decoder", "config.json"))
	require.NoError(t, err)
	cfg, err := ParseUNetConfig(raw)
	require.NoError(t, err)
	src := unetEditSource{Source: st, drop: "mid_block.attentions.0.add_k_proj.bias",
		reshape: "up_blocks.0.resnets.1.conv_shortcut.weight", extra: "up_blocks.1.attentions.0.to_q.weight"}
	_, err = NewUNet(cfg, src)
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "3 problem(s)")
	require.Contains(t, msg, `missing tensor "mid_block.attentions.0.add_k_proj.bias"`)
	require.Contains(t, msg, `tensor "up_blocks.0.resnets.1.conv_shortcut.weight": shape [6144], want [64 96 1 1]`)
	require.Contains(t, msg, `unexpected tensor "up_blocks.1.attentions.0.to_q.weight"`)
}

// Karlo hub configs, as in spec §12.
const (
	karloDecoderConfig = `{"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 3,
  "out_channels": 6, "center_input_sample": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "down_block_types": ["ResnetDownsampleBlock2D","SimpleCrossAttnDownBlock2D",
                       "SimpleCrossAttnDownBlock2D","SimpleCrossAttnDownBlock2D"],
  "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
  "up_block_types": ["SimpleCrossAttnUpBlock2D","SimpleCrossAttnUpBlock2D",
                     "SimpleCrossAttnUpBlock2D","ResnetUpsampleBlock2D"],
  "block_out_channels": [320,640,960,1280], "layers_per_block": 3, "downsample_padding": 1,
  "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
  "cross_attention_dim": 1536, "attention_head_dim": 64, "class_embed_type": "identity",
  "num_class_embeds": null, "only_cross_attention": false, "dual_cross_attention": false,
  "use_linear_projection": false, "upcast_attention": false, "resnet_time_scale_shift": "scale_shift",
  "resnet_skip_time_act": false, "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional",
  "cross_attention_norm": null, "dropout": 0.0}`
	karloSuperResConfig = `{"_class_name": "UNet2DModel", "sample_size": 256, "in_channels": 6,
  "out_channels": 3, "center_input_sample": false, "time_embedding_type": "positional",
  "flip_sin_to_cos": true, "freq_shift": 0,
  "down_block_types": ["ResnetDownsampleBlock2D","ResnetDownsampleBlock2D",
                       "ResnetDownsampleBlock2D","ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D","ResnetUpsampleBlock2D",
                     "ResnetUpsampleBlock2D","ResnetUpsampleBlock2D"],
  "mid_block_type": "UNetMidBlock2D", "add_attention": false, "attention_head_dim": 8,
  "block_out_channels": [320,640,960,1280], "layers_per_block": 3, "downsample_padding": 1,
  "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
  "resnet_time_scale_shift": "default", "dropout": 0.0}`
)

// unetSpecKeys derives the full-size Karlo key → shape table from the
// spec's literal numbers (§6.3 resnet keys, §6.4 attention keys, §7.1 stage
// table with its explicit per-resnet input widths, §8 differences), written
// independently of the model code.
func unetSpecKeys(decoder bool) map[string][]int {
	keys := map[string][]int{}
	const temb, ctx = 1280, 1536
	resnet := func(p string, in, out int) {
		tout := out // §8: default mode
		if decoder {
			tout = 2 * out // §7.1: scale_shift
		}
		keys[p+".norm1.weight"], keys[p+".norm1.bias"] = []int{in}, []int{in}
		keys[p+".conv1.weight"], keys[p+".conv1.bias"] = []int{out, in, 3, 3}, []int{out}
		keys[p+".time_emb_proj.weight"], keys[p+".time_emb_proj.bias"] = []int{tout, temb}, []int{tout}
		keys[p+".norm2.weight"], keys[p+".norm2.bias"] = []int{out}, []int{out}
		keys[p+".conv2.weight"], keys[p+".conv2.bias"] = []int{out, out, 3, 3}, []int{out}
		if in != out {
			keys[p+".conv_shortcut.weight"], keys[p+".conv_shortcut.bias"] = []int{out, in, 1, 1}, []int{out}
		}
	}
	attn := func(p string, c int) {
		if !decoder {
			return // §8: no attention anywhere
		}
		keys[p+".group_norm.weight"], keys[p+".group_norm.bias"] = []int{c}, []int{c}
		for _, k := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			keys[p+"."+k+".weight"], keys[p+"."+k+".bias"] = []int{c, c}, []int{c}
		}
		for _, k := range []string{"add_k_proj", "add_v_proj"} {
			keys[p+"."+k+".weight"], keys[p+"."+k+".bias"] = []int{c, ctx}, []int{c}
		}
	}
	cin, cout := 3, 6
	if !decoder {
		cin, cout = 6, 3
	}
	keys["conv_in.weight"], keys["conv_in.bias"] = []int{320, cin, 3, 3}, []int{320}
	keys["time_embedding.linear_1.weight"], keys["time_embedding.linear_1.bias"] = []int{temb, 320}, []int{temb}
	keys["time_embedding.linear_2.weight"], keys["time_embedding.linear_2.bias"] = []int{temb, temb}, []int{temb}
	down := []struct{ out, in0 int }{{320, 320}, {640, 320}, {960, 640}, {1280, 960}}
	for b, d := range down {
		for j := 0; j < 3; j++ {
			in := d.out
			if j == 0 {
				in = d.in0
			}
			resnet(fmt.Sprintf("down_blocks.%d.resnets.%d", b, j), in, d.out)
			if b > 0 {
				attn(fmt.Sprintf("down_blocks.%d.attentions.%d", b, j), d.out)
			}
		}
		if b < 3 {
			resnet(fmt.Sprintf("down_blocks.%d.downsamplers.0", b), d.out, d.out)
		}
	}
	resnet("mid_block.resnets.0", 1280, 1280)
	attn("mid_block.attentions.0", 1280)
	resnet("mid_block.resnets.1", 1280, 1280)
	up := []struct {
		out int
		ins [4]int
	}{{1280, [4]int{2560, 2560, 2560, 2240}}, {960, [4]int{2240, 1920, 1920, 1600}},
		{640, [4]int{1600, 1280, 1280, 960}}, {320, [4]int{960, 640, 640, 640}}}
	for b, u := range up {
		for j, in := range u.ins {
			resnet(fmt.Sprintf("up_blocks.%d.resnets.%d", b, j), in, u.out)
			if b < 3 {
				attn(fmt.Sprintf("up_blocks.%d.attentions.%d", b, j), u.out)
			}
		}
		if b < 3 {
			resnet(fmt.Sprintf("up_blocks.%d.upsamplers.0", b), u.out, u.out)
		}
	}
	keys["conv_norm_out.weight"], keys["conv_norm_out.bias"] = []int{320}, []int{320}
	keys["conv_out.weight"], keys["conv_out.bias"] = []int{cout, 320, 3, 3}, []int{cout}
	return keys
}

// unetZeroSource serves every tensor of a key → shape table as F32 zeros
// sliced from one shared buffer (no per-tensor allocation; F32 data is bound
// without a copy), and records which keys were requested.
type unetZeroSource struct {
	shapes    map[string][]int
	zero      []byte
	requested map[string]bool
}

func newUNetZeroSource(shapes map[string][]int) *unetZeroSource {
	most := 0
	for _, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		most = max(most, n)
	}
	return &unetZeroSource{shapes: shapes, zero: make([]byte, 4*most), requested: map[string]bool{}}
}

func (s *unetZeroSource) Names() []string {
	out := make([]string, 0, len(s.shapes))
	for k := range s.shapes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *unetZeroSource) Tensor(name string) (loader.Tensor, error) {
	shape, ok := s.shapes[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("no tensor %q", name)
	}
	s.requested[name] = true
	lt := loader.Tensor{Name: name, DType: loader.F32, Shape: shape}
	lt.Data = s.zero[:4*lt.Numel()]
	return lt, nil
}

// TestUNetKarloFullSize builds the full-size Karlo decoder and super-res
// U-Nets from the spec §12 configs against a key table derived from the
// spec, and checks the spec's tensor and parameter counts (§12).
func TestUNetKarloFullSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  string
		decoder bool
		tensors int
		params  int64
	}{
		{"decoder", karloDecoderConfig, true, 716, 885_439_686},
		{"super_res", karloSuperResConfig, false, 408, 691_579_523},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseUNetConfig([]byte(tc.config))
			require.NoError(t, err)
			keys := unetSpecKeys(tc.decoder)
			var params int64
			for _, s := range keys {
				n := int64(1)
				for _, d := range s {
					n *= int64(d)
				}
				params += n
			}
			require.Equal(t, tc.tensors, len(keys), "spec table tensor count")
			require.Equal(t, tc.params, params, "spec table parameter count")
			src := newUNetZeroSource(keys)
			u, err := NewUNet(cfg, src) // fails on any missing, unexpected or mis-shaped key
			require.NoError(t, err)
			require.Len(t, src.requested, tc.tensors)
			require.Len(t, u.DownBlocks, 4)
			require.Len(t, u.UpBlocks, 4)
			if tc.decoder {
				// Heads = channels / 64 (spec §7.1: 10, 15, 20).
				require.Equal(t, 10, u.DownBlocks[1].Attentions[0].Heads)
				require.Equal(t, 15, u.UpBlocks[1].Attentions[0].Heads)
				require.Equal(t, 20, u.MidBlock.Attentions[0].Heads)
				require.Equal(t, float32(0.125), u.MidBlock.Attentions[0].scale)
			} else {
				require.Empty(t, u.MidBlock.Attentions)
			}
		})
	}
}

func TestParseUNetConfig(t *testing.T) {
	g := unetGoldenDir(t)
	read := func(comp string) []byte {
		raw, err := os.ReadFile(filepath.Join(g, "tiny-unclip", comp, "config.json"))
		require.NoError(t, err)
		return raw
	}
	dec, err := ParseUNetConfig(read("decoder"))
	require.NoError(t, err)
	require.Equal(t, UNetConfig{
		ClassName: "UNet2DConditionModel", SampleSize: 32, InChannels: 3, OutChannels: 6,
		DownBlockTypes:   []string{"ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"},
		UpBlockTypes:     []string{"SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"},
		MidBlockType:     "UNetMidBlock2DSimpleCrossAttn",
		BlockOutChannels: []int{32, 64}, LayersPerBlock: 1, NormNumGroups: 32, NormEps: 1e-5,
		CrossAttentionDim: 100, AttentionHeadDim: 4, ClassEmbedType: "identity",
		ResnetTimeScaleShift: "scale_shift", FlipSinToCos: true, TimeEmbedDim: 128,
	}, dec)

	sr, err := ParseUNetConfig(read("super_res_first"))
	require.NoError(t, err)
	require.Equal(t, "UNetMidBlock2D", sr.MidBlockType)
	require.True(t, sr.AddAttention)
	require.Equal(t, 8, sr.AttentionHeadDim)
	require.Equal(t, "default", sr.ResnetTimeScaleShift)
	require.Equal(t, 0, sr.CrossAttentionDim)
	require.Equal(t, 128, sr.TimeEmbedDim)

	karlo, err := ParseUNetConfig([]byte(karloSuperResConfig))
	require.NoError(t, err)
	require.False(t, karlo.AddAttention)
	require.Equal(t, 256, karlo.SampleSize)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(karloSuperResConfig), &m))
	m["sample_size"] = nil // the shipped super_res_last config
	raw, _ := json.Marshal(m)
	last, err := ParseUNetConfig(raw)
	require.NoError(t, err)
	require.Equal(t, 0, last.SampleSize)
}

func TestParseUNetConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		base string
		set  map[string]any
		want []string // substrings of the error
	}{
		{karloDecoderConfig, map[string]any{"act_fn": "gelu"}, []string{`act_fn = "gelu"`}},
		{karloDecoderConfig, map[string]any{"time_embedding_type": "fourier"}, []string{`time_embedding_type = "fourier"`}},
		{karloDecoderConfig, map[string]any{"class_embed_type": "timestep"}, []string{`class_embed_type = "timestep"`}},
		{karloDecoderConfig, map[string]any{"resnet_time_scale_shift": "ada_group"}, []string{`"ada_group"`}},
		{karloDecoderConfig, map[string]any{"addition_embed_type": "text"}, []string{`addition_embed_type = "text"`}},
		{karloDecoderConfig, map[string]any{"attention_head_dim": []int{64, 64, 64, 64}}, []string{"attention_head_dim"}},
		{karloDecoderConfig, map[string]any{"mid_block_type": "UNetMidBlock2DCrossAttn"}, []string{`"UNetMidBlock2DCrossAttn"`}},
		{karloDecoderConfig, map[string]any{"_class_name": "UNet3DConditionModel"}, []string{`"UNet3DConditionModel"`}},
		{karloDecoderConfig, map[string]any{"resnet_out_scale_factor": 2.0}, []string{"resnet_out_scale_factor = 2"}},
		{karloDecoderConfig, map[string]any{"down_block_types": nil}, []string{"down_block_types: missing"}},
		// Several problems are listed together.
		{karloDecoderConfig, map[string]any{"act_fn": "mish", "center_input_sample": true,
			"up_block_types": []string{"CrossAttnUpBlock2D", "UpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"}},
			[]string{`act_fn = "mish"`, "center_input_sample = true", `"CrossAttnUpBlock2D"`, `"UpBlock2D"`}},
		{karloSuperResConfig, map[string]any{"down_block_types": []string{"ResnetDownsampleBlock2D",
			"SimpleCrossAttnDownBlock2D", "ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"}},
			[]string{`"SimpleCrossAttnDownBlock2D" not supported for UNet2DModel`}},
		{karloSuperResConfig, map[string]any{"class_embed_type": "identity"}, []string{`class_embed_type = "identity"`}},
		{karloSuperResConfig, map[string]any{"block_out_channels": []int{320, 640, 960}}, []string{"same length"}},
		{karloSuperResConfig, map[string]any{"norm_num_groups": 48}, []string{"block_out_channels[0] = 320"}},
	} {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(tc.base), &m))
		for k, v := range tc.set {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		_, err = ParseUNetConfig(raw)
		require.Error(t, err, "%v", tc.set)
		for _, w := range tc.want {
			require.Contains(t, err.Error(), w, "%v", tc.set)
		}
	}
}
