package output

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"

	"anomalynode/inference/findings"
	"anomalynode/internal/dcm"
)

// Comprehensive3DSRStorage is the SOP class of the measurement report: IHE AI
// Results names it for AI result reports, and unlike Comprehensive SR it
// carries SCOORD3D, which the finding centroids (patient coordinates) need.
const Comprehensive3DSRStorage = "1.2.840.10008.5.1.4.1.1.88.34"

// dcmrUID is the UID of the DICOM Content Mapping Resource (PS3.16), named
// with every template identifier.
const dcmrUID = "1.2.840.10008.8.1.1"

// PrivateScheme is the coding scheme of the few concepts PS3.16 has no code
// for; the SR declares it in its Coding Scheme Identification Sequence.
const PrivateScheme = "99ANOMALYNODE"

// Coded concepts of the measurement report (PS3.16). Codes from DCM, SCT,
// UCUM (and the UMLS and LOINC codes TID 1500 and CID 100 prescribe) wherever
// PS3.16 has them; PrivateScheme only for the anomaly score itself.
var (
	conceptImagingMeasurementReport = Code{"126000", "DCM", "Imaging Measurement Report"}
	conceptLanguage                 = Code{"121049", "DCM", "Language of Content Item and Descendants"}
	languageEnglish                 = Code{"en-US", "RFC5646", "English (United States)"}
	conceptObserverType             = Code{"121005", "DCM", "Observer Type"}
	observerDevice                  = Code{"121007", "DCM", "Device"}
	conceptDeviceUID                = Code{"121012", "DCM", "Device Observer UID"}
	conceptDeviceName               = Code{"121013", "DCM", "Device Observer Name"}
	conceptDeviceManufacturer       = Code{"121014", "DCM", "Device Observer Manufacturer"}
	conceptDeviceModelName          = Code{"121015", "DCM", "Device Observer Model Name"}
	conceptDeviceSerialNumber       = Code{"121016", "DCM", "Device Observer Serial Number"}
	conceptProcedureReported        = Code{"121058", "DCM", "Procedure reported"}
	conceptImageLibrary             = Code{"111028", "DCM", "Image Library"}
	conceptImageLibraryGroup        = Code{"126200", "DCM", "Image Library Group"}
	conceptModality                 = Code{"121139", "DCM", "Modality"}
	conceptFrameOfReferenceUID      = Code{"112227", "DCM", "Frame of Reference UID"}
	conceptImagingMeasurements      = Code{"126010", "DCM", "Imaging Measurements"}
	conceptQualitativeEvaluations   = Code{"C0034375", "UMLS", "Qualitative Evaluations"}
	conceptMeasurementGroup         = Code{"125007", "DCM", "Measurement Group"}
	conceptTrackingIdentifier       = Code{"112039", "DCM", "Tracking Identifier"}
	conceptTrackingUID              = Code{"112040", "DCM", "Tracking Unique Identifier"}
	conceptFinding                  = Code{"121071", "DCM", "Finding"}
	conceptFindingCategory          = Code{"276214006", "SCT", "Finding category"}
	conceptReferencedSegment        = Code{"121191", "DCM", "Referenced Segment"}
	conceptSourceSeriesForSeg       = Code{"121232", "DCM", "Source series for segmentation"}
	conceptAlgorithmName            = Code{"111001", "DCM", "Algorithm Name"}
	conceptAlgorithmVersion         = Code{"111003", "DCM", "Algorithm Version"}
	conceptAlgorithmParameters      = Code{"111002", "DCM", "Algorithm Parameters"}
	conceptVolume                   = Code{"118565006", "SCT", "Volume"}
	conceptDerivation               = Code{"121401", "DCM", "Derivation"}
	derivationMaximum               = Code{"56851009", "SCT", "Maximum"}
	derivationMean                  = Code{"373098007", "SCT", "Mean"}
	conceptThresholdValue           = Code{"122411", "DCM", "Threshold Value"}
	conceptCenter                   = Code{"111010", "DCM", "Center"}
	findingNoAbnormality            = Code{"111286", "DCM", "No abnormality"}
	unitCubicMillimeter             = Code{"mm3", "UCUM", "cubic millimeter"}
	unitNoUnits                     = Code{"1", "UCUM", "no units"}
	unitPixels                      = Code{"{pixels}", "UCUM", "pixels"}
	conceptPixelDataRows            = Code{"110910", "DCM", "Pixel Data Rows"}
	conceptPixelDataColumns         = Code{"110911", "DCM", "Pixel Data Columns"}
	// conceptAnomalyScore has no code in PS3.16: the score of a pixel under
	// the model's healthy-tissue density (METHOD.md), unitless.
	conceptAnomalyScore = Code{"ANS001", PrivateScheme, "Anomaly score"}
)

