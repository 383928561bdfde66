package convert

// TorchScript archives (torch.jit.save, such as OpenAI's ViT-L-14.pt) are
// read as data only. Their data.pkl pickles the module object tree: each
// module is a NEWOBJ of a compiled class in the "__torch__" namespace whose
// BUILD state is a dict of attributes (parameters and buffers as tensors,
// sub-modules as further objects, plus flags such as "training"). The
// classes are treated as plain attribute containers: the TorchScript code
// under code/ is never read, let alone interpreted.

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxModuleDepth bounds the nesting of a TorchScript module tree (CLIP's is
// five deep).
const maxModuleDepth = 64

// OpenTorchScript opens a TorchScript archive and serves every tensor
// attribute of its module tree under its state-dict key, the attribute
// path joined with dots (e.g. "transformer.resblocks.0.attn.in_proj_weight").
// Class names (which carry suffixes such as ___torch_mangle_22) are ignored;
// non-tensor attributes are skipped. The pickle may name only the tensor
// globals of the allow-list and classes of the "__torch__" namespace.
func OpenTorchScript(path string) (*TorchFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	tf, err := ParseTorchScript(f, fi.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	tf.closer = f
	return tf, nil
}

// ParseTorchScript reads a TorchScript archive of the given size from r, as
// OpenTorchScript does; name is used in errors. Close does not close r.
func ParseTorchScript(r io.ReaderAt, size int64, name string) (*TorchFile, error) {
	a, err := openTorchArchive(r, size, name)
	if err != nil {
		return nil, err
	}
	v, pklName, err := a.unpickle("data.pkl", PickleOptions{TorchScriptObjects: true})
	if err != nil {
		return nil, err
	}
	names, refs, err := moduleTensors(v)
	if err != nil {
		return nil, a.fail("%s: %v", pklName, err)
	}
	if len(names) == 0 {
		return nil, a.fail("%s: the module tree holds no tensors", pklName)
	}
	return a.torchFile(names, refs)
}

// moduleTensors lists the tensor attributes of a TorchScript module tree by
// attribute path. It walks iteratively, refuses a module reached twice
// (shared or cyclic) and trees deeper than maxModuleDepth.
func moduleTensors(root any) ([]string, []*TensorRef, error) {
	o, ok := root.(*Opaque)
	if !ok || !isTorchScriptModule(o.Global.Module) {
		return nil, nil, fmt.Errorf("top-level object is %s, want a TorchScript module (a __torch__.* object)", describe(root))
	}
	type item struct {
		path  string
		obj   *Opaque
		depth int
	}
	var names []string
	var refs []*TensorRef
	seen := map[*Opaque]bool{o: true}
	stack := []item{{"", o, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		where := it.path
		if where == "" {
			where = "the top-level module"
		}
		attrs, ok := it.obj.State.(*Dict)
		if !ok {
			return nil, nil, fmt.Errorf("%s (%s): attributes are %s, want a dict", where, it.obj.Global, describe(it.obj.State))
		}
		var subs []item
		for i, k := range attrs.Keys {
			key, ok := k.(string)
			if !ok {
				return nil, nil, fmt.Errorf("%s: attribute name %s is not a string", where, describe(k))
			}
			if key == "" || strings.Contains(key, ".") {
				return nil, nil, fmt.Errorf("%s: attribute name %q cannot be part of a key", where, key)
			}
			path := key
			if it.path != "" {
				path = it.path + "." + key
			}
			switch v := attrs.Values[i].(type) {
			case *TensorRef:
				names = append(names, path)
				refs = append(refs, v)
			case *Opaque:
				if !isTorchScriptModule(v.Global.Module) {
					continue // not a module (cannot occur without AllowOpaque)
				}
				if seen[v] {
					return nil, nil, fmt.Errorf("module %s is reached twice (shared or cyclic module tree)", path)
				}
				if it.depth+1 > maxModuleDepth {
					return nil, nil, fmt.Errorf("module %s is nested deeper than %d", path, maxModuleDepth)
				}
				seen[v] = true
				subs = append(subs, item{path, v, it.depth + 1})
			}
		}
		// Push in reverse so that sub-modules are visited in attribute order.
		for i := len(subs) - 1; i >= 0; i-- {
			stack = append(stack, subs[i])
		}
	}
	return names, refs, nil
}
