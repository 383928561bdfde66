//go:build unix

package loader

import "golang.org/x/sys/unix"

// releasePages drops the pages of b, a page-aligned part of a read-only
// shared file mapping, from the process; later reads fault them back in
// from the file.
func releasePages(b []byte) error { return unix.Madvise(b, unix.MADV_DONTNEED) }
