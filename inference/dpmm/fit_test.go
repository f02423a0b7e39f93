package dpmm

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
)

type component struct {
	idx  int
	w, r float64
	mean []float64
}

func components(m *Mixture, minWeight float64) []component {
	var out []component
	for j := 0; j < m.K; j++ {
		if w := m.Weight(j); w > minWeight {
			c := component{idx: j, w: w, r: m.R[j]}
			for i := 0; i < m.D; i++ {
				c.mean = append(c.mean, float64(m.Mu[j*m.D+i]))
			}
			out = append(out, c)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].w > out[b].w })
	return out
}

func dist(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += (a[i] - b[i]) * (a[i] - b[i])
	}
	return math.Sqrt(s)
}

// checkRecovery asserts that the mixture's mass sits on the true components:
// every component of weight > 1% lies near a true mean, and the weight gathered
// by each true mean is near its true weight. The truncation's last component
// (v_K = 1) holds the stick the others leave, the DP's prior mass for unseen
// components; when it explains no data its weight is that remainder, which must
// be small, and it is not matched to a true mean.
func checkRecovery(t *testing.T, m *Mixture, means [][]float64, weights []float64, near, wtol float64) {
	t.Helper()
	got := make([]float64, len(means))
	for _, c := range components(m, 0.01) {
		if c.r < 1e-4 {
			if c.idx != m.K-1 || c.w > 0.05 {
				t.Errorf("component %d of weight %.3f explains no data (R=%.3g)", c.idx, c.w, c.r)
			}
			continue
		}
		best, bd := -1, math.Inf(1)
		for i, mu := range means {
			if dd := dist(c.mean, mu); dd < bd {
				best, bd = i, dd
			}
		}
		if bd > near {
			t.Errorf("component of weight %.3f at %.2v is %.2f from every true mean", c.w, c.mean, bd)
			continue
		}
		got[best] += c.w
	}
	for i := range means {
		if math.Abs(got[i]-weights[i]) > wtol {
			t.Errorf("true component %d (weight %.3f) gathered weight %.3f", i, weights[i], got[i])
		}
	}
	for _, v := range append(append([]float32(nil), m.Mu...), m.S2...) {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("NaN/Inf in parameters")
		}
	}
}

func checkIncreasing(t *testing.T, h []EpochStats) {
	t.Helper()
	first, last := h[0].ValLogLikelihood, h[len(h)-1].ValLogLikelihood
	if !(last > first) {
		t.Errorf("validation log-likelihood went from %.4f to %.4f", first, last)
	}
	for i := 1; i < len(h); i++ {
		// Stochastic EM may wobble once converged; it must not fall far.
		if h[i].ValLogLikelihood < h[i-1].ValLogLikelihood-0.02*math.Abs(h[i-1].ValLogLikelihood)-0.05 {
			t.Errorf("validation log-likelihood fell from %.4f to %.4f at epoch %d", h[i-1].ValLogLikelihood, h[i].ValLogLikelihood, h[i].Epoch)
		}
	}
}

