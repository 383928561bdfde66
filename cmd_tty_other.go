//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import "os"

// isTerminal reports whether f looks like a terminal: a character device
// (which also matches the null device on these systems).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// isCharDeviceTerminalFallback is true where isTerminal only checks for a
// character device.
const isCharDeviceTerminalFallback = true
