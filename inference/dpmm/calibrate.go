package dpmm

import (
	"fmt"
	"math"
	"slices"
)

// DefaultFPRs are the false-positive rates thresholds are calibrated for.
var DefaultFPRs = []float64{0.01, 0.05, 0.10}

// Calibrator collects the pixel (or patch) scores of healthy validation slices
// and turns them into thresholds. It is exact: it keeps every score (4 bytes per
// pixel; 100 slices of 512 x 512 take 100 MiB) and sorts them once.
type Calibrator struct {
	scores []float32
	nan    int
}

// Add records scores; NaNs are counted and left out.
func (c *Calibrator) Add(scores []float32) {
	for _, s := range scores {
		if s != s {
			c.nan++
			continue
		}
		c.scores = append(c.scores, s)
	}
}

// Count is the number of scores recorded.
func (c *Calibrator) Count() int { return len(c.scores) }

// Thresholds returns, for each false-positive rate f, the (1-f) quantile of the
// recorded scores: the smallest recorded value t with at least ceil((1-f) n) of
// the n scores <= t. Segmenting with "score > t" therefore flags at most f*n of
// the healthy pixels (fewer when scores tie at t).
func (c *Calibrator) Thresholds(fprs []float64) ([]float32, error) {
	if c.nan > 0 {
		return nil, fmt.Errorf("dpmm: calibrate: %d NaN scores", c.nan)
	}
	return Quantiles(c.scores, fprs)
}

// Quantiles is Calibrator.Thresholds on a score slice, which it sorts in place.
func Quantiles(scores []float32, fprs []float64) ([]float32, error) {
	n := len(scores)
	if n == 0 {
		return nil, fmt.Errorf("dpmm: calibrate: no scores")
	}
	slices.Sort(scores)
	out := make([]float32, len(fprs))
	for i, f := range fprs {
		if !(f > 0 && f < 1) {
			return nil, fmt.Errorf("dpmm: calibrate: false-positive rate %v not in (0,1)", f)
		}
		// Rank in exact integer arithmetic where possible: (1-f)*n can land a
		// hair above an integer in floating point (0.9*10 = 9.000000000000002).
		r := int(math.Ceil((1-f)*float64(n) - 1e-9*float64(n)))
		r = min(max(r, 1), n)
		out[i] = scores[r-1]
	}
	return out, nil
}
