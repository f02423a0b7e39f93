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

// jpegErrs makes one decoder's errors, each prefixed with its name: bad wraps
// ErrBadPixelData, unsupported is an *UnsupportedError without its transfer
// syntax (the caller adds it).
type jpegErrs string

func (c jpegErrs) bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadPixelData, string(c), fmt.Sprintf(format, a...))
}

func (c jpegErrs) unsupported(format string, a ...any) error {
	return &UnsupportedError{Reason: string(c) + ": " + fmt.Sprintf(format, a...)}
}

// jpegDialect is what sets one decoder's walk over the header apart.
type jpegDialect struct {
	errs jpegErrs
	// sof is the one frame type the decoder reads; otherSOF says why any
	// other SOFn is refused.
	sof      byte
	otherSOF string
	// driBytes is the longest restart interval field a DRI segment may
	// carry (T.81 B.2.4.4: 2 bytes; T.87 C.2.5: 2, 3 or 4).
	driBytes int
	// refuse, when set, says why a frame header the walk accepts is still
	// not decoded ("" when it is), as soon as it is read.
	refuse func(jpegFrame) string
}

// jpegHeader is what the marker segments up to the first scan said.
type jpegHeader struct {
	frame jpegFrame
	// restartInterval is DRI's value; 0 without a DRI segment.
	restartInterval int
	// scan is the scan header's parameters (SOS after its length), as long
	// as its component count says.
	scan []byte
	// ecs is the position in data of the entropy-coded data after it.
	ecs int
}

// walkJPEGHeader reads the marker segments of data from SOI up to the first
// scan header, with every bound checked before it is used: the frame header
// must be d.sof and describe one component of rows x cols samples, come once
// and come before the scan. segment reads the decoder's own segments (tables,
// presets): it is handed every segment before the scan other than a frame
// header, DRI, SOS and TEM, and passes over those it does not know (APPn,
// COM). Every error is d.errs' bad or unsupported, or what the hooks return.
func walkJPEGHeader(data []byte, rows, cols int, d *jpegDialect, segment func(m byte, params []byte) error) (jpegHeader, error) {
	var (
		h        jpegHeader
		sawFrame bool
	)
	if err := jpegStart(data, rows, cols); err != nil {
		return h, d.errs.bad("%v", err)
	}
	pos := 2
	for {
		m, seg, next, err := jpegSegment(data, pos)
		if err != nil {
			return h, d.errs.bad("%v", err)
		}
		pos = next
		switch {
		case m == mTEM:
		case m == d.sof:
			if sawFrame {
				return h, d.errs.bad("second frame header")
			}
			f, why, err := parseJPEGFrame(seg, rows, cols)
			if err != nil {
				return h, d.errs.bad("%v", err)
			}
			if why != "" {
				return h, d.errs.unsupported("%s", why)
			}
			if d.refuse != nil {
				if why := d.refuse(f); why != "" {
					return h, d.errs.unsupported("%s", why)
				}
			}
			h.frame, sawFrame = f, true
		case m >= 0xC0 && m <= 0xCF && m != mDHT && m != mDAC && m != 0xC8:
			return h, d.errs.unsupported("frame type SOF%d (%s)", m-0xC0, d.otherSOF)
		case m == mDRI:
			if len(seg) < 2 || len(seg) > d.driBytes {
				return h, d.errs.bad("DRI segment of %d bytes", len(seg))
			}
			h.restartInterval = 0
			for _, b := range seg {
				h.restartInterval = h.restartInterval<<8 | int(b)
			}
		case m == mSOS:
			if !sawFrame {
				return h, d.errs.bad("scan before the frame header")
			}
			if len(seg) < 1 || len(seg) != 4+2*int(seg[0]) {
				return h, d.errs.bad("scan header of %d bytes", len(seg))
			}
			h.scan, h.ecs = seg, pos
			return h, nil
		default:
			if err := segment(m, seg); err != nil {
				return h, err
			}
		}
	}
}

// jpegRST consumes the RSTn marker that must end restart interval n (its
// number modulo 8 is the marker's) at data[p:]: X'FF' and any fill bytes
// X'FF', then the marker code. It returns the position after the marker.
func jpegRST(data []byte, p, n int) (int, error) {
	start := p
	for p < len(data) && data[p] == 0xFF {
		p++
	}
	if p == start || p >= len(data) {
		return 0, fmt.Errorf("restart marker RST%d missing", n&7)
	}
	if m := data[p]; m != byte(mRST0+n&7) {
		return 0, fmt.Errorf("marker %#02x where RST%d was expected", m, n&7)
	}
	return p + 1, nil
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
