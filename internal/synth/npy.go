package synth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// ErrNotNPY is returned for bytes that are not a 2-D uint8 NumPy array.
var ErrNotNPY = errors.New("synth: not a 2-D uint8 .npy")

// EncodeNPYUint8 returns a NumPy format 1.0 file holding a C-ordered
// rows x cols uint8 array.
func EncodeNPYUint8(data []uint8, rows, cols int) []byte {
	hdr := fmt.Sprintf("{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	// magic(6) + version(2) + len(2) + header + '\n', padded to 64 bytes.
	total := 10 + len(hdr) + 1
	pad := (64 - total%64) % 64
	hdr += string(bytes.Repeat([]byte{' '}, pad)) + "\n"
	var b bytes.Buffer
	b.Grow(10 + len(hdr) + len(data))
	b.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	b.Write(data)
	return b.Bytes()
}

var npyHeader = regexp.MustCompile(`^\{\s*'descr':\s*'[|<]u1',\s*'fortran_order':\s*False,\s*'shape':\s*\((\d+),\s*(\d+)\),?\s*\}\s*$`)

// DecodeNPYUint8 reads a 2-D C-ordered uint8 .npy (format 1.x or 2.x) as
// written by EncodeNPYUint8 or numpy.save, returning the data and shape.
func DecodeNPYUint8(b []byte) (data []uint8, rows, cols int, err error) {
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, 0, 0, fmt.Errorf("%w: bad magic", ErrNotNPY)
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, 0, 0, fmt.Errorf("%w: short header", ErrNotNPY)
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return nil, 0, 0, fmt.Errorf("%w: version %d", ErrNotNPY, b[6])
	}
	if hlen > len(b)-off {
		return nil, 0, 0, fmt.Errorf("%w: header length %d", ErrNotNPY, hlen)
	}
	mm := npyHeader.FindStringSubmatch(string(b[off : off+hlen]))
	if mm == nil {
		return nil, 0, 0, fmt.Errorf("%w: header %q", ErrNotNPY, b[off:off+hlen])
	}
	rows, err1 := strconv.Atoi(mm[1])
	cols, err2 := strconv.Atoi(mm[2])
	if err1 != nil || err2 != nil || rows > 1<<20 || cols > 1<<20 {
		return nil, 0, 0, fmt.Errorf("%w: shape", ErrNotNPY)
	}
	body := b[off+hlen:]
	if len(body) != rows*cols {
		return nil, 0, 0, fmt.Errorf("%w: %d data bytes for shape (%d, %d)", ErrNotNPY, len(body), rows, cols)
	}
	return body, rows, cols, nil
}
