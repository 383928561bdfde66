package model_test

// Compact weights: fp16 and Q8_0 Linear/Conv2D weights stay in the file's
// storage (no float32 copy) and give exactly the numbers of the same
// weights decoded to float32 first.

import (
	"context"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

// testTemp is a folder for the files the tests write, removed at the end.
var testTemp string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dalle2-model-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testTemp = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builtinPath is the built-in tiny model: golden tiny-unclip converted
// with --dtype f16 (random weights, in the repository).
var builtinPath = filepath.Join("..", "testdata", "builtin-tiny-unclip-f16.d2")

func openWeights(t testing.TB, path string) *loader.File {
	t.Helper()
	f, err := loader.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// rewriteWeights copies src to a new weight file in a test folder, passing
// every tensor through edit, and opens it.
func rewriteWeights(t testing.TB, src *loader.File, edit func(comp string, tn loader.Tensor) loader.Tensor) *loader.File {
	t.Helper()
	return openWeights(t, writeWeights(t, src, edit))
}

// writeWeights copies src to a new weight file in a test folder, passing
// every tensor through edit (stored raw, uncompressed), and returns its
// path.
func writeWeights(t testing.TB, src *loader.File, edit func(comp string, tn loader.Tensor) loader.Tensor) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rewritten.d2")
	w, err := loader.Create(path)
	require.NoError(t, err)
	w.SetMinSaving(1) // raw: fast to write, and F32 data is used in place
	for k, v := range src.Meta() {
		w.SetMeta(k, v)
	}
	for _, c := range src.Components() {
		require.NoError(t, w.AddComponent(c))
	}
	for _, info := range src.Index() {
		tn, err := src.Tensor(info.Name)
		require.NoError(t, err)
		comp, key, _ := strings.Cut(info.Name, "/")
		tn.Name = key
		require.NoError(t, w.AddTensor(comp, edit(comp, tn)))
	}
	for _, b := range src.Blobs() {
		d, err := src.Blob(b.Name)
		require.NoError(t, err)
		require.NoError(t, w.AddBlob(b.Name, d))
	}
	require.NoError(t, w.Commit())
	return path
}

// decoded returns src with every F16 and Q8_0 tensor decoded to F32: the
// same numbers, stored dense.
func decodedWeights(t testing.TB, src *loader.File) *loader.File {
	return rewriteWeights(t, src, func(_ string, tn loader.Tensor) loader.Tensor {
		var vals []float32
		switch tn.DType {
		case loader.F16:
			var err error
			vals, err = quant.ToFloat32("F16", tn.Data)
			require.NoError(t, err)
		case loader.Q8_0:
			vals = make([]float32, tn.Numel())
			quant.DequantizeQ8(vals, tn.Data)
		default:
			return tn
		}
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			putF32(b[4*i:], v)
		}
		return loader.Tensor{Name: tn.Name, DType: loader.F32, Shape: tn.Shape, Data: b}
	})
}

func putF32(b []byte, v float32) {
	u := math.Float32bits(v)
	b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
}

// pipeRun is one Generate, Vary, Edit or Interpolate call with every traced
// tensor recorded.
type pipeRun struct {
	name string
	do   func(p *model.Pipeline, o model.Options) (*model.Result, error)
}

var generateRun = pipeRun{"generate", func(p *model.Pipeline, o model.Options) (*model.Result, error) {
	o.Prompts = []string{"a red horse"}
	return p.Generate(context.Background(), o)
}}

func varyRun(t *testing.T) pipeRun {
	img := testImage(t)
	return pipeRun{"vary", func(p *model.Pipeline, o model.Options) (*model.Result, error) {
		return p.Vary(context.Background(), []image.Image{img}, o)
	}}
}

