package findings

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Tolerances of the one-stack check. DICOM writes these values as decimal
// strings of at most 16 characters, so slices of one stack agree far better
// than this; anything worse is a different stack (a localiser, a second
// orientation) that must not be joined into one volume.
const (
	cosineTol  = 1e-3 // per direction-cosine component
	spacingTol = 1e-3 // relative, per pixel spacing
	samePosMM  = 1e-3 // two slices closer than this along the normal are one position
	// gapFactor: a step between neighbouring slices longer than this many
	// typical steps is a gap; regions do not connect across it.
	gapFactor = 1.5
)

// stack is the geometry Extract derives once per series.
type stack struct {
	order   []int     // input indices along the normal, ascending
	extent  []float64 // per rank: the slice's extent along the normal (mm)
	joined  []bool    // per rank: voxels of rank k connect to rank k-1
	rowDir  [3]float64
	colDir  [3]float64
	rows    int
	cols    int
	spacing [2]float64
}

// run is a horizontal run of above-threshold pixels [c0, c1) in one row of one
// slice (by rank), with its score sum and maximum. Extract labels runs, not
// voxels: above-threshold voxels are a few percent of a series, so a union-find
// over runs touches far less memory than a voxel label volume.
type run struct {
	rank, row, c0, c1 int32
	sum               float64
	peak              float32
}

// Extract finds the findings of one series: the 3-D connected components of
// voxels whose score is above p.PixelThreshold, kept when their volume is at
// least p.MinVolumeMM3 and their peak at least p.PeakThreshold.
//
// Slices may come in any order; they are ordered along the normal of their
// common orientation. Components are 26-connected: two voxels touching at a
// face, an edge or a corner are one region, the way a viewer's 2-D 8-connected
// fill sees a blob, so an oblique or thin lesion stays one finding instead of
// breaking into several small ones that each miss the volume limit. Slices
// farther apart than gapFactor typical steps (a gapped series) do not connect.
// It returns ErrGeometry (wrapped) when the slices do not form one stack.
func Extract(in []Slice, p Params) (*Result, error) {
	if len(in) == 0 {
		return &Result{}, nil
	}
	if math.IsNaN(p.MinVolumeMM3) || p.MinVolumeMM3 < 0 {
		return nil, fmt.Errorf("findings: min volume %v mm3 must be >= 0", p.MinVolumeMM3)
	}
	st, runs, compOf, comps, err := label(in, p.PixelThreshold)
	if err != nil {
		return nil, err
	}

	res := &Result{Order: st.order, Regions: len(comps)}
	kept := make([]int, len(comps)) // component -> index in res.Findings, or -1
	for c := range comps {
		a := &comps[c]
		kept[c] = -1
		if a.volume < p.MinVolumeMM3 || a.peak < p.PeakThreshold {
			continue
		}
		f := Finding{
			Voxels: a.voxels, VolumeMM3: a.volume, Peak: a.peak,
			Mean:       float32(a.sum / float64(a.voxels)),
			FirstSlice: int(a.first), LastSlice: int(a.last),
		}
		for k := range f.Centroid {
			f.Centroid[k] = a.centroid[k] / float64(a.voxels)
		}
		kept[c] = len(res.Findings)
		res.Findings = append(res.Findings, f)
	}
	if len(res.Findings) > math.MaxUint16 {
		return nil, fmt.Errorf("findings: %d findings do not fit a 16-bit label map (limits too low?)", len(res.Findings))
	}
	// Number by peak, highest first; ties by size, then by position along the normal.
	idx := make([]int, len(res.Findings))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		fa, fb := res.Findings[idx[a]], res.Findings[idx[b]]
		if fa.Peak != fb.Peak {
			return fa.Peak > fb.Peak
		}
		if fa.Voxels != fb.Voxels {
			return fa.Voxels > fb.Voxels
		}
		return fa.FirstSlice < fb.FirstSlice
	})
	id := make([]uint16, len(res.Findings)) // old index -> ID
	sorted := make([]Finding, len(res.Findings))
	for newPos, old := range idx {
		id[old] = uint16(newPos + 1)
		sorted[newPos] = res.Findings[old]
		sorted[newPos].ID = newPos + 1
	}
	res.Findings = sorted

	res.Labels = make([][]uint16, len(in))
	for i := range in {
		res.Labels[i] = make([]uint16, st.rows*st.cols)
	}
	for i, r := range runs {
		k := kept[compOf[i]]
		if k < 0 {
			continue
		}
		lab := res.Labels[st.order[r.rank]][int(r.row)*st.cols:]
		for c := r.c0; c < r.c1; c++ {
			lab[c] = id[k]
		}
	}
	return res, nil
}

// component is the statistics of one connected region.
type component struct {
	voxels      int
	volume      float64
	sum         float64
	peak        float32
	centroid    [3]float64 // sum of voxel centres
	first, last int32      // ranks
}

