package loader

// Hostile-input limits: every size a file claims is checked before memory
// is taken. Each case asserts the error and bounds what the failed call
// allocated (runtime.MemStats.TotalAlloc delta), so a check that moved after
// an allocation would fail here.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// allocated returns the bytes allocated while fn ran. Tests in this package
// do not run in parallel, so other goroutines add at most a few KiB.
func allocated(fn func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// smallAlloc bounds the allocations of a call that must fail early: error
// strings, a File header, a decoded index of a few hundred bytes. It is 40
// times less than the smallest absurd claim tested (8 MiB).
const smallAlloc = 200 << 10

// d2With assembles a weight file whose data area holds stored at offset 64
// and whose index is idx (tensor and blob offsets are the caller's).
func d2With(stored []byte, idx wireIndex) []byte {
	head := make([]byte, Alignment, Alignment+len(stored)+Alignment)
	copy(head, Magic)
	binary.LittleEndian.PutUint32(head[8:], Version)
	head = append(head, stored...)
	for len(head)%Alignment != 0 {
		head = append(head, 0)
	}
	idx.Version = Version
	js, err := json.Marshal(idx)
	if err != nil {
		panic(err)
	}
	return withIndex(head, js)
}

// zstdFrameHeader returns a frame header: with fcs >= 0 a single-segment
// frame declaring fcs bytes, else a frame with a 1 MiB window and no
// content size.
func zstdFrameHeader(fcs int64) []byte {
	h := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if fcs < 0 {
		return append(h, 0x00, 10<<3) // no FCS, Window_Log 10+10
	}
	h = append(h, 0xe0) // FCS field 8 bytes, single segment
	return binary.LittleEndian.AppendUint64(h, uint64(fcs))
}

// zstdRLEBlocks appends n RLE blocks of size bytes each (value 0).
func zstdRLEBlocks(b []byte, n, size int) []byte {
	for i := range n {
		bh := uint32(size)<<3 | 1<<1
		if i == n-1 {
			bh |= 1
		}
		b = append(b, byte(bh), byte(bh>>8), byte(bh>>16), 0)
	}
	return b
}

func TestRobustSafetensorsLimits(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	cases := []struct {
		name, want string
		file       []byte
	}{
		{"header length 2^64-1", "exceeds the 104857600-byte limit", append(u64(^uint64(0)), "{}"...)},
		{"header length at the limit, file of 1 KiB", "header length 104857600 beyond file size 1032", append(u64(MaxSafetensorsHeader), make([]byte, 1024)...)},
		{"shape product overflows", "element count overflows int64", stFile(`{"w":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,4]}}`, 4)},
		{"bytes overflow", "elements of 8 bytes overflow", stFile(`{"w":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,8]}}`, 8)},
		{"1 TiB tensor in a 4-byte body", "data_offsets [0, 1099511627776] beyond data size 4", stFile(`{"w":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}}`, 4)},
		{"offset far beyond the body", "beyond data size 4", stFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}}`, 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = ParseSafetensors(c.file, "hostile.safetensors") })
			require.ErrorContains(t, err, c.want)
			require.True(t, strings.HasPrefix(err.Error(), "loader: hostile.safetensors: "), err.Error())
			require.Less(t, n, uint64(smallAlloc+4*len(c.file)), "allocated %d bytes before refusing", n)
		})
	}

	// Tensor count: bounded by the header, so memory stays proportional
	// to the input. 20000 entries, all valid (zero-size tensors).
	var h strings.Builder
	h.WriteString("{")
	for i := range 20000 {
		if i > 0 {
			h.WriteString(",")
		}
		fmt.Fprintf(&h, `"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`, i)
	}
	h.WriteString("}")
	file := stFile(h.String(), 0)
	var s *Safetensors
	var err error
	n := allocated(func() { s, err = ParseSafetensors(file, "many.safetensors") })
	require.NoError(t, err)
	require.Len(t, s.Names(), 20000)
	// encoding/json keeps each entry as a RawMessage copy, then map, Tensor
	// and shape overheads: measured 14.5 bytes allocated per header byte.
	// 32 leaves room for other Go versions' map growth while catching
	// anything quadratic or any per-tensor buffer.
	require.Less(t, n, uint64(32*len(file)), "allocated %d bytes for a %d-byte file", n, len(file))
}

