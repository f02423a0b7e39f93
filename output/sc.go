package output

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"
	"time"

	"github.com/suyashkumar/dicom"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Legend is burned into every heat map and repeated in ImageComments and the
// SeriesDescription: the heat map is an aid, not a diagnostic image.
const Legend = "NOT FOR DIAGNOSTIC USE"

// SCOptions configures BuildSC; the zero value gives sensible defaults.
type SCOptions struct {
	// SeriesDescription names the heat-map series; version and Legend are appended.
	SeriesDescription string
	// SeriesNumber of the SC series; 0 means the source's plus 2000.
	SeriesNumber int
	// OnlyFindings builds heat maps only for slices with an anomalous pixel.
	OnlyFindings bool
	// Disabled builds no heat maps at all (config output.sc: false).
	Disabled bool
	// Opacity is the heat map's opacity at the highest score (0..1, default 0.6).
	Opacity float64
	// Equipment describes this software.
	Equipment Equipment
}

func (o SCOptions) withDefaults() SCOptions {
	if o.SeriesDescription == "" {
		o.SeriesDescription = "Anomaly heat map"
	}
	if o.Opacity <= 0 || o.Opacity > 1 {
		o.Opacity = 0.6
	}
	o.Equipment = o.Equipment.withDefaults()
	return o
}

// BuildSC builds one RGB Secondary Capture per source slice (only slices with
// findings when opts.OnlyFindings): the windowed source in grey with the score
// map blended as a colour heat map, the mask outlined, and Legend burned in.
// Each keeps its source's study, frame of reference, position and instance
// number so that a viewer scrolls it alongside the source. Each scored frame
// of a multi-frame source gets a single-frame SC of its own, on that frame's
// plane, referencing the source instance and frame number; its
// InstanceNumber is the frame's rank along the slice normal (1 for the first
// slice), since the frames share the source's.
func BuildSC(res *SeriesResult, opts SCOptions) ([]*Object, error) {
	if opts.Disabled {
		return nil, nil
	}
	opts = opts.withDefaults()
	slices, _, err := orderedSlices(res)
	if err != nil {
		return nil, err
	}
	study, _ := res.sourceUIDs()
	seriesUID := res.SeriesUID(KindSC)
	version := res.version()
	created := res.Created
	if created.IsZero() {
		created = time.Now()
	}
	date, tm := created.Format("20060102"), created.Format("150405")

	// One score scale for the whole series so colours compare across slices.
	lo := float64(res.Threshold) * 0.5
	hi := float64(res.Threshold)
	for _, s := range slices {
		for _, v := range s.src.Scores {
			if float64(v) > hi {
				hi = float64(v)
			}
		}
	}
	if hi <= lo {
		hi = lo + 1
	}

	var out []*Object
	for rank, s := range slices {
		if opts.OnlyFindings && !anyTrue(s.src.Mask) {
			continue
		}
		if len(s.src.Display) != s.src.Rows*s.src.Cols {
			return nil, fmt.Errorf("%w: slice %d: Display is not Rows*Cols", ErrBadSource, s.index)
		}
		h := s.src.Header
		sop := res.SCFrameInstanceUID(s.sopInst, s.src.Frame)
		e := &elems{}
		copyPatientStudy(e, h)
		e.str("SOPClassUID", SecondaryCaptureImageStorage)
		e.str("SOPInstanceUID", sop)
		e.str("InstanceCreationDate", date)
		e.str("InstanceCreationTime", tm)
		// General Series.
		e.str("Modality", "OT")
		e.str("SeriesInstanceUID", seriesUID)
		e.str("SeriesNumber", strconv.Itoa(seriesNumber(opts.SeriesNumber, h, 2000)))
		e.str("SeriesDescription", loString(fmt.Sprintf("%s v%d - %s", opts.SeriesDescription, version, Legend)))
		e.str("SeriesDate", date)
		e.str("SeriesTime", tm)
		e.copy(h, "BodyPartExamined", false)
		e.copy(h, "Laterality", false)
		// General Equipment and SC Equipment.
		eq := opts.Equipment
		e.str("Manufacturer", eq.Manufacturer)
		e.str("ManufacturerModelName", eq.ManufacturerModelName)
		e.str("DeviceSerialNumber", eq.DeviceSerialNumber)
		e.str("SoftwareVersions", softwareVersions(eq, res.Model)...)
		e.str("ConversionType", "WSD")
		e.str("SecondaryCaptureDeviceManufacturer", eq.Manufacturer)
		e.str("SecondaryCaptureDeviceManufacturerModelName", eq.ManufacturerModelName)
		e.str("SecondaryCaptureDeviceSoftwareVersions", softwareVersions(eq, res.Model)...)
		e.str("DateOfSecondaryCapture", date)
		e.str("TimeOfSecondaryCapture", tm)
		// General Image.
		inst, ok := getInt(h, "InstanceNumber")
		if !ok || s.geom.multiFrame {
			inst = rank + 1
		}
		e.str("InstanceNumber", strconv.Itoa(inst))
		e.str("ImageType", "DERIVED", "SECONDARY")
		e.str("ContentDate", date)
		e.str("ContentTime", tm)
		iop, _ := parseDS("ImageOrientationPatient", s.geom.iop)
		e.str("PatientOrientation", patientOrientation(iop)...)
		e.str("BurnedInAnnotation", "YES")
		e.str("LossyImageCompression", "00")
		e.str("ImageComments", fmt.Sprintf("%s. Anomaly heat map of model %s %s (threshold %g), version %d.",
			Legend, nonEmpty(res.Model.Name, "model"), nonEmpty(res.Model.Version, "0"), res.Threshold, version))
		e.str("DerivationDescription", "Source windowed to grey with anomaly scores as a colour heat map and the anomaly mask outlined")
		src := &elems{}
		src.str("ReferencedSOPClassUID", s.sopClass)
		src.str("ReferencedSOPInstanceUID", s.sopInst)
		if n := s.frameNumber(); n > 0 {
			src.str("ReferencedFrameNumber", strconv.Itoa(n))
		}
		src.seq("PurposeOfReferenceCodeSequence", purposeSourceImage.item())
		e.seq("SourceImageSequence", src)
		// Same frame of reference and plane as the source, for viewers that
		// scroll and link by position.
		e.str("FrameOfReferenceUID", getString(h, "FrameOfReferenceUID"))
		e.add("ImagePositionPatient", s.geom.ipp)
		e.add("ImageOrientationPatient", s.geom.iop)
		if s.geom.multiFrame {
			// The frame's own pixel measures; a multi-frame source has no
			// per-frame SliceLocation to copy.
			if len(s.geom.spacing) > 0 {
				e.add("PixelSpacing", s.geom.spacing)
			}
			if len(s.geom.thickness) > 0 {
				e.add("SliceThickness", s.geom.thickness)
			}
		} else {
			e.copy(h, "PixelSpacing", false)
			e.copy(h, "SliceThickness", false)
			e.copy(h, "SliceLocation", false)
		}
		// Image Pixel.
		e.num("SamplesPerPixel", 3)
		e.str("PhotometricInterpretation", "RGB")
		e.num("PlanarConfiguration", 0)
		e.num("Rows", s.src.Rows)
		e.num("Columns", s.src.Cols)
		e.num("BitsAllocated", 8)
		e.num("BitsStored", 8)
		e.num("HighBit", 7)
		e.num("PixelRepresentation", 0)
		rgb := HeatMap(s.src, lo, hi, opts.Opacity)
		if len(rgb)%2 == 1 {
			rgb = append(rgb, 0)
		}
		e.add("PixelData", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: rgb})
		e.list[len(e.list)-1].RawValueRepresentation = "OB"
		part10, err := encode(e, SecondaryCaptureImageStorage, sop)
		if err != nil {
			return nil, err
		}
		out = append(out, &Object{
			SOPClassUID: SecondaryCaptureImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: ExplicitVRLittleEndian,
			StudyInstanceUID: study, SeriesInstanceUID: seriesUID, Part10: part10,
		})
	}
	return out, nil
}

