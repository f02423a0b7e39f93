package synth

import "math"

// headField is the distance in mm from the (closed, hole-filled) brain on a
// coarse grid. Shells at fixed distances make CSF, skull and scalp that follow
// the brain's real outline rather than an ellipsoid.
type headField struct {
	nx, ny, nz int
	d          []float32
	toGrid     [3][4]float64 // source LPS mm -> grid index
}

const (
	headCell   = 2.5 // mm
	headMargin = 25  // mm of grid beyond the brain's bounding box
	// headFar is the distance reported outside the grid (air).
	headFar = 1000
)

func buildHead(a *anatomy) *headField {
	var origin [3]float64
	var dims [3]int
	for d := 0; d < 3; d++ {
		origin[d] = a.center[d] - a.half[d] - headMargin
		dims[d] = int(math.Ceil((2*a.half[d]+2*headMargin)/headCell)) + 1
	}
	h := &headField{nx: dims[0], ny: dims[1], nz: dims[2]}
	h.toGrid = [3][4]float64{
		{1 / headCell, 0, 0, -origin[0] / headCell},
		{0, 1 / headCell, 0, -origin[1] / headCell},
		{0, 0, 1 / headCell, -origin[2] / headCell},
	}
	n := dims[0] * dims[1] * dims[2]
	idx := func(i, j, k int) int { return (k*dims[1]+j)*dims[0] + i }

	// Occupancy: any of 8 sub-samples of the cell is brain tissue.
	occ := make([]bool, n)
	thr := float32(0.35 * t1White)
	q := headCell / 4
	for k := 0; k < dims[2]; k++ {
		for j := 0; j < dims[1]; j++ {
			for i := 0; i < dims[0]; i++ {
				c := [3]float64{origin[0] + headCell*float64(i), origin[1] + headCell*float64(j), origin[2] + headCell*float64(k)}
			sub:
				for _, dx := range [2]float64{-q, q} {
					for _, dy := range [2]float64{-q, q} {
						for _, dz := range [2]float64{-q, q} {
							v := apply(a.lpsToVox, [3]float64{c[0] + dx, c[1] + dy, c[2] + dz})
							if a.sample(v[0], v[1], v[2]) > thr {
								occ[idx(i, j, k)] = true
								break sub
							}
						}
					}
				}
			}
		}
	}
	// Closing with hole filling: dilate, flood the outside from the border,
	// erode the filled mask back. Sulci and ventricles become "inside".
	const steps = 2
	dil := occ
	for s := 0; s < steps; s++ {
		dil = morph(dil, dims, true)
	}
	outside := make([]bool, n)
	var stack []int
	push := func(i, j, k int) {
		if i < 0 || j < 0 || k < 0 || i >= dims[0] || j >= dims[1] || k >= dims[2] {
			return
		}
		p := idx(i, j, k)
		if !dil[p] && !outside[p] {
			outside[p] = true
			stack = append(stack, p)
		}
	}
	for k := 0; k < dims[2]; k++ {
		for j := 0; j < dims[1]; j++ {
			for i := 0; i < dims[0]; i++ {
				if i == 0 || j == 0 || k == 0 || i == dims[0]-1 || j == dims[1]-1 || k == dims[2]-1 {
					push(i, j, k)
				}
			}
		}
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i, j, k := p%dims[0], (p/dims[0])%dims[1], p/(dims[0]*dims[1])
		push(i-1, j, k)
		push(i+1, j, k)
		push(i, j-1, k)
		push(i, j+1, k)
		push(i, j, k-1)
		push(i, j, k+1)
	}
	inside := make([]bool, n)
	for p := range inside {
		inside[p] = !outside[p]
	}
	for s := 0; s < steps; s++ {
		inside = morph(inside, dims, false)
	}
	for p := range inside { // erosion must not remove real brain
		inside[p] = inside[p] || occ[p]
	}

	// Chamfer distance (26-neighbourhood, weights 1, sqrt2, sqrt3 cells).
	h.d = make([]float32, n)
	for p := range h.d {
		if inside[p] {
			h.d[p] = 0
		} else {
			h.d[p] = headFar
		}
	}
	type off struct {
		di, dj, dk int
		w          float32
	}
	var fwd []off
	for dk := -1; dk <= 1; dk++ {
		for dj := -1; dj <= 1; dj++ {
			for di := -1; di <= 1; di++ {
				if dk < 0 || (dk == 0 && dj < 0) || (dk == 0 && dj == 0 && di < 0) {
					fwd = append(fwd, off{di, dj, dk, float32(headCell * math.Sqrt(float64(di*di+dj*dj+dk*dk)))})
				}
			}
		}
	}
	relax := func(i, j, k int, sign int) {
		p := idx(i, j, k)
		best := h.d[p]
		for _, o := range fwd {
			ii, jj, kk := i+sign*o.di, j+sign*o.dj, k+sign*o.dk
			if ii < 0 || jj < 0 || kk < 0 || ii >= dims[0] || jj >= dims[1] || kk >= dims[2] {
				continue
			}
			if v := h.d[idx(ii, jj, kk)] + o.w; v < best {
				best = v
			}
		}
		h.d[p] = best
	}
	for k := 0; k < dims[2]; k++ {
		for j := 0; j < dims[1]; j++ {
			for i := 0; i < dims[0]; i++ {
				relax(i, j, k, 1)
			}
		}
	}
	for k := dims[2] - 1; k >= 0; k-- {
		for j := dims[1] - 1; j >= 0; j-- {
			for i := dims[0] - 1; i >= 0; i-- {
				relax(i, j, k, -1)
			}
		}
	}
	return h
}

