package output

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// SR is a measurement report read back by ReadSR: what a reporting system
// would pull out of it, to check what BuildSR wrote against the SEG.
type SR struct {
	// Attrs gives access to every top-level attribute.
	Attrs *Attrs
	// Groups are the TID 1411 measurement groups, one per finding, in order.
	Groups []SRGroup
	// NoAbnormality is true when the qualitative evaluation says the series
	// was analysed and nothing was found.
	NoAbnormality bool
}

// SRGroup is one measurement group: a finding.
type SRGroup struct {
	TrackingIdentifier string
	TrackingUID        string
	// SEGInstanceUID and Segment are the Referenced Segment.
	SEGInstanceUID string
	Segment        int
	// SourceSeries is the Source series for segmentation.
	SourceSeries string
	// VolumeMM3 is the Volume in mm3; Peak and Mean the anomaly scores
	// (derivation Maximum and Mean).
	VolumeMM3, Peak, Mean float64
	// Center is the SCOORD3D point in patient coordinates (mm).
	Center []float64
}

// ErrNotSR means the bytes are not a measurement report ReadSR can read.
var ErrNotSR = errors.New("output: not a readable measurement report")

// ReadSR parses a Part 10 Comprehensive 3D SR in Explicit VR Little Endian
// (what BuildSR writes) with the package's own parser, and collects its
// measurement groups by concept name, not by position.
func ReadSR(part10 []byte) (*SR, error) {
	body, err := bareDataSet(part10)
	if err != nil {
		return nil, err
	}
	a, err := parseExplicitLE(body, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSR, err)
	}
	if c := a.String("SOPClassUID"); c != Comprehensive3DSRStorage {
		return nil, fmt.Errorf("%w: SOP class %q", ErrNotSR, c)
	}
	if c := conceptName(a); c != conceptImagingMeasurementReport.key() {
		return nil, fmt.Errorf("%w: root concept %q", ErrNotSR, c)
	}
	sr := &SR{Attrs: a}
	for _, it := range a.Items("ContentSequence") {
		switch conceptName(it) {
		case conceptImagingMeasurements.key():
			for _, g := range it.Items("ContentSequence") {
				if conceptName(g) != conceptMeasurementGroup.key() {
					continue
				}
				grp, err := readGroup(g)
				if err != nil {
					return nil, err
				}
				sr.Groups = append(sr.Groups, grp)
			}
		case conceptQualitativeEvaluations.key():
			for _, q := range it.Items("ContentSequence") {
				if conceptName(q) == conceptFinding.key() && codeValue(q) == findingNoAbnormality.key() {
					sr.NoAbnormality = true
				}
			}
		}
	}
	return sr, nil
}

