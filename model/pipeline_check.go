package model

import (
	"errors"
	"fmt"
)

// checkConsistency checks that the loaded components fit together the way
// Generate, Vary, Edit and Interpolate connect them, so that a model file
// whose components disagree (corrupt, hostile or mixed up) is refused with
// an error when loaded instead of making a Forward panic mid-run. Only
// components present are checked; every problem is listed.
func (p *Pipeline) checkConsistency() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	te, pr, tp := p.TextEncoder, p.Prior, p.TextProj

	if p.Tokenizer != nil && te != nil && p.Tokenizer.VocabSize() > te.Config.VocabSize {
		bad("tokenizer: vocab.json has ids up to %d, text_encoder vocab_size is %d", p.Tokenizer.VocabSize()-1, te.Config.VocabSize)
	}
	if te != nil && te.Config.MaxPositionEmbeddings < ContextLength {
		bad("text_encoder: max_position_embeddings %d, prompts are %d tokens", te.Config.MaxPositionEmbeddings, ContextLength)
	}
	if pr != nil {
		c := pr.Config
		if c.ClipEmbedDim != c.EmbeddingDim {
			bad("prior: clip_embed_dim %d differs from embedding_dim %d (the prior denoises its own output)", c.ClipEmbedDim, c.EmbeddingDim)
		}
		if te != nil {
			if c.NumEmbeddings != ContextLength {
				bad("prior: num_embeddings %d, prompts are %d tokens", c.NumEmbeddings, ContextLength)
			}
			if c.EmbeddingDim != te.Config.HiddenSize {
				bad("prior: embedding_dim %d, text_encoder hidden_size is %d", c.EmbeddingDim, te.Config.HiddenSize)
			}
			if c.EmbeddingProjDim != te.Config.ProjectionDim {
				bad("prior: embedding_proj_dim %d, text_encoder projection_dim is %d", c.EmbeddingProjDim, te.Config.ProjectionDim)
			}
		}
		if p.PriorScheduler != nil {
			if err := schedulerFits(p.PriorScheduler, c.ClipEmbedDim, c.EmbeddingDim); err != nil {
				bad("prior_scheduler: %v", err)
			}
		}
	}
	if tp != nil {
		e := p.TextProjConfig.ClipEmbeddingsDim
		if te != nil && (te.Config.ProjectionDim != e || te.Config.HiddenSize != e) {
			bad("text_proj: clip_embeddings_dim %d, text_encoder projection_dim %d and hidden_size %d", e, te.Config.ProjectionDim, te.Config.HiddenSize)
		}
		if pr != nil && pr.Config.ClipEmbedDim != e {
			bad("text_proj: clip_embeddings_dim %d, the prior makes %d-dimensional image embeddings", e, pr.Config.ClipEmbedDim)
		}
		if p.ImageEncoder != nil && p.ImageEncoder.Config.ProjectionDim != e {
			bad("text_proj: clip_embeddings_dim %d, image_encoder projection_dim is %d", e, p.ImageEncoder.Config.ProjectionDim)
		}
	}
	if d := p.Decoder; d != nil {
		c := &p.DecoderConfig
		if err := sampleFits(c, c.SampleSize); err != nil {
			bad("decoder: %v", err)
		}
		if tp != nil && c.usesCrossAttention() && c.CrossAttentionDim != p.TextProjConfig.CrossAttentionDim {
			bad("decoder: cross_attention_dim %d, text_proj makes %d", c.CrossAttentionDim, p.TextProjConfig.CrossAttentionDim)
		}
		if tp != nil && c.ClassEmbedType == "identity" && c.TimeEmbedDim != p.TextProjConfig.TimeEmbedDim {
			bad("decoder: time embedding dim %d, text_proj makes %d", c.TimeEmbedDim, p.TextProjConfig.TimeEmbedDim)
		}
		if c.OutChannels < c.InChannels {
			bad("decoder: out_channels %d below in_channels %d", c.OutChannels, c.InChannels)
		}
		if p.DecoderScheduler != nil {
			if err := schedulerFits(p.DecoderScheduler, c.OutChannels, c.InChannels); err != nil {
				bad("decoder_scheduler: %v", err)
			}
		}
	}
	if sr := p.SuperResFirst; sr != nil {
		c := &p.SuperResConfig
		z := c.InChannels / 2 // noise channels; the rest is the upsampled image
		if p.Decoder != nil && c.InChannels-z != p.DecoderConfig.InChannels {
			bad("super_res_first: in_channels %d, want twice the decoder's %d", c.InChannels, p.DecoderConfig.InChannels)
		}
		for _, u := range []struct {
			name string
			c    *UNetConfig
		}{{"super_res_first", c}, {"super_res_last", configOf(p.SuperResLast)}} {
			if u.c == nil {
				continue
			}
			if u.c.InChannels != c.InChannels {
				bad("%s: in_channels %d, super_res_first has %d", u.name, u.c.InChannels, c.InChannels)
			}
			if err := sampleFits(u.c, c.SampleSize); err != nil {
				bad("%s: %v", u.name, err)
			}
			if p.SuperResScheduler != nil {
				if err := schedulerFits(p.SuperResScheduler, u.c.OutChannels, z); err != nil {
					bad("super_res_scheduler (%s): %v", u.name, err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the model file's components do not fit together (corrupt or mixed up?): %w", errors.Join(errs...))
	}
	return nil
}

func configOf(u *UNet) *UNetConfig {
	if u == nil {
		return nil
	}
	return &u.Config
}

// sampleFits checks that a U-Net can run on size×size samples.
func sampleFits(c *UNetConfig, size int) error {
	f := 1 << (len(c.BlockOutChannels) - 1)
	if size <= 0 || size%f != 0 {
		return fmt.Errorf("sample_size %d is not a positive multiple of %d (%d blocks)", size, f, len(c.BlockOutChannels))
	}
	return nil
}

// schedulerFits checks that a model output of out channels (or features)
// can step a sample of in: the same count, or twice as many with
// learned_range variance.
func schedulerFits(s *Scheduler, out, in int) error {
	switch v := s.Config().VarianceType; {
	case v == "learned_range" && out != 2*in:
		return fmt.Errorf("variance_type learned_range needs a model output of %d channels, the model makes %d", 2*in, out)
	case v != "learned_range" && out != in:
		return fmt.Errorf("variance_type %s needs a model output of %d channels, the model makes %d", v, in, out)
	}
	return nil
}
