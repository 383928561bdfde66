package convert

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/quant"
)

// linkTree recreates src under dst with directories made and files
// symlinked; skip(rel) leaves a file or folder out.
func linkTree(t testing.TB, src, dst string, skip func(rel string) bool) {
	t.Helper()
	abs, err := filepath.Abs(src)
	require.NoError(t, err)
	err = filepath.WalkDir(abs, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(abs, p)
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return os.Symlink(p, filepath.Join(dst, rel))
	})
	require.NoError(t, err)
}

// manifestParams are the parameter counts listed in the golden MANIFEST.
var manifestParams = map[string]int64{
	"text_encoder": 1618553, "prior": 13680, "text_proj": 25180, "decoder": 880070,
	"super_res_first": 712003, "super_res_last": 712003, "image_encoder": 68025,
}

// checkConverted compares a converted file with its source folder: the
// components (in model_index order, configs verbatim), every tensor
// (through want), the tokenizer blobs and the metadata.
func checkConverted(t *testing.T, srcDir, out string, rep *Report, dtype string, want func(src loader.Tensor) loader.Tensor) {
	t.Helper()
	p, err := OpenPipeline(srcDir)
	require.NoError(t, err)
	f, err := loader.Open(out)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Verify())

	meta := f.Meta()
	require.Equal(t, filepath.Base(srcDir), meta[loader.MetaSource])
	require.Equal(t, "dalle2 test-1", meta[loader.MetaConverter])
	require.Equal(t, dtype, meta[loader.MetaDType])
	require.Equal(t, p.Class, meta[MetaPipeline])
	created, err := time.Parse(time.RFC3339, meta[loader.MetaCreated])
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), created, time.Hour)

	comps := f.Components()
	require.Len(t, comps, len(p.Components))
	total := 0
	for i, c := range p.Components {
		require.Equal(t, c.Name, comps[i].Name)
		require.Equal(t, c.Class, comps[i].Class)
		// Equal as JSON: the index may re-encode it (compacted, "<" as \u003c).
		require.JSONEq(t, string(c.Config), string(comps[i].Config), "config of %s", c.Name)

		sub := f.Sub(c.Name)
		switch c.Kind {
		case KindModel:
			require.Len(t, c.Weights, 1)
			st, err := loader.OpenSafetensors(c.Weights[0])
			require.NoError(t, err)
			require.Equal(t, st.Names(), sub.Names(), c.Name)
			var params int64
			for _, n := range st.Names() {
				s, err := st.Tensor(n)
				require.NoError(t, err)
				w := want(s)
				got, err := sub.Tensor(n)
				require.NoError(t, err)
				require.Equal(t, w.DType, got.DType, "%s/%s", c.Name, n)
				require.Equal(t, w.Shape, got.Shape, "%s/%s", c.Name, n)
				require.True(t, bytes.Equal(w.Data, got.Data), "%s/%s differs", c.Name, n)
				if isFloat(s.DType) {
					params += int64(s.Numel())
				}
			}
			st.Close()
			total += len(st.Names())
			require.Equal(t, manifestParams[c.Name], params, "%s parameters (MANIFEST)", c.Name)
			require.Equal(t, manifestParams[c.Name], rep.Components[i].Params, "%s report", c.Name)
			require.Equal(t, len(st.Names()), rep.Components[i].Tensors)
		case KindTokenizer:
			require.Len(t, c.Files, 4)
			for _, fp := range c.Files {
				want, err := os.ReadFile(fp)
				require.NoError(t, err)
				got, err := f.Blob(c.Name + "/" + filepath.Base(fp))
				require.NoError(t, err)
				require.True(t, bytes.Equal(want, got), fp)
			}
			fallthrough
		default:
			require.Empty(t, sub.Names(), c.Name)
		}
	}
	require.Len(t, f.Names(), total)
	require.Equal(t, total, rep.Tensors)
}

