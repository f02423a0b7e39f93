package inference

import (
	"errors"
	"math"
	"testing"

	"anomalynode/inference/findings"
	"anomalynode/inference/pixel"
	"anomalynode/internal/synth"
)

// Plane must give the same geometry from a classic series and from the
// enhanced multi-frame object of the same slices (whose frames come in
// another order), and finding extraction on those planes must find each
// synthetic lesion where synth painted it.
func TestSlicePlane(t *testing.T) {
	r, err := synth.Generate(synth.Options{Seed: 3, Slices: 6, Rows: 32, Cols: 28, Tilt: 20, Lesions: 1, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, s *pixel.Slice, k int) findings.Plane {
		p, err := Plane(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Orientation != r.Orientation || p.Spacing != [2]float64{r.PixelSpacing, r.PixelSpacing} || p.Thickness != r.SliceSpacing {
			t.Errorf("%s: plane %+v, want orientation %v spacing %v thickness %v", name, p, r.Orientation, r.PixelSpacing, r.SliceSpacing)
		}
		for i := range p.Position {
			if math.Abs(p.Position[i]-r.Slices[k].Position[i]) > 1e-3 {
				t.Errorf("%s: position %v, want %v", name, p.Position, r.Slices[k].Position)
				break
			}
		}
		return p
	}
	var in []findings.Slice
	for k := range r.Slices {
		b, err := r.EncodeSlice(k)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := pixel.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		p := check("classic", dec[0], k)
		// The lesion mask as a score map: one finding, where the lesion is.
		scores := make([]float32, r.Rows*r.Cols)
		for i, m := range r.Slices[k].Mask {
			scores[i] = float32(m)
		}
		in = append(in, findings.Slice{Plane: p, Rows: r.Rows, Cols: r.Cols, Scores: scores})
	}
	order := []int{4, 1, 5, 0, 3, 2}
	data, _, err := r.EncodeEnhanced(order)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := pixel.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for f, s := range frames {
		check("enhanced", s, order[f])
	}

	res, err := findings.Extract(in, findings.Params{PixelThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 {
		t.Fatalf("%d findings from one painted lesion", len(res.Findings))
	}
	// The mask is the painted ellipsoid cut by the slices, so its centroid is
	// near the lesion's centre (within a slice step).
	c, l := res.Findings[0].Centroid, r.Lesions[0].Center
	if d := math.Hypot(math.Hypot(c[0]-l[0], c[1]-l[1]), c[2]-l[2]); d > r.SliceSpacing {
		t.Errorf("finding centroid %v is %.1f mm from the lesion centre %v", c, d, l)
	}

	if _, err := Plane(&pixel.Slice{}); !errors.Is(err, ErrNoPlane) {
		t.Errorf("no header: %v", err)
	}
}