// tracedRun runs r on p and returns its result and every traced tensor
// (copies; a name traced twice keeps both, in order). Each watch is called
// with every traced name and every progress call.
func tracedRun(t *testing.T, p *model.Pipeline, r pipeRun, seed uint64, watch ...func(trace, stage string, step, total int)) (*model.Result, map[string][]*ops.Tensor) {
	t.Helper()
	o := quickOptions(model.NewSeededNoise(seed))
	tr := map[string][]*ops.Tensor{}
	o.Trace = func(name string, x *ops.Tensor) {
		tr[name] = append(tr[name], x.Clone())
		for _, w := range watch {
			w(name, "", 0, 0)
		}
	}
	o.Progress = func(stage string, step, total int) {
		for _, w := range watch {
			w("", stage, step, total)
		}
	}
	res, err := r.do(p, o)
	require.NoError(t, err, r.name)
	return res, tr
}

// requireSameRun checks that two runs traced the same tensors with the
// same bits and made the same pixels.
func requireSameRun(t *testing.T, what string, a, b *model.Result, ta, tb map[string][]*ops.Tensor) {
	t.Helper()
	require.NotEmpty(t, ta)
	require.Equal(t, len(ta), len(tb), "%s: traced names", what)
	for name, xs := range ta {
		ys := tb[name]
		require.Equal(t, len(xs), len(ys), "%s: %s traced", what, name)
		for k := range xs {
			require.Equal(t, xs[k].Shape, ys[k].Shape, "%s: %s", what, name)
			for i, v := range xs[k].Data {
				if math.Float32bits(v) != math.Float32bits(ys[k].Data[i]) {
					t.Fatalf("%s: %s[%d] differs at %d: %g vs %g", what, name, k, i, v, ys[k].Data[i])
				}
			}
		}
	}
	require.Equal(t, a.Pixels, b.Pixels, "%s: pixels", what)
}

// TestCompactWeightsBitIdentical: a pipeline whose Linear and Conv2D
// weights are compact (fp16, Q8_0) computes exactly what the same
// pipeline computes from those weights decoded to float32 beforehand:
// compact weights change the storage, not the numbers. Q8_0 weights are
// pinned to the decode-while-packing path: the q16 path (AVX-512 VNNI,
// ops.SetQ16) rounds the activations to int16 and so is not bit-identical
// by design; ops' q16 tests check it against its own reference and f32.
func TestCompactWeightsBitIdentical(t *testing.T) {
	t.Cleanup(ops.SetQ16(false))
	type fileCase struct {
		name string
		path func(t *testing.T) string
		runs func(t *testing.T) []pipeRun
	}
	cases := []fileCase{
		{"builtin f16", func(*testing.T) string { return builtinPath }, func(*testing.T) []pipeRun { return []pipeRun{generateRun} }},
		{"combo q8", func(t *testing.T) string { return comboFile(t, "q8") }, func(t *testing.T) []pipeRun {
			if testing.Short() {
				return []pipeRun{varyRun(t)} // every model but the prior and text encoder
			}
			return []pipeRun{generateRun, varyRun(t)}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := openWeights(t, c.path(t))
			pc, err := model.LoadPipeline(f)
			require.NoError(t, err)
			require.NotNil(t, pc.Decoder.DownBlocks[0].Resnets[0].Conv1Weight.Q, "the file's weights should be compact")
			pd, err := model.LoadPipeline(decodedWeights(t, f))
			require.NoError(t, err)
			require.Nil(t, pd.Decoder.DownBlocks[0].Resnets[0].Conv1Weight.Q)
			for _, r := range c.runs(t) {
				resC, trC := tracedRun(t, pc, r, 5)
				resD, trD := tracedRun(t, pd, r, 5)
				requireSameRun(t, c.name+" "+r.name, resC, resD, trC, trD)
			}
		})
	}
}

// modelTensors returns every distinct *ops.Tensor reachable from the
// pipeline's models, by walking their fields.
func modelTensors(p *model.Pipeline) []*ops.Tensor {
	seen := map[*ops.Tensor]bool{}
	var out []*ops.Tensor
	visited := map[uintptr]bool{}
	tensorType := reflect.TypeOf((*ops.Tensor)(nil))
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				return
			}
			if v.Type() == tensorType {
				tn := (*ops.Tensor)(unsafe.Pointer(v.Pointer()))
				if !seen[tn] {
					seen[tn] = true
					out = append(out, tn)
				}
				return
			}
			if visited[v.Pointer()] {
				return
			}
			visited[v.Pointer()] = true
			walk(v.Elem())
		case reflect.Struct:
			if v.Type() == reflect.TypeOf(ops.Arena{}) {
				return // scratch, not weights
			}
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	for _, m := range []any{p.TextEncoder, p.Prior, p.TextProj, p.Decoder, p.SuperResFirst, p.SuperResLast, p.ImageEncoder} {
		walk(reflect.ValueOf(m))
	}
	return out
}

