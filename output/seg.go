package output

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"

	"anomalynode/inference/findings"
	"anomalynode/internal/dcm"
)

// Coded concepts the SEG uses (PS3.16).
var (
	// CategoryMorphologicallyAbnormal is the segment's property category.
	CategoryMorphologicallyAbnormal = Code{"49755003", "SCT", "Morphologically abnormal structure"}
	// TypeLesion is the default segmented property type.
	TypeLesion = Code{"52988006", "SCT", "Lesion"}
	// familyAI is the algorithm family (CID 7162).
	familyAI = Code{"123110", "DCM", "Artificial Intelligence"}
	// derivationSegmentation is the Derivation Code of a SEG frame (CID 7203).
	derivationSegmentation = Code{"113076", "DCM", "Segmentation"}
	// purposeSourceImage is the Purpose of Reference of a source image (CID 7202).
	purposeSourceImage = Code{"121322", "DCM", "Source image for image processing operation"}
)

// Equipment describes this software in the General and Enhanced General
// Equipment modules.
type Equipment struct {
	Manufacturer          string
	ManufacturerModelName string
	DeviceSerialNumber    string
	// SoftwareVersion is ours; the model's version is added after it.
	SoftwareVersion string
}

func (e Equipment) withDefaults() Equipment {
	if e.Manufacturer == "" {
		e.Manufacturer = "anomalynode"
	}
	if e.ManufacturerModelName == "" {
		e.ManufacturerModelName = "anomalynode"
	}
	if e.DeviceSerialNumber == "" {
		e.DeviceSerialNumber = "0"
	}
	if e.SoftwareVersion == "" {
		e.SoftwareVersion = "0"
	}
	return e
}

// SEGOptions configures BuildSEG; the zero value gives sensible defaults.
type SEGOptions struct {
	// SeriesDescription names the output series; the version is appended.
	SeriesDescription string
	// SeriesNumber of the SEG series; 0 means the source's plus 1000.
	SeriesNumber int
	// AllSlices writes a frame for every source slice, not only those with findings.
	AllSlices bool
	// ContentLabel is a CS (upper case, at most 16 characters).
	ContentLabel string
	// SegmentLabel names the one segment of a per-pixel SEG (a model without
	// finding calibration); finding segments are named by their finding.
	SegmentLabel string
	// SegmentType is the segmented property type; default SCT 52988006 Lesion.
	SegmentType Code
	// CIELab is the recommended display colour in PCS-Lab scaled to 0..65535.
	CIELab [3]int
	// Equipment describes this software.
	Equipment Equipment
	// MaxSegments is how many findings of a stack get a segment of their own
	// (Analyse reads it; 0 means DefaultMaxSegments).
	MaxSegments int
}

func (o SEGOptions) withDefaults() SEGOptions {
	if o.SeriesDescription == "" {
		o.SeriesDescription = "Anomaly segmentation"
	}
	if o.ContentLabel == "" {
		o.ContentLabel = "ANOMALY"
	}
	o.ContentLabel = csValue(o.ContentLabel)
	if o.SegmentLabel == "" {
		o.SegmentLabel = "Anomaly"
	}
	if o.SegmentType.Value == "" {
		o.SegmentType = TypeLesion
	}
	if o.CIELab == [3]int{} {
		o.CIELab = [3]int{34891, 53479, 50166} // red: L*53 a*80 b*67
	}
	o.Equipment = o.Equipment.withDefaults()
	return o
}

// csValue turns s into a valid Code String: upper case, A-Z 0-9 space and
// underscore only, at most 16 characters.
func csValue(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 16 {
		b = b[:16]
	}
	if len(b) == 0 {
		return "ANOMALY"
	}
	return string(b)
}

