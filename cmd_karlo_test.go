package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConvertKarloCommand: converting the original Karlo layout and the
// reference converter's diffusers folder gives identical `info --tensors`
// listings, and `gen --seed 1` on both writes byte-identical PNGs. Each
// conversion is made from a link named "model" to the same weight file
// path, since a PNG records the model's path and source folder name.
func TestConvertKarloCommand(t *testing.T) {
	g, err := filepath.Abs(goldenRoot(t))
	require.NoError(t, err)
	orig := filepath.Join(g, "original-tiny")
	dir := t.TempDir()
	link := filepath.Join(dir, "model")
	model := filepath.Join(dir, "model.d2")

	type result struct {
		tensors string
		png     []byte
	}
	run := func(src string, extra ...string) result {
		require.NoError(t, os.Remove(link))
		require.NoError(t, os.Symlink(src, link))
		_, stderr, err := runCLI(t, append([]string{"convert", link, "-o", model}, extra...)...)
		require.NoError(t, err)
		require.Contains(t, stderr, "wrote "+model+": 10 components, 514 tensors, 3,159,356 parameters")
		list, _, err := runCLI(t, "info", "--tensors", model)
		require.NoError(t, err)
		png := filepath.Join(dir, "out.png")
		_, _, err = runCLI(t, "gen", "a red horse", "-m", model, "--seed", "1", "-o", png, "-q",
			"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2")
		require.NoError(t, err)
		b, err := os.ReadFile(png)
		require.NoError(t, err)
		return result{list, b}
	}
	require.NoError(t, os.Symlink(orig, link))
	karlo := run(orig, "--config", filepath.Join(orig, "configs"),
		"--tokenizer", filepath.Join(g, "original-tiny-diffusers", "tokenizer"))
	ref := run(filepath.Join(g, "original-tiny-diffusers"))
	require.Equal(t, 514, strings.Count(ref.tensors, "\n"))
	require.Equal(t, ref.tensors, karlo.tensors)
	require.True(t, bytes.Equal(ref.png, karlo.png), "PNGs differ")

	// Usage errors (exit 2): Karlo flags with a diffusers folder; nothing
	// to convert.
	out := filepath.Join(dir, "x.d2")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"convert", filepath.Join(g, "original-tiny-diffusers"), "-o", out, "--prior", "p.ckpt"}, "apply only to the original Karlo release"},
		{[]string{"convert", "-o", out}, "want one SRC"},
		{[]string{"convert", orig, orig, "-o", out}, "got 2 arguments"},
	} {
		_, _, err := runCLI(t, c.args...)
		require.ErrorContains(t, err, c.msg, c.args)
		require.True(t, isUsageError(err), "%v: want a usage error", c.args)
	}
	// Failures (exit 1) naming the problem; nothing written.
	_, _, err = runCLI(t, "convert", "-q", orig, "-o", out)
	require.ErrorContains(t, err, "--config")
	require.False(t, isUsageError(err))
	_, _, err = runCLI(t, "convert", "-q", "-o", out, "--prior", filepath.Join(orig, "prior.ckpt"))
	require.ErrorContains(t, err, "the decoder checkpoint is missing")
	_, _, err = runCLI(t, "convert", "-q", filepath.Join(orig, "prior.ckpt"), "-o", out)
	require.ErrorContains(t, err, "model_index.json")
	require.NoFileExists(t, out)

	// Explicit files instead of a folder.
	_, _, err = runCLI(t, "convert", "-q", "-o", out,
		"--prior", filepath.Join(orig, "variants", "prior-lightning.ckpt"), "--decoder", filepath.Join(orig, "decoder.ckpt"),
		"--sr", filepath.Join(orig, "sr.ckpt"), "--clip", filepath.Join(orig, "clip.pt"),
		"--clip-stats", filepath.Join(orig, "variants", "clip_stats-stacked.th"),
		"--config", filepath.Join(orig, "configs"), "--tokenizer", filepath.Join(g, "original-tiny-diffusers", "tokenizer"))
	require.NoError(t, err)
	list, _, err := runCLI(t, "info", "--tensors", out)
	require.NoError(t, err)
	require.Equal(t, ref.tensors, list)
}

// TestConvertKarloHelp: --help documents both layouts and that a head size
// which divides the widths is the user's responsibility.
func TestConvertKarloHelp(t *testing.T) {
	d := convertCommand().Description
	for _, s := range []string{"prior-ckpt-step=01000000-of-01000000.ckpt", "ViT-L-14.pt", "--config DIR",
		"user's responsibility", "--tokenizer DIR", "model_index.json"} {
		require.Contains(t, d, s)
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	flat := strings.Join(strings.Fields(string(readme)), " ")
	require.Contains(t, flat, "Giving the right head sizes for non-release models is the user's responsibility")
}

// TestInfoTensors: one sorted line per tensor: name, dtype, shape, hash.
func TestInfoTensors(t *testing.T) {
	src := filepath.Join(goldenRoot(t), "tiny-unclip")
	out := filepath.Join(t.TempDir(), "tiny.d2")
	_, _, err := runCLI(t, "convert", "-q", src, "-o", out)
	require.NoError(t, err)
	stdout, _, err := runCLI(t, "info", out, "--tensors")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 566)
	require.True(t, slices.IsSorted(lines))
	re := regexp.MustCompile(`^[a-z_]+/[A-Za-z0-9_.]+ (F32|F16|BF16|I64) \[[0-9,]*\] [0-9a-f]{16}$`)
	for _, l := range lines {
		require.Regexp(t, re, l)
	}
	// Same values at another dtype: same names and shapes, other hashes.
	out16 := filepath.Join(t.TempDir(), "tiny16.d2")
	_, _, err = runCLI(t, "convert", "-q", src, "-o", out16, "--dtype", "f16")
	require.NoError(t, err)
	s16, _, err := runCLI(t, "info", "--tensors", out16)
	require.NoError(t, err)
	l16 := strings.Split(strings.TrimSuffix(s16, "\n"), "\n")
	require.Len(t, l16, len(lines))
	for i := range lines {
		a, b := strings.Fields(lines[i]), strings.Fields(l16[i])
		require.Equal(t, a[0], b[0])
		require.Equal(t, a[2], b[2])
		if a[1] == "F32" {
			require.Equal(t, "F16", b[1])
			require.NotEqual(t, a[3], b[3])
		}
	}
}