// procedureFor is the Procedure reported (CID 100) of a source modality.
func procedureFor(modality string) Code {
	switch modality {
	case "CT":
		return Code{"25045-6", "LN", "CT unspecified body region"}
	case "MR":
		return Code{"25056-3", "LN", "MRI unspecified body region"}
	}
	return Code{"363679005", "SCT", "Imaging procedure"}
}

// modalityCode is the CID 29 code of a modality, for the image library.
func modalityCode(modality string) Code {
	switch modality {
	case "CT":
		return Code{"CT", "DCM", "Computed Tomography"}
	case "MR":
		return Code{"MR", "DCM", "Magnetic Resonance"}
	case "PT":
		return Code{"PT", "DCM", "Positron emission tomography"}
	}
	return Code{"OT", "DCM", "Other"}
}

// SRFinding is one finding of a series and where the SEG holds it.
type SRFinding struct {
	findings.Finding
	// Segment is the SEG segment number whose pixels include the finding's:
	// its own segment (number = finding ID), or the shared "Other findings"
	// segment beyond the SEG's segment limit, or 1 for a SEG whose one
	// segment is the whole pixel mask.
	Segment int
}

// SRThresholds are the calibrated limits the findings passed, stated in the
// report next to the scores. Zero values are left out (a model file without
// finding calibration has only the pixel threshold).
type SRThresholds struct {
	// PixelThreshold: a voxel is anomalous when its score is above it.
	PixelThreshold float32
	// PixelFPR is the healthy-voxel false-positive rate PixelThreshold was calibrated for.
	PixelFPR float64
	// PeakThreshold: a finding's peak score is at least this.
	PeakThreshold float32
	// SeriesFPR is the healthy-series false-positive rate the finding limits were calibrated for.
	SeriesFPR float64
	// MinVolumeMM3: a finding's volume is at least this.
	MinVolumeMM3 float64
}

// SRInput is what BuildSR reports on: a scored series, its findings and the
// SEG that holds them.
type SRInput struct {
	// Result is the scored series (source headers, model, version, created).
	Result *SeriesResult
	// Findings are the series' findings; none means "analysed, nothing found".
	Findings []SRFinding
	// SEG is the Segmentation the findings' segments are in; nil exactly when
	// there is no finding.
	SEG *Object
	// Thresholds are the calibrated limits; a zero PixelThreshold means the
	// Result's Threshold.
	Thresholds SRThresholds
}

// SROptions configures BuildSR; the zero value gives sensible defaults.
type SROptions struct {
	// SeriesDescription names the report series; the version is appended.
	SeriesDescription string
	// SeriesNumber of the SR series; 0 means the source's plus 3000.
	SeriesNumber int
	// Disabled builds no report (config output.sr: false).
	Disabled bool
	// FindingType is the coded type of every finding; default SCT 52988006 Lesion.
	FindingType Code
	// AETitle is this node's AE title, the Device Observer Name.
	AETitle string
	// Equipment describes this software; its ManufacturerModelName is the
	// product name the observation context gives.
	Equipment Equipment
}

func (o SROptions) withDefaults() SROptions {
	if o.SeriesDescription == "" {
		o.SeriesDescription = "Anomaly report (anomalynode)"
	}
	if o.FindingType.Value == "" {
		o.FindingType = TypeLesion
	}
	if o.AETitle == "" {
		o.AETitle = "ANOMALYNODE"
	}
	o.Equipment = o.Equipment.withDefaults()
	return o
}

// ErrBadFindings means BuildSR's findings and SEG do not fit together.
var ErrBadFindings = errors.New("output: findings do not match the SEG")

