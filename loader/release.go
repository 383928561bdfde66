package loader

import (
	"cmp"
	"os"
	"slices"
	"strings"
)

// Release tells the operating system that the stored tensors of component
// are not needed for now, so that they stop counting in the process's
// resident memory: on unix, the pages of the memory map that hold only
// that component's tensors (the range of each run of its tensors, rounded
// inwards to whole pages, so that no other component's page is touched)
// are dropped with madvise(MADV_DONTNEED). The data stays valid: reading
// it again faults the pages back in from the file (usually still in the
// page cache), so Release is safe even while tensors of component are in
// use; it only makes their next read slower.
//
// Tensor decompresses zstd tensors on every call and caches nothing, so
// there is no other memory to drop. Where the file is not memory-mapped
// (OpenBytes, targets without unix mmap) Release does nothing.
func (f *File) Release(component string) error {
	if f.closed {
		return f.errorf("release %q: file is closed", component)
	}
	if _, ok := f.Component(component); !ok {
		return f.errorf("release: no component %q", component)
	}
	return f.releasePrefix(component + "/")
}

// ReleasePrefix is Release for the stored tensors whose names begin with
// prefix, a component and a module of it such as
// "super_res_first/up_blocks.0." (the trailing dot keeps "up_blocks.1"
// from matching "up_blocks.10"): the pages that hold only such tensors are
// dropped. A model running in low-memory mode calls it after each block,
// so that only the weights of the block running are resident; the next
// pass faults them back in from the page cache. A prefix that matches no
// tensor releases nothing.
func (f *File) ReleasePrefix(prefix string) error {
	if f.closed {
		return f.errorf("release %q: file is closed", prefix)
	}
	return f.releasePrefix(prefix)
}

func (f *File) releasePrefix(prefix string) error {
	if f.unmap == nil || len(f.data) == 0 {
		return nil // not a memory map (OpenBytes)
	}
	for _, r := range f.releaseRanges(prefix, os.Getpagesize()) {
		if err := releasePages(f.data[r[0]:r[1]]); err != nil {
			return f.errorf("release %q: bytes [%d, %d): %v", prefix, r[0], r[1], err)
		}
	}
	return nil
}

// releaseRanges returns the page-aligned byte ranges [start, end) of f's
// data that hold only tensors whose names begin with prefix: each maximal
// run of them, in file order with no other tensor or blob in between,
// rounded inwards to multiples of page.
func (f *File) releaseRanges(prefix string, page int) [][2]int64 {
	type region struct {
		off, end int64
		mine     bool
	}
	regions := make([]region, 0, len(f.tensors)+len(f.blobs))
	for _, t := range f.tensors {
		regions = append(regions, region{t.Offset, t.Offset + t.Size, strings.HasPrefix(t.Name, prefix)})
	}
	for _, b := range f.blobs {
		regions = append(regions, region{b.Offset, b.Offset + b.Size, false})
	}
	slices.SortFunc(regions, func(a, b region) int { return cmp.Compare(a.off, b.off) })
	var out [][2]int64
	p := int64(page)
	flush := func(start, end int64) {
		start = (start + p - 1) / p * p
		end = end / p * p
		if end > start {
			out = append(out, [2]int64{start, end})
		}
	}
	inRun := false
	var start, end int64
	for _, r := range regions {
		switch {
		case r.mine && !inRun:
			inRun, start, end = true, r.off, r.end
		case r.mine:
			end = max(end, r.end)
		case inRun:
			// Another region begins: the run ends at its last byte (or
			// where the other region starts, should they overlap).
			flush(start, min(end, r.off))
			inRun = false
		}
	}
	if inRun {
		flush(start, end)
	}
	return out
}
