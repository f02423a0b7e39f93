package synth

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Modalities Generate can write.
const (
	ModalityMR = "MR"
	ModalityCT = "CT"
)

// ErrBadOptions wraps every invalid Options value.
var ErrBadOptions = errors.New("synth: bad options")

// Options says what series to make. The zero value (plus a seed) gives a
// 24-slice 256x256 unsigned MR series of healthy anatomy.
type Options struct {
	// Seed selects the anatomy jitter, noise, lesions, dates and every UID.
	Seed uint64
	// Slices is the number of axial slices (default 24).
	Slices int
	// Rows and Cols are the image size (default 256 each); any size >= 8 works.
	Rows, Cols int
	// PixelSpacing is the square pixel size in mm (0: fit the head in the smaller side).
	PixelSpacing float64
	// SliceThickness is the slice thickness and spacing in mm (0: cover ~60 % of the brain).
	SliceThickness float64
	// Tilt rotates the slice plane about the patient's left-right axis, in degrees (oblique axial).
	Tilt float64
	// Modality is "MR" (default) or "CT" (Hounsfield-like values with rescale).
	Modality string
	// Signed stores pixels with PixelRepresentation 1.
	Signed bool
	// Monochrome1 stores inverted MR pixel values with PhotometricInterpretation MONOCHROME1.
	Monochrome1 bool
	// Lesions is the number of synthetic lesions to paint (0: a healthy series).
	Lesions int
	// Labels keeps per-slice masks even when Lesions is 0 (all-zero masks).
	Labels bool
	// Polarity is the lesions' contrast: PolarityMixed ("", each lesion
	// hyper- or hypo-intense at random, even odds), PolarityHyper or PolarityHypo.
	Polarity string
	// Source is a NIfTI-1 path; "" uses DefaultVolume and falls back to the
	// phantom when it is absent; SourcePhantom forces the phantom.
	Source string
	// SeriesNumber is the DICOM SeriesNumber (default 1).
	SeriesNumber int
	// RescaleSlope is the CT rescale slope (0: 1).
	RescaleSlope float64
	// RescaleIntercept is the CT rescale intercept (0: -1024 unsigned, 0 signed).
	RescaleIntercept float64
	// Noise scales the acquisition noise (0: 1, negative: none).
	Noise float64
	// NoJitter turns off the seed's anatomy shift, rotation, scale and bias field.
	NoJitter bool
}

// Result is one generated series held in memory.
type Result struct {
	// Options are the options used, with defaults filled in.
	Options Options
	// Source is the volume path, or SourcePhantom.
	Source string
	// Rows and Cols are the image size.
	Rows, Cols int
	// PixelSpacing is the (square) pixel size in mm as written.
	PixelSpacing float64
	// SliceSpacing is SliceThickness = SpacingBetweenSlices in mm.
	SliceSpacing float64
	// Orientation is ImageOrientationPatient (row direction, column direction).
	Orientation [6]float64
	// Normal is the slice normal (row x column); positions step along it.
	Normal [3]float64
	// Patient and study identity (synthetic).
	PatientName, PatientID, AccessionNumber, StudyDate, StudyTime string
	// UIDs shared by all slices.
	StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID string
	// BitsStored is 12 for MR, 16 for CT.
	BitsStored int
	// Slope and Intercept map stored values to modality values (MR: 1 and 0).
	Slope, Intercept float64
	// WindowCenter and WindowWidth are the written VOI window.
	WindowCenter, WindowWidth float64
	// Lesions are the painted lesions.
	Lesions []Lesion
	// Slices are in InstanceNumber order, stepping along Normal.
	Slices []Slice
}

// Slice is one generated image.
type Slice struct {
	// InstanceNumber is 1-based.
	InstanceNumber int
	// SOPInstanceUID of the slice.
	SOPInstanceUID string
	// Position is ImagePositionPatient (centre of the first pixel), mm.
	Position [3]float64
	// SliceLocation is the signed distance along Normal, mm.
	SliceLocation float64
	// Stored holds the stored pixel values row by row (what PixelData holds).
	Stored []int32
	// Mask holds 1 for lesion pixels row by row; nil when no labels were asked for.
	Mask []uint8
	// LesionPixels counts the mask's 1s.
	LesionPixels int
	// CentroidRow and CentroidCol are the mask's centroid in pixels (-1 when empty).
	CentroidRow, CentroidCol float64
}

