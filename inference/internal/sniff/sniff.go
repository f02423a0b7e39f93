// Package sniff tells input files apart by their first bytes, so the fitting
// (dpmm) and evaluation (eval) drivers route a path the same way.
package sniff

import "os"

// IsDICOM reports whether the file at path carries the DICOM Part-10 preamble's
// "DICM" magic at offset 128. A file that cannot be read is not DICOM.
func IsDICOM(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [132]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return false
	}
	return string(b[128:132]) == "DICM"
}
