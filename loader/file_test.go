package loader

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	s := newSample(true)
	path := filepath.Join(t.TempDir(), "model.d2")
	s.write(t, path)

	st, err := os.Stat(path)
	require.NoError(t, err)
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	fb, err := OpenBytes(raw, "model.d2")
	require.NoError(t, err)

	for _, f := range []*File{f, fb} {
		require.Equal(t, 1, f.Version())
		require.Equal(t, st.Size(), f.Size())
		require.Equal(t, s.meta, f.Meta())
		require.NoError(t, f.Verify())

		want := slices.Sorted(func(yield func(string) bool) {
			for k := range s.tensors {
				if !yield(k) {
					return
				}
			}
		})
		require.Equal(t, want, f.Names())
		for full, wt := range s.tensors {
			got, err := f.Tensor(full)
			require.NoError(t, err, full)
			require.Equal(t, full, got.Name)
			require.Equal(t, wt.DType, got.DType, full)
			require.Equal(t, wt.Shape, got.Shape, full)
			require.True(t, bytes.Equal(wt.Data, got.Data), full)
		}

		// Codec choice: incompressible data raw, zeros and text compressed.
		codec := map[string]string{}
		for i, info := range f.Index() {
			codec[info.Name] = info.Codec
			require.Equal(t, s.order[i], info.Name, "index is in write order")
			require.Zero(t, info.Offset%Alignment, info.Name)
		}
		require.Equal(t, CodecRaw, codec["prior/embedding_proj.weight"])
		require.Equal(t, CodecRaw, codec["prior/half"])
		require.Equal(t, CodecRaw, codec["prior/q8"])
		require.Equal(t, CodecRaw, codec["prior/big_random"])
		require.Equal(t, CodecRaw, codec["text_proj/mask"]) // below minCompress
		require.Equal(t, CodecZstd, codec["prior/zeros"])
		require.Equal(t, CodecZstd, codec["prior/big_zeros"])
		require.Equal(t, CodecZstd, codec["text_proj/position_ids"])

		comps := f.Components()
		require.Len(t, comps, 2)
		for i, c := range comps {
			require.Equal(t, s.components[i].Name, c.Name)
			require.Equal(t, s.components[i].Class, c.Class)
			require.JSONEq(t, string(s.components[i].Config), string(c.Config))
		}
		c, ok := f.Component("text_proj")
		require.True(t, ok)
		require.Equal(t, "UnCLIPTextProjModel", c.Class)
		_, ok = f.Component("decoder")
		require.False(t, ok)

		sub := f.Sub("text_proj")
		require.Equal(t, []string{"empty", "mask", "position_ids", "scalar"}, sub.Names())
		pt, err := sub.Tensor("position_ids")
		require.NoError(t, err)
		require.Equal(t, "position_ids", pt.Name)
		require.Equal(t, s.tensors["text_proj/position_ids"].Data, pt.Data)
		_, err = sub.Tensor("embedding_proj.weight")
		require.ErrorContains(t, err, `component "text_proj" has no tensor "embedding_proj.weight"`)
		require.Empty(t, f.Sub("decoder").Names())
		require.Empty(t, f.Sub("prio").Names(), "prefix must match a whole component name")

		blobCodec := map[string]string{}
		for _, b := range f.Blobs() {
			blobCodec[b.Name] = b.Codec
		}
		require.Equal(t, CodecZstd, blobCodec["tokenizer/merges.txt"])
		require.Equal(t, CodecRaw, blobCodec["tokenizer/random.bin"])
		for name, want := range s.blobs {
			got, err := f.Blob(name)
			require.NoError(t, err, name)
			require.True(t, bytes.Equal(want, got), name)
		}
		_, err = f.Blob("tokenizer/vocab.json")
		require.ErrorContains(t, err, `no blob "tokenizer/vocab.json"`)
		_, err = f.Tensor("prior/nope")
		require.ErrorContains(t, err, `no tensor "prior/nope"`)
	}
	require.NoError(t, fb.Close())
	_, err = fb.Tensor("prior/zeros")
	require.ErrorContains(t, err, "closed")
}

func TestZeroCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.d2")
	newSample(false).write(t, path)
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	tn, err := f.Tensor("prior/embedding_proj.weight")
	require.NoError(t, err)
	require.True(t, within(tn.Data, f.data), "raw tensor must alias the mapping")
	require.Equal(t, len(tn.Data), cap(tn.Data), "capacity is clipped so append cannot write into the map")
	tz, err := f.Tensor("prior/zeros")
	require.NoError(t, err)
	require.False(t, within(tz.Data, f.data), "a zstd tensor is decoded into fresh memory")
}

