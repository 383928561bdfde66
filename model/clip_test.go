package model_test

// Tests of the CLIP text and vision towers against the per-module goldens
// (cases/module_text_encoder.safetensors, module_image_encoder.safetensors),
// plus helpers shared with prior_test.go and textproj_test.go. Generic
// golden helpers (goldenRoot, toTensor, within, rel, maxAbs) live in
// golden_test.go.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// ---------------------------------------------------------------------------
// Helpers for the per-module golden files.

// clipModule is one opened cases/module_<name>.safetensors file.
type clipModule struct {
	st     *loader.Safetensors
	module string // tensor name prefix, e.g. "text_encoder"
}

func clipOpenModule(t *testing.T, file, module string) *clipModule {
	t.Helper()
	st, err := loader.OpenSafetensors(filepath.Join(goldenRoot(t), "cases", file))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return &clipModule{st: st, module: module}
}

// letters lists the call letters (A, B, ...) present in the file: the second
// component of every "<module>.<letter>.<what>" name.
func (m *clipModule) letters() []string {
	seen := map[string]bool{}
	for _, n := range m.st.Names() {
		parts := strings.SplitN(n, ".", 3)
		if len(parts) == 3 && parts[0] == m.module {
			seen[parts[1]] = true
		}
	}
	var out []string
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// names lists the stored names of one call, without the "<module>.<letter>." prefix.
func (m *clipModule) names(letter string) []string {
	p := m.module + "." + letter + "."
	var out []string
	for _, n := range m.st.Names() {
		if strings.HasPrefix(n, p) {
			out = append(out, strings.TrimPrefix(n, p))
		}
	}
	return out
}

func (m *clipModule) has(letter, what string) bool {
	_, err := m.st.Tensor(m.module + "." + letter + "." + what)
	return err == nil
}

func (m *clipModule) get(t testing.TB, letter, what string) *ops.Tensor {
	t.Helper()
	lt, err := m.st.Tensor(m.module + "." + letter + "." + what)
	require.NoError(t, err)
	return toTensor(t, lt)
}

func (m *clipModule) ints(t testing.TB, letter, what string) []int {
	x := m.get(t, letter, what)
	out := make([]int, x.Numel())
	for i, v := range x.Data {
		out[i] = int(v)
	}
	return out
}

// clipHooks records every hook call (copies: hook tensors are arena views).
func clipHooks() (map[string]*ops.Tensor, func(string, *ops.Tensor)) {
	got := map[string]*ops.Tensor{}
	return got, func(name string, x *ops.Tensor) { got[name] = x.Clone() }
}

// checkCall compares the outputs listed in outputs (golden name -> ours) and
// every hook tensor of the call, and fails on any stored tensor that is
// neither an input, an output, a hook we produce nor in skip (name ->
// reason). tol is relative to max(1, max|reference|).
func (m *clipModule) checkCall(t *testing.T, letter string, inputs []string, outputs map[string]*ops.Tensor,
	hooks map[string]*ops.Tensor, skip map[string]string, tol float64) {
	t.Helper()
	isInput := map[string]bool{}
	for _, n := range inputs {
		isInput[n] = true
	}
	compared := 0
	for _, n := range m.names(letter) {
		var got *ops.Tensor
		switch {
		case isInput[n]:
			continue
		case skip[n] != "":
			t.Logf("%s.%s.%s: not compared: %s", m.module, letter, n, skip[n])
			continue
		case outputs[n] != nil:
			got = outputs[n]
		case strings.HasPrefix(n, "hook."):
			got = hooks[strings.TrimPrefix(n, "hook.")]
		case strings.HasPrefix(n, "pre_hook."):
			got = hooks[n]
		}
		if got == nil {
			t.Errorf("%s.%s.%s: stored in the golden file but not produced by our model", m.module, letter, n)
			continue
		}
		want := m.get(t, letter, n)
		require.Equal(t, want.Numel(), got.Numel(), "%s.%s.%s: shape %v, want %v", m.module, letter, n, got.Shape, want.Shape)
		d := within(t, fmt.Sprintf("%s.%s.%s", m.module, letter, n), got, want, rel(tol, want))
		t.Logf("%-60s max|Δ| %.3g (max|ref| %.3g)", n, d, maxAbs(want))
		compared++
	}
	require.NotZero(t, compared, "%s.%s: nothing compared", m.module, letter)
}

// clipWeights opens a golden component's weights and config.json.
func clipWeights(t *testing.T, dir string) (*loader.Safetensors, []byte) {
	t.Helper()
	root := filepath.Join(goldenRoot(t), dir)
	files, err := filepath.Glob(filepath.Join(root, "*.safetensors"))
	require.NoError(t, err)
	require.Len(t, files, 1, "weights in %s", root)
	st, err := loader.OpenSafetensors(files[0])
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	raw, err := os.ReadFile(filepath.Join(root, "config.json"))
	require.NoError(t, err)
	return st, raw
}

// clipMapSource is a loader.Source over an in-memory map.
type clipMapSource map[string]loader.Tensor

func (s clipMapSource) Names() []string {
	var out []string
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s clipMapSource) Tensor(name string) (loader.Tensor, error) {
	x, ok := s[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("no tensor %q", name)
	}
	return x, nil
}

func clipCopySource(t *testing.T, src loader.Source) clipMapSource {
	out := clipMapSource{}
	for _, n := range src.Names() {
		x, err := src.Tensor(n)
		require.NoError(t, err)
		out[n] = x
	}
	return out
}

// checkLoadErrors removes one tensor, gives another a wrong shape and adds
// an unexpected one, and requires one error that names all three.
func clipCheckLoadErrors(t *testing.T, src loader.Source, build func(loader.Source) error) {
	t.Helper()
	require.NoError(t, build(src), "unmodified weights")
	m := clipCopySource(t, src)
	names := m.Names()
	missing, reshaped := names[0], names[len(names)-1]
	delete(m, missing)
	x := m[reshaped]
	x.Shape = append([]int{1}, x.Shape...) // same bytes, one more dimension
	m[reshaped] = x
	m["bogus.weight"] = loader.Tensor{Name: "bogus.weight", DType: loader.F32, Shape: []int{1}, Data: make([]byte, 4)}
	err := build(m)
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "3 problem(s)")
	require.Contains(t, msg, fmt.Sprintf("missing tensor %q", missing))
	require.Contains(t, msg, fmt.Sprintf("tensor %q: shape %v", reshaped, x.Shape))
	require.Contains(t, msg, `unexpected tensor "bogus.weight"`)
}

