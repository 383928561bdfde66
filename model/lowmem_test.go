package model_test

// Low-memory mode: one model at a time, the same bits as a normal run.

import (
	"context"
	"image"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
)

// loadedModels lists the models p holds now.
func loadedModels(p *model.Pipeline) []string {
	var out []string
	for _, m := range []struct {
		name string
		ok   bool
	}{
		{"text_encoder", p.TextEncoder != nil}, {"prior", p.Prior != nil}, {"text_proj", p.TextProj != nil},
		{"decoder", p.Decoder != nil}, {"super_res_first", p.SuperResFirst != nil},
		{"super_res_last", p.SuperResLast != nil}, {"image_encoder", p.ImageEncoder != nil},
	} {
		if m.ok {
			out = append(out, m.name)
		}
	}
	return out
}

// oneAtATime returns a watch for tracedRun that checks, at each progress
// call and at a few traced names, that p holds exactly the model of the
// stage running; seen counts the checks made per model.
func oneAtATime(t *testing.T, p *model.Pipeline, seen map[string]int) func(trace, stage string, step, total int) {
	return func(trace, stage string, step, total int) {
		var want string
		switch {
		case trace == "prior.proj_embedding":
			want = "text_encoder"
		case trace == "image_encoder.image_embeds" || strings.HasSuffix(trace, ".image_encoder.image_embeds"):
			want = "image_encoder"
		case strings.HasSuffix(trace, "text_proj.out_encoder_hidden_states"):
			want = "text_proj"
		case strings.HasPrefix(stage, "prior"):
			want = "prior"
		case strings.HasPrefix(stage, "decoder"):
			want = "decoder"
		case strings.HasPrefix(stage, "super_res") && step < total:
			want = "super_res_first"
		case strings.HasPrefix(stage, "super_res"):
			want = "super_res_last"
		default:
			return
		}
		seen[want]++
		require.Equal(t, []string{want}, loadedModels(p), "at %q %q %d/%d", trace, stage, step, total)
	}
}

// TestLowMemorySameOutput: a low-memory pipeline holds one model at a
// time (the running stage's) and computes exactly what the normal one
// does, traced tensors and pixels, for every kind of run.
func TestLowMemorySameOutput(t *testing.T) {
	type fileCase struct {
		name string
		path func(t *testing.T) string
		runs func(t *testing.T) []pipeRun
	}
	cases := []fileCase{
		{"builtin f16", func(*testing.T) string { return builtinPath }, func(*testing.T) []pipeRun { return []pipeRun{generateRun} }},
		{"combo f32", func(t *testing.T) string { return comboFile(t, "f32") }, func(t *testing.T) []pipeRun {
			if testing.Short() {
				return []pipeRun{varyRun(t)}
			}
			img := testImage(t)
			return []pipeRun{varyRun(t),
				{"edit", func(p *model.Pipeline, o model.Options) (*model.Result, error) {
					return p.Edit(context.Background(), []image.Image{img}, "a red horse", 0.5, o)
				}},
				{"interpolate", func(p *model.Pipeline, o model.Options) (*model.Result, error) {
					return p.Interpolate(context.Background(), model.Endpoint{Image: img}, model.Endpoint{Prompt: "a cat"}, 3, o)
				}},
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path(t)
			normal, err := model.LoadPipeline(openWeights(t, path))
			require.NoError(t, err)
			low, err := model.LoadPipelineWith(openWeights(t, path), model.LoadOptions{LowMemory: true})
			require.NoError(t, err)
			require.True(t, low.LowMemory())
			require.False(t, normal.LowMemory())
			require.Empty(t, loadedModels(low), "nothing built at load")
			require.Equal(t, normal.Has("super_res_last"), low.Has("super_res_last"))
			for _, r := range c.runs(t) {
				seen := map[string]int{}
				resN, trN := tracedRun(t, normal, r, 9)
				resL, trL := tracedRun(t, low, r, 9, oneAtATime(t, low, seen))
				requireSameRun(t, c.name+" "+r.name, resN, resL, trN, trL)
				for _, m := range []string{"decoder", "super_res_first", "super_res_last", "text_proj"} {
					require.Positive(t, seen[m], "%s: %s never checked", r.name, m)
				}
				if r.name != "vary" { // vary runs no prior
					require.Positive(t, seen["prior"], "%s: prior never checked", r.name)
				}
			}
		})
	}
}

// TestLowMemoryChecksAtLoad: a low-memory load finds every problem with
// names, shapes and dtypes that a normal load finds, with the same
// message, without reading weights; corrupt weight data is reported by the
// run that needs it.
func TestLowMemoryChecksAtLoad(t *testing.T) {
	src := openWeights(t, builtinPath)
	bad := rewriteWeights(t, src, func(comp string, tn loader.Tensor) loader.Tensor {
		switch comp + "/" + tn.Name {
		case "decoder/conv_in.bias": // one element short
			tn.Shape, tn.Data = []int{tn.Shape[0] - 1}, tn.Data[:len(tn.Data)-2]
		case "prior/clip_std": // not a float
			tn.DType = loader.I16
		}
		return tn
	})
	_, errN := model.LoadPipeline(bad)
	require.Error(t, errN)
	_, errL := model.LoadPipelineWith(bad, model.LoadOptions{LowMemory: true})
	require.Error(t, errL)
	require.Equal(t, errN.Error(), errL.Error())
	require.Contains(t, errL.Error(), `tensor "conv_in.bias": shape`)
	require.Contains(t, errL.Error(), `tensor "clip_std": dtype I16`)

	// Flip one byte of a decoder weight: the low-memory load succeeds (it
	// reads no weights); the run fails at the decoder with the checksum
	// error a normal load gives.
	path := writeWeights(t, src, func(_ string, tn loader.Tensor) loader.Tensor { return tn })
	var info loader.TensorInfo
	for _, i := range openWeights(t, path).Index() {
		if i.Name == "decoder/conv_out.weight" {
			info = i
		}
	}
	require.Equal(t, loader.CodecRaw, info.Codec)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[info.Offset+3] ^= 0x40
	require.NoError(t, os.WriteFile(path, data, 0o644))
	corrupt := openWeights(t, path)
	_, errN = model.LoadPipeline(corrupt)
	require.ErrorContains(t, errN, "checksum mismatch")
	low, err := model.LoadPipelineWith(corrupt, model.LoadOptions{LowMemory: true})
	require.NoError(t, err)
	_, err = generateRun.do(low, quickOptions(model.NewSeededNoise(1)))
	require.ErrorContains(t, err, "checksum mismatch")
	require.ErrorContains(t, err, "decoder/conv_out.weight")
}
