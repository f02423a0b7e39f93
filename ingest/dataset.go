package ingest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"anomalynode/internal/dcm"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Transfer syntaxes the header reader distinguishes.
const (
	// MediaStorageDirectory is the SOP class of a DICOMDIR.
	MediaStorageDirectory = "1.2.840.10008.1.3.10"
)

// Errors of the header reader and file sniffer.
var (
	// ErrMalformed: the bytes start like DICOM but cannot be parsed.
	ErrMalformed = errors.New("ingest: malformed DICOM")
	// ErrHeaderTooLarge: the attributes before the pixel data exceed the limit.
	ErrHeaderTooLarge = errors.New("ingest: header too large")
	// ErrUnsupportedSyntax: a transfer syntax the header reader cannot walk.
	ErrUnsupportedSyntax = errors.New("ingest: unsupported transfer syntax")
)

// maxValueKept bounds the values Header keeps (longer ones are skipped).
const maxValueKept = 4096

// maxDepth bounds sequence nesting in untrusted data.
const maxDepth = 32

// Header is what routing and series tracking need from an instance: its
// top-level attributes up to the pixel data, as strings (multiple values joined
// with a backslash, numbers in decimal).
type Header struct {
	// TransferSyntaxUID of the data set.
	TransferSyntaxUID string
	// HasPixelData is true when a top-level pixel data element was reached.
	HasPixelData bool
	// PixelDataLength is that element's value length (0xFFFFFFFF when
	// encapsulated); the value follows the bytes ReadHeader consumed.
	PixelDataLength uint32
	attrs           map[tag.Tag]string
}

// Get returns the value of a top-level attribute and whether it was present.
func (h *Header) Get(t tag.Tag) (string, bool) {
	v, ok := h.attrs[t]
	return v, ok
}

// Str returns the value of a top-level attribute, "" when absent.
func (h *Header) Str(t tag.Tag) string { return h.attrs[t] }

