package convert

// A pickle reader for the subset torch.save writes (spec §14): protocol 2
// plus the protocol-4 framing opcodes. It is a data parser, not an
// interpreter: nothing named by the pickle is ever imported or called.
// Globals are checked against an allow-list when they are pushed, and the
// few allowed callables (OrderedDict, the tensor rebuilders) are evaluated
// here in Go. The machine is iterative, so nesting in the input cannot
// exhaust the Go stack; every length is checked against the remaining input
// before anything is allocated.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/dalle2/dalle2/loader"
)

// PickleOptions configures Unpickle.
type PickleOptions struct {
	// AllowOpaque turns globals that are not on the allow-list into opaque
	// placeholders (Global values with Opaque set) instead of an error, and
	// makes REDUCE, NEWOBJ and BUILD on them produce *Opaque values. It is
	// meant for Lightning-style .ckpt files, whose pickles name optimizer and
	// hyper-parameter classes next to the "state_dict" one wants. Nothing
	// named is imported or run either way. Off by default: a .bin state dict
	// that names anything but the tensor-rebuilding globals is refused.
	AllowOpaque bool
	// TorchScriptObjects accepts the globals of TorchScript's "__torch__"
	// module tree (the compiled module classes of a torch.jit.save
	// archive's data.pkl, such as __torch__.clip.model.CLIP or
	// __torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d) as opaque
	// placeholders, as AllowOpaque does for every global: NEWOBJ makes an
	// *Opaque whose BUILD state holds the module's attributes. Every other
	// global stays subject to the allow-list. Nothing is imported or run.
	TorchScriptObjects bool
}

// Global is a module-level name pushed by GLOBAL or STACK_GLOBAL.
type Global struct {
	Module, Name string
	// Opaque is set for a global outside the allow-list, accepted only
	// because PickleOptions.AllowOpaque was set.
	Opaque bool
}

// String is "module.name", as Python would print the qualified name.
func (g Global) String() string { return g.Module + "." + g.Name }

// Tuple is a pickled tuple.
type Tuple []any

// List is a pickled list (a pointer, since APPEND mutates it after it may
// have been memoized).
type List struct{ Items []any }

// Dict is a pickled dict or collections.OrderedDict, in insertion order.
// Keys are strings, int64, *big.Int, float64, bool, nil, []byte, Tuple or
// Global values (those Python can hash).
type Dict struct {
	Keys, Values []any
	// Ordered is set for a collections.OrderedDict.
	Ordered bool
	// State is the BUILD argument applied to the dict, if any (torch
	// stores the state dict's "_metadata" attribute this way). It is kept,
	// not interpreted.
	State any

	index map[string]int
}

// Len is the number of entries.
func (d *Dict) Len() int { return len(d.Keys) }

// Get returns the value stored under a string key.
func (d *Dict) Get(key string) (any, bool) {
	if d.index == nil {
		return nil, false
	}
	i, ok := d.index["s"+key]
	if !ok {
		return nil, false
	}
	return d.Values[i], true
}

// Storage is a torch storage referenced by a persistent id
// ('storage', torch.<Type>Storage, key, location, numel).
type Storage struct {
	Key      string       // entry name under "data/" in the zip archive
	Type     string       // storage class name, e.g. "FloatStorage"
	DType    loader.DType // element type
	Location string       // device it was saved from, e.g. "cpu", "cuda:0"
	Numel    int64        // elements in the storage
}

// TensorRef is a tensor rebuilt by torch._utils._rebuild_tensor_v2: a view
// of Storage. Element (i0, i1, ...) is storage element
// Offset + Σ ik·Stride[k]. Nothing is checked against the storage here.
type TensorRef struct {
	Storage      *Storage
	Offset       int64   // storage_offset, in elements
	Size         []int64 // shape
	Stride       []int64 // in elements, one per dimension
	RequiresGrad bool
}

// Opaque is the placeholder for calling or instantiating a global outside
// the allow-list (only with PickleOptions.AllowOpaque).
type Opaque struct {
	Global Global
	Args   any    // the argument tuple, or the persistent id for Kind "persid"
	Kind   string // "reduce", "newobj" or "persid"
	State  any    // BUILD argument, if any
	Items  *Dict  // SETITEM(S) applied to it (dict subclasses)
	List   []any  // APPEND(S) applied to it (list subclasses)
}

// PickleError is an error at a definite place in a pickle stream.
type PickleError struct {
	Offset int    // byte offset of the opcode
	Op     string // opcode name, "" if the error is not about one opcode
	Msg    string
}

