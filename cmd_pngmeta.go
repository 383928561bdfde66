package main

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pngSignature starts every PNG stream.
const pngSignature = "\x89PNG\r\n\x1a\n"

// paramsKeyword is the keyword of the iTXt chunk holding a PNG's generation
// parameters as JSON (genParams).
const paramsKeyword = "dalle2"

// genParams are the generation parameters recorded in each PNG: enough to
// make the same image again (gen --from-png).
type genParams struct {
	// Version is the dalle2 version that made the image.
	Version string `json:"dalle2"`
	// Prompt is this image's prompt.
	Prompt string `json:"prompt"`
	// Batch lists the prompts of the batch the image was made in, when
	// there were several (the noise of a seeded run is drawn for the whole
	// batch, so the batch is part of what made the image).
	Batch []string `json:"batch,omitempty"`
	// BatchIndex is the image's index in its batch's output (prompt-major:
	// prompt BatchIndex / ImagesPerPrompt).
	BatchIndex      int `json:"batch_index"`
	ImagesPerPrompt int `json:"images_per_prompt"`
	// Seed of the normal generator, or Noise: the recorded noise file
	// replayed instead.
	Seed            *uint64 `json:"seed,omitempty"`
	Noise           string  `json:"noise,omitempty"`
	PriorSteps      int     `json:"prior_steps"`
	DecoderSteps    int     `json:"decoder_steps"`
	SuperResSteps   int     `json:"sr_steps"`
	PriorGuidance   float64 `json:"prior_guidance"`
	DecoderGuidance float64 `json:"decoder_guidance"`
	// Size is the image's width and height in pixels.
	Size              int  `json:"size"`
	UpsampleAntialias bool `json:"upsample_antialias,omitempty"`
	// Model is the weight file's absolute path, or "builtin".
	Model string `json:"model"`
	// ModelSource and ModelDType are the weight file's "source" and "dtype"
	// metadata (where it was converted from, in which number format).
	ModelSource string `json:"model_source,omitempty"`
	ModelDType  string `json:"model_dtype,omitempty"`
	// Kernels is the kernel set that computed the image (asm.Name()).
	Kernels string `json:"kernels,omitempty"`
}

// prompts is the batch that made the image.
func (g *genParams) prompts() []string {
	if len(g.Batch) > 0 {
		return g.Batch
	}
	return []string{g.Prompt}
}

// textChunk is one PNG text chunk (tEXt, zTXt or iTXt), decoded.
type textChunk struct {
	Type    string // "tEXt", "zTXt" or "iTXt"
	Keyword string
	Lang    string // iTXt only
	Text    string // UTF-8
}

// pngChunk encodes one chunk: length, type, data, CRC-32 of type and data.
func pngChunk(typ string, data []byte) []byte {
	b := make([]byte, 0, 12+len(data))
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	return binary.BigEndian.AppendUint32(b, crc.Sum32())
}

// iTXtChunk encodes an uncompressed international text chunk: keyword,
// NUL, compression flag 0, method 0, empty language tag, NUL, empty
// translated keyword, NUL, UTF-8 text.
func iTXtChunk(keyword, text string) []byte {
	data := append([]byte(keyword), 0, 0, 0, 0, 0)
	return pngChunk("iTXt", append(data, text...))
}

// tEXtChunk encodes a Latin-1 text chunk (callers pass ASCII).
func tEXtChunk(keyword, text string) []byte {
	data := append([]byte(keyword), 0)
	return pngChunk("tEXt", append(data, text...))
}

// insertTextChunks returns the PNG stream png with chunks inserted right
// after its IHDR chunk (image/png writes no text chunks itself).
func insertTextChunks(png []byte, chunks ...[]byte) ([]byte, error) {
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	if len(png) < ihdrEnd || string(png[:8]) != pngSignature || string(png[12:16]) != "IHDR" ||
		binary.BigEndian.Uint32(png[8:12]) != 13 {
		return nil, errors.New("not a PNG stream starting with IHDR")
	}
	n := len(png)
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]byte, 0, n)
	out = append(out, png[:ihdrEnd]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, png[ihdrEnd:]...), nil
}

