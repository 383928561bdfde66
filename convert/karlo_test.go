package convert

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// karloGolden returns the original-tiny folder, its configs and the cut
// tokenizer of original-tiny-diffusers.
func karloGolden(t *testing.T) (orig, configs, tokenizer string) {
	g, err := filepath.Abs(goldenDir(t)) // absolute: tests link to these files
	require.NoError(t, err)
	orig = filepath.Join(g, "original-tiny")
	return orig, filepath.Join(orig, "configs"), filepath.Join(g, "original-tiny-diffusers", "tokenizer")
}

var (
	refOnce sync.Once
	refPath string
	refErr  error
)

// diffusersReference converts original-tiny-diffusers once per test binary.
func diffusersReference(t *testing.T) string {
	g := goldenDir(t)
	refOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dalle2-karlo-ref")
		if err != nil {
			refErr = err
			return
		}
		refPath = filepath.Join(dir, "diffusers.d2")
		_, refErr = Convert(filepath.Join(g, "original-tiny-diffusers"), refPath, Options{})
	})
	require.NoError(t, refErr)
	return refPath
}

// convertTiny converts original-tiny with files possibly replaced.
func convertTiny(t *testing.T, edit func(*KarloFiles), cfgDir string) (string, error) {
	orig, configs, tok := karloGolden(t)
	files, err := FindKarloFiles(orig)
	require.NoError(t, err)
	if edit != nil {
		edit(&files)
	}
	if cfgDir == "" {
		cfgDir = configs
	}
	cfg, err := LoadKarloConfig(cfgDir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(t.TempDir(), "karlo.d2")
	_, err = ConvertKarlo(files, out, KarloOptions{Config: cfg, TokenizerDir: tok})
	return out, err
}

// TestConvertKarloMatchesDiffusers: the original release layout converts to
// exactly the tensors (bit for bit), configs and tokenizer files of the
// reference converter's diffusers folder.
func TestConvertKarloMatchesDiffusers(t *testing.T) {
	orig, _, _ := karloGolden(t)
	files, err := FindKarloFiles(orig)
	require.NoError(t, err)
	require.Equal(t, KarloFiles{
		Prior: filepath.Join(orig, "prior.ckpt"), Decoder: filepath.Join(orig, "decoder.ckpt"),
		SR: filepath.Join(orig, "sr.ckpt"), CLIP: filepath.Join(orig, "clip.pt"),
		CLIPStats: filepath.Join(orig, "clip_stats.th"),
	}, files)
	require.True(t, IsKarloDir(orig))
	require.False(t, IsKarloDir(filepath.Join(goldenDir(t), "original-tiny-diffusers")))

	got, err := convertTiny(t, nil, "")
	require.NoError(t, err)
	want := diffusersReference(t)
	requireSameTensors(t, want, got)

	fw, err := loader.Open(want)
	require.NoError(t, err)
	defer fw.Close()
	fg, err := loader.Open(got)
	require.NoError(t, err)
	defer fg.Close()
	require.Len(t, fg.Names(), 514)
	require.Equal(t, "karlo-original", fg.Meta()[MetaLayout])
	require.Equal(t, "original-tiny", fg.Meta()[loader.MetaSource])
	require.Equal(t, len(fw.Components()), len(fg.Components()))
	for i, cw := range fw.Components() {
		cg := fg.Components()[i]
		require.Equal(t, cw.Name, cg.Name)
		require.Equal(t, cw.Class, cg.Class)
		var mw, mg map[string]any
		require.NoError(t, json.Unmarshal(cw.Config, &mw))
		require.NoError(t, json.Unmarshal(cg.Config, &mg), string(cg.Config))
		// Version stamps and the hub name are the only keys not derived.
		for _, k := range []string{"_diffusers_version", "transformers_version", "_name_or_path"} {
			delete(mw, k)
		}
		require.Equal(t, mw, mg, cw.Name)
	}
	require.Equal(t, len(fw.Blobs()), len(fg.Blobs()))
	for _, b := range fw.Blobs() {
		x, err := fw.Blob(b.Name)
		require.NoError(t, err)
		y, err := fg.Blob(b.Name)
		require.NoError(t, err)
		require.True(t, bytes.Equal(x, y), b.Name)
	}
}

// TestConvertKarloVariants: the Lightning-style prior (extra top-level
// entries, optimizer state, OmegaConf objects, cuda:0 storages) and the
// stats as a list or as one [2, D] tensor give the same tensors.
func TestConvertKarloVariants(t *testing.T) {
	orig, _, _ := karloGolden(t)
	want := diffusersReference(t)
	ref, err := loader.Open(want)
	require.NoError(t, err)
	defer ref.Close()
	for _, c := range []struct {
		name string
		edit func(*KarloFiles)
	}{
		{"prior-lightning", func(k *KarloFiles) { k.Prior = filepath.Join(orig, "variants", "prior-lightning.ckpt") }},
		{"stats-list", func(k *KarloFiles) { k.CLIPStats = filepath.Join(orig, "variants", "clip_stats-list.th") }},
		{"stats-stacked", func(k *KarloFiles) { k.CLIPStats = filepath.Join(orig, "variants", "clip_stats-stacked.th") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Compared at the plan (what would be written), which is what
			// ConvertKarlo writes; TestConvertKarloMatchesDiffusers covers
			// the writing.
			_, configs, tok := karloGolden(t)
			files, err := FindKarloFiles(orig)
			require.NoError(t, err)
			c.edit(&files)
			cfg, err := LoadKarloConfig(configs)
			require.NoError(t, err)
			k, err := openKarlo(files)
			require.NoError(t, err)
			defer k.close()
			comps, err := k.plan(cfg, tok)
			require.NoError(t, err)
			n := 0
			for _, comp := range comps {
				if comp.kind != KindModel {
					continue
				}
				for _, name := range comp.plan.Names() {
					got, err := comp.plan.Tensor(name)
					require.NoError(t, err)
					got, err = ConvertTensor(got, loader.F32)
					require.NoError(t, err)
					w, err := ref.Tensor(comp.name + "/" + name)
					require.NoError(t, err)
					require.Equal(t, w.Shape, got.Shape, name)
					require.True(t, bytes.Equal(w.Data, got.Data), "%s/%s differs", comp.name, name)
					n++
				}
			}
			require.Equal(t, len(ref.Names()), n)
		})
	}

	// The Lightning file really is one: cuda:0 storages, opaque globals.
	raw := readZipEntry(t, filepath.Join(orig, "variants", "prior-lightning.ckpt"), "data.pkl")
	require.Contains(t, string(raw), "cuda:0")
	_, err = Unpickle(raw, PickleOptions{})
	require.ErrorContains(t, err, "omegaconf")
}

// TestReadCLIPStatsForms: tuple, list and stacked forms read alike.
func TestReadCLIPStatsForms(t *testing.T) {
	orig, _, _ := karloGolden(t)
	m0, s0, err := ReadCLIPStats(filepath.Join(orig, "clip_stats.th"))
	require.NoError(t, err)
	require.Equal(t, []int{128}, m0.Shape)
	require.False(t, bytes.Equal(m0.Data, s0.Data))
	for _, v := range []string{"clip_stats-list.th", "clip_stats-stacked.th"} {
		m, s, err := ReadCLIPStats(filepath.Join(orig, "variants", v))
		require.NoError(t, err, v)
		require.Equal(t, m0, m, v)
		require.Equal(t, s0, s, v)
	}
	// A checkpoint is not a stats file.
	_, _, err = ReadCLIPStats(filepath.Join(orig, "prior.ckpt"))
	require.ErrorContains(t, err, "prior.ckpt")
	require.ErrorContains(t, err, "want (mean, std)")
}

// editConfigs copies the tiny configs to a temp folder with old replaced
// by new in file name.
func editConfigs(t *testing.T, name, old, new string) string {
	_, configs, _ := karloGolden(t)
	dir := t.TempDir()
	des, err := os.ReadDir(configs)
	require.NoError(t, err)
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(configs, de.Name()))
		require.NoError(t, err)
		if de.Name() == name {
			require.Contains(t, string(b), old)
			b = []byte(strings.Replace(string(b), old, new, 1))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, de.Name()), b, 0o644))
	}
	return dir
}

