package model_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
)

// goldenProcessor is the tiny variation pipeline's feature extractor.
func goldenProcessor(t *testing.T) *model.CLIPImageProcessor {
	raw, err := os.ReadFile(filepath.Join(goldenRoot(t), "tiny-unclip-variation", "feature_extractor", "preprocessor_config.json"))
	require.NoError(t, err)
	cfg, err := model.ParseCLIPImageProcessorConfig(raw)
	require.NoError(t, err)
	p, err := model.NewCLIPImageProcessor(cfg)
	require.NoError(t, err)
	return p
}

// TestFeatureExtractorGolden replays cases/module_feature_extractor:
// CLIPImageProcessor (transformers 4.36, Pillow 9.4) on the 48×40 PNG.
func TestFeatureExtractorGolden(t *testing.T) {
	root := goldenRoot(t)
	g := clipOpenModule(t, "module_feature_extractor.safetensors", "feature_extractor")
	get := func(name string) *ops.Tensor {
		lt, err := g.st.Tensor("feature_extractor." + name)
		require.NoError(t, err)
		return toTensor(t, lt)
	}
	img, err := model.ReadImageFile(filepath.Join(root, "cases", "variation_input_48x40.png"))
	require.NoError(t, err)
	rgb := model.ToRGB(img)
	in := get("input_uint8_hwc")
	require.Equal(t, []int{rgb.Height, rgb.Width, 3}, in.Shape)
	for i, v := range rgb.Pix {
		require.Equal(t, in.Data[i], float32(v), "decoded PNG byte %d", i)
	}

	p := goldenProcessor(t)
	stages := map[string]*ops.Tensor{}
	p.Hook = func(name string, x *ops.Tensor) { stages[name] = x.Clone() }
	px, err := p.Preprocess([]image.Image{img})
	require.NoError(t, err)

	// The uint8 stages are integer arithmetic (Pillow's 22-bit fixed
	// point) and a crop: bit-exact.
	for _, name := range []string{"resized_uint8_hwc", "cropped_uint8_hwc"} {
		want := get(name)
		require.Equal(t, want.Shape, stages[name].Shape, name)
		d := within(t, name, stages[name], want, 0)
		t.Logf("%-20s max|Δ| %g", name, d)
	}
	// Rescale is one float64 product rounded to float32, normalisation two
	// float32 operations: both exactly numpy's, so these are bit-exact too.
	for _, name := range []string{"rescaled_f32_hwc", "normalized_f32_hwc"} {
		d := within(t, name, stages[name], get(name), 0)
		t.Logf("%-20s max|Δ| %g", name, d)
	}
	// pixel_values is normalized_f32_hwc transposed to CHW: exact as well.
	// (A tolerance of 1e-6 would be the fallback if numpy's float32
	// subtraction/division ever differed from Go's by an ulp: |x| < 2.2
	// here, where one ulp is 2.4e-7; none is needed.)
	d := within(t, "pixel_values", px, get("pixel_values"), 0)
	t.Logf("%-20s max|Δ| %g", "pixel_values", d)

	// And through the image encoder (the same model as module_image_encoder).
	m, _, _ := newGoldenVisionModel(t)
	emb, _ := m.Forward(px)
	want := get("image_embeds")
	d = within(t, "image_embeds", emb, want, rel(modelTol, want))
	t.Logf("%-20s max|Δ| %.3g", "image_embeds", d)
}

