package output

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
)

// SEG is a Segmentation read back by ReadSEG: enough to check what BuildSEG
// wrote (geometry and every mask bit) without trusting any 1-bit decoder but
// our own.
type SEG struct {
	Dataset             dicom.Dataset
	Rows, Cols          int
	FrameOfReferenceUID string
	// PixelSpacing and ImageOrientationPatient are the shared functional groups' values.
	PixelSpacing            []string
	ImageOrientationPatient []string
	SliceThickness          string
	SpacingBetweenSlices    string
	Frames                  []SEGFrameInfo
}

// SEGFrameInfo is one frame's per-frame functional groups and mask.
type SEGFrameInfo struct {
	ImagePositionPatient []string
	// SourceSOPInstanceUID and SourceSOPClassUID are the Derivation Image's source.
	SourceSOPInstanceUID string
	SourceSOPClassUID    string
	DerivationCode       string
	PurposeCode          string
	SegmentNumber        int
	DimensionIndexValues []int
	Mask                 []bool
}

// ErrNotSEG means the bytes are DICOM but not a readable binary SEG.
var ErrNotSEG = errors.New("output: not a binary segmentation")

// ReadSEG parses a Part 10 binary SEG and unpacks its frames itself (first
// pixel in the least significant bit, frames contiguous): suyashkumar/dicom
// unpacks 1-bit data most-significant-bit first.
func ReadSEG(part10 []byte) (*SEG, error) {
	ds, err := dicom.Parse(bytes.NewReader(part10), int64(len(part10)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		return nil, fmt.Errorf("output: read SEG: %w", err)
	}
	s := &SEG{Dataset: ds}
	if getString(&ds, "SOPClassUID") != SegmentationStorage {
		return nil, fmt.Errorf("%w: SOP class %q", ErrNotSEG, getString(&ds, "SOPClassUID"))
	}
	if getString(&ds, "SegmentationType") != "BINARY" {
		return nil, fmt.Errorf("%w: SegmentationType %q", ErrNotSEG, getString(&ds, "SegmentationType"))
	}
	var ok bool
	if s.Rows, ok = getInt(&ds, "Rows"); !ok || s.Rows <= 0 {
		return nil, fmt.Errorf("%w: no Rows", ErrNotSEG)
	}
	if s.Cols, ok = getInt(&ds, "Columns"); !ok || s.Cols <= 0 {
		return nil, fmt.Errorf("%w: no Columns", ErrNotSEG)
	}
	if ba, _ := getInt(&ds, "BitsAllocated"); ba != 1 {
		return nil, fmt.Errorf("%w: BitsAllocated %d", ErrNotSEG, ba)
	}
	nFrames, ok := getInt(&ds, "NumberOfFrames")
	if !ok || nFrames <= 0 {
		return nil, fmt.Errorf("%w: no NumberOfFrames", ErrNotSEG)
	}
	if int64(nFrames)*int64(s.Rows)*int64(s.Cols) > 1<<34 {
		return nil, fmt.Errorf("%w: %d frames of %dx%d is too large", ErrNotSEG, nFrames, s.Rows, s.Cols)
	}
	s.FrameOfReferenceUID = getString(&ds, "FrameOfReferenceUID")

	shared := items(getElement(&ds, "SharedFunctionalGroupsSequence"))
	if len(shared) == 1 {
		if pm := firstItem(shared[0], "PixelMeasuresSequence"); pm != nil {
			s.PixelSpacing = getStrings(pm, "PixelSpacing")
			s.SliceThickness = getString(pm, "SliceThickness")
			s.SpacingBetweenSlices = getString(pm, "SpacingBetweenSlices")
		}
		if po := firstItem(shared[0], "PlaneOrientationSequence"); po != nil {
			s.ImageOrientationPatient = getStrings(po, "ImageOrientationPatient")
		}
	}
	perFrame := items(getElement(&ds, "PerFrameFunctionalGroupsSequence"))
	if len(perFrame) != nFrames {
		return nil, fmt.Errorf("%w: %d per-frame groups for %d frames", ErrNotSEG, len(perFrame), nFrames)
	}
	pixEl := getElement(&ds, "PixelData")
	if pixEl == nil || pixEl.Value == nil || pixEl.Value.ValueType() != dicom.PixelData {
		return nil, fmt.Errorf("%w: no Pixel Data", ErrNotSEG)
	}
	pix := dicom.MustGetPixelDataInfo(pixEl.Value)
	masks, err := UnpackBits(pix.UnprocessedValueData, nFrames, s.Rows, s.Cols)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSEG, err)
	}
	for i, pf := range perFrame {
		f := SEGFrameInfo{Mask: masks[i]}
		if pp := firstItem(pf, "PlanePositionSequence"); pp != nil {
			f.ImagePositionPatient = getStrings(pp, "ImagePositionPatient")
		}
		if fc := firstItem(pf, "FrameContentSequence"); fc != nil {
			if el := getElement(fc, "DimensionIndexValues"); el != nil && el.Value.ValueType() == dicom.Ints {
				f.DimensionIndexValues = dicom.MustGetInts(el.Value)
			}
		}
		if si := firstItem(pf, "SegmentIdentificationSequence"); si != nil {
			f.SegmentNumber, _ = getInt(si, "ReferencedSegmentNumber")
		}
		if di := firstItem(pf, "DerivationImageSequence"); di != nil {
			if dc := firstItem(di, "DerivationCodeSequence"); dc != nil {
				f.DerivationCode = getString(dc, "CodingSchemeDesignator") + " " + getString(dc, "CodeValue")
			}
			if src := firstItem(di, "SourceImageSequence"); src != nil {
				f.SourceSOPInstanceUID = getString(src, "ReferencedSOPInstanceUID")
				f.SourceSOPClassUID = getString(src, "ReferencedSOPClassUID")
				if pr := firstItem(src, "PurposeOfReferenceCodeSequence"); pr != nil {
					f.PurposeCode = getString(pr, "CodingSchemeDesignator") + " " + getString(pr, "CodeValue")
				}
			}
		}
		s.Frames = append(s.Frames, f)
	}
	return s, nil
}

// items returns a sequence's items as data sets.
func items(el *dicom.Element) []*dicom.Dataset {
	if el == nil || el.Value == nil || el.Value.ValueType() != dicom.Sequences {
		return nil
	}
	seq, ok := el.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok {
		return nil
	}
	out := make([]*dicom.Dataset, 0, len(seq))
	for _, it := range seq {
		els, _ := it.GetValue().([]*dicom.Element)
		out = append(out, &dicom.Dataset{Elements: els})
	}
	return out
}

func firstItem(ds *dicom.Dataset, keyword string) *dicom.Dataset {
	it := items(getElement(ds, keyword))
	if len(it) == 0 {
		return nil
	}
	return it[0]
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