// label finds the 26-connected regions of the voxels of in above t: it returns
// the stack, the above-threshold runs, each run's component index and the
// components in scan order.
func label(in []Slice, t float32) (*stack, []run, []int32, []component, error) {
	st, err := newStack(in)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	runs, rowStart := findRuns(in, st, t)
	parent := make([]int32, len(runs))
	for i := range parent {
		parent[i] = int32(i)
	}
	linkRuns(runs, rowStart, st, parent)

	// Roots are the smallest run index of their set (union keeps the smaller),
	// so a root is always met before the other runs of its set.
	compOf := make([]int32, len(runs))
	var comps []component
	for i, r := range runs {
		root := find(parent, int32(i))
		if root == int32(i) {
			compOf[i] = int32(len(comps))
			comps = append(comps, component{peak: r.peak, first: r.rank, last: r.rank})
		} else {
			compOf[i] = compOf[root]
		}
		a := &comps[compOf[i]]
		n := int(r.c1 - r.c0)
		a.voxels += n
		a.volume += float64(n) * st.spacing[0] * st.spacing[1] * st.extent[r.rank]
		a.sum += r.sum
		a.peak = max(a.peak, r.peak)
		a.first, a.last = min(a.first, r.rank), max(a.last, r.rank)
		// The run's voxel centres summed: n*(P + row*dr*Y) + (sum of columns)*dc*X.
		pos := in[st.order[r.rank]].Plane.Position
		colSum := float64(n) * (float64(r.c0) + float64(r.c1-1)) / 2
		for k := 0; k < 3; k++ {
			a.centroid[k] += float64(n)*(pos[k]+float64(r.row)*st.spacing[0]*st.colDir[k]) +
				colSum*st.spacing[1]*st.rowDir[k]
		}
	}
	return st, runs, compOf, comps, nil
}

// newStack checks that the slices form one stack and derives its order,
// per-slice extents and which neighbours connect.
func newStack(in []Slice) (*stack, error) {
	first := in[0]
	st := &stack{rows: first.Rows, cols: first.Cols, spacing: first.Plane.Spacing}
	copy(st.rowDir[:], first.Plane.Orientation[:3])
	copy(st.colDir[:], first.Plane.Orientation[3:])
	if st.rows <= 0 || st.cols <= 0 {
		return nil, fmt.Errorf("%w: slice size %dx%d", ErrGeometry, st.rows, st.cols)
	}
	if !(st.spacing[0] > 0 && st.spacing[1] > 0) || math.IsInf(st.spacing[0]*st.spacing[1], 0) {
		return nil, fmt.Errorf("%w: pixel spacing %v", ErrGeometry, st.spacing)
	}
	if math.Abs(norm(st.rowDir)-1) > 1e-2 || math.Abs(norm(st.colDir)-1) > 1e-2 || math.Abs(dot(st.rowDir, st.colDir)) > 1e-2 {
		return nil, fmt.Errorf("%w: orientation %v is not two orthogonal unit vectors", ErrGeometry, first.Plane.Orientation)
	}
	normal := cross(st.rowDir, st.colDir)
	pos := make([]float64, len(in))
	for i, s := range in {
		if s.Rows != st.rows || s.Cols != st.cols {
			return nil, fmt.Errorf("%w: slice %d is %dx%d, slice 0 %dx%d", ErrGeometry, i, s.Rows, s.Cols, st.rows, st.cols)
		}
		if len(s.Scores) != s.Rows*s.Cols {
			return nil, fmt.Errorf("%w: slice %d has %d scores for %dx%d pixels", ErrGeometry, i, len(s.Scores), s.Rows, s.Cols)
		}
		for k := 0; k < 6; k++ {
			if math.Abs(s.Plane.Orientation[k]-first.Plane.Orientation[k]) > cosineTol {
				return nil, fmt.Errorf("%w: slice %d orientation %v differs from slice 0 %v", ErrGeometry, i, s.Plane.Orientation, first.Plane.Orientation)
			}
		}
		for k := 0; k < 2; k++ {
			if math.Abs(s.Plane.Spacing[k]-st.spacing[k]) > spacingTol*st.spacing[k] {
				return nil, fmt.Errorf("%w: slice %d pixel spacing %v differs from slice 0 %v", ErrGeometry, i, s.Plane.Spacing, st.spacing)
			}
		}
		pos[i] = dot(s.Plane.Position, normal)
		if math.IsNaN(pos[i]) || math.IsInf(pos[i], 0) {
			return nil, fmt.Errorf("%w: slice %d position %v", ErrGeometry, i, s.Plane.Position)
		}
	}
	st.order = make([]int, len(in))
	for i := range st.order {
		st.order[i] = i
	}
	slices.SortStableFunc(st.order, func(a, b int) int { return cmp.Compare(pos[a], pos[b]) })

	n := len(in)
	st.extent = make([]float64, n)
	st.joined = make([]bool, n)
	if n == 1 {
		st.extent[0] = first.Plane.Thickness
		if !(st.extent[0] > 0) {
			// No neighbour and no nominal thickness: assume isotropic voxels,
			// so the volume limit still means something.
			st.extent[0] = math.Sqrt(st.spacing[0] * st.spacing[1])
		}
		return st, nil
	}
	steps := make([]float64, n-1)
	for k := 1; k < n; k++ {
		steps[k-1] = pos[st.order[k]] - pos[st.order[k-1]]
		if steps[k-1] < samePosMM {
			return nil, fmt.Errorf("%w: slices %d and %d lie at the same position along the normal", ErrGeometry, st.order[k-1], st.order[k])
		}
	}
	typical := median(steps)
	// Each slice extends half way to each neighbour; across a gap, or past
	// either end of the stack, it extends half a typical step.
	for k := 0; k < n; k++ {
		below, above := typical/2, typical/2
		if k > 0 && steps[k-1] <= gapFactor*typical {
			below = steps[k-1] / 2
			st.joined[k] = true
		}
		if k < n-1 && steps[k] <= gapFactor*typical {
			above = steps[k] / 2
		}
		st.extent[k] = below + above
	}
	return st, nil
}

