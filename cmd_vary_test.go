package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/convert"
)

var (
	varModelOnce  sync.Once
	varModelPath  string
	varModelErr   error
	comboOnce     sync.Once
	comboPath     string
	comboModelErr error
)

// variationModel converts $DALLE2_GOLDEN/tiny-unclip-variation once.
func variationModel(t *testing.T) string {
	root := goldenRoot(t)
	varModelOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dalle2-vary-test")
		if err != nil {
			varModelErr = err
			return
		}
		varModelPath = filepath.Join(dir, "tiny-unclip-variation.d2")
		_, varModelErr = convert.Convert(filepath.Join(root, "tiny-unclip-variation"), varModelPath, convert.Options{DType: "f32"})
	})
	require.NoError(t, varModelErr)
	return varModelPath
}

// comboModel is tiny-unclip plus tiny-unclip-variation's image_encoder and
// feature_extractor (the two share every other weight), converted once:
// a model that can vary, edit and interpolate.
func comboModel(t *testing.T) string {
	root := goldenRoot(t)
	comboOnce.Do(func() {
		comboPath, comboModelErr = buildComboModel(root)
	})
	require.NoError(t, comboModelErr)
	return comboPath
}

func buildComboModel(root string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "dalle2-combo-test")
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
		if !strings.HasPrefix(name, "_") {
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
	_, err = convert.Convert(src, out, convert.Options{DType: "f32"})
	return out, err
}

// runCapture runs the command line in-process and returns the exit code
// (as run maps errors) and stderr.
func runCapture(args ...string) (int, string) {
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	err := app.Run(reorderArgs(app, append([]string{"dalle2"}, args...)))
	switch {
	case err == nil:
		return 0, errb.String()
	case isUsageError(err):
		return 2, errb.String() + err.Error()
	default:
		return 1, errb.String() + err.Error()
	}
}

