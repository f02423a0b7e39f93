package output

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"anomalynode/internal/dcm"
)

// SEG is a Segmentation read back by ReadSEG: enough to check what BuildSEG
// wrote (geometry and every mask bit) without trusting any 1-bit decoder but
// our own.
type SEG struct {
	// Attrs gives access to every top-level attribute.
	Attrs               *Attrs
	Rows, Cols          int
	FrameOfReferenceUID string
	// PixelSpacing, ImageOrientationPatient, SliceThickness and
	// SpacingBetweenSlices are the shared functional groups' values.
	PixelSpacing            []string
	ImageOrientationPatient []string
	SliceThickness          string
	SpacingBetweenSlices    string
	// SharedSegmentIdentification is true when the shared groups (wrongly,
	// for our SEGs) carry a Segment Identification.
	SharedSegmentIdentification bool
	// PixelDataLength is the Pixel Data value length in bytes (with padding).
	PixelDataLength int
	Frames          []SEGFrameInfo
}

// SEGFrameInfo is one frame's per-frame functional groups and mask.
type SEGFrameInfo struct {
	ImagePositionPatient []string
	// SourceSOPInstanceUID and SourceSOPClassUID are the Derivation Image's source.
	SourceSOPInstanceUID string
	SourceSOPClassUID    string
	// SourceFrameNumbers are the source's ReferencedFrameNumber values
	// (1-based); nil when the reference names a whole (single-frame) instance.
	SourceFrameNumbers []int
	// DerivationCode and PurposeCode are "SCHEME VALUE", e.g. "DCM 113076".
	DerivationCode       string
	PurposeCode          string
	SegmentNumber        int
	DimensionIndexValues []int
	Mask                 []bool
}

// ErrNotSEG means the bytes are not a binary SEG that ReadSEG can read.
var ErrNotSEG = errors.New("output: not a readable binary segmentation")

// ReadSEG parses a Part 10 binary SEG in Explicit VR Little Endian (what
// BuildSEG writes) with a parser of our own, and unpacks its frames itself:
// first pixel in the least significant bit, frames contiguous.
// suyashkumar/dicom unpacks 1-bit data most-significant-bit first, and it
// panics or allocates without bound on some malformed input.
func ReadSEG(part10 []byte) (*SEG, error) {
	if len(part10) < 132 || string(part10[128:132]) != "DICM" {
		return nil, ErrNotPart10
	}
	meta, err := parseExplicitLE(part10[132:], 0)
	if err != nil {
		return nil, err
	}
	if ts := meta.String("TransferSyntaxUID"); ts != dcm.ExplicitVRLittleEndian {
		return nil, fmt.Errorf("%w: transfer syntax %q", ErrNotSEG, ts)
	}
	body, err := bareDataSet(part10)
	if err != nil {
		return nil, err
	}
	a, err := parseExplicitLE(body, 0)
	if err != nil {
		return nil, err
	}
	s := &SEG{Attrs: a}
	if a.String("SOPClassUID") != SegmentationStorage {
		return nil, fmt.Errorf("%w: SOP class %q", ErrNotSEG, a.String("SOPClassUID"))
	}
	if a.String("SegmentationType") != "BINARY" {
		return nil, fmt.Errorf("%w: SegmentationType %q", ErrNotSEG, a.String("SegmentationType"))
	}
	s.Rows, s.Cols = a.Int("Rows"), a.Int("Columns")
	if s.Rows <= 0 || s.Cols <= 0 {
		return nil, fmt.Errorf("%w: Rows %d Columns %d", ErrNotSEG, s.Rows, s.Cols)
	}
	if ba := a.Int("BitsAllocated"); ba != 1 {
		return nil, fmt.Errorf("%w: BitsAllocated %d", ErrNotSEG, ba)
	}
	nFrames, err := strconv.Atoi(a.String("NumberOfFrames"))
	if err != nil || nFrames <= 0 {
		return nil, fmt.Errorf("%w: NumberOfFrames %q", ErrNotSEG, a.String("NumberOfFrames"))
	}
	s.FrameOfReferenceUID = a.String("FrameOfReferenceUID")
	if shared := a.Items("SharedFunctionalGroupsSequence"); len(shared) == 1 {
		if pm := shared[0].First("PixelMeasuresSequence"); pm != nil {
			s.PixelSpacing = pm.Strings("PixelSpacing")
			s.SliceThickness = pm.String("SliceThickness")
			s.SpacingBetweenSlices = pm.String("SpacingBetweenSlices")
		}
		if po := shared[0].First("PlaneOrientationSequence"); po != nil {
			s.ImageOrientationPatient = po.Strings("ImageOrientationPatient")
		}
		s.SharedSegmentIdentification = shared[0].First("SegmentIdentificationSequence") != nil
	}
	perFrame := a.Items("PerFrameFunctionalGroupsSequence")
	if len(perFrame) != nFrames {
		return nil, fmt.Errorf("%w: %d per-frame groups for %d frames", ErrNotSEG, len(perFrame), nFrames)
	}
	pix := a.Bytes("PixelData")
	s.PixelDataLength = len(pix)
	// The pixel data must hold every frame; this also bounds the allocation
	// below by the input's size.
	if uint64(nFrames)*uint64(s.Rows)*uint64(s.Cols) > 8*uint64(len(pix)) {
		return nil, fmt.Errorf("%w: %d bytes of pixel data for %d frames of %dx%d", ErrNotSEG, len(pix), nFrames, s.Rows, s.Cols)
	}
	masks, err := UnpackBits(pix, nFrames, s.Rows, s.Cols)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSEG, err)
	}
	for i, pf := range perFrame {
		f := SEGFrameInfo{Mask: masks[i]}
		if pp := pf.First("PlanePositionSequence"); pp != nil {
			f.ImagePositionPatient = pp.Strings("ImagePositionPatient")
		}
		if fc := pf.First("FrameContentSequence"); fc != nil {
			f.DimensionIndexValues = fc.Uint32s("DimensionIndexValues")
		}
		if si := pf.First("SegmentIdentificationSequence"); si != nil {
			f.SegmentNumber = si.Int("ReferencedSegmentNumber")
		}
		if di := pf.First("DerivationImageSequence"); di != nil {
			if dc := di.First("DerivationCodeSequence"); dc != nil {
				f.DerivationCode = dc.String("CodingSchemeDesignator") + " " + dc.String("CodeValue")
			}
			if src := di.First("SourceImageSequence"); src != nil {
				f.SourceSOPInstanceUID = src.String("ReferencedSOPInstanceUID")
				f.SourceSOPClassUID = src.String("ReferencedSOPClassUID")
				if src.Has("ReferencedFrameNumber") {
					if f.SourceFrameNumbers, err = frameNumbers(src.Strings("ReferencedFrameNumber")); err != nil {
						return nil, fmt.Errorf("%w: frame %d: %v", ErrNotSEG, i+1, err)
					}
				}
				if pr := src.First("PurposeOfReferenceCodeSequence"); pr != nil {
					f.PurposeCode = pr.String("CodingSchemeDesignator") + " " + pr.String("CodeValue")
				}
			}
		}
		s.Frames = append(s.Frames, f)
	}
	return s, nil
}

