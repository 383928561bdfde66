package convert

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// goldenDir is the reference data folder ($DALLE2_GOLDEN or the repo's
// ../shared/golden); tests skip without it unless CI is set.
func goldenDir(t testing.TB) string {
	d := os.Getenv("DALLE2_GOLDEN")
	if d == "" {
		d = filepath.Join("..", "..", "shared", "golden")
	}
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden folder %s missing: %v", d, err)
		}
		t.Skipf("golden folder %s missing: %v", d, err)
	}
	return d
}

// zipEntry is one archive member for torchZip.
type zipEntry struct {
	name   string
	data   []byte
	method uint16
}

// torchZip writes an archive like torch.save's: entries under "archive/".
func torchZip(t testing.TB, entries ...zipEntry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func f32Bytes(v ...float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func writeTemp(t testing.TB, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

// TestReadTorchFileMatchesSafetensors: the golden .bin files hold the same
// tensors as the safetensors files of tiny-unclip, byte for byte.
func TestReadTorchFileMatchesSafetensors(t *testing.T) {
	g := goldenDir(t)
	for _, c := range []struct{ bin, st string }{
		{"text_encoder/pytorch_model.bin", "text_encoder/model.safetensors"},
		{"decoder/diffusion_pytorch_model.bin", "decoder/diffusion_pytorch_model.safetensors"},
	} {
		t.Run(c.bin, func(t *testing.T) {
			got, err := ReadTorchFile(filepath.Join(g, "tiny-unclip-bin", c.bin))
			require.NoError(t, err)
			st, err := loader.OpenSafetensors(filepath.Join(g, "tiny-unclip", c.st))
			require.NoError(t, err)
			defer st.Close()
			var names []string
			for _, tt := range got {
				names = append(names, tt.Name)
				want, err := st.Tensor(tt.Name)
				require.NoError(t, err)
				require.Equal(t, want.DType, tt.DType, tt.Name)
				require.Equal(t, want.Shape, tt.Shape, tt.Name)
				require.True(t, bytes.Equal(want.Data, tt.Data), "tensor %s differs", tt.Name)
			}
			require.Equal(t, st.Names(), names)
		})
	}
}

// TestTorchViews: storage offsets, strides (transposed, expanded) and
// parameters are honoured; results are contiguous.
func TestTorchViews(t *testing.T) {
	pkl := stateDict(
		tensorSpec{name: "plain", storageType: "FloatStorage", key: "0", numel: 6, size: []int64{2, 3}, stride: []int64{3, 1}},
		tensorSpec{name: "transposed", storageType: "FloatStorage", key: "0", numel: 6, size: []int64{3, 2}, stride: []int64{1, 3}},
		tensorSpec{name: "offset", storageType: "FloatStorage", key: "0", numel: 6, offset: 1, size: []int64{2}, stride: []int64{2}},
		tensorSpec{name: "expanded", storageType: "FloatStorage", key: "0", numel: 6, offset: 3, size: []int64{2, 3}, stride: []int64{0, 1}},
		tensorSpec{name: "unit-dim", storageType: "FloatStorage", key: "0", numel: 6, offset: 2, size: []int64{1, 4}, stride: []int64{99, 1}},
		tensorSpec{name: "empty", storageType: "FloatStorage", key: "0", numel: 6, offset: 6, size: []int64{0, 3}, stride: []int64{3, 1}},
		tensorSpec{name: "ids", storageType: "LongStorage", key: "1", numel: 3, size: []int64{1, 3}, stride: []int64{0, 1}, param: true},
		tensorSpec{name: "half", storageType: "HalfStorage", key: "2", numel: 2, size: []int64{2}, stride: []int64{1}},
	)
	ids := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 1), 2)
	z := torchZip(t,
		zipEntry{name: "archive/data.pkl", data: pkl},
		zipEntry{name: "archive/byteorder", data: []byte("little")},
		zipEntry{name: "archive/data/0", data: f32Bytes(0, 1, 2, 3, 4, 5)},
		zipEntry{name: "archive/data/1", data: ids},
		zipEntry{name: "archive/data/2", data: []byte{0x00, 0x3c, 0x00, 0xc0}},
		zipEntry{name: "archive/version", data: []byte("3\n")},
	)
	tf, err := ParseTorch(bytes.NewReader(z), int64(len(z)), "views.pt", PickleOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"empty", "expanded", "half", "ids", "offset", "plain", "transposed", "unit-dim"}, tf.Names())
	want := map[string]loader.Tensor{
		"plain":      {DType: loader.F32, Shape: []int{2, 3}, Data: f32Bytes(0, 1, 2, 3, 4, 5)},
		"transposed": {DType: loader.F32, Shape: []int{3, 2}, Data: f32Bytes(0, 3, 1, 4, 2, 5)},
		"offset":     {DType: loader.F32, Shape: []int{2}, Data: f32Bytes(1, 3)},
		"expanded":   {DType: loader.F32, Shape: []int{2, 3}, Data: f32Bytes(3, 4, 5, 3, 4, 5)},
		"unit-dim":   {DType: loader.F32, Shape: []int{1, 4}, Data: f32Bytes(2, 3, 4, 5)},
		"empty":      {DType: loader.F32, Shape: []int{0, 3}, Data: []byte{}},
		"ids":        {DType: loader.I64, Shape: []int{1, 3}, Data: ids},
		"half":       {DType: loader.F16, Shape: []int{2}, Data: []byte{0x00, 0x3c, 0x00, 0xc0}},
	}
	for name, w := range want {
		got, err := tf.Tensor(name)
		require.NoError(t, err)
		w.Name = name
		require.Equal(t, w, got, name)
	}
	_, err = tf.Tensor("nope")
	require.ErrorContains(t, err, `no tensor "nope"`)
}

