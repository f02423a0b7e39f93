// Package pngplot writes aligned grids of gonum plots as PNG files, the one
// way the fitting (dpmm) and evaluation (eval) packages save their figures.
package pngplot

import (
	"fmt"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Save draws plots (rows of equally long rows) aligned on a w x h canvas, with
// pad's padding (its Rows and Cols are set from plots), and writes the canvas
// as a PNG to path. Errors are unprefixed (the caller names its package); a
// write error names path.
func Save(path string, plots [][]*plot.Plot, w, h vg.Length, pad draw.Tiles) error {
	img := vgimg.New(w, h)
	pad.Rows, pad.Cols = len(plots), len(plots[0])
	canvases := plot.Align(plots, pad, draw.New(img))
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
