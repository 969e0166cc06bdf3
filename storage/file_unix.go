//go:build unix

package storage

import (
	"os"
	"syscall"
)

// openNoFollow opens path for reading without following a final symlink (ELOOP) and without
// blocking on a FIFO (O_NONBLOCK), so the caller can fstat what it got before reading.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// openDirNoFollow opens path only if it is a directory and not a symlink.
func openDirNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}
