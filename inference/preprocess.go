package inference

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/pixel"
	"anomalynode/internal/dcm"
)

// ImageNet normalisation constants (METHOD.md 1).
var (
	imageNetMean = [3]float32{0.485, 0.456, 0.406}
	imageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// Defaults of the method (METHOD.md 1).
const (
	DefaultResolution = 448
	DefaultPatchSize  = 14
)

// DefaultPreprocessing is the VOI policy fit records when none is asked for:
// the robust per-slice scale. A streaming node sees one slice at a time, so
// the policy can use nothing but the slice; of the two such policies, the
// robust scale keeps a lesion brighter than white matter apart from it, where
// the percentile window saturates both to 1 (docs/inference.md, "The MR VOI
// default", has the measurements).
func DefaultPreprocessing() PreprocessSpec { return PreprocessSpec{VOI: VOIRobust} }

// Preprocessor turns a decoded slice into the model's input tensor.
type Preprocessor struct {
	// Resolution is the short edge after resizing (448).
	Resolution int
	// PatchSize is the ViT patch size; the resized image is cropped to a multiple of it.
	PatchSize int
	// VOI maps modality values to [0,1].
	VOI PreprocessSpec
}

// NewPreprocessor returns the preprocessor a model was fitted with.
func NewPreprocessor(meta ModelMeta) *Preprocessor {
	p := &Preprocessor{Resolution: meta.Resolution, PatchSize: meta.PatchSize, VOI: meta.Preprocessing}
	if p.Resolution == 0 {
		p.Resolution = DefaultResolution
	}
	if p.PatchSize == 0 {
		p.PatchSize = DefaultPatchSize
	}
	return p
}

// Geometry records how a source slice maps to the model input and the patch
// grid, so maps can be mapped back to source pixels exactly.
type Geometry struct {
	// SrcRows and SrcCols are the source slice size.
	SrcRows, SrcCols int
	// ResizedRows and ResizedCols are the size after resizing (short edge =
	// Resolution), before the crop.
	ResizedRows, ResizedCols int
	// Rows and Cols are the model input size: the resized image cropped at the
	// bottom and right to a multiple of Patch.
	Rows, Cols int
	// Patch is the patch size in resized pixels.
	Patch int
	// GridRows and GridCols are the patch grid (Rows/Patch, Cols/Patch).
	GridRows, GridCols int
}

// Patches is the number of patch tokens.
func (g Geometry) Patches() int { return g.GridRows * g.GridCols }

// ScaleY is the number of source rows per resized row.
func (g Geometry) ScaleY() float64 { return float64(g.SrcRows) / float64(g.ResizedRows) }

// ScaleX is the number of source columns per resized column.
func (g Geometry) ScaleX() float64 { return float64(g.SrcCols) / float64(g.ResizedCols) }

// Geometry computes the resize and crop of a rows x cols slice. The long edge
// is truncated (int(res * long / short)), as the Hugging Face DINOv2 processor
// and torchvision do.
func (p *Preprocessor) Geometry(rows, cols int) (Geometry, error) {
	if rows < 1 || cols < 1 {
		return Geometry{}, fmt.Errorf("inference: preprocess: empty %dx%d slice", rows, cols)
	}
	g := Geometry{SrcRows: rows, SrcCols: cols, Patch: p.PatchSize}
	if rows <= cols {
		g.ResizedRows, g.ResizedCols = p.Resolution, p.Resolution*cols/rows
	} else {
		g.ResizedRows, g.ResizedCols = p.Resolution*rows/cols, p.Resolution
	}
	g.GridRows, g.GridCols = g.ResizedRows/p.PatchSize, g.ResizedCols/p.PatchSize
	g.Rows, g.Cols = g.GridRows*p.PatchSize, g.GridCols*p.PatchSize
	if g.GridRows < 1 || g.GridCols < 1 {
		return Geometry{}, fmt.Errorf("inference: preprocess: resolution %d smaller than patch %d", p.Resolution, p.PatchSize)
	}
	return g, nil
}

// Prepared is a preprocessed slice.
type Prepared struct {
	// Geometry maps the tensor back to the source.
	Geometry Geometry
	// Grey is the source slice after the modality LUT, VOI and MONOCHROME1
	// inversion: [SrcRows*SrcCols] in [0,1].
	Grey []float32
	// Tensor is the model input [3, Rows, Cols], ImageNet-normalised.
	Tensor []float32
	// VOI is the policy actually applied (header falls back to percentile when
	// the slice has no window).
	VOI string
}

// Preprocess applies METHOD.md 1 to a slice: modality LUT, VOI, MONOCHROME1,
// bicubic antialiased resize, crop, grey to RGB, ImageNet normalisation.
func (p *Preprocessor) Preprocess(s *pixel.Slice) (*Prepared, error) {
	g, err := p.Geometry(s.Rows, s.Cols)
	if err != nil {
		return nil, err
	}
	if len(s.Stored) != s.Rows*s.Cols {
		return nil, fmt.Errorf("inference: preprocess: %w: %d values for %dx%d", pixel.ErrBadPixelData, len(s.Stored), s.Rows, s.Cols)
	}
	pr := &Prepared{Geometry: g, Grey: make([]float32, len(s.Stored)), Tensor: make([]float32, 3*g.Rows*g.Cols)}
	pr.VOI, err = p.Grey(s, pr.Grey)
	if err != nil {
		return nil, err
	}
	resized := make([]float32, g.Rows*g.Cols)
	ResizeBicubic(pr.Grey, s.Rows, s.Cols, g.ResizedRows, g.ResizedCols, resized, g.Rows, g.Cols)
	Normalize(resized, pr.Tensor)
	return pr, nil
}

// Normalize writes the grey image as three ImageNet-normalised channels.
func Normalize(grey, dst []float32) {
	n := len(grey)
	for c := 0; c < 3; c++ {
		m, inv := imageNetMean[c], 1/imageNetStd[c]
		out := dst[c*n : (c+1)*n]
		for i, v := range grey {
			out[i] = (v - m) * inv
		}
	}
}

// Grey maps the slice's stored values to [0,1] in dst through the modality LUT,
// the VOI policy and, for MONOCHROME1, an inversion. It returns the policy
// applied. The mapping is computed once per stored value (a LUT), since stored
// values span at most 16 bits.
func (p *Preprocessor) Grey(s *pixel.Slice, dst []float32) (string, error) {
	lo, hi := s.MinStored, s.MaxStored
	if hi < lo || int64(hi)-int64(lo) > 1<<16 {
		// Unknown range (a hand-built pixel.Slice): use the data's.
		lo, hi = minMax(s.Stored)
	}
	lut := make([]float32, int(hi-lo)+1)
	policy := p.VOI.VOI
	var f func(x float64) float64
	switch policy {
	case VOIModelWindow:
		f = windowLinear(p.VOI.WindowCenter, p.VOI.WindowWidth)
	case VOIHeader:
		if s.HasWindow {
			f = windowFunc(voiFunction(s), s.WindowCenter, s.WindowWidth)
			break
		}
		policy = VOIPercentile + " (no header window)"
		fallthrough
	case VOIPercentile:
		plo, phi := p.VOI.PercentileLo, p.VOI.PercentileHi
		if plo == 0 && phi == 0 {
			plo, phi = 0.5, 99.5
		}
		a, b := percentiles(s, lo, hi, plo, phi)
		if b > a {
			f = func(x float64) float64 { return (x - a) / (b - a) }
		} else {
			f = func(float64) float64 { return 0 }
		}
	case VOIRobust:
		// robustScale already works on displayed brightness.
		f = robustScale(s, lo, hi)
	default:
		return "", fmt.Errorf("inference: preprocess: unknown VOI policy %q", policy)
	}
	invert := s.Photometric == "MONOCHROME1" && policy != VOIRobust
	for i := range lut {
		v := f(float64(int32(i)+lo)*s.Slope + s.Intercept)
		v = min(max(v, 0), 1)
		if invert {
			v = 1 - v
		}
		lut[i] = float32(v)
	}
	for i, v := range s.Stored {
		dst[i] = lut[v-lo]
	}
	return policy, nil
}

// RobustHeadroom is how far above the reference level (the median of a
// slice's above-mean pixels) the robust VOI keeps values apart: x / ref is
// clipped to [0, RobustHeadroom], then divided by it. A lesion brighter than
// the brightest normal tissue stays brighter, which a percentile window that
// saturates at normal white matter cannot keep.
const RobustHeadroom = 3

// robustScale returns the robust VOI of a slice as a function of the modality
// value: displayed brightness y (the modality value; for MONOCHROME1 mirrored
// within the modality range of the stored bits, so that bright is bright)
// divided by RobustHeadroom times the median of the slice's pixels whose y is
// above the slice's mean y. The level comes from the slice alone, so a
// streaming node needs no statistics of the rest of the volume; the median of
// the above-mean pixels is the typical tissue signal (the mean splits tissue
// from air/background), little moved by a lesion or by the background's area.
func robustScale(s *pixel.Slice, lo, hi int32) func(float64) float64 {
	aff := func(v int32) float64 { return float64(v)*s.Slope + s.Intercept }
	disp := aff
	if s.Photometric == "MONOCHROME1" {
		top, bottom := aff(hi), aff(lo)
		disp = func(v int32) float64 { return top + bottom - aff(v) }
	}
	hist := make([]int64, int(hi-lo)+1)
	for _, v := range s.Stored {
		hist[v-lo]++
	}
	var sum float64
	for i, c := range hist {
		if c > 0 {
			sum += float64(c) * disp(int32(i)+lo)
		}
	}
	n := len(s.Stored)
	if n == 0 {
		return func(float64) float64 { return 0 }
	}
	mean := sum / float64(n)
	// Above-mean values in increasing order of y: y is monotone in the stored
	// value, increasing or decreasing.
	type bin struct {
		y float64
		c int64
	}
	var above []bin
	var total int64
	for i, c := range hist {
		if y := disp(int32(i) + lo); c > 0 && y > mean {
			above = append(above, bin{y, c})
			total += c
		}
	}
	if len(above) > 1 && above[0].y > above[len(above)-1].y {
		slices.Reverse(above)
	}
	ref := 0.0
	half, acc := (total+1)/2, int64(0) // lower median: an existing value
	for _, b := range above {
		if acc += b.c; acc >= half {
			ref = b.y
			break
		}
	}
	if !(ref > 0) {
		return func(float64) float64 { return 0 }
	}
	scale := 1 / (RobustHeadroom * ref)
	if s.Photometric == "MONOCHROME1" {
		top, bottom := aff(hi), aff(lo)
		return func(x float64) float64 { return (top + bottom - x) * scale }
	}
	return func(x float64) float64 { return x * scale }
}

func minMax(x []int32) (lo, hi int32) {
	if len(x) == 0 {
		return 0, 0
	}
	lo, hi = x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func voiFunction(s *pixel.Slice) string {
	if s.Header == nil {
		return "LINEAR"
	}
	f := strings.ToUpper(dcm.String(s.Header, tag.VOILUTFunction))
	if f == "" {
		return "LINEAR"
	}
	return f
}

// windowFunc is the VOI LUT function of PS3.3 C.11.2.1.2 mapped to [0,1].
func windowFunc(fn string, c, w float64) func(float64) float64 {
	switch fn {
	case "LINEAR_EXACT":
		return func(x float64) float64 {
			switch {
			case x <= c-w/2:
				return 0
			case x > c+w/2:
				return 1
			}
			return (x-c)/w + 0.5
		}
	case "SIGMOID":
		return func(x float64) float64 { return 1 / (1 + math.Exp(-4*(x-c)/w)) }
	}
	return windowLinear(c, w)
}

// windowLinear is the DICOM LINEAR window (PS3.3 C.11.2.1.2.1), output [0,1].
func windowLinear(c, w float64) func(float64) float64 {
	return func(x float64) float64 {
		switch {
		case x <= c-0.5-(w-1)/2:
			return 0
		case x > c-0.5+(w-1)/2:
			return 1
		}
		return (x-(c-0.5))/(w-1) + 0.5
	}
}

// percentiles returns the plo and phi percentiles of the slice's modality
// values with NumPy's default (linear) interpolation, from a histogram of the
// stored values: the modality LUT is affine, so it commutes with the order
// statistics (reversed when the slope is negative).
func percentiles(s *pixel.Slice, lo, hi int32, plo, phi float64) (float64, float64) {
	n := len(s.Stored)
	if n == 0 {
		return 0, 0
	}
	hist := make([]int32, int(hi-lo)+1)
	for _, v := range s.Stored {
		hist[v-lo]++
	}
	// kth returns the k-th smallest stored value (0-based).
	kth := func(k int) float64 {
		acc := 0
		for i, c := range hist {
			acc += int(c)
			if acc > k {
				return float64(int32(i) + lo)
			}
		}
		return float64(hi)
	}
	at := func(p float64) float64 {
		pos := p / 100 * float64(n-1)
		k := int(math.Floor(pos))
		frac := pos - float64(k)
		v := kth(k)
		if frac > 0 && k+1 < n {
			v += frac * (kth(k+1) - v)
		}
		return v
	}
	aff := func(v float64) float64 { return v*s.Slope + s.Intercept }
	if s.Slope >= 0 {
		return aff(at(plo)), aff(at(phi))
	}
	return aff(at(100 - plo)), aff(at(100 - phi))
}

// bicubic is PIL's bicubic kernel (a = -0.5).
func bicubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// resampleCoeffs are the taps of a 1-D resampling: output i reads
// in[start[i] : start[i]+count[i]] with weights w[i*taps : i*taps+count[i]].
type resampleCoeffs struct {
	start, count []int
	w            []float32
	taps         int
}

// precomputeCoeffs follows PIL's precompute_coeffs: the kernel's support grows
// with the downscale factor, which is what makes the resize antialiased.
func precomputeCoeffs(inSize, outSize, used int) resampleCoeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := 2 * filterscale
	taps := int(math.Ceil(support))*2 + 1
	c := resampleCoeffs{start: make([]int, used), count: make([]int, used), w: make([]float32, used*taps), taps: taps}
	k := make([]float64, taps)
	for xx := 0; xx < used; xx++ {
		center := (float64(xx) + 0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		xmax = min(xmax, taps)
		var ww float64
		for x := 0; x < xmax; x++ {
			k[x] = bicubic((float64(x+xmin) - center + 0.5) / filterscale)
			ww += k[x]
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				k[x] /= ww
			}
			c.w[xx*taps+x] = float32(k[x])
		}
		c.start[xx], c.count[xx] = xmin, xmax
	}
	return c
}

// ResizeBicubic resizes src (rows x cols) to outRows x outCols with PIL-style
// antialiased bicubic resampling (separable: horizontal, then vertical) and
// writes only the top-left usedRows x usedCols of the result to dst (the crop),
// skipping the work for cropped pixels.
func ResizeBicubic(src []float32, rows, cols, outRows, outCols int, dst []float32, usedRows, usedCols int) {
	ch := precomputeCoeffs(cols, outCols, usedCols)
	cv := precomputeCoeffs(rows, outRows, usedRows)
	// Only the source rows the vertical pass reads need the horizontal pass.
	rlo, rhi := cv.start[0], 0
	for i := range cv.start {
		rlo = min(rlo, cv.start[i])
		rhi = max(rhi, cv.start[i]+cv.count[i])
	}
	tmp := make([]float32, rows*usedCols)
	for r := rlo; r < rhi; r++ {
		in := src[r*cols : (r+1)*cols]
		out := tmp[r*usedCols : (r+1)*usedCols]
		for x := 0; x < usedCols; x++ {
			s, n := ch.start[x], ch.count[x]
			w := ch.w[x*ch.taps : x*ch.taps+n]
			seg := in[s : s+n]
			var acc float32
			for j, v := range seg {
				acc += v * w[j]
			}
			out[x] = acc
		}
	}
	for y := 0; y < usedRows; y++ {
		out := dst[y*usedCols : (y+1)*usedCols]
		for x := range out {
			out[x] = 0
		}
		s, n := cv.start[y], cv.count[y]
		for j := 0; j < n; j++ {
			w := cv.w[y*cv.taps+j]
			in := tmp[(s+j)*usedCols : (s+j+1)*usedCols]
			for x, v := range in {
				out[x] += v * w
			}
		}
	}
}
