package loader

import "fmt"

// DType is the element type of a stored tensor.
type DType uint8

// The element types. Names are those of safetensors' "dtype" field, except
// Q8_0, dalle2's own 8-bit block format, which safetensors does not have.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I64
	I32
	I16
	I8
	U8
	Bool
	// Q8_0 is 8-bit block quantization (weight files only): the tensor's
	// shape is its logical float shape, each row (the elements sharing the
	// first index; a vector is one row) a run of 34-byte blocks of 32
	// values, an f16 scale and 32 int8. The row length must be a multiple
	// of 32. quant/q8.go defines the block layout and codec.
	Q8_0
)

// Q8_0 block geometry (quant.Q8Block and quant.Q8BlockBytes; loader does
// not import quant).
const (
	q8Block      = 32
	q8BlockBytes = 34
)

var dtypeInfo = [...]struct {
	name string
	size int // bytes per element; 0 for Invalid and block formats
}{
	Invalid: {"invalid", 0},
	F32:     {"F32", 4},
	F16:     {"F16", 2},
	BF16:    {"BF16", 2},
	F64:     {"F64", 8},
	I64:     {"I64", 8},
	I32:     {"I32", 4},
	I16:     {"I16", 2},
	I8:      {"I8", 1},
	U8:      {"U8", 1},
	Bool:    {"BOOL", 1},
	Q8_0:    {"Q8_0", 0},
}

// String is the dtype's name in files ("F32", "F16", ..., "Q8_0").
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes per element: 0 for an invalid DType and for
// Q8_0, whose elements take 34/32 bytes each. Use Bytes for a tensor's
// byte length.
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// Valid reports whether d is one of the element types above (not Invalid).
func (d DType) Valid() bool { return d > Invalid && int(d) < len(dtypeInfo) }

// Bytes is the byte length of a tensor of this dtype and shape: the
// element count times Size, and for Q8_0 the element count / 32 · 34. It
// fails for an invalid dtype, a negative dimension, a byte length that
// overflows int, and for Q8_0 a row length (the product of all dimensions
// but the first; a vector's only dimension) that is not a multiple of 32,
// or a scalar.
func (d DType) Bytes(shape []int) (int, error) {
	_, n, err := byteSize(int64Shape(shape), d)
	return int(n), err
}

// ParseDType maps a dtype name as stored in weight files and safetensors
// headers ("F32", "F16", ..., "Q8_0") to a DType. Safetensors readers must
// refuse Q8_0 (see ParseSafetensors).
func ParseDType(s string) (DType, error) {
	for i := F32; int(i) < len(dtypeInfo); i++ {
		if dtypeInfo[i].name == s {
			return i, nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// Tensor is one stored tensor: little-endian, row-major, contiguous bytes
// (for Q8_0, blocks; see DType.Bytes). Data may alias a read-only memory
// map: never write to it.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Numel is the element count implied by Shape (the logical element count
// for Q8_0).
func (t Tensor) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Source is anything tensors can be read from by name: a safetensors file,
// our weight file, or a view of one component of it.
type Source interface {
	// Names lists every tensor name, sorted.
	Names() []string
	// Tensor returns the named tensor, decompressed and verified.
	Tensor(name string) (Tensor, error)
}
