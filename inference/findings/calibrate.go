package findings

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Defaults of the finding limits (METHOD.md 3, docs/fit-eval.md says why).
const (
	// DefaultSeriesFPR is the share of healthy series allowed to show any finding.
	DefaultSeriesFPR = 0.05
	// DefaultMinVolumeMM3 is the smallest finding: 100 mm3, a sphere of about
	// 5.8 mm diameter.
	DefaultMinVolumeMM3 = 100
	// MaxStoredRegions caps the regions a Calibration keeps per series.
	MaxStoredRegions = 32
)

// Region is one connected region above the pixel threshold in a healthy
// validation series.
type Region struct {
	// VolumeMM3 is the region's volume.
	VolumeMM3 float64 `json:"volume_mm3"`
	// Peak is its highest score.
	Peak float32 `json:"peak"`
	// Voxels counts its voxels.
	Voxels int `json:"voxels"`
}

// SeriesRegions is what a Calibration keeps of one healthy validation series.
type SeriesRegions struct {
	// Voxels counts all the series' voxels (the denominator of pixel FPRs).
	Voxels int64 `json:"voxels"`
	// Regions holds at most MaxStoredRegions regions: first every region on
	// the (volume, peak) Pareto front, which decides exactly whether the series
	// shows a finding under any limits, then the largest of the rest.
	Regions []Region `json:"regions"`
}

// Calibration is the finding calibration of one pixel threshold: the regions
// of the healthy validation series and the limits chosen at fit time. It is
// stored in the model file, so other limits (a per-model series_fpr or
// min_volume_mm3) can be derived at load without the validation data.
type Calibration struct {
	// PixelFPR is the false-positive rate whose pixel threshold was used.
	PixelFPR float64 `json:"pixel_fpr"`
	// PixelThreshold is that threshold.
	PixelThreshold float32 `json:"pixel_threshold"`
	// SeriesFPR and MinVolumeMM3 are the limits chosen at fit time...
	SeriesFPR    float64 `json:"series_fpr"`
	MinVolumeMM3 float64 `json:"min_volume_mm3"`
	// PeakThreshold is the peak limit they give.
	PeakThreshold float32 `json:"peak_threshold"`
	// ImpliedPixelFPR is the share of healthy validation voxels inside a
	// finding under these limits (from every region, not only those kept).
	ImpliedPixelFPR float64 `json:"implied_pixel_fpr"`
	// Series holds each healthy validation series' regions.
	Series []SeriesRegions `json:"series"`
}

// SeriesRegionsOf returns every connected region of the voxels of one series
// above the pixel threshold t, and the series' voxel count.
func SeriesRegionsOf(in []Slice, t float32) (SeriesRegions, error) {
	var sr SeriesRegions
	if len(in) == 0 {
		return sr, nil
	}
	_, _, _, comps, err := label(in, t)
	if err != nil {
		return sr, err
	}
	sr.Voxels = int64(len(in)) * int64(in[0].Rows) * int64(in[0].Cols)
	sr.Regions = make([]Region, len(comps))
	for i, c := range comps {
		sr.Regions[i] = Region{VolumeMM3: c.volume, Peak: c.peak, Voxels: c.voxels}
	}
	return sr, nil
}