// pngTextChunks encodes the text chunks of an image made with params:
// Software (tEXt), Description (the prompt, iTXt) and dalle2 (the
// parameters as JSON, iTXt).
func pngTextChunks(p *genParams) ([][]byte, error) {
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return [][]byte{
		tEXtChunk("Software", "dalle2 "+p.Version),
		iTXtChunk("Description", p.Prompt),
		iTXtChunk(paramsKeyword, string(js)),
	}, nil
}

// pngHeader is a PNG's IHDR.
type pngHeader struct {
	Width, Height       int
	BitDepth, ColorType int
	Interlaced          bool
}

// readPNGChunks parses a PNG stream: its header and text chunks. Every
// chunk's CRC is checked. name is used in errors.
func readPNGChunks(r io.Reader, name string) (pngHeader, []textChunk, error) {
	var hdr pngHeader
	var texts []textChunk
	br := &countReader{r: r}
	sig := make([]byte, 8)
	if _, err := io.ReadFull(br, sig); err != nil || string(sig) != pngSignature {
		return hdr, nil, fmt.Errorf("%s: not a PNG file (no PNG signature)", name)
	}
	for first := true; ; first = false {
		off := br.n
		var head [8]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return hdr, texts, fmt.Errorf("%s: offset %d: truncated PNG (no IEND chunk)", name, off)
		}
		length := binary.BigEndian.Uint32(head[:4])
		typ := string(head[4:8])
		if length > 1<<31-1 {
			return hdr, texts, fmt.Errorf("%s: offset %d: chunk %q length %d too large", name, off, typ, length)
		}
		var data []byte
		if isTextChunk(typ) || typ == "IHDR" {
			data = make([]byte, length)
			if _, err := io.ReadFull(br, data); err != nil {
				return hdr, texts, fmt.Errorf("%s: offset %d: truncated %s chunk", name, off, typ)
			}
		} else {
			// Other chunks (image data) are only checksummed.
			crc := crc32.NewIEEE()
			crc.Write(head[4:8])
			if _, err := io.CopyN(crc, br, int64(length)); err != nil {
				return hdr, texts, fmt.Errorf("%s: offset %d: truncated %s chunk", name, off, typ)
			}
			if err := checkCRC(br, crc.Sum32(), name, off, typ); err != nil {
				return hdr, texts, err
			}
			if typ == "IEND" {
				return hdr, texts, nil
			}
			continue
		}
		if err := checkCRC(br, crc32.ChecksumIEEE(append([]byte(typ), data...)), name, off, typ); err != nil {
			return hdr, texts, err
		}
		if first != (typ == "IHDR") {
			return hdr, texts, fmt.Errorf("%s: offset %d: IHDR must be the first chunk, found %q", name, off, typ)
		}
		if typ == "IHDR" {
			if len(data) != 13 {
				return hdr, texts, fmt.Errorf("%s: offset %d: IHDR of %d bytes, want 13", name, off, len(data))
			}
			hdr = pngHeader{
				Width: int(binary.BigEndian.Uint32(data[0:4])), Height: int(binary.BigEndian.Uint32(data[4:8])),
				BitDepth: int(data[8]), ColorType: int(data[9]), Interlaced: data[12] != 0,
			}
			continue
		}
		tc, err := parseTextChunk(typ, data)
		if err != nil {
			return hdr, texts, fmt.Errorf("%s: offset %d: %s chunk: %w", name, off, typ, err)
		}
		texts = append(texts, tc)
	}
}

func isTextChunk(typ string) bool { return typ == "tEXt" || typ == "zTXt" || typ == "iTXt" }

func checkCRC(r io.Reader, want uint32, name string, off int64, typ string) error {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("%s: offset %d: truncated %s chunk (no CRC)", name, off, typ)
	}
	if got := binary.BigEndian.Uint32(b[:]); got != want {
		return fmt.Errorf("%s: offset %d: %s chunk CRC %08x, computed %08x", name, off, typ, got, want)
	}
	return nil
}

// countReader counts the bytes read, for offsets in errors.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// maxTextChunk bounds a decompressed zTXt/iTXt text (a zip bomb guard).
const maxTextChunk = 16 << 20