func TestRobustWeightFileLimits(t *testing.T) {
	good := sampleBytes(t, false)
	tr := len(good) - TrailerSize
	patch := func(at int, v uint64) []byte {
		out := slices.Clone(good)
		binary.LittleEndian.PutUint64(out[at:], v)
		return out
	}
	edit := func(name string, fn func(*wireTensor)) []byte {
		return rewrite(t, good, func(idx *wireIndex) { fn(tensorEntry(idx, name)) })
	}
	cases := []struct {
		name, want string
		file       []byte
	}{
		{"index length 2^64-1", "exceeds the 67108864-byte limit", patch(tr+8, ^uint64(0))},
		{"index length at the limit, beyond the file", fmt.Sprintf("index length %d beyond file size %d", MaxIndexSize, len(good)), patch(tr+8, MaxIndexSize)},
		{"shape product overflows", "element count overflows int64", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{1 << 16, 1 << 16, 1 << 16, 1 << 16} })},
		{"bytes overflow", "overflow int", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{1 << 62}; e.RawSize = 0 })},
		{"1 TiB raw tensor", "beyond file size", edit("prior/half", func(e *wireTensor) { e.Shape = []int64{1 << 39}; e.RawSize = 1 << 40; e.Size = 1 << 40 })},
		{"1 TiB zstd claim in 96 bytes", "more than 32768 times the", edit("prior/embedding_proj.bias", func(e *wireTensor) { e.Shape = []int64{1 << 38}; e.RawSize = 1 << 40 })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = OpenBytes(c.file, "hostile.d2") })
			require.ErrorContains(t, err, c.want)
			require.True(t, strings.HasPrefix(err.Error(), "loader: hostile.d2: "), err.Error())
			require.Less(t, n, uint64(smallAlloc+4*len(c.file)), "allocated %d bytes before refusing", n)
		})
	}

	// Tensor count: bounded by the index size. 20000 valid entries sharing
	// one empty region.
	idx := wireIndex{Components: []Component{{Name: "c"}}}
	for i := range 20000 {
		idx.Tensors = append(idx.Tensors, wireTensor{Name: fmt.Sprintf("c/t%d", i), DType: "F32", Shape: []int64{0}, Codec: CodecRaw, Offset: Alignment, CRC32C: checksum(nil)})
	}
	file := d2With(nil, idx)
	var f *File
	var err error
	n := allocated(func() { f, err = OpenBytes(file, "many.d2") })
	require.NoError(t, err)
	require.Len(t, f.Names(), 20000)
	require.NoError(t, f.Verify())
	// Measured 11.2 bytes allocated per index byte (decoded entries, name
	// maps, the sorted name list); 32 keeps a margin while catching
	// anything quadratic.
	require.Less(t, n, uint64(32*len(file)), "allocated %d bytes for a %d-byte file", n, len(file))
}

