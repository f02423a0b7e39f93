package pngplot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func TestSave(t *testing.T) {
	mk := func() *plot.Plot {
		p := plot.New()
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 2}})
		if err != nil {
			t.Fatal(err)
		}
		p.Add(l)
		return p
	}
	path := filepath.Join(t.TempDir(), "grid.png")
	pad := draw.Tiles{PadX: vg.Millimeter, PadY: vg.Millimeter}
	if err := Save(path, [][]*plot.Plot{{mk(), mk()}, {mk(), mk()}}, 4*vg.Inch, 3*vg.Inch, pad); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	// vgimg's default resolution is 96 dpi.
	if cfg.Width != 4*96 || cfg.Height != 3*96 {
		t.Fatalf("PNG %dx%d, want %dx%d", cfg.Width, cfg.Height, 4*96, 3*96)
	}
	if err := Save(filepath.Join(t.TempDir(), "missing", "x.png"), [][]*plot.Plot{{mk()}}, vg.Inch, vg.Inch, pad); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}
