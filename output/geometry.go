package output

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/fgroups"
)

// ErrBadSource means a source slice lacks what an output needs (geometry,
// UIDs, consistent sizes).
var ErrBadSource = errors.New("output: unusable source slice")

func getElement(ds *dicom.Dataset, keyword string) *dicom.Element {
	if ds == nil {
		return nil
	}
	info, err := findKeyword(keyword)
	if err != nil {
		return nil
	}
	el, err := ds.FindElementByTag(info.Tag)
	if err != nil {
		return nil
	}
	return el
}

// getStrings returns a string attribute's values (nil when absent or not a string).
func getStrings(ds *dicom.Dataset, keyword string) []string {
	el := getElement(ds, keyword)
	if el == nil || el.Value == nil || el.Value.ValueType() != dicom.Strings {
		return nil
	}
	return dicom.MustGetStrings(el.Value)
}

func getString(ds *dicom.Dataset, keyword string) string {
	v := getStrings(ds, keyword)
	if len(v) == 0 {
		return ""
	}
	return strings.TrimRight(strings.TrimSpace(v[0]), "\x00")
}

func getInt(ds *dicom.Dataset, keyword string) (int, bool) {
	el := getElement(ds, keyword)
	if el == nil || el.Value == nil {
		return 0, false
	}
	switch el.Value.ValueType() {
	case dicom.Ints:
		v := dicom.MustGetInts(el.Value)
		if len(v) > 0 {
			return v[0], true
		}
	case dicom.Strings:
		v := dicom.MustGetStrings(el.Value)
		if len(v) > 0 {
			n, err := strconv.Atoi(strings.TrimSpace(v[0]))
			return n, err == nil
		}
	}
	return 0, false
}

func getFloats(ds *dicom.Dataset, keyword string) ([]float64, error) {
	return parseDS(keyword, getStrings(ds, keyword))
}

// slice is a source with its geometry parsed, ready to be ordered.
type slice struct {
	src      *SourceSlice
	index    int // position in SeriesResult.Sources
	sopClass string
	sopInst  string
	geom     frameGeometry
	ipp      []float64
	along    float64 // position along the slice normal
}

// frameNumber is the 1-based DICOM frame number a reference to this slice
// carries (ReferencedFrameNumber), or 0 for a single-frame source, whose
// references name the instance alone as they always have.
func (s *slice) frameNumber() int {
	if !s.geom.multiFrame {
		return 0
	}
	return s.src.Frame + 1
}

// frameGeometry is the plane of one source frame, as the source wrote it
// (strings, so outputs copy the values exactly).
type frameGeometry struct {
	ipp, iop, spacing, thickness []string
	// multiFrame is true for a multi-frame source (NumberOfFrames above 1, or
	// an enhanced object with functional groups even if it has one frame):
	// references to it name the frame.
	multiFrame bool
	// frames is the source's NumberOfFrames (1 when absent).
	frames int
}

