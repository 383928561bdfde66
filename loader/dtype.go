package loader

import "fmt"

// DType is the element type of a stored tensor.
type DType uint8

// The element types. Names are those of safetensors' "dtype" field.
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
)

var dtypeInfo = [...]struct {
	name string
	size int
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
}

// String is the safetensors name ("F32", "F16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes per element (0 for an invalid DType).
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// ParseDType maps a safetensors dtype name to a DType.
func ParseDType(s string) (DType, error) {
	for i := F32; int(i) < len(dtypeInfo); i++ {
		if dtypeInfo[i].name == s {
			return i, nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// Tensor is one stored tensor: little-endian, row-major, contiguous bytes.
// Data may alias a read-only memory map: never write to it.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Numel is the element count implied by Shape.
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