// linearOrConvWeight reports whether a stored tensor is one the models
// hand to ops.Linear or ops.Conv2D: a ".weight" of rank 2 or 4 that is not
// an embedding table (those are looked up by ops.Embedding).
func linearOrConvWeight(key string, shape []int) bool {
	return strings.HasSuffix(key, ".weight") && (len(shape) == 2 || len(shape) == 4) &&
		!strings.HasSuffix(key, "token_embedding.weight") && !strings.HasSuffix(key, "position_embedding.weight")
}

// TestCompactWeightsStayInFile: loading an fp16 file keeps every Linear
// and Conv2D weight compact, aliasing the file's bytes, with no float32
// copy; everything else is dense float32.
func TestCompactWeightsStayInFile(t *testing.T) {
	data, err := os.ReadFile(builtinPath)
	require.NoError(t, err)
	f, err := loader.OpenBytes(data, "builtin")
	require.NoError(t, err)
	p, err := model.LoadPipeline(f)
	require.NoError(t, err)

	want, wantRaw := 0, 0
	for _, info := range f.Index() {
		if _, key, _ := strings.Cut(info.Name, "/"); linearOrConvWeight(key, info.Shape) {
			require.Equal(t, loader.F16, info.DType, info.Name)
			want++
			if info.Codec == loader.CodecRaw {
				wantRaw++
			}
		}
	}
	require.Positive(t, wantRaw)
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	hi := lo + uintptr(len(data))
	compact, inFile := 0, 0
	for _, tn := range modelTensors(p) {
		if tn.Q == nil {
			require.NotNil(t, tn.Data, "dense tensor %v without data", tn.Shape)
			continue
		}
		compact++
		require.Nil(t, tn.Data, "compact weight %v with a float32 copy", tn.Shape)
		require.Equal(t, ops.FormatF16, tn.Q.Format)
		if at := uintptr(unsafe.Pointer(unsafe.SliceData(tn.Q.Raw))); at >= lo && at+uintptr(len(tn.Q.Raw)) <= hi {
			inFile++
		}
	}
	require.Equal(t, want, compact, "compact weights")
	require.Equal(t, wantRaw, inFile, "compact weights aliasing the file (raw, not zstd-compressed)")

	// A few by name.
	for name, w := range map[string]*ops.Tensor{
		"text_encoder q_proj":     p.TextEncoder.Encoder.Layers[0].SelfAttn.QProj.Weight,
		"text_encoder projection": p.TextEncoder.TextProjection,
		"prior proj_in":           p.Prior.ProjIn.Weight,
		"prior ff":                p.Prior.TransformerBlocks[0].FF.Net0Proj.Weight,
		"text_proj":               p.TextProj.ClipExtraContextTokensProj.Weight,
		"decoder conv_in":         p.Decoder.ConvInWeight,
		"decoder time_emb_proj":   p.Decoder.DownBlocks[0].Resnets[0].TimeEmbProjWeight,
		"super_res_last conv2":    p.SuperResLast.UpBlocks[0].Resnets[0].Conv2Weight,
	} {
		require.NotNil(t, w.Q, name)
		require.Nil(t, w.Data, name)
	}
	for name, w := range map[string]*ops.Tensor{
		"token embedding":   p.TextEncoder.TokenEmbedding,
		"decoder conv bias": p.Decoder.ConvInBias,
		"prior clip_std":    p.Prior.ClipStd,
	} {
		require.Nil(t, w.Q, name)
		require.NotNil(t, w.Data, name)
	}
}

