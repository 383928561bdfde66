package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// pk builds pickle streams by hand, opcode by opcode.
type pk struct{ bytes.Buffer }

func newPk() *pk { p := &pk{}; p.op(opProto, 2); return p }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }

func (p *pk) global(module, name string) *pk {
	p.WriteByte(opGlobal)
	p.WriteString(module + "\n" + name + "\n")
	return p
}

func (p *pk) str(s string) *pk {
	p.WriteByte(opBinUnicode)
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

func (p *pk) int(n int32) *pk {
	p.WriteByte(opBinInt)
	binary.Write(&p.Buffer, binary.LittleEndian, n)
	return p
}

func (p *pk) ints(ns ...int64) *pk {
	p.op(opMark)
	for _, n := range ns {
		p.int(int32(n))
	}
	return p.op(opTuple)
}

// tensorSpec describes one _rebuild_tensor_v2 call.
type tensorSpec struct {
	name, storageType, key string
	numel, offset          int64
	size, stride           []int64
	param                  bool // wrap in torch._utils._rebuild_parameter
}

// tensor pushes the rebuilt tensor of s.
func (p *pk) tensor(s tensorSpec) *pk {
	if s.param {
		p.global("torch._utils", "_rebuild_parameter").op(opMark)
	}
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", s.storageType).str(s.key).str("cpu").int(int32(s.numel)).op(opTuple, opBinPersID)
	p.int(int32(s.offset)).ints(s.size...).ints(s.stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	p.op(opTuple, opReduce)
	if s.param {
		p.op(opNewTrue).global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opTuple, opReduce)
	}
	return p
}

// stateDict pickles an OrderedDict of the given tensors.
func stateDict(specs ...tensorSpec) []byte {
	p := newPk().global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark)
	for _, s := range specs {
		p.str(s.name).tensor(s)
	}
	return p.op(opSetItems, opStop).Bytes()
}

func TestUnpickleProtocol4Values(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "pickle-proto4.pkl"))
	require.NoError(t, err)
	v, err := Unpickle(data, PickleOptions{})
	require.NoError(t, err)
	d, ok := v.(*Dict)
	require.True(t, ok)
	require.True(t, d.Ordered)
	require.Equal(t, 3, d.Len())
	a, ok := d.Get("a.weight")
	require.True(t, ok)
	l := a.(*List).Items
	wantBig, _ := new(big.Int).SetString("-1180591620717411303424", 10)
	wantBig2, _ := new(big.Int).SetString("9223372036854775808", 10)
	require.Len(t, l, 14)
	require.Equal(t, int64(1), l[0])
	require.Equal(t, int64(-2), l[1])
	require.Equal(t, int64(300), l[2])
	require.Equal(t, int64(70000), l[3])
	require.Zero(t, wantBig.Cmp(l[4].(*big.Int)))
	require.Zero(t, wantBig2.Cmp(l[5].(*big.Int)))
	require.Equal(t, int64(-1), l[6])
	require.Equal(t, 2.5, l[7])
	require.Nil(t, l[8])
	require.Equal(t, true, l[9])
	require.Equal(t, false, l[10])
	require.Equal(t, Tuple{int64(1), int64(2), int64(3)}, l[11])
	require.Equal(t, []byte("xy"), l[12])
	require.Equal(t, "é", l[13])
	n, _ := d.Get("n")
	nd := n.(*Dict)
	require.False(t, nd.Ordered)
	require.Equal(t, []any{"k", int64(2)}, nd.Keys)
	require.Equal(t, Tuple{int64(1), "t"}, d.Keys[2])
	require.Equal(t, "tuplekey", d.Values[2])
}

