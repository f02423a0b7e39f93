package synth

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"sync"
)

// DefaultVolume is the real T1 brain (Colin 27, 0.5 mm, skull-stripped) that
// Debian's mricron-data package installs.
const DefaultVolume = "/usr/share/mricron/templates/ch2better.nii.gz"

// SourcePhantom is Result.Source when the analytic phantom was used.
const SourcePhantom = "phantom"

// t1White is the scale anatomy values are normalised to: white matter of a
// T1 volume at about 105, grey matter about 78, CSF and background near 0
// (what ch2better stores natively).
const t1White = 105.0

// anatomy is a source volume ready for resampling in LPS millimetres.
type anatomy struct {
	name       string
	nx, ny, nz int
	u8         []uint8
	f32        []float32
	scale      float32       // raw value * scale = T1 units
	lpsToVox   [3][4]float64 // LPS mm -> voxel index
	center     [3]float64    // brain bounding-box centre, LPS mm
	half       [3]float64    // brain bounding-box half extents, mm
	head       *headField    // distance from the brain, for CSF/skull/scalp shells
}

// defaultVolume is DefaultVolume; tests point it elsewhere to exercise the
// phantom fallback.
var defaultVolume = DefaultVolume

var (
	anatomyMu    sync.Mutex
	anatomyCache = map[string]*anatomy{}
)

// loadAnatomy returns the cached source volume: the NIfTI at path, or the
// phantom when path is SourcePhantom. A missing default volume falls back to
// the phantom; a missing explicit path is an error.
func loadAnatomy(path string) (*anatomy, error) {
	explicit := path != ""
	if path == "" {
		path = defaultVolume
	}
	anatomyMu.Lock()
	defer anatomyMu.Unlock()
	if a, ok := anatomyCache[path]; ok {
		return a, nil
	}
	var a *anatomy
	if path == SourcePhantom {
		a = newPhantom()
	} else {
		n, err := LoadNIfTI(path)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return loadPhantomLocked(), nil
		}
		if err != nil {
			return nil, err
		}
		if a, err = anatomyFromNIfTI(path, n); err != nil {
			return nil, err
		}
	}
	a.head = buildHead(a)
	anatomyCache[path] = a
	return a, nil
}

func loadPhantomLocked() *anatomy {
	if a, ok := anatomyCache[SourcePhantom]; ok {
		return a
	}
	a := newPhantom()
	a.head = buildHead(a)
	anatomyCache[SourcePhantom] = a
	return a
}

