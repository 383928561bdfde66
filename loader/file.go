package loader

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// File is an opened dalle2 weight file. Raw tensors are served straight
// from the memory map; all methods may be called concurrently, except Close.
type File struct {
	name    string
	data    []byte
	size    int64
	unmap   func() error
	closed  bool
	version int

	meta       map[string]string
	components []Component
	tensors    []TensorInfo // file order
	tensorIdx  map[string]int
	names      []string // sorted
	blobs      []BlobInfo
	blobIdx    map[string]int
	verified   []atomic.Bool // raw tensor i's checksum has been checked
	dataEnd    int64         // index offset: the data area is [PreambleSize, dataEnd)
}

// Open memory-maps a weight file and checks its header, trailer and index.
// Tensor data is checked when read (or by Verify).
func Open(path string) (*File, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	f, err := OpenBytes(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// OpenBytes opens a weight file held in memory (e.g. embedded); name is used
// in errors. Raw tensors alias data, which must not change while in use.
func OpenBytes(data []byte, name string) (*File, error) {
	f := &File{name: name, data: data, size: int64(len(data))}
	if err := f.parse(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) errorf(format string, args ...any) error {
	return fmt.Errorf("loader: %s: "+format, append([]any{f.name}, args...)...)
}

// parse checks the preamble and trailer and reads and validates the index.
func (f *File) parse() error {
	data := f.data
	size := int64(len(data))
	if size < PreambleSize+TrailerSize {
		return f.errorf("file of %d bytes too short for a dalle2 weight file (at least %d)", size, PreambleSize+TrailerSize)
	}
	if string(data[:8]) != Magic {
		return f.errorf("not a dalle2 weight file (starts with %q, want %q)", data[:8], Magic)
	}
	version := binary.LittleEndian.Uint32(data[8:])
	if version != Version {
		return f.errorf("format version %d not supported (this build reads version %d): use a matching dalle2 or convert the model again", version, Version)
	}
	f.version = int(version)
	if flags := binary.LittleEndian.Uint32(data[12:]); flags != 0 {
		return f.errorf("unsupported flags %#x in a version %d file", flags, version)
	}
	tr := data[size-TrailerSize:]
	if string(tr[24:]) != Magic {
		return f.errorf("trailer magic missing: file truncated or not completely written")
	}
	idxOff := binary.LittleEndian.Uint64(tr[0:])
	idxLen := binary.LittleEndian.Uint64(tr[8:])
	idxCRC := binary.LittleEndian.Uint32(tr[16:])
	trailerAt := uint64(size - TrailerSize)
	switch {
	case binary.LittleEndian.Uint32(tr[20:]) != 0:
		return f.errorf("reserved trailer word is %#x, want 0", binary.LittleEndian.Uint32(tr[20:]))
	case idxLen > MaxIndexSize:
		return f.errorf("index length %d exceeds the %d-byte limit", idxLen, MaxIndexSize)
	case idxLen > trailerAt:
		return f.errorf("index length %d beyond file size %d", idxLen, size)
	case idxOff < PreambleSize || idxOff > trailerAt || trailerAt-idxOff != idxLen:
		return f.errorf("index at offset %d, length %d does not end at the trailer (offset %d)", idxOff, idxLen, trailerAt)
	}
	index := data[idxOff:trailerAt]
	if c := checksum(index); c != idxCRC {
		return f.errorf("index checksum mismatch (stored %08x, computed %08x): file corrupt", idxCRC, c)
	}
	var idx wireIndex
	if err := json.Unmarshal(index, &idx); err != nil {
		return f.errorf("index: %v", err)
	}
	if idx.Version != f.version {
		return f.errorf("index version %d differs from header version %d", idx.Version, f.version)
	}
	f.meta = idx.Metadata
	if f.meta == nil {
		f.meta = map[string]string{}
	}
	seen := map[string]bool{}
	for _, c := range idx.Components {
		if err := checkComponentName(c.Name); err != nil {
			return f.errorf("%v", err)
		}
		if seen[c.Name] {
			return f.errorf("duplicate component %q", c.Name)
		}
		seen[c.Name] = true
	}
	f.components = idx.Components

	dataEnd := int64(idxOff)
	f.dataEnd = dataEnd
	f.tensorIdx = make(map[string]int, len(idx.Tensors))
	for _, t := range idx.Tensors {
		info, err := f.checkTensor(t, dataEnd)
		if err != nil {
			return err
		}
		if _, dup := f.tensorIdx[t.Name]; dup {
			return f.errorf("duplicate tensor %q", t.Name)
		}
		f.tensorIdx[t.Name] = len(f.tensors)
		f.tensors = append(f.tensors, info)
		f.names = append(f.names, t.Name)
	}
	slices.Sort(f.names)
	f.verified = make([]atomic.Bool, len(f.tensors))

	f.blobIdx = make(map[string]int, len(idx.Blobs))
	for _, b := range idx.Blobs {
		if b.Name == "" {
			return f.errorf("blob with empty name")
		}
		if err := f.checkRegion(b.Codec, b.Offset, b.Size, b.RawSize, dataEnd); err != nil {
			return f.errorf("blob %q: %v", b.Name, err)
		}
		if _, dup := f.blobIdx[b.Name]; dup {
			return f.errorf("duplicate blob %q", b.Name)
		}
		f.blobIdx[b.Name] = len(f.blobs)
		f.blobs = append(f.blobs, BlobInfo{
			Name: b.Name, Codec: b.Codec, Offset: b.Offset, Size: b.Size,
			RawSize: b.RawSize, CRC32C: b.CRC32C, stored: b.StoredCRC32C,
		})
	}
	return nil
}

func (f *File) checkTensor(t wireTensor, dataEnd int64) (TensorInfo, error) {
	if t.Name == "" {
		return TensorInfo{}, f.errorf("tensor with empty name")
	}
	dt, err := ParseDType(t.DType)
	if err != nil {
		return TensorInfo{}, f.errorf("tensor %q: %v", t.Name, err)
	}
	_, nbytes, err := byteSize(t.Shape, dt)
	if err != nil {
		return TensorInfo{}, f.errorf("tensor %q: %v", t.Name, err)
	}
	if t.RawSize != nbytes {
		return TensorInfo{}, f.errorf("tensor %q: raw_size %d, but %s %v needs %d bytes", t.Name, t.RawSize, dt, t.Shape, nbytes)
	}
	if err := f.checkRegion(t.Codec, t.Offset, t.Size, t.RawSize, dataEnd); err != nil {
		return TensorInfo{}, f.errorf("tensor %q: %v", t.Name, err)
	}
	return TensorInfo{
		Name: t.Name, DType: dt, Shape: intShape(t.Shape), Codec: t.Codec,
		Offset: t.Offset, Size: t.Size, RawSize: t.RawSize, CRC32C: t.CRC32C,
		stored: t.StoredCRC32C,
	}, nil
}

// checkRegion checks that a stored region lies in the data area
// [PreambleSize, dataEnd) and that its codec and sizes are consistent.
func (f *File) checkRegion(codec string, off, size, rawSize, dataEnd int64) error {
	fileSize := int64(len(f.data))
	switch {
	case off < 0 || size < 0 || rawSize < 0:
		return fmt.Errorf("negative offset %d, size %d or raw_size %d", off, size, rawSize)
	case off < PreambleSize:
		return fmt.Errorf("offset %d inside the %d-byte preamble", off, PreambleSize)
	case off > fileSize-size: // no overflow: both are non-negative
		return fmt.Errorf("offset %d + size %d beyond file size %d", off, size, fileSize)
	case off+size > dataEnd:
		return fmt.Errorf("offset %d + size %d overlaps the index at offset %d", off, size, dataEnd)
	}
	switch codec {
	case CodecRaw:
		if size != rawSize {
			return fmt.Errorf("raw region of %d bytes, raw_size %d", size, rawSize)
		}
		if off%Alignment != 0 {
			return fmt.Errorf("raw data at offset %d not %d-byte aligned", off, Alignment)
		}
	case CodecZstd:
		if size == 0 {
			return errors.New("empty zstd region")
		}
		if size <= math.MaxInt64/MaxZstdRatio && rawSize > size*MaxZstdRatio {
			return fmt.Errorf("raw_size %d more than %d times the %d stored bytes (decompression bomb?)", rawSize, MaxZstdRatio, size)
		}
	default:
		return fmt.Errorf("unknown codec %q", codec)
	}
	return nil
}

// region returns the decoded, checksum-verified bytes of a stored region.
// Raw regions are not copied. storedCRC, if not nil, is the checksum of
// the stored bytes of a zstd region, checked before decoding. verified, if
// not nil, caches a successful raw check.
func (f *File) region(kind, name, codec string, off, size, rawSize int64, crc uint32, storedCRC *uint32, verified *atomic.Bool) ([]byte, error) {
	if f.closed {
		return nil, f.errorf("%s %q: file is closed", kind, name)
	}
	stored := f.data[off : off+size : off+size]
	out := stored
	if codec == CodecZstd {
		if storedCRC != nil {
			if c := checksum(stored); c != *storedCRC {
				return nil, f.errorf("%s %q: checksum of the %d compressed bytes at offset %d mismatch (stored %08x, computed %08x): file corrupt",
					kind, name, size, off, *storedCRC, c)
			}
		}
		var err error
		if out, err = decodeZstd(stored, rawSize); err != nil {
			return nil, f.errorf("%s %q: %v", kind, name, err)
		}
	} else if verified != nil && verified.Load() {
		return out, nil
	}
	if c := checksum(out); c != crc {
		return nil, f.errorf("%s %q: checksum mismatch (stored %08x, computed %08x): file corrupt", kind, name, crc, c)
	}
	if codec == CodecRaw && verified != nil {
		verified.Store(true)
	}
	return out, nil
}

var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecodeAllCapLimit(true), // never decode past cap(dst) = raw_size
		zstd.WithDecoderMaxMemory(1<<36),
		zstd.WithDecoderMaxWindow(1<<36))
})

