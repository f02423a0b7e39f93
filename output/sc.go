package output

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"anomalynode/internal/dcm"
	"anomalynode/internal/par"
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
// slice), since the frames share the source's. The colour scale runs from
// half the threshold to the series' highest score (per-pixel masks, no
// finding calibration).
func BuildSC(res *SeriesResult, opts SCOptions) ([]*Object, error) {
	return buildSC(&Analysis{Result: res}, opts)
}

// BuildAnalysisSC builds the heat maps of one analysed stack. Calibrated,
// the colour scale is anchored to the calibration: colour starts at the
// pixel threshold (blue) and saturates at the finding peak threshold (red),
// and a scale bar with both values is burned in next to Legend, so the same
// colour means the same score in every series. A calibrated stack with no
// finding gets the one "no finding" page (BuildNoFindingSC) instead of heat
// maps: there is nothing to show, but the clinician sees it was analysed
// (built even when opts.Disabled turns heat maps off). Not calibrated, it is BuildSC of the stack.
func BuildAnalysisSC(a *Analysis, opts SCOptions) ([]*Object, error) {
	// The page is built even with heat maps disabled: without it a series
	// with no finding would leave no trace in the viewer at all.
	if a.NoFinding() {
		obj, err := BuildNoFindingSC(a, opts)
		if err != nil {
			return nil, err
		}
		return []*Object{obj}, nil
	}
	return buildSC(a, opts)
}

// colourScale is the score range of the heat map's colours.
type colourScale struct {
	lo, hi float64
	// bar burns a labelled scale bar in (calibrated scales only).
	bar bool
	// start is where on the colour map lo falls (0: dark blue) and floor the
	// share of the opacity a score just above lo gets. A calibrated scale
	// starts at a clear blue with half the opacity, so every pixel above the
	// pixel threshold is visibly coloured, not a near-grey dark blue.
	start, floor float64
}

// scale chooses the heat map's colour scale for a stack.
func (a *Analysis) scale() colourScale {
	if a.Calibrated {
		lo, hi := float64(a.Params.PixelThreshold), float64(a.Params.PeakThreshold)
		if hi <= lo {
			// A peak limit at or below the pixel threshold adds nothing: the
			// scale spans the pixel threshold to twice its distance from 0.
			hi = lo + math.Max(math.Abs(lo), 1e-3)
		}
		return colourScale{lo: lo, hi: hi, bar: true, start: 0.25, floor: 0.5}
	}
	// One score scale for the whole series so colours compare across slices.
	res := a.Result
	lo := float64(res.Threshold) * 0.5
	hi := float64(res.Threshold)
	for _, s := range res.Sources {
		for _, v := range s.Scores {
			if float64(v) > hi {
				hi = float64(v)
			}
		}
	}
	if hi <= lo {
		hi = lo + 1
	}
	return colourScale{lo: lo, hi: hi}
}

// scHeader writes what every SC of a result shares: patient and study,
// series, equipment, dates.
func scHeader(e *elems, res *SeriesResult, opts SCOptions, h *dicom.Dataset, sop string, created time.Time) {
	date, tm := created.Format("20060102"), created.Format("150405")
	copyPatientStudy(e, h)
	e.str("SOPClassUID", SecondaryCaptureImageStorage)
	e.str("SOPInstanceUID", sop)
	e.str("InstanceCreationDate", date)
	e.str("InstanceCreationTime", tm)
	// General Series.
	e.str("Modality", "OT")
	e.str("SeriesInstanceUID", res.SeriesUID(KindSC))
	e.str("SeriesNumber", strconv.Itoa(seriesNumber(opts.SeriesNumber, h, 2000)))
	e.str("SeriesDescription", loString(fmt.Sprintf("%s v%d - %s", opts.SeriesDescription, res.version(), Legend)+stackSuffix(res)))
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
	e.str("ContentDate", date)
	e.str("ContentTime", tm)
	e.str("ImageType", "DERIVED", "SECONDARY")
	e.str("BurnedInAnnotation", "YES")
	e.str("LossyImageCompression", "00")
}

// rgbPixels writes the Image Pixel module of an 8-bit RGB image.
func rgbPixels(e *elems, rows, cols int, rgb []byte) {
	e.num("SamplesPerPixel", 3)
	e.str("PhotometricInterpretation", "RGB")
	e.num("PlanarConfiguration", 0)
	e.num("Rows", rows)
	e.num("Columns", cols)
	e.num("BitsAllocated", 8)
	e.num("BitsStored", 8)
	e.num("HighBit", 7)
	e.num("PixelRepresentation", 0)
	e.pixelDataOB(rgb)
}

// heatMapComment is the heat maps' ImageComments: the legend, the model and
// the colour scale (threshold to finding peak threshold when the model has a
// finding calibration).
func heatMapComment(res *SeriesResult, sc colourScale, version int) string {
	if sc.bar {
		return fmt.Sprintf("%s. Anomaly heat map of model %s %s, version %d: colour from the pixel threshold %.4g (blue) to the finding peak threshold %.4g (red); findings outlined.",
			Legend, nonEmpty(res.Model.Name, "model"), nonEmpty(res.Model.Version, "0"), version, sc.lo, sc.hi)
	}
	return fmt.Sprintf("%s. Anomaly heat map of model %s %s (threshold %g), version %d.",
		Legend, nonEmpty(res.Model.Name, "model"), nonEmpty(res.Model.Version, "0"), res.Threshold, version)
}