// TestConvertKarloWrongHeadSize: a head size that does not divide the
// widths, and an image size that contradicts the attention placement, are
// caught naming the config key and the tensor shape; a head size that
// divides the widths cannot be caught (the split is then a different
// permutation), which --help and the README document.
func TestConvertKarloWrongHeadSize(t *testing.T) {
	for _, c := range []struct {
		file, old, new string
		msgs           []string
	}{
		{"prior.yaml", "xf_heads: 3", "xf_heads: 5",
			[]string{"prior.yaml", "model.hparams.xf_heads 5 does not divide the prior width 96", "model.positional_embedding [1 81 96]"}},
		{"decoder.yaml", "num_head_channels: 16", "num_head_channels: 24",
			[]string{"decoder.yaml", "model.hparams.num_head_channels 24", "does not divide the 64 channels", "model.input_blocks.3.1.qkv.weight [192 64 1]"}},
		{"decoder.yaml", "num_head_channels: 16", "num_head_channels: -1",
			[]string{"decoder.yaml", "num_heads", "-1"}},
		{"decoder.yaml", "image_size: 16", "image_size: 32",
			[]string{"decoder.yaml", "model.hparams.image_size 32 with attention_resolutions [8] puts attention at levels []", "has it at levels [1]"}},
		{"decoder.yaml", "xf_width: 48", "xf_width: 64",
			[]string{"decoder.yaml", "model.hparams.xf_width is 64", "model.text_seq_proj.0.weight has shape [48 128]"}},
		{"prior.yaml", "xf_width: 96", "xf_width: 128",
			[]string{"prior.yaml", "model.hparams.xf_width is 128", "[1 81 96]"}},
		{"sr.yaml", "depth: 1", "depth: 2",
			[]string{"sr.yaml", "model.hparams.depth is 2", "1 residual blocks per level"}},
		{"clip.json", `"transformer_heads": 2`, `"transformer_heads": 3`,
			[]string{"clip.json", "transformer_heads 3 does not divide the text width 128"}},
	} {
		t.Run(c.file+":"+c.new, func(t *testing.T) {
			out, err := convertTiny(t, nil, editConfigs(t, c.file, c.old, c.new))
			require.Error(t, err)
			for _, m := range c.msgs {
				require.ErrorContains(t, err, m)
			}
			require.NoFileExists(t, out)
		})
	}

	// Undetectable: 2 prior heads of 48 instead of 3 of 32 divide every
	// shape; the conversion goes through with a different row permutation
	// (checked at the plan, which is what would be written).
	_, _, tok := karloGolden(t)
	cfg, err := LoadKarloConfig(editConfigs(t, "prior.yaml", "xf_heads: 3", "xf_heads: 2"))
	require.NoError(t, err)
	orig, _, _ := karloGolden(t)
	files, err := FindKarloFiles(orig)
	require.NoError(t, err)
	k, err := openKarlo(files)
	require.NoError(t, err)
	defer k.close()
	comps, err := k.plan(cfg, tok)
	require.NoError(t, err)
	prior := comps[2]
	require.Equal(t, "prior", prior.name)
	ref, err := loader.Open(diffusersReference(t))
	require.NoError(t, err)
	defer ref.Close()
	a, err := prior.plan.Tensor("transformer_blocks.0.attn1.to_k.weight")
	require.NoError(t, err)
	b, err := ref.Tensor("prior/transformer_blocks.0.attn1.to_k.weight")
	require.NoError(t, err)
	require.Equal(t, b.Shape, a.Shape)
	require.False(t, bytes.Equal(a.Data, b.Data), "a wrong head size permutes the rows")
	var pc map[string]any
	require.NoError(t, json.Unmarshal(prior.config, &pc))
	require.EqualValues(t, 2, pc["num_attention_heads"])
	require.EqualValues(t, 48, pc["attention_head_dim"])

	// Without --config the release head size 64 does not fit the tiny
	// prior's width 96: an error that points to --config.
	_, err = ConvertKarlo(files, filepath.Join(t.TempDir(), "x.d2"), KarloOptions{})
	require.ErrorContains(t, err, "prior width 96")
	require.ErrorContains(t, err, "--config")
}

