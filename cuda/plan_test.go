package cuda

import (
	"math"
	"testing"

	"anomalynode/inference/dpmm"
)

// colMajorGEMM emulates cublasSgemm (beta 0) on host slices in float64, so the
// shapes the device is given are checked here, without a GPU.
func colMajorGEMM(c gemmCall, a, b, out []float32) {
	at := func(x []float32, ld, i, j int) float64 { return float64(x[i+j*ld]) }
	for j := 0; j < c.n; j++ {
		for i := 0; i < c.m; i++ {
			var s float64
			for p := 0; p < c.k; p++ {
				var av, bv float64
				if c.tA {
					av = at(a, c.lda, p, i)
				} else {
					av = at(a, c.lda, i, p)
				}
				if c.tB {
					bv = at(b, c.ldb, j, p)
				} else {
					bv = at(b, c.ldb, p, j)
				}
				s += av * bv
			}
			out[i+j*c.ldc] = float32(float64(c.alpha) * s)
		}
	}
}

// TestScorePlan runs the scoring GEMM's shapes and kernels.cu's row max
// (restated) on the host and compares with inference.DPMMScorer.
func TestScorePlan(t *testing.T) {
	k, d, n := 30, 20, 50
	model := randomModel(k, d, 8)
	cpu, protos, idx := scorerAndPrototypes(t, model)
	m := len(idx)
	q := clustered(n, d, 5, 0.3, 1)
	prod := make([]float32, n*m)
	colMajorGEMM(scoreGEMM(m, n, d), protos, q, prod)
	got := make([]float32, n)
	for i := 0; i < n; i++ { // rowMaxScore
		mx := float32(math.Inf(-1))
		for _, v := range prod[i*m : (i+1)*m] {
			mx = max(mx, v)
		}
		got[i] = 1 - mx
	}
	want := make([]float32, n)
	cpu.Score(q, n, want)
	if e := relErr(sims(got), sims(want)); e > 1e-6 {
		t.Fatalf("scoring plan: relative error %.2e against DPMMScorer", e)
	}
}

// TestStatsPlan runs the EM statistics' device layout ([x^2 | x | 1] rows),
// GEMM shapes, restated responsibilities kernel and statsFromDevice on the
// host and compares with StatsCPU.
func TestStatsPlan(t *testing.T) {
	n, k, d := 120, 9, 12
	x := clustered(n, d, 4, 0.2, 2)
	m := newMixture(t, k, d, x, n, dpmm.Config{Seed: 6})
	if _, err := m.Step(x, n); err != nil {
		t.Fatal(err)
	}
	p := ParamsOf(m)
	w2 := zWidth(d)
	z := make([]float32, n*w2)
	for i := 0; i < n; i++ { // buildZ
		for j := 0; j < d; j++ {
			v := x[i*d+j]
			z[i*w2+j], z[i*w2+d+j] = v*v, v
		}
		z[i*w2+2*d] = 1
	}
	w := make([]float32, k*2*d)
	c := make([]float32, k)
	p.mixture().EStepWeights(w, c)
	l := make([]float32, n*k)
	colMajorGEMM(eStepGEMM(k, n, d), w, z, l)
	ll := make([]float32, n)
	for i := 0; i < n; i++ { // responsibilities
		row := l[i*k : (i+1)*k]
		mx := float32(math.Inf(-1))
		for j := range row {
			row[j] += c[j]
			mx = max(mx, row[j])
		}
		var s float32
		for j := range row {
			row[j] = float32(math.Exp(float64(row[j] - mx)))
			s += row[j]
		}
		for j := range row {
			row[j] /= s
		}
		ll[i] = mx + float32(math.Log(float64(s)))
	}
	g := make([]float32, k*w2)
	colMajorGEMM(statsGEMM(k, n, d), z, l, g)
	got := statsFromDevice(g, ll, k, d, n)
	want, err := StatsCPU(p, x, n)
	if err != nil {
		t.Fatal(err)
	}
	eg, er := relErr(got.G, want.G), relErr64(got.R, want.R)
	ell := math.Abs(got.LogLik-want.LogLik) / math.Abs(want.LogLik)
	if eg > 1e-5 || er > 1e-5 || ell > 1e-5 {
		t.Fatalf("statistics plan: relative error G %.2e, R %.2e, ll %.2e against StatsCPU", eg, er, ell)
	}
}
