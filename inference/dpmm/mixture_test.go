package dpmm

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mathext"
)

// refState is an independent float64 implementation of METHOD.md 2's step,
// written from the formulas with explicit squared distances (no GEMM expansion).
type refState struct {
	k, d         int
	mu, s2       [][]float64
	v, r         []float64
	m, s         [][]float64
	alpha, gamma float64
	reg          float64
	learnAlpha   bool
}

func newRef(m *Mixture) *refState {
	r := &refState{k: m.K, d: m.D, alpha: m.Alpha, gamma: m.Cfg.Gamma, reg: m.Cfg.Reg, learnAlpha: !m.Cfg.AlphaFixed}
	for j := 0; j < m.K; j++ {
		mu := make([]float64, m.D)
		s2 := make([]float64, m.D)
		for i := range mu {
			mu[i] = float64(m.Mu[j*m.D+i])
			s2[i] = float64(m.S2[j*m.D+i])
		}
		r.mu = append(r.mu, mu)
		r.s2 = append(r.s2, s2)
		r.m = append(r.m, make([]float64, m.D))
		r.s = append(r.s, make([]float64, m.D))
	}
	r.v = append([]float64(nil), m.V...)
	r.r = make([]float64, m.K)
	return r
}

func (r *refState) logPi() []float64 {
	out := make([]float64, r.k)
	acc := 0.0
	for j := 0; j < r.k; j++ {
		out[j] = math.Log(r.v[j]) + acc
		acc += math.Log(1 - r.v[j])
	}
	return out
}

func (r *refState) step(x []float32, n int) {
	lp := r.logPi()
	resp := make([][]float64, n)
	for i := 0; i < n; i++ {
		row := make([]float64, r.k)
		mx := math.Inf(-1)
		for j := 0; j < r.k; j++ {
			q := 0.0
			for t := 0; t < r.d; t++ {
				dx := float64(x[i*r.d+t]) - r.mu[j][t]
				q += dx*dx/r.s2[j][t] + math.Log(2*math.Pi*r.s2[j][t])
			}
			row[j] = lp[j] - 0.5*q
			mx = math.Max(mx, row[j])
		}
		sum := 0.0
		for j := range row {
			row[j] = math.Exp(row[j] - mx)
			sum += row[j]
		}
		for j := range row {
			row[j] /= sum
		}
		resp[i] = row
	}
	g := r.gamma
	for j := 0; j < r.k; j++ {
		rm := 0.0
		mm := make([]float64, r.d)
		sm := make([]float64, r.d)
		for i := 0; i < n; i++ {
			rm += resp[i][j]
			for t := 0; t < r.d; t++ {
				xv := float64(x[i*r.d+t])
				mm[t] += resp[i][j] * xv
				sm[t] += resp[i][j] * xv * xv
			}
		}
		r.r[j] = (1-g)*r.r[j] + g*rm/float64(n)
		for t := 0; t < r.d; t++ {
			r.m[j][t] = (1-g)*r.m[j][t] + g*mm[t]/float64(n)
			r.s[j][t] = (1-g)*r.s[j][t] + g*sm[t]/float64(n)
		}
	}
	for j := 0; j < r.k; j++ {
		den := r.r[j] + eps
		for t := 0; t < r.d; t++ {
			mu := r.m[j][t] / den
			r.mu[j][t] = mu
			r.s2[j][t] = r.s[j][t]/den + mu*mu - 2*mu*r.m[j][t]/den + r.reg
		}
	}
	for j := 0; j < r.k-1; j++ {
		tk := 0.0
		for l := j + 1; l < r.k; l++ {
			tk += r.r[l]
		}
		r.v[j] = r.r[j] / (r.r[j] + (r.alpha-1)/float64(n) + tk + eps)
	}
	r.v[r.k-1] = 1
	if r.learnAlpha {
		sum := 0.0
		for j := 0; j < r.k-1; j++ {
			tk := 0.0
			for l := j + 1; l < r.k; l++ {
				tk += r.r[l]
			}
			sum += mathext.Digamma(float64(n)*(r.r[j]+tk)+r.alpha+1) - mathext.Digamma(float64(n)*tk+r.alpha)
		}
		r.alpha = float64(r.k-1) / sum
	}
}

func randData(rng *rand.Rand, n, d int, scale float64) []float32 {
	x := make([]float32, n*d)
	for i := range x {
		c := float64(i/d%3) - 1 // three loose clusters
		x[i] = float32(scale * (c + 0.7*rng.NormFloat64()))
	}
	return x
}

// closeRel checks |got-want| <= tol * max(|want|, floor) elementwise.
func closeRel(t *testing.T, name string, got []float64, want []float64, tol, floor float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(math.Abs(want[i]), floor) || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %.9g, want %.9g (diff %.3g)", name, i, got[i], want[i], d)
		}
	}
}

