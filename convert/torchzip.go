package convert

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// Limits on what a torch.save archive may make us allocate.
const (
	// maxPickleSize bounds data.pkl. Even the 4 GB Karlo prior's pickle is
	// tens of kilobytes: it holds names and shapes, not weights.
	maxPickleSize = 256 << 20
	// maxExpandedBytes bounds a view with more elements than its storage
	// (only possible with stride 0, i.e. an expanded tensor): beyond it
	// the view is refused rather than materialised.
	maxExpandedBytes = 64 << 20
)

// TorchFile is an opened PyTorch torch.save checkpoint (the zip format of
// PyTorch ≥ 1.6: .bin, .pt, .pth, .ckpt). It implements loader.Source: the
// tensors of its state dict are read on demand, one view at a time, made
// contiguous. Every view was checked against its storage when the file was
// opened.
type TorchFile struct {
	path     string
	r        io.ReaderAt
	closer   io.Closer // nil when not owned
	names    []string
	tensors  map[string]*TensorRef
	storages map[string]storageEntry // by storage key
}

// storageEntry locates one storage's raw bytes in the archive.
type storageEntry struct {
	entry  string // archive entry name, for errors
	offset int64  // absolute file offset of the bytes
	size   int64  // bytes
	dtype  loader.DType
	crc    uint32 // CRC-32 (IEEE) of the bytes from the zip directory
}

