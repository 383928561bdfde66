package convert

// The key map from the original Karlo release to the diffusers components
// (spec §13, original-tiny/README.md). Every converted tensor is a copy of
// a source tensor or of a selection of its rows, possibly with a trailing
// axis of size 1 dropped, transposed (2-D) or reshaped: no arithmetic, so
// the result is bit-exact.

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// karloFile is one opened source file with its tensor shapes known.
type karloFile struct {
	role   string // "prior checkpoint", "CLIP archive", ...
	path   string
	src    loader.Source
	closer io.Closer
	dtypes map[string]loader.DType
	shapes map[string][]int
	used   map[string]bool

	// A two-entry cache: the fused projections are read once per split.
	cacheKeys [2]string
	cacheVals [2]loader.Tensor
	cacheNext int
}

func newKarloFile(role, path string, src loader.Source, closer io.Closer, info func(string) (loader.DType, []int, bool)) *karloFile {
	f := &karloFile{role: role, path: path, src: src, closer: closer,
		dtypes: map[string]loader.DType{}, shapes: map[string][]int{}, used: map[string]bool{}}
	for _, n := range src.Names() {
		dt, sh, _ := info(n)
		f.dtypes[n], f.shapes[n] = dt, sh
	}
	return f
}

func (f *karloFile) has(key string) bool { _, ok := f.shapes[key]; return ok }

func (f *karloFile) shape(key string) []int { return f.shapes[key] }

func (f *karloFile) errorf(format string, args ...any) error {
	return fmt.Errorf("convert: %s %s: "+format, append([]any{f.role, f.path}, args...)...)
}

func (f *karloFile) read(key string) (loader.Tensor, error) {
	for i, k := range f.cacheKeys {
		if k == key {
			return f.cacheVals[i], nil
		}
	}
	t, err := f.src.Tensor(key)
	if err != nil {
		return loader.Tensor{}, err
	}
	f.cacheKeys[f.cacheNext], f.cacheVals[f.cacheNext] = key, t
	f.cacheNext = 1 - f.cacheNext
	return t, nil
}

func (f *karloFile) close() error {
	f.cacheVals = [2]loader.Tensor{}
	if f.closer == nil {
		return nil
	}
	c := f.closer
	f.closer = nil
	return c.Close()
}

// memSource serves in-memory tensors (the stats).
type memSource map[string]loader.Tensor

func (m memSource) Names() []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

func (m memSource) Tensor(name string) (loader.Tensor, error) {
	t, ok := m[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("no tensor %q", name)
	}
	return t, nil
}

func (m memSource) info(name string) (loader.DType, []int, bool) {
	t, ok := m[name]
	return t.DType, t.Shape, ok
}

// rowSplit selects one of the `parts` projections fused along the rows.
type rowSplit struct {
	parts, part int
	// head is the head size of a per-head interleaved layout (rows of head
	// h: [parts·head·h, parts·head·(h+1)), projection p at offset p·head);
	// 0 for contiguous blocks (OpenAI CLIP's in_proj: q, then k, then v).
	head int
	// headFrom names where the head size came from, for errors.
	headFrom string
}

// mapped is one converted tensor.
type mapped struct {
	name      string // in the component
	file      *karloFile
	key       string // in the file
	squeeze   bool   // drop a trailing axis of size 1
	rows      *rowSplit
	transpose bool
	reshape   []int
}