func TestStepMatchesFloat64Reference(t *testing.T) {
	for _, fixed := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(5, 6))
		const n, d, k = 60, 7, 9
		cfg := Config{K: k, Seed: 11, AlphaFixed: fixed, Alpha: 3}
		x1 := randData(rng, n, d, 1)
		m, err := NewMixture(cfg, x1, n, d)
		if err != nil {
			t.Fatal(err)
		}
		ref := newRef(m)
		// Three steps on different batches exercise the moving averages too.
		for s := 0; s < 3; s++ {
			x := x1
			if s > 0 {
				x = randData(rng, n, d, 1)
			}
			if _, err := m.Step(x, n); err != nil {
				t.Fatal(err)
			}
			ref.step(x, n)
			var gotMu, wantMu, gotS2, wantS2 []float64
			for j := 0; j < k; j++ {
				for i := 0; i < d; i++ {
					gotMu = append(gotMu, float64(m.Mu[j*d+i]))
					wantMu = append(wantMu, ref.mu[j][i])
					gotS2 = append(gotS2, float64(m.S2[j*d+i]))
					wantS2 = append(wantS2, ref.s2[j][i])
				}
			}
			closeRel(t, "R", m.R, ref.r, 1e-4, 1e-6)
			closeRel(t, "mu", gotMu, wantMu, 1e-4, 1e-2)
			closeRel(t, "s2", gotS2, wantS2, 1e-4, 1e-6)
			closeRel(t, "v", m.V, ref.v, 1e-4, 1e-6)
			closeRel(t, "logpi", m.LogPi, ref.logPi(), 1e-4, 1e-2)
			closeRel(t, "alpha", []float64{m.Alpha}, []float64{ref.alpha}, 1e-4, 1)
		}
		if fixed && m.Alpha != 3 {
			t.Fatalf("fixed alpha changed to %v", m.Alpha)
		}
	}
}

func TestExpf(t *testing.T) {
	for x := -87.0; x <= 88.5; x += 0.013 {
		got := float64(expf(float32(x)))
		want := math.Exp(float64(float32(x)))
		if math.Abs(got-want) > 4e-7*want {
			t.Fatalf("expf(%v) = %v, want %v", x, got, want)
		}
	}
	if expf(float32(math.Inf(-1))) != 0 || expf(-100) != 0 {
		t.Fatal("expf of very negative input is not 0")
	}
}

func TestNewMixtureInit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randData(rng, 10, 3, 1)
	m, err := NewMixture(Config{K: 15, Seed: 3}, x, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m.V[14] != 1 {
		t.Fatal("v_K != 1")
	}
	// The first 10 means are distinct rows of x; the rest are not rows.
	seen := map[[3]float32]bool{}
	for j := 0; j < 15; j++ {
		var row [3]float32
		copy(row[:], m.Mu[j*3:])
		isRow := false
		for i := 0; i < 10; i++ {
			if x[i*3] == row[0] && x[i*3+1] == row[1] && x[i*3+2] == row[2] {
				isRow = true
			}
		}
		if (j < 10) != isRow || seen[row] {
			t.Fatalf("mean %d = %v: row of x %v, duplicate %v", j, row, isRow, seen[row])
		}
		seen[row] = true
	}
	sum := 0.0
	for j := 0; j < 15; j++ {
		sum += m.Weight(j)
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Fatalf("weights sum to %v", sum)
	}
	m2, _ := NewMixture(Config{K: 15, Seed: 3}, x, 10, 3)
	for i := range m.Mu {
		if m.Mu[i] != m2.Mu[i] {
			t.Fatal("initialisation not deterministic for a seed")
		}
	}
	if _, err := NewMixture(Config{K: 15, Alpha: 0.5}, x, 10, 3); err == nil {
		t.Fatal("alpha < 1 accepted")
	}
}

// TestEStepLeavesParamsApplyChecksShape: EStep only reads the parameters (a
// device computing statistics elsewhere relies on it), EStepWeights writes the
// operand EStep uses, and Apply refuses statistics of another shape without
// touching the mixture.
func TestEStepLeavesParamsApplyChecksShape(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, d, k = 50, 5, 6
	x := randData(rng, n, d, 1)
	m, err := NewMixture(Config{K: k, Seed: 3}, x, n, d)
	if err != nil {
		t.Fatal(err)
	}
	before := m.Clone()
	st, err := m.EStep(x, n)
	if err != nil {
		t.Fatal(err)
	}
	if st.K != k || st.D != d || st.N != n || len(st.R) != k || len(st.G) != k*2*d {
		t.Fatalf("stats shape K=%d D=%d N=%d |R|=%d |G|=%d", st.K, st.D, st.N, len(st.R), len(st.G))
	}
	if m.Steps != 0 || !slices.Equal(m.Mu, before.Mu) || !slices.Equal(m.S2, before.S2) || !slices.Equal(m.LogPi, before.LogPi) {
		t.Fatal("EStep changed the mixture")
	}
	w, c := make([]float32, k*2*d), make([]float32, k)
	m.EStepWeights(w, c)
	ww, wc := make([]float32, k*2*d), make([]float32, k)
	m.buildW(ww, wc, m.LogPi)
	if !slices.Equal(w, ww) || !slices.Equal(c, wc) {
		t.Fatal("EStepWeights differs from the E-step's operand")
	}
	if _, err := m.EStep(x, 0); err == nil {
		t.Fatal("EStep of no rows succeeded")
	}
	for _, bad := range []*Stats{
		{K: k + 1, D: d, N: n, R: st.R, G: st.G},
		{K: k, D: d, N: 0, R: st.R, G: st.G},
		{K: k, D: d, N: n, R: st.R[:k-1], G: st.G},
	} {
		if _, err := m.Apply(bad); err == nil {
			t.Fatalf("Apply of K=%d N=%d |R|=%d succeeded", bad.K, bad.N, len(bad.R))
		}
	}
	if m.Steps != 0 {
		t.Fatal("a refused Apply counted a step")
	}
	ll, err := m.Apply(st)
	if err != nil || ll != st.LogLik || m.Steps != 1 {
		t.Fatalf("Apply: ll %v (stats %v), err %v, steps %d", ll, st.LogLik, err, m.Steps)
	}
	want, err := before.Step(x, n)
	if err != nil || want != ll || !slices.Equal(m.Mu, before.Mu) || !slices.Equal(m.LogPi, before.LogPi) {
		t.Fatal("EStep then Apply differs from Step")
	}
}
