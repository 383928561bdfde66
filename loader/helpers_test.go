package loader

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func goldenDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("DALLE2_GOLDEN")
	if d == "" {
		d = filepath.Join("..", "..", "shared", "golden")
	}
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden data folder %s missing: %v", d, err)
		}
		t.Skipf("golden data folder %s missing (set DALLE2_GOLDEN)", d)
	}
	return d
}

// randBytes returns n pseudo-random (incompressible) bytes.
func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func i64Bytes(v []int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

// within reports whether b lies inside outer (b empty counts as inside).
func within(b, outer []byte) bool {
	if len(b) == 0 {
		return true
	}
	if len(outer) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(outer)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(outer))
}

// sample is a set of tensors, blobs and components that a test writes.
type sample struct {
	components []Component
	tensors    map[string]Tensor // by full name
	comp       map[string]string // full name -> component
	blobs      map[string][]byte
	meta       map[string]string
	order      []string // full names in write order
}

// newSample covers every codec path: incompressible and compressible data,
// small and above the sampling threshold, several dtypes.
func newSample(big bool) *sample {
	r := rand.New(rand.NewPCG(1, 2))
	s := &sample{
		components: []Component{
			{Name: "prior", Class: "PriorTransformer", Config: json.RawMessage(`{"num_layers": 2, "dim": 32}`)},
			{Name: "text_proj", Class: "UnCLIPTextProjModel", Config: json.RawMessage(`{}`)},
		},
		tensors: map[string]Tensor{},
		comp:    map[string]string{},
		blobs: map[string][]byte{
			"tokenizer/merges.txt": []byte(repeatText("#version: 0.2\nt h\nth e</w>\n", 200)),
			"tokenizer/random.bin": randBytes(r, 1000),
			"tokenizer/empty":      {},
		},
		meta: map[string]string{MetaSource: "test", MetaDType: "mixed", MetaConverter: "loader test"},
	}
	add := func(comp, name string, dt DType, shape []int, data []byte) {
		full := comp + "/" + name
		s.tensors[full] = Tensor{Name: name, DType: dt, Shape: shape, Data: data}
		s.comp[full] = comp
		s.order = append(s.order, full)
	}
	w := make([]float32, 24*32)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	add("prior", "embedding_proj.weight", F32, []int{24, 32}, f32Bytes(w))
	add("prior", "embedding_proj.bias", F32, []int{24}, make([]byte, 24*4)) // 96 zero bytes: zstd
	add("prior", "zeros", F32, []int{64, 64}, make([]byte, 64*64*4))
	add("prior", "half", F16, []int{3, 5, 7}, randBytes(r, 3*5*7*2))
	add("prior", "bhalf", BF16, []int{10}, randBytes(r, 20))
	add("prior", "q8", Q8_0, []int{3, 2, 32}, randBytes(r, 3*2*q8BlockBytes)) // rows of 64: 2 blocks each
	ids := make([]int64, 77)
	for i := range ids {
		ids[i] = int64(i)
	}
	add("text_proj", "position_ids", I64, []int{1, 77}, i64Bytes(ids))
	add("text_proj", "mask", U8, []int{2, 3}, []byte{1, 0, 1, 1, 0, 0})
	add("text_proj", "scalar", F32, []int{}, f32Bytes([]float32{1.5}))
	add("text_proj", "empty", F32, []int{0, 4}, []byte{})
	if big {
		add("prior", "big_random", F32, []int{1 << 19}, randBytes(r, 2<<20)) // sampled, raw
		add("prior", "big_zeros", F32, []int{1 << 19}, make([]byte, 2<<20))  // sampled, zstd
	}
	return s
}

func repeatText(s string, n int) string {
	out := make([]byte, 0, len(s)*n)
	for i := range n {
		out = append(out, s...)
		out = append(out, byte('a'+i%26))
	}
	return string(out)
}

// write stores the sample at path.
func (s *sample) write(t testing.TB, path string) {
	t.Helper()
	w, err := Create(path)
	require.NoError(t, err)
	for k, v := range s.meta {
		w.SetMeta(k, v)
	}
	for _, c := range s.components {
		require.NoError(t, w.AddComponent(c))
	}
	for _, full := range s.order {
		require.NoError(t, w.AddTensor(s.comp[full], s.tensors[full]))
	}
	for _, name := range slices.Sorted(maps.Keys(s.blobs)) {
		require.NoError(t, w.AddBlob(name, s.blobs[name]))
	}
	require.NoError(t, w.Commit())
}

// sampleBytes writes the sample to a temporary file and returns its bytes.
func sampleBytes(t testing.TB, big bool) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.d2")
	newSample(big).write(t, path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