// TestConvertKarloBuiltinTokenizerTooBig: the standard CLIP vocabulary does
// not fit a 1000-token text encoder: an error pointing to --tokenizer.
func TestConvertKarloBuiltinTokenizerTooBig(t *testing.T) {
	orig, configs, _ := karloGolden(t)
	files, err := FindKarloFiles(orig)
	require.NoError(t, err)
	cfg, err := LoadKarloConfig(configs)
	require.NoError(t, err)
	_, err = ConvertKarlo(files, filepath.Join(t.TempDir(), "x.d2"), KarloOptions{Config: cfg})
	require.ErrorContains(t, err, "token ids up to 49407")
	require.ErrorContains(t, err, "only 1000 rows")
	require.ErrorContains(t, err, "--tokenizer")
}

// TestKarloTokenizerDir: a tokenizer folder, also a transformers CLIP
// model folder, or one lacking merges.txt.
func TestKarloTokenizerDir(t *testing.T) {
	g := goldenDir(t)
	c, err := karloTokenizer(filepath.Join(g, "original-tiny-diffusers", "clip_hf_full"), 1000)
	require.NoError(t, err)
	require.Equal(t, []string{"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}, c.blobOrder)
	require.Contains(t, string(c.config), "CLIPTokenizer")
	_, err = karloTokenizer(filepath.Join(g, "original-tiny-diffusers", "clip_hf_full"), 999)
	require.ErrorContains(t, err, "token ids up to 999")
	_, err = karloTokenizer(filepath.Join(g, "original-tiny-diffusers", "prior"), 1000)
	require.ErrorContains(t, err, "vocab.json")
}

func readZipEntry(t *testing.T, path, suffix string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	defer zr.Close()
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/"+suffix) {
			rc, err := f.Open()
			require.NoError(t, err)
			b, err := io.ReadAll(rc)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			return b
		}
	}
	t.Fatalf("%s has no entry %s", path, suffix)
	return nil
}

