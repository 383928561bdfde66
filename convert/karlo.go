package convert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dalle2/dalle2/loader"
)

// KarloFiles are the five files of the original kakaobrain/karlo release.
type KarloFiles struct {
	Prior     string // prior-ckpt-step=01000000-of-01000000.ckpt
	Decoder   string // decoder-ckpt-step=01000000-of-01000000.ckpt (decoder U-Net and text_proj)
	SR        string // improved-sr-ckpt-step=1.2M.ckpt (both super-resolution U-Nets)
	CLIP      string // ViT-L-14.pt, OpenAI's TorchScript CLIP (its text tower becomes text_encoder)
	CLIPStats string // ViT-L-14_stats.th (mean and std of the CLIP image embedding)
}

// karloRoles describes how each file is recognised in a folder: the
// release's names and original-tiny's, then a unique match of a pattern.
var karloRoles = []struct {
	role  string
	flag  string
	field func(*KarloFiles) *string
	names []string
	match func(lower string) bool
}{
	{"prior checkpoint", "--prior", func(k *KarloFiles) *string { return &k.Prior },
		[]string{"prior-ckpt-step=01000000-of-01000000.ckpt", "prior.ckpt"},
		func(n string) bool { return strings.HasPrefix(n, "prior") && strings.HasSuffix(n, ".ckpt") }},
	{"decoder checkpoint", "--decoder", func(k *KarloFiles) *string { return &k.Decoder },
		[]string{"decoder-ckpt-step=01000000-of-01000000.ckpt", "decoder.ckpt"},
		func(n string) bool { return strings.HasPrefix(n, "decoder") && strings.HasSuffix(n, ".ckpt") }},
	{"super-resolution checkpoint", "--sr", func(k *KarloFiles) *string { return &k.SR },
		[]string{"improved-sr-ckpt-step=1.2M.ckpt", "sr.ckpt"},
		func(n string) bool {
			return strings.HasSuffix(n, ".ckpt") && strings.Contains(n, "sr") &&
				!strings.HasPrefix(n, "prior") && !strings.HasPrefix(n, "decoder")
		}},
	{"CLIP archive", "--clip", func(k *KarloFiles) *string { return &k.CLIP },
		[]string{"ViT-L-14.pt", "clip.pt"},
		func(n string) bool { return strings.HasSuffix(n, ".pt") }},
	{"CLIP stats file", "--clip-stats", func(k *KarloFiles) *string { return &k.CLIPStats },
		[]string{"ViT-L-14_stats.th", "clip_stats.th"},
		func(n string) bool { return strings.HasSuffix(n, ".th") && strings.Contains(n, "stats") }},
}

// FindKarloFiles looks for the release files in dir: first under the
// release's names (prior-ckpt-step=01000000-of-01000000.ckpt, …,
// ViT-L-14.pt, ViT-L-14_stats.th), then under the short names prior.ckpt,
// decoder.ckpt, sr.ckpt, clip.pt, clip_stats.th, then as the only file
// matching prior*.ckpt, decoder*.ckpt, *sr*.ckpt, *.pt, *stats*.th. Files
// not found stay empty (Check reports them); several candidates for one
// file are an error.
func FindKarloFiles(dir string) (KarloFiles, error) {
	var k KarloFiles
	des, err := os.ReadDir(dir)
	if err != nil {
		return k, fmt.Errorf("convert: %w", err)
	}
	var names []string
	for _, de := range des {
		if !de.IsDir() {
			names = append(names, de.Name())
		}
	}
	for _, r := range karloRoles {
		dst := r.field(&k)
		for _, n := range r.names {
			if slices.Contains(names, n) {
				*dst = filepath.Join(dir, n)
				break
			}
		}
		if *dst != "" {
			continue
		}
		var cands []string
		for _, n := range names {
			if r.match(strings.ToLower(n)) {
				cands = append(cands, n)
			}
		}
		switch len(cands) {
		case 0:
		case 1:
			*dst = filepath.Join(dir, cands[0])
		default:
			return k, fmt.Errorf("convert: %s: several candidates for the %s (%s); name it with %s",
				dir, r.role, strings.Join(cands, ", "), r.flag)
		}
	}
	return k, nil
}

// IsKarloDir reports whether dir holds an original Karlo release rather
// than a diffusers folder: no model_index.json, and a prior or decoder
// checkpoint.
func IsKarloDir(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "model_index.json")); err == nil {
		return false
	}
	k, _ := FindKarloFiles(dir)
	return k.Prior != "" || k.Decoder != ""
}

// Check reports missing files, naming each one and its flag.
func (k KarloFiles) Check() error {
	var errs []error
	for _, r := range karloRoles {
		p := *r.field(&k)
		if p == "" {
			errs = append(errs, fmt.Errorf("convert: the %s is missing (looked for %s; name it with %s)",
				r.role, strings.Join(r.names, " or "), r.flag))
			continue
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("convert: %s: %w", r.role, err))
		case fi.IsDir():
			errs = append(errs, fmt.Errorf("convert: %s %s is a folder, not a file", r.role, p))
		}
	}
	return errors.Join(errs...)
}

// KarloOptions configures ConvertKarlo.
type KarloOptions struct {
	Options
	// Config gives what the weight files do not store; nil means
	// DefaultKarloConfig (the release's values).
	Config *KarloConfig
	// TokenizerDir is a folder with vocab.json and merges.txt (and
	// optionally tokenizer_config.json, special_tokens_map.json); "" means
	// the built-in standard CLIP tokenizer.
	TokenizerDir string
	// Source is recorded as the file's "source" metadata; "" means the
	// name of the prior checkpoint's folder.
	Source string
}

// ConvertKarlo converts the original Karlo release to the weight file dst,
// with the components diffusers' conversion makes (text_encoder from the
// CLIP archive's text tower, prior with the stats, text_proj and decoder
// from the decoder checkpoint, super_res_first and super_res_last, the
// three schedulers and the tokenizer) under the same names and with the
// same tensors: copies, row selections of the head-interleaved fused
// projections, dropped length-1 axes and one transpose, never arithmetic
// (spec §13). Everything is mapped and checked before anything is written;
// a tensor left over in a checkpoint is an error. The file appears at dst
// only if everything succeeded.
func ConvertKarlo(files KarloFiles, dst string, opt KarloOptions) (*Report, error) {
	target, err := ParseDType(opt.DType)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := files.Check(); err != nil {
		return nil, err
	}
	cfg := opt.Config
	if cfg == nil {
		cfg = DefaultKarloConfig()
	}
	k, err := openKarlo(files)
	if err != nil {
		return nil, err
	}
	defer k.close()
	comps, err := k.plan(cfg, opt.TokenizerDir)
	if err != nil {
		return nil, err
	}

	w, err := loader.Create(dst)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	rep, err := writeKarlo(w, comps, files, target, opt)
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("convert: %s: %w", dst, err)
	}
	rep.Output = dst
	if fi, err := os.Stat(dst); err == nil {
		rep.FileSize = fi.Size()
	}
	return rep, nil
}

// karloComponent is one planned output component.
type karloComponent struct {
	name, class string
	kind        ComponentKind
	config      json.RawMessage
	plan        *plan             // KindModel
	blobs       map[string][]byte // KindTokenizer: file name -> bytes
	blobOrder   []string
	files       []string
}

