package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// maxConfigSize bounds every JSON/text file read from a pipeline folder
// (the largest, a CLIP vocab.json, is about 1 MB).
const maxConfigSize = 64 << 20

// ComponentKind says what a pipeline component's folder holds.
type ComponentKind int

// The component kinds.
const (
	// KindModel: config.json and weights (safetensors or torch .bin,
	// possibly sharded).
	KindModel ComponentKind = iota
	// KindConfig: only a configuration (scheduler_config.json or
	// preprocessor_config.json): schedulers, feature extractors.
	KindConfig
	// KindTokenizer: vocab.json and merges.txt, optionally
	// tokenizer_config.json and special_tokens_map.json.
	KindTokenizer
)

// String is "model", "config" or "tokenizer".
func (k ComponentKind) String() string {
	switch k {
	case KindModel:
		return "model"
	case KindConfig:
		return "config"
	case KindTokenizer:
		return "tokenizer"
	}
	return fmt.Sprintf("ComponentKind(%d)", int(k))
}

// TokenizerFiles are the tokenizer files a converted file carries, in
// order; the first two are required.
var TokenizerFiles = []string{"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}

// Pipeline is a diffusers pipeline folder, as written by save_pretrained.
type Pipeline struct {
	Dir        string
	Class      string              // model_index.json "_class_name", e.g. "UnCLIPPipeline"
	Components []PipelineComponent // in model_index.json order
}

// PipelineComponent is one component folder of a pipeline.
type PipelineComponent struct {
	Name    string // folder and component name, e.g. "decoder"
	Library string // e.g. "diffusers", "transformers"
	Class   string // e.g. "UNet2DConditionModel"
	Kind    ComponentKind
	Dir     string

	// ConfigFile is the configuration read (config.json,
	// scheduler_config.json, preprocessor_config.json or, for a tokenizer,
	// tokenizer_config.json when present); Config holds its bytes verbatim
	// ("{}" for a tokenizer without one).
	ConfigFile string
	Config     json.RawMessage

	// Weights are the weight files of a KindModel component: one file, or
	// every shard named by a *.index.json weight map (WeightIndex).
	Weights     []string
	WeightIndex string

	// Files are the tokenizer files present, a subset of TokenizerFiles
	// (KindTokenizer only), as paths.
	Files []string
}

// OpenPipeline reads model_index.json and locates every listed component's
// configuration and weights. Entries that are null (or [null, null]) are
// skipped; a listed component whose folder is missing is an error naming
// the folder.
func OpenPipeline(dir string) (*Pipeline, error) {
	indexPath := filepath.Join(dir, "model_index.json")
	raw, err := readSmall(indexPath)
	if err != nil {
		return nil, fmt.Errorf("convert: %s is not a diffusers pipeline folder: %w", dir, err)
	}
	entries, err := parseModelIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", indexPath, err)
	}
	p := &Pipeline{Dir: dir}
	for _, e := range entries {
		switch {
		case e.key == "_class_name":
			if err := json.Unmarshal(e.value, &p.Class); err != nil {
				return nil, fmt.Errorf("convert: %s: _class_name: %w", indexPath, err)
			}
			continue
		case strings.HasPrefix(e.key, "_"):
			continue
		}
		lib, class, ok, err := componentSpec(e.value)
		if err != nil {
			return nil, fmt.Errorf("convert: %s: component %q: %w", indexPath, e.key, err)
		}
		if !ok {
			continue
		}
		if !validComponentName(e.key) {
			return nil, fmt.Errorf("convert: %s: component name %q is not a plain folder name", indexPath, e.key)
		}
		c, err := locateComponent(dir, e.key, lib, class)
		if err != nil {
			return nil, err
		}
		p.Components = append(p.Components, *c)
	}
	if len(p.Components) == 0 {
		return nil, fmt.Errorf("convert: %s lists no components", indexPath)
	}
	return p, nil
}

type indexEntry struct {
	key   string
	value json.RawMessage
}

