package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/mathext"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/linalg"
)

// This file is built with and without the cuda tag. dpmm.Mixture.Step has no
// seam for a pluggable E-step, so the statistics it computes and the updates it
// applies are restated here: StatsCPU is the CPU reference the GPU is compared
// with, and applyStats is the M-step the GPU path runs on the host. The tests
// pin both to dpmm bit for bit, so any drift in dpmm fails them.

// sgemm is the CPU product StatsCPU uses: dpmm's. Tests swap in another
// summation order to size the tolerance the GPU comparison uses.
var sgemm = linalg.Sgemm

// ErrShape is wrapped by errors about inconsistent sizes.
var ErrShape = errors.New("cuda: inconsistent sizes")

// Stats are the sufficient statistics of one EM step on a batch of N rows
// under fixed parameters: everything dpmm.Mixture.Step needs from the data.
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

// Params are the mixture parameters an E-step reads.
type Params struct {
	// K and D are the components and the dimension.
	K, D int
	// Mu and S2 are the means and diagonal variances, K*D row-major.
	Mu, S2 []float32
	// LogPi holds log pi_k (-Inf for a vanished component).
	LogPi []float64
}

// ParamsOf returns the parameters of m (sharing its slices).
func ParamsOf(m *dpmm.Mixture) Params {
	return Params{K: m.K, D: m.D, Mu: m.Mu, S2: m.S2, LogPi: m.LogPi}
}

func (p Params) check(x []float32, n int) error {
	switch {
	case p.K < 1 || p.D < 1:
		return fmt.Errorf("%w: K=%d, D=%d", ErrShape, p.K, p.D)
	case len(p.Mu) < p.K*p.D || len(p.S2) < p.K*p.D || len(p.LogPi) < p.K:
		return fmt.Errorf("%w: parameters shorter than K=%d x D=%d", ErrShape, p.K, p.D)
	case n < 1 || len(x) < n*p.D:
		return fmt.Errorf("%w: batch has %d values for %d x %d", ErrShape, len(x), n, p.D)
	}
	return nil
}

// StatsCPU computes the statistics of one EM step on the CPU exactly as
// dpmm.Mixture.Step does (same products, same reductions, same rounding).
func StatsCPU(p Params, x []float32, n int) (*Stats, error) {
	if err := p.check(x, n); err != nil {
		return nil, err
	}
	k, d := p.K, p.D
	z := make([]float32, n*2*d)
	w := make([]float32, k*2*d)
	c := make([]float32, k)
	l := make([]float32, n*k)
	st := &Stats{K: k, D: d, N: n, R: make([]float64, k), G: make([]float32, k*2*d)}
	buildZ(x, n, d, z)
	buildW(p, w, c)
	sgemm(false, true, n, k, 2*d, 1, z, 2*d, w, 2*d, 0, l, k)
	st.LogLik = responsibilities(l, c, n, k, st.R)
	sgemm(true, false, k, 2*d, n, 1/float32(n), l, k, z, 2*d, 0, st.G, 2*d)
	return st, nil
}

// buildZ writes [x^2 | x] row by row (dpmm's layout).
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

// log2Pi is log(2*pi).
var log2Pi = math.Log(2 * math.Pi)

// buildW writes [-1/(2 s2) | mu/s2] (K rows of 2D) and the constants
// log pi_k - 1/2 (D log 2pi + sum log s2 + sum mu^2/s2), in float64 as dpmm does.
// The GPU path builds them on the host too: K*D work against N*K*D on the device.
func buildW(p Params, w, c []float32) {
	d := p.D
	for j := 0; j < p.K; j++ {
		konst := float64(d) * log2Pi
		for i := 0; i < d; i++ {
			v := float64(p.S2[j*d+i])
			mu := float64(p.Mu[j*d+i])
			w[j*2*d+i] = float32(-0.5 / v)
			w[j*2*d+d+i] = float32(mu / v)
			konst += math.Log(v) + mu*mu/v
		}
		c[j] = float32(p.LogPi[j] - 0.5*konst)
	}
}

