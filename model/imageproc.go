package model

// CLIPImageProcessor (spec §11): the image preprocessing of the variation
// pipeline, reproducing transformers' slow (PIL) CLIPImageProcessor on
// Pillow 9.4: convert to RGB, resize the shorter side with Pillow's
// BICUBIC (bit-exact, including its fixed-point arithmetic), center crop,
// rescale, normalise, HWC -> CHW. Also the decoding of PNG and JPEG files.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"io"
	"math"
	"os"

	"github.com/dalle2/dalle2/ops"
)

// ---------------------------------------------------------------------------
// Decoding

// Limits on input images, checked from the header before decoding.
const (
	MaxImageSide   = 16384    // pixels per side
	MaxImagePixels = 64 << 20 // width × height (64 megapixels)
)

// ReadImageFile decodes a PNG or JPEG file (see DecodeImage).
func ReadImageFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeImage(f, path)
}

// DecodeImage decodes a PNG or JPEG image; name (a file name) is used in
// errors. Other formats, corrupt data and absurd dimensions (more than
// MaxImageSide per side or MaxImagePixels in all, refused from the header,
// before the pixels are read) are errors naming the file.
func DecodeImage(r io.Reader, name string) (image.Image, error) {
	// The header is read through a tee, then replayed before the rest.
	var head bytes.Buffer
	cfg, format, err := image.DecodeConfig(io.TeeReader(r, &head))
	if errors.Is(err, image.ErrFormat) {
		return nil, fmt.Errorf("%s: not a PNG or JPEG image", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt or truncated image: %w", name, err)
	}
	if format != "png" && format != "jpeg" {
		return nil, fmt.Errorf("%s: %s images are not supported (PNG or JPEG only)", name, format)
	}
	w, h := cfg.Width, cfg.Height
	if w < 1 || h < 1 || w > MaxImageSide || h > MaxImageSide || int64(w)*int64(h) > MaxImagePixels {
		return nil, fmt.Errorf("%s: %s image of %d×%d pixels refused (at most %d per side and %d megapixels)",
			name, format, w, h, MaxImageSide, MaxImagePixels>>20)
	}
	img, _, err := image.Decode(io.MultiReader(&head, r))
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt %s image: %w", name, format, err)
	}
	return img, nil
}

// ---------------------------------------------------------------------------
// RGB images

// RGBImage is an 8-bit RGB image, rows top to bottom, pixels interleaved
// (HWC): pixel (x, y) channel c is Pix[(y·Width+x)·3+c].
type RGBImage struct {
	Width, Height int
	Pix           []uint8
}

// NewRGBImage allocates a black image.
func NewRGBImage(w, h int) *RGBImage {
	return &RGBImage{Width: w, Height: h, Pix: make([]uint8, 3*w*h)}
}

// ToRGB converts any image to 8-bit RGB like PIL's convert("RGB") on the
// image Pillow would have opened from the same PNG:
//   - alpha is dropped WITHOUT compositing onto a background: a
//     non-premultiplied pixel (image.NRGBA, NRGBA64, the palette entries
//     of a PNG with transparency) keeps its colour channels as stored.
//     Premultiplied inputs (image.RGBA, RGBA64 with alpha < max) are
//     un-premultiplied first, so fully transparent pixels become black;
//   - grayscale is replicated into R, G and B;
//   - paletted images are looked up in their palette;
//   - 16-bit channels keep their high byte (Pillow's "RGB;16B" unpacking).
//     Pillow opens 16-bit grayscale PNGs as mode "I" and clips them to
//     255 on convert("RGB"), which turns nearly every pixel white; we take
//     the high byte instead;
//   - YCbCr (JPEG) and CMYK use Go's conversions, which can differ from
//     libjpeg's by a level or so; together with the decoders' different
//     IDCT and chroma upsampling, JPEG input is therefore close to, but not
//     bit-identical with, what PIL decodes. PNG input is exact.
func ToRGB(img image.Image) *RGBImage {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewRGBImage(w, h)
	px := out.Pix
	switch m := img.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[(y)*m.Stride:]
			for x := 0; x < w; x++ {
				copy(px[3*(y*w+x):3*(y*w+x)+3], row[4*x:4*x+3])
			}
		}
		return out
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				for c := 0; c < 3; c++ {
					px[3*(y*w+x)+c] = row[8*x+2*c] // big-endian: high byte first
				}
			}
		}
		return out
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				v := row[x]
				px[3*(y*w+x)], px[3*(y*w+x)+1], px[3*(y*w+x)+2] = v, v, v
			}
		}
		return out
	case *image.Paletted:
		pal := make([][3]uint8, len(m.Palette))
		for i, c := range m.Palette {
			pal[i] = rgbOf(c)
		}
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				var v [3]uint8
				if int(row[x]) < len(pal) {
					v = pal[row[x]]
				}
				copy(px[3*(y*w+x):], v[:])
			}
		}
		return out
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := rgbOf(img.At(b.Min.X+x, b.Min.Y+y))
			copy(px[3*(y*w+x):], v[:])
		}
	}
	return out
}