// TestRobustZstdBomb: frames that claim, or would expand to, more than the
// index says are refused before the claimed size is allocated.
func TestRobustZstdBomb(t *testing.T) {
	const rawSize = 8 << 20 // the claim: 8 MiB
	type region struct {
		name   string
		stored []byte
		want   string
		limit  uint64 // allocation bound for the failed read
	}
	garbage := make([]byte, 300)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	compressedBlock := func(b []byte) []byte {
		bh := uint32(len(garbage))<<3 | 2<<1 | 1
		return append(append(b, byte(bh), byte(bh>>8), byte(bh>>16)), garbage...)
	}
	// A frame of streamed zeros: compressed blocks, no content size.
	var streamed bytes.Buffer
	enc, err := zstd.NewWriter(&streamed, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	_, err = enc.Write(make([]byte, 64<<20))
	require.NoError(t, err)
	require.NoError(t, enc.Close())
	var sh zstd.Header
	require.NoError(t, sh.Decode(streamed.Bytes()))
	require.False(t, sh.HasFCS, "a streamed frame does not declare its size")
	// Regions must hold at least rawSize/MaxZstdRatio = 256 bytes to pass
	// Open's ratio check and reach the frame checks.
	cases := []region{
		{
			// The frame declares 1 TiB: refused from its header.
			name:   "frame content size 1 TiB",
			stored: zstdRLEBlocks(zstdFrameHeader(1<<40), 80, 100),
			want:   "zstd frame claims 1099511627776 bytes, more than raw_size 8388608 (decompression bomb?)",
			limit:  smallAlloc,
		},
		{
			// Header and index agree on 8 MiB, but one compressed block
			// can make at most 128 KiB: refused without allocating 8 MiB.
			name:   "claim the blocks cannot produce",
			stored: compressedBlock(zstdFrameHeader(rawSize)),
			want:   "zstd data can decode to at most 131072 bytes, raw_size is 8388608 (decompression bomb?)",
			limit:  smallAlloc,
		},
		{
			// No content size; RLE blocks make 64 MiB from 2 KiB: the
			// block headers say so, refused before decoding.
			name:   "RLE bomb without content size",
			stored: zstdRLEBlocks(zstdFrameHeader(-1), 512, 128<<10),
			want:   "zstd data decodes to at least 67108864 bytes, more than raw_size 8388608 (decompression bomb?)",
			limit:  smallAlloc,
		},
		{
			// Compressed blocks' output is known only by decoding them:
			// decoding stops one block (<= 128 KiB) past raw_size. The
			// zstd package checks its bound after each block, so the block
			// that crosses it regrows the raw_size buffer (Go's append
			// rule: x1.25 for large slices): measured 2.29 × raw_size in
			// all. 3 × raw_size bounds that, far below the 8 × raw_size
			// (64 MiB) the data really expands to.
			name:   "compressed bomb without content size",
			stored: streamed.Bytes(),
			want:   "zstd: ",
			limit:  3 * rawSize,
		},
		{
			name:   "truncated block",
			stored: append(zstdFrameHeader(rawSize), append([]byte{0xf9, 0x1f, 0}, garbage...)...), // raw block of 1023 bytes, 300 present
			want:   "zstd block runs past the region (truncated frame)",
			limit:  smallAlloc,
		},
		{
			name:   "reserved block type",
			stored: append(zstdFrameHeader(rawSize), append([]byte{7, 0, 0}, garbage...)...),
			want:   "zstd block of the reserved type 3 (corrupt data)",
			limit:  smallAlloc,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := d2With(c.stored, wireIndex{
				Components: []Component{{Name: "c"}},
				Tensors: []wireTensor{{Name: "c/bomb", DType: "U8", Shape: []int64{rawSize}, Codec: CodecZstd,
					Offset: Alignment, Size: int64(len(c.stored)), RawSize: rawSize}},
				Blobs: []wireBlob{{Name: "bomb", Codec: CodecZstd, Offset: Alignment, Size: int64(len(c.stored)), RawSize: rawSize}},
			})
			f, err := OpenBytes(file, "bomb.d2")
			require.NoError(t, err, "the index is consistent: the frame is checked when read")
			n := allocated(func() { _, err = f.Tensor("c/bomb") })
			require.ErrorContains(t, err, `loader: bomb.d2: tensor "c/bomb": `+c.want)
			require.Less(t, n, c.limit, "allocated %d bytes before refusing", n)
			n = allocated(func() { _, err = f.Blob("bomb") })
			require.ErrorContains(t, err, `loader: bomb.d2: blob "bomb": `+c.want)
			require.Less(t, n, c.limit, "allocated %d bytes before refusing", n)
			require.ErrorContains(t, f.Verify(), c.want)
		})
	}

	// A true RLE bomb whose size is the claim is data like any other (an
	// all-zero tensor): it decodes.
	stored := zstdRLEBlocks(zstdFrameHeader(rawSize), 64, 128<<10)
	file := d2With(stored, wireIndex{
		Components: []Component{{Name: "c"}},
		Tensors: []wireTensor{{Name: "c/zeros", DType: "U8", Shape: []int64{rawSize}, Codec: CodecZstd,
			Offset: Alignment, Size: int64(len(stored)), RawSize: rawSize, CRC32C: checksum(make([]byte, rawSize))}},
	})
	f, err := OpenBytes(file, "zeros.d2")
	require.NoError(t, err)
	z, err := f.Tensor("c/zeros")
	require.NoError(t, err)
	require.Len(t, z.Data, rawSize)
}

