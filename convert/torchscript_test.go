package convert

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// TestOpenTorchScriptCLIP reads the tiny OpenAI CLIP archive and checks
// every tensor's key, dtype and shape against the reference inspection in
// original-tiny/index.json.
func TestOpenTorchScriptCLIP(t *testing.T) {
	dir := filepath.Join(goldenDir(t), "original-tiny")
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	var idx struct {
		Files map[string]struct {
			Tensors []struct {
				Path  string `json:"path"`
				DType string `json:"dtype"`
				Shape []int  `json:"shape"`
			} `json:"tensors"`
		} `json:"files"`
	}
	require.NoError(t, json.Unmarshal(raw, &idx))
	want := idx.Files["clip.pt"].Tensors
	require.Len(t, want, 65)

	tf, err := OpenTorchScript(filepath.Join(dir, "clip.pt"))
	require.NoError(t, err)
	defer tf.Close()
	require.Len(t, tf.Names(), len(want))
	dtypes := map[string]loader.DType{"float32": loader.F32, "float16": loader.F16, "int64": loader.I64}
	for _, w := range want {
		name := strings.TrimPrefix(w.Path, ".")
		dt, shape, ok := tf.Info(name)
		require.True(t, ok, name)
		require.Equal(t, dtypes[w.DType], dt, name)
		if len(w.Shape) == 0 {
			require.Empty(t, shape, name)
		} else {
			require.Equal(t, w.Shape, shape, name)
		}
	}
	ctx, err := tf.Tensor("context_length")
	require.NoError(t, err)
	require.Equal(t, uint64(77), binary.LittleEndian.Uint64(ctx.Data))

	// A TorchScript archive is not a state dict.
	_, err = OpenTorch(filepath.Join(dir, "clip.pt"), PickleOptions{})
	require.ErrorContains(t, err, "__torch__.clip.model.CLIP")
	// And a checkpoint is not a TorchScript archive.
	_, err = OpenTorchScript(filepath.Join(dir, "prior.ckpt"))
	require.ErrorContains(t, err, "want a TorchScript module")
}

// TestTorchScriptGlobals: the __torch__ namespace is accepted only with
// TorchScriptObjects, and only it.
func TestTorchScriptGlobals(t *testing.T) {
	p := newPk().global("__torch__.clip.model", "CLIP").op(opEmptyTuple, opNewObj, opStop)
	_, err := Unpickle(p.Bytes(), PickleOptions{})
	require.ErrorContains(t, err, `global "__torch__.clip.model.CLIP" is not allowed`)
	v, err := Unpickle(p.Bytes(), PickleOptions{TorchScriptObjects: true})
	require.NoError(t, err)
	require.Equal(t, "__torch__.clip.model.CLIP", v.(*Opaque).Global.String())
	for _, g := range [][2]string{{"os", "system"}, {"__torch__x", "A"}, {"torch", "load"}, {"builtins", "getattr"}} {
		q := newPk().global(g[0], g[1]).op(opEmptyTuple, opNewObj, opStop)
		_, err := Unpickle(q.Bytes(), PickleOptions{TorchScriptObjects: true})
		require.ErrorContains(t, err, g[0]+"."+g[1]+`" is not allowed`)
	}
}

// TestModuleTensorsShapes checks the walk over hand-made module trees:
// attribute paths, skipped non-tensors, and refused shapes of tree.
func TestModuleTensorsShapes(t *testing.T) {
	g := Global{Module: "__torch__.m", Name: "M", Opaque: true}
	tensor := &TensorRef{Storage: &Storage{Key: "0", DType: loader.F32, Numel: 1}, Size: []int64{1}, Stride: []int64{1}}
	mod := func(kv ...any) *Opaque {
		d := &Dict{}
		for i := 0; i < len(kv); i += 2 {
			u := &unpickler{budget: 1 << 20}
			require.NoError(t, u.dictSet(d, kv[i], kv[i+1]))
		}
		return &Opaque{Global: g, Kind: "newobj", State: d}
	}
	leaf := mod("weight", tensor, "training", false, "_is_full_backward_hook", nil)
	root := mod("proj", tensor, "training", true, "blocks", mod("0", leaf, "1", mod("bias", tensor)))
	names, refs, err := moduleTensors(root)
	require.NoError(t, err)
	require.Equal(t, []string{"proj", "blocks.0.weight", "blocks.1.bias"}, names)
	require.Len(t, refs, 3)

	_, _, err = moduleTensors(&Dict{})
	require.ErrorContains(t, err, "want a TorchScript module")
	shared := mod("w", tensor)
	_, _, err = moduleTensors(mod("a", shared, "b", shared))
	require.ErrorContains(t, err, "module b is reached twice")
	cyc := mod("w", tensor)
	cyc.State.(*Dict).Values[0] = cyc
	_, _, err = moduleTensors(cyc)
	require.ErrorContains(t, err, "reached twice")
	_, _, err = moduleTensors(mod(int64(3), tensor))
	require.ErrorContains(t, err, "attribute name int 3 is not a string")
	_, _, err = moduleTensors(mod("a.b", tensor))
	require.ErrorContains(t, err, `attribute name "a.b"`)
	_, _, err = moduleTensors(&Opaque{Global: g, State: Tuple{}})
	require.ErrorContains(t, err, "attributes are tuple")
	deep := mod("w", tensor)
	for range maxModuleDepth + 1 {
		deep = mod("m", deep)
	}
	_, _, err = moduleTensors(deep)
	require.ErrorContains(t, err, "nested deeper")
}
