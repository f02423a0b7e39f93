package eval

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 300 {
		t.Fatalf("%s is %v", path, b)
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	m := compute(t, []float32{0.8, 0.4, 0.4}, []float32{0.6, 0.4, 0.2}, nil)
	if err := SaveCurves(filepath.Join(dir, "curves.png"), []Curve{{"dpmm", m.ROC}}, []Curve{{"dpmm", m.PR}}); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, "curves.png"))
}