// TestQ8WeightsCompact: in a --dtype q8 file each weight is compact in its
// stored format (Q8_0 where the policy quantized it, fp16 elsewhere).
func TestQ8WeightsCompact(t *testing.T) {
	f := openWeights(t, comboFile(t, "q8"))
	p, err := model.LoadPipeline(f)
	require.NoError(t, err)
	want := map[ops.Format]int{}
	for _, info := range f.Index() {
		if _, key, _ := strings.Cut(info.Name, "/"); linearOrConvWeight(key, info.Shape) {
			switch info.DType {
			case loader.Q8_0:
				want[ops.FormatQ8]++
			case loader.F16:
				want[ops.FormatF16]++
			default:
				t.Fatalf("%s stored as %s", info.Name, info.DType)
			}
		}
	}
	require.Positive(t, want[ops.FormatQ8])
	got := map[ops.Format]int{}
	for _, tn := range modelTensors(p) {
		if tn.Q != nil {
			require.Nil(t, tn.Data)
			got[tn.Q.Format]++
		}
	}
	require.Equal(t, want, got)
}

// relError is ‖got − want‖₂ / ‖want‖₂.
func relError(got, want *ops.Tensor) float64 {
	var d, n float64
	for i, w := range want.Data {
		e := float64(got.Data[i]) - float64(w)
		d += e * e
		n += float64(w) * float64(w)
	}
	return math.Sqrt(d / n)
}

// TestF16ModulesCloseToF32: each model of an fp16 file, given the same
// inputs, stays close to the same model of the f32 file.
func TestF16ModulesCloseToF32(t *testing.T) {
	p32, err := model.LoadPipeline(openWeights(t, comboFile(t, "f32")))
	require.NoError(t, err)
	p16, err := model.LoadPipeline(openWeights(t, comboFile(t, "f16")))
	require.NoError(t, err)
	noise := model.NewSeededNoise(11)
	draw := func(name string, shape ...int) *ops.Tensor {
		x, err := noise.Draw(name, shape...)
		require.NoError(t, err)
		return x
	}
	check := func(name string, got, want *ops.Tensor) {
		t.Helper()
		require.Equal(t, want.Shape, got.Shape, name)
		r := relError(got, want)
		t.Logf("%-26s relative L2 error %.2e", name, r)
		require.LessOrEqual(t, r, f16Tol, name)
	}

	ids, m := p32.Tokenizer.Encode("a photo of a red horse")
	mask := ops.New(1, len(m))
	for i, v := range m {
		mask.Data[i] = float32(v)
	}
	e32, h32 := p32.TextEncoder.Forward(ids, 1)
	e16, h16 := p16.TextEncoder.Forward(ids, 1)
	check("text_encoder text_embeds", e16, e32)
	check("text_encoder last_hidden", h16, h32)

	x := draw("prior", 1, p32.Prior.Config.EmbeddingDim)
	img32 := p32.Prior.Forward(x, 500, e32, h32, mask)
	check("prior", p16.Prior.Forward(x, 500, e32, h32, mask), img32)

	ctx32, add32 := p32.TextProj.Forward(img32, e32, h32, false)
	ctx16, add16 := p16.TextProj.Forward(img32, e32, h32, false)
	check("text_proj encoder_hidden", ctx16, ctx32)
	check("text_proj additive", add16, add32)

	k := p32.TextProjConfig.ClipExtraContextTokens
	dmask := ops.New(1, k+len(m))
	for i := range k {
		dmask.Data[i] = 1
	}
	copy(dmask.Data[k:], mask.Data)
	dc, ds := p32.DecoderConfig.InChannels, p32.DecoderConfig.SampleSize
	y := draw("decoder", 1, dc, ds, ds)
	check("decoder", p16.Decoder.Forward(y, 500, ctx32, add32, dmask), p32.Decoder.Forward(y, 500, ctx32, add32, dmask))

	sc, ss := p32.SuperResConfig.InChannels, p32.SuperResConfig.SampleSize
	z := draw("super_res", 1, sc, ss, ss)
	check("super_res_first", p16.SuperResFirst.Forward(z, 500, nil, nil, nil), p32.SuperResFirst.Forward(z, 500, nil, nil, nil))
	check("super_res_last", p16.SuperResLast.Forward(z, 0, nil, nil, nil), p32.SuperResLast.Forward(z, 0, nil, nil, nil))

	proc, err := p32.ImageProcessor()
	require.NoError(t, err)
	px, err := proc.Preprocess([]image.Image{testImage(t)})
	require.NoError(t, err)
	i32, _ := p32.ImageEncoder.Forward(px)
	i16, _ := p16.ImageEncoder.Forward(px)
	check("image_encoder", i16, i32)
}