// rewriteZip copies the archive src to dst (entries stored), replacing old
// by new in the entry ending in suffix.
func rewriteZip(t *testing.T, src, dst, suffix, old, new string) {
	t.Helper()
	zr, err := zip.OpenReader(src)
	require.NoError(t, err)
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	found := false
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		if strings.HasSuffix(f.Name, "/"+suffix) {
			require.Contains(t, string(b), old)
			b = bytes.Replace(b, []byte(old), []byte(new), 1)
			found = true
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(b)
		require.NoError(t, err)
	}
	require.True(t, found)
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(dst, buf.Bytes(), 0o644))
}

// TestConvertKarloFileErrors: a missing file, a truncated archive, an
// unknown storage type and a pickle global outside the allow-list each
// give an error naming the file.
func TestConvertKarloFileErrors(t *testing.T) {
	orig, _, _ := karloGolden(t)
	dir := t.TempDir()
	convertWith := func(edit func(*KarloFiles)) error {
		_, err := convertTiny(t, edit, "")
		return err
	}

	// Missing: one named file absent; a folder lacking files.
	missing := filepath.Join(dir, "nope.ckpt")
	err := convertWith(func(k *KarloFiles) { k.Decoder = missing })
	require.ErrorContains(t, err, "decoder checkpoint")
	require.ErrorContains(t, err, missing)
	partial := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(orig, "prior.ckpt"), filepath.Join(partial, "prior-ckpt-step=01000000-of-01000000.ckpt")))
	files, err := FindKarloFiles(partial)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(partial, "prior-ckpt-step=01000000-of-01000000.ckpt"), files.Prior)
	err = files.Check()
	require.ErrorContains(t, err, "the decoder checkpoint is missing")
	require.ErrorContains(t, err, "--decoder")
	require.ErrorContains(t, err, "ViT-L-14.pt or clip.pt")
	require.ErrorContains(t, err, "--clip-stats")
	require.NotContains(t, err.Error(), "prior checkpoint")

	// Truncated archives, each role.
	for _, c := range []struct {
		src  string
		edit func(*KarloFiles, string)
	}{
		{"prior.ckpt", func(k *KarloFiles, p string) { k.Prior = p }},
		{"sr.ckpt", func(k *KarloFiles, p string) { k.SR = p }},
		{"clip.pt", func(k *KarloFiles, p string) { k.CLIP = p }},
		{"clip_stats.th", func(k *KarloFiles, p string) { k.CLIPStats = p }},
	} {
		b, err := os.ReadFile(filepath.Join(orig, c.src))
		require.NoError(t, err)
		p := filepath.Join(dir, "truncated-"+c.src)
		require.NoError(t, os.WriteFile(p, b[:len(b)*2/3], 0o644))
		err = convertWith(func(k *KarloFiles) { c.edit(k, p) })
		require.ErrorContains(t, err, p, c.src)
		require.ErrorContains(t, err, "not a torch.save zip archive", c.src)
	}

	// An unknown storage type: in a checkpoint (read with opaque globals
	// allowed, so the storage check reports it) and in the stats file
	// (strict allow-list).
	badCkpt := filepath.Join(dir, "qint-prior.ckpt")
	rewriteZip(t, filepath.Join(orig, "prior.ckpt"), badCkpt, "data.pkl", "torch\nFloatStorage\n", "torch\nQUInt8Storage\n")
	err = convertWith(func(k *KarloFiles) { k.Prior = badCkpt })
	require.ErrorContains(t, err, badCkpt)
	require.ErrorContains(t, err, "unknown storage type torch.QUInt8Storage")
	badStats := filepath.Join(dir, "qint-stats.th")
	rewriteZip(t, filepath.Join(orig, "clip_stats.th"), badStats, "data.pkl", "torch\nFloatStorage\n", "torch\nQUInt8Storage\n")
	err = convertWith(func(k *KarloFiles) { k.CLIPStats = badStats })
	require.ErrorContains(t, err, badStats)
	require.ErrorContains(t, err, "torch.QUInt8Storage")
	require.ErrorContains(t, err, "unknown storage type")

	// Globals outside the allow-list: os.system in the TorchScript
	// archive (only __torch__.* classes are accepted there), builtins.eval
	// in the stats file.
	badClip := filepath.Join(dir, "evil-clip.pt")
	rewriteZip(t, filepath.Join(orig, "clip.pt"), badClip, "data.pkl", "collections\nOrderedDict\n", "os\nsystem\n")
	err = convertWith(func(k *KarloFiles) { k.CLIP = badClip })
	require.ErrorContains(t, err, badClip)
	require.ErrorContains(t, err, `global "os.system" is not allowed`)
	badStats2 := filepath.Join(dir, "evil-stats.th")
	rewriteZip(t, filepath.Join(orig, "clip_stats.th"), badStats2, "data.pkl", "collections\nOrderedDict\n", "builtins\neval\n")
	err = convertWith(func(k *KarloFiles) { k.CLIPStats = badStats2 })
	require.ErrorContains(t, err, badStats2)
	require.ErrorContains(t, err, `global "builtins.eval" is not allowed`)

	// A checkpoint whose state dict holds a non-tensor.
	notTensor := filepath.Join(dir, "odd-prior.ckpt")
	rewriteZip(t, filepath.Join(orig, "prior.ckpt"), notTensor, "data.pkl", "torch._utils\n_rebuild_tensor_v2\n", "lightning\nThing\n")
	err = convertWith(func(k *KarloFiles) { k.Prior = notTensor })
	require.ErrorContains(t, err, notTensor)
	require.ErrorContains(t, err, "not a tensor")

	// Files swapped: the decoder given as the prior.
	err = convertWith(func(k *KarloFiles) { k.Prior = filepath.Join(orig, "decoder.ckpt") })
	require.ErrorContains(t, err, "not a Karlo prior checkpoint")
	require.ErrorContains(t, err, "decoder.ckpt")
}