// TestTorchErrors: malformed archives are refused with errors that say what
// and where.
func TestTorchErrors(t *testing.T) {
	good := stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{2, 2}, stride: []int64{2, 1}})
	store := f32Bytes(1, 2, 3, 4)
	cases := []struct {
		name    string
		entries []zipEntry
		msg     string
	}{
		{"big endian", []zipEntry{{name: "a/data.pkl", data: good}, {name: "a/byteorder", data: []byte("big")}, {name: "a/data/0", data: store}}, `byteorder "big"`},
		{"odd byteorder", []zipEntry{{name: "a/data.pkl", data: good}, {name: "a/byteorder", data: []byte("middle")}, {name: "a/data/0", data: store}}, `unknown byteorder "middle"`},
		{"no data.pkl", []zipEntry{{name: "a/data/0", data: store}}, "no a/data.pkl"},
		{"two folders", []zipEntry{{name: "a/data.pkl", data: good}, {name: "b/data/0", data: store}}, "two top-level folders"},
		{"no folder", []zipEntry{{name: "data.pkl", data: good}}, "not inside a top-level folder"},
		{"missing storage", []zipEntry{{name: "a/data.pkl", data: good}}, `tensor "w": storage "0": no entry a/data/0`},
		{"short storage", []zipEntry{{name: "a/data.pkl", data: good}, {name: "a/data/0", data: store[:12]}}, "a/data/0 has 12 bytes, want 16"},
		{"compressed storage", []zipEntry{{name: "a/data.pkl", data: good}, {name: "a/data/0", data: store, method: zip.Deflate}}, "compressed"},
		{"pickle names os.system", []zipEntry{{name: "a/data.pkl", data: newPk().global("os", "system").op(opMark).str("id").op(opTuple, opReduce, opStop).Bytes()}}, `a/data.pkl: pickle: offset 2: GLOBAL: global "os.system" is not allowed`},
		{"unknown storage type", []zipEntry{{name: "a/data.pkl", data: stateDict(tensorSpec{name: "w", storageType: "ComplexFloatStorage", key: "0", numel: 2, size: []int64{2}, stride: []int64{1}})}}, "torch.ComplexFloatStorage"},
		{"not a dict", []zipEntry{{name: "a/data.pkl", data: newPk().op(opEmptyList, opStop).Bytes()}}, "top-level object is list"},
		{"non-tensor entry", []zipEntry{{name: "a/data.pkl", data: newPk().op(opEmptyDict).str("step").int(5).op(opSetItem, opStop).Bytes()}}, `entry "step" is int 5, not a tensor`},
		{"view past storage", []zipEntry{{name: "a/data.pkl", data: stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, offset: 1, size: []int64{2, 2}, stride: []int64{2, 1}})}, {name: "a/data/0", data: store}}, `tensor "w": view (offset 1, size [2 2], stride [2 1]) reaches element 4 of storage "0", which has 4`},
		{"strided view past storage", []zipEntry{{name: "a/data.pkl", data: stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{2, 2}, stride: []int64{1, 3}})}, {name: "a/data/0", data: store}}, "reaches element 4"},
		{"overflowing view", []zipEntry{{name: "a/data.pkl", data: stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{1 << 30, 1 << 30, 1 << 30}, stride: []int64{1, 1, 1}})}, {name: "a/data/0", data: store}}, "overflows"},
		{"huge expansion", []zipEntry{{name: "a/data.pkl", data: stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{1 << 20, 1 << 10}, stride: []int64{0, 0}})}, {name: "a/data/0", data: store}}, "expanded view"},
		{"storage retyped", []zipEntry{{name: "a/data.pkl", data: stateDict(
			tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{4}, stride: []int64{1}},
			tensorSpec{name: "x", storageType: "IntStorage", key: "0", numel: 4, size: []int64{4}, stride: []int64{1}})}, {name: "a/data/0", data: store}}, "used as both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := torchZip(t, c.entries...)
			_, err := ParseTorch(bytes.NewReader(z), int64(len(z)), "bad.bin", PickleOptions{})
			require.Error(t, err)
			require.Contains(t, err.Error(), "bad.bin: ")
			require.Contains(t, err.Error(), c.msg)
		})
	}
}

