package convert

import (
	"math"
	"strconv"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// q8MinElems is the smallest weight Policy.DType quantizes: below 32×32
// elements the saving is a few hundred bytes and not worth any error.
const q8MinElems = 32 * 32

// Policy is the storage policy of one pipeline component (see DType).
type Policy struct {
	component string
	target    loader.DType
	lastUp    string // a U-Net's last up block, "up_blocks.3."; "" if none
}

// NewPolicy is the storage policy for target of pipeline component
// ("decoder", "text_encoder", ...) whose tensors are named names (a U-Net's
// rule needs to know which up block is its last).
func NewPolicy(component string, names []string, target loader.DType) Policy {
	p := Policy{component: component, target: target}
	last := -1
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, "up_blocks.")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		if b, err := strconv.Atoi(idx); err == nil && b > last && b < 1<<20 {
			last = b
		}
	}
	if last >= 0 {
		p.lastUp = "up_blocks." + strconv.Itoa(last) + "."
	}
	return p
}

// DType is the storage policy of `dalle2 convert --dtype`: the dtype a
// floating-point tensor of p's component with state-dict key key and shape
// shape is stored as when the target is p's. Integer and bool tensors are
// not subject to it: they are always stored as they are.
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
//   - biases and every other vector;
//   - the weights that cause most of a module's q8 error for their size,
//     chosen by measurement (q8KeepF16): the attention value and output
//     projections of the CLIP encoders and the prior, the prior's input and
//     output projections, a U-Net's last up block (the full-resolution
//     layers right before conv_out) and the decoder's first down block.
//
// Every other float tensor is stored F16. The rule depends on the
// component, the key, the shape and (for the U-Nets' last up block) the
// component's other keys. The measured effect of this choice on each
// module's output and on whole pipelines (q8 against f16 and f32) is in
// bench/RESULTS.md §6.
func (p Policy) DType(key string, shape []int) loader.DType {
	if p.target != loader.Q8_0 {
		return p.target
	}
	if p.quantizable(key, shape) {
		return loader.Q8_0
	}
	return loader.F16
}

// quantizable is DType's Q8_0 rule.
func (p Policy) quantizable(key string, shape []int) bool {
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
	return !p.keepF16(module)
}

// q8KeepF16 lists, per component, the Linear and convolution weights that
// a q8 file keeps in F16 although Q8_0 could hold them: the ones that cause
// the largest share of a module's q8 error per byte. Each entry is a module
// path suffix (it matches "transformer_blocks.3.attn1.to_v" for
// "attn1.to_v"); an entry ending in "." matches a key prefix instead
// ("down_blocks.0." for a whole block). The choice was made by measurement:
// bench's TestQ8Ablation stores one group of weights at a time in F16 and
// measures the relative L2 error of each full-size Karlo-shaped module's
// output against f32 (bench/RESULTS.md §6.6 has the tables and the
// resulting errors, sizes and speeds). With random weights, as there, the
// attention value and output projections carry 55–70% of the text
// encoder's and the prior's error at 16% of their weights; the image
// encoder has the text encoder's layers and takes its rule unmeasured.
//
// For the U-Nets the measurement is by block, not by kind of layer: their
// last up block (the full-resolution resnets right before conv_out, 2% of
// their weights) carries 57% (super-res) and 67% (decoder) of the error;
// NewPolicy finds it from the keys, so the rule is in keepF16, not here.
// Their first down block (the other full-resolution block) carries 22%
// in both; it stays F16 in the decoder only: on the golden tiny pipeline
// at Karlo's step counts it lifts the q8 image from 29.3 to 31.8 dB PSNR
// against f32 when kept in the decoder and to 31.9 dB in all three
// U-Nets, while at 256×256 it is about 14% of a super-res pass, which
// would then run at the float32 speed instead of the q16 path's.
var q8KeepF16 = map[string][]string{
	"text_encoder":  {"self_attn.v_proj", "self_attn.out_proj"},
	"image_encoder": {"self_attn.v_proj", "self_attn.out_proj"},
	"prior":         {"attn1.to_v", "attn1.to_out.0", "proj_to_clip_embeddings", "encoder_hidden_states_proj"},
	"decoder":       {"down_blocks.0."},
}

// keepF16 reports whether module (a key without its ".weight") stays F16
// by q8KeepF16, or as part of a U-Net's last up block.
func (p Policy) keepF16(module string) bool {
	if p.lastUp != "" && isUNet(p.component) && strings.HasPrefix(module, p.lastUp) {
		return true
	}
	for _, e := range q8KeepF16[p.component] {
		if strings.HasSuffix(e, ".") {
			if strings.HasPrefix(module, e) {
				return true
			}
		} else if module == e || strings.HasSuffix(module, "."+e) {
			return true
		}
	}
	return false
}

// isUNet reports whether component holds a U-Net.
func isUNet(component string) bool {
	return component == "decoder" || component == "super_res_first" || component == "super_res_last"
}