// decodeZstd decodes one zstd region into exactly rawSize bytes.
func decodeZstd(stored []byte, rawSize int64) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(stored); err != nil {
		return nil, fmt.Errorf("zstd frame header: %v", err)
	}
	if h.Skippable {
		return nil, errors.New("zstd region starts with a skippable frame")
	}
	if h.HasFCS && h.FrameContentSize > uint64(rawSize) {
		return nil, fmt.Errorf("zstd frame claims %d bytes, more than raw_size %d (decompression bomb?)", h.FrameContentSize, rawSize)
	}
	if h.HasFCS && h.FrameContentSize != uint64(rawSize) {
		return nil, fmt.Errorf("zstd frame claims %d bytes, raw_size is %d", h.FrameContentSize, rawSize)
	}
	// Refuse a raw_size (and frame content size) the blocks cannot produce
	// before allocating it, so a lying index cannot make us reserve memory,
	// and blocks that certainly expand beyond it before decoding them.
	least, most, err := zstdOutputRange(stored)
	switch {
	case err != nil:
		return nil, err
	case most < uint64(rawSize):
		return nil, fmt.Errorf("zstd data can decode to at most %d bytes, raw_size is %d (decompression bomb?)", most, rawSize)
	case least > uint64(rawSize):
		return nil, fmt.Errorf("zstd data decodes to at least %d bytes, more than raw_size %d (decompression bomb?)", least, rawSize)
	}
	dec, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	out, err := dec.DecodeAll(stored, make([]byte, 0, rawSize))
	if err != nil {
		return nil, fmt.Errorf("zstd: %v", err)
	}
	if int64(len(out)) != rawSize {
		return nil, fmt.Errorf("zstd data decodes to %d bytes, raw_size is %d", len(out), rawSize)
	}
	return out, nil
}