func TestConvertGolden(t *testing.T) {
	g := goldenDir(t)
	f16 := func(s loader.Tensor) loader.Tensor {
		require.Equal(t, loader.F32, s.DType, "the golden weights are F32")
		out := loader.Tensor{Name: s.Name, DType: loader.F16, Shape: s.Shape}
		for i := 0; i < len(s.Data); i += 4 {
			h := quant.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(s.Data[i:])))
			out.Data = binary.LittleEndian.AppendUint16(out.Data, h)
		}
		return out
	}
	same := func(s loader.Tensor) loader.Tensor { return s }
	for _, c := range []struct {
		folder, dtype, meta string
		want                func(loader.Tensor) loader.Tensor
	}{
		{"tiny-unclip", "f32", "F32", same},
		{"tiny-unclip", "f16", "F16", f16},
		{"tiny-unclip-variation", "", "F32", same},
	} {
		t.Run(c.folder+"/"+c.meta, func(t *testing.T) {
			src := filepath.Join(g, c.folder)
			out := filepath.Join(t.TempDir(), "out.d2")
			var progress bytes.Buffer
			rep, err := Convert(src, out, Options{DType: c.dtype, Progress: &progress, ConverterVersion: "test-1"})
			require.NoError(t, err)
			require.Contains(t, progress.String(), "decoder")
			fi, err := os.Stat(out)
			require.NoError(t, err)
			require.Equal(t, fi.Size(), rep.FileSize)
			checkConverted(t, src, out, rep, c.meta, c.want)
		})
	}
}

// TestConvertBinEqualsSafetensors: tiny-unclip with the text encoder's and
// the decoder's safetensors replaced by tiny-unclip-bin's .bin files
// converts to the same tensors.
func TestConvertBinEqualsSafetensors(t *testing.T) {
	g := goldenDir(t)
	tmp := t.TempDir()
	mixed := filepath.Join(tmp, "tiny-unclip")
	linkTree(t, filepath.Join(g, "tiny-unclip"), mixed, func(rel string) bool {
		return rel == filepath.Join("text_encoder", "model.safetensors") ||
			rel == filepath.Join("decoder", "diffusion_pytorch_model.safetensors")
	})
	for _, f := range []string{"text_encoder/pytorch_model.bin", "decoder/diffusion_pytorch_model.bin"} {
		abs, err := filepath.Abs(filepath.Join(g, "tiny-unclip-bin", f))
		require.NoError(t, err)
		require.NoError(t, os.Symlink(abs, filepath.Join(mixed, f)))
	}
	a := filepath.Join(tmp, "st.d2")
	b := filepath.Join(tmp, "bin.d2")
	_, err := Convert(filepath.Join(g, "tiny-unclip"), a, Options{})
	require.NoError(t, err)
	rep, err := Convert(mixed, b, Options{})
	require.NoError(t, err)
	for _, c := range rep.Components {
		if c.Name == "text_encoder" || c.Name == "decoder" {
			require.Len(t, c.Files, 1)
			require.True(t, strings.HasSuffix(c.Files[0], ".bin"), c.Files[0])
		}
	}
	requireSameTensors(t, a, b)
}

func requireSameTensors(t *testing.T, a, b string) {
	t.Helper()
	fa, err := loader.Open(a)
	require.NoError(t, err)
	defer fa.Close()
	fb, err := loader.Open(b)
	require.NoError(t, err)
	defer fb.Close()
	require.Equal(t, fa.Names(), fb.Names())
	for _, n := range fa.Names() {
		x, err := fa.Tensor(n)
		require.NoError(t, err)
		y, err := fb.Tensor(n)
		require.NoError(t, err)
		require.Equal(t, x.DType, y.DType, n)
		require.Equal(t, x.Shape, y.Shape, n)
		require.True(t, bytes.Equal(x.Data, y.Data), "%s differs", n)
	}
}

// TestConvertSharded: text_proj split over two safetensors shards with an
// index converts like the single file; a weight map that lies is an error.
func TestConvertSharded(t *testing.T) {
	g := goldenDir(t)
	tmp := t.TempDir()
	sharded := filepath.Join(tmp, "tiny-unclip")
	linkTree(t, filepath.Join(g, "tiny-unclip"), sharded, func(rel string) bool {
		return rel == filepath.Join("text_proj", "diffusion_pytorch_model.safetensors")
	})
	st, err := loader.OpenSafetensors(filepath.Join(g, "tiny-unclip", "text_proj", "diffusion_pytorch_model.safetensors"))
	require.NoError(t, err)
	defer st.Close()
	var shards [2][]loader.Tensor
	weightMap := map[string]string{}
	for i, n := range st.Names() {
		x, err := st.Tensor(n)
		require.NoError(t, err)
		shards[i%2] = append(shards[i%2], x)
		weightMap[n] = fmt.Sprintf("diffusion_pytorch_model-%05d-of-00002.safetensors", i%2+1)
	}
	for i, s := range shards {
		require.NoError(t, loader.WriteSafetensors(filepath.Join(sharded, "text_proj", fmt.Sprintf("diffusion_pytorch_model-%05d-of-00002.safetensors", i+1)), s, nil))
	}
	index := filepath.Join(sharded, "text_proj", "diffusion_pytorch_model.safetensors.index.json")
	writeIndex := func(m map[string]string) {
		b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": m})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(index, b, 0o644))
	}
	writeIndex(weightMap)

	a := filepath.Join(tmp, "a.d2")
	b := filepath.Join(tmp, "b.d2")
	_, err = Convert(filepath.Join(g, "tiny-unclip"), a, Options{})
	require.NoError(t, err)
	rep, err := Convert(sharded, b, Options{})
	require.NoError(t, err)
	for _, c := range rep.Components {
		if c.Name == "text_proj" {
			require.Len(t, c.Files, 2)
		}
	}
	requireSameTensors(t, a, b)

	// A key mapped to the wrong shard.
	first := st.Names()[0]
	weightMap[first] = "diffusion_pytorch_model-00002-of-00002.safetensors"
	writeIndex(weightMap)
	_, err = Convert(sharded, filepath.Join(tmp, "c.d2"), Options{})
	require.ErrorContains(t, err, fmt.Sprintf("tensor %q is not in", first))
	require.NoFileExists(t, filepath.Join(tmp, "c.d2"))
}

