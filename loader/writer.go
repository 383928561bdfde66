package loader

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// DefaultMinSaving is the fraction of a region's bytes zstd must save for
// the writer to store it compressed. Float weights compress little: only
// their exponent bytes are predictable (zstd saves 3.5-7.7% on the F32
// weights of the tiny test pipeline's prior, decoder and text encoder).
// Storing them raw keeps them zero-copy and free to load, which is worth
// more than that; zeros, integer tables and text (vocab.json, merges.txt)
// save far more than 20% and are compressed.
const DefaultMinSaving = 0.20

// Regions larger than sampleAbove are first compressed in sampleChunks
// evenly spaced chunks of sampleSize bytes; when those save less than half
// of the required fraction the whole region is stored raw without trying.
// This keeps converting gigabytes of incompressible weights fast.
const (
	sampleAbove  = 1 << 20
	sampleChunks = 4
	sampleSize   = 64 << 10
	minCompress  = 64 // smaller regions are always stored raw
)

// Writer writes a weight file in one pass. Tensor data goes straight to a
// temporary file next to the destination; only the index is kept in memory.
// Commit makes the file appear at its path atomically; Abort (or a failed
// Commit) removes the temporary file. A Writer is not safe for concurrent use.
type Writer struct {
	path      string
	f         *atomicFile
	bw        *bufio.Writer
	pos       int64
	err       error // sticky I/O error
	done      bool
	minSaving float64
	enc       *zstd.Encoder
	zbuf      []byte

	meta       map[string]string
	components []Component
	tensors    []wireTensor
	blobs      []wireBlob
	names      map[string]bool // components, tensors and blobs, prefixed
	tensorAt   map[string]int  // full tensor name -> index in tensors
}

// Create starts a weight file that Commit will place at path. It writes to
// "<path>.tmp-<pid>-<random>" in the same directory (removing such files
// left by writers that were killed, see TempInfix).
func Create(path string) (*Writer, error) {
	f, err := createAtomic(path)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		path:      path,
		f:         f,
		bw:        bufio.NewWriterSize(f, 1<<20),
		minSaving: DefaultMinSaving,
		meta:      map[string]string{},
		names:     map[string]bool{},
		tensorAt:  map[string]int{},
	}
	var pre [PreambleSize]byte
	copy(pre[:], Magic)
	binary.LittleEndian.PutUint32(pre[8:], Version)
	w.write(pre[:])
	if w.err != nil {
		f.abort()
		return nil, w.err
	}
	return w, nil
}

// SetMinSaving sets the fraction of bytes zstd must save for a tensor or
// blob to be stored compressed (DefaultMinSaving unless set). A value of 1
// or more stores everything raw; 0 compresses whenever zstd is smaller.
func (w *Writer) SetMinSaving(f float64) { w.minSaving = f }

// SetMeta records a provenance metadata entry (see the Meta* keys).
func (w *Writer) SetMeta(key, value string) { w.meta[key] = value }

// AddComponent records a pipeline component. Its name must be non-empty,
// unique and free of "/"; Config, if set, must be valid JSON.
func (w *Writer) AddComponent(c Component) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := checkComponentName(c.Name); err != nil {
		return w.errorf("%v", err)
	}
	if w.names["c:"+c.Name] {
		return w.errorf("duplicate component %q", c.Name)
	}
	if len(c.Config) > 0 && !json.Valid(c.Config) {
		return w.errorf("component %q: config is not valid JSON", c.Name)
	}
	w.names["c:"+c.Name] = true
	c.Config = slices.Clone(c.Config)
	w.components = append(w.components, c)
	return nil
}

// AddTensor writes t under the name component+"/"+t.Name. Its data must
// match its dtype and shape. It is compressed only if that saves enough
// (see SetMinSaving); t.Data is not retained.
func (w *Writer) AddTensor(component string, t Tensor) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := checkComponentName(component); err != nil {
		return w.errorf("tensor %q: %v", t.Name, err)
	}
	if t.Name == "" {
		return w.errorf("component %q: empty tensor name", component)
	}
	name := component + "/" + t.Name
	if w.names["t:"+name] {
		return w.errorf("duplicate tensor %q", name)
	}
	t.Name = name
	if err := checkTensorData(t); err != nil {
		return w.errorf("%v", err)
	}
	codec, off, size, crc, storedCRC := w.writeRegion(t.Data)
	if w.err != nil {
		return w.err
	}
	w.names["t:"+name] = true
	w.tensorAt[name] = len(w.tensors)
	w.tensors = append(w.tensors, wireTensor{
		Name: name, DType: t.DType.String(), Shape: int64Shape(t.Shape), Codec: codec,
		Offset: off, Size: size, RawSize: int64(len(t.Data)), CRC32C: crc, StoredCRC32C: storedCRC,
	})
	return nil
}