func writeKarlo(w *loader.Writer, comps []karloComponent, files KarloFiles, target loader.DType, opt KarloOptions) (*Report, error) {
	src := opt.Source
	if src == "" {
		abs, err := filepath.Abs(filepath.Dir(files.Prior))
		if err != nil {
			abs = filepath.Dir(files.Prior)
		}
		src = filepath.Base(abs)
	}
	converter := "dalle2"
	if opt.ConverterVersion != "" {
		converter += " " + opt.ConverterVersion
	}
	w.SetMeta(loader.MetaSource, src)
	w.SetMeta(loader.MetaConverter, converter)
	w.SetMeta(loader.MetaDType, target.String())
	w.SetMeta(loader.MetaCreated, time.Now().UTC().Format(time.RFC3339))
	w.SetMeta(MetaPipeline, "UnCLIPPipeline")
	w.SetMeta(MetaLayout, "karlo-original")

	rep := &Report{Source: src, Pipeline: "UnCLIPPipeline", DType: target}
	progress(opt.Progress, "converting the original Karlo release (%s, %s, %s, %s, %s) to %s\n",
		filepath.Base(files.Prior), filepath.Base(files.Decoder), filepath.Base(files.SR),
		filepath.Base(files.CLIP), filepath.Base(files.CLIPStats), target)
	for i := range comps {
		c := &comps[i]
		cr := &ComponentReport{Name: c.name, Class: c.class, Kind: c.kind, Files: c.files}
		if err := w.AddComponent(loader.Component{Name: c.name, Class: c.class, Config: c.config}); err != nil {
			return nil, fmt.Errorf("convert: component %q: %w", c.name, err)
		}
		switch c.kind {
		case KindModel:
			if err := writeTensors(w, c.name, c.plan, c.plan.fileOf, target, cr); err != nil {
				return nil, err
			}
			progress(opt.Progress, "  %-20s %-32s %5d tensors %14s params %10s\n",
				c.name, c.class, cr.Tensors, groupDigits(cr.Params), humanBytes(cr.Bytes))
		case KindTokenizer:
			for _, f := range c.blobOrder {
				if err := w.AddBlob(c.name+"/"+f, c.blobs[f]); err != nil {
					return nil, fmt.Errorf("convert: tokenizer %s: %w", f, err)
				}
			}
			progress(opt.Progress, "  %-20s %-32s %s\n", c.name, c.class, c.kind)
		default:
			progress(opt.Progress, "  %-20s %-32s %s\n", c.name, c.class, c.kind)
		}
		rep.add(cr)
	}
	return rep, nil
}

// MetaLayout is the metadata key recording the source layout when it is
// not a diffusers folder ("karlo-original").
const MetaLayout = "source_layout"

// karloSet is the opened release.
type karloSet struct {
	prior, decoder, sr, clip, stats *karloFile
}

func (k *karloSet) close() {
	for _, f := range []*karloFile{k.prior, k.decoder, k.sr, k.clip, k.stats} {
		if f != nil {
			f.close()
		}
	}
}

func openKarlo(files KarloFiles) (_ *karloSet, err error) {
	k := &karloSet{}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	// Lightning-style checkpoints name optimizer and hyper-parameter
	// classes next to "state_dict": they become inert placeholders, and
	// only the state dict's tensors are used.
	ckpt := func(role, path string) (*karloFile, error) {
		tf, err := OpenTorch(path, PickleOptions{AllowOpaque: true})
		if err != nil {
			return nil, fmt.Errorf("convert: %s: %w", role, err)
		}
		return newKarloFile(role, path, tf, tf, tf.Info), nil
	}
	if k.prior, err = ckpt("prior checkpoint", files.Prior); err != nil {
		return nil, err
	}
	if k.decoder, err = ckpt("decoder checkpoint", files.Decoder); err != nil {
		return nil, err
	}
	if k.sr, err = ckpt("super-resolution checkpoint", files.SR); err != nil {
		return nil, err
	}
	tf, err := OpenTorchScript(files.CLIP)
	if err != nil {
		return nil, fmt.Errorf("convert: CLIP archive: %w", err)
	}
	k.clip = newKarloFile("CLIP archive", files.CLIP, tf, tf, tf.Info)
	mean, std, err := ReadCLIPStats(files.CLIPStats)
	if err != nil {
		return nil, fmt.Errorf("convert: CLIP stats file: %w", err)
	}
	ms := memSource{"mean": mean, "std": std}
	k.stats = newKarloFile("CLIP stats file", files.CLIPStats, ms, nil, ms.info)
	return k, nil
}

// ReadCLIPStats reads a CLIP stats file such as ViT-L-14_stats.th: a
// torch.save of (mean, std), as a tuple or a list of two [D] tensors, or
// one [2, D] tensor (row 0 the mean). The pickle may name only the
// allow-listed tensor globals.
func ReadCLIPStats(path string) (mean, std loader.Tensor, err error) {
	f, err := os.Open(path)
	if err != nil {
		return mean, std, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return mean, std, err
	}
	a, err := openTorchArchive(f, fi.Size(), path)
	if err != nil {
		return mean, std, err
	}
	v, pklName, err := a.unpickle("data.pkl", PickleOptions{})
	if err != nil {
		return mean, std, err
	}
	var items []any
	switch x := v.(type) {
	case Tuple:
		items = x
	case *List:
		items = x.Items
	case *TensorRef:
		items = []any{x}
	default:
		return mean, std, a.fail("%s: the object is %s; want (mean, std) as a tuple or list of two tensors, or one [2, D] tensor", pklName, describe(v))
	}
	var names []string
	var refs []*TensorRef
	for i, it := range items {
		t, ok := it.(*TensorRef)
		if !ok {
			return mean, std, a.fail("%s: item %d is %s, not a tensor", pklName, i, describe(it))
		}
		names = append(names, fmt.Sprint(i))
		refs = append(refs, t)
	}
	if len(refs) != 1 && len(refs) != 2 {
		return mean, std, a.fail("%s: %d tensors; want (mean, std)", pklName, len(refs))
	}
	tf, err := a.torchFile(names, refs)
	if err != nil {
		return mean, std, err
	}
	if len(refs) == 1 {
		t, err := tf.Tensor("0")
		if err != nil {
			return mean, std, err
		}
		if len(t.Shape) != 2 || t.Shape[0] != 2 {
			return mean, std, a.fail("%s: one tensor of shape %v; want [2, D] (mean and std rows)", pklName, t.Shape)
		}
		half := len(t.Data) / 2
		mean = loader.Tensor{Name: "mean", DType: t.DType, Shape: []int{t.Shape[1]}, Data: t.Data[:half:half]}
		std = loader.Tensor{Name: "std", DType: t.DType, Shape: []int{t.Shape[1]}, Data: t.Data[half:]}
		return mean, std, nil
	}
	if mean, err = tf.Tensor("0"); err != nil {
		return mean, std, err
	}
	if std, err = tf.Tensor("1"); err != nil {
		return mean, std, err
	}
	if len(mean.Shape) != 1 || !slices.Equal(mean.Shape, std.Shape) || mean.DType != std.DType {
		return mean, std, a.fail("%s: mean %s%v and std %s%v; want two [D] tensors of one type", pklName, mean.DType, mean.Shape, std.DType, std.Shape)
	}
	mean.Name, std.Name = "mean", "std"
	return mean, std, nil
}

