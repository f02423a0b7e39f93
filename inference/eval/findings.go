package eval

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/inference/pixel"
)

// DefaultMinLesionMM3 is the smallest painted lesion finding sensitivity
// counts: 0.5 cm3, the size issue 19's detection target is stated for.
const DefaultMinLesionMM3 = 500

// Stack is one series' stack of scored slices and their ground-truth masks:
// the input of finding-level evaluation.
type Stack struct {
	// Name identifies the stack in reports: its SeriesInstanceUID, with "#k"
	// appended for the k-th stack of a series that holds several.
	Name string
	// Slices are the scored slices (plane, size, pixel score map), any order.
	Slices []findings.Slice
	// Masks[i] is the ground-truth mask of Slices[i], Rows*Cols, non-zero
	// inside a lesion.
	Masks [][]uint8
}

// LesionResult is one painted lesion that finding sensitivity counts.
type LesionResult struct {
	// Series names the stack (Stack.Name).
	Series string `json:"series"`
	// VolumeMM3 and Voxels measure the lesion (a 26-connected component of
	// the masks on the series' geometry); Centroid is its centre (mm).
	VolumeMM3 float64    `json:"volume_mm3"`
	Voxels    int        `json:"voxels"`
	Centroid  [3]float64 `json:"centroid_mm"`
	// Detected says a finding overlaps it by at least one voxel.
	Detected bool `json:"detected"`
	// FindingVolumeMM3 is the volume of the finding that overlaps it most
	// (0 when missed).
	FindingVolumeMM3 float64 `json:"finding_volume_mm3"`
	// Dice is 2 |L n F| / (|L| + |F|) in voxels between the lesion and that
	// finding (0 when missed).
	Dice float64 `json:"dice"`
	// Peak is the highest pixel score inside the lesion: what the finding
	// peak threshold is compared with, whether or not it was detected.
	Peak float32 `json:"peak_score"`
}

// FindingMetrics are the finding-level results (issue 19): painted lesions
// found, false findings, and healthy series with any finding.
type FindingMetrics struct {
	// PixelFPR names the pixel threshold the findings start from.
	PixelFPR float64 `json:"pixel_fpr"`
	// PixelThreshold, MinVolumeMM3 and PeakThreshold are the limits used.
	PixelThreshold float32 `json:"pixel_threshold"`
	MinVolumeMM3   float64 `json:"min_volume_mm3"`
	PeakThreshold  float32 `json:"peak_threshold"`
	// Source says where the limits came from.
	Source string `json:"source"`
	// MinLesionMM3 is the smallest lesion that sensitivity counts.
	MinLesionMM3 float64 `json:"min_lesion_mm3"`
	// Series counts the stacks evaluated; Skipped lists those left out (no
	// plane geometry, not one stack), with the reason.
	Series  int      `json:"series"`
	Skipped []string `json:"skipped_series,omitempty"`
	// Lesions counts the painted lesions of at least MinLesionMM3, Detected
	// those a finding overlaps; Sensitivity is Detected / Lesions (nil when
	// there are none). SmallLesions counts the smaller ones, left out.
	Lesions      int      `json:"lesions"`
	Detected     int      `json:"detected"`
	Sensitivity  *float64 `json:"sensitivity"`
	SmallLesions int      `json:"small_lesions"`
	// MeanDice is the mean per-lesion Dice over the detected lesions (nil
	// when none is detected).
	MeanDice *float64 `json:"mean_lesion_dice"`
	// Findings counts all findings; FalseFindings those overlapping no
	// painted lesion (of any size); FalsePerSeries is FalseFindings / Series.
	Findings       int     `json:"findings"`
	FalseFindings  int     `json:"false_findings"`
	FalsePerSeries float64 `json:"false_findings_per_series"`
	// HealthySeries counts the stacks whose masks are all empty,
	// HealthyWithFinding those of them with any finding; HealthyRate is the
	// share (nil when there are no healthy series).
	HealthySeries      int      `json:"healthy_series"`
	HealthyWithFinding int      `json:"healthy_series_with_finding"`
	HealthyRate        *float64 `json:"healthy_series_with_finding_rate"`
	// HealthyPeaks is, per healthy series, the peak of its strongest region
	// of at least MinVolumeMM3 whatever the peak threshold (0: none): the
	// margin a lesion's Peak must beat.
	HealthyPeaks []float32 `json:"healthy_series_peaks"`
	// LesionList details every counted lesion.
	LesionList []LesionResult `json:"lesion_list"`
}

