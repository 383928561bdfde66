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
	used      map[string]bool // shared by every sub-binder
	errs      *[]string
}

func newBinder(component string, src loader.Source) *binder {
	return &binder{src: src, component: component, used: map[string]bool{}, errs: new([]string)}
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

// tensor binds key (relative to the binder's prefix) and checks its shape.
// A dimension of -1 in want matches any size. When the key is missing or
// unusable the error is recorded and a placeholder without data is returned:
// the constructor fails at b.err() anyway, and allocating the size a
// (possibly hostile) config asks for would only waste memory.
func (b *binder) tensor(key string, want ...int) *ops.Tensor {
	full := b.prefix + key
	b.used[full] = true
	t, err := b.src.Tensor(full)
	if err != nil {
		b.errorf("%s: missing tensor %q", b.component, full)
		return placeholder(want)
	}
	if !shapeMatches(t.Shape, want) {
		b.errorf("%s: tensor %q: shape %v, want %v", b.component, full, t.Shape, want)
		return placeholder(want)
	}
	data, err := quant.ToFloat32(t.DType.String(), t.Data)
	if err != nil {
		b.errorf("%s: tensor %q: %v", b.component, full, err)
		return placeholder(want)
	}
	return ops.FromData(data, t.Shape...)
}

// has reports whether key exists (for optional weights such as conv_shortcut).
func (b *binder) has(key string) bool {
	_, err := b.src.Tensor(b.prefix + key)
	return err == nil
}

// ignore marks keys that exist in checkpoints but that the forward pass does
// not use (e.g. CLIP's position_ids buffer).
func (b *binder) ignore(key string) {
	b.used[b.prefix+key] = true
}

// err returns every problem found, plus unexpected keys, as one error.
func (b *binder) err() error {
	var unexpected []string
	for _, n := range b.src.Names() {
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
