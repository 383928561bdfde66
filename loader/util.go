package loader

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const maxInt = int(^uint(0) >> 1)

// byteSize returns the element count of shape and the byte length of a
// tensor of that shape and dtype (see DType.Bytes), failing on an invalid
// dtype, negative dimensions, int64 (or int) overflow and, for Q8_0, a row
// length that is not a whole number of blocks.
func byteSize(shape []int64, dt DType) (numel, nbytes int64, err error) {
	if !dt.Valid() {
		return 0, 0, fmt.Errorf("invalid dtype %v", dt)
	}
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, 0, fmt.Errorf("shape %v: negative dimension %d", shape, d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, 0, fmt.Errorf("shape %v: element count overflows int64", shape)
		}
		n = lo
	}
	// Bytes per unit and elements per unit: an element, or a Q8_0 block.
	per, unit := uint64(dt.Size()), uint64(1)
	if dt == Q8_0 {
		if len(shape) == 0 {
			return 0, 0, fmt.Errorf("shape %v: a %s tensor needs at least one dimension", shape, dt)
		}
		row := n // the only dimension of a vector
		if len(shape) > 1 {
			row = 1
			for _, d := range shape[1:] {
				// Wraps only when n is 0; the residue mod 32 is
				// still exact (32 divides 2^64).
				row *= uint64(d)
			}
		}
		if row%q8Block != 0 {
			return 0, 0, fmt.Errorf("shape %v: %s row length %d is not a multiple of %d", shape, dt, row, q8Block)
		}
		per, unit = q8BlockBytes, q8Block
	}
	hi, lo := bits.Mul64(n/unit, per)
	if hi != 0 || lo > math.MaxInt64 || lo > uint64(maxInt) {
		if dt == Q8_0 {
			return 0, 0, fmt.Errorf("shape %v: %d elements of %s overflow int", shape, n, dt)
		}
		return 0, 0, fmt.Errorf("shape %v: %d elements of %d bytes overflow int", shape, n, per)
	}
	return int64(n), int64(lo), nil
}

// intShape converts a checked shape to []int; dimensions fit because their
// product fits.
func intShape(shape []int64) []int {
	out := make([]int, len(shape))
	for i, d := range shape {
		out[i] = int(d)
	}
	return out
}

// int64Shape converts a Tensor's shape for byteSize.
func int64Shape(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}

// checkTensorData validates a tensor given to a writer.
func checkTensorData(t Tensor) error {
	_, n, err := byteSize(int64Shape(t.Shape), t.DType)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if n != int64(len(t.Data)) {
		return fmt.Errorf("tensor %q: %s %v needs %d bytes, got %d", t.Name, t.DType, t.Shape, n, len(t.Data))
	}
	return nil
}

// atomicFile is a temporary file next to its destination that becomes the
// destination on commit and disappears on abort.
type atomicFile struct {
	*os.File
	path string // destination
}

// TempInfix separates a destination's name from the writer's process id in
// the names of temporary files: "<name>.tmp-<pid>-<random>". A temporary
// file only outlives its writer when the writer is killed (SIGKILL, power
// loss); it is then never mistaken for the destination, is always safe to
// delete, and the next writer of the same destination on the same machine
// deletes it (see createAtomic).
const TempInfix = ".tmp-"

// createAtomic starts a temporary file for path in the same directory,
// first removing stale temporary files of the same destination: those whose
// writer process no longer exists.
func createAtomic(path string) (*atomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStaleTemps(dir, base)
	f, err := os.CreateTemp(dir, base+TempInfix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	return &atomicFile{File: f, path: path}, nil
}

// removeStaleTemps deletes the regular files "<base>.tmp-<pid>-<random>" in
// dir whose process <pid> has exited (checked on this machine; where that
// cannot be checked nothing is deleted). It is best effort: errors are
// ignored. A writer on another machine sharing the folder whose pid is
// free here could lose its temporary file; its commit then fails with an
// error, and no file is damaged.
func removeStaleTemps(dir, base string) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := base + TempInfix
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(name[len(prefix):], "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() || !processGone(pid) {
			continue
		}
		os.Remove(filepath.Join(dir, name))
	}
}

// commit fsyncs, closes and renames the temporary file over the
// destination; on failure it removes the temporary file.
func (a *atomicFile) commit() error {
	err := a.Chmod(0o644)
	if err == nil {
		err = a.Sync()
	}
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.Name())
		return fmt.Errorf("loader: %s: %w", a.path, err)
	}
	// Make the rename durable. Directories cannot be synced everywhere
	// (windows): failure here is not an error.
	if d, err := os.Open(filepath.Dir(a.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// abort closes and removes the temporary file.
func (a *atomicFile) abort() error {
	cerr := a.Close()
	rerr := os.Remove(a.Name())
	if errors.Is(cerr, os.ErrClosed) {
		cerr = nil
	}
	return errors.Join(cerr, rerr)
}
