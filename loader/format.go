package loader

import (
	"encoding/json"
	"hash/crc32"
)

// Version is the weight-file format version this package writes and reads.
const Version = 1

// Layout constants of the weight file (see the package documentation).
const (
	// Magic opens and closes every weight file.
	Magic = "DALLE2W\x00"
	// PreambleSize is the size of the fixed header: magic, version, flags.
	PreambleSize = 16
	// TrailerSize is the size of the fixed footer: index offset and length,
	// index CRC-32C, reserved word, magic.
	TrailerSize = 32
	// Alignment is the alignment of every data region's start offset.
	Alignment = 64
	// MaxIndexSize bounds the JSON index a reader accepts.
	MaxIndexSize = 64 << 20
	// MaxZstdRatio bounds raw_size/size of a zstd region: zstd cannot
	// expand more (a 4-byte RLE block makes at most 128 KiB), so a larger
	// claim is a lie and is refused before allocating.
	MaxZstdRatio = 32768
)

// Codecs of a stored region.
const (
	CodecRaw  = "raw"  // bytes stored as they are
	CodecZstd = "zstd" // one zstd frame
)

// Metadata keys the converter records (Writer.SetMeta, File.Meta).
const (
	MetaSource    = "source"    // where the weights came from (repo id, path)
	MetaConverter = "converter" // program and version that wrote the file
	MetaDType     = "dtype"     // storage dtype / quantization, e.g. "F16"
	MetaCreated   = "created"   // RFC 3339 time of conversion
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC-32C used for regions and the index.
func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TensorInfo describes one stored tensor, as listed in the index.
type TensorInfo struct {
	Name    string // "<component>/<key>"
	DType   DType
	Shape   []int
	Codec   string // CodecRaw or CodecZstd
	Offset  int64  // absolute file offset of the stored bytes
	Size    int64  // stored bytes
	RawSize int64  // decoded bytes (numel × dtype size)
	CRC32C  uint32 // CRC-32C of the decoded bytes

	stored *uint32 // CRC-32C of the stored bytes (zstd regions), if recorded
}

// BlobInfo describes one stored auxiliary file, as listed in the index.
type BlobInfo struct {
	Name    string // e.g. "tokenizer/vocab.json"
	Codec   string // CodecRaw or CodecZstd
	Offset  int64  // absolute file offset of the stored bytes
	Size    int64  // stored bytes
	RawSize int64  // decoded bytes
	CRC32C  uint32 // CRC-32C of the decoded bytes

	stored *uint32 // CRC-32C of the stored bytes (zstd regions), if recorded
}

// Component describes one pipeline component stored in a weight file.
type Component struct {
	Name   string          `json:"name"`
	Class  string          `json:"class"`
	Config json.RawMessage `json:"config"`
}

// The index as stored (JSON).
type wireIndex struct {
	Version    int               `json:"version"`
	Metadata   map[string]string `json:"metadata"`
	Components []Component       `json:"components"`
	Tensors    []wireTensor      `json:"tensors"`
	Blobs      []wireBlob        `json:"blobs"`
}

type wireTensor struct {
	Name    string  `json:"name"`
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Codec   string  `json:"codec"`
	Offset  int64   `json:"offset"`
	Size    int64   `json:"size"`
	RawSize int64   `json:"raw_size"`
	CRC32C  uint32  `json:"crc32c"`
	// StoredCRC32C is the CRC-32C of the stored bytes of a zstd region
	// (written since the field was added; optional for readers), so that
	// a damaged frame is refused before it is decoded and damage that
	// happens to decode to the same bytes is still detected.
	StoredCRC32C *uint32 `json:"stored_crc32c,omitempty"`
}

type wireBlob struct {
	Name    string `json:"name"`
	Codec   string `json:"codec"`
	Offset  int64  `json:"offset"`
	Size    int64  `json:"size"`
	RawSize int64  `json:"raw_size"`
	CRC32C  uint32 `json:"crc32c"`
	// StoredCRC32C: as in wireTensor.
	StoredCRC32C *uint32 `json:"stored_crc32c,omitempty"`
}
