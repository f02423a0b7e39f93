package inference

import (
	"math"
	"path/filepath"
	"testing"

	"anomalynode/inference/pixel"
	"anomalynode/internal/npy"
)

func loadGolden(t *testing.T, name string) *npy.Array {
	t.Helper()
	a, err := npy.Read(filepath.Join("testdata", "golden", name+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPreprocessGolden compares the whole preprocessing against an
// independent NumPy + Pillow reference (testdata/gen_golden.py): odd sizes,
// rescale, model window, percentile, MONOCHROME1, negative slope, down- and
// up-scaling.
func TestPreprocessGolden(t *testing.T) {
	cases := []struct {
		name             string
		slope, intercept float64
		spec             PreprocessSpec
		photometric      string
		res              int
	}{
		{"ct_window", 1, -24, PreprocessSpec{VOI: VOIModelWindow, WindowCenter: 40, WindowWidth: 400}, "MONOCHROME2", 28},
		{"mr_percentile_mono1", 2.5, 10, PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5}, "MONOCHROME1", 56},
		{"neg_slope_percentile", -0.5, 100, PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5}, "MONOCHROME2", 28},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := loadGolden(t, tc.name+"_stored")
			grey := loadGolden(t, tc.name+"_grey")
			tensor := loadGolden(t, tc.name+"_tensor")
			s := &pixel.Slice{Rows: st.Shape[0], Cols: st.Shape[1], Slope: tc.slope, Intercept: tc.intercept, Photometric: tc.photometric, MinStored: -32768, MaxStored: 32767}
			for _, v := range st.F32 {
				s.Stored = append(s.Stored, int32(v))
			}
			p := &Preprocessor{Resolution: tc.res, PatchSize: 14, VOI: tc.spec}
			pr, err := p.Preprocess(s)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range grey.F32 {
				if math.Abs(float64(pr.Grey[i]-v)) > 1e-6 {
					t.Fatalf("grey[%d] = %v, reference %v", i, pr.Grey[i], v)
				}
			}
			g := pr.Geometry
			if tensor.Shape[0] != 3 || tensor.Shape[1] != g.Rows || tensor.Shape[2] != g.Cols {
				t.Fatalf("tensor %dx%d, reference shape %v", g.Rows, g.Cols, tensor.Shape)
			}
			var worst float64
			for i, v := range tensor.F32 {
				worst = max(worst, math.Abs(float64(pr.Tensor[i]-v)))
			}
			// float32 accumulation here vs float64 accumulation in Pillow.
			if worst > 2e-5 {
				t.Fatalf("tensor differs from the Pillow reference by up to %g", worst)
			}
			t.Logf("%s: %dx%d -> %dx%d (crop of %dx%d), max |diff| %.2g", tc.name, s.Rows, s.Cols, g.Rows, g.Cols, g.ResizedRows, g.ResizedCols, worst)
		})
	}
}

// TestPreprocessKnownValues checks hand-computed values: at scale 1 the
// bicubic resize is the identity, so the tensor is the normalised grey image.
func TestPreprocessKnownValues(t *testing.T) {
	s := &pixel.Slice{Rows: 14, Cols: 14, Slope: 2, Intercept: -1000, Photometric: "MONOCHROME1", MinStored: 0, MaxStored: 4095}
	s.Stored = make([]int32, 14*14)
	for i := range s.Stored {
		s.Stored[i] = int32(400 + 2*i) // modality values -200 .. 580
	}
	p := &Preprocessor{Resolution: 14, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIModelWindow, WindowCenter: 0, WindowWidth: 401}}
	pr, err := p.Preprocess(s)
	if err != nil {
		t.Fatal(err)
	}
	// Stored 400 -> HU -200: below c-0.5-(w-1)/2 = -200.5? No: -200 > -200.5, so
	// (x-(c-0.5))/(w-1)+0.5 = (-199.5)/400+0.5 = 0.00125, inverted 0.99875.
	// Stored 500 -> HU 0 -> 0.50125 -> inverted 0.49875. HU >= 200 -> 1 -> 0.
	checks := map[int]float32{0: 0.99875, 50: 0.49875, 150: 0}
	for i, want := range checks {
		if got := pr.Grey[i]; math.Abs(float64(got-want)) > 1e-6 {
			t.Errorf("grey[%d] = %v, want %v", i, got, want)
		}
		for c := 0; c < 3; c++ {
			wantT := (want - imageNetMean[c]) / imageNetStd[c]
			if got := pr.Tensor[c*196+i]; math.Abs(float64(got-wantT)) > 1e-5 {
				t.Errorf("tensor[%d,%d] = %v, want %v", c, i, got, wantT)
			}
		}
	}
	// Header window with the slice's own centre/width.
	s2 := *s
	s2.Photometric = "MONOCHROME2"
	s2.WindowCenter, s2.WindowWidth, s2.HasWindow = 0, 401, true
	ph := &Preprocessor{Resolution: 14, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIHeader}}
	pr2, err := ph.Preprocess(&s2)
	if err != nil {
		t.Fatal(err)
	}
	if pr2.VOI != VOIHeader || math.Abs(float64(pr2.Grey[50]-0.50125)) > 1e-6 {
		t.Errorf("header window: %s grey[50] = %v", pr2.VOI, pr2.Grey[50])
	}
	// No header window: percentile fallback, and it says so.
	s2.HasWindow = false
	pr3, err := ph.Preprocess(&s2)
	if err != nil {
		t.Fatal(err)
	}
	if pr3.VOI == VOIHeader || pr3.Grey[0] != 0 || pr3.Grey[195] != 1 {
		t.Errorf("fallback: %s grey[0]=%v grey[195]=%v", pr3.VOI, pr3.Grey[0], pr3.Grey[195])
	}
}

