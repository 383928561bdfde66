package bench

// Weights stored in a narrower type (F16, Q8_0) exactly as `dalle2 convert
// --dtype` would store them, without writing a file: the random F32 tensors
// go through convert's per-tensor storage policy on their way to the model
// constructors.

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// Option changes how a module is built (see WithDType).
type Option func(*buildOptions)

type buildOptions struct {
	dtype loader.DType
	keep  func(key string) bool // WithKeep
}

func applyOptions(opts []Option) buildOptions {
	o := buildOptions{dtype: loader.F32}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithDType stores the module's weights as target (loader.F32, the default,
// F16 or Q8_0) through convert's storage policy (convert.Policy.DType picks
// each tensor's type, convert.ConvertTensor converts it), as a weight file
// written by `dalle2 convert --dtype` holds them.
func WithDType(target loader.DType) Option {
	return func(o *buildOptions) { o.dtype = target }
}

// WithKeep stores the tensors whose state-dict keys keep accepts as F16
// where convert's policy would store them as Q8_0: a policy ablation, to
// measure how much of a module's q8 error each group of weights causes.
// It changes nothing for other targets.
func WithKeep(keep func(key string) bool) Option {
	return func(o *buildOptions) { o.keep = keep }
}

// DTypeName is the --dtype name of a storage target: "f32", "f16" or "q8"
// (the loader name in lower case for others).
func DTypeName(d loader.DType) string {
	switch d {
	case loader.F32:
		return "f32"
	case loader.F16:
		return "f16"
	case loader.Q8_0:
		return "q8"
	}
	return strings.ToLower(d.String())
}

// ParseDType maps a --dtype name ("f32", "f16", "q8", as `dalle2 convert`
// accepts them) to its storage target.
func ParseDType(s string) (loader.DType, error) {
	if s == "" {
		return loader.Invalid, fmt.Errorf("empty dtype (want f32, f16 or q8)")
	}
	d, err := convert.ParseDType(s)
	if err != nil {
		return loader.Invalid, err
	}
	if d != loader.F32 && d != loader.F16 && d != loader.Q8_0 {
		return loader.Invalid, fmt.Errorf("dtype %q is not a storage target (want f32, f16 or q8)", s)
	}
	return d, nil
}

// StoredSource serves the tensors of another source converted to the type
// convert's storage policy gives them for a target (see WithDType).
type StoredSource struct {
	src       loader.Source
	component string
	policy    convert.Policy
	keep      func(key string) bool // nil: convert's policy as it is
}

// NewStoredSource serves the tensors of src, the weights of pipeline
// component ("text_encoder", "prior", "decoder", ...), as stored for target.
func NewStoredSource(src loader.Source, component string, target loader.DType) *StoredSource {
	return &StoredSource{src: src, component: component, policy: convert.NewPolicy(component, src.Names(), target)}
}

// Names lists the tensors of the underlying source.
func (s *StoredSource) Names() []string { return s.src.Names() }

// Tensor converts the underlying tensor to its storage type.
func (s *StoredSource) Tensor(name string) (loader.Tensor, error) {
	t, err := s.src.Tensor(name)
	if err != nil {
		return t, err
	}
	d := storageDType(s.policy, name, t.Shape, s.keep)
	out, err := convert.ConvertTensor(t, d)
	if err != nil {
		return loader.Tensor{}, fmt.Errorf("bench: %s: tensor %q as %s: %w", s.component, name, d, err)
	}
	return out, nil
}

// StoredBytes is the size of the tensors of a key → shape table once
// stored for target (the weight bytes a file holds for the component).
func StoredBytes(component string, shapes map[string][]int, target loader.DType) int64 {
	return storedBytes(component, shapes, target, nil)
}

func storedBytes(component string, shapes map[string][]int, target loader.DType, keep func(string) bool) int64 {
	policy := convert.NewPolicy(component, slices.Collect(maps.Keys(shapes)), target)
	var n int64
	for name, shape := range shapes {
		n += storedSize(storageDType(policy, name, shape, keep), shape)
	}
	return n
}

// storageDType is convert's storage policy with WithKeep's exceptions.
func storageDType(policy convert.Policy, key string, shape []int, keep func(string) bool) loader.DType {
	d := policy.DType(key, shape)
	if d == loader.Q8_0 && keep != nil && keep(key) {
		d = loader.F16
	}
	return d
}

func storedSize(d loader.DType, shape []int) int64 {
	n, err := d.Bytes(shape)
	if err != nil {
		panic(fmt.Sprintf("bench: storage policy chose %s for shape %v: %v", d, shape, err)) // convert's policy only picks storable types
	}
	return int64(n)
}

// RelL2 is the relative L2 error ‖got − want‖ / ‖want‖, accumulated in
// float64. It is 0 for identical inputs, +Inf when want is all zero and got
// is not (NaN when both are), and NaN when any value is NaN. The lengths
// must match.
func RelL2(got, want []float32) (float64, error) {
	if len(got) != len(want) {
		return math.NaN(), fmt.Errorf("bench: RelL2: %d values against %d", len(got), len(want))
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	return math.Sqrt(num) / math.Sqrt(den), nil
}

// CompareOutputs is RelL2 of two module outputs, which must have the same
// shape.
func CompareOutputs(got, want *ops.Tensor) (float64, error) {
	if got == nil || want == nil {
		return math.NaN(), fmt.Errorf("bench: CompareOutputs: missing output")
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return math.NaN(), fmt.Errorf("bench: CompareOutputs: shape %v against %v", got.Shape, want.Shape)
	}
	return RelL2(got.Data, want.Data)
}