// TestFindKarloFilesRealNames: the release's own file names are found, and
// two candidates for one file are an error naming them.
func TestFindKarloFilesRealNames(t *testing.T) {
	orig, _, _ := karloGolden(t)
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"prior.ckpt": "prior-ckpt-step=01000000-of-01000000.ckpt", "decoder.ckpt": "decoder-ckpt-step=01000000-of-01000000.ckpt",
		"sr.ckpt": "improved-sr-ckpt-step=1.2M.ckpt", "clip.pt": "ViT-L-14.pt", "clip_stats.th": "ViT-L-14_stats.th",
	} {
		require.NoError(t, os.Symlink(filepath.Join(orig, src), filepath.Join(dir, dst)))
	}
	files, err := FindKarloFiles(dir)
	require.NoError(t, err)
	require.NoError(t, files.Check())
	require.Equal(t, filepath.Join(dir, "improved-sr-ckpt-step=1.2M.ckpt"), files.SR)
	require.Equal(t, filepath.Join(dir, "ViT-L-14.pt"), files.CLIP)
	require.Equal(t, filepath.Join(dir, "ViT-L-14_stats.th"), files.CLIPStats)

	// Pattern fallback, and ambiguity.
	dir2 := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(orig, "clip.pt"), filepath.Join(dir2, "ViT-B-32.pt")))
	files, err = FindKarloFiles(dir2)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir2, "ViT-B-32.pt"), files.CLIP)
	require.NoError(t, os.Symlink(filepath.Join(orig, "clip.pt"), filepath.Join(dir2, "RN50.pt")))
	_, err = FindKarloFiles(dir2)
	require.ErrorContains(t, err, "several candidates for the CLIP archive")
	require.ErrorContains(t, err, "--clip")
}

