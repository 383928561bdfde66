// Package loader reads and writes dalle2's single-file weight format (".d2":
// memory-mapped, zero-copy for raw tensors, checksummed) and reads and writes
// safetensors files.
//
// Both readers treat their input as hostile: every length, offset and shape
// is checked against the file with overflow-checked arithmetic before
// anything is allocated or sliced, and errors name the file and the tensor.
//
// # Weight file format, version 1
//
// All integers are little-endian. Offsets are absolute byte offsets from the
// start of the file. A file is written in one pass (tensor data streams to
// disk; only the index is kept in memory) and consists of:
//
//	offset          size  field
//	0               8     magic "DALLE2W\x00" (44 41 4C 4C 45 32 57 00)
//	8               4     u32 format version = 1
//	12              4     u32 flags = 0 (readers reject any other value)
//	16              ...   data regions: one per tensor and per blob, each
//	                      starting at an offset that is a multiple of 64,
//	                      the gaps filled with zero bytes
//	I               L     JSON index (UTF-8), see below; the writer starts
//	                      it at a multiple of 64 (readers do not require it)
//	I+L = S-32      8     u64 I, the index offset
//	S-24            8     u64 L, the index length in bytes
//	S-16            4     u32 CRC-32C (Castagnoli) of the L index bytes
//	S-12            4     u32 reserved = 0
//	S-8             8     magic "DALLE2W\x00" again
//
// where S is the file size. The index ends exactly where the 32-byte trailer
// begins, so a truncated file is recognised by its missing trailer magic.
// The index is at most 64 MiB (MaxIndexSize).
//
// The JSON index is an object:
//
//	{
//	  "version": 1,                       // must equal the preamble version
//	  "metadata": {"source": "...", ...}, // string map (provenance)
//	  "components": [                     // pipeline components, in order
//	    {"name": "decoder", "class": "UNet2DConditionModel", "config": {...}}
//	  ],
//	  "tensors": [
//	    {"name": "decoder/conv_in.weight", // "<component>/<state-dict key>"
//	     "dtype": "F32",                   // a safetensors dtype name or "Q8_0"
//	     "shape": [320, 3, 3, 3],
//	     "codec": "raw",                   // "raw" or "zstd"
//	     "offset": 64, "size": 34560,      // stored bytes [offset, offset+size)
//	     "raw_size": 34560,                // decoded bytes (DType.Bytes)
//	     "crc32c": 1234567890}             // CRC-32C of the decoded bytes
//	  ],
//	  "blobs": [                           // auxiliary files, same fields
//	    {"name": "tokenizer/vocab.json", "codec": "zstd", "offset": 34624,
//	     "size": 300000, "raw_size": 1000000, "crc32c": 42,
//	     "stored_crc32c": 7}               // zstd regions: CRC-32C of the
//	  ]                                    // stored (compressed) bytes
//	}
//
// Unknown fields are ignored, so later versions may add optional ones. Rules
// a reader enforces: names are non-empty and unique (tensors and blobs are
// separate namespaces); a tensor's dtype is known, its shape dimensions are
// non-negative and its byte length (the product of the dimensions times the
// dtype size, or for Q8_0 that product / 32 · 34, without int64 overflow)
// equals raw_size; every region lies within [16, I); a "raw"
// region has size == raw_size and starts at a multiple of 64 (so F32 data
// read in place is aligned); a "zstd" region is a zstd stream (one frame as
// written) whose decoded length must equal raw_size; a frame that declares a
// larger content size is refused before anything is decoded, and raw_size
// may be at most 32768 times size (zstd's largest possible expansion), which
// bounds the memory a hostile file can make a reader allocate.
//
// The gaps between regions are zero bytes. Every byte of a file is thus
// checked: the preamble and trailer by Open, the index by its CRC, regions by
// their CRCs and the gaps by File.Verify. "stored_crc32c" (optional for
// readers, so files written before it existed stay readable; always written)
// lets a reader refuse a damaged zstd frame before decoding it, and detects
// damage that happens to decode to the same bytes.
//
// Files are written to "<name>.tmp-<pid>-<random>" in the destination's
// folder, fsynced and renamed over the destination, so readers see the old
// file or the complete new one, never a partial one. A writer killed midway
// leaves its temporary file behind; the next writer of the same destination
// deletes those whose process is gone, and they are always safe to delete.
//
// The writer stores a region compressed only when zstd saves at least
// DefaultMinSaving (20%) of its bytes, unless changed with
// Writer.SetMinSaving: float weights rarely compress that well and stay raw,
// keeping them zero-copy.
//
// # Quantized tensors
//
// Besides the safetensors dtypes (F32, F16, BF16, F64, I64, I32, I16, I8,
// U8, BOOL) a tensor may be "Q8_0": 8-bit blocks with a binary16 scale per
// 32 values. Its "shape" is the logical float shape ([out, in] for a
// Linear weight, [Cout, Cin, KH, KW] for a convolution). Rows, the elements
// sharing the first index (a vector is one row), are stored one after
// another, each as row length / 32 blocks of 34 bytes (2-byte little-endian
// binary16 scale d, then 32 int8 q; value = d·q), so raw_size = numel / 32 ·
// 34. The row length must be a multiple of 32 (no block spans two rows); a
// reader refuses any other shape, and a scalar. quant/q8.go documents the
// block layout and the rounding the converter uses. The loader does not
// check values: a scale with Inf or NaN bits decodes to non-finite weights,
// as such bits do in an F16 tensor.
//
// Q8_0 did not need a new format version: a reader of version 1 that
// predates it refuses such a tensor with an "unknown dtype" error when it
// opens the file, and misreads nothing. Safetensors has no Q8_0: its reader
// refuses the name and its writer refuses such tensors.
//
// Component names contain no "/"; tensor names begin with their component's
// name and a "/", and File.Sub(component) presents one component's tensors
// under their state-dict keys.
package loader