func TestGeometry(t *testing.T) {
	p := &Preprocessor{Resolution: 448, PatchSize: 14}
	cases := []struct {
		rows, cols                 int
		rr, rc, r, c, gridR, gridC int
	}{
		{512, 512, 448, 448, 448, 448, 32, 32},
		{256, 256, 448, 448, 448, 448, 32, 32},
		{512, 640, 448, 560, 448, 560, 32, 40},
		{217, 181, 537, 448, 532, 448, 38, 32},
	}
	for _, tc := range cases {
		g, err := p.Geometry(tc.rows, tc.cols)
		if err != nil {
			t.Fatal(err)
		}
		if g.ResizedRows != tc.rr || g.ResizedCols != tc.rc || g.Rows != tc.r || g.Cols != tc.c || g.GridRows != tc.gridR || g.GridCols != tc.gridC {
			t.Errorf("%dx%d: got %+v", tc.rows, tc.cols, g)
		}
	}
}

// TestMapGeometry: a bright square in the source must come back at the same
// place after preprocessing, a per-patch "score" (the patch's mean
// intensity), upsampling to the source size.
func TestMapGeometry(t *testing.T) {
	for _, sz := range [][2]int{{512, 512}, {300, 420}, {181, 217}} {
		rows, cols := sz[0], sz[1]
		s := &pixel.Slice{Rows: rows, Cols: cols, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 255, Stored: make([]int32, rows*cols)}
		r0, r1, c0, c1 := rows*3/5, rows*3/5+rows/6, cols/5, cols/5+cols/6
		for r := r0; r < r1; r++ {
			for c := c0; c < c1; c++ {
				s.Stored[r*cols+c] = 255
			}
		}
		p := &Preprocessor{Resolution: 448, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIModelWindow, WindowCenter: 127.5, WindowWidth: 256}}
		pr, err := p.Preprocess(s)
		if err != nil {
			t.Fatal(err)
		}
		g := pr.Geometry
		patch := make([]float32, g.Patches())
		plane := pr.Tensor[:g.Rows*g.Cols] // channel 0
		for gy := 0; gy < g.GridRows; gy++ {
			for gx := 0; gx < g.GridCols; gx++ {
				var sum float32
				for y := gy * 14; y < gy*14+14; y++ {
					for x := gx * 14; x < gx*14+14; x++ {
						sum += plane[y*g.Cols+x]*imageNetStd[0] + imageNetMean[0]
					}
				}
				patch[gy*g.GridCols+gx] = sum / 196
			}
		}
		m := make([]float32, rows*cols)
		Upsample(patch, g, m)
		mask := make([]uint8, rows*cols)
		Threshold(m, 0.5, mask)
		// The half-maximum contour of the blurred square must lie within one patch
		// (in source pixels) of the true edges, everywhere.
		tol := 14 * g.ScaleY()
		var wrong int
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				inside := r >= r0 && r < r1 && c >= c0 && c < c1
				dist := math.Max(math.Max(float64(r0-r), float64(r-r1+1)), math.Max(float64(c0-c), float64(c-c1+1)))
				if (mask[r*cols+c] == 1) != inside && math.Abs(dist) > tol {
					wrong++
				}
			}
		}
		if wrong > 0 {
			t.Errorf("%dx%d: %d pixels misplaced by more than %.1f px", rows, cols, wrong, tol)
		}
		// Centre of mass of the mask vs the square's centre: sub-patch accuracy.
		var sr, sc, n float64
		for i, v := range mask {
			if v == 1 {
				sr += float64(i / cols)
				sc += float64(i % cols)
				n++
			}
		}
		cr, cc := float64(r0+r1-1)/2, float64(c0+c1-1)/2
		if n == 0 || math.Abs(sr/n-cr) > 1.5 || math.Abs(sc/n-cc) > 1.5 {
			t.Errorf("%dx%d: mask centre (%.1f,%.1f), square centre (%.1f,%.1f)", rows, cols, sr/n, sc/n, cr, cc)
		}
	}
}