// f16Tol bounds the relative L2 error of a model output caused by storing
// its weights in fp16: rounding to nearest moves each weight by at most
// u = 2⁻¹¹ of its magnitude (uniformly within half an ulp, RMS ≈ 0.6u), so
// one layer's output moves by about that fraction (the independent
// rounding errors of a dot product add in quadrature, like its terms);
// layers in sequence add their errors roughly in quadrature too, and the
// tiny models stack up to ~20 layers on a path (√20·0.6u ≈ 2.7u). The
// measured errors are 0.5u (text encoder) to 2.3u (decoder); a real
// defect (a wrong weight, a mis-decoded block) moves outputs by orders of
// magnitude more. 4u = 2⁻⁹.
const f16Tol = 1.0 / 512

// TestBinderDTypes: every float dtype loads wherever a policy may put it:
// Q8_0 embeddings and norms decode to dense float32 (the values the
// blocks hold), BF16 and F32 weights are dense, and the pipeline runs.
func TestBinderDTypes(t *testing.T) {
	src := openWeights(t, builtinPath)
	q8 := map[string]bool{
		"text_encoder/text_model.embeddings.token_embedding.weight": true,
		"decoder/conv_norm_out.weight":                              true,
		"prior/clip_std":                                            true,
	}
	const bf16, f32 = "decoder/conv_in.weight", "prior/proj_in.weight"
	want := map[string][]float32{}
	f := rewriteWeights(t, src, func(comp string, tn loader.Tensor) loader.Tensor {
		name := comp + "/" + tn.Name
		if !q8[name] && name != bf16 && name != f32 {
			return tn
		}
		vals, err := quant.ToFloat32("F16", tn.Data)
		require.NoError(t, err)
		switch {
		case q8[name]:
			tn.DType, tn.Data = loader.Q8_0, make([]byte, quant.Q8Bytes(len(vals)))
			require.NoError(t, quant.QuantizeQ8(tn.Data, vals))
			vals = make([]float32, len(vals))
			quant.DequantizeQ8(vals, tn.Data)
		case name == bf16: // F16 values with ≤ 8 significant bits are exact in BF16
			tn.DType, tn.Data = loader.BF16, make([]byte, 2*len(vals))
			for i, v := range vals {
				v = math.Float32frombits(math.Float32bits(v) &^ 0xffff)
				vals[i] = v
				u := math.Float32bits(v) >> 16
				tn.Data[2*i], tn.Data[2*i+1] = byte(u), byte(u>>8)
			}
		default:
			tn.DType, tn.Data = loader.F32, make([]byte, 4*len(vals))
			for i, v := range vals {
				putF32(tn.Data[4*i:], v)
			}
		}
		want[name] = vals
		return tn
	})
	p, err := model.LoadPipeline(f)
	require.NoError(t, err)
	for name, got := range map[string]*ops.Tensor{
		"text_encoder/text_model.embeddings.token_embedding.weight": p.TextEncoder.TokenEmbedding,
		"decoder/conv_norm_out.weight":                              p.Decoder.ConvNormOutWeight,
		"prior/clip_std":                                            p.Prior.ClipStd,
		bf16:                                                        p.Decoder.ConvInWeight,
		f32:                                                         p.Prior.ProjIn.Weight,
	} {
		require.Nil(t, got.Q, name)
		require.Equal(t, want[name], got.Data, name)
	}
	_, err = generateRun.do(p, quickOptions(model.NewSeededNoise(2)))
	require.NoError(t, err)
}
