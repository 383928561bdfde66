package model_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

var (
	comboOnce sync.Once
	comboPipe *model.Pipeline
	comboErr  error

	comboFilesMu sync.Mutex
	comboFiles   = map[string]string{} // dtype -> converted file
)

// comboPipeline is tiny-unclip (text to image) plus tiny-unclip-variation's
// image_encoder and feature_extractor: the two golden pipelines share
// their decoder, text_proj, text encoder and super-res weights, so this is
// one pipeline that can vary, edit and interpolate.
func comboPipeline(t *testing.T) *model.Pipeline {
	path := comboFile(t, "f32")
	comboOnce.Do(func() {
		var f *loader.File
		if f, comboErr = loader.Open(path); comboErr == nil {
			comboPipe, comboErr = model.LoadPipeline(f)
		}
	})
	require.NoError(t, comboErr)
	return comboPipe
}

// comboFile converts the combo pipeline (see comboPipeline) with
// convert's dtype ("f32", "f16", "q8") once per test binary and returns
// the file's path (removed when the tests end).
func comboFile(t *testing.T, dtype string) string {
	root := goldenRoot(t)
	comboFilesMu.Lock()
	defer comboFilesMu.Unlock()
	if path, ok := comboFiles[dtype]; ok {
		return path
	}
	path, err := buildCombo(root, dtype)
	require.NoError(t, err)
	comboFiles[dtype] = path
	return path
}

// buildCombo converts the combo pipeline to a file in a new temporary
// folder (of the process: TestMain removes it).
func buildCombo(root, dtype string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(testTemp, "combo-"+dtype)
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", err
	}
	raw, err := os.ReadFile(filepath.Join(root, "tiny-unclip", "model_index.json"))
	if err != nil {
		return "", err
	}
	var index map[string]any
	if err := json.Unmarshal(raw, &index); err != nil {
		return "", err
	}
	from := map[string]string{}
	for name := range index {
		if name[0] != '_' {
			from[name] = "tiny-unclip"
		}
	}
	index["image_encoder"] = []string{"transformers", "CLIPVisionModelWithProjection"}
	index["feature_extractor"] = []string{"transformers", "CLIPImageProcessor"}
	from["image_encoder"], from["feature_extractor"] = "tiny-unclip-variation", "tiny-unclip-variation"
	for name, pipe := range from {
		if err := os.Symlink(filepath.Join(root, pipe, name), filepath.Join(src, name)); err != nil {
			return "", err
		}
	}
	if raw, err = json.Marshal(index); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "model_index.json"), raw, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "combo.d2")
	if _, err := convert.Convert(src, out, convert.Options{DType: dtype}); err != nil {
		return "", err
	}
	return out, nil
}

// quickOptions: the fewest steps the schedulers allow, so the tests stay fast.
func quickOptions(noise model.Noise) model.Options {
	o := model.Defaults
	o.PriorSteps, o.DecoderSteps, o.SuperResSteps = 2, 2, 2
	o.Noise = noise
	return o
}

func testImage(t *testing.T) image.Image {
	img, err := model.ReadImageFile(filepath.Join(goldenRoot(t), "cases", "variation_input_48x40.png"))
	require.NoError(t, err)
	return img
}

// recordNoise draws from src and keeps every tensor by name.
type recordNoise struct {
	src   model.Noise
	drawn map[string]*ops.Tensor
}

func (r *recordNoise) Draw(name string, shape ...int) (*ops.Tensor, error) {
	t, err := r.src.Draw(name, shape...)
	if err == nil {
		r.drawn[name] = t.Clone()
	}
	return t, err
}

// mapNoise replays tensors by name.
type mapNoise map[string]*ops.Tensor

func (m mapNoise) Draw(name string, shape ...int) (*ops.Tensor, error) {
	t, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("no noise %q", name)
	}
	return t.Clone(), nil
}

func requireSameResult(t *testing.T, want, got *model.Result, what string) {
	t.Helper()
	require.Equal(t, want.Images.Shape, got.Images.Shape, what)
	require.Equal(t, want.Images.Data, got.Images.Data, "%s: float images differ", what)
	require.Equal(t, want.Pixels, got.Pixels, "%s: pixels differ", what)
}

// frame returns frame k of a Result as a one-image Result.
func frame(r *model.Result, k int) *model.Result {
	n := len(r.Pixels) / r.Images.Dim(0)
	return &model.Result{Images: r.Images.Rows(k, k+1), Pixels: r.Pixels[k*n : (k+1)*n]}
}

// TestEditAlphaZeroEqualsVary: an edit at alpha 0 is Vary with the same
// seed, bit for bit (the prior's draws come after the decoder's and
// super-res stage's), for a batch of two images; alpha 0.5 changes the
// output.
func TestEditAlphaZeroEqualsVary(t *testing.T) {
	p := comboPipeline(t)
	img := testImage(t)
	gray := image.NewGray(image.Rect(0, 0, 3, 50))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(5 * i)
	}
	images := []image.Image{img, gray}
	o := quickOptions(model.NewSeededNoise(11))
	vary, err := p.Vary(context.Background(), images, o)
	require.NoError(t, err)
	require.Equal(t, []int{2, 64, 64, 3}, vary.Images.Shape)

	o.Noise = model.NewSeededNoise(11)
	edit0, err := p.Edit(context.Background(), images, "a red horse", 0, o)
	require.NoError(t, err)
	requireSameResult(t, vary, edit0, "edit alpha 0 vs vary")

	o.Noise = model.NewSeededNoise(11)
	edit, err := p.Edit(context.Background(), images, "a red horse", 0.5, o)
	require.NoError(t, err)
	for k := range 2 {
		require.NotEqual(t, frame(vary, k).Pixels, frame(edit, k).Pixels, "alpha 0.5 left image %d unchanged", k)
	}
}

