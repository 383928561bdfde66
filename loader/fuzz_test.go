package loader

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite ../testdata/tiny.d2 and ../testdata/tiny.safetensors")

// Fuzz seed files, kept small (each under 20 KB).
var (
	seedD2          = filepath.Join("..", "testdata", "tiny.d2")
	seedSafetensors = filepath.Join("..", "testdata", "tiny.safetensors")
)

// writeTinyD2 writes a small weight file with raw and zstd tensors and
// blobs, so that fuzzing starts from every code path.
func writeTinyD2(t testing.TB, path string) {
	t.Helper()
	w, err := Create(path)
	require.NoError(t, err)
	w.SetMeta(MetaSource, "fuzz seed")
	require.NoError(t, w.AddComponent(Component{Name: "prior", Class: "PriorTransformer", Config: json.RawMessage(`{"dim":4}`)}))
	require.NoError(t, w.AddTensor("prior", Tensor{Name: "w", DType: F32, Shape: []int{2, 3}, Data: f32Bytes([]float32{1, -2, 3.5, 4, 5, 6})}))
	require.NoError(t, w.AddTensor("prior", Tensor{Name: "zeros", DType: F16, Shape: []int{64}, Data: make([]byte, 128)}))
	ids := make([]int64, 16)
	for i := range ids {
		ids[i] = int64(i)
	}
	require.NoError(t, w.AddTensor("prior", Tensor{Name: "ids", DType: I64, Shape: []int{1, 16}, Data: i64Bytes(ids)}))
	require.NoError(t, w.AddTensor("prior", Tensor{Name: "mask", DType: Bool, Shape: []int{3}, Data: []byte{1, 0, 1}}))
	q8 := make([]byte, 2*q8BlockBytes) // [2, 32]: two rows of one block
	for i := range q8 {
		q8[i] = byte(i*37 + 11)
	}
	require.NoError(t, w.AddTensor("prior", Tensor{Name: "q8", DType: Q8_0, Shape: []int{2, 32}, Data: q8}))
	require.NoError(t, w.AddBlob("tokenizer/merges.txt", []byte(repeatText("t h\nth e</w>\n", 8))))
	require.NoError(t, w.AddBlob("tokenizer/raw", []byte("abc")))
	require.NoError(t, w.Commit())
}

func writeTinySafetensors(t testing.TB, path string) {
	t.Helper()
	require.NoError(t, WriteSafetensors(path, []Tensor{
		{Name: "a.weight", DType: F32, Shape: []int{2, 2}, Data: f32Bytes([]float32{1, 2, 3, 4})},
		{Name: "b", DType: F16, Shape: []int{3}, Data: []byte{0, 0x3c, 0, 0xc0, 0xff, 0x7b}},
		{Name: "ids", DType: I64, Shape: []int{2}, Data: i64Bytes([]int64{7, 8})},
		{Name: "e", DType: U8, Shape: []int{0}},
	}, map[string]string{"format": "pt"}))
}

// TestSeedFiles checks the committed fuzz seeds (run with -update-seeds to
// regenerate them).
func TestSeedFiles(t *testing.T) {
	if *updateSeeds {
		writeTinyD2(t, seedD2)
		writeTinySafetensors(t, seedSafetensors)
	}
	d2, err := os.ReadFile(seedD2)
	require.NoError(t, err, "run go test ./loader -run TestSeedFiles -update-seeds")
	require.Less(t, len(d2), 20<<10)
	f, err := OpenBytes(d2, seedD2)
	require.NoError(t, err)
	require.NoError(t, f.Verify())
	codecs := map[string]bool{}
	for _, i := range f.Index() {
		codecs[i.Codec] = true
	}
	for _, b := range f.Blobs() {
		codecs["blob "+b.Codec] = true
	}
	require.Equal(t, map[string]bool{CodecRaw: true, CodecZstd: true, "blob raw": true, "blob zstd": true}, codecs)

	st, err := os.ReadFile(seedSafetensors)
	require.NoError(t, err)
	require.Less(t, len(st), 20<<10)
	s, err := ParseSafetensors(st, seedSafetensors)
	require.NoError(t, err)
	require.Len(t, s.Names(), 4)
}

func FuzzSafetensorsHeader(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.safetensors")
	writeTinySafetensors(f, path)
	for _, p := range []string{path, seedSafetensors} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(stFile(`{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 2))
	f.Add(stFile(`{"w":{"dtype":"Q8_0","shape":[1,32],"data_offsets":[0,34]}}`, 34)) // refused
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSafetensors(data, "fuzz")
		if err != nil {
			return
		}
		for _, name := range s.Names() {
			tn, err := s.Tensor(name)
			if err != nil {
				t.Fatalf("listed tensor %q: %v", name, err)
			}
			if !within(tn.Data, data) {
				t.Fatalf("tensor %q: data outside the input", name)
			}
			if n, err := tn.DType.Bytes(tn.Shape); err != nil || len(tn.Data) != n || tn.DType == Q8_0 {
				t.Fatalf("tensor %q: %d bytes for %s %v (%v)", name, len(tn.Data), tn.DType, tn.Shape, err)
			}
		}
	})
}

// FuzzWeightFile opens arbitrary bytes as a weight file and reads all of it.
// With fixCRC the index checksum in the trailer is recomputed first, so that
// mutations reach the index and data checks instead of all stopping at the
// checksum.
func FuzzWeightFile(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.d2")
	writeTinyD2(f, path)
	for _, p := range []string{path, seedD2} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, false)
			f.Add(b, true)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC && len(data) >= PreambleSize+TrailerSize {
			tr := data[len(data)-TrailerSize:]
			off, n := binary.LittleEndian.Uint64(tr), binary.LittleEndian.Uint64(tr[8:])
			end := uint64(len(data) - TrailerSize)
			if off <= end && end-off == n {
				binary.LittleEndian.PutUint32(tr[16:], checksum(data[off:end]))
			}
		}
		file, err := OpenBytes(data, "fuzz")
		if err != nil {
			return
		}
		_ = file.Verify()
		for _, info := range file.Index() {
			tn, err := file.Tensor(info.Name)
			if err != nil {
				continue
			}
			if n, err := tn.DType.Bytes(tn.Shape); err != nil || int64(len(tn.Data)) != info.RawSize || len(tn.Data) != n {
				t.Fatalf("tensor %q: %d bytes, raw_size %d, %s %v (%v)", info.Name, len(tn.Data), info.RawSize, tn.DType, tn.Shape, err)
			}
			if info.Codec == CodecRaw && !within(tn.Data, data) {
				t.Fatalf("raw tensor %q: data outside the input", info.Name)
			}
			if checksum(tn.Data) != info.CRC32C {
				t.Fatalf("tensor %q returned with a wrong checksum", info.Name)
			}
		}
		for _, b := range file.Blobs() {
			if got, err := file.Blob(b.Name); err == nil && int64(len(got)) != b.RawSize {
				t.Fatalf("blob %q: %d bytes, raw_size %d", b.Name, len(got), b.RawSize)
			}
		}
		for _, c := range file.Components() {
			for _, key := range file.Sub(c.Name).Names() {
				_, _ = file.Sub(c.Name).Tensor(key)
			}
		}
		_ = file.Close()
	})
}