// TestTorchCorruptData: a flipped byte in a storage is caught by the zip's
// CRC-32 when the tensor is read.
func TestTorchCorruptData(t *testing.T) {
	good := stateDict(tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 4, size: []int64{4}, stride: []int64{1}})
	z := torchZip(t, zipEntry{name: "a/data.pkl", data: good}, zipEntry{name: "a/data/0", data: f32Bytes(1, 2, 3, 4)})
	i := bytes.Index(z, f32Bytes(1, 2, 3, 4))
	require.Positive(t, i)
	z[i+5] ^= 1
	tf, err := ParseTorch(bytes.NewReader(z), int64(len(z)), "bad.bin", PickleOptions{})
	require.NoError(t, err)
	_, err = tf.Tensor("w")
	require.ErrorContains(t, err, "CRC-32")
}

func TestTorchTruncatedAndLegacy(t *testing.T) {
	g := goldenDir(t)
	src, err := os.ReadFile(filepath.Join(g, "tiny-unclip-bin", "decoder", "diffusion_pytorch_model.bin"))
	require.NoError(t, err)
	for _, n := range []int{0, 10, len(src) / 2, len(src) - 30} {
		p := writeTemp(t, "trunc.bin", src[:n])
		_, err := ReadTorchFile(p)
		require.Error(t, err, "truncated to %d bytes", n)
		require.Contains(t, err.Error(), p)
	}
	p := writeTemp(t, "legacy.bin", []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."))
	_, err = ReadTorchFile(p)
	require.ErrorContains(t, err, "legacy")
}

func TestViewExtent(t *testing.T) {
	for _, c := range []struct {
		size, stride []int64
		offset       int64
		numel, span  int64
		err          bool
	}{
		{[]int64{}, []int64{}, 5, 1, 1, false}, // a scalar
		{[]int64{2, 3}, []int64{3, 1}, 0, 6, 6, false},
		{[]int64{3, 2}, []int64{1, 3}, 0, 6, 6, false},
		{[]int64{2, 0}, []int64{1, 1}, 0, 0, 0, false},
		{[]int64{4}, []int64{0}, 0, 4, 1, false},
		{[]int64{math.MaxInt64, 2}, []int64{1, 1}, 0, 0, 0, true},
		{[]int64{3}, []int64{math.MaxInt64 / 2}, 0, 3, math.MaxInt64, false},
		{[]int64{3}, []int64{math.MaxInt64/2 + 1}, 0, 0, 0, true},
		{[]int64{2}, []int64{-1}, 0, 0, 0, true},
		{[]int64{2}, []int64{1}, -1, 0, 0, true},
		{[]int64{2}, []int64{1, 1}, 0, 0, 0, true},
	} {
		n, s, err := viewExtent(c.size, c.stride, c.offset)
		if c.err {
			require.Error(t, err, "%v %v", c.size, c.stride)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.numel, n, "%v %v", c.size, c.stride)
		require.Equal(t, c.span, s, "%v %v", c.size, c.stride)
	}
}

// FuzzTorchZip wraps fuzzed pickles in an archive with two small storages:
// opening it and reading every tensor must never panic, and every tensor
// read must have exactly numel × dtype size bytes.
func FuzzTorchZip(f *testing.F) {
	f.Add(stateDict(
		tensorSpec{name: "a", storageType: "FloatStorage", key: "0", numel: 8, size: []int64{2, 3}, stride: []int64{1, 2}},
		tensorSpec{name: "b", storageType: "ByteStorage", key: "1", numel: 8, offset: 3, size: []int64{5}, stride: []int64{1}, param: true},
	))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		z := torchZip(t,
			zipEntry{name: "x/data.pkl", data: pkl},
			zipEntry{name: "x/data/0", data: f32Bytes(0, 1, 2, 3, 4, 5, 6, 7)},
			zipEntry{name: "x/data/1", data: []byte("01234567")},
		)
		tf, err := ParseTorch(bytes.NewReader(z), int64(len(z)), "fuzz.bin", PickleOptions{})
		if err != nil {
			return
		}
		for _, n := range tf.Names() {
			tt, err := tf.Tensor(n)
			if err != nil {
				continue
			}
			if len(tt.Data) != tt.Numel()*tt.DType.Size() {
				t.Fatalf("tensor %q: %d bytes for shape %v %s", n, len(tt.Data), tt.Shape, tt.DType)
			}
		}
	})
}
