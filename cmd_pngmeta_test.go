package main

import (
	"bytes"
	"compress/zlib"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// The text chunks we insert keep the PNG decodable by image/png, and read
// back unchanged (UTF-8 prompt, JSON parameters).
func TestPNGTextChunksRoundTrip(t *testing.T) {
	seed := uint64(1<<63 + 5) // above MaxInt64: must survive JSON
	params := &genParams{
		Version: "9.9", Prompt: "ein Pferd, 一匹の馬 \"quoted\"\nline two", Batch: []string{"a", "ein Pferd, 一匹の馬 \"quoted\"\nline two"},
		BatchIndex: 1, ImagesPerPrompt: 1, Seed: &seed, PriorSteps: 2, DecoderSteps: 3, SuperResSteps: 4,
		PriorGuidance: 4.25, DecoderGuidance: 0.1, Size: 64, Model: "/m/karlo.d2", ModelSource: "karlo", ModelDType: "F16",
	}
	chunks, err := pngTextChunks(params)
	require.NoError(t, err)
	orig := testPNG(t)
	data, err := insertTextChunks(orig, chunks...)
	require.NoError(t, err)

	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(t, err, "image/png must still decode it")
	want, err := png.Decode(bytes.NewReader(orig))
	require.NoError(t, err)
	require.Equal(t, want, img)

	path := filepath.Join(t.TempDir(), "x.png")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	got, err := readGenParams(path)
	require.NoError(t, err)
	require.Equal(t, params, got)

	hdr, texts, err := readPNGChunks(bytes.NewReader(data), "x")
	require.NoError(t, err)
	require.Equal(t, pngHeader{Width: 3, Height: 2, BitDepth: 8, ColorType: 6}, hdr)
	require.Len(t, texts, 3)
	require.Equal(t, textChunk{Type: "tEXt", Keyword: "Software", Text: "dalle2 9.9"}, texts[0])
	require.Equal(t, textChunk{Type: "iTXt", Keyword: "Description", Text: params.Prompt}, texts[1])

	var out bytes.Buffer
	require.NoError(t, pngInfo(path, &out))
	s := out.String()
	require.Contains(t, s, "image    PNG 3x2, 8-bit RGBA\n")
	require.Contains(t, s, "  seed               9223372036854775813\n")
	require.Contains(t, s, "  batch prompt 0     a\n")
	require.Contains(t, s, "  prior guidance     4.25\n")
	require.Contains(t, s, "  model source       karlo\n")
	require.Contains(t, s, "--model /m/karlo.d2 --seed 9223372036854775813 --prior-steps 2")
	require.Contains(t, s, `'ein Pferd, 一匹の馬 "quoted"`)
}

// Every chunk's CRC is checked; a flipped byte is reported with its offset.
func TestPNGChunksCorrupt(t *testing.T) {
	data, err := insertTextChunks(testPNG(t), iTXtChunk(paramsKeyword, `{"prompt":"x"}`))
	require.NoError(t, err)
	bad := append([]byte(nil), data...)
	bad[33+12+3] ^= 1 // inside the first inserted chunk's data (after IHDR at 8..33)
	_, _, err = readPNGChunks(bytes.NewReader(bad), "bad.png")
	require.ErrorContains(t, err, "bad.png: offset 33: iTXt chunk CRC")

	bad = append([]byte(nil), data...)
	bad[len(bad)-20] ^= 1 // image data
	_, _, err = readPNGChunks(bytes.NewReader(bad), "bad.png")
	require.ErrorContains(t, err, "CRC")

	_, _, err = readPNGChunks(bytes.NewReader(data[:len(data)-12]), "cut.png")
	require.ErrorContains(t, err, "truncated")
	_, _, err = readPNGChunks(strings.NewReader("GIF89a..."), "x.gif")
	require.ErrorContains(t, err, "not a PNG")
	_, err = insertTextChunks([]byte("nope"))
	require.Error(t, err)

	// No parameters chunk: a clear error for --from-png.
	path := filepath.Join(t.TempDir(), "plain.png")
	require.NoError(t, os.WriteFile(path, testPNG(t), 0o644))
	_, err = readGenParams(path)
	require.ErrorContains(t, err, "no \"dalle2\" text chunk")
	var out bytes.Buffer
	require.NoError(t, pngInfo(path, &out))
	require.Contains(t, out.String(), "no dalle2 generation parameters")
}

// zTXt and compressed iTXt written by other tools are read too.
func TestParseCompressedTextChunks(t *testing.T) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write([]byte("caf\xe9"))
	require.NoError(t, zw.Close())
	tc, err := parseTextChunk("zTXt", append([]byte("Comment\x00\x00"), z.Bytes()...))
	require.NoError(t, err)
	require.Equal(t, "café", tc.Text)

	z.Reset()
	zw = zlib.NewWriter(&z)
	_, _ = zw.Write([]byte("né"))
	require.NoError(t, zw.Close())
	tc, err = parseTextChunk("iTXt", append([]byte("Title\x00\x01\x00fr\x00Titre\x00"), z.Bytes()...))
	require.NoError(t, err)
	require.Equal(t, textChunk{Type: "iTXt", Keyword: "Title", Lang: "fr", Text: "né"}, tc)

	_, err = parseTextChunk("iTXt", []byte("Title\x00\x00\x00\xff\xfe"))
	require.Error(t, err, "no NULs after the language tag")
	_, err = parseTextChunk("tEXt", []byte("no separator"))
	require.Error(t, err)
}