// Calibrate chooses the finding limits on healthy validation series (each
// with every region above pixelThreshold, from SeriesRegionsOf): the smallest
// peak threshold such that at most floor(seriesFPR * series) of them show a
// finding of at least minVolumeMM3. The returned Calibration keeps at most
// MaxStoredRegions regions per series; its ImpliedPixelFPR is computed from
// all of them.
func Calibrate(series []SeriesRegions, pixelFPR float64, pixelThreshold float32, seriesFPR, minVolumeMM3 float64) (*Calibration, error) {
	if len(series) == 0 {
		return nil, errors.New("findings: calibrate: no healthy validation series")
	}
	full := &Calibration{PixelFPR: pixelFPR, PixelThreshold: pixelThreshold, Series: series}
	p, err := full.Params(seriesFPR, minVolumeMM3)
	if err != nil {
		return nil, err
	}
	c := &Calibration{PixelFPR: pixelFPR, PixelThreshold: pixelThreshold, SeriesFPR: seriesFPR,
		MinVolumeMM3: minVolumeMM3, PeakThreshold: p.PeakThreshold, ImpliedPixelFPR: full.ImpliedFPR(p)}
	for _, s := range series {
		c.Series = append(c.Series, SeriesRegions{Voxels: s.Voxels, Regions: keepRegions(s.Regions, MaxStoredRegions)})
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Params returns the limits for any series FPR and minimum volume: the
// calibrated pixel threshold, minVolumeMM3, and the smallest peak threshold
// such that at most floor(seriesFPR * len(c.Series)) healthy series keep any
// region of at least that volume. When fewer series than that have such a
// region, the peak threshold is the pixel threshold (every region passes it).
func (c *Calibration) Params(seriesFPR, minVolumeMM3 float64) (Params, error) {
	if !(seriesFPR >= 0 && seriesFPR <= 1) {
		return Params{}, fmt.Errorf("findings: series FPR %v must be in [0, 1]", seriesFPR)
	}
	if !(minVolumeMM3 >= 0) || math.IsInf(minVolumeMM3, 0) {
		return Params{}, fmt.Errorf("findings: min volume %v mm3 must be finite and >= 0", minVolumeMM3)
	}
	if len(c.Series) == 0 {
		return Params{}, errors.New("findings: calibration has no series")
	}
	// Each series' strongest region of enough volume: the series shows a
	// finding exactly when that peak reaches the peak threshold.
	var peaks []float32
	for _, s := range c.Series {
		best, ok := float32(0), false
		for _, r := range s.Regions {
			if r.VolumeMM3 >= minVolumeMM3 && (!ok || r.Peak > best) {
				best, ok = r.Peak, true
			}
		}
		if ok {
			peaks = append(peaks, best)
		}
	}
	allowed := int(math.Floor(seriesFPR*float64(len(c.Series)) + 1e-9))
	p := Params{PixelThreshold: c.PixelThreshold, MinVolumeMM3: minVolumeMM3, PeakThreshold: c.PixelThreshold,
		PixelFPR: c.PixelFPR, SeriesFPR: seriesFPR}
	if len(peaks) > allowed {
		slices.SortFunc(peaks, func(a, b float32) int { return cmp.Compare(b, a) })
		// Just above the (allowed+1)-th strongest series: it and every weaker
		// series fall below; ties with it fall below too.
		p.PeakThreshold = max(p.PeakThreshold, math.Nextafter32(peaks[allowed], float32(math.Inf(1))))
	}
	return p, nil
}

// SeriesWithFindings counts the calibration's healthy series that show a
// finding under p.
func (c *Calibration) SeriesWithFindings(p Params) int {
	n := 0
	for _, s := range c.Series {
		for _, r := range s.Regions {
			if passes(r, p) {
				n++
				break
			}
		}
	}
	return n
}

// ImpliedFPR is the share of the healthy validation voxels that lie in
// a finding under p: the pixel FPR the finding limits imply. From a stored
// Calibration it counts the stored regions only, so it can be a little low
// when a series had more than MaxStoredRegions regions.
func (c *Calibration) ImpliedFPR(p Params) float64 {
	var in, all int64
	for _, s := range c.Series {
		all += s.Voxels
		for _, r := range s.Regions {
			if passes(r, p) {
				in += int64(r.Voxels)
			}
		}
	}
	if all == 0 {
		return 0
	}
	return float64(in) / float64(all)
}

// Validate checks a Calibration read from a model file.
func (c *Calibration) Validate() error {
	if !(c.PixelFPR > 0 && c.PixelFPR < 1) {
		return fmt.Errorf("findings: calibration pixel_fpr %v not in (0, 1)", c.PixelFPR)
	}
	if !finite(float64(c.PixelThreshold)) || !finite(float64(c.PeakThreshold)) || c.PeakThreshold < c.PixelThreshold {
		return fmt.Errorf("findings: calibration thresholds pixel %v peak %v (peak must be >= pixel)", c.PixelThreshold, c.PeakThreshold)
	}
	if !(c.SeriesFPR >= 0 && c.SeriesFPR <= 1) || !(c.MinVolumeMM3 >= 0) || !finite(c.MinVolumeMM3) {
		return fmt.Errorf("findings: calibration series_fpr %v / min_volume_mm3 %v out of range", c.SeriesFPR, c.MinVolumeMM3)
	}
	if !(c.ImpliedPixelFPR >= 0 && c.ImpliedPixelFPR <= 1) {
		return fmt.Errorf("findings: calibration implied_pixel_fpr %v not in [0, 1]", c.ImpliedPixelFPR)
	}
	if len(c.Series) == 0 {
		return errors.New("findings: calibration has no series")
	}
	for i, s := range c.Series {
		if s.Voxels < 1 || len(s.Regions) > MaxStoredRegions {
			return fmt.Errorf("findings: calibration series %d: %d voxels, %d regions (at most %d)", i, s.Voxels, len(s.Regions), MaxStoredRegions)
		}
		for _, r := range s.Regions {
			if !(r.VolumeMM3 > 0) || !finite(r.VolumeMM3) || !finite(float64(r.Peak)) || r.Voxels < 1 || int64(r.Voxels) > s.Voxels {
				return fmt.Errorf("findings: calibration series %d: region %+v", i, r)
			}
		}
	}
	return nil
}

func passes(r Region, p Params) bool {
	return r.VolumeMM3 >= p.MinVolumeMM3 && r.Peak >= p.PeakThreshold
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// keepRegions returns at most limit regions: the (volume, peak) Pareto front
// (a region no other region beats in both), which decides exactly whether a
// series shows a finding under any limits, then the largest remaining regions,
// which carry most of the voxels the implied pixel FPR counts. A front longer
// than limit is thinned evenly, keeping both ends.
func keepRegions(rs []Region, limit int) []Region {
	byVolume := slices.Clone(rs)
	slices.SortStableFunc(byVolume, func(a, b Region) int {
		if c := cmp.Compare(b.VolumeMM3, a.VolumeMM3); c != 0 {
			return c
		}
		return cmp.Compare(b.Peak, a.Peak)
	})
	var front, rest []Region
	for _, r := range byVolume {
		if len(front) == 0 || r.Peak > front[len(front)-1].Peak {
			front = append(front, r)
		} else {
			rest = append(rest, r)
		}
	}
	if len(front) > limit {
		thin := make([]Region, limit)
		for i := range thin {
			thin[i] = front[i*(len(front)-1)/(limit-1)]
		}
		return thin
	}
	// rest is already largest first.
	return append(front, rest[:min(len(rest), limit-len(front))]...)
}