// TestLoadKarloConfig reads the tiny YAML configs.
func TestLoadKarloConfig(t *testing.T) {
	_, configs, _ := karloGolden(t)
	c, err := LoadKarloConfig(configs)
	require.NoError(t, err)
	require.Equal(t, 3, c.Prior.XfHeads)
	require.Equal(t, 96, c.Prior.XfWidth)
	require.Equal(t, 2, c.Prior.XfLayers)
	require.True(t, c.Prior.Diffusion.PredictXstart)
	require.Equal(t, 16, c.Decoder.ImageSize)
	require.Equal(t, 16, c.Decoder.NumHeadChannels)
	require.Equal(t, []int{1, 2}, c.Decoder.ChannelMult)
	require.Equal(t, []int{8}, c.Decoder.AttentionResolutions)
	require.True(t, *c.Decoder.UseScaleShiftNorm)
	require.True(t, c.Decoder.Diffusion.LearnSigma)
	require.Equal(t, []int{1, 2}, c.SR.ChannelsMultiple)
	require.Equal(t, 32, c.SR.Channels)
	require.Equal(t, 2, c.CLIP.TransformerHeads)
	require.Equal(t, 0, c.SR.OutputSize)

	// A single YAML file; an unknown model.type; a folder without configs.
	c, err = LoadKarloConfig(filepath.Join(configs, "decoder.yaml"))
	require.NoError(t, err)
	require.Equal(t, 16, c.Decoder.ImageSize)
	require.Equal(t, DefaultKarloConfig().Prior, c.Prior)
	_, err = LoadKarloConfig(editConfigs(t, "sr.yaml", "type: improved_sr_64_256", "type: improved_sr_256_1024"))
	require.ErrorContains(t, err, "sr.yaml: model.type")
	_, err = LoadKarloConfig(editConfigs(t, "prior.yaml", "xf_heads: 3", "xf_heads: three"))
	require.ErrorContains(t, err, "model.hparams.xf_heads")
	require.ErrorContains(t, err, `"three"`)
	_, err = LoadKarloConfig(t.TempDir())
	require.ErrorContains(t, err, "no Karlo *.yaml config")
}