func TestUnpickleTextEncoderPickle(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "pickle-text_encoder.pkl"))
	require.NoError(t, err)
	v, err := Unpickle(data, PickleOptions{})
	require.NoError(t, err)
	d := v.(*Dict)
	require.False(t, d.Ordered, "the text encoder's top level is a plain dict")
	require.Equal(t, 85, d.Len())
	x, ok := d.Get("text_model.embeddings.token_embedding.weight")
	require.True(t, ok)
	tr := x.(*TensorRef)
	require.Equal(t, &Storage{Key: "0", Type: "FloatStorage", DType: loader.F32, Location: "cpu", Numel: 1581056}, tr.Storage)
	require.Equal(t, []int64{49408, 32}, tr.Size)
	require.Equal(t, []int64{32, 1}, tr.Stride)
	require.Zero(t, tr.Offset)
}

func TestUnpickleDictSemantics(t *testing.T) {
	// {"a": 1, "b": 2, "a": 3, 1: "x", True: "y"}: re-setting a key keeps its
	// place, and True == 1 as a key, as in Python.
	p := newPk().op(opEmptyDict, opMark).str("a").int(1).str("b").int(2).str("a").int(3).
		int(1).str("x").op(opNewTrue).str("y").op(opSetItems, opStop)
	v, err := Unpickle(p.Bytes(), PickleOptions{})
	require.NoError(t, err)
	d := v.(*Dict)
	require.Equal(t, []any{"a", "b", int64(1)}, d.Keys)
	require.Equal(t, []any{int64(3), int64(2), "y"}, d.Values)
}

func TestUnpickleParameterUnwrapped(t *testing.T) {
	data := stateDict(tensorSpec{name: "w", storageType: "HalfStorage", key: "7", numel: 6, size: []int64{2, 3}, stride: []int64{3, 1}, param: true})
	v, err := Unpickle(data, PickleOptions{})
	require.NoError(t, err)
	x, _ := v.(*Dict).Get("w")
	tr, ok := x.(*TensorRef)
	require.True(t, ok, "parameter not unwrapped: %s", describe(x))
	require.True(t, tr.RequiresGrad)
	require.Equal(t, loader.F16, tr.Storage.DType)
}

// TestUnpickleRefusesGlobals checks that code-running globals are refused by
// name, with the opcode's offset, whichever opcode names them.
func TestUnpickleRefusesGlobals(t *testing.T) {
	for _, g := range []struct{ module, name string }{
		{"os", "system"}, {"posix", "system"}, {"nt", "system"}, {"builtins", "eval"},
		{"__builtin__", "eval"}, {"builtins", "exec"}, {"subprocess", "Popen"},
		{"torch", "load"}, {"torch._utils", "_rebuild_tensor_v2x"}, {"collections", "OrderedDictX"},
		{"torch", "ComplexFloatStorage"}, {"numpy.core.multiarray", "_reconstruct"},
	} {
		full := g.module + "." + g.name
		t.Run(full, func(t *testing.T) {
			// GLOBAL at offset 2, as an attacker would write it:
			// os.system("echo pwned") via REDUCE.
			p := newPk().global(g.module, g.name).op(opMark).str("echo pwned").op(opTuple, opReduce, opStop)
			_, err := Unpickle(p.Bytes(), PickleOptions{})
			require.Error(t, err)
			require.Contains(t, err.Error(), full)
			var pe *PickleError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, 2, pe.Offset)
			require.Equal(t, "GLOBAL", pe.Op)

			// STACK_GLOBAL (protocol 4) at offset 2+len(strings).
			q := &pk{}
			q.op(opProto, 4).str(g.module).str(g.name)
			off := q.Len()
			q.op(opStackGlobal, opEmptyTuple, opReduce, opStop)
			_, err = Unpickle(q.Bytes(), PickleOptions{})
			require.ErrorContains(t, err, full)
			require.True(t, errors.As(err, &pe))
			require.Equal(t, off, pe.Offset)

			// With AllowOpaque the call becomes a placeholder: still nothing runs.
			v, err := Unpickle(p.Bytes(), PickleOptions{AllowOpaque: true})
			require.NoError(t, err)
			o, ok := v.(*Opaque)
			require.True(t, ok)
			require.Equal(t, full, o.Global.String())
			require.Equal(t, Tuple{"echo pwned"}, o.Args)
		})
	}
}

