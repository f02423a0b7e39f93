package dpmm

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"anomalynode/inference"
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
	if err := inference.WriteNPY(path, &inference.Array{Shape: shape, Dtype: inference.DtypeFloat32, F32: x}); err != nil {
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
	train := mixtureData(rng, means, []float64{0.3, 0.3, 0.4}, 0.1, 20, 50)
	val := mixtureData(rng, means, []float64{0.3, 0.3, 0.4}, 0.1, 5, 50)
	dir := t.TempDir()
	out := filepath.Join(dir, "m.safetensors")
	jr, err := RunJob(context.Background(), &Loaded{Data: train}, &Loaded{Data: val},
		JobOptions{Config: Config{K: 12, Seed: 4}, Fit: FitOptions{Epochs: 3, BatchSlices: 4}, Out: out})
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
	for _, f := range DefaultFPRs {
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
