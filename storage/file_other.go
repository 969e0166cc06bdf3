//go:build !unix

package storage

import (
	"fmt"
	"os"
)

// openNoFollow refuses a symlink or non-regular file by a check before opening (racy, unlike
// the unix version, which asks the kernel).
func openNoFollow(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s", path, kind(fi.Mode()))
	}
	return os.Open(path)
}

// openDirNoFollow opens path if it is a directory and not a symlink (checked before opening).
func openDirNoFollow(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is %s", path, kind(fi.Mode()))
	}
	return os.Open(path)
}
