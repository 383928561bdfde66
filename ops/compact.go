package ops

import (
	"fmt"

	"github.com/dalle2/dalle2/ops/asm"
)

// Format is the storage format of a compact weight.
type Format uint8

// The compact formats.
const (
	// FormatF16 is little-endian IEEE binary16, row-major.
	FormatF16 Format = 1
	// FormatQ8 is quant's Q8_0: each row (the elements sharing the first
	// index) is a run of 34-byte blocks of 32 values (binary16 scale, 32
	// int8); the row length must be a multiple of 32.
	FormatQ8 Format = 2
)

// String names the format like the weight file's dtypes ("F16", "Q8_0").
func (f Format) String() string {
	switch f {
	case FormatF16:
		return "F16"
	case FormatQ8:
		return "Q8_0"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Compact is the storage of a compact weight (see Tensor).
type Compact struct {
	Format Format
	Raw    []byte // read-only; may alias a memory map
}

// NewCompact wraps raw (not copied; it may alias a read-only memory map) as
// a compact weight of the given shape. It checks that the size matches the
// format and shape, and for FormatQ8 that the row length (the product of
// all dimensions but the first) is a multiple of 32.
func NewCompact(format Format, raw []byte, shape ...int) (*Tensor, error) {
	if len(shape) == 0 {
		return nil, fmt.Errorf("compact %s weight: no shape", format)
	}
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > (1<<48)/d) {
			return nil, fmt.Errorf("compact %s weight: bad shape %v", format, shape)
		}
		n *= d
	}
	var want int
	switch format {
	case FormatF16:
		want = 2 * n
	case FormatQ8:
		if row := rowLen(shape); row%32 != 0 {
			return nil, fmt.Errorf("compact Q8_0 weight of shape %v: row length %d is not a multiple of 32", shape, row)
		}
		want = n / 32 * 34
	default:
		return nil, fmt.Errorf("compact weight: unknown format %d", uint8(format))
	}
	if len(raw) != want {
		return nil, fmt.Errorf("compact %s weight of shape %v: %d bytes, want %d", format, shape, len(raw), want)
	}
	return &Tensor{Shape: append([]int(nil), shape...), Q: &Compact{Format: format, Raw: raw}}, nil
}

// rowLen is the product of all dimensions but the first (the whole tensor
// for a vector).
func rowLen(shape []int) int {
	if len(shape) == 1 {
		return shape[0]
	}
	return numel(shape[1:])
}

// decodeSpan writes elements [c0, c0+len(dst)) of row r of the compact
// weight t into dst. For FormatQ8, c0 must be a multiple of 32 and the span
// must end at a block boundary or at the end of the row.
func (t *Tensor) decodeSpan(dst []float32, r, c0 int) {
	row := rowLen(t.Shape)
	switch t.Q.Format {
	case FormatF16:
		off := 2 * (r*row + c0)
		asm.HalfToFloat(dst, t.Q.Raw[off:off+2*len(dst)])
	case FormatQ8:
		if c0%32 != 0 {
			panic(fmt.Sprintf("ops: Q8_0 span starts at %d, not a block boundary", c0))
		}
		n := len(dst)
		full := n / 32 * 32
		off := (r*row + c0) / 32 * 34
		asm.DequantQ8(dst[:full], t.Q.Raw[off:off+full/32*34])
		if full < n {
			var blk [32]float32
			asm.DequantQ8(blk[:], t.Q.Raw[off+full/32*34:off+full/32*34+34])
			copy(dst[full:], blk[:n-full])
		}
	default:
		panic(fmt.Sprintf("ops: compact weight of unknown format %d", uint8(t.Q.Format)))
	}
}

// Dense returns t as a dense float32 tensor: t itself when it is not
// compact, else a decoded copy (for tests and the reference paths).
func (t *Tensor) Dense() *Tensor {
	if t.Q == nil {
		return t
	}
	out := New(t.Shape...)
	t.decodeAll(out.Data)
	return out
}

// decodeAll writes every value of the compact weight t into dst (Numel
// values). The rows are stored back to back (Q8_0 rows are whole blocks),
// so the whole tensor decodes in one call.
func (t *Tensor) decodeAll(dst []float32) {
	switch t.Q.Format {
	case FormatF16:
		asm.HalfToFloat(dst, t.Q.Raw)
	case FormatQ8:
		asm.DequantQ8(dst, t.Q.Raw)
	default:
		panic(fmt.Sprintf("ops: compact weight of unknown format %d", uint8(t.Q.Format)))
	}
}