// Lesion is one painted ellipsoid, in the slice frame.
type Lesion struct {
	// Center is the centre in patient (LPS) mm.
	Center [3]float64
	// Radii are the semi-axes in mm along the rotated row, column and normal directions.
	Radii [3]float64
	// Angle is the in-plane rotation of the first axis from the row direction, degrees.
	Angle float64
	// Amplitude is the intensity change at the centre (MR units or HU):
	// positive for a hyper-intense lesion, negative for a hypo-intense one.
	Amplitude float64
	// plane-frame centre (u along row dir, v along column dir, w along normal)
	u, v, w float64
}

// Generate makes a series in memory.
func Generate(opts Options) (*Result, error) {
	o, err := normalise(opts)
	if err != nil {
		return nil, err
	}
	a, err := loadAnatomy(o.Source)
	if err != nil {
		return nil, err
	}
	g := newGenerator(o, a)
	g.placeLesions()
	g.render()
	g.window()
	return g.res, nil
}

func normalise(o Options) (Options, error) {
	if o.Slices == 0 {
		o.Slices = 24
	}
	if o.Rows == 0 {
		o.Rows = 256
	}
	if o.Cols == 0 {
		o.Cols = 256
	}
	if o.Modality == "" {
		o.Modality = ModalityMR
	}
	o.Modality = strings.ToUpper(o.Modality)
	if o.SeriesNumber == 0 {
		o.SeriesNumber = 1
	}
	var bad []string
	if o.Slices < 1 || o.Slices > 2000 {
		bad = append(bad, fmt.Sprintf("slices %d not in 1..2000", o.Slices))
	}
	if o.Rows < 8 || o.Cols < 8 || o.Rows > 4096 || o.Cols > 4096 {
		bad = append(bad, fmt.Sprintf("size %dx%d not in 8..4096", o.Rows, o.Cols))
	}
	if o.Modality != ModalityMR && o.Modality != ModalityCT {
		bad = append(bad, fmt.Sprintf("modality %q is not MR or CT", o.Modality))
	}
	if o.Monochrome1 && o.Modality != ModalityMR {
		bad = append(bad, "monochrome1 is supported for MR only")
	}
	if o.PixelSpacing < 0 || o.SliceThickness < 0 || math.IsNaN(o.PixelSpacing) || math.IsNaN(o.SliceThickness) {
		bad = append(bad, "spacings must be positive")
	}
	if math.Abs(o.Tilt) > 45 || math.IsNaN(o.Tilt) {
		bad = append(bad, "tilt must be within +-45 degrees")
	}
	if o.Lesions < 0 || o.Lesions > 20 {
		bad = append(bad, fmt.Sprintf("lesions %d not in 0..20", o.Lesions))
	}
	switch o.Polarity {
	case PolarityMixed, PolarityHyper, PolarityHypo:
	default:
		bad = append(bad, fmt.Sprintf("polarity %q is not %q, %q or %q", o.Polarity, PolarityMixed, PolarityHyper, PolarityHypo))
	}
	if o.SeriesNumber < 0 {
		bad = append(bad, "series number must be positive")
	}
	if o.Modality == ModalityCT {
		if o.RescaleSlope == 0 {
			o.RescaleSlope = 1
		}
		if o.RescaleIntercept == 0 && !o.Signed {
			o.RescaleIntercept = -1024
		}
		if o.RescaleSlope < 0 || math.IsNaN(o.RescaleSlope) {
			bad = append(bad, "rescale slope must be positive")
		}
	}
	if len(bad) > 0 {
		return o, fmt.Errorf("%w: %s", ErrBadOptions, strings.Join(bad, "; "))
	}
	return o, nil
}