// zstdOutputRange bounds what a zstd stream can decode to by walking its
// frame and block headers (RFC 8878 §3.1.1): a raw or RLE block produces
// exactly Block_Size bytes, a compressed block at most 128 KiB.
func zstdOutputRange(b []byte) (least, most uint64, err error) {
	const maxBlock = 128 << 10
	for len(b) > 0 {
		var h zstd.Header
		if err := h.Decode(b); err != nil {
			return 0, 0, fmt.Errorf("zstd frame header: %v", err)
		}
		if h.HeaderSize <= 0 || h.HeaderSize > len(b) {
			return 0, 0, fmt.Errorf("zstd frame header of %d bytes in %d", h.HeaderSize, len(b))
		}
		b = b[h.HeaderSize:]
		if h.Skippable {
			if uint64(h.SkippableSize) > uint64(len(b)) {
				return 0, 0, errors.New("zstd skippable frame runs past the region")
			}
			b = b[h.SkippableSize:]
			continue
		}
		for last := false; !last; {
			if len(b) < 3 {
				return 0, 0, errors.New("zstd block header runs past the region (truncated frame)")
			}
			bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
			b = b[3:]
			last = bh&1 != 0
			size := uint64(bh >> 3)
			var in uint64
			switch (bh >> 1) & 3 {
			case 0: // raw
				in = size
				least += size
				most += size
			case 1: // RLE
				in = 1
				least += size
				most += size
			case 2: // compressed
				in = size
				most += maxBlock
			default:
				return 0, 0, errors.New("zstd block of the reserved type 3 (corrupt data)")
			}
			if in > uint64(len(b)) {
				return 0, 0, errors.New("zstd block runs past the region (truncated frame)")
			}
			b = b[in:]
		}
		if h.HasCheckSum {
			if len(b) < 4 {
				return 0, 0, errors.New("zstd frame checksum runs past the region (truncated frame)")
			}
			b = b[4:]
		}
	}
	return least, most, nil
}

