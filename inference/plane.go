package inference

import (
	"errors"
	"fmt"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/findings"
	"anomalynode/inference/pixel"
	"anomalynode/internal/dcm"
	"anomalynode/internal/fgroups"
)

// ErrNoPlane means a slice's header lacks the geometry finding extraction
// needs (ImagePositionPatient, ImageOrientationPatient, PixelSpacing).
var ErrNoPlane = errors.New("inference: slice has no plane geometry")

// Plane returns the slice's plane in patient coordinates, the input of
// finding extraction: its position, orientation and pixel spacing, and as
// nominal thickness SpacingBetweenSlices, else SliceThickness. An enhanced
// multi-frame object gives them from the frame's Plane Orientation and Pixel
// Measures functional groups, the top level filling what they lack.
func Plane(s *pixel.Slice) (findings.Plane, error) {
	var p findings.Plane
	if s.Header == nil || len(s.ImagePosition) != 3 {
		return p, fmt.Errorf("%w: no ImagePositionPatient", ErrNoPlane)
	}
	copy(p.Position[:], s.ImagePosition)
	var fr fgroups.Frame
	if fgroups.Enhanced(s.Header) {
		var err error
		if fr, err = fgroups.Of(s.Header, s.Frame, s.Frames); err != nil {
			return p, fmt.Errorf("%w: %v", ErrNoPlane, err)
		}
	}
	// value reads value i of t from the frame's macro, else the top level.
	value := func(macro, t tag.Tag, i int) (float64, bool) {
		if v, ok := dcm.NumberOf(fr.Element(macro, t), i); ok {
			return v, true
		}
		return dcm.Number(s.Header, t, i)
	}
	for i := range p.Orientation {
		v, ok := value(tag.PlaneOrientationSequence, tag.ImageOrientationPatient, i)
		if !ok {
			return p, fmt.Errorf("%w: no ImageOrientationPatient", ErrNoPlane)
		}
		p.Orientation[i] = v
	}
	for i := range p.Spacing {
		v, ok := value(tag.PixelMeasuresSequence, tag.PixelSpacing, i)
		if !ok || !(v > 0) {
			return p, fmt.Errorf("%w: no usable PixelSpacing", ErrNoPlane)
		}
		p.Spacing[i] = v
	}
	for _, t := range []tag.Tag{tag.SpacingBetweenSlices, tag.SliceThickness} {
		if v, ok := value(tag.PixelMeasuresSequence, t, 0); ok && v > 0 {
			p.Thickness = v
			break
		}
	}
	return p, nil
}