// sourceGeometry reads the plane of frame s.Frame of a source; its errors
// say what is missing, and the caller names the slice. A classic
// single-frame header gives its top-level ImagePositionPatient,
// ImageOrientationPatient, PixelSpacing and SliceThickness. An enhanced
// multi-frame header (PS3.3 C.7.6.16) gives the frame's Plane Position,
// Plane Orientation and Pixel Measures functional groups, from its item of
// the Per-frame Functional Groups Sequence when there, else from the Shared
// Functional Groups Sequence; orientation and pixel measures absent from both
// fall back to the top level, which describes every frame. A position is
// never guessed: a source with more than one frame and no Plane Position for
// the frame is an ErrBadSource naming the frame.
func sourceGeometry(s *SourceSlice) (frameGeometry, error) {
	h := s.Header
	g := frameGeometry{frames: 1}
	if n, ok := getInt(h, "NumberOfFrames"); ok && n > 1 {
		g.frames = n
	}
	g.multiFrame = g.frames > 1 || fgroups.Enhanced(h)
	if s.Frame < 0 || s.Frame >= g.frames {
		return g, fmt.Errorf("frame number %d, but the source has %d frame(s)", s.Frame+1, g.frames)
	}
	fr, err := fgroups.Of(h, s.Frame, g.frames)
	if err != nil {
		return g, err
	}
	group := func(macro, t tag.Tag) []string {
		if el := fr.Element(macro, t); el != nil && el.Value != nil && el.Value.ValueType() == dicom.Strings {
			return dicom.MustGetStrings(el.Value)
		}
		return nil
	}
	g.ipp = group(tag.PlanePositionSequence, tag.ImagePositionPatient)
	if g.ipp == nil {
		if g.frames > 1 {
			return g, fmt.Errorf("frame number %d of %d has no ImagePositionPatient (no Plane Position in its Per-frame or the Shared Functional Groups)",
				s.Frame+1, g.frames)
		}
		g.ipp = getStrings(h, "ImagePositionPatient")
	}
	if g.iop = group(tag.PlaneOrientationSequence, tag.ImageOrientationPatient); g.iop == nil {
		g.iop = getStrings(h, "ImageOrientationPatient")
	}
	if g.spacing = group(tag.PixelMeasuresSequence, tag.PixelSpacing); g.spacing == nil {
		g.spacing = getStrings(h, "PixelSpacing")
	}
	if g.thickness = group(tag.PixelMeasuresSequence, tag.SliceThickness); g.thickness == nil {
		g.thickness = getStrings(h, "SliceThickness")
	}
	return g, nil
}

// parseDS parses Decimal String values.
func parseDS(keyword string, vals []string) ([]float64, error) {
	if len(vals) == 0 {
		return nil, fmt.Errorf("%w: no %s", ErrBadSource, keyword)
	}
	out := make([]float64, len(vals))
	for i, v := range vals {
		f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimRight(v, "\x00")), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s value %q", ErrBadSource, keyword, v)
		}
		out[i] = f
	}
	return out, nil
}

// where names a source slice in errors: its index, and its frame when the
// source has several.
func where(i int, s *SourceSlice, g frameGeometry) string {
	if g.multiFrame {
		return fmt.Sprintf("slice %d (frame number %d)", i, s.Frame+1)
	}
	return fmt.Sprintf("slice %d", i)
}