// clipZeroSource serves tensors of given shapes as F32 views of one shared
// zeroed buffer, so a full-size model binds without allocating its weights
// (aligned F32 data is used in place).
type clipZeroSource struct {
	shapes map[string][]int
	zero   []byte
}

func newClipZeroSource(shapes map[string][]int) *clipZeroSource {
	biggest := 0
	for _, s := range shapes {
		biggest = max(biggest, 4*clipNumel(s))
	}
	return &clipZeroSource{shapes: shapes, zero: make([]byte, biggest)}
}

func (s *clipZeroSource) Names() []string {
	var out []string
	for n := range s.shapes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *clipZeroSource) Tensor(name string) (loader.Tensor, error) {
	sh, ok := s.shapes[name]
	if !ok {
		return loader.Tensor{}, errors.New("no tensor " + name)
	}
	return loader.Tensor{Name: name, DType: loader.F32, Shape: sh, Data: s.zero[:4*clipNumel(sh)]}, nil
}

func clipNumel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// clipCount returns the tensor and parameter counts of a shape table.
func clipCount(shapes map[string][]int) (tensors, params int) {
	for _, s := range shapes {
		tensors++
		params += clipNumel(s)
	}
	return
}

// clipTowerShapes lists the encoder layers of a CLIP tower (spec §3 keys).
func clipTowerShapes(out map[string][]int, prefix string, layers, d, inter int) {
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("%s.encoder.layers.%d.", prefix, i)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			out[p+"self_attn."+proj+".weight"] = []int{d, d}
			out[p+"self_attn."+proj+".bias"] = []int{d}
		}
		for _, ln := range []string{"layer_norm1", "layer_norm2"} {
			out[p+ln+".weight"] = []int{d}
			out[p+ln+".bias"] = []int{d}
		}
		out[p+"mlp.fc1.weight"] = []int{inter, d}
		out[p+"mlp.fc1.bias"] = []int{inter}
		out[p+"mlp.fc2.weight"] = []int{d, inter}
		out[p+"mlp.fc2.bias"] = []int{d}
	}
}

// ---------------------------------------------------------------------------
// Text tower

// Tolerance of the CLIP towers, relative to max(1, max|reference|): fp32
// GEMM/attention sums in a different order than PyTorch's BLAS and Go's
// correctly rounded exp/erf vs SLEEF in softmax and quick_gelu (spec §0,
// MANIFEST note 9) give ~1e-6 per layer; 5 layers plus final norms stay
// within the MANIFEST's "~1e-5 relative for models".
const clipTol = 1e-5

