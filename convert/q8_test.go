package convert

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/quant"
)

func TestParseDTypeQ8(t *testing.T) {
	for _, s := range []string{"q8", "Q8", "q8_0", "Q8_0", "int8"} {
		d, err := ParseDType(s)
		require.NoError(t, err, s)
		require.Equal(t, loader.Q8_0, d, s)
	}
	_, err := ParseDType("q4")
	require.EqualError(t, err, `unknown dtype "q4" (want f32|f16|q8)`)
}

func TestPolicy(t *testing.T) {
	q8, f16 := loader.Q8_0, loader.F16
	for _, c := range []struct {
		comp, key string
		shape     []int
		want      loader.DType
	}{
		// Linear and convolution weights.
		{"super_res_first", "down_blocks.0.resnets.0.conv1.weight", []int{64, 32, 3, 3}, q8},
		{"decoder", "mid_block.resnets.0.conv_shortcut.weight", []int{64, 32, 1, 1}, q8},
		{"decoder", "up_blocks.1.attentions.0.to_out.0.weight", []int{64, 64}, q8}, // not the last up block (3)
		{"decoder", "time_embedding.linear_1.weight", []int{128, 32}, q8},
		{"text_encoder", "text_model.encoder.layers.0.mlp.fc1.weight", []int{37, 32}, q8}, // rows of 32, 1184 elements
		{"text_encoder", "text_projection.weight", []int{32, 32}, q8},                     // exactly 32·32
		{"prior", "transformer_blocks.0.ff.net.2.weight", []int{24, 96}, q8},
		{"prior", "embedding_proj.weight", []int{2048, 768}, q8},
		{"prior", "transformer_blocks.0.attn1.to_q.weight", []int{2048, 2048}, q8},
		{"text_encoder", "text_model.encoder.layers.0.self_attn.k_proj.weight", []int{768, 768}, q8},
		{"decoder", "up_blocks.2.resnets.0.conv1.weight", []int{64, 32, 3, 3}, q8},
		{"text_proj", "clip_image_embeddings_project_to_time_embeddings.weight", []int{128, 32}, q8},
		{"text_proj", "encoder_hidden_states_proj.weight", []int{100, 32}, q8},
		// First and last U-Net convolutions.
		{"decoder", "conv_in.weight", []int{64, 32, 3, 3}, f16},
		{"super_res_first", "conv_out.weight", []int{64, 64, 3, 3}, f16},
		// Embedding tables and bare parameters.
		{"text_encoder", "text_model.embeddings.token_embedding.weight", []int{49408, 768}, f16},
		{"text_encoder", "text_model.embeddings.position_embedding.weight", []int{77, 768}, f16},
		{"image_encoder", "vision_model.embeddings.position_embedding.weight", []int{1025, 32}, f16},
		{"image_encoder", "vision_model.embeddings.patch_embedding.weight", []int{1024, 32, 14, 14}, f16},
		{"image_encoder", "vision_model.embeddings.class_embedding", []int{1024}, f16},
		{"prior", "positional_embedding", []int{1, 81, 2048}, f16},
		{"prior", "prd_embedding", []int{1, 1, 2048}, f16},
		{"prior", "clip_mean", []int{1, 768}, f16},
		{"prior", "clip_std", []int{1, 768}, f16},
		{"text_proj", "learned_classifier_free_guidance_embeddings", []int{768}, f16},
		// Norms, whatever their shape.
		{"text_encoder", "text_model.final_layer_norm.weight", []int{768}, f16},
		{"image_encoder", "vision_model.pre_layrnorm.weight", []int{1024}, f16},
		{"decoder", "down_blocks.0.attentions.0.group_norm.weight", []int{64}, f16},
		{"x", "norm.weight", []int{64, 64}, f16},
		{"x", "ln_final.weight", []int{64, 64}, f16},
		{"x", "block.norm_k.weight", []int{64, 64}, f16},
		// Biases and other vectors.
		{"decoder", "down_blocks.0.attentions.0.to_q.bias", []int{64}, f16},
		{"x", "vec.weight", []int{2048}, f16},
		{"x", "bias2d.bias", []int{64, 64}, f16},
		// Shapes Q8_0 cannot hold or that are too small.
		{"text_encoder", "text_model.encoder.layers.0.mlp.fc2.weight", []int{32, 37}, f16},
		{"prior", "proj_in.weight", []int{24, 32}, f16},                 // 768 elements
		{"prior", "proj_to_clip_embeddings.weight", []int{32, 24}, f16}, // rows of 24
		// Measured exceptions (q8KeepF16, and a U-Net's last up block).
		{"text_encoder", "text_model.encoder.layers.0.self_attn.v_proj.weight", []int{768, 768}, f16},
		{"text_encoder", "text_model.encoder.layers.11.self_attn.out_proj.weight", []int{768, 768}, f16},
		{"image_encoder", "vision_model.encoder.layers.3.self_attn.v_proj.weight", []int{1024, 1024}, f16},
		{"prior", "transformer_blocks.0.attn1.to_v.weight", []int{2048, 2048}, f16},
		{"prior", "transformer_blocks.19.attn1.to_out.0.weight", []int{2048, 2048}, f16},
		{"prior", "proj_to_clip_embeddings.weight", []int{768, 2048}, f16},
		{"prior", "encoder_hidden_states_proj.weight", []int{2048, 768}, f16},
		{"decoder", "up_blocks.3.resnets.0.conv1.weight", []int{64, 32, 3, 3}, f16},
		{"decoder", "down_blocks.0.resnets.1.conv2.weight", []int{64, 64, 3, 3}, f16},
		{"decoder", "down_blocks.0.downsamplers.0.conv1.weight", []int{64, 64, 3, 3}, f16},
		{"decoder", "down_blocks.1.resnets.0.conv1.weight", []int{64, 64, 3, 3}, q8},
		{"decoder", "up_blocks.3.attentions.2.to_q.weight", []int{64, 64}, f16},
		{"super_res_last", "up_blocks.3.resnets.2.conv_shortcut.weight", []int{64, 96, 1, 1}, f16},
		{"text_proj", "up_blocks.3.x.weight", []int{64, 64}, q8}, // not a U-Net
		{"decoder", "up_blocks.30.x.weight", []int{64, 64}, q8},  // up_blocks.3. is a key prefix, not a string prefix
		{"decoder", "down_blocks.3.x.weight", []int{64, 64}, q8}, // only the last up block
		{"super_res_last", "down_blocks.0.resnets.0.conv1.weight", []int{64, 3, 3, 3}, f16},
		{"x", "rank3.weight", []int{4, 32, 32}, f16},
		{"x", "empty.weight", []int{0, 64}, f16},
		{"x", "empty2.weight", []int{64, 0}, f16},
		{"x", "huge.weight", []int{2, math.MaxInt / 2, 4}, f16}, // row length overflows int
	} {
		// Every component here has up blocks 0–3 (and no up_blocks.30).
		names := []string{"up_blocks.0.a.weight", "up_blocks.3.b.weight", "up_blocks.x.weight"}
		require.Equal(t, c.want, NewPolicy(c.comp, names, loader.Q8_0).DType(c.key, c.shape), "%s/%s %v", c.comp, c.key, c.shape)
		for _, target := range []loader.DType{loader.F32, loader.F16} {
			require.Equal(t, target, NewPolicy(c.comp, names, target).DType(c.key, c.shape), "%s/%s as %s", c.comp, c.key, target)
		}
	}
}