// orderedSlices validates the sources and orders them along the slice normal
// (the cross product of the row and column direction cosines), so frame k of
// an output is always the k-th slice in space, whatever order they came in.
// Each frame of a multi-frame source is a slice of its own, on that frame's
// geometry.
func orderedSlices(r *SeriesResult) ([]slice, []float64, error) {
	if len(r.Sources) == 0 {
		return nil, nil, fmt.Errorf("%w: no source slices", ErrBadSource)
	}
	out := make([]slice, 0, len(r.Sources))
	var normal []float64
	var iop0 []string
	for i := range r.Sources {
		s := &r.Sources[i]
		n := s.Rows * s.Cols
		if s.Header == nil || s.Rows <= 0 || s.Cols <= 0 || len(s.Mask) != n || len(s.Scores) != n {
			return nil, nil, fmt.Errorf("%w: slice %d: header or Rows*Cols-sized scores/mask missing", ErrBadSource, i)
		}
		if r0, ok := getInt(s.Header, "Rows"); ok && r0 != s.Rows {
			return nil, nil, fmt.Errorf("%w: slice %d: Rows %d but header says %d", ErrBadSource, i, s.Rows, r0)
		}
		if c0, ok := getInt(s.Header, "Columns"); ok && c0 != s.Cols {
			return nil, nil, fmt.Errorf("%w: slice %d: Cols %d but header says %d", ErrBadSource, i, s.Cols, c0)
		}
		sl := slice{src: s, index: i, sopClass: getString(s.Header, "SOPClassUID"), sopInst: getString(s.Header, "SOPInstanceUID")}
		if sl.sopClass == "" || sl.sopInst == "" {
			return nil, nil, fmt.Errorf("%w: slice %d: no SOP Class/Instance UID", ErrBadSource, i)
		}
		g, err := sourceGeometry(s)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: slice %d (SOP Instance %s): %v", ErrBadSource, i, sl.sopInst, err)
		}
		sl.geom = g
		ipp, err := parseDS("ImagePositionPatient", g.ipp)
		if err != nil || len(ipp) != 3 {
			return nil, nil, fmt.Errorf("%w: %s: ImagePositionPatient", ErrBadSource, where(i, s, g))
		}
		iop, err := parseDS("ImageOrientationPatient", g.iop)
		if err != nil || len(iop) != 6 {
			return nil, nil, fmt.Errorf("%w: %s: ImageOrientationPatient", ErrBadSource, where(i, s, g))
		}
		if normal == nil {
			normal = []float64{
				iop[1]*iop[5] - iop[2]*iop[4],
				iop[2]*iop[3] - iop[0]*iop[5],
				iop[0]*iop[4] - iop[1]*iop[3],
			}
			iop0 = g.iop
		} else if !sameStrings(iop0, g.iop) {
			// One shared Plane Orientation group must be true for every frame.
			if !closeVec(iop, mustFloats(iop0), 1e-4) {
				return nil, nil, fmt.Errorf("%w: %s: ImageOrientationPatient differs from the series'", ErrBadSource, where(i, s, g))
			}
		}
		sl.ipp = ipp
		sl.along = ipp[0]*normal[0] + ipp[1]*normal[1] + ipp[2]*normal[2]
		out = append(out, sl)
	}
	// Slices at one position (frames of a multi-frame source may share it)
	// keep an order of their own, not their arrival order, so a rebuild is
	// byte-identical.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.along != b.along {
			return a.along < b.along
		}
		if a.sopInst != b.sopInst {
			return a.sopInst < b.sopInst
		}
		return a.src.Frame < b.src.Frame
	})
	return out, normal, nil
}

func mustFloats(s []string) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.TrimSpace(a[i]) != strings.TrimSpace(b[i]) {
			return false
		}
	}
	return true
}

func closeVec(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

// regularSpacing returns the distance between consecutive slices when it is
// the same (within 1 %) for all of them, and false otherwise.
func regularSpacing(sl []slice) (float64, bool) {
	if len(sl) < 2 {
		return 0, false
	}
	d0 := sl[1].along - sl[0].along
	if d0 <= 1e-6 {
		return 0, false
	}
	for i := 2; i < len(sl); i++ {
		if d := sl[i].along - sl[i-1].along; math.Abs(d-d0) > 0.01*d0 {
			return 0, false
		}
	}
	return d0, true
}

// formatDS formats v as a Decimal String of at most 16 characters.
func formatDS(v float64) string {
	for prec := 10; prec > 0; prec-- {
		s := strconv.FormatFloat(v, 'g', prec, 64)
		if len(s) <= 16 {
			return s
		}
	}
	return "0"
}

// patientOrientation turns direction cosines into PatientOrientation letters
// (PS3.3 C.7.6.1.1.1), e.g. the row direction (1,0,0) is "L".
func patientOrientation(iop []float64) []string {
	if len(iop) != 6 {
		return []string{}
	}
	return []string{orientationLetters(iop[0:3]), orientationLetters(iop[3:6])}
}

func orientationLetters(v []float64) string {
	type axis struct {
		mag      float64
		pos, neg byte
	}
	axes := []axis{
		{v[0], 'L', 'R'},
		{v[1], 'P', 'A'},
		{v[2], 'H', 'F'},
	}
	sort.SliceStable(axes, func(i, j int) bool { return math.Abs(axes[i].mag) > math.Abs(axes[j].mag) })
	var b []byte
	for _, a := range axes {
		if math.Abs(a.mag) < 0.25 {
			continue
		}
		if a.mag > 0 {
			b = append(b, a.pos)
		} else {
			b = append(b, a.neg)
		}
	}
	if len(b) == 0 {
		return "L"
	}
	return string(b)
}