func anatomyFromNIfTI(name string, n *NIfTI) (*anatomy, error) {
	a := &anatomy{name: name, nx: n.Dim[0], ny: n.Dim[1], nz: n.Dim[2], u8: n.U8, f32: n.F32, scale: 1}
	// NIfTI is RAS+, DICOM LPS+: flip x and y.
	vox2lps := n.Affine
	for c := 0; c < 4; c++ {
		vox2lps[0][c], vox2lps[1][c] = -vox2lps[0][c], -vox2lps[1][c]
	}
	a.lpsToVox = invertAffine(vox2lps)

	// Normalise intensities so the bright tissue mode (white matter in T1) sits
	// at t1White; robust to any datatype and scaling.
	hi := a.percentile(0.98)
	if hi <= 0 {
		return nil, fmt.Errorf("synth: volume %s is empty", name)
	}
	a.scale = float32(t1White / hi)
	thr := 0.2 * hi
	lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	up := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	found := false
	for k := 0; k < a.nz; k++ {
		for j := 0; j < a.ny; j++ {
			row := (k*a.ny + j) * a.nx
			first, last := -1, -1
			for i := 0; i < a.nx; i++ {
				if a.raw(row+i) > thr {
					if first < 0 {
						first = i
					}
					last = i
				}
			}
			if first < 0 {
				continue
			}
			found = true
			for _, i := range [2]int{first, last} {
				p := apply(vox2lps, [3]float64{float64(i), float64(j), float64(k)})
				for d := 0; d < 3; d++ {
					lo[d], up[d] = math.Min(lo[d], p[d]), math.Max(up[d], p[d])
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("synth: volume %s has no tissue", name)
	}
	for d := 0; d < 3; d++ {
		a.center[d] = (lo[d] + up[d]) / 2
		a.half[d] = math.Max((up[d]-lo[d])/2, 10)
	}
	return a, nil
}

func (a *anatomy) raw(i int) float64 {
	if a.u8 != nil {
		return float64(a.u8[i])
	}
	return float64(a.f32[i])
}

// percentile estimates the q-quantile of the voxels above 1 % of the maximum
// (background excluded) from a strided subsample.
func (a *anatomy) percentile(q float64) float64 {
	n := a.nx * a.ny * a.nz
	step := 1 + n/2_000_000
	var vals []float64
	mx := 0.0
	for i := 0; i < n; i += step {
		mx = math.Max(mx, a.raw(i))
	}
	for i := 0; i < n; i += step {
		if v := a.raw(i); v > 0.01*mx {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return 0
	}
	return quickselect(vals, int(q*float64(len(vals)-1)))
}

func quickselect(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		p := v[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		if k <= j {
			hi = j
		} else if k >= i {
			lo = i
		} else {
			return v[k]
		}
	}
	return v[k]
}

func apply(m [3][4]float64, p [3]float64) [3]float64 {
	var q [3]float64
	for r := 0; r < 3; r++ {
		q[r] = m[r][0]*p[0] + m[r][1]*p[1] + m[r][2]*p[2] + m[r][3]
	}
	return q
}

// sample returns the trilinearly interpolated T1 value at voxel coordinates
// (x, y, z); outside the volume it is 0 (background).
func (a *anatomy) sample(x, y, z float64) float32 {
	if x < 0 || y < 0 || z < 0 || x > float64(a.nx-1) || y > float64(a.ny-1) || z > float64(a.nz-1) {
		return 0
	}
	i, j, k := int(x), int(y), int(z)
	if i == a.nx-1 {
		i--
	}
	if j == a.ny-1 {
		j--
	}
	if k == a.nz-1 {
		k--
	}
	if i < 0 || j < 0 || k < 0 { // single-voxel axes
		return 0
	}
	fx, fy, fz := float32(x-float64(i)), float32(y-float64(j)), float32(z-float64(k))
	sx, sy := 1, a.nx
	sz := a.nx * a.ny
	o := k*sz + j*sy + i
	var c [8]float32
	if a.u8 != nil {
		d := a.u8
		c = [8]float32{float32(d[o]), float32(d[o+sx]), float32(d[o+sy]), float32(d[o+sy+sx]),
			float32(d[o+sz]), float32(d[o+sz+sx]), float32(d[o+sz+sy]), float32(d[o+sz+sy+sx])}
	} else {
		d := a.f32
		c = [8]float32{d[o], d[o+sx], d[o+sy], d[o+sy+sx], d[o+sz], d[o+sz+sx], d[o+sz+sy], d[o+sz+sy+sx]}
	}
	c00 := c[0] + (c[1]-c[0])*fx
	c10 := c[2] + (c[3]-c[2])*fx
	c01 := c[4] + (c[5]-c[4])*fx
	c11 := c[6] + (c[7]-c[6])*fx
	c0 := c00 + (c10-c00)*fy
	c1 := c01 + (c11-c01)*fy
	return (c0 + (c1-c0)*fz) * a.scale
}

// newPhantom builds an analytic head-like brain on a 1.5 mm grid in LPS
// millimetres: white matter, a grey-matter rim folded by sulci, deep grey
// nuclei and CSF-filled ventricles, with mild fixed texture noise. Values use
// the same T1 units as the real volume so the rest of the pipeline is shared.
func newPhantom() *anatomy {
	const vs = 1.5
	half := [3]float64{66, 82, 62}
	var dims [3]int
	var origin [3]float64
	for d := 0; d < 3; d++ {
		dims[d] = int(math.Ceil(2*(half[d]+6)/vs)) + 1
		origin[d] = -(half[d] + 6)
	}
	a := &anatomy{name: SourcePhantom, nx: dims[0], ny: dims[1], nz: dims[2], scale: 1, half: half}
	a.f32 = make([]float32, dims[0]*dims[1]*dims[2])
	a.lpsToVox = [3][4]float64{{1 / vs, 0, 0, -origin[0] / vs}, {0, 1 / vs, 0, -origin[1] / vs}, {0, 0, 1 / vs, -origin[2] / vs}}
	rng := rand.New(rand.NewPCG(0x5eed, 0xb4a1))
	type blob struct{ c, r [3]float64 }
	ventricles := []blob{{[3]float64{-7, -2, 10}, [3]float64{5, 20, 9}}, {[3]float64{7, -2, 10}, [3]float64{5, 20, 9}}}
	nuclei := []blob{{[3]float64{-14, 4, -2}, [3]float64{7, 11, 8}}, {[3]float64{14, 4, -2}, [3]float64{7, 11, 8}}}
	inside := func(b blob, p [3]float64) bool {
		s := 0.0
		for d := 0; d < 3; d++ {
			t := (p[d] - b.c[d]) / b.r[d]
			s += t * t
		}
		return s <= 1
	}
	i := 0
	for k := 0; k < dims[2]; k++ {
		for j := 0; j < dims[1]; j++ {
			for x := 0; x < dims[0]; x++ {
				p := [3]float64{origin[0] + vs*float64(x), origin[1] + vs*float64(j), origin[2] + vs*float64(k)}
				rho := math.Sqrt(sq(p[0]/half[0]) + sq(p[1]/half[1]) + sq(p[2]/half[2]))
				// Gyri: the grey rim's inner edge undulates; sulci are thin
				// radial CSF clefts; the interhemispheric fissure splits the top.
				theta := math.Atan2(p[1], p[0])
				phi := math.Atan2(p[2], math.Hypot(p[0], p[1]))
				inner := 0.83 + 0.05*math.Sin(9*theta)*math.Sin(7*phi)
				v := 0.0
				switch {
				case rho > 1:
				case rho > inner:
					v = 78
					if math.Cos(16*theta+3*math.Sin(5*phi)) > 0.92 {
						v = 0
					}
				default:
					v = t1White
				}
				if math.Abs(p[0]) < 1.2 && p[2] > -10 && rho > 0.45 {
					v = 0
				}
				if v > 0 {
					for _, b := range nuclei {
						if inside(b, p) {
							v = 84
						}
					}
					for _, b := range ventricles {
						if inside(b, p) {
							v = 0
						}
					}
					v += 2 * rng.NormFloat64()
				}
				a.f32[i] = float32(v)
				i++
			}
		}
	}
	return a
}

func sq(x float64) float64 { return x * x }
