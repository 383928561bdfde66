package loader

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// dirNames lists the files in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriterLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.d2")
	w, err := Create(path)
	require.NoError(t, err)
	names := dirNames(t, dir)
	require.Len(t, names, 1)
	require.Regexp(t, `^model\.d2\.tmp-`, names[0], "writes to a temp file next to the target")
	require.NoError(t, w.AddTensor("c", Tensor{Name: "x", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}))
	require.NoError(t, w.Commit())
	require.Equal(t, []string{"model.d2"}, dirNames(t, dir))
	st, err := os.Stat(path)
	require.NoError(t, err)
	if runtime.GOOS != "windows" {
		require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}
	require.ErrorContains(t, w.AddBlob("b", nil), "writer already committed or aborted")
	require.ErrorContains(t, w.Commit(), "already committed")
	require.NoError(t, w.Abort(), "abort after commit does nothing")
	require.Equal(t, []string{"model.d2"}, dirNames(t, dir))

	w, err = Create(filepath.Join(dir, "other.d2"))
	require.NoError(t, err)
	require.NoError(t, w.AddBlob("b", []byte("hello")))
	require.NoError(t, w.Abort())
	require.NoError(t, w.Abort())
	require.Equal(t, []string{"model.d2"}, dirNames(t, dir))
}

func TestAbortKeepsExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.d2")
	newSample(false).write(t, path)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddTensor("c", Tensor{Name: "x", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}}))
	require.NoError(t, w.Abort())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, []string{"model.d2"}, dirNames(t, dir))
}

func TestCommitFailureRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.d2")
	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(path, 0o755)) // rename onto a directory fails
	require.NoError(t, os.WriteFile(filepath.Join(path, "keep"), nil, 0o644))
	err = w.Commit()
	require.ErrorContains(t, err, "loader: "+path)
	require.Equal(t, []string{"model.d2"}, dirNames(t, dir))
}

func TestWriterValidation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.d2")
	w, err := Create(path)
	require.NoError(t, err)
	ok := Tensor{Name: "w", DType: F16, Shape: []int{2, 2}, Data: make([]byte, 8)}
	require.NoError(t, w.AddComponent(Component{Name: "prior", Class: "PriorTransformer", Config: json.RawMessage(`{"a":1}`)}))
	require.NoError(t, w.AddTensor("prior", ok))

	errs := []struct {
		err  error
		want string
	}{
		{w.AddComponent(Component{Name: "prior"}), `loader: ` + path + `: duplicate component "prior"`},
		{w.AddComponent(Component{Name: ""}), "empty component name"},
		{w.AddComponent(Component{Name: "a/b"}), `component name "a/b" contains "/"`},
		{w.AddComponent(Component{Name: "dec", Config: json.RawMessage(`{"a":`)}), `component "dec": config is not valid JSON`},
		{w.AddTensor("prior", ok), `duplicate tensor "prior/w"`},
		{w.AddTensor("", ok), `tensor "w": empty component name`},
		{w.AddTensor("a/b", ok), `contains "/"`},
		{w.AddTensor("prior", Tensor{DType: F32}), `component "prior": empty tensor name`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: F32, Shape: []int{3}, Data: make([]byte, 8)}), `tensor "prior/x": F32 [3] needs 12 bytes, got 8`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: Invalid, Data: nil}), `tensor "prior/x": invalid dtype invalid`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: DType(99), Data: nil}), `invalid dtype DType(99)`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: F32, Shape: []int{-1}}), `negative dimension -1`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: Q8_0, Shape: []int{2, 32}, Data: make([]byte, 64)}), `tensor "prior/x": Q8_0 [2 32] needs 68 bytes, got 64`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: Q8_0, Shape: []int{32, 3}, Data: make([]byte, 102)}), `tensor "prior/x": shape [32 3]: Q8_0 row length 3 is not a multiple of 32`},
		{w.AddTensor("prior", Tensor{Name: "x", DType: Q8_0, Shape: []int{}, Data: make([]byte, 34)}), `tensor "prior/x": shape []: a Q8_0 tensor needs at least one dimension`},
		{w.AddBlob("", nil), "empty blob name"},
	}
	for _, e := range errs {
		require.ErrorContains(t, e.err, e.want)
	}
	require.NoError(t, w.AddBlob("b", []byte("x")))
	require.ErrorContains(t, w.AddBlob("b", nil), `duplicate blob "b"`)
	// A blob and a tensor may share a name: separate namespaces.
	require.NoError(t, w.AddBlob("prior/w", []byte("y")))
	// Rejected calls leave the writer usable.
	require.NoError(t, w.Commit())
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, []string{"prior/w"}, f.Names())
	require.Len(t, f.Components(), 1)
	require.NoError(t, f.Verify())
}

func TestSetMinSaving(t *testing.T) {
	zeros := Tensor{Name: "z", DType: F32, Shape: []int{1024}, Data: make([]byte, 4096)}
	codec := func(minSaving float64) string {
		path := filepath.Join(t.TempDir(), "m.d2")
		w, err := Create(path)
		require.NoError(t, err)
		w.SetMinSaving(minSaving)
		require.NoError(t, w.AddTensor("c", zeros))
		require.NoError(t, w.Commit())
		f, err := Open(path)
		require.NoError(t, err)
		defer f.Close()
		tn, err := f.Tensor("c/z")
		require.NoError(t, err)
		require.Equal(t, zeros.Data, tn.Data)
		return f.Index()[0].Codec
	}
	require.Equal(t, CodecZstd, codec(DefaultMinSaving))
	require.Equal(t, CodecRaw, codec(1))
}

func TestEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.d2")
	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, w.Commit())
	f, err := Open(path)
	require.NoError(t, err)
	require.Empty(t, f.Names())
	require.Empty(t, f.Components())
	require.Empty(t, f.Blobs())
	require.Empty(t, f.Meta())
	require.NoError(t, f.Verify())
	require.NoError(t, f.Close())
	require.NoError(t, f.Close())
}
