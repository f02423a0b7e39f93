package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"anomalynode/internal/dcm"
)

// FileMeta is the File Meta Information (group 0002) of a DICOM Part-10 file
// (PS3.10 7.1), the header that wraps a bare data set on disk.
type FileMeta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	ImplementationClassUID     string
	ImplementationVersionName  string
	SourceAETitle              string
}

// maxMetaValue bounds one group-0002 value we read from a file.
const maxMetaValue = 1 << 16

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
		return m, 0, fmt.Errorf("dimse: read file meta: no DICM prefix (not a DICOM Part-10 file)")
	}
	n := int64(132)
	for {
		peek, err := r.Peek(2)
		if err != nil || binary.LittleEndian.Uint16(peek) != 0x0002 {
			break // the data set starts (or the file is only a header)
		}
		var h [8]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return m, n, fmt.Errorf("dimse: read file meta: %w", err)
		}
		n += 8
		elem := binary.LittleEndian.Uint16(h[2:4])
		vr := string(h[4:6])
		var length uint32
		switch {
		case dcm.LongVR(vr):
			var l [4]byte
			if _, err := io.ReadFull(r, l[:]); err != nil {
				return m, n, fmt.Errorf("dimse: read file meta: %w", err)
			}
			n += 4
			length = binary.LittleEndian.Uint32(l[:])
		default:
			length = uint32(binary.LittleEndian.Uint16(h[6:8]))
		}
		if length > maxMetaValue {
			return m, n, fmt.Errorf("dimse: read file meta: element (0002,%04X) of %d bytes", elem, length)
		}
		v := make([]byte, length)
		if _, err := io.ReadFull(r, v); err != nil {
			return m, n, fmt.Errorf("dimse: read file meta: %w", err)
		}
		n += int64(length)
		s := strings.TrimRight(string(v), "\x00 ")
		switch elem {
		case 0x0002:
			m.MediaStorageSOPClassUID = s
		case 0x0003:
			m.MediaStorageSOPInstanceUID = s
		case 0x0010:
			m.TransferSyntaxUID = s
		case 0x0012:
			m.ImplementationClassUID = s
		case 0x0013:
			m.ImplementationVersionName = s
		case 0x0016:
			m.SourceAETitle = s
		}
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
	var g bytes.Buffer
	elem := func(e uint16, vr string, v []byte) {
		g.Write([]byte{0x02, 0x00, byte(e), byte(e >> 8), vr[0], vr[1]})
		if vr == "OB" {
			g.Write([]byte{0, 0})
			_ = binary.Write(&g, binary.LittleEndian, uint32(len(v)))
		} else {
			_ = binary.Write(&g, binary.LittleEndian, uint16(len(v)))
		}
		g.Write(v)
	}
	uid := func(s string) []byte {
		if len(s)%2 == 1 {
			s += "\x00"
		}
		return []byte(s)
	}
	text := func(s string) []byte {
		if len(s)%2 == 1 {
			s += " "
		}
		return []byte(s)
	}
	elem(0x0001, "OB", []byte{0, 1})
	elem(0x0002, "UI", uid(m.MediaStorageSOPClassUID))
	elem(0x0003, "UI", uid(m.MediaStorageSOPInstanceUID))
	elem(0x0010, "UI", uid(m.TransferSyntaxUID))
	elem(0x0012, "UI", uid(m.ImplementationClassUID))
	if m.ImplementationVersionName != "" {
		elem(0x0013, "SH", text(m.ImplementationVersionName))
	}
	if m.SourceAETitle != "" {
		elem(0x0016, "AE", text(m.SourceAETitle))
	}
	out := make([]byte, 128, 128+4+12+g.Len())
	out = append(out, "DICM"...)
	out = append(out, 0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(g.Len()))
	out = append(out, g.Bytes()...)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("dimse: write file meta: %w", err)
	}
	return nil
}