// fileIndex decodes the index of a valid file.
func fileIndex(t *testing.T, file []byte) (head []byte, idx wireIndex) {
	t.Helper()
	off := binary.LittleEndian.Uint64(file[len(file)-TrailerSize:])
	require.NoError(t, json.Unmarshal(file[off:len(file)-TrailerSize], &idx))
	return file[:off], idx
}

// withIndex returns head followed by the index bytes js and a valid trailer.
func withIndex(head, js []byte) []byte {
	out := append(slices.Clone(head), js...)
	var tr [TrailerSize]byte
	binary.LittleEndian.PutUint64(tr[0:], uint64(len(head)))
	binary.LittleEndian.PutUint64(tr[8:], uint64(len(js)))
	binary.LittleEndian.PutUint32(tr[16:], checksum(js))
	copy(tr[24:], Magic)
	return append(out, tr[:]...)
}

// rewrite returns file with its index changed by edit, with a valid trailer.
func rewrite(t *testing.T, file []byte, edit func(idx *wireIndex)) []byte {
	t.Helper()
	head, idx := fileIndex(t, file)
	edit(&idx)
	js, err := json.Marshal(idx)
	require.NoError(t, err)
	return withIndex(head, js)
}

func tensorEntry(idx *wireIndex, name string) *wireTensor {
	for i := range idx.Tensors {
		if idx.Tensors[i].Name == name {
			return &idx.Tensors[i]
		}
	}
	panic("no tensor " + name)
}

