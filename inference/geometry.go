package inference

import (
	"math"
)

// gridAxis precomputes, for each source index along one axis, the two patch
// indices and the weight of the second in the bilinear interpolation.
//
// Source pixel i has its centre at i+0.5 in continuous source coordinates,
// i.e. (i+0.5)/scale in resized coordinates (scale = source px per resized px).
// Patch j has its centre at (j+0.5)*patch in resized coordinates, so the
// fractional patch coordinate is (i+0.5)/(scale*patch) - 0.5. Outside the
// first/last patch centre (and over the cropped border) the edge value holds.
func gridAxis(src int, scale float64, patch, grid int) (i0, i1 []int32, f []float32) {
	i0, i1, f = make([]int32, src), make([]int32, src), make([]float32, src)
	for i := 0; i < src; i++ {
		g := (float64(i)+0.5)/(scale*float64(patch)) - 0.5
		g = min(max(g, 0), float64(grid-1))
		a := int(math.Floor(g))
		b := min(a+1, grid-1)
		i0[i], i1[i], f[i] = int32(a), int32(b), float32(g-float64(a))
	}
	return i0, i1, f
}

// Upsample interpolates a patch-score grid ([GridRows*GridCols], row-major)
// bilinearly back to the source slice ([SrcRows*SrcCols] in out), undoing the
// resize and crop of g exactly.
func Upsample(patch []float32, g Geometry, out []float32) {
	y0, y1, fy := gridAxis(g.SrcRows, g.ScaleY(), g.Patch, g.GridRows)
	x0, x1, fx := gridAxis(g.SrcCols, g.ScaleX(), g.Patch, g.GridCols)
	// Interpolate every grid row along x once; then each source row is a lerp
	// of two of these.
	rowsX := make([]float32, g.GridRows*g.SrcCols)
	for r := 0; r < g.GridRows; r++ {
		pr := patch[r*g.GridCols : (r+1)*g.GridCols]
		dst := rowsX[r*g.SrcCols : (r+1)*g.SrcCols]
		for x := range dst {
			a, b := pr[x0[x]], pr[x1[x]]
			dst[x] = a + fx[x]*(b-a)
		}
	}
	for y := 0; y < g.SrcRows; y++ {
		a := rowsX[int(y0[y])*g.SrcCols : int(y0[y]+1)*g.SrcCols]
		b := rowsX[int(y1[y])*g.SrcCols : int(y1[y]+1)*g.SrcCols]
		w := fy[y]
		dst := out[y*g.SrcCols : (y+1)*g.SrcCols]
		for x := range dst {
			dst[x] = a[x] + w*(b[x]-a[x])
		}
	}
}

// Threshold writes mask[i] = 1 where score[i] > t, else 0, and returns the
// number of pixels set.
func Threshold(score []float32, t float32, mask []uint8) int {
	n := 0
	for i, v := range score {
		if v > t {
			mask[i] = 1
			n++
		} else {
			mask[i] = 0
		}
	}
	return n
}

// TopMean returns the maximum of x and the mean of its largest
// ceil(frac*len(x)) values (the slice score for triage). x is not modified.
func TopMean(x []float32, frac float64) (maxv, mean float32) {
	if len(x) == 0 {
		return 0, 0
	}
	k := int(math.Ceil(frac * float64(len(x))))
	k = min(max(k, 1), len(x))
	c := append([]float32(nil), x...)
	// Partition so that c[len-k:] holds the k largest values.
	selectKth(c, len(c)-k)
	var s float64
	maxv = c[len(c)-k]
	for _, v := range c[len(c)-k:] {
		s += float64(v)
		maxv = max(maxv, v)
	}
	return maxv, float32(s / float64(k))
}

// selectKth partially sorts x so that x[k] is the k-th smallest value, every
// value before it is <= it and every value after it >= it (Hoare's quickselect
// with a median-of-three pivot).
func selectKth(x []float32, k int) {
	lo, hi := 0, len(x)-1
	for hi > lo {
		mid := lo + (hi-lo)/2
		if x[mid] < x[lo] {
			x[mid], x[lo] = x[lo], x[mid]
		}
		if x[hi] < x[lo] {
			x[hi], x[lo] = x[lo], x[hi]
		}
		if x[hi] < x[mid] {
			x[hi], x[mid] = x[mid], x[hi]
		}
		p := x[mid]
		i, j := lo, hi
		for i <= j {
			for x[i] < p {
				i++
			}
			for x[j] > p {
				j--
			}
			if i <= j {
				x[i], x[j] = x[j], x[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}