// BuildSR builds the Comprehensive 3D SR measurement report (TID 1500) of a
// scored series, in a series of its own in the source's study: the
// observation context names this node and its model, the image library lists
// the scored source images, and each finding is a TID 1411 Volumetric ROI
// measurement group referencing its SEG segment, with its volume, peak and
// mean anomaly score against the calibrated thresholds, and its centre. A
// series without findings gets a report whose qualitative evaluation says
// "No abnormality", so that "analysed, nothing found" is in the archive too.
// UIDs derive from the series, model and version like the SEG's, so a
// rebuild is byte-identical. It returns nil, nil when opts.Disabled.
func BuildSR(in SRInput, opts SROptions) (*Object, error) {
	if opts.Disabled {
		return nil, nil
	}
	opts = opts.withDefaults()
	res := in.Result
	if res == nil {
		return nil, fmt.Errorf("%w: no series result", ErrBadSource)
	}
	ordered, _, err := orderedSlices(res)
	if err != nil {
		return nil, err
	}
	if err := checkSRFindings(in); err != nil {
		return nil, err
	}
	h := ordered[0].src.Header
	study, series := res.sourceUIDs()
	if study == "" || series == "" {
		return nil, fmt.Errorf("%w: no Study/Series Instance UID", ErrBadSource)
	}
	frameOfRef := getString(h, "FrameOfReferenceUID")
	if frameOfRef == "" {
		return nil, fmt.Errorf("%w: no FrameOfReferenceUID", ErrBadSource)
	}
	th := in.Thresholds
	if th.PixelThreshold == 0 {
		th.PixelThreshold = res.Threshold
	}

	created := res.Created
	if created.IsZero() {
		created = time.Now()
	}
	date, tm := created.Format("20060102"), created.Format("150405")
	version := res.version()
	sopInst := res.SRInstanceUID()
	seriesUID := res.SeriesUID(KindSR)
	eq := opts.Equipment

	e := &elems{}
	copyPatientStudy(e, h)
	// SOP Common.
	e.str("SOPClassUID", Comprehensive3DSRStorage)
	e.str("SOPInstanceUID", sopInst)
	e.str("InstanceCreationDate", date)
	e.str("InstanceCreationTime", tm)
	private := &elems{}
	private.str("CodingSchemeDesignator", PrivateScheme)
	private.str("CodingSchemeName", "anomalynode private concepts")
	private.str("CodingSchemeResponsibleOrganization", "anomalynode project")
	e.seq("CodingSchemeIdentificationSequence", private)
	// SR Document Series.
	e.str("Modality", "SR")
	e.str("SeriesInstanceUID", seriesUID)
	e.str("SeriesNumber", strconv.Itoa(seriesNumber(opts.SeriesNumber, h, 3000)))
	e.str("SeriesDescription", loString(fmt.Sprintf("%s v%d", opts.SeriesDescription, version)))
	e.str("SeriesDate", date)
	e.str("SeriesTime", tm)
	e.seq("ReferencedPerformedProcedureStepSequence")
	// General Equipment and Enhanced General Equipment.
	e.str("Manufacturer", eq.Manufacturer)
	e.str("ManufacturerModelName", eq.ManufacturerModelName)
	e.str("DeviceSerialNumber", eq.DeviceSerialNumber)
	e.str("SoftwareVersions", softwareVersions(eq, res.Model)...)
	// SR Document General.
	e.str("InstanceNumber", strconv.Itoa(version))
	e.str("ContentDate", date)
	e.str("ContentTime", tm)
	e.str("CompletionFlag", "COMPLETE")
	e.str("VerificationFlag", "UNVERIFIED")
	e.seq("PerformedProcedureCodeSequence")
	e.seq("CurrentRequestedProcedureEvidenceSequence", evidence(study, series, ordered, in.SEG))

	// SR Document Content: the TID 1500 root container.
	e.str("ValueType", "CONTAINER")
	e.seq("ConceptNameCodeSequence", conceptImagingMeasurementReport.item())
	e.str("ContinuityOfContent", "SEPARATE")
	e.seq("ContentTemplateSequence", template("1500"))
	root := []*elems{
		codeItem("HAS CONCEPT MOD", conceptLanguage, languageEnglish),
	}
	root = append(root, observationContext(opts)...)
	root = append(root, codeItem("HAS CONCEPT MOD", conceptProcedureReported, procedureFor(getString(h, "Modality"))))
	root = append(root, imageLibrary(ordered, h, frameOfRef))
	alg := algorithmIdentification(res, th)
	if len(in.Findings) > 0 {
		groups := make([]*elems, 0, len(in.Findings))
		for _, f := range sortedFindings(in.Findings) {
			groups = append(groups, measurementGroup(res, in.SEG, f, series, frameOfRef, len(ordered), th, alg, opts))
		}
		root = append(root, containerItem("CONTAINS", conceptImagingMeasurements, "", groups...))
	} else {
		none := codeItem("CONTAINS", conceptFinding, findingNoAbnormality)
		none.seq("ContentSequence", alg...)
		root = append(root, containerItem("CONTAINS", conceptQualitativeEvaluations, "", none))
	}
	e.seq("ContentSequence", root...)

	part10, err := encode(e, Comprehensive3DSRStorage, sopInst)
	if err != nil {
		return nil, err
	}
	return &Object{
		SOPClassUID: Comprehensive3DSRStorage, SOPInstanceUID: sopInst, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		StudyInstanceUID: study, SeriesInstanceUID: seriesUID, Part10: part10,
	}, nil
}