// frameNumbers parses ReferencedFrameNumber (IS) values: frame numbers start at 1.
func frameNumbers(vals []string) ([]int, error) {
	out := make([]int, 0, len(vals))
	for _, v := range vals {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("ReferencedFrameNumber %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// Attrs is a parsed data set (or sequence item): attributes by tag.
type Attrs struct {
	els map[uint32]*attr
}

type attr struct {
	vr    string
	value []byte
	items []*Attrs
}

func (a *Attrs) get(keyword string) *attr {
	if a == nil {
		return nil
	}
	info, err := findKeyword(keyword)
	if err != nil {
		return nil
	}
	return a.els[uint32(info.Tag.Group)<<16|uint32(info.Tag.Element)]
}

// Has reports whether the attribute is present.
func (a *Attrs) Has(keyword string) bool { return a.get(keyword) != nil }

// Strings returns a text attribute's values, padding removed.
func (a *Attrs) Strings(keyword string) []string {
	at := a.get(keyword)
	if at == nil || len(at.value) == 0 {
		return nil
	}
	parts := strings.Split(string(at.value), `\`)
	for i, p := range parts {
		parts[i] = strings.TrimRight(strings.TrimSpace(p), "\x00")
	}
	return parts
}

// String returns a text attribute's first value ("" when absent).
func (a *Attrs) String(keyword string) string {
	v := a.Strings(keyword)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Int returns the first value of a US attribute, or of an IS one (0 when absent).
func (a *Attrs) Int(keyword string) int {
	at := a.get(keyword)
	if at == nil {
		return 0
	}
	switch at.vr {
	case "US":
		if len(at.value) >= 2 {
			return int(binary.LittleEndian.Uint16(at.value))
		}
	case "UL":
		if len(at.value) >= 4 {
			return int(binary.LittleEndian.Uint32(at.value))
		}
	default:
		n, _ := strconv.Atoi(a.String(keyword))
		return n
	}
	return 0
}

// Uint32s returns a UL attribute's values.
func (a *Attrs) Uint32s(keyword string) []int {
	at := a.get(keyword)
	if at == nil {
		return nil
	}
	out := make([]int, 0, len(at.value)/4)
	for i := 0; i+4 <= len(at.value); i += 4 {
		out = append(out, int(binary.LittleEndian.Uint32(at.value[i:])))
	}
	return out
}

// Bytes returns an attribute's raw value.
func (a *Attrs) Bytes(keyword string) []byte {
	if at := a.get(keyword); at != nil {
		return at.value
	}
	return nil
}

// Items returns a sequence's items.
func (a *Attrs) Items(keyword string) []*Attrs {
	if at := a.get(keyword); at != nil {
		return at.items
	}
	return nil
}

// First returns a sequence's first item (nil when absent or empty).
func (a *Attrs) First(keyword string) *Attrs {
	it := a.Items(keyword)
	if len(it) == 0 {
		return nil
	}
	return it[0]
}

// maxDepth bounds sequence nesting so hostile input cannot exhaust the stack.
const maxDepth = 16

// parseExplicitLE parses a data set in Explicit VR Little Endian. Every
// length is checked against the bytes that remain (dcm.Walker), so it
// allocates nothing beyond the input's size.
func parseExplicitLE(b []byte, depth int) (*Attrs, error) {
	return dataSet(dcm.NewWalker(b, 0, true, binary.LittleEndian), false, depth)
}

// notSEG is an ErrNotSEG error at w's position.
func notSEG(w *dcm.Walker, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrNotSEG, w.Pos, fmt.Sprintf(format, args...))
}

// dataSet reads the elements w walks, up to its end, or up to an item
// delimiter when inItem.
func dataSet(w *dcm.Walker, inItem bool, depth int) (*Attrs, error) {
	if depth > maxDepth {
		return nil, notSEG(w, "sequences nested deeper than %d", maxDepth)
	}
	a := &Attrs{els: map[uint32]*attr{}}
	for w.More() {
		group, elem, ok := w.Peek()
		if !ok {
			return nil, notSEG(w, "truncated element header")
		}
		if group == dcm.ItemGroup {
			if elem == dcm.ItemDelimitationItem && inItem {
				w.Item() // cannot fail: Peek saw its 8 bytes
				return a, nil
			}
			return nil, notSEG(w, "unexpected (FFFE,%04X)", elem)
		}
		h, err := w.Element()
		if err != nil {
			return nil, notSEG(w, "%v", err)
		}
		at := &attr{vr: h.VR}
		switch {
		case h.VR == "SQ":
			items, err := sequence(w, h.Length, depth)
			if err != nil {
				return nil, err
			}
			at.items = items
		case h.Length == dcm.UndefinedLength:
			return nil, notSEG(w, "encapsulated (undefined-length) %s value is not supported", h.VR)
		default:
			if at.value, err = w.Value(h.Length); err != nil {
				return nil, notSEG(w, "%s %v", h.VR, err)
			}
		}
		a.els[uint32(group)<<16|uint32(elem)] = at
	}
	if inItem {
		return nil, notSEG(w, "item without delimiter")
	}
	return a, nil
}

// sequence reads the items of a sequence of length vl (or undefined length)
// at w's position.
func sequence(w *dcm.Walker, vl uint32, depth int) ([]*Attrs, error) {
	s := w
	if vl != dcm.UndefinedLength {
		var err error
		if s, err = w.Within(vl); err != nil {
			return nil, notSEG(w, "sequence: %v", err)
		}
	}
	var items []*Attrs
	for {
		if vl != dcm.UndefinedLength && !s.More() {
			return items, nil
		}
		h, err := s.Item()
		if err != nil {
			return nil, notSEG(s, "truncated sequence")
		}
		switch {
		case h.Group == dcm.ItemGroup && h.Element == dcm.SequenceDelimitationItem && vl == dcm.UndefinedLength:
			return items, nil
		case h.Group == dcm.ItemGroup && h.Element == dcm.Item:
			var it *Attrs
			if h.Length == dcm.UndefinedLength {
				it, err = dataSet(s, true, depth+1)
			} else {
				iw, werr := s.Within(h.Length)
				if werr != nil {
					return nil, notSEG(s, "item: %v", werr)
				}
				it, err = dataSet(iw, false, depth+1)
			}
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		default:
			return nil, notSEG(s, "expected an item, got (%04X,%04X)", h.Group, h.Element)
		}
	}
}

// ParseFloats parses a multi-valued DS attribute's strings.
func ParseFloats(vals []string) ([]float64, error) {
	out := make([]float64, len(vals))
	for i, v := range vals {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}