// findRuns collects the above-threshold runs of every slice in rank order, row
// by row; rowStart[rank*(rows+1)+row] indexes the first run of that row.
func findRuns(in []Slice, st *stack, t float32) ([]run, []int32) {
	var runs []run
	rowStart := make([]int32, len(in)*(st.rows+1))
	for rank, i := range st.order {
		scores := in[i].Scores
		base := rank * (st.rows + 1)
		for row := 0; row < st.rows; row++ {
			rowStart[base+row] = int32(len(runs))
			line := scores[row*st.cols : (row+1)*st.cols]
			for c := 0; c < len(line); {
				if !(line[c] > t) {
					c++
					continue
				}
				r := run{rank: int32(rank), row: int32(row), c0: int32(c), peak: line[c]}
				for ; c < len(line) && line[c] > t; c++ {
					r.sum += float64(line[c])
					r.peak = max(r.peak, line[c])
				}
				r.c1 = int32(c)
				runs = append(runs, r)
			}
		}
		rowStart[base+st.rows] = int32(len(runs))
	}
	return runs, rowStart
}

// linkRuns unions every pair of 26-connected runs: within a slice, runs of
// neighbouring rows whose columns overlap or touch at a corner; across joined
// slices, the same for rows r-1, r and r+1 of the slice below.
func linkRuns(runs []run, rowStart []int32, st *stack, parent []int32) {
	// rowRuns returns the index range [lo, hi) of the runs of one row.
	rowRuns := func(rank, row int) (int32, int32) {
		if row < 0 || row >= st.rows {
			return 0, 0
		}
		b := rank*(st.rows+1) + row
		return rowStart[b], rowStart[b+1]
	}
	for rank := range st.order {
		for row := 0; row < st.rows; row++ {
			lo, hi := rowRuns(rank, row)
			if lo == hi {
				continue
			}
			blo, bhi := rowRuns(rank, row-1)
			linkRows(runs, lo, hi, blo, bhi, parent)
			if st.joined[rank] {
				for dr := -1; dr <= 1; dr++ {
					blo, bhi := rowRuns(rank-1, row+dr)
					linkRows(runs, lo, hi, blo, bhi, parent)
				}
			}
		}
	}
}

// linkRows unions the runs [alo, ahi) and [blo, bhi) (each one row, sorted by
// column) that overlap or touch diagonally, by a merge walk.
func linkRows(runs []run, alo, ahi, blo, bhi int32, parent []int32) {
	i, j := alo, blo
	for i < ahi && j < bhi {
		a, b := &runs[i], &runs[j]
		// 8-connected in the plane: [a0,a1) and [b0,b1) touch when
		// a0 <= b1 and b0 <= a1 (exclusive ends, one column of slack).
		if a.c0 <= b.c1 && b.c0 <= a.c1 {
			union(parent, i, j)
		}
		if a.c1 < b.c1 {
			i++
		} else {
			j++
		}
	}
}

// find returns i's root, halving the path on the way.
func find(parent []int32, i int32) int32 {
	for parent[i] != i {
		parent[i] = parent[parent[i]]
		i = parent[i]
	}
	return i
}

// union joins the sets of a and b; the smaller index becomes the root, so
// roots follow scan order.
func union(parent []int32, a, b int32) {
	ra, rb := find(parent, a), find(parent, b)
	switch {
	case ra < rb:
		parent[rb] = ra
	case rb < ra:
		parent[ra] = rb
	}
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

func norm(a [3]float64) float64 { return math.Sqrt(dot(a, a)) }

func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

// median of x (x is not modified).
func median(x []float64) float64 {
	c := slices.Clone(x)
	slices.Sort(c)
	m := len(c) / 2
	if len(c)%2 == 1 {
		return c[m]
	}
	return (c[m-1] + c[m]) / 2
}