type generator struct {
	o   Options
	a   *anatomy
	res *Result
	// plane frame: centre C, row dir R, column dir Cd, normal N (all LPS)
	center       [3]float64
	rowDir, colD [3]float64
	normal       [3]float64
	zs           []float64 // slice offsets along normal from centre
	// patient -> source LPS affine, and patient -> voxel affine
	toSrc, toVox [3][4]float64
	gain         float64
	bias         [3]float64 // relative gain change per mm, patient frame
}

func newGenerator(o Options, a *anatomy) *generator {
	res := &Result{Options: o, Source: a.name, Rows: o.Rows, Cols: o.Cols}
	g := &generator{o: o, a: a, res: res}
	rng := rand.New(rand.NewPCG(seedFor(o.Seed, "geometry")))
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }

	ps := o.PixelSpacing
	if ps == 0 {
		fov := 2 * (math.Max(a.half[0], a.half[1]) + 20)
		ps = fov / float64(min(o.Rows, o.Cols))
	}
	ps = roundDS(ps, 4)
	t := o.SliceThickness
	if t == 0 {
		t = math.Round(2*0.62*2*a.half[2]/float64(o.Slices)) / 2
		t = math.Min(math.Max(t, 0.5), 6)
	}
	t = roundDS(t, 3)
	res.PixelSpacing, res.SliceSpacing = ps, t

	tilt := o.Tilt * math.Pi / 180
	g.rowDir = [3]float64{1, 0, 0}
	g.colD = [3]float64{0, math.Cos(tilt), -math.Sin(tilt)}
	g.normal = cross(g.rowDir, g.colD)
	for i := 0; i < 3; i++ {
		res.Orientation[i] = roundDS(g.rowDir[i], 8)
		res.Orientation[3+i] = roundDS(g.colD[i], 8)
	}
	res.Normal = g.normal
	// The table puts the slab centre a little off isocentre.
	g.center = [3]float64{math.Round(u(-5, 5)*10) / 10, math.Round(u(-5, 5)*10) / 10, math.Round(u(-30, 30)*10) / 10}

	// Patient -> source: the slab centre lands slightly above the brain centre,
	// then the seed's small rotation, scale and shift model a different head.
	rot, scale, shift := identity3(), [3]float64{1, 1, 1}, [3]float64{}
	g.gain = 1
	if !o.NoJitter {
		yaw, pitch, roll := u(-4, 4)*math.Pi/180, u(-4, 4)*math.Pi/180, u(-2, 2)*math.Pi/180
		rot = mul3(rotZ(yaw), mul3(rotX(pitch), rotY(roll)))
		s := u(0.95, 1.05)
		for d := 0; d < 3; d++ {
			scale[d] = s * u(0.98, 1.02)
			shift[d] = u(-3, 3)
		}
		g.gain = u(0.9, 1.1)
		for d := 0; d < 3; d++ {
			g.bias[d] = u(-0.0006, 0.0006)
		}
	} else {
		// keep the stream aligned so other draws do not depend on NoJitter
		for i := 0; i < 14; i++ {
			rng.Float64()
		}
	}
	target := a.center
	target[2] += 0.1 * a.half[2]
	// s = target + rot*diag(scale)*(p - center - shift)
	var m [3][3]float64
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			m[r][c] = rot[r][c] / scale[c]
		}
	}
	for r := 0; r < 3; r++ {
		off := target[r]
		for c := 0; c < 3; c++ {
			g.toSrc[r][c] = m[r][c]
			off -= m[r][c] * (g.center[c] + shift[c])
		}
		g.toSrc[r][3] = off
	}
	g.toVox = compose(a.lpsToVox, g.toSrc)

	// Identity: synthetic, derived from the seed.
	res.PatientName = fmt.Sprintf("SYNTH^SUBJECT%d", o.Seed)
	res.PatientID = fmt.Sprintf("SYN%d", o.Seed)
	res.AccessionNumber = fmt.Sprintf("A%d", o.Seed%1_000_000_000)
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(o.Seed%700))
	res.StudyDate = day.Format("20060102")
	res.StudyTime = fmt.Sprintf("%02d%02d%02d", 8+o.Seed%10, o.Seed%60, (o.Seed/60)%60)
	res.StudyInstanceUID = deriveUID(o.Seed, "study")
	res.SeriesInstanceUID = deriveUID(o.Seed, "series", strconv.Itoa(o.SeriesNumber), o.Modality)
	res.FrameOfReferenceUID = deriveUID(o.Seed, "frame-of-reference")

	if o.Modality == ModalityMR {
		res.BitsStored, res.Slope, res.Intercept = 12, 1, 0
	} else {
		res.BitsStored, res.Slope, res.Intercept = 16, o.RescaleSlope, o.RescaleIntercept
	}

	n := o.Slices
	g.zs = make([]float64, n)
	res.Slices = make([]Slice, n)
	for k := 0; k < n; k++ {
		z := (float64(k) - float64(n-1)/2) * t
		g.zs[k] = z
		var pos [3]float64
		for d := 0; d < 3; d++ {
			pos[d] = g.center[d] + z*g.normal[d] -
				float64(o.Cols-1)/2*ps*g.rowDir[d] - float64(o.Rows-1)/2*ps*g.colD[d]
			pos[d] = roundDS(pos[d], 4)
		}
		res.Slices[k] = Slice{
			InstanceNumber: k + 1,
			SOPInstanceUID: deriveUID(o.Seed, "instance", strconv.Itoa(o.SeriesNumber), o.Modality, strconv.Itoa(k+1)),
			Position:       pos,
			SliceLocation:  roundDS(dot(pos, g.normal), 4),
			CentroidRow:    -1,
			CentroidCol:    -1,
		}
	}
	return g
}

