package fitjob

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/findings"
	"anomalynode/internal/npy"
)

func writeNPY(t *testing.T, path string, shape []int) {
	t.Helper()
	n := 1
	for _, s := range shape {
		n *= s
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	if err := npy.Write(path, &npy.Array{Shape: shape, Dtype: npy.DtypeFloat32, F32: x}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadNPY(t *testing.T) {
	dir := t.TempDir()
	writeNPY(t, filepath.Join(dir, "a.npy"), []int{10, 4}) // 2-D: slices of 4 rows: 4+4+2
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	writeNPY(t, filepath.Join(sub, "b.npy"), []int{3, 5, 4}) // 3-D: 3 slices of 5
	os.WriteFile(filepath.Join(sub, "notes.txt"), []byte("not an input"), 0o644)
	os.WriteFile(filepath.Join(sub, "random.bin"), make([]byte, 300), 0o644) // not DICOM: skipped
	l, err := Load(context.Background(), []string{dir}, LoadOptions{PatchesPerSlice: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 4, 8, 10, 15, 20, 25}
	if l.Data.D != 4 || l.NPYFiles != 2 || len(l.Data.Offsets) != len(want) {
		t.Fatalf("D %d files %d offsets %v", l.Data.D, l.NPYFiles, l.Data.Offsets)
	}
	for i, o := range want {
		if l.Data.Offsets[i] != o {
			t.Fatalf("offsets %v, want %v", l.Data.Offsets, want)
		}
	}
	if l.HasGeometry() {
		t.Fatal(".npy slices claim a pixel geometry")
	}
	if l.Data.X[4*4] != 16 || l.Data.X[10*4] != 0 {
		t.Fatalf("rows not in file order")
	}
	// A label mask (uint8 .npy, as synth --labels writes) in a folder is left
	// out and counted; named on its own, it is an error that says what fit takes.
	labels := filepath.Join(dir, "labels")
	os.Mkdir(labels, 0o755)
	mask := filepath.Join(labels, "IM0001.npy")
	if err := npy.Write(mask, &npy.Array{Shape: []int{4, 4}, Dtype: npy.DtypeUint8, U8: make([]uint8, 16)}); err != nil {
		t.Fatal(err)
	}
	l, err = Load(context.Background(), []string{dir}, LoadOptions{PatchesPerSlice: 4})
	if err != nil || l.SkippedMasks != 1 || l.NPYFiles != 2 || l.Data.Slices() != 6 {
		t.Fatalf("folder with a mask: %v, %+v", err, l)
	}
	if _, err := Load(context.Background(), []string{mask}, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "label mask") {
		t.Fatalf("a mask named as input: %v", err)
	}
	writeNPY(t, filepath.Join(dir, "c.npy"), []int{2, 3})
	if _, err := Load(context.Background(), []string{dir}, LoadOptions{}); err == nil {
		t.Fatal("mixed dimensions accepted")
	}
	if _, err := Load(context.Background(), []string{t.TempDir()}, LoadOptions{}); !errors.Is(err, ErrNoInputs) {
		t.Fatalf("empty folder: %v", err)
	}
}

// RunJob's thresholds must give at most f false positives on the very
// validation scores they were calibrated on, under the node's scorer.
func TestRunJobCalibration(t *testing.T) {
	rng := newTestRand()
	means := [][]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}
	train := dpmm.SampleMixture(rng, means, []float64{0.3, 0.3, 0.4}, 0.1, 20, 50)
	val := dpmm.SampleMixture(rng, means, []float64{0.3, 0.3, 0.4}, 0.1, 5, 50)
	dir := t.TempDir()
	out := filepath.Join(dir, "m.safetensors")
	jr, err := RunJob(context.Background(), &Loaded{Data: train}, &Loaded{Data: val},
		JobOptions{Config: dpmm.Config{K: 12, Seed: 4}, Fit: dpmm.FitOptions{Epochs: 3, BatchSlices: 4}, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if jr.CalibrationUnit != "patch" || jr.CalibrationScores != val.Rows() {
		t.Fatalf("calibrated on %d %s scores", jr.CalibrationScores, jr.CalibrationUnit)
	}
	m, err := inference.LoadModel(out)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := inference.NewDPMMScorer(m)
	if err != nil {
		t.Fatal(err)
	}
	scores := make([]float32, val.Rows())
	sc.Score(val.X, val.Rows(), scores)
	for _, f := range dpmm.DefaultFPRs {
		th, err := m.Threshold(f)
		if err != nil {
			t.Fatal(err)
		}
		above := 0
		for _, s := range scores {
			if s > th {
				above++
			}
		}
		if float64(above) > f*float64(len(scores)) || above == 0 && f >= 0.05 {
			t.Errorf("FPR %v: %d of %d validation scores above %v", f, above, len(scores), th)
		}
	}
	for _, p := range []string{jr.CurvePath, jr.HistoryPath} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(61, 62)) }

// withPlanes gives the slices of d series of per slices each: a 20 x 40
// source geometry (a 5 x 10 grid of 4-pixel patches), axial planes 5 mm apart.
func withPlanes(d *dpmm.Data, per int) *Loaded {
	l := &Loaded{Data: d}
	g := inference.Geometry{SrcRows: 20, SrcCols: 40, ResizedRows: 20, ResizedCols: 40, Rows: 20, Cols: 40, Patch: 4, GridRows: 5, GridCols: 10}
	for i := 0; i < d.Slices(); i++ {
		p := &findings.Plane{Position: [3]float64{0, 0, 5 * float64(i%per)}, Orientation: [6]float64{1, 0, 0, 0, 1, 0}, Spacing: [2]float64{1, 1}}
		l.Geometries = append(l.Geometries, g)
		l.Series = append(l.Series, fmt.Sprintf("1.2.%d", i/per))
		l.Planes = append(l.Planes, p)
	}
	return l
}

// RunJob's finding limits must keep at most floor(series_fpr * series) of the
// healthy validation series with a finding, as the node extracts them with
// the limits the model file gives.
func TestRunJobFindings(t *testing.T) {
	rng := newTestRand()
	means := [][]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}
	train := dpmm.SampleMixture(rng, means, []float64{0.3, 0.3, 0.4}, 0.1, 20, 50)
	val := withPlanes(dpmm.SampleMixture(rng, means, []float64{0.3, 0.3, 0.4}, 0.2, 40, 50), 2)
	// Series 1.2.19's second slice is a localiser: another orientation.
	val.Planes[39].Orientation = [6]float64{0, 1, 0, 0, 0, -1}
	out := filepath.Join(t.TempDir(), "m.safetensors")
	minVol := 50.0
	jr, err := RunJob(context.Background(), &Loaded{Data: train}, val,
		JobOptions{Config: dpmm.Config{K: 12, Seed: 4}, Fit: dpmm.FitOptions{Epochs: 3, BatchSlices: 4}, Out: out, MinVolumeMM3: &minVol})
	if err != nil {
		t.Fatal(err)
	}
	if jr.Findings.Series != 19 || len(jr.Findings.Skipped) != 1 || !strings.Contains(jr.Findings.Skipped[0], "1.2.19") || jr.Findings.Warning != "" {
		t.Fatalf("finding calibration %+v", jr.Findings)
	}
	m, err := inference.LoadModel(out)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := inference.NewDPMMScorer(m)
	if err != nil {
		t.Fatal(err)
	}
	nontrivial := false
	for _, f := range dpmm.DefaultFPRs {
		p, ok, err := m.FindingParams(f, nil, nil)
		if err != nil || !ok || p.MinVolumeMM3 != 50 {
			t.Fatalf("FPR %v: %+v %v %v", f, p, ok, err)
		}
		nontrivial = nontrivial || p.PeakThreshold > p.PixelThreshold
		withFinding := 0
		for s := 0; s < 19; s++ {
			var in []findings.Slice
			for i := 2 * s; i < 2*s+2; i++ {
				pix, err := sliceScores(sc, val, i, true)
				if err != nil {
					t.Fatal(err)
				}
				in = append(in, findings.Slice{Plane: *val.Planes[i], Rows: 20, Cols: 40, Scores: pix})
			}
			res, err := findings.Extract(in, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Findings) > 0 {
				withFinding++
			}
		}
		if withFinding > 0 { // floor(0.05 * 19) = 0
			t.Errorf("FPR %v: %d of 19 healthy series with a finding under %+v", f, withFinding, p)
		}
	}
	if !nontrivial {
		t.Error("no healthy region reached 50 mm3 at any pixel threshold: the test proves nothing")
	}

	// A series with a slice without a plane is left out ...
	val.Planes[0] = nil
	jr, err = RunJob(context.Background(), &Loaded{Data: train}, val,
		JobOptions{Config: dpmm.Config{K: 12, Seed: 4}, Fit: dpmm.FitOptions{Epochs: 3, BatchSlices: 4}, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if jr.Findings.Series != 18 || len(jr.Findings.Skipped) != 2 || !strings.Contains(jr.Findings.Skipped[0], `"1.2.0": a slice without`) {
		t.Errorf("one plane missing: %+v", jr.Findings)
	}
	// ... and without any plane there is no calibration, and a warning.
	clear(val.Planes)
	jr, err = RunJob(context.Background(), &Loaded{Data: train}, val,
		JobOptions{Config: dpmm.Config{K: 12, Seed: 4}, Fit: dpmm.FitOptions{Epochs: 3, BatchSlices: 4}, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if jr.Findings.ByFPR != nil || jr.Findings.Warning == "" || jr.Model.Meta.Findings != nil {
		t.Errorf("no planes: %+v", jr.Findings)
	}
}