func TestSlugAndTemplate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a red horse", "a-red-horse"},
		{"  A Red, HORSE!! ", "a-red-horse"},
		{"Ünïcödé 猫 2", "ünïcödé-猫-2"},
		{"../../etc/passwd", "etc-passwd"},
		{"!!!", "image"},
		{"a photo of a red horse in a meadow at dawn, highly detailed, 8k", "a-photo-of-a-red-horse-in-a-meadow-at-dawn"},
	} {
		require.Equal(t, c.want, slug(c.in, 48), c.in)
	}
	require.Equal(t, "abcdefghij", slug("abcdefghijklmnop", 10), "no dash to cut at: hard cut")

	v := templateVars{index: 7, promptIndex: 2, imageIndex: 1, seed: "42", prompt: "A cat"}
	require.Equal(t, "out/007-2-1-42-a-cat.png", expandTemplate("out/{index:03}-{prompt_index}-{image_index}-{seed}-{slug}.png", v))
	require.Equal(t, "a-{x-0042", expandTemplate("{slug:1}-{x-{seed:4}", v))
	require.NoError(t, checkTemplate("{index}{slug:3}{seed}{prompt_index}{image_index}.png"))
	require.ErrorContains(t, checkTemplate("{idx}.png"), "unknown placeholder {idx}")
	require.True(t, isUsageError(checkTemplate("{idx}.png")))
}

func TestReorderArgsGlobalsAfterCommand(t *testing.T) {
	app := newApp()
	got := reorderArgs(app, []string{"dalle2", "gen", "a cat", "--threads", "2", "-v", "-o", "x.png", "--version", "--nope"})
	require.Equal(t, []string{"dalle2", "--threads", "2", "-v", "--version", "gen", "-o", "x.png", "--nope", "--", "a cat"}, got)
	// gen's own --quiet stays with gen; --threads=3 keeps its value.
	got = reorderArgs(app, []string{"dalle2", "info", "m.d2", "--verify", "--threads=3", "-q"})
	require.Equal(t, []string{"dalle2", "--threads=3", "-q", "info", "--verify", "--", "m.d2"}, got)
	// Completion requests are left alone.
	args := []string{"dalle2", "gen", "a", "--generate-bash-completion"}
	require.Equal(t, args, reorderArgs(app, args))
}

func TestSuggestCommand(t *testing.T) {
	cmds := newApp().Commands
	require.Equal(t, "gen", suggestCommand(cmds, "gne"))
	require.Equal(t, "info", suggestCommand(cmds, "ifno"))
	require.Equal(t, "convert", suggestCommand(cmds, "conver"))
	require.Equal(t, "", suggestCommand(cmds, "zzzzzz"))
	require.Equal(t, 3, editDistance("kitten", "sitting"))
}

// A fake clock drives the progress output: plain lines off a terminal, a
// redrawn bar on one.
func TestProgress(t *testing.T) {
	var now time.Time
	tick := func(d time.Duration) { now = now.Add(d) }
	var buf bytes.Buffer
	p := newProgress(&buf, false)
	p.now = func() time.Time { return now }
	p.startJob("[1/2] ")
	tick(2 * time.Second)
	p.step("prior", 1, 4)
	tick(2 * time.Second)
	p.step("prior", 2, 4)
	tick(time.Second)
	p.step("decoder", 1, 25)
	require.Equal(t, "[1/2] prior       1/4      2.00 s/step  ETA 6.0s\n"+
		"[1/2] prior       2/4      2.00 s/step  ETA 4.0s\n"+
		"[1/2] decoder     1/25     1.00 s/step  ETA 0:24\n", buf.String())

	buf.Reset()
	p = newProgress(&buf, true)
	p.now = func() time.Time { return now }
	p.startJob("")
	tick(time.Second)
	p.step("sr", 1, 2)
	tick(3 * time.Second)
	p.step("sr", 2, 2)
	tick(4000 * time.Second)
	p.step("decoder", 1, 3)
	p.end() // interrupted: the open bar gets its newline
	require.Equal(t, "\r\x1b[Ksr        [===========>            ]   1/2      1.00 s/step  ETA 1.0s"+
		"\r\x1b[Ksr        [========================]   2/2      2.00 s/step  took 4.0s\n"+
		"\r\x1b[Kdecoder   [=======>                ]   1/3   4000.00 s/step  ETA 2:13:20\n", buf.String())

	var nilProgress *progress // --quiet
	nilProgress.startJob("x")
	nilProgress.step("prior", 1, 2)
	nilProgress.end()
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, isTerminal(w))
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	if isCharDeviceTerminalFallback {
		t.Skip("this OS has no terminal ioctl: the fallback takes the null device for a terminal")
	}
	require.False(t, isTerminal(null), "the null device is not a terminal")
	require.False(t, isTerminalWriter(&bytes.Buffer{}))
}