// linear applies only the 3x3 part of an affine (a direction, not a point).
func linear(m [3][4]float64, v [3]float64) [3]float64 {
	return [3]float64{
		m[0][0]*v[0] + m[0][1]*v[1] + m[0][2]*v[2],
		m[1][0]*v[0] + m[1][1]*v[1] + m[1][2]*v[2],
		m[2][0]*v[0] + m[2][1]*v[1] + m[2][2]*v[2],
	}
}

// point returns the patient position of the plane-frame point (u, v, w).
func (g *generator) point(u, v, w float64) [3]float64 {
	var p [3]float64
	for d := 0; d < 3; d++ {
		p[d] = g.center[d] + u*g.rowDir[d] + v*g.colD[d] + w*g.normal[d]
	}
	return p
}

// anatomyAt returns the T1 value at a patient position.
func (g *generator) anatomyAt(p [3]float64) float64 {
	q := apply(g.toVox, p)
	return float64(g.a.sample(q[0], q[1], q[2]))
}

// placeLesions picks ellipsoids of decreasing size centred in white matter,
// inside the slab, not overlapping each other.
func (g *generator) placeLesions() {
	o := g.o
	if o.Lesions == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(seedFor(o.Seed, "lesions")))
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	sizes := []float64{9, 6, 4, 7.5, 5, 3.5}
	t := g.res.SliceSpacing
	zlo, zhi := g.zs[0], g.zs[len(g.zs)-1]
	minR := 2.5 * g.res.PixelSpacing // at least a few pixels across
	for i := 0; i < o.Lesions; i++ {
		r := math.Max(sizes[i%len(sizes)]*u(0.85, 1.15), minR)
		radii := [3]float64{roundDS(r, 3), roundDS(math.Max(r*u(0.6, 1.0), minR), 3), roundDS(math.Max(r*u(0.7, 1.1), 1.2*t), 3)}
		var amp float64
		if o.Modality == ModalityMR {
			amp = u(mrLesionMin, mrLesionMax)
		} else {
			amp = u(ctLesionMin, ctLesionMax)
		}
		// Drawn for every lesion whatever the polarity, so the choice does
		// not move the lesions' other draws.
		hypo := rng.Float64() < 0.5
		if o.Polarity == PolarityHypo || (o.Polarity == PolarityMixed && hypo) {
			amp = -amp
		}
		angle := u(0, 180)
		var best Lesion
		bestScore := math.Inf(-1)
		for try := 0; try < 400; try++ {
			w := 0.0
			if span := (zhi - zlo) - 2*radii[2]; span > 0 {
				w = zlo + radii[2] + span*rng.Float64()
			} else {
				w = (zlo + zhi) / 2 * u(0.9, 1.1)
			}
			uu := u(-0.45, 0.45) * g.a.half[0]
			vv := u(-0.45, 0.45) * g.a.half[1]
			p := g.point(uu, vv, w)
			val := g.anatomyAt(p)
			overlap := false
			for _, l := range g.res.Lesions {
				dist := math.Sqrt(sq(l.u-uu) + sq(l.v-vv) + sq(l.w-w))
				if dist < maxOf(l.Radii)+maxOf(radii)+3 {
					overlap = true
				}
			}
			// Prefer white matter, and any free spot over an overlapping one;
			// on a crowded small image the lesions may have to overlap.
			score := val
			if overlap {
				score = val - 1000
			}
			if score > bestScore {
				bestScore = score
				best = Lesion{Center: p, Radii: radii, Angle: angle, Amplitude: amp, u: uu, v: vv, w: w}
			}
			if !overlap && val >= 0.85*t1White {
				break
			}
		}
		for d := 0; d < 3; d++ {
			best.Center[d] = roundDS(best.Center[d], 3)
		}
		g.res.Lesions = append(g.res.Lesions, best)
	}
}

