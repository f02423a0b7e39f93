package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
	"anomalynode/inference/pixel"
	"anomalynode/internal/synth"
)

// box sets v in rows [r0, r1) x cols [c0, c1) of a rows x cols map.
func box[T float32 | uint8](m []T, cols, r0, r1, c0, c1 int, v T) {
	for r := r0; r < r1; r++ {
		for c := c0; c < c1; c++ {
			m[r*cols+c] = v
		}
	}
}

// axialStack is n empty 20 x 20 axial slices, 1 x 1 mm pixels, 2 mm apart
// (every voxel 2 mm3), given in reverse order so the stacking is exercised.
func axialStack(name string, n int) Stack {
	st := Stack{Name: name}
	for k := n - 1; k >= 0; k-- {
		st.Slices = append(st.Slices, findings.Slice{
			Plane: findings.Plane{Position: [3]float64{0, 0, 2 * float64(k)}, Orientation: [6]float64{1, 0, 0, 0, 1, 0}, Spacing: [2]float64{1, 1}},
			Rows:  20, Cols: 20, Scores: make([]float32, 400)})
		st.Masks = append(st.Masks, make([]uint8, 400))
	}
	return st
}

// at returns slice k (by position) of a stack made by axialStack.
func at(st Stack, k int) (scores []float32, mask []uint8) {
	i := len(st.Slices) - 1 - k
	return st.Slices[i].Scores, st.Masks[i]
}

