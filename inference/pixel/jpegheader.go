package pixel

import "fmt"

// The marker-segment layer shared by the lossless JPEG (T.81) and JPEG-LS
// (T.87) decoders: both streams start with SOI, then marker segments up to the
// scan, and both DICOM uses are one-component images whose size the DICOM
// header already states.

// jpegStart checks what both decoders need before the first segment: an
// expected size, and a stream that opens with SOI.
func jpegStart(data []byte, rows, cols int) error {
	if rows < 1 || cols < 1 {
		return fmt.Errorf("expected size %dx%d", cols, rows)
	}
	if len(data) < 2 || data[0] != 0xFF || data[1] != mSOI {
		return fmt.Errorf("no SOI marker at the start")
	}
	return nil
}

// jpegSegment reads the marker segment at data[pos:] (T.81 B.1.1.2: X'FF',
// any X'FF' fill bytes, the marker code, then a two-byte length that counts
// itself) and returns its marker, its parameters and the position after it.
// TEM, which has no length, is returned with no parameters. Markers that may
// not appear before a scan (SOI, EOI, RSTn) are errors; errors are plain, the
// caller wraps them.
func jpegSegment(data []byte, pos int) (marker byte, params []byte, next int, err error) {
	if pos >= len(data) || data[pos] != 0xFF {
		return 0, nil, pos, fmt.Errorf("expected a marker at byte %d", pos)
	}
	for pos < len(data) && data[pos] == 0xFF {
		pos++
	}
	if pos >= len(data) {
		return 0, nil, pos, fmt.Errorf("stream ends inside a marker")
	}
	m := data[pos]
	pos++
	switch {
	case m == mTEM:
		return m, nil, pos, nil
	case m == mEOI:
		return 0, nil, pos, fmt.Errorf("EOI before any scan")
	case m == mSOI || m >= mRST0 && m <= mRST7 || m == 0x00:
		return 0, nil, pos, fmt.Errorf("unexpected marker %#02x in the header", m)
	}
	if pos+2 > len(data) {
		return 0, nil, pos, fmt.Errorf("marker %#02x without a length", m)
	}
	n := int(data[pos])<<8 | int(data[pos+1])
	if n < 2 || pos+n > len(data) {
		return 0, nil, pos, fmt.Errorf("marker %#02x segment length %d runs past the %d-byte stream", m, n, len(data))
	}
	return m, data[pos+2 : pos+n], pos + n, nil
}

// jpegFrame is what a frame header (SOFn, T.81 B.2.2 / T.87 C.2.2) of a
// one-component image says.
type jpegFrame struct {
	precision int
	compID    byte
	// sampling is the component's H/V sampling factors byte.
	sampling byte
}

// parseJPEGFrame parses a frame header and checks it describes one component
// of rows x cols samples of 2-16 bits. unsupported says what a valid header
// asks that the decoders do not do (several components, a size given later);
// err is a malformed header or a size other than the DICOM header's.
func parseJPEGFrame(seg []byte, rows, cols int) (f jpegFrame, unsupported string, err error) {
	if len(seg) < 6 {
		return f, "", fmt.Errorf("frame header of %d bytes", len(seg))
	}
	f.precision = int(seg[0])
	y := int(seg[1])<<8 | int(seg[2])
	x := int(seg[3])<<8 | int(seg[4])
	nf := int(seg[5])
	if nf != 1 {
		return f, fmt.Sprintf("%d components (greyscale only)", nf), nil
	}
	if len(seg) != 6+3*nf {
		return f, "", fmt.Errorf("frame header of %d bytes for %d component", len(seg), nf)
	}
	if f.precision < 2 || f.precision > 16 {
		return f, "", fmt.Errorf("sample precision %d (2-16)", f.precision)
	}
	if y == 0 || x == 0 {
		return f, "image size given by a later marker segment (DNL)", nil
	}
	if x != cols || y != rows {
		return f, "", fmt.Errorf("image is %dx%d, the DICOM header says %dx%d", x, y, cols, rows)
	}
	f.compID, f.sampling = seg[6], seg[7]
	return f, "", nil
}
