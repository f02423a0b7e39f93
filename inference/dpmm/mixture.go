package dpmm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/mathext"

	"anomalynode/inference/linalg"
)

// Step-size schedules (Config.Schedule).
const (
	// ScheduleEMA uses the constant step size Gamma.
	ScheduleEMA = "ema"
	// ScheduleExp uses t^-Rate at EM step t (1-based).
	ScheduleExp = "exp"
)

// eps is float32 machine epsilon, the guard of METHOD.md 2's M-step and sticks.
const eps = 1.1920929e-07

// log2Pi is log(2*pi).
var log2Pi = math.Log(2 * math.Pi)

// ErrBadConfig is wrapped by Config.Validate errors.
var ErrBadConfig = errors.New("dpmm: bad configuration")

// Config holds the fitting hyper-parameters; zero values take the defaults of
// METHOD.md 2 through Defaults.
type Config struct {
	// K is the truncation level, the number of components (500).
	K int
	// Gamma is the constant step size of the ema schedule (0.2).
	Gamma float64
	// Schedule is ScheduleEMA or ScheduleExp.
	Schedule string
	// Rate is the exp schedule's exponent: gamma_t = t^-Rate (0.6).
	Rate float64
	// Reg is added to every variance (1e-6).
	Reg float64
	// Alpha is the initial concentration, >= 1 (2.0).
	Alpha float64
	// AlphaFixed keeps Alpha constant instead of updating it.
	AlphaFixed bool
	// Tau is the weight above which a component counts as active (1e-6).
	Tau float64
	// Seed seeds the initialisation.
	Seed int64
}

// Defaults returns c with every zero field set to its METHOD.md default.
func (c Config) Defaults() Config {
	if c.K == 0 {
		c.K = 500
	}
	if c.Gamma == 0 {
		c.Gamma = 0.2
	}
	if c.Schedule == "" {
		c.Schedule = ScheduleEMA
	}
	if c.Rate == 0 {
		c.Rate = 0.6
	}
	if c.Reg == 0 {
		c.Reg = 1e-6
	}
	if c.Alpha == 0 {
		c.Alpha = 2.0
	}
	if c.Tau == 0 {
		c.Tau = 1e-6
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.K < 1:
		return fmt.Errorf("%w: components %d must be >= 1", ErrBadConfig, c.K)
	case !(c.Gamma > 0 && c.Gamma <= 1):
		return fmt.Errorf("%w: step size %v must be in (0,1]", ErrBadConfig, c.Gamma)
	case c.Schedule != ScheduleEMA && c.Schedule != ScheduleExp:
		return fmt.Errorf("%w: schedule %q must be %s or %s", ErrBadConfig, c.Schedule, ScheduleEMA, ScheduleExp)
	case c.Schedule == ScheduleExp && !(c.Rate > 0 && c.Rate <= 1):
		return fmt.Errorf("%w: rate %v must be in (0,1]", ErrBadConfig, c.Rate)
	case !(c.Reg > 0):
		return fmt.Errorf("%w: reg %v must be > 0", ErrBadConfig, c.Reg)
	case !(c.Alpha >= 1) || math.IsInf(c.Alpha, 0):
		return fmt.Errorf("%w: alpha %v must be >= 1", ErrBadConfig, c.Alpha)
	case !(c.Tau > 0 && c.Tau < 1):
		return fmt.Errorf("%w: weight threshold %v must be in (0,1)", ErrBadConfig, c.Tau)
	}
	return nil
}

// Mixture is the EM state: parameters, sticks, concentration and the moving
// averages of the sufficient statistics. Exported fields make it checkpointable
// with encoding/gob.
type Mixture struct {
	// Cfg is the configuration the mixture was initialised with.
	Cfg Config
	// K and D are the number of components and the dimension.
	K, D int
	// Mu and S2 are the means and diagonal variances, K*D row-major.
	Mu, S2 []float32
	// V holds the stick ratios v_k (V[K-1] = 1).
	V []float64
	// LogPi holds log pi_k derived from V (-Inf for a vanished component).
	LogPi []float64
	// Alpha is the current concentration.
	Alpha float64
	// R, M and S are the moving averages of responsibility mass, first and
	// (diagonal) second moments; M and S are K*D.
	R    []float64
	M, S []float64
	// Steps counts the EM steps taken.
	Steps int

	scratch *stepScratch
}