// TestRobustStoredChecksum: zstd regions carry the checksum of their
// compressed bytes, so damage is caught before decoding, even damage that
// decodes to the same bytes; files without it (written before) still read.
func TestRobustStoredChecksum(t *testing.T) {
	good := sampleBytes(t, false)
	f, err := OpenBytes(good, "x")
	require.NoError(t, err)
	var zstdRegions int
	for _, i := range f.Index() {
		if i.Codec == CodecZstd {
			zstdRegions++
			require.NotNil(t, i.stored, "tensor %q: the writer records stored_crc32c", i.Name)
		}
	}
	require.Positive(t, zstdRegions)
	var info TensorInfo
	for _, i := range f.Index() {
		if i.Name == "prior/zeros" {
			info = i
		}
	}
	require.Equal(t, CodecZstd, info.Codec)
	// Byte 4 is the frame header descriptor: flipping its unused bit 4
	// decodes to identical data, which only the stored checksum notices.
	bad := slices.Clone(good)
	bad[info.Offset+4] ^= 0x10
	fb, err := OpenBytes(bad, "model.d2")
	require.NoError(t, err)
	_, err = fb.Tensor(info.Name)
	require.ErrorContains(t, err, fmt.Sprintf(`loader: model.d2: tensor "prior/zeros": checksum of the %d compressed bytes at offset %d mismatch`, info.Size, info.Offset))

	// Without stored_crc32c (an older file) the same flip goes unnoticed:
	// the decoded bytes are right, which the data checksum confirms.
	old := rewrite(t, bad, func(idx *wireIndex) {
		for i := range idx.Tensors {
			idx.Tensors[i].StoredCRC32C = nil
		}
	})
	fo, err := OpenBytes(old, "old.d2")
	require.NoError(t, err)
	z, err := fo.Tensor(info.Name)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 64*64*4), z.Data)

	// The committed seed file predates the field: still readable, verified.
	seed, err := os.ReadFile(seedD2)
	require.NoError(t, err)
	fs, err := OpenBytes(seed, seedD2)
	require.NoError(t, err)
	require.NoError(t, fs.Verify())
}

// TestRobustPadding: Verify checks the zero padding between regions, so a
// flipped byte there is detected too.
func TestRobustPadding(t *testing.T) {
	good := sampleBytes(t, false)
	f, err := OpenBytes(good, "x")
	require.NoError(t, err)
	require.NoError(t, f.Verify())
	// Byte 20 lies between the preamble and the first region (offset 64).
	for _, at := range []int{PreambleSize, 20, Alignment - 1} {
		bad := slices.Clone(good)
		bad[at] = 0x5a
		fb, err := OpenBytes(bad, "model.d2")
		require.NoError(t, err, "padding is checked by Verify, not Open")
		require.ErrorContains(t, fb.Verify(), fmt.Sprintf("loader: model.d2: padding byte at offset %d is 0x5a, not 0: file corrupt", at))
	}
	// The gap before the index.
	idxOff := int(binary.LittleEndian.Uint64(good[len(good)-TrailerSize:]))
	var end int64
	for _, i := range f.Index() {
		end = max(end, i.Offset+i.Size)
	}
	for _, b := range f.Blobs() {
		end = max(end, b.Offset+b.Size)
	}
	if int(end) < idxOff {
		bad := slices.Clone(good)
		bad[idxOff-1] = 1
		fb, err := OpenBytes(bad, "model.d2")
		require.NoError(t, err)
		require.ErrorContains(t, fb.Verify(), fmt.Sprintf("padding byte at offset %d", idxOff-1))
	}
	require.NoError(t, f.Close())
	require.ErrorContains(t, f.Verify(), "file is closed")
}
