package convert

// Pickle safety: checkpoints whose data.pkl would run code under Python's
// pickle are refused by name, and nothing runs. Each payload's command
// touches a marker file; the test checks the marker never appears.

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// hostilePayload pushes one value onto the pickle stack that, in Python,
// would run cmd (a shell command) while unpickling.
type hostilePayload struct {
	name string
	push func(p *pk, cmd string)
	want string // in the error
}

var hostilePayloads = []hostilePayload{
	{"os.system via GLOBAL", func(p *pk, cmd string) {
		p.global("os", "system").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "os.system" is not allowed`},
	{"posix.system via STACK_GLOBAL", func(p *pk, cmd string) {
		p.str("posix").str("system").op(opStackGlobal, opMark).str(cmd).op(opTuple, opReduce)
	}, `global "posix.system" is not allowed`},
	{"nt.system", func(p *pk, cmd string) {
		p.global("nt", "system").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "nt.system" is not allowed`},
	{"subprocess.Popen", func(p *pk, cmd string) {
		p.global("subprocess", "Popen").op(opMark, opEmptyList, opMark)
		for _, a := range strings.Fields(cmd) {
			p.str(a)
		}
		p.op(opAppends, opTuple, opReduce)
	}, `global "subprocess.Popen" is not allowed`},
	{"subprocess.run via NEWOBJ", func(p *pk, cmd string) {
		p.global("subprocess", "run").op(opMark).str(cmd).op(opTuple, opNewObj)
	}, `global "subprocess.run" is not allowed`},
	{"builtins.eval", func(p *pk, cmd string) {
		p.global("builtins", "eval").op(opMark).str("__import__('os').system("+pyQuote(cmd)+")").op(opTuple, opReduce)
	}, `global "builtins.eval" is not allowed`},
	{"builtins.exec", func(p *pk, cmd string) {
		p.global("builtins", "exec").op(opMark).str("import os; os.system("+pyQuote(cmd)+")").op(opTuple, opReduce)
	}, `global "builtins.exec" is not allowed`},
	{"__builtin__.eval (Python 2 name)", func(p *pk, cmd string) {
		p.global("__builtin__", "eval").op(opMark).str("__import__('os').system("+pyQuote(cmd)+")").op(opTuple, opReduce)
	}, `global "__builtin__.eval" is not allowed`},
	{"builtins.getattr(__import__('os'), 'system')(cmd)", func(p *pk, cmd string) {
		p.global("builtins", "getattr").op(opMark)
		p.global("builtins", "__import__").op(opMark).str("os").op(opTuple, opReduce)
		p.str("system").op(opTuple, opReduce)
		p.op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "builtins.getattr" is not allowed`},
	{"torch.load of a nested pickle", func(p *pk, cmd string) {
		p.global("torch", "load").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "torch.load" is not allowed`},
	{"look-alike: torch._utils._rebuild_tensor (v1)", func(p *pk, cmd string) {
		p.global("torch._utils", "_rebuild_tensor").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "torch._utils._rebuild_tensor" is not allowed`},
	{"look-alike: torch._tensor._rebuild_from_type_v2", func(p *pk, cmd string) {
		p.global("torch._tensor", "_rebuild_from_type_v2").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `global "torch._tensor._rebuild_from_type_v2" is not allowed`},
	{"look-alike: dotted name torch + _utils._rebuild_tensor_v2", func(p *pk, cmd string) {
		p.str("torch").str("_utils._rebuild_tensor_v2").op(opStackGlobal, opMark).str(cmd).op(opTuple, opReduce)
	}, `global "torch._utils._rebuild_tensor_v2" is not allowed`},
	{"look-alike: 'collections ' with a space", func(p *pk, cmd string) {
		p.str("collections ").str("OrderedDict").op(opStackGlobal, opMark).str(cmd).op(opTuple, opReduce)
	}, `global "collections .OrderedDict" is not allowed`},
	{"newline-injected STACK_GLOBAL name", func(p *pk, cmd string) {
		p.str("collections").str("OrderedDict\nos\nsystem").op(opStackGlobal, opMark).str(cmd).op(opTuple, opReduce)
	}, `is not allowed`},
	{"newline-injected GLOBAL: extra lines run as opcodes", func(p *pk, cmd string) {
		p.WriteString("ccollections\nOrderedDict\nos\nsystem\n")
		p.op(opMark).str(cmd).op(opTuple, opReduce)
	}, `OBJ: unsupported opcode`},
	{"NUL in the module name", func(p *pk, cmd string) {
		p.str("collections\x00os").str("OrderedDict").op(opStackGlobal, opMark).str(cmd).op(opTuple, opReduce)
	}, `is not allowed`},
	{"REDUCE on an allowed global that is not callable", func(p *pk, cmd string) {
		p.global("torch", "FloatStorage").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `cannot call torch.FloatStorage`},
	{"REDUCE on an allowed callable with a command", func(p *pk, cmd string) {
		p.global("collections", "OrderedDict").op(opMark).str(cmd).op(opTuple, opReduce)
	}, `OrderedDict argument is str`},
	{"INST opcode", func(p *pk, cmd string) {
		p.op(opMark).str(cmd)
		p.WriteString("ios\nsystem\n")
	}, `INST: unsupported opcode`},
	{"OBJ opcode on an allowed class", func(p *pk, cmd string) {
		p.op(opMark).global("collections", "OrderedDict").str(cmd).op('o')
	}, `OBJ: unsupported opcode`},
	{"EXT1 extension registry", func(p *pk, cmd string) {
		p.op(0x82, 1).op(opMark).str(cmd).op(opTuple, opReduce)
	}, `EXT1: unsupported opcode`},
	{"NEWOBJ_EX", func(p *pk, cmd string) {
		p.global("collections", "OrderedDict").op(opEmptyTuple, opEmptyDict, 0x92)
	}, `NEWOBJ_EX: unsupported opcode`},
	{"text PERSID", func(p *pk, cmd string) {
		p.WriteString("P" + cmd + "\n")
	}, `PERSID: unsupported opcode`},
	{"persistent id naming os.system", func(p *pk, cmd string) {
		p.op(opMark).str("os.system").str(cmd).op(opTuple, opBinPersID)
	}, `is not a torch storage`},
	{"BUILD (__setstate__) on a global", func(p *pk, cmd string) {
		p.global("collections", "OrderedDict").op(opMark).str(cmd).op(opTuple, opBuild)
	}, `cannot set state of global collections.OrderedDict`},
}

// pyQuote quotes s as a Python string literal (enough for file paths).
func pyQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

// hostileCheckpoint is a complete torch.save archive of a state dict
// {"w": tensor, "evil": payload}: as torch.load would see it.
func hostileCheckpoint(t testing.TB, hp hostilePayload, cmd string) []byte {
	p := newPk().global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark)
	p.str("w").tensor(tensorSpec{storageType: "FloatStorage", key: "0", numel: 2, size: []int64{2}, stride: []int64{1}})
	p.str("evil")
	hp.push(p, cmd)
	p.op(opSetItems, opStop)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []zipEntry{
		{name: "archive/data.pkl", data: p.Bytes()},
		{name: "archive/byteorder", data: []byte("little")},
		{name: "archive/data/0", data: f32Bytes(1, 2)},
		{name: "archive/version", data: []byte("3\n")},
	} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestRobustPickleHostileCheckpoints feeds each payload through
// ReadTorchFile (strict) and OpenTorch with AllowOpaque: refused, naming
// the file, and the payload's command never ran.
func TestRobustPickleHostileCheckpoints(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	cmd := "touch " + marker
	for _, hp := range hostilePayloads {
		t.Run(hp.name, func(t *testing.T) {
			path := filepath.Join(dir, "evil.bin")
			require.NoError(t, os.WriteFile(path, hostileCheckpoint(t, hp, cmd), 0o644))
			ts, err := ReadTorchFile(path)
			require.Error(t, err)
			require.Nil(t, ts)
			require.ErrorContains(t, err, hp.want)
			require.True(t, strings.HasPrefix(err.Error(), "convert: "+path+": "), err.Error())

			// Lenient mode (Lightning checkpoints) turns unknown globals
			// into inert placeholders: the state dict still has a
			// non-tensor entry, so the file is refused all the same.
			_, err = OpenTorch(path, PickleOptions{AllowOpaque: true})
			require.Error(t, err)
			require.NoFileExists(t, marker, "the payload ran")
		})
	}
	// The classic protocol-0 exploit as a whole data.pkl.
	classic := []byte("cos\nsystem\n(S'" + cmd + "'\ntR.")
	_, err := Unpickle(classic, PickleOptions{})
	require.ErrorContains(t, err, `pickle: offset 0: GLOBAL: global "os.system" is not allowed`)
	require.NoFileExists(t, marker)
}

// TestRobustPickleHostileConvert runs Convert on a diffusers folder whose
// text_proj weights are a hostile checkpoint: refused, naming the file; no
// output, no temporary file, and the payload never ran.
func TestRobustPickleHostileConvert(t *testing.T) {
	g := goldenDir(t)
	for _, hp := range []hostilePayload{hostilePayloads[0], hostilePayloads[1], hostilePayloads[8]} {
		t.Run(hp.name, func(t *testing.T) {
			tmp := t.TempDir()
			marker := filepath.Join(tmp, "pwned")
			dir := filepath.Join(tmp, "p")
			linkTree(t, filepath.Join(g, "tiny-unclip"), dir, func(rel string) bool {
				return rel == filepath.Join("text_proj", "diffusion_pytorch_model.safetensors")
			})
			bin := filepath.Join(dir, "text_proj", "diffusion_pytorch_model.bin")
			require.NoError(t, os.WriteFile(bin, hostileCheckpoint(t, hp, "touch "+marker), 0o644))
			outDir := filepath.Join(tmp, "out")
			require.NoError(t, os.Mkdir(outDir, 0o755))
			_, err := Convert(dir, filepath.Join(outDir, "out.d2"), Options{})
			require.ErrorContains(t, err, bin)
			require.ErrorContains(t, err, hp.want)
			left, err := os.ReadDir(outDir)
			require.NoError(t, err)
			require.Empty(t, left, "no output or temporary file may remain")
			require.NoFileExists(t, marker, "the payload ran")
		})
	}
}