// stepScratch holds per-batch buffers reused between steps.
type stepScratch struct {
	z, w, l []float32
	c       []float32
}

// NewMixture initialises a mixture from the first batch x (n rows of d) as
// METHOD.md 2 says: v_k ~ Beta(1, alpha) with v_K = 1; means are K distinct rows
// of x drawn at random (standard normal rows for any left over when n < K);
// every variance is the per-dimension variance of x plus reg; statistics zero.
func NewMixture(cfg Config, x []float32, n, d int) (*Mixture, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n < 1 || d < 1 || len(x) < n*d {
		return nil, fmt.Errorf("dpmm: first batch has %d values for %d x %d", len(x), n, d)
	}
	k := cfg.K
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))
	m := &Mixture{Cfg: cfg, K: k, D: d, Alpha: cfg.Alpha,
		Mu: make([]float32, k*d), S2: make([]float32, k*d),
		V: make([]float64, k), LogPi: make([]float64, k),
		R: make([]float64, k), M: make([]float64, k*d), S: make([]float64, k*d)}
	for j := 0; j < k-1; j++ {
		// Beta(1, alpha) by inversion: P(v <= t) = 1 - (1-t)^alpha.
		m.V[j] = 1 - math.Pow(1-rng.Float64(), 1/cfg.Alpha)
	}
	m.V[k-1] = 1
	perm := rng.Perm(n)
	for j := 0; j < k; j++ {
		row := m.Mu[j*d : (j+1)*d]
		if j < n {
			copy(row, x[perm[j]*d:(perm[j]+1)*d])
			continue
		}
		for i := range row {
			row[i] = float32(rng.NormFloat64())
		}
	}
	mean := make([]float64, d)
	sq := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += float64(v)
			sq[j] += float64(v) * float64(v)
		}
	}
	for j := 0; j < d; j++ {
		mu := mean[j] / float64(n)
		v := sq[j]/float64(n) - mu*mu
		v = max(v, 0) + cfg.Reg
		for c := 0; c < k; c++ {
			m.S2[c*d+j] = float32(v)
		}
	}
	m.updateLogPi()
	return m, nil
}

// updateLogPi computes log pi_k = log v_k + sum_{j<k} log(1 - v_j).
func (m *Mixture) updateLogPi() {
	acc := 0.0
	for k := 0; k < m.K; k++ {
		m.LogPi[k] = math.Log(m.V[k]) + acc
		if k < m.K-1 {
			acc += math.Log1p(-m.V[k])
		}
	}
}

// Weight returns pi_k.
func (m *Mixture) Weight(k int) float64 { return math.Exp(m.LogPi[k]) }

// Active counts the components with pi_k > tau.
func (m *Mixture) Active(tau float64) int {
	lt := math.Log(tau)
	n := 0
	for _, l := range m.LogPi {
		if l > lt {
			n++
		}
	}
	return n
}

// GammaAt is the step size of EM step t (1-based).
func (c Config) GammaAt(t int) float64 {
	if c.Schedule == ScheduleExp {
		return math.Pow(float64(t), -c.Rate)
	}
	return c.Gamma
}

// StepFLOPs is the floating-point work of the two matrix products of one EM step
// on n rows: the log-densities [X^2 | X] x W^T and the statistics R^T x [X^2 | X].
func StepFLOPs(n, k, d int) float64 { return 2 * 2 * float64(n) * float64(k) * float64(2*d) }

// Stats are the sufficient statistics of one EM step on a batch of N rows
// under fixed parameters: everything Apply needs from the data. EStep computes
// them on the CPU; another device may compute them and hand them to Apply.
type Stats struct {
	// K, D and N are the components, the dimension and the rows.
	K, D, N int
	// R holds sum_n r_nk, K values.
	R []float64
	// G holds (1/N) sum_n r_nk [x_n^2 | x_n], K rows of 2D (second moments
	// first, then first moments).
	G []float32
	// LogLik is the batch's mean log-likelihood.
	LogLik float64
}

