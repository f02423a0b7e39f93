package findings

import (
	"math"
	"math/rand/v2"
	"testing"
)

// twenty returns 20 healthy series; series i has one 200 mm3 region of peak
// 0.1*(i+1) and one 50 mm3 region of peak 5.
func twenty() []SeriesRegions {
	s := make([]SeriesRegions, 20)
	for i := range s {
		s[i] = SeriesRegions{Voxels: 1000, Regions: []Region{
			{VolumeMM3: 200, Peak: float32(i+1) / 10, Voxels: 20},
			{VolumeMM3: 50, Peak: 5, Voxels: 5},
		}}
	}
	return s
}

func TestCalibrationParams(t *testing.T) {
	c := &Calibration{PixelFPR: 0.01, PixelThreshold: 0.05, Series: twenty()}
	for _, tc := range []struct {
		name           string
		seriesFPR, vol float64
		wantPeak       float32 // the peak threshold is just above this
		wantSeries     int
	}{
		{"5 % of 20: one series may show", 0.05, 100, 1.9, 1},
		{"0: none", 0, 100, 2.0, 0},
		{"10 %: two", 0.10, 100, 1.8, 2},
		{"small volume: the 50 mm3 regions count", 0.05, 10, 5, 0},
		{"nothing that big: pixel threshold", 0.05, 300, 0.05, 0},
		{"everything allowed", 1, 100, 0.05, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := c.Params(tc.seriesFPR, tc.vol)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantPeak
			if want != c.PixelThreshold {
				want = math.Nextafter32(tc.wantPeak, 10)
			}
			if p.PeakThreshold != want || p.PixelThreshold != 0.05 || p.MinVolumeMM3 != tc.vol {
				t.Errorf("params %+v, want peak %v", p, want)
			}
			if n := c.SeriesWithFindings(p); n != tc.wantSeries {
				t.Errorf("%d series with findings, want %d", n, tc.wantSeries)
			}
		})
	}
	for _, bad := range [][2]float64{{-0.1, 100}, {1.1, 100}, {math.NaN(), 100}, {0.05, -1}, {0.05, math.Inf(1)}, {0.05, math.NaN()}} {
		if _, err := c.Params(bad[0], bad[1]); err == nil {
			t.Errorf("Params(%v, %v): no error", bad[0], bad[1])
		}
	}
}

func TestCalibrate(t *testing.T) {
	c, err := Calibrate(twenty(), 0.01, 0.05, 0.05, 100)
	if err != nil {
		t.Fatal(err)
	}
	if c.PeakThreshold != math.Nextafter32(1.9, 10) || c.SeriesFPR != 0.05 || c.MinVolumeMM3 != 100 {
		t.Errorf("calibration %+v", c)
	}
	// Only series 20's 200 mm3 region (20 voxels) of 20000 voxels is kept.
	if want := 20.0 / 20000; math.Abs(c.ImpliedPixelFPR-want) > 1e-12 {
		t.Errorf("implied pixel FPR %v, want %v", c.ImpliedPixelFPR, want)
	}
	if _, err := Calibrate(nil, 0.01, 0.05, 0.05, 100); err == nil {
		t.Error("no series: no error")
	}
}

// TestKeepRegionsExact checks that the stored regions decide every series
// exactly as all its regions do, for any limits.
func TestKeepRegionsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 200; trial++ {
		var rs []Region
		for i := rng.IntN(300); i > 0; i-- {
			rs = append(rs, Region{VolumeMM3: math.Exp(rng.Float64() * 8), Peak: rng.Float32(), Voxels: 1 + rng.IntN(50)})
		}
		full := &Calibration{Series: []SeriesRegions{{Voxels: 1 << 20, Regions: rs}}}
		kept := keepRegions(rs, MaxStoredRegions)
		stored := &Calibration{Series: []SeriesRegions{{Voxels: 1 << 20, Regions: kept}}}
		if len(kept) > MaxStoredRegions || (len(rs) >= MaxStoredRegions && len(kept) != MaxStoredRegions) {
			t.Fatalf("kept %d of %d", len(kept), len(rs))
		}
		front := 0
		for _, r := range rs {
			dominated := false
			for _, o := range rs {
				if o.VolumeMM3 >= r.VolumeMM3 && o.Peak >= r.Peak && (o.VolumeMM3 > r.VolumeMM3 || o.Peak > r.Peak) {
					dominated = true
					break
				}
			}
			if !dominated {
				front++
			}
		}
		if front > MaxStoredRegions {
			continue // thinned: exactness is not promised
		}
		for q := 0; q < 50; q++ {
			p := Params{MinVolumeMM3: math.Exp(rng.Float64() * 8), PeakThreshold: rng.Float32()}
			if a, b := full.SeriesWithFindings(p), stored.SeriesWithFindings(p); a != b {
				t.Fatalf("trial %d: limits %+v: all regions say %d, stored say %d", trial, p, a, b)
			}
		}
	}
}

func TestCalibrationValidate(t *testing.T) {
	good := func() *Calibration {
		c, err := Calibrate(twenty(), 0.01, 0.05, 0.05, 100)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(c *Calibration){
		"pixel fpr":        func(c *Calibration) { c.PixelFPR = 0 },
		"peak below pixel": func(c *Calibration) { c.PeakThreshold = 0 },
		"NaN threshold":    func(c *Calibration) { c.PixelThreshold = float32(math.NaN()) },
		"series fpr":       func(c *Calibration) { c.SeriesFPR = 2 },
		"min volume":       func(c *Calibration) { c.MinVolumeMM3 = -1 },
		"implied":          func(c *Calibration) { c.ImpliedPixelFPR = 1.5 },
		"no series":        func(c *Calibration) { c.Series = nil },
		"too many regions": func(c *Calibration) { c.Series[0].Regions = make([]Region, MaxStoredRegions+1) },
		"empty region":     func(c *Calibration) { c.Series[0].Regions[0].Voxels = 0 },
		"no voxels":        func(c *Calibration) { c.Series[0].Voxels = 0 },
	} {
		c := good()
		mutate(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSeriesRegionsOf(t *testing.T) {
	s := mkStack(8, 8, 0, 2)
	paint(s[0], 0, 2, 0, 2, 0.9)
	paint(s[1], 0, 2, 0, 2, 0.7)
	paint(s[1], 5, 6, 5, 6, 0.6)
	sr, err := SeriesRegionsOf(s, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Voxels != 128 || len(sr.Regions) != 2 {
		t.Fatalf("%+v", sr)
	}
	if r := sr.Regions[0]; r.Voxels != 8 || r.Peak != 0.9 || !near(r.VolumeMM3, 8*0.25) {
		t.Errorf("region %+v", r)
	}
}
