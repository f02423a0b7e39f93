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
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return errNoPrefix
	}
	// File meta: explicit VR little endian, group 0002 only.
	meta := dcm.NewWalker(data, 132, true, binary.LittleEndian)
	ts := ""
	for {
		group, elem, ok := meta.Peek()
		if !ok || group != 0x0002 {
			break
		}
		h, err := meta.Element()
		var v []byte
		if err == nil && h.Length != dcm.UndefinedLength {
			v, err = meta.Value(h.Length)
		}
		if err != nil || h.Length == dcm.UndefinedLength {
			return invalid("file meta element (0002,%04X) length runs past the data", elem)
		}
		if elem == 0x0010 {
			ts = strings.TrimRight(string(v), "\x00 ")
		}
	}
	if ts == "" {
		return invalid("file meta has no TransferSyntaxUID")
	}
	order := binary.ByteOrder(binary.LittleEndian)
	switch ts {
	case dcm.ExplicitVRBigEndian:
		order = binary.BigEndian
	case "1.2.840.10008.1.2.1.99":
		return &UnsupportedError{TransferSyntax: ts, Reason: "no decoder for Deflated Explicit VR Little Endian", syntax: true}
	}
	return checkElements(dcm.NewWalker(data, meta.Pos, ts != dcm.ImplicitVRLittleEndian, order), 0, false)
}

// invalid is an ErrInvalidDICOM error.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidDICOM, fmt.Sprintf(format, args...))
}

// checkElements checks the elements w walks; inItem stops at an item
// delimiter, which it consumes.
func checkElements(w *dcm.Walker, depth int, inItem bool) error {
	if depth > maxNesting {
		return invalid("sequences nested deeper than %d", maxNesting)
	}
	for w.More() {
		group, elem, ok := w.Peek()
		if !ok {
			return invalid("element header at byte %d cut off", w.Pos)
		}
		if group == dcm.ItemGroup && elem == dcm.ItemDelimitationItem {
			w.Item() // cannot fail: Peek saw its 8 bytes
			if inItem {
				return nil
			}
			continue
		}
		h, err := w.Element()
		if err != nil {
			return invalid("%v", err)
		}
		if h.Length == dcm.UndefinedLength {
			// A sequence or encapsulated pixel data: items until the sequence delimiter.
			if err := checkItems(w, depth+1, group == 0x7FE0 && elem == 0x0010); err != nil {
				return err
			}
			continue
		}
		v, err := w.Within(h.Length)
		if err != nil {
			return invalid("element (%04X,%04X): %v", group, elem, err)
		}
		if h.VR == "SQ" {
			if err := checkItems(v, depth+1, false); err != nil {
				return err
			}
		}
	}
	if inItem {
		return invalid("item without its delimiter")
	}
	return nil
}

// checkItems checks sequence items (or, with fragments, encapsulated pixel
// data fragments, which hold bytes rather than elements) until a sequence
// delimiter or the end of w.
func checkItems(w *dcm.Walker, depth int, fragments bool) error {
	for w.More() {
		at := w.Pos
		h, err := w.Item()
		if err != nil {
			return invalid("%v", err)
		}
		if h.Group != dcm.ItemGroup {
			return invalid("expected an item at byte %d, found (%04X,%04X)", at, h.Group, h.Element)
		}
		switch h.Element {
		case dcm.SequenceDelimitationItem:
			return nil
		case dcm.Item:
			if h.Length == dcm.UndefinedLength {
				if err := checkElements(w, depth+1, true); err != nil {
					return err
				}
				continue
			}
			v, err := w.Within(h.Length)
			if err != nil {
				return invalid("item: %v", err)
			}
			if !fragments {
				if err := checkElements(v, depth+1, false); err != nil {
					return err
				}
			}
		default:
			return invalid("unexpected (FFFE,%04X) in a sequence", h.Element)
		}
	}
	return nil
}
