package loader

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDTypeBytes(t *testing.T) {
	for _, c := range []struct {
		dt    DType
		shape []int
		want  int
		err   string
	}{
		{F32, []int{2, 3}, 24, ""},
		{F16, []int{7}, 14, ""},
		{F64, []int{}, 8, ""},
		{Bool, []int{0, 5}, 0, ""},
		{Q8_0, []int{32}, 34, ""},                  // a vector is one row
		{Q8_0, []int{4, 64}, 4 * 2 * 34, ""},       // Linear [out, in]
		{Q8_0, []int{8, 32, 3, 3}, 8 * 9 * 34, ""}, // conv: row = Cin·KH·KW = 288
		{Q8_0, []int{3, 32, 1, 1}, 3 * 34, ""},
		{Q8_0, []int{0, 64}, 0, ""},
		{Q8_0, []int{5, 0}, 0, ""},
		{Q8_0, []int{0, 5}, 0, "Q8_0 row length 5 is not a multiple of 32"},
		{Q8_0, []int{64, 33}, 0, "row length 33 is not a multiple of 32"},
		{Q8_0, []int{48}, 0, "row length 48 is not a multiple of 32"},
		{Q8_0, []int{32, 3, 3, 3}, 0, "row length 27 is not a multiple of 32"}, // an RGB conv_in
		{Q8_0, []int{}, 0, "a Q8_0 tensor needs at least one dimension"},
		{Q8_0, []int{-32}, 0, "negative dimension -32"},
		{Q8_0, []int{1 << 40, 1 << 40}, 0, "element count overflows int64"},
		// 2^63-32 elements fit int64; their (2^58-1)·34 bytes do not.
		{Q8_0, []int{1<<58 - 1, 32}, 0, "9223372036854775776 elements of Q8_0 overflow int"},
		{F32, []int{1 << 62}, 0, "elements of 4 bytes overflow int"},
		{Invalid, []int{1}, 0, "invalid dtype invalid"},
		{DType(200), []int{1}, 0, "invalid dtype DType(200)"},
	} {
		t.Run(fmt.Sprint(c.dt, c.shape), func(t *testing.T) {
			n, err := c.dt.Bytes(c.shape)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, n)
		})
	}
	require.Zero(t, Q8_0.Size(), "Q8_0 has no integer element size")
	require.Equal(t, "Q8_0", Q8_0.String())
	dt, err := ParseDType("Q8_0")
	require.NoError(t, err)
	require.Equal(t, Q8_0, dt)
	_, err = ParseDType("q8_0")
	require.ErrorContains(t, err, `unknown dtype "q8_0"`, "names are case-sensitive, like safetensors'")
}

// TestQ8RoundTrip writes Q8_0 tensors and reads them back zero-copy, and
// checks Writer.Stored against the file's index.
func TestQ8RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q8.d2")
	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddComponent(Component{Name: "decoder"}))
	data := make([]byte, 4*9*q8BlockBytes)
	for i := range data {
		data[i] = byte(i * 13)
	}
	require.NoError(t, w.AddTensor("decoder", Tensor{Name: "conv.weight", DType: Q8_0, Shape: []int{4, 32, 3, 3}, Data: data}))
	zeros := make([]byte, 16*4*q8BlockBytes)
	require.NoError(t, w.AddTensor("decoder", Tensor{Name: "zeros.weight", DType: Q8_0, Shape: []int{16, 128}, Data: zeros}))
	info, ok := w.Stored("decoder/conv.weight")
	require.True(t, ok)
	require.Equal(t, Q8_0, info.DType)
	require.Equal(t, []int{4, 32, 3, 3}, info.Shape)
	require.Equal(t, int64(len(data)), info.RawSize)
	zi, ok := w.Stored("decoder/zeros.weight")
	require.True(t, ok)
	require.Equal(t, CodecZstd, zi.Codec, "all-zero blocks compress")
	require.Less(t, zi.Size, zi.RawSize)
	_, ok = w.Stored("decoder/nope")
	require.False(t, ok)
	require.NoError(t, w.Commit())

	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Verify())
	idx := f.Index()
	require.Len(t, idx, 2)
	require.Equal(t, info, idx[0], "Stored is the index entry")
	require.Equal(t, zi, idx[1])
	got, err := f.Sub("decoder").Tensor("conv.weight")
	require.NoError(t, err)
	require.Equal(t, Q8_0, got.DType)
	require.Equal(t, []int{4, 32, 3, 3}, got.Shape)
	require.Equal(t, data, got.Data)
	z, err := f.Tensor("decoder/zeros.weight")
	require.NoError(t, err)
	require.Equal(t, zeros, z.Data)
}

// TestRobustQ8Index: Q8_0 entries whose shape and sizes disagree are
// refused at Open, naming the tensor, before anything is allocated.
func TestRobustQ8Index(t *testing.T) {
	stored := make([]byte, 2*q8BlockBytes)
	entry := func(shape []int64, raw int64) []byte {
		return d2With(stored, wireIndex{
			Components: []Component{{Name: "c"}},
			Tensors: []wireTensor{{Name: "c/w", DType: "Q8_0", Shape: shape, Codec: CodecRaw,
				Offset: Alignment, Size: raw, RawSize: raw, CRC32C: checksum(stored[:min(raw, int64(len(stored)))])}},
		})
	}
	good := entry([]int64{2, 32}, 68)
	f, err := OpenBytes(good, "good.d2")
	require.NoError(t, err)
	require.NoError(t, f.Verify())

	for _, c := range []struct {
		name, want string
		file       []byte
	}{
		{"raw_size of numel bytes", `tensor "c/w": raw_size 64, but Q8_0 [2 32] needs 68 bytes`, entry([]int64{2, 32}, 64)},
		{"row length not whole blocks", `tensor "c/w": shape [4 17]: Q8_0 row length 17 is not a multiple of 32`, entry([]int64{4, 17}, 68)},
		{"vector not whole blocks", `tensor "c/w": shape [64 1]: Q8_0 row length 1 is not a multiple of 32`, entry([]int64{64, 1}, 68)},
		{"scalar", `tensor "c/w": shape []: a Q8_0 tensor needs at least one dimension`, entry([]int64{}, 68)},
		{"element count overflows", `tensor "c/w": shape [4294967296 4294967296]: element count overflows int64`, entry([]int64{1 << 32, 1 << 32}, 68)},
		{"bytes overflow", `tensor "c/w": shape [288230376151711743 32]: 9223372036854775776 elements of Q8_0 overflow int`, entry([]int64{1<<58 - 1, 32}, 68)},
		{"1 TiB claim", `tensor "c/w": offset 64 + size 1168231104512 beyond file size`, entry([]int64{1 << 15, 1 << 20, 1 << 5}, 1<<35*34)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = OpenBytes(c.file, "hostile.d2") })
			require.ErrorContains(t, err, c.want)
			require.True(t, strings.HasPrefix(err.Error(), "loader: hostile.d2: "), err.Error())
			require.Less(t, n, uint64(smallAlloc+4*len(c.file)), "allocated %d bytes before refusing", n)
		})
	}
}