// rgbOf drops the alpha of c (see ToRGB).
func rgbOf(c color.Color) [3]uint8 {
	switch v := c.(type) {
	case color.NRGBA:
		return [3]uint8{v.R, v.G, v.B}
	case color.NRGBA64:
		return [3]uint8{uint8(v.R >> 8), uint8(v.G >> 8), uint8(v.B >> 8)}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}

// ---------------------------------------------------------------------------
// Pillow's resampling (libImaging/Resample.c, Pillow 9.4), 8 bits per channel

// pillowPrecisionBits is Resample.c's PRECISION_BITS (32 − 8 − 2): the
// fixed-point fraction bits of the filter weights.
const pillowPrecisionBits = 22

// pillowBicubic is Pillow's bicubic_filter: Keys' cubic with a = −0.5,
// support 2, in double precision. The explicit float64 conversions keep Go
// from fusing multiply-adds, as the reference build (x86-64, no FMA) does.
func pillowBicubic(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		// ((a+2)·x − (a+3))·x·x + 1
		t := float64(1.5*x) - 2.5
		return float64(float64(t*x)*x) + 1
	}
	if x < 2 {
		// (((x−5)·x + 8)·x − 4)·a
		t := float64((x-5)*x) + 8
		return (float64(t*x) - 4) * -0.5
	}
	return 0
}

// pillowCoeffs are one axis' filter taps for output positions
// [from, from+len(bounds)/2): tap j of output i weighs input
// bounds[2i]+j, j < bounds[2i+1], by k[i·ksize+j] (fixed point).
type pillowCoeffs struct {
	ksize  int
	bounds []int
	k      []int32
}

