package dimse

import (
	"bufio"
	"fmt"
	"io"

	"anomalynode/internal/dcm"
)

// FileMeta is the File Meta Information (group 0002) of a DICOM Part-10 file;
// its reader and writer are the shared ones of internal/dcm.
type FileMeta = dcm.FileMeta

// ReadFileMeta reads the preamble, "DICM" and the group-0002 elements of a
// Part-10 file, leaving r at the first byte of the data set. It returns the
// number of bytes consumed.
func ReadFileMeta(r *bufio.Reader) (FileMeta, int64, error) {
	var m FileMeta
	var pre [132]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return m, 0, fmt.Errorf("dimse: read file meta: %w", err)
	}
	if string(pre[128:]) != "DICM" {
		return m, 0, fmt.Errorf("dimse: read file meta: %w (no DICM prefix)", dcm.ErrNotDICOM)
	}
	m, n, err := dcm.ReadMetaGroup(r)
	n += 132
	if err != nil {
		return m, n, fmt.Errorf("dimse: read file meta: %w", err)
	}
	if m.TransferSyntaxUID == "" || m.MediaStorageSOPClassUID == "" || m.MediaStorageSOPInstanceUID == "" {
		return m, n, fmt.Errorf("dimse: read file meta: missing SOP class, SOP instance or transfer syntax UID")
	}
	return m, n, nil
}

// WriteFileMeta writes the 128-byte preamble, "DICM" and the File Meta
// Information; the bare data set in m.TransferSyntaxUID follows it. An empty
// ImplementationClassUID is filled with ours.
func WriteFileMeta(w io.Writer, m FileMeta) error {
	if m.ImplementationClassUID == "" {
		m.ImplementationClassUID, m.ImplementationVersionName = ImplementationClassUID, ImplementationVersionName
	}
	if _, err := w.Write(dcm.AppendFileMeta(nil, m)); err != nil {
		return fmt.Errorf("dimse: write file meta: %w", err)
	}
	return nil
}