func (e *PickleError) Error() string {
	if e.Op == "" {
		return fmt.Sprintf("pickle: offset %d: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("pickle: offset %d: %s: %s", e.Offset, e.Op, e.Msg)
}

// Pickle opcodes (the subset read here, plus a few named only in errors).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opBinFloat       = 'G'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinString      = 'T'
	opShortBinString = 'U'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opSetItems       = 'u'
	opEmptyDict      = '}'
	opEmptyTuple     = ')'
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

var opNames = map[byte]string{
	opMark: "MARK", opStop: "STOP", opPop: "POP", opPopMark: "POP_MARK", opDup: "DUP",
	opBinFloat: "BINFLOAT", opBinInt: "BININT", opBinInt1: "BININT1", opBinInt2: "BININT2",
	opNone: "NONE", opBinPersID: "BINPERSID", opReduce: "REDUCE", opBinString: "BINSTRING",
	opShortBinString: "SHORT_BINSTRING", opBinUnicode: "BINUNICODE", opAppend: "APPEND",
	opBuild: "BUILD", opGlobal: "GLOBAL", opAppends: "APPENDS", opBinGet: "BINGET",
	opLongBinGet: "LONG_BINGET", opEmptyList: "EMPTY_LIST", opBinPut: "BINPUT",
	opLongBinPut: "LONG_BINPUT", opSetItem: "SETITEM", opTuple: "TUPLE", opSetItems: "SETITEMS",
	opEmptyDict: "EMPTY_DICT", opEmptyTuple: "EMPTY_TUPLE", opBinBytes: "BINBYTES",
	opShortBinBytes: "SHORT_BINBYTES", opProto: "PROTO", opNewObj: "NEWOBJ", opTuple1: "TUPLE1",
	opTuple2: "TUPLE2", opTuple3: "TUPLE3", opNewTrue: "NEWTRUE", opNewFalse: "NEWFALSE",
	opLong1: "LONG1", opLong4: "LONG4", opShortBinUni: "SHORT_BINUNICODE",
	opBinUnicode8: "BINUNICODE8", opBinBytes8: "BINBYTES8", opStackGlobal: "STACK_GLOBAL",
	opMemoize: "MEMOIZE", opFrame: "FRAME",
	// Not supported; named so the error is readable.
	'P': "PERSID", 'I': "INT", 'L': "LONG", 'F': "FLOAT", 'S': "STRING", 'V': "UNICODE",
	'g': "GET", 'p': "PUT", 'i': "INST", 'o': "OBJ", 'l': "LIST", 'd': "DICT",
	0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS",
	0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
	0x98: "READONLY_BUFFER",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("opcode 0x%02x", op)
}

// storageTypes maps torch storage classes to element types.
var storageTypes = map[string]loader.DType{
	"FloatStorage":    loader.F32,
	"HalfStorage":     loader.F16,
	"BFloat16Storage": loader.BF16,
	"DoubleStorage":   loader.F64,
	"LongStorage":     loader.I64,
	"IntStorage":      loader.I32,
	"ShortStorage":    loader.I16,
	"CharStorage":     loader.I8,
	"ByteStorage":     loader.U8,
	"BoolStorage":     loader.Bool,
}

// Callable globals on the allow-list, evaluated in Go by REDUCE/NEWOBJ.
const (
	gOrderedDict           = "collections.OrderedDict"
	gRebuildTensorV2       = "torch._utils._rebuild_tensor_v2"
	gRebuildParameter      = "torch._utils._rebuild_parameter"
	gRebuildParamWithSt    = "torch._utils._rebuild_parameter_with_state"
	maxKeyDepth            = 32 // nesting of tuple dict keys
	maxRank                = 64 // dimensions of a rebuilt tensor
	minWorkBudget          = 1 << 20
	workBudgetPerInputByte = 16
)

// allowedGlobal reports whether module.name may appear in a pickle we read.
// Exact matches only: the list is the whole policy.
func allowedGlobal(module, name string) bool {
	if strings.Contains(name, ".") {
		// A dotted name would let module "torch" + name
		// "_utils._rebuild_tensor_v2" pass for the allowed pair: the
		// allow-list holds (module, name) pairs, not their concatenation.
		return false
	}
	switch module + "." + name {
	case gOrderedDict, gRebuildTensorV2, gRebuildParameter, gRebuildParamWithSt:
		return true
	}
	if module == "torch" {
		_, ok := storageTypes[name]
		return ok
	}
	return false
}

// unpickler is the machine state. meta holds the stacks saved by MARK
// (Python's metastack): items above a mark live in a fresh stack, so no pop
// can reach below the mark.
type unpickler struct {
	data   []byte
	pos    int
	opPos  int
	op     byte
	opt    PickleOptions
	stack  []any
	meta   [][]any
	memo   map[uint32]any
	budget int // work left for key hashing
}

// Unpickle reads one pickle from data and returns its value: nil, bool,
// int64 or *big.Int, float64, string, []byte, Tuple, *List, *Dict, Global,
// *Storage, *TensorRef or (with AllowOpaque) *Opaque. Bytes after STOP are
// ignored. Values may share structure and may even be cyclic (a list
// appended to itself), so walk them with care and never format them with %v.
//
// Any global outside the allow-list (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, _rebuild_parameter,
// _rebuild_parameter_with_state and the torch.*Storage classes) is an error
// naming it and its offset, unless opt.AllowOpaque is set. Unpickle never
// panics on bad input.
func Unpickle(data []byte, opt PickleOptions) (any, error) {
	u := &unpickler{
		data:   data,
		opt:    opt,
		memo:   map[uint32]any{},
		budget: minWorkBudget + workBudgetPerInputByte*len(data),
	}
	if len(data) > math.MaxInt/workBudgetPerInputByte-minWorkBudget {
		u.budget = math.MaxInt
	}
	return u.run()
}

func (u *unpickler) errf(format string, args ...any) error {
	return &PickleError{Offset: u.opPos, Op: opName(u.op), Msg: fmt.Sprintf(format, args...)}
}

// read returns the next n bytes (n checked against what is left).
func (u *unpickler) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.errf("needs %d bytes, %d left (truncated or corrupt pickle)", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) readUint(n int) (uint64, error) {
	b, err := u.read(uint64(n))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// readLine reads up to and excluding the next '\n' (which must exist).
func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.errf("unterminated line (truncated pickle)")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 {
		return nil, u.errf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack[len(u.stack)-1] = nil
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 {
		return nil, u.errf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and restores the
// stack from before it.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.meta) == 0 {
		return nil, u.errf("no MARK on the stack")
	}
	items := u.stack
	u.stack = u.meta[len(u.meta)-1]
	u.meta[len(u.meta)-1] = nil
	u.meta = u.meta[:len(u.meta)-1]
	return items, nil
}

func (u *unpickler) run() (any, error) {
	for {
		if u.pos >= len(u.data) {
			u.opPos, u.op = u.pos, 0
			return nil, &PickleError{Offset: u.pos, Msg: "end of data before STOP (truncated pickle)"}
		}
		u.opPos = u.pos
		u.op = u.data[u.pos]
		u.pos++
		if u.op == opStop {
			return u.pop()
		}
		if err := u.step(); err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) step() error {
	switch u.op {
	case opProto:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		if v < 2 || v > 5 {
			return u.errf("unsupported protocol %d", v)
		}
	case opFrame:
		if _, err := u.readUint(8); err != nil {
			return err
		}
	case opMark:
		u.meta = append(u.meta, u.stack)
		u.stack = nil
	case opPop:
		if len(u.stack) > 0 {
			_, err := u.pop()
			return err
		}
		_, err := u.popMark()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)

	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		v, err := u.readUint(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opBinInt2:
		v, err := u.readUint(2)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opLong1, opLong4:
		width := 1
		if u.op == opLong4 {
			width = 4
		}
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		if u.op == opLong4 && int32(uint32(n)) < 0 {
			return u.errf("negative length")
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(decodeLong(b))
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))

	case opShortBinUni, opBinUnicode, opBinUnicode8, opShortBinString, opBinString:
		var width int
		switch u.op {
		case opShortBinUni, opShortBinString:
			width = 1
		case opBinUnicode8:
			width = 8
		default:
			width = 4
		}
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		if u.op == opBinString && int32(uint32(n)) < 0 {
			return u.errf("negative length")
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(string(b))
	case opShortBinBytes, opBinBytes, opBinBytes8:
		width := 4
		if u.op == opShortBinBytes {
			width = 1
		} else if u.op == opBinBytes8 {
			width = 8
		}
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(append([]byte(nil), b...))

	case opEmptyTuple:
		u.push(Tuple{})
	case opEmptyList:
		u.push(&List{})
	case opEmptyDict:
		u.push(&Dict{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(Tuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(u.op-opTuple1) + 1
		if len(u.stack) < n {
			return u.errf("stack underflow")
		}
		t := make(Tuple, n)
		copy(t, u.stack[len(u.stack)-n:])
		clear(u.stack[len(u.stack)-n:])
		u.stack = u.stack[:len(u.stack)-n]
		u.push(t)

	case opBinPut, opLongBinPut:
		width := 1
		if u.op == opLongBinPut {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[uint32(i)] = v
	case opMemoize:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[uint32(len(u.memo))] = v
	case opBinGet, opLongBinGet:
		width := 1
		if u.op == opLongBinGet {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		v, ok := u.memo[uint32(i)]
		if !ok {
			return u.errf("memo key %d not found", i)
		}
		u.push(v)

	case opGlobal:
		module, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		return u.pushGlobal(module, name)
	case opStackGlobal:
		nv, err := u.pop()
		if err != nil {
			return err
		}
		mv, err := u.pop()
		if err != nil {
			return err
		}
		module, ok1 := mv.(string)
		name, ok2 := nv.(string)
		if !ok1 || !ok2 {
			return u.errf("module and name must be strings, got %s and %s", describe(mv), describe(nv))
		}
		return u.pushGlobal(module, name)

	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.persistentLoad(pid)
		if err != nil {
			return err
		}
		u.push(v)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.call(fn, args, "reduce")
		if err != nil {
			return err
		}
		u.push(v)
	case opNewObj:
		args, err := u.pop()
		if err != nil {
			return err
		}
		cls, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.call(cls, args, "newobj")
		if err != nil {
			return err
		}
		u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		switch o := obj.(type) {
		case *Dict:
			o.State = state
		case *Opaque:
			o.State = state
		default:
			return u.errf("cannot set state of %s", describe(obj))
		}

	case opSetItem:
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		return u.setItems([]any{k, v})
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return u.errf("odd number of items (%d)", len(items))
		}
		return u.setItems(items)
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendItems([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendItems(items)

	default:
		return u.errf("unsupported opcode 0x%02x", u.op)
	}
	return nil
}

func (u *unpickler) pushGlobal(module, name string) error {
	if allowedGlobal(module, name) {
		u.push(Global{Module: module, Name: name})
		return nil
	}
	if u.opt.AllowOpaque || (u.opt.TorchScriptObjects && isTorchScriptModule(module)) {
		u.push(Global{Module: module, Name: name, Opaque: true})
		return nil
	}
	if module == "torch" && strings.HasSuffix(name, "Storage") {
		return u.errf("global %q is not allowed: unknown storage type (known: torch.FloatStorage, HalfStorage, "+
			"BFloat16Storage, DoubleStorage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage)",
			module+"."+name)
	}
	return u.errf("global %q is not allowed: a checkpoint may only name "+
		"collections.OrderedDict, the torch._utils tensor rebuilders and torch.*Storage "+
		"classes (nothing in a checkpoint is ever executed)", module+"."+name)
}

// isTorchScriptModule reports whether module is TorchScript's "__torch__"
// namespace of compiled classes.
func isTorchScriptModule(module string) bool {
	return module == "__torch__" || strings.HasPrefix(module, "__torch__.")
}

// persistentLoad resolves a BINPERSID id. torch.save's ids are
// ('storage', torch.<T>Storage, key, location, numel).
func (u *unpickler) persistentLoad(pid any) (any, error) {
	t, ok := pid.(Tuple)
	if !ok || len(t) == 0 || t[0] != "storage" {
		if u.opt.AllowOpaque {
			return &Opaque{Kind: "persid", Args: pid}, nil
		}
		return nil, u.errf("persistent id %s is not a torch storage", describe(pid))
	}
	if len(t) != 5 {
		return nil, u.errf("storage id has %d fields, want 5", len(t))
	}
	g, ok := t[1].(Global)
	if !ok {
		return nil, u.errf("storage type is %s, want a torch.*Storage global", describe(t[1]))
	}
	dt, ok := storageTypes[g.Name]
	if g.Module != "torch" || !ok {
		return nil, u.errf("unknown storage type %s", g)
	}
	key, ok := t[2].(string)
	if !ok {
		return nil, u.errf("storage key is %s, want a string", describe(t[2]))
	}
	loc, ok := t[3].(string)
	if !ok {
		return nil, u.errf("storage location is %s, want a string", describe(t[3]))
	}
	n, ok := t[4].(int64)
	if !ok || n < 0 {
		return nil, u.errf("storage size is %s, want a non-negative int", describe(t[4]))
	}
	return &Storage{Key: key, Type: g.Name, DType: dt, Location: loc, Numel: n}, nil
}

// call evaluates REDUCE (kind "reduce") or NEWOBJ ("newobj") of fn on args,
// for the allow-listed callables only.
func (u *unpickler) call(fn, args any, kind string) (any, error) {
	g, ok := fn.(Global)
	if !ok {
		return nil, u.errf("cannot call %s", describe(fn))
	}
	a, ok := args.(Tuple)
	if !ok {
		return nil, u.errf("arguments of %s are %s, want a tuple", g, describe(args))
	}
	if g.Opaque {
		return &Opaque{Global: g, Args: a, Kind: kind}, nil
	}
	switch g.String() {
	case gOrderedDict:
		d := &Dict{Ordered: true}
		switch len(a) {
		case 0:
		case 1:
			var pairs []any
			switch p := a[0].(type) {
			case *List:
				pairs = p.Items
			case Tuple:
				pairs = p
			default:
				return nil, u.errf("OrderedDict argument is %s, want a list of pairs", describe(a[0]))
			}
			for _, p := range pairs {
				kv, ok := p.(Tuple)
				if !ok || len(kv) != 2 {
					return nil, u.errf("OrderedDict item is %s, want a pair", describe(p))
				}
				if err := u.dictSet(d, kv[0], kv[1]); err != nil {
					return nil, err
				}
			}
		default:
			return nil, u.errf("OrderedDict with %d arguments", len(a))
		}
		return d, nil
	case gRebuildTensorV2:
		if kind != "reduce" {
			break
		}
		return u.rebuildTensor(a)
	case gRebuildParameter, gRebuildParamWithSt:
		if kind != "reduce" {
			break
		}
		want := 3
		if g.Name == "_rebuild_parameter_with_state" {
			want = 4
		}
		if len(a) != want {
			return nil, u.errf("%s with %d arguments, want %d", g, len(a), want)
		}
		t, ok := a[0].(*TensorRef)
		if !ok {
			return nil, u.errf("%s of %s, want a tensor", g, describe(a[0]))
		}
		if rg, ok := a[1].(bool); ok {
			t.RequiresGrad = rg
		}
		return t, nil
	}
	return nil, u.errf("cannot call %s", g)
}

// rebuildTensor evaluates _rebuild_tensor_v2(storage, storage_offset, size,
// stride, requires_grad, backward_hooks[, metadata]).
func (u *unpickler) rebuildTensor(a Tuple) (any, error) {
	if len(a) != 6 && len(a) != 7 {
		return nil, u.errf("_rebuild_tensor_v2 with %d arguments, want 6 or 7", len(a))
	}
	st, ok := a[0].(*Storage)
	if !ok {
		return nil, u.errf("tensor storage is %s, want a persistent storage", describe(a[0]))
	}
	off, ok := a[1].(int64)
	if !ok || off < 0 {
		return nil, u.errf("storage offset is %s, want a non-negative int", describe(a[1]))
	}
	size, err := u.intTuple(a[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := u.intTuple(a[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(size) != len(stride) {
		return nil, u.errf("size has %d dimensions, stride %d", len(size), len(stride))
	}
	rg, _ := a[4].(bool)
	return &TensorRef{Storage: st, Offset: off, Size: size, Stride: stride, RequiresGrad: rg}, nil
}

func (u *unpickler) intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(Tuple)
	if !ok {
		return nil, u.errf("tensor %s is %s, want a tuple", what, describe(v))
	}
	if len(t) > maxRank {
		return nil, u.errf("tensor %s has %d dimensions (at most %d)", what, len(t), maxRank)
	}
	out := make([]int64, len(t))
	for i, e := range t {
		n, ok := e.(int64)
		if !ok || n < 0 {
			return nil, u.errf("tensor %s[%d] is %s, want a non-negative int", what, i, describe(e))
		}
		out[i] = n
	}
	return out, nil
}

func (u *unpickler) setItems(kv []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	var d *Dict
	switch o := target.(type) {
	case *Dict:
		d = o
	case *Opaque:
		if o.Items == nil {
			o.Items = &Dict{}
		}
		d = o.Items
	default:
		return u.errf("cannot set items of %s", describe(target))
	}
	for i := 0; i < len(kv); i += 2 {
		if err := u.dictSet(d, kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (u *unpickler) appendItems(items []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	switch o := target.(type) {
	case *List:
		o.Items = append(o.Items, items...)
	case *Opaque:
		o.List = append(o.List, items...)
	default:
		return u.errf("cannot append to %s", describe(target))
	}
	return nil
}

func (u *unpickler) dictSet(d *Dict, k, v any) error {
	var sb strings.Builder
	if err := u.hashKey(&sb, k, 0); err != nil {
		return err
	}
	h := sb.String()
	if d.index == nil {
		d.index = map[string]int{}
	}
	if i, ok := d.index[h]; ok {
		d.Values[i] = v
		return nil
	}
	d.index[h] = len(d.Keys)
	d.Keys = append(d.Keys, k)
	d.Values = append(d.Values, v)
	return nil
}

// hashKey writes an encoding of a hashable key that is equal for keys
// Python considers equal (True == 1 == 1.0). Work is charged to the budget so
// that hostile pickles (huge keys re-used through the memo, tuples nested in
// tuples) cannot make it quadratic or exponential.
func (u *unpickler) hashKey(sb *strings.Builder, k any, depth int) error {
	if depth > maxKeyDepth {
		return u.errf("dict key nested deeper than %d", maxKeyDepth)
	}
	u.budget--
	if u.budget < 0 {
		return u.errf("pickle too complex (dict keys)")
	}
	switch v := k.(type) {
	case string:
		u.budget -= len(v)
		if u.budget < 0 {
			return u.errf("pickle too complex (dict keys)")
		}
		sb.WriteString("s")
		sb.WriteString(v)
	case []byte:
		u.budget -= len(v)
		if u.budget < 0 {
			return u.errf("pickle too complex (dict keys)")
		}
		sb.WriteString("b")
		sb.Write(v)
	case nil:
		sb.WriteString("n")
	case bool:
		if v {
			sb.WriteString("i1")
		} else {
			sb.WriteString("i0")
		}
	case int64:
		sb.WriteString("i")
		sb.WriteString(strconv.FormatInt(v, 10))
	case *big.Int:
		s := v.String()
		u.budget -= len(s)
		if u.budget < 0 {
			return u.errf("pickle too complex (dict keys)")
		}
		sb.WriteString("i")
		sb.WriteString(s)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<63 {
			sb.WriteString("i")
			sb.WriteString(strconv.FormatInt(int64(v), 10))
		} else {
			sb.WriteString("f")
			sb.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
	case Global:
		sb.WriteString("g")
		sb.WriteString(strconv.Quote(v.Module))
		sb.WriteString(strconv.Quote(v.Name))
	case Tuple:
		sb.WriteString("t")
		sb.WriteString(strconv.Itoa(len(v)))
		sb.WriteString("(")
		for _, e := range v {
			var inner strings.Builder
			if err := u.hashKey(&inner, e, depth+1); err != nil {
				return err
			}
			u.budget -= inner.Len()
			if u.budget < 0 {
				return u.errf("pickle too complex (dict keys)")
			}
			sb.WriteString(strconv.Itoa(inner.Len()))
			sb.WriteString(":")
			sb.WriteString(inner.String())
		}
		sb.WriteString(")")
	default:
		return u.errf("unhashable dict key %s", describe(k))
	}
	return nil
}

// decodeLong decodes a little-endian two's-complement integer (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(v<<shift) >> shift // sign-extend
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	x := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if x.IsInt64() {
		return x.Int64()
	}
	return x
}

// describe names a value's type (and shows short scalars) for error
// messages, without recursing into containers (which may be cyclic).
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return "int " + strconv.FormatInt(x, 10)
	case *big.Int:
		return "big int"
	case float64:
		return "float " + strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return "str " + strconv.Quote(x)
	case []byte:
		return fmt.Sprintf("bytes (%d)", len(x))
	case Tuple:
		return fmt.Sprintf("tuple (%d items)", len(x))
	case *List:
		return fmt.Sprintf("list (%d items)", len(x.Items))
	case *Dict:
		if x.Ordered {
			return fmt.Sprintf("OrderedDict (%d items)", x.Len())
		}
		return fmt.Sprintf("dict (%d items)", x.Len())
	case Global:
		return "global " + x.String()
	case *Storage:
		return "storage " + x.Type
	case *TensorRef:
		return "tensor"
	case *Opaque:
		if x.Kind == "persid" {
			return "opaque persistent object"
		}
		return "opaque " + x.Global.String() + " object"
	}
	return fmt.Sprintf("%T", v)
}
