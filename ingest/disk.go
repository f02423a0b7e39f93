package ingest

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// diskSpace returns the free (available to us) and total bytes of the file
// system holding dir, creating dir first if needed.
func diskSpace(dir string) (free, total uint64, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// part10Reader prepends a preamble and file meta to a bare data set.
func part10Reader(r io.ReadCloser, sopClass, sopInstance, ts string) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(Part10Header(sopClass, sopInstance, ts)), r), r}
}
