package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// runCLI runs the dalle2 command line with its output captured.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	app := newApp()
	var o, e bytes.Buffer
	app.Writer, app.ErrWriter = &o, &e
	err = app.Run(reorderArgs(app, append([]string{"dalle2"}, args...)))
	return o.String(), e.String(), err
}

func TestConvertCommand(t *testing.T) {
	src := filepath.Join(goldenRoot(t), "tiny-unclip")
	out := filepath.Join(t.TempDir(), "tiny.d2")

	_, stderr, err := runCLI(t, "convert", src, "-o", out, "--dtype", "f16")
	require.NoError(t, err)
	require.Contains(t, stderr, "super_res_last")
	require.Contains(t, stderr, "wrote "+out+": 10 components, 566 tensors, 3,961,489 parameters")
	f, err := loader.Open(out)
	require.NoError(t, err)
	require.Equal(t, "F16", f.Meta()[loader.MetaDType])
	require.Equal(t, "dalle2 "+version, f.Meta()[loader.MetaConverter])
	require.NoError(t, f.Close())

	// Flags after SRC, and --quiet.
	_, stderr, err = runCLI(t, "convert", "-q", src, "--output", out)
	require.NoError(t, err)
	require.Empty(t, stderr)

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"convert"}, "want one SRC"},
		{[]string{"convert", src, src, "-o", out}, "got 2 arguments"},
		{[]string{"convert", src}, "-o FILE is required"},
		{[]string{"convert", src, "-o", out, "--dtype", "q4"}, `unknown dtype "q4"`},
	} {
		_, _, err := runCLI(t, c.args...)
		require.ErrorContains(t, err, c.msg, c.args)
		require.True(t, isUsageError(err), "%v: want a usage error (exit 2)", c.args)
	}

	// A failure (exit 1), not a usage error; nothing is written.
	bad := filepath.Join(t.TempDir(), "bad.d2")
	_, _, err = runCLI(t, "convert", t.TempDir(), "-o", bad)
	require.ErrorContains(t, err, "model_index.json")
	require.False(t, isUsageError(err))
	require.NoFileExists(t, bad)
	require.Equal(t, 1, run([]string{"dalle2", "convert", "-q", t.TempDir(), "-o", bad}))
	require.Equal(t, 2, run([]string{"dalle2", "convert", "-q", src}))
}

func TestInfoCommand(t *testing.T) {
	src := filepath.Join(goldenRoot(t), "tiny-unclip")
	out := filepath.Join(t.TempDir(), "tiny.d2")
	_, _, err := runCLI(t, "convert", "-q", src, "-o", out)
	require.NoError(t, err)

	stdout, _, err := runCLI(t, "info", out, "--verify")
	require.NoError(t, err)
	require.Contains(t, stdout, "format   dalle2 weight file, version 1\n")
	require.Contains(t, stdout, "  source     tiny-unclip\n")
	lines := strings.Split(stdout, "\n")
	// The component table: a header, one row per component, TOTAL, all
	// aligned (every row as wide as its columns make it).
	var header, decoder, scheduler, total string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "COMPONENT "):
			header = l
		case strings.HasPrefix(l, "decoder "):
			decoder = l
		case strings.HasPrefix(l, "prior_scheduler "):
			scheduler = l
		case strings.HasPrefix(l, "TOTAL "):
			total = l
		}
	}
	require.Equal(t, strings.Fields("COMPONENT CLASS TENSORS PARAMS DTYPES ON DISK IN MEMORY AS F32 RATIO"), strings.Fields(header))
	// decoder: 176 F32 tensors, 880,070 parameters (MANIFEST), 3,520,280 bytes.
	require.Equal(t, strings.Fields("decoder UNet2DConditionModel 176 880,070 F32:176 3.5 MB 3.5 MB 3.5 MB 1.00"), strings.Fields(decoder))
	require.Equal(t, strings.Fields("prior_scheduler UnCLIPScheduler - - - - - - -"), strings.Fields(scheduler))
	require.Equal(t, strings.Fields("TOTAL 566 3,961,489 F32:566 15.8 MB 15.8 MB 15.8 MB 1.00"), strings.Fields(total))
	require.Equal(t, strings.Index(header, "TENSORS")+len("TENSORS"), strings.Index(decoder, "176")+len("176"), "numbers right-aligned under their header")
	require.Contains(t, stdout, "tokenizer/vocab.json")
	require.Contains(t, stdout, "verify: OK (566 tensors, ")

	// Flip one byte of a raw tensor: --verify fails naming it.
	f, err := loader.Open(out)
	require.NoError(t, err)
	var victim loader.TensorInfo
	for _, ti := range f.Index() {
		if ti.Codec == loader.CodecRaw && ti.Size > 0 {
			victim = ti
			break
		}
	}
	require.NoError(t, f.Close())
	require.NotEmpty(t, victim.Name)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	data[victim.Offset] ^= 0x40
	require.NoError(t, os.WriteFile(out, data, 0o644))
	_, _, err = runCLI(t, "info", out, "--verify")
	require.ErrorContains(t, err, victim.Name)
	require.False(t, isUsageError(err))
	_, _, err = runCLI(t, "info", out) // without --verify the index alone is read
	require.NoError(t, err)

	_, _, err = runCLI(t, "info")
	require.True(t, isUsageError(err))
	_, _, err = runCLI(t, "info", filepath.Join(t.TempDir(), "missing.d2"))
	require.Error(t, err)
	require.False(t, isUsageError(err))
}