// lesionParams label a mask turned into a score map (0 or 1): every voxel
// above one half, every region kept.
var lesionParams = findings.Params{PixelThreshold: 0.5}

// EvaluateFindings extracts each stack's findings with p and compares them with
// its painted lesions: the 26-connected components of its masks on the same
// geometry, found by the same findings.Extract (the mask as a score map), so
// lesions and findings are measured alike. A stack that is not one stack
// (findings.ErrGeometry) is listed in Skipped and counts nowhere.
func EvaluateFindings(stacks []Stack, p findings.Params, minLesionMM3 float64) (*FindingMetrics, error) {
	if !(minLesionMM3 >= 0) || math.IsInf(minLesionMM3, 0) {
		return nil, fmt.Errorf("eval: min lesion volume %v mm3 must be finite and >= 0", minLesionMM3)
	}
	fm := &FindingMetrics{PixelThreshold: p.PixelThreshold, MinVolumeMM3: p.MinVolumeMM3, PeakThreshold: p.PeakThreshold,
		MinLesionMM3: minLesionMM3, LesionList: []LesionResult{}, HealthyPeaks: []float32{}}
	var diceSum float64
	for _, st := range stacks {
		if len(st.Masks) != len(st.Slices) {
			return nil, fmt.Errorf("eval: stack %s: %d masks for %d slices", st.Name, len(st.Masks), len(st.Slices))
		}
		found, err := findings.Extract(st.Slices, p)
		if errors.Is(err, findings.ErrGeometry) {
			fm.Skipped = append(fm.Skipped, fmt.Sprintf("%s: %v", st.Name, err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("eval: findings of %s: %w", st.Name, err)
		}
		maps := make([]findings.Slice, len(st.Slices))
		for i, s := range st.Slices {
			if len(st.Masks[i]) != s.Rows*s.Cols {
				return nil, fmt.Errorf("eval: stack %s slice %d: mask of %d pixels for %dx%d", st.Name, i, len(st.Masks[i]), s.Rows, s.Cols)
			}
			m := make([]float32, len(st.Masks[i]))
			for j, v := range st.Masks[i] {
				if v != 0 {
					m[j] = 1
				}
			}
			maps[i] = findings.Slice{Plane: s.Plane, Rows: s.Rows, Cols: s.Cols, Scores: m}
		}
		lesions, err := findings.Extract(maps, lesionParams)
		if err != nil {
			return nil, fmt.Errorf("eval: lesions of %s: %w", st.Name, err)
		}

		// overlap[{lesion, finding}] counts the voxels they share (IDs).
		overlap := map[[2]uint16]int{}
		for i := range st.Slices {
			fl, ll := found.Labels[i], lesions.Labels[i]
			for j, f := range fl {
				if f != 0 && ll[j] != 0 {
					overlap[[2]uint16{ll[j], f}]++
				}
			}
		}
		hit := make([]bool, len(found.Findings)+1) // finding ID overlaps a lesion
		// best[lesion ID]: the finding sharing most voxels with it.
		best := make([]struct {
			id uint16
			n  int
		}, len(lesions.Findings)+1)
		for k, n := range overlap {
			hit[k[1]] = true
			b := &best[k[0]]
			if n > b.n || n == b.n && k[1] < b.id {
				b.id, b.n = k[1], n
			}
		}

		fm.Series++
		fm.Findings += len(found.Findings)
		for _, f := range found.Findings {
			if !hit[f.ID] {
				fm.FalseFindings++
			}
		}
		if len(lesions.Findings) == 0 {
			fm.HealthySeries++
			if len(found.Findings) > 0 {
				fm.HealthyWithFinding++
			}
			anyPeak := p
			anyPeak.PeakThreshold = 0
			all, err := findings.Extract(st.Slices, anyPeak)
			if err != nil {
				return nil, fmt.Errorf("eval: regions of %s: %w", st.Name, err)
			}
			var peak float32
			if len(all.Findings) > 0 {
				peak = all.Findings[0].Peak // findings come highest peak first
			}
			fm.HealthyPeaks = append(fm.HealthyPeaks, peak)
		}
		// peaks[lesion ID]: the highest score inside the lesion.
		peaks := make([]float32, len(lesions.Findings)+1)
		for i, s := range st.Slices {
			for j, l := range lesions.Labels[i] {
				if l != 0 && s.Scores[j] > peaks[l] {
					peaks[l] = s.Scores[j]
				}
			}
		}
		for _, l := range lesions.Findings {
			if l.VolumeMM3 < minLesionMM3 {
				fm.SmallLesions++
				continue
			}
			r := LesionResult{Series: st.Name, VolumeMM3: l.VolumeMM3, Voxels: l.Voxels, Centroid: l.Centroid, Peak: peaks[l.ID]}
			if b := best[l.ID]; b.n > 0 {
				f := found.Findings[b.id-1]
				r.Detected, r.FindingVolumeMM3 = true, f.VolumeMM3
				r.Dice = 2 * float64(b.n) / float64(l.Voxels+f.Voxels)
				fm.Detected++
				diceSum += r.Dice
			}
			fm.Lesions++
			fm.LesionList = append(fm.LesionList, r)
		}
	}
	share := func(a, b int) *float64 {
		if b == 0 {
			return nil
		}
		v := float64(a) / float64(b)
		return &v
	}
	fm.Sensitivity = share(fm.Detected, fm.Lesions)
	fm.HealthyRate = share(fm.HealthyWithFinding, fm.HealthySeries)
	if fm.Detected > 0 {
		v := diceSum / float64(fm.Detected)
		fm.MeanDice = &v
	}
	if fm.Series > 0 {
		fm.FalsePerSeries = float64(fm.FalseFindings) / float64(fm.Series)
	}
	return fm, nil
}

// stackSet groups scored slices into stacks: by SeriesInstanceUID, then by
// orientation and size, since one series may hold several stacks (a localiser,
// a second plane) that must not be joined into one volume.
type stackSet struct {
	entries []*stackEntry
	byKey   map[string]*stackEntry
	perUID  map[string]int
	skipped map[string]string // series left out -> why
}

type stackEntry struct {
	uid string
	st  Stack
}

func newStackSet() *stackSet {
	return &stackSet{byKey: map[string]*stackEntry{}, perUID: map[string]int{}, skipped: map[string]string{}}
}

// add files one scored slice with its mask (both kept, not copied).
func (ss *stackSet) add(s *pixel.Slice, scores []float32, mask []uint8) {
	uid := s.SeriesInstanceUID
	if uid == "" {
		ss.skipped[uid] = "no SeriesInstanceUID"
		return
	}
	pl, err := inference.Plane(s)
	if err != nil {
		// A series with one slice lacking geometry cannot be measured whole:
		// its lesions would be cut.
		ss.skipped[uid] = err.Error()
		return
	}
	o := pl.Orientation
	key := fmt.Sprintf("%s|%dx%d|%.3f %.3f %.3f %.3f %.3f %.3f", uid, s.Rows, s.Cols, o[0], o[1], o[2], o[3], o[4], o[5])
	e := ss.byKey[key]
	if e == nil {
		ss.perUID[uid]++
		e = &stackEntry{uid: uid, st: Stack{Name: uid}}
		if n := ss.perUID[uid]; n > 1 {
			e.st.Name = fmt.Sprintf("%s#%d", uid, n)
		}
		ss.byKey[key] = e
		ss.entries = append(ss.entries, e)
	}
	e.st.Slices = append(e.st.Slices, findings.Slice{Plane: pl, Rows: s.Rows, Cols: s.Cols, Scores: scores})
	e.st.Masks = append(e.st.Masks, mask)
}

// stacks returns the stacks in the order first seen, leaving out the series
// that had a slice without geometry, and the reasons for those (sorted).
func (ss *stackSet) stacks() ([]Stack, []string) {
	var out []Stack
	for _, e := range ss.entries {
		if _, bad := ss.skipped[e.uid]; !bad {
			out = append(out, e.st)
		}
	}
	var why []string
	for uid, r := range ss.skipped {
		if uid == "" {
			uid = "(no SeriesInstanceUID)"
		}
		why = append(why, fmt.Sprintf("%s: %s", uid, r))
	}
	slices.Sort(why)
	return out, why
}
