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
// orientation, frame anatomy, frame type, rescale and window are in the Shared
// item. The image is DERIVED (resampled from a volume), so the acquisition
// attributes an ORIGINAL enhanced image must carry are left out.
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
		e, err := dicom.NewElement(x.t, v)
		if err != nil {
			return nil, fmt.Errorf("synth: element %v: %w", x.t, err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Tag.Compare(out[j].Tag) < 0 })
	return out, nil
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
			{t: tag.FrameType, v: str("DERIVED", "PRIMARY", "VOLUME", "RESAMPLED")},
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
				{t: tag.FrameAcquisitionDuration, v: []float64{0}},
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
		{t: tag.TransferSyntaxUID, v: str(ExplicitVRLittleEndian)},
		{t: tag.ImplementationClassUID, v: str(implementationClassUID)},
		{t: tag.ImplementationVersionName, v: str(implementationVersion)},

		{t: tag.SpecificCharacterSet, v: str("ISO_IR 100")},
		{t: tag.ImageType, v: str("DERIVED", "PRIMARY", "VOLUME", "RESAMPLED")},
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