// outShape checks the operations against a source shape and returns the
// converted shape.
func (m *mapped) outShape(src []int) ([]int, error) {
	sh := slices.Clone(src)
	if m.squeeze {
		if len(sh) < 2 || sh[len(sh)-1] != 1 {
			return nil, fmt.Errorf("shape %v: want a trailing axis of size 1 (a 1-d convolution)", src)
		}
		sh = sh[:len(sh)-1]
	}
	if r := m.rows; r != nil {
		if len(sh) == 0 {
			return nil, fmt.Errorf("shape %v: cannot split a scalar", src)
		}
		group := r.parts
		if r.head > 0 {
			group = r.parts * r.head
		}
		if sh[0]%group != 0 {
			if r.head > 0 {
				return nil, fmt.Errorf("shape %v: %d rows are not a whole number of heads of %d fused projections of size %d (head size from %s)",
					src, sh[0], r.parts, r.head, r.headFrom)
			}
			return nil, fmt.Errorf("shape %v: %d rows do not split into %d equal parts", src, sh[0], r.parts)
		}
		sh[0] /= r.parts
	}
	if m.transpose {
		if len(sh) != 2 {
			return nil, fmt.Errorf("shape %v: want a matrix to transpose", src)
		}
		sh[0], sh[1] = sh[1], sh[0]
	}
	if m.reshape != nil {
		if prod(m.reshape) != prod(sh) {
			return nil, fmt.Errorf("shape %v cannot be reshaped to %v", src, m.reshape)
		}
		sh = slices.Clone(m.reshape)
	}
	return sh, nil
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// apply makes the converted tensor from the source tensor.
func (m *mapped) apply(t loader.Tensor) (loader.Tensor, error) {
	shape, err := m.outShape(t.Shape)
	if err != nil {
		return loader.Tensor{}, err
	}
	es := t.DType.Size()
	if es == 0 || len(t.Data) != prod(t.Shape)*es {
		return loader.Tensor{}, fmt.Errorf("%d bytes for shape %v of %s", len(t.Data), t.Shape, t.DType)
	}
	data := t.Data
	if r := m.rows; r != nil {
		n := t.Shape[0]
		rowBytes := len(data) / max(n, 1)
		out := make([]byte, 0, len(data)/r.parts)
		if r.head == 0 {
			block := n / r.parts
			out = append(out, data[r.part*block*rowBytes:(r.part+1)*block*rowBytes]...)
		} else {
			group := r.parts * r.head
			for h := 0; h < n/group; h++ {
				start := h*group + r.part*r.head
				out = append(out, data[start*rowBytes:(start+r.head)*rowBytes]...)
			}
		}
		data = out
	}
	if m.transpose {
		rows, cols := shape[1], shape[0] // source matrix is rows × cols
		out := make([]byte, len(data))
		for i := range rows {
			for j := range cols {
				copy(out[(j*rows+i)*es:(j*rows+i+1)*es], data[(i*cols+j)*es:(i*cols+j+1)*es])
			}
		}
		data = out
	}
	return loader.Tensor{Name: m.name, DType: t.DType, Shape: shape, Data: data}, nil
}

// plan collects a component's mapped tensors.
type plan struct {
	comp    string
	entries []*mapped
	byName  map[string]*mapped
	err     error
}

func newPlan(comp string) *plan { return &plan{comp: comp, byName: map[string]*mapped{}} }

func (p *plan) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// add maps file key src to name with the given options; the source must
// exist.
func (p *plan) add(f *karloFile, src, name string, opts ...func(*mapped)) {
	if p.err != nil {
		return
	}
	if !f.has(src) {
		p.fail(f.errorf("tensor %q is missing (needed for %s/%s)", src, p.comp, name))
		return
	}
	if _, dup := p.byName[name]; dup {
		p.fail(f.errorf("tensor %s/%s would be made twice (from %q)", p.comp, name, src))
		return
	}
	m := &mapped{name: name, file: f, key: src}
	for _, o := range opts {
		o(m)
	}
	if _, err := m.outShape(f.shape(src)); err != nil {
		p.fail(f.errorf("tensor %q (for %s/%s): %v", src, p.comp, name, err))
		return
	}
	f.used[src] = true
	p.entries = append(p.entries, m)
	p.byName[name] = m
}

// module maps the weight and bias of a sub-module; weight is required,
// bias optional. With squeeze the weight's trailing axis of size 1 is
// dropped (a 1-d convolution that becomes a linear layer).
func (p *plan) module(f *karloFile, src, dst string, squeeze bool) {
	if squeeze {
		p.add(f, src+".weight", dst+".weight", squeezed)
	} else {
		p.add(f, src+".weight", dst+".weight")
	}
	if f.has(src + ".bias") {
		p.add(f, src+".bias", dst+".bias")
	}
}

func squeezed(m *mapped) { m.squeeze = true }

func splitRows(parts, part, head int, from string) func(*mapped) {
	return func(m *mapped) { m.rows = &rowSplit{parts: parts, part: part, head: head, headFrom: from} }
}

// fused maps a fused projection (weight and bias) to len(dsts) outputs.
func (p *plan) fused(f *karloFile, src string, dsts []string, head int, from string, squeeze bool) {
	for i, d := range dsts {
		opts := []func(*mapped){splitRows(len(dsts), i, head, from)}
		if squeeze {
			p.add(f, src+".weight", d+".weight", append(opts, squeezed)...)
		} else {
			p.add(f, src+".weight", d+".weight", opts...)
		}
		if f.has(src + ".bias") {
			p.add(f, src+".bias", d+".bias", opts...)
		}
	}
}

// Names lists the converted tensors, sorted (loader.Source).
func (p *plan) Names() []string {
	n := make([]string, 0, len(p.entries))
	for _, m := range p.entries {
		n = append(n, m.name)
	}
	slices.Sort(n)
	return n
}

// Tensor makes one converted tensor (loader.Source).
func (p *plan) Tensor(name string) (loader.Tensor, error) {
	m, ok := p.byName[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("no tensor %q", name)
	}
	t, err := m.file.read(m.key)
	if err != nil {
		return loader.Tensor{}, err
	}
	out, err := m.apply(t)
	if err != nil {
		return loader.Tensor{}, m.file.errorf("tensor %q: %v", m.key, err)
	}
	return out, nil
}

// fileOf names the source of a converted tensor, for errors.
func (p *plan) fileOf(name string) string {
	if m, ok := p.byName[name]; ok {
		return m.file.path + " (" + m.key + ")"
	}
	return p.comp
}

// files lists the distinct source files, in first-use order.
func (p *plan) files() []string {
	var out []string
	for _, m := range p.entries {
		if !slices.Contains(out, m.file.path) {
			out = append(out, m.file.path)
		}
	}
	return out
}

// unused lists the keys under prefix no plan consumed, as an error.
func unused(f *karloFile, prefix, what string) error {
	var left []string
	for k := range f.shapes {
		if strings.HasPrefix(k, prefix) && !f.used[k] {
			left = append(left, k)
		}
	}
	if len(left) == 0 {
		return nil
	}
	slices.Sort(left)
	n, more := len(left), ""
	if n > 8 {
		more = fmt.Sprintf(" and %d more", n-8)
		left = left[:8]
	}
	return f.errorf("%d tensor(s) are not part of %s as this converter knows it: %s%s",
		n, what, strings.Join(left, ", "), more)
}

// dim returns shape[i] of key, or -1.
func (f *karloFile) dim(key string, i int) int {
	sh, ok := f.shapes[key]
	if !ok || i >= len(sh) {
		return -1
	}
	return sh[i]
}

// indices returns the sorted distinct N of keys "<prefix>N.…".
func indices(f *karloFile, prefix string) []int {
	seen := map[int]bool{}
	for k := range f.shapes {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil && n >= 0 && strconv.Itoa(n) == num {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// contiguous reports whether ns is 0, 1, …, len-1.
func contiguous(ns []int) bool {
	for i, n := range ns {
		if n != i {
			return false
		}
	}
	return true
}