func TestUnpickleOpaqueCheckpoint(t *testing.T) {
	// A Lightning-like checkpoint: {"epoch": 3, "hparams": AttributeDict(lr=0.1)
	// built by NEWOBJ + SETITEMS + BUILD, "state_dict": {...}}.
	p := newPk().op(opEmptyDict, opMark)
	p.str("epoch").int(3)
	p.str("hparams").global("lightning.fabric.utilities.data", "AttributeDict").op(opEmptyTuple, opNewObj).
		op(opMark).str("lr").op(opBinFloat, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a).op(opSetItems).
		op(opEmptyDict).op(opBuild)
	p.str("state_dict").op(opEmptyDict, opMark).str("w").
		tensor(tensorSpec{storageType: "FloatStorage", key: "0", numel: 2, size: []int64{2}, stride: []int64{1}}).
		op(opSetItems)
	p.op(opSetItems, opStop)

	_, err := Unpickle(p.Bytes(), PickleOptions{})
	require.ErrorContains(t, err, "lightning.fabric.utilities.data.AttributeDict")

	v, err := Unpickle(p.Bytes(), PickleOptions{AllowOpaque: true})
	require.NoError(t, err)
	d := v.(*Dict)
	h, _ := d.Get("hparams")
	o := h.(*Opaque)
	require.Equal(t, "newobj", o.Kind)
	lr, ok := o.Items.Get("lr")
	require.True(t, ok)
	require.Equal(t, 0.1, lr)
	sd, err := findStateDict(v)
	require.NoError(t, err)
	require.Equal(t, []any{"w"}, sd.Keys)
}

// TestUnpickleHostile feeds malformed streams: each must be an error at the
// right offset, never a panic or a huge allocation.
func TestUnpickleHostile(t *testing.T) {
	u32 := func(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name   string
		data   []byte
		offset int
		msg    string
	}{
		{"empty", nil, 0, "before STOP"},
		{"no STOP", []byte{opProto, 2, opNone}, 3, "before STOP"},
		{"STOP on empty stack", []byte{opProto, 2, opStop}, 2, "stack underflow"},
		{"protocol 6", []byte{opProto, 6, opNone, opStop}, 0, "protocol 6"},
		{"protocol 0 text opcode", []byte{'I', '1', '\n', opStop}, 0, "INT"},
		{"unknown opcode", []byte{opProto, 2, 0xff}, 2, "0xff"},
		{"memo miss", []byte{opProto, 2, opBinGet, 5, opStop}, 2, "memo key 5"},
		{"long memo miss", cat([]byte{opProto, 2, opNone, opLongBinPut}, u32(1), []byte{opLongBinGet}, u32(7), []byte{opStop}), 8, "memo key 7"},
		{"put on empty stack", []byte{opProto, 2, opBinPut, 0, opStop}, 2, "stack underflow"},
		{"huge BINUNICODE", cat([]byte{opProto, 2, opBinUnicode}, u32(0xffffffff), []byte("abc")), 2, "needs 4294967295 bytes"},
		{"huge BINUNICODE8", cat([]byte{opProto, 4, opBinUnicode8}, u32(0xffffffff), u32(0xffffffff)), 2, "needs"},
		{"huge BINBYTES", cat([]byte{opProto, 3, opBinBytes}, u32(1<<31)), 2, "needs"},
		{"negative LONG4", cat([]byte{opProto, 2, opLong4}, u32(0xfffffffe)), 2, "negative length"},
		{"huge LONG4", cat([]byte{opProto, 2, opLong4}, u32(0x7fffffff)), 2, "needs"},
		{"truncated BININT", []byte{opProto, 2, opBinInt, 1}, 2, "needs 4 bytes"},
		{"truncated GLOBAL", []byte("\x80\x02ctorch\nFloat"), 2, "unterminated"},
		{"TUPLE without MARK", []byte{opProto, 2, opNone, opTuple, opStop}, 3, "no MARK"},
		{"TUPLE3 underflow", []byte{opProto, 2, opNone, opMark, opNone, opNone, opTuple3}, 6, "stack underflow"},
		{"pop below MARK", []byte{opProto, 2, opNone, opMark, opDup}, 4, "stack underflow"},
		{"SETITEMS odd", []byte{opProto, 2, opEmptyDict, opMark, opNone, opSetItems, opStop}, 5, "odd number"},
		{"SETITEM on list", []byte{opProto, 2, opEmptyList, opNone, opNone, opSetItem, opStop}, 5, "cannot set items of list"},
		{"APPEND to dict", []byte{opProto, 2, opEmptyDict, opNone, opAppend, opStop}, 4, "cannot append to dict"},
		{"unhashable key", []byte{opProto, 2, opEmptyDict, opEmptyList, opNone, opSetItem, opStop}, 5, "unhashable"},
		{"REDUCE of int", []byte{opProto, 2, opBinInt1, 1, opEmptyTuple, opReduce, opStop}, 5, "cannot call int 1"},
		{"REDUCE args not tuple", []byte("\x80\x02ccollections\nOrderedDict\nNR."), 28, "want a tuple"},
		{"BUILD on int", []byte{opProto, 2, opBinInt1, 1, opNone, opBuild, opStop}, 5, "cannot set state"},
		{"call a storage type", []byte("\x80\x02ctorch\nFloatStorage\n)R."), 23, "cannot call torch.FloatStorage"},
		{"persistent id not a storage", []byte{opProto, 2, opBinInt1, 1, opBinPersID, opStop}, 4, "not a torch storage"},
		{"STACK_GLOBAL of ints", []byte{opProto, 4, opBinInt1, 1, opBinInt1, 2, opStackGlobal, opStop}, 6, "must be strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unpickle(c.data, PickleOptions{})
			require.Error(t, err)
			require.Contains(t, err.Error(), c.msg)
			var pe *PickleError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, c.offset, pe.Offset, "%v", err)
		})
	}
}