func newGoldenTextModel(t *testing.T) *model.CLIPTextModel {
	st, raw := clipWeights(t, filepath.Join("tiny-unclip", "text_encoder"))
	cfg, err := model.ParseCLIPTextConfig(raw)
	require.NoError(t, err)
	m, err := model.NewCLIPTextModel(cfg, st)
	require.NoError(t, err)
	return m
}

func TestCLIPTextGolden(t *testing.T) {
	m := newGoldenTextModel(t)
	g := clipOpenModule(t, "module_text_encoder.safetensors", "text_encoder")
	letters := g.letters()
	require.NotEmpty(t, letters)
	for _, l := range letters {
		t.Run(l, func(t *testing.T) {
			ids := g.ints(t, l, "input_ids")
			want := g.get(t, l, "input_ids")
			n := want.Dim(0)
			hooks, hook := clipHooks()
			m.Hook = hook
			defer func() { m.Hook = nil }()
			inputs := []string{"input_ids"}
			var emb, hid *ops.Tensor
			if g.has(l, "attention_mask") {
				// transformers adds the padding mask to the causal one.
				inputs = append(inputs, "attention_mask")
				emb, hid = m.ForwardMasked(ids, n, g.get(t, l, "attention_mask"))
			} else {
				emb, hid = m.Forward(ids, n)
			}
			g.checkCall(t, l, inputs, map[string]*ops.Tensor{"text_embeds": emb, "last_hidden_state": hid}, hooks,
				map[string]string{
					"pre_hook.text_model.encoder.layers.0.arg2": "the materialised causal mask: ours is the Attention op's causal flag",
				}, clipTol)
		})
	}
}

// TestCLIPTextPooling checks both eos rules of transformers 4.36 on ids
// where they pick different positions.
func TestCLIPTextPooling(t *testing.T) {
	m := newGoldenTextModel(t)
	const l = 77
	ids := make([]int, 2*l)
	// Row 0: ids 49406, 5, 2, 900, 49407, 49407, 0...; row 1: 49406, 7, 49407, 2, 0...
	copy(ids, []int{49406, 5, 2, 900, 49407, 49407})
	copy(ids[l:], []int{49406, 7, 49407, 2})
	_, hid := m.Forward(ids, 2)
	hid = hid.Clone()
	pooledAt := func(m *model.CLIPTextModel, row, pos int) *ops.Tensor {
		d := m.Config.HiddenSize
		x := hid.Reshape(2*l, d).Rows(row*l+pos, row*l+pos+1)
		out := ops.New(1, m.Config.ProjectionDim)
		ops.Linear(out, x, m.TextProjection, nil)
		return out
	}
	check := func(emb *ops.Tensor, pos0, pos1 int) {
		t.Helper()
		// Same computation (one Linear of the same row): bit-identical.
		within(t, "row 0", emb.Rows(0, 1), pooledAt(m, 0, pos0), 0)
		within(t, "row 1", emb.Rows(1, 2), pooledAt(m, 1, pos1), 0)
	}
	require.Equal(t, 2, m.Config.EOSTokenID)
	emb, _ := m.Forward(ids, 2)
	check(emb, 4, 2) // argmax(ids): first 49407
	m.Config.EOSTokenID = 49407
	emb, _ = m.Forward(ids, 2)
	check(emb, 4, 2) // first position equal to 49407: the same here
	m.Config.EOSTokenID = 900
	emb, _ = m.Forward(ids, 2)
	check(emb, 3, 0) // row 1 has no 900: argmax of all-false is 0
}

func TestCLIPTextLoadErrors(t *testing.T) {
	st, raw := clipWeights(t, filepath.Join("tiny-unclip", "text_encoder"))
	cfg, err := model.ParseCLIPTextConfig(raw)
	require.NoError(t, err)
	clipCheckLoadErrors(t, st, func(s loader.Source) error { _, err := model.NewCLIPTextModel(cfg, s); return err })
}

func TestCLIPConfigErrors(t *testing.T) {
	for _, raw := range []string{
		`{"hidden_act": "relu"}`,
		`{"hidden_size": 100, "num_attention_heads": 12}`,
		`{"num_hidden_layers": 0}`,
		`{"hidden_size": "x"}`,
	} {
		_, err := model.ParseCLIPTextConfig([]byte(raw))
		require.Error(t, err, raw)
		_, err = model.ParseCLIPVisionConfig([]byte(raw))
		require.Error(t, err, raw)
	}
	_, err := model.ParseCLIPVisionConfig([]byte(`{"image_size": 225}`))
	require.ErrorContains(t, err, "patch_size")
}