// TestResizeBicubicProperties checks Pillow-resize invariants that hold for
// any input: resizing to the same size is the identity, a constant image
// stays constant (the normalised taps sum to 1 up to fixed-point rounding,
// and Pillow rounds to nearest), and computing a window equals the same
// window of the full resize (what the center crop relies on).
func TestResizeBicubicProperties(t *testing.T) {
	src := model.NewRGBImage(7, 5)
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 37 % 251)
	}
	same := model.ResizeBicubic(src, 7, 5)
	require.Equal(t, src.Pix, same.Pix)

	flat := model.NewRGBImage(9, 4)
	for i := range flat.Pix {
		flat.Pix[i] = 200
	}
	for _, sz := range [][2]int{{3, 2}, {20, 11}, {9, 1}, {1, 4}, {64, 64}} {
		out := model.ResizeBicubic(flat, sz[0], sz[1])
		for i, v := range out.Pix {
			require.Equal(t, uint8(200), v, "constant image resized to %v: byte %d", sz, i)
		}
	}

	// Window == region of the full resize, through the processor's crop:
	// a 13×300 image with shortest edge 10 resizes to 10×230; the crop is
	// the middle 10×10.
	tall := model.NewRGBImage(13, 300)
	for i := range tall.Pix {
		tall.Pix[i] = uint8((i*i + 7*i) % 256)
	}
	cfg := model.DefaultCLIPImageProcessorConfig(10)
	p, err := model.NewCLIPImageProcessor(cfg)
	require.NoError(t, err)
	stages := map[string]*ops.Tensor{}
	p.Hook = func(name string, x *ops.Tensor) { stages[name] = x.Clone() }
	_, err = p.PreprocessRGB([]*model.RGBImage{tall})
	require.NoError(t, err)
	full := model.ResizeBicubic(tall, 10, 230)
	top := (230 - 10) / 2
	crop := stages["cropped_uint8_hwc"]
	require.Equal(t, []int{10, 10, 3}, crop.Shape)
	for y := range 10 {
		for x := range 30 {
			require.Equal(t, float32(full.Pix[(top+y)*30+x]), crop.Data[y*30+x], "row %d byte %d", y, x)
		}
	}
}

// TestResizedSize: transformers truncates the longer side.
func TestResizedSize(t *testing.T) {
	c := model.DefaultCLIPImageProcessorConfig(32)
	for _, tc := range []struct{ w, h, rw, rh int }{
		{48, 40, 38, 32}, {40, 48, 32, 38}, {32, 32, 32, 32}, {1, 1, 32, 32},
		{3, 500, 32, 5333}, {500, 3, 5333, 32}, {100, 99, 32, 32},
	} {
		rw, rh := c.ResizedSize(tc.w, tc.h)
		require.Equal(t, [2]int{tc.rw, tc.rh}, [2]int{rw, rh}, "%d×%d", tc.w, tc.h)
	}
}

// TestCenterCropPads: a crop larger than the resized image pads with black
// like transformers' center_crop (here no resize, 3×2 into 5×4: the image
// lands at rows 1..2, columns 1..3).
func TestCenterCropPads(t *testing.T) {
	cfg := model.DefaultCLIPImageProcessorConfig(4)
	cfg.DoResize = false
	cfg.CropWidth, cfg.CropHeight = 5, 4
	cfg.DoRescale, cfg.DoNormalize = false, false
	p, err := model.NewCLIPImageProcessor(cfg)
	require.NoError(t, err)
	src := model.NewRGBImage(3, 2)
	for i := range src.Pix {
		src.Pix[i] = uint8(10 + i)
	}
	px, err := p.PreprocessRGB([]*model.RGBImage{src})
	require.NoError(t, err)
	require.Equal(t, []int{1, 3, 4, 5}, px.Shape)
	for y := range 4 {
		for x := range 5 {
			want := float32(0)
			if y >= 1 && y <= 2 && x >= 1 && x <= 3 {
				want = float32(10 + ((y-1)*3+(x-1))*3) // channel 0
			}
			require.Equal(t, want, px.Data[y*5+x], "(%d,%d)", x, y)
		}
	}
}

func TestParseCLIPImageProcessorConfig(t *testing.T) {
	c, err := model.ParseCLIPImageProcessorConfig([]byte(`{"size": 224, "crop_size": 224}`))
	require.NoError(t, err)
	require.Equal(t, model.DefaultCLIPImageProcessorConfig(224), c)
	c, err = model.ParseCLIPImageProcessorConfig([]byte(`{"size": {"height": 20, "width": 30}, "crop_size": {"height": 8, "width": 9}}`))
	require.NoError(t, err)
	require.Equal(t, [2]int{30, 20}, [2]int{c.ResizeWidth, c.ResizeHeight})
	w, h := c.ResizedSize(500, 3)
	require.Equal(t, [2]int{30, 20}, [2]int{w, h})
	require.Equal(t, [2]int{9, 8}, [2]int{c.CropWidth, c.CropHeight})
	for _, bad := range []string{`{"resample": 2}`, `{"image_mean": [0.5]}`, `{"image_std": [1, 0, 1]}`, `{"size": {"x": 1}}`, `{"crop_size": 0}`, `[`} {
		_, err := model.ParseCLIPImageProcessorConfig([]byte(bad))
		require.Error(t, err, bad)
	}
}