func TestFitToy2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var means [][]float64
	var weights []float64
	for _, a := range []float64{-4, 0, 4} {
		for _, b := range []float64{-4, 0, 4} {
			means = append(means, []float64{a, b})
			weights = append(weights, 1.0/9)
		}
	}
	train := SampleMixture(rng, means, weights, 0.5, 60, 200)
	val := SampleMixture(rng, means, weights, 0.5, 10, 200)
	res, err := Fit(context.Background(), Config{K: 30, Seed: 1}, train, val, FitOptions{Epochs: 15, BatchSlices: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.History {
		t.Logf("epoch %d val %.4f train %.4f active %d alpha %.3f", h.Epoch, h.ValLogLikelihood, h.TrainLogLikelihood, h.Active, h.Alpha)
	}
	for _, c := range components(res.Best, 1e-3) {
		t.Logf("w %.4f mean %.3v", c.w, c.mean)
	}
	checkRecovery(t, res.Best, means, weights, 0.6, 0.03)
	checkIncreasing(t, res.History)
}

func TestFit32D(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	const d, c = 32, 20
	var means [][]float64
	var weights []float64
	wsum := 0.0
	for i := 0; i < c; i++ {
		mu := make([]float64, d)
		for j := range mu {
			mu[j] = 3 * rng.NormFloat64()
		}
		means = append(means, mu)
		w := 1 + float64(i%4) // unequal weights
		weights = append(weights, w)
		wsum += w
	}
	for i := range weights {
		weights[i] /= wsum
	}
	train := SampleMixture(rng, means, weights, 1, 40, 300)
	val := SampleMixture(rng, means, weights, 1, 8, 300)
	res, err := Fit(context.Background(), Config{K: 60, Seed: 2}, train, val, FitOptions{Epochs: 12, BatchSlices: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.History {
		t.Logf("epoch %d val %.4f active %d alpha %.3f", h.Epoch, h.ValLogLikelihood, h.Active, h.Alpha)
	}
	checkRecovery(t, res.Best, means, weights, 1.5, 0.02)
	checkIncreasing(t, res.History)
}

// Components that explain nothing must vanish (weight -> 0, no NaN/Inf), and the
// surviving ones must still describe the data.
func TestVanishingComponents(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	means := [][]float64{{-3, 0, 0}, {3, 0, 0}}
	weights := []float64{0.5, 0.5}
	train := SampleMixture(rng, means, weights, 0.3, 30, 100)
	val := SampleMixture(rng, means, weights, 0.3, 5, 100)
	// K exceeds the first batch's rows, so some means start as standard-normal
	// draws far from any data and vanish at once.
	res, err := Fit(context.Background(), Config{K: 250, Seed: 3}, train, val, FitOptions{Epochs: 20, BatchSlices: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Best
	first, last := res.History[0].Active, res.History[len(res.History)-1].Active
	t.Logf("active %d -> %d", first, last)
	if !(last < first) || last > 100 {
		t.Errorf("active components %d -> %d: components do not vanish", first, last)
	}
	for j := 0; j < m.K; j++ {
		if math.IsNaN(m.LogPi[j]) || m.LogPi[j] > 0 || math.IsNaN(m.V[j]) || m.V[j] < 0 || m.V[j] > 1 {
			t.Fatalf("component %d: log pi %v, v %v", j, m.LogPi[j], m.V[j])
		}
	}
	checkRecovery(t, m, means, weights, 0.6, 0.03)
	ll := m.LogLikelihood(val.X, val.Rows(), 1e-6)
	if math.IsNaN(ll) || math.IsInf(ll, 0) {
		t.Fatalf("validation log-likelihood %v", ll)
	}
}

func TestFitDeterministicAndResumes(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	means := [][]float64{{0, 0}, {5, 5}, {-5, 5}}
	weights := []float64{0.3, 0.3, 0.4}
	train := SampleMixture(rng, means, weights, 0.5, 20, 50)
	val := SampleMixture(rng, means, weights, 0.5, 4, 50)
	cfg := Config{K: 10, Seed: 9, Schedule: ScheduleExp}
	full, err := Fit(context.Background(), cfg, train, val, FitOptions{Epochs: 6, BatchSlices: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Interrupt after epoch 3, then resume from the checkpoint.
	ckpt := filepath.Join(t.TempDir(), "fit.ckpt")
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Fit(ctx, cfg, train, val, FitOptions{Epochs: 6, BatchSlices: 3, Checkpoint: ckpt,
		OnEpoch: func(e EpochStats) {
			if e.Epoch == 3 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted fit returned %v", err)
	}
	resumed, err := Fit(context.Background(), cfg, train, val, FitOptions{Epochs: 6, BatchSlices: 3, Checkpoint: ckpt})
	if err != nil {
		t.Fatal(err)
	}
	if resumed.ResumedFrom != 3 || len(resumed.History) != 6 {
		t.Fatalf("resumed from %d with %d epochs of history", resumed.ResumedFrom, len(resumed.History))
	}
	if resumed.BestEpoch != full.BestEpoch {
		t.Fatalf("best epoch %d after resume, %d uninterrupted", resumed.BestEpoch, full.BestEpoch)
	}
	for i := range full.Best.Mu {
		if full.Best.Mu[i] != resumed.Best.Mu[i] {
			t.Fatal("resumed fit differs from the uninterrupted one")
		}
	}
	// A checkpoint of a different fit is refused.
	if _, err := Fit(context.Background(), Config{K: 11, Seed: 9}, train, val, FitOptions{Epochs: 6, BatchSlices: 3, Checkpoint: ckpt}); !errors.Is(err, ErrCheckpointMismatch) {
		t.Fatalf("mismatched checkpoint: %v", err)
	}
}