// GEMM is the signature of linalg.Sgemm, the E-step's matrix product.
type GEMM func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// Step runs one EM step on the batch x (n rows of D) and returns the batch's
// mean log-likelihood under the parameters it started from: EStep, then Apply.
func (m *Mixture) Step(x []float32, n int) (float64, error) {
	st, err := m.EStep(x, n)
	if err != nil {
		return 0, err
	}
	return m.Apply(st)
}

// EStep computes the statistics of one EM step on the batch x (n rows of D)
// under the current parameters, leaving the parameters unchanged. It reads
// only K, D, Mu, S2 and LogPi.
//
// log N(x|mu,diag s2) = -1/2 sum x^2/s2 + sum x mu/s2 + const_k, so the n x K
// log-densities are the two products X^2 (-1/(2 s2))^T and X (mu/s2)^T,
// computed as one GEMM over the stacked inner dimension [X^2 | X] (2D), plus a
// per-component constant; no D x D matrix exists. The statistics mean_n r x and
// mean_n r x^2 are likewise one GEMM R^T [X^2 | X].
func (m *Mixture) EStep(x []float32, n int) (*Stats, error) {
	return m.EStepWith(linalg.Sgemm, x, n)
}

// EStepWith is EStep with the two matrix products computed by gemm: the seam
// that sizes how far another summation order (a GPU's) moves the statistics.
func (m *Mixture) EStepWith(gemm GEMM, x []float32, n int) (*Stats, error) {
	if n < 1 || len(x) < n*m.D {
		return nil, fmt.Errorf("dpmm: step: batch has %d values for %d x %d", len(x), n, m.D)
	}
	k, d := m.K, m.D
	s := m.buffers(n)
	buildZ(x, n, d, s.z)
	m.buildW(s.w, s.c, m.LogPi)
	gemm(false, true, n, k, 2*d, 1, s.z, 2*d, s.w, 2*d, 0, s.l, k)
	st := &Stats{K: k, D: d, N: n, R: make([]float64, k), G: make([]float32, k*2*d)}
	st.LogLik = responsibilities(s.l, s.c, n, k, st.R)
	gemm(true, false, k, 2*d, n, 1/float32(n), s.l, k, s.z, 2*d, 0, st.G, 2*d)
	return st, nil
}

// EStepWeights writes the E-step's GEMM operand [-1/(2 s2) | mu/s2] (K rows of
// 2D) to w and the per-component constants to c (K values), as EStep builds
// them: a device computing the statistics elsewhere starts from these.
func (m *Mixture) EStepWeights(w, c []float32) {
	m.buildW(w[:m.K*2*m.D], c[:m.K], m.LogPi)
}

// Apply completes an EM step from its statistics st (computed under the
// current parameters): the moving averages, the M-step, the sticks, the
// concentration and log pi. It returns st's mean log-likelihood.
func (m *Mixture) Apply(st *Stats) (float64, error) {
	if st.K != m.K || st.D != m.D || st.N < 1 || len(st.R) < m.K || len(st.G) < m.K*2*m.D {
		return 0, fmt.Errorf("dpmm: apply: statistics for K=%d, D=%d, N=%d applied to a mixture of K=%d, D=%d", st.K, st.D, st.N, m.K, m.D)
	}
	k, d, n := m.K, m.D, st.N
	m.Steps++
	g := m.Cfg.GammaAt(m.Steps)
	for j := 0; j < k; j++ {
		m.R[j] = (1-g)*m.R[j] + g*st.R[j]/float64(n)
		row := st.G[j*2*d : (j+1)*2*d]
		for i := 0; i < d; i++ {
			m.S[j*d+i] = (1-g)*m.S[j*d+i] + g*float64(row[i])
			m.M[j*d+i] = (1-g)*m.M[j*d+i] + g*float64(row[d+i])
		}
	}
	m.mStep()
	m.updateSticks(n)
	if !m.Cfg.AlphaFixed {
		m.updateAlpha(n)
	}
	m.updateLogPi()
	return st.LogLik, nil
}

