package pixel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom"

	"anomalynode/internal/dcm"
)

// ErrInvalidDICOM reports data that is not well-formed DICOM (lengths past the
// end, broken sequences, a parser failure).
var ErrInvalidDICOM = errors.New("invalid DICOM data")

// errNoPrefix reports a file without the Part-10 "DICM" prefix: both
// dcm.ErrNotDICOM (skip it) and ErrInvalidDICOM (quarantinable).
var errNoPrefix = fmt.Errorf("%w: %w (no DICM prefix)", ErrInvalidDICOM, dcm.ErrNotDICOM)

// Quarantinable reports whether err is about the data itself (unsupported,
// invalid or bad pixel data), so retrying cannot help and the input belongs in
// quarantine.
func Quarantinable(err error) bool {
	return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrInvalidDICOM) || errors.Is(err, ErrBadPixelData)
}

// maxNesting bounds sequence depth in untrusted data.
const maxNesting = 32

// undefinedLength is the DICOM undefined value length.
const undefinedLength = 0xFFFFFFFF

// Parse runs suyashkumar/dicom on untrusted bytes. It first walks the
// element structure and rejects any value length that runs past the data (the
// parser allocates a declared length before reading it, so a 1 KB file could
// ask for 4 GB), then recovers from parser panics (seen on corrupt input),
// turning both into ErrInvalidDICOM.
func Parse(data []byte, opts ...dicom.ParseOption) (ds dicom.Dataset, err error) {
	if err := checkStructure(data); err != nil {
		return ds, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: DICOM parser panicked: %v", ErrInvalidDICOM, r)
		}
	}()
	ds, err = dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, opts...)
	if err != nil {
		return ds, fmt.Errorf("%w: parse: %w", ErrInvalidDICOM, err)
	}
	return ds, nil
}

// checkStructure walks a Part-10 file's elements (file meta in explicit VR
// little endian, the data set in its transfer syntax) and checks every length.
func checkStructure(data []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDICOM, fmt.Sprintf(format, args...))
	}
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return errNoPrefix
	}
	// File meta: explicit VR little endian, group 0002 only.
	pos := 132
	ts := ""
	for pos+8 <= len(data) && binary.LittleEndian.Uint16(data[pos:]) == 0x0002 {
		elem := binary.LittleEndian.Uint16(data[pos+2:])
		hdr, vl := dcm.ExplicitHeader(data[pos:], binary.LittleEndian)
		if hdr == 0 || vl == undefinedLength || pos+hdr+int(vl) > len(data) || int(vl) < 0 {
			return bad("file meta element (0002,%04X) length runs past the data", elem)
		}
		if elem == 0x0010 {
			ts = strings.TrimRight(string(data[pos+hdr:pos+hdr+int(vl)]), "\x00 ")
		}
		pos += hdr + int(vl)
	}
	if ts == "" {
		return bad("file meta has no TransferSyntaxUID")
	}
	w := walker{data: data, explicit: ts != dcm.ImplicitVRLittleEndian, order: binary.LittleEndian}
	switch ts {
	case dcm.ExplicitVRBigEndian:
		w.order = binary.BigEndian
	case "1.2.840.10008.1.2.1.99":
		return &UnsupportedError{TransferSyntax: ts, Reason: "no decoder for Deflated Explicit VR Little Endian", syntax: true}
	}
	_, err := w.walk(pos, len(data), 0, false)
	return err
}

type walker struct {
	data     []byte
	explicit bool
	order    binary.ByteOrder
}

// walk checks the elements in data[pos:end]; inItem stops at an item
// delimiter, which it consumes. It returns the position after what it read.
func (w *walker) walk(pos, end, depth int, inItem bool) (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("%w: %s", ErrInvalidDICOM, fmt.Sprintf(format, args...))
	}
	if depth > maxNesting {
		return bad("sequences nested deeper than %d", maxNesting)
	}
	for pos < end {
		if pos+8 > end {
			return bad("element header at byte %d cut off", pos)
		}
		group, elem := w.order.Uint16(w.data[pos:]), w.order.Uint16(w.data[pos+2:])
		if group == 0xFFFE && elem == 0xE00D {
			if inItem {
				return pos + 8, nil
			}
			pos += 8
			continue
		}
		var hdr int
		var vl uint32
		isSQ := false
		if w.explicit {
			hdr, vl = dcm.ExplicitHeader(w.data[pos:end], w.order)
			if hdr == 0 {
				return bad("element (%04X,%04X) at byte %d has no valid VR", group, elem, pos)
			}
			isSQ = string(w.data[pos+4:pos+6]) == "SQ"
		} else {
			hdr, vl = 8, w.order.Uint32(w.data[pos+4:])
		}
		pos += hdr
		if vl == undefinedLength {
			// A sequence or encapsulated pixel data: items until the sequence delimiter.
			next, err := w.items(pos, end, depth+1, group == 0x7FE0 && elem == 0x0010)
			if err != nil {
				return 0, err
			}
			pos = next
			continue
		}
		if int64(pos)+int64(vl) > int64(end) {
			return bad("element (%04X,%04X) declares %d bytes, only %d remain", group, elem, vl, end-pos)
		}
		if isSQ {
			if _, err := w.items(pos, pos+int(vl), depth+1, false); err != nil {
				return 0, err
			}
		}
		pos += int(vl)
	}
	if inItem {
		return bad("item without its delimiter")
	}
	return pos, nil
}

// items checks sequence items (or, with fragments, encapsulated pixel data
// fragments, which hold bytes rather than elements) from pos until a sequence
// delimiter or end.
func (w *walker) items(pos, end, depth int, fragments bool) (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("%w: %s", ErrInvalidDICOM, fmt.Sprintf(format, args...))
	}
	for pos < end {
		if pos+8 > end {
			return bad("item header at byte %d cut off", pos)
		}
		group, elem := w.order.Uint16(w.data[pos:]), w.order.Uint16(w.data[pos+2:])
		vl := w.order.Uint32(w.data[pos+4:])
		pos += 8
		if group != 0xFFFE {
			return bad("expected an item at byte %d, found (%04X,%04X)", pos-8, group, elem)
		}
		switch elem {
		case 0xE0DD: // sequence delimiter
			return pos, nil
		case 0xE000:
			if vl == undefinedLength {
				next, err := w.walk(pos, end, depth+1, true)
				if err != nil {
					return 0, err
				}
				pos = next
				continue
			}
			if int64(pos)+int64(vl) > int64(end) {
				return bad("item declares %d bytes, only %d remain", vl, end-pos)
			}
			if !fragments {
				if _, err := w.walk(pos, pos+int(vl), depth+1, false); err != nil {
					return 0, err
				}
			}
			pos += int(vl)
		default:
			return bad("unexpected (FFFE,%04X) in a sequence", elem)
		}
	}
	return pos, nil
}