func TestUpsampleConstantAndLinear(t *testing.T) {
	p := &Preprocessor{Resolution: 448, PatchSize: 14}
	g, _ := p.Geometry(500, 700)
	patch := make([]float32, g.Patches())
	for i := range patch {
		patch[i] = 0.25
	}
	out := make([]float32, 500*700)
	Upsample(patch, g, out)
	for _, v := range out {
		if v != 0.25 {
			t.Fatalf("constant grid upsampled to %v", v)
		}
	}
	// A grid linear in the column index stays linear in source x between the
	// first and last patch centres: value at source column c = patch coordinate.
	for gy := 0; gy < g.GridRows; gy++ {
		for gx := 0; gx < g.GridCols; gx++ {
			patch[gy*g.GridCols+gx] = float32(gx)
		}
	}
	Upsample(patch, g, out)
	for _, c := range []int{40, 333, 600} {
		want := (float64(c)+0.5)/(g.ScaleX()*14) - 0.5
		if got := out[250*700+c]; math.Abs(float64(got)-want) > 1e-4 {
			t.Errorf("column %d: %v, want %v", c, got, want)
		}
	}
}

func TestTopMean(t *testing.T) {
	x := make([]float32, 1000)
	for i := range x {
		x[(i*7919)%1000] = float32(i)
	}
	mx, mean := TopMean(x, 0.01)
	if mx != 999 || mean != 994.5 {
		t.Fatalf("TopMean = %v, %v; want 999, 994.5", mx, mean)
	}
	if x[0] != 0 {
		t.Fatal("TopMean modified its input")
	}
}

// TestRobustVOI checks the robust policy on hand-computed values: the level
// is the median of the above-mean pixels, values map to y / (3 level)
// clipped to [0,1], MONOCHROME1 is mirrored within the stored range first
// (so it gives the MONOCHROME2 result of the mirrored data), and a blank
// slice maps to 0.
func TestRobustVOI(t *testing.T) {
	// 10 pixels: 5 of background 0, then 100, 200, 300, 400, 2000 (mean 300).
	// Above-mean: 400 and 2000 -> lower median 400; level 3 x 400 = 1200.
	stored := []int32{0, 0, 0, 0, 0, 100, 200, 300, 400, 2000}
	s := &pixel.Slice{Rows: 1, Cols: 10, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 4095, Stored: stored}
	p := &Preprocessor{Resolution: 14, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIRobust}}
	grey := make([]float32, 10)
	pol, err := p.Grey(s, grey)
	if err != nil || pol != VOIRobust {
		t.Fatalf("policy %q, %v", pol, err)
	}
	want := []float32{0, 0, 0, 0, 0, 100. / 1200, 200. / 1200, 300. / 1200, 400. / 1200, 1}
	for i := range want {
		if math.Abs(float64(grey[i]-want[i])) > 1e-6 {
			t.Errorf("grey[%d] = %v, want %v", i, grey[i], want[i])
		}
	}
	// The same image stored inverted as MONOCHROME1 (v = 4095 - u) with
	// slope 2, intercept 10: modality x = 2v + 10 = 8200 - 2u; mirrored
	// within [aff(0), aff(4095)] = [10, 8200]: y = 8210 - x = 2u + 10.
	m1 := &pixel.Slice{Rows: 1, Cols: 10, Slope: 2, Intercept: 10, Photometric: "MONOCHROME1", MinStored: 0, MaxStored: 4095}
	for _, u := range stored {
		m1.Stored = append(m1.Stored, 4095-u)
	}
	if _, err := p.Grey(m1, grey); err != nil {
		t.Fatal(err)
	}
	// y = 2u + 10: mean 610, above-mean 810 and 4010 -> level 810.
	for i, u := range stored {
		w := min(float64(2*u+10)/(3*810), 1)
		if math.Abs(float64(grey[i])-w) > 1e-6 {
			t.Errorf("MONOCHROME1 grey[%d] = %v, want %v", i, grey[i], w)
		}
	}
	blank := &pixel.Slice{Rows: 1, Cols: 10, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 4095, Stored: make([]int32, 10)}
	if _, err := p.Grey(blank, grey); err != nil {
		t.Fatal(err)
	}
	for i, v := range grey {
		if v != 0 {
			t.Fatalf("blank slice: grey[%d] = %v", i, v)
		}
	}
	if err := (&PreprocessSpec{VOI: VOIRobust}).Validate(); err != nil {
		t.Errorf("robust spec: %v", err)
	}
}
