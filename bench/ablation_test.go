package bench

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/stretchr/testify/require"
)

// TestQ8Ablation measures, for each full-size module named in
// DALLE2_ABLATION (comma-separated: text, prior, decoder, superres;
// superres at DALLE2_ABLATION_SIZE, default 64, to keep it affordable), how
// much of the q8 module's teacher-forced error each family of Q8_0 weights
// causes: the module is built once in f32, once in q8 (convert's policy),
// and once per family with that family kept F16 (WithKeep). It prints one
// Markdown table per module; it asserts nothing beyond the runs working
// (a measurement, for bench/RESULTS.md §6.6). Skipped unless the variable
// is set: a module takes 1–10 minutes. DALLE2_ABLATION_BY=block groups the
// weights by block instead (a U-Net's down_blocks.{i}, mid_block,
// up_blocks.{i}; a transformer's layers), for every family or, with
// DALLE2_ABLATION_FAMILY=resnets.conv2, for one.
func TestQ8Ablation(t *testing.T) {
	env := os.Getenv("DALLE2_ABLATION")
	if env == "" {
		t.Skip("set DALLE2_ABLATION=text,prior,decoder,superres to measure")
	}
	size := 64
	if s := os.Getenv("DALLE2_ABLATION_SIZE"); s != "" {
		_, err := fmt.Sscan(s, &size)
		require.NoError(t, err, "DALLE2_ABLATION_SIZE")
	}
	for _, name := range strings.Split(env, ",") {
		build, component, shapes := ablationModule(t, name, size)
		ref := build(WithDType(loader.F32))
		ref.Forward()
		want := ops.FromData(slices.Clone(ref.Output().Data), ref.Output().Shape...)
		ref.Release()

		group := family
		if os.Getenv("DALLE2_ABLATION_BY") == "block" {
			only := os.Getenv("DALLE2_ABLATION_FAMILY")
			group = func(key string) string {
				if only != "" && family(key) != only {
					return "(other)"
				}
				return block(key)
			}
		}
		fams := families(component, shapes, group)
		delete(fams, "(other)")
		names := slices.Sorted(func(yield func(string) bool) {
			for f := range fams {
				if !yield(f) {
					return
				}
			}
		})
		run := func(keep func(string) bool) (rel float64, bytes int64) {
			m := build(WithDType(loader.Q8_0), WithKeep(keep))
			m.Forward()
			rel, err := CompareOutputs(m.Output(), want)
			require.NoError(t, err)
			bytes = m.WeightBytes
			m.Release()
			return rel, bytes
		}
		base, baseBytes := run(nil)
		var total int64
		for _, f := range fams {
			total += f
		}
		fmt.Printf("\n%s (%s): q8 rel L2 %.3e, %d bytes\n\n", name, component, base, baseBytes)
		fmt.Printf("| group kept f16 | Q8_0 params | share | rel L2 | error² removed | extra bytes |\n|---|---:|---:|---:|---:|---:|\n")
		for _, f := range names {
			keep := func(key string) bool { return group(key) == f }
			rel, b := run(keep)
			fmt.Printf("| %s | %d | %.1f%% | %.3e | %.1f%% | %d |\n", f, fams[f], 100*float64(fams[f])/float64(total),
				rel, 100*(1-(rel*rel)/(base*base)), b-baseBytes)
		}
	}
}

// ablationModule returns a builder of full-size module name, its pipeline
// component and its key → shape table.
func ablationModule(t *testing.T, name string, size int) (func(...Option) *Module, string, map[string][]int) {
	const seed = 1
	var (
		build     func(...Option) (*Module, error)
		component string
		shapes    map[string][]int
	)
	switch name {
	case "text":
		cfg, err := model.ParseCLIPTextConfig([]byte(KarloTextEncoderConfig))
		require.NoError(t, err)
		build = func(o ...Option) (*Module, error) { return NewTextEncoder(cfg, KarloTextBatch, seed, o...) }
		component, shapes = "text_encoder", TextEncoderShapes(cfg)
	case "prior":
		cfg, err := model.ParsePriorConfig([]byte(KarloPriorConfig))
		require.NoError(t, err)
		build = func(o ...Option) (*Module, error) { return NewPrior(cfg, KarloPriorBatch, seed, o...) }
		component, shapes = "prior", PriorShapes(cfg)
	case "decoder":
		cfg, err := model.ParseUNetConfig([]byte(KarloDecoderConfig))
		require.NoError(t, err)
		build = func(o ...Option) (*Module, error) {
			return NewUNet("decoder", cfg, KarloDecoderBatch, KarloDecoderSize, KarloContextLen, seed, o...)
		}
		component, shapes = "decoder", UNetShapes(cfg)
	case "superres":
		cfg, err := model.ParseUNetConfig([]byte(KarloSuperResConfig))
		require.NoError(t, err)
		build = func(o ...Option) (*Module, error) {
			return NewUNet("superres", cfg, KarloSuperResBatch, size, 0, seed, o...)
		}
		component, shapes = "super_res_first", UNetShapes(cfg)
	default:
		t.Fatalf("unknown module %q", name)
	}
	return func(o ...Option) *Module {
		m, err := build(o...)
		require.NoError(t, err)
		return m
	}, component, shapes
}

var digits = regexp.MustCompile(`\.[0-9]+`)

// family is a weight's key with its indices removed and only the last two
// module names kept: "resnets.conv1", "attn1.to_q", "mlp.fc1".
func family(key string) string {
	k := strings.TrimSuffix(digits.ReplaceAllString(key, ""), ".weight")
	parts := strings.Split(k, ".")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, ".")
}

// block is the block of a key: its name up to the first index
// ("up_blocks.2", "transformer_blocks.7", "text_model.encoder.layers.3"),
// or the key without ".weight" when it has no index.
func block(key string) string {
	if loc := digits.FindStringIndex(key); loc != nil {
		return key[:loc[1]]
	}
	return strings.TrimSuffix(key, ".weight")
}

// families counts the Q8_0 parameters of each group.
func families(component string, shapes map[string][]int, group func(string) string) map[string]int64 {
	out := map[string]int64{}
	policy := convert.NewPolicy(component, slices.Collect(maps.Keys(shapes)), loader.Q8_0)
	for key, shape := range shapes {
		if policy.DType(key, shape) != loader.Q8_0 {
			continue
		}
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		out[group(key)] += n
	}
	return out
}
