package model

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dalle2/dalle2/loader"
	"github.com/stretchr/testify/require"
)

// In the default mode every model stays built, but a stage only holds the
// activation buffers of the models it runs: while super_res_last runs,
// super_res_first's (and the decoder's) buffers are gone, and a second run
// rebuilds them with the same result.
func TestStageFreesOtherBuffers(t *testing.T) {
	f, err := loader.Open(filepath.Join("..", "testdata", "builtin-tiny-unclip-f16.d2"))
	require.NoError(t, err)
	defer f.Close()
	p, err := LoadPipeline(f)
	require.NoError(t, err)
	checked := 0
	run := func() []uint8 {
		res, err := p.Generate(context.Background(), Options{
			Prompts: []string{"a red horse"}, ImagesPerPrompt: 1, PriorSteps: 2, DecoderSteps: 2, SuperResSteps: 2,
			PriorGuidance: 4, DecoderGuidance: 8, Noise: NewSeededNoise(7),
			Progress: func(stage string, step, total int) {
				if stage == "super_res" && step == total { // after super_res_last's pass
					require.Zero(t, p.SuperResFirst.arena.Bytes()+p.SuperResFirst.scratch.Bytes(), "super_res_first buffers")
					require.Zero(t, p.Decoder.arena.Bytes()+p.Decoder.scratch.Bytes(), "decoder buffers")
					require.Zero(t, p.TextEncoder.arena.Bytes(), "text encoder buffers")
					require.NotZero(t, p.SuperResLast.arena.Bytes(), "super_res_last buffers")
					checked++
				}
			},
		})
		require.NoError(t, err)
		return res.Pixels
	}
	first := run()
	require.Equal(t, first, run(), "second run after the buffers were freed")
	require.Equal(t, 2, checked)
}