// plan maps every component (all checks happen here, before writing).
func (k *karloSet) plan(cfg *KarloConfig, tokDir string) ([]karloComponent, error) {
	text, textCfg, cd, err := planCLIPText(k.clip, cfg.CLIP)
	if err != nil {
		return nil, err
	}
	prior, priorCfg, err := planPrior(k.prior, k.stats, cfg.Prior, cd)
	if err != nil {
		return nil, err
	}
	dec, decCfg, tp, tpCfg, err := planDecoder(k.decoder, cfg.Decoder, cd)
	if err != nil {
		return nil, err
	}
	srOut := cfg.SR.OutputSize
	if srOut == 0 {
		srOut = 4 * cfg.Decoder.ImageSize
	}
	srFirst, srLast, srFirstCfg, srLastCfg, err := planSR(k.sr, cfg.SR, srOut)
	if err != nil {
		return nil, err
	}
	tok, err := karloTokenizer(tokDir, cd.vocab)
	if err != nil {
		return nil, err
	}
	priorSched, err := cfg.Prior.Diffusion.schedulerConfig(cfgName(cfg.Prior.File, "prior"), 5.0)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	decSched, err := cfg.Decoder.Diffusion.schedulerConfig(cfgName(cfg.Decoder.File, "decoder"), 1.0)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	srSched, err := cfg.SR.Diffusion.schedulerConfig(cfgName(cfg.SR.File, "super-resolution"), 1.0)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	model := func(name, class string, p *plan, c json.RawMessage) karloComponent {
		return karloComponent{name: name, class: class, kind: KindModel, config: c, plan: p, files: p.files()}
	}
	sched := func(name string, c json.RawMessage) karloComponent {
		return karloComponent{name: name, class: "UnCLIPScheduler", kind: KindConfig, config: c}
	}
	// model_index.json order of the diffusers conversion.
	return []karloComponent{
		model("decoder", "UNet2DConditionModel", dec, decCfg),
		sched("decoder_scheduler", decSched),
		model("prior", "PriorTransformer", prior, priorCfg),
		sched("prior_scheduler", priorSched),
		model("super_res_first", "UNet2DModel", srFirst, srFirstCfg),
		model("super_res_last", "UNet2DModel", srLast, srLastCfg),
		sched("super_res_scheduler", srSched),
		model("text_encoder", "CLIPTextModelWithProjection", text, textCfg),
		model("text_proj", "UnCLIPTextProjModel", tp, tpCfg),
		tok,
	}, nil
}

func cfgName(file, what string) string {
	if file == "" {
		return what + " (built-in Karlo release config)"
	}
	return file
}

// karloTokenizer is the built-in CLIP tokenizer or the one in dir; its
// ids must fit the text encoder's vocab rows.
func karloTokenizer(dir string, vocabRows int) (karloComponent, error) {
	c := karloComponent{name: "tokenizer", class: "CLIPTokenizer", kind: KindTokenizer, blobs: map[string][]byte{}}
	if dir == "" {
		v, m, err := BuiltinCLIPTokenizer()
		if err != nil {
			return c, err
		}
		c.blobs["vocab.json"], c.blobs["merges.txt"] = v, m
		c.blobs["tokenizer_config.json"] = []byte(builtinTokenizerConfig)
		c.blobs["special_tokens_map.json"] = []byte(builtinSpecialTokens)
		c.blobOrder = slices.Clone(TokenizerFiles)
		c.config = json.RawMessage(builtinTokenizerConfig)
		c.files = []string{"(built-in CLIP tokenizer)"}
	} else {
		// Any folder with the two files will do, also a transformers CLIP
		// model folder (which has a config.json besides).
		for _, f := range TokenizerFiles {
			p := filepath.Join(dir, f)
			b, err := readSmall(p)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && f != "vocab.json" && f != "merges.txt" {
					continue
				}
				return c, fmt.Errorf("convert: --tokenizer: %w", err)
			}
			c.blobs[f] = b
			c.blobOrder = append(c.blobOrder, f)
			c.files = append(c.files, p)
		}
		c.config = json.RawMessage("{}")
		if b, ok := c.blobs["tokenizer_config.json"]; ok {
			if !json.Valid(b) {
				return c, fmt.Errorf("convert: --tokenizer: %s is not valid JSON", filepath.Join(dir, "tokenizer_config.json"))
			}
			c.config = b
		}
	}
	var vocab map[string]int
	if err := json.Unmarshal(c.blobs["vocab.json"], &vocab); err != nil {
		return c, fmt.Errorf("convert: tokenizer %s: vocab.json: %w", c.files[0], err)
	}
	maxID := -1
	for _, id := range vocab {
		maxID = max(maxID, id)
	}
	if maxID >= vocabRows {
		where := "the built-in CLIP tokenizer"
		if dir != "" {
			where = "the tokenizer in " + dir
		}
		return c, fmt.Errorf("convert: %s has token ids up to %d, but the CLIP archive's token_embedding has only %d rows; give the model's own tokenizer with --tokenizer DIR",
			where, maxID, vocabRows)
	}
	return c, nil
}

// clipDims are the text encoder's dimensions other parts are checked
// against.
type clipDims struct {
	width, embed, vocab int
}