// ReadTorchFile reads every tensor of a torch.save checkpoint's state dict,
// sorted by name, with the default (strict) pickle options.
func ReadTorchFile(path string) ([]loader.Tensor, error) {
	tf, err := OpenTorch(path, PickleOptions{})
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	out := make([]loader.Tensor, 0, len(tf.names))
	for _, n := range tf.names {
		t, err := tf.Tensor(n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// OpenTorch opens a torch.save zip checkpoint and parses its pickle. The
// top-level object must be a dict (or OrderedDict) of tensors, or a dict
// whose "state_dict" entry is one (as in Lightning checkpoints, for which
// opt.AllowOpaque lets the rest of the pickle name arbitrary classes).
// nn.Parameter wrappers are unwrapped. Storage types map to dtypes as in
// spec §14; big-endian archives are refused.
func OpenTorch(path string, opt PickleOptions) (*TorchFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	tf, err := ParseTorch(f, fi.Size(), path, opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	tf.closer = f
	return tf, nil
}

// ParseTorch reads a torch.save zip checkpoint of the given size from r, as
// OpenTorch does; name is used in errors. Close does not close r.
func ParseTorch(r io.ReaderAt, size int64, name string, opt PickleOptions) (*TorchFile, error) {
	a, err := openTorchArchive(r, size, name)
	if err != nil {
		return nil, err
	}
	v, pklName, err := a.unpickle("data.pkl", opt)
	if err != nil {
		return nil, err
	}
	sd, err := findStateDict(v)
	if err != nil {
		return nil, a.fail("%s: %v", pklName, err)
	}
	names := make([]string, 0, len(sd.Keys))
	refs := make([]*TensorRef, 0, len(sd.Keys))
	for i, k := range sd.Keys {
		name, ok := k.(string)
		if !ok {
			return nil, a.fail("state dict key %s is not a string", describe(k))
		}
		t, ok := sd.Values[i].(*TensorRef)
		if !ok {
			return nil, a.fail("state dict entry %q is %s, not a tensor", name, describe(sd.Values[i]))
		}
		names = append(names, name)
		refs = append(refs, t)
	}
	return a.torchFile(names, refs)
}

// torchArchive is an opened torch.save or torch.jit.save zip archive: every
// entry sits in one top-level folder (any name), which is cut from the
// entry names.
type torchArchive struct {
	path    string
	r       io.ReaderAt
	size    int64
	prefix  string               // the top-level folder, with its "/"
	entries map[string]*zip.File // by name relative to prefix
}

// openTorchArchive reads the zip directory and checks the byte order.
func openTorchArchive(r io.ReaderAt, size int64, path string) (*torchArchive, error) {
	a := &torchArchive{path: path, r: r, size: size, entries: map[string]*zip.File{}}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		var head [2]byte
		if n, _ := r.ReadAt(head[:], 0); n == 2 && head[0] == 0x80 && head[1] == 0x02 {
			return nil, a.fail("a legacy (PyTorch < 1.6) torch.save file, which is not supported; re-save it with a current PyTorch")
		}
		return nil, a.fail("not a torch.save zip archive: %v", err)
	}

	// All entries share one top-level folder, whatever its name.
	for _, zf := range zr.File {
		i := strings.IndexByte(zf.Name, '/')
		if i <= 0 {
			return nil, a.fail("archive entry %q is not inside a top-level folder", zf.Name)
		}
		if a.prefix == "" {
			a.prefix = zf.Name[:i+1]
		} else if zf.Name[:i+1] != a.prefix {
			return nil, a.fail("archive has two top-level folders, %q and %q", a.prefix, zf.Name[:i+1])
		}
		rel := zf.Name[i+1:]
		if _, dup := a.entries[rel]; dup {
			return nil, a.fail("duplicate archive entry %q", zf.Name)
		}
		a.entries[rel] = zf
	}
	if a.prefix == "" {
		return nil, a.fail("empty archive")
	}

	if bo, ok := a.entries["byteorder"]; ok {
		b, err := readEntry(bo, 64)
		if err != nil {
			return nil, a.fail("%s: %v", bo.Name, err)
		}
		switch s := string(bytes.TrimSpace(b)); s {
		case "little":
		case "big":
			return nil, a.fail("big-endian checkpoint (byteorder \"big\") is not supported")
		default:
			return nil, a.fail("unknown byteorder %q", s)
		}
	}
	return a, nil
}

// fail is an error naming the archive.
func (a *torchArchive) fail(format string, args ...any) error {
	return fmt.Errorf("convert: %s: "+format, append([]any{a.path}, args...)...)
}

// unpickle parses the pickle entry rel (e.g. "data.pkl"); it also returns
// the entry's full name, for errors.
func (a *torchArchive) unpickle(rel string, opt PickleOptions) (any, string, error) {
	zf, ok := a.entries[rel]
	if !ok {
		return nil, "", a.fail("no %s%s in the archive", a.prefix, rel)
	}
	pkl, err := readEntry(zf, maxPickleSize)
	if err != nil {
		return nil, "", a.fail("%s: %v", zf.Name, err)
	}
	v, err := Unpickle(pkl, opt)
	if err != nil {
		return nil, "", a.fail("%s: %w", zf.Name, err)
	}
	return v, zf.Name, nil
}

// torchFile checks every named view against its storage entry and returns
// the TorchFile serving them (names must be unique).
func (a *torchArchive) torchFile(names []string, refs []*TensorRef) (*TorchFile, error) {
	tf := &TorchFile{path: a.path, r: a.r, tensors: map[string]*TensorRef{}, storages: map[string]storageEntry{}}
	for i, name := range names {
		t := refs[i]
		if _, dup := tf.tensors[name]; dup {
			return nil, a.fail("tensor %q appears twice", name)
		}
		se, err := tf.storage(a.entries, a.prefix, t.Storage, a.size)
		if err != nil {
			return nil, a.fail("tensor %q: %v", name, err)
		}
		if err := checkView(t, se); err != nil {
			return nil, a.fail("tensor %q: %v", name, err)
		}
		tf.tensors[name] = t
		tf.names = append(tf.names, name)
	}
	slices.Sort(tf.names)
	return tf, nil
}

// findStateDict picks the dict of tensors out of the unpickled object.
func findStateDict(v any) (*Dict, error) {
	d, ok := v.(*Dict)
	if !ok {
		if o, isOpaque := v.(*Opaque); isOpaque && o.Items != nil {
			d = o.Items
		} else {
			return nil, fmt.Errorf("top-level object is %s, want a dict of tensors", describe(v))
		}
	}
	if sd, ok := d.Get("state_dict"); ok {
		switch s := sd.(type) {
		case *Dict:
			return s, nil
		case *Opaque:
			if s.Items != nil {
				return s.Items, nil
			}
		}
		return nil, fmt.Errorf(`"state_dict" entry is %s, want a dict of tensors`, describe(sd))
	}
	return d, nil
}

// storage locates (and on first use validates) the archive entry of s.
func (tf *TorchFile) storage(entries map[string]*zip.File, prefix string, s *Storage, fileSize int64) (storageEntry, error) {
	if se, ok := tf.storages[s.Key]; ok {
		if se.dtype != s.DType {
			return storageEntry{}, fmt.Errorf("storage %q used as both %s and %s", s.Key, se.dtype, s.DType)
		}
		return se, nil
	}
	zf, ok := entries["data/"+s.Key]
	if !ok {
		return storageEntry{}, fmt.Errorf("storage %q: no entry %sdata/%s in the archive", s.Key, prefix, s.Key)
	}
	if zf.Method != zip.Store {
		return storageEntry{}, fmt.Errorf("storage entry %s is compressed (method %d); torch.save stores them uncompressed", zf.Name, zf.Method)
	}
	es := int64(s.DType.Size())
	if s.Numel > math.MaxInt64/es {
		return storageEntry{}, fmt.Errorf("storage %q: %d elements overflow", s.Key, s.Numel)
	}
	want := s.Numel * es
	if zf.UncompressedSize64 != uint64(want) || zf.CompressedSize64 != uint64(want) {
		return storageEntry{}, fmt.Errorf("storage entry %s has %d bytes, want %d (%d × %s)", zf.Name, zf.UncompressedSize64, want, s.Numel, s.DType)
	}
	off, err := zf.DataOffset()
	if err != nil {
		return storageEntry{}, fmt.Errorf("storage entry %s: %v", zf.Name, err)
	}
	if off < 0 || off > fileSize || want > fileSize-off {
		return storageEntry{}, fmt.Errorf("storage entry %s: %d bytes at offset %d run past the end of the file (%d bytes)", zf.Name, want, off, fileSize)
	}
	se := storageEntry{entry: zf.Name, offset: off, size: want, dtype: s.DType, crc: zf.CRC32}
	tf.storages[s.Key] = se
	return se, nil
}

// checkView checks that every element of t lies inside its storage and that
// materialising it is bounded, with overflow-checked arithmetic.
func checkView(t *TensorRef, se storageEntry) error {
	numel, span, err := viewExtent(t.Size, t.Stride, t.Offset)
	if err != nil {
		return err
	}
	storeNumel := se.size / int64(se.dtype.Size())
	if numel == 0 {
		return nil
	}
	if span > storeNumel || t.Offset > storeNumel-span {
		return fmt.Errorf("view (offset %d, size %v, stride %v) reaches element %d of storage %q, which has %d",
			t.Offset, t.Size, t.Stride, satAdd(t.Offset, span)-1, t.Storage.Key, storeNumel)
	}
	if numel > storeNumel && numel > maxExpandedBytes/int64(se.dtype.Size()) {
		return fmt.Errorf("expanded view of %d elements over a storage of %d", numel, storeNumel)
	}
	if uint64(numel)*uint64(se.dtype.Size()) > uint64(math.MaxInt) {
		return fmt.Errorf("view of %d elements is too large", numel)
	}
	return nil
}

// viewExtent returns the element count of a view and its span: 1 + the
// largest element index relative to the offset (0 for an empty view).
func viewExtent(size, stride []int64, offset int64) (numel, span int64, err error) {
	if len(size) != len(stride) {
		return 0, 0, fmt.Errorf("size %v and stride %v differ in rank", size, stride)
	}
	if offset < 0 {
		return 0, 0, fmt.Errorf("negative storage offset %d", offset)
	}
	numel = 1
	for _, d := range size {
		if d < 0 {
			return 0, 0, fmt.Errorf("negative dimension in size %v", size)
		}
		if d == 0 {
			return 0, 0, nil
		}
		hi, lo := bits.Mul64(uint64(numel), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, 0, fmt.Errorf("size %v overflows", size)
		}
		numel = int64(lo)
	}
	last := uint64(0)
	for k, d := range size {
		if stride[k] < 0 {
			return 0, 0, fmt.Errorf("negative stride %v", stride)
		}
		hi, lo := bits.Mul64(uint64(d-1), uint64(stride[k]))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, 0, fmt.Errorf("stride %v with size %v overflows", stride, size)
		}
		var carry uint64
		last, carry = bits.Add64(last, lo, 0)
		if carry != 0 || last > math.MaxInt64-1 {
			return 0, 0, fmt.Errorf("stride %v with size %v overflows", stride, size)
		}
	}
	return numel, int64(last) + 1, nil
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// isContiguous reports whether a view is row-major contiguous (dimensions
// of size 1 may have any stride, as in PyTorch).
func isContiguous(size, stride []int64) bool {
	want := int64(1)
	for k := len(size) - 1; k >= 0; k-- {
		if size[k] == 1 {
			continue
		}
		if size[k] == 0 {
			return true
		}
		if stride[k] != want {
			return false
		}
		want *= size[k]
	}
	return true
}

// Info returns a tensor's element type and shape without reading it.
func (tf *TorchFile) Info(name string) (dtype loader.DType, shape []int, ok bool) {
	t, ok := tf.tensors[name]
	if !ok {
		return loader.Invalid, nil, false
	}
	shape = make([]int, len(t.Size))
	for i, d := range t.Size {
		shape[i] = int(d) // fits: checkView bounded numel·size by MaxInt
	}
	return t.Storage.DType, shape, true
}

// Names lists the state dict's tensor names, sorted.
func (tf *TorchFile) Names() []string { return slices.Clone(tf.names) }

// Tensor reads one tensor's view from its storage, contiguous.
func (tf *TorchFile) Tensor(name string) (loader.Tensor, error) {
	t, ok := tf.tensors[name]
	if !ok {
		return loader.Tensor{}, fmt.Errorf("convert: %s: no tensor %q", tf.path, name)
	}
	se := tf.storages[t.Storage.Key]
	data, err := tf.readView(t, se)
	if err != nil {
		return loader.Tensor{}, fmt.Errorf("convert: %s: tensor %q: %v", tf.path, name, err)
	}
	shape := make([]int, len(t.Size))
	for i, d := range t.Size {
		shape[i] = int(d) // fits: checkView bounded numel·size by MaxInt
	}
	return loader.Tensor{Name: name, DType: se.dtype, Shape: shape, Data: data}, nil
}

func (tf *TorchFile) readView(t *TensorRef, se storageEntry) ([]byte, error) {
	numel, span, err := viewExtent(t.Size, t.Stride, t.Offset)
	if err != nil {
		return nil, err
	}
	es := int64(se.dtype.Size())
	out := make([]byte, numel*es)
	if numel == 0 {
		return out, nil
	}
	if isContiguous(t.Size, t.Stride) {
		if err := tf.readAt(out, se, t.Offset*es); err != nil {
			return nil, err
		}
		// A view of the whole storage (the usual case) is checked against
		// the zip's CRC-32; writers that leave it 0 are not checked.
		if t.Offset == 0 && int64(len(out)) == se.size && se.crc != 0 {
			if got := crc32.ChecksumIEEE(out); got != se.crc {
				return nil, fmt.Errorf("%s: CRC-32 %08x, zip directory says %08x (corrupt file)", se.entry, got, se.crc)
			}
		}
		return out, nil
	}
	src := make([]byte, span*es)
	if err := tf.readAt(src, se, t.Offset*es); err != nil {
		return nil, err
	}
	gather(out, src, t.Size, t.Stride, int(es))
	return out, nil
}

// readAt reads len(b) bytes at byte offset off of storage se.
func (tf *TorchFile) readAt(b []byte, se storageEntry, off int64) error {
	if off < 0 || off > se.size || int64(len(b)) > se.size-off {
		return fmt.Errorf("read of %d bytes at %d outside storage entry %s (%d bytes)", len(b), off, se.entry, se.size)
	}
	n, err := tf.r.ReadAt(b, se.offset+off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %v", se.entry, err)
}

// gather copies the strided view of src (element k at Σ ik·stride[k]) into
// dst in row-major order; es is the element size in bytes.
func gather(dst, src []byte, size, stride []int64, es int) {
	rank := len(size)
	idx := make([]int64, rank)
	var pos int64
	for o := 0; o < len(dst); o += es {
		copy(dst[o:o+es], src[pos*int64(es):])
		for k := rank - 1; k >= 0; k-- {
			idx[k]++
			pos += stride[k]
			if idx[k] < size[k] {
				break
			}
			pos -= size[k] * stride[k]
			idx[k] = 0
		}
	}
}

// Close closes the file opened by OpenTorch.
func (tf *TorchFile) Close() error {
	if tf.closer == nil {
		return nil
	}
	c := tf.closer
	tf.closer = nil
	return c.Close()
}

// readEntry reads a whole archive entry of at most limit bytes.
func readEntry(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%d bytes (at most %d expected)", zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}