// TestImageColourModels: every colour model and odd size preprocesses, and
// the conversion to RGB follows ToRGB's documented rules.
func TestImageColourModels(t *testing.T) {
	p := goldenProcessor(t)
	gray := image.NewGray(image.Rect(0, 0, 3, 500))
	gray16 := image.NewGray16(image.Rect(0, 0, 500, 3))
	pal := image.NewPaletted(image.Rect(0, 0, 5, 7), color.Palette{color.RGBA{1, 2, 3, 255}, color.NRGBA{200, 100, 50, 0}})
	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	rgba := image.NewRGBA(image.Rect(0, 0, 4, 3))
	cmyk := image.NewCMYK(image.Rect(0, 0, 6, 6))
	ycc := image.NewYCbCr(image.Rect(0, 0, 17, 9), image.YCbCrSubsampleRatio420)
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 1, 1))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i)
	}
	gray16.SetGray16(1, 1, color.Gray16{Y: 0xABCD})
	pal.Pix[3] = 1
	nrgba.SetNRGBA(1, 0, color.NRGBA{10, 20, 30, 0}) // transparent: colour kept
	rgba.SetRGBA(2, 1, color.RGBA{50, 25, 0, 128})   // premultiplied: un-premultiplied
	cmyk.SetCMYK(0, 0, color.CMYK{0, 255, 255, 0})
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{0x1234, 0x5678, 0x9ABC, 0})
	one := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	one.SetNRGBA(0, 0, color.NRGBA{9, 8, 7, 255})
	// A sub-image: bounds not at the origin.
	sub := image.NewNRGBA(image.Rect(0, 0, 10, 10)).SubImage(image.Rect(3, 4, 8, 6))

	images := []image.Image{gray, gray16, pal, nrgba, rgba, cmyk, ycc, nrgba64, one, sub}
	px, err := p.Preprocess(images)
	require.NoError(t, err)
	require.Equal(t, []int{len(images), 3, 32, 32}, px.Shape)

	at := func(img image.Image, x, y int) [3]uint8 {
		r := model.ToRGB(img)
		i := 3 * (y*r.Width + x)
		return [3]uint8{r.Pix[i], r.Pix[i+1], r.Pix[i+2]}
	}
	require.Equal(t, [3]uint8{5, 5, 5}, at(gray, 2, 1))
	require.Equal(t, [3]uint8{0xAB, 0xAB, 0xAB}, at(gray16, 1, 1))
	require.Equal(t, [3]uint8{200, 100, 50}, at(pal, 3, 0))
	require.Equal(t, [3]uint8{1, 2, 3}, at(pal, 0, 0))
	require.Equal(t, [3]uint8{10, 20, 30}, at(nrgba, 1, 0))
	require.Equal(t, [3]uint8{99, 49, 0}, at(rgba, 2, 1)) // 50·255/128 = 99.6 → 99 (Go truncates)
	require.Equal(t, [3]uint8{255, 0, 0}, at(cmyk, 0, 0))
	require.Equal(t, [3]uint8{0x12, 0x56, 0x9A}, at(nrgba64, 0, 0))
	require.Equal(t, 5, model.ToRGB(sub).Width)
	require.Equal(t, 2, model.ToRGB(sub).Height)
	// A 1×1 image resizes to a constant 32×32 image.
	for ch := range 3 {
		v := px.Data[(8*3+ch)*32*32]
		for i := range 32 * 32 {
			require.Equal(t, v, px.Data[(8*3+ch)*32*32+i])
		}
	}
}