// checkQ8Blocks checks stored Q8_0 data against its float32 source block by
// block: every value within d/2 of the source, d the block's stored scale,
// and d no larger than quant/q8.go promises (max|x|/127·(1+2⁻¹⁰) + 2⁻²⁴),
// so that the first bound means something. d·q is exact in float32 (11 by
// 8 significant bits), so both bounds are exact, without tolerance.
func checkQ8Blocks(t *testing.T, name string, src []float32, data []byte) {
	t.Helper()
	require.Len(t, data, quant.Q8Bytes(len(src)), name)
	got := make([]float32, len(src))
	quant.DequantizeQ8(got, data)
	for b := 0; b < len(src)/quant.Q8Block; b++ {
		d := float64(quant.F16ToF32(binary.LittleEndian.Uint16(data[b*quant.Q8BlockBytes:])))
		var amax float64
		for i := b * quant.Q8Block; i < (b+1)*quant.Q8Block; i++ {
			amax = max(amax, math.Abs(float64(src[i])))
		}
		if dmax := amax/127*(1+1.0/1024) + math.Ldexp(1, -24); d > dmax {
			t.Fatalf("%s block %d: scale %g above %g for max |x| %g", name, b, d, dmax, amax)
		}
		for i := b * quant.Q8Block; i < (b+1)*quant.Q8Block; i++ {
			if e := math.Abs(float64(got[i]) - float64(src[i])); e > d/2 {
				t.Fatalf("%s value %d: %g decodes to %g, error %g above d/2 = %g", name, i, src[i], got[i], e, d/2)
			}
		}
	}
}

