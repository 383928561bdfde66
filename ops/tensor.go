package ops

import (
	"fmt"
	"runtime/debug"
)

// Tensor is a dense, row-major (C order) float32 array.
// Views made by Reshape and Rows share Data with their source.
//
// A weight may instead be compact (Q non-nil, Data nil): kept in its file's
// storage format (fp16 or 8-bit blocks, usually straight from the memory
// map) and decoded by the kernels that read it, a strip at a time. Only
// Linear, Conv2D and their Packed forms accept compact weights; NewCompact
// makes them.
type Tensor struct {
	Shape []int
	Data  []float32
	Q     *Compact
}

// New allocates a zeroed tensor of the given shape.
func New(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, numel(shape))}
}

// FromData wraps data (not copied) as a tensor of the given shape.
// It panics if len(data) does not match the shape: that is a programming error.
func FromData(data []float32, shape ...int) *Tensor {
	if len(data) != numel(shape) {
		panic(fmt.Sprintf("ops.FromData: %d values for shape %v", len(data), shape))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("ops: negative dimension in shape %v", shape))
		}
		n *= d
	}
	return n
}

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	if t.Q != nil {
		return numel(t.Shape)
	}
	return len(t.Data)
}

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.Shape)
	}
	return t.Shape[i]
}

// Reshape returns a view with a new shape of the same element count.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	return FromData(t.Data, shape...)
}

// Rows returns a view of rows [lo, hi) along the first dimension.
func (t *Tensor) Rows(lo, hi int) *Tensor {
	if lo < 0 || hi > t.Shape[0] || lo > hi {
		panic(fmt.Sprintf("ops.Rows: [%d,%d) of shape %v", lo, hi, t.Shape))
	}
	row := 1
	for _, d := range t.Shape[1:] {
		row *= d
	}
	s := append([]int{hi - lo}, t.Shape[1:]...)
	return &Tensor{Shape: s, Data: t.Data[lo*row : hi*row : hi*row]}
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// SameShape reports whether t and u have identical shapes.
func (t *Tensor) SameShape(u *Tensor) bool {
	if len(t.Shape) != len(u.Shape) {
		return false
	}
	for i := range t.Shape {
		if t.Shape[i] != u.Shape[i] {
			return false
		}
	}
	return true
}

// String describes the shape (not the values).
func (t *Tensor) String() string { return fmt.Sprintf("Tensor%v", t.Shape) }

// Arena hands out scratch tensors for one forward pass. A model calls Reset
// at the start of each pass; because a pass asks for the same sequence of
// shapes every time, after the first pass every request is served from one
// slab and a denoising step allocates nothing. Tensors from an Arena are
// valid until the next Reset; their contents are undefined (not zeroed).
// An Arena is not safe for concurrent use.
type Arena struct {
	slab   []float32 // the current backing store
	off    int       // next free element in slab
	spill  int       // elements served outside slab since the last Reset
	tensor []*Tensor // headers, reused (pointers stay valid as the list grows)
	nt     int
}

// New returns a scratch tensor of the given shape.
func (a *Arena) New(shape ...int) *Tensor {
	n := numel(shape)
	var data []float32
	if a.off+n <= len(a.slab) {
		data = a.slab[a.off : a.off+n : a.off+n]
		a.off += n
	} else {
		data = make([]float32, n)
		a.spill += n
	}
	if a.nt == len(a.tensor) {
		a.tensor = append(a.tensor, &Tensor{})
	}
	t := a.tensor[a.nt]
	a.nt++
	t.Shape = append(t.Shape[:0], shape...)
	t.Data = data
	return t
}

// Reset releases every tensor handed out since the last Reset. If the last
// pass did not fit in the slab, the slab grows to fit it: the pass's
// separately allocated buffers are dropped first and, when the new slab is
// large (bigSlab), returned to the operating system before it is taken, so
// that the first pass of a big model does not briefly hold its activations
// twice.
func (a *Arena) Reset() {
	// Headers are reused, so drop their references to the old data.
	for i := range a.tensor {
		a.tensor[i].Data = nil
	}
	if a.spill > 0 {
		need := a.off + a.spill
		a.slab = nil
		if 4*need >= bigSlab {
			debug.FreeOSMemory()
		}
		a.slab = make([]float32, need)
	}
	a.off, a.spill, a.nt = 0, 0, 0
}

// bigSlab is the slab size in bytes from which Reset returns the memory of
// a grown arena's last pass to the operating system before allocating
// (a garbage collection and a scavenge, some milliseconds: a big model's
// first pass grows its arenas a few dozen times, later passes never).
const bigSlab = 16 << 20

// Free drops the arena's slab and headers, as if new, and reports whether
// it held a slab. Tensors handed out must no longer be used. The next pass
// grows it again.
func (a *Arena) Free() bool {
	had := len(a.slab) > 0 || a.spill > 0
	*a = Arena{}
	return had
}

// Bytes is the memory the arena holds, in bytes: its slab plus what the
// current pass allocated beyond it.
func (a *Arena) Bytes() int { return 4 * (len(a.slab) + a.spill) }
