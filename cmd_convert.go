package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/convert"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert a diffusers pipeline folder or the original Karlo release into one dalle2 weight file",
		ArgsUsage: "SRC",
		Description: `Reads SRC and writes every component, config and tokenizer file into FILE. Float
weights are stored as --dtype; integer buffers as they are. With --dtype q8 the weight
matrices of the Linear layers and convolutions are stored as Q8_0 (8-bit blocks of 32
values with an fp16 scale, 34 bytes per 32 weights) and every other float tensor as f16:
the U-Nets' first and last convolutions (conv_in, conv_out), embedding tables, norms,
biases and matrices whose rows are not a multiple of 32 values long. After the
conversion a table gives, per stored dtype, the tensors, parameters, bytes before and
after compression and the zstd ratio. PyTorch files are parsed,
never executed: a pickle naming anything but the tensor-rebuilding globals is refused
(a Lightning checkpoint's extra objects, and a TorchScript archive's module classes,
are read as inert placeholders). FILE appears only when everything succeeded.

SRC is either
 - a diffusers pipeline folder (model_index.json and one folder per component, weights
   as .safetensors or PyTorch .bin, sharded or not), or
 - a folder with the original kakaobrain/karlo release:
     prior-ckpt-step=01000000-of-01000000.ckpt  decoder-ckpt-step=01000000-of-01000000.ckpt
     improved-sr-ckpt-step=1.2M.ckpt  ViT-L-14_stats.th  ViT-L-14.pt (OpenAI's CLIP)
   (also found as prior.ckpt, decoder.ckpt, sr.ckpt, clip_stats.th, clip.pt, or as the
   only file matching prior*.ckpt, decoder*.ckpt, *sr*.ckpt, *stats*.th, *.pt).
   --prior, --decoder, --sr, --clip and --clip-stats name files explicitly (then SRC
   may be omitted). The result has the same components and tensors as diffusers'
   conversion of those files.

The original release does not store attention head sizes, the decoder's image size or
the super-resolution output size: Karlo's release values are built in (prior heads of
64, decoder num_head_channels 64, image size 64, output 256 = 4 x image size). For
other models give --config DIR with Karlo's own YAML configs (configs/*.yaml of the
karlo repository: model.type prior, t2i-decoder, improved_sr_64_256) and optionally a
clip.json ({"transformer_heads": N, ...}). A wrong head size is caught when it does not
divide the layer widths, and stated widths, layers, image size and attention
resolutions are checked against the weights; a head size that divides the widths but
is not the model's cannot be detected (the split is then silently wrong) and is the
user's responsibility. The release ships no tokenizer: the standard CLIP vocabulary
(49,408 tokens) is built in; --tokenizer DIR (vocab.json, merges.txt) overrides it.

Examples:
   dalle2 convert ./karlo-v1-alpha -o karlo.d2
   dalle2 convert ./karlo-v1-alpha -o karlo-f16.d2 --dtype f16
   dalle2 convert ./karlo-v1-alpha -o karlo-q8.d2 --dtype q8
   dalle2 convert ./karlo-original -o karlo.d2
   dalle2 convert ./tiny -o tiny.d2 --config ./tiny/configs --tokenizer ./tiny-tokenizer`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "weight file to write (required)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "storage type of float weights: f32, f16 or q8 (Q8_0 weight matrices, f16 for the rest)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
			&cli.StringFlag{Name: "prior", Usage: "original Karlo prior checkpoint (prior-ckpt-step=….ckpt)", TakesFile: true},
			&cli.StringFlag{Name: "decoder", Usage: "original Karlo decoder checkpoint (decoder-ckpt-step=….ckpt)", TakesFile: true},
			&cli.StringFlag{Name: "sr", Usage: "original Karlo super-resolution checkpoint (improved-sr-ckpt-step=1.2M.ckpt)", TakesFile: true},
			&cli.StringFlag{Name: "clip", Usage: "OpenAI CLIP TorchScript archive (ViT-L-14.pt)", TakesFile: true},
			&cli.StringFlag{Name: "clip-stats", Usage: "CLIP embedding stats (ViT-L-14_stats.th)", TakesFile: true},
			&cli.StringFlag{Name: "config", Usage: "folder of Karlo YAML configs for a non-release model (head sizes, image size)", TakesFile: true},
			&cli.StringFlag{Name: "tokenizer", Usage: "folder with vocab.json and merges.txt (default: the built-in CLIP tokenizer)", TakesFile: true},
		},
		Action: runConvert,
	}
}

// karloFileFlags are convert's flags naming original Karlo files.
var karloFileFlags = []string{"prior", "decoder", "sr", "clip", "clip-stats"}