func f32Values(t *testing.T, tn loader.Tensor) []float32 {
	t.Helper()
	require.Equal(t, loader.F32, tn.DType, tn.Name)
	out := make([]float32, len(tn.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(tn.Data[4*i:]))
	}
	return out
}

// TestConvertQ8Golden converts tiny-unclip with --dtype q8: every tensor is
// stored as Policy.DType says, Q8_0 tensors within the block bound of the
// source, F16 tensors exactly quant.F32ToF16 of it; the report's per-dtype
// totals are the file's; the file is smaller than the f16 one.
func TestConvertQ8Golden(t *testing.T) {
	g := goldenDir(t)
	src := filepath.Join(g, "tiny-unclip")
	dir := t.TempDir()
	sizes := map[string]int64{}
	var rep *Report
	for _, dt := range []string{"f32", "f16", "q8"} {
		out := filepath.Join(dir, dt+".d2")
		r, err := Convert(src, out, Options{DType: dt, ConverterVersion: "test-1"})
		require.NoError(t, err, dt)
		sizes[dt] = r.FileSize
		rep = r
	}
	out := filepath.Join(dir, "q8.d2")
	t.Logf("tiny-unclip file sizes: f32 %d, f16 %d, q8 %d bytes", sizes["f32"], sizes["f16"], sizes["q8"])
	require.Less(t, sizes["q8"], sizes["f16"])
	require.Less(t, sizes["f16"], sizes["f32"])

	f, err := loader.Open(out)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Verify())
	require.Equal(t, "Q8_0", f.Meta()[loader.MetaDType])
	require.Equal(t, loader.Q8_0, rep.DType)

	p, err := OpenPipeline(src)
	require.NoError(t, err)
	count := map[loader.DType]int{}
	var params int64
	for _, c := range p.Components {
		if c.Kind != KindModel {
			continue
		}
		st, err := loader.OpenSafetensors(c.Weights[0])
		require.NoError(t, err)
		sub := f.Sub(c.Name)
		require.Equal(t, st.Names(), sub.Names(), c.Name)
		for _, n := range st.Names() {
			s, err := st.Tensor(n)
			require.NoError(t, err)
			got, err := sub.Tensor(n)
			require.NoError(t, err)
			name := c.Name + "/" + n
			require.Equal(t, s.Shape, got.Shape, name)
			want := s.DType
			if isFloat(s.DType) {
				want = NewPolicy(c.Name, st.Names(), loader.Q8_0).DType(n, s.Shape)
				params += int64(s.Numel())
			}
			require.Equal(t, want, got.DType, name)
			count[got.DType]++
			switch got.DType {
			case loader.Q8_0:
				checkQ8Blocks(t, name, f32Values(t, s), got.Data)
			case loader.F16:
				h := make([]byte, 0, len(got.Data))
				for _, x := range f32Values(t, s) {
					h = binary.LittleEndian.AppendUint16(h, quant.F32ToF16(x))
				}
				require.True(t, bytes.Equal(h, got.Data), "%s is not quant.F32ToF16 of the source", name)
			default:
				require.True(t, bytes.Equal(s.Data, got.Data), "%s stored as it is", name)
			}
		}
		st.Close()
	}
	// The tiny model has both kinds (counts of this golden pipeline).
	require.Positive(t, count[loader.Q8_0])
	require.Positive(t, count[loader.F16])
	require.Equal(t, params, rep.Params)

	// The report's per-dtype totals are the file's.
	byDType := map[loader.DType]*DTypeStats{}
	for _, info := range f.Index() {
		s := byDType[info.DType]
		if s == nil {
			s = &DTypeStats{DType: info.DType}
			byDType[info.DType] = s
		}
		n := int64(1)
		for _, d := range info.Shape {
			n *= int64(d)
		}
		s.Tensors++
		s.Params += n
		s.Bytes += info.RawSize
		s.Stored += info.Size
	}
	require.Len(t, rep.DTypes, len(byDType))
	var tensors int
	var stored int64
	for i, s := range rep.DTypes {
		if i > 0 {
			require.Less(t, rep.DTypes[i-1].DType, s.DType, "in DType order")
		}
		require.Equal(t, *byDType[s.DType], s)
		require.Equal(t, count[s.DType], s.Tensors)
		tensors += s.Tensors
		stored += s.Stored
		t.Logf("%-5s %4d tensors %9d params %9d bytes %9d on disk (zstd ratio %.3f)", s.DType, s.Tensors, s.Params, s.Bytes, s.Stored, s.Ratio())
	}
	require.Equal(t, rep.Tensors, tensors)
	require.Equal(t, rep.Stored, stored)
	require.Less(t, rep.Stored, rep.FileSize)
}

