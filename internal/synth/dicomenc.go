package synth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

// SOP classes and the transfer syntax written.
const (
	MRImageStorage         = "1.2.840.10008.5.1.4.1.1.4"
	CTImageStorage         = "1.2.840.10008.5.1.4.1.1.2"
	implementationClassUID = "2.25.181792397214470458297917417476235468288"
	implementationVersion  = "ANOMALYNODE_SYN"
	manufacturer           = "anomalynode"
	manufacturerModelName  = "synth"
)

// SOPClassUID returns the SOP class of the series' images.
func (r *Result) SOPClassUID() string {
	if r.Options.Modality == ModalityCT {
		return CTImageStorage
	}
	return MRImageStorage
}

// EncodeSlice returns slice k as a DICOM Part-10 file (Explicit VR Little Endian).
func (r *Result) EncodeSlice(k int) ([]byte, error) {
	if k < 0 || k >= len(r.Slices) {
		return nil, fmt.Errorf("synth: slice %d out of range", k)
	}
	ds, err := r.dataset(k)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(2*r.Rows*r.Cols + 4096)
	if err := dicom.Write(&buf, ds); err != nil {
		return nil, fmt.Errorf("synth: write slice %d: %w", k+1, err)
	}
	return buf.Bytes(), nil
}

// ds formats a decimal string of at most 16 characters.
func ds(v float64) string {
	for prec := -1; ; prec-- {
		var s string
		if prec == -1 {
			s = strconv.FormatFloat(v, 'f', -1, 64)
		} else {
			s = strconv.FormatFloat(v, 'g', 16+prec, 64)
		}
		if len(s) <= 16 || prec < -14 {
			return s
		}
	}
}

func dsList(v ...float64) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = ds(x)
	}
	return out
}

