package fitjob

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"anomalynode/inference/dpmm"
	"anomalynode/inference/internal/pngplot"
)

// SaveTrainingCurve draws the validation mean log-likelihood and the number of
// active components per epoch, one above the other, into a PNG at path.
func SaveTrainingCurve(path string, history []dpmm.EpochStats) error {
	ll := make(plotter.XYs, len(history))
	active := make(plotter.XYs, len(history))
	for i, h := range history {
		ll[i].X, ll[i].Y = float64(h.Epoch), h.ValLogLikelihood
		active[i].X, active[i].Y = float64(h.Epoch), float64(h.Active)
	}
	mk := func(title, yl string, xys plotter.XYs) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "epoch"
		p.Y.Label.Text = yl
		p.Add(plotter.NewGrid())
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("fitjob: plot: %w", err)
		}
		l.Width = vg.Points(1.5)
		p.Add(l, s)
		return p, nil
	}
	lp, err := mk("Validation mean log-likelihood per patch", "log-likelihood", ll)
	if err != nil {
		return err
	}
	ap, err := mk("Active components (weight > tau)", "components", active)
	if err != nil {
		return err
	}
	pad := draw.Tiles{PadY: 6 * vg.Millimeter, PadTop: 2 * vg.Millimeter,
		PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	if err := pngplot.Save(path, [][]*plot.Plot{{lp}, {ap}}, 8*vg.Inch, 8*vg.Inch, pad); err != nil {
		return fmt.Errorf("fitjob: %w", err)
	}
	return nil
}