// TestConvertQ8BadValues: a weight Q8_0 cannot hold is an error naming the
// source file and the tensor, and no output file appears.
func TestConvertQ8BadValues(t *testing.T) {
	g := goldenDir(t)
	for _, c := range []struct {
		name  string
		value float32
		want  string
	}{
		{"NaN", float32(math.NaN()), "value 37 is NaN"},
		{"Inf", float32(math.Inf(-1)), "value 37 is -Inf"},
		{"too large", 1e10, "block magnitude 1e+10 cannot be stored in Q8_0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "tiny-unclip")
			rel := filepath.Join("text_proj", "diffusion_pytorch_model.safetensors")
			linkTree(t, filepath.Join(g, "tiny-unclip"), dir, func(r string) bool { return r == rel })
			st, err := loader.OpenSafetensors(filepath.Join(g, "tiny-unclip", rel))
			require.NoError(t, err)
			var ts []loader.Tensor
			for _, n := range st.Names() {
				tn, err := st.Tensor(n)
				require.NoError(t, err)
				if n == "embedding_proj.weight" {
					tn.Data = bytes.Clone(tn.Data)
					binary.LittleEndian.PutUint32(tn.Data[4*37:], math.Float32bits(c.value))
				}
				ts = append(ts, tn)
			}
			require.NoError(t, loader.WriteSafetensors(filepath.Join(dir, rel), ts, nil))
			st.Close()
			out := filepath.Join(tmp, "out.d2")
			_, err = Convert(dir, out, Options{DType: "q8"})
			require.ErrorContains(t, err, fmt.Sprintf(`convert: %s: tensor "embedding_proj.weight": cannot store [128 32] as Q8_0: `, filepath.Join(dir, rel)))
			require.ErrorContains(t, err, c.want)
			_, statErr := os.Stat(out)
			require.True(t, os.IsNotExist(statErr), "no output file after a failure")
			// F16 keeps converting such values as before (NaN, Inf).
			if c.name != "too large" {
				_, err = Convert(dir, out, Options{DType: "f16"})
				require.NoError(t, err)
			}
		})
	}
}