func maxOf(r [3]float64) float64 { return math.Max(r[0], math.Max(r[1], r[2])) }

// Lesion polarities (Options.Polarity).
const (
	// PolarityMixed makes each lesion hyper- or hypo-intense at random.
	PolarityMixed = ""
	// PolarityHyper makes every lesion brighter than the tissue it replaces.
	PolarityHyper = "hyper"
	// PolarityHypo makes every lesion darker than the tissue it replaces.
	PolarityHypo = "hypo"
)

// Lesion contrast at the centre, drawn uniformly: MR in T1 units (x mrPerT1
// = stored units; white matter is t1White), CT in HU. The rim gets 70 % of it.
// MR's lower bound is below the 30 of the first release (harder, never
// easier); a hypo-intense MR lesion scales the tissue by 1 - |amp|/t1White
// (the same change as a hyper one in white matter, never below zero).
const (
	mrLesionMin, mrLesionMax = 25.0, 55.0
	ctLesionMin, ctLesionMax = 18.0, 35.0
)

// Intensity model constants: MR signal per T1 unit, and the values of the
// non-brain tissue classes around the brain (CSF, skull, scalp, air).
const (
	mrPerT1            = 8.0
	mrCSF, mrSkull     = 120.0, 30.0
	mrScalp, mrAir     = 650.0, 0.0
	ctCSF, ctSkull     = 8.0, 1100.0
	ctScalp, ctAir     = 25.0, -1000.0
	mrMax              = 4095
	mrNoise, ctNoise   = 10.0, 5.0
	csfMM              = 2.5
	skullMM, scalpMM   = 8.5, 14.0
	brainLo, brainSpan = 10.0, 40.0
)

func (g *generator) render() {
	n := len(g.res.Slices)
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				g.renderSlice(k)
			}
		}()
	}
	for k := 0; k < n; k++ {
		next <- k
	}
	close(next)
	wg.Wait()
}

