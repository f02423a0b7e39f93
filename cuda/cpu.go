//go:build !cuda

package cuda

import (
	"anomalynode/inference"
	"anomalynode/inference/dpmm"
)

// Available reports whether scoring and fitting run on a GPU, and why not.
// Without the cuda build tag they never do.
func Available() (bool, string) {
	return false, "built without the cuda tag (go build -tags cuda): this binary embeds, scores and fits on the CPU only"
}

// Scorer scores patch embeddings against a DPMM model's prototypes. Without the
// cuda tag it is inference.DPMMScorer.
type Scorer struct {
	cpu *inference.DPMMScorer
}

// NewScorer builds the scorer of m on GPU device (an ordinal; ignored without
// the cuda tag).
func NewScorer(m *inference.Model, device int) (*Scorer, error) {
	s, err := inference.NewDPMMScorer(m)
	if err != nil {
		return nil, err
	}
	return &Scorer{cpu: s}, nil
}

// Score implements inference.Scorer.
func (s *Scorer) Score(patches []float32, n int, out []float32) { s.cpu.Score(patches, n, out) }

// ScoreErr is Score returning device errors instead of panicking; on the CPU
// it never fails.
func (s *Scorer) ScoreErr(patches []float32, n int, out []float32) error {
	s.cpu.Score(patches, n, out)
	return nil
}

// Prototypes returns the number of prototypes scored against.
func (s *Scorer) Prototypes() int { return s.cpu.Prototypes() }

// OnGPU reports whether this scorer runs on a GPU.
func (s *Scorer) OnGPU() bool { return false }

// Close releases the device resources (none without the cuda tag).
func (s *Scorer) Close() error { return nil }

// Stepper runs EM steps of a dpmm.Mixture. Without the cuda tag it is the
// mixture's own Step.
type Stepper struct {
	k, d int
}

// NewStepper prepares EM steps for K components in D dimensions on GPU device
// (an ordinal; ignored without the cuda tag).
func NewStepper(k, d, device int) (*Stepper, error) {
	if k < 1 || d < 1 {
		return nil, ErrShape
	}
	return &Stepper{k: k, d: d}, nil
}

// Stats computes the statistics of one EM step of the batch x (n rows of D)
// under p.
func (s *Stepper) Stats(p Params, x []float32, n int) (*Stats, error) {
	if p.K != s.k || p.D != s.d {
		return nil, ErrShape
	}
	return StatsCPU(p, x, n)
}

// Step runs one EM step of m on the batch x (n rows of D) and returns the
// batch's mean log-likelihood, as m.Step does.
func (s *Stepper) Step(m *dpmm.Mixture, x []float32, n int) (float64, error) {
	if m.K != s.k || m.D != s.d {
		return 0, ErrShape
	}
	return m.Step(x, n)
}

// OnGPU reports whether this stepper runs on a GPU.
func (s *Stepper) OnGPU() bool { return false }

// Close releases the device resources (none without the cuda tag).
func (s *Stepper) Close() error { return nil }
