// Package findings turns a series' pixel score maps into findings: connected
// regions of the series' 3-D score volume, on the series' real geometry, that
// are big enough and strong enough to show a clinician (METHOD.md 3, "Beyond
// the paper"). It also calibrates those limits on healthy validation series.
//
// It knows nothing of DICOM, ONNX or NATS: callers hand it planes (positions,
// orientations and spacings already parsed) and score maps.
package findings

import "errors"

// ErrGeometry means the slices given to Extract do not form one stack: they
// differ in orientation or size, or a plane is degenerate.
var ErrGeometry = errors.New("findings: slices do not form one stack")

// Plane is the geometry of one slice in patient coordinates (mm).
type Plane struct {
	// Position is ImagePositionPatient: the centre of the first pixel.
	Position [3]float64
	// Orientation is ImageOrientationPatient: the row direction cosines, then
	// the column direction cosines.
	Orientation [6]float64
	// Spacing is PixelSpacing: the distance between rows, then between columns.
	Spacing [2]float64
	// Thickness is the slice's nominal extent along its normal
	// (SpacingBetweenSlices, else SliceThickness; 0 when unknown). Only a
	// single-slice stack needs it: every other slice's extent comes from its
	// neighbours' positions.
	Thickness float64
}

// Slice is one scored slice of a stack.
type Slice struct {
	Plane      Plane
	Rows, Cols int
	// Scores is the pixel score map, Rows*Cols long, row-major.
	Scores []float32
}

// Params are the limits a finding must pass.
type Params struct {
	// PixelThreshold: a voxel is part of a region when its score is above it.
	PixelThreshold float32
	// MinVolumeMM3: a region is a finding when its volume is at least this.
	MinVolumeMM3 float64
	// PeakThreshold: ... and its peak score is at least this.
	PeakThreshold float32
	// PixelFPR and SeriesFPR are the healthy-voxel and healthy-series rates
	// these limits were calibrated for (Calibration.Params sets them; Extract
	// does not read them, a report states them).
	PixelFPR, SeriesFPR float64
}

// Finding is one kept connected region.
type Finding struct {
	// ID is 1-based; findings are numbered by peak score, highest first.
	ID int
	// Voxels counts the region's voxels; VolumeMM3 is their volume (pixel
	// area times the slice's extent along the normal).
	Voxels    int
	VolumeMM3 float64
	// Peak and Mean are the region's highest and mean voxel score.
	Peak, Mean float32
	// Centroid is the score-unweighted centre of the region in patient
	// coordinates (mm).
	Centroid [3]float64
	// FirstSlice and LastSlice are the 0-based ranks along the slice normal
	// (ascending) of the region's first and last slice.
	FirstSlice, LastSlice int
}

// Result is the outcome of Extract.
type Result struct {
	// Findings are the kept regions, ID order.
	Findings []Finding
	// Labels[i] is the label map of input slice i (input order), Rows*Cols
	// long: 0 outside every finding, else the finding's ID.
	Labels [][]uint16
	// Order lists input slice indices along the normal (ascending).
	Order []int
	// Regions counts the connected regions above PixelThreshold before the
	// volume and peak limits.
	Regions int
}