// TestDecodeImageFormats: PNG (gray, gray16, paletted, RGBA with alpha) and
// JPEG (YCbCr, gray) files decode and preprocess.
func TestDecodeImageFormats(t *testing.T) {
	p := goldenProcessor(t)
	dir := t.TempDir()
	write := func(name string, enc func(*bytes.Buffer) error) string {
		var b bytes.Buffer
		require.NoError(t, enc(&b))
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
		return path
	}
	rgba := image.NewNRGBA(image.Rect(0, 0, 33, 3))
	for i := range rgba.Pix {
		rgba.Pix[i] = uint8(i * 7)
	}
	rgba.Pix[3] = 0 // a transparent pixel
	gray := image.NewGray(image.Rect(0, 0, 3, 33))
	gray16 := image.NewGray16(image.Rect(0, 0, 5, 5))
	pal := image.NewPaletted(image.Rect(0, 0, 40, 41), color.Palette{color.Black, color.NRGBA{255, 0, 0, 128}})
	ycc := image.NewYCbCr(image.Rect(0, 0, 21, 13), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = uint8(i)
	}
	files := map[string]string{
		"rgba.png":   write("rgba.png", func(b *bytes.Buffer) error { return png.Encode(b, rgba) }),
		"gray.png":   write("gray.png", func(b *bytes.Buffer) error { return png.Encode(b, gray) }),
		"gray16.png": write("gray16.png", func(b *bytes.Buffer) error { return png.Encode(b, gray16) }),
		"pal.png":    write("pal.png", func(b *bytes.Buffer) error { return png.Encode(b, pal) }),
		"ycc.jpg":    write("ycc.jpg", func(b *bytes.Buffer) error { return jpeg.Encode(b, ycc, &jpeg.Options{Quality: 90}) }),
		"gray.jpeg":  write("gray.jpeg", func(b *bytes.Buffer) error { return jpeg.Encode(b, gray, nil) }),
	}
	for name, path := range files {
		img, err := model.ReadImageFile(path)
		require.NoError(t, err, name)
		px, err := p.Preprocess([]image.Image{img})
		require.NoError(t, err, name)
		require.Equal(t, []int{1, 3, 32, 32}, px.Shape, name)
	}
	// The PNG's transparent pixel keeps its colour (alpha dropped, not composited).
	img, err := model.ReadImageFile(files["rgba.png"])
	require.NoError(t, err)
	require.Equal(t, rgba.Pix[:3], model.ToRGB(img).Pix[:3])
}

// TestDecodeImageErrors: corrupt, non-image and oversized files are errors
// naming the file.
func TestDecodeImageErrors(t *testing.T) {
	dir := t.TempDir()
	var good bytes.Buffer
	require.NoError(t, png.Encode(&good, image.NewGray(image.Rect(0, 0, 16, 16))))
	// A valid header claiming 20000×16 (IHDR: length at 8, type at 12,
	// width at 16, CRC of type+data at 29); the pixel data never gets read.
	huge := append([]byte(nil), good.Bytes()...)
	binary.BigEndian.PutUint32(huge[16:], 20000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	var gif bytes.Buffer
	gif.WriteString("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	for _, tc := range []struct{ name, data, msg string }{
		{"notes.txt", "hello, this is text\n", "not a PNG or JPEG"},
		{"empty.png", "", "not a PNG or JPEG"},
		{"truncated.png", good.String()[:40], "corrupt"},
		{"corrupt.png", good.String()[:len(good.String())-20] + strings.Repeat("x", 20), "corrupt"},
		{"huge.png", string(huge), "refused"},
		{"bad.jpg", "\xff\xd8\xff\xe0garbage", "corrupt"},
		{"anim.gif", gif.String(), "not a PNG or JPEG"},
	} {
		path := filepath.Join(dir, tc.name)
		require.NoError(t, os.WriteFile(path, []byte(tc.data), 0o644))
		_, err := model.ReadImageFile(path)
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), path, tc.name)
		require.Contains(t, err.Error(), tc.msg, tc.name)
	}
	_, err := model.ReadImageFile(filepath.Join(dir, "missing.png"))
	require.ErrorContains(t, err, "missing.png")
}
