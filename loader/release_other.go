//go:build !unix

package loader

// releasePages does nothing: without a unix mmap the file is read into
// memory (see mapFile), whose pages cannot be handed back and refilled.
func releasePages([]byte) error { return nil }