// checkSRFindings refuses findings that the SEG cannot hold or a report
// cannot state: findings without a SEG, a SEG without findings, an object
// that is not a SEG, a segment number outside 1..65535 (US), a missing or
// repeated ID, a NaN or infinite value (no Decimal String for it).
func checkSRFindings(in SRInput) error {
	if len(in.Findings) > 0 && in.SEG == nil {
		return fmt.Errorf("%w: %d findings but no SEG", ErrBadFindings, len(in.Findings))
	}
	if len(in.Findings) == 0 && in.SEG != nil {
		return fmt.Errorf("%w: a SEG but no findings", ErrBadFindings)
	}
	if in.SEG != nil && in.SEG.SOPClassUID != SegmentationStorage {
		return fmt.Errorf("%w: the SEG object is of SOP class %s", ErrBadFindings, in.SEG.SOPClassUID)
	}
	seen := map[int]bool{}
	for _, f := range in.Findings {
		if f.Segment < 1 || f.Segment > math.MaxUint16 {
			return fmt.Errorf("%w: finding %d in segment %d", ErrBadFindings, f.ID, f.Segment)
		}
		if f.ID < 1 || seen[f.ID] {
			return fmt.Errorf("%w: finding ID %d missing or repeated", ErrBadFindings, f.ID)
		}
		seen[f.ID] = true
		finite := !math.IsNaN(f.VolumeMM3) && !math.IsInf(f.VolumeMM3, 0) && f.VolumeMM3 >= 0
		for _, v := range []float64{float64(f.Peak), float64(f.Mean), f.Centroid[0], f.Centroid[1], f.Centroid[2]} {
			finite = finite && !math.IsNaN(v) && !math.IsInf(v, 0)
		}
		if !finite {
			return fmt.Errorf("%w: finding %d has a negative or non-finite volume, score or centroid", ErrBadFindings, f.ID)
		}
	}
	return nil
}

