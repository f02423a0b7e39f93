package synth

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

// EnhancedMRImageStorage is the SOP class EncodeEnhanced writes.
const EnhancedMRImageStorage = "1.2.840.10008.5.1.4.1.1.4.1"

// Enhanced describes one Enhanced MR instance made from a series by
// EncodeEnhanced or WriteEnhanced: what a test needs to check the outputs made
// from it without reading it back.
type Enhanced struct {
	// SOPInstanceUID of the instance (derived from the seed, the series and
	// the frame order, so the same call always gives the same UID).
	SOPInstanceUID string
	// Slices[f] is the index in Result.Slices of frame number f+1: the order
	// passed in.
	Slices []int
	// Positions[f] is the ImagePositionPatient written for frame number f+1,
	// as the decimal strings written (those of the classic slice it came from).
	Positions [][]string
}

// Frame returns the 1-based frame number that holds slice k, or 0 when slice
// k is not in the instance.
func (e *Enhanced) Frame(k int) int {
	for f, s := range e.Slices {
		if s == k {
			return f + 1
		}
	}
	return 0
}

// WriteEnhanced writes the series as one Enhanced MR Image Storage instance
// (a Part-10 file at path; see EncodeEnhanced).
func WriteEnhanced(path string, r *Result, order []int) (*Enhanced, error) {
	b, e, err := r.EncodeEnhanced(order)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return e, nil
}

// EncodeEnhanced returns the series as one Enhanced MR Image Storage instance
// (PS3.3 A.36.2, Explicit VR Little Endian): frame number f+1 is slice
// order[f], so frames can be put out of position order on purpose; nil order
// means every slice in InstanceNumber order. Each frame's position is in its
// item of the Per-frame Functional Groups Sequence (Plane Position, and Frame
// Content with a dimension index on that position); pixel measures, plane
// orientation, frame anatomy, frame type, rescale, window and the MR
// acquisition macros are in the Shared item. The image is ORIGINAL, like a
// scanner's: a node drops DERIVED images carrying our manufacturer as its own
// outputs coming back, and ORIGINAL makes the MR pulse sequence and
// acquisition attributes required, so they describe a 2D spin echo (TR 500,
// TE 15, 1.5 T) like the classic slices'. dciodvfy -new reports nothing on it.
//
// Only unsigned or signed MONOCHROME2 MR series can be written (Enhanced MR
// has no MONOCHROME1; CT would need the Enhanced CT IOD).
func (r *Result) EncodeEnhanced(order []int) ([]byte, *Enhanced, error) {
	o := r.Options
	if o.Modality != ModalityMR || o.Monochrome1 {
		return nil, nil, fmt.Errorf("%w: an Enhanced MR instance needs an MR MONOCHROME2 series", ErrBadOptions)
	}
	if order == nil {
		for k := range r.Slices {
			order = append(order, k)
		}
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%w: no frames", ErrBadOptions)
	}
	seen := map[int]bool{}
	names := make([]string, len(order))
	for f, k := range order {
		if k < 0 || k >= len(r.Slices) || seen[k] {
			return nil, nil, fmt.Errorf("%w: frame %d is slice %d (out of range or repeated)", ErrBadOptions, f+1, k)
		}
		seen[k] = true
		names[f] = strconv.Itoa(k)
	}
	e := &Enhanced{
		SOPInstanceUID: deriveUID(o.Seed, "enhanced", r.SeriesInstanceUID, strings.Join(names, ",")),
		Slices:         append([]int(nil), order...),
	}
	ds, err := r.enhancedDataset(e)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	buf.Grow(2*r.Rows*r.Cols*len(order) + 8192)
	if err := dicom.Write(&buf, ds); err != nil {
		return nil, nil, fmt.Errorf("synth: write enhanced instance: %w", err)
	}
	return buf.Bytes(), e, nil
}

// el is one element to be made by dicom.NewElement: a value, or the items of
// a sequence.
type el struct {
	t     tag.Tag
	v     any
	items [][]el
}

func seq(t tag.Tag, items ...[]el) el { return el{t: t, items: items} }

