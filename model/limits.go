package model

import (
	"fmt"
	"strings"
)

// Limits on the sizes a configuration may declare. Configurations come from
// weight files, which come from anywhere: a config.json declaring a
// billion-channel layer must be refused with a clear error before any size
// derived from it reaches an allocation or an index computation. The limits
// are far above any unCLIP model (Karlo's widest layer has 4096 channels,
// its deepest tower 24 layers, its vocabulary 49408 tokens), so they only
// reject nonsense.
const (
	// MaxConfigWidth bounds every width: hidden and intermediate sizes,
	// channel counts, embedding and projection dimensions, head counts and
	// head sizes, norm groups, and transformer widths derived from them.
	MaxConfigWidth = 1 << 16
	// MaxConfigLayers bounds transformer depths (num_hidden_layers,
	// num_layers).
	MaxConfigLayers = 256
	// MaxConfigLayersPerBlock bounds a U-Net's layers_per_block.
	MaxConfigLayersPerBlock = 64
	// MaxConfigBlocks bounds the number of U-Net blocks (each but the last
	// halves the resolution).
	MaxConfigBlocks = 16
	// MaxConfigTokens bounds sequence lengths and token counts
	// (max_position_embeddings, num_embeddings, clip_extra_context_tokens).
	MaxConfigTokens = 1 << 16
	// MaxConfigVocab bounds vocab_size.
	MaxConfigVocab = 1 << 20
	// MaxConfigImageSize bounds image and sample sizes, in pixels per side.
	MaxConfigImageSize = 1 << 14
	// MaxConfigTimesteps bounds a scheduler's num_train_timesteps.
	MaxConfigTimesteps = 1 << 20
)

// limitCheck collects "key = value exceeds limit" problems.
type limitCheck []string

// max records a problem when v > limit (negative values are left to the
// callers' own positivity checks, which name them better).
func (l *limitCheck) max(key string, v, limit int) {
	if v > limit {
		*l = append(*l, fmt.Sprintf("%s = %d exceeds the limit of %d", key, v, limit))
	}
}

// err is nil without problems, else one error naming the config.
func (l limitCheck) err(what string) error {
	if len(l) == 0 {
		return nil
	}
	return fmt.Errorf("%s config: implausible size (corrupt or hostile config?): %s", what, strings.Join(l, "; "))
}