func TestUnpickleStorageIDChecks(t *testing.T) {
	build := func(typeMod, typeName string, key any, numel int32) []byte {
		p := newPk().op(opMark).str("storage").global(typeMod, typeName)
		switch k := key.(type) {
		case string:
			p.str(k)
		case int32:
			p.int(k)
		}
		p.str("cpu").int(numel).op(opTuple, opBinPersID, opStop)
		return p.Bytes()
	}
	v, err := Unpickle(build("torch", "BFloat16Storage", "3", 10), PickleOptions{})
	require.NoError(t, err)
	require.Equal(t, &Storage{Key: "3", Type: "BFloat16Storage", DType: loader.BF16, Location: "cpu", Numel: 10}, v)

	_, err = Unpickle(build("torch", "BFloat16Storage", int32(3), 10), PickleOptions{})
	require.ErrorContains(t, err, "storage key is int 3")
	_, err = Unpickle(build("torch", "BFloat16Storage", "3", -1), PickleOptions{})
	require.ErrorContains(t, err, "storage size is int -1")
	// An unknown storage class is refused as a global; with AllowOpaque it
	// gets through GLOBAL and is refused as a storage type.
	_, err = Unpickle(build("torch", "QUInt8Storage", "3", 10), PickleOptions{})
	require.ErrorContains(t, err, `global "torch.QUInt8Storage" is not allowed`)
	_, err = Unpickle(build("torch", "QUInt8Storage", "3", 10), PickleOptions{AllowOpaque: true})
	require.ErrorContains(t, err, "unknown storage type torch.QUInt8Storage")
}

