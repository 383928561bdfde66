package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

// binder binds a module's weights by state-dict key. It records every
// problem (missing key, wrong shape, unsupported dtype) instead of stopping at
// the first, so that one load error lists them all (like sd.cpp).
type binder struct {
	src       loader.Source
	component string          // for error messages, e.g. "decoder"
	prefix    string          // key prefix of this sub-module, e.g. "down_blocks.0."
	names     map[string]bool // every key src has
	used      map[string]bool // shared by every sub-binder
	errs      *[]string
	// dry binders check names, shapes and dtypes only and bind
	// placeholders: their source is a shapeSource (no tensor data).
	dry bool
}

func newBinder(component string, src loader.Source) *binder {
	_, dry := src.(shapeSource)
	names := map[string]bool{}
	for _, n := range src.Names() {
		names[n] = true
	}
	return &binder{src: src, component: component, names: names, used: map[string]bool{}, errs: new([]string), dry: dry}
}

// sub returns a binder for the child module at key prefix p (without the dot).
func (b *binder) sub(p string) *binder {
	c := *b
	c.prefix = b.prefix + p + "."
	return &c
}

func (b *binder) errorf(format string, args ...any) {
	*b.errs = append(*b.errs, fmt.Sprintf(format, args...))
}

// lookup finds key (relative to the binder's prefix), marks it used and
// checks its shape against want (a dimension of -1 matches any size). It
// records the problem and reports false when the key is missing or
// mis-shaped.
func (b *binder) lookup(key string, want []int) (loader.Tensor, string, bool) {
	full := b.prefix + key
	b.used[full] = true
	if !b.names[full] {
		b.errorf("%s: missing tensor %q", b.component, full)
		return loader.Tensor{}, full, false
	}
	t, err := b.src.Tensor(full)
	if err != nil { // corrupt data, typically
		b.errorf("%s: tensor %q: %v", b.component, full, err)
		return t, full, false
	}
	if !shapeMatches(t.Shape, want) {
		b.errorf("%s: tensor %q: shape %v, want %v", b.component, full, t.Shape, want)
		return t, full, false
	}
	if _, err := t.DType.Bytes(t.Shape); err != nil {
		b.errorf("%s: tensor %q: %v", b.component, full, err)
		return t, full, false
	}
	return t, full, true
}

// lookupFloat is lookup for a float tensor whose data is to be bound: it
// also records a non-float dtype, and reports false in a dry binder.
func (b *binder) lookupFloat(key string, want []int) (loader.Tensor, string, bool) {
	t, full, ok := b.lookup(key, want)
	if ok && !floatDType(t.DType) {
		b.errorf("%s: tensor %q: dtype %s cannot be read as float32", b.component, full, t.DType)
		return t, full, false
	}
	return t, full, ok && !b.dry
}

// tensor binds key (relative to the binder's prefix), checks its shape and
// decodes it to dense float32 (F32 data in place, without a copy; F16,
// BF16, F64 and Q8_0 decoded). It is for everything that is not a
// Linear or Conv2D weight: norms, biases, embeddings. A dimension of -1 in
// want matches any size. When the key is missing or unusable the error is
// recorded and a placeholder without data is returned: the constructor
// fails at b.err() anyway, and allocating the size a (possibly hostile)
// config asks for would only waste memory.
func (b *binder) tensor(key string, want ...int) *ops.Tensor {
	t, full, ok := b.lookupFloat(key, want)
	if !ok {
		return placeholder(want)
	}
	data, err := decodeFloat32(t)
	if err != nil {
		b.errorf("%s: tensor %q: %v", b.component, full, err)
		return placeholder(want)
	}
	return ops.FromData(data, t.Shape...)
}

// weight binds a weight that the model only ever passes to ops.Linear or
// ops.Conv2D as w, which accept compact weights: F16 and Q8_0 data stay in
// their stored form (ops.NewCompact, no copy: they usually alias the
// memory map), F32 is used in place, BF16 and F64 are decoded to float32.
func (b *binder) weight(key string, want ...int) *ops.Tensor {
	t, full, ok := b.lookupFloat(key, want)
	if !ok {
		return placeholder(want)
	}
	var w *ops.Tensor
	var err error
	switch t.DType {
	case loader.F16:
		w, err = ops.NewCompact(ops.FormatF16, t.Data, t.Shape...)
	case loader.Q8_0:
		w, err = ops.NewCompact(ops.FormatQ8, t.Data, t.Shape...)
	default:
		var data []float32
		if data, err = decodeFloat32(t); err == nil {
			w = ops.FromData(data, t.Shape...)
		}
	}
	if err != nil {
		b.errorf("%s: tensor %q: %v", b.component, full, err)
		return placeholder(want)
	}
	return w
}

// floatDType reports whether tensors of dtype d can be bound as weights.
func floatDType(d loader.DType) bool {
	switch d {
	case loader.F32, loader.F16, loader.BF16, loader.F64, loader.Q8_0:
		return true
	}
	return false
}

// decodeFloat32 decodes a tensor's data to float32 (F32 in place when
// aligned, see quant.ToFloat32).
func decodeFloat32(t loader.Tensor) ([]float32, error) {
	if t.DType != loader.Q8_0 {
		return quant.ToFloat32(t.DType.String(), t.Data)
	}
	n, err := t.DType.Bytes(t.Shape)
	if err != nil {
		return nil, err
	}
	if len(t.Data) != n {
		return nil, fmt.Errorf("Q8_0 data of %d bytes, shape %v needs %d", len(t.Data), t.Shape, n)
	}
	// Rows are whole blocks, so the blocks in order are the values in
	// row-major order.
	out := make([]float32, t.Numel())
	quant.DequantizeQ8(out, t.Data)
	return out, nil
}

// has reports whether key exists (for optional weights such as conv_shortcut).
func (b *binder) has(key string) bool { return b.names[b.prefix+key] }

// ignore marks keys that exist in checkpoints but that the forward pass does
// not use (e.g. CLIP's position_ids buffer).
func (b *binder) ignore(key string) {
	b.used[b.prefix+key] = true
}

// err returns every problem found, plus unexpected keys, as one error.
func (b *binder) err() error {
	var unexpected []string
	for n := range b.names {
		if !b.used[n] {
			unexpected = append(unexpected, n)
		}
	}
	sort.Strings(unexpected)
	for _, n := range unexpected {
		b.errorf("%s: unexpected tensor %q", b.component, n)
	}
	if len(*b.errs) == 0 {
		return nil
	}
	return fmt.Errorf("loading %s: %d problem(s):\n  %s", b.component, len(*b.errs), strings.Join(*b.errs, "\n  "))
}

func shapeMatches(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if want[i] != -1 && got[i] != want[i] {
			return false
		}
	}
	return true
}

// placeholder stands in for a weight that could not be bound. It has the
// wanted shape but no data; it is never used, because the constructor returns
// binder.err() instead of the module.
func placeholder(want []int) *ops.Tensor { return &ops.Tensor{Shape: fixShape(want)} }

func fixShape(s []int) []int {
	out := make([]int, len(s))
	for i, d := range s {
		if d < 0 {
			d = 1
		}
		out[i] = d
	}
	return out
}