// build turns els into sorted elements.
func build(els []el) ([]*dicom.Element, error) {
	out := make([]*dicom.Element, 0, len(els))
	for _, x := range els {
		v := x.v
		if x.items != nil {
			items := make([][]*dicom.Element, len(x.items))
			for i, it := range x.items {
				b, err := build(it)
				if err != nil {
					return nil, err
				}
				items[i] = b
			}
			v = items
		}
		if vs, ok := v.([]string); ok {
			var err error
			if v, err = binaryValue(x.t, vs); err != nil {
				return nil, err
			}
		}
		e, err := dicom.NewElement(x.t, v)
		if err != nil {
			return nil, fmt.Errorf("synth: element %v: %w", x.t, err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Tag.Compare(out[j].Tag) < 0 })
	return out, nil
}

// binaryValue converts the decimal strings given for a binary numeric VR
// (US, UL, SS, SL, FL, FD) into the value type dicom.NewElement wants; other
// VRs keep their strings.
func binaryValue(t tag.Tag, vs []string) (any, error) {
	info, err := tag.Find(t)
	if err != nil {
		return nil, fmt.Errorf("synth: element %v: %w", t, err)
	}
	switch info.VRs[0] {
	case "US", "UL", "SS", "SL":
		out := make([]int, len(vs))
		for i, s := range vs {
			if out[i], err = strconv.Atoi(s); err != nil {
				return nil, fmt.Errorf("synth: element %v: %w", t, err)
			}
		}
		return out, nil
	case "FL", "FD":
		out := make([]float64, len(vs))
		for i, s := range vs {
			if out[i], err = strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("synth: element %v: %w", t, err)
			}
		}
		return out, nil
	}
	return vs, nil
}

