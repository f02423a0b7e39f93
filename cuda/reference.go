package cuda

import (
	"errors"
	"fmt"

	"anomalynode/inference/dpmm"
	"anomalynode/inference/linalg"
)

// This file is built with and without the cuda tag. The EM step is dpmm's,
// split at its statistics: StatsCPU is dpmm.Mixture.EStep, the CPU reference
// the GPU is compared with, and the GPU path hands its own statistics to
// dpmm.Mixture.Apply on the host.

// sgemm is the CPU product StatsCPU uses: dpmm's. Tests swap in another
// summation order to size the tolerance the GPU comparison uses.
var sgemm = linalg.Sgemm

// ErrShape is wrapped by errors about inconsistent sizes.
var ErrShape = errors.New("cuda: inconsistent sizes")

// Stats are the sufficient statistics of one EM step: dpmm's, so the GPU's
// statistics feed dpmm.Mixture.Apply unchanged.
type Stats = dpmm.Stats

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

// mixture presents p as the dpmm.Mixture whose E-step reads exactly these
// fields (sharing p's slices), so the statistics are computed by dpmm itself.
func (p Params) mixture() *dpmm.Mixture {
	return &dpmm.Mixture{K: p.K, D: p.D, Mu: p.Mu, S2: p.S2, LogPi: p.LogPi}
}

// StatsCPU computes the statistics of one EM step on the CPU: it is
// dpmm.Mixture.EStep (same products, same reductions, same rounding).
func StatsCPU(p Params, x []float32, n int) (*Stats, error) {
	if err := p.check(x, n); err != nil {
		return nil, err
	}
	return p.mixture().EStepWith(sgemm, x, n)
}