// mStep: mu = M/(R+eps); s2 = S/(R+eps) + mu^2 - 2 mu M/(R+eps) + reg, in
// float64. Rounding can push the difference of the first terms a hair below zero
// for a component whose data are (nearly) constant in a dimension; s2 is then
// held at reg, the value the formula has in exact arithmetic for such data.
func (m *Mixture) mStep() {
	d := m.D
	for j := 0; j < m.K; j++ {
		den := m.R[j] + eps
		for i := 0; i < d; i++ {
			mu := m.M[j*d+i] / den
			v := m.S[j*d+i]/den + mu*mu - 2*mu*m.M[j*d+i]/den
			v = max(v, 0) + m.Cfg.Reg
			m.Mu[j*d+i] = float32(mu)
			m.S2[j*d+i] = float32(v)
		}
	}
}

// updateSticks: v_k = R_k / (R_k + (alpha-1)/N + T_k + eps), T_k = sum_{j>k} R_j.
func (m *Mixture) updateSticks(n int) {
	t := 0.0
	for j := m.K - 1; j >= 0; j-- {
		if j == m.K-1 {
			m.V[j] = 1
		} else {
			m.V[j] = m.R[j] / (m.R[j] + (m.Alpha-1)/float64(n) + t + eps)
		}
		t += m.R[j]
	}
}

// updateAlpha: alpha = (K-1) / sum_{k<K} [psi(N(R_k+T_k) + alpha + 1) - psi(N T_k + alpha)],
// held at >= 1 (METHOD.md requires alpha >= 1; the sticks' prior term (alpha-1)/N
// would otherwise turn negative).
func (m *Mixture) updateAlpha(n int) {
	if m.K < 2 {
		return
	}
	nf := float64(n)
	t := 0.0
	sum := 0.0
	for j := m.K - 1; j >= 0; j-- {
		if j < m.K-1 {
			sum += mathext.Digamma(nf*(m.R[j]+t)+m.Alpha+1) - mathext.Digamma(nf*t+m.Alpha)
		}
		t += m.R[j]
	}
	a := float64(m.K-1) / sum
	if !(a >= 1) || math.IsInf(a, 0) {
		a = 1
	}
	m.Alpha = a
}

func (m *Mixture) buffers(n int) *stepScratch {
	if m.scratch == nil {
		m.scratch = &stepScratch{}
	}
	s := m.scratch
	grow := func(b []float32, size int) []float32 {
		if cap(b) < size {
			return make([]float32, size)
		}
		return b[:size]
	}
	s.z = grow(s.z, n*2*m.D)
	s.w = grow(s.w, m.K*2*m.D)
	s.l = grow(s.l, n*m.K)
	s.c = grow(s.c, m.K)
	return s
}

// buildZ writes [x^2 | x] row by row.
func buildZ(x []float32, n, d int, z []float32) {
	parallelRows(n, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			src := x[i*d : (i+1)*d]
			dst := z[i*2*d : (i+1)*2*d]
			for j, v := range src {
				dst[j] = v * v
				dst[d+j] = v
			}
		}
	})
}

// buildW writes [-1/(2 s2) | mu/s2] and the constants
// log pi_k - 1/2 (D log 2pi + sum log s2 + sum mu^2/s2) for the given log weights.
func (m *Mixture) buildW(w, c []float32, logPi []float64) {
	d := m.D
	for j := 0; j < len(c); j++ {
		konst := float64(d) * log2Pi
		for i := 0; i < d; i++ {
			v := float64(m.S2[j*d+i])
			mu := float64(m.Mu[j*d+i])
			w[j*2*d+i] = float32(-0.5 / v)
			w[j*2*d+d+i] = float32(mu / v)
			konst += math.Log(v) + mu*mu/v
		}
		c[j] = float32(logPi[j] - 0.5*konst)
	}
}