func (r *Result) dataset(k int) (dicom.Dataset, error) {
	o := r.Options
	sl := &r.Slices[k]
	sop := r.SOPClassUID()
	mr := o.Modality == ModalityMR
	photometric := "MONOCHROME2"
	if o.Monochrome1 {
		photometric = "MONOCHROME1"
	}
	pixRep := 0
	if o.Signed {
		pixRep = 1
	}
	imageType := []string{"ORIGINAL", "PRIMARY", "OTHER"}
	if !mr {
		imageType[2] = "AXIAL"
	}
	desc := "Synthetic T1 axial"
	if !mr {
		desc = "Synthetic head CT axial"
	}
	if len(r.Lesions) > 0 {
		desc += " with lesions"
	}
	elems := []struct {
		t tag.Tag
		v any
	}{
		{tag.FileMetaInformationVersion, []byte{0, 1}},
		{tag.MediaStorageSOPClassUID, []string{sop}},
		{tag.MediaStorageSOPInstanceUID, []string{sl.SOPInstanceUID}},
		{tag.TransferSyntaxUID, []string{dcm.ExplicitVRLittleEndian}},
		{tag.ImplementationClassUID, []string{implementationClassUID}},
		{tag.ImplementationVersionName, []string{implementationVersion}},

		{tag.SpecificCharacterSet, []string{"ISO_IR 100"}},
		{tag.ImageType, imageType},
		{tag.InstanceCreationDate, []string{r.StudyDate}},
		{tag.InstanceCreationTime, []string{r.StudyTime}},
		{tag.SOPClassUID, []string{sop}},
		{tag.SOPInstanceUID, []string{sl.SOPInstanceUID}},
		{tag.StudyDate, []string{r.StudyDate}},
		{tag.SeriesDate, []string{r.StudyDate}},
		{tag.AcquisitionDate, []string{r.StudyDate}},
		{tag.ContentDate, []string{r.StudyDate}},
		{tag.StudyTime, []string{r.StudyTime}},
		{tag.SeriesTime, []string{r.StudyTime}},
		{tag.AcquisitionTime, []string{r.StudyTime}},
		{tag.ContentTime, []string{r.StudyTime}},
		{tag.AccessionNumber, []string{r.AccessionNumber}},
		{tag.Modality, []string{o.Modality}},
		{tag.Manufacturer, []string{manufacturer}},
		{tag.InstitutionName, []string{"SYNTHETIC"}},
		{tag.ReferringPhysicianName, []string{"SYNTH^REFERRER"}},
		{tag.StationName, []string{"SYNTH"}},
		{tag.StudyDescription, []string{"Synthetic head study"}},
		{tag.SeriesDescription, []string{desc}},
		{tag.ManufacturerModelName, []string{manufacturerModelName}},
		{tag.PatientName, []string{r.PatientName}},
		{tag.PatientID, []string{r.PatientID}},
		{tag.PatientBirthDate, []string{}},
		{tag.PatientSex, []string{"O"}},
		{tag.BodyPartExamined, []string{"HEAD"}},
		{tag.SliceThickness, []string{ds(r.SliceSpacing)}},
		{tag.SpacingBetweenSlices, []string{ds(r.SliceSpacing)}},
		{tag.DeviceSerialNumber, []string{"0"}},
		{tag.SoftwareVersions, []string{"anomalynode synth 1"}},
		{tag.ProtocolName, []string{desc}},
		{tag.PatientPosition, []string{"HFS"}},
		{tag.StudyInstanceUID, []string{r.StudyInstanceUID}},
		{tag.SeriesInstanceUID, []string{r.SeriesInstanceUID}},
		{tag.StudyID, []string{"1"}},
		{tag.SeriesNumber, []string{strconv.Itoa(o.SeriesNumber)}},
		{tag.AcquisitionNumber, []string{"1"}},
		{tag.InstanceNumber, []string{strconv.Itoa(sl.InstanceNumber)}},
		{tag.ImagePositionPatient, dsList(sl.Position[:]...)},
		{tag.ImageOrientationPatient, dsList(r.Orientation[:]...)},
		{tag.FrameOfReferenceUID, []string{r.FrameOfReferenceUID}},
		{tag.PositionReferenceIndicator, []string{}},
		{tag.SliceLocation, []string{ds(sl.SliceLocation)}},
		{tag.ImagesInAcquisition, []string{strconv.Itoa(len(r.Slices))}},
		{tag.SamplesPerPixel, []int{1}},
		{tag.PhotometricInterpretation, []string{photometric}},
		{tag.Rows, []int{r.Rows}},
		{tag.Columns, []int{r.Cols}},
		{tag.PixelSpacing, dsList(r.PixelSpacing, r.PixelSpacing)},
		{tag.BitsAllocated, []int{16}},
		{tag.BitsStored, []int{r.BitsStored}},
		{tag.HighBit, []int{r.BitsStored - 1}},
		{tag.PixelRepresentation, []int{pixRep}},
		{tag.WindowCenter, []string{ds(r.WindowCenter)}},
		{tag.WindowWidth, []string{ds(r.WindowWidth)}},
		{tag.LossyImageCompression, []string{"00"}},
		{tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pixelBytes(sl.Stored)}},
	}
	if mr {
		elems = append(elems, []struct {
			t tag.Tag
			v any
		}{
			{tag.ScanningSequence, []string{"SE"}},
			{tag.SequenceVariant, []string{"NONE"}},
			{tag.ScanOptions, []string{}},
			{tag.MRAcquisitionType, []string{"2D"}},
			{tag.SequenceName, []string{"se2d1"}},
			{tag.RepetitionTime, []string{"500"}},
			{tag.EchoTime, []string{"15"}},
			{tag.NumberOfAverages, []string{"1"}},
			{tag.ImagingFrequency, []string{"63.87"}},
			{tag.ImagedNucleus, []string{"1H"}},
			{tag.EchoNumbers, []string{"1"}},
			{tag.MagneticFieldStrength, []string{"1.5"}},
			{tag.EchoTrainLength, []string{"1"}},
			{tag.FlipAngle, []string{"90"}},
		}...)
	} else {
		elems = append(elems, []struct {
			t tag.Tag
			v any
		}{
			{tag.KVP, []string{"120"}},
			{tag.ConvolutionKernel, []string{"STANDARD"}},
			{tag.RescaleIntercept, []string{ds(r.Intercept)}},
			{tag.RescaleSlope, []string{ds(r.Slope)}},
			{tag.RescaleType, []string{"HU"}},
		}...)
	}
	sort.Slice(elems, func(i, j int) bool {
		a, b := elems[i].t, elems[j].t
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Element < b.Element
	})
	out := dicom.Dataset{Elements: make([]*dicom.Element, 0, len(elems))}
	for _, e := range elems {
		el, err := dicom.NewElement(e.t, e.v)
		if err != nil {
			return dicom.Dataset{}, fmt.Errorf("synth: element %v: %w", e.t, err)
		}
		out.Elements = append(out.Elements, el)
	}
	return out, nil
}

// pixelBytes packs stored values as 16-bit little-endian words (two's
// complement for signed data).
func pixelBytes(v []int32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(x))
	}
	return b
}