// parseTextChunk decodes a tEXt, zTXt or iTXt chunk's data.
func parseTextChunk(typ string, data []byte) (textChunk, error) {
	tc := textChunk{Type: typ}
	key, rest, ok := bytes.Cut(data, []byte{0})
	if !ok || len(key) == 0 || len(key) > 79 {
		return tc, errors.New("bad keyword")
	}
	tc.Keyword = latin1(key)
	inflate := func(b []byte) (string, error) {
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", err
		}
		defer zr.Close()
		out, err := io.ReadAll(io.LimitReader(zr, maxTextChunk+1))
		if err != nil {
			return "", err
		}
		if len(out) > maxTextChunk {
			return "", fmt.Errorf("text longer than %d bytes", maxTextChunk)
		}
		return string(out), nil
	}
	switch typ {
	case "tEXt":
		tc.Text = latin1(rest)
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return tc, errors.New("unknown compression method")
		}
		s, err := inflate(rest[1:])
		if err != nil {
			return tc, err
		}
		tc.Text = latin1([]byte(s))
	case "iTXt":
		if len(rest) < 2 {
			return tc, errors.New("truncated")
		}
		compressed, method := rest[0], rest[1]
		lang, rest2, ok1 := bytes.Cut(rest[2:], []byte{0})
		_, text, ok2 := bytes.Cut(rest2, []byte{0}) // translated keyword
		if !ok1 || !ok2 {
			return tc, errors.New("truncated")
		}
		tc.Lang = string(lang)
		if compressed != 0 {
			if method != 0 {
				return tc, errors.New("unknown compression method")
			}
			s, err := inflate(text)
			if err != nil {
				return tc, err
			}
			text = []byte(s)
		}
		if !utf8.Valid(text) {
			return tc, errors.New("text is not UTF-8")
		}
		tc.Text = string(text)
	}
	return tc, nil
}

// latin1 decodes ISO 8859-1 bytes.
func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// readGenParams reads the generation parameters recorded in the PNG at path.
func readGenParams(path string) (*genParams, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, texts, err := readPNGChunks(f, path)
	if err != nil {
		return nil, err
	}
	for _, t := range texts {
		if t.Keyword != paramsKeyword {
			continue
		}
		var p genParams
		if err := json.Unmarshal([]byte(t.Text), &p); err != nil {
			return nil, fmt.Errorf("%s: %s text chunk: %w", path, paramsKeyword, err)
		}
		return &p, nil
	}
	return nil, fmt.Errorf("%s: no %q text chunk with generation parameters (not made by dalle2 gen?)", path, paramsKeyword)
}

// isPNGFile reports whether path names a PNG: its name ends in .png or the
// file starts with the PNG signature.
func isPNGFile(path string) bool {
	if strings.HasSuffix(strings.ToLower(path), ".png") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var sig [8]byte
	_, err = io.ReadFull(f, sig[:])
	return err == nil && string(sig[:]) == pngSignature
}

var pngColorTypes = map[int]string{0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}

// pngInfo prints a PNG's size and text chunks; the generation parameters
// of an image made by dalle2 gen are listed one per line, followed by the
// gen command that makes the image again.
func pngInfo(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, texts, err := readPNGChunks(f, path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "file     %s\n", path)
	ct := pngColorTypes[hdr.ColorType]
	if ct == "" {
		ct = fmt.Sprintf("color type %d", hdr.ColorType)
	}
	il := ""
	if hdr.Interlaced {
		il = ", interlaced"
	}
	fmt.Fprintf(w, "image    PNG %dx%d, %d-bit %s%s\n", hdr.Width, hdr.Height, hdr.BitDepth, ct, il)

	var params *genParams
	var others []textChunk
	for _, t := range texts {
		if t.Keyword == paramsKeyword && params == nil {
			var p genParams
			if err := json.Unmarshal([]byte(t.Text), &p); err != nil {
				return fmt.Errorf("%s: %s text chunk: %w", path, paramsKeyword, err)
			}
			params = &p
			continue
		}
		others = append(others, t)
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "\ntext\n")
		width := 0
		for _, t := range others {
			width = max(width, utf8.RuneCountInString(t.Keyword))
		}
		for _, t := range others {
			fmt.Fprintf(w, "  %s%s  %s\n", t.Keyword, strings.Repeat(" ", width-utf8.RuneCountInString(t.Keyword)), indentText(t.Text, width+4))
		}
	}
	if params == nil {
		fmt.Fprintf(w, "\nno dalle2 generation parameters\n")
		return nil
	}
	fmt.Fprintf(w, "\ngeneration parameters\n")
	for _, kv := range params.fields() {
		fmt.Fprintf(w, "  %-18s %s\n", kv[0], indentText(kv[1], 21))
	}
	fmt.Fprintf(w, "\nregenerate\n  dalle2 gen --from-png %s -o FILE\n  %s\n", shellQuote(path), strings.Join(params.command(), " "))
	return nil
}

