package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
)

// clustered returns n unit rows of d around c random unit centres (noise
// sigma), the shape of patch embeddings: a few modes, not isotropic noise.
func clustered(n, d, c int, sigma float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x63756461))
	centres := make([]float64, c*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		ci := rng.IntN(c)
		var s float64
		row := make([]float64, d)
		for j := range row {
			row[j] = centres[ci*d+j]/math.Sqrt(float64(d)) + sigma*rng.NormFloat64()
			s += row[j] * row[j]
		}
		inv := 1 / math.Sqrt(s)
		for j := range row {
			x[i*d+j] = float32(row[j] * inv)
		}
	}
	return x
}

// randomModel returns a model of k components in d dimensions whose means are
// clustered rows; a quarter of the components have weight 0 (not prototypes).
func randomModel(k, d int, seed uint64) *inference.Model {
	m := &inference.Model{K: k, D: d, Means: clustered(k, d, max(1, k/4), 0.3, seed),
		Variances: make([]float32, k*d), LogWeights: make([]float32, k)}
	for i := range m.Variances {
		m.Variances[i] = 0.01
	}
	for j := range m.LogWeights {
		if j%4 == 3 {
			m.LogWeights[j] = float32(math.Inf(-1))
		} else {
			m.LogWeights[j] = float32(math.Log(1 / float64(k)))
		}
	}
	m.Meta.Tau = inference.DefaultTau
	return m
}

// scorerAndPrototypes returns the CPU scorer of model and the unit-length
// prototypes (with their component indices) the GPU scorer uploads.
func scorerAndPrototypes(t testing.TB, model *inference.Model) (*inference.DPMMScorer, []float32, []int) {
	t.Helper()
	cpu, err := inference.NewDPMMScorer(model)
	if err != nil {
		t.Fatal(err)
	}
	protos, idx, err := model.UnitPrototypes()
	if err != nil {
		t.Fatal(err)
	}
	return cpu, protos, idx
}

// newMixture initialises a mixture on clustered data, as Fit does.
func newMixture(t testing.TB, k, d int, x []float32, n int, cfg dpmm.Config) *dpmm.Mixture {
	t.Helper()
	cfg.K = k
	m, err := dpmm.NewMixture(cfg, x, n, d)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// relErr is the norm-wise relative error ||a-b|| / ||b||.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		e := float64(a[i]) - float64(b[i])
		num += e * e
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// relErr64 is relErr for float64.
func relErr64(a, b []float64) float64 {
	var num, den float64
	for i := range b {
		e := a[i] - b[i]
		num += e * e
		den += b[i] * b[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// sims turns scores back into similarities (1 - score): the quantity whose
// relative error is meaningful (a score near 0 has no relative precision).
func sims(scores []float32) []float32 {
	s := make([]float32, len(scores))
	for i, v := range scores {
		s[i] = 1 - v
	}
	return s
}