// Names lists every tensor name ("<component>/<key>"), sorted.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Tensor returns a tensor by full name, decompressed and checksum-verified.
// A raw tensor's Data aliases the file (read-only, valid until Close).
func (f *File) Tensor(name string) (Tensor, error) {
	i, ok := f.tensorIdx[name]
	if !ok {
		return Tensor{}, f.errorf("no tensor %q", name)
	}
	t := &f.tensors[i]
	data, err := f.region("tensor", t.Name, t.Codec, t.Offset, t.Size, t.RawSize, t.CRC32C, t.stored, &f.verified[i])
	if err != nil {
		return Tensor{}, err
	}
	return Tensor{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape), Data: data}, nil
}

// Index lists every tensor's index entry, in file order.
func (f *File) Index() []TensorInfo {
	out := slices.Clone(f.tensors)
	for i := range out {
		out[i].Shape = slices.Clone(out[i].Shape)
	}
	return out
}

// Blobs lists every blob's index entry, in file order.
func (f *File) Blobs() []BlobInfo { return slices.Clone(f.blobs) }

// Components lists the stored components in file order.
func (f *File) Components() []Component { return slices.Clone(f.components) }

// Component looks up one component by name.
func (f *File) Component(name string) (Component, bool) {
	for _, c := range f.components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// Sub is a Source over one component's tensors, named by state-dict key
// (the full name without "<component>/").
func (f *File) Sub(component string) Source { return sub{f, component + "/"} }

type sub struct {
	f      *File
	prefix string
}

func (s sub) Names() []string {
	i := sort.SearchStrings(s.f.names, s.prefix)
	var out []string
	for ; i < len(s.f.names) && strings.HasPrefix(s.f.names[i], s.prefix); i++ {
		out = append(out, s.f.names[i][len(s.prefix):])
	}
	return out
}

func (s sub) Tensor(key string) (Tensor, error) {
	if _, ok := s.f.tensorIdx[s.prefix+key]; !ok {
		return Tensor{}, s.f.errorf("component %q has no tensor %q", strings.TrimSuffix(s.prefix, "/"), key)
	}
	t, err := s.f.Tensor(s.prefix + key)
	t.Name = key
	return t, err
}

// Blob returns a copy of a stored auxiliary file such as
// "tokenizer/vocab.json", checksum-verified.
func (f *File) Blob(name string) ([]byte, error) {
	i, ok := f.blobIdx[name]
	if !ok {
		return nil, f.errorf("no blob %q", name)
	}
	b := &f.blobs[i]
	data, err := f.region("blob", b.Name, b.Codec, b.Offset, b.Size, b.RawSize, b.CRC32C, b.stored, nil)
	if err != nil {
		return nil, err
	}
	if b.Codec == CodecRaw {
		data = slices.Clone(data)
	}
	return data, nil
}

// Verify checks the checksum of every tensor and blob and reports every
// corrupt one. It also checks that the padding between regions is zero, so
// that no byte of a file escapes checking: the preamble and trailer are
// checked by Open, the index by its checksum, regions by theirs.
func (f *File) Verify() error {
	var errs []error
	if f.closed {
		return f.errorf("file is closed")
	}
	if err := f.checkPadding(); err != nil {
		errs = append(errs, err)
	}
	for i := range f.tensors {
		t := &f.tensors[i]
		if _, err := f.region("tensor", t.Name, t.Codec, t.Offset, t.Size, t.RawSize, t.CRC32C, t.stored, &f.verified[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range f.blobs {
		b := &f.blobs[i]
		if _, err := f.region("blob", b.Name, b.Codec, b.Offset, b.Size, b.RawSize, b.CRC32C, b.stored, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkPadding reports non-zero bytes in the data area outside every region.
func (f *File) checkPadding() error {
	type span struct{ off, end int64 }
	spans := make([]span, 0, len(f.tensors)+len(f.blobs))
	for _, t := range f.tensors {
		spans = append(spans, span{t.Offset, t.Offset + t.Size})
	}
	for _, b := range f.blobs {
		spans = append(spans, span{b.Offset, b.Offset + b.Size})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	spans = append(spans, span{f.dataEnd, f.dataEnd})
	pos := int64(PreambleSize)
	for _, s := range spans {
		if s.off > pos {
			if i := slices.IndexFunc(f.data[pos:s.off], func(b byte) bool { return b != 0 }); i >= 0 {
				return f.errorf("padding byte at offset %d is 0x%02x, not 0: file corrupt", pos+int64(i), f.data[pos+int64(i)])
			}
		}
		pos = max(pos, s.end)
	}
	return nil
}

// Meta returns a copy of the provenance metadata.
func (f *File) Meta() map[string]string { return maps.Clone(f.meta) }

// Size is the file size in bytes.
func (f *File) Size() int64 { return f.size }

// Version is the file's format version.
func (f *File) Version() int { return f.version }

// Close unmaps the file. Tensors read from it must not be used afterwards.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.unmap != nil {
		if err := f.unmap(); err != nil {
			return f.errorf("%v", err)
		}
	}
	return nil
}