// TestVaryReproducesGoldenPNGs runs "dalle2 vary" on each variation case's
// input image with its steps, guidance and recorded noise, and compares the
// PNG with the reference's, with TestGenReproducesGoldenPNGs's rule: where
// the case is end-to-end stable, at most as many bytes may differ as
// differed between the reference's own fp32 and fp64 runs (0 for var_a and
// var_b), each by one level.
func TestVaryReproducesGoldenPNGs(t *testing.T) {
	root := goldenRoot(t)
	mdl := variationModel(t)
	files, _ := filepath.Glob(filepath.Join(root, "cases", "*.json"))
	ran := 0
	for _, f := range files {
		var c struct {
			Case          string         `json:"case"`
			PipelineClass string         `json:"pipeline_class"`
			PipelineDir   string         `json:"pipeline_dir"`
			Call          map[string]any `json:"call"`
			OutputPNG     []string       `json:"output_png"`
			Interp        map[string]any `json:"interpolate_kwargs"`
			FP64          map[string]any `json:"fp64_check"`
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if json.Unmarshal(b, &c) != nil || c.PipelineClass != "UnCLIPImageVariationPipeline" || c.PipelineDir != "tiny-unclip-variation" {
			continue
		}
		ran++
		t.Run(c.Case, func(t *testing.T) {
			call, _ := c.Call["image"].(string)
			_, rest, ok := strings.Cut(call, "open('")
			require.True(t, ok, "no file name in %q", call)
			name, _, _ := strings.Cut(rest, "'")
			out := filepath.Join(t.TempDir(), "out.png")
			args := []string{"vary", filepath.Join(root, "cases", filepath.Base(name))}
			flag := func(name, key string) {
				if v, ok := c.Call[key]; ok {
					args = append(args, "--"+name, fmt.Sprint(v))
				}
			}
			flag("decoder-steps", "decoder_num_inference_steps")
			flag("sr-steps", "super_res_num_inference_steps")
			flag("decoder-guidance", "decoder_guidance_scale")
			flag("n", "num_images_per_prompt")
			if aa, _ := c.Interp["antialias"].(bool); aa {
				args = append(args, "--upsample-antialias")
			}
			args = append(args, "--model", mdl, "--noise", strings.TrimSuffix(f, ".json")+".safetensors", "-o", out, "-q")
			code, msg := runCapture(args...)
			require.Equal(t, 0, code, "args %q: %s", args, msg)

			outs := []string{out}
			if len(c.OutputPNG) > 1 {
				outs = imagePaths(out, len(c.OutputPNG))
			}
			diff, worst := 0, 0
			for k, ref := range c.OutputPNG {
				got, want := readPNG(t, outs[k]), readPNG(t, filepath.Join(root, "cases", ref))
				require.Equal(t, want.Bounds(), got.Bounds())
				for i := range want.Pix {
					if d := int(math.Abs(float64(got.Pix[i]) - float64(want.Pix[i]))); d > 0 {
						diff++
						worst = max(worst, d)
					}
				}
			}
			allowed, _ := c.FP64["output.image_uint8_num_mismatch"].(float64)
			fl, _ := c.FP64["output.image_float"].(float64)
			levels := int(math.Max(1, math.Ceil(255*fl)))
			if v, ok := c.FP64["super_res.image_small"].(float64); ok && v < 1e-4 {
				if diff > int(allowed) || worst > levels {
					t.Errorf("%d bytes differ from the reference PNGs (max by %d); allowed %v, by %d", diff, worst, allowed, levels)
				}
				t.Logf("%d bytes differ (max by %d); allowed %v, by %d", diff, worst, allowed, levels)
			} else {
				t.Logf("not end-to-end stable: %d bytes differ (max %d); reference fp32 vs fp64: %v", diff, worst, allowed)
			}
		})
	}
	require.NotZero(t, ran, "no variation cases found")
}

// TestEditInterpCLI: edit --alpha 0 writes vary's bytes with the same
// seed; interp writes K frames and a contact sheet, its first frame (an
// image endpoint) being vary's image with that seed; a --dump replays.
// Decoder-only (--size 32) and 2 steps keep it fast.
func TestEditInterpCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: several full runs; the full test run covers it")
	}
	root := goldenRoot(t)
	mdl := comboModel(t)
	img := filepath.Join(root, "cases", "variation_input_48x40.png")
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	common := []string{"--model", mdl, "--size", "32", "--decoder-steps", "2", "-q"}
	runOK := func(args ...string) {
		t.Helper()
		code, msg := runCapture(append(args, common...)...)
		require.Equal(t, 0, code, "%q: %s", args, msg)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(path(name))
		require.NoError(t, err)
		return b
	}
	runOK("vary", img, "--seed", "9", "-o", path("vary.png"), "--dump", path("vary.safetensors"))
	runOK("edit", img, "a red horse", "--alpha", "0", "--seed", "9", "-o", path("edit0.png"), "--prior-steps", "2")
	require.Equal(t, read("vary.png"), read("edit0.png"), "edit --alpha 0 differs from vary")
	runOK("edit", img, "a red horse", "--alpha", "0.5", "--seed", "9", "-o", path("edit5.png"), "--prior-steps", "2")
	require.NotEqual(t, read("vary.png"), read("edit5.png"))

	runOK("interp", img, "a red horse", "--frames", "3", "--grid", "--seed", "9", "-o", path("walk.png"), "--prior-steps", "2")
	require.Equal(t, read("vary.png"), read("walk-0.png"), "interp's image endpoint differs from vary")
	f2 := readPNG(t, path("walk-2.png"))
	w, h := f2.Bounds().Dx(), f2.Bounds().Dy()
	require.Equal(t, 32, w)
	sheet := readPNG(t, path("walk-grid.png"))
	require.Equal(t, [2]int{3 * w, h}, [2]int{sheet.Bounds().Dx(), sheet.Bounds().Dy()})
	for y := range h {
		for x := range w {
			require.Equal(t, f2.NRGBAAt(x, y), sheet.NRGBAAt(2*w+x, y), "sheet (%d,%d) of frame 2", x, y)
		}
	}

	// A dump is a noise file: replaying it makes the same image.
	runOK("vary", img, "--noise", path("vary.safetensors"), "-o", path("replay.png"))
	require.Equal(t, read("vary.png"), read("replay.png"))
}