// morph dilates (grow) or erodes a mask by one cell in the 6-neighbourhood.
func morph(m []bool, dims [3]int, grow bool) []bool {
	out := make([]bool, len(m))
	nx, ny, nz := dims[0], dims[1], dims[2]
	for k := 0; k < nz; k++ {
		for j := 0; j < ny; j++ {
			for i := 0; i < nx; i++ {
				p := (k*ny+j)*nx + i
				v := m[p]
				for _, q := range [6][3]int{{i - 1, j, k}, {i + 1, j, k}, {i, j - 1, k}, {i, j + 1, k}, {i, j, k - 1}, {i, j, k + 1}} {
					in := q[0] >= 0 && q[1] >= 0 && q[2] >= 0 && q[0] < nx && q[1] < ny && q[2] < nz
					nv := false
					if in {
						nv = m[(q[2]*ny+q[1])*nx+q[0]]
					}
					if grow && nv {
						v = true
					}
					if !grow && !nv {
						v = false
					}
				}
				out[p] = v
			}
		}
	}
	return out
}

// dist returns the trilinear distance (mm) from the brain at source point s.
func (h *headField) dist(s [3]float64) float64 {
	g := apply(h.toGrid, s)
	x, y, z := g[0], g[1], g[2]
	if x < 0 || y < 0 || z < 0 || x >= float64(h.nx-1) || y >= float64(h.ny-1) || z >= float64(h.nz-1) {
		return headFar
	}
	i, j, k := int(x), int(y), int(z)
	fx, fy, fz := x-float64(i), y-float64(j), z-float64(k)
	sy, sz := h.nx, h.nx*h.ny
	o := k*sz + j*sy + i
	d := h.d
	c00 := float64(d[o]) + (float64(d[o+1])-float64(d[o]))*fx
	c10 := float64(d[o+sy]) + (float64(d[o+sy+1])-float64(d[o+sy]))*fx
	c01 := float64(d[o+sz]) + (float64(d[o+sz+1])-float64(d[o+sz]))*fx
	c11 := float64(d[o+sz+sy]) + (float64(d[o+sz+sy+1])-float64(d[o+sz+sy]))*fx
	c0 := c00 + (c10-c00)*fy
	c1 := c01 + (c11-c01)*fy
	return c0 + (c1-c0)*fz
}