// planCLIPText maps OpenAI CLIP's text tower to transformers'
// CLIPTextModelWithProjection. The vision tower, logit_scale and the int64
// scalars input_resolution, context_length and vocab_size are not used.
func planCLIPText(f *karloFile, cfg KarloCLIPConfig) (*plan, json.RawMessage, clipDims, error) {
	var cd clipDims
	p := newPlan("text_encoder")
	tok, pos, proj := "token_embedding.weight", "positional_embedding", "text_projection"
	for _, key := range []string{tok, pos, proj, "ln_final.weight"} {
		if !f.has(key) {
			return nil, nil, cd, f.errorf("no %q: not an OpenAI CLIP TorchScript archive", key)
		}
	}
	ts, ps, prs := f.shape(tok), f.shape(pos), f.shape(proj)
	if len(ts) != 2 || len(ps) != 2 || len(prs) != 2 || ps[1] != ts[1] || prs[0] != ts[1] {
		return nil, nil, cd, f.errorf("token_embedding.weight %v, positional_embedding %v and text_projection %v do not fit together", ts, ps, prs)
	}
	vocab, width, ctx, embed := ts[0], ts[1], ps[0], prs[1]
	if vocab <= 0 || width <= 0 || ctx <= 0 || embed <= 0 {
		return nil, nil, cd, f.errorf("empty dimension in token_embedding.weight %v, positional_embedding %v or text_projection %v", ts, ps, prs)
	}
	layers := indices(f, "transformer.resblocks.")
	if len(layers) == 0 || !contiguous(layers) {
		return nil, nil, cd, f.errorf("text transformer blocks transformer.resblocks.N are missing or not numbered 0, 1, …")
	}
	heads := cfg.TransformerHeads
	if heads == 0 {
		if width%64 != 0 {
			return nil, nil, cd, f.errorf("text width %d is not a multiple of 64, so OpenAI's rule heads = width / 64 does not apply; give transformer_heads in a clip.json with --config", width)
		}
		heads = width / 64
	} else if width%heads != 0 {
		return nil, nil, cd, fmt.Errorf("convert: config %s: transformer_heads %d does not divide the text width %d (%s token_embedding.weight %v)",
			cfg.File, heads, width, f.path, ts)
	}
	for _, c := range []struct {
		key         string
		stated, got int
	}{
		{"transformer_width", cfg.TransformerWidth, width}, {"transformer_layers", cfg.TransformerLayers, len(layers)},
		{"vocab_size", cfg.VocabSize, vocab}, {"context_length", cfg.ContextLength, ctx}, {"embed_dim", cfg.EmbedDim, embed},
	} {
		if c.stated != 0 && c.stated != c.got {
			return nil, nil, cd, fmt.Errorf("convert: config %s: %s is %d, but the CLIP archive %s has %d", cfg.File, c.key, c.stated, f.path, c.got)
		}
	}

	p.add(f, tok, "text_model.embeddings.token_embedding.weight")
	p.add(f, pos, "text_model.embeddings.position_embedding.weight")
	inter := f.dim("transformer.resblocks.0.mlp.c_fc.weight", 0)
	for _, i := range layers {
		s := fmt.Sprintf("transformer.resblocks.%d.", i)
		d := fmt.Sprintf("text_model.encoder.layers.%d.", i)
		p.module(f, s+"ln_1", d+"layer_norm1", false)
		p.module(f, s+"ln_2", d+"layer_norm2", false)
		qkv := []string{d + "self_attn.q_proj", d + "self_attn.k_proj", d + "self_attn.v_proj"}
		for j, dst := range qkv {
			p.add(f, s+"attn.in_proj_weight", dst+".weight", splitRows(3, j, 0, ""))
			p.add(f, s+"attn.in_proj_bias", dst+".bias", splitRows(3, j, 0, ""))
		}
		p.module(f, s+"attn.out_proj", d+"self_attn.out_proj", false)
		p.module(f, s+"mlp.c_fc", d+"mlp.fc1", false)
		p.module(f, s+"mlp.c_proj", d+"mlp.fc2", false)
		if p.err == nil && f.dim(s+"attn.in_proj_weight", 0) != 3*width {
			p.fail(f.errorf("%sattn.in_proj_weight has shape %v; want [%d, %d]", s, f.shape(s+"attn.in_proj_weight"), 3*width, width))
		}
	}
	p.module(f, "ln_final", "text_model.final_layer_norm", false)
	p.add(f, proj, "text_projection.weight", func(m *mapped) { m.transpose = true })
	if p.err != nil {
		return nil, nil, cd, p.err
	}
	for k := range f.shapes {
		if strings.HasPrefix(k, "visual.") || k == "logit_scale" || k == "input_resolution" ||
			k == "context_length" || k == "vocab_size" {
			f.used[k] = true
		}
	}
	if err := unused(f, "", "OpenAI CLIP"); err != nil {
		return nil, nil, cd, err
	}
	c, err := marshalConfig(map[string]any{
		"architectures":           []string{"CLIPTextModelWithProjection"},
		"attention_dropout":       0.0,
		"bos_token_id":            0,
		"eos_token_id":            2,
		"hidden_act":              "quick_gelu",
		"hidden_size":             width,
		"initializer_factor":      1.0,
		"initializer_range":       0.02,
		"intermediate_size":       inter,
		"layer_norm_eps":          1e-05,
		"max_position_embeddings": ctx,
		"model_type":              "clip_text_model",
		"num_attention_heads":     heads,
		"num_hidden_layers":       len(layers),
		"pad_token_id":            1,
		"projection_dim":          embed,
		"torch_dtype":             "float32",
		"vocab_size":              vocab,
	})
	return p, c, clipDims{width: width, embed: embed, vocab: vocab}, err
}

// statedMismatch is the error for a config value the weights contradict.
func statedMismatch(file, key string, stated any, f *karloFile, evidence string) error {
	return fmt.Errorf("convert: config %s: %s is %v, but the %s %s says otherwise: %s", file, key, stated, f.role, f.path, evidence)
}

