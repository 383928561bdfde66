package loader

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// releaseFile writes a raw (uncompressed) weight file with components
// "a", "b" and "c" whose tensors are interleaved in file order (a, a, b,
// a, c), of the given sizes in bytes, random content, and opens it.
func releaseFile(t *testing.T, sizes []int) (*File, map[string][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "release.d2")
	w, err := Create(path)
	require.NoError(t, err)
	w.SetMinSaving(1) // raw: the tensors alias the map
	for _, c := range []string{"a", "b", "c"} {
		require.NoError(t, w.AddComponent(Component{Name: c}))
	}
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string][]byte{}
	for i, comp := range []string{"a", "a", "b", "a", "c"} {
		data := make([]byte, sizes[i])
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		key := fmt.Sprintf("t%d", i)
		want[comp+"/"+key] = data
		require.NoError(t, w.AddTensor(comp, Tensor{Name: key, DType: U8, Shape: []int{len(data)}, Data: data}))
	}
	require.NoError(t, w.Commit())
	f, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f, want
}

// TestReleaseRanges: the released ranges are page-aligned, cover only a
// component's own tensors, and every whole page of them.
func TestReleaseRanges(t *testing.T) {
	const page = 4096
	f, _ := releaseFile(t, []int{3 * page, 5000, 2 * page, 3*page + 100, 7 * page})
	for _, comp := range []string{"a", "b", "c"} {
		rs := f.releaseRanges(comp+"/", page)
		require.NotEmpty(t, rs, comp)
		for _, r := range rs {
			require.Zero(t, r[0]%page, "%s: %v", comp, r)
			require.Zero(t, r[1]%page, "%s: %v", comp, r)
			require.Less(t, r[0], r[1])
		}
		owned := func(off int64) bool { // byte off lies in a tensor of comp
			for _, ti := range f.tensors {
				if off >= ti.Offset && off < ti.Offset+ti.Size {
					return strings.HasPrefix(ti.Name, comp+"/")
				}
			}
			return false
		}
		released := func(off int64) bool {
			for _, r := range rs {
				if off >= r[0] && off < r[1] {
					return true
				}
			}
			return false
		}
		for off := int64(0); off < f.size; off += 64 {
			// No byte of another component or of the index is released.
			if released(off) {
				for _, ti := range f.tensors {
					if off >= ti.Offset && off < ti.Offset+ti.Size {
						require.True(t, owned(off), "%s: byte %d of %s released", comp, off, ti.Name)
					}
				}
				require.Less(t, off, f.dataEnd, "%s: index byte %d released", comp, off)
			}
		}
		// Every page wholly inside a tensor of comp is released.
		for _, ti := range f.tensors {
			if !strings.HasPrefix(ti.Name, comp+"/") {
				continue
			}
			for p := (ti.Offset + page - 1) / page * page; p+page <= ti.Offset+ti.Size; p += page {
				require.True(t, released(p), "%s: page at %d of %s kept", comp, p, ti.Name)
			}
		}
	}
	// a's first two tensors are adjacent in the file: one range spans them.
	rs := f.releaseRanges("a/", page)
	require.Len(t, rs, 2, "a: %v", rs)
}

// mappingRSS returns the resident bytes of the mapping that starts at
// addr, from /proc/self/smaps (Linux).
func mappingRSS(t *testing.T, addr uintptr) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(b))
	prefix := strconv.FormatUint(uint64(addr), 16) + "-"
	in := false
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = strings.HasPrefix(line, prefix)
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return 0
}

// TestReleaseDropsPages: after Release, the pages of the component's
// tensors no longer count in the process's resident memory, and the
// tensors read back unchanged.
func TestReleaseDropsPages(t *testing.T) {
	const mib = 1 << 20
	f, want := releaseFile(t, []int{4 * mib, 4 * mib, 4 * mib, 4 * mib, 4 * mib})
	read := func() {
		for name, data := range want {
			got, err := f.Tensor(name)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got.Data), name)
			var sum byte
			for i := 0; i < len(got.Data); i += 512 {
				sum += got.Data[i] // touch every page (the checksum is checked once)
			}
			_ = sum
		}
	}
	read()
	if runtime.GOOS != "linux" {
		require.NoError(t, f.Release("a"))
		read()
		t.Skip("resident memory per mapping is only measured on Linux")
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
	before := mappingRSS(t, addr)
	require.GreaterOrEqual(t, before, int64(20*mib), "all tensors read: 20 MiB resident")
	require.NoError(t, f.Release("a"))
	after := mappingRSS(t, addr)
	// a holds 12 of the 20 MiB; its runs lose at most a page at each end.
	require.LessOrEqual(t, after, before-12*mib+4*int64(os.Getpagesize()), "before %d, after %d", before, after)
	require.GreaterOrEqual(t, after, int64(8*mib), "b and c stay resident")
	read() // still valid: the pages fault back in
	require.GreaterOrEqual(t, mappingRSS(t, addr), int64(20*mib))
}

// TestReleaseErrors: unknown components and closed files are errors;
// files not memory-mapped have nothing to release.
func TestReleaseErrors(t *testing.T) {
	f, _ := releaseFile(t, []int{100, 100, 100, 100, 100})
	require.ErrorContains(t, f.Release("zzz"), `no component "zzz"`)

	mem, err := OpenBytes(f.data, "in memory")
	require.NoError(t, err)
	require.NoError(t, mem.Release("a"))

	require.NoError(t, mem.ReleasePrefix("a/t0"))

	require.NoError(t, f.Close())
	require.ErrorContains(t, f.Release("a"), "closed")
	require.ErrorContains(t, f.ReleasePrefix("a/"), "closed")
}

// TestReleasePrefixDropsOneTensor: ReleasePrefix drops the pages of the
// tensors under its prefix and no others; a prefix that matches nothing
// releases nothing; the data reads back unchanged.
func TestReleasePrefixDropsOneTensor(t *testing.T) {
	const mib = 1 << 20
	f, want := releaseFile(t, []int{4 * mib, 4 * mib, 4 * mib, 4 * mib, 4 * mib})
	touch := func() {
		for name, data := range want {
			got, err := f.Tensor(name)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got.Data), name)
		}
	}
	touch()
	if runtime.GOOS != "linux" {
		require.NoError(t, f.ReleasePrefix("a/t3"))
		touch()
		t.Skip("resident memory per mapping is only measured on Linux")
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
	before := mappingRSS(t, addr)
	require.GreaterOrEqual(t, before, int64(20*mib), "all tensors read: 20 MiB resident")
	require.NoError(t, f.ReleasePrefix("a/nothing"))
	require.Equal(t, before, mappingRSS(t, addr), "a prefix matching no tensor releases nothing")
	require.NoError(t, f.ReleasePrefix("a/t3"))
	after := mappingRSS(t, addr)
	// t3 is 4 MiB; its range loses at most a page at each end.
	page := int64(os.Getpagesize())
	require.LessOrEqual(t, after, before-4*mib+2*page, "before %d, after %d", before, after)
	require.GreaterOrEqual(t, after, before-4*mib, "only t3's pages go: before %d, after %d", before, after)
	touch()
}