// nChunks matches dpmm: a fixed chunk count keeps sums bit-identical across
// machines and equal to dpmm's.
const nChunks = 64

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

// responsibilities is dpmm's log-sum-exp over the rows of l (constants c still
// to add): l becomes the responsibilities, column sums go to rsum, and the mean
// log-likelihood is returned.
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

// expf is dpmm's float32 exp (Cephes expf), restated so StatsCPU rounds as
// dpmm does; the device uses CUDA's expf, which is as accurate.
func expf(x float32) float32 {
	switch {
	case x < -87.3:
		return 0
	case x > 88.7:
		return float32(math.Inf(1))
	case x != x:
		return x
	}
	z := x * 1.44269504088896341
	var n float32
	if z >= 0 {
		n = float32(int32(z + 0.5))
	} else {
		n = float32(int32(z - 0.5))
	}
	r := x - n*0.693359375 - n*(-2.12194440e-4)
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	if n > 127 {
		n--
		y *= 2
	}
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// eps is float32 machine epsilon, dpmm's guard in the M-step and the sticks.
const eps = 1.1920929e-07

// applyStats is the rest of dpmm.Mixture.Step once the statistics are known:
// the moving averages, the M-step, the sticks, alpha and log pi. It returns the
// step's mean log-likelihood, as Step does.
func applyStats(m *dpmm.Mixture, st *Stats) (float64, error) {
	if st.K != m.K || st.D != m.D || len(st.R) < m.K || len(st.G) < m.K*2*m.D {
		return 0, fmt.Errorf("%w: statistics for K=%d, D=%d applied to a mixture of K=%d, D=%d", ErrShape, st.K, st.D, m.K, m.D)
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
	// M-step.
	for j := 0; j < k; j++ {
		den := m.R[j] + eps
		for i := 0; i < d; i++ {
			mu := m.M[j*d+i] / den
			v := m.S[j*d+i]/den + mu*mu - 2*mu*m.M[j*d+i]/den
			v = max(v, 0) + m.Cfg.Reg
			m.Mu[j*d+i] = float32(mu)
			m.S2[j*d+i] = float32(v)
		}
	}
	// Sticks.
	t := 0.0
	for j := k - 1; j >= 0; j-- {
		if j == k-1 {
			m.V[j] = 1
		} else {
			m.V[j] = m.R[j] / (m.R[j] + (m.Alpha-1)/float64(n) + t + eps)
		}
		t += m.R[j]
	}
	// Concentration.
	if !m.Cfg.AlphaFixed && k >= 2 {
		nf := float64(n)
		t, sum := 0.0, 0.0
		for j := k - 1; j >= 0; j-- {
			if j < k-1 {
				sum += mathext.Digamma(nf*(m.R[j]+t)+m.Alpha+1) - mathext.Digamma(nf*t+m.Alpha)
			}
			t += m.R[j]
		}
		a := float64(k-1) / sum
		if !(a >= 1) || math.IsInf(a, 0) {
			a = 1
		}
		m.Alpha = a
	}
	// log pi.
	acc := 0.0
	for j := 0; j < k; j++ {
		m.LogPi[j] = math.Log(m.V[j]) + acc
		if j < k-1 {
			acc += math.Log1p(-m.V[j])
		}
	}
	return st.LogLik, nil
}

// prototypes returns the unit-length prototype rows of a model exactly as
// inference.NewDPMMScorer builds them (tau, selection and normalisation).
func prototypes(m *inference.Model) ([]float32, []int, error) {
	tau := m.Meta.Tau
	if tau <= 0 {
		tau = inference.DefaultTau
	}
	protos, idx := m.Prototypes(tau)
	if len(idx) == 0 {
		return nil, nil, fmt.Errorf("cuda: model has no component with weight > %g", tau)
	}
	d := m.D
	for r := 0; r+d <= len(protos); r += d {
		row := protos[r : r+d]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		if s == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(s))
		for i := range row {
			row[i] *= inv
		}
	}
	return protos, idx, nil
}