// TestEvaluateFindings is a hand-made case with known geometry: a lesion found
// (Dice 0.5), one missed, one too small to count, a false finding, a region
// too weak to be a finding, a healthy series with a finding, one without, and
// a series that is not one stack.
func TestEvaluateFindings(t *testing.T) {
	p := findings.Params{PixelThreshold: 0.5, MinVolumeMM3: 100, PeakThreshold: 0.7}

	a := axialStack("A", 10)
	for k := 0; k < 10; k++ {
		s, m := at(a, k)
		if k >= 2 && k <= 6 {
			box(m, 20, 2, 10, 2, 10, 1) // lesion 1: 8 x 8 x 5 = 320 voxels, 640 mm3
		}
		if k >= 3 && k <= 6 {
			box(s, 20, 4, 12, 4, 12, 0.9) // its finding: 8 x 8 x 4 = 256 voxels, 144 shared
		}
		if k >= 2 && k <= 7 {
			box(m, 20, 14, 19, 14, 19, 1) // lesion 2: 5 x 5 x 6 = 150 voxels, 300 mm3
		}
		if k == 4 {
			s[16*20+16] = 0.9 // ... only one voxel of it scores: 2 mm3, no finding
		}
		box(s, 20, 14, 19, 0, 5, 0.8) // false finding: 5 x 5 x 10, 500 mm3
		box(s, 20, 0, 2, 12, 20, 0.6) // big but weak (peak < 0.7): no finding
	}
	_, m := at(a, 9)
	m[19*20+10] = 1 // lesion 3: one voxel, 2 mm3, below the 250 mm3 counted

	b := axialStack("B", 4) // healthy, one finding: 6 x 6 x 2 = 72 voxels, 144 mm3
	for k := 1; k <= 2; k++ {
		s, _ := at(b, k)
		box(s, 20, 5, 11, 5, 11, 0.95)
	}
	c := axialStack("C", 3) // healthy, nothing above the threshold
	for k := 0; k < 3; k++ {
		s, _ := at(c, k)
		box(s, 20, 0, 20, 0, 20, 0.1)
		box(s, 20, 0, 10, 0, 10, 0.6) // 600 mm3 but weak: no finding, its peak reported
	}
	d := axialStack("D", 2) // two slices at one position: not one stack
	d.Slices[1].Plane.Position = d.Slices[0].Plane.Position

	fm, err := EvaluateFindings([]Stack{a, b, c, d}, p, 250)
	if err != nil {
		t.Fatal(err)
	}
	type counts struct {
		Series, Skipped, Lesions, Detected, Small, Findings, False, Healthy, HealthyWith int
	}
	got := counts{fm.Series, len(fm.Skipped), fm.Lesions, fm.Detected, fm.SmallLesions, fm.Findings, fm.FalseFindings, fm.HealthySeries, fm.HealthyWithFinding}
	want := counts{Series: 3, Skipped: 1, Lesions: 2, Detected: 1, Small: 1, Findings: 3, False: 2, Healthy: 2, HealthyWith: 1}
	if got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	if !strings.HasPrefix(fm.Skipped[0], "D: ") || !strings.Contains(fm.Skipped[0], "same position") {
		t.Errorf("skipped %q", fm.Skipped)
	}
	if fm.Sensitivity == nil || *fm.Sensitivity != 0.5 || fm.HealthyRate == nil || *fm.HealthyRate != 0.5 ||
		fm.MeanDice == nil || *fm.MeanDice != 0.5 || fm.FalsePerSeries != 2.0/3 {
		t.Errorf("sensitivity %v healthy rate %v mean Dice %v false/series %v", fm.Sensitivity, fm.HealthyRate, fm.MeanDice, fm.FalsePerSeries)
	}
	wantLesions := []LesionResult{
		{Series: "A", VolumeMM3: 640, Voxels: 320, Centroid: [3]float64{5.5, 5.5, 8}, Detected: true, FindingVolumeMM3: 512, Dice: 0.5, Peak: 0.9},
		{Series: "A", VolumeMM3: 300, Voxels: 150, Centroid: [3]float64{16, 16, 9}, Peak: 0.9},
	}
	if !slices.Equal(fm.HealthyPeaks, []float32{0.95, 0.6}) {
		t.Errorf("healthy series peaks %v, want [0.95 0.6]", fm.HealthyPeaks)
	}
	if len(fm.LesionList) != 2 {
		t.Fatalf("lesion list %+v", fm.LesionList)
	}
	for i, w := range wantLesions {
		g := fm.LesionList[i]
		for k := range g.Centroid {
			if math.Abs(g.Centroid[k]-w.Centroid[k]) > 1e-9 {
				t.Errorf("lesion %d centroid %v, want %v", i, g.Centroid, w.Centroid)
			}
		}
		g.Centroid = w.Centroid
		if math.Abs(g.VolumeMM3-w.VolumeMM3) > 1e-9 || math.Abs(g.FindingVolumeMM3-w.FindingVolumeMM3) > 1e-9 {
			t.Errorf("lesion %d volumes %v / %v, want %v / %v", i, g.VolumeMM3, g.FindingVolumeMM3, w.VolumeMM3, w.FindingVolumeMM3)
		}
		g.VolumeMM3, g.FindingVolumeMM3 = w.VolumeMM3, w.FindingVolumeMM3
		if g != w {
			t.Errorf("lesion %d: %+v, want %+v", i, g, w)
		}
	}

	// Counting every lesion, the one-voxel lesion counts too (and is missed);
	// with a smaller finding volume, lesion 2's lone voxel becomes a finding.
	fm, err = EvaluateFindings([]Stack{a}, p, 0)
	if err != nil || fm.Lesions != 3 || fm.Detected != 1 || fm.SmallLesions != 0 {
		t.Errorf("min lesion 0: %+v, %v", fm, err)
	}
	p.MinVolumeMM3 = 1
	fm, err = EvaluateFindings([]Stack{a}, p, 250)
	if err != nil || fm.Detected != 2 || fm.FalseFindings != 1 || fm.LesionList[1].Dice != 2.0/151 {
		t.Errorf("min volume 1: %+v, %v", fm, err)
	}

	if _, err := EvaluateFindings([]Stack{{Name: "bad", Slices: a.Slices, Masks: a.Masks[1:]}}, p, 0); err == nil {
		t.Error("a stack with fewer masks than slices was accepted")
	}
	if _, err := EvaluateFindings(nil, p, math.NaN()); err == nil {
		t.Error("a NaN min lesion volume was accepted")
	}
}

// maskSource is a SliceSource whose one-pixel "patches" carry the slice's
// score map (by SOP Instance UID), and copyScorer scores a patch with its
// value: together they put known score maps through Run.
type maskSource map[string][]uint8

func (m maskSource) EmbedSlice(s *pixel.Slice) (fitjob.EmbeddedSlice, error) {
	g := inference.Geometry{SrcRows: s.Rows, SrcCols: s.Cols, ResizedRows: s.Rows, ResizedCols: s.Cols,
		Rows: s.Rows, Cols: s.Cols, Patch: 1, GridRows: s.Rows, GridCols: s.Cols}
	x := make([]float32, s.Rows*s.Cols)
	for i, v := range m[s.SOPInstanceUID] {
		x[i] = float32(v)
	}
	return fitjob.EmbeddedSlice{Patches: x, D: 1, Geometry: g}, nil
}

type copyScorer struct{}

func (copyScorer) Score(patches []float32, n int, out []float32) { copy(out[:n], patches[:n]) }