// addSCSource references the slice (and frame) the heat map was made from.
func addSCSource(e *elems, s slice) {
	src := &elems{}
	src.str("ReferencedSOPClassUID", s.sopClass)
	src.str("ReferencedSOPInstanceUID", s.sopInst)
	if n := s.frameNumber(); n > 0 {
		src.str("ReferencedFrameNumber", strconv.Itoa(n))
	}
	src.seq("PurposeOfReferenceCodeSequence", purposeSourceImage.item())
	e.seq("SourceImageSequence", src)
}

// addSCPlane gives the heat map the source's frame of reference and plane,
// for viewers that scroll and link by position.
func addSCPlane(e *elems, s slice) {
	h := s.src.Header
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
		return
	}
	e.copy(h, "PixelSpacing", false)
	e.copy(h, "SliceThickness", false)
	e.copy(h, "SliceLocation", false)
}

// buildSC builds one secondary-capture heat map per slice (per slice with a
// finding with OnlyFindings).
func buildSC(a *Analysis, opts SCOptions) ([]*Object, error) {
	res := a.Result
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
	sc := a.scale()
	comment := heatMapComment(res, sc, version)

	// One instance per slice, rendered and encoded one goroutine per core.
	objs := make([]*Object, len(slices))
	errs := make([]error, len(slices))
	par.ForEach(len(slices), func(rank int) {
		s := slices[rank]
		if opts.OnlyFindings && !anyTrue(s.src.Mask) {
			return
		}
		if len(s.src.Display) != s.src.Rows*s.src.Cols {
			errs[rank] = fmt.Errorf("%w: slice %d: Display is not Rows*Cols", ErrBadSource, s.index)
			return
		}
		h := s.src.Header
		sop := res.SCFrameInstanceUID(s.sopInst, s.src.Frame)
		e := &elems{}
		scHeader(e, res, opts, h, sop, created)
		// General Image.
		inst, ok := getInt(h, "InstanceNumber")
		if !ok || s.geom.multiFrame {
			inst = rank + 1
		}
		e.str("InstanceNumber", strconv.Itoa(inst))
		iop, _ := parseDS("ImageOrientationPatient", s.geom.iop)
		e.str("PatientOrientation", patientOrientation(iop)...)
		e.str("ImageComments", comment)
		e.str("DerivationDescription", "Source windowed to grey with anomaly scores as a colour heat map and the anomaly mask outlined")
		addSCSource(e, s)
		addSCPlane(e, s)
		rgbPixels(e, s.src.Rows, s.src.Cols, heatMap(s.src, sc, opts.Opacity))
		part10, err := encode(e, SecondaryCaptureImageStorage, sop)
		if err != nil {
			errs[rank] = err
			return
		}
		objs[rank] = &Object{
			SOPClassUID: SecondaryCaptureImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
			StudyInstanceUID: study, SeriesInstanceUID: seriesUID, Part10: part10,
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var out []*Object
	for _, o := range objs {
		if o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

// HeatMap renders one slice as interleaved 8-bit RGB (Rows*Cols*3 bytes):
// grey source, scores in [lo, hi] blended with a blue-to-red colour map at up
// to opacity, mask outline in cyan, and Legend at the bottom left.
func HeatMap(s *SourceSlice, lo, hi, opacity float64) []byte {
	return heatMap(s, colourScale{lo: lo, hi: hi}, opacity)
}

// heatMap is HeatMap with a scale bar when sc.bar.
func heatMap(s *SourceSlice, sc colourScale, opacity float64) []byte {
	lo, hi := sc.lo, sc.hi
	w, h := s.Cols, s.Rows
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			g := float64(s.Display[i])
			r, gg, b := g, g, g
			if t := (float64(s.Scores[i]) - lo) / (hi - lo); t > 0 {
				t = math.Min(t, 1)
				cr, cg, cb := jet(sc.start + (1-sc.start)*t)
				a := opacity * (sc.floor + (1-sc.floor)*t)
				r, gg, b = (1-a)*g+a*cr, (1-a)*g+a*cg, (1-a)*g+a*cb
			}
			if s.Mask[i] && onEdge(s.Mask, w, h, x, y) {
				r, gg, b = 0, 255, 255
			}
			img.SetRGBA(x, y, color.RGBA{uint8(r + 0.5), uint8(gg + 0.5), uint8(b + 0.5), 255})
		}
	}
	drawLegend(img)
	if sc.bar {
		drawScale(img, lo, hi, sc.start)
	}
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

// drawScale burns the calibrated colour scale into the top-left corner: the
// pixel threshold, a colour bar, the finding peak threshold.
func drawScale(img *image.RGBA, lo, hi, start float64) {
	face := basicfont.Face7x13
	b := img.Bounds()
	loText, hiText := strconv.FormatFloat(lo, 'g', 3, 64), strconv.FormatFloat(hi, 'g', 3, 64)
	const barW = 40
	x0 := 2 + font.MeasureString(face, loText).Ceil() + 3
	width := x0 + barW + 3 + font.MeasureString(face, hiText).Ceil() + 2
	draw.Draw(img, image.Rect(0, 0, width, 16).Intersect(b), image.NewUniform(color.RGBA{0, 0, 0, 255}), image.Point{}, draw.Src)
	for x := 0; x < barW; x++ {
		r, g, bl := jet(start + (1-start)*float64(x)/float64(barW-1))
		c := color.RGBA{uint8(r + 0.5), uint8(g + 0.5), uint8(bl + 0.5), 255}
		draw.Draw(img, image.Rect(x0+x, 3, x0+x+1, 13).Intersect(b), image.NewUniform(c), image.Point{}, draw.Src)
	}
	d := &font.Drawer{Dst: img, Src: image.NewUniform(color.RGBA{255, 255, 255, 255}), Face: face, Dot: fixed.P(2, 12)}
	d.DrawString(loText)
	d.Dot = fixed.P(x0+barW+3, 12)
	d.DrawString(hiText)
}

// noFindingSize is the size of the "no finding" page: wide enough for its
// longest line in the 7x13 font.
const noFindingRows, noFindingCols = 128, 560

// BuildNoFindingSC builds the one-page Secondary Capture a calibrated stack
// with no finding gets instead of a SEG and heat maps, so the clinician sees
// that the series was analysed, by which model, and against which limits.
// It sits in the stack's heat-map series with no plane of its own (a page,
// not a slice).
func BuildNoFindingSC(a *Analysis, opts SCOptions) (*Object, error) {
	res := a.Result
	if len(res.Sources) == 0 || res.Sources[0].Header == nil {
		return nil, fmt.Errorf("%w: no source slices", ErrBadSource)
	}
	opts = opts.withDefaults()
	h := res.Sources[0].Header
	created := res.Created
	if created.IsZero() {
		created = time.Now()
	}
	study, _ := res.sourceUIDs()
	sop := res.NoFindingInstanceUID()
	model := nonEmpty(res.Model.Name, "model") + " " + nonEmpty(res.Model.Version, "0")
	lines := NoFindingText(a)
	e := &elems{}
	scHeader(e, res, opts, h, sop, created)
	e.str("InstanceNumber", "1")
	e.str("PatientOrientation")
	e.str("ImageComments", fmt.Sprintf("%s. Analysed by %s: no finding.", Legend, model))
	e.str("DerivationDescription", loString(strings.Join(lines[1:3], "; ")))
	src := &elems{}
	src.str("ReferencedSOPClassUID", getString(h, "SOPClassUID"))
	src.str("ReferencedSOPInstanceUID", getString(h, "SOPInstanceUID"))
	src.seq("PurposeOfReferenceCodeSequence", purposeSourceImage.item())
	e.seq("SourceImageSequence", src)

	img := image.NewRGBA(image.Rect(0, 0, noFindingCols, noFindingRows))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.RGBA{0, 0, 0, 255}), image.Point{}, draw.Src)
	d := &font.Drawer{Dst: img, Face: basicfont.Face7x13}
	for i, l := range lines {
		d.Src = image.NewUniform(color.RGBA{255, 255, 255, 255})
		if i == 0 {
			d.Src = image.NewUniform(color.RGBA{0, 255, 0, 255})
		}
		d.Dot = fixed.P(8, 20+18*i)
		d.DrawString(l)
	}
	drawLegend(img)
	rgb := make([]byte, 0, noFindingRows*noFindingCols*3)
	for i := 0; i < len(img.Pix); i += 4 {
		rgb = append(rgb, img.Pix[i], img.Pix[i+1], img.Pix[i+2])
	}
	rgbPixels(e, noFindingRows, noFindingCols, rgb)
	part10, err := encode(e, SecondaryCaptureImageStorage, sop)
	if err != nil {
		return nil, err
	}
	return &Object{
		SOPClassUID: SecondaryCaptureImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		StudyInstanceUID: study, SeriesInstanceUID: res.SeriesUID(KindSC), Part10: part10,
	}, nil
}

// NoFindingText is what the "no finding" page says, line by line.
func NoFindingText(a *Analysis) []string {
	res := a.Result
	p := a.Params
	scope := fmt.Sprintf("%d slices", len(res.Sources))
	if res.StackLabel != "" {
		scope += ", " + res.StackLabel
	}
	return []string{
		fmt.Sprintf("Analysed by %s %s: no finding", nonEmpty(res.Model.Name, "model"), nonEmpty(res.Model.Version, "0")),
		fmt.Sprintf("%s, result version %d", scope, res.version()),
		fmt.Sprintf("Limits: pixel score > %.4g, peak >= %.4g, volume >= %g mm3", p.PixelThreshold, p.PeakThreshold, p.MinVolumeMM3),
		"No region passed them. This is not a diagnosis.",
	}
}