func TestKarloSchedulerConfigs(t *testing.T) {
	d := DefaultKarloConfig()
	raw, err := d.Prior.Diffusion.schedulerConfig("prior", 5)
	require.NoError(t, err)
	require.JSONEq(t, `{"_class_name":"UnCLIPScheduler","beta_schedule":"squaredcos_cap_v2","clip_sample":true,
		"clip_sample_range":5,"num_train_timesteps":1000,"prediction_type":"sample","variance_type":"fixed_small_log"}`, string(raw))
	raw, err = d.Decoder.Diffusion.schedulerConfig("decoder", 1)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"variance_type": "learned_range"`)
	require.Contains(t, string(raw), `"prediction_type": "epsilon"`)
	bad := d.SR.Diffusion
	bad.SigmaSmall = false
	_, err = bad.schedulerConfig("sr.yaml", 1)
	require.ErrorContains(t, err, "sr.yaml: diffusion.sigma_small false")
	bad = d.SR.Diffusion
	bad.NoiseSchedule = "linear"
	_, err = bad.schedulerConfig("sr.yaml", 1)
	require.ErrorContains(t, err, `noise_schedule "linear"`)
}

// TestMappedSplits checks the row selections against spec §13.3 on small
// index tensors: head-interleaved q/k/v and k/v, OpenAI's contiguous
// thirds, squeeze and transpose.
func TestMappedSplits(t *testing.T) {
	idx := func(shape ...int) loader.Tensor {
		n := prod(shape)
		b := make([]byte, 0, 4*n)
		for i := range n {
			b = append(b, f32Bytes(float32(i))...)
		}
		return loader.Tensor{DType: loader.F32, Shape: shape, Data: b}
	}
	rowsOf := func(t loader.Tensor) []float32 { // first element of each row
		cols := len(t.Data) / 4 / t.Shape[0]
		var out []float32
		for r := range t.Shape[0] {
			out = append(out, float32frombytes(t.Data[4*r*cols:]))
		}
		return out
	}
	// 2 heads of size 2, 3 projections: rows [q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1].
	src := idx(12, 1, 1)
	for part, want := range [][]float32{{0, 1, 6, 7}, {2, 3, 8, 9}, {4, 5, 10, 11}} {
		m := &mapped{squeeze: true, rows: &rowSplit{parts: 3, part: part, head: 2}}
		out, err := m.apply(src)
		require.NoError(t, err)
		require.Equal(t, []int{4, 1}, out.Shape)
		require.Equal(t, want, rowsOf(out))
	}
	// encoder_kv: per head [k | v].
	m := &mapped{rows: &rowSplit{parts: 2, part: 1, head: 2}}
	out, err := m.apply(idx(8, 3))
	require.NoError(t, err)
	require.Equal(t, []float32{6, 9, 18, 21}, rowsOf(out))
	// Contiguous thirds.
	m = &mapped{rows: &rowSplit{parts: 3, part: 2}}
	out, err = m.apply(idx(6))
	require.NoError(t, err)
	require.Equal(t, f32Bytes(4, 5), out.Data)
	// Transpose [2, 3] -> [3, 2].
	m = &mapped{transpose: true}
	out, err = m.apply(idx(2, 3))
	require.NoError(t, err)
	require.Equal(t, []int{3, 2}, out.Shape)
	require.Equal(t, f32Bytes(0, 3, 1, 4, 2, 5), out.Data)
	// Shape errors.
	_, err = (&mapped{rows: &rowSplit{parts: 3, head: 5, headFrom: "x.yaml"}}).outShape([]int{12, 4})
	require.ErrorContains(t, err, "head size from x.yaml")
	_, err = (&mapped{squeeze: true}).outShape([]int{4, 4, 3})
	require.ErrorContains(t, err, "trailing axis of size 1")
}

func float32frombytes(b []byte) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}
