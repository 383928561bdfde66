package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// TestConvertInfoQ8: convert --dtype q8 prints its per-dtype table, and
// info counts Q8_0 tensors' parameters and f32 size, verifies them and lists
// them.
func TestConvertInfoQ8(t *testing.T) {
	src := filepath.Join(goldenRoot(t), "tiny-unclip")
	out := filepath.Join(t.TempDir(), "tiny-q8.d2")
	_, stderr, err := runCLI(t, "convert", src, "-o", out, "--dtype", "q8")
	require.NoError(t, err)
	require.Contains(t, stderr, "wrote "+out+": 10 components, 566 tensors, 3,961,489 parameters")
	rows := map[string][]string{}
	for _, l := range strings.Split(stderr, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	require.Equal(t, strings.Fields("DTYPE TENSORS PARAMS BYTES ON DISK ZSTD RATIO"), rows["DTYPE"])
	// 440 F16 and 126 Q8_0 tensors, 1,984,497 + 1,976,992 = 3,961,489
	// parameters; Q8_0 holds 34 bytes per 32 of them: 2,100,554 bytes.
	require.Equal(t, strings.Fields("F16 440 1,984,497 4.0 MB 4.0 MB 1.00"), rows["F16"])
	require.Equal(t, strings.Fields("Q8_0 126 1,976,992 2.1 MB 2.1 MB 1.00"), rows["Q8_0"])

	_, _, err = runCLI(t, "convert", src, "-o", out, "--dtype", "q4")
	require.ErrorContains(t, err, `unknown dtype "q4" (want f32|f16|q8)`)

	stdout, _, err := runCLI(t, "info", out, "--verify")
	require.NoError(t, err)
	rows = map[string][]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	// Decoder: 880,070 parameters (MANIFEST), as f32 3,520,280 bytes.
	require.Equal(t, strings.Fields("decoder UNet2DConditionModel 176 880,070 F16:137 Q8_0:39 1.1 MB 1.1 MB 3.5 MB 1.00"), rows["decoder"])
	require.Equal(t, strings.Fields("TOTAL 566 3,961,489 F16:440 Q8_0:126 6.1 MB 6.1 MB 15.8 MB 1.00"), rows["TOTAL"])
	require.Contains(t, stdout, "verify: OK (566 tensors, ")

	stdout, _, err = runCLI(t, "info", "--tensors", out)
	require.NoError(t, err)
	require.Contains(t, stdout, "decoder/down_blocks.1.resnets.0.time_emb_proj.weight Q8_0 [128,128] ")
	require.Contains(t, stdout, "decoder/conv_in.weight F16 [32,3,3,3] ")
	require.Equal(t, 126, strings.Count(stdout, " Q8_0 ["))
	require.Contains(t, stdout, "decoder/up_blocks.1.resnets.0.conv1.weight F16 ") // the last up block (policy.go)

	// A flipped byte in a Q8_0 tensor fails --verify, naming it.
	f, err := loader.Open(out)
	require.NoError(t, err)
	var victim loader.TensorInfo
	for _, ti := range f.Index() {
		if ti.DType == loader.Q8_0 {
			victim = ti
			break
		}
	}
	require.NoError(t, f.Close())
	require.Equal(t, loader.CodecRaw, victim.Codec)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	data[victim.Offset+5] ^= 1
	require.NoError(t, os.WriteFile(out, data, 0o644))
	_, _, err = runCLI(t, "info", out, "--verify")
	require.ErrorContains(t, err, victim.Name)
}