// TestConvertErrors: failures name the folder, component, file or tensor,
// and never leave a partial output file.
func TestConvertErrors(t *testing.T) {
	g := goldenDir(t)
	src := filepath.Join(g, "tiny-unclip")

	t.Run("missing component folder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "p")
		linkTree(t, src, dir, func(rel string) bool { return rel == "prior" })
		out := filepath.Join(t.TempDir(), "out.d2")
		_, err := Convert(dir, out, Options{})
		require.ErrorContains(t, err, `component "prior" (PriorTransformer) is listed in model_index.json but its folder `+filepath.Join(dir, "prior")+" is missing")
		require.NoFileExists(t, out)
	})

	t.Run("corrupt weights mid-way", func(t *testing.T) {
		tmp := t.TempDir()
		dir := filepath.Join(tmp, "p")
		linkTree(t, src, dir, func(rel string) bool {
			return rel == filepath.Join("super_res_last", "diffusion_pytorch_model.safetensors")
		})
		bin, err := os.ReadFile(filepath.Join(g, "tiny-unclip-bin", "decoder", "diffusion_pytorch_model.bin"))
		require.NoError(t, err)
		bad := filepath.Join(dir, "super_res_last", "diffusion_pytorch_model.bin")
		require.NoError(t, os.WriteFile(bad, bin[:len(bin)/2], 0o644))
		outDir := filepath.Join(tmp, "out")
		require.NoError(t, os.Mkdir(outDir, 0o755))
		out := filepath.Join(outDir, "out.d2")
		_, err = Convert(dir, out, Options{})
		require.ErrorContains(t, err, bad)
		left, err := os.ReadDir(outDir)
		require.NoError(t, err)
		require.Empty(t, left, "no output or temporary file may remain")
	})

	t.Run("no weights", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "p")
		linkTree(t, src, dir, func(rel string) bool {
			return rel == filepath.Join("prior", "diffusion_pytorch_model.safetensors")
		})
		_, err := Convert(dir, filepath.Join(t.TempDir(), "out.d2"), Options{})
		require.ErrorContains(t, err, `component "prior"`)
		require.ErrorContains(t, err, "no weights")
	})

	t.Run("bad dtype", func(t *testing.T) {
		_, err := Convert(src, filepath.Join(t.TempDir(), "out.d2"), Options{DType: "int4"})
		require.ErrorContains(t, err, `unknown dtype "int4"`)
	})

	t.Run("not a pipeline", func(t *testing.T) {
		_, err := Convert(t.TempDir(), filepath.Join(t.TempDir(), "out.d2"), Options{})
		require.ErrorContains(t, err, "not a diffusers pipeline folder")
	})

	t.Run("null components skipped", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "p")
		linkTree(t, src, dir, func(rel string) bool { return rel == "model_index.json" || rel == "prior" })
		idx := `{"_class_name": "UnCLIPPipeline", "_diffusers_version": "0.25.1",
			"prior": [null, null], "safety_checker": null, "requires_safety_checker": true,
			"text_proj": ["unclip", "UnCLIPTextProjModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
			"decoder_scheduler": ["diffusers", "UnCLIPScheduler"]}`
		require.NoError(t, os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(idx), 0o644))
		p, err := OpenPipeline(dir)
		require.NoError(t, err)
		var names []string
		for _, c := range p.Components {
			names = append(names, c.Name+":"+c.Kind.String())
		}
		require.Equal(t, []string{"text_proj:model", "tokenizer:tokenizer", "decoder_scheduler:config"}, names)
	})

	t.Run("component name escapes the folder", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(`{"../x": ["a", "B"]}`), 0o644))
		_, err := OpenPipeline(dir)
		require.ErrorContains(t, err, `component name "../x"`)
	})
}

