package findings

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// axial is the orientation of an axial slice: rows along +x, columns along +y.
var axial = [6]float64{1, 0, 0, 0, 1, 0}

// mkStack returns axial rows x cols slices at the given z positions (input
// order), spacing 0.5 x 0.25 mm, all scores 0.
func mkStack(rows, cols int, z ...float64) []Slice {
	out := make([]Slice, len(z))
	for i, zz := range z {
		out[i] = Slice{
			Plane: Plane{Position: [3]float64{-10, 20, zz}, Orientation: axial, Spacing: [2]float64{0.5, 0.25}},
			Rows:  rows, Cols: cols, Scores: make([]float32, rows*cols),
		}
	}
	return out
}

// paint sets a rectangle [r0,r1) x [c0,c1) of slice s to v.
func paint(s Slice, r0, r1, c0, c1 int, v float32) {
	for r := r0; r < r1; r++ {
		for c := c0; c < c1; c++ {
			s.Scores[r*s.Cols+c] = v
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func TestExtractOneBlobUnsorted(t *testing.T) {
	// Input order z = 4, 0, 2: ranks are 1, 2, 0.
	s := mkStack(8, 8, 4, 0, 2)
	paint(s[0], 2, 4, 2, 5, 0.9) // rank 2: 2x3 voxels
	paint(s[2], 2, 4, 2, 5, 0.7) // rank 1
	s[2].Scores[2*8+2] = 0.95    // the peak
	res, err := Extract(s, Params{PixelThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Order, []int{1, 2, 0}; !equalInts(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if res.Regions != 1 || len(res.Findings) != 1 {
		t.Fatalf("regions %d findings %d, want 1 and 1", res.Regions, len(res.Findings))
	}
	f := res.Findings[0]
	// Steps of 2 mm: every slice extends 2 mm; a voxel is 0.5*0.25*2 mm3.
	if f.ID != 1 || f.Voxels != 12 || !near(f.VolumeMM3, 12*0.25) {
		t.Errorf("id %d voxels %d volume %v, want 1, 12, 3", f.ID, f.Voxels, f.VolumeMM3)
	}
	if f.Peak != 0.95 || math.Abs(float64(f.Mean)-(6*0.9+5*0.7+0.95)/12) > 1e-6 {
		t.Errorf("peak %v mean %v", f.Peak, f.Mean)
	}
	if f.FirstSlice != 1 || f.LastSlice != 2 {
		t.Errorf("slices %d..%d, want 1..2", f.FirstSlice, f.LastSlice)
	}
	// Rows 2,3 (mean 2.5) step 0.5 mm along y; columns 2..4 (mean 3) step 0.25 mm along x; z mean 3.
	want := [3]float64{-10 + 3*0.25, 20 + 2.5*0.5, 3}
	for k := range want {
		if !near(f.Centroid[k], want[k]) {
			t.Errorf("centroid %v, want %v", f.Centroid, want)
			break
		}
	}
	for i, lab := range res.Labels {
		n := 0
		for _, v := range lab {
			if v == 1 {
				n++
			} else if v != 0 {
				t.Fatalf("slice %d: label %d", i, v)
			}
		}
		if want := map[int]int{0: 6, 1: 0, 2: 6}[i]; n != want {
			t.Errorf("slice %d: %d labelled voxels, want %d", i, n, want)
		}
	}
}

func TestExtractTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		z       []float64
		paint   func(s []Slice)
		p       Params
		regions int
		// findings: voxels and peak of each kept finding, ID order.
		voxels []int
		peaks  []float32
	}{
		{
			name: "26-connected: corner contact across slices joins",
			z:    []float64{0, 1},
			paint: func(s []Slice) {
				paint(s[0], 1, 2, 1, 2, 0.8)
				paint(s[1], 2, 3, 2, 3, 0.9)
			},
			p: Params{PixelThreshold: 0.5}, regions: 1, voxels: []int{2}, peaks: []float32{0.9},
		},
		{
			name: "corner contact in plane joins, one column apart does not",
			z:    []float64{0},
			paint: func(s []Slice) {
				paint(s[0], 1, 2, 1, 3, 0.8) // cols 1,2
				paint(s[0], 2, 3, 3, 4, 0.8) // col 3, one row down: corner contact
				paint(s[0], 5, 6, 1, 2, 0.6) // col 1
				paint(s[0], 6, 7, 3, 4, 0.7) // col 3: a column apart from col 1
			},
			p: Params{PixelThreshold: 0.5}, regions: 3, voxels: []int{3, 1, 1}, peaks: []float32{0.8, 0.7, 0.6},
		},
		{
			name: "gap splits: 2 mm steps, then 6 mm",
			z:    []float64{0, 2, 4, 10, 12},
			paint: func(s []Slice) {
				for _, k := range []int{2, 3} {
					paint(s[k], 1, 3, 1, 3, 0.8)
				}
			},
			p: Params{PixelThreshold: 0.5}, regions: 2, voxels: []int{4, 4}, peaks: []float32{0.8, 0.8},
		},
		{
			name: "not adjacent in order: no contact through a clean slice",
			z:    []float64{0, 2, 4},
			paint: func(s []Slice) {
				paint(s[0], 1, 3, 1, 3, 0.8)
				paint(s[2], 1, 3, 1, 3, 0.9)
			},
			p: Params{PixelThreshold: 0.5}, regions: 2, voxels: []int{4, 4}, peaks: []float32{0.9, 0.8},
		},
		{
			name: "volume and peak limits; IDs by peak",
			z:    []float64{0, 2},
			paint: func(s []Slice) {
				paint(s[0], 0, 4, 0, 4, 0.6) // 16+16 voxels x 0.25 mm3 = 8 mm3, peak 0.6
				paint(s[1], 0, 4, 0, 4, 0.6)
				paint(s[0], 6, 8, 6, 8, 0.99) // 4 voxels = 1 mm3: too small
				paint(s[1], 6, 8, 0, 4, 0.8)  // 8 voxels = 2 mm3, peak 0.8
				paint(s[0], 0, 1, 6, 8, 0.55) // 2 voxels: too small and too weak
			},
			p:       Params{PixelThreshold: 0.5, MinVolumeMM3: 2, PeakThreshold: 0.6},
			regions: 4, voxels: []int{8, 32}, peaks: []float32{0.8, 0.6},
		},
		{
			name:    "at the pixel threshold is below it",
			z:       []float64{0},
			paint:   func(s []Slice) { paint(s[0], 0, 8, 0, 8, 0.5) },
			p:       Params{PixelThreshold: 0.5},
			regions: 0,
		},
		{
			name: "NaN scores are never above",
			z:    []float64{0},
			paint: func(s []Slice) {
				paint(s[0], 0, 8, 0, 8, float32(math.NaN()))
				paint(s[0], 3, 4, 3, 4, 0.9)
			},
			p: Params{PixelThreshold: 0.5}, regions: 1, voxels: []int{1}, peaks: []float32{0.9},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mkStack(8, 8, tc.z...)
			tc.paint(s)
			res, err := Extract(s, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Regions != tc.regions || len(res.Findings) != len(tc.voxels) {
				t.Fatalf("regions %d findings %d, want %d and %d: %+v", res.Regions, len(res.Findings), tc.regions, len(tc.voxels), res.Findings)
			}
			for i, f := range res.Findings {
				if f.ID != i+1 || f.Voxels != tc.voxels[i] || f.Peak != tc.peaks[i] {
					t.Errorf("finding %d: id %d voxels %d peak %v, want %d %d %v", i, f.ID, f.Voxels, f.Peak, i+1, tc.voxels[i], tc.peaks[i])
				}
				n := 0
				for _, lab := range res.Labels {
					for _, v := range lab {
						if int(v) == f.ID {
							n++
						}
					}
				}
				if n != f.Voxels {
					t.Errorf("finding %d: %d labelled voxels, want %d", f.ID, n, f.Voxels)
				}
			}
		})
	}
}

func TestExtractVolumes(t *testing.T) {
	// Steps 1, 3, 1: the typical step is 1, so the 3 mm step is a gap.
	s := mkStack(2, 2, 0, 1, 4, 5)
	for _, x := range s {
		paint(x, 0, 1, 0, 1, 1)
	}
	res, err := Extract(s, Params{PixelThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// Two regions of two slices,
	// each slice extending 1 mm; voxel area 0.125 mm2.
	if len(res.Findings) != 2 {
		t.Fatalf("%d findings, want 2", len(res.Findings))
	}
	for _, f := range res.Findings {
		if !near(f.VolumeMM3, 2*0.125) {
			t.Errorf("volume %v, want 0.25", f.VolumeMM3)
		}
	}

	// Uneven steps 1 and 1.4 (not a gap): the middle slice extends 0.5+0.7.
	s = mkStack(2, 2, 0, 1, 2.4)
	paint(s[1], 0, 1, 0, 1, 1)
	res, err = Extract(s, Params{PixelThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 || !near(res.Findings[0].VolumeMM3, 1.2*0.125) {
		t.Fatalf("findings %+v, want one of %v mm3", res.Findings, 1.2*0.125)
	}

	// A single slice: its thickness, else isotropic voxels.
	for _, tc := range []struct{ thick, want float64 }{{3, 3 * 0.125}, {0, math.Sqrt(0.125) * 0.125}} {
		s = mkStack(2, 2, 7)
		s[0].Plane.Thickness = tc.thick
		paint(s[0], 0, 1, 0, 1, 1)
		res, err = Extract(s, Params{PixelThreshold: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Findings) != 1 || !near(res.Findings[0].VolumeMM3, tc.want) {
			t.Errorf("thickness %v: findings %+v, want one of %v mm3", tc.thick, res.Findings, tc.want)
		}
	}
}

func TestExtractSagittal(t *testing.T) {
	// Sagittal: rows along +y, columns along -z; the normal is -x, so the slice
	// at x=5 comes before x=0 along it.
	s := mkStack(4, 4, 0, 0)
	for i, x := range []float64{0, 5} {
		s[i].Plane.Orientation = [6]float64{0, 1, 0, 0, 0, -1}
		s[i].Plane.Position = [3]float64{x, 0, 0}
	}
	paint(s[0], 1, 2, 2, 3, 0.9)
	res, err := Extract(s, Params{PixelThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(res.Order, []int{1, 0}) {
		t.Errorf("order %v, want [1 0]", res.Order)
	}
	f := res.Findings[0]
	// Column 2 at 0.25 mm along +y, row 1 at 0.5 mm along -z.
	if want := [3]float64{0, 0.5, -0.5}; f.Centroid != want || f.FirstSlice != 1 {
		t.Errorf("centroid %v first slice %d, want %v and 1", f.Centroid, f.FirstSlice, want)
	}
}

func TestExtractGeometryErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s []Slice)
	}{
		{"orientation differs", func(s []Slice) { s[1].Plane.Orientation = [6]float64{1, 0, 0, 0, 0, -1} }},
		{"size differs", func(s []Slice) { s[1].Rows, s[1].Cols, s[1].Scores = 4, 16, make([]float32, 64) }},
		{"scores short", func(s []Slice) { s[1].Scores = s[1].Scores[:10] }},
		{"spacing differs", func(s []Slice) { s[1].Plane.Spacing = [2]float64{0.5, 0.3} }},
		{"spacing zero", func(s []Slice) {
			for i := range s {
				s[i].Plane.Spacing = [2]float64{0, 0.25}
			}
		}},
		{"same position", func(s []Slice) { s[1].Plane.Position[2] = 0 }},
		{"not orthogonal", func(s []Slice) {
			for i := range s {
				s[i].Plane.Orientation = [6]float64{1, 0, 0, 1, 0, 0}
			}
		}},
		{"position NaN", func(s []Slice) { s[1].Plane.Position[2] = math.NaN() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mkStack(8, 8, 0, 2)
			tc.mutate(s)
			if _, err := Extract(s, Params{}); !errors.Is(err, ErrGeometry) {
				t.Fatalf("err %v, want ErrGeometry", err)
			}
		})
	}
	if _, err := Extract(mkStack(2, 2, 0), Params{MinVolumeMM3: -1}); err == nil || errors.Is(err, ErrGeometry) {
		t.Errorf("negative min volume: err %v", err)
	}
	res, err := Extract(nil, Params{})
	if err != nil || len(res.Findings) != 0 {
		t.Errorf("no slices: %v, %v", res, err)
	}
}

// TestExtractMatchesFloodFill compares the run-based labelling with a plain
// 26-connected flood fill over random sparse volumes.
func TestExtractMatchesFloodFill(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 50; trial++ {
		rows, cols, n := 3+rng.IntN(12), 3+rng.IntN(12), 1+rng.IntN(6)
		z := make([]float64, n)
		for i := range z {
			z[i] = float64(i) * 1.5
		}
		rng.Shuffle(n, func(i, j int) { z[i], z[j] = z[j], z[i] })
		s := mkStack(rows, cols, z...)
		density := 0.1 + 0.4*rng.Float64()
		for _, x := range s {
			for i := range x.Scores {
				if rng.Float64() < density {
					x.Scores[i] = 0.5 + 0.5*rng.Float32()
				}
			}
		}
		res, err := Extract(s, Params{PixelThreshold: 0.4})
		if err != nil {
			t.Fatal(err)
		}
		want := floodFill(s, res.Order, 0.4)
		if res.Regions != len(want) || len(res.Findings) != len(want) {
			t.Fatalf("trial %d: %d regions, %d findings; flood fill %d", trial, res.Regions, len(res.Findings), len(want))
		}
		// Same partition: every flood-fill component maps to one label and
		// every label to one component.
		labelOf := map[int]uint16{}
		compOf := map[uint16]int{}
		for v, comp := range want {
			for _, vox := range comp {
				lab := res.Labels[vox[0]][vox[1]]
				if lab == 0 {
					t.Fatalf("trial %d: voxel %v unlabelled", trial, vox)
				}
				if l, ok := labelOf[v]; ok && l != lab {
					t.Fatalf("trial %d: component %d split into labels %d and %d", trial, v, l, lab)
				}
				if c, ok := compOf[lab]; ok && c != v {
					t.Fatalf("trial %d: label %d joins components %d and %d", trial, lab, c, v)
				}
				labelOf[v], compOf[lab] = lab, v
			}
		}
	}
}

// floodFill labels s by breadth-first search over the 26 neighbours, ranks
// taken from order; it returns each component as (input slice, pixel) pairs.
func floodFill(s []Slice, order []int, t float32) [][][2]int {
	rows, cols := s[0].Rows, s[0].Cols
	seen := make([][]bool, len(s))
	for i := range seen {
		seen[i] = make([]bool, rows*cols)
	}
	var comps [][][2]int
	for rank := range order {
		for p := 0; p < rows*cols; p++ {
			if seen[order[rank]][p] || !(s[order[rank]].Scores[p] > t) {
				continue
			}
			var comp [][2]int
			queue := [][3]int{{rank, p / cols, p % cols}}
			seen[order[rank]][p] = true
			for len(queue) > 0 {
				v := queue[0]
				queue = queue[1:]
				comp = append(comp, [2]int{order[v[0]], v[1]*cols + v[2]})
				for dk := -1; dk <= 1; dk++ {
					for dr := -1; dr <= 1; dr++ {
						for dc := -1; dc <= 1; dc++ {
							k, r, c := v[0]+dk, v[1]+dr, v[2]+dc
							if k < 0 || k >= len(order) || r < 0 || r >= rows || c < 0 || c >= cols {
								continue
							}
							i, q := order[k], r*cols+c
							if !seen[i][q] && s[i].Scores[q] > t {
								seen[i][q] = true
								queue = append(queue, [3]int{k, r, c})
							}
						}
					}
				}
			}
			comps = append(comps, comp)
		}
	}
	return comps
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkExtract measures finding extraction on a 32-slice 512x512 series
// whose score map paints about 1 % of every slice in small blobs plus one
// lesion, as a healthy-looking series at FPR 1 % does; the ms/series metric is
// the row to set against the model's time per series (make bench).
func BenchmarkExtract(b *testing.B) {
	const n, size = 32, 512
	z := make([]float64, n)
	for i := range z {
		z[i] = float64(i) * 3
	}
	s := mkStack(size, size, z...)
	rng := rand.New(rand.NewPCG(3, 4))
	for k, x := range s {
		for i := range x.Scores {
			x.Scores[i] = 0.3 * rng.Float32()
		}
		for blob := 0; blob < 40; blob++ {
			r, c := rng.IntN(size-8), rng.IntN(size-8)
			paint(x, r, r+8, c, c+8, 0.6+0.1*rng.Float32())
		}
		if k >= 10 && k < 16 {
			paint(x, 200, 240, 200, 240, 0.9)
		}
	}
	p := Params{PixelThreshold: 0.5, MinVolumeMM3: 100, PeakThreshold: 0.8}
	b.ResetTimer()
	var res *Result
	for i := 0; i < b.N; i++ {
		var err error
		if res, err = Extract(s, p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(res.Findings) != 1 {
		b.Fatalf("%d findings, want the one lesion", len(res.Findings))
	}
	ms := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/series")
	b.ReportMetric(ms/n, "ms/slice")
	b.ReportMetric(float64(res.Regions), "regions")
}
