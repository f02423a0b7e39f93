package eval

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"anomalynode/inference/internal/pngplot"
)

// Curve is a named line for a plot.
type Curve struct {
	// Name is the legend entry.
	Name string
	// Points are the line's vertices.
	Points []Point
}

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
}

func linePlot(title, xl, yl string, curves []Curve, unit bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xl
	p.Y.Label.Text = yl
	if unit {
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	}
	p.Add(plotter.NewGrid())
	for i, c := range curves {
		xys := make(plotter.XYs, len(c.Points))
		for j, pt := range c.Points {
			xys[j].X, xys[j].Y = pt.X, pt.Y
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("eval: plot %s: %w", title, err)
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		if c.Name != "" {
			p.Legend.Add(c.Name, l)
		}
	}
	p.Legend.Top = true
	return p, nil
}

// SaveCurves draws ROC and PR curves side by side into one PNG.
func SaveCurves(path string, roc, pr []Curve) error {
	rp, err := linePlot("ROC (pixel level)", "false-positive rate", "true-positive rate", roc, true)
	if err != nil {
		return err
	}
	rp.Legend.Top = false
	rp.Legend.Left = false
	pp, err := linePlot("Precision-recall (pixel level)", "recall", "precision", pr, true)
	if err != nil {
		return err
	}
	return saveGrid(path, [][]*plot.Plot{{rp, pp}}, 12*vg.Inch, 5*vg.Inch)
}

func saveGrid(path string, plots [][]*plot.Plot, w, h vg.Length) error {
	pad := draw.Tiles{PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	if err := pngplot.Save(path, plots, w, h, pad); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}
