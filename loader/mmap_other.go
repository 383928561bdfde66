//go:build !unix

package loader

import (
	"fmt"
	"os"
)

// mapFile reads the whole file into memory: on targets without a unix mmap
// (windows among them) tensors are served from this copy instead of a
// mapping. unmap drops the reference.
func mapFile(path string) (data []byte, unmap func() error, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	if uint64(st.Size()) > uint64(maxInt) {
		return nil, nil, fmt.Errorf("%s: file size %d too large to read", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}
