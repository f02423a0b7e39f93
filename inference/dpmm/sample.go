package dpmm

import "math/rand/v2"

// SampleMixture draws slices of rows from a Gaussian mixture with the given
// means (rows of d), weights and isotropic standard deviation: data with a
// known answer for tests of the fit and of the jobs built on it.
func SampleMixture(rng *rand.Rand, means [][]float64, weights []float64, sd float64, slices, rows int) *Data {
	d := len(means[0])
	data := &Data{D: d}
	row := make([]float32, rows*d)
	for s := 0; s < slices; s++ {
		for i := 0; i < rows; i++ {
			u := rng.Float64()
			c := 0
			for c < len(weights)-1 && u > weights[c] {
				u -= weights[c]
				c++
			}
			for j := 0; j < d; j++ {
				row[i*d+j] = float32(means[c][j] + sd*rng.NormFloat64())
			}
		}
		data.Append(row, rows)
	}
	return data
}