// TestRunFindings runs the finding metrics through Run on synth series: a
// lesion series scored by its own masks (every lesion found exactly) and a
// healthy series from --healthy with one painted false blob.
func TestRunFindings(t *testing.T) {
	dir := t.TempDir()
	scores := maskSource{}
	les, err := synth.Generate(synth.Options{Seed: 3, Slices: 10, Rows: 48, Cols: 48, Lesions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := les.Write(filepath.Join(dir, "test")); err != nil {
		t.Fatal(err)
	}
	for _, s := range les.Slices {
		scores[s.SOPInstanceUID] = s.Mask
	}
	healthy, err := synth.Generate(synth.Options{Seed: 4, Slices: 10, Rows: 48, Cols: 48})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := healthy.Write(filepath.Join(dir, "healthy")); err != nil {
		t.Fatal(err)
	}
	for k, s := range healthy.Slices {
		m := make([]uint8, 48*48)
		if k >= 4 && k <= 6 {
			box(m, 48, 10, 16, 10, 16, 1)
		}
		scores[s.SOPInstanceUID] = m
	}

	o := Options{Source: scores, Scorer: copyScorer{}, ScorerName: "copy", Images: filepath.Join(dir, "test"), Labels: filepath.Join(dir, "test"),
		Healthy: filepath.Join(dir, "healthy"), Findings: &findings.Params{PixelThreshold: 0.5, PeakThreshold: 0.5}, FindingFPR: 0.01,
		FindingsSource: "the test", MinLesionMM3: math.SmallestNonzeroFloat64 /* every lesion */, Out: filepath.Join(dir, "out")}
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	f := sum.Findings
	if f == nil {
		t.Fatalf("no finding metrics: %q", sum.FindingsNote)
	}
	if sum.HealthyFiles != 10 || sum.Slices != 20 || sum.UnlabelledFiles != 0 {
		t.Errorf("healthy files %d, slices %d, unlabelled %d", sum.HealthyFiles, sum.Slices, sum.UnlabelledFiles)
	}
	if f.Series != 2 || len(f.Skipped) != 0 || f.Lesions < 1 || f.Detected != f.Lesions || f.MeanDice == nil || *f.MeanDice != 1 ||
		f.Findings != f.Lesions+1 || f.FalseFindings != 1 || f.HealthySeries != 1 || f.HealthyWithFinding != 1 ||
		f.PixelFPR != 0.01 || f.Source != "the test" {
		t.Errorf("finding metrics %+v", f)
	}
	for _, l := range f.LesionList {
		if l.Series != les.SeriesInstanceUID || l.VolumeMM3 <= 0 || l.FindingVolumeMM3 != l.VolumeMM3 {
			t.Errorf("lesion %+v", l)
		}
	}
	// The healthy blob: 6 x 6 pixels on 3 slices, in the series' real voxels.
	vox := healthy.PixelSpacing * healthy.PixelSpacing * healthy.SliceSpacing
	var b bytes.Buffer
	Table(&b, sum)
	for _, w := range []string{"findings (pixel FPR 0.01: score > 0.50000", "healthy series with a finding: 1/1 (100.0 %)",
		"false findings: 1 of " + strconv.Itoa(f.Findings) + " in 2 series (0.50 per series)"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, b.String())
		}
	}
	var back Summary
	raw, err := os.ReadFile(filepath.Join(dir, "out", "summary.json"))
	if err != nil || json.Unmarshal(raw, &back) != nil || back.Findings == nil || back.Findings.FalseFindings != 1 {
		t.Fatalf("summary.json findings: %v %+v", err, back.Findings)
	}

	// The false blob's volume is the healthy series' own geometry.
	o.Images, o.Labels, o.Healthy = filepath.Join(dir, "healthy"), filepath.Join(dir, "healthy"), ""
	o.Extra = allHealthy{}
	o.Findings.MinVolumeMM3 = 108*vox - 1e-6
	sum, err = Run(context.Background(), o)
	if err != nil || sum.Findings == nil || sum.Findings.Findings != 1 {
		t.Fatalf("healthy run: %+v %v", sum, err)
	}
	o.Findings.MinVolumeMM3 = 108*vox + 1e-6
	if sum, err = Run(context.Background(), o); err != nil || sum.Findings.Findings != 0 {
		t.Fatalf("healthy run above the blob's volume: %+v %v", sum, err)
	}

	// Without limits: pixel metrics only, and the note says why.
	o.Findings, o.FindingsNote = nil, "no calibration in this model"
	if sum, err = Run(context.Background(), o); err != nil || sum.Findings != nil || sum.FindingsNote != o.FindingsNote {
		t.Fatalf("without limits: %+v %v", sum, err)
	}
	b.Reset()
	Table(&b, sum)
	if !strings.Contains(b.String(), "findings: not available (no calibration in this model)") {
		t.Errorf("table:\n%s", b.String())
	}
}

// allHealthy labels every image healthy (all-zero masks).
type allHealthy struct{}

func (allHealthy) Masks(_ []*pixel.Slice, _ [][]uint8) (bool, error) { return true, nil }
