package output

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
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
	vals := getStrings(ds, keyword)
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

// slice is a source with its geometry parsed, ready to be ordered.
type slice struct {
	src      *SourceSlice
	index    int // position in SeriesResult.Sources
	sopClass string
	sopInst  string
	ipp      []float64
	along    float64 // position along the slice normal
}

// orderedSlices validates the sources and orders them along the slice normal
// (the cross product of the row and column direction cosines), so frame k of
// an output is always the k-th slice in space, whatever order they came in.
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
		ipp, err := getFloats(s.Header, "ImagePositionPatient")
		if err != nil || len(ipp) != 3 {
			return nil, nil, fmt.Errorf("%w: slice %d: ImagePositionPatient", ErrBadSource, i)
		}
		iop, err := getFloats(s.Header, "ImageOrientationPatient")
		if err != nil || len(iop) != 6 {
			return nil, nil, fmt.Errorf("%w: slice %d: ImageOrientationPatient", ErrBadSource, i)
		}
		if normal == nil {
			normal = []float64{
				iop[1]*iop[5] - iop[2]*iop[4],
				iop[2]*iop[3] - iop[0]*iop[5],
				iop[0]*iop[4] - iop[1]*iop[3],
			}
			iop0 = getStrings(s.Header, "ImageOrientationPatient")
		} else if !sameStrings(iop0, getStrings(s.Header, "ImageOrientationPatient")) {
			// One shared Plane Orientation group must be true for every frame.
			if !closeVec(iop, mustFloats(iop0), 1e-4) {
				return nil, nil, fmt.Errorf("%w: slice %d: ImageOrientationPatient differs from the series'", ErrBadSource, i)
			}
		}
		sl.ipp = ipp
		sl.along = ipp[0]*normal[0] + ipp[1]*normal[1] + ipp[2]*normal[2]
		out = append(out, sl)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].along < out[j].along })
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
