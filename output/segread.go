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

const undefinedLength = 0xFFFFFFFF

// maxDepth bounds sequence nesting so hostile input cannot exhaust the stack.
const maxDepth = 16

// parseExplicitLE parses a data set in Explicit VR Little Endian. Every
// length is checked against the bytes that remain, so it allocates nothing
// beyond the input's size.
func parseExplicitLE(b []byte, depth int) (*Attrs, error) {
	p := &leParser{b: b}
	a, err := p.dataSet(len(b), false, depth)
	if err != nil {
		return nil, err
	}
	return a, nil
}

type leParser struct {
	b   []byte
	pos int
}

func (p *leParser) fail(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrNotSEG, p.pos, fmt.Sprintf(format, args...))
}

func (p *leParser) u16(at int) uint16 { return binary.LittleEndian.Uint16(p.b[at:]) }
func (p *leParser) u32(at int) uint32 { return binary.LittleEndian.Uint32(p.b[at:]) }

// dataSet reads elements up to end, or up to an item delimiter when inItem.
func (p *leParser) dataSet(end int, inItem bool, depth int) (*Attrs, error) {
	if depth > maxDepth {
		return nil, p.fail("sequences nested deeper than %d", maxDepth)
	}
	a := &Attrs{els: map[uint32]*attr{}}
	for p.pos < end {
		if end-p.pos < 8 {
			return nil, p.fail("truncated element header")
		}
		group, elem := p.u16(p.pos), p.u16(p.pos+2)
		if group == 0xFFFE {
			if elem == 0xE00D && inItem {
				p.pos += 8
				return a, nil
			}
			return nil, p.fail("unexpected (FFFE,%04X)", elem)
		}
		t := uint32(group)<<16 | uint32(elem)
		vr := string(p.b[p.pos+4 : p.pos+6])
		var vl uint32
		if dcm.LongVR(vr) {
			if end-p.pos < 12 {
				return nil, p.fail("truncated element header")
			}
			vl = p.u32(p.pos + 8)
			p.pos += 12
		} else {
			vl = uint32(p.u16(p.pos + 6))
			p.pos += 8
		}
		at := &attr{vr: vr}
		switch {
		case vr == "SQ":
			items, err := p.sequence(vl, end, depth)
			if err != nil {
				return nil, err
			}
			at.items = items
		case vl == undefinedLength:
			return nil, p.fail("encapsulated (undefined-length) %s value is not supported", vr)
		default:
			if uint64(vl) > uint64(end-p.pos) {
				return nil, p.fail("%s value of %d bytes overruns the input", vr, vl)
			}
			at.value = p.b[p.pos : p.pos+int(vl)]
			p.pos += int(vl)
		}
		a.els[t] = at
	}
	if inItem {
		return nil, p.fail("item without delimiter")
	}
	return a, nil
}

// sequence reads the items of a sequence of length vl (or undefined length).
func (p *leParser) sequence(vl uint32, end int, depth int) ([]*Attrs, error) {
	seqEnd := end
	if vl != undefinedLength {
		if uint64(vl) > uint64(end-p.pos) {
			return nil, p.fail("sequence of %d bytes overruns the input", vl)
		}
		seqEnd = p.pos + int(vl)
	}
	var items []*Attrs
	for {
		if vl != undefinedLength && p.pos == seqEnd {
			return items, nil
		}
		if seqEnd-p.pos < 8 {
			return nil, p.fail("truncated sequence")
		}
		group, elem, il := p.u16(p.pos), p.u16(p.pos+2), p.u32(p.pos+4)
		p.pos += 8
		switch {
		case group == 0xFFFE && elem == 0xE0DD && vl == undefinedLength:
			return items, nil
		case group == 0xFFFE && elem == 0xE000:
			var it *Attrs
			var err error
			if il == undefinedLength {
				it, err = p.dataSet(seqEnd, true, depth+1)
			} else {
				if uint64(il) > uint64(seqEnd-p.pos) {
					return nil, p.fail("item of %d bytes overruns its sequence", il)
				}
				it, err = p.dataSet(p.pos+int(il), false, depth+1)
			}
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		default:
			return nil, p.fail("expected an item, got (%04X,%04X)", group, elem)
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