// TestInterpolateEndpoints: the first and last frames are the endpoints
// decoded alone (Vary for the image, Generate for the prompt) with the
// same noise, and the middle frame is neither.
func TestInterpolateEndpoints(t *testing.T) {
	p := comboPipeline(t)
	img := testImage(t)
	rec := &recordNoise{src: model.NewSeededNoise(5), drawn: map[string]*ops.Tensor{}}
	o := quickOptions(rec)
	traced := map[string]bool{}
	o.Trace = func(name string, _ *ops.Tensor) { traced[name] = true }
	res, err := p.Interpolate(context.Background(), model.Endpoint{Image: img}, model.Endpoint{Prompt: "a red horse"}, 3, o)
	require.NoError(t, err)
	require.Equal(t, []int{3, 64, 64, 3}, res.Images.Shape)
	require.Contains(t, rec.drawn, "inputs.prior_latents")
	// Every noise tensor is traced under its plain name (a --dump replays).
	for name := range rec.drawn {
		require.True(t, traced[name], "noise %s not traced", name)
	}
	require.True(t, traced["frame.02.decoder.00.model_output"])

	o = quickOptions(mapNoise(rec.drawn))
	vary, err := p.Vary(context.Background(), []image.Image{img}, o)
	require.NoError(t, err)
	requireSameResult(t, vary, frame(res, 0), "frame 0 vs vary")

	o.Prompts = []string{"a red horse"}
	gen, err := p.Generate(context.Background(), o)
	require.NoError(t, err)
	requireSameResult(t, gen, frame(res, 2), "frame 2 vs generate")

	mid := frame(res, 1).Pixels
	require.NotEqual(t, vary.Pixels, mid)
	require.NotEqual(t, gen.Pixels, mid)
}

// TestInterpolateTwoImages: image to image needs no prior (the variation
// pipeline suffices); the same image at both ends gives identical frames.
func TestInterpolateTwoImages(t *testing.T) {
	p := loadPipeline(t, goldenRoot(t), "tiny-unclip-variation")
	img := testImage(t)
	o := quickOptions(model.NewSeededNoise(2))
	o.DecoderOnly = true
	res, err := p.Interpolate(context.Background(), model.Endpoint{Image: img}, model.Endpoint{Image: img}, 2, o)
	require.NoError(t, err)
	requireSameResult(t, frame(res, 0), frame(res, 1), "same endpoints")
}

// TestVaryOddImages: a batch of odd sizes and colour models runs.
func TestVaryOddImages(t *testing.T) {
	p := loadPipeline(t, goldenRoot(t), "tiny-unclip-variation")
	pal := image.NewPaletted(image.Rect(0, 0, 500, 3), color.Palette{color.Black, color.NRGBA{0, 255, 0, 10}})
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 2)
	}
	rgba := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	rgba.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 0})
	images := []image.Image{image.NewGray16(image.Rect(0, 0, 3, 500)), pal, rgba, image.NewCMYK(image.Rect(0, 0, 7, 7))}
	o := quickOptions(model.NewSeededNoise(1))
	o.DecoderOnly, o.DecoderGuidance = true, 1 // cheaper: no super-res, no guidance batch
	res, err := p.Vary(context.Background(), images, o)
	require.NoError(t, err)
	require.Equal(t, []int{4, 32, 32, 3}, res.Images.Shape)
	require.Len(t, res.Pixels, 4*32*32*3)
}

func TestVariationErrors(t *testing.T) {
	root := goldenRoot(t)
	t2i := loadPipeline(t, root, "tiny-unclip")
	variation := loadPipeline(t, root, "tiny-unclip-variation")
	img := testImage(t)
	ctx := context.Background()
	o := quickOptions(model.NewSeededNoise(1))

	_, err := t2i.Vary(ctx, []image.Image{img}, o)
	require.ErrorContains(t, err, "lacks image_encoder")
	_, err = variation.Edit(ctx, []image.Image{img}, "x", 0.5, o)
	require.ErrorContains(t, err, "lacks prior, prior_scheduler")
	_, err = variation.Interpolate(ctx, model.Endpoint{Image: img}, model.Endpoint{Prompt: "x"}, 3, o)
	require.ErrorContains(t, err, "lacks prior")
	_, err = variation.Vary(ctx, nil, o)
	require.ErrorContains(t, err, "no image")
	_, err = variation.Interpolate(ctx, model.Endpoint{Image: img}, model.Endpoint{Image: img}, 1, o)
	require.ErrorContains(t, err, "at least 2 frames")
	for _, a := range []float64{-0.1, 1.5} {
		_, err = variation.Edit(ctx, []image.Image{img}, "x", a, o)
		require.ErrorContains(t, err, "alpha")
	}
	bad := o
	bad.DecoderSteps = 1
	_, err = variation.Vary(ctx, []image.Image{img}, bad)
	require.ErrorContains(t, err, "decoder steps")
	bad = o
	bad.Noise = mapNoise{}
	_, err = variation.Vary(ctx, []image.Image{img}, bad)
	require.ErrorContains(t, err, "inputs.decoder_latents")
	_, err = variation.Vary(ctx, []image.Image{image.NewGray(image.Rect(0, 0, 0, 5))}, o)
	require.ErrorContains(t, err, "empty")
}