// loString trims s to the 64 characters of an LO value.
func loString(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// SEGFrame says which source slice a SEG frame covers.
type SEGFrame struct {
	// Source is the index into SeriesResult.Sources.
	Source int
	// Segment is the frame's segment number (1 in a per-pixel SEG).
	Segment int
}

// BuildSEG builds the BINARY Segmentation of a scored series with per-pixel
// masks (a model without finding calibration): one segment, one 1-bit frame
// per source slice with any anomalous pixel (every slice with
// opts.AllSlices), ordered along the slice normal, each on its source's exact
// geometry. A series without anomalous pixels still gets a valid SEG with one
// empty frame on its first slice, so a viewer can show "nothing found".
func BuildSEG(res *SeriesResult, opts SEGOptions) (*Object, error) {
	obj, _, err := buildSEG(&Analysis{Result: res}, opts)
	return obj, err
}

// BuildSEGFrames is BuildSEG that also says which source each frame covers.
func BuildSEGFrames(res *SeriesResult, opts SEGOptions) (*Object, []SEGFrame, error) {
	return buildSEG(&Analysis{Result: res}, opts)
}

// BuildAnalysisSEG builds the SEG of one analysed stack. Calibrated, it has
// one segment per finding (segment k is finding k, its label giving volume
// and peak score) up to a.MaxSegments, and one "Other findings" segment for
// the rest; a segment has frames only on the slices it covers (every slice
// with opts.AllSlices). It is an error to ask for the SEG of a stack with no
// finding: such a stack gets the "no finding" page instead (BuildNoFindingSC).
// Not calibrated, it is BuildSEG of the stack.
func BuildAnalysisSEG(a *Analysis, opts SEGOptions) (*Object, []SEGFrame, error) {
	if a.NoFinding() {
		return nil, nil, fmt.Errorf("%w: no finding, so no SEG", ErrBadSource)
	}
	return buildSEG(a, opts)
}

// segmentSpec is one segment of a SEG: its number, how it reads in a viewer,
// and which pixels of a source slice belong to it.
type segmentSpec struct {
	number             int
	label, description string
	params             string
	cielab             [3]int
	// mask returns the segment's pixels on source i (nil: none).
	mask func(i int) []bool
}

// findingColours are the display colours of finding segments (PCS-Lab
// scaled to 0..65535), cycled: red, yellow, green, cyan, magenta, orange.
var findingColours = [][3]int{
	{34891, 53479, 50166}, {63479, 27421, 57312}, {57568, 17476, 51328},
	{59405, 21588, 29060}, {38911, 56062, 22148}, {45311, 42663, 61237},
}

// segments describes the segments of a's SEG.
func segments(a *Analysis, opts SEGOptions) []segmentSpec {
	res := a.Result
	model := fmt.Sprintf("model_sha256=%s", res.Model.SHA256)
	if !a.Calibrated {
		return []segmentSpec{{
			number: 1, label: opts.SegmentLabel, description: fmt.Sprintf("Pixels scoring above %g", res.Threshold),
			params: fmt.Sprintf("threshold=%g %s", res.Threshold, model), cielab: opts.CIELab,
			mask: func(i int) []bool { return res.Sources[i].Mask },
		}}
	}
	p := a.Params
	params := fmt.Sprintf("pixel_threshold=%g peak_threshold=%g min_volume_mm3=%g %s", p.PixelThreshold, p.PeakThreshold, p.MinVolumeMM3, model)
	labelMask := func(keep func(l uint16) bool) func(i int) []bool {
		return func(i int) []bool {
			var m []bool
			for j, l := range a.Labels[i] {
				if l != 0 && keep(l) {
					if m == nil {
						m = make([]bool, len(a.Labels[i]))
					}
					m[j] = true
				}
			}
			return m
		}
	}
	var out []segmentSpec
	for _, f := range a.Findings {
		if f.ID > a.MaxSegments {
			break
		}
		id := uint16(f.ID)
		out = append(out, segmentSpec{
			number:      f.ID,
			label:       fmt.Sprintf("Finding %d: %s, peak %.3g", f.ID, volumeText(f.VolumeMM3), f.Peak),
			description: findingDescription(f),
			params:      params, cielab: findingColours[(f.ID-1)%len(findingColours)],
			mask: labelMask(func(l uint16) bool { return l == id }),
		})
	}
	if other := a.OtherSegment(); other > 0 {
		n, vol := 0, 0.0
		for i, f := range a.Findings {
			if a.Segments[i] == other {
				n++
				vol += f.VolumeMM3
			}
		}
		first := uint16(other)
		out = append(out, segmentSpec{
			number:      other,
			label:       fmt.Sprintf("Other findings: %d, %s", n, volumeText(vol)),
			description: fmt.Sprintf("%d further findings (IDs %d and up), %s in all", n, other, volumeText(vol)),
			params:      params, cielab: [3]int{49151, 32896, 32896}, // grey
			mask: labelMask(func(l uint16) bool { return l >= first }),
		})
	}
	return out
}

// volumeText writes a volume in cm3 (mm3 below 0.1 cm3), as a clinician reads it.
func volumeText(mm3 float64) string {
	if mm3 < 100 {
		return fmt.Sprintf("%.0f mm3", mm3)
	}
	return fmt.Sprintf("%.2g cm3", mm3/1000)
}

func findingDescription(f findings.Finding) string {
	return fmt.Sprintf("Finding %d: volume %.1f mm3, peak score %.4g, mean score %.4g, centroid (%.1f, %.1f, %.1f) mm, slices %d-%d",
		f.ID, f.VolumeMM3, f.Peak, f.Mean, f.Centroid[0], f.Centroid[1], f.Centroid[2], f.FirstSlice+1, f.LastSlice+1)
}

// segFrame is one frame of the SEG: a source slice's mask for one segment.
// rank (1-based position along the normal) is the second dimension index,
// so frames of different versions line up.
type segFrame struct {
	s       slice
	rank    int
	segment int
	mask    []bool
}

// buildSEG builds the series' binary SEG: its frames (chosen segment by
// segment), the common modules, the functional groups, the dimensions, the
// references to every source and the packed pixel data.
func buildSEG(a *Analysis, opts SEGOptions) (*Object, []SEGFrame, error) {
	res := a.Result
	opts = opts.withDefaults()
	slices, _, err := orderedSlices(res)
	if err != nil {
		return nil, nil, err
	}
	h := slices[0].src.Header
	if err := checkSEGSlices(slices); err != nil {
		return nil, nil, err
	}
	frameOfRef := getString(h, "FrameOfReferenceUID")
	if frameOfRef == "" {
		return nil, nil, fmt.Errorf("%w: no FrameOfReferenceUID", ErrBadSource)
	}
	study, series := res.sourceUIDs()
	if study == "" || series == "" {
		return nil, nil, fmt.Errorf("%w: no Study/Series Instance UID", ErrBadSource)
	}
	segs := segments(a, opts)
	frames := chooseSEGFrames(segs, slices, opts.AllSlices)

	created := res.Created
	if created.IsZero() {
		created = time.Now()
	}
	date, tm := created.Format("20060102"), created.Format("150405")
	version := res.version()
	sopInst := res.SEGInstanceUID()
	seriesUID := res.SeriesUID(KindSEG)

	e := &elems{}
	copyPatientStudy(e, h)
	eq := opts.Equipment
	e.str("SOPClassUID", SegmentationStorage)
	e.str("SOPInstanceUID", sopInst)
	e.str("InstanceCreationDate", date)
	e.str("InstanceCreationTime", tm)
	// General Series + Segmentation Series.
	e.str("Modality", "SEG")
	e.str("SeriesInstanceUID", seriesUID)
	e.str("SeriesNumber", strconv.Itoa(seriesNumber(opts.SeriesNumber, h, 1000)))
	e.str("SeriesDescription", loString(fmt.Sprintf("%s v%d", opts.SeriesDescription, version)+stackSuffix(res)))
	e.str("SeriesDate", date)
	e.str("SeriesTime", tm)
	e.copy(h, "BodyPartExamined", false)
	// Frame of Reference.
	e.str("FrameOfReferenceUID", frameOfRef)
	e.copy(h, "PositionReferenceIndicator", true)
	// General and Enhanced General Equipment.
	e.str("Manufacturer", eq.Manufacturer)
	e.str("ManufacturerModelName", eq.ManufacturerModelName)
	e.str("DeviceSerialNumber", eq.DeviceSerialNumber)
	e.str("SoftwareVersions", softwareVersions(eq, res.Model)...)
	// General Image, Segmentation Image (with Content Identification).
	e.str("ImageType", "DERIVED", "PRIMARY")
	e.str("InstanceNumber", strconv.Itoa(version))
	e.str("ContentDate", date)
	e.str("ContentTime", tm)
	e.str("ContentLabel", opts.ContentLabel)
	e.str("ContentDescription", loString(fmt.Sprintf("Anomaly mask of model %s %s, version %d", res.Model.Name, res.Model.Version, version)))
	e.str("ContentCreatorName")
	e.str("SegmentationType", "BINARY")
	e.str("SegmentsOverlap", "NO")
	items := make([]*elems, len(segs))
	for i, sg := range segs {
		items[i] = segmentItem(res, opts, sg)
	}
	e.seq("SegmentSequence", items...)
	// Image Pixel.
	e.num("SamplesPerPixel", 1)
	e.str("PhotometricInterpretation", "MONOCHROME2")
	e.num("Rows", slices[0].src.Rows)
	e.num("Columns", slices[0].src.Cols)
	e.num("BitsAllocated", 1)
	e.num("BitsStored", 1)
	e.num("HighBit", 0)
	e.num("PixelRepresentation", 0)
	e.str("LossyImageCompression", "00")
	e.str("PresentationLUTShape", "IDENTITY")
	e.str("BurnedInAnnotation", "NO")
	addSEGFunctionalGroups(e, slices, frames)
	addSEGDimensions(e, res.uidFor(KindSEG, "dimension-organization"))
	addSEGReferences(e, slices, series)

	masks := make([][]bool, len(frames))
	info := make([]SEGFrame, len(frames))
	for i, f := range frames {
		masks[i] = f.mask
		info[i] = SEGFrame{Source: f.s.index, Segment: f.segment}
	}
	e.pixelDataOB(PackBits(masks))

	part10, err := encode(e, SegmentationStorage, sopInst)
	if err != nil {
		return nil, nil, err
	}
	return &Object{
		SOPClassUID: SegmentationStorage, SOPInstanceUID: sopInst, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		StudyInstanceUID: study, SeriesInstanceUID: seriesUID, Part10: part10,
	}, info, nil
}

// checkSEGSlices refuses a stack the SEG's shared functional groups cannot
// describe: slices of different sizes or pixel spacings, or no spacing.
func checkSEGSlices(slices []slice) error {
	first := slices[0]
	rows, cols, spacing := first.src.Rows, first.src.Cols, first.geom.spacing
	if len(spacing) != 2 {
		return fmt.Errorf("%w: no PixelSpacing", ErrBadSource)
	}
	for _, s := range slices {
		if s.src.Rows != rows || s.src.Cols != cols {
			return fmt.Errorf("%w: %s is %dx%d, the series %dx%d", ErrBadSource, where(s.index, s.src, s.geom), s.src.Rows, s.src.Cols, rows, cols)
		}
		if !sameStrings(s.geom.spacing, spacing) {
			return fmt.Errorf("%w: %s: PixelSpacing differs from the series'", ErrBadSource, where(s.index, s.src, s.geom))
		}
	}
	return nil
}

// chooseSEGFrames picks the frames segment by segment: every slice the
// segment marks, every slice (empty masks too) with allSlices, and at least
// one frame (the first slice's mask) so the SEG is never empty.
func chooseSEGFrames(segs []segmentSpec, slices []slice, allSlices bool) []segFrame {
	rows, cols := slices[0].src.Rows, slices[0].src.Cols
	var frames []segFrame
	for _, sg := range segs {
		for k, s := range slices {
			m := sg.mask(s.index)
			if anyTrue(m) {
				frames = append(frames, segFrame{s, k + 1, sg.number, m})
			} else if allSlices {
				frames = append(frames, segFrame{s, k + 1, sg.number, make([]bool, rows*cols)})
			}
		}
	}
	if len(frames) == 0 {
		frames = []segFrame{{slices[0], 1, 1, slices[0].src.Mask}}
	}
	return frames
}

// addSEGFunctionalGroups writes the Multi-frame Functional Groups: pixel
// measures and orientation shared by the stack, and per frame its source
// (derivation), dimension index values, position and segment.
func addSEGFunctionalGroups(e *elems, slices []slice, frames []segFrame) {
	e.str("NumberOfFrames", strconv.Itoa(len(frames)))
	shared := &elems{}
	pm := &elems{}
	pm.add("PixelSpacing", slices[0].geom.spacing)
	if st := slices[0].geom.thickness; len(st) > 0 {
		pm.add("SliceThickness", st)
	}
	if d, ok := regularSpacing(slices); ok {
		pm.str("SpacingBetweenSlices", formatDS(d))
	}
	shared.seq("PixelMeasuresSequence", pm)
	po := &elems{}
	po.add("ImageOrientationPatient", slices[0].geom.iop)
	shared.seq("PlaneOrientationSequence", po)
	e.seq("SharedFunctionalGroupsSequence", shared)

	perFrame := make([]*elems, 0, len(frames))
	for _, f := range frames {
		pf := &elems{}
		src := &elems{}
		src.str("ReferencedSOPClassUID", f.s.sopClass)
		src.str("ReferencedSOPInstanceUID", f.s.sopInst)
		if n := f.s.frameNumber(); n > 0 {
			src.str("ReferencedFrameNumber", strconv.Itoa(n))
		}
		src.seq("PurposeOfReferenceCodeSequence", purposeSourceImage.item())
		deriv := &elems{}
		deriv.seq("DerivationCodeSequence", derivationSegmentation.item())
		deriv.seq("SourceImageSequence", src)
		pf.seq("DerivationImageSequence", deriv)
		fc := &elems{}
		fc.add("DimensionIndexValues", []int{f.segment, f.rank})
		pf.seq("FrameContentSequence", fc)
		pp := &elems{}
		pp.add("ImagePositionPatient", f.s.geom.ipp)
		pf.seq("PlanePositionSequence", pp)
		si := &elems{}
		si.num("ReferencedSegmentNumber", f.segment)
		pf.seq("SegmentIdentificationSequence", si)
		perFrame = append(perFrame, pf)
	}
	e.seq("PerFrameFunctionalGroupsSequence", perFrame...)
}

// addSEGDimensions writes the Multi-frame Dimension module: segment, then
// position along the normal.
func addSEGDimensions(e *elems, dimOrg string) {
	do := &elems{}
	do.str("DimensionOrganizationUID", dimOrg)
	e.seq("DimensionOrganizationSequence", do)
	e.str("DimensionOrganizationType", "3D")
	d1 := &elems{}
	d1.str("DimensionOrganizationUID", dimOrg)
	d1.add("DimensionIndexPointer", []int{0x0062, 0x000B})  // ReferencedSegmentNumber
	d1.add("FunctionalGroupPointer", []int{0x0062, 0x000A}) // SegmentIdentificationSequence
	d1.str("DimensionDescriptionLabel", "ReferencedSegmentNumber")
	d2 := &elems{}
	d2.str("DimensionOrganizationUID", dimOrg)
	d2.add("DimensionIndexPointer", []int{0x0020, 0x0032})  // ImagePositionPatient
	d2.add("FunctionalGroupPointer", []int{0x0020, 0x9113}) // PlanePositionSequence
	d2.str("DimensionDescriptionLabel", "ImagePositionPatient")
	e.seq("DimensionIndexSequence", d1, d2)
}

// addSEGReferences writes General Reference (every source) and Common
// Instance Reference: each source instance once, in the order of its first
// slice along the normal; a multi-frame one with the numbers of its frames
// in the series.
func addSEGReferences(e *elems, slices []slice, series string) {
	var sourceRefs, refs []*elems
	for _, in := range sourceInstances(slices) {
		src := &elems{}
		src.str("ReferencedSOPClassUID", in.sopClass)
		src.str("ReferencedSOPInstanceUID", in.sopInst)
		if len(in.frames) > 0 {
			src.str("ReferencedFrameNumber", in.frames...)
		}
		src.seq("PurposeOfReferenceCodeSequence", purposeSourceImage.item())
		sourceRefs = append(sourceRefs, src)
		ref := &elems{}
		ref.str("ReferencedSOPClassUID", in.sopClass)
		ref.str("ReferencedSOPInstanceUID", in.sopInst)
		refs = append(refs, ref)
	}
	e.seq("SourceImageSequence", sourceRefs...)
	rs := &elems{}
	rs.str("SeriesInstanceUID", series)
	rs.seq("ReferencedInstanceSequence", refs...)
	e.seq("ReferencedSeriesSequence", rs)
}

// sourceInstance is one source SOP instance and the frame numbers (IS
// strings, ascending; none for a single-frame source) of its slices.
type sourceInstance struct {
	sopClass, sopInst string
	frames            []string
}

// sourceInstances lists the instances of slices once each, in the order of
// their first slice.
func sourceInstances(ordered []slice) []sourceInstance {
	var out []sourceInstance
	at := map[string]int{}
	nums := map[string][]int{}
	for i := range ordered {
		s := &ordered[i]
		if _, ok := at[s.sopInst]; !ok {
			at[s.sopInst] = len(out)
			out = append(out, sourceInstance{sopClass: s.sopClass, sopInst: s.sopInst})
		}
		if n := s.frameNumber(); n > 0 && !slices.Contains(nums[s.sopInst], n) {
			nums[s.sopInst] = append(nums[s.sopInst], n)
		}
	}
	for i := range out {
		n := nums[out[i].sopInst]
		sort.Ints(n)
		for _, v := range n {
			out[i].frames = append(out[i].frames, strconv.Itoa(v))
		}
	}
	return out
}

func segmentItem(res *SeriesResult, opts SEGOptions, sg segmentSpec) *elems {
	seg := &elems{}
	seg.num("SegmentNumber", sg.number)
	seg.str("SegmentLabel", loString(sg.label))
	seg.str("SegmentDescription", loString(sg.description))
	seg.str("SegmentAlgorithmType", "AUTOMATIC")
	seg.str("SegmentAlgorithmName", loString("anomalynode "+res.Model.Name))
	alg := &elems{}
	alg.seq("AlgorithmFamilyCodeSequence", familyAI.item())
	alg.str("AlgorithmName", loString("anomalynode "+res.Model.Name))
	alg.str("AlgorithmVersion", loString(opts.Equipment.SoftwareVersion+" model "+nonEmpty(res.Model.Version, "0")))
	alg.str("AlgorithmParameters", sg.params)
	seg.seq("SegmentationAlgorithmIdentificationSequence", alg)
	seg.seq("SegmentedPropertyCategoryCodeSequence", CategoryMorphologicallyAbnormal.item())
	seg.seq("SegmentedPropertyTypeCodeSequence", opts.SegmentType.item())
	seg.num("RecommendedDisplayCIELabValue", sg.cielab[:]...)
	return seg
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func softwareVersions(eq Equipment, m ModelIdentity) []string {
	return []string{loString("anomalynode " + eq.SoftwareVersion), loString(nonEmpty(m.Name, "model") + " " + nonEmpty(m.Version, "0"))}
}

// seriesNumber is the configured number, else the source's plus offset (at least 1).
func seriesNumber(configured int, h *dicom.Dataset, offset int) int {
	if configured > 0 {
		return configured
	}
	n, _ := getInt(h, "SeriesNumber")
	if n < 0 {
		n = 0
	}
	return n + offset
}

// copyPatientStudy copies the Patient, General Study and Patient Study
// attributes so the outputs sit in the source's study with the same patient.
func copyPatientStudy(e *elems, h *dicom.Dataset) {
	e.copy(h, "SpecificCharacterSet", false)
	for _, kw := range []string{"PatientName", "PatientID", "PatientBirthDate", "PatientSex"} {
		e.copy(h, kw, true)
	}
	for _, kw := range []string{"IssuerOfPatientID", "OtherPatientIDsSequence", "PatientAge", "PatientSize", "PatientWeight", "StudyDescription"} {
		e.copy(h, kw, false)
	}
	for _, kw := range []string{"StudyInstanceUID"} {
		e.copy(h, kw, false)
	}
	for _, kw := range []string{"StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"} {
		e.copy(h, kw, true)
	}
}

func anyTrue(m []bool) bool {
	for _, v := range m {
		if v {
			return true
		}
	}
	return false
}

// PackBits packs binary frames into 1-bit SEG Pixel Data (PS3.5 8.1.1): pixel
// p of the concatenated frames is bit p%8 of byte p/8 (first pixel in the
// least significant bit), frames follow each other with no byte alignment,
// and the result is padded with one zero byte when its length is odd.
func PackBits(frames [][]bool) []byte {
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	n := (total + 7) / 8
	out := make([]byte, n+n%2)
	p := 0
	for _, f := range frames {
		for _, v := range f {
			if v {
				out[p>>3] |= 1 << (p & 7)
			}
			p++
		}
	}
	return out
}

// UnpackBits is the inverse of PackBits: nFrames frames of rows*cols pixels.
func UnpackBits(data []byte, nFrames, rows, cols int) ([][]bool, error) {
	per := rows * cols
	need := (nFrames*per + 7) / 8
	if nFrames < 0 || per <= 0 || len(data) < need {
		return nil, fmt.Errorf("output: 1-bit pixel data has %d bytes, %d frames of %dx%d need %d", len(data), nFrames, rows, cols, need)
	}
	frames := make([][]bool, nFrames)
	p := 0
	for f := range frames {
		m := make([]bool, per)
		for i := range m {
			m[i] = data[p>>3]&(1<<(p&7)) != 0
			p++
		}
		frames[f] = m
	}
	return frames, nil
}

// stackSuffix tells the stacks of a split series apart in descriptions.
func stackSuffix(r *SeriesResult) string {
	if r.StackLabel == "" {
		return ""
	}
	return " (" + r.StackLabel + ")"
}
