package dpmm

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestQuantilesAgainstSorting(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 7, 10, 100, 1001, 54321} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.IntN(50)) / 7 // many ties
		}
		sorted := slices.Clone(x)
		slices.Sort(sorted)
		var c Calibrator
		c.Add(x)
		th, err := c.Thresholds(DefaultFPRs)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range DefaultFPRs {
			// Brute force: the smallest value with at least (1-f) n values <= it.
			var want float32
			for _, v := range sorted {
				le := 0
				for _, u := range sorted {
					if u <= v {
						le++
					}
				}
				if float64(le) >= (1-f)*float64(n)-1e-9 {
					want = v
					break
				}
				if n > 2000 {
					break
				}
			}
			if n > 2000 {
				want = sorted[int(float64(n)*(1-f)+0.999999)-1]
			}
			if th[i] != want {
				t.Fatalf("n=%d f=%v: threshold %v, want %v", n, f, th[i], want)
			}
			above := 0
			for _, v := range x {
				if v > th[i] {
					above++
				}
			}
			if float64(above) > f*float64(n)+1e-9 {
				t.Fatalf("n=%d f=%v: %d of %d above the threshold", n, f, above, n)
			}
		}
	}
}

func TestQuantilesExact(t *testing.T) {
	x := []float32{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	th, err := Quantiles(x, []float64{0.1, 0.5, 0.3})
	if err != nil {
		t.Fatal(err)
	}
	// 0.9 quantile of 1..10: 9 values <= 9. 0.5: 5. 0.7: 7.
	if th[0] != 9 || th[1] != 5 || th[2] != 7 {
		t.Fatalf("thresholds %v, want [9 5 7]", th)
	}
	if _, err := Quantiles(nil, DefaultFPRs); err == nil {
		t.Fatal("no scores accepted")
	}
	var c Calibrator
	c.Add([]float32{1, float32(nanF())})
	if _, err := c.Thresholds(DefaultFPRs); err == nil {
		t.Fatal("NaN accepted")
	}
}

func nanF() float64 { var z float64; return z / z }