// planPrior maps Karlo's PriorTransformer (prefix "model.") and the stats.
func planPrior(f, stats *karloFile, cfg KarloPriorConfig, cd clipDims) (*plan, json.RawMessage, error) {
	p := newPlan("prior")
	const m = "model."
	pos := m + "positional_embedding"
	ps := f.shape(pos)
	if len(ps) != 3 || ps[0] != 1 || ps[1] <= 4 || ps[2] <= 0 {
		if ps == nil {
			return nil, nil, f.errorf("no %q: not a Karlo prior checkpoint", pos)
		}
		return nil, nil, f.errorf("%s has shape %v; want [1, text_ctx+4, width]", pos, ps)
	}
	width, tokens := ps[2], ps[1]
	layers := indices(f, m+"transformer.resblocks.")
	if len(layers) == 0 || !contiguous(layers) {
		return nil, nil, f.errorf("prior blocks model.transformer.resblocks.N are missing or not numbered 0, 1, …")
	}
	embed := f.dim(m+"clip_img_proj.weight", 1)
	heads, from := cfg.XfHeads, ""
	if heads == 0 {
		if width%64 != 0 {
			return nil, nil, f.errorf("prior width %d (%s %v) is not a multiple of 64, the release's head size; give the number of heads with --config (model.hparams.xf_heads in the prior's YAML)",
				width, pos, ps)
		}
		heads = width / 64
		from = "the Karlo release head size 64 (use --config for other models)"
	} else {
		from = cfg.File + ": model.hparams.xf_heads " + fmt.Sprint(heads)
		if width%heads != 0 {
			return nil, nil, fmt.Errorf("convert: config %s: model.hparams.xf_heads %d does not divide the prior width %d (%s %s %v)",
				cfg.File, heads, width, f.path, pos, ps)
		}
	}
	head := width / heads
	hp := "model.hparams."
	switch {
	case cfg.XfWidth != 0 && cfg.XfWidth != width:
		return nil, nil, statedMismatch(cfg.File, hp+"xf_width", cfg.XfWidth, f, fmt.Sprintf("%s has shape %v", pos, ps))
	case cfg.XfLayers != 0 && cfg.XfLayers != len(layers):
		return nil, nil, statedMismatch(cfg.File, hp+"xf_layers", cfg.XfLayers, f, fmt.Sprintf("it has %d blocks", len(layers)))
	case cfg.ClipDim != 0 && cfg.ClipDim != embed:
		return nil, nil, statedMismatch(cfg.File, hp+"clip_dim", cfg.ClipDim, f, fmt.Sprintf("model.clip_img_proj.weight has shape %v", f.shape(m+"clip_img_proj.weight")))
	case cfg.TextCtx != 0 && cfg.TextCtx != tokens-4:
		return nil, nil, statedMismatch(cfg.File, hp+"text_ctx", cfg.TextCtx, f, fmt.Sprintf("%s has shape %v (text_ctx + 4 tokens)", pos, ps))
	case cfg.XfFinalLN != nil && *cfg.XfFinalLN != f.has(m+"final_ln.weight"):
		return nil, nil, statedMismatch(cfg.File, hp+"xf_final_ln", *cfg.XfFinalLN, f, fmt.Sprintf("model.final_ln present: %v", f.has(m+"final_ln.weight")))
	}
	if !f.has(m + "final_ln.weight") {
		return nil, nil, f.errorf("no model.final_ln: a prior without a final LayerNorm (xf_final_ln false) has no diffusers equivalent")
	}
	if embed != cd.embed {
		return nil, nil, f.errorf("the prior works on CLIP embeddings of width %d (model.clip_img_proj.weight %v), but the CLIP archive's text_projection gives %d: the files are not from one release",
			embed, f.shape(m+"clip_img_proj.weight"), cd.embed)
	}
	for _, key := range []string{"text_enc_proj.weight", "text_emb_proj.weight"} {
		if got := f.dim(m+key, 1); got != embed {
			return nil, nil, f.errorf("model.%s has shape %v; diffusers' PriorTransformer needs %d inputs (the CLIP width)", key, f.shape(m+key), embed)
		}
	}
	if got := f.shape(m + "time_embed.0.weight"); !slices.Equal(got, []int{width, width}) {
		return nil, nil, f.errorf("model.time_embed.0.weight has shape %v; want [%d, %d]", got, width, width)
	}

	p.module(f, m+"time_embed.0", "time_embedding.linear_1", false)
	p.module(f, m+"time_embed.2", "time_embedding.linear_2", false)
	p.module(f, m+"clip_img_proj", "proj_in", false)
	p.module(f, m+"text_emb_proj", "embedding_proj", false)
	p.module(f, m+"text_enc_proj", "encoder_hidden_states_proj", false)
	p.add(f, pos, "positional_embedding")
	p.add(f, m+"prd_emb", "prd_embedding")
	for _, i := range layers {
		s := fmt.Sprintf("%stransformer.resblocks.%d.", m, i)
		d := fmt.Sprintf("transformer_blocks.%d.", i)
		p.module(f, s+"ln_1", d+"norm1", false)
		p.module(f, s+"ln_2", d+"norm3", false)
		p.fused(f, s+"attn.c_qkv", []string{d + "attn1.to_q", d + "attn1.to_k", d + "attn1.to_v"}, head, from, false)
		p.module(f, s+"attn.c_proj", d+"attn1.to_out.0", false)
		p.module(f, s+"mlp.c_fc", d+"ff.net.0.proj", false)
		p.module(f, s+"mlp.c_proj", d+"ff.net.2", false)
		if p.err == nil && f.dim(s+"attn.c_qkv.weight", 0) != 3*width {
			p.fail(f.errorf("%sattn.c_qkv.weight has shape %v; want [%d, %d]", s, f.shape(s+"attn.c_qkv.weight"), 3*width, width))
		}
	}
	p.module(f, m+"final_ln", "norm_out", false)
	p.module(f, m+"out_proj", "proj_to_clip_embeddings", false)
	if st := stats.shape("mean"); len(st) != 1 || st[0] != embed {
		p.fail(stats.errorf("mean and std have shape %v; the prior needs [%d]", st, embed))
	}
	p.add(stats, "mean", "clip_mean", func(m *mapped) { m.reshape = []int{1, embed} })
	p.add(stats, "std", "clip_std", func(m *mapped) { m.reshape = []int{1, embed} })
	if p.err != nil {
		return nil, nil, p.err
	}
	if err := unused(f, "", "the Karlo prior (prefix model.)"); err != nil {
		return nil, nil, err
	}
	c, err := marshalConfig(map[string]any{
		"_class_name":              "PriorTransformer",
		"added_emb_type":           "prd",
		"additional_embeddings":    4,
		"attention_head_dim":       head,
		"clip_embed_dim":           nil,
		"dropout":                  0.0,
		"embedding_dim":            embed,
		"embedding_proj_dim":       nil,
		"embedding_proj_norm_type": nil,
		"encoder_hid_proj_type":    "linear",
		"norm_in_type":             nil,
		"num_attention_heads":      heads,
		"num_embeddings":           tokens - 4,
		"num_layers":               len(layers),
		"time_embed_act_fn":        "silu",
		"time_embed_dim":           nil,
	})
	return p, c, err
}

// maxUNetLevels bounds a U-Net's resolution levels (Karlo's have 4; each
// halves the image).
const maxUNetLevels = 16

// headSpec says how to split a U-Net's attention projections: a fixed head
// size, or a fixed number of heads per block.
type headSpec struct {
	size, heads int
	from        string // where it came from, for errors
}

// unetInfo is the structure of a Karlo (guided-diffusion) U-Net, derived
// from its keys and shapes.
type unetInfo struct {
	levels, resBlocks int
	ch                []int  // channels per level
	attn              []bool // attention per level
	midAttn           bool
	inCh, outCh       int
	scaleShift        bool
	timeDim           int
	xfWidth           int // encoder_kv input width; 0 without
	headDim           int // 0 without attention
}