// Stored returns the index entry of a tensor already added, by full name
// ("<component>/<key>"): how it was stored (codec, stored size) and its
// decoded size, so that a converter can report what compression saved.
// ok is false for a name not added.
func (w *Writer) Stored(name string) (info TensorInfo, ok bool) {
	i, ok := w.tensorAt[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := w.tensors[i]
	dt, _ := ParseDType(t.DType) // written by AddTensor from a valid DType
	return TensorInfo{
		Name: t.Name, DType: dt, Shape: intShape(t.Shape), Codec: t.Codec,
		Offset: t.Offset, Size: t.Size, RawSize: t.RawSize, CRC32C: t.CRC32C,
		stored: t.StoredCRC32C,
	}, true
}

// AddBlob stores an auxiliary file such as "tokenizer/vocab.json".
func (w *Writer) AddBlob(name string, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if name == "" {
		return w.errorf("empty blob name")
	}
	if w.names["b:"+name] {
		return w.errorf("duplicate blob %q", name)
	}
	codec, off, size, crc, storedCRC := w.writeRegion(data)
	if w.err != nil {
		return w.err
	}
	w.names["b:"+name] = true
	w.blobs = append(w.blobs, wireBlob{
		Name: name, Codec: codec, Offset: off, Size: size, RawSize: int64(len(data)), CRC32C: crc, StoredCRC32C: storedCRC,
	})
	return nil
}

// Commit writes the index and trailer, fsyncs, and renames the file into
// place. On any error the temporary file is removed. The Writer cannot be
// used afterwards.
func (w *Writer) Commit() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.done = true
	if w.err != nil {
		w.f.abort()
		return w.err
	}
	idx := wireIndex{
		Version:    Version,
		Metadata:   w.meta,
		Components: w.components,
		Tensors:    w.tensors,
		Blobs:      w.blobs,
	}
	if idx.Components == nil {
		idx.Components = []Component{}
	}
	if idx.Tensors == nil {
		idx.Tensors = []wireTensor{}
	}
	if idx.Blobs == nil {
		idx.Blobs = []wireBlob{}
	}
	js, err := json.Marshal(idx)
	if err != nil {
		w.f.abort()
		return w.errorf("index: %v", err)
	}
	if len(js) > MaxIndexSize {
		w.f.abort()
		return w.errorf("index of %d bytes exceeds the %d-byte limit", len(js), MaxIndexSize)
	}
	w.pad()
	indexOffset := w.pos
	w.write(js)
	var tr [TrailerSize]byte
	binary.LittleEndian.PutUint64(tr[0:], uint64(indexOffset))
	binary.LittleEndian.PutUint64(tr[8:], uint64(len(js)))
	binary.LittleEndian.PutUint32(tr[16:], checksum(js))
	copy(tr[24:], Magic)
	w.write(tr[:])
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = w.errorf("%v", err)
		}
	}
	if w.err != nil {
		w.f.abort()
		return w.err
	}
	return w.f.commit()
}

// Abort discards the file being written: the temporary file is removed and
// whatever exists at the destination path is left untouched. Aborting after
// Commit or a second time does nothing.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.f.abort(); err != nil {
		return w.errorf("abort: %v", err)
	}
	return nil
}

func (w *Writer) usable() error {
	if w.done {
		return w.errorf("writer already committed or aborted")
	}
	return nil
}

func (w *Writer) errorf(format string, args ...any) error {
	return fmt.Errorf("loader: %s: "+format, append([]any{w.path}, args...)...)
}

func checkComponentName(name string) error {
	if name == "" {
		return errors.New("empty component name")
	}
	if strings.Contains(name, "/") {
		return fmt.Errorf("component name %q contains \"/\"", name)
	}
	return nil
}

// write appends b to the file, recording the first error.
func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(b)
	w.pos += int64(n)
	if err != nil {
		w.err = w.errorf("%v", err)
	}
}

var zeros [Alignment]byte

// pad writes zeros up to the next multiple of Alignment.
func (w *Writer) pad() {
	if r := w.pos % Alignment; r != 0 {
		w.write(zeros[:Alignment-r])
	}
}

// writeRegion stores data at the next aligned offset, compressed if that
// pays, and returns how it was stored; storedCRC is the checksum of the
// compressed bytes (nil for a raw region, whose stored bytes are data).
func (w *Writer) writeRegion(data []byte) (codec string, offset, size int64, crc uint32, storedCRC *uint32) {
	crc = checksum(data)
	stored, codec := w.compress(data)
	if codec == CodecZstd {
		c := checksum(stored)
		storedCRC = &c
	}
	w.pad()
	offset = w.pos
	w.write(stored)
	if cap(w.zbuf) > 16<<20 {
		w.zbuf = nil // do not keep a huge buffer for the next tensor
	}
	return codec, offset, int64(len(stored)), crc, storedCRC
}

// compress returns data zstd-compressed if that saves at least minSaving,
// else data itself.
func (w *Writer) compress(data []byte) ([]byte, string) {
	if w.minSaving >= 1 || len(data) < minCompress {
		return data, CodecRaw
	}
	if w.enc == nil {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false)) // regions carry their own CRC-32C
		if err != nil {
			// Only invalid options fail; store raw rather than fail.
			return data, CodecRaw
		}
		w.enc = enc
	}
	limit := float64(len(data)) * (1 - w.minSaving)
	if len(data) > sampleAbove {
		var in, out int
		step := (len(data) - sampleSize) / (sampleChunks - 1)
		for i := range sampleChunks {
			chunk := data[i*step : i*step+sampleSize]
			w.zbuf = w.enc.EncodeAll(chunk, w.zbuf[:0])
			in += len(chunk)
			out += len(w.zbuf)
		}
		if float64(out) > float64(in)*(1-w.minSaving/2) {
			return data, CodecRaw
		}
	}
	w.zbuf = w.enc.EncodeAll(data, w.zbuf[:0])
	if float64(len(w.zbuf)) > limit {
		return data, CodecRaw
	}
	return w.zbuf, CodecZstd
}