func sortedFindings(fs []SRFinding) []SRFinding {
	out := slices.Clone(fs)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// evidence is the Current Requested Procedure Evidence: every source instance
// and the SEG, all in the source's study.
func evidence(study, series string, ordered []slice, seg *Object) *elems {
	var refs []*elems
	for _, in := range sourceInstances(ordered) {
		r := &elems{}
		r.str("ReferencedSOPClassUID", in.sopClass)
		r.str("ReferencedSOPInstanceUID", in.sopInst)
		refs = append(refs, r)
	}
	src := &elems{}
	src.str("SeriesInstanceUID", series)
	src.seq("ReferencedSOPSequence", refs...)
	seriesItems := []*elems{src}
	if seg != nil {
		r := &elems{}
		r.str("ReferencedSOPClassUID", seg.SOPClassUID)
		r.str("ReferencedSOPInstanceUID", seg.SOPInstanceUID)
		s := &elems{}
		s.str("SeriesInstanceUID", seg.SeriesInstanceUID)
		s.seq("ReferencedSOPSequence", r)
		seriesItems = append(seriesItems, s)
	}
	st := &elems{}
	st.str("StudyInstanceUID", study)
	st.seq("ReferencedSeriesSequence", seriesItems...)
	return st
}

func template(id string) *elems {
	t := &elems{}
	t.str("MappingResource", "DCMR")
	t.str("MappingResourceUID", dcmrUID)
	t.str("TemplateIdentifier", id)
	return t
}

// contentItem starts an SR content item (PS3.3 C.17.3); rel is empty for
// items that have none (the entries of an image library group have one).
func contentItem(rel, valueType string, name Code) *elems {
	it := &elems{}
	if rel != "" {
		it.str("RelationshipType", rel)
	}
	it.str("ValueType", valueType)
	if name.Value != "" {
		it.seq("ConceptNameCodeSequence", name.item())
	}
	return it
}

func textItem(rel string, name Code, v string) *elems {
	it := contentItem(rel, "TEXT", name)
	it.str("TextValue", v)
	return it
}

func codeItem(rel string, name, v Code) *elems {
	it := contentItem(rel, "CODE", name)
	it.seq("ConceptCodeSequence", v.item())
	return it
}

func uidItem(rel string, name Code, uid string) *elems {
	it := contentItem(rel, "UIDREF", name)
	it.str("UID", uid)
	return it
}

func numItem(rel string, name Code, v float64, unit Code) *elems {
	return numItemDS(rel, name, formatDS(v), unit)
}

// scoreItem is a NUM of a float32 score, written with the shortest decimal
// that reads back as the same float32 (0.8, not 0.8000000119).
func scoreItem(rel string, name Code, v float32, unit Code) *elems {
	return numItemDS(rel, name, formatScore(v), unit)
}

func formatScore(v float32) string {
	if s := strconv.FormatFloat(float64(v), 'g', -1, 32); len(s) <= 16 {
		return s
	}
	return formatDS(float64(v))
}

func numItemDS(rel string, name Code, ds string, unit Code) *elems {
	it := contentItem(rel, "NUM", name)
	mv := &elems{}
	mv.str("NumericValue", ds)
	mv.seq("MeasurementUnitsCodeSequence", unit.item())
	it.seq("MeasuredValueSequence", mv)
	return it
}

// containerItem is a CONTAINER with its children; tid names its template.
func containerItem(rel string, name Code, tid string, children ...*elems) *elems {
	it := contentItem(rel, "CONTAINER", name)
	it.str("ContinuityOfContent", "SEPARATE")
	if tid != "" {
		it.seq("ContentTemplateSequence", template(tid))
	}
	it.seq("ContentSequence", children...)
	return it
}

// imageItem references an instance (its frames when given, its segment when
// segment > 0).
func imageItem(rel string, name Code, sopClass, sopInst string, frames []string, segment int) *elems {
	it := contentItem(rel, "IMAGE", name)
	ref := &elems{}
	ref.str("ReferencedSOPClassUID", sopClass)
	ref.str("ReferencedSOPInstanceUID", sopInst)
	if len(frames) > 0 {
		ref.str("ReferencedFrameNumber", frames...)
	}
	if segment > 0 {
		ref.num("ReferencedSegmentNumber", segment)
	}
	it.seq("ReferencedSOPSequence", ref)
	return it
}

// observationContext is TID 1001 with a device observer (TID 1002, 1004):
// this node by its AE title, manufacturer, product and serial number. The
// Device Observer UID derives from those, so it is stable per installation.
func observationContext(o SROptions) []*elems {
	eq := o.Equipment
	return []*elems{
		codeItem("HAS OBS CONTEXT", conceptObserverType, observerDevice),
		uidItem("HAS OBS CONTEXT", conceptDeviceUID, DeriveUID("device-observer", o.AETitle, eq.Manufacturer, eq.ManufacturerModelName, eq.DeviceSerialNumber)),
		textItem("HAS OBS CONTEXT", conceptDeviceName, o.AETitle),
		textItem("HAS OBS CONTEXT", conceptDeviceManufacturer, eq.Manufacturer),
		textItem("HAS OBS CONTEXT", conceptDeviceModelName, eq.ManufacturerModelName),
		textItem("HAS OBS CONTEXT", conceptDeviceSerialNumber, eq.DeviceSerialNumber),
	}
}

// imageLibrary is TID 1600: one group (the series shares modality, frame of
// reference and size) listing every scored source instance, a multi-frame
// one with its scored frames, in order along the slice normal.
func imageLibrary(ordered []slice, h *dicom.Dataset, frameOfRef string) *elems {
	first := ordered[0].src
	group := []*elems{
		codeItem("HAS ACQ CONTEXT", conceptModality, modalityCode(getString(h, "Modality"))),
		uidItem("HAS ACQ CONTEXT", conceptFrameOfReferenceUID, frameOfRef),
		numItem("HAS ACQ CONTEXT", conceptPixelDataRows, float64(first.Rows), unitPixels),
		numItem("HAS ACQ CONTEXT", conceptPixelDataColumns, float64(first.Cols), unitPixels),
	}
	for _, in := range sourceInstances(ordered) {
		group = append(group, imageItem("CONTAINS", Code{}, in.sopClass, in.sopInst, in.frames, 0))
	}
	return containerItem("CONTAINS", conceptImageLibrary, "",
		containerItem("CONTAINS", conceptImageLibraryGroup, "", group...))
}

// algorithmIdentification is TID 4019: the model by name and version, its
// file's sha256 and the calibrated limits as parameters.
func algorithmIdentification(res *SeriesResult, th SRThresholds) []*elems {
	items := []*elems{
		textItem("HAS CONCEPT MOD", conceptAlgorithmName, nonEmpty(res.Model.Name, "model")),
		textItem("HAS CONCEPT MOD", conceptAlgorithmVersion, nonEmpty(res.Model.Version, "0")),
	}
	var params []string
	if res.Model.SHA256 != "" {
		params = append(params, "model_sha256="+strings.ToLower(res.Model.SHA256))
	}
	params = append(params, thresholdParams(th)...)
	for _, p := range params {
		items = append(items, textItem("HAS CONCEPT MOD", conceptAlgorithmParameters, p))
	}
	return items
}

// thresholdParams states the non-zero calibrated limits, one per parameter.
func thresholdParams(th SRThresholds) []string {
	p := []string{"pixel_threshold=" + formatScore(th.PixelThreshold)}
	if th.PixelFPR > 0 {
		p = append(p, "pixel_fpr="+formatDS(th.PixelFPR))
	}
	if th.PeakThreshold != 0 {
		p = append(p, "peak_threshold="+formatScore(th.PeakThreshold))
	}
	if th.MinVolumeMM3 > 0 {
		p = append(p, "min_volume_mm3="+formatDS(th.MinVolumeMM3))
	}
	if th.SeriesFPR > 0 {
		p = append(p, "series_fpr="+formatDS(th.SeriesFPR))
	}
	return p
}

// measurementGroup is TID 1411 for one finding: tracking identifier (with
// its slice range) and UID, finding category and type, the SEG segment and
// source series, the model, then volume, peak and mean score and centre.
func measurementGroup(res *SeriesResult, seg *Object, f SRFinding, sourceSeries, frameOfRef string, nSlices int, th SRThresholds, alg []*elems, o SROptions) *elems {
	version := strconv.Itoa(res.version())
	id := strconv.Itoa(f.ID)
	tracking := fmt.Sprintf("Finding %d (slices %d-%d of %d)", f.ID, f.FirstSlice+1, f.LastSlice+1, nSlices)
	if f.FirstSlice == f.LastSlice {
		tracking = fmt.Sprintf("Finding %d (slice %d of %d)", f.ID, f.FirstSlice+1, nSlices)
	}
	kids := []*elems{
		textItem("HAS OBS CONTEXT", conceptTrackingIdentifier, tracking),
		uidItem("HAS OBS CONTEXT", conceptTrackingUID, res.uidFor(KindSR, "tracking", "v"+version, id)),
		codeItem("CONTAINS", conceptFindingCategory, CategoryMorphologicallyAbnormal),
		codeItem("CONTAINS", conceptFinding, o.FindingType),
		imageItem("CONTAINS", conceptReferencedSegment, seg.SOPClassUID, seg.SOPInstanceUID, nil, f.Segment),
		uidItem("CONTAINS", conceptSourceSeriesForSeg, sourceSeries),
	}
	kids = append(kids, alg...)
	kids = append(kids, numItem("CONTAINS", conceptVolume, f.VolumeMM3, unitCubicMillimeter))
	peak := scoreItem("CONTAINS", conceptAnomalyScore, f.Peak, unitNoUnits)
	peakKids := []*elems{codeItem("HAS CONCEPT MOD", conceptDerivation, derivationMaximum)}
	if th.PeakThreshold != 0 {
		peakKids = append(peakKids, scoreItem("HAS PROPERTIES", conceptThresholdValue, th.PeakThreshold, unitNoUnits))
	}
	peak.seq("ContentSequence", peakKids...)
	mean := scoreItem("CONTAINS", conceptAnomalyScore, f.Mean, unitNoUnits)
	mean.seq("ContentSequence",
		codeItem("HAS CONCEPT MOD", conceptDerivation, derivationMean),
		scoreItem("HAS PROPERTIES", conceptThresholdValue, th.PixelThreshold, unitNoUnits))
	kids = append(kids, peak, mean)
	center := contentItem("CONTAINS", "SCOORD3D", conceptCenter)
	center.str("GraphicType", "POINT")
	center.add("GraphicData", []float64{f.Centroid[0], f.Centroid[1], f.Centroid[2]})
	center.str("ReferencedFrameOfReferenceUID", frameOfRef)
	kids = append(kids, center)
	return containerItem("CONTAINS", conceptMeasurementGroup, "1411", kids...)
}