// planUNet maps a guided-diffusion U-Net under prefix (spec §13.2): levels
// and blocks per level follow from where the first upsampling block sits in
// output_blocks; attention from key presence.
func planUNet(p *plan, f *karloFile, prefix string, hs headSpec) (unetInfo, error) {
	var u unetInfo
	ins, outs := indices(f, prefix+"input_blocks."), indices(f, prefix+"output_blocks.")
	if len(ins) == 0 || !contiguous(ins) || !contiguous(outs) {
		return u, f.errorf("%sinput_blocks.N / output_blocks.N are missing or not numbered 0, 1, …", prefix)
	}
	isRes := func(mod string) bool { return f.has(prefix + mod + ".in_layers.0.weight") }
	isAttn := func(mod string) bool { return f.has(prefix + mod + ".qkv.weight") }
	r := -1
	for i := range outs {
		if isRes(fmt.Sprintf("output_blocks.%d.1", i)) || isRes(fmt.Sprintf("output_blocks.%d.2", i)) {
			r = i
			break
		}
	}
	if r < 0 {
		r = len(outs) - 1 // a single level
	}
	if r < 1 || len(outs)%(r+1) != 0 || len(ins) != len(outs) {
		return u, f.errorf("%d input and %d output blocks under %s do not form a Karlo U-Net with resblock up/down-sampling", len(ins), len(outs), prefix)
	}
	u.resBlocks, u.levels = r, len(outs)/(r+1)
	if u.levels > maxUNetLevels {
		return u, f.errorf("%d levels under %s; at most %d are supported", u.levels, prefix, maxUNetLevels)
	}
	ci := prefix + "input_blocks.0.0.weight"
	if sh := f.shape(ci); len(sh) != 4 || sh[0] <= 0 || sh[1] <= 0 {
		return u, f.errorf("%s has shape %v; want a 3×3 convolution", ci, sh)
	}
	u.inCh = f.dim(ci, 1)
	u.outCh = f.dim(prefix+"out.2.weight", 0)
	u.timeDim = f.dim(prefix+"time_embed.0.weight", 0)
	for l := range u.levels {
		first := fmt.Sprintf("input_blocks.%d", 1+l*(r+1))
		c := f.dim(prefix+first+".0.out_layers.3.weight", 0)
		if c <= 0 {
			return u, f.errorf("%s%s.0.out_layers.3.weight is missing or empty", prefix, first)
		}
		u.ch = append(u.ch, c)
		u.attn = append(u.attn, isAttn(first+".1"))
	}
	u.midAttn = isAttn("middle_block.1")
	emb := f.dim(prefix+"input_blocks.1.0.emb_layers.1.weight", 0)
	u.scaleShift = emb == 2*u.ch[0]
	if !u.scaleShift && emb != u.ch[0] {
		return u, f.errorf("%sinput_blocks.1.0.emb_layers.1.weight has shape %v; want %d or %d rows", prefix, f.shape(prefix+"input_blocks.1.0.emb_layers.1.weight"), u.ch[0], 2*u.ch[0])
	}
	if u.timeDim != 4*f.dim(ci, 0) {
		return u, f.errorf("%stime_embed.0.weight has shape %v; diffusers' U-Nets need 4 × %d rows", prefix, f.shape(prefix+"time_embed.0.weight"), f.dim(ci, 0))
	}

	res := func(src, dst string) {
		s := prefix + src + "."
		p.module(f, s+"in_layers.0", dst+".norm1", false)
		p.module(f, s+"in_layers.2", dst+".conv1", false)
		p.module(f, s+"emb_layers.1", dst+".time_emb_proj", false)
		p.module(f, s+"out_layers.0", dst+".norm2", false)
		p.module(f, s+"out_layers.3", dst+".conv2", false)
		if f.has(s + "skip_connection.weight") {
			p.module(f, s+"skip_connection", dst+".conv_shortcut", false)
		}
	}
	attn := func(src, dst string) {
		s := prefix + src + "."
		if p.err != nil {
			return
		}
		if !f.has(s + "qkv.weight") {
			p.fail(f.errorf("attention block %sqkv is missing (the other blocks of this level have attention)", s))
			return
		}
		c := f.dim(s+"qkv.weight", 1)
		var d int
		switch {
		case hs.size > 0:
			if c%hs.size != 0 {
				p.fail(fmt.Errorf("convert: %s: head size %d does not divide the %d channels of %s %sqkv.weight %v",
					hs.from, hs.size, c, f.path, s, f.shape(s+"qkv.weight")))
				return
			}
			d = hs.size
		case hs.heads > 0:
			if c%hs.heads != 0 {
				p.fail(fmt.Errorf("convert: %s: %d heads do not divide the %d channels of %s %sqkv.weight %v",
					hs.from, hs.heads, c, f.path, s, f.shape(s+"qkv.weight")))
				return
			}
			d = c / hs.heads
		default:
			p.fail(f.errorf("%s is an attention block, which this U-Net is not expected to have", s+"qkv"))
			return
		}
		if u.headDim != 0 && u.headDim != d {
			p.fail(fmt.Errorf("convert: %s: attention blocks get head sizes %d and %d, but diffusers has one attention_head_dim; give num_head_channels instead", hs.from, u.headDim, d))
			return
		}
		u.headDim = d
		p.module(f, s+"norm", dst+".group_norm", false)
		p.fused(f, s+"qkv", []string{dst + ".to_q", dst + ".to_k", dst + ".to_v"}, d, hs.from, true)
		if f.has(s + "encoder_kv.weight") {
			xf := f.dim(s+"encoder_kv.weight", 1)
			if u.xfWidth != 0 && xf != u.xfWidth {
				p.fail(f.errorf("%sencoder_kv.weight has shape %v; other blocks take %d inputs", s, f.shape(s+"encoder_kv.weight"), u.xfWidth))
				return
			}
			u.xfWidth = xf
			p.fused(f, s+"encoder_kv", []string{dst + ".add_k_proj", dst + ".add_v_proj"}, d, hs.from, true)
		}
		p.module(f, s+"proj_out", dst+".to_out.0", true)
	}

	p.module(f, prefix+"time_embed.0", "time_embedding.linear_1", false)
	p.module(f, prefix+"time_embed.2", "time_embedding.linear_2", false)
	p.module(f, prefix+"input_blocks.0.0", "conv_in", false)
	p.module(f, prefix+"out.0", "conv_norm_out", false)
	p.module(f, prefix+"out.2", "conv_out", false)
	idx := 1
	for l := range u.levels {
		for j := range r {
			res(fmt.Sprintf("input_blocks.%d.0", idx), fmt.Sprintf("down_blocks.%d.resnets.%d", l, j))
			if u.attn[l] {
				attn(fmt.Sprintf("input_blocks.%d.1", idx), fmt.Sprintf("down_blocks.%d.attentions.%d", l, j))
			}
			idx++
		}
		if l < u.levels-1 {
			res(fmt.Sprintf("input_blocks.%d.0", idx), fmt.Sprintf("down_blocks.%d.downsamplers.0", l))
			idx++
		}
	}
	res("middle_block.0", "mid_block.resnets.0")
	if u.midAttn {
		attn("middle_block.1", "mid_block.attentions.0")
		res("middle_block.2", "mid_block.resnets.1")
	} else {
		res("middle_block.1", "mid_block.resnets.1")
	}
	for b := range u.levels {
		level := u.levels - 1 - b
		for j := 0; j <= r; j++ {
			i := b*(r+1) + j
			res(fmt.Sprintf("output_blocks.%d.0", i), fmt.Sprintf("up_blocks.%d.resnets.%d", b, j))
			sub := 1
			if u.attn[level] {
				attn(fmt.Sprintf("output_blocks.%d.1", i), fmt.Sprintf("up_blocks.%d.attentions.%d", b, j))
				sub = 2
			}
			if j == r && b < u.levels-1 {
				res(fmt.Sprintf("output_blocks.%d.%d", i, sub), fmt.Sprintf("up_blocks.%d.upsamplers.0", b))
			}
		}
	}
	return u, p.err
}