// Float returns the first value of a numeric attribute.
func (h *Header) Float(t tag.Tag) (float64, bool) {
	v, ok := h.attrs[t]
	if !ok {
		return 0, false
	}
	first, _, _ := strings.Cut(v, `\`)
	return parseNumber(first)
}

// parseNumber parses one DS or IS value. NaN and Inf are not DICOM numbers
// (PS3.5 6.2), although ParseFloat accepts them; they count as invalid.
func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// Floats returns every value of a numeric attribute (nil if any is invalid).
func (h *Header) Floats(t tag.Tag) []float64 {
	v, ok := h.attrs[t]
	if !ok || v == "" {
		return nil
	}
	parts := strings.Split(v, `\`)
	out := make([]float64, len(parts))
	for i, p := range parts {
		f, ok := parseNumber(p)
		if !ok {
			return nil
		}
		out[i] = f
	}
	return out
}

// Set sets an attribute (used by tests and when a value comes from elsewhere,
// e.g. the SOP Instance UID of a C-STORE command).
func (h *Header) Set(t tag.Tag, v string) {
	if h.attrs == nil {
		h.attrs = map[tag.Tag]string{}
	}
	h.attrs[t] = v
}

// Len returns the number of attributes kept.
func (h *Header) Len() int { return len(h.attrs) }

// ReadHeader reads a bare data set (no preamble or file meta) in transfer
// syntax ts from r, up to and including the header of the first top-level
// pixel data element, or to EOF. It returns the parsed header and every byte it
// consumed, so the caller can store io.MultiReader(bytes.NewReader(prefix), r):
// the pixel data itself is never buffered. max bounds the bytes read.
func ReadHeader(r io.Reader, ts string, max int64) (*Header, []byte, error) {
	p := &hparser{r: r, max: max, h: &Header{TransferSyntaxUID: ts, attrs: map[tag.Tag]string{}}}
	switch ts {
	case dcm.ImplicitVRLittleEndian:
		p.bo = binary.LittleEndian
	case dcm.ExplicitVRBigEndian:
		p.bo, p.explicit = binary.BigEndian, true
	case dcm.DeflatedExplicitVRLittleEndian:
		return nil, nil, fmt.Errorf("%w: deflate", ErrUnsupportedSyntax)
	default:
		// Every other transfer syntax encodes the data set as explicit VR
		// little endian; only the pixel data may be encapsulated.
		p.bo, p.explicit = binary.LittleEndian, true
	}
	err := p.elements(0, false)
	if errors.Is(err, errPixelData) {
		err = nil
	}
	return p.h, p.buf.Bytes(), err
}

var errPixelData = errors.New("pixel data reached")

type hparser struct {
	r        io.Reader
	bo       binary.ByteOrder
	explicit bool
	max      int64
	buf      bytes.Buffer
	h        *Header
}

// read reads exactly n bytes, recording them; io.EOF only when nothing was read.
func (p *hparser) read(n int) ([]byte, error) {
	if int64(p.buf.Len())+int64(n) > p.max {
		return nil, ErrHeaderTooLarge
	}
	start := p.buf.Len()
	got, err := io.CopyN(&p.buf, p.r, int64(n))
	if err != nil {
		if got == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: truncated: %v", ErrMalformed, err)
	}
	return p.buf.Bytes()[start:], nil
}

// skip reads and records n bytes without keeping a slice of them.
func (p *hparser) skip(n uint32) error {
	if n == 0 {
		return nil
	}
	if int64(p.buf.Len())+int64(n) > p.max {
		return ErrHeaderTooLarge
	}
	got, err := io.CopyN(&p.buf, p.r, int64(n))
	if err != nil {
		return fmt.Errorf("%w: truncated value (%d of %d bytes): %v", ErrMalformed, got, n, err)
	}
	return nil
}

func validVR(b []byte) bool {
	return len(b) == 2 && b[0] >= 'A' && b[0] <= 'Z' && b[1] >= 'A' && b[1] <= 'Z'
}

// elements walks elements until EOF (top level), the item delimiter (inItem)
// or, at depth 0, the first pixel data element (errPixelData).
func (p *hparser) elements(depth int, inItem bool) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	var last tag.Tag
	for {
		tb, err := p.read(4)
		if err == io.EOF {
			if depth == 0 && !inItem {
				return nil
			}
			return fmt.Errorf("%w: truncated sequence", ErrMalformed)
		}
		if err != nil {
			return err
		}
		t := tag.Tag{Group: p.bo.Uint16(tb), Element: p.bo.Uint16(tb[2:])}
		if t.Group == 0xFFFE {
			if _, err := p.read(4); err != nil {
				return notEOF(err)
			}
			if inItem && t.Element == 0xE00D {
				return nil
			}
			return fmt.Errorf("%w: unexpected delimiter %v", ErrMalformed, t)
		}
		if depth == 0 && !inItem && t.Compare(last) < 0 {
			return fmt.Errorf("%w: element %v after %v (not ascending)", ErrMalformed, t, last)
		}
		last = t
		vr, length, err := p.vrLength(t)
		if err != nil {
			return err
		}
		if depth == 0 && !inItem && t.Group == 0x7FE0 && (t.Element == 0x0010 || t.Element == 0x0008 || t.Element == 0x0009) {
			p.h.HasPixelData, p.h.PixelDataLength = true, length
			return errPixelData
		}
		if length == tag.VLUndefinedLength {
			if vr != "SQ" && vr != "UN" && !(vr == "" && !p.explicit) {
				return fmt.Errorf("%w: undefined length on %s element %v", ErrMalformed, vr, t)
			}
			if err := p.sequence(depth + 1); err != nil {
				return err
			}
			continue
		}
		if vr == "SQ" || depth > 0 || inItem || length > maxValueKept || t.Group == 0x0002 {
			if err := p.skip(length); err != nil {
				return err
			}
			continue
		}
		val, err := p.read(int(length))
		if err != nil {
			return notEOF(err)
		}
		if s, ok := p.value(vr, t, val); ok {
			p.h.attrs[t] = s
		}
	}
}

func notEOF(err error) error {
	if err == io.EOF {
		return fmt.Errorf("%w: truncated element", ErrMalformed)
	}
	return err
}

// vrLength reads the VR (explicit) and value length after a tag; in implicit
// VR the VR comes from the dictionary ("" when unknown).
func (p *hparser) vrLength(t tag.Tag) (string, uint32, error) {
	if !p.explicit {
		lb, err := p.read(4)
		if err != nil {
			return "", 0, notEOF(err)
		}
		vr := ""
		if info, err := tag.Find(t); err == nil && len(info.VRs) > 0 {
			vr = info.VRs[0]
		}
		return vr, p.bo.Uint32(lb), nil
	}
	b, err := p.read(4)
	if err != nil {
		return "", 0, notEOF(err)
	}
	vr := string(b[:2])
	if !validVR(b[:2]) {
		return "", 0, fmt.Errorf("%w: invalid VR %q at %v", ErrMalformed, vr, t)
	}
	if dcm.LongVR(vr) {
		lb, err := p.read(4)
		if err != nil {
			return "", 0, notEOF(err)
		}
		return vr, p.bo.Uint32(lb), nil
	}
	return vr, uint32(p.bo.Uint16(b[2:])), nil
}

// sequence walks the items of an undefined-length sequence to its delimiter.
func (p *hparser) sequence(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	for {
		b, err := p.read(8)
		if err != nil {
			return notEOF(err)
		}
		t := tag.Tag{Group: p.bo.Uint16(b), Element: p.bo.Uint16(b[2:])}
		length := p.bo.Uint32(b[4:])
		switch t {
		case tag.Tag{Group: 0xFFFE, Element: 0xE0DD}:
			return nil
		case tag.Tag{Group: 0xFFFE, Element: 0xE000}:
			if length == tag.VLUndefinedLength {
				if err := p.elements(depth, true); err != nil {
					return err
				}
			} else if err := p.skip(length); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %v inside a sequence", ErrMalformed, t)
		}
	}
}

// value renders a kept value as a string; false for VRs routing cannot use.
func (p *hparser) value(vr string, t tag.Tag, b []byte) (string, bool) {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI", "UC", "UR", "UT":
		return strings.Trim(string(b), " \x00"), true
	case "US", "SS", "UL", "SL", "FL", "FD":
		size := map[string]int{"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8}[vr]
		if len(b)%size != 0 {
			return "", false
		}
		vals := make([]string, 0, len(b)/size)
		for i := 0; i+size <= len(b); i += size {
			var s string
			switch vr {
			case "US":
				s = strconv.FormatUint(uint64(p.bo.Uint16(b[i:])), 10)
			case "SS":
				s = strconv.FormatInt(int64(int16(p.bo.Uint16(b[i:]))), 10)
			case "UL":
				s = strconv.FormatUint(uint64(p.bo.Uint32(b[i:])), 10)
			case "SL":
				s = strconv.FormatInt(int64(int32(p.bo.Uint32(b[i:]))), 10)
			case "FL":
				s = strconv.FormatFloat(float64(math.Float32frombits(p.bo.Uint32(b[i:]))), 'g', -1, 32)
			case "FD":
				s = strconv.FormatFloat(math.Float64frombits(p.bo.Uint64(b[i:])), 'g', -1, 64)
			}
			vals = append(vals, s)
		}
		return strings.Join(vals, `\`), true
	case "":
		// Implicit VR with an unknown (private) tag: keep printable text.
		for _, c := range b {
			if c != 0 && (c < 0x20 || c > 0x7E) {
				return "", false
			}
		}
		return strings.Trim(string(b), " \x00"), true
	}
	return "", false
}

// FileInfo describes a file sniffed by SniffFile.
type FileInfo struct {
	// Header holds the data set's attributes up to the pixel data.
	Header *Header
	// DataSetOffset is where the bare data set starts in the file (after the
	// preamble and file meta, if any).
	DataSetOffset int64
	// Part10 is true for files with the 128-byte preamble and "DICM".
	Part10 bool
	// SOPClassUID is MediaStorageSOPClassUID from the meta (or the data set).
	SOPClassUID string
	// TransferSyntaxUID of the data set.
	TransferSyntaxUID string
	// PixelDataEnd is the file offset where a defined-length pixel data value
	// ends (0 when unknown): a shorter file is truncated.
	PixelDataEnd int64
}

// IsDICOMDIR reports whether the file is a media directory (never ingested).
func (f *FileInfo) IsDICOMDIR() bool { return f.SOPClassUID == MediaStorageDirectory }

// SniffFile recognises a DICOM file in r: Part-10 (preamble + DICM), file meta
// without preamble, or a bare data set in implicit or explicit VR little endian
// (or explicit big endian), and reads its header up to the pixel data.
// dcm.ErrNotDICOM means the bytes do not look like DICOM at all (skip the file);
// ErrMalformed means they do but cannot be parsed (quarantine it).
func SniffFile(r io.Reader, max int64) (*FileInfo, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, _ := br.Peek(132)
	fi := &FileInfo{}
	var off int64
	if len(head) == 132 && string(head[128:132]) == "DICM" {
		fi.Part10 = true
		if _, err := br.Discard(132); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		off = 132
	}
	ts := ""
	if b, _ := br.Peek(4); len(b) == 4 && binary.LittleEndian.Uint16(b) == 0x0002 {
		meta, n, err := dcm.ReadMetaGroup(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		off += n
		ts = meta.TransferSyntaxUID
		fi.SOPClassUID = meta.MediaStorageSOPClassUID
		if ts == "" {
			return nil, fmt.Errorf("%w: file meta has no TransferSyntaxUID", ErrMalformed)
		}
	} else if fi.Part10 {
		// Some writers omit the meta group; guess the syntax from the bytes.
		ts = guessSyntax(br)
		if ts == "" {
			return nil, fmt.Errorf("%w: no file meta and no recognisable data set", ErrMalformed)
		}
	} else {
		ts = guessSyntax(br)
		if ts == "" {
			return nil, dcm.ErrNotDICOM
		}
	}
	fi.DataSetOffset = off
	if fi.IsDICOMDIR() {
		return fi, nil
	}
	fi.TransferSyntaxUID = ts
	h, prefix, err := ReadHeader(br, ts, max)
	if err != nil {
		if !fi.Part10 && errors.Is(err, ErrMalformed) && h != nil && h.Len() == 0 {
			return nil, dcm.ErrNotDICOM
		}
		return nil, err
	}
	fi.Header = h
	if h.HasPixelData && h.PixelDataLength != tag.VLUndefinedLength {
		fi.PixelDataEnd = off + int64(len(prefix)) + int64(h.PixelDataLength)
	}
	if fi.SOPClassUID == "" {
		fi.SOPClassUID = h.Str(tag.SOPClassUID)
	}
	if !fi.Part10 && (h.Str(tag.SOPInstanceUID) == "" || fi.SOPClassUID == "") {
		// A bare data set must at least identify itself to count as DICOM.
		return nil, dcm.ErrNotDICOM
	}
	return fi, nil
}

// guessSyntax inspects the first element of a bare data set: its group must be
// a plausible first group (0002..0008, even) and the bytes after the tag tell
// explicit VR (two capital letters) from implicit VR.
func guessSyntax(br *bufio.Reader) string {
	b, _ := br.Peek(8)
	if len(b) < 8 {
		return ""
	}
	plausible := func(g uint16) bool { return g >= 0x0002 && g <= 0x0008 && g%2 == 0 }
	if g := binary.LittleEndian.Uint16(b); plausible(g) {
		if validVR(b[4:6]) {
			return dcm.ExplicitVRLittleEndian
		}
		return dcm.ImplicitVRLittleEndian
	}
	if g := binary.BigEndian.Uint16(b); plausible(g) && validVR(b[4:6]) {
		return dcm.ExplicitVRBigEndian
	}
	return ""
}

// Part10Header returns a preamble and file meta for a bare data set, so a
// stored data set can be read by Part-10 parsers (e.g. suyashkumar/dicom):
// io.MultiReader(bytes.NewReader(hdr), dataSet).
func Part10Header(sopClass, sopInstance, ts string) []byte {
	return dcm.AppendFileMeta(nil, dcm.FileMeta{MediaStorageSOPClassUID: sopClass, MediaStorageSOPInstanceUID: sopInstance,
		TransferSyntaxUID: ts, ImplementationClassUID: ImplementationClassUID, ImplementationVersionName: "ANOMALYNODE"})
}

// ImplementationClassUID identifies files whose meta this package wrote.
const ImplementationClassUID = "2.25.302071939519453542432478906121536440817"
