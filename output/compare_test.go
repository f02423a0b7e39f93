package output

import (
	"path/filepath"
	"testing"

	"anomalynode/inference/findings"
	"anomalynode/internal/synth"
)

// TestCompareLesions compares SEGs with the painted lesions of a synthetic
// series: a SEG of exactly the lesions detects all with Dice 1 and centroids
// in place; a SEG beside them detects none; another series' SEG is ignored.
func TestCompareLesions(t *testing.T) {
	opts := synth.Options{Seed: 5, Slices: 14, Rows: 96, Cols: 96, Lesions: 3, Source: synth.SourcePhantom}
	res, files := synthResult(t, opts)
	dir := filepath.Dir(filepath.Dir(files[0]))
	exact := func(res *SeriesResult) []byte {
		as, err := Analyse(res, &findings.Params{PixelThreshold: 0.5, PeakThreshold: 0.5}, 99)
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := BuildAnalysisSEG(as[0], SEGOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return obj.Part10
	}
	rep, err := CompareLesions(dir, [][]byte{exact(res)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Lesions) == 0 || rep.Detected != len(rep.Lesions) || rep.Dice != 1 || rep.SEGs != 1 || rep.Segments != len(rep.Lesions) {
		t.Fatalf("exact SEG: %+v", rep)
	}
	for i, l := range rep.Lesions {
		if l.Dice != 1 || l.DistanceMM > 1e-6 {
			t.Errorf("lesion %d: %+v", i, l)
		}
	}
	big, err := CompareLesions(dir, [][]byte{exact(res)}, 1e12)
	if err != nil {
		t.Fatal(err)
	}
	if len(big.Lesions) != 0 || big.Small != len(rep.Lesions) {
		t.Errorf("a minimum volume above every lesion: %d counted, %d small", len(big.Lesions), big.Small)
	}

	// A blob in a corner, away from every lesion.
	for i := range res.Sources {
		s := &res.Sources[i]
		for j := range s.Scores {
			s.Scores[j] = 0.05
			if j/s.Cols < 6 && j%s.Cols < 6 {
				s.Scores[j] = 0.9
			}
		}
	}
	rep, err = CompareLesions(dir, [][]byte{exact(res)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detected != 0 || rep.Dice != 0 || rep.SEGVoxels != 14*36 {
		t.Fatalf("SEG beside the lesions: %+v", rep)
	}
	if rep.Lesions[0].DistanceMM != -1 {
		t.Error("an undetected lesion has a distance")
	}

	other, _ := synthResult(t, synth.Options{Seed: 6, Slices: 4, Rows: 32, Cols: 32, Lesions: 1, Source: synth.SourcePhantom})
	rep, err = CompareLesions(dir, [][]byte{exact(other)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SEGs != 0 || rep.SEGVoxels != 0 {
		t.Errorf("another series' SEG counted: %+v", rep)
	}
}
