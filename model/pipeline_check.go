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
	te, pr, tp := p.parts.textEncoder, p.parts.prior, p.parts.textProj

	if p.Tokenizer != nil && te != nil && p.Tokenizer.VocabSize() > te.VocabSize {
		bad("tokenizer: vocab.json has ids up to %d, text_encoder vocab_size is %d", p.Tokenizer.VocabSize()-1, te.VocabSize)
	}
	if te != nil && te.MaxPositionEmbeddings < ContextLength {
		bad("text_encoder: max_position_embeddings %d, prompts are %d tokens", te.MaxPositionEmbeddings, ContextLength)
	}
	if pr != nil {
		c := pr
		if c.ClipEmbedDim != c.EmbeddingDim {
			bad("prior: clip_embed_dim %d differs from embedding_dim %d (the prior denoises its own output)", c.ClipEmbedDim, c.EmbeddingDim)
		}
		if te != nil {
			if c.NumEmbeddings != ContextLength {
				bad("prior: num_embeddings %d, prompts are %d tokens", c.NumEmbeddings, ContextLength)
			}
			if c.EmbeddingDim != te.HiddenSize {
				bad("prior: embedding_dim %d, text_encoder hidden_size is %d", c.EmbeddingDim, te.HiddenSize)
			}
			if c.EmbeddingProjDim != te.ProjectionDim {
				bad("prior: embedding_proj_dim %d, text_encoder projection_dim is %d", c.EmbeddingProjDim, te.ProjectionDim)
			}
		}
		if p.PriorScheduler != nil {
			if err := schedulerFits(p.PriorScheduler, c.ClipEmbedDim, c.EmbeddingDim); err != nil {
				bad("prior_scheduler: %v", err)
			}
		}
	}
	if tp != nil {
		e := tp.ClipEmbeddingsDim
		if te != nil && (te.ProjectionDim != e || te.HiddenSize != e) {
			bad("text_proj: clip_embeddings_dim %d, text_encoder projection_dim %d and hidden_size %d", e, te.ProjectionDim, te.HiddenSize)
		}
		if pr != nil && pr.ClipEmbedDim != e {
			bad("text_proj: clip_embeddings_dim %d, the prior makes %d-dimensional image embeddings", e, pr.ClipEmbedDim)
		}
		if ie := p.parts.imageEncoder; ie != nil && ie.ProjectionDim != e {
			bad("text_proj: clip_embeddings_dim %d, image_encoder projection_dim is %d", e, ie.ProjectionDim)
		}
	}
	if c := p.parts.decoder; c != nil {
		if err := sampleFits(c, c.SampleSize); err != nil {
			bad("decoder: %v", err)
		}
		if tp != nil && c.usesCrossAttention() && c.CrossAttentionDim != tp.CrossAttentionDim {
			bad("decoder: cross_attention_dim %d, text_proj makes %d", c.CrossAttentionDim, tp.CrossAttentionDim)
		}
		if tp != nil && c.ClassEmbedType == "identity" && c.TimeEmbedDim != tp.TimeEmbedDim {
			bad("decoder: time embedding dim %d, text_proj makes %d", c.TimeEmbedDim, tp.TimeEmbedDim)
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
	if c := p.parts.superResFirst; c != nil {
		z := c.InChannels / 2 // noise channels; the rest is the upsampled image
		if d := p.parts.decoder; d != nil && c.InChannels-z != d.InChannels {
			bad("super_res_first: in_channels %d, want twice the decoder's %d", c.InChannels, d.InChannels)
		}
		for _, u := range []struct {
			name string
			c    *UNetConfig
		}{{"super_res_first", c}, {"super_res_last", p.parts.superResLast}} {
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
