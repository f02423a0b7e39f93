package dcm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
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

// ErrBadFileMeta reports a group-0002 that is truncated, not explicit VR or
// claims an oversized value.
var ErrBadFileMeta = errors.New("dcm: bad file meta")

// maxMetaValue bounds one group-0002 value read from untrusted bytes.
const maxMetaValue = 1 << 16

// maxMetaElements bounds the group-0002 elements read (a real one has < 10).
const maxMetaElements = 256

// ReadMetaGroup reads the group-0002 elements at br (always explicit VR little
// endian; the preamble and "DICM" already consumed), leaving br at the first
// byte of the data set, and returns the bytes consumed. It stops at the first
// element of another group; every length is bounded before anything is
// allocated.
func ReadMetaGroup(br *bufio.Reader) (FileMeta, int64, error) {
	var m FileMeta
	var n int64
	for i := 0; ; i++ {
		b, err := br.Peek(8)
		if len(b) < 4 || binary.LittleEndian.Uint16(b) != 0x0002 {
			if len(b) < 4 && err != nil && n == 0 {
				return m, 0, fmt.Errorf("%w: empty file meta", ErrBadFileMeta)
			}
			return m, n, nil
		}
		if len(b) < 8 || i > maxMetaElements {
			return m, 0, fmt.Errorf("%w: truncated file meta", ErrBadFileMeta)
		}
		elem := binary.LittleEndian.Uint16(b[2:])
		vr := string(b[4:6])
		if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
			return m, 0, fmt.Errorf("%w: file meta is not explicit VR", ErrBadFileMeta)
		}
		hdr := 8
		length := uint32(binary.LittleEndian.Uint16(b[6:]))
		if LongVR(vr) {
			lb, err := br.Peek(12)
			if len(lb) < 12 {
				return m, 0, fmt.Errorf("%w: truncated file meta: %v", ErrBadFileMeta, err)
			}
			hdr, length = 12, binary.LittleEndian.Uint32(lb[8:])
		}
		if length > maxMetaValue {
			return m, 0, fmt.Errorf("%w: file meta element (0002,%04X) of %d bytes", ErrBadFileMeta, elem, length)
		}
		if _, err := br.Discard(hdr); err != nil {
			return m, 0, fmt.Errorf("%w: %v", ErrBadFileMeta, err)
		}
		val := make([]byte, length)
		if _, err := io.ReadFull(br, val); err != nil {
			return m, 0, fmt.Errorf("%w: truncated file meta: %v", ErrBadFileMeta, err)
		}
		n += int64(hdr) + int64(length)
		s := strings.Trim(string(val), " \x00")
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
}

// AppendFileMeta appends the 128-byte preamble, "DICM" and the File Meta
// Information of m to dst, exactly as given: the group length, the version,
// the three UIDs, ImplementationClassUID, and ImplementationVersionName and
// SourceAETitle when set. The bare data set in m.TransferSyntaxUID follows it.
func AppendFileMeta(dst []byte, m FileMeta) []byte {
	var g []byte
	elem := func(e uint16, vr string, v []byte) {
		g = append(g, 0x02, 0x00, byte(e), byte(e>>8), vr[0], vr[1])
		if LongVR(vr) {
			g = append(g, 0, 0)
			g = binary.LittleEndian.AppendUint32(g, uint32(len(v)))
		} else {
			g = binary.LittleEndian.AppendUint16(g, uint16(len(v)))
		}
		g = append(g, v...)
	}
	// UIDs pad with NUL, text with a space (PS3.5 6.2).
	pad := func(s string, p byte) []byte {
		b := []byte(s)
		if len(b)%2 == 1 {
			b = append(b, p)
		}
		return b
	}
	elem(0x0001, "OB", []byte{0, 1})
	elem(0x0002, "UI", pad(m.MediaStorageSOPClassUID, 0))
	elem(0x0003, "UI", pad(m.MediaStorageSOPInstanceUID, 0))
	elem(0x0010, "UI", pad(m.TransferSyntaxUID, 0))
	elem(0x0012, "UI", pad(m.ImplementationClassUID, 0))
	if m.ImplementationVersionName != "" {
		elem(0x0013, "SH", pad(m.ImplementationVersionName, ' '))
	}
	if m.SourceAETitle != "" {
		elem(0x0016, "AE", pad(m.SourceAETitle, ' '))
	}
	dst = append(dst, make([]byte, 128)...)
	dst = append(dst, "DICM"...)
	dst = append(dst, 0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(g)))
	return append(dst, g...)
}