// planDecoder maps the decoder checkpoint: the U-Net (prefix "model.") to
// decoder and its conditioning projections to text_proj.
func planDecoder(f *karloFile, cfg KarloDecoderConfig, cd clipDims) (dec *plan, decCfg json.RawMessage, tp *plan, tpCfg json.RawMessage, err error) {
	const m = "model."
	if !f.has(m+"input_blocks.0.0.weight") || !f.has(m+"clip_emb.weight") {
		return nil, nil, nil, nil, f.errorf("no model.input_blocks.0.0 or model.clip_emb: not a Karlo decoder checkpoint")
	}
	hs := headSpec{size: cfg.NumHeadChannels, heads: cfg.NumHeads}
	switch {
	case cfg.NumHeadChannels > 0 && cfg.File == "":
		hs.from = fmt.Sprintf("the Karlo release head size (num_head_channels %d; use --config for other models)", cfg.NumHeadChannels)
	case cfg.NumHeadChannels > 0:
		hs.from = fmt.Sprintf("config %s: model.hparams.num_head_channels %d", cfg.File, cfg.NumHeadChannels)
	default:
		hs.size = 0
		hs.from = fmt.Sprintf("config %s: model.hparams.num_heads %d", cfgName(cfg.File, "decoder"), cfg.NumHeads)
	}
	dec = newPlan("decoder")
	u, err := planUNet(dec, f, m, hs)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if !u.midAttn {
		return nil, nil, nil, nil, f.errorf("model.middle_block has no attention block; diffusers' decoder (UNetMidBlock2DSimpleCrossAttn) needs one")
	}
	if u.xfWidth == 0 {
		return nil, nil, nil, nil, f.errorf("the attention blocks have no encoder_kv projection; the unCLIP decoder attends to the text")
	}

	// text_proj.
	tp = newPlan("text_proj")
	tp.add(f, m+"cf_param", "learned_classifier_free_guidance_embeddings")
	tp.module(f, m+"clip_emb", "clip_image_embeddings_project_to_time_embeddings", false)
	tp.module(f, m+"text_feat_proj", "embedding_proj", false)
	tp.module(f, m+"clip_tok_proj", "clip_extra_context_tokens_proj", false)
	tp.module(f, m+"text_seq_proj.0", "encoder_hidden_states_proj", false)
	tp.module(f, m+"text_seq_proj.1", "text_encoder_hidden_states_norm", false)
	if tp.err != nil {
		return nil, nil, nil, nil, tp.err
	}
	if err := unused(f, "", "the Karlo decoder (prefix model.)"); err != nil {
		return nil, nil, nil, nil, err
	}
	clipEmb := f.shape(m + "clip_emb.weight")
	if len(clipEmb) != 2 {
		return nil, nil, nil, nil, f.errorf("model.clip_emb.weight has shape %v; want a matrix", clipEmb)
	}
	embed, timeDim := clipEmb[1], clipEmb[0]
	xf := f.dim(m+"text_seq_proj.0.weight", 0)
	tokRows := f.dim(m+"clip_tok_proj.weight", 0)
	switch {
	case timeDim != u.timeDim:
		return nil, nil, nil, nil, f.errorf("model.clip_emb.weight %v does not project to the time embedding width %d", clipEmb, u.timeDim)
	case xf != u.xfWidth:
		return nil, nil, nil, nil, f.errorf("model.text_seq_proj.0.weight %v does not give the %d-wide context encoder_kv takes", f.shape(m+"text_seq_proj.0.weight"), u.xfWidth)
	case xf <= 0 || tokRows <= 0 || tokRows%xf != 0:
		return nil, nil, nil, nil, f.errorf("model.clip_tok_proj.weight %v is not a whole number of %d-wide tokens", f.shape(m+"clip_tok_proj.weight"), xf)
	case embed != cd.embed:
		return nil, nil, nil, nil, f.errorf("the decoder takes CLIP embeddings of width %d (model.clip_emb.weight %v), but the CLIP archive's text_projection gives %d: the files are not from one release", embed, clipEmb, cd.embed)
	case f.dim(m+"text_seq_proj.0.weight", 1) != cd.width:
		return nil, nil, nil, nil, f.errorf("model.text_seq_proj.0.weight %v does not take the CLIP text width %d", f.shape(m+"text_seq_proj.0.weight"), cd.width)
	}
	extra := tokRows / xf

	// Stated config values against the weights.
	hp := "model.hparams."
	ch := f.dim(m+"input_blocks.0.0.weight", 0)
	check := func(ok bool, key string, stated any, evidence string) {
		if err == nil && !ok {
			err = statedMismatch(cfg.File, hp+key, stated, f, evidence)
		}
	}
	if cfg.NumChannels != 0 {
		check(cfg.NumChannels == ch, "num_channels", cfg.NumChannels, fmt.Sprintf("model.input_blocks.0.0.weight has shape %v", f.shape(m+"input_blocks.0.0.weight")))
	}
	if cfg.ChannelMult != nil {
		var mult []int
		for _, c := range u.ch {
			mult = append(mult, c/ch)
		}
		check(slices.Equal(cfg.ChannelMult, mult), "channel_mult", cfg.ChannelMult, fmt.Sprintf("its levels have %v channels", u.ch))
	}
	if cfg.NumResBlocks != 0 {
		check(cfg.NumResBlocks == u.resBlocks, "num_res_blocks", cfg.NumResBlocks, fmt.Sprintf("it has %d residual blocks per level", u.resBlocks))
	}
	if cfg.XfWidth != 0 {
		check(cfg.XfWidth == xf, "xf_width", cfg.XfWidth, fmt.Sprintf("model.text_seq_proj.0.weight has shape %v", f.shape(m+"text_seq_proj.0.weight")))
	}
	if cfg.ClipDim != 0 {
		check(cfg.ClipDim == embed, "clip_dim", cfg.ClipDim, fmt.Sprintf("model.clip_emb.weight has shape %v", clipEmb))
	}
	if cfg.ClipEmbMult != 0 {
		check(cfg.ClipEmbMult == extra, "clip_emb_mult", cfg.ClipEmbMult, fmt.Sprintf("model.clip_tok_proj.weight has shape %v", f.shape(m+"clip_tok_proj.weight")))
	}
	if cfg.LearnSigma != nil {
		check(*cfg.LearnSigma == (u.outCh == 2*u.inCh), "learn_sigma", *cfg.LearnSigma, fmt.Sprintf("model.out.2.weight has shape %v", f.shape(m+"out.2.weight")))
	}
	if cfg.UseScaleShiftNorm != nil {
		check(*cfg.UseScaleShiftNorm == u.scaleShift, "use_scale_shift_norm", *cfg.UseScaleShiftNorm, fmt.Sprintf("model.input_blocks.1.0.emb_layers.1.weight has shape %v", f.shape(m+"input_blocks.1.0.emb_layers.1.weight")))
	}
	if cfg.Diffusion.LearnSigma != (u.outCh == 2*u.inCh) && err == nil {
		err = fmt.Errorf("convert: config %s: diffusion.learn_sigma is %v, but the decoder has %d output channels for %d input channels",
			cfgName(cfg.File, "decoder"), cfg.Diffusion.LearnSigma, u.outCh, u.inCh)
	}
	if err == nil && cfg.ImageSize%(1<<(u.levels-1)) != 0 {
		err = fmt.Errorf("convert: config %s: model.hparams.image_size %d cannot be halved %d times (the decoder has %d levels)",
			cfgName(cfg.File, "decoder"), cfg.ImageSize, u.levels-1, u.levels)
	}
	if err == nil && cfg.AttentionResolutions != nil {
		// guided-diffusion: attention where the downsampling factor 2^level
		// is image_size / resolution for a listed resolution.
		var want, got []int
		for l := range u.levels {
			ds := 1 << l
			for _, res := range cfg.AttentionResolutions {
				if res > 0 && cfg.ImageSize/res == ds {
					want = append(want, l)
					break
				}
			}
			if u.attn[l] {
				got = append(got, l)
			}
		}
		if !slices.Equal(want, got) {
			err = fmt.Errorf("convert: config %s: model.hparams.image_size %d with attention_resolutions %v puts attention at levels %v, but the decoder checkpoint %s has it at levels %v: the image size (or the resolutions) do not belong to these weights",
				cfg.File, cfg.ImageSize, cfg.AttentionResolutions, want, f.path, got)
		}
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}

	var down, up []string
	for l := range u.levels {
		if u.attn[l] {
			down = append(down, "SimpleCrossAttnDownBlock2D")
		} else {
			down = append(down, "ResnetDownsampleBlock2D")
		}
	}
	for b := range u.levels {
		if u.attn[u.levels-1-b] {
			up = append(up, "SimpleCrossAttnUpBlock2D")
		} else {
			up = append(up, "ResnetUpsampleBlock2D")
		}
	}
	shift := "default"
	if u.scaleShift {
		shift = "scale_shift"
	}
	decCfg, err = marshalConfig(map[string]any{
		"_class_name":                           "UNet2DConditionModel",
		"act_fn":                                "silu",
		"addition_embed_type":                   nil,
		"addition_embed_type_num_heads":         64,
		"addition_time_embed_dim":               nil,
		"attention_head_dim":                    u.headDim,
		"attention_type":                        "default",
		"block_out_channels":                    u.ch,
		"center_input_sample":                   false,
		"class_embed_type":                      "identity",
		"class_embeddings_concat":               false,
		"conv_in_kernel":                        3,
		"conv_out_kernel":                       3,
		"cross_attention_dim":                   xf,
		"cross_attention_norm":                  nil,
		"down_block_types":                      down,
		"downsample_padding":                    1,
		"dropout":                               0.0,
		"dual_cross_attention":                  false,
		"encoder_hid_dim":                       nil,
		"encoder_hid_dim_type":                  nil,
		"flip_sin_to_cos":                       true,
		"freq_shift":                            0,
		"in_channels":                           u.inCh,
		"layers_per_block":                      u.resBlocks,
		"mid_block_only_cross_attention":        nil,
		"mid_block_scale_factor":                1,
		"mid_block_type":                        "UNetMidBlock2DSimpleCrossAttn",
		"norm_eps":                              1e-05,
		"norm_num_groups":                       32,
		"num_attention_heads":                   nil,
		"num_class_embeds":                      nil,
		"only_cross_attention":                  false,
		"out_channels":                          u.outCh,
		"projection_class_embeddings_input_dim": nil,
		"resnet_out_scale_factor":               1.0,
		"resnet_skip_time_act":                  false,
		"resnet_time_scale_shift":               shift,
		"reverse_transformer_layers_per_block":  nil,
		"sample_size":                           cfg.ImageSize,
		"time_cond_proj_dim":                    nil,
		"time_embedding_act_fn":                 nil,
		"time_embedding_dim":                    nil,
		"time_embedding_type":                   "positional",
		"timestep_post_act":                     nil,
		"transformer_layers_per_block":          1,
		"up_block_types":                        up,
		"upcast_attention":                      false,
		"use_linear_projection":                 false,
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tpCfg, err = marshalConfig(map[string]any{
		"_class_name":               "UnCLIPTextProjModel",
		"clip_embeddings_dim":       embed,
		"clip_extra_context_tokens": extra,
		"cross_attention_dim":       xf,
		"time_embed_dim":            timeDim,
	})
	return dec, decCfg, tp, tpCfg, err
}

// planSR maps the two super-resolution U-Nets (prefixes
// "model_first_steps." and "model_last_step.").
func planSR(f *karloFile, cfg KarloSRConfig, outSize int) (first, last *plan, firstCfg, lastCfg json.RawMessage, err error) {
	one := func(prefix, comp string) (*plan, json.RawMessage, error) {
		if !f.has(prefix + "input_blocks.0.0.weight") {
			return nil, nil, f.errorf("no %sinput_blocks.0.0: not a Karlo super-resolution checkpoint (improved_sr_64_256)", prefix)
		}
		p := newPlan(comp)
		u, err := planUNet(p, f, prefix, headSpec{from: "super-resolution"})
		if err != nil {
			return nil, nil, err
		}
		if u.midAttn || slices.Contains(u.attn, true) {
			return nil, nil, f.errorf("%s has attention blocks; the unCLIP super-resolution U-Nets have none", prefix)
		}
		hp := "model.hparams."
		if in := f.dim(prefix+"input_blocks.0.0.weight", 0); cfg.Channels != 0 && cfg.Channels != in {
			return nil, nil, statedMismatch(cfg.File, hp+"channels", cfg.Channels, f, fmt.Sprintf("%sinput_blocks.0.0.weight has shape %v", prefix, f.shape(prefix+"input_blocks.0.0.weight")))
		}
		if cfg.Depth != 0 && cfg.Depth != u.resBlocks {
			return nil, nil, statedMismatch(cfg.File, hp+"depth", cfg.Depth, f, fmt.Sprintf("%s has %d residual blocks per level", prefix, u.resBlocks))
		}
		if cfg.ChannelsMultiple != nil {
			base := f.dim(prefix+"input_blocks.0.0.weight", 0)
			var mult []int
			for _, c := range u.ch {
				mult = append(mult, c/base)
			}
			if !slices.Equal(mult, cfg.ChannelsMultiple) {
				return nil, nil, statedMismatch(cfg.File, hp+"channels_multiple", cfg.ChannelsMultiple, f, fmt.Sprintf("%s levels have %v channels", prefix, u.ch))
			}
		}
		if outSize <= 0 || outSize%(1<<(u.levels-1)) != 0 {
			return nil, nil, fmt.Errorf("convert: super-resolution output size %d cannot be halved %d times (the U-Nets have %d levels)", outSize, u.levels-1, u.levels)
		}
		down := make([]string, u.levels)
		up := make([]string, u.levels)
		for i := range down {
			down[i], up[i] = "ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D"
		}
		shift := "default"
		if u.scaleShift {
			shift = "scale_shift"
		}
		c, err := marshalConfig(map[string]any{
			"_class_name":             "UNet2DModel",
			"act_fn":                  "silu",
			"add_attention":           false,
			"attention_head_dim":      8,
			"attn_norm_num_groups":    nil,
			"block_out_channels":      u.ch,
			"center_input_sample":     false,
			"class_embed_type":        nil,
			"down_block_types":        down,
			"downsample_padding":      1,
			"downsample_type":         "conv",
			"dropout":                 0.0,
			"flip_sin_to_cos":         true,
			"freq_shift":              0,
			"in_channels":             u.inCh,
			"layers_per_block":        u.resBlocks,
			"mid_block_scale_factor":  1,
			"norm_eps":                1e-05,
			"norm_num_groups":         32,
			"num_class_embeds":        nil,
			"num_train_timesteps":     nil,
			"out_channels":            u.outCh,
			"resnet_time_scale_shift": shift,
			"sample_size":             outSize,
			"time_embedding_type":     "positional",
			"up_block_types":          up,
			"upsample_type":           "conv",
		})
		return p, c, err
	}
	if first, firstCfg, err = one("model_first_steps.", "super_res_first"); err != nil {
		return
	}
	if last, lastCfg, err = one("model_last_step.", "super_res_last"); err != nil {
		return
	}
	err = unused(f, "", "the Karlo super-resolution model (prefixes model_first_steps. and model_last_step.)")
	return
}
