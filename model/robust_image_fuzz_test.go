package model

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// robustPNG encodes img as PNG.
func robustPNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	return b.Bytes()
}

// robustJPEG encodes img as JPEG.
func robustJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	require.NoError(t, jpeg.Encode(&b, img, &jpeg.Options{Quality: 80}))
	return b.Bytes()
}

// robustGradient is a small test image of the given colour model.
func robustGradient(w, h int, kind string) image.Image {
	r := image.Rect(0, 0, w, h)
	var m interface {
		image.Image
		Set(x, y int, c color.Color)
	}
	switch kind {
	case "gray":
		m = image.NewGray(r)
	case "rgba64":
		m = image.NewNRGBA64(r)
	case "paletted":
		m = image.NewPaletted(r, color.Palette{color.Black, color.White, color.NRGBA{255, 0, 0, 128}})
	default:
		m = image.NewNRGBA(r)
	}
	for y := range h {
		for x := range w {
			m.Set(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8(x ^ y), uint8(200 + x%56)})
		}
	}
	return m
}

// pngWithSize rewrites the IHDR width and height of a PNG (and its CRC).
func pngWithSize(b []byte, w, h uint32) []byte {
	out := bytes.Clone(b)
	binary.BigEndian.PutUint32(out[16:], w)
	binary.BigEndian.PutUint32(out[20:], h)
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

// jpegWithSize rewrites the frame header (SOF0) height and width of a JPEG.
func jpegWithSize(t testing.TB, b []byte, w, h uint16) []byte {
	out := bytes.Clone(b)
	i := bytes.Index(out, []byte{0xff, 0xc0})
	require.Positive(t, i, "no SOF0 marker")
	binary.BigEndian.PutUint16(out[i+5:], h)
	binary.BigEndian.PutUint16(out[i+7:], w)
	return out
}

// FuzzImageDecode decodes arbitrary bytes as vary and edit do
// (DecodeImage), then converts and preprocesses the image for the CLIP
// image encoder: never a panic; a decoded image is within the limits and
// converts to exactly width × height RGB pixels.
func FuzzImageDecode(f *testing.F) {
	for _, kind := range []string{"nrgba", "gray", "rgba64", "paletted"} {
		f.Add(robustPNG(f, robustGradient(13, 7, kind)))
	}
	f.Add(robustJPEG(f, robustGradient(17, 9, "nrgba")))
	f.Add(robustJPEG(f, robustGradient(8, 8, "gray")))
	f.Add(pngWithSize(robustPNG(f, robustGradient(4, 4, "gray")), 1, 16384))
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	proc, err := NewCLIPImageProcessor(DefaultCLIPImageProcessorConfig(32))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := DecodeImage(bytes.NewReader(data), "fuzz.png")
		if err != nil {
			return
		}
		b := img.Bounds()
		w, h := b.Dx(), b.Dy()
		if w < 1 || h < 1 || w > MaxImageSide || h > MaxImageSide || w*h > MaxImagePixels {
			t.Fatalf("decoded a %d×%d image", w, h)
		}
		rgb := ToRGB(img)
		if rgb.Width != w || rgb.Height != h || len(rgb.Pix) != 3*w*h {
			t.Fatalf("ToRGB of %d×%d: %d×%d, %d bytes", w, h, rgb.Width, rgb.Height, len(rgb.Pix))
		}
		if _, err := proc.Preprocess([]image.Image{img}); err != nil {
			t.Fatalf("preprocessing a decoded %d×%d image: %v", w, h, err)
		}
	})
}

// TestRobustImageLimits: image headers declaring absurd dimensions are
// refused with an error naming the file before any pixel memory is taken.
func TestRobustImageLimits(t *testing.T) {
	smallPNG := robustPNG(t, robustGradient(4, 4, "rgba64"))
	smallJPEG := robustJPEG(t, robustGradient(16, 16, "nrgba"))
	const refused = "refused (at most 16384 per side and 64 megapixels)"
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"PNG 100000×100000", "png image of 100000×100000 pixels " + refused, pngWithSize(smallPNG, 100000, 100000)},
		{"PNG 2^31-1 × 2^31-1", "png: unsupported feature: dimension overflow", pngWithSize(smallPNG, 1<<31-1, 1<<31-1)},
		{"PNG 16384×16384 (over the pixel limit)", refused, pngWithSize(smallPNG, 16384, 16384)},
		{"PNG 16385×1 (over the side limit)", refused, pngWithSize(smallPNG, 16385, 1)},
		{"JPEG 65535×65535", "jpeg image of 65535×65535 pixels " + refused, jpegWithSize(t, smallJPEG, 65535, 65535)},
		{"JPEG 16384×8192", refused, jpegWithSize(t, smallJPEG, 16384, 8192)},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := DecodeImage(bytes.NewReader(c.data), "huge.img")
			runtime.ReadMemStats(&after)
			require.ErrorContains(t, err, "huge.img: ")
			require.ErrorContains(t, err, c.want)
			// Reading the header takes a few KiB; the smallest image
			// refused here would need 512 MiB of pixels (16384² bytes × 2
			// for the 16-bit PNG is 1 GiB).
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
		})
	}
}