// newPillowCoeffs is precompute_coeffs followed by normalize_coeffs_8bpc,
// for an axis of inSize input pixels resized to outSize (box = the whole
// input), restricted to the output positions [from, to).
func newPillowCoeffs(inSize, outSize, from, to int) pillowCoeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := math.Max(scale, 1)
	support := 2 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	ss := 1 / filterscale
	c := pillowCoeffs{ksize: ksize, bounds: make([]int, 2*(to-from)), k: make([]int32, ksize*(to-from))}
	w := make([]float64, ksize)
	for i := range to - from {
		center := (float64(from+i) + 0.5) * scale
		xmin := int(center - support + 0.5) // C's (int): truncation
		xmin = max(xmin, 0)
		xmax := int(center + support + 0.5)
		xmax = min(xmax, inSize) - xmin
		ww := 0.0
		for x := range xmax {
			w[x] = pillowBicubic((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		for x := range xmax {
			if ww != 0 {
				w[x] /= ww
			}
			// Round half away from zero to 22 fraction bits.
			if w[x] < 0 {
				c.k[i*ksize+x] = int32(-0.5 + w[x]*(1<<pillowPrecisionBits))
			} else {
				c.k[i*ksize+x] = int32(0.5 + w[x]*(1<<pillowPrecisionBits))
			}
		}
		c.bounds[2*i], c.bounds[2*i+1] = xmin, xmax
	}
	return c
}

// clip8 is Pillow's clip8: drop the fraction bits of a fixed-point sum
// (arithmetic shift) and saturate to [0, 255].
func clip8(v int32) uint8 {
	v >>= pillowPrecisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// ResizeBicubic resizes src to w×h exactly like Pillow 9.4's
// Image.resize((w, h), Image.BICUBIC) on an RGB image.
func ResizeBicubic(src *RGBImage, w, h int) *RGBImage {
	return resizeWindow(src, w, h, image.Rect(0, 0, w, h))
}

// resizeWindow computes the window win (inside [0,w)×[0,h)) of src resized
// to w×h with Pillow's BICUBIC: horizontal pass, rounded and clipped to
// uint8, then vertical pass. Each output pixel depends only on its own
// taps, so a window equals the same region of the full resize; computing
// only the window keeps a center crop of a very elongated image cheap.
func resizeWindow(src *RGBImage, w, h int, win image.Rectangle) *RGBImage {
	ww, wh := win.Dx(), win.Dy()
	// Horizontal pass over the input rows the vertical pass reads.
	var vert pillowCoeffs
	y0, y1 := win.Min.Y, win.Max.Y // input rows needed
	if h != src.Height {
		vert = newPillowCoeffs(src.Height, h, win.Min.Y, win.Max.Y)
		y0, y1 = src.Height, 0
		for i := range wh {
			y0 = min(y0, vert.bounds[2*i])
			y1 = max(y1, vert.bounds[2*i]+vert.bounds[2*i+1])
		}
	}
	tmp := NewRGBImage(ww, y1-y0)
	if w != src.Width {
		hc := newPillowCoeffs(src.Width, w, win.Min.X, win.Max.X)
		for y := y0; y < y1; y++ {
			in := src.Pix[y*src.Width*3 : (y+1)*src.Width*3]
			out := tmp.Pix[(y-y0)*ww*3 : (y-y0+1)*ww*3]
			for x := range ww {
				xmin, n := hc.bounds[2*x], hc.bounds[2*x+1]
				k := hc.k[x*hc.ksize : x*hc.ksize+n]
				s0, s1, s2 := int32(1<<(pillowPrecisionBits-1)), int32(1<<(pillowPrecisionBits-1)), int32(1<<(pillowPrecisionBits-1))
				for j, kj := range k {
					p := in[3*(xmin+j) : 3*(xmin+j)+3]
					s0 += int32(p[0]) * kj
					s1 += int32(p[1]) * kj
					s2 += int32(p[2]) * kj
				}
				out[3*x], out[3*x+1], out[3*x+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
	} else {
		for y := y0; y < y1; y++ {
			copy(tmp.Pix[(y-y0)*ww*3:(y-y0+1)*ww*3], src.Pix[(y*src.Width+win.Min.X)*3:(y*src.Width+win.Max.X)*3])
		}
	}
	if h == src.Height {
		return tmp // rows y0..y1 are exactly the window's
	}
	out := NewRGBImage(ww, wh)
	for y := range wh {
		ymin, n := vert.bounds[2*y]-y0, vert.bounds[2*y+1]
		k := vert.k[y*vert.ksize : y*vert.ksize+n]
		row := out.Pix[y*ww*3 : (y+1)*ww*3]
		for x := range 3 * ww {
			s := int32(1 << (pillowPrecisionBits - 1))
			for j, kj := range k {
				s += int32(tmp.Pix[(ymin+j)*ww*3+x]) * kj
			}
			row[x] = clip8(s)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// CLIPImageProcessor

// CLIPImageProcessorConfig is the preprocessor_config.json of
// feature_extractor/ (transformers CLIPImageProcessor).
type CLIPImageProcessorConfig struct {
	DoResize bool
	// ShortestEdge > 0: resize so the shorter side is ShortestEdge and the
	// longer int(ShortestEdge·long/short). Otherwise resize to exactly
	// ResizeWidth × ResizeHeight.
	ShortestEdge              int
	ResizeWidth, ResizeHeight int
	DoCenterCrop              bool
	CropWidth, CropHeight     int
	DoRescale                 bool
	RescaleFactor             float64
	DoNormalize               bool
	ImageMean, ImageStd       [3]float64
	// Resample is the PIL filter number; only 3 (BICUBIC) is implemented.
	Resample int
}

// DefaultCLIPImageProcessorConfig is CLIP's preprocessing for an encoder
// with the given input size (224 for ViT-L/14): shortest edge and center
// crop of that size, bicubic, 1/255, CLIP's mean and std.
func DefaultCLIPImageProcessorConfig(size int) CLIPImageProcessorConfig {
	return CLIPImageProcessorConfig{
		DoResize: true, ShortestEdge: size,
		DoCenterCrop: true, CropWidth: size, CropHeight: size,
		DoRescale: true, RescaleFactor: 1.0 / 255,
		DoNormalize: true,
		ImageMean:   [3]float64{0.48145466, 0.4578275, 0.40821073},
		ImageStd:    [3]float64{0.26862954, 0.26130258, 0.27577711},
		Resample:    3,
	}
}

// ParseCLIPImageProcessorConfig reads a preprocessor_config.json. Missing
// keys take DefaultCLIPImageProcessorConfig(224)'s values; "size" may be
// an integer (shortest edge), {"shortest_edge": n} or {"height", "width"};
// "crop_size" an integer or {"height", "width"}.
func ParseCLIPImageProcessorConfig(raw []byte) (CLIPImageProcessorConfig, error) {
	c := DefaultCLIPImageProcessorConfig(224)
	var j struct {
		DoResize      *bool           `json:"do_resize"`
		Size          json.RawMessage `json:"size"`
		Resample      *int            `json:"resample"`
		DoCenterCrop  *bool           `json:"do_center_crop"`
		CropSize      json.RawMessage `json:"crop_size"`
		DoRescale     *bool           `json:"do_rescale"`
		RescaleFactor *float64        `json:"rescale_factor"`
		DoNormalize   *bool           `json:"do_normalize"`
		ImageMean     []float64       `json:"image_mean"`
		ImageStd      []float64       `json:"image_std"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return c, fmt.Errorf("feature_extractor config: %w", err)
	}
	setBool := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	setBool(&c.DoResize, j.DoResize)
	setBool(&c.DoCenterCrop, j.DoCenterCrop)
	setBool(&c.DoRescale, j.DoRescale)
	setBool(&c.DoNormalize, j.DoNormalize)
	if j.Resample != nil {
		c.Resample = *j.Resample
	}
	if j.RescaleFactor != nil {
		c.RescaleFactor = *j.RescaleFactor
	}
	for _, m := range []struct {
		name string
		src  []float64
		dst  *[3]float64
	}{{"image_mean", j.ImageMean, &c.ImageMean}, {"image_std", j.ImageStd, &c.ImageStd}} {
		if m.src == nil {
			continue
		}
		if len(m.src) != 3 {
			return c, fmt.Errorf("feature_extractor config: %s has %d values, want 3 (RGB)", m.name, len(m.src))
		}
		copy(m.dst[:], m.src)
	}
	type hw struct {
		Height       *int `json:"height"`
		Width        *int `json:"width"`
		ShortestEdge *int `json:"shortest_edge"`
	}
	parseSize := func(name string, raw json.RawMessage) (n int, v hw, err error) {
		if len(raw) == 0 || string(raw) == "null" {
			return 0, v, nil
		}
		if json.Unmarshal(raw, &n) == nil {
			return n, v, nil
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return 0, v, fmt.Errorf("feature_extractor config: %s: %w", name, err)
		}
		return 0, v, nil
	}
	n, s, err := parseSize("size", j.Size)
	if err != nil {
		return c, err
	}
	switch {
	case n > 0:
		c.ShortestEdge = n
	case s.ShortestEdge != nil:
		c.ShortestEdge = *s.ShortestEdge
	case s.Height != nil && s.Width != nil:
		c.ShortestEdge, c.ResizeHeight, c.ResizeWidth = 0, *s.Height, *s.Width
	case len(j.Size) > 0 && string(j.Size) != "null":
		return c, fmt.Errorf("feature_extractor config: size %s: want shortest_edge or height and width", j.Size)
	}
	n, s, err = parseSize("crop_size", j.CropSize)
	if err != nil {
		return c, err
	}
	switch {
	case n > 0:
		c.CropWidth, c.CropHeight = n, n
	case s.Height != nil && s.Width != nil:
		c.CropWidth, c.CropHeight = *s.Width, *s.Height
	case len(j.CropSize) > 0 && string(j.CropSize) != "null":
		return c, fmt.Errorf("feature_extractor config: crop_size %s: want height and width", j.CropSize)
	}
	return c, c.validate()
}

func (c CLIPImageProcessorConfig) validate() error {
	if c.DoResize {
		if c.Resample != 3 {
			return fmt.Errorf("feature_extractor config: resample %d is not supported (only 3 = PIL BICUBIC)", c.Resample)
		}
		if c.ShortestEdge <= 0 && (c.ResizeWidth <= 0 || c.ResizeHeight <= 0) {
			return fmt.Errorf("feature_extractor config: resize size must be positive (shortest_edge %d, %d×%d)", c.ShortestEdge, c.ResizeWidth, c.ResizeHeight)
		}
	}
	if c.DoCenterCrop && (c.CropWidth <= 0 || c.CropHeight <= 0) {
		return fmt.Errorf("feature_extractor config: crop size %d×%d must be positive", c.CropWidth, c.CropHeight)
	}
	if c.DoNormalize {
		for _, s := range c.ImageStd {
			if float32(s) == 0 || math.IsNaN(s) {
				return fmt.Errorf("feature_extractor config: image_std %v: every value must be a non-zero number", c.ImageStd)
			}
		}
	}
	return nil
}

// ResizedSize is the size an image of w×h pixels is resized to:
// transformers' get_resize_output_image_size (default_to_square=False),
// whose longer side int(size·long/short) truncates.
func (c CLIPImageProcessorConfig) ResizedSize(w, h int) (int, int) {
	if !c.DoResize {
		return w, h
	}
	if c.ShortestEdge <= 0 {
		return c.ResizeWidth, c.ResizeHeight
	}
	s := c.ShortestEdge
	if w <= h {
		return s, int(float64(s*h) / float64(w))
	}
	return int(float64(s*w) / float64(h)), s
}

// OutputSize is the size of the pixel values of an image of w×h pixels.
func (c CLIPImageProcessorConfig) OutputSize(w, h int) (int, int) {
	if c.DoCenterCrop {
		return c.CropWidth, c.CropHeight
	}
	return c.ResizedSize(w, h)
}

// CLIPImageProcessor turns images into the image encoder's pixel values.
type CLIPImageProcessor struct {
	Config CLIPImageProcessorConfig

	// Hook, when set, receives each image's stages under the golden names
	// ("resized_uint8_hwc", "cropped_uint8_hwc" [H, W, 3] as float values
	// 0…255, "rescaled_f32_hwc", "normalized_f32_hwc" [H, W, 3]). The
	// tensor is only valid during the call.
	Hook func(name string, t *ops.Tensor)
}

// NewCLIPImageProcessor checks cfg and returns a processor.
func NewCLIPImageProcessor(cfg CLIPImageProcessorConfig) (*CLIPImageProcessor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &CLIPImageProcessor{Config: cfg}, nil
}

// Preprocess converts images to pixel values [N, 3, H, W] (every image
// must come out the same size, which a center crop guarantees).
func (p *CLIPImageProcessor) Preprocess(images []image.Image) (*ops.Tensor, error) {
	rgb := make([]*RGBImage, len(images))
	for i, img := range images {
		if b := img.Bounds(); b.Dx() < 1 || b.Dy() < 1 {
			return nil, fmt.Errorf("image %d is empty (%d×%d)", i, b.Dx(), b.Dy())
		}
		rgb[i] = ToRGB(img)
	}
	return p.PreprocessRGB(rgb)
}

// PreprocessRGB is Preprocess for images already in RGB.
func (p *CLIPImageProcessor) PreprocessRGB(images []*RGBImage) (*ops.Tensor, error) {
	if len(images) == 0 {
		return nil, errors.New("no image")
	}
	c := p.Config
	ow, oh := c.OutputSize(images[0].Width, images[0].Height)
	out := ops.New(len(images), 3, oh, ow)
	for i, img := range images {
		if img.Width < 1 || img.Height < 1 {
			return nil, fmt.Errorf("image %d is empty (%d×%d)", i, img.Width, img.Height)
		}
		if w, h := c.OutputSize(img.Width, img.Height); w != ow || h != oh {
			return nil, fmt.Errorf("image %d preprocesses to %d×%d, image 0 to %d×%d (sizes must agree without a center crop)", i, w, h, ow, oh)
		}
		p.pixelValues(out.Rows(i, i+1), p.resizeCrop(img))
	}
	return out, nil
}

// resizeCrop resizes and center-crops an image, computing only the pixels
// the crop keeps. transformers' center_crop takes rows from
// top = (H − crop)//2 (floor division) and pads with zeros (black) when the
// image is smaller than the crop; both come to: output row i is input row
// i + floor((H − crop)/2), zero outside.
func (p *CLIPImageProcessor) resizeCrop(img *RGBImage) *RGBImage {
	c := p.Config
	rw, rh := c.ResizedSize(img.Width, img.Height)
	if p.Hook != nil && c.DoResize {
		full := ResizeBicubic(img, rw, rh)
		p.Hook("resized_uint8_hwc", rgbTensor(full))
	}
	if !c.DoCenterCrop {
		if c.DoResize {
			return ResizeBicubic(img, rw, rh)
		}
		return img
	}
	top, left := floorDiv(rh-c.CropHeight, 2), floorDiv(rw-c.CropWidth, 2)
	crop := image.Rect(left, top, left+c.CropWidth, top+c.CropHeight)
	win := crop.Intersect(image.Rect(0, 0, rw, rh))
	var part *RGBImage
	if c.DoResize {
		part = resizeWindow(img, rw, rh, win)
	} else {
		part = NewRGBImage(win.Dx(), win.Dy())
		for y := range win.Dy() {
			copy(part.Pix[y*win.Dx()*3:(y+1)*win.Dx()*3], img.Pix[((win.Min.Y+y)*img.Width+win.Min.X)*3:((win.Min.Y+y)*img.Width+win.Max.X)*3])
		}
	}
	out := part
	if win != crop {
		out = NewRGBImage(c.CropWidth, c.CropHeight)
		dx, dy := win.Min.X-crop.Min.X, win.Min.Y-crop.Min.Y
		for y := range part.Height {
			copy(out.Pix[((dy+y)*out.Width+dx)*3:], part.Pix[y*part.Width*3:(y+1)*part.Width*3])
		}
	}
	if p.Hook != nil {
		p.Hook("cropped_uint8_hwc", rgbTensor(out))
	}
	return out
}

// pixelValues rescales and normalises img into dst [1, 3, H, W]:
// x = float32(float64(v)·rescale_factor) (numpy multiplies the uint8 array
// by a Python float in float64, then casts), then (x − mean)/std in float32
// with mean and std cast to float32 (numpy on a float32 array).
func (p *CLIPImageProcessor) pixelValues(dst *ops.Tensor, img *RGBImage) {
	c := p.Config
	hw := img.Width * img.Height
	var mean, std [3]float32
	for ch := range 3 {
		mean[ch], std[ch] = float32(c.ImageMean[ch]), float32(c.ImageStd[ch])
	}
	var rescaled, normalized *ops.Tensor
	if p.Hook != nil {
		rescaled, normalized = ops.New(img.Height, img.Width, 3), ops.New(img.Height, img.Width, 3)
	}
	for i := range hw {
		for ch := range 3 {
			v := img.Pix[3*i+ch]
			x := float32(v)
			if c.DoRescale {
				x = float32(float64(v) * c.RescaleFactor)
			}
			if rescaled != nil {
				rescaled.Data[3*i+ch] = x
			}
			if c.DoNormalize {
				x = (x - mean[ch]) / std[ch]
			}
			if normalized != nil {
				normalized.Data[3*i+ch] = x
			}
			dst.Data[ch*hw+i] = x
		}
	}
	if p.Hook != nil {
		p.Hook("rescaled_f32_hwc", rescaled)
		p.Hook("normalized_f32_hwc", normalized)
	}
}

// rgbTensor returns img's bytes as a float tensor [H, W, 3].
func rgbTensor(img *RGBImage) *ops.Tensor {
	t := ops.New(img.Height, img.Width, 3)
	for i, v := range img.Pix {
		t.Data[i] = float32(v)
	}
	return t
}

// floorDiv is Python's a // b for b > 0.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