// Karlo's configs, copied from spec §12.
const (
	karloTextConfig = `{"architectures": ["CLIPTextModelWithProjection"], "vocab_size": 49408,
  "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
  "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
  "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
  "attention_dropout": 0.0, "dropout": 0.0, "torch_dtype": "float32"}`
	karloVisionConfig = `{"architectures": ["CLIPVisionModelWithProjection"], "hidden_size": 1024,
  "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 224,
  "patch_size": 14, "num_channels": 3, "projection_dim": 768, "hidden_act": "quick_gelu",
  "layer_norm_eps": 1e-05}`
)

// TestCLIPTextKarloSize binds the full-size text encoder to zero weights
// whose key set and shapes follow spec §3 and whose counts are spec §12's.
func TestCLIPTextKarloSize(t *testing.T) {
	cfg, err := model.ParseCLIPTextConfig([]byte(karloTextConfig))
	require.NoError(t, err)
	want, err := model.ParseCLIPTextConfig([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, want, cfg, "defaults are Karlo's")

	shapes := map[string][]int{
		"text_model.embeddings.token_embedding.weight":    {49408, 768},
		"text_model.embeddings.position_embedding.weight": {77, 768},
		"text_model.final_layer_norm.weight":              {768},
		"text_model.final_layer_norm.bias":                {768},
		"text_projection.weight":                          {768, 768},
	}
	clipTowerShapes(shapes, "text_model", 12, 768, 3072)
	n, p := clipCount(shapes)
	require.Equal(t, 197, n)
	require.Equal(t, 123_650_304, p)
	shapes["text_model.embeddings.position_ids"] = []int{1, 77} // older saves; must be ignored

	m, err := model.NewCLIPTextModel(cfg, newClipZeroSource(shapes))
	require.NoError(t, err)
	require.Len(t, m.Encoder.Layers, 12)
}

// ---------------------------------------------------------------------------
// Vision tower

func newGoldenVisionModel(t *testing.T) (*model.CLIPVisionModel, *loader.Safetensors, model.CLIPVisionConfig) {
	st, raw := clipWeights(t, filepath.Join("tiny-unclip-variation", "image_encoder"))
	cfg, err := model.ParseCLIPVisionConfig(raw)
	require.NoError(t, err)
	m, err := model.NewCLIPVisionModel(cfg, st)
	require.NoError(t, err)
	return m, st, cfg
}

func TestCLIPVisionGolden(t *testing.T) {
	m, _, _ := newGoldenVisionModel(t)
	g := clipOpenModule(t, "module_image_encoder.safetensors", "image_encoder")
	letters := g.letters()
	require.NotEmpty(t, letters)
	for _, l := range letters {
		t.Run(l, func(t *testing.T) {
			hooks, hook := clipHooks()
			m.Hook = hook
			defer func() { m.Hook = nil }()
			emb, hid := m.Forward(g.get(t, l, "pixel_values"))
			g.checkCall(t, l, []string{"pixel_values"},
				map[string]*ops.Tensor{"image_embeds": emb, "last_hidden_state": hid}, hooks, nil, clipTol)
		})
	}
}

func TestCLIPVisionLoadErrors(t *testing.T) {
	_, st, cfg := newGoldenVisionModel(t)
	clipCheckLoadErrors(t, st, func(s loader.Source) error { _, err := model.NewCLIPVisionModel(cfg, s); return err })
}

// TestCLIPVisionKarloSize binds the full-size image encoder (spec §11 keys,
// §12 counts) to zero weights.
func TestCLIPVisionKarloSize(t *testing.T) {
	cfg, err := model.ParseCLIPVisionConfig([]byte(karloVisionConfig))
	require.NoError(t, err)
	want, err := model.ParseCLIPVisionConfig([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, want, cfg, "defaults are Karlo's")

	shapes := map[string][]int{
		"vision_model.embeddings.class_embedding":           {1024},
		"vision_model.embeddings.patch_embedding.weight":    {1024, 3, 14, 14},
		"vision_model.embeddings.position_embedding.weight": {257, 1024},
		"vision_model.pre_layrnorm.weight":                  {1024},
		"vision_model.pre_layrnorm.bias":                    {1024},
		"vision_model.post_layernorm.weight":                {1024},
		"vision_model.post_layernorm.bias":                  {1024},
		"visual_projection.weight":                          {768, 1024},
	}
	clipTowerShapes(shapes, "vision_model", 24, 1024, 4096)
	n, p := clipCount(shapes)
	require.Equal(t, 392, n)
	require.Equal(t, 303_966_208, p)
	shapes["vision_model.embeddings.position_ids"] = []int{1, 257}

	m, err := model.NewCLIPVisionModel(cfg, newClipZeroSource(shapes))
	require.NoError(t, err)
	require.Len(t, m.Encoder.Layers, 24)
}