func TestConvertTensorQ8(t *testing.T) {
	vals := make([]float32, 2*64)
	for i := range vals {
		vals[i] = float32(math.Sin(float64(i))) * float32(1+i%5)
	}
	src := loader.Tensor{Name: "w", DType: loader.F32, Shape: []int{2, 64}, Data: f32Bytes(vals...)}
	q, err := ConvertTensor(src, loader.Q8_0)
	require.NoError(t, err)
	require.Equal(t, loader.Q8_0, q.DType)
	require.Equal(t, []int{2, 64}, q.Shape)
	checkQ8Blocks(t, "w", vals, q.Data)

	// From F16 and BF16: quantizes their (exact) float32 values.
	h, err := ConvertTensor(src, loader.F16)
	require.NoError(t, err)
	qh, err := ConvertTensor(h, loader.Q8_0)
	require.NoError(t, err)
	hv := make([]float32, len(vals))
	for i := range hv {
		hv[i] = quant.F16ToF32(binary.LittleEndian.Uint16(h.Data[2*i:]))
	}
	checkQ8Blocks(t, "w as f16", hv, qh.Data)

	// Back to F32 and F16: the dequantized values.
	back, err := ConvertTensor(q, loader.F32)
	require.NoError(t, err)
	dq := make([]float32, len(vals))
	quant.DequantizeQ8(dq, q.Data)
	require.Equal(t, f32Bytes(dq...), back.Data)
	same, err := ConvertTensor(q, loader.Q8_0)
	require.NoError(t, err)
	require.Equal(t, q, same)

	// Shapes Q8_0 cannot hold, and sizes that lie.
	_, err = ConvertTensor(loader.Tensor{DType: loader.F32, Shape: []int{32, 37}, Data: make([]byte, 4*32*37)}, loader.Q8_0)
	require.EqualError(t, err, "cannot store as Q8_0: shape [32 37]: Q8_0 row length 37 is not a multiple of 32")
	_, err = ConvertTensor(loader.Tensor{DType: loader.F32, Shape: []int{}, Data: make([]byte, 4)}, loader.Q8_0)
	require.ErrorContains(t, err, "a Q8_0 tensor needs at least one dimension")
	_, err = ConvertTensor(loader.Tensor{DType: loader.Q8_0, Shape: []int{1, 32}, Data: make([]byte, 32)}, loader.F16)
	require.EqualError(t, err, "32 bytes for shape [1 32] of Q8_0")

	// Integer tensors are stored as they are.
	ids := loader.Tensor{Name: "ids", DType: loader.I64, Shape: []int{1, 32}, Data: make([]byte, 8*32)}
	got, err := ConvertTensor(ids, loader.Q8_0)
	require.NoError(t, err)
	require.Equal(t, ids, got)
	_, err = ConvertTensor(src, loader.BF16)
	require.EqualError(t, err, "cannot store tensors as BF16")
}

// TestConvertKarloQ8MatchesDiffusers: the original-release path goes
// through the same policy: with --dtype q8 both layouts give the same file.
func TestConvertKarloQ8MatchesDiffusers(t *testing.T) {
	if testing.Short() {
		t.Skip("two more conversions; TestConvertKarloMatchesDiffusers covers the mapping")
	}
	g := goldenDir(t)
	orig, configs, tok := karloGolden(t)
	files, err := FindKarloFiles(orig)
	require.NoError(t, err)
	cfg, err := LoadKarloConfig(configs)
	require.NoError(t, err)
	dir := t.TempDir()
	got := filepath.Join(dir, "karlo.d2")
	rep, err := ConvertKarlo(files, got, KarloOptions{Options: Options{DType: "q8"}, Config: cfg, TokenizerDir: tok})
	require.NoError(t, err)
	want := filepath.Join(dir, "diffusers.d2")
	_, err = Convert(filepath.Join(g, "original-tiny-diffusers"), want, Options{DType: "q8"})
	require.NoError(t, err)
	requireSameTensors(t, want, got)
	var names []string
	for _, s := range rep.DTypes {
		names = append(names, s.DType.String())
	}
	require.Contains(t, strings.Join(names, " "), "Q8_0")
}

// TestPolicyLastUpBlock: a U-Net's last up block is found from its keys,
// whatever the number of blocks; other components have none.
func TestPolicyLastUpBlock(t *testing.T) {
	names := []string{"up_blocks.0.resnets.0.conv1.weight", "up_blocks.1.resnets.2.conv1.weight", "down_blocks.5.x.weight"}
	shape := []int{64, 32, 3, 3}
	p := NewPolicy("super_res_first", names, loader.Q8_0)
	require.Equal(t, loader.F16, p.DType("up_blocks.1.resnets.2.conv1.weight", shape))
	require.Equal(t, loader.Q8_0, p.DType("up_blocks.0.resnets.0.conv1.weight", shape))
	require.Equal(t, loader.Q8_0, p.DType("down_blocks.5.x.weight", shape))
	// No up blocks, or not a U-Net: nothing is kept for that reason.
	require.Equal(t, loader.Q8_0, NewPolicy("decoder", nil, loader.Q8_0).DType("up_blocks.1.resnets.2.conv1.weight", shape))
	require.Equal(t, loader.Q8_0, NewPolicy("prior", names, loader.Q8_0).DType("up_blocks.1.resnets.2.conv1.weight", shape))
	// Indices that do not parse or are absurd are not blocks.
	p = NewPolicy("decoder", []string{"up_blocks.99999999999999999999.x.weight", "up_blocks.-1.x.weight", "up_blocks.2.x.weight"}, loader.Q8_0)
	require.Equal(t, loader.F16, p.DType("up_blocks.2.x.weight", []int{64, 64}))
}
