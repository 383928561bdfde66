package model

import (
	"fmt"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

// Noise supplies every random tensor a pipeline run draws, in the order the
// reference draws them (spec §10.2). Names are those of the golden traces:
// "inputs.prior_latents", "inputs.decoder_latents", "inputs.super_res_latents"
// and "<stage>.<NN>.noise" for the scheduler's variance noise at loop index NN.
type Noise interface {
	Draw(name string, shape ...int) (*ops.Tensor, error)
}

// SeededNoise draws from a TorchRNG in call order, so a seed reproduces
// PyTorch's torch.randn stream on CPU (to about one ulp).
type SeededNoise struct{ RNG *TorchRNG }

// NewSeededNoise returns a Noise driven by torch's CPU generator seeded with seed.
func NewSeededNoise(seed uint64) *SeededNoise { return &SeededNoise{RNG: NewTorchRNG(seed)} }

// Draw returns the next normal tensor of the given shape (name is unused).
func (s *SeededNoise) Draw(name string, shape ...int) (*ops.Tensor, error) {
	return s.RNG.Randn(shape...), nil
}

// ReplayNoise serves recorded noise by name from a tensor source, e.g. a
// golden case's safetensors file or a file written by gen --dump. A missing
// name or a shape mismatch is an error: replay never falls back to fresh noise.
type ReplayNoise struct {
	Src  loader.Source
	Name string // for error messages (the file name)
}

// Draw returns the recorded tensor called name, checking its shape.
func (r *ReplayNoise) Draw(name string, shape ...int) (*ops.Tensor, error) {
	t, err := r.Src.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("noise file %s: no tensor %q (the run needs it with shape %v)", r.Name, name, shape)
	}
	if !shapeMatches(t.Shape, shape) {
		return nil, fmt.Errorf("noise file %s: tensor %q has shape %v, the run needs %v", r.Name, name, t.Shape, shape)
	}
	data, err := quant.ToFloat32(t.DType.String(), t.Data)
	if err != nil {
		return nil, fmt.Errorf("noise file %s: tensor %q: %v", r.Name, name, err)
	}
	// Copy: the source may be a read-only memory map and the sampler
	// updates latents in place.
	return ops.FromData(append([]float32(nil), data...), shape...), nil
}