func runConvert(c *cli.Context) error {
	if c.NArg() > 1 {
		return usagef("convert: want one SRC folder, got %d arguments", c.NArg())
	}
	var fileFlags, karloFlags []string
	for _, n := range karloFileFlags {
		if c.String(n) != "" {
			fileFlags = append(fileFlags, "--"+n)
		}
	}
	karloFlags = slices.Clone(fileFlags)
	for _, n := range []string{"config", "tokenizer"} {
		if c.String(n) != "" {
			karloFlags = append(karloFlags, "--"+n)
		}
	}
	if c.NArg() == 0 && len(fileFlags) == 0 {
		return usagef("convert: want one SRC pipeline folder, got 0 arguments")
	}
	src := c.Args().First()
	out := c.String("output")
	if out == "" {
		return usagef("convert: -o FILE is required")
	}
	if _, err := convert.ParseDType(c.String("dtype")); err != nil {
		return usagef("convert: --dtype: %v", err)
	}
	var progress io.Writer = stderrOf(c)
	if c.Bool("quiet") {
		progress = nil
	}
	opt := convert.Options{
		DType:            c.String("dtype"),
		Progress:         progress,
		ConverterVersion: version,
	}

	var rep *convert.Report
	var err error
	isDiffusers := false
	if src != "" {
		_, statErr := os.Stat(filepath.Join(src, "model_index.json"))
		isDiffusers = statErr == nil
	}
	switch {
	case isDiffusers && len(karloFlags) > 0:
		return usagef("convert: %s is a diffusers folder; %s apply only to the original Karlo release", src, strings.Join(karloFlags, ", "))
	case src != "" && !isDiffusers && len(karloFlags) == 0 && !convert.IsKarloDir(src):
		// Neither layout: the diffusers reader explains what is missing.
		_, err = convert.Convert(src, out, opt)
		if err == nil {
			err = fmt.Errorf("convert: %s: unexpected success", src)
		}
		return fmt.Errorf("%w (nor is it an original Karlo release: no prior-ckpt-step=….ckpt or decoder-ckpt-step=….ckpt)", err)
	case isDiffusers:
		rep, err = convert.Convert(src, out, opt)
	default:
		rep, err = convertKarlo(c, src, out, opt)
	}
	if err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "wrote %s: %d components, %d tensors, %s parameters, %s\n",
			rep.Output, len(rep.Components), rep.Tensors, groupDigits(rep.Params), humanBytes(rep.FileSize))
		writeDTypeTable(progress, rep)
	}
	return nil
}

// writeDTypeTable prints the report's per-dtype totals: tensors,
// parameters (elements), bytes before compression, bytes on disk and the
// zstd ratio (before / on disk).
func writeDTypeTable(w io.Writer, rep *convert.Report) {
	tab := table{
		header: []string{"DTYPE", "TENSORS", "PARAMS", "BYTES", "ON DISK", "ZSTD RATIO"},
		right:  []bool{false, true, true, true, true, true},
	}
	for _, s := range rep.DTypes {
		tab.rows = append(tab.rows, []string{s.DType.String(), fmt.Sprint(s.Tensors), groupDigits(s.Params),
			humanBytes(s.Bytes), humanBytes(s.Stored), ratio(s.Bytes, s.Stored)})
	}
	fmt.Fprintln(w)
	tab.write(w)
}

// convertKarlo converts the original Karlo release found in src (if set)
// and named by the file flags.
func convertKarlo(c *cli.Context, src, out string, opt convert.Options) (*convert.Report, error) {
	var files convert.KarloFiles
	if src != "" {
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("convert: %s is not a folder (name single files with --prior, --decoder, --sr, --clip, --clip-stats)", src)
		}
		if files, err = convert.FindKarloFiles(src); err != nil {
			return nil, err
		}
	}
	for _, set := range []struct {
		flag string
		dst  *string
	}{
		{"prior", &files.Prior}, {"decoder", &files.Decoder}, {"sr", &files.SR},
		{"clip", &files.CLIP}, {"clip-stats", &files.CLIPStats},
	} {
		if v := c.String(set.flag); v != "" {
			*set.dst = v
		}
	}
	kopt := convert.KarloOptions{Options: opt, TokenizerDir: c.String("tokenizer")}
	if src != "" {
		abs, err := filepath.Abs(src)
		if err != nil {
			abs = src
		}
		kopt.Source = filepath.Base(abs)
	}
	if dir := c.String("config"); dir != "" {
		cfg, err := convert.LoadKarloConfig(dir)
		if err != nil {
			return nil, err
		}
		kopt.Config = cfg
	}
	return convert.ConvertKarlo(files, out, kopt)
}

// stderrOf is where a command writes progress: the app's ErrWriter (tests
// set it), else standard error.
func stderrOf(c *cli.Context) io.Writer {
	if c.App != nil && c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}