// fields lists the parameters as (name, value) rows, in a fixed order.
func (g *genParams) fields() [][2]string {
	rows := [][2]string{{"prompt", g.Prompt}}
	if len(g.Batch) > 0 {
		for i, p := range g.Batch {
			rows = append(rows, [2]string{fmt.Sprintf("batch prompt %d", i), p})
		}
	}
	rows = append(rows, [2]string{"batch index", strconv.Itoa(g.BatchIndex)},
		[2]string{"images per prompt", strconv.Itoa(g.ImagesPerPrompt)})
	if g.Seed != nil {
		rows = append(rows, [2]string{"seed", strconv.FormatUint(*g.Seed, 10)})
	}
	if g.Noise != "" {
		rows = append(rows, [2]string{"noise", g.Noise})
	}
	rows = append(rows,
		[2]string{"prior steps", strconv.Itoa(g.PriorSteps)},
		[2]string{"decoder steps", strconv.Itoa(g.DecoderSteps)},
		[2]string{"sr steps", strconv.Itoa(g.SuperResSteps)},
		[2]string{"prior guidance", strconv.FormatFloat(g.PriorGuidance, 'g', -1, 64)},
		[2]string{"decoder guidance", strconv.FormatFloat(g.DecoderGuidance, 'g', -1, 64)},
		[2]string{"size", strconv.Itoa(g.Size)},
		[2]string{"upsample antialias", strconv.FormatBool(g.UpsampleAntialias)},
		[2]string{"model", g.Model})
	if g.ModelSource != "" {
		rows = append(rows, [2]string{"model source", g.ModelSource})
	}
	if g.ModelDType != "" {
		rows = append(rows, [2]string{"model dtype", g.ModelDType})
	}
	if g.Kernels != "" {
		rows = append(rows, [2]string{"kernels", g.Kernels})
	}
	return append(rows, [2]string{"dalle2 version", g.Version})
}

// command is a gen command line (shell-quoted words) equivalent to the
// parameters; it writes every image of the batch.
func (g *genParams) command() []string {
	args := []string{"dalle2", "gen"}
	for _, p := range g.prompts() {
		args = append(args, shellQuote(p))
	}
	if g.Model != "builtin" {
		args = append(args, "--model", shellQuote(g.Model))
	}
	if g.Seed != nil {
		args = append(args, "--seed", strconv.FormatUint(*g.Seed, 10))
	}
	if g.Noise != "" {
		args = append(args, "--noise", shellQuote(g.Noise))
	}
	args = append(args,
		"--prior-steps", strconv.Itoa(g.PriorSteps), "--decoder-steps", strconv.Itoa(g.DecoderSteps),
		"--sr-steps", strconv.Itoa(g.SuperResSteps),
		"--prior-guidance", strconv.FormatFloat(g.PriorGuidance, 'g', -1, 64),
		"--decoder-guidance", strconv.FormatFloat(g.DecoderGuidance, 'g', -1, 64),
		"-n", strconv.Itoa(g.ImagesPerPrompt), "--size", strconv.Itoa(g.Size))
	if g.UpsampleAntialias {
		args = append(args, "--upsample-antialias")
	}
	return args
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// indentText indents the continuation lines of a multi-line text.
func indentText(s string, n int) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}
