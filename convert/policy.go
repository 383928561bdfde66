package convert

import (
	"math"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// q8MinElems is the smallest weight StorageDType quantizes: below 32×32
// elements the saving is a few hundred bytes and not worth any error.
const q8MinElems = 32 * 32

// StorageDType is the storage policy of `dalle2 convert --dtype`: the dtype
// a floating-point tensor of pipeline component component ("decoder",
// "text_encoder", ...) with state-dict key key and shape shape is stored as
// when the target is target. Integer and bool tensors are not subject to it:
// they are always stored as they are.
//
// For target F32 or F16 every float tensor is stored as target. For target
// Q8_0 a tensor is stored as Q8_0 when it is a weight the model hands to
// ops.Linear or ops.Conv2D, which read Q8_0 weights directly:
//
//   - its key ends in ".weight" and its rank is 2 (a Linear's [out, in]) or
//     4 (a convolution's [Cout, Cin, KH, KW]);
//   - its row length, the product of the dimensions after the first, is a
//     multiple of 32, so that no Q8_0 block spans two rows (quant/q8.go);
//   - it has at least 32·32 elements;
//
// except for
//
//   - the first and last convolutions of the U-Nets, "conv_in.weight" and
//     "conv_out.weight": conv_in reads the noisy image itself and conv_out
//     writes the model's prediction with no later layer to average its
//     rounding errors out, and both are tiny (Karlo's decoder: 8,640 and
//     17,280 of its 885 M weights);
//   - embedding tables, modules whose name mentions "embedding" but not
//     "proj" (token_embedding, position_embedding; also the vision tower's
//     patch_embedding, its first convolution, kept for conv_in's reason):
//     a table row enters the model as it is, not as one term of a dot
//     product in which independent rounding errors average out, and
//     ops.Embedding does not read Q8_0. (Projections such as embedding_proj,
//     clip_image_embeddings_project_to_time_embeddings and
//     proj_to_clip_embeddings are Linears and are quantized; bare
//     parameters such as the prior's positional_embedding, prd_embedding,
//     clip_mean and clip_std, the vision tower's class_embedding and
//     text_proj's learned_classifier_free_guidance_embeddings have no
//     ".weight" suffix and are added or multiplied elementwise);
//   - norms: any key with a "norm" (GroupNorm, LayerNorm, CLIP's
//     "pre_layrnorm") or an "ln_" part;
//   - biases and every other vector.
//
// Every other float tensor is stored F16. The rule depends on the key and
// the shape only; component is passed so that a per-component exception can
// be made here without changing the callers. The measured effect of this
// choice on each module's output and on whole pipelines (q8 against f16 and
// f32) is in bench/RESULTS.md.
func StorageDType(component, key string, shape []int, target loader.DType) loader.DType {
	if target != loader.Q8_0 {
		return target
	}
	if quantizable(key, shape) {
		return loader.Q8_0
	}
	return loader.F16
}

// quantizable is StorageDType's Q8_0 rule.
func quantizable(key string, shape []int) bool {
	module, ok := strings.CutSuffix(key, ".weight")
	if !ok || (len(shape) != 2 && len(shape) != 4) {
		return false
	}
	row := 1
	for _, d := range shape[1:] {
		if d <= 0 || row > math.MaxInt/d {
			return false
		}
		row *= d
	}
	// row >= 32 below, so the element count check cannot overflow.
	if row%32 != 0 || shape[0] < (q8MinElems+row-1)/row {
		return false
	}
	if key == "conv_in.weight" || key == "conv_out.weight" {
		return false
	}
	parts := strings.Split(module, ".")
	for _, p := range parts {
		if strings.Contains(p, "norm") || strings.HasPrefix(p, "ln_") {
			return false
		}
	}
	name := parts[len(parts)-1]
	if strings.Contains(name, "embedding") && !strings.Contains(name, "proj") {
		return false
	}
	return true
}