func TestUnpickleRebuildTensorChecks(t *testing.T) {
	mk := func(size, stride []int64, offset int32) []byte {
		p := newPk().global("torch._utils", "_rebuild_tensor_v2").op(opMark)
		p.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(4).op(opTuple, opBinPersID)
		p.int(offset).ints(size...).ints(stride...).op(opNewFalse, opEmptyDict, opTuple, opReduce, opStop)
		return p.Bytes()
	}
	_, err := Unpickle(mk([]int64{2, 2}, []int64{2}, 0), PickleOptions{})
	require.ErrorContains(t, err, "size has 2 dimensions, stride 1")
	_, err = Unpickle(mk([]int64{-2}, []int64{1}, 0), PickleOptions{})
	require.ErrorContains(t, err, "size[0] is int -2")
	_, err = Unpickle(mk([]int64{2}, []int64{1}, -1), PickleOptions{})
	require.ErrorContains(t, err, "storage offset is int -1")
	v, err := Unpickle(mk([]int64{2, 2}, []int64{1, 2}, 0), PickleOptions{})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2}, v.(*TensorRef).Stride)
}

// TestUnpickleDeepNesting: nesting costs no Go stack (the machine is
// iterative); only dict keys are walked recursively, and those are bounded.
func TestUnpickleDeepNesting(t *testing.T) {
	const depth = 200000
	p := newPk()
	for range depth {
		p.op(opMark)
	}
	for range depth {
		p.op(opTuple)
	}
	p.op(opStop)
	v, err := Unpickle(p.Bytes(), PickleOptions{})
	require.NoError(t, err)
	require.IsType(t, Tuple{}, v)

	// A list that contains itself.
	q := newPk().op(opEmptyList, opBinPut, 0, opBinGet, 0, opAppend, opStop)
	v, err = Unpickle(q.Bytes(), PickleOptions{})
	require.NoError(t, err)
	l := v.(*List)
	require.Same(t, l, l.Items[0].(*List))

	// A deeply nested tuple as a dict key.
	k := newPk().op(opEmptyDict, opNone)
	for range maxKeyDepth + 2 {
		k.op(opTuple1)
	}
	k.op(opNone, opSetItem, opStop)
	_, err = Unpickle(k.Bytes(), PickleOptions{})
	require.ErrorContains(t, err, "nested deeper")
}

// TestUnpickleKeyBudget: a tuple key doubling in size at every level
// ((x, x), then ((x, x), (x, x)), ...) re-used through the memo would cost
// exponential work to hash; the budget stops it.
func TestUnpickleKeyBudget(t *testing.T) {
	p := newPk().op(opEmptyDict).str(strings.Repeat("k", 1000))
	for range 30 {
		p.op(opDup, opTuple2)
	}
	p.op(opNone, opSetItem, opStop)
	_, err := Unpickle(p.Bytes(), PickleOptions{})
	require.ErrorContains(t, err, "too complex")
}

func TestDecodeLong(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int64
	}{
		{nil, 0}, {[]byte{0xff}, -1}, {[]byte{0x80}, -128}, {[]byte{0x7f}, 127},
		{[]byte{0x00, 0x80}, -32768}, {[]byte{0xff, 0x00}, 255},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0x80}, math.MinInt64},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, math.MaxInt64},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1}, // 9 bytes, still int64
	} {
		require.Equal(t, c.want, decodeLong(c.b), "% x", c.b)
	}
	x := decodeLong([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1}).(*big.Int)
	require.Equal(t, "18446744073709551616", x.String())
}

// FuzzPickle: Unpickle must never panic, whatever the input and options.
func FuzzPickle(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "pickle-*.pkl"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(stateDict(
		tensorSpec{name: "a", storageType: "FloatStorage", key: "0", numel: 6, size: []int64{2, 3}, stride: []int64{3, 1}},
		tensorSpec{name: "b", storageType: "LongStorage", key: "1", numel: 4, offset: 1, size: []int64{3}, stride: []int64{1}, param: true},
	))
	f.Add(newPk().global("os", "system").op(opMark).str("ls").op(opTuple, opReduce, opStop).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opaque := range []bool{false, true} {
			v, err := Unpickle(data, PickleOptions{AllowOpaque: opaque})
			if err == nil {
				_ = describe(v)
				_, _ = findStateDict(v)
			}
		}
	})
}