func (g *generator) renderSlice(k int) {
	o, res := g.o, g.res
	sl := &res.Slices[k]
	rows, cols := o.Rows, o.Cols
	ps, t := res.PixelSpacing, res.SliceSpacing
	sl.Stored = make([]int32, rows*cols)
	labels := o.Lesions > 0 || o.Labels
	if labels {
		sl.Mask = make([]uint8, rows*cols)
	}
	rng := rand.New(rand.NewPCG(seedFor(o.Seed, "noise", strconv.Itoa(k))))
	noise := 1.0
	if o.Noise < 0 {
		noise = 0
	} else if o.Noise > 0 {
		noise = o.Noise
	}
	offsets := []float64{0}
	if t >= 1.5 {
		offsets = []float64{-t / 3, 0, t / 3}
	}
	head := g.a.head
	// Lesions that reach this slice, in plane coordinates.
	w := g.zs[k]
	type near struct {
		l          *Lesion
		cos, sin   float64
		ia, ib, ic float64
	}
	var lesions []near
	for i := range res.Lesions {
		l := &res.Lesions[i]
		if math.Abs(w-l.w) < l.Radii[2] {
			th := l.Angle * math.Pi / 180
			lesions = append(lesions, near{l, math.Cos(th), math.Sin(th), 1 / l.Radii[0], 1 / l.Radii[1], 1 / l.Radii[2]})
		}
	}
	var sumR, sumC float64
	// Voxel and source coordinates are affine in (row, col): step them.
	p00 := g.point(-float64(cols-1)/2*ps, -float64(rows-1)/2*ps, w)
	var dRow, dCol [3]float64
	for d := 0; d < 3; d++ {
		dRow[d], dCol[d] = ps*g.colD[d], ps*g.rowDir[d]
	}
	vox00 := make([][3]float64, len(offsets))
	for i, dz := range offsets {
		vox00[i] = apply(g.toVox, [3]float64{p00[0] + dz*g.normal[0], p00[1] + dz*g.normal[1], p00[2] + dz*g.normal[2]})
	}
	vRow, vCol := linear(g.toVox, dRow), linear(g.toVox, dCol)
	src00 := apply(g.toSrc, p00)
	sRow, sCol := linear(g.toSrc, dRow), linear(g.toSrc, dCol)
	for r := 0; r < rows; r++ {
		vv := (float64(r) - float64(rows-1)/2) * ps
		fr := float64(r)
		for c := 0; c < cols; c++ {
			uu := (float64(c) - float64(cols-1)/2) * ps
			fc := float64(c)
			var s, p [3]float64
			for d := 0; d < 3; d++ {
				s[d] = src00[d] + fr*sRow[d] + fc*sCol[d]
				p[d] = p00[d] + fr*dRow[d] + fc*dCol[d]
			}
			dmm := head.dist(s)
			v := 0.0
			if dmm < csfMM {
				for i := range offsets {
					x := vox00[i]
					v += float64(g.a.sample(x[0]+fr*vRow[0]+fc*vCol[0], x[1]+fr*vRow[1]+fc*vCol[1], x[2]+fr*vRow[2]+fc*vCol[2]))
				}
				v /= float64(len(offsets))
			}
			wb := (v - brainLo) / brainSpan
			if wb < 0 {
				wb = 0
			} else if wb > 1 {
				wb = 1
			}
			var val float64
			if o.Modality == ModalityMR {
				bg := mrAir
				switch {
				case dmm < csfMM:
					bg = mrCSF
				case dmm < skullMM:
					bg = mrSkull
				case dmm < scalpMM:
					bg = mrScalp
				}
				bf := g.gain * (1 + g.bias[0]*p[0] + g.bias[1]*p[1] + g.bias[2]*p[2])
				val = (wb*mrPerT1*v + (1-wb)*bg) * bf
			} else {
				bg := ctAir
				switch {
				case dmm < csfMM:
					bg = ctCSF
				case dmm < skullMM:
					bg = ctSkull
				case dmm < scalpMM:
					bg = ctScalp
				}
				val = wb*(55-(v-60)*0.5) + (1-wb)*bg
			}
			// Lesions: only where there is brain tissue, so the mask is exactly
			// the set of changed pixels.
			if wb >= 0.5 {
				for _, ln := range lesions {
					du, dv, dw := uu-ln.l.u, vv-ln.l.v, w-ln.l.w
					a := (du*ln.cos + dv*ln.sin) * ln.ia
					b := (-du*ln.sin + dv*ln.cos) * ln.ib
					cz := dw * ln.ic
					q := a*a + b*b + cz*cz
					if q <= 1 {
						prof := 0.7 + 0.3*(1-q)
						switch {
						case o.Modality != ModalityMR:
							val += ln.l.Amplitude * prof
						case ln.l.Amplitude >= 0:
							val += mrPerT1 * ln.l.Amplitude * prof * g.gain
						default:
							// Darken in proportion: in white matter the same
							// change as a hyper-intense lesion, elsewhere less,
							// and the signal stays positive.
							val *= 1 + ln.l.Amplitude*prof/t1White
						}
						if labels {
							sl.Mask[r*cols+c] = 1
						}
						sl.LesionPixels++
						sumR += float64(r)
						sumC += float64(c)
						break
					}
				}
			}
			if o.Modality == ModalityMR {
				if noise > 0 {
					n1, n2 := rng.NormFloat64()*mrNoise*noise, rng.NormFloat64()*mrNoise*noise
					val = math.Sqrt(sq(val+n1) + n2*n2)
				}
				st := math.Min(math.Max(math.Round(val), 0), mrMax)
				if o.Monochrome1 {
					st = mrMax - st
				}
				sl.Stored[r*cols+c] = int32(st)
			} else {
				if noise > 0 {
					val += rng.NormFloat64() * ctNoise * noise
				}
				st := math.Round((val - res.Intercept) / res.Slope)
				lo, hi := 0.0, 65535.0
				if o.Signed {
					lo, hi = -32768, 32767
				}
				sl.Stored[r*cols+c] = int32(math.Min(math.Max(st, lo), hi))
			}
		}
	}
	if sl.LesionPixels > 0 {
		sl.CentroidRow = sumR / float64(sl.LesionPixels)
		sl.CentroidCol = sumC / float64(sl.LesionPixels)
	}
}

