//go:build unix

package loader

import (
	"errors"
	"syscall"
)

// processGone reports whether no process with this id exists (pid > 0).
// EPERM means it exists but belongs to someone else.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
