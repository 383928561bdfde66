package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func TestSafetensorsGolden(t *testing.T) {
	path := filepath.Join(goldenDir(t), "tiny-unclip", "prior", "diffusion_pytorch_model.safetensors")
	s, err := OpenSafetensors(path)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"format": "pt"}, s.Metadata())
	names := s.Names()
	require.Len(t, names, 34)
	require.Equal(t, "clip_mean", names[0])
	for name, shape := range map[string][]int{
		"clip_mean":             {1, 32},
		"clip_std":              {1, 32},
		"embedding_proj.bias":   {24},
		"embedding_proj.weight": {24, 32},
	} {
		tn, err := s.Tensor(name)
		require.NoError(t, err)
		require.Equal(t, F32, tn.DType)
		require.Equal(t, shape, tn.Shape, name)
	}
	var total int
	for _, n := range names {
		tn, err := s.Tensor(n)
		require.NoError(t, err)
		require.Equal(t, tn.Numel()*tn.DType.Size(), len(tn.Data), n)
		require.True(t, within(tn.Data, s.data), "zero-copy")
		total += len(tn.Data)
	}
	st, err := os.Stat(path)
	require.NoError(t, err)
	hdr := binary.LittleEndian.Uint64(s.data)
	require.Equal(t, st.Size(), int64(8+int(hdr)+total), "tensors cover the data region exactly")

	// Rewrite all of it and read it back.
	var ts []Tensor
	for _, n := range names {
		tn, _ := s.Tensor(n)
		ts = append(ts, tn)
	}
	out := filepath.Join(t.TempDir(), "copy.safetensors")
	require.NoError(t, WriteSafetensors(out, ts, s.Metadata()))
	c, err := OpenSafetensors(out)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, names, c.Names())
	require.Equal(t, s.Metadata(), c.Metadata())
	for _, want := range ts {
		got, err := c.Tensor(want.Name)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	ts := []Tensor{
		{Name: "z.weight", DType: F32, Shape: []int{2, 3}, Data: f32Bytes([]float32{1, 2, 3, 4, 5, math.Pi})},
		{Name: "a.half", DType: F16, Shape: []int{3}, Data: []byte{0, 0x3c, 0, 0xc0, 0xff, 0x7b}},
		{Name: "b.bf16", DType: BF16, Shape: []int{1}, Data: []byte{0x80, 0x3f}},
		{Name: "ids", DType: I64, Shape: []int{1, 2}, Data: i64Bytes([]int64{-1, 1 << 40})},
		{Name: "mask", DType: Bool, Shape: []int{3}, Data: []byte{1, 0, 1}},
		{Name: "scalar", DType: F64, Shape: []int{}, Data: make([]byte, 8)},
		{Name: "empty", DType: I32, Shape: []int{0}, Data: nil},
		{Name: "名前 \"quoted\"", DType: U8, Shape: []int{1}, Data: []byte{7}},
	}
	meta := map[string]string{"format": "pt", "note": "<&>"}
	require.NoError(t, WriteSafetensors(path, ts, meta))
	require.Equal(t, []string{"x.safetensors"}, dirNames(t, dir), "no temp file left")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	n := binary.LittleEndian.Uint64(raw)
	require.Zero(t, (8+n)%8, "data starts 8-byte aligned")
	require.True(t, strings.HasPrefix(string(raw[8:]), `{"__metadata__":{"format":"pt","note":"\u003c\u0026\u003e"},"a.half":`), string(raw[8:8+n]))

	s, err := OpenSafetensors(path)
	require.NoError(t, err)
	require.Equal(t, meta, s.Metadata())
	require.Equal(t, []string{"a.half", "b.bf16", "empty", "ids", "mask", "scalar", "z.weight", "名前 \"quoted\""}, s.Names())
	for _, want := range ts {
		got, err := s.Tensor(want.Name)
		require.NoError(t, err)
		require.Equal(t, want.DType, got.DType)
		require.Equal(t, want.Shape, got.Shape)
		require.True(t, bytes.Equal(want.Data, got.Data), want.Name)
	}
	// Data is laid out in name order.
	a, _ := s.Tensor("a.half")
	z, _ := s.Tensor("z.weight")
	require.Less(t, uintptr(unsafe.Pointer(&a.Data[0])), uintptr(unsafe.Pointer(&z.Data[0])))
	_, err = s.Tensor("nope")
	require.ErrorContains(t, err, `loader: `+path+`: no tensor "nope"`)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Tensor("a.half")
	require.ErrorContains(t, err, "closed")

	// No metadata: no __metadata__ key.
	require.NoError(t, WriteSafetensors(path, ts[:1], nil))
	s, err = OpenSafetensors(path)
	require.NoError(t, err)
	require.Nil(t, s.Metadata())
	require.NoError(t, s.Close())
}

func TestWriteSafetensorsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.safetensors")
	good := Tensor{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}
	for _, c := range []struct {
		ts   []Tensor
		want string
	}{
		{[]Tensor{good, good}, `duplicate tensor "a"`},
		{[]Tensor{{Name: "", DType: F32, Data: make([]byte, 4)}}, `invalid tensor name ""`},
		{[]Tensor{{Name: "__metadata__", DType: F32, Data: make([]byte, 4)}}, `invalid tensor name "__metadata__"`},
		{[]Tensor{{Name: "b", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, `tensor "b": F32 [2] needs 8 bytes, got 4`},
		{[]Tensor{{Name: "b", DType: Invalid}}, `tensor "b": invalid dtype`},
		{[]Tensor{{Name: "\xff", DType: U8}}, `invalid tensor name "\xff"`},
		{[]Tensor{{Name: "q", DType: Q8_0, Shape: []int{1, 32}, Data: make([]byte, 34)}}, `tensor "q": safetensors cannot store Q8_0`},
	} {
		err := WriteSafetensors(path, c.ts, nil)
		require.ErrorContains(t, err, "loader: "+path+": ")
		require.ErrorContains(t, err, c.want)
	}
	require.Empty(t, dirNames(t, dir))
}

// stFile builds a safetensors file from a header and a data size.
func stFile(header string, data int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, data)...)
}

func TestSafetensorsHostile(t *testing.T) {
	huge := binary.LittleEndian.AppendUint64(nil, MaxSafetensorsHeader+1)
	beyond := binary.LittleEndian.AppendUint64(nil, 100)
	wrap := binary.LittleEndian.AppendUint64(nil, math.MaxUint64)
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "file of 0 bytes too short for a safetensors header"},
		{"short", []byte{1, 2, 3}, "file of 3 bytes too short"},
		{"header above cap", append(huge, "{}"...), "header length 104857601 exceeds the 104857600-byte limit"},
		{"header beyond file", append(beyond, "{}"...), "header length 100 beyond file size 10"},
		{"header length wraps", append(wrap, "{}"...), "exceeds the"},
		{"not JSON", stFile("{nope", 0), "header: invalid character"},
		{"array", stFile("[1,2]", 0), "header is not a JSON object"},
		{"blank", stFile("   ", 0), "header is not a JSON object"},
		{"trailing garbage", stFile(`{} x`, 0), "header: invalid character 'x' after top-level value"},
		{"metadata not strings", stFile(`{"__metadata__":{"a":1}}`, 0), "__metadata__ must map strings to strings"},
		{"entry not object", stFile(`{"w":5}`, 0), `tensor "w": json: cannot unmarshal number`},
		{"unknown dtype", stFile(`{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, 1), `tensor "w": unknown dtype "F8_E4M3"`},
		{"dalle2's Q8_0", stFile(`{"w":{"dtype":"Q8_0","shape":[1,32],"data_offsets":[0,34]}}`, 34), `tensor "w": dtype "Q8_0" is not a safetensors dtype`},
		{"missing shape", stFile(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, 4), `tensor "w": entry needs "dtype", "shape" and "data_offsets"`},
		{"missing offsets", stFile(`{"w":{"dtype":"F32","shape":[1]}}`, 4), `entry needs`},
		{"negative dim", stFile(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), `tensor "w": shape [-1]: negative dimension -1`},
		{"fractional dim", stFile(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), `tensor "w": json: cannot unmarshal number 1.5`},
		{"dim beyond int64", stFile(`{"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}`, 4), `tensor "w": json: cannot unmarshal number 1e30`},
		{"numel overflow", stFile(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), `tensor "w": shape [4294967296 4294967296]: element count overflows int64`},
		{"bytes overflow", stFile(`{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, 4), `elements of 8 bytes overflow`},
		{"three offsets", stFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 4), `data_offsets has 3 values, want 2`},
		{"reversed offsets", stFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}}`, 4), `data_offsets [2, 1] out of order`},
		{"negative offset", stFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, 4), `data_offsets [-1, 0] out of order`},
		{"beyond data", stFile(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, 4), `tensor "w": data_offsets [0, 8] beyond data size 4`},
		{"size mismatch", stFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), `tensor "w": data_offsets [0, 4] hold 4 bytes, F32 [2] needs 8`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSafetensors(c.file, "h.safetensors")
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "loader: h.safetensors: "), err.Error())
			require.ErrorContains(t, err, c.want)
		})
	}
	// Valid edge cases: header padded with spaces, zero-size tensors, extra
	// entry fields, data after the last tensor.
	s, err := ParseSafetensors(stFile(`{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"w":{"dtype":"U8","shape":[2],"data_offsets":[1,3],"x":1}}   `, 8), "ok")
	require.NoError(t, err)
	require.Equal(t, []string{"e", "w"}, s.Names())
	w, err := s.Tensor("w")
	require.NoError(t, err)
	require.Len(t, w.Data, 2)

	_, err = OpenSafetensors(filepath.Join(t.TempDir(), "none.safetensors"))
	require.ErrorContains(t, err, "none.safetensors")
	p := filepath.Join(t.TempDir(), "bad.safetensors")
	require.NoError(t, os.WriteFile(p, stFile("[]", 0), 0o644))
	_, err = OpenSafetensors(p)
	require.ErrorContains(t, err, fmt.Sprintf("loader: %s: header is not a JSON object", p))
}