func TestOpenErrors(t *testing.T) {
	good := sampleBytes(t, false)
	_, err := OpenBytes(good, "model.d2")
	require.NoError(t, err)
	_, idx0 := fileIndex(t, good)
	idxOff := int64(binary.LittleEndian.Uint64(good[len(good)-TrailerSize:]))
	size := int64(len(good))

	patch := func(at int, b ...byte) []byte {
		out := slices.Clone(good)
		copy(out[at:], b)
		return out
	}
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	tr := len(good) - TrailerSize
	edit := func(name string, fn func(*wireTensor)) []byte {
		return rewrite(t, good, func(idx *wireIndex) { fn(tensorEntry(idx, name)) })
	}
	head, _ := fileIndex(t, good)

	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "loader: model.d2: file of 0 bytes too short for a dalle2 weight file"},
		{"wrong magic", patch(0, 'G', 'G', 'U', 'F'), `not a dalle2 weight file (starts with "GGUFE2W\x00"`},
		{"unsupported version", patch(8, u32(2)...), "format version 2 not supported (this build reads version 1)"},
		{"version 0", patch(8, u32(0)...), "format version 0 not supported"},
		{"flags", patch(12, u32(4)...), "unsupported flags 0x4"},
		{"trailer magic", patch(len(good)-1, 'X'), "trailer magic missing"},
		{"reserved trailer word", patch(tr+20, 1), "reserved trailer word is 0x1"},
		{"index length beyond file", patch(tr+8, u64(uint64(size))...), fmt.Sprintf("index length %d beyond file size %d", size, size)},
		{"index length above cap", patch(tr+8, u64(MaxIndexSize+1)...), "index length 67108865 exceeds the 67108864-byte limit"},
		{"index offset huge", patch(tr, u64(1<<63+5)...), "index at offset 9223372036854775813"},
		{"index offset wraps", patch(tr, u64(^uint64(0)-3)...), "does not end at the trailer"},
		{"index offset in preamble", patch(tr, u64(8)...), "index at offset 8"},
		{"index offset shifted", patch(tr, u64(uint64(idxOff+1))...), "does not end at the trailer"},
		{"index checksum", patch(int(idxOff)+3, good[idxOff+3]^0x20), "index checksum mismatch"},
		{"index not JSON", withIndex(head, []byte("{not json")), "loader: model.d2: index: invalid character"},
		{"index version", rewrite(t, good, func(i *wireIndex) { i.Version = 3 }), "index version 3 differs from header version 1"},
		{"unknown dtype", edit("prior/half", func(e *wireTensor) { e.DType = "F8" }), `tensor "prior/half": unknown dtype "F8"`},
		{"numel overflow", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{1 << 32, 1 << 32} }), `tensor "prior/half": shape [4294967296 4294967296]: element count overflows int64`},
		{"bytes overflow", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{1 << 62} }), `tensor "prior/half": shape [4611686018427387904]: 4611686018427387904 elements of 2 bytes overflow`},
		{"negative dim", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{-3, -70} }), `tensor "prior/half": shape [-3 -70]: negative dimension -3`},
		{"raw_size mismatch", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{3, 5, 6} }), `tensor "prior/half": raw_size 210, but F16 [3 5 6] needs 180 bytes`},
		{"offset beyond file", edit("prior/half", func(e *wireTensor) { e.Offset = 64 * 1000 }), `tensor "prior/half": offset 64000 + size 210 beyond file size `},
		{"offset overflow", edit("prior/half", func(e *wireTensor) { e.Offset = 1<<63 - 64 }), `tensor "prior/half": offset 9223372036854775744 + size 210 beyond file size`},
		{"size beyond file", edit("prior/half", func(e *wireTensor) { e.Size = 1 << 62; e.Codec = CodecZstd }), fmt.Sprintf(`tensor "prior/half": offset %d + size 4611686018427387904 beyond file size`, tensorEntry(&idx0, "prior/half").Offset)},
		{"offset in index", edit("prior/half", func(e *wireTensor) { e.Offset = idxOff &^ 63 }), fmt.Sprintf("overlaps the index at offset %d", idxOff)},
		{"offset in preamble", edit("prior/half", func(e *wireTensor) { e.Offset = 0 }), `tensor "prior/half": offset 0 inside the 16-byte preamble`},
		{"negative offset", edit("prior/half", func(e *wireTensor) { e.Offset = -64 }), `tensor "prior/half": negative offset -64`},
		{"misaligned raw", edit("prior/half", func(e *wireTensor) { e.Offset += 4 }), "not 64-byte aligned"},
		{"raw size mismatch", edit("prior/half", func(e *wireTensor) { e.Size-- }), `tensor "prior/half": raw region of 209 bytes, raw_size 210`},
		{"unknown codec", edit("prior/half", func(e *wireTensor) { e.Codec = "lz4" }), `tensor "prior/half": unknown codec "lz4"`},
		{"empty zstd", edit("prior/zeros", func(e *wireTensor) { e.Size = 0 }), `tensor "prior/zeros": empty zstd region`},
		{"zstd ratio", edit("prior/zeros", func(e *wireTensor) { e.Shape = []int64{1 << 40}; e.RawSize = 4 << 40 }), "more than 32768 times"},
		{"empty name", edit("prior/half", func(e *wireTensor) { e.Name = "" }), "tensor with empty name"},
		{"duplicate tensor", edit("prior/half", func(e *wireTensor) { e.Name = "prior/bhalf" }), `duplicate tensor "prior/bhalf"`},
		{"duplicate component", rewrite(t, good, func(i *wireIndex) { i.Components[1].Name = "prior" }), `duplicate component "prior"`},
		{"blob outside", rewrite(t, good, func(i *wireIndex) { i.Blobs[0].Offset = size }), fmt.Sprintf(`blob "tokenizer/empty": offset %d + size 0 overlaps the index`, size)},
		{"duplicate blob", rewrite(t, good, func(i *wireIndex) { i.Blobs[1].Name = i.Blobs[0].Name }), `duplicate blob "tokenizer/empty"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenBytes(c.file, "model.d2")
			require.Error(t, err)
			require.ErrorContains(t, err, c.want)
			require.True(t, strings.HasPrefix(err.Error(), "loader: model.d2: "), err.Error())
		})
	}
}

func TestTruncated(t *testing.T) {
	good := sampleBytes(t, false)
	for n := range len(good) {
		_, err := OpenBytes(good[:n], "cut.d2")
		require.Error(t, err, "length %d", n)
		if n < PreambleSize+TrailerSize {
			require.ErrorContains(t, err, fmt.Sprintf("file of %d bytes too short", n))
		} else {
			require.ErrorContains(t, err, "loader: cut.d2: trailer magic missing: file truncated")
		}
	}
	// Real file on disk.
	path := filepath.Join(t.TempDir(), "cut.d2")
	require.NoError(t, os.WriteFile(path, good[:len(good)/2], 0o644))
	_, err := Open(path)
	require.ErrorContains(t, err, "trailer magic missing")
	_, err = Open(filepath.Join(t.TempDir(), "missing.d2"))
	require.ErrorContains(t, err, "missing.d2")
	_, err = Open(t.TempDir())
	require.ErrorContains(t, err, "not a regular file")
}

func TestCorruptRawTensor(t *testing.T) {
	good := sampleBytes(t, false)
	f, err := OpenBytes(good, "x")
	require.NoError(t, err)
	var info TensorInfo
	for _, i := range f.Index() {
		if i.Name == "prior/embedding_proj.weight" {
			info = i
		}
	}
	require.Equal(t, CodecRaw, info.Codec)
	bad := slices.Clone(good)
	bad[info.Offset+info.Size/2] ^= 1
	f, err = OpenBytes(bad, "model.d2")
	require.NoError(t, err, "data is checked on read, not on open")
	_, err = f.Tensor(info.Name)
	require.ErrorContains(t, err, `loader: model.d2: tensor "prior/embedding_proj.weight": checksum mismatch`)
	_, err = f.Sub("prior").Tensor("embedding_proj.weight")
	require.ErrorContains(t, err, "checksum mismatch")
	err = f.Verify()
	require.ErrorContains(t, err, `tensor "prior/embedding_proj.weight": checksum mismatch`)
	require.Equal(t, 1, strings.Count(err.Error(), "checksum mismatch"), "only the damaged tensor is reported")
	_, err = f.Tensor("prior/half")
	require.NoError(t, err, "other tensors stay readable")
}

func TestCorruptZstd(t *testing.T) {
	good := sampleBytes(t, false)
	f, err := OpenBytes(good, "x")
	require.NoError(t, err)
	want, err := f.Tensor("text_proj/position_ids")
	require.NoError(t, err)
	wantData := slices.Clone(want.Data)
	var info TensorInfo
	for _, i := range f.Index() {
		if i.Name == "text_proj/position_ids" {
			info = i
		}
	}
	require.Equal(t, CodecZstd, info.Codec)

	// A flip in the middle of the compressed payload must be caught.
	bad := slices.Clone(good)
	bad[info.Offset+info.Size/2] ^= 0x10
	fb, err := OpenBytes(bad, "model.d2")
	require.NoError(t, err)
	_, err = fb.Tensor(info.Name)
	require.ErrorContains(t, err, `loader: model.d2: tensor "text_proj/position_ids": `)
	require.ErrorContains(t, fb.Verify(), `tensor "text_proj/position_ids"`)

	// Any flip anywhere in the region: an error naming the tensor, or (for
	// bits zstd ignores) the exact original data, never wrong data.
	errs := 0
	for i := info.Offset; i < info.Offset+info.Size; i++ {
		for _, bit := range []byte{1, 0x80} {
			bad := slices.Clone(good)
			bad[i] ^= bit
			fb, err := OpenBytes(bad, "model.d2")
			require.NoError(t, err)
			got, err := fb.Tensor(info.Name)
			if err != nil {
				require.ErrorContains(t, err, `tensor "text_proj/position_ids"`)
				errs++
				continue
			}
			require.Equal(t, wantData, got.Data, "flip at %d bit %#x", i, bit)
		}
	}
	require.Greater(t, errs, int(info.Size), "most flips must be detected")
}

func TestZstdFrameClaimsTooMuch(t *testing.T) {
	good := sampleBytes(t, false)
	// The blob's frame declares its true size; shrink raw_size below it.
	bad := rewrite(t, good, func(idx *wireIndex) {
		for i := range idx.Blobs {
			if idx.Blobs[i].Name == "tokenizer/merges.txt" {
				idx.Blobs[i].RawSize = 100
			}
		}
	})
	f, err := OpenBytes(bad, "model.d2")
	require.NoError(t, err)
	_, err = f.Blob("tokenizer/merges.txt")
	require.ErrorContains(t, err, fmt.Sprintf(`loader: model.d2: blob "tokenizer/merges.txt": zstd frame claims %d bytes, more than raw_size 100 (decompression bomb?)`,
		len(newSample(false).blobs["tokenizer/merges.txt"])))

	// Same for a tensor, with a shape consistent with the smaller raw_size.
	bad = rewrite(t, good, func(idx *wireIndex) {
		e := tensorEntry(idx, "prior/zeros")
		e.Shape = []int64{10}
		e.RawSize = 40
	})
	f, err = OpenBytes(bad, "model.d2")
	require.NoError(t, err)
	_, err = f.Tensor("prior/zeros")
	require.ErrorContains(t, err, `tensor "prior/zeros": zstd frame claims 16384 bytes, more than raw_size 40`)

	// And a frame that claims less than raw_size.
	bad = rewrite(t, good, func(idx *wireIndex) {
		e := tensorEntry(idx, "prior/zeros")
		e.Shape = []int64{8192}
		e.RawSize = 32768
	})
	f, err = OpenBytes(bad, "model.d2")
	require.NoError(t, err)
	_, err = f.Tensor("prior/zeros")
	require.ErrorContains(t, err, "zstd frame claims 16384 bytes, raw_size is 32768")
}

func TestConcurrentReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.d2")
	s := newSample(false)
	s.write(t, path)
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for _, name := range f.Names() {
				tn, err := f.Tensor(name)
				if err == nil && !bytes.Equal(tn.Data, s.tensors[name].Data) {
					err = fmt.Errorf("%s: wrong data", name)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- f.Verify()
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
}