// window sets a VOI window: a brain window for CT, the 99.5th percentile of
// the tissue signal for MR.
func (g *generator) window() {
	res := g.res
	if g.o.Modality == ModalityCT {
		res.WindowCenter, res.WindowWidth = 40, 80
		return
	}
	var hist [mrMax + 1]int
	total := 0
	for _, sl := range res.Slices {
		for _, s := range sl.Stored {
			if g.o.Monochrome1 {
				s = mrMax - s
			}
			if s > 50 {
				hist[s]++
				total++
			}
		}
	}
	hi := mrMax
	if total > 0 {
		acc := 0
		for v := range hist {
			acc += hist[v]
			if float64(acc) >= 0.995*float64(total) {
				hi = v
				break
			}
		}
	}
	res.WindowCenter, res.WindowWidth = math.Round(float64(hi)/2), float64(max(hi, 2))
	if g.o.Monochrome1 {
		res.WindowCenter = mrMax - res.WindowCenter
	}
}

// LargestLesionSlice returns the index of the slice with the most lesion
// pixels, or -1 when there are none.
func (r *Result) LargestLesionSlice() int {
	best, idx := 0, -1
	for i, s := range r.Slices {
		if s.LesionPixels > best {
			best, idx = s.LesionPixels, i
		}
	}
	return idx
}

func identity3() [3][3]float64 { return [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}} }

func rotZ(a float64) [3][3]float64 {
	c, s := math.Cos(a), math.Sin(a)
	return [3][3]float64{{c, -s, 0}, {s, c, 0}, {0, 0, 1}}
}

func rotX(a float64) [3][3]float64 {
	c, s := math.Cos(a), math.Sin(a)
	return [3][3]float64{{1, 0, 0}, {0, c, -s}, {0, s, c}}
}

func rotY(a float64) [3][3]float64 {
	c, s := math.Cos(a), math.Sin(a)
	return [3][3]float64{{c, 0, s}, {0, 1, 0}, {-s, 0, c}}
}

func mul3(a, b [3][3]float64) [3][3]float64 {
	var m [3][3]float64
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			for k := 0; k < 3; k++ {
				m[r][c] += a[r][k] * b[k][c]
			}
		}
	}
	return m
}

// compose returns the affine a(b(x)).
func compose(a, b [3][4]float64) [3][4]float64 {
	var m [3][4]float64
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			for k := 0; k < 3; k++ {
				m[r][c] += a[r][k] * b[k][c]
			}
		}
		m[r][3] += a[r][3]
	}
	return m
}

func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

// roundDS rounds to the given decimals and normalises -0, so the value in
// Result is exactly what the decimal string in the file says.
func roundDS(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	r := math.Round(v*p) / p
	if r == 0 {
		return 0
	}
	f, _ := strconv.ParseFloat(strconv.FormatFloat(r, 'f', -1, 64), 64)
	return f
}
