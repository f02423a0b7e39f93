// Package atomicfile writes whole files so that a reader, or a crash, never
// sees half of one: the data go to a temporary file beside the target, which is
// then renamed over it. It knows nothing of what the bytes mean.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file beside path and renames it over path,
// so a crash never leaves a half-written file; with sync the data reach the
// disk before the rename. The file is created with mode 0600 (os.CreateTemp's).
// Errors are unprefixed (callers name the file kind).
func Write(path string, data []byte, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