// HeatMap renders one slice as interleaved 8-bit RGB (Rows*Cols*3 bytes):
// grey source, scores in [lo, hi] blended with a blue-to-red colour map at up
// to opacity, mask outline in cyan, and Legend at the bottom left.
func HeatMap(s *SourceSlice, lo, hi, opacity float64) []byte {
	w, h := s.Cols, s.Rows
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			g := float64(s.Display[i])
			r, gg, b := g, g, g
			if t := (float64(s.Scores[i]) - lo) / (hi - lo); t > 0 {
				t = math.Min(t, 1)
				cr, cg, cb := jet(t)
				a := opacity * t
				r, gg, b = (1-a)*g+a*cr, (1-a)*g+a*cg, (1-a)*g+a*cb
			}
			if s.Mask[i] && onEdge(s.Mask, w, h, x, y) {
				r, gg, b = 0, 255, 255
			}
			img.SetRGBA(x, y, color.RGBA{uint8(r + 0.5), uint8(gg + 0.5), uint8(b + 0.5), 255})
		}
	}
	drawLegend(img)
	out := make([]byte, 0, w*h*3)
	for i := 0; i < len(img.Pix); i += 4 {
		out = append(out, img.Pix[i], img.Pix[i+1], img.Pix[i+2])
	}
	return out
}

func onEdge(m []bool, w, h, x, y int) bool {
	for _, d := range [4][2]int{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
		nx, ny := x+d[0], y+d[1]
		if nx < 0 || ny < 0 || nx >= w || ny >= h || !m[ny*w+nx] {
			return true
		}
	}
	return false
}

// jet maps t in [0,1] to blue, cyan, yellow, red.
func jet(t float64) (r, g, b float64) {
	c := func(x float64) float64 { return 255 * math.Max(0, math.Min(1, x)) }
	return c(1.5 - math.Abs(4*t-3)), c(1.5 - math.Abs(4*t-2)), c(1.5 - math.Abs(4*t-1))
}

// drawLegend burns Legend into the bottom-left corner on a black band so it
// stays legible on any image.
func drawLegend(img *image.RGBA) {
	face := basicfont.Face7x13
	b := img.Bounds()
	width := font.MeasureString(face, Legend).Ceil() + 4
	band := image.Rect(0, b.Max.Y-16, width, b.Max.Y)
	draw.Draw(img, band.Intersect(b), image.NewUniform(color.RGBA{0, 0, 0, 255}), image.Point{}, draw.Src)
	d := &font.Drawer{
		Dst:  img,
		Src:  image.NewUniform(color.RGBA{255, 255, 0, 255}),
		Face: face,
		Dot:  fixed.P(2, b.Max.Y-4),
	}
	d.DrawString(Legend)
}