func readGroup(g *Attrs) (SRGroup, error) {
	var grp SRGroup
	var err error
	num := func(it *Attrs) float64 {
		mv := it.First("MeasuredValueSequence")
		if mv == nil {
			err = fmt.Errorf("%w: NUM %s without a value", ErrNotSR, conceptName(it))
			return math.NaN()
		}
		v, e := strconv.ParseFloat(mv.String("NumericValue"), 64)
		if e != nil {
			err = fmt.Errorf("%w: NUM %s: %v", ErrNotSR, conceptName(it), e)
		}
		return v
	}
	for _, it := range g.Items("ContentSequence") {
		switch conceptName(it) {
		case conceptTrackingIdentifier.key():
			grp.TrackingIdentifier = it.String("TextValue")
		case conceptTrackingUID.key():
			grp.TrackingUID = it.String("UID")
		case conceptReferencedSegment.key():
			if ref := it.First("ReferencedSOPSequence"); ref != nil {
				grp.SEGInstanceUID = ref.String("ReferencedSOPInstanceUID")
				grp.Segment = ref.Int("ReferencedSegmentNumber")
			}
		case conceptSourceSeriesForSeg.key():
			grp.SourceSeries = it.String("UID")
		case conceptVolume.key():
			grp.VolumeMM3 = num(it)
		case conceptAnomalyScore.key():
			v := num(it)
			for _, m := range it.Items("ContentSequence") {
				if conceptName(m) != conceptDerivation.key() {
					continue
				}
				switch codeValue(m) {
				case derivationMaximum.key():
					grp.Peak = v
				case derivationMean.key():
					grp.Mean = v
				}
			}
		case conceptCenter.key():
			b := it.Bytes("GraphicData")
			for i := 0; i+4 <= len(b); i += 4 {
				grp.Center = append(grp.Center, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
			}
		}
	}
	return grp, err
}

// key is the "SCHEME VALUE" form ReadSEG also uses for codes.
func (c Code) key() string { return c.Scheme + " " + c.Value }

// conceptName is an item's concept name as "SCHEME VALUE".
func conceptName(a *Attrs) string {
	c := a.First("ConceptNameCodeSequence")
	if c == nil {
		return ""
	}
	return c.String("CodingSchemeDesignator") + " " + c.String("CodeValue")
}

// codeValue is a CODE item's value as "SCHEME VALUE".
func codeValue(a *Attrs) string {
	c := a.First("ConceptCodeSequence")
	if c == nil {
		return ""
	}
	return c.String("CodingSchemeDesignator") + " " + c.String("CodeValue")
}

// CheckSRAgainstSEG checks a report against the SEG it references: every
// referenced segment exists in that SEG, and for every segment the volumes
// of the findings it holds add up to its voxel count times the voxel volume
// (pixel spacing times the spacing between slices, else the slice
// thickness). A segment holding one finding thus has exactly its volume; the
// shared "Other findings" segment has the sum of its findings'. It reports
// every problem, not only the first. The voxel depth is the SEG's one
// spacing, so on an irregularly spaced series (no SpacingBetweenSlices),
// whose findings measure each slice's own extent, the volume rule is only
// as exact as SliceThickness is to that extent.
func CheckSRAgainstSEG(sr *SR, segPart10 []byte) error {
	seg, err := ReadSEG(segPart10)
	if err != nil {
		return err
	}
	segUID := seg.Attrs.String("SOPInstanceUID")
	defined := map[int]bool{}
	for _, s := range seg.Attrs.Items("SegmentSequence") {
		defined[s.Int("SegmentNumber")] = true
	}
	voxels := map[int]int{}
	for _, f := range seg.Frames {
		for _, m := range f.Mask {
			if m {
				voxels[f.SegmentNumber]++
			}
		}
	}
	ps, err := ParseFloats(seg.PixelSpacing)
	if err != nil || len(ps) != 2 {
		return fmt.Errorf("output: SEG PixelSpacing %q", seg.PixelSpacing)
	}
	depth, err := strconv.ParseFloat(nonEmpty(seg.SpacingBetweenSlices, seg.SliceThickness), 64)
	if err != nil || depth <= 0 {
		return fmt.Errorf("output: SEG has neither SpacingBetweenSlices nor SliceThickness (%q, %q)", seg.SpacingBetweenSlices, seg.SliceThickness)
	}
	voxel := ps[0] * ps[1] * depth
	var sourceSeries string
	if rs := seg.Attrs.First("ReferencedSeriesSequence"); rs != nil {
		sourceSeries = rs.String("SeriesInstanceUID")
	}

	var errs []error
	sum := map[int]float64{}
	for i, g := range sr.Groups {
		if g.SEGInstanceUID != segUID {
			errs = append(errs, fmt.Errorf("output: finding %d (%s) references SEG %s, not %s", i+1, g.TrackingIdentifier, g.SEGInstanceUID, segUID))
			continue
		}
		if !defined[g.Segment] {
			errs = append(errs, fmt.Errorf("output: finding %d (%s) references segment %d, which the SEG does not define", i+1, g.TrackingIdentifier, g.Segment))
			continue
		}
		if g.SourceSeries != sourceSeries {
			errs = append(errs, fmt.Errorf("output: finding %d (%s): source series %s, the SEG's is %s", i+1, g.TrackingIdentifier, g.SourceSeries, sourceSeries))
		}
		sum[g.Segment] += g.VolumeMM3
	}
	segs := make([]int, 0, len(sum))
	for s := range sum {
		segs = append(segs, s)
	}
	sort.Ints(segs)
	for _, s := range segs {
		want := float64(voxels[s]) * voxel
		// The report's values are 10-digit decimal strings.
		if math.Abs(sum[s]-want) > 1e-6*math.Max(1, want) {
			errs = append(errs, fmt.Errorf("output: segment %d: findings' volume %g mm3, the SEG has %d voxels x %g mm3 = %g mm3", s, sum[s], voxels[s], voxel, want))
		}
	}
	return errors.Join(errs...)
}