func TestConvertTensor(t *testing.T) {
	f32 := loader.Tensor{Name: "x", DType: loader.F32, Shape: []int{3}, Data: f32Bytes(1, -2.5, 65520)}
	got, err := ConvertTensor(f32, loader.F16)
	require.NoError(t, err)
	// 65520 is the first value that rounds to +Inf in binary16.
	require.Equal(t, []byte{0x00, 0x3c, 0x00, 0xc1, 0x00, 0x7c}, got.Data)
	back, err := ConvertTensor(got, loader.F32)
	require.NoError(t, err)
	require.Equal(t, f32Bytes(1, -2.5, float32(math.Inf(1))), back.Data)

	bf := loader.Tensor{Name: "b", DType: loader.BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0xc0, 0xbf}} // 1, -1.5
	got, err = ConvertTensor(bf, loader.F32)
	require.NoError(t, err)
	require.Equal(t, f32Bytes(1, -1.5), got.Data)
	got, err = ConvertTensor(bf, loader.F16)
	require.NoError(t, err)
	require.Equal(t, []byte{0x00, 0x3c, 0x00, 0xbe}, got.Data)

	ids := loader.Tensor{Name: "ids", DType: loader.I64, Shape: []int{1, 2}, Data: make([]byte, 16)}
	got, err = ConvertTensor(ids, loader.F16)
	require.NoError(t, err)
	require.Equal(t, ids, got)

	_, err = ConvertTensor(loader.Tensor{DType: loader.F32, Shape: []int{3}, Data: make([]byte, 8)}, loader.F16)
	require.ErrorContains(t, err, "8 bytes for shape [3]")
}

// TestF64ToF16 compares the single rounding with math/big rounding to 11
// significant bits (exact for results in binary16's normal range), and
// checks a case where rounding through float32 would round twice.
func TestF64ToF16(t *testing.T) {
	ref := func(x float64) uint16 {
		f, _ := new(big.Float).SetPrec(11).SetMode(big.ToNearestEven).SetFloat64(x).Float32()
		return quant.F32ToF16(f) // exact: f has 11 significant bits
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		// |x| in [2^-14, 65504]: binary16's normal range.
		x := math.Ldexp(1+r.Float64(), r.IntN(30)-14)
		if x > 65504 {
			continue
		}
		if r.IntN(2) == 0 {
			x = -x
		}
		require.Equal(t, ref(x), f64ToF16(x), "%g", x)
	}
	// 1 + 2^-11 + 2^-40: just above the halfway point between 1 and
	// 1+2^-10, so it rounds up; through float32 (which drops the 2^-40) it
	// would be a tie and round to even, down to 1.
	x := 1 + math.Ldexp(1, -11) + math.Ldexp(1, -40)
	require.Equal(t, uint16(0x3c01), f64ToF16(x))
	require.Equal(t, uint16(0x3c00), quant.F32ToF16(float32(x)))
	for _, c := range []struct {
		x    float64
		want uint16
	}{
		{0, 0}, {math.Copysign(0, -1), 0x8000}, {math.Inf(1), 0x7c00}, {math.Inf(-1), 0xfc00},
		{1e300, 0x7c00}, {65519.99, 0x7bff}, {65520, 0x7c00}, {1e-300, 0},
		{math.Ldexp(1, -24), 1}, {math.Ldexp(1, -25), 0}, {math.Ldexp(1, -25) * (1 + 1e-12), 1},
	} {
		require.Equal(t, c.want, f64ToF16(c.x), "%g", c.x)
	}
	require.True(t, f64ToF16(math.NaN())&0x7c00 == 0x7c00 && f64ToF16(math.NaN())&0x3ff != 0)
}

func TestFormatHelpers(t *testing.T) {
	require.Equal(t, "0", groupDigits(0))
	require.Equal(t, "999", groupDigits(999))
	require.Equal(t, "1,000", groupDigits(1000))
	require.Equal(t, "123,650,304", groupDigits(123650304))
	require.Equal(t, "-1,234", groupDigits(-1234))
	require.Equal(t, "999 B", humanBytes(999))
	require.Equal(t, "495.0 MB", humanBytes(495_000_000))
	require.Equal(t, "13.7 GB", humanBytes(13_690_000_000))
	require.Equal(t, "1.0 MB", humanBytes(999_960))
	require.True(t, slices.Equal([]string{"vocab.json", "merges.txt"}, TokenizerFiles[:2]))
}
