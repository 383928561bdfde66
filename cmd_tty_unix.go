//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal (not a pipe, file or
// /dev/null): the terminal-settings ioctl succeeds only on a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// isCharDeviceTerminalFallback is true where isTerminal only checks for a
// character device.
const isCharDeviceTerminalFallback = false