// parseModelIndex reads a JSON object keeping its key order.
func parseModelIndex(raw []byte) ([]indexEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []indexEntry
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%q: %w", key, err)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		out = append(out, indexEntry{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// componentSpec interprets a model_index value: ["library", "Class"] is a
// component; null and [null, null] are absent ones; other values (such as
// "requires_safety_checker": true) are pipeline options, not components.
func componentSpec(v json.RawMessage) (lib, class string, ok bool, err error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '[' {
		return "", "", false, nil
	}
	var pair []*string
	if err := json.Unmarshal(v, &pair); err != nil {
		return "", "", false, fmt.Errorf("want [library, class]: %w", err)
	}
	if len(pair) != 2 {
		return "", "", false, fmt.Errorf("want [library, class], got %d elements", len(pair))
	}
	if pair[0] == nil && pair[1] == nil {
		return "", "", false, nil
	}
	if pair[1] == nil {
		return "", "", false, errors.New("class is null")
	}
	if pair[0] != nil {
		lib = *pair[0]
	}
	return lib, *pair[1], true, nil
}

func validComponentName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`+"\x00")
}

// locateComponent finds what a component folder holds.
func locateComponent(dir, name, lib, class string) (*PipelineComponent, error) {
	cdir := filepath.Join(dir, name)
	fi, err := os.Stat(cdir)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("convert: component %q (%s) is listed in model_index.json but its folder %s is missing", name, class, cdir)
	}
	c := &PipelineComponent{Name: name, Library: lib, Class: class, Dir: cdir}
	exists := func(f string) bool {
		fi, err := os.Stat(filepath.Join(cdir, f))
		return err == nil && fi.Mode().IsRegular()
	}
	readConfig := func(f string) error {
		c.ConfigFile = filepath.Join(cdir, f)
		b, err := readSmall(c.ConfigFile)
		if err != nil {
			return fmt.Errorf("convert: component %q: %w", name, err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("convert: component %q: %s is not valid JSON", name, c.ConfigFile)
		}
		c.Config = b
		return nil
	}
	switch {
	case exists("config.json"):
		c.Kind = KindModel
		if err := readConfig("config.json"); err != nil {
			return nil, err
		}
		c.Weights, c.WeightIndex, err = findWeights(cdir)
		if err != nil {
			return nil, fmt.Errorf("convert: component %q: %w", name, err)
		}
	case exists("scheduler_config.json"):
		c.Kind = KindConfig
		if err := readConfig("scheduler_config.json"); err != nil {
			return nil, err
		}
	case exists("preprocessor_config.json"):
		c.Kind = KindConfig
		if err := readConfig("preprocessor_config.json"); err != nil {
			return nil, err
		}
	case exists("vocab.json"):
		c.Kind = KindTokenizer
		if !exists("merges.txt") {
			return nil, fmt.Errorf("convert: component %q: %s has vocab.json but no merges.txt", name, cdir)
		}
		for _, f := range TokenizerFiles {
			if exists(f) {
				c.Files = append(c.Files, filepath.Join(cdir, f))
			}
		}
		if exists("tokenizer_config.json") {
			if err := readConfig("tokenizer_config.json"); err != nil {
				return nil, err
			}
		} else {
			c.Config = json.RawMessage("{}")
		}
	default:
		return nil, fmt.Errorf("convert: component %q (%s): %s has no config.json, scheduler_config.json, preprocessor_config.json or vocab.json", name, class, cdir)
	}
	return c, nil
}

// findWeights picks a model folder's weights: a sharded safetensors index,
// a single safetensors file (standard name first, else the only one), then
// the same for torch .bin files.
func findWeights(dir string) (files []string, index string, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", err
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() || de.Type()&fs.ModeSymlink != 0 {
			names = append(names, de.Name())
		}
	}
	has := func(n string) bool { return slices.Contains(names, n) }
	for _, ext := range []string{".safetensors", ".bin"} {
		for _, stem := range []string{"diffusion_pytorch_model", "model", "pytorch_model"} {
			if idx := stem + ext + ".index.json"; has(idx) {
				files, err := readWeightIndex(dir, idx)
				return files, filepath.Join(dir, idx), err
			}
		}
		for _, stem := range []string{"diffusion_pytorch_model", "model", "pytorch_model"} {
			if has(stem + ext) {
				return []string{filepath.Join(dir, stem+ext)}, "", nil
			}
		}
		var other []string
		for _, n := range names {
			if strings.HasSuffix(n, ext) {
				other = append(other, n)
			}
		}
		switch len(other) {
		case 0:
		case 1:
			return []string{filepath.Join(dir, other[0])}, "", nil
		default:
			return nil, "", fmt.Errorf("%s: several %s weight files and no index: %s", dir, ext, strings.Join(other, ", "))
		}
	}
	return nil, "", fmt.Errorf("%s: no weights (*.safetensors or *.bin)", dir)
}

// readWeightIndex lists the shard files of a "*.index.json" weight map.
func readWeightIndex(dir, name string) ([]string, error) {
	path := filepath.Join(dir, name)
	raw, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", path)
	}
	var files []string
	for _, f := range idx.WeightMap {
		if !validComponentName(f) {
			return nil, fmt.Errorf("%s: shard name %q is not a plain file name", path, f)
		}
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	for i, f := range files {
		files[i] = filepath.Join(dir, f)
	}
	return files, nil
}

// Weights is the union of a model component's weight files. It implements
// loader.Source.
type Weights struct {
	files   []string
	srcs    []loader.Source
	closers []io.Closer
	where   map[string]int // tensor name -> index into files
	names   []string
}

// OpenWeights opens the component's weight files (KindModel only). With a
// weight index every listed tensor must be in the shard it names; a tensor
// in two files is an error.
func (c *PipelineComponent) OpenWeights() (*Weights, error) {
	if c.Kind != KindModel {
		return nil, fmt.Errorf("convert: component %q has no weights", c.Name)
	}
	w := &Weights{where: map[string]int{}}
	for _, f := range c.Weights {
		var src loader.Source
		var cl io.Closer
		if strings.HasSuffix(f, ".safetensors") {
			s, err := loader.OpenSafetensors(f)
			if err != nil {
				w.Close()
				return nil, fmt.Errorf("convert: %w", err)
			}
			src, cl = s, s
		} else {
			t, err := OpenTorch(f, PickleOptions{})
			if err != nil {
				w.Close()
				return nil, err
			}
			src, cl = t, t
		}
		w.files = append(w.files, f)
		w.srcs = append(w.srcs, src)
		w.closers = append(w.closers, cl)
		for _, n := range src.Names() {
			if j, dup := w.where[n]; dup {
				w.Close()
				return nil, fmt.Errorf("convert: tensor %q is in both %s and %s", n, w.files[j], f)
			}
			w.where[n] = len(w.files) - 1
			w.names = append(w.names, n)
		}
	}
	if c.WeightIndex != "" {
		if err := w.checkIndex(c.WeightIndex); err != nil {
			w.Close()
			return nil, err
		}
	}
	slices.Sort(w.names)
	return w, nil
}

func (w *Weights) checkIndex(path string) error {
	raw, err := readSmall(path)
	if err != nil {
		return err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return fmt.Errorf("convert: %s: %w", path, err)
	}
	for k, f := range idx.WeightMap {
		i, ok := w.where[k]
		if !ok || filepath.Base(w.files[i]) != f {
			return fmt.Errorf("convert: %s: tensor %q is not in %s", path, k, filepath.Join(filepath.Dir(path), f))
		}
	}
	return nil
}

// Names lists every tensor name, sorted.
func (w *Weights) Names() []string { return slices.Clone(w.names) }

// Tensor reads a tensor from the file that holds it.
func (w *Weights) Tensor(name string) (loader.Tensor, error) {
	i, ok := w.where[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("convert: no tensor %q in %s", name, strings.Join(w.files, ", "))
	}
	return w.srcs[i].Tensor(name)
}

// File is the path of the weight file holding the named tensor ("" if none).
func (w *Weights) File(name string) string {
	if i, ok := w.where[name]; ok {
		return w.files[i]
	}
	return ""
}

// Files lists the weight files.
func (w *Weights) Files() []string { return slices.Clone(w.files) }

// Close closes every weight file.
func (w *Weights) Close() error {
	var errs []error
	for _, c := range w.closers {
		errs = append(errs, c.Close())
	}
	w.closers = nil
	return errors.Join(errs...)
}

// readSmall reads a configuration-sized file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigSize)
	}
	return b, nil
}