func TestVaryCLIErrors(t *testing.T) {
	root := goldenRoot(t)
	img := filepath.Join(root, "cases", "variation_input_48x40.png")
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.png")
	require.NoError(t, os.WriteFile(text, []byte("not an image\n"), 0o644))
	for _, tc := range []struct {
		code int
		args []string
		msg  string
	}{
		{2, []string{"vary"}, "no image"},
		{2, []string{"vary", img, "-n", "0"}, "-n"},
		{2, []string{"vary", img, "--decoder-steps", "1"}, "--decoder-steps"},
		{2, []string{"vary", img, "--seed", "1", "--noise", "x.safetensors"}, "exclude"},
		{2, []string{"edit", img}, "TEXT"},
		{2, []string{"edit", img, "x", "--alpha", "1.5"}, "--alpha"},
		{2, []string{"interp", img}, "two endpoints"},
		{2, []string{"interp", img, "x", "--frames", "1"}, "--frames"},
		{2, []string{"interp", img, "x", "-o", "-"}, "--grid"},
		{1, []string{"vary", text}, text},
		{1, []string{"vary", filepath.Join(dir, "missing.png")}, "missing.png"},
		{1, []string{"vary", img, "-o", filepath.Join(dir, "no", "such", "x.png")}, "does not exist"},
		// The built-in model has no image encoder.
		{1, []string{"vary", img, "-o", filepath.Join(dir, "x.png")}, "lacks image_encoder"},
	} {
		code, msg := runCapture(tc.args...)
		require.Equal(t, tc.code, code, "%q: %s", tc.args, msg)
		require.Contains(t, msg, tc.msg, "%q", tc.args)
	}
	// An edit needs a prior: the variation pipeline has none.
	code, msg := runCapture("edit", img, "x", "--model", variationModel(t), "-o", filepath.Join(dir, "x.png"), "-q")
	require.Equal(t, 1, code)
	require.Contains(t, msg, "prior")
}

// TestLowMemoryFlag: --low-memory writes the same bytes as a normal run:
// gen with the built-in model (in memory) and a converted file (memory
// mapped, so the released pages really go), vary and edit with an image
// model. Two steps per stage keep it fast; -short runs gen and vary only.
func TestLowMemoryFlag(t *testing.T) {
	dir := t.TempDir()
	steps := []string{"--decoder-steps", "2", "--sr-steps", "2", "--seed", "4", "-q"}
	same := func(args ...string) {
		t.Helper()
		var outs [][]byte
		for i, extra := range [][]string{nil, {"--low-memory"}} {
			out := filepath.Join(dir, fmt.Sprintf("low%d.png", i))
			a := append(append(append([]string{}, args...), "-o", out), steps...)
			code, msg := runCapture(append(a, extra...)...)
			require.Equal(t, 0, code, "%q %q: %s", args, extra, msg)
			b, err := os.ReadFile(out)
			require.NoError(t, err)
			outs = append(outs, b)
		}
		require.Equal(t, outs[0], outs[1], "%q: --low-memory changed the PNG", args)
	}
	same("gen", "a red horse", "--prior-steps", "2")
	root := goldenRoot(t)
	img := filepath.Join(root, "cases", "variation_input_48x40.png")
	same("vary", img, "--model", variationModel(t))
	if !testing.Short() {
		same("gen", "a red horse", "--prior-steps", "2", "--model", tinyModel(t))
		same("edit", img, "a red horse", "--alpha", "0.5", "--prior-steps", "2", "--model", comboModel(t))
	}
}