// nChunks is the fixed number of row chunks for reductions: fixing it (rather
// than using the core count) keeps sums bit-identical across machines.
const nChunks = 64

// parallelRows runs f over [0,n) split into at most nChunks contiguous chunks;
// f gets the chunk's index too.
func parallelRows(n int, f func(ci, lo, hi int)) {
	chunks := min(nChunks, n)
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for c := 0; c < chunks; c++ {
		next <- c
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for c := range next {
				f(c, c*n/chunks, (c+1)*n/chunks)
			}
		})
	}
	wg.Wait()
}

// responsibilities turns the n x k log-density products l (constants c still to
// add) into responsibilities in place by log-sum-exp, adds each column's sum to
// rsum and returns the mean log-likelihood of the rows.
func responsibilities(l, c []float32, n, k int, rsum []float64) float64 {
	chunks := min(nChunks, n)
	partR := make([][]float64, chunks)
	partLL := make([]float64, chunks)
	parallelRows(n, func(ci, lo, hi int) {
		rs := make([]float64, k)
		ll := 0.0
		for i := lo; i < hi; i++ {
			row := l[i*k : (i+1)*k]
			mx := float32(math.Inf(-1))
			for j := range row {
				row[j] += c[j]
				mx = max(mx, row[j])
			}
			var sum float32
			for j, v := range row {
				e := expf(v - mx)
				row[j] = e
				sum += e
			}
			inv := 1 / sum
			for j := range row {
				row[j] *= inv
				rs[j] += float64(row[j])
			}
			ll += float64(mx) + math.Log(float64(sum))
		}
		partR[ci] = rs
		partLL[ci] = ll
	})
	ll := 0.0
	for ci := 0; ci < chunks; ci++ {
		ll += partLL[ci]
		for j, v := range partR[ci] {
			rsum[j] += v
		}
	}
	return ll / float64(n)
}

// LogLikelihood returns the sum over the n rows of x of
// log sum_k pi_k N(x | mu_k, s2_k), the sum running over components with
// pi_k > tau only (METHOD.md 2's validation criterion). Rows are processed in
// blocks of at most block rows to bound memory.
func (m *Mixture) LogLikelihood(x []float32, n int, tau float64) float64 {
	d := m.D
	lt := math.Log(tau)
	var idx []int
	for j, l := range m.LogPi {
		if l > lt {
			idx = append(idx, j)
		}
	}
	ka := len(idx)
	if ka == 0 || n == 0 {
		return math.Inf(-1)
	}
	sub := &Mixture{K: ka, D: d, Mu: make([]float32, ka*d), S2: make([]float32, ka*d)}
	lp := make([]float64, ka)
	for a, j := range idx {
		copy(sub.Mu[a*d:(a+1)*d], m.Mu[j*d:(j+1)*d])
		copy(sub.S2[a*d:(a+1)*d], m.S2[j*d:(j+1)*d])
		lp[a] = m.LogPi[j]
	}
	w := make([]float32, ka*2*d)
	c := make([]float32, ka)
	sub.buildW(w, c, lp)
	const block = 8192
	bn := min(block, n)
	z := make([]float32, bn*2*d)
	l := make([]float32, bn*ka)
	total := 0.0
	rsum := make([]float64, ka)
	for lo := 0; lo < n; lo += block {
		b := min(block, n-lo)
		buildZ(x[lo*d:(lo+b)*d], b, d, z)
		linalg.Sgemm(false, true, b, ka, 2*d, 1, z, 2*d, w, 2*d, 0, l, ka)
		total += responsibilities(l[:b*ka], c, b, ka, rsum) * float64(b)
	}
	return total
}

// Tensors returns the mixture as model tensors: means, variances and
// log weights (-Inf for a weight of exactly 0).
func (m *Mixture) Tensors() (means, variances, logWeights []float32) {
	means = append([]float32(nil), m.Mu...)
	variances = append([]float32(nil), m.S2...)
	logWeights = make([]float32, m.K)
	for k, l := range m.LogPi {
		logWeights[k] = float32(l)
	}
	return means, variances, logWeights
}
