package eval

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrNoScores is returned when metrics are asked of an empty accumulator.
var ErrNoScores = errors.New("eval: no scored pixels")

// Pixels accumulates pixel scores split by ground-truth label. It keeps every
// score once (4 bytes per pixel: 100 slices of 512 x 512 take 100 MiB), which is
// what exact AUROC/AUPR with ties need; the metrics sort the two halves in place.
type Pixels struct {
	pos, neg []float32
	nan      int
}

// Add records n scores with their labels (label != 0 is anomalous). NaN scores
// are counted and left out.
func (p *Pixels) Add(scores []float32, labels []uint8) error {
	if len(scores) != len(labels) {
		return fmt.Errorf("eval: %d scores for %d labels", len(scores), len(labels))
	}
	for i, s := range scores {
		switch {
		case s != s:
			p.nan++
		case labels[i] != 0:
			p.pos = append(p.pos, s)
		default:
			p.neg = append(p.neg, s)
		}
	}
	return nil
}

// Positives and Negatives count the recorded pixels of each label.
func (p *Pixels) Positives() int { return len(p.pos) }

// Negatives counts the recorded healthy pixels.
func (p *Pixels) Negatives() int { return len(p.neg) }

// NaNs counts the scores left out as NaN.
func (p *Pixels) NaNs() int { return p.nan }

// Point is one point of a curve.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// DiceAt is the overlap at one threshold (pixel flagged when score > Threshold).
type DiceAt struct {
	// FPR names the calibration false-positive rate ("0.01").
	FPR string `json:"fpr"`
	// Threshold is the score threshold.
	Threshold float32 `json:"threshold"`
	// Dice is 2TP / (2TP + FP + FN) over all test pixels.
	Dice float64 `json:"dice"`
	// TestFPR is the fraction of healthy test pixels flagged.
	TestFPR float64 `json:"test_fpr"`
	// Sensitivity is the fraction of anomalous pixels flagged.
	Sensitivity float64 `json:"sensitivity"`
	// TP, FP, FN are the pixel counts.
	TP int64 `json:"tp"`
	FP int64 `json:"fp"`
	FN int64 `json:"fn"`
}

// Metrics are the pixel-level results.
type Metrics struct {
	// Positives and Negatives count the anomalous and healthy pixels.
	Positives int64 `json:"positives"`
	Negatives int64 `json:"negatives"`
	// AUROC is the area under the ROC curve, ties counted half (Mann-Whitney);
	// nil when either class is empty.
	AUROC *float64 `json:"auroc"`
	// AUPR is the average precision sum_i (R_i - R_{i-1}) P_i over the distinct
	// score thresholds, ties entering together (scikit-learn's
	// average_precision_score); nil without anomalous pixels.
	AUPR *float64 `json:"aupr"`
	// Dice holds the overlap at each calibrated threshold.
	Dice []DiceAt `json:"dice"`
	// ROC and PR are the curves, thinned to at most about curvePoints points.
	ROC []Point `json:"-"`
	PR  []Point `json:"-"`
}

// curvePoints bounds the points kept for plotting.
const curvePoints = 2000

// Compute sorts the recorded scores and computes the metrics; thresholds maps an
// FPR key to its threshold, reported in key order.
func (p *Pixels) Compute(fprKeys []string, thresholds []float32) (*Metrics, error) {
	if len(p.pos)+len(p.neg) == 0 {
		return nil, ErrNoScores
	}
	slices.Sort(p.pos)
	slices.Sort(p.neg)
	P, N := int64(len(p.pos)), int64(len(p.neg))
	m := &Metrics{Positives: P, Negatives: N}

	// Sweep distinct scores from the highest down; at each, every pixel with
	// that score enters the "flagged" set together.
	i, j := len(p.pos)-1, len(p.neg)-1
	var tp, fp int64
	var auc2 float64 // twice the Mann-Whitney U, kept in integers-as-float64
	var ap, prevRecall float64
	m.ROC = append(m.ROC, Point{0, 0})
	lastROC := Point{0, 0}
	for i >= 0 || j >= 0 {
		var v float32
		switch {
		case i < 0:
			v = p.neg[j]
		case j < 0:
			v = p.pos[i]
		default:
			v = max(p.pos[i], p.neg[j])
		}
		var dp, dn int64
		for i >= 0 && p.pos[i] == v {
			dp++
			i--
		}
		for j >= 0 && p.neg[j] == v {
			dn++
			j--
		}
		// Each negative at v lies below the tp positives above v and ties with
		// the dp positives at v: it adds tp + dp/2 to U, counted doubled.
		auc2 += float64(dn) * float64(2*tp+dp)
		tp += dp
		fp += dn
		if P > 0 {
			recall := float64(tp) / float64(P)
			prec := float64(tp) / float64(tp+fp)
			ap += (recall - prevRecall) * prec
			if dp > 0 {
				m.PR = appendThin(m.PR, Point{recall, prec})
			}
			prevRecall = recall
		}
		if P > 0 && N > 0 {
			pt := Point{float64(fp) / float64(N), float64(tp) / float64(P)}
			if pt.X-lastROC.X >= 1.0/curvePoints || pt.Y-lastROC.Y >= 1.0/curvePoints || (i < 0 && j < 0) {
				m.ROC = append(m.ROC, pt)
				lastROC = pt
			}
		}
	}
	if P > 0 && N > 0 {
		a := auc2 / (2 * float64(P) * float64(N))
		m.AUROC = &a
	}
	if P > 0 {
		m.AUPR = &ap
	}
	for k, key := range fprKeys {
		t := thresholds[k]
		tpK := P - int64(upper(p.pos, t))
		fpK := N - int64(upper(p.neg, t))
		fn := P - tpK
		d := DiceAt{FPR: key, Threshold: t, TP: tpK, FP: fpK, FN: fn}
		if den := 2*tpK + fpK + fn; den > 0 {
			d.Dice = 2 * float64(tpK) / float64(den)
		}
		if N > 0 {
			d.TestFPR = float64(fpK) / float64(N)
		}
		if P > 0 {
			d.Sensitivity = float64(tpK) / float64(P)
		}
		m.Dice = append(m.Dice, d)
	}
	return m, nil
}

// upper is the number of sorted values <= t.
func upper(sorted []float32, t float32) int {
	lo, hi := 0, len(sorted)
	for lo < hi {
		mid := (lo + hi) / 2
		if sorted[mid] <= t {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// appendThin appends pt unless it is within 1/curvePoints of the last point.
func appendThin(pts []Point, pt Point) []Point {
	if n := len(pts); n > 0 && math.Abs(pt.X-pts[n-1].X) < 1.0/curvePoints && math.Abs(pt.Y-pts[n-1].Y) < 1.0/curvePoints {
		pts[n-1] = pt
		return pts
	}
	return append(pts, pt)
}