func (r *Result) enhancedDataset(e *Enhanced) (dicom.Dataset, error) {
	o := r.Options
	pixRep := 0
	if o.Signed {
		pixRep = 1
	}
	desc := "Synthetic T1 axial (enhanced)"
	if len(r.Lesions) > 0 {
		desc = "Synthetic T1 axial with lesions (enhanced)"
	}
	dimOrg := deriveUID(o.Seed, "enhanced-dimensions", e.SOPInstanceUID)
	str := func(v ...string) []string { return v }

	shared := []el{
		seq(tag.PixelMeasuresSequence, []el{
			{t: tag.PixelSpacing, v: dsList(r.PixelSpacing, r.PixelSpacing)},
			{t: tag.SliceThickness, v: str(ds(r.SliceSpacing))},
			{t: tag.SpacingBetweenSlices, v: str(ds(r.SliceSpacing))},
		}),
		seq(tag.PlaneOrientationSequence, []el{{t: tag.ImageOrientationPatient, v: dsList(r.Orientation[:]...)}}),
		seq(tag.FrameAnatomySequence, []el{
			{t: tag.FrameLaterality, v: str("B")},
			seq(tag.AnatomicRegionSequence, []el{
				{t: tag.CodeValue, v: str("69536005")},
				{t: tag.CodingSchemeDesignator, v: str("SCT")},
				{t: tag.CodeMeaning, v: str("Head")},
			}),
		}),
		seq(tag.MRImageFrameTypeSequence, []el{
			{t: tag.FrameType, v: str("ORIGINAL", "PRIMARY", "VOLUME", "NONE")},
			{t: tag.PixelPresentation, v: str("MONOCHROME")},
			{t: tag.VolumetricProperties, v: str("VOLUME")},
			{t: tag.VolumeBasedCalculationTechnique, v: str("NONE")},
			{t: tag.ComplexImageComponent, v: str("MAGNITUDE")},
			{t: tag.AcquisitionContrast, v: str("T1")},
		}),
		seq(tag.PixelValueTransformationSequence, []el{
			{t: tag.RescaleIntercept, v: str("0")},
			{t: tag.RescaleSlope, v: str("1")},
			{t: tag.RescaleType, v: str("US")},
		}),
		seq(tag.FrameVOILUTSequence, []el{
			{t: tag.WindowCenter, v: str(ds(r.WindowCenter))},
			{t: tag.WindowWidth, v: str(ds(r.WindowWidth))},
		}),
	}
	// A 2D spin echo: TR 500 ms, one phase encoding step per row.
	frameMS := 500 * float64(r.Rows)
	shared = append(shared,
		seq(tag.MRTimingAndRelatedParametersSequence, []el{
			{t: tag.RepetitionTime, v: str("500")},
			{t: tag.FlipAngle, v: str("90")},
			{t: tag.EchoTrainLength, v: str("1")},
			{t: tag.RFEchoTrainLength, v: str("1")},
			{t: tag.GradientEchoTrainLength, v: str("0")},
			seq(tag.SpecificAbsorptionRateSequence, []el{
				{t: tag.SpecificAbsorptionRateDefinition, v: str("IEC_WHOLE_BODY")},
				{t: tag.SpecificAbsorptionRateValue, v: str("0.5")},
			}),
			seq(tag.OperatingModeSequence,
				[]el{{t: tag.OperatingModeType, v: str("STATIC FIELD")}, {t: tag.OperatingMode, v: str("IEC_NORMAL")}},
				[]el{{t: tag.OperatingModeType, v: str("RF")}, {t: tag.OperatingMode, v: str("IEC_NORMAL")}},
				[]el{{t: tag.OperatingModeType, v: str("GRADIENT")}, {t: tag.OperatingMode, v: str("IEC_NORMAL")}},
			),
		}),
		seq(tag.MREchoSequence, []el{{t: tag.EffectiveEchoTime, v: str("15")}}),
		seq(tag.MRModifierSequence, []el{
			{t: tag.InversionRecovery, v: str("NO")},
			{t: tag.FlowCompensation, v: str("NONE")},
			{t: tag.T2Preparation, v: str("NO")},
			{t: tag.SpectrallySelectedExcitation, v: str("NONE")},
			{t: tag.SpatialPresaturation, v: str("NONE")},
			{t: tag.PartialFourier, v: str("NO")},
			{t: tag.ParallelAcquisition, v: str("NO")},
		}),
		seq(tag.MRImagingModifierSequence, []el{
			{t: tag.MagnetizationTransfer, v: str("NONE")},
			{t: tag.BloodSignalNulling, v: str("NO")},
			{t: tag.Tagging, v: str("NONE")},
			{t: tag.TransmitterFrequency, v: str("63.87")},
			{t: tag.PixelBandwidth, v: str("130")},
		}),
		seq(tag.MRReceiveCoilSequence, []el{
			{t: tag.ReceiveCoilName, v: str("HEAD")},
			{t: tag.ReceiveCoilManufacturerName, v: str()},
			{t: tag.ReceiveCoilType, v: str("VOLUME")},
			{t: tag.QuadratureReceiveCoil, v: str("YES")},
		}),
		seq(tag.MRTransmitCoilSequence, []el{
			{t: tag.TransmitCoilName, v: str("BODY")},
			{t: tag.TransmitCoilManufacturerName, v: str()},
			{t: tag.TransmitCoilType, v: str("BODY")},
		}),
		seq(tag.MRFOVGeometrySequence, []el{
			{t: tag.InPlanePhaseEncodingDirection, v: str("COLUMN")},
			{t: tag.MRAcquisitionFrequencyEncodingSteps, v: str(strconv.Itoa(r.Cols))},
			{t: tag.MRAcquisitionPhaseEncodingStepsInPlane, v: str(strconv.Itoa(r.Rows))},
			{t: tag.PercentSampling, v: str("100")},
			{t: tag.PercentPhaseFieldOfView, v: str("100")},
		}),
		seq(tag.MRAveragesSequence, []el{{t: tag.NumberOfAverages, v: str("1")}}),
	)
	perFrame := make([][]el, len(e.Slices))
	pix := make([]byte, 0, 2*r.Rows*r.Cols*len(e.Slices))
	for f, k := range e.Slices {
		sl := &r.Slices[k]
		ipp := dsList(sl.Position[:]...)
		e.Positions = append(e.Positions, ipp)
		perFrame[f] = []el{
			seq(tag.FrameContentSequence, []el{
				{t: tag.FrameAcquisitionNumber, v: []int{1}},
				{t: tag.FrameReferenceDateTime, v: str(r.StudyDate + r.StudyTime)},
				{t: tag.FrameAcquisitionDateTime, v: str(r.StudyDate + r.StudyTime)},
				{t: tag.FrameAcquisitionDuration, v: str(ds(frameMS))},
				{t: tag.DimensionIndexValues, v: []int{sl.InstanceNumber}},
				{t: tag.FrameComments, v: str(fmt.Sprintf("slice %d", sl.InstanceNumber))},
			}),
			seq(tag.PlanePositionSequence, []el{{t: tag.ImagePositionPatient, v: ipp}}),
		}
		pix = append(pix, pixelBytes(sl.Stored)...)
	}
	top := []el{
		{t: tag.FileMetaInformationVersion, v: []byte{0, 1}},
		{t: tag.MediaStorageSOPClassUID, v: str(EnhancedMRImageStorage)},
		{t: tag.MediaStorageSOPInstanceUID, v: str(e.SOPInstanceUID)},
		{t: tag.TransferSyntaxUID, v: str(dcm.ExplicitVRLittleEndian)},
		{t: tag.ImplementationClassUID, v: str(implementationClassUID)},
		{t: tag.ImplementationVersionName, v: str(implementationVersion)},

		{t: tag.SpecificCharacterSet, v: str("ISO_IR 100")},
		{t: tag.ImageType, v: str("ORIGINAL", "PRIMARY", "VOLUME", "NONE")},
		{t: tag.InstanceCreationDate, v: str(r.StudyDate)},
		{t: tag.InstanceCreationTime, v: str(r.StudyTime)},
		{t: tag.SOPClassUID, v: str(EnhancedMRImageStorage)},
		{t: tag.SOPInstanceUID, v: str(e.SOPInstanceUID)},
		{t: tag.StudyDate, v: str(r.StudyDate)},
		{t: tag.SeriesDate, v: str(r.StudyDate)},
		{t: tag.ContentDate, v: str(r.StudyDate)},
		{t: tag.StudyTime, v: str(r.StudyTime)},
		{t: tag.SeriesTime, v: str(r.StudyTime)},
		{t: tag.ContentTime, v: str(r.StudyTime)},
		{t: tag.AcquisitionDateTime, v: str(r.StudyDate + r.StudyTime)},
		{t: tag.AccessionNumber, v: str(r.AccessionNumber)},
		{t: tag.Modality, v: str(ModalityMR)},
		{t: tag.Manufacturer, v: str(manufacturer)},
		{t: tag.InstitutionName, v: str("SYNTHETIC")},
		{t: tag.ReferringPhysicianName, v: str("SYNTH^REFERRER")},
		{t: tag.StationName, v: str("SYNTH")},
		{t: tag.StudyDescription, v: str("Synthetic head study")},
		{t: tag.SeriesDescription, v: str(desc)},
		{t: tag.ManufacturerModelName, v: str(manufacturerModelName)},
		{t: tag.PatientName, v: str(r.PatientName)},
		{t: tag.PatientID, v: str(r.PatientID)},
		{t: tag.PatientBirthDate, v: str()},
		{t: tag.PatientSex, v: str("O")},
		{t: tag.BodyPartExamined, v: str("HEAD")},
		{t: tag.DeviceSerialNumber, v: str("0")},
		{t: tag.SoftwareVersions, v: str("anomalynode synth 1")},
		{t: tag.PatientPosition, v: str("HFS")},
		{t: tag.StudyInstanceUID, v: str(r.StudyInstanceUID)},
		{t: tag.SeriesInstanceUID, v: str(r.SeriesInstanceUID)},
		{t: tag.StudyID, v: str("1")},
		{t: tag.SeriesNumber, v: str(strconv.Itoa(o.SeriesNumber))},
		{t: tag.InstanceNumber, v: str("1")},
		{t: tag.FrameOfReferenceUID, v: str(r.FrameOfReferenceUID)},
		{t: tag.PositionReferenceIndicator, v: str()},
		{t: tag.SamplesPerPixel, v: []int{1}},
		{t: tag.PhotometricInterpretation, v: str("MONOCHROME2")},
		{t: tag.NumberOfFrames, v: str(strconv.Itoa(len(e.Slices)))},
		{t: tag.Rows, v: []int{r.Rows}},
		{t: tag.Columns, v: []int{r.Cols}},
		{t: tag.BitsAllocated, v: []int{16}},
		{t: tag.BitsStored, v: []int{r.BitsStored}},
		{t: tag.HighBit, v: []int{r.BitsStored - 1}},
		{t: tag.PixelRepresentation, v: []int{pixRep}},
		{t: tag.BurnedInAnnotation, v: str("NO")},
		{t: tag.LossyImageCompression, v: str("00")},
		{t: tag.PresentationLUTShape, v: str("IDENTITY")},
		{t: tag.ContentQualification, v: str("RESEARCH")},
		{t: tag.PixelPresentation, v: str("MONOCHROME")},
		{t: tag.VolumetricProperties, v: str("VOLUME")},
		{t: tag.VolumeBasedCalculationTechnique, v: str("NONE")},
		{t: tag.ComplexImageComponent, v: str("MAGNITUDE")},
		{t: tag.AcquisitionContrast, v: str("T1")},
		{t: tag.ApplicableSafetyStandardAgency, v: str("IEC")},
		{t: tag.AcquisitionDuration, v: str(ds(frameMS * float64(len(e.Slices)) / 1000))},
		{t: tag.ResonantNucleus, v: str("1H")},
		{t: tag.KSpaceFiltering, v: str("NONE")},
		{t: tag.MagneticFieldStrength, v: str("1.5")},
		{t: tag.PulseSequenceName, v: str("SE2D")},
		{t: tag.MRAcquisitionType, v: str("2D")},
		{t: tag.EchoPulseSequence, v: str("SPIN")},
		{t: tag.MultipleSpinEcho, v: str("NO")},
		{t: tag.MultiPlanarExcitation, v: str("NO")},
		{t: tag.PhaseContrast, v: str("NO")},
		{t: tag.TimeOfFlightContrast, v: str("NO")},
		{t: tag.SteadyStatePulseSequence, v: str("NONE")},
		{t: tag.EchoPlanarPulseSequence, v: str("NO")},
		{t: tag.SaturationRecovery, v: str("NO")},
		{t: tag.SpectrallySelectedSuppression, v: str("NONE")},
		{t: tag.OversamplingPhase, v: str("NONE")},
		{t: tag.GeometryOfKSpaceTraversal, v: str("RECTILINEAR")},
		{t: tag.RectilinearPhaseEncodeReordering, v: str("LINEAR")},
		{t: tag.SegmentedKSpaceTraversal, v: str("SINGLE")},
		{t: tag.NumberOfKSpaceTrajectories, v: str("1")},
		{t: tag.ImageComments, v: str("Synthetic image, not a patient")},
		seq(tag.DimensionOrganizationSequence, []el{{t: tag.DimensionOrganizationUID, v: str(dimOrg)}}),
		seq(tag.DimensionIndexSequence, []el{
			{t: tag.DimensionOrganizationUID, v: str(dimOrg)},
			{t: tag.DimensionIndexPointer, v: []int{int(tag.ImagePositionPatient.Group), int(tag.ImagePositionPatient.Element)}},
			{t: tag.FunctionalGroupPointer, v: []int{int(tag.PlanePositionSequence.Group), int(tag.PlanePositionSequence.Element)}},
			{t: tag.DimensionDescriptionLabel, v: str("Position")},
		}),
		{t: tag.AcquisitionContextSequence, items: [][]el{}},
		seq(tag.SharedFunctionalGroupsSequence, shared),
		{t: tag.PerFrameFunctionalGroupsSequence, items: perFrame},
		{t: tag.PixelData, v: dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pix}},
	}
	els, err := build(top)
	if err != nil {
		return dicom.Dataset{}, err
	}
	return dicom.Dataset{Elements: els}, nil
}
